//! Store faults seen from a producer: a full disk or an I/O error while
//! enqueueing answers `503` with a JSON error, acknowledges nothing, loses
//! nothing acknowledged before, and the server recovers once the fault clears.
//!
//! The fault is injected into the store's flusher ([`EmbeddedStore::inject_fault`]):
//! every flush fails until it is cleared, exactly as a full disk makes `fsync`
//! fail. The HTTP API is the real router, called without a port.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use serde_json::Value;
use sluice::api::{ApiState, router};
use sluice::clock::SystemClock;
use sluice::metrics::Metrics;
use sluice::policy::HandlerPolicy;
use sluice::sandbox::{Sandbox, SandboxConfig};
use sluice::store::conformance::helpers;
use sluice::store::{DeliveryState, EmbeddedStore, Store, StoreConfig};
use sluice_tests::{Harness, example};
use tower::ServiceExt;
use uuid::Uuid;

/// One HTTP answer: status, `Retry-After`, JSON body.
struct Reply {
    status: StatusCode,
    retry_after: Option<String>,
    body: Value,
}

async fn call(app: &Router, req: Request<Body>) -> Reply {
    let res = app.clone().oneshot(req).await.expect("router never fails");
    let status = res.status();
    let retry_after = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = to_bytes(res.into_body(), usize::MAX).await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{status}: body is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    Reply {
        status,
        retry_after,
        body,
    }
}

async fn enqueue(app: &Router, topic: &str, payload: &str, key: &str) -> Reply {
    let req = Request::post(format!("/v1/topics/{topic}/messages"))
        .header("idempotency-key", key)
        .body(Body::from(payload.to_string()))
        .unwrap();
    call(app, req).await
}

fn id_of(reply: &Reply) -> Uuid {
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    reply.body["id"].as_str().unwrap().parse().unwrap()
}

/// Asserts a 503 with `Retry-After` and the JSON error `code`.
fn assert_unavailable(reply: &Reply, code: &str) {
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert_eq!(reply.body["error"]["code"], code, "{}", reply.body);
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert_eq!(reply.retry_after.as_deref(), Some("5"));
}

fn api(store: Arc<EmbeddedStore>) -> Router {
    let sandbox = Sandbox::new(SandboxConfig {
        pool_instances: 2,
        ..SandboxConfig::default()
    })
    .unwrap();
    let store: Arc<dyn Store> = store;
    router(ApiState::new(
        store,
        sandbox,
        Arc::new(Metrics::default()),
        None,
    ))
}

fn open(dir: &std::path::Path) -> Arc<EmbeddedStore> {
    Arc::new(EmbeddedStore::open(dir, StoreConfig::default(), Arc::new(SystemClock)).unwrap())
}

async fn register(store: &EmbeddedStore, name: &str, topic: &str) {
    let wasm = std::fs::read(example("rust", "ack")).unwrap();
    helpers::register(
        store,
        name,
        topic,
        HandlerPolicy::default(),
        Bytes::from(wasm),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_refuses_enqueues_with_503_keeps_acknowledged_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    register(&store, "a", "t").await;
    register(&store, "b", "t").await;
    let app = api(store.clone());

    let mut acked = BTreeMap::new();
    for i in 0..20 {
        let key = format!("before-{i}");
        acked.insert(key.clone(), id_of(&enqueue(&app, "t", "x", &key).await));
    }

    store.inject_fault(Some(std::io::ErrorKind::StorageFull));
    let mut refused = Vec::new();
    for i in 0..10 {
        let key = format!("during-{i}");
        assert_unavailable(&enqueue(&app, "t", "x", &key).await, "disk_full");
        refused.push(key);
    }
    let batch = || {
        Request::post("/v1/topics/t/messages:batch")
            .body(Body::from(
                r#"[{"payload":"1","idempotency_key":"batch-1"},{"payload":"2","idempotency_key":"batch-2"}]"#,
            ))
            .unwrap()
    };
    assert_unavailable(&call(&app, batch()).await, "disk_full");
    // Reads keep working meanwhile.
    let any = *acked.values().next().unwrap();
    let status = call(
        &app,
        Request::get(format!("/v1/messages/{any}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status.status, StatusCode::OK);

    // A failing device (not a full one) is the same promise with another code.
    store.inject_fault(Some(std::io::ErrorKind::Other));
    assert_unavailable(
        &enqueue(&app, "t", "x", "io-error").await,
        "store_unavailable",
    );
    refused.push("io-error".into());

    store.inject_fault(None);
    for i in 0..20 {
        let key = format!("after-{i}");
        acked.insert(key.clone(), id_of(&enqueue(&app, "t", "x", &key).await));
    }
    // A producer retries what was refused with the same key: whether the
    // refused write became durable with a later flush or not, the key ends up
    // with exactly one message.
    for key in &refused {
        let id = id_of(&enqueue(&app, "t", "x", key).await);
        assert_eq!(
            acked.insert(key.clone(), id),
            None,
            "one acknowledgement per key"
        );
    }
    let reply = call(&app, batch()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    for (i, m) in reply.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let id = m["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(acked.insert(format!("batch-{}", i + 1), id), None);
    }
    drop(app);
    drop(store);

    // Everything acknowledged is on disk, with its fan-out.
    let store = open(dir.path());
    for (key, id) in &acked {
        let status = store
            .message(*id)
            .await
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(status.message.idempotency_key, *key);
        let mut handlers: Vec<_> = status
            .deliveries
            .iter()
            .map(|d| d.handler.as_str())
            .collect();
        handlers.sort_unstable();
        assert_eq!(handlers, ["a", "b"], "{key}");
    }
    let stats = store.stats().await.unwrap();
    let ready: u64 = stats
        .handlers
        .iter()
        .map(|h| h.counts[&DeliveryState::Ready])
        .sum();
    assert_eq!(
        ready,
        2 * acked.len() as u64,
        "no copy of a refused message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_during_a_full_disk_is_503_and_nothing_half_done() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let app = api(store.clone());
    store.inject_fault(Some(std::io::ErrorKind::StorageFull));
    let wasm = std::fs::read(example("rust", "ack")).unwrap();
    let put = || {
        Request::put("/v1/handlers/h?topic=t")
            .header("content-type", "application/wasm")
            .body(Body::from(wasm.clone()))
            .unwrap()
    };
    assert_unavailable(&call(&app, put()).await, "disk_full");
    store.inject_fault(None);
    let reply = call(&app, put()).await;
    assert!(reply.status.is_success(), "{}", reply.body);
    id_of(&enqueue(&app, "t", "x", "k").await);
}

/// The runner keeps running through the fault: completions that cannot be
/// made durable are retried or become durable with the next good flush, and
/// every acknowledged message ends `succeeded` once the fault clears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_survives_a_full_disk_and_every_acknowledged_message_succeeds() {
    let h = Harness::start().await;
    let policy = HandlerPolicy {
        timeout_ms: 5_000,
        concurrency: 4,
        ..HandlerPolicy::default()
    };
    h.register("greet", "greetings", &example("rust", "ack"), policy)
        .await;
    let store: Arc<dyn Store> = h.store.clone();
    let app = router(ApiState::new(
        store,
        h.sandbox.clone(),
        h.metrics.clone(),
        None,
    ));

    let mut acked = Vec::new();
    let mut refused = 0;
    for round in 0..3 {
        for i in 0..15 {
            acked.push(id_of(
                &enqueue(&app, "greetings", "{}", &format!("{round}-ok-{i}")).await,
            ));
        }
        // While the runner is completing those, the disk fills up.
        h.store.inject_fault(Some(std::io::ErrorKind::StorageFull));
        for i in 0..5 {
            let reply = enqueue(&app, "greetings", "{}", &format!("{round}-full-{i}")).await;
            assert_unavailable(&reply, "disk_full");
            refused += 1;
        }
        tokio::task::yield_now().await;
        h.store.inject_fault(None);
    }
    for id in &acked {
        let status = h.settle(*id).await;
        assert_eq!(status.deliveries[0].state, DeliveryState::Succeeded, "{id}");
    }
    let health = call(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(health.status, StatusCode::OK);
    println!(
        "faults: {} acknowledged, all succeeded; {refused} refused with 503 during the fault",
        acked.len()
    );
    h.stop().await;
}
