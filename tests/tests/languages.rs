//! One conformance scenario, run through the real runner for the handlers of
//! every language (ABI 1 modules: Rust, C, Zig, AssemblyScript, Go;
//! components of the sluice world: Python, JavaScript): ack with metadata visible, reject → DLQ after one attempt,
//! fail-fail-succeed, publish → each downstream message exactly once (also when
//! the publisher fails after publishing and is retried), limits alike.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sluice::outcome::Outcome;
use sluice::policy::HandlerPolicy;
use sluice::sandbox::Limits;
use sluice::store::DeliveryState;
use sluice_tests::{Harness, example};

const LANGUAGES: [&str; 7] = ["rust", "c", "zig", "assemblyscript", "go", "python", "js"];

fn policy() -> HandlerPolicy {
    HandlerPolicy {
        timeout_ms: 5_000,
        ..HandlerPolicy::default()
    }
}

/// Compiles (or loads from the shared cache) every example of `lang` before
/// the scenario, as registration through the API does, so no attempt waits
/// out a component's compile.
async fn precompile(h: &Harness, lang: &str) {
    for name in ["ack", "validate", "flaky", "publish"] {
        let wasm = std::fs::read(example(lang, name)).unwrap();
        let sandbox = h.sandbox.clone();
        tokio::task::spawn_blocking(move || sandbox.load(&wasm, &Limits::default()))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{lang} {name}: {e}"));
    }
}

async fn scenario(lang: &str) {
    let h = Harness::start_with_shared_cache().await;
    precompile(&h, lang).await;
    let ack: PathBuf = example(lang, "ack");
    h.register("ack", "greetings", &ack, policy()).await;
    h.register("validate", "signups", &example(lang, "validate"), policy())
        .await;
    h.register("flaky", "jobs", &example(lang, "flaky"), policy())
        .await;
    let mut fail_first = policy();
    fail_first
        .env
        .insert("FAIL_FIRST_ATTEMPT".into(), "1".into());
    h.register("orders", "orders", &example(lang, "publish"), fail_first)
        .await;
    h.register("mailer", "email", &example("rust", "ack"), policy())
        .await;
    h.register("analytics", "analytics", &example("rust", "ack"), policy())
        .await;

    // Ack, with the metadata visible to the guest.
    let id = h.enqueue("greetings", r#"{"name":"Ada"}"#).await;
    let s = h.settle(id).await;
    let d = &s.deliveries[0];
    assert_eq!(d.state, DeliveryState::Succeeded, "{lang} ack: {d:#?}");
    let out = String::from_utf8_lossy(&d.attempts[0].report.as_ref().unwrap().stdout).into_owned();
    assert!(
        out.contains(&id.to_string()) && out.contains("greetings"),
        "{lang} ack stdout lacks metadata: {out:?}"
    );

    // Reject → DLQ after exactly one attempt; valid input acks.
    let bad = h.enqueue("signups", "{not json").await;
    let good = h.enqueue("signups", r#"{"email":"ada@example.com"}"#).await;
    let s = h.settle(bad).await;
    assert_eq!(
        s.deliveries[0].state,
        DeliveryState::Dead,
        "{lang} validate"
    );
    assert_eq!(
        s.deliveries[0].attempts.len(),
        1,
        "{lang}: a rejection is not retried"
    );
    assert_eq!(
        s.deliveries[0].attempts[0].report.as_ref().unwrap().outcome,
        Outcome::Rejected
    );
    assert_eq!(
        h.settle(good).await.deliveries[0].state,
        DeliveryState::Succeeded,
        "{lang} valid json"
    );

    // Fail, fail, succeed on attempt 3.
    let job = h.enqueue("jobs", "{}").await;
    let s = h.settle(job).await;
    let kinds: Vec<_> = s.deliveries[0]
        .attempts
        .iter()
        .map(|a| a.report.as_ref().unwrap().outcome.kind())
        .collect();
    assert_eq!(kinds, ["exit", "exit", "ok"], "{lang} flaky");
    assert_eq!(s.deliveries[0].state, DeliveryState::Succeeded);

    // Publish: attempt 1 publishes then fails; attempt 2 publishes and succeeds.
    // Downstream sees each message once.
    let orders = 3;
    for i in 0..orders {
        let order = format!(r#"{{"order_id":"o-{i}","email":"u{i}@example.com","total":{i}.5}}"#);
        let id = h.enqueue("orders", &order).await;
        let s = h.settle(id).await;
        let kinds: Vec<_> = s.deliveries[0]
            .attempts
            .iter()
            .map(|a| a.report.as_ref().unwrap().outcome.kind())
            .collect();
        assert_eq!(
            kinds,
            ["exit", "ok"],
            "{lang} publish fails once after publishing"
        );
    }
    let counts = h.drained(&["mailer", "analytics"]).await;
    assert_eq!(
        counts,
        BTreeMap::from([("analytics".into(), orders), ("mailer".into(), orders)]),
        "{lang} outbox"
    );

    // Limits apply alike: a fuel budget too small for any handler.
    h.register(
        "starved",
        "starved",
        &ack,
        HandlerPolicy {
            fuel: Some(50),
            ..policy()
        },
    )
    .await;
    let id = h.enqueue("starved", "{}").await;
    let s = h.settle(id).await;
    let first = s.deliveries[0].attempts[0].report.as_ref().unwrap();
    assert_eq!(first.outcome.kind(), "fuel", "{lang}: {:?}", first.outcome);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_handlers_conform() {
    scenario(LANGUAGES[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_handlers_conform() {
    scenario(LANGUAGES[1]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zig_handlers_conform() {
    scenario(LANGUAGES[2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assemblyscript_handlers_conform() {
    scenario(LANGUAGES[3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_handlers_conform() {
    scenario(LANGUAGES[4]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_handlers_conform() {
    scenario(LANGUAGES[5]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_handlers_conform() {
    scenario(LANGUAGES[6]).await;
}

/// The third kind of module, a plain `wasi:cli` command component: the ABI 1
/// contract (metadata in the environment), `run` returning err is exit 1 and
/// retried, ok acknowledges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_components_run_under_the_abi1_contract() {
    let h = Harness::start_with_shared_cache().await;
    let path = example("js", "command");
    let wasm = std::fs::read(&path).unwrap();
    let sandbox = h.sandbox.clone();
    let loaded = tokio::task::spawn_blocking(move || sandbox.load(&wasm, &Limits::default()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.info().kind, sluice::sandbox::GuestKind::Command);
    h.register("command", "commands", &path, policy()).await;
    let id = h.enqueue("commands", "{}").await;
    let s = h.settle(id).await;
    let d = &s.deliveries[0];
    let reports: Vec<_> = d
        .attempts
        .iter()
        .map(|a| a.report.as_ref().unwrap())
        .collect();
    let kinds: Vec<_> = reports.iter().map(|r| r.outcome.kind()).collect();
    assert_eq!(kinds, ["exit", "ok"], "{d:#?}");
    assert_eq!(reports[0].outcome, Outcome::Exit { code: 1 });
    assert_eq!(d.state, DeliveryState::Succeeded);
    let out = String::from_utf8_lossy(&reports[1].stdout).into_owned();
    assert!(
        out.contains(&format!("command topic=commands id={id} attempt=2")),
        "{out:?}"
    );
    h.stop().await;
}
