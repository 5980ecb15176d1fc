//! `sluice serve` as a process: the loopback/token rule, graceful shutdown on
//! SIGTERM with an attempt in flight, a restart that resumes, and a module
//! swap that leaves running attempts on the old version; a config file that
//! takes effect, and a bad one that stops it.

use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::Duration;

use serde_json::Value;

mod common;
use common::listening;

fn sluice(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("SLUICE_URL", url)
        .env_remove("SLUICE_TOKEN")
        .output()
        .expect("run sluice")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Starts `sluice serve` on a free port; returns it once it listens.
fn serve(data: &Path) -> (common::Server, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--grace",
        "20s",
        "--data-dir",
    ])
    .arg(data)
    .env_remove("SLUICE_CONFIG");
    listening(&mut cmd)
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wasm(dir: &Path, name: &str, wat: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, wat::parse_str(wat).unwrap()).unwrap();
    p.to_string_lossy().into_owned()
}

/// A guest that sleeps `ms` milliseconds (WASI poll_oneoff), then exits 0.
fn sleeper(ms: u64) -> String {
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; subscription at 0: userdata u64, tag u8 (0 = clock) at 8, clock id u32 at 16,
  ;; timeout u64 at 24, precision u64 at 32, flags u16 at 40 (0 = relative)
  (data (i32.const 24) "{}")
  (func (export "_start") (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))"#,
        (ms * 1_000_000)
            .to_le_bytes()
            .iter()
            .map(|b| format!("\\{b:02x}"))
            .collect::<String>()
    )
}

fn status(url: &str, id: &str) -> Value {
    serde_json::from_str(&ok(&sluice(url, &["status", id, "--json"]))).unwrap()
}

#[test]
fn non_loopback_listen_requires_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("SLUICE_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("requires --token"), "{err}");
}

/// The file (named by `SLUICE_CONFIG`) sets the maximum payload; a flag
/// (`--listen`) and a variable (`SLUICE_DATA_DIR`) beat its `[api] listen`
/// and `[server] data_dir`, which would fail (port 1, an unwritable path).
#[test]
fn a_config_file_takes_effect_and_flags_and_environment_beat_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("sluice.toml");
    std::fs::write(
        &file,
        "[server]\ndata_dir = \"/proc/sluice-never\"\n\
         [api]\nlisten = \"127.0.0.1:1\"\n\
         [store]\ntype = \"embedded\"\nmax_payload_bytes = \"1KiB\"\n",
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env("SLUICE_DATA_DIR", &data);
    let (mut child, url) = listening(cmd.env("SLUICE_CONFIG", &file));
    assert!(data.join("queue").is_dir(), "the variable's data directory");
    let noop = wasm(
        dir.path(),
        "noop.wasm",
        r#"(module (memory (export "memory") 1) (func (export "_start")))"#,
    );
    ok(&sluice(
        &url,
        &["register", "h", "--topic", "t", "--module", &noop],
    ));
    ok(&sluice(&url, &["enqueue", "t", &"x".repeat(1024)]));
    let out = sluice(&url, &["enqueue", "t", &"x".repeat(1025)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exceeds the maximum of 1024 bytes"), "{err}");
    sigterm(&child);
    assert!(child.wait().unwrap().success());
}

/// A bad file stops `sluice serve` before it starts, naming the file and key.
#[test]
fn a_bad_config_file_makes_serve_exit_with_the_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[store]\nmax_topic_dept = 10\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml"), "{err}");
    assert!(err.contains("[store] max_topic_dept"), "{err}");
    assert!(!dir.path().join("data").exists(), "nothing was started");
}

#[test]
fn sigterm_lets_the_running_attempt_finish_and_a_restart_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut child, url) = serve(&data);
    let slow = wasm(dir.path(), "slow.wasm", &sleeper(1500));
    ok(&sluice(
        &url,
        &[
            "register",
            "slow",
            "--topic",
            "t",
            "--module",
            &slow,
            "--concurrency",
            "1",
        ],
    ));
    let first = ok(&sluice(&url, &["enqueue", "t", "one"]));
    let second = ok(&sluice(&url, &["enqueue", "t", "two"]));
    // Wait until the first attempt runs, then ask the server to stop.
    for _ in 0..200 {
        if status(&url, &first)["deliveries"][0]["state"] == "leased" {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    sigterm(&child);
    assert!(child.wait().unwrap().success(), "a graceful stop exits 0");
    // Restart on the same data: the first finished inside the grace period (one
    // ok attempt, nothing interrupted) and the second runs now.
    let (mut child, url) = serve(&data);
    for _ in 0..500 {
        if status(&url, &second)["deliveries"][0]["state"] == "succeeded" {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let one = status(&url, &first);
    let attempts = one["deliveries"][0]["attempts"].as_array().unwrap();
    assert_eq!(one["deliveries"][0]["state"], "succeeded", "{one}");
    assert_eq!(
        attempts.len(),
        1,
        "finished in the grace period, not interrupted: {one}"
    );
    assert_eq!(status(&url, &second)["deliveries"][0]["state"], "succeeded");
    sigterm(&child);
    child.wait().unwrap();
}

#[test]
fn re_registering_swaps_the_module_and_running_attempts_keep_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = serve(&dir.path().join("data"));
    let old = wasm(dir.path(), "old.wasm", &sleeper(800));
    let new = wasm(dir.path(), "new.wasm", &sleeper(1));
    ok(&sluice(
        &url,
        &[
            "register",
            "h",
            "--topic",
            "t",
            "--module",
            &old,
            "--concurrency",
            "1",
        ],
    ));
    let a = ok(&sluice(&url, &["enqueue", "t", "a"]));
    for _ in 0..200 {
        if status(&url, &a)["deliveries"][0]["state"] == "leased" {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    ok(&sluice(
        &url,
        &["register", "h", "--topic", "t", "--module", &new],
    ));
    let b = ok(&sluice(&url, &["enqueue", "t", "b"]));
    for _ in 0..500 {
        if status(&url, &b)["deliveries"][0]["state"] == "succeeded" {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let sha = |id: &str| {
        status(&url, id)["deliveries"][0]["attempts"][0]["module_sha256"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (sha_a, sha_b) = (sha(&a), sha(&b));
    let took = status(&url, &a)["deliveries"][0]["attempts"][0]["duration_ms"]
        .as_u64()
        .unwrap();
    assert!(
        took >= 500,
        "the first attempt was running during the swap ({took} ms)"
    );
    assert_ne!(
        sha_a, sha_b,
        "the attempt running at the swap finished on the old module"
    );
    let shown = ok(&sluice(&url, &["handlers", "show", "h", "--json"]));
    assert!(
        shown.contains(&sha_b),
        "the handler now runs the new module: {shown}"
    );
    sigterm(&child);
    child.wait().unwrap();
}
