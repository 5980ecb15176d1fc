//! Dead letters: `dead_letters` (filter and page), `replay_dead`, `purge_dead`
//! and `replay_since`.

use std::time::Duration;

use super::helpers::*;
use super::{Ctx, Harness};
use crate::outcome::Outcome;
use crate::policy::HandlerPolicy;
use crate::store::{DeadFilter, DeliveryState, Store, StoreError};

/// `dead_letters` filters by handler, outcome kind and time and pages with
/// `after`, oldest death first.
pub async fn dead_letters_filter_and_page<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "a", "t").await;
    handler(s, "b", "t").await;
    for i in 0..5 {
        enqueue1(s, msg("t", &i.to_string())).await;
    }
    let mut deaths = Vec::new(); // (handler, delivery, dead_at)
    for round in 0..5 {
        for h in ["a", "b"] {
            let l = s.lease(h, 1).await.unwrap().remove(0);
            let r = if round % 2 == 0 {
                failed()
            } else {
                report(Outcome::Rejected)
            };
            s.fail(&l.lease, r, dead("d")).await.unwrap();
            deaths.push((h, l.lease.delivery_id, cx.now()));
            cx.advance(Duration::from_secs(1));
        }
    }
    let all = s
        .dead_letters(&DeadFilter::default(), None, 100)
        .await
        .unwrap();
    let ids: Vec<_> = all.iter().map(|d| d.id).collect();
    let want: Vec<_> = deaths.iter().map(|d| d.1).collect();
    assert_eq!(ids, want, "oldest death first");

    let only_a = DeadFilter {
        handler: Some("a".into()),
        ..DeadFilter::default()
    };
    let a = s.dead_letters(&only_a, None, 100).await.unwrap();
    assert_eq!(a.len(), 5);
    assert!(a.iter().all(|d| d.handler == "a"));

    let rejected = DeadFilter {
        outcome: Some("rejected".into()),
        ..DeadFilter::default()
    };
    assert_eq!(s.dead_letters(&rejected, None, 100).await.unwrap().len(), 4);

    let window = DeadFilter {
        since: Some(deaths[2].2),
        until: Some(deaths[6].2),
        ..DeadFilter::default()
    };
    let w: Vec<_> = s
        .dead_letters(&window, None, 100)
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(w, want[2..6], "since inclusive, until exclusive");

    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .dead_letters(&DeadFilter::default(), after, 3)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        after = page.last().map(|d| d.id);
        paged.extend(page.into_iter().map(|d| d.id));
    }
    assert_eq!(paged, want, "paging with `after` walks the whole DLQ once");
}

/// Replaying a dead delivery makes it ready with attempts counted afresh
/// (attempt 1, round 1) while its history is kept.
pub async fn replay_dead_resets_attempts_keeps_history<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    let p = HandlerPolicy {
        retries: 1,
        ..policy()
    };
    handler_with(s, "h", "t", p).await;
    let id = enqueue1(s, msg("t", "x")).await;
    let l = lease_all(s, "h").await.remove(0);
    let did = l.lease.delivery_id;
    match s.replay_dead(did).await {
        Err(StoreError::NotDead(d)) => assert_eq!(d, did),
        other => panic!("replay of a leased delivery: expected NotDead, got {other:?}"),
    }
    s.fail(&l.lease, failed(), retry_in(Duration::ZERO))
        .await
        .unwrap();
    s.promote_due(10).await.unwrap();
    let l = lease_all(s, "h").await.remove(0);
    assert_eq!(l.attempt, 2);
    s.fail(&l.lease, failed(), dead("attempts exhausted"))
        .await
        .unwrap();
    cx.advance(Duration::from_secs(10));
    s.replay_dead(did).await.unwrap();
    let d = delivery_of(s, id, "h").await;
    assert_eq!(d.id, did, "replay keeps the delivery");
    assert_eq!(d.state, DeliveryState::Ready);
    assert_eq!(d.dead_reason, None);
    assert_eq!(d.dead_at, None);
    assert_eq!(d.attempts.len(), 2, "history kept");
    assert_eq!(count(s, "h", DeliveryState::Dead).await, 0);
    assert!(
        s.dead_letters(&DeadFilter::default(), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let l = lease_all(s, "h").await.remove(0);
    assert_eq!(l.attempt, 1, "attempts reset by replay");
    assert_eq!(l.max_attempts, 2);
    s.complete(&l.lease, ok(), vec![]).await.unwrap();
    let d = delivery_of(s, id, "h").await;
    let nums: Vec<_> = d.attempts.iter().map(|a| (a.number, a.round)).collect();
    assert_eq!(nums, [(1, 0), (2, 0), (1, 1)]);
    match s.replay_dead(uuid::Uuid::now_v7()).await {
        Err(StoreError::UnknownDelivery(_)) => {}
        other => panic!("replay of unknown delivery: expected UnknownDelivery, got {other:?}"),
    }
}

/// `purge_dead_one` and `purge_dead` remove dead deliveries (and only those).
pub async fn purge_dead_removes_deliveries<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "a", "t").await;
    handler(s, "b", "t").await;
    for i in 0..3 {
        enqueue1(s, msg("t", &i.to_string())).await;
    }
    let mut dead_a = Vec::new();
    for h in ["a", "b"] {
        for l in s.lease(h, 2).await.unwrap() {
            if h == "a" {
                dead_a.push(l.lease.delivery_id);
            }
            s.fail(&l.lease, failed(), dead("x")).await.unwrap();
        }
    }
    let open = lease_all(s, "a").await.remove(0).lease.delivery_id;
    match s.purge_dead_one(open).await {
        Err(StoreError::NotDead(d)) => assert_eq!(d, open),
        other => panic!("purge of a leased delivery: expected NotDead, got {other:?}"),
    }
    s.purge_dead_one(dead_a[0]).await.unwrap();
    match s.delivery(dead_a[0]).await {
        Err(StoreError::UnknownDelivery(_)) => {}
        other => panic!("purged delivery: expected UnknownDelivery, got {other:?}"),
    }
    let only_b = DeadFilter {
        handler: Some("b".into()),
        ..DeadFilter::default()
    };
    assert_eq!(s.purge_dead(&only_b).await.unwrap(), 2);
    let left: Vec<_> = s
        .dead_letters(&DeadFilter::default(), None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(left, [dead_a[1]]);
    assert_eq!(count(s, "a", DeliveryState::Dead).await, 1);
    assert_eq!(count(s, "b", DeliveryState::Dead).await, 0);
    assert_eq!(s.delivery(open).await.unwrap().state, DeliveryState::Leased);
}

/// `replay_since` gives every retained message of the topic enqueued at or
/// after `since` a new delivery for that handler only.
pub async fn replay_since_redelivers_retained_messages<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    handler(s, "other", "t").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(enqueue1(s, msg("t", &format!("m{i}"))).await);
        cx.advance(Duration::from_secs(10));
    }
    for l in lease_all(s, "h").await {
        s.complete(&l.lease, ok(), vec![]).await.unwrap();
    }
    let other_before = lease_all(s, "other").await.len();
    assert_eq!(other_before, 3);
    assert_eq!(
        s.replay_since("h", T0.plus(Duration::from_secs(10)))
            .await
            .unwrap(),
        2
    );
    let again = lease_all(s, "h").await;
    assert_eq!(payloads(&again), ["m1", "m2"], "replayed in enqueue order");
    for l in &again {
        assert_eq!(l.attempt, 1);
    }
    assert!(
        lease_all(s, "other").await.is_empty(),
        "other handler untouched"
    );
    let st = s.message(ids[1]).await.unwrap();
    let for_h = st.deliveries.iter().filter(|d| d.handler == "h").count();
    assert_eq!(for_h, 2, "a new delivery next to the succeeded one");
    assert_eq!(s.message(ids[0]).await.unwrap().deliveries.len(), 2);
}

/// This file's cases, for [`store_conformance_tests!`](crate::store_conformance_tests).
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_dlq {
    ($($with:tt)*) => {
        $crate::__store_conformance_group! { $($with)* dlq:
            dead_letters_filter_and_page,
            replay_dead_resets_attempts_keeps_history,
            purge_dead_removes_deliveries,
            replay_since_redelivers_retained_messages,
        }
    };
}
