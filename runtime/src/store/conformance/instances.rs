//! Two instances on one place, as two runners sharing a queue: a change made
//! through one wakes the other, they never lease the same delivery, and one
//! instance's restart releases only its own leases (the other's expire and
//! are rescued). The second instance comes from [`Harness::open_peer`].

use std::collections::BTreeSet;
use std::time::Duration;

use super::helpers::*;
use super::{Ctx, Harness};
use crate::outcome::Outcome;
use crate::store::{DeliveryState, Store};

/// How long a case waits for a wake that crosses instances (an event that
/// must come, not time that must pass; a backend's notification round trip).
const WAKE: Duration = Duration::from_secs(10);

/// Waits until `rx` changes; panics naming `what` if it does not within [`WAKE`].
async fn changed(rx: &mut tokio::sync::watch::Receiver<u64>, what: &str) {
    tokio::time::timeout(WAKE, rx.changed())
        .await
        .unwrap_or_else(|_| panic!("{what}: no wake within {WAKE:?}"))
        .expect("signal open");
}

/// A handler registered, paused and resumed through B wakes A's handlers
/// signal, and A sees the change; an enqueue through B wakes A's ready
/// signal and A can lease it.
pub async fn a_change_through_one_instance_wakes_the_other<H: Harness>(mut cx: Ctx<H>) {
    let b = cx.peer().await;
    let a = cx.store();
    let mut handlers = a.handlers_signal();
    handlers.borrow_and_update();
    handler(&*b, "h", "t").await;
    changed(&mut handlers, "registration through B").await;
    assert_eq!(a.handler("h").await.unwrap().topic, "t");
    b.set_paused("h", true).await.unwrap();
    changed(&mut handlers, "pause through B").await;
    assert!(a.handler("h").await.unwrap().paused, "A sees the pause");
    b.set_paused("h", false).await.unwrap();
    changed(&mut handlers, "resume through B").await;
    let mut ready = a.ready_signal();
    ready.borrow_and_update();
    enqueue1(&*b, msg("t", "x")).await;
    changed(&mut ready, "enqueue through B").await;
    assert_eq!(payloads(&lease_all(a, "h").await), ["x"]);
}

/// Two tasks on each instance leasing at once never get the same delivery.
pub async fn two_instances_never_lease_the_same_delivery<H: Harness>(mut cx: Ctx<H>) {
    let b = cx.peer().await;
    let s = cx.store();
    handler(s, "h", "t").await;
    let batch: Vec<_> = (0..400).map(|i| msg("t", &i.to_string())).collect();
    s.enqueue(batch).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..4 {
        let s: std::sync::Arc<H::Store> = if i % 2 == 0 { cx.shared() } else { b.clone() };
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

/// A restarts while B stays open: A's lease is released at once
/// (interrupted), B's stays B's (B completes it); B's other lease, once B
/// is gone, expires and is rescued through A. Meaningful only where
/// separate processes share the place ([`Harness::SHARED_ACROSS_PROCESSES`]);
/// where one process owns the store, a restart ends every instance and
/// `leases_are_released_on_open` is the whole rule.
pub async fn a_restart_releases_only_its_own_leases<H: Harness>(mut cx: Ctx<H>) {
    if !H::SHARED_ACROSS_PROCESSES {
        eprintln!(
            "a_restart_releases_only_its_own_leases: one process owns this store; \
             see leases_are_released_on_open"
        );
        return;
    }
    let b = cx.peer().await;
    let p = handler(cx.store(), "h", "t").await.policy;
    enqueue_n(cx.store(), "t", 3).await;
    let la = cx.store().lease("h", 1).await.unwrap().remove(0);
    let lb = b.lease("h", 2).await.unwrap();
    assert_eq!(lb.len(), 2);
    cx.restart().await;
    let a = cx.store();
    let d = a.delivery(la.lease.delivery_id).await.unwrap();
    assert!(
        matches!(d.state, DeliveryState::Ready | DeliveryState::Retrying),
        "A's lease released on A's restart, got {:?}",
        d.state
    );
    assert_interrupted(&d, 0, "process restarted");
    for l in &lb {
        let d = a.delivery(l.lease.delivery_id).await.unwrap();
        assert_eq!(
            d.state,
            DeliveryState::Leased,
            "B's lease is not A's to release"
        );
    }
    b.complete(&lb[0].lease, ok(), vec![]).await.unwrap();
    drop(b);
    cx.advance(p.lease() + Duration::from_secs(1));
    let expired = a.expired_leases(10).await.unwrap();
    assert_eq!(
        expired
            .iter()
            .map(|e| e.lease.delivery_id)
            .collect::<Vec<_>>(),
        vec![lb[1].lease.delivery_id],
        "the vanished instance's lease expires"
    );
    rescue_expired(a, cx.clock(), 10).await.unwrap();
    let d = a.delivery(lb[1].lease.delivery_id).await.unwrap();
    let outcome = &d.attempts[0].report.as_ref().unwrap().outcome;
    assert!(
        matches!(outcome, Outcome::Interrupted { .. }),
        "{outcome:?}"
    );
}

/// This file's cases, for [`store_conformance_tests!`](crate::store_conformance_tests).
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_instances {
    ($($with:tt)*) => {
        $crate::__store_conformance_group! { $($with)* instances:
            a_change_through_one_instance_wakes_the_other,
            two_instances_never_lease_the_same_delivery,
            a_restart_releases_only_its_own_leases,
        }
    };
}
