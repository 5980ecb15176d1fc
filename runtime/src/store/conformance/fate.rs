//! The fate rule: a lease that expires and a lease released on open are
//! settled like any failed attempt, by `HandlerPolicy::fate` (retry after the
//! policy's backoff, or dead with the reason every exhausted delivery gets),
//! never by a rule of the backend's own.

use std::time::Duration;

use super::helpers::*;
use super::{Ctx, Harness};
use crate::clock::Timestamp;
use crate::policy::HandlerPolicy;
use crate::store::{DeliveryState, MessageId, Store};

/// The fate rule (`HandlerPolicy::fate`) settles an expired lease like any
/// failure: retrying until the policy's first backoff has passed (not
/// leasable before), the attempt carrying `interrupted: lease expired`,
/// and on the last attempt dead with the same reason as any exhausted
/// delivery.
pub async fn expired_lease_gets_the_policy_fate<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    let (p, id) = leased_with_one_retry(s).await;
    cx.advance(p.lease());
    assert_eq!(rescue_expired(s, cx.clock(), 10).await.unwrap(), 1);
    let next = assert_retrying(s, &p, id, cx.now(), "lease expired").await;
    cx.advance(next.since(cx.now()) - Duration::from_millis(1));
    s.promote_due(10).await.unwrap();
    assert!(
        lease_all(s, "h").await.is_empty(),
        "leased before its backoff"
    );
    cx.advance(Duration::from_millis(1));
    s.promote_due(10).await.unwrap();
    assert_eq!(lease_all(s, "h").await.len(), 1, "due after its backoff");
    cx.advance(p.lease());
    assert_eq!(rescue_expired(s, cx.clock(), 10).await.unwrap(), 1);
    assert_exhausted(s, id, "lease expired").await;
}

/// The same rule for a lease released on open: retrying after the
/// backoff with `interrupted: process restarted`, and dead on the last
/// attempt with the reason any exhausted delivery gets.
pub async fn released_lease_gets_the_policy_fate<H: Harness>(mut cx: Ctx<H>) {
    let s = cx.store();
    let (p, id) = leased_with_one_retry(s).await;
    cx.restart().await;
    let s = cx.store();
    let next = assert_retrying(s, &p, id, cx.now(), "process restarted").await;
    s.promote_due(10).await.unwrap();
    assert!(
        lease_all(s, "h").await.is_empty(),
        "leased before its backoff"
    );
    cx.advance(next.since(cx.now()));
    s.promote_due(10).await.unwrap();
    assert_eq!(lease_all(s, "h").await.len(), 1);
    cx.restart().await;
    assert_exhausted(cx.store(), id, "process restarted").await;
}

/// Registers `h` on `t` with one retry, enqueues a message and leases it.
async fn leased_with_one_retry(s: &dyn Store) -> (HandlerPolicy, MessageId) {
    let policy = HandlerPolicy {
        retries: 1,
        ..policy()
    };
    let p = handler_with(s, "h", "t", policy).await.policy;
    let id = enqueue1(s, msg("t", "x")).await;
    lease_all(s, "h").await;
    (p, id)
}

/// Checks that the first attempt was interrupted with `reason` and the
/// delivery waits out the first backoff from `now`; returns when it is due.
async fn assert_retrying(
    s: &dyn Store,
    p: &HandlerPolicy,
    id: MessageId,
    now: Timestamp,
    reason: &str,
) -> Timestamp {
    let d = delivery_of(s, id, "h").await;
    assert_eq!(d.state, DeliveryState::Retrying, "waits out the backoff");
    let next = d.next_at.expect("retrying has next_at");
    assert_backoff(p, 1, now, next);
    assert_interrupted(&d, 0, reason);
    next
}

/// Checks that the second (last) attempt was interrupted with `reason` and
/// the delivery is dead with the reason every exhausted delivery gets.
async fn assert_exhausted(s: &dyn Store, id: MessageId, reason: &str) {
    let d = delivery_of(s, id, "h").await;
    assert_eq!(d.state, DeliveryState::Dead);
    assert_eq!(
        d.dead_reason.as_deref(),
        Some(format!("attempts exhausted (2 of 2): interrupted: {reason}").as_str())
    );
    assert_interrupted(&d, 1, reason);
}

/// This file's cases, for [`store_conformance_tests!`](crate::store_conformance_tests).
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_fate {
    ($($with:tt)*) => {
        $crate::__store_conformance_group! { $($with)* fate:
            expired_lease_gets_the_policy_fate,
            released_lease_gets_the_policy_fate,
        }
    };
}
