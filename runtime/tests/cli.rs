//! The `sluice` binary end to end: client commands against the API served on a
//! random loopback port (the one test here that opens a port), `sluice run`
//! against the real sandbox, and error lines.

mod common;
use common::{api_state, json, kill_next, ok, serve, sluice, trap};
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use sluice::store::StoreConfig;

const NOOP: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

/// Writes `hi\n` to stdout, then exits 65 (reject).
const HI_THEN_REJECT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hi\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 3))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $proc_exit (i32.const 65))))"#;

/// Like [`common::fails`], and the error is one line.
fn fails(out: &Output) -> String {
    let err = common::fails(out);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    err
}

fn module(dir: &Path, name: &str, wat: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, wat::parse_str(wat).unwrap()).unwrap();
    path
}

#[test]
fn client_commands_against_a_served_api() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (store, state) = api_state(
        &dir.path().join("data"),
        StoreConfig::default(),
        Some("tok"),
    );
    let url = serve(&rt, state);
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--url", &url, "--token", "tok"]);
        sluice(&all)
    };
    let wasm = module(dir.path(), "noop.wasm", NOOP);
    let wasm = wasm.to_str().unwrap();

    // Without the token: the server's message, one line.
    let err = fails(&sluice(&["stats", "--url", &url]));
    assert!(err.contains("bearer token"), "{err}");

    let out = ok(&run(&[
        "register",
        "resize",
        "--topic",
        "images",
        "--module",
        wasm,
        "--timeout",
        "5s",
        "--memory",
        "32MiB",
        "--retries",
        "0",
        "--env",
        "MODE=test",
    ]));
    assert!(
        out.contains("registered resize v1 on topic images"),
        "{out}"
    );
    let h = json(&run(&["handlers", "show", "resize", "--json"]));
    assert_eq!(h["policy"]["timeout_ms"], 5000);
    assert_eq!(h["policy"]["memory_bytes"], 32 << 20);
    assert_eq!(h["policy"]["env"]["MODE"], "test");
    let list = ok(&run(&["handlers", "list"]));
    assert!(
        list.starts_with("NAME") && list.contains("resize  images  active  5.0 s"),
        "{list}"
    );

    // Enqueue prints only the id.
    let id = ok(&run(&[
        "enqueue",
        "images",
        "cat.png",
        "--key",
        "user:1",
        "--header",
        "trace=abc",
    ]));
    let id = id.trim();
    uuid::Uuid::parse_str(id).unwrap();
    let status = json(&run(&["status", id, "--json"]));
    assert_eq!(status["id"], id);
    assert_eq!(status["topic"], "images");
    assert_eq!(status["headers"]["trace"], "abc");
    assert_eq!(status["deliveries"][0]["handler"], "resize");
    assert_eq!(status["deliveries"][0]["state"], "ready");
    let human = ok(&run(&["status", id]));
    assert!(
        human.contains("HANDLER") && human.contains("resize   ready"),
        "{human}"
    );

    // A dead delivery through the DLQ commands.
    rt.block_on(kill_next(&store, "resize", trap()));
    let status = json(&run(&["status", id, "--json"]));
    let delivery = status["deliveries"][0]["id"].as_str().unwrap().to_string();
    let attempt = &status["deliveries"][0]["attempts"][0];
    assert_eq!(attempt["number"], 1);
    assert_eq!(attempt["outcome"]["kind"], "trap");
    assert_eq!(attempt["stderr"], "it went wrong\n");
    assert_eq!(attempt["duration_ms"], 7);
    let shown = ok(&run(&["attempts", &delivery]));
    assert!(shown.contains("attempt 1  trap unreachable"), "{shown}");
    assert!(shown.contains("backtrace:\n    0: a!explode"), "{shown}");
    assert!(shown.contains("stderr:\n    it went wrong"), "{shown}");
    let dlq = json(&run(&[
        "dlq",
        "list",
        "--handler",
        "resize",
        "--outcome",
        "trap",
        "--json",
    ]));
    assert_eq!(dlq["dead"][0]["id"], delivery.as_str());
    assert!(ok(&run(&["dlq", "show", &delivery])).contains("dead since"));
    let stats = json(&run(&["stats", "--json"]));
    assert_eq!(stats["dlq"], 1);
    assert_eq!(stats["handlers"][0]["counts"]["dead"], 1);
    assert!(ok(&run(&["stats"])).contains("dlq 1"));

    // Purge refuses without --yes when stdin is not a terminal.
    let err = fails(&run(&["dlq", "purge", "--handler", "resize", "--all"]));
    assert!(err.contains("--yes"), "{err}");
    let replayed = json(&run(&[
        "dlq",
        "replay",
        "--handler",
        "resize",
        "--all",
        "--rate",
        "1000/s",
        "--json",
    ]));
    assert_eq!(replayed["count"], 1);
    assert_eq!(
        json(&run(&["status", id, "--json"]))["deliveries"][0]["state"],
        "ready"
    );
    rt.block_on(kill_next(&store, "resize", trap()));
    assert_eq!(
        json(&run(&["dlq", "purge", &delivery, "--yes", "--json"]))["count"],
        1
    );

    // Errors are the server's message on one line.
    let err = fails(&run(&["enqueue", "nowhere", "x"]));
    assert!(err.contains("unknown topic \"nowhere\""), "{err}");
    let err = fails(&run(&["handlers", "pause", "ghost"]));
    assert!(err.contains("unknown handler"), "{err}");
    let bad = module(
        dir.path(),
        "bad.wasm",
        r#"(module (memory (export "memory") 1))"#,
    );
    let err = fails(&run(&[
        "register",
        "bad",
        "--topic",
        "images",
        "--module",
        bad.to_str().unwrap(),
    ]));
    assert!(err.contains("_start"), "{err}");
    let n = json(&run(&[
        "replay",
        "--handler",
        "resize",
        "--since",
        "2000-01-01T00:00:00Z",
        "--json",
    ]));
    assert_eq!(n["count"], 1);
    assert!(ok(&run(&["handlers", "remove", "resize"])).contains("removed resize"));
}

#[test]
fn an_unreachable_server_is_one_clear_line() {
    let err = fails(&sluice(&["stats", "--url", "http://127.0.0.1:1"]));
    assert!(
        err.contains("cannot reach the sluice server at http://127.0.0.1:1"),
        "{err}"
    );
}

#[test]
fn run_invokes_locally_and_exits_as_the_module_did() {
    let dir = tempfile::tempdir().unwrap();
    let m = module(dir.path(), "hi.wasm", HI_THEN_REJECT);
    let out = sluice(&["run", m.to_str().unwrap(), "payload"]);
    assert_eq!(out.status.code(), Some(65));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("attempt 1  rejected (exit 65)"), "{text}");
    assert!(text.contains("stdout:\n    hi\n"), "{text}");

    let out = sluice(&["run", m.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(65));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["attempt"]["outcome"]["kind"], "rejected");
    assert_eq!(v["attempt"]["stdout"], "hi\n");

    let ok_module = module(dir.path(), "noop.wasm", NOOP);
    assert_eq!(
        sluice(&["run", ok_module.to_str().unwrap()]).status.code(),
        Some(0)
    );

    let bad = module(
        dir.path(),
        "bad.wasm",
        r#"(module (memory (export "memory") 1))"#,
    );
    let err = fails(&sluice(&["run", bad.to_str().unwrap()]));
    assert!(err.contains("_start"), "{err}");
}

/// `sluice run` takes `register`'s egress flags: without them a request is
/// refused (and shown under the attempt); with the origin and the loopback
/// address allowed it reaches a server this test runs on a loopback port.
#[test]
fn run_takes_the_egress_flags() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        // One connection: the allowed run (the refused one never connects).
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf).unwrap();
        conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            .unwrap();
    });
    let url = format!("http://127.0.0.1:{port}/ping");
    // GET url; exit 0 when the call returns 0, else 3.
    let wat = format!(
        r#"(module
  (import "sluice" "http_request"
    (func $http (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "GET")
  (data (i32.const 120) "{url}")
  (func (export "_start")
    (if (call $http (i32.const 100) (i32.const 3) (i32.const 120) (i32.const {len})
          (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
          (i32.const 1024) (i32.const 4096) (i32.const 200))
      (then (call $exit (i32.const 3))))))"#,
        len = url.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let m = module(dir.path(), "ping.wasm", &wat);
    let m = m.to_str().unwrap();
    let origin = format!("http://127.0.0.1:{port}");

    let out = sluice(&["run", m]);
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(&format!("http GET {origin}")), "{text}");
    assert!(text.contains("denied_origin"), "{text}");

    let out = sluice(&["run", m, "--allow-origin", &origin, "--json"]);
    assert_eq!(out.status.code(), Some(3), "loopback is not named");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["attempt"]["egress"][0]["outcome"], "denied_address");

    let out = sluice(&[
        "run",
        m,
        "--allow-origin",
        &origin,
        "--allow-address",
        "127.0.0.1",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains(&format!("http GET {origin} → 200")), "{text}");
    server.join().unwrap();

    let err = fails(&sluice(&[
        "run",
        m,
        "--allow-origin",
        "https://x.example/path",
    ]));
    assert!(
        err.contains("egress.allow") && err.contains("x.example/path"),
        "{err}"
    );
}
