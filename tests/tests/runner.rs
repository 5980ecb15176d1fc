//! The runner end to end, in process: real store, real sandbox, example modules.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use sluice::outcome::Outcome;
use sluice::policy::HandlerPolicy;
use sluice::store::{DeliveryState, NewMessage, Store};
use sluice_tests::{Harness, example};

fn fast_policy() -> HandlerPolicy {
    HandlerPolicy {
        timeout_ms: 5_000,
        backoff_ms: 1_000,
        ..HandlerPolicy::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_records_one_ok_attempt_with_stdout() {
    let h = Harness::start().await;
    h.register("greet", "greetings", &example("rust", "ack"), fast_policy())
        .await;
    let id = h.enqueue("greetings", r#"{"name":"Ada"}"#).await;
    let status = h.settle(id).await;
    let d = &status.deliveries[0];
    assert_eq!(d.state, DeliveryState::Succeeded);
    assert_eq!(d.attempts.len(), 1);
    let report = d.attempts[0].report.as_ref().unwrap();
    assert_eq!(report.outcome, Outcome::Ok);
    let stdout = String::from_utf8_lossy(&report.stdout);
    assert!(
        stdout.contains(&id.to_string()),
        "metadata visible to the guest: {stdout}"
    );
    assert_eq!(report.module_sha256.len(), 64);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_succeeds_on_third_attempt_after_two_backoffs() {
    let h = Harness::start().await;
    h.register("flaky", "jobs", &example("rust", "flaky"), fast_policy())
        .await;
    let id = h.enqueue("jobs", "{}").await;
    let status = h.settle(id).await;
    let d = &status.deliveries[0];
    assert_eq!(d.state, DeliveryState::Succeeded);
    let kinds: Vec<_> = d
        .attempts
        .iter()
        .map(|a| a.report.as_ref().unwrap().outcome.kind())
        .collect();
    assert_eq!(kinds, ["exit", "exit", "ok"]);
    // Backoff: attempt 2 started at least 0.8 s (1 s − 20 %) of injected time after attempt 1.
    assert!(
        d.attempts[1]
            .started_at
            .since(d.attempts[0].finished_at.unwrap())
            >= Duration::from_millis(800)
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_goes_to_dlq_after_one_attempt_and_replay_runs_again() {
    let h = Harness::start().await;
    h.register(
        "signups",
        "signups",
        &example("rust", "validate"),
        fast_policy(),
    )
    .await;
    let id = h.enqueue("signups", "not json").await;
    let status = h.settle(id).await;
    let d = &status.deliveries[0];
    assert_eq!(d.state, DeliveryState::Dead);
    assert_eq!(d.attempts.len(), 1);
    assert_eq!(
        d.attempts[0].report.as_ref().unwrap().outcome,
        Outcome::Rejected
    );
    h.store.replay_dead(d.id).await.unwrap();
    let status = h.settle(id).await;
    let d = &status.deliveries[0];
    assert_eq!(d.state, DeliveryState::Dead);
    assert_eq!(d.attempts.len(), 2, "history kept across the replay");
    assert_eq!((d.attempts[1].number, d.attempts[1].round), (1, 1));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_fans_out_once_per_published_message() {
    let h = Harness::start().await;
    h.register(
        "orders",
        "orders",
        &example("rust", "publish"),
        fast_policy(),
    )
    .await;
    h.register("mailer", "email", &example("rust", "ack"), fast_policy())
        .await;
    h.register(
        "analytics",
        "analytics",
        &example("rust", "ack"),
        fast_policy(),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let order = format!(r#"{{"order_id":"o-{i}","email":"u{i}@example.com","total":{i}.5}}"#);
        ids.push(h.enqueue("orders", &order).await);
    }
    for id in ids {
        h.settle(id).await;
    }
    // Downstream work is enqueued by the completions; wait for it to drain.
    let counts = h.drained(&["mailer", "analytics"]).await;
    assert_eq!(
        counts,
        BTreeMap::from([("analytics".to_string(), 5), ("mailer".to_string(), 5)])
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_order_holds_across_a_paused_handler() {
    let h = Harness::start().await;
    h.register(
        "greet",
        "greetings",
        &example("rust", "ack"),
        HandlerPolicy {
            concurrency: 8,
            ..fast_policy()
        },
    )
    .await;
    h.store.set_paused("greet", true).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            h.enqueue_message(NewMessage {
                topic: "greetings".into(),
                payload: Bytes::from(format!("{i}")),
                ordering_key: Some("user-1".into()),
                ..Default::default()
            })
            .await,
        );
    }
    h.store.set_paused("greet", false).await.unwrap();
    for id in &ids {
        h.settle(*id).await;
    }
    // Each keyed message started only after the previous one finished.
    for w in 0..ids.len() - 1 {
        let a = h.store.message(ids[w]).await.unwrap();
        let b = h.store.message(ids[w + 1]).await.unwrap();
        let a_done = a.deliveries[0].attempts[0].finished_at.unwrap();
        let b_start = b.deliveries[0].attempts[0].started_at;
        assert!(
            a_done <= b_start,
            "message {w} finished after {} started",
            w + 1
        );
    }
    h.stop().await;
}

/// A configuration that cannot run here (a memory limit above the sandbox's
/// ceiling, as after a restart with a lower `max_memory_bytes`; a module the
/// sandbox refuses) pauses the handler with the reason and spends no
/// attempt; registering it again, fixed, runs every delivery from attempt 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrunnable_configuration_pauses_the_handler_and_spends_no_attempt() {
    let h = Harness::start_with_sandbox(sluice::sandbox::SandboxConfig {
        pool_instances: 8,
        max_memory_bytes: 32 << 20,
        ..Default::default()
    })
    .await;
    let too_big = HandlerPolicy {
        memory_bytes: 64 << 20,
        ..fast_policy()
    };
    h.register("greet", "greetings", &example("rust", "ack"), too_big)
        .await;
    let garbage = std::env::temp_dir().join(format!("not-wasm-{}.wasm", std::process::id()));
    std::fs::write(&garbage, b"not wasm at all").unwrap();
    let fixed = HandlerPolicy {
        memory_bytes: 16 << 20,
        ..fast_policy()
    };
    h.register("broken", "greetings", &garbage, fixed.clone())
        .await;
    std::fs::remove_file(&garbage).unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(h.enqueue("greetings", &format!("{{\"n\":{i}}}")).await);
    }
    let greet = h.paused("greet").await;
    let reason = greet.paused_reason.clone().unwrap_or_default();
    assert!(
        reason.contains("memory") && reason.contains("32 MiB"),
        "{reason}"
    );
    let broken = h.paused("broken").await;
    let reason = broken.paused_reason.clone().unwrap_or_default();
    assert!(reason.contains("invalid wasm"), "{reason}");
    for id in &ids {
        let status = h.store.message(*id).await.unwrap();
        for d in &status.deliveries {
            assert_eq!(d.state, DeliveryState::Ready, "{d:?}");
            assert!(d.attempts.is_empty(), "an attempt was spent: {d:?}");
        }
    }
    // The fix: registered again within the ceiling, it runs at once.
    let record = h
        .register("greet", "greetings", &example("rust", "ack"), fixed)
        .await;
    assert!(!record.paused && record.paused_reason.is_none());
    h.store.remove_handler("broken").await.unwrap();
    for id in &ids {
        let status = h.settle(*id).await;
        let d = &status.deliveries[0];
        assert_eq!(d.state, DeliveryState::Succeeded, "{d:?}");
        assert_eq!(d.attempts.len(), 1, "from attempt 1: {d:?}");
    }
    h.stop().await;
}
