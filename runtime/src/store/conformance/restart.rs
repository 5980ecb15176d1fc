//! Durability and signals: acknowledged state survives a restart, leases are
//! released on open, ordering survives, concurrent writers share flushes (group
//! commit), and the ready and handlers signals wake their waiters.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::helpers::*;
use super::{Ctx, Harness};
use crate::outcome::Outcome;
use crate::store::{DeliveryState, NewMessage, Store};

/// The ready signal changes when a delivery becomes ready.
pub async fn ready_signal_wakes_on_enqueue<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    let mut rx = s.ready_signal();
    rx.borrow_and_update();
    enqueue1(s, msg("t", "x")).await;
    assert!(rx.has_changed().unwrap(), "enqueue signals");
    rx.borrow_and_update();
    let l = lease_all(s, "h").await.remove(0);
    s.fail(&l.lease, failed(), retry_in(Duration::from_secs(1)))
        .await
        .unwrap();
    rx.borrow_and_update();
    cx.advance(Duration::from_secs(1));
    s.promote_due(10).await.unwrap();
    assert!(rx.has_changed().unwrap(), "promotion signals");
}

/// The handlers signal changes with every handler change, not with traffic.
pub async fn handlers_signal_wakes_on_handler_changes<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    let mut rx = s.handlers_signal();
    rx.borrow_and_update();
    handler(s, "h", "t").await;
    assert!(rx.has_changed().unwrap(), "registration signals");
    rx.borrow_and_update();
    enqueue1(s, msg("t", "x")).await;
    assert!(!rx.has_changed().unwrap(), "an enqueue does not");
    s.set_paused("h", true).await.unwrap();
    assert!(rx.has_changed().unwrap(), "a pause signals");
    rx.borrow_and_update();
    s.remove_handler("h").await.unwrap();
    assert!(rx.has_changed().unwrap(), "a removal signals");
}

/// Concurrent single-message enqueues share flushes: 256 at once need far
/// fewer than 256 flushes, and every one of them is acknowledged.
pub async fn group_commit_shares_flushes<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    let before = s.stats().await.unwrap().durable_commits;
    let n = 256;
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for i in 0..n {
        let s = cx.shared();
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            s.enqueue(vec![msg("t", &i.to_string())]).await.unwrap()[0].id
        }));
    }
    let mut ids = BTreeSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap());
    }
    assert_eq!(ids.len(), n);
    let flushes = s.stats().await.unwrap().durable_commits - before;
    assert!(flushes >= 1, "durable enqueues must flush");
    assert!(
        flushes <= n as u64 / 2,
        "{n} concurrent enqueues took {flushes} flushes: no group commit"
    );
    assert_eq!(depth(s, "t").await, n as u64);
}

/// Everything acknowledged survives a restart: handlers, modules, messages,
/// every delivery's state and history, DLQ, counts.
pub async fn acknowledged_state_survives_restart<H: Harness>(mut cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    handler(s, "p", "t").await;
    s.set_paused("p", true).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(enqueue1(s, keyed("t", &format!("m{i}"), &format!("k{}", i % 6))).await);
    }
    ids.push(
        enqueue1(
            s,
            NewMessage {
                not_before: Some(cx.now().plus(Duration::from_secs(30))),
                idempotency_key: Some("idem".into()),
                ..msg("t", "delayed")
            },
        )
        .await,
    );
    let l = s.lease("h", 3).await.unwrap();
    s.complete(&l[0].lease, ok(), vec![]).await.unwrap();
    s.fail(&l[1].lease, failed(), dead("x")).await.unwrap();
    s.fail(&l[2].lease, failed(), retry_in(Duration::from_secs(5)))
        .await
        .unwrap();
    let mut before = Vec::new();
    for id in &ids {
        before.push(s.message(*id).await.unwrap());
    }
    let stats_before = s.stats().await.unwrap();
    let handlers_before = s.handlers().await.unwrap();
    cx.restart().await;
    let s = cx.store();
    for (id, b) in ids.iter().zip(&before) {
        let mut a = s.message(*id).await.unwrap();
        let mut b = b.clone();
        a.deliveries.sort_by_key(|d| d.id);
        b.deliveries.sort_by_key(|d| d.id);
        assert_eq!(a, b, "message {id} unchanged by restart");
    }
    let stats_after = s.stats().await.unwrap();
    assert_eq!(stats_after.handlers, stats_before.handlers);
    assert_eq!(stats_after.topic_depth, stats_before.topic_depth);
    assert_eq!(s.handlers().await.unwrap(), handlers_before);
    assert_eq!(s.module(&sha256_hex(&module(0))).await.unwrap(), module(0));
    let dup = s
        .enqueue(vec![NewMessage {
            idempotency_key: Some("idem".into()),
            ..msg("t", "again")
        }])
        .await
        .unwrap();
    assert!(dup[0].duplicate);
    assert_eq!(
        s.next_due().await.unwrap(),
        Some(T0.plus(Duration::from_secs(5)))
    );
}

/// On open, leases held by the previous process are released at once: the
/// attempt is recorded as interrupted and counts; the old lease is stale; the
/// delivery is ready again (at most after the policy's first backoff).
pub async fn leases_are_released_on_open<H: Harness>(mut cx: Ctx<H>) {
    let s = cx.store();
    let p = handler(s, "h", "t").await.policy;
    let id = enqueue1(s, msg("t", "x")).await;
    let l = lease_all(s, "h").await.remove(0);
    cx.advance(Duration::from_secs(1));
    cx.restart().await;
    let s = cx.store();
    let d = delivery_of(s, id, "h").await;
    assert_ne!(
        d.state,
        DeliveryState::Leased,
        "released on open, not at expiry"
    );
    assert!(
        matches!(d.state, DeliveryState::Ready | DeliveryState::Retrying),
        "released delivery is ready or retrying, got {:?}",
        d.state
    );
    assert_eq!(d.lease_expires_at, None);
    assert_eq!(d.attempts.len(), 1);
    let a = &d.attempts[0];
    assert!(a.finished_at.is_some());
    let outcome = &a
        .report
        .as_ref()
        .expect("interrupted attempt has a report")
        .outcome;
    assert!(
        matches!(outcome, Outcome::Interrupted { .. }),
        "got {outcome:?}"
    );
    if d.state == DeliveryState::Retrying {
        assert_backoff(&p, 1, cx.now(), d.next_at.expect("retrying has next_at"));
    }
    assert_lease_lost(
        s.complete(&l.lease, ok(), vec![]).await,
        d.id,
        "pre-restart lease",
    );
    cx.advance(Duration::from_secs(2));
    s.promote_due(10).await.unwrap();
    let l2 = lease_all(s, "h").await;
    assert_eq!(l2.len(), 1);
    assert_eq!(l2[0].attempt, 2, "the interrupted attempt counts");
}

/// Blocked deliveries stay blocked across a restart and run in order.
pub async fn ordering_survives_restart<H: Harness>(mut cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    s.enqueue((1..=3).map(|i| keyed("t", &format!("k{i}"), "k")).collect())
        .await
        .unwrap();
    assert_eq!(payloads(&lease_all(s, "h").await), ["k1"]);
    cx.restart().await;
    let s = cx.store();
    cx.advance(Duration::from_secs(2));
    s.promote_due(10).await.unwrap();
    let l = lease_all(s, "h").await;
    assert_eq!(payloads(&l), ["k1"], "released head runs first again");
    assert_eq!(count(s, "h", DeliveryState::Blocked).await, 2);
    s.complete(&l[0].lease, ok(), vec![]).await.unwrap();
    cx.restart().await;
    let s = cx.store();
    assert_eq!(payloads(&lease_all(s, "h").await), ["k2"]);
}

/// An attempt's outbound request records are kept with it, in order, and
/// survive a restart; an attempt without any reads back with none.
pub async fn egress_records_survive_restart<H: Harness>(mut cx: Ctx<H>) {
    use crate::sandbox::{EgressOutcome, EgressRecord};
    let s = cx.store();
    handler(s, "h", "t").await;
    let id = enqueue1(s, msg("t", "x")).await;
    let plain = enqueue1(s, msg("t", "y")).await;
    let mut leased = lease_all(s, "h").await;
    let records = vec![
        EgressRecord {
            method: "POST".into(),
            origin: "https://api.example.com:443".into(),
            status: Some(302),
            request_bytes: 17,
            response_bytes: 0,
            duration_ms: 12,
            outcome: EgressOutcome::Ok,
            detail: String::new(),
        },
        EgressRecord {
            method: "POST".into(),
            origin: "http://10.0.0.1:80".into(),
            status: None,
            request_bytes: 0,
            response_bytes: 0,
            duration_ms: 0,
            outcome: EgressOutcome::DeniedAddress,
            detail: "10.0.0.1 is private (10.0.0.0/8)".into(),
        },
    ];
    let mut report = ok();
    report.egress = records.clone();
    let at = leased.iter().position(|l| l.message.id == id).unwrap();
    let first = leased.remove(at);
    s.complete(&first.lease, report, vec![]).await.unwrap();
    s.complete(&leased[0].lease, ok(), vec![]).await.unwrap();
    for restarted in [false, true] {
        if restarted {
            cx.restart().await;
        }
        let s = cx.store();
        let m = s.message(id).await.unwrap();
        let egress = &m.deliveries[0].attempts[0].report.as_ref().unwrap().egress;
        assert_eq!(egress, &records, "restarted: {restarted}");
        let m = s.message(plain).await.unwrap();
        assert!(
            m.deliveries[0].attempts[0]
                .report
                .as_ref()
                .unwrap()
                .egress
                .is_empty()
        );
    }
}

/// This file's cases, for [`store_conformance_tests!`](crate::store_conformance_tests).
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_restart {
    ($($with:tt)*) => {
        $crate::__store_conformance_group! { $($with)* restart:
            ready_signal_wakes_on_enqueue,
            handlers_signal_wakes_on_handler_changes,
            group_commit_shares_flushes,
            acknowledged_state_survives_restart,
            leases_are_released_on_open,
            ordering_survives_restart,
            egress_records_survive_restart,
        }
    };
}
