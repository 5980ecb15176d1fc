//! The signup workflow (examples/rust/workflow, docs/workflows.md) driven
//! through time with the injected clock on the real runner and sandbox:
//! every step runs exactly once without a reply, across restarts between
//! steps; with a reply before the deadline there is no reminder and no
//! stale mark.

use std::time::Duration;

use sluice::policy::HandlerPolicy;
use sluice::store::{DeliveryQuery, MessageId, NewMessage, Store};
use sluice_tests::{Harness, example};

/// The workflow's steps: (handler, topic), one module.
const STEPS: [(&str, &str); 5] = [
    ("welcome", "signups"),
    ("deadline", "reply-deadline"),
    ("conversation", "conversation"),
    ("email", "emails"),
    ("mark-stale", "user-status"),
];
const DAY: Duration = Duration::from_secs(24 * 3600);

async fn register_steps(h: &Harness) {
    let wasm = example("rust", "workflow");
    for (name, topic) in STEPS {
        h.register(name, topic, &wasm, HandlerPolicy::default())
            .await;
    }
}

/// What each of `handler`'s deliveries printed, in creation order.
async fn printed(h: &Harness, handler: &str) -> Vec<String> {
    let q = DeliveryQuery {
        handler: Some(handler.into()),
        ..DeliveryQuery::default()
    };
    let page = h.store.query_deliveries(&q, None, 100).await.unwrap();
    page.deliveries
        .iter()
        .map(|d| {
            let last = d.attempts.last().and_then(|a| a.report.as_ref());
            last.map_or(String::new(), |r| {
                String::from_utf8_lossy(&r.stdout).trim().to_string()
            })
        })
        .collect()
}

async fn deliveries(h: &Harness, handler: &str) -> usize {
    printed(h, handler).await.len()
}

/// The application's side of "the user replied": enqueue the reply on
/// `conversation` with the key the deadline's publish will get,
/// `outbox:<deadline message>:deadline:0`; the deadline message is the one
/// `welcome` published for the signup (`outbox:<signup>:welcome:1`).
async fn reply(h: &Harness, signup: MessageId, user: &str) -> bool {
    let q = DeliveryQuery {
        idempotency_key: Some(format!("outbox:{signup}:welcome:1")),
        topic: Some("reply-deadline".into()),
        ..DeliveryQuery::default()
    };
    let deadline = h
        .store
        .query_deliveries(&q, None, 1)
        .await
        .unwrap()
        .deliveries[0]
        .message_id;
    let m = NewMessage {
        topic: "conversation".into(),
        payload: format!(r#"{{"user":"{user}","event":"replied"}}"#).into(),
        idempotency_key: Some(format!("outbox:{deadline}:deadline:0")),
        ..NewMessage::default()
    };
    !h.store.enqueue(vec![m]).await.unwrap()[0].duplicate
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_reply_each_step_runs_once_across_restarts() {
    let h = Harness::start().await;
    register_steps(&h).await;
    h.enqueue("signups", r#"{"user":"ann"}"#).await;
    h.drained(&["welcome", "email"]).await;
    assert_eq!(printed(&h, "email").await, ["send welcome email to ann"]);
    assert_eq!(deliveries(&h, "deadline").await, 1, "the timer is waiting");

    // A restart while the 24 h timer waits, then the day passes.
    let h = h.restart().await;
    h.clock.advance(DAY + Duration::from_secs(1));
    h.drained(&["welcome", "deadline", "conversation", "email", "mark-stale"])
        .await;
    assert_eq!(
        printed(&h, "email").await,
        ["send welcome email to ann", "send reminder email to ann"]
    );
    assert_eq!(printed(&h, "mark-stale").await, ["ann is now stale"]);

    // Another restart and another day: nothing runs twice.
    let h = h.restart().await;
    h.clock.advance(DAY);
    h.drained(&["welcome", "deadline", "conversation", "email", "mark-stale"])
        .await;
    for (handler, n) in [
        ("welcome", 1),
        ("deadline", 1),
        ("conversation", 1),
        ("email", 2),
        ("mark-stale", 1),
    ] {
        assert_eq!(deliveries(&h, handler).await, n, "{handler}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_before_the_deadline_means_no_reminder_and_no_stale_mark() {
    let h = Harness::start().await;
    register_steps(&h).await;
    let signup = h.enqueue("signups", r#"{"user":"bob"}"#).await;
    h.drained(&["welcome", "email"]).await;
    h.clock.advance(Duration::from_secs(2 * 3600));
    assert!(
        reply(&h, signup, "bob").await,
        "the reply takes the key first"
    );
    h.drained(&["conversation"]).await;
    let h = h.restart().await;
    // The deadline comes 24 h after the signup, 22 h after the reply (within
    // the reply key's 24 h window).
    h.clock
        .advance(DAY - Duration::from_secs(2 * 3600) + Duration::from_secs(1));
    h.drained(&["welcome", "deadline", "conversation", "email"])
        .await;
    assert_eq!(printed(&h, "deadline").await.len(), 1, "the timer ran");
    assert_eq!(
        printed(&h, "conversation").await,
        ["bob replied: no reminder"],
        "its no-reply event was a duplicate of the reply"
    );
    assert_eq!(printed(&h, "email").await, ["send welcome email to bob"]);
    assert_eq!(deliveries(&h, "mark-stale").await, 0);
    h.stop().await;
}
