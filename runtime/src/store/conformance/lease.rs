//! Lease, extend, complete and fail, the fencing of stale leases, and the
//! policy's backoff up to the DLQ.

use std::collections::BTreeSet;
use std::time::Duration;

use super::helpers::*;
use super::{Ctx, Harness};
use crate::outcome::Outcome;
use crate::policy::Disposition;
use crate::store::{DeadFilter, DeliveryState, Lease, Store};

/// `lease` hands out up to `max` ready deliveries, oldest first, each with a
/// unique token, the policy's lease, attempt 1, and a started attempt record.
pub async fn lease_returns_oldest_first_up_to_max<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(enqueue1(s, msg("t", &format!("m{i}"))).await);
        cx.advance(Duration::from_millis(10));
    }
    assert!(
        s.lease("h", 0).await.unwrap().is_empty(),
        "max 0 leases nothing"
    );
    let first = s.lease("h", 3).await.unwrap();
    assert_eq!(payloads(&first), ["m0", "m1", "m2"], "oldest first");
    let now = cx.now();
    for l in &first {
        assert_eq!(l.handler, "h");
        assert_eq!(l.attempt, 1);
        assert_eq!(l.max_attempts, 6);
        assert_eq!(l.lease.expires_at, now.plus(Duration::from_secs(75)));
        let d = s.delivery(l.lease.delivery_id).await.unwrap();
        assert_eq!(d.state, DeliveryState::Leased);
        assert_eq!(d.lease_expires_at, Some(l.lease.expires_at));
        assert_eq!(d.attempts.len(), 1);
        let a = &d.attempts[0];
        assert_eq!((a.number, a.round), (1, 0));
        assert_eq!(a.started_at, now);
        assert_eq!(a.finished_at, None);
        assert_eq!(a.report, None);
    }
    let rest = s.lease("h", 10).await.unwrap();
    assert_eq!(payloads(&rest), ["m3", "m4"]);
    assert!(s.lease("h", 10).await.unwrap().is_empty(), "nothing left");
    let tokens: BTreeSet<_> = first.iter().chain(&rest).map(|l| l.lease.token).collect();
    assert_eq!(tokens.len(), 5, "tokens are unique per lease");
    assert_eq!(count(s, "h", DeliveryState::Leased).await, 5);
    assert_eq!(count(s, "h", DeliveryState::Ready).await, 0);
}

/// Four tasks leasing at once never get the same delivery.
pub async fn concurrent_leases_never_hand_out_twice<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    let batch: Vec<_> = (0..400).map(|i| msg("t", &i.to_string())).collect();
    s.enqueue(batch).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let s = cx.shared();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let l = s.lease("h", 7).await.unwrap();
                if l.is_empty() {
                    return got;
                }
                got.extend(l.into_iter().map(|l| l.lease.delivery_id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let distinct: BTreeSet<_> = all.iter().collect();
    assert_eq!(all.len(), 400, "every delivery leased");
    assert_eq!(distinct.len(), 400, "no delivery leased twice");
}

/// A paused handler leases nothing while its deliveries keep arriving; other
/// handlers on the topic are unaffected; pause survives a restart.
pub async fn paused_handler_leases_nothing<H: Harness>(mut cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "p", "t").await;
    handler(s, "q", "t").await;
    let r = s.set_paused("p", true).await.unwrap();
    assert!(r.paused);
    let id = enqueue1(s, msg("t", "x")).await;
    assert!(lease_all(s, "p").await.is_empty(), "paused leases nothing");
    assert_eq!(lease_all(s, "q").await.len(), 1, "other handler unaffected");
    assert_eq!(delivery_of(s, id, "p").await.state, DeliveryState::Ready);
    let st = s.stats().await.unwrap();
    assert!(st.handlers.iter().any(|h| h.handler == "p" && h.paused));
    cx.restart().await;
    let s = cx.store();
    assert!(s.handler("p").await.unwrap().paused, "pause is durable");
    assert!(lease_all(s, "p").await.is_empty());
    assert!(!s.set_paused("p", false).await.unwrap().paused);
    assert_eq!(lease_all(s, "p").await.len(), 1, "resumed handler leases");
}

/// The runner's pause of an unrunnable configuration: fenced on the
/// handler's version and on it running, visible with its reason, durable,
/// ended by a registration (which a user's pause survives) or a resume.
pub async fn unrunnable_pause_names_its_reason_and_ends_with_a_fix<H: Harness>(mut cx: Ctx<H>) {
    let s = cx.store();
    let v1 = handler(s, "p", "t").await;
    let id = enqueue1(s, msg("t", "x")).await;
    let v2 = handler(s, "p", "t").await;
    assert!(
        !s.pause_unrunnable("p", v1.version, "stale").await.unwrap(),
        "a registration since the check may have fixed it"
    );
    assert!(!s.handler("p").await.unwrap().paused);
    let mut rx = s.handlers_signal();
    rx.borrow_and_update();
    let reason = "invalid limits: memory 512 MiB is above the server's 256 MiB";
    assert!(s.pause_unrunnable("p", v2.version, reason).await.unwrap());
    assert!(rx.has_changed().unwrap(), "the pause signals");
    assert!(
        !s.pause_unrunnable("p", v2.version, "again").await.unwrap(),
        "already paused: the first reason stays"
    );
    assert!(lease_all(s, "p").await.is_empty(), "paused leases nothing");
    cx.restart().await;
    let s = cx.store();
    let h = s.handler("p").await.unwrap();
    assert!(h.paused, "the pause is durable");
    assert_eq!(h.paused_reason.as_deref(), Some(reason));
    let listed = s.handlers().await.unwrap();
    assert_eq!(listed[0].paused_reason.as_deref(), Some(reason));
    let d = delivery_of(s, id, "p").await;
    assert_eq!(d.state, DeliveryState::Ready);
    assert!(d.attempts.is_empty(), "no attempt was spent");

    // A registration ends the runner's pause.
    let v3 = handler(s, "p", "t").await;
    assert!(!v3.paused && v3.paused_reason.is_none(), "{v3:?}");
    assert_eq!(s.handler("p").await.unwrap(), v3);
    assert_eq!(lease_all(s, "p").await.len(), 1, "fixed, it leases");

    // A resume ends it too; a user's pause has no reason and survives a
    // registration.
    assert!(s.pause_unrunnable("p", v3.version, reason).await.unwrap());
    let r = s.set_paused("p", false).await.unwrap();
    assert!(!r.paused && r.paused_reason.is_none(), "{r:?}");
    assert!(s.pause_unrunnable("p", v3.version, reason).await.unwrap());
    let r = s.set_paused("p", true).await.unwrap();
    assert!(
        r.paused && r.paused_reason.is_none(),
        "a user's pause replaces it: {r:?}"
    );
    assert!(handler(s, "p", "t").await.paused, "a user's pause stays");
    assert!(
        !s.pause_unrunnable("ghost", 1, reason).await.unwrap(),
        "a handler removed since the check is not paused"
    );
}

/// `extend` moves the expiry to now + lease; the extended lease is not rescued
/// at the old expiry and still completes; a stale lease cannot be extended.
pub async fn extend_moves_expiry<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    enqueue1(s, msg("t", "x")).await;
    let l = lease_all(s, "h").await.remove(0);
    cx.advance(Duration::from_secs(60));
    let e = s.extend(&l.lease).await.unwrap();
    assert_eq!(e.delivery_id, l.lease.delivery_id);
    assert_eq!(e.expires_at, cx.now().plus(Duration::from_secs(75)));
    let d = s.delivery(e.delivery_id).await.unwrap();
    assert_eq!(d.lease_expires_at, Some(e.expires_at));
    cx.advance(Duration::from_secs(30));
    assert_eq!(
        rescue_expired(s, cx.clock(), 100).await.unwrap(),
        0,
        "extended lease is alive"
    );
    s.complete(&e, ok(), vec![]).await.unwrap();
    assert_lease_lost(s.extend(&e).await, e.delivery_id, "extend after complete");
}

/// `complete` records the attempt's report and finishes the delivery; the lease
/// is then stale for every verb.
pub async fn complete_records_success<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    let id = enqueue1(s, msg("t", "x")).await;
    let l = lease_all(s, "h").await.remove(0);
    cx.advance(Duration::from_secs(2));
    s.complete(&l.lease, ok(), vec![]).await.unwrap();
    let d = delivery_of(s, id, "h").await;
    assert_eq!(d.state, DeliveryState::Succeeded);
    assert_eq!(d.lease_expires_at, None);
    assert_eq!(d.attempts.len(), 1);
    assert_eq!(d.attempts[0].finished_at, Some(cx.now()));
    assert_eq!(d.attempts[0].report, Some(ok()));
    assert_eq!(count(s, "h", DeliveryState::Succeeded).await, 1);
    assert_eq!(depth(s, "t").await, 0, "a succeeded delivery is not open");
    let lid = l.lease.delivery_id;
    assert_lease_lost(
        s.complete(&l.lease, ok(), vec![]).await,
        lid,
        "second complete",
    );
    assert_lease_lost(
        s.fail(&l.lease, failed(), dead("x")).await,
        lid,
        "fail after complete",
    );
    assert_eq!(
        delivery_of(s, id, "h").await,
        d,
        "refused verbs change nothing"
    );
}

/// A lease with a wrong token, or one whose delivery was re-leased, gets
/// `LeaseLost` and changes nothing; the current lease still works.
pub async fn stale_or_forged_lease_is_lost<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    enqueue1(s, msg("t", "x")).await;
    let l = lease_all(s, "h").await.remove(0);
    let id = l.lease.delivery_id;
    let forged = Lease {
        token: l.lease.token.wrapping_add(1),
        ..l.lease.clone()
    };
    assert_lease_lost(
        s.complete(&forged, ok(), vec![]).await,
        id,
        "forged complete",
    );
    assert_lease_lost(
        s.fail(&forged, failed(), dead("x")).await,
        id,
        "forged fail",
    );
    assert_lease_lost(s.extend(&forged).await, id, "forged extend");
    assert_eq!(s.delivery(id).await.unwrap().state, DeliveryState::Leased);

    // Expire, rescue and re-lease: the first lease is now stale.
    cx.advance(Duration::from_secs(76));
    assert_eq!(rescue_expired(s, cx.clock(), 10).await.unwrap(), 1);
    cx.advance(Duration::from_secs(2));
    s.promote_due(10).await.unwrap();
    let l2 = lease_all(s, "h").await.remove(0);
    assert_eq!(l2.lease.delivery_id, id);
    assert_ne!(
        l2.lease.token, l.lease.token,
        "a new lease gets a new token"
    );
    assert_lease_lost(
        s.complete(&l.lease, ok(), vec![]).await,
        id,
        "stale complete",
    );
    s.complete(&l2.lease, ok(), vec![]).await.unwrap();
}

/// `fail` with `Retry{at}` parks the delivery as retrying until `at`; after
/// `promote_due` it leases again as attempt 2, with both attempts recorded.
pub async fn fail_with_retry_waits_then_redelivers<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    let id = enqueue1(s, msg("t", "x")).await;
    let l = lease_all(s, "h").await.remove(0);
    let at = cx.now().plus(Duration::from_secs(2));
    s.fail(
        &l.lease,
        failed(),
        Disposition::Retry {
            after: Duration::from_secs(2),
        },
    )
    .await
    .unwrap();
    let d = delivery_of(s, id, "h").await;
    assert_eq!(d.state, DeliveryState::Retrying);
    assert_eq!(d.next_at, Some(at));
    assert_eq!(d.attempts[0].report, Some(failed()));
    assert_eq!(d.attempts[0].finished_at, Some(cx.now()));
    assert_eq!(s.next_due().await.unwrap(), Some(at));
    assert_eq!(depth(s, "t").await, 1, "retrying is open");
    assert!(lease_all(s, "h").await.is_empty(), "retrying is not leased");
    cx.advance(Duration::from_millis(1999));
    assert_eq!(s.promote_due(10).await.unwrap(), 0, "not yet due");
    cx.advance(Duration::from_millis(1));
    assert_eq!(s.promote_due(10).await.unwrap(), 1);
    assert_eq!(delivery_of(s, id, "h").await.state, DeliveryState::Ready);
    assert_eq!(s.next_due().await.unwrap(), None);
    let l2 = lease_all(s, "h").await.remove(0);
    assert_eq!(l2.attempt, 2);
    assert_lease_lost(
        s.complete(&l.lease, ok(), vec![]).await,
        l.lease.delivery_id,
        "old",
    );
    s.complete(&l2.lease, ok(), vec![]).await.unwrap();
    let d = delivery_of(s, id, "h").await;
    assert_eq!(d.state, DeliveryState::Succeeded);
    let nums: Vec<_> = d.attempts.iter().map(|a| (a.number, a.round)).collect();
    assert_eq!(nums, [(1, 0), (2, 0)]);
}

/// `fail` with `Dead` puts the delivery in the handler's DLQ with its reason.
pub async fn fail_with_dead_goes_to_dlq<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    let id = enqueue1(s, msg("t", "x")).await;
    let l = lease_all(s, "h").await.remove(0);
    cx.advance(Duration::from_secs(1));
    s.fail(&l.lease, report(Outcome::Rejected), dead("rejected"))
        .await
        .unwrap();
    let d = delivery_of(s, id, "h").await;
    assert_eq!(d.state, DeliveryState::Dead);
    assert_eq!(d.dead_reason.as_deref(), Some("rejected"));
    assert_eq!(d.dead_at, Some(cx.now()));
    assert_eq!(d.attempts.len(), 1);
    assert_eq!(d.attempts[0].report, Some(report(Outcome::Rejected)));
    assert_eq!(count(s, "h", DeliveryState::Dead).await, 1);
    assert_eq!(depth(s, "t").await, 0, "dead is not open");
    let dlq = s
        .dead_letters(&DeadFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(dlq, vec![d]);
    assert!(lease_all(s, "h").await.is_empty());
}

/// Driving failures with `HandlerPolicy::after_failure` (as the worker does):
/// 5 retries with jittered 1, 2, 4, 8, 16 s backoff, then the DLQ with the
/// whole history.
pub async fn policy_backoff_sequence_reaches_dlq<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    let p = handler(s, "h", "t").await.policy;
    let id = enqueue1(s, msg("t", "poison")).await;
    let mut rng = rand::rng();
    for attempt in 1..=6u32 {
        let l = lease_all(s, "h").await;
        assert_eq!(l.len(), 1, "attempt {attempt} leased");
        assert_eq!(l[0].attempt, attempt);
        let disp = p.after_failure(attempt, "exit 3", &mut rng);
        s.fail(&l[0].lease, failed(), disp.clone()).await.unwrap();
        let d = delivery_of(s, id, "h").await;
        match disp {
            Disposition::Retry { after } => {
                let at = cx.now().plus(after);
                assert_backoff(&p, attempt, cx.now(), at);
                assert_eq!(d.state, DeliveryState::Retrying);
                assert_eq!(d.next_at, Some(at));
                cx.clock().set(at);
                assert_eq!(s.promote_due(10).await.unwrap(), 1);
            }
            Disposition::Dead { reason } => {
                assert_eq!(attempt, 6);
                assert!(reason.contains("6 of 6"), "{reason}");
                assert_eq!(d.state, DeliveryState::Dead);
                assert_eq!(d.dead_reason, Some(reason));
                assert_eq!(d.attempts.len(), 6, "the whole history is kept");
            }
        }
    }
}

/// This file's cases, for [`store_conformance_tests!`](crate::store_conformance_tests).
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_lease {
    ($($with:tt)*) => {
        $crate::__store_conformance_group! { $($with)* lease:
            lease_returns_oldest_first_up_to_max,
            concurrent_leases_never_hand_out_twice,
            paused_handler_leases_nothing,
            unrunnable_pause_names_its_reason_and_ends_with_a_fix,
            extend_moves_expiry,
            complete_records_success,
            stale_or_forged_lease_is_lost,
            fail_with_retry_waits_then_redelivers,
            fail_with_dead_goes_to_dlq,
            policy_backoff_sequence_reaches_dlq,
        }
    };
}
