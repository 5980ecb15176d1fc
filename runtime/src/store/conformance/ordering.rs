//! Per-key ordering: per handler, one delivery per ordering key in flight,
//! in enqueue order; a retrying head blocks only its key.

use std::time::Duration;

use super::helpers::*;
use super::{Ctx, Harness};
use crate::store::{DeliveryState, Store};

/// Per handler, one delivery per ordering key is in flight, in enqueue order;
/// the others are blocked; unkeyed and other keys run in parallel.
pub async fn ordering_key_one_in_flight_in_enqueue_order<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    let batch = vec![
        keyed("t", "k1", "k"),
        keyed("t", "k2", "k"),
        msg("t", "u1"),
        keyed("t", "j1", "j"),
        keyed("t", "k3", "k"),
        msg("t", "u2"),
    ];
    let ids: Vec<_> = s
        .enqueue(batch)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        delivery_of(s, ids[1], "h").await.state,
        DeliveryState::Blocked
    );
    assert_eq!(
        delivery_of(s, ids[4], "h").await.state,
        DeliveryState::Blocked
    );
    assert_eq!(count(s, "h", DeliveryState::Blocked).await, 2);
    assert_eq!(count(s, "h", DeliveryState::Ready).await, 4);
    let l = lease_all(s, "h").await;
    assert_eq!(payloads(&l), ["k1", "u1", "j1", "u2"]);
    assert!(lease_all(s, "h").await.is_empty(), "k2 waits for k1");
    s.complete(&l[0].lease, ok(), vec![]).await.unwrap();
    assert_eq!(
        delivery_of(s, ids[1], "h").await.state,
        DeliveryState::Ready
    );
    let l2 = lease_all(s, "h").await;
    assert_eq!(payloads(&l2), ["k2"]);
    s.complete(&l2[0].lease, ok(), vec![]).await.unwrap();
    assert_eq!(payloads(&lease_all(s, "h").await), ["k3"]);
}

/// A retrying head blocks its key across the retry, and only its key.
pub async fn retrying_head_blocks_only_its_key<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    s.enqueue(vec![keyed("t", "k1", "k"), keyed("t", "k2", "k")])
        .await
        .unwrap();
    let l = lease_all(s, "h").await;
    assert_eq!(payloads(&l), ["k1"]);
    s.fail(&l[0].lease, failed(), retry_in(Duration::from_secs(1)))
        .await
        .unwrap();
    s.enqueue(vec![keyed("t", "j1", "j"), msg("t", "u1")])
        .await
        .unwrap();
    assert_eq!(
        payloads(&lease_all(s, "h").await),
        ["j1", "u1"],
        "k2 stays blocked behind the retrying k1"
    );
    cx.advance(Duration::from_secs(1));
    s.promote_due(10).await.unwrap();
    let l = lease_all(s, "h").await;
    assert_eq!(payloads(&l), ["k1"], "the head retries before k2");
    assert_eq!(l[0].attempt, 2);
    s.complete(&l[0].lease, ok(), vec![]).await.unwrap();
    assert_eq!(payloads(&lease_all(s, "h").await), ["k2"]);
}

/// A head that dies unblocks the next message of its key.
pub async fn dead_head_unblocks_next<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    s.enqueue(vec![keyed("t", "k1", "k"), keyed("t", "k2", "k")])
        .await
        .unwrap();
    let l = lease_all(s, "h").await;
    s.fail(&l[0].lease, failed(), dead("poison")).await.unwrap();
    assert_eq!(payloads(&lease_all(s, "h").await), ["k2"]);
}

/// Ordering is per handler: one handler's in-flight key does not block another's.
pub async fn ordering_is_per_handler<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "a", "t").await;
    handler(s, "b", "t").await;
    s.enqueue(vec![keyed("t", "k1", "k"), keyed("t", "k2", "k")])
        .await
        .unwrap();
    let a = lease_all(s, "a").await;
    assert_eq!(payloads(&a), ["k1"]);
    let b = lease_all(s, "b").await;
    assert_eq!(payloads(&b), ["k1"]);
    s.complete(&b[0].lease, ok(), vec![]).await.unwrap();
    assert_eq!(payloads(&lease_all(s, "b").await), ["k2"]);
    assert!(lease_all(s, "a").await.is_empty());
}

/// Replaying a dead keyed delivery while its key has another in flight never
/// puts two of that key in flight.
pub async fn replayed_keyed_delivery_keeps_one_in_flight<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    s.enqueue(vec![keyed("t", "k1", "k"), keyed("t", "k2", "k")])
        .await
        .unwrap();
    let l = lease_all(s, "h").await;
    let dead_id = l[0].lease.delivery_id;
    s.fail(&l[0].lease, failed(), dead("x")).await.unwrap();
    let k2 = lease_all(s, "h").await;
    assert_eq!(payloads(&k2), ["k2"]);
    s.replay_dead(dead_id).await.unwrap();
    assert!(
        lease_all(s, "h").await.is_empty(),
        "replayed k1 must wait while k2 is in flight"
    );
    let st = s.delivery(dead_id).await.unwrap().state;
    assert!(
        matches!(st, DeliveryState::Blocked),
        "replayed k1 is blocked, got {st:?}"
    );
    s.complete(&k2[0].lease, ok(), vec![]).await.unwrap();
    assert_eq!(payloads(&lease_all(s, "h").await), ["k1"]);
}

/// This file's cases, for [`store_conformance_tests!`](crate::store_conformance_tests).
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_ordering {
    ($($with:tt)*) => {
        $crate::__store_conformance_group! { $($with)* ordering:
            ordering_key_one_in_flight_in_enqueue_order,
            retrying_head_blocks_only_its_key,
            dead_head_unblocks_next,
            ordering_is_per_handler,
            replayed_keyed_delivery_keeps_one_in_flight,
        }
    };
}
