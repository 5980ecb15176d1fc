//! Enqueue: fan-out to every handler, batches, the checks of topic, payload
//! and headers, idempotency keys and their window, and backpressure.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;

use super::helpers::*;
use super::{Ctx, Harness};
use crate::store::{DeliveryState, Enqueued, NewMessage, Store, StoreConfig, StoreError};

/// Enqueue to a valid topic no handler was ever registered on gets
/// `UnknownTopic`, and the whole batch is refused.
pub async fn unknown_topic_is_refused<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "known").await;
    match s
        .enqueue(vec![msg("known", "a"), msg("nowhere", "b")])
        .await
    {
        Err(e @ StoreError::UnknownTopic(_)) => {
            assert!(matches!(&e, StoreError::UnknownTopic(t) if t == "nowhere"));
            assert!(e.to_string().contains("nowhere"), "{e}");
        }
        other => panic!("expected UnknownTopic(\"nowhere\"), got {other:?}"),
    }
    assert_eq!(depth(s, "known").await, 0, "batch is atomic");
    assert!(lease_all(s, "h").await.is_empty());
}

/// A payload over `max_payload_bytes` gets `PayloadTooLarge` with size and
/// maximum; exactly the maximum is accepted.
pub async fn oversized_payload_is_refused<H: Harness>(mut cx: Ctx<H>) {
    cx.reopen_with(StoreConfig {
        max_payload_bytes: 1024,
        ..StoreConfig::default()
    })
    .await;
    let s = cx.store();
    handler(s, "h", "t").await;
    let big = NewMessage {
        payload: Bytes::from(vec![7u8; 1025]),
        ..msg("t", "")
    };
    match s.enqueue(vec![msg("t", "small"), big]).await {
        Err(e @ StoreError::PayloadTooLarge { .. }) => {
            assert!(
                matches!(
                    e,
                    StoreError::PayloadTooLarge {
                        size: 1025,
                        max: 1024
                    }
                ),
                "{e:?}"
            );
            assert!(e.to_string().contains("1025"), "{e}");
        }
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    assert_eq!(depth(s, "t").await, 0, "batch is atomic");
    let exact = NewMessage {
        payload: Bytes::from(vec![7u8; 1024]),
        ..msg("t", "")
    };
    let id = enqueue1(s, exact).await;
    assert_eq!(s.message(id).await.unwrap().message.payload.len(), 1024);
}

/// More headers than `max_headers` get `InvalidInput`.
pub async fn too_many_headers_is_invalid_input<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    let mut m = msg("t", "x");
    for i in 0..65 {
        m.headers.insert(format!("h{i}"), "v".into());
    }
    match s.enqueue(vec![m]).await {
        Err(StoreError::InvalidInput(_)) => {}
        other => panic!("65 headers: expected InvalidInput, got {other:?}"),
    }
}

/// One delivery per handler subscribed at enqueue, all ready, with the message
/// stored as given; a handler registered later gets none of the old messages.
pub async fn enqueue_fans_out_to_every_handler<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "a", "orders").await;
    handler(s, "b", "orders").await;
    handler(s, "c", "other").await;
    let mut m = keyed("orders", "hello", "user-1");
    m.headers.insert("trace".into(), "abc".into());
    let id = enqueue1(s, m.clone()).await;
    let st = s.message(id).await.unwrap();
    assert_eq!(st.message.id, id);
    assert_eq!(st.message.topic, "orders");
    assert_eq!(st.message.payload, m.payload);
    assert_eq!(st.message.headers, m.headers);
    assert_eq!(st.message.ordering_key.as_deref(), Some("user-1"));
    assert_eq!(st.message.enqueued_at, cx.now());
    assert_eq!(st.message.not_before, None);
    assert!(
        st.message.idempotency_key == id.to_string()
            || st.message.idempotency_key == id.simple().to_string(),
        "default idempotency key is the message id, got {:?}",
        st.message.idempotency_key
    );
    let mut hs: Vec<_> = st.deliveries.iter().map(|d| d.handler.as_str()).collect();
    hs.sort_unstable();
    assert_eq!(hs, ["a", "b"], "one delivery per subscribed handler");
    for d in &st.deliveries {
        assert_eq!(d.state, DeliveryState::Ready);
        assert_eq!(d.message_id, id);
        assert!(d.attempts.is_empty());
        assert_eq!(d.created_at, cx.now());
        assert_eq!(&s.delivery(d.id).await.unwrap(), d);
    }
    assert_eq!(depth(s, "orders").await, 2);
    assert_eq!(depth(s, "other").await, 0);

    handler(s, "late", "orders").await;
    assert_eq!(s.message(id).await.unwrap().deliveries.len(), 2);
    assert!(
        lease_all(s, "late").await.is_empty(),
        "late handler gets nothing old"
    );
    assert!(
        lease_all(s, "c").await.is_empty(),
        "other topic gets nothing"
    );
}

/// A batch answers one id per message, in order; ids are distinct UUID v7
/// carrying the enqueue time, so ids of different milliseconds sort by
/// enqueue time; an empty batch is a no-op.
pub async fn enqueue_batch_returns_ordered_v7_ids<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    assert!(s.enqueue(vec![]).await.unwrap().is_empty());
    let batch: Vec<_> = (0..50).map(|i| msg("t", &format!("m{i}"))).collect();
    let r = s.enqueue(batch).await.unwrap();
    assert_eq!(r.len(), 50);
    let distinct: BTreeSet<_> = r.iter().map(|e| e.id).collect();
    assert_eq!(distinct.len(), 50, "ids are distinct");
    for (i, e) in r.iter().enumerate() {
        let st = s.message(e.id).await.unwrap();
        assert_eq!(
            st.message.payload,
            format!("m{i}").as_bytes(),
            "answers in batch order"
        );
        let (secs, nanos) = e.id.get_timestamp().expect("v7 has a time").to_unix();
        assert_eq!(
            secs * 1000 + u64::from(nanos) / 1_000_000,
            T0.0,
            "id carries enqueue time"
        );
    }
    for e in &r {
        assert_eq!(e.id.get_version_num(), 7, "ids are UUID v7");
        assert!(!e.duplicate);
    }
    cx.advance(Duration::from_millis(1));
    let later = enqueue1(s, msg("t", "later")).await;
    assert!(later > r[49].id, "ids increase across batches");
    let leased = lease_all(s, "h").await;
    assert_eq!(leased.len(), 51);
    for (i, l) in leased.iter().take(50).enumerate() {
        assert_eq!(l.message.id, r[i].id, "leased in enqueue order");
        assert_eq!(l.message.payload, format!("m{i}").as_bytes());
    }
}

/// A second enqueue with the same key returns the original id with
/// `duplicate: true` and creates nothing, within a batch, across batches and
/// after a restart.
pub async fn idempotency_key_deduplicates_within_window<H: Harness>(mut cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h", "t").await;
    let with_key = |p: &str, k: &str| NewMessage {
        idempotency_key: Some(k.into()),
        ..msg("t", p)
    };
    let first = enqueue1(s, with_key("one", "order-1")).await;
    assert_eq!(
        s.message(first).await.unwrap().message.idempotency_key,
        "order-1"
    );
    cx.advance(Duration::from_secs(3600));
    let again = s.enqueue(vec![with_key("two", "order-1")]).await.unwrap();
    assert_eq!(
        again,
        vec![Enqueued {
            id: first,
            duplicate: true
        }]
    );
    assert_eq!(depth(s, "t").await, 1, "a duplicate creates nothing");

    let r = s
        .enqueue(vec![with_key("a", "order-2"), with_key("b", "order-2")])
        .await
        .unwrap();
    assert!(!r[0].duplicate);
    assert_eq!(
        r[1],
        Enqueued {
            id: r[0].id,
            duplicate: true
        },
        "a key repeated within one batch is a duplicate of its first use"
    );
    assert_eq!(depth(s, "t").await, 2);

    cx.restart().await;
    let s = cx.store();
    let r = s.enqueue(vec![with_key("three", "order-1")]).await.unwrap();
    assert_eq!(
        r[0],
        Enqueued {
            id: first,
            duplicate: true
        },
        "the key survives a restart"
    );
    let payload = s.message(first).await.unwrap().message.payload;
    assert_eq!(payload, "one", "the original message is unchanged");
}

/// The same key on two topics makes two messages.
pub async fn idempotency_key_is_per_topic<H: Harness>(cx: Ctx<H>) {
    let s = cx.store();
    handler(s, "h1", "t1").await;
    handler(s, "h2", "t2").await;
    let k = |t: &str| NewMessage {
        idempotency_key: Some("same".into()),
        ..msg(t, "x")
    };
    let a = enqueue1(s, k("t1")).await;
    let b = enqueue1(s, k("t2")).await;
    assert_ne!(a, b);
}

/// Past the window, `prune` drops the key and the same key makes a new message.
pub async fn idempotency_window_is_pruned<H: Harness>(mut cx: Ctx<H>) {
    cx.reopen_with(StoreConfig {
        idempotency_window: Duration::from_secs(3600),
        ..StoreConfig::default()
    })
    .await;
    let s = cx.store();
    handler(s, "h", "t").await;
    let k = NewMessage {
        idempotency_key: Some("k".into()),
        ..msg("t", "x")
    };
    let first = enqueue1(s, k.clone()).await;
    cx.advance(Duration::from_secs(3599));
    let r = s.prune(1000).await.unwrap();
    assert_eq!(r.idempotency_keys, 0, "inside the window nothing is pruned");
    assert!(s.enqueue(vec![k.clone()]).await.unwrap()[0].duplicate);
    cx.advance(Duration::from_secs(2));
    let r = s.prune(1000).await.unwrap();
    assert_eq!(
        r.idempotency_keys, 1,
        "past the window the key is pruned: {r:?}"
    );
    let second = s.enqueue(vec![k]).await.unwrap();
    assert!(
        !second[0].duplicate,
        "after the window the key is new again"
    );
    assert_ne!(second[0].id, first);
}

/// At `max_topic_depth` open deliveries an enqueue gets `QueueFull` and
/// nothing of its batch is created; room made by completions is usable again.
pub async fn queue_full_refuses_whole_batch<H: Harness>(mut cx: Ctx<H>) {
    cx.reopen_with(StoreConfig {
        max_topic_depth: 3,
        ..StoreConfig::default()
    })
    .await;
    let s = cx.store();
    handler(s, "h", "t").await;
    handler(s, "other", "u").await;
    s.enqueue(vec![msg("t", "1"), msg("t", "2"), msg("t", "3")])
        .await
        .unwrap();
    assert_eq!(depth(s, "t").await, 3);
    match s.enqueue(vec![msg("u", "fine"), msg("t", "4")]).await {
        Err(e @ StoreError::QueueFull { .. }) => {
            match &e {
                StoreError::QueueFull { topic, depth, max } => {
                    assert_eq!((topic.as_str(), *depth, *max), ("t", 3, 3));
                }
                _ => unreachable!(),
            }
            assert!(e.to_string().contains("retry later"), "{e}");
        }
        other => panic!("expected QueueFull, got {other:?}"),
    }
    assert_eq!(depth(s, "t").await, 3, "nothing dropped, nothing added");
    assert_eq!(depth(s, "u").await, 0, "the batch is atomic");
    let l = s.lease("h", 1).await.unwrap().remove(0);
    s.complete(&l.lease, ok(), vec![]).await.unwrap();
    enqueue1(s, msg("t", "4")).await;
    assert_eq!(depth(s, "t").await, 3);
}

/// This file's cases, for [`store_conformance_tests!`](crate::store_conformance_tests).
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_enqueue {
    ($($with:tt)*) => {
        $crate::__store_conformance_group! { $($with)* enqueue:
            unknown_topic_is_refused,
            oversized_payload_is_refused,
            too_many_headers_is_invalid_input,
            enqueue_fans_out_to_every_handler,
            enqueue_batch_returns_ordered_v7_ids,
            idempotency_key_deduplicates_within_window,
            idempotency_key_is_per_topic,
            idempotency_window_is_pruned,
            queue_full_refuses_whole_batch,
        }
    };
}
