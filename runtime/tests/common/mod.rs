//! Helpers shared by the tests that drive the `sluice` binary.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use sluice::outcome::Outcome;
use sluice::policy::Disposition;
use sluice::store::{AttemptReport, Store};

/// The binary with a clean environment: no server settings, no `NO_COLOR`
/// (piped output must be plain by itself), stdin not a terminal.
pub fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env_remove("SLUICE_URL")
        .env_remove("SLUICE_TOKEN")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Stdout as text.
pub fn text(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Asserts success and plain (uncoloured) output; returns stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = text(out);
    assert!(
        !stdout.contains('\x1b'),
        "piped output is plain: {stdout:?}"
    );
    stdout
}

/// Asserts success; parses stdout as JSON.
pub fn json(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).unwrap()
}

/// Asserts failure with an `error: ...` message on stderr; returns it.
pub fn fails(out: &Output) -> String {
    assert!(!out.status.success(), "unexpected success: {}", text(out));
    let err = String::from_utf8(out.stderr.clone()).unwrap();
    assert!(err.starts_with("error: "), "{err}");
    err
}

/// Leases the handler's next delivery and fails it into the DLQ with `outcome`,
/// as a worker would after its last attempt.
pub async fn kill_next(store: &Arc<dyn Store>, handler: &str, outcome: Outcome) {
    let leased = store.lease(handler, 1).await.unwrap().pop().unwrap();
    let reason = format!("attempts exhausted (1 of 1): {}", outcome.summary());
    let report = AttemptReport {
        outcome,
        duration_ms: 7,
        module_sha256: "cd".repeat(32),
        stdout: Bytes::new(),
        stdout_truncated: false,
        stderr: Bytes::from_static(b"it went wrong\n"),
        stderr_truncated: false,
        peak_memory_bytes: 131072,
        fuel_used: None,
        egress: Vec::new(),
    };
    store
        .fail(&leased.lease, report, Disposition::Dead { reason })
        .await
        .unwrap();
}

/// An `unreachable` trap with a named backtrace.
pub fn trap() -> Outcome {
    Outcome::Trap {
        trap: "unreachable".into(),
        message: "wasm trap: wasm `unreachable` instruction executed".into(),
        backtrace: "0: a!explode\n1: a!handle\n2: _start".into(),
    }
}

/// A store in `dir` and the API over it, with a small sandbox pool; the API's
/// body limits follow `config`.
pub fn api_state(
    dir: &std::path::Path,
    config: sluice::store::StoreConfig,
    token: Option<&str>,
) -> (Arc<dyn Store>, sluice::api::ApiState) {
    api_state_on(dir, config, token, Arc::new(sluice::clock::SystemClock))
}

/// [`api_state`] with the store and the API on `clock`.
pub fn api_state_on(
    dir: &std::path::Path,
    config: sluice::store::StoreConfig,
    token: Option<&str>,
    clock: Arc<dyn sluice::clock::Clock>,
) -> (Arc<dyn Store>, sluice::api::ApiState) {
    use sluice::sandbox::{Sandbox, SandboxConfig};
    let max_payload_bytes = config.max_payload_bytes;
    let store: Arc<dyn Store> =
        Arc::new(sluice::store::EmbeddedStore::open(dir, config, clock.clone()).unwrap());
    let sandbox = Sandbox::new(SandboxConfig {
        pool_instances: 2,
        max_memory_bytes: 256 << 20,
        ..SandboxConfig::default()
    })
    .unwrap();
    let mut state = sluice::api::ApiState::new(
        store.clone(),
        sandbox,
        Arc::new(sluice::metrics::Metrics::default()),
        token.map(str::to_string),
    );
    state.max_payload_bytes = max_payload_bytes;
    state.clock = clock;
    (store, state)
}

/// Serves `state` on a free loopback port on `rt`; returns its base URL.
pub fn serve(rt: &tokio::runtime::Runtime, state: sluice::api::ApiState) -> String {
    let addr = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = sluice::api::router(state);
        tokio::spawn(sluice::api::server::serve(
            listener,
            app,
            std::future::pending(),
        ));
        addr
    });
    format!("http://{addr}")
}

/// A spawned `sluice serve`, killed and reaped when dropped, so a test that
/// fails midway leaves no server behind.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Server {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// Spawns `cmd` (a `sluice serve`) and returns its URL once it listens (the
/// first line it prints).
pub fn listening(cmd: &mut Command) -> (Server, String) {
    let mut child = cmd
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    (Server(child), url)
}
