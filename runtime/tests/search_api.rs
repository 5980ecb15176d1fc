//! `GET /v1/deliveries`, the delivery search shared with the dashboard,
//! called as a tower service (no port) over a real `EmbeddedStore`.

mod common;
use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use sluice::outcome::Outcome;
use sluice::store::conformance::helpers::{handler, keyed, msg};
use sluice::store::{NewMessage, Store, StoreConfig};

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, Value) {
    let res = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let body = to_bytes(res.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

fn count(v: &Value) -> usize {
    v["deliveries"].as_array().unwrap().len()
}

#[tokio::test]
async fn deliveries_search_by_state_key_and_outcome_with_paging() {
    let dir = tempfile::tempdir().unwrap();
    let (store, state): (Arc<dyn Store>, _) =
        common::api_state(dir.path(), StoreConfig::default(), None);
    let app = sluice::api::router(state);
    handler(store.as_ref(), "h", "t").await;
    let keyed_msg = NewMessage {
        idempotency_key: Some("order-1".into()),
        ..msg("t", "a")
    };
    let first = store.enqueue(vec![keyed_msg]).await.unwrap()[0].id;
    store
        .enqueue(vec![keyed("t", "b", "cust-7")])
        .await
        .unwrap();
    store.enqueue(vec![msg("t", "c")]).await.unwrap();
    common::kill_next(&store, "h", Outcome::Exit { code: 3 }).await;

    let (status, by_key) = get(&app, "/v1/deliveries?idempotency_key=order-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(count(&by_key), 1);
    assert_eq!(by_key["deliveries"][0]["message_id"], first.to_string());
    assert_eq!(
        by_key["deliveries"][0]["state"], "dead",
        "the first enqueued is the one killed"
    );

    let (_, dead) = get(&app, "/v1/deliveries?handler=h&state=dead&outcome=exit").await;
    assert_eq!(count(&dead), 1);
    let (_, ready) = get(&app, "/v1/deliveries?state=ready&order=oldest&limit=1").await;
    assert_eq!(count(&ready), 1);
    let cursor = ready["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_string();
    let (_, rest) = get(
        &app,
        &format!("/v1/deliveries?state=ready&order=oldest&limit=1&cursor={cursor}"),
    )
    .await;
    assert_eq!(count(&rest), 1);
    assert_eq!(rest["next_cursor"], Value::Null);
    let (_, by_ordering) = get(&app, "/v1/deliveries?ordering_key=cust-7").await;
    assert_eq!(count(&by_ordering), 1);
    let (_, all) = get(&app, "/v1/deliveries?handler=&state=&outcome=").await;
    assert_eq!(count(&all), 3, "empty form fields count as absent");

    for (uri, status, code, names) in [
        (
            "/v1/deliveries?state=asleep",
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "asleep",
        ),
        (
            "/v1/deliveries?outcome=boom",
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "boom",
        ),
        (
            "/v1/deliveries?since=yesterday",
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "since",
        ),
        (
            "/v1/deliveries?limit=0",
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "limit",
        ),
        (
            "/v1/deliveries?handler=nope",
            StatusCode::NOT_FOUND,
            "unknown_handler",
            "nope",
        ),
    ] {
        let (s, v) = get(&app, uri).await;
        assert_eq!(s, status, "{uri}: {v}");
        assert_eq!(v["error"]["code"], code, "{uri}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(names),
            "{uri}: {v}"
        );
    }
}
