//! The dashboard in headless Chromium: a real `sluice serve` with a token and
//! a read-only token, one handler whose module writes to stderr and traps,
//! and `tests/browser/dashboard.mjs` (playwright-core driving Debian's
//! `chromium`) logging in, searching by idempotency key, opening the dead
//! delivery, being refused a replay with the read-only token, replaying it
//! after the fix and watching it succeed without a reload, pausing and
//! resuming; then the Schedules page: a schedule created through the API
//! listed, paused, resumed and triggered from the page (CSRF-checked posts; a
//! forged token refused), its hostile payload and header shown as text on
//! the triggered message's page, and a hostile id named as text on the
//! unknown-schedule page, with nothing injected or run. Screenshots land in
//! `<target>/tmp/dashboard-screenshots/`.
//!
//! Needs `node`, `/usr/bin/chromium` and `tests/browser/node_modules`
//! (`scripts/install-browser.sh`, run by `make test`); without them it fails
//! naming that script.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod common;

const TOKEN: &str = "browser-admin";
const READ: &str = "browser-reader";
const KEY: &str = "order-4711";

/// Writes "bad input" to stderr, then traps in a named function.
const EXPLODES: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "bad input: order 4711\n")
  (func $explode unreachable)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 22))
    (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $explode)))"#;
/// Succeeds.
const FIXED: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

fn sluice(url: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("SLUICE_URL", url)
        .env("SLUICE_TOKEN", TOKEN)
        .output()
        .expect("run sluice");
    assert!(
        out.status.success(),
        "sluice {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn serve(data: &Path) -> (common::Server, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--token",
        TOKEN,
        "--read-token",
        READ,
    ])
    .arg("--data-dir")
    .arg(data)
    .env_remove("SLUICE_CONFIG");
    common::listening(&mut cmd)
}

#[test]
fn the_dashboard_in_headless_chromium() {
    let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser");
    assert!(
        project.join("node_modules/playwright-core").is_dir()
            && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs chromium and playwright-core: run scripts/install-browser.sh"
    );
    let dir = tempfile::tempdir().unwrap();
    let explodes = dir.path().join("explodes.wasm");
    std::fs::write(&explodes, wat::parse_str(EXPLODES).unwrap()).unwrap();
    let fixed = dir.path().join("fixed.wasm");
    std::fs::write(&fixed, wat::parse_str(FIXED).unwrap()).unwrap();
    let (_server, url) = serve(&dir.path().join("data"));

    let module = explodes.to_str().unwrap();
    sluice(
        &url,
        &[
            "register",
            "h",
            "--topic",
            "t",
            "--module",
            module,
            "--retries",
            "0",
        ],
    );
    sluice(
        &url,
        &["enqueue", "t", "{\"order\":4711}", "--idempotency-key", KEY],
    );
    // Wait for the state, not for a duration: the delivery dies on its only attempt.
    let mut dead = false;
    for _ in 0..600 {
        if sluice(&url, &["dlq", "list"]).contains("unreachable") {
            dead = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(dead, "the delivery reached the DLQ");

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("node")
        .arg(project.join("dashboard.mjs"))
        .args([&url, TOKEN, READ, KEY])
        .arg(&fixed)
        .arg(&shots)
        .output()
        .expect("run node (install it with scripts/install-browser.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser test failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    for shot in [
        "overview.png",
        "failed-attempt.png",
        "dlq.png",
        "schedules.png",
    ] {
        assert!(shots.join(shot).is_file(), "screenshot {shot}");
    }
}
