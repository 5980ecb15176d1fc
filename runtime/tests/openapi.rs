//! The OpenAPI document: the committed `docs/openapi.json` is the generated
//! one (a route or type change without regenerating fails here), the server
//! serves it at `/v1/openapi.json`, and it covers every route the router
//! answers.

mod common;
use common::api_state;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use sluice::store::StoreConfig;
use tower::ServiceExt as _;

const REGENERATE: &str = "cargo run -q -p sluice -- openapi > docs/openapi.json";

fn committed() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("docs/openapi.json: {e}; generate it with `{REGENERATE}`"))
}

#[test]
fn the_committed_document_is_the_generated_one() {
    let generated = sluice::api::openapi::json();
    let committed = committed();
    if generated != committed {
        let line = generated
            .lines()
            .zip(committed.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || "one is a prefix of the other".to_string(),
                |i| {
                    format!(
                        "first difference at line {}:\n  generated: {}\n  committed: {}",
                        i + 1,
                        generated.lines().nth(i).unwrap_or(""),
                        committed.lines().nth(i).unwrap_or("")
                    )
                },
            );
        panic!(
            "docs/openapi.json is out of date with the routes and types ({line}).\n\
             Regenerate it: {REGENERATE}"
        );
    }
}

#[test]
fn the_document_is_openapi_3_1_with_every_route_and_error_code() {
    let doc: Value = serde_json::from_str(sluice::api::openapi::json()).unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/v1/topics/{topic}/messages", &["post"][..]),
        ("/v1/topics/{topic}/messages:batch", &["post"]),
        ("/v1/messages/{id}", &["get"]),
        ("/v1/deliveries", &["get"]),
        ("/v1/deliveries/{id}", &["get"]),
        ("/v1/deliveries/{id}/attempts", &["get"]),
        ("/v1/handlers", &["get", "post"]),
        ("/v1/handlers/{name}", &["get", "put", "delete"]),
        ("/v1/handlers/{name}/pause", &["post"]),
        ("/v1/handlers/{name}/resume", &["post"]),
        ("/v1/handlers/{name}/replay", &["post"]),
        ("/v1/defaults", &["get"]),
        ("/v1/dlq", &["get"]),
        ("/v1/dlq/replay", &["post"]),
        ("/v1/dlq/purge", &["post"]),
        ("/v1/dlq/{id}", &["get", "delete"]),
        ("/v1/dlq/{id}/replay", &["post"]),
        ("/v1/stats", &["get"]),
        ("/v1/openapi.json", &["get"]),
        ("/metrics", &["get"]),
        ("/healthz", &["get"]),
    ] {
        for m in methods {
            let op = &paths
                .get(path)
                .unwrap_or_else(|| panic!("{path} is not documented"))[m];
            assert!(op.is_object(), "{m} {path} is not documented");
            let responses = op["responses"].as_object().unwrap();
            // The head's limits hold on every route, before auth.
            assert!(responses.contains_key("414"), "{m} {path}: no 414");
            assert!(responses.contains_key("431"), "{m} {path}: no 431");
            if path != "/healthz" {
                assert!(responses.contains_key("401"), "{m} {path}: no 401");
                assert!(responses.contains_key("503"), "{m} {path}: no 503");
                assert_eq!(
                    responses.contains_key("403"),
                    *m != "get",
                    "{m} {path}: 403"
                );
            }
        }
    }
    let enqueue = &paths["/v1/topics/{topic}/messages"]["post"];
    let headers: Vec<&str> = enqueue["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "header")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for h in [
        "Idempotency-Key",
        "Sluice-Ordering-Key",
        "Sluice-Delay",
        "Sluice-Not-Before",
    ] {
        assert!(
            headers.contains(&h),
            "enqueue lacks header {h}: {headers:?}"
        );
    }
    let put = &paths["/v1/handlers/{name}"]["put"];
    assert!(
        put["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "Sluice-Policy"),
        "{put}"
    );
    let too_many = &enqueue["responses"]["429"];
    assert!(
        too_many["description"]
            .as_str()
            .unwrap()
            .contains("queue_full")
    );
    assert!(too_many["headers"]["Retry-After"].is_object(), "{too_many}");
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "EnqueuedView",
        "BatchItem",
        "MessageView",
        "DeliveryView",
        "AttemptView",
        "Outcome",
        "HandlerView",
        "HandlerPolicy",
        "RegisterRequest",
        "DeadLettersView",
        "DeadFilterView",
        "CountView",
        "StatsView",
        "ErrorBody",
        "DefaultsView",
    ] {
        assert!(schemas.contains_key(name), "no schema {name}");
    }
}

#[tokio::test]
async fn the_server_serves_the_document_behind_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, state) = api_state(dir.path(), StoreConfig::default(), Some("tok"));
    let app = sluice::api::router(state);
    let get = |auth: bool| {
        let mut r = Request::get("/v1/openapi.json");
        if auth {
            r = r.header("authorization", "Bearer tok");
        }
        app.clone().oneshot(r.body(Body::empty()).unwrap())
    };
    assert_eq!(get(false).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let response = get(true).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(body, sluice::api::openapi::json().as_bytes());
}

#[tokio::test]
async fn metrics_answer_openmetrics_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, state) = api_state(dir.path(), StoreConfig::default(), None);
    let app = sluice::api::router(state);
    for (accept, content_type, eof) in [
        (
            Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            true,
        ),
        (None, "text/plain; version=0.0.4; charset=utf-8", false),
    ] {
        let mut r = Request::get("/metrics");
        if let Some(a) = accept {
            r = r.header("accept", a);
        }
        let response = app
            .clone()
            .oneshot(r.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], content_type);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert_eq!(text.ends_with("# EOF\n"), eof, "{text}");
        let counter_type = if eof {
            "# TYPE sluice_messages_enqueued counter"
        } else {
            "# TYPE sluice_messages_enqueued_total counter"
        };
        assert!(text.contains(counter_type), "{text}");
        assert!(text.contains("sluice_messages_enqueued_total 0"), "{text}");
    }
}

/// Found by schemathesis: a JSON array where the document says object was
/// read by position, so `[null, null]` replayed the whole DLQ.
#[tokio::test]
async fn a_struct_body_must_be_an_object() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, state) = api_state(dir.path(), StoreConfig::default(), None);
    let app = sluice::api::router(state);
    for path in ["/v1/dlq/replay", "/v1/dlq/purge", "/v1/handlers"] {
        let r = Request::post(path)
            .header("content-type", "application/json")
            .body(Body::from("[null, null]"))
            .unwrap();
        let response = app.clone().oneshot(r).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("expected an object"), "{path}: {text}");
    }
}
