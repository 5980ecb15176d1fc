//! Observability end to end, in process (issue #7): a handler fails in each
//! way through the real runner, and the recorded attempts, their rendering
//! (human and JSON) and `/metrics` (scraped from the real router, no port)
//! show it. Time is the harness's `ManualClock`; nothing waits out a delay.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use sluice::api::dto::{DeliveryView, MessageView};
use sluice::api::{ApiState, router};
use sluice::cli::render::{self, Style};
use sluice::outcome::Outcome;
use sluice::policy::HandlerPolicy;
use sluice::store::{DeliveryState, DeliveryStatus, MessageId, Store};
use sluice_tests::{Harness, repo_root};
use tower::ServiceExt;

/// A sandbox fixture (`runtime/tests/fixtures/NAME.wat`) compiled to a module file.
fn fixture(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    let wat = repo_root().join(format!("runtime/tests/fixtures/{name}.wat"));
    let wasm = wat::parse_file(&wat).unwrap_or_else(|e| panic!("{}: {e}", wat.display()));
    let path = dir.path().join(format!("{name}.wasm"));
    std::fs::write(&path, wasm).unwrap();
    path
}

/// No retries: the first failure is final, so one attempt tells the story.
fn once(policy: HandlerPolicy) -> HandlerPolicy {
    HandlerPolicy {
        retries: 0,
        ..policy
    }
}

fn base() -> HandlerPolicy {
    HandlerPolicy {
        timeout_ms: 5_000,
        backoff_ms: 1_000,
        concurrency: 2,
        ..HandlerPolicy::default()
    }
}

/// The API over the harness's store, metrics and clock.
fn api(h: &Harness) -> axum::Router {
    let mut state = ApiState::new(h.store.clone(), h.sandbox.clone(), h.metrics.clone(), None);
    state.clock = Arc::new(h.clock.clone());
    router(state)
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, String) {
    let res = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let body = to_bytes(res.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// One sample's value from the exposition text; panics naming it when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
        .parse()
        .unwrap()
}

async fn scrape(app: &axum::Router) -> String {
    let (status, text) = get(app, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    text
}

/// Scrapes until `series` reads `value`, and returns that scrape. The worker
/// counts a settled delivery just after the store shows it settled, so a test
/// that waited for the state polls for the counter too.
async fn scrape_until(app: &axum::Router, series: &str, value: f64) -> String {
    for _ in 0..2000 {
        let text = scrape(app).await;
        if sample(&text, series) == value {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let text = scrape(app).await;
    panic!("{series} never reached {value}:\n{text}");
}

/// Waits until the delivery is in `state`.
async fn wait_state(h: &Harness, id: MessageId, state: DeliveryState) -> DeliveryStatus {
    for _ in 0..4000 {
        let s = h.store.message(id).await.unwrap();
        if s.deliveries[0].state == state {
            return s.deliveries.into_iter().next().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!(
        "{id} never reached {state:?}: {:#?}",
        h.store.message(id).await
    );
}

/// Runs one message through a handler that fails once and for all; returns the
/// dead delivery, after checking its record, JSON and human renderings agree.
async fn dead_after_one(
    h: &Harness,
    name: &str,
    module: &PathBuf,
    policy: HandlerPolicy,
) -> (DeliveryStatus, String) {
    h.register(name, name, module, once(policy)).await;
    let id = h.enqueue(name, "payload").await;
    let status = h.settle(id).await;
    let d = status.deliveries[0].clone();
    assert_eq!(d.state, DeliveryState::Dead, "{d:#?}");
    assert_eq!(d.attempts.len(), 1, "{d:#?}");
    let a = &d.attempts[0];
    assert_eq!((a.number, a.round), (1, 0));
    assert!(a.finished_at.unwrap() >= a.started_at);
    let report = a.report.as_ref().expect("a finished attempt has a report");
    let registered = h.store.handler(name).await.unwrap();
    assert_eq!(report.module_sha256, registered.module_sha256);

    // JSON: the API's document for the message carries the whole record.
    let view = MessageView::from(status.clone());
    let json = serde_json::to_value(&view).unwrap();
    let attempt = &json["deliveries"][0]["attempts"][0];
    assert_eq!(attempt["number"], 1);
    assert_eq!(attempt["outcome"]["kind"], report.outcome.kind());
    assert_eq!(attempt["module_sha256"], registered.module_sha256.as_str());
    assert_eq!(attempt["duration_ms"], report.duration_ms);
    assert_eq!(attempt["peak_memory_bytes"], report.peak_memory_bytes);
    assert!(attempt["started_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(json["deliveries"][0]["state"], "dead");
    let back: MessageView = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, view, "the CLI decodes exactly what the server sent");

    // Human, as `sluice status` and `sluice dlq show` print it (plain: piped).
    let human = render::delivery(&DeliveryView::from(d.clone()), &Style::plain());
    assert!(
        human.contains(&format!(
            "attempt 1  {}  {}",
            report.outcome.summary(),
            render::millis(report.duration_ms)
        )),
        "{human}"
    );
    assert!(
        human.contains(&format!("module {}", &registered.module_sha256[..12])),
        "{human}"
    );
    assert!(human.contains("peak memory "), "{human}");
    assert!(human.contains("dead since "), "{human}");
    assert!(!human.contains('\x1b'), "plain output has no escapes");
    let status_text = render::message(&view, &Style::plain());
    assert!(status_text.contains(&human), "{status_text}");
    (d, human)
}

fn outcome(d: &DeliveryStatus) -> &Outcome {
    &d.attempts[0].report.as_ref().unwrap().outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_is_recorded_and_rendered() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (d, human) = dead_after_one(&h, "exits", &fixture(&dir, "exit_3"), base()).await;
    assert_eq!(outcome(&d), &Outcome::Exit { code: 3 });
    assert!(human.contains("attempt 1  exit 3"), "{human}");
    assert_eq!(
        d.dead_reason.as_deref(),
        Some("attempts exhausted (1 of 1): exit 3")
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_is_recorded_with_its_backtrace_and_rendered() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (d, human) = dead_after_one(&h, "traps", &fixture(&dir, "unreachable"), base()).await;
    let Outcome::Trap {
        trap,
        message,
        backtrace,
    } = outcome(&d)
    else {
        panic!("{:?}", outcome(&d));
    };
    assert_eq!(trap, "unreachable");
    assert!(message.contains("unreachable"), "{message}");
    let (explode, handle) = (
        backtrace.find("explode").expect(backtrace),
        backtrace.find("handle").expect(backtrace),
    );
    assert!(explode < handle, "innermost frame first:\n{backtrace}");
    assert!(human.contains("attempt 1  trap unreachable: "), "{human}");
    assert!(human.contains("  backtrace:\n"), "{human}");
    for line in backtrace.trim_end().lines() {
        assert!(
            human.contains(&format!("      {line}\n")),
            "{line:?} in {human}"
        );
    }
    let json = serde_json::to_value(DeliveryView::from(d.clone())).unwrap();
    assert_eq!(json["attempts"][0]["outcome"]["trap"], "unreachable");
    assert_eq!(
        json["attempts"][0]["outcome"]["backtrace"],
        backtrace.as_str()
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_memory_and_fuel_limits_are_recorded_and_rendered() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();

    let policy = HandlerPolicy {
        timeout_ms: 200,
        ..base()
    };
    let (d, human) = dead_after_one(&h, "spins", &fixture(&dir, "infinite_loop"), policy).await;
    assert_eq!(outcome(&d), &Outcome::Timeout { limit_ms: 200 });
    assert!(human.contains("attempt 1  timeout after 200 ms"), "{human}");

    let policy = HandlerPolicy {
        memory_bytes: 2 << 20,
        ..base()
    };
    let (d, human) = dead_after_one(&h, "grows", &fixture(&dir, "memory_grow_bomb"), policy).await;
    assert_eq!(
        outcome(&d),
        &Outcome::MemoryLimit {
            limit_bytes: 2 << 20
        }
    );
    let report = d.attempts[0].report.as_ref().unwrap();
    assert!(report.peak_memory_bytes <= 2 << 20, "{report:?}");
    assert!(report.peak_memory_bytes >= 1 << 20, "{report:?}");
    assert!(
        human.contains("attempt 1  memory limit of 2097152 bytes exceeded"),
        "{human}"
    );

    let policy = HandlerPolicy {
        fuel: Some(100_000),
        ..base()
    };
    let (d, human) = dead_after_one(&h, "burns", &fixture(&dir, "infinite_loop"), policy).await;
    assert_eq!(outcome(&d), &Outcome::FuelExhausted { limit: 100_000 });
    let report = d.attempts[0].report.as_ref().unwrap();
    assert_eq!(
        report.fuel_used,
        Some(100_000),
        "metered: fuel used recorded"
    );
    assert!(
        human.contains("attempt 1  fuel exhausted (100000)"),
        "{human}"
    );
    assert!(human.contains("  fuel 100000\n"), "{human}");
    let json = serde_json::to_value(DeliveryView::from(d)).unwrap();
    assert_eq!(json["attempts"][0]["fuel_used"], 100_000);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_is_recorded_and_rendered_without_retries() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Retries allowed, yet a rejection dead-letters at once.
    h.register("rejects", "rejects", &fixture(&dir, "exit_65"), base())
        .await;
    let id = h.enqueue("rejects", "bad").await;
    let d = h.settle(id).await.deliveries.remove(0);
    assert_eq!(d.state, DeliveryState::Dead);
    assert_eq!(d.attempts.len(), 1);
    assert_eq!(outcome(&d), &Outcome::Rejected);
    let human = render::delivery(&DeliveryView::from(d.clone()), &Style::plain());
    assert!(human.contains("attempt 1  rejected (exit 65)"), "{human}");
    assert!(
        human.contains("rejected by the handler (exit 65)"),
        "the dead reason: {human}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_recorded_as_interrupted() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = api(&h);
    // Sleeps in a host call for longer than the (real) 3 s timeout; the lease
    // (injected time) expires first.
    let policy = once(HandlerPolicy {
        timeout_ms: 3_000,
        lease_ms: Some(10_000),
        ..base()
    });
    let handler = h
        .register("sleeps", "sleeps", &fixture(&dir, "sleep_forever"), policy)
        .await;
    let id = h.enqueue("sleeps", "zzz").await;
    wait_state(&h, id, DeliveryState::Leased).await;
    h.clock.advance(Duration::from_secs(11));
    let d = wait_state(&h, id, DeliveryState::Dead).await;
    assert_eq!(d.attempts.len(), 1, "{d:#?}");
    assert_eq!(
        outcome(&d),
        &Outcome::Interrupted {
            reason: "lease expired".into()
        }
    );
    assert_eq!(
        d.attempts[0].report.as_ref().unwrap().module_sha256,
        handler.module_sha256
    );
    let human = render::delivery(&DeliveryView::from(d), &Style::plain());
    assert!(
        human.contains("attempt 1  interrupted: lease expired"),
        "{human}"
    );
    let text = scrape_until(&app, "sluice_lease_expiries_total", 1.0).await;
    assert_eq!(sample(&text, "sluice_dlq_size{handler=\"sleeps\"}"), 1.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_enqueues_attempts_the_dlq_and_lag() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = api(&h);
    h.register("fails", "jobs", &fixture(&dir, "exit_3"), once(base()))
        .await;
    h.store.set_paused("fails", true).await.unwrap();

    let before = scrape(&app).await;
    assert_eq!(sample(&before, "sluice_messages_enqueued_total"), 0.0);
    assert_eq!(sample(&before, "sluice_dlq_size{handler=\"fails\"}"), 0.0);
    assert_eq!(
        sample(
            &before,
            "sluice_oldest_ready_age_seconds{handler=\"fails\"}"
        ),
        0.0,
        "no ready work, no lag"
    );

    // Enqueue N through the API: the counter moves by N, the backlog by N.
    const N: usize = 4;
    let mut ids = Vec::new();
    for i in 0..N {
        let res = app
            .clone()
            .oneshot(
                Request::post("/v1/topics/jobs/messages")
                    .body(Body::from(format!("job {i}")))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        let body = to_bytes(res.into_body(), usize::MAX).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        ids.push(MessageId::parse_str(v["id"].as_str().unwrap()).unwrap());
    }
    // Paused with ready work: the lag gauge grows with (injected) time.
    h.clock.advance(Duration::from_secs(42));
    let paused = scrape(&app).await;
    assert_eq!(sample(&paused, "sluice_messages_enqueued_total"), N as f64);
    assert_eq!(
        sample(
            &paused,
            "sluice_deliveries{handler=\"fails\",state=\"ready\"}"
        ),
        N as f64
    );
    assert_eq!(
        sample(&paused, "sluice_topic_depth{topic=\"jobs\"}"),
        N as f64
    );
    assert_eq!(
        sample(&paused, "sluice_handler_paused{handler=\"fails\"}"),
        1.0
    );
    assert_eq!(
        sample(
            &paused,
            "sluice_oldest_ready_age_seconds{handler=\"fails\"}"
        ),
        42.0
    );
    let (_, stats) = get(&app, "/v1/stats").await;
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["handlers"][0]["oldest_ready_age_ms"], 42_000);
    assert_eq!(stats["ready"], N);

    // Resume: every attempt exits 3 and dead-letters.
    h.store.set_paused("fails", false).await.unwrap();
    for id in &ids {
        h.settle(*id).await;
    }
    let after = scrape_until(
        &app,
        "sluice_deliveries_dead_lettered_total{handler=\"fails\"}",
        N as f64,
    )
    .await;
    let series = |s: &str| sample(&after, s);
    assert_eq!(
        series("sluice_attempts_total{handler=\"fails\",outcome=\"exit\"}"),
        N as f64
    );
    assert_eq!(
        series("sluice_attempts_total{handler=\"fails\",outcome=\"ok\"}"),
        0.0
    );
    assert_eq!(series("sluice_dlq_size{handler=\"fails\"}"), N as f64);
    assert_eq!(
        series("sluice_deliveries{handler=\"fails\",state=\"dead\"}"),
        N as f64
    );
    assert_eq!(
        series("sluice_deliveries_dead_lettered_total{handler=\"fails\"}"),
        N as f64
    );
    assert_eq!(
        series("sluice_deliveries{handler=\"fails\",state=\"ready\"}"),
        0.0
    );
    assert_eq!(
        series("sluice_oldest_ready_age_seconds{handler=\"fails\"}"),
        0.0
    );
    assert_eq!(series("sluice_topic_depth{topic=\"jobs\"}"), 0.0);
    assert_eq!(
        series("sluice_attempt_duration_seconds_count{handler=\"fails\"}"),
        N as f64
    );
    assert_eq!(
        series("sluice_attempt_duration_seconds_bucket{le=\"+Inf\",handler=\"fails\"}"),
        N as f64
    );
    // Group commit: every flush is in the batch-size histogram, and the
    // flushed verbs include at least the N enqueues and N dead-letterings.
    let flushes = series("sluice_store_flushes_total");
    assert!(flushes > 0.0);
    assert_eq!(series("sluice_group_commit_batch_size_count"), flushes);
    assert_eq!(
        series("sluice_group_commit_batch_size_bucket{le=\"+Inf\"}"),
        flushes
    );
    assert!(series("sluice_group_commit_batch_size_sum") >= 2.0 * N as f64);

    // Replay the DLQ: fresh attempts, which count as first attempts again
    // (no redeliveries), and the DLQ gauge drops while they run.
    let res = app
        .clone()
        .oneshot(
            Request::post("/v1/dlq/replay")
                .header("content-type", "application/json")
                .body(Body::from(r#"{"handler":"fails"}"#))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    for id in &ids {
        let s = h.settle(*id).await;
        assert_eq!(s.deliveries[0].attempts.len(), 2, "history kept");
    }
    let replayed = scrape(&app).await;
    assert_eq!(
        sample(
            &replayed,
            "sluice_attempts_total{handler=\"fails\",outcome=\"exit\"}"
        ),
        2.0 * N as f64
    );
    assert_eq!(
        sample(&replayed, "sluice_redeliveries_total{handler=\"fails\"}"),
        0.0
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_count_as_redeliveries_and_success_as_completions() {
    let h = Harness::start().await;
    let app = api(&h);
    h.register(
        "flaky",
        "flaky",
        &sluice_tests::example("rust", "flaky"),
        base(),
    )
    .await;
    let id = h.enqueue("flaky", "{}").await;
    let d = h.settle(id).await.deliveries.remove(0);
    assert_eq!(d.state, DeliveryState::Succeeded);
    let text = scrape_until(
        &app,
        "sluice_deliveries_completed_total{handler=\"flaky\"}",
        1.0,
    )
    .await;
    let n = |s: &str| sample(&text, s);
    assert_eq!(
        n("sluice_attempts_total{handler=\"flaky\",outcome=\"exit\"}"),
        2.0
    );
    assert_eq!(
        n("sluice_attempts_total{handler=\"flaky\",outcome=\"ok\"}"),
        1.0
    );
    assert_eq!(n("sluice_redeliveries_total{handler=\"flaky\"}"), 2.0);
    assert_eq!(
        n("sluice_deliveries_completed_total{handler=\"flaky\"}"),
        1.0
    );
    assert_eq!(n("sluice_end_to_end_seconds_count{handler=\"flaky\"}"), 1.0);
    assert_eq!(n("sluice_dlq_size{handler=\"flaky\"}"), 0.0);
    // The human rendering of a success after two failures.
    let human = render::delivery(&DeliveryView::from(d), &Style::plain());
    let summaries: Vec<&str> = human
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("attempt "))
        .collect();
    assert_eq!(summaries.len(), 3, "{human}");
    assert!(summaries[0].starts_with("1  exit 75"), "{human}");
    assert!(summaries[2].starts_with("3  ok"), "{human}");
    h.stop().await;
}

/// The runner's prune collects the module of a removed handler once its
/// grace has passed on the injected clock, and counts it in
/// `sluice_modules_collected_total`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_collects_a_removed_handlers_module_and_counts_it() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    let record = h
        .register("gone", "t", &fixture(&dir, "exit_0"), base())
        .await;
    let app = api(&h);
    assert_eq!(
        sample(&scrape(&app).await, "sluice_modules_collected_total"),
        0.0
    );
    h.store.remove_handler("gone").await.unwrap();
    // A pass starts the grace, a pass after it collects: move the clock a
    // grace at a time until the runner's passes have done both.
    let mut collected = false;
    for _ in 0..2000 {
        h.clock.advance(sluice::store::MODULE_GRACE);
        if sample(&scrape(&app).await, "sluice_modules_collected_total") == 1.0 {
            collected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(collected, "the module was collected and counted");
    assert!(h.store.module(&record.module_sha256).await.is_err());
    h.stop().await;
}
