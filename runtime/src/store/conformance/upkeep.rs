//! Upkeep: `promote_due` (scheduled messages), `rescue_expired` (expired
//! leases) and `prune` (retention).

use std::time::Duration;

use super::helpers::*;
use super::{Ctx, Harness};
use crate::outcome::Outcome;
use crate::policy::HandlerPolicy;
use crate::store::{DeliveryState, NewMessage, Store, StoreConfig, StoreError};

/// A message with `not_before` is scheduled until then; `promote_due` makes it
/// ready; `next_due` tells when. A `not_before` in the past is ready at once.
pub async fn delayed_message_is_scheduled_until_due<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    let at = cx.now().plus(Duration::from_secs(10));
    let id = enqueue1(
        s,
        NewMessage {
            not_before: Some(at),
            ..msg("t", "later")
        },
    )
    .await;
    assert_eq!(s.message(id).await.unwrap().message.not_before, Some(at));
    let d = delivery_of(s, id, "h").await;
    assert_eq!(d.state, DeliveryState::Scheduled);
    assert_eq!(d.next_at, Some(at));
    assert_eq!(s.next_due().await.unwrap(), Some(at));
    assert_eq!(depth(s, "t").await, 1, "scheduled is open");
    assert!(lease_all(s, "h").await.is_empty());
    cx.advance(Duration::from_millis(9_999));
    assert_eq!(s.promote_due(10).await.unwrap(), 0);
    assert!(lease_all(s, "h").await.is_empty());
    cx.advance(Duration::from_millis(1));
    assert_eq!(s.promote_due(10).await.unwrap(), 1);
    assert_eq!(payloads(&lease_all(s, "h").await), ["later"]);

    let past = enqueue1(
        s,
        NewMessage {
            not_before: Some(T0),
            ..msg("t", "past")
        },
    )
    .await;
    assert_eq!(delivery_of(s, past, "h").await.state, DeliveryState::Ready);
}

/// `promote_due` promotes at most `limit` per call, earliest first.
pub async fn promote_due_respects_limit<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    for i in 0..5u64 {
        enqueue1(
            s,
            NewMessage {
                not_before: Some(cx.now().plus(Duration::from_secs(5 - i))),
                ..msg("t", &format!("d{}", 5 - i))
            },
        )
        .await;
    }
    assert_eq!(
        s.next_due().await.unwrap(),
        Some(cx.now().plus(Duration::from_secs(1)))
    );
    cx.advance(Duration::from_secs(5));
    assert_eq!(s.promote_due(2).await.unwrap(), 2);
    let first = lease_all(s, "h").await;
    let mut got = payloads(&first);
    got.sort();
    assert_eq!(got, ["d1", "d2"], "earliest due first");
    assert_eq!(s.promote_due(10).await.unwrap(), 3);
    assert_eq!(s.promote_due(10).await.unwrap(), 0);
    assert_eq!(lease_all(s, "h").await.len(), 3);
}

/// An expired lease is rescued: the attempt is recorded as interrupted, the
/// delivery retried after the policy's backoff, and the old lease is stale.
pub async fn rescue_expired_retries_with_backoff<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    let p = handler(s, "h", "t").await.policy;
    let id = enqueue1(s, msg("t", "x")).await;
    let l = lease_all(s, "h").await.remove(0);
    cx.advance(Duration::from_secs(74));
    assert_eq!(
        rescue_expired(s, cx.clock(), 10).await.unwrap(),
        0,
        "lease still alive"
    );
    cx.advance(Duration::from_secs(1));
    assert_eq!(
        rescue_expired(s, cx.clock(), 10).await.unwrap(),
        1,
        "lease expired at 75 s"
    );
    assert_eq!(
        rescue_expired(s, cx.clock(), 10).await.unwrap(),
        0,
        "rescued once"
    );
    let d = delivery_of(s, id, "h").await;
    assert_eq!(d.state, DeliveryState::Retrying);
    let next = d.next_at.expect("retrying has next_at");
    assert_backoff(&p, 1, cx.now(), next);
    let a = &d.attempts[0];
    assert_eq!(a.finished_at, Some(cx.now()));
    let outcome = &a
        .report
        .as_ref()
        .expect("rescued attempt has a report")
        .outcome;
    assert!(
        matches!(outcome, Outcome::Interrupted { .. }),
        "rescued attempt is interrupted, got {outcome:?}"
    );
    assert_lease_lost(
        s.complete(&l.lease, ok(), vec![]).await,
        d.id,
        "rescued lease",
    );
    cx.clock().set(next);
    assert_eq!(s.promote_due(10).await.unwrap(), 1);
    let l2 = lease_all(s, "h").await.remove(0);
    assert_eq!(l2.attempt, 2, "the interrupted attempt counts");
}

/// A lease expiring on the last allowed attempt sends the delivery to the DLQ.
pub async fn rescue_expired_dead_letters_last_attempt<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    let p = HandlerPolicy {
        retries: 0,
        lease_ms: Some(30_000),
        ..policy()
    };
    handler_with(s, "h", "t", p).await;
    let id = enqueue1(s, msg("t", "x")).await;
    lease_all(s, "h").await;
    cx.advance(Duration::from_secs(30));
    assert_eq!(rescue_expired(s, cx.clock(), 10).await.unwrap(), 1);
    let d = delivery_of(s, id, "h").await;
    assert_eq!(d.state, DeliveryState::Dead);
    let reason = d.dead_reason.unwrap_or_default();
    assert!(
        reason.contains("1 of 1"),
        "reason from after_failure: {reason}"
    );
}

/// `prune` removes dead deliveries past `dlq_retention` and finished messages
/// past `message_retention`; open messages are never pruned.
pub async fn prune_removes_old_dead_and_done_messages<H: Harness>(mut cx: Ctx<H>) {
    cx.reopen_with(StoreConfig {
        dlq_retention: Duration::from_secs(3600),
        message_retention: Duration::from_secs(7200),
        ..StoreConfig::default()
    })
    .await;
    let s = cx.store();
    handler(s, "h", "t").await;
    let dead_msg = enqueue1(s, msg("t", "dead")).await;
    let done_msg = enqueue1(s, msg("t", "done")).await;
    let open_msg = enqueue1(s, msg("t", "open")).await;
    let l = s.lease("h", 2).await.unwrap();
    let dead_delivery = l[0].lease.delivery_id;
    s.fail(&l[0].lease, failed(), dead("x")).await.unwrap();
    s.complete(&l[1].lease, ok(), vec![]).await.unwrap();

    cx.advance(Duration::from_secs(3599));
    assert_eq!(s.prune(1000).await.unwrap().dead, 0, "inside DLQ retention");
    cx.advance(Duration::from_secs(2));
    let r = s.prune(1000).await.unwrap();
    assert_eq!(r.dead, 1, "{r:?}");
    match s.delivery(dead_delivery).await {
        Err(StoreError::UnknownDelivery(_)) => {}
        other => panic!("pruned dead delivery: expected UnknownDelivery, got {other:?}"),
    }
    assert_eq!(count(s, "h", DeliveryState::Dead).await, 0);

    cx.advance(Duration::from_secs(7200));
    let r = s.prune(1000).await.unwrap();
    assert!(
        r.messages >= 1,
        "finished message past retention pruned: {r:?}"
    );
    match s.message(done_msg).await {
        Err(StoreError::UnknownMessage(_)) => {}
        other => panic!("pruned message: expected UnknownMessage, got {other:?}"),
    }
    let _ = dead_msg;
    let st = s
        .message(open_msg)
        .await
        .expect("open message is never pruned");
    assert_eq!(st.deliveries[0].state, DeliveryState::Ready);
    assert_eq!(payloads(&lease_all(s, "h").await), ["open"]);
}

/// This file's cases, for [`store_conformance_tests!`](crate::store_conformance_tests).
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_upkeep {
    ($($with:tt)*) => {
        $crate::__store_conformance_group! { $($with)* upkeep:
            delayed_message_is_scheduled_until_due,
            promote_due_respects_limit,
            rescue_expired_retries_with_backoff,
            rescue_expired_dead_letters_last_attempt,
            prune_removes_old_dead_and_done_messages,
        }
    };
}
