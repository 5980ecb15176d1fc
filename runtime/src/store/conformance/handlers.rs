//! Handlers and modules: `put_handler`, `handler`, `handlers`, `module`,
//! `remove_handler`, the checks of names and policies, and the `stats` that count
//! each handler's deliveries.

use std::collections::BTreeMap;
use std::time::Duration;

use super::helpers::*;
use super::{Ctx, Harness};
use crate::policy::HandlerPolicy;
use crate::store::{
    DeadFilter, DeliveryState, HandlerSpec, NewMessage, Store, StoreError, StoreResult,
};

/// `put_handler` stores handler and module; `handler`, `handlers` and `module`
/// read them back; re-registration bumps the version and keeps `created_at`.
pub async fn put_handler_registers_and_lists<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    let b = handler(s, "billing", "orders").await;
    assert_eq!(b.name, "billing");
    assert_eq!(b.topic, "orders");
    assert_eq!(b.version, 1);
    assert!(!b.paused);
    assert_eq!(b.created_at, T0);
    assert_eq!(b.module_sha256, sha256_hex(&module(0)));
    assert_eq!(b.policy, policy());
    handler(s, "audit", "orders").await;
    assert_eq!(s.handler("billing").await.unwrap(), b);
    let names: Vec<_> = s
        .handlers()
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.name)
        .collect();
    assert_eq!(names, ["audit", "billing"], "handlers are listed by name");
    assert_eq!(s.module(&b.module_sha256).await.unwrap(), module(0));

    cx.advance(Duration::from_secs(5));
    let p = HandlerPolicy {
        retries: 2,
        ..policy()
    };
    let b2 = s
        .put_handler(
            HandlerSpec {
                name: "billing".into(),
                topic: "orders".into(),
                policy: p.clone(),
            },
            module(1),
        )
        .await
        .unwrap();
    assert_eq!(b2.version, 2, "re-registration bumps the version");
    assert_eq!(b2.created_at, T0, "created_at kept");
    assert_eq!(b2.updated_at, cx.now());
    assert_eq!(b2.module_sha256, sha256_hex(&module(1)));
    assert_eq!(b2.policy, p);
    assert_eq!(s.module(&b2.module_sha256).await.unwrap(), module(1));
}

/// Replacing a handler's module keeps its deliveries; later leases see the new policy.
pub async fn reregistering_keeps_deliveries<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    let id = enqueue1(s, msg("t", "one")).await;
    let p = HandlerPolicy {
        retries: 1,
        ..policy()
    };
    s.put_handler(
        HandlerSpec {
            name: "h".into(),
            topic: "t".into(),
            policy: p,
        },
        module(9),
    )
    .await
    .unwrap();
    let l = lease_all(s, "h").await;
    assert_eq!(l.len(), 1, "the delivery survived re-registration");
    assert_eq!(l[0].message.id, id);
    assert_eq!(
        l[0].max_attempts, 2,
        "max_attempts comes from the policy at lease time"
    );
}

/// Verbs naming a handler that does not exist get `UnknownHandler`; an unknown
/// module sha gets `UnknownModule`.
pub async fn unknown_handler_is_refused<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    fn unknown<T: std::fmt::Debug>(r: StoreResult<T>, verb: &str) {
        match r {
            Err(e @ StoreError::UnknownHandler(_)) => {
                assert!(
                    e.to_string().contains("ghost"),
                    "{verb}: message names it: {e}"
                );
            }
            other => panic!("{verb}: expected UnknownHandler(\"ghost\"), got {other:?}"),
        }
    }
    unknown(s.handler("ghost").await, "handler");
    unknown(s.set_paused("ghost", true).await, "set_paused");
    unknown(s.remove_handler("ghost").await, "remove_handler");
    unknown(s.lease("ghost", 1).await, "lease");
    unknown(s.replay_since("ghost", T0).await, "replay_since");
    match s.module(&sha256_hex(b"nothing")).await {
        Err(StoreError::UnknownModule(_)) => {}
        other => panic!("module: expected UnknownModule, got {other:?}"),
    }
    match s.message(uuid::Uuid::now_v7()).await {
        Err(StoreError::UnknownMessage(_)) => {}
        other => panic!("message: expected UnknownMessage, got {other:?}"),
    }
    match s.delivery(uuid::Uuid::now_v7()).await {
        Err(StoreError::UnknownDelivery(_)) => {}
        other => panic!("delivery: expected UnknownDelivery, got {other:?}"),
    }
}

/// Names breaking `[a-z0-9][a-z0-9._-]{0,127}` and bad keys get `InvalidName`
/// naming what was wrong; nothing is created.
pub async fn invalid_names_are_refused<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    let bad_handler = s
        .put_handler(
            HandlerSpec {
                name: "Bad Name".into(),
                topic: "t".into(),
                policy: policy(),
            },
            module(0),
        )
        .await;
    match bad_handler {
        Err(StoreError::InvalidName(e)) => {
            assert_eq!(e.what, "handler");
            assert!(e.to_string().contains("Bad Name"), "{e}");
        }
        other => panic!("expected InvalidName(handler), got {other:?}"),
    }
    let bad_topic = s
        .put_handler(
            HandlerSpec {
                name: "h".into(),
                topic: "Orders/EU".into(),
                policy: policy(),
            },
            module(0),
        )
        .await;
    match bad_topic {
        Err(StoreError::InvalidName(e)) => assert_eq!(e.what, "topic"),
        other => panic!("expected InvalidName(topic), got {other:?}"),
    }
    assert!(s.handlers().await.unwrap().is_empty(), "nothing registered");

    handler(s, "h", "t").await;
    match s.enqueue(vec![msg("no such/topic", "x")]).await {
        Err(StoreError::InvalidName(e)) => assert_eq!(e.what, "topic"),
        other => panic!("enqueue to a bad topic name: expected InvalidName, got {other:?}"),
    }
    for (m, what) in [
        (keyed("t", "x", ""), "ordering key"),
        (
            NewMessage {
                idempotency_key: Some("k".repeat(300)),
                ..msg("t", "x")
            },
            "idempotency",
        ),
    ] {
        match s.enqueue(vec![msg("t", "fine"), m]).await {
            Err(StoreError::InvalidName(e)) => {
                assert!(e.what.contains(what), "expected {what}, got {:?}", e.what);
            }
            other => panic!("bad {what}: expected InvalidName, got {other:?}"),
        }
    }
    assert_eq!(depth(s, "t").await, 0, "a refused batch creates nothing");
}

/// A policy out of bounds gets `InvalidPolicy` naming the field.
pub async fn invalid_policy_is_refused<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    let r = s
        .put_handler(
            HandlerSpec {
                name: "h".into(),
                topic: "t".into(),
                policy: HandlerPolicy {
                    timeout_ms: 0,
                    ..policy()
                },
            },
            module(0),
        )
        .await;
    match r {
        Err(StoreError::InvalidPolicy(e)) => assert_eq!(e.field, "timeout"),
        other => panic!("expected InvalidPolicy(timeout), got {other:?}"),
    }
}

/// A topic that once had a handler stays known: enqueue succeeds with no deliveries.
pub async fn topic_stays_known_after_its_handler_is_removed<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    s.remove_handler("h").await.unwrap();
    let id = enqueue1(s, msg("t", "x")).await;
    let st = s.message(id).await.unwrap();
    assert!(st.deliveries.is_empty(), "no handler, no delivery");
}

/// `remove_handler` removes the handler with its deliveries and says how many.
pub async fn remove_handler_drops_its_deliveries<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "gone", "t").await;
    handler(s, "kept", "t").await;
    let ids = s
        .enqueue(vec![msg("t", "1"), msg("t", "2"), msg("t", "3")])
        .await
        .unwrap();
    let l = s.lease("gone", 1).await.unwrap().remove(0);
    s.fail(&l.lease, failed(), dead("x")).await.unwrap();
    assert_eq!(s.remove_handler("gone").await.unwrap(), 3);
    assert!(matches!(
        s.handler("gone").await,
        Err(StoreError::UnknownHandler(_))
    ));
    let st = s.message(ids[0].id).await.unwrap();
    assert!(st.deliveries.iter().all(|d| d.handler == "kept"));
    assert_eq!(depth(s, "t").await, 3);
    assert!(
        s.dead_letters(&DeadFilter::default(), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let stats = s.stats().await.unwrap();
    assert!(stats.handlers.iter().all(|h| h.handler != "gone"));
}

/// `stats` counts every state (all seven keys present), topic depth and the
/// consumer lag (when the oldest ready delivery became ready).
pub async fn stats_count_every_state<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    let st = s.stats().await.unwrap();
    let h = &st.handlers[0];
    assert_eq!(h.counts.len(), 7, "every state present: {:?}", h.counts);
    assert!(h.counts.values().all(|&c| c == 0));
    assert_eq!(h.oldest_ready_at, None);

    let oldest = cx.now();
    s.enqueue((0..6).map(|i| msg("t", &i.to_string())).collect())
        .await
        .unwrap();
    cx.advance(Duration::from_secs(1));
    s.enqueue(vec![
        keyed("t", "k1", "k"),
        keyed("t", "k2", "k"),
        NewMessage {
            not_before: Some(cx.now().plus(Duration::from_secs(60))),
            ..msg("t", "later")
        },
    ])
    .await
    .unwrap();
    let l = s.lease("h", 4).await.unwrap();
    s.complete(&l[0].lease, ok(), vec![]).await.unwrap();
    s.fail(&l[1].lease, failed(), dead("x")).await.unwrap();
    s.fail(&l[2].lease, failed(), retry_in(Duration::from_secs(9)))
        .await
        .unwrap();
    let st = s.stats().await.unwrap();
    let h = &st.handlers[0];
    let want: BTreeMap<_, _> = [
        (DeliveryState::Scheduled, 1),
        (DeliveryState::Blocked, 1),
        (DeliveryState::Ready, 3),
        (DeliveryState::Leased, 1),
        (DeliveryState::Retrying, 1),
        (DeliveryState::Succeeded, 1),
        (DeliveryState::Dead, 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(h.counts, want);
    assert_eq!(h.oldest_ready_at, Some(oldest));
    assert_eq!(st.topic_depth.get("t"), Some(&7));
    assert_eq!(h.topic, "t");
}

/// This file's cases, for [`store_conformance_tests!`](crate::store_conformance_tests).
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_handlers {
    ($($with:tt)*) => {
        $crate::__store_conformance_group! { $($with)* handlers:
            put_handler_registers_and_lists,
            reregistering_keeps_deliveries,
            unknown_handler_is_refused,
            invalid_names_are_refused,
            invalid_policy_is_refused,
            topic_stays_known_after_its_handler_is_removed,
            remove_handler_drops_its_deliveries,
            stats_count_every_state,
        }
    };
}
