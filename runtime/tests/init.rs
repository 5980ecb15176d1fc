//! `sluice init <lang> <name>` for every supported language, from nothing to
//! a succeeded delivery in three commands against a real `sluice serve`:
//!
//! ```text
//! sluice init <lang> hello-<lang>
//! sluice apply -f hello-<lang>/sluice.toml      # runs build.sh, registers
//! sluice enqueue hello-<lang> '{"n":1}'
//! ```
//!
//! The toolchains are the ones `scripts/install-toolchains.sh` installs into
//! the repository (`make test` runs it first); they are handed to `build.sh`
//! the way a user would: on `PATH` or through the variables it names. An
//! AssemblyScript project installs its compiler with npm on first build; here
//! it reuses the repository's `node_modules`, so the test needs no network.

mod common;
use common::listening;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const LANGUAGES: [&str; 7] = ["rust", "c", "zig", "assemblyscript", "go", "python", "js"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A toolchain of the repository's, or a panic naming the command that installs it.
fn tool(path: &str) -> PathBuf {
    let p = repo().join(path);
    assert!(
        p.exists(),
        "{} is missing: install the toolchains with scripts/install-toolchains.sh (make test does)",
        p.display()
    );
    p
}

/// `sluice ARGS` in `dir`, with the toolchains in its environment.
fn sluice(dir: &Path, url: &str, args: &[&str]) -> Output {
    let zig = tool(".tools/zig");
    let go = tool("target/lang-tools/venv/bin/go");
    let py = tool("target/lang-tools/venv/bin/componentize-py");
    let js = tool("target/lang-tools/js/node_modules/@bytecodealliance/componentize-js/src/cli.js");
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .current_dir(dir)
        .env("SLUICE_URL", url)
        .env_remove("SLUICE_TOKEN")
        .env("ZIG", "python3 -m ziglang")
        .env("PYTHONPATH", zig)
        .env("GO", go)
        .env("GOTOOLCHAIN", "local")
        .env("COMPONENTIZE_PY", py)
        .env("COMPONENTIZE_JS", format!("node {}", js.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn init_apply_enqueue_succeeds_in_every_language() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--no-ui", "--data-dir"])
        .arg(dir.path().join("data"))
        .env_remove("SLUICE_CONFIG")
        .env_remove("SLUICE_TOKEN");
    let (_server, url) = listening(&mut cmd);
    let projects = dir.path().join("projects");
    std::fs::create_dir_all(&projects).unwrap();

    for lang in LANGUAGES {
        let name = format!("hello-{lang}");
        let started = Instant::now();
        ok(&sluice(&projects, &url, &["init", lang, &name]), "init");
        if lang == "assemblyscript" {
            std::os::unix::fs::symlink(
                tool("examples/assemblyscript/node_modules"),
                projects.join(&name).join("node_modules"),
            )
            .unwrap();
        }
        let manifest = format!("{name}/sluice.toml");
        let applied = ok(&sluice(&projects, &url, &["apply", "-f", &manifest]), lang);
        assert!(
            applied.contains(&format!("create    handler {name} (topic {name})")),
            "{applied}"
        );
        let id = ok(
            &sluice(&projects, &url, &["enqueue", &name, r#"{"n":1}"#]),
            "enqueue",
        );

        let deadline = Instant::now() + Duration::from_secs(120);
        let delivery = loop {
            let status: Value = serde_json::from_str(&ok(
                &sluice(&projects, &url, &["status", &id, "--json"]),
                "status",
            ))
            .unwrap();
            let d = status["deliveries"][0].clone();
            if d["state"] == "succeeded" {
                break d;
            }
            assert!(
                ["ready", "leased", "scheduled"].contains(&d["state"].as_str().unwrap()),
                "{lang}: {d:#}"
            );
            assert!(Instant::now() < deadline, "{lang}: not settled: {d:#}");
            std::thread::sleep(Duration::from_millis(50));
        };
        let stdout = delivery["attempts"][0]["stdout"].as_str().unwrap();
        assert!(
            stdout.contains(&format!(
                "{name} handled {id} on {name} (attempt 1, 7 bytes)"
            )),
            "{lang}: {stdout:?}"
        );
        eprintln!(
            "{lang}: init, apply, enqueue, succeeded in {:.1?}",
            started.elapsed()
        );
    }
}
