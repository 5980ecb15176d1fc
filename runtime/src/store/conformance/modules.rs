//! Module garbage collection by `prune`: a module goes once no handler's
//! current module is it and no retained attempt (open, dead, or history kept
//! until prune) records it, for [`MODULE_GRACE`]; until then `module` serves
//! it (what `sluice run --delivery` fetches). Across restarts, with a shared
//! module, and with a registration racing two instances' passes.

use std::time::Duration;

use super::helpers::*;
use super::{Ctx, Harness};
use crate::store::{MODULE_GRACE, Store, StoreConfig, StoreError};

/// Whether `s` still serves module `tag`.
async fn kept(s: &dyn Store, tag: u8) -> bool {
    match s.module(&sha256_hex(&module(tag))).await {
        Ok(bytes) => {
            assert_eq!(bytes, module(tag), "module {tag}'s bytes");
            true
        }
        Err(StoreError::UnknownModule(_)) => false,
        Err(e) => panic!("module {tag}: {e}"),
    }
}

/// Runs one prune pass; returns how many modules it collected.
async fn collect(s: &dyn Store) -> u64 {
    s.prune(1000).await.expect("prune").modules
}

/// Registers `name` on `topic` with module `tag`.
async fn with_module(s: &dyn Store, name: &str, topic: &str, tag: u8) {
    register(s, name, topic, policy(), module(tag)).await;
}

/// Enqueues one message to `topic`, leases it for `handler` and dead-letters
/// it with an attempt that ran module `tag`; returns the delivery.
async fn dead_after_running(
    s: &dyn Store,
    handler: &str,
    topic: &str,
    tag: u8,
) -> crate::store::DeliveryId {
    enqueue1(s, msg(topic, "x")).await;
    let l = s.lease(handler, 1).await.unwrap().remove(0);
    s.fail(&l.lease, ran(failed(), &module(tag)), dead("d"))
        .await
        .unwrap();
    l.lease.delivery_id
}

/// A removed handler with no deliveries: its module stays through the grace
/// (the pass that finds it unreferenced starts it), then goes; the module
/// of a handler still registered is never touched.
pub async fn module_of_a_removed_handler_goes_after_its_grace<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    with_module(s, "gone", "t", 1).await;
    with_module(s, "stays", "u", 2).await;
    s.remove_handler("gone").await.unwrap();
    assert_eq!(collect(s).await, 0, "the first pass starts the grace");
    assert!(kept(s, 1).await);
    cx.advance(MODULE_GRACE - Duration::from_millis(1));
    assert_eq!(collect(s).await, 0, "inside the grace");
    assert!(kept(s, 1).await);
    cx.advance(Duration::from_millis(1));
    assert_eq!(collect(s).await, 1);
    assert!(!kept(s, 1).await, "collected");
    assert!(kept(s, 2).await, "a current module stays");
    cx.advance(MODULE_GRACE * 2);
    assert_eq!(collect(s).await, 0);
    assert!(kept(s, 2).await);
    assert_eq!(
        s.handler("stays").await.unwrap().module_sha256,
        sha256_hex(&module(2))
    );
}

/// Re-registered with a new module, a handler's old module stays while its
/// dead delivery (which ran it) is in the DLQ, and goes a grace after the
/// delivery is purged. Removing a handler takes its deliveries (and so their
/// references) with it.
pub async fn module_a_dead_delivery_ran_stays_until_it_is_purged<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    with_module(s, "h", "t", 1).await;
    let id = dead_after_running(s, "h", "t", 1).await;
    with_module(s, "h", "t", 2).await;
    assert_eq!(collect(s).await, 0);
    cx.advance(MODULE_GRACE * 2);
    assert_eq!(collect(s).await, 0, "the dead delivery refers to module 1");
    assert!(kept(s, 1).await, "what `sluice run --delivery` fetches");
    let d = s.delivery(id).await.unwrap();
    let sha = d.attempts[0].report.as_ref().unwrap().module_sha256.clone();
    assert_eq!(s.module(&sha).await.unwrap(), module(1));

    s.purge_dead_one(id).await.unwrap();
    assert_eq!(collect(s).await, 0, "the grace starts now");
    assert!(kept(s, 1).await);
    cx.advance(MODULE_GRACE);
    assert_eq!(collect(s).await, 1);
    assert!(!kept(s, 1).await);
    assert!(kept(s, 2).await, "the handler's current module");

    // Removal: the handler's dead delivery goes with it, then its module.
    dead_after_running(s, "h", "t", 2).await;
    s.remove_handler("h").await.unwrap();
    assert_eq!(collect(s).await, 0);
    cx.advance(MODULE_GRACE);
    assert_eq!(collect(s).await, 1);
    assert!(!kept(s, 2).await);
}

/// History kept until prune counts too: a module stays while a dead
/// delivery inside DLQ retention or a succeeded one inside message retention
/// recorded it, and goes a grace after prune removed the last of them.
pub async fn module_stays_while_retained_history_records_it<H: Harness>(mut cx: Ctx<H>) {
    let hour = Duration::from_secs(3600);
    cx.reopen_with(StoreConfig {
        dlq_retention: hour,
        message_retention: 30 * hour,
        ..StoreConfig::default()
    })
    .await;
    let s = cx.store();
    with_module(s, "h", "t", 1).await;
    enqueue1(s, msg("t", "done")).await;
    let l = s.lease("h", 1).await.unwrap().remove(0);
    s.complete(&l.lease, ran(ok(), &module(1)), vec![])
        .await
        .unwrap();
    dead_after_running(s, "h", "t", 1).await;
    with_module(s, "h", "t", 2).await;

    cx.advance(2 * hour);
    let r = s.prune(1000).await.unwrap();
    assert_eq!((r.dead, r.modules), (1, 0), "{r:?}");
    cx.advance(MODULE_GRACE);
    assert_eq!(collect(s).await, 0, "the succeeded delivery refers to it");
    assert!(kept(s, 1).await);

    cx.advance(30 * hour);
    let r = s.prune(1000).await.unwrap();
    assert_eq!((r.messages, r.modules), (2, 0), "both messages: {r:?}");
    assert!(kept(s, 1).await, "pruned just now: the grace starts");
    cx.advance(MODULE_GRACE);
    assert_eq!(collect(s).await, 1);
    assert!(!kept(s, 1).await);
    assert!(kept(s, 2).await);
}

/// Two handlers of the same bytes share one module: it stays while either
/// uses it, and goes once neither does.
pub async fn a_shared_module_stays_while_either_handler_uses_it<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    with_module(s, "a", "t", 1).await;
    with_module(s, "b", "u", 1).await;
    s.remove_handler("a").await.unwrap();
    assert_eq!(collect(s).await, 0);
    cx.advance(MODULE_GRACE);
    assert_eq!(collect(s).await, 0, "b still uses it");
    assert!(kept(s, 1).await);
    with_module(s, "b", "u", 2).await;
    assert_eq!(collect(s).await, 0);
    cx.advance(MODULE_GRACE);
    assert_eq!(collect(s).await, 1);
    assert!(!kept(s, 1).await);
    assert!(kept(s, 2).await);
}

/// Registering an unreferenced module again ends its grace: a later removal
/// starts a new one, from the pass that finds it unreferenced again.
pub async fn registering_a_module_again_ends_its_grace<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    with_module(s, "h", "t", 1).await;
    s.remove_handler("h").await.unwrap();
    assert_eq!(collect(s).await, 0);
    cx.advance(MODULE_GRACE - Duration::from_secs(1));
    with_module(s, "h", "t", 1).await;
    s.remove_handler("h").await.unwrap();
    cx.advance(Duration::from_secs(1));
    assert_eq!(collect(s).await, 0, "a new grace, from this pass");
    assert!(kept(s, 1).await);
    cx.advance(MODULE_GRACE);
    assert_eq!(collect(s).await, 1);
    assert!(!kept(s, 1).await);
}

/// An attempt still running a module its handler replaced meanwhile records
/// it when it settles, inside the grace: the module is referenced again and
/// stays.
pub async fn an_attempt_settling_after_its_module_was_replaced_keeps_it<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    with_module(s, "h", "t", 1).await;
    enqueue1(s, msg("t", "x")).await;
    let l = s.lease("h", 1).await.unwrap().remove(0);
    with_module(s, "h", "t", 2).await;
    assert_eq!(
        collect(s).await,
        0,
        "module 1 is unreferenced: its grace starts"
    );
    cx.advance(Duration::from_secs(10));
    s.fail(&l.lease, ran(failed(), &module(1)), dead("d"))
        .await
        .unwrap();
    cx.advance(MODULE_GRACE);
    assert_eq!(collect(s).await, 0);
    assert!(kept(s, 1).await, "the dead delivery's attempt ran it");
}

/// The grace, the references and a collection survive restarts: a mark made
/// before a restart still counts after it, a reference made before it still
/// keeps its module, and a collected module stays gone.
pub async fn module_collection_survives_restart<H: Harness>(mut cx: Ctx<H>) {
    {
        let s = cx.store();
        with_module(s, "gone", "t", 1).await;
        with_module(s, "h", "u", 2).await;
        dead_after_running(s, "h", "u", 2).await;
        with_module(s, "h", "u", 3).await;
        s.remove_handler("gone").await.unwrap();
        assert_eq!(collect(s).await, 0);
    }
    cx.restart().await;
    cx.advance(MODULE_GRACE);
    assert_eq!(
        collect(cx.store()).await,
        1,
        "module 1, marked before the restart"
    );
    cx.restart().await;
    let s = cx.store();
    assert!(!kept(s, 1).await, "collected before the restart");
    assert!(kept(s, 2).await, "the dead delivery's module");
    assert!(kept(s, 3).await, "the current module");
    cx.advance(MODULE_GRACE);
    assert_eq!(collect(s).await, 0);
    assert!(kept(s, 2).await);
}

/// Two instances collecting at once while a handler registers the module
/// they are about to collect: whoever goes first, the module is there for
/// the handler afterwards, its bytes intact, and it is collected at most once.
pub async fn collection_racing_a_registration_never_loses_the_module<H: Harness>(mut cx: Ctx<H>) {
    let b = cx.peer().await;
    let a = cx.shared();
    for round in 0..12u8 {
        with_module(&*a, "h", "t", 1).await;
        a.remove_handler("h").await.unwrap();
        assert_eq!(collect(&*a).await, 0);
        cx.advance(MODULE_GRACE);
        let (ra, rb, put) = tokio::join!(
            async { collect(&*a).await },
            async { collect(&*b).await },
            async { with_module(&*b, "h", "t", 1).await },
        );
        let () = put;
        assert!(ra + rb <= 1, "round {round}: collected {ra} + {rb}");
        for s in [&*a, &*b] {
            assert!(kept(s, 1).await, "round {round}: the registered module");
            assert_eq!(
                s.handler("h").await.unwrap().module_sha256,
                sha256_hex(&module(1))
            );
        }
        a.remove_handler("h").await.unwrap();
        // Its grace starts at the next pass: no mark carried over.
        assert_eq!(collect(&*a).await, 0, "round {round}");
        cx.advance(MODULE_GRACE);
        assert_eq!(collect(&*a).await, 1, "round {round}: collected after all");
    }
}

/// This file's cases, for [`store_conformance_tests!`](crate::store_conformance_tests).
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_modules {
    ($($with:tt)*) => {
        $crate::__store_conformance_group! { $($with)* modules:
            module_of_a_removed_handler_goes_after_its_grace,
            module_a_dead_delivery_ran_stays_until_it_is_purged,
            module_stays_while_retained_history_records_it,
            a_shared_module_stays_while_either_handler_uses_it,
            registering_a_module_again_ends_its_grace,
            an_attempt_settling_after_its_module_was_replaced_keeps_it,
            module_collection_survives_restart,
            collection_racing_a_registration_never_loses_the_module,
        }
    };
}
