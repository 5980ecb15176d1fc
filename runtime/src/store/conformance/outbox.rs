//! The transactional outbox: messages published during an attempt commit
//! with its success, once, and not at all if it fails.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;

use super::helpers::*;
use super::{Ctx, Harness};
use crate::store::{DeliveryState, OutboxMessage, Store, StoreError};

/// `complete` commits its outbox with the success: each message lands on its
/// topic (with ordering key and delay) with a distinct derived idempotency key.
pub async fn outbox_commits_with_success<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "up", "in").await;
    handler(s, "down", "out").await;
    let parent = enqueue1(s, msg("in", "parent")).await;
    let l = lease_all(s, "up").await.remove(0);
    let outbox = vec![
        OutboxMessage {
            topic: "out".into(),
            payload: Bytes::from_static(b"o1"),
            ordering_key: None,
            delay: None,
        },
        OutboxMessage {
            topic: "out".into(),
            payload: Bytes::from_static(b"o2"),
            ordering_key: Some("k".into()),
            delay: None,
        },
        OutboxMessage {
            topic: "out".into(),
            payload: Bytes::from_static(b"o3"),
            ordering_key: None,
            delay: Some(Duration::from_secs(5)),
        },
    ];
    s.complete(&l.lease, ok(), outbox).await.unwrap();
    assert_eq!(
        delivery_of(s, parent, "up").await.state,
        DeliveryState::Succeeded
    );
    let now_ready = lease_all(s, "down").await;
    assert_eq!(payloads(&now_ready), ["o1", "o2"]);
    assert_eq!(now_ready[1].message.ordering_key.as_deref(), Some("k"));
    let keys: BTreeSet<_> = now_ready
        .iter()
        .map(|l| l.message.idempotency_key.clone())
        .collect();
    assert_eq!(keys.len(), 2, "derived keys are distinct");
    assert_eq!(count(s, "down", DeliveryState::Scheduled).await, 1);
    cx.advance(Duration::from_secs(5));
    s.promote_due(10).await.unwrap();
    assert_eq!(payloads(&lease_all(s, "down").await), ["o3"]);
}

/// Issue #2's outbox test: lease, let the lease expire, rescue, re-lease,
/// complete with the same outbox: downstream has each message once. The stale
/// lease's complete creates nothing.
pub async fn outbox_is_not_duplicated_after_rescue<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "up", "in").await;
    handler(s, "down", "out").await;
    enqueue1(s, msg("in", "parent")).await;
    let outbox: Vec<_> = (0..3)
        .map(|i| OutboxMessage {
            topic: "out".into(),
            payload: Bytes::from(format!("o{i}")),
            ordering_key: None,
            delay: None,
        })
        .collect();
    let first = lease_all(s, "up").await.remove(0);
    cx.advance(Duration::from_secs(76));
    assert_eq!(rescue_expired(s, cx.clock(), 10).await.unwrap(), 1);
    cx.advance(Duration::from_secs(2));
    assert_eq!(s.promote_due(10).await.unwrap(), 1);
    let second = lease_all(s, "up").await.remove(0);
    assert_eq!(second.attempt, 2);

    let lid = first.lease.delivery_id;
    let stale = s.complete(&first.lease, ok(), outbox.clone()).await;
    assert_lease_lost(stale, lid, "stale complete with outbox");
    assert_eq!(
        depth(s, "out").await,
        0,
        "a stale complete publishes nothing"
    );

    s.complete(&second.lease, ok(), outbox.clone())
        .await
        .unwrap();
    assert_eq!(depth(s, "out").await, 3);

    // The attempt re-runs after a replay and publishes the same outbox again.
    let again = s.replay_since("up", T0).await.unwrap();
    assert_eq!(again, 1);
    let third = lease_all(s, "up").await.remove(0);
    s.complete(&third.lease, ok(), outbox).await.unwrap();
    let down = lease_all(s, "down").await;
    let mut got = payloads(&down);
    got.sort();
    assert_eq!(
        got,
        ["o0", "o1", "o2"],
        "each outbox message exactly once downstream"
    );
}

/// An outbox that cannot be committed (here: an invalid topic name) fails the
/// completion as a whole: nothing is published, the attempt is not recorded
/// as a success, and the lease stays valid.
pub async fn outbox_failure_commits_nothing<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "up", "in").await;
    handler(s, "down", "out").await;
    let id = enqueue1(s, msg("in", "parent")).await;
    let l = lease_all(s, "up").await.remove(0);
    let good = OutboxMessage {
        topic: "out".into(),
        payload: Bytes::from_static(b"ok"),
        ordering_key: None,
        delay: None,
    };
    let bad = OutboxMessage {
        topic: "Not A Topic".into(),
        ..good.clone()
    };
    match s.complete(&l.lease, ok(), vec![good.clone(), bad]).await {
        Err(StoreError::InvalidName(e)) => assert_eq!(e.what, "topic"),
        other => panic!("expected InvalidName(topic), got {other:?}"),
    }
    assert_eq!(depth(s, "out").await, 0, "nothing published");
    let d = delivery_of(s, id, "up").await;
    assert_eq!(d.state, DeliveryState::Leased);
    assert_eq!(d.attempts[0].report, None, "no outcome recorded");
    s.complete(&l.lease, ok(), vec![good]).await.unwrap();
    assert_eq!(depth(s, "out").await, 1);
}

/// This file's cases, for [`store_conformance_tests!`](crate::store_conformance_tests).
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_outbox {
    ($($with:tt)*) => {
        $crate::__store_conformance_group! { $($with)* outbox:
            outbox_commits_with_success,
            outbox_is_not_duplicated_after_rescue,
            outbox_failure_commits_nothing,
        }
    };
}
