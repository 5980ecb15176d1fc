//! `query_deliveries`: deliveries by state per handler (paged, both orders),
//! by delivery id, message id, idempotency key, ordering key, topic, outcome
//! kind and time range; following state changes and restarts.

use std::time::Duration;

use super::helpers::*;
use super::{Ctx, Harness};
use crate::outcome::Outcome;
use crate::store::{
    DeliveryId, DeliveryPage, DeliveryQuery, DeliveryState, NewMessage, Store, StoreError,
};

/// Every page of `q`, `limit` at a time, concatenated; checks each cursor.
async fn all_pages(s: &dyn Store, q: &DeliveryQuery, limit: usize) -> Vec<DeliveryId> {
    let mut out = Vec::new();
    let mut after = None;
    for _ in 0..1000 {
        let DeliveryPage { deliveries, next } =
            s.query_deliveries(q, after, limit).await.expect("query");
        assert!(deliveries.len() <= limit, "a page holds at most its limit");
        out.extend(deliveries.iter().map(|d| d.id));
        match next {
            Some(n) => {
                assert_eq!(Some(n), out.last().copied(), "the cursor is the last id");
                after = Some(n);
            }
            None => return out,
        }
    }
    panic!("query never reached its last page");
}

/// One page of `q` (up to 1,000), as ids.
async fn ids(s: &dyn Store, q: &DeliveryQuery) -> Vec<DeliveryId> {
    let page = s.query_deliveries(q, None, 1000).await.expect("query");
    assert_eq!(page.next, None, "everything fits one page");
    page.deliveries.iter().map(|d| d.id).collect()
}

fn in_state(handler: &str, state: DeliveryState) -> DeliveryQuery {
    DeliveryQuery {
        handler: Some(handler.into()),
        state: Some(state),
        ..DeliveryQuery::default()
    }
}

/// Deliveries by state per handler come oldest first, or newest first, and
/// page through every match exactly once with the cursor.
pub async fn query_by_state_pages_both_ways<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "a", "t").await;
    handler(s, "b", "t").await;
    let mut msgs = Vec::new();
    for i in 0..7 {
        msgs.push(enqueue1(s, msg("t", &i.to_string())).await);
        cx.advance(Duration::from_millis(1));
    }
    let mut a_ready = Vec::new();
    for m in &msgs {
        a_ready.push(delivery_of(s, *m, "a").await.id);
    }
    // Two of a's go elsewhere: one succeeds, one dies.
    let l = s.lease("a", 2).await.unwrap();
    s.complete(&l[0].lease, ok(), vec![]).await.unwrap();
    s.fail(&l[1].lease, failed(), dead("d")).await.unwrap();
    let (done, gone) = (l[0].lease.delivery_id, l[1].lease.delivery_id);
    a_ready.retain(|d| *d != done && *d != gone);

    let q = in_state("a", DeliveryState::Ready);
    assert_eq!(ids(s, &q).await, a_ready, "oldest first");
    for limit in [1, 2, 5] {
        assert_eq!(all_pages(s, &q, limit).await, a_ready, "paged by {limit}");
    }
    let newest = DeliveryQuery {
        newest_first: true,
        ..q.clone()
    };
    let mut rev = a_ready.clone();
    rev.reverse();
    assert_eq!(ids(s, &newest).await, rev, "newest first");
    assert_eq!(all_pages(s, &newest, 2).await, rev, "newest first, paged");

    assert_eq!(
        ids(s, &in_state("a", DeliveryState::Succeeded)).await,
        [done]
    );
    assert_eq!(ids(s, &in_state("a", DeliveryState::Dead)).await, [gone]);
    assert_eq!(ids(s, &in_state("b", DeliveryState::Ready)).await.len(), 7);
    assert!(ids(s, &in_state("b", DeliveryState::Dead)).await.is_empty());

    let every = DeliveryQuery::default();
    assert_eq!(all_pages(s, &every, 3).await.len(), 14, "every delivery");
    match s
        .query_deliveries(&in_state("nope", DeliveryState::Ready), None, 10)
        .await
    {
        Err(StoreError::UnknownHandler(h)) => assert_eq!(h, "nope"),
        other => panic!("unknown handler: expected UnknownHandler, got {other:?}"),
    }
}

/// A delivery id, a message id, an idempotency key, an ordering key or a topic
/// finds exactly its deliveries; criteria combine.
pub async fn query_by_ids_keys_and_topic<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "a", "t").await;
    handler(s, "b", "t").await;
    handler(s, "c", "u").await;
    let with_key = enqueue1(
        s,
        NewMessage {
            idempotency_key: Some("order-17".into()),
            ..msg("t", "x")
        },
    )
    .await;
    let ordered = enqueue1(s, keyed("t", "y", "customer-9")).await;
    let plain = enqueue1(s, msg("t", "z")).await;
    let other = enqueue1(s, msg("u", "w")).await;

    let d = delivery_of(s, with_key, "b").await.id;
    let by_delivery = DeliveryQuery {
        delivery_id: Some(d),
        ..DeliveryQuery::default()
    };
    assert_eq!(ids(s, &by_delivery).await, [d]);
    let unknown = DeliveryQuery {
        delivery_id: Some(uuid::Uuid::now_v7()),
        ..DeliveryQuery::default()
    };
    assert!(ids(s, &unknown).await.is_empty(), "an unknown delivery id");

    let by_message = DeliveryQuery {
        message_id: Some(with_key),
        ..DeliveryQuery::default()
    };
    let mut want = vec![
        delivery_of(s, with_key, "a").await.id,
        delivery_of(s, with_key, "b").await.id,
    ];
    want.sort();
    assert_eq!(ids(s, &by_message).await, want);

    let by_key = DeliveryQuery {
        idempotency_key: Some("order-17".into()),
        ..DeliveryQuery::default()
    };
    assert_eq!(ids(s, &by_key).await, want, "by idempotency key");
    let by_key_a = DeliveryQuery {
        handler: Some("a".into()),
        ..by_key.clone()
    };
    let a_delivery = delivery_of(s, with_key, "a").await.id;
    assert_eq!(ids(s, &by_key_a).await, [a_delivery]);
    let by_default_key = DeliveryQuery {
        idempotency_key: Some(plain.to_string()),
        ..DeliveryQuery::default()
    };
    assert_eq!(
        ids(s, &by_default_key).await.len(),
        2,
        "the id is the default key"
    );
    let missing_key = DeliveryQuery {
        idempotency_key: Some("order-18".into()),
        ..DeliveryQuery::default()
    };
    assert!(ids(s, &missing_key).await.is_empty());

    let by_ordering = DeliveryQuery {
        ordering_key: Some("customer-9".into()),
        ..DeliveryQuery::default()
    };
    let got = ids(s, &by_ordering).await;
    assert_eq!(got.len(), 2, "one per handler of t");
    for id in got {
        assert_eq!(s.delivery(id).await.unwrap().message_id, ordered);
    }

    let by_topic = DeliveryQuery {
        topic: Some("u".into()),
        ..DeliveryQuery::default()
    };
    assert_eq!(
        ids(s, &by_topic).await,
        [delivery_of(s, other, "c").await.id]
    );
    let t_on_b = DeliveryQuery {
        topic: Some("t".into()),
        handler: Some("b".into()),
        ..DeliveryQuery::default()
    };
    assert_eq!(ids(s, &t_on_b).await.len(), 3);
    let mismatch = DeliveryQuery {
        topic: Some("u".into()),
        handler: Some("b".into()),
        ..DeliveryQuery::default()
    };
    assert!(ids(s, &mismatch).await.is_empty(), "b is not on u");
}

/// The outcome kind of the last attempt and the creation time range filter;
/// `since` is inclusive, `until` exclusive.
pub async fn query_by_outcome_and_time<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    let mut created = Vec::new(); // (delivery, created_at)
    for i in 0..6 {
        let m = enqueue1(s, msg("t", &i.to_string())).await;
        created.push((delivery_of(s, m, "h").await.id, cx.now()));
        cx.advance(Duration::from_secs(10));
    }
    // Attempts: 0 rejected, 1 trapped (retrying), 2 ok; 3..5 never leased.
    let l = s.lease("h", 3).await.unwrap();
    s.fail(&l[0].lease, report(Outcome::Rejected), dead("r"))
        .await
        .unwrap();
    let trap = Outcome::Trap {
        trap: "unreachable".into(),
        message: "wasm trap".into(),
        backtrace: String::new(),
    };
    s.fail(&l[1].lease, report(trap), retry_in(Duration::from_secs(1)))
        .await
        .unwrap();
    s.complete(&l[2].lease, ok(), vec![]).await.unwrap();

    let kind = |k: &str| DeliveryQuery {
        outcome: Some(k.into()),
        ..DeliveryQuery::default()
    };
    assert_eq!(ids(s, &kind("rejected")).await, [created[0].0]);
    assert_eq!(ids(s, &kind("trap")).await, [created[1].0]);
    assert_eq!(ids(s, &kind("ok")).await, [created[2].0]);
    assert!(ids(s, &kind("timeout")).await.is_empty());
    let trap_retrying = DeliveryQuery {
        state: Some(DeliveryState::Retrying),
        ..kind("trap")
    };
    assert_eq!(ids(s, &trap_retrying).await, [created[1].0]);

    let window = DeliveryQuery {
        since: Some(created[1].1),
        until: Some(created[4].1),
        ..DeliveryQuery::default()
    };
    let want: Vec<_> = created[1..4].iter().map(|c| c.0).collect();
    assert_eq!(
        ids(s, &window).await,
        want,
        "since inclusive, until exclusive"
    );
    let window_newest = DeliveryQuery {
        newest_first: true,
        ..window.clone()
    };
    let mut rev = want.clone();
    rev.reverse();
    assert_eq!(all_pages(s, &window_newest, 1).await, rev);
    let ready_window = DeliveryQuery {
        state: Some(DeliveryState::Ready),
        ..window
    };
    assert_eq!(ids(s, &ready_window).await, [created[3].0]);
}

/// Results follow every state change (a blocked delivery counts as ready,
/// a replayed one leaves the dead list, a purged one is gone) and survive a
/// restart.
pub async fn query_follows_changes_and_restart<H: Harness>(mut cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    let first = enqueue1(s, keyed("t", "1", "k")).await;
    cx.advance(Duration::from_millis(1));
    let second = enqueue1(s, keyed("t", "2", "k")).await;
    let (d1, d2) = (
        delivery_of(s, first, "h").await.id,
        delivery_of(s, second, "h").await.id,
    );
    let ready = in_state("h", DeliveryState::Ready);
    assert_eq!(
        ids(s, &ready).await,
        [d1, d2],
        "the blocked one shows as ready"
    );
    let blocked = in_state("h", DeliveryState::Blocked);
    assert_eq!(
        ids(s, &blocked).await,
        [d1, d2],
        "blocked asks as users see it"
    );

    let l = s.lease("h", 1).await.unwrap().remove(0);
    assert_eq!(ids(s, &in_state("h", DeliveryState::Leased)).await, [d1]);
    assert_eq!(ids(s, &ready).await, [d2]);
    s.fail(&l.lease, failed(), dead("d")).await.unwrap();
    let dead_q = in_state("h", DeliveryState::Dead);
    assert_eq!(ids(s, &dead_q).await, [d1]);

    cx.restart().await;
    let s = cx.store();
    assert_eq!(ids(s, &dead_q).await, [d1], "after a restart");
    assert_eq!(ids(s, &ready).await, [d2], "after a restart");

    s.replay_dead(d1).await.unwrap();
    assert!(ids(s, &dead_q).await.is_empty(), "replayed: no longer dead");
    assert_eq!(ids(s, &ready).await, [d1, d2]);

    // d2 holds the key now; once it succeeds, d1 runs again and dies again.
    let l = s.lease("h", 1).await.unwrap().remove(0);
    assert_eq!(l.lease.delivery_id, d2);
    s.complete(&l.lease, ok(), vec![]).await.unwrap();
    let succeeded = in_state("h", DeliveryState::Succeeded);
    assert_eq!(ids(s, &succeeded).await, [d2]);
    let l = s.lease("h", 1).await.unwrap().remove(0);
    assert_eq!(l.lease.delivery_id, d1);
    s.fail(&l.lease, failed(), dead("d")).await.unwrap();
    assert_eq!(ids(s, &dead_q).await, [d1]);
    s.purge_dead_one(d1).await.unwrap();
    assert!(ids(s, &dead_q).await.is_empty(), "purged");
    let by_key = DeliveryQuery {
        ordering_key: Some("k".into()),
        ..DeliveryQuery::default()
    };
    assert_eq!(
        ids(s, &by_key).await,
        [d2],
        "purged from the key's list too"
    );
    s.remove_handler("h").await.unwrap();
    handler(s, "h", "t").await;
    assert!(
        ids(s, &DeliveryQuery::default()).await.is_empty(),
        "removed with its handler"
    );
}

/// This file's cases, for [`store_conformance_tests!`](crate::store_conformance_tests).
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_query {
    ($($with:tt)*) => {
        $crate::__store_conformance_group! { $($with)* query:
            query_by_state_pages_both_ways,
            query_by_ids_keys_and_topic,
            query_by_outcome_and_time,
            query_follows_changes_and_restart,
        }
    };
}
