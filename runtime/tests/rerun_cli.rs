//! `sluice run --delivery`: a delivery that failed on the server (a real
//! runner ran the real module) is re-run locally with the exact module that
//! ran it, reproducing outcome kind, stdout and stderr; `--module` runs a
//! fixed build on the same input, which succeeds.

mod common;
use std::sync::Arc;
use std::time::Duration;

use common::{json, serve, sluice, text};
use sluice::clock::SystemClock;
use sluice::metrics::Metrics;
use sluice::policy::HandlerPolicy;
use sluice::store::conformance::helpers::{msg, register};
use sluice::store::{DeliveryState, StoreConfig};
use sluice::worker::{Runner, RunnerConfig};

/// Echoes its payload (stdin) to stdout, writes `boom` to stderr, exits 3.
const ECHO_THEN_FAIL: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "boom\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 128))
    (i32.store (i32.const 4) (i32.const 256))
    (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 4) (i32.load (i32.const 8)))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 12)))
    (i32.store (i32.const 16) (i32.const 64))
    (i32.store (i32.const 20) (i32.const 5))
    (drop (call $fd_write (i32.const 2) (i32.const 16) (i32.const 1) (i32.const 12)))
    (call $proc_exit (i32.const 3))))"#;

const FIXED: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

#[test]
fn a_failed_delivery_reruns_locally_as_recorded_and_a_fixed_module_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (store, state) = common::api_state(&dir.path().join("data"), StoreConfig::default(), None);
    let policy = HandlerPolicy {
        retries: 0,
        ..HandlerPolicy::default()
    };
    let wasm = wat::parse_str(ECHO_THEN_FAIL).unwrap();
    let _in_runtime = rt.enter();
    let runner = Runner::start(
        store.clone(),
        state.sandbox.clone(),
        Arc::new(Metrics::default()),
        Arc::new(SystemClock),
        RunnerConfig {
            poll_interval: Duration::from_millis(20),
            ..RunnerConfig::default()
        },
    );
    let url = serve(&rt, state);
    let delivery = rt.block_on(async {
        register(store.as_ref(), "h", "t", policy, wasm.into()).await;
        let id = store.enqueue(vec![msg("t", "the payload")]).await.unwrap()[0].id;
        for _ in 0..1000 {
            let m = store.message(id).await.unwrap();
            if m.deliveries
                .first()
                .is_some_and(|d| d.state == DeliveryState::Dead)
            {
                return m.deliveries[0].id;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the delivery did not die");
    });
    rt.block_on(runner.shutdown(Duration::from_secs(5)));
    // A newer build registered meanwhile: the re-run still uses the one that ran.
    rt.block_on(register(
        store.as_ref(),
        "h",
        "t",
        HandlerPolicy::default(),
        wat::parse_str(FIXED).unwrap().into(),
    ));

    let id = delivery.to_string();
    let cache = dir.path().join("cache");
    let cache = cache.to_str().unwrap();
    let out = sluice(&[
        "run",
        "--delivery",
        &id,
        "--url",
        &url,
        "--json",
        "--cache-dir",
        cache,
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "exits as the module did: {}",
        text(&out)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["same"], true, "{v:#}");
    assert_eq!(v["recorded"]["outcome"]["kind"], "exit");
    assert_eq!(v["local"]["attempt"]["outcome"]["kind"], "exit");
    assert_eq!(v["local"]["attempt"]["stdout"], "the payload");
    assert_eq!(v["local"]["attempt"]["stderr"], "boom\n");
    assert_eq!(
        v["local"]["attempt"]["module_sha256"], v["recorded"]["module_sha256"],
        "the exact module that ran"
    );
    let human = text(&sluice(&[
        "run",
        "--delivery",
        &id,
        "--url",
        &url,
        "--cache-dir",
        cache,
    ]));
    assert!(
        human.contains("same outcome, stdout and stderr as recorded"),
        "{human}"
    );

    let fixed = dir.path().join("fixed.wasm");
    std::fs::write(&fixed, wat::parse_str(FIXED).unwrap()).unwrap();
    let v = json(&sluice(&[
        "run",
        "--delivery",
        &id,
        "--module",
        fixed.to_str().unwrap(),
        "--url",
        &url,
        "--json",
        "--cache-dir",
        cache,
    ]));
    assert_eq!(v["local"]["attempt"]["outcome"]["kind"], "ok", "{v:#}");
    assert_eq!(v["same"], false);

    let out = sluice(&["run", "--delivery", &id, "--attempt", "4", "--url", &url]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no finished attempt 4"));
}
