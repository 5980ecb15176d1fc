//! Hostile input at the HTTP API (issue 20): every edge refused with the JSON
//! error naming the problem, and whatever is accepted reads back. Router called
//! as a tower service (no port) on a real store and sandbox.

mod common;

use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use sluice::store::StoreConfig;

const NOOP: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

/// A router on a fresh store (kept alive by the returned directory).
fn app(token: Option<&str>) -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (_store, state) = common::api_state(dir.path(), StoreConfig::default(), token);
    (sluice::api::router(state), dir)
}

/// Sends; returns the status and the body as JSON (panics if it is not JSON).
async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let body = to_bytes(res.into_body(), usize::MAX).await.unwrap();
    let v = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "{status}: not JSON ({e}): {:?}",
            String::from_utf8_lossy(&body)
        )
    });
    (status, v)
}

/// Asserts a JSON error with `status` and `code`; returns its message.
async fn refused(app: &axum::Router, req: Request<Body>, status: StatusCode, code: &str) -> String {
    let (got, v) = call(app, req).await;
    assert_eq!(
        (got, v["error"]["code"].as_str()),
        (status, Some(code)),
        "{v}"
    );
    v["error"]["message"].as_str().unwrap().to_string()
}

async fn register(app: &axum::Router) {
    let req = Request::put("/v1/handlers/h?topic=t")
        .body(Body::from(wat::parse_str(NOOP).unwrap()))
        .unwrap();
    assert_eq!(call(app, req).await.0, StatusCode::CREATED);
}

fn enqueue(headers: &[(&str, &str)]) -> Request<Body> {
    let mut req = Request::post("/v1/topics/t/messages");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Body::from("x")).unwrap()
}

fn batch(items: &Value) -> Request<Body> {
    Request::post("/v1/topics/t/messages:batch")
        .header("content-type", "application/json")
        .body(Body::from(items.to_string()))
        .unwrap()
}

#[tokio::test]
async fn without_the_token_every_method_and_path_is_401() {
    let (app, _dir) = app(Some("s3cret"));
    for (method, path) in [
        (Method::OPTIONS, "/v1/stats"),
        (Method::TRACE, "/v1/handlers"),
        (Method::DELETE, "/v1/stats"),
        (Method::GET, "/no/such/path"),
        (Method::GET, "/v1/handlers/%ff"),
    ] {
        let req = Request::builder()
            .method(method.clone())
            .uri(path)
            .body(Body::empty())
            .unwrap();
        refused(&app, req, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    let with_token = Request::get("/no/such/path")
        .header("authorization", "Bearer s3cret")
        .body(Body::empty())
        .unwrap();
    refused(&app, with_token, StatusCode::NOT_FOUND, "no_route").await;
    let health = Request::get("/healthz").body(Body::empty()).unwrap();
    assert_eq!(call(&app, health).await.0, StatusCode::OK);
}

#[tokio::test]
async fn repeated_headers_are_refused_naming_the_header() {
    let (app, _dir) = app(None);
    register(&app).await;
    for (name, a, b) in [
        ("idempotency-key", "a", "b"),
        ("sluice-delay", "1s", "2s"),
        ("sluice-ordering-key", "k1", "k2"),
    ] {
        let m = refused(
            &app,
            enqueue(&[(name, a), (name, b)]),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        )
        .await;
        assert!(m.contains(name) && m.contains("more than once"), "{m}");
    }
    let req = Request::put("/v1/handlers/h?topic=t")
        .header("sluice-policy", "{}")
        .header("sluice-policy", r#"{"retries": 1}"#)
        .body(Body::from(wat::parse_str(NOOP).unwrap()))
        .unwrap();
    let m = refused(&app, req, StatusCode::BAD_REQUEST, "invalid_input").await;
    assert!(m.contains("sluice-policy"), "{m}");
}

#[tokio::test]
async fn batch_headers_are_held_to_the_single_routes_rules() {
    let (app, _dir) = app(None);
    register(&app).await;
    for headers in [
        json!({"Upper": "x"}),
        json!({"a b": "x"}),
        json!({"a": "nul\u{0}"}),
        json!({"a": "line\nbreak"}),
        json!({"": "x"}),
    ] {
        let items = json!([{"payload": "ok"}, {"payload": "x", "headers": headers}]);
        let m = refused(
            &app,
            batch(&items),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        )
        .await;
        assert!(m.starts_with("message 1: invalid header"), "{headers}: {m}");
    }
    // The single route refuses an empty name the same way.
    let m = refused(
        &app,
        enqueue(&[("sluice-header-", "x")]),
        StatusCode::BAD_REQUEST,
        "invalid_name",
    )
    .await;
    assert!(m.contains("header name"), "{m}");
    let items = json!([{"payload": "x", "headers": {"trace-id": "a b"}}]);
    assert_eq!(call(&app, batch(&items)).await.0, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_policy_is_a_json_object_with_a_sane_backoff() {
    let (app, _dir) = app(None);
    let wasm = wat::parse_str(NOOP).unwrap();
    let raw = |policy: &str| {
        Request::put("/v1/handlers/h?topic=t")
            .header("sluice-policy", policy)
            .body(Body::from(wasm.clone()))
            .unwrap()
    };
    let m = refused(&app, raw("[1,2]"), StatusCode::BAD_REQUEST, "invalid_input").await;
    assert!(m.contains("Sluice-Policy"), "{m}");
    let doc = json!({"name": "h", "topic": "t", "policy": [1, 2], "module_base64": ""});
    let req = Request::post("/v1/handlers")
        .body(Body::from(doc.to_string()))
        .unwrap();
    refused(&app, req, StatusCode::BAD_REQUEST, "invalid_input").await;
    let m = refused(
        &app,
        raw(r#"{"backoff_ms": 5000, "backoff_max_ms": 1000}"#),
        StatusCode::BAD_REQUEST,
        "invalid_policy",
    )
    .await;
    assert!(m.contains("backoff_max"), "{m}");
}

#[tokio::test]
async fn an_env_that_could_never_run_is_refused_at_registration() {
    let (app, _dir) = app(None);
    let wasm = wat::parse_str(NOOP).unwrap();
    let big = "x".repeat(sluice::sandbox::MAX_ENV_BYTES);
    for env in [
        json!({"A": "nul\u{0}inside"}),
        json!({"A=B": "x"}),
        json!({"BIG": big}),
    ] {
        let policy = json!({ "env": env }).to_string();
        let req = Request::put("/v1/handlers/h?topic=t")
            .header("sluice-policy", policy)
            .body(Body::from(wasm.clone()))
            .unwrap();
        let m = refused(&app, req, StatusCode::BAD_REQUEST, "invalid_policy").await;
        assert!(m.contains("env"), "{m}");
    }
}

#[tokio::test]
async fn times_past_the_range_are_400_and_accepted_ones_read_back() {
    let (app, _dir) = app(None);
    register(&app).await;
    for delay in ["99999999999d", "300000y", "3651days"] {
        let m = refused(
            &app,
            enqueue(&[("sluice-delay", delay)]),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        )
        .await;
        assert!(m.contains("Sluice-Delay"), "{delay}: {m}");
    }
    let m = refused(
        &app,
        enqueue(&[("sluice-not-before", "10000-01-01T00:00:00Z")]),
        StatusCode::BAD_REQUEST,
        "invalid_input",
    )
    .await;
    assert!(m.contains("Sluice-Not-Before"), "{m}");
    for (field, value) in [
        ("delay_ms", json!(1u64 << 53)),
        ("delay_ms", json!(u64::MAX)),
        ("delay", json!("1e12s")),
    ] {
        let m = refused(
            &app,
            batch(&json!([{ field: value }])),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        )
        .await;
        assert!(m.contains(field), "{value}: {m}");
    }
    // The edges themselves are accepted, and read back.
    let max_delay = format!("{}ms", sluice::clock::MAX_DELAY.as_millis());
    for req in [
        enqueue(&[("sluice-delay", max_delay.as_str())]),
        enqueue(&[("sluice-not-before", "9999-12-31T23:59:59.999Z")]),
    ] {
        let (status, v) = call(&app, req).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{v}");
        let id = v["id"].as_str().unwrap();
        let get = Request::get(format!("/v1/messages/{id}"))
            .body(Body::empty())
            .unwrap();
        let (status, m) = call(&app, get).await;
        assert_eq!(status, StatusCode::OK, "{m}");
        assert_eq!(m["deliveries"][0]["state"], "scheduled", "{m}");
    }
}

#[tokio::test]
async fn a_path_parameter_that_does_not_decode_is_a_json_400() {
    let (app, _dir) = app(None);
    for path in ["/v1/handlers/%ff", "/v1/messages/%C3", "/v1/dlq/%ff%fe"] {
        let req = Request::get(path).body(Body::empty()).unwrap();
        let m = refused(&app, req, StatusCode::BAD_REQUEST, "invalid_input").await;
        assert!(m.starts_with("invalid path"), "{path}: {m}");
    }
}

#[tokio::test]
async fn registration_past_the_function_bound_is_a_400_naming_it() {
    let (app, _dir) = app(None);
    let wat = format!(
        r#"(module (memory (export "memory") 1) (func (export "_start")) {})"#,
        "(func)".repeat(sluice::sandbox::validate::MAX_FUNCTIONS as usize)
    );
    let req = Request::put("/v1/handlers/h?topic=t")
        .body(Body::from(wat::parse_str(wat).unwrap()))
        .unwrap();
    let m = refused(&app, req, StatusCode::BAD_REQUEST, "invalid_module").await;
    assert!(m.contains("functions; at most 50000"), "{m}");
}
