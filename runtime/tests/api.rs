//! The HTTP API, called as a tower service (no port) against a real `EmbeddedStore`
//! in a temporary directory and a real sandbox.

mod common;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use bytes::Bytes;
use serde_json::{Value, json};
use tower::ServiceExt;

use sluice::api::{BODY_MARGIN, router};
use sluice::clock::{Clock, ManualClock, Timestamp};
use sluice::outcome::Outcome;
use sluice::policy::Disposition;
use sluice::store::{AttemptReport, Store, StoreConfig};

/// A WASI command that does nothing.
const NOOP: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

struct Api {
    app: Router,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

fn api_with(config: StoreConfig, token: Option<&str>) -> Api {
    api_on(config, token, Arc::new(sluice::clock::SystemClock))
}

/// The API and its store on `clock`.
fn api_on(config: StoreConfig, token: Option<&str>, clock: Arc<dyn Clock>) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let (store, state) = common::api_state_on(dir.path(), config, token, clock);
    Api {
        app: router(state),
        store,
        _dir: dir,
    }
}

fn api() -> Api {
    api_with(StoreConfig::default(), None)
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts an error reply with this status and code; returns the message.
    fn error(&self, status: StatusCode, code: &str) -> String {
        let v = self.json();
        assert_eq!(self.status, status, "{v}");
        assert_eq!(v["error"]["code"], code, "{v}");
        v["error"]["message"].as_str().unwrap().to_string()
    }
}

impl Api {
    async fn send(&self, req: Request<Body>) -> Reply {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = to_bytes(res.into_body(), usize::MAX).await.unwrap();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, uri: &str) -> Reply {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    async fn post_json(&self, uri: &str, body: Value) -> Reply {
        let req = Request::post(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(req).await
    }

    async fn request(&self, method: Method, uri: &str) -> Reply {
        self.send(
            Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    async fn register(&self, name: &str, topic: &str, wat: &str, policy: Option<Value>) -> Reply {
        let mut req = Request::put(format!("/v1/handlers/{name}?topic={topic}"))
            .header("content-type", "application/wasm");
        if let Some(p) = policy {
            req = req.header("sluice-policy", p.to_string());
        }
        let wasm = wat::parse_str(wat).unwrap();
        self.send(req.body(Body::from(wasm)).unwrap()).await
    }

    async fn enqueue(&self, topic: &str, payload: &'static str, headers: &[(&str, &str)]) -> Reply {
        let mut req = Request::post(format!("/v1/topics/{topic}/messages"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(Body::from(payload)).unwrap()).await
    }

    /// Leases the handler's next delivery and fails it straight into the DLQ
    /// with `exit 3`, as a worker would.
    async fn kill_next(&self, handler: &str) {
        let leased = self
            .store
            .lease(handler, 1)
            .await
            .unwrap()
            .pop()
            .expect("a ready delivery");
        let report = AttemptReport {
            outcome: Outcome::Exit { code: 3 },
            duration_ms: 7,
            module_sha256: "ab".repeat(32),
            stdout: Bytes::from_static(b"partial result"),
            stdout_truncated: false,
            stderr: Bytes::from_static(b"boom\n"),
            stderr_truncated: false,
            peak_memory_bytes: 65536,
            fuel_used: None,
            egress: Vec::new(),
        };
        let dead = Disposition::Dead {
            reason: "attempts exhausted (1 of 1): exit 3".into(),
        };
        self.store.fail(&leased.lease, report, dead).await.unwrap();
    }
}

#[tokio::test]
async fn enqueue_then_status_shows_one_delivery_per_handler() {
    let api = api();
    assert_eq!(
        api.register("resize", "images", NOOP, None).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        api.register("index", "images", NOOP, None).await.status,
        StatusCode::CREATED
    );

    let r = api
        .enqueue(
            "images",
            "cat.png",
            &[
                ("content-type", "image/png"),
                ("sluice-ordering-key", "user:1"),
                ("sluice-header-trace-id", "abc"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let v = r.json();
    assert_eq!(v["duplicate"], false);
    let id = v["id"].as_str().unwrap().to_string();

    let s = api.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(s.status, StatusCode::OK);
    let s = s.json();
    assert_eq!(s["id"], id.as_str());
    assert_eq!(s["topic"], "images");
    assert_eq!(s["ordering_key"], "user:1");
    assert_eq!(s["headers"]["trace-id"], "abc");
    assert_eq!(s["payload_bytes"], 7);
    let deliveries = s["deliveries"].as_array().unwrap();
    let mut handlers: Vec<&str> = deliveries
        .iter()
        .map(|d| d["handler"].as_str().unwrap())
        .collect();
    handlers.sort_unstable();
    assert_eq!(handlers, ["index", "resize"]);
    for d in deliveries {
        assert_eq!(d["state"], "ready");
        assert_eq!(d["attempts"], json!([]));
    }
}

#[tokio::test]
async fn idempotency_key_returns_the_original_id() {
    let api = api();
    api.register("h", "t", NOOP, None).await;
    let first = api
        .enqueue("t", "a", &[("idempotency-key", "order-7")])
        .await
        .json();
    let again = api
        .enqueue("t", "b", &[("idempotency-key", "order-7")])
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    let again = again.json();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["duplicate"], true);
    let metrics = String::from_utf8(api.get("/metrics").await.body.to_vec()).unwrap();
    assert!(
        metrics.contains("sluice_messages_enqueued_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_enqueue_duplicates_total 1\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn delays_schedule_and_bad_schedules_are_refused() {
    let api = api();
    api.register("h", "t", NOOP, None).await;
    let id = api
        .enqueue("t", "x", &[("sluice-delay", "1h")])
        .await
        .json()["id"]
        .clone();
    let s = api
        .get(&format!("/v1/messages/{}", id.as_str().unwrap()))
        .await
        .json();
    assert_eq!(s["deliveries"][0]["state"], "scheduled");
    assert!(s["not_before"].is_string());

    let m = api
        .enqueue("t", "x", &[("sluice-delay", "soon")])
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    assert!(m.contains("soon"), "{m}");
    let m = api
        .enqueue("t", "x", &[("sluice-not-before", "tomorrow")])
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    assert!(m.contains("Sluice-Not-Before"), "{m}");
    let m = api
        .enqueue(
            "t",
            "x",
            &[
                ("sluice-delay", "1s"),
                ("sluice-not-before", "2030-01-01T00:00:00Z"),
            ],
        )
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    assert!(m.contains("not both"), "{m}");
    let at = api
        .enqueue("t", "x", &[("sluice-not-before", "2030-01-01T00:00:00Z")])
        .await;
    assert_eq!(at.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn unknown_things_are_404_and_malformed_ids_400() {
    let api = api();
    let m = api
        .enqueue("nobody", "x", &[])
        .await
        .error(StatusCode::NOT_FOUND, "unknown_topic");
    assert!(m.contains("nobody"), "{m}");
    api.enqueue("Bad.Topic", "x", &[])
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_name");
    let id = uuid::Uuid::now_v7();
    api.get(&format!("/v1/messages/{id}"))
        .await
        .error(StatusCode::NOT_FOUND, "unknown_message");
    api.get(&format!("/v1/deliveries/{id}"))
        .await
        .error(StatusCode::NOT_FOUND, "unknown_delivery");
    api.get("/v1/messages/42")
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    api.get("/v1/handlers/ghost")
        .await
        .error(StatusCode::NOT_FOUND, "unknown_handler");
    api.get("/v1/nothing-here")
        .await
        .error(StatusCode::NOT_FOUND, "no_route");
    api.request(Method::DELETE, "/v1/stats")
        .await
        .error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[tokio::test]
async fn registration_validates_the_module_first() {
    let api = api();
    let m = api
        .register("h", "t", r#"(module (memory (export "memory") 1))"#, None)
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_module");
    assert!(m.contains("_start"), "{m}");
    let m = api
        .register(
            "h",
            "t",
            r#"(module (import "env" "evil" (func)) (memory (export "memory") 1) (func (export "_start")))"#,
            None,
        )
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_module");
    assert!(m.contains("evil"), "{m}");
    let raw = Request::put("/v1/handlers/h?topic=t")
        .body(Body::from("not wasm"))
        .unwrap();
    api.send(raw)
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_module");
    // Nothing was stored.
    api.get("/v1/handlers/h")
        .await
        .error(StatusCode::NOT_FOUND, "unknown_handler");

    api.register("Bad", "t", NOOP, None)
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_name");
    let m = api
        .register("h", "t", NOOP, Some(json!({"timeout_ms": 0})))
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_policy");
    assert!(m.contains("timeout"), "{m}");
    let m = api
        .register("h", "t", NOOP, Some(json!({"timeout": "30s"})))
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    assert!(m.contains("Sluice-Policy"), "{m}");
    let missing_topic = Request::put("/v1/handlers/h")
        .body(Body::from(wat::parse_str(NOOP).unwrap()))
        .unwrap();
    api.send(missing_topic)
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_input");
}

#[tokio::test]
async fn handlers_register_list_show_pause_resume_remove() {
    let api = api();
    let r = api
        .register(
            "h",
            "t",
            NOOP,
            Some(json!({"timeout_ms": 5000, "retries": 2, "env": {"MODE": "test"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let v = r.json();
    assert_eq!(v["policy"]["timeout_ms"], 5000);
    assert_eq!(v["policy"]["retries"], 2);
    assert_eq!(v["policy"]["env"]["MODE"], "test");
    assert_eq!(v["version"], 1);
    assert_eq!(v["module_sha256"].as_str().unwrap().len(), 64);

    // Re-registering replaces: 200 and a new version.
    let r = api.register("h", "t", NOOP, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["version"], 2);

    // The JSON form of registration.
    let b64 = base64_encode(&wat::parse_str(NOOP).unwrap());
    let r = api
        .post_json(
            "/v1/handlers",
            json!({"name": "g", "topic": "t", "policy": {"retries": 0}, "module_base64": b64}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);

    let list = api.get("/v1/handlers").await.json();
    let names: Vec<&str> = list["handlers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["g", "h"]);

    assert_eq!(
        api.request(Method::POST, "/v1/handlers/h/pause")
            .await
            .json()["paused"],
        true
    );
    assert_eq!(api.get("/v1/handlers/h").await.json()["paused"], true);
    assert_eq!(
        api.request(Method::POST, "/v1/handlers/h/resume")
            .await
            .json()["paused"],
        false
    );

    api.enqueue("t", "x", &[]).await;
    let removed = api.request(Method::DELETE, "/v1/handlers/h").await;
    assert_eq!(removed.status, StatusCode::OK);
    assert_eq!(removed.json(), json!({"handler": "h", "deliveries": 1}));
    api.get("/v1/handlers/h")
        .await
        .error(StatusCode::NOT_FOUND, "unknown_handler");
    api.request(Method::POST, "/v1/handlers/h/pause")
        .await
        .error(StatusCode::NOT_FOUND, "unknown_handler");
}

/// Relative delays start from the server's injected clock, not a wall clock of
/// the API's own: on a clock set years away from the system's, `not_before` is
/// exactly that clock plus the delay.
#[tokio::test]
async fn relative_delays_start_from_the_servers_clock() {
    let start = Timestamp(1_000_000_000_000);
    let api = api_on(
        StoreConfig::default(),
        None,
        Arc::new(ManualClock::new(start)),
    );
    api.register("h", "t", NOOP, None).await;
    let single = api
        .enqueue("t", "x", &[("sluice-delay", "10s")])
        .await
        .json();
    let batch = api
        .post_json(
            "/v1/topics/t/messages:batch",
            json!([{"delay": "10s"}, {"delay_ms": 2500}]),
        )
        .await
        .json();
    for (id, delay_ms) in [
        (&single["id"], 10_000),
        (&batch["messages"][0]["id"], 10_000),
        (&batch["messages"][1]["id"], 2_500),
    ] {
        let m = api
            .get(&format!("/v1/messages/{}", id.as_str().unwrap()))
            .await
            .json();
        let not_before = Timestamp::parse_rfc3339(m["not_before"].as_str().unwrap()).unwrap();
        assert_eq!(
            not_before,
            start.plus(Duration::from_millis(delay_ms)),
            "{m}"
        );
    }
}

#[tokio::test]
async fn batch_enqueue_is_atomic_and_names_the_bad_message() {
    let api = api();
    api.register("h", "t", NOOP, None).await;
    let r = api
        .post_json(
            "/v1/topics/t/messages:batch",
            json!([
                {"payload": "hello", "ordering_key": "k"},
                {"payload_base64": "AAEC", "idempotency_key": "i1", "delay_ms": 60000, "headers": {"a": "b"}},
                {"not_before": "2030-01-01T00:00:00Z"}
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let v = r.json();
    let messages = v["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    let second = api
        .get(&format!(
            "/v1/messages/{}",
            messages[1]["id"].as_str().unwrap()
        ))
        .await
        .json();
    assert_eq!(second["payload_bytes"], 3);
    assert_eq!(second["deliveries"][0]["state"], "scheduled");

    let m = api
        .post_json(
            "/v1/topics/t/messages:batch",
            json!([{"payload": "ok"}, {"payload_base64": "!!"}]),
        )
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    assert!(m.starts_with("message 1:"), "{m}");
    api.post_json("/v1/topics/t/messages:batch", json!([]))
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    api.post_json("/v1/topics/t/messages:batch", json!({"payload": "x"}))
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    let stats = api.get("/v1/stats").await.json();
    assert_eq!(
        stats["topics"]["t"], 3,
        "the failed batch enqueued nothing: {stats}"
    );
}

#[tokio::test]
async fn oversized_payloads_get_a_json_413() {
    let api = api_with(
        StoreConfig {
            max_payload_bytes: 1024,
            ..StoreConfig::default()
        },
        None,
    );
    api.register("h", "t", NOOP, None).await;
    // Within the margin: the store names the exact sizes.
    let just_over = Request::post("/v1/topics/t/messages")
        .body(Body::from(vec![b'x'; 1025]))
        .unwrap();
    let m = api
        .send(just_over)
        .await
        .error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert!(m.contains("1025") && m.contains("1024"), "{m}");
    // Past the margin: the transport limit, still our JSON.
    let huge = Request::post("/v1/topics/t/messages")
        .body(Body::from(vec![b'x'; 1024 + BODY_MARGIN + 1]))
        .unwrap();
    let m = api
        .send(huge)
        .await
        .error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert!(m.contains("limit"), "{m}");
}

#[tokio::test]
async fn a_full_topic_is_429_with_retry_after() {
    let api = api_with(
        StoreConfig {
            max_topic_depth: 1,
            ..StoreConfig::default()
        },
        None,
    );
    api.register("h", "t", NOOP, None).await;
    assert_eq!(
        api.enqueue("t", "1", &[]).await.status,
        StatusCode::ACCEPTED
    );
    let r = api.enqueue("t", "2", &[]).await;
    let m = r.error(StatusCode::TOO_MANY_REQUESTS, "queue_full");
    assert!(m.contains("full"), "{m}");
    assert!(r.headers.contains_key("retry-after"));
    let metrics = String::from_utf8(api.get("/metrics").await.body.to_vec()).unwrap();
    assert!(
        metrics.contains("sluice_enqueue_queue_full_total 1\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_token_guards_everything_but_healthz() {
    let api = api_with(StoreConfig::default(), Some("s3cret"));
    assert_eq!(api.get("/healthz").await.status, StatusCode::OK);
    let r = api.get("/v1/stats").await;
    r.error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    api.get("/metrics")
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
    let wrong = Request::get("/v1/stats")
        .header("authorization", "Bearer nope")
        .body(Body::empty())
        .unwrap();
    api.send(wrong)
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
    let right = Request::get("/v1/stats")
        .header("authorization", "Bearer s3cret")
        .body(Body::empty())
        .unwrap();
    assert_eq!(api.send(right).await.status, StatusCode::OK);
}

#[tokio::test]
async fn dlq_list_filter_show_replay_purge() {
    let api = api();
    api.register("h", "t", NOOP, Some(json!({"retries": 0})))
        .await;
    api.register("other", "t", NOOP, None).await;
    for payload in ["a", "b", "c"] {
        api.enqueue("t", payload, &[]).await;
    }
    for _ in 0..3 {
        api.kill_next("h").await;
    }

    let all = api.get("/v1/dlq?handler=h").await.json();
    let dead = all["dead"].as_array().unwrap();
    assert_eq!(dead.len(), 3);
    assert_eq!(all["next_cursor"], Value::Null);
    let attempt = &dead[0]["attempts"][0];
    assert_eq!(dead[0]["state"], "dead");
    assert_eq!(attempt["outcome"], json!({"kind": "exit", "code": 3}));
    assert_eq!(attempt["stderr"], "boom\n");
    assert_eq!(attempt["duration_ms"], 7);

    // Paging with a cursor.
    let page = api.get("/v1/dlq?handler=h&limit=2").await.json();
    assert_eq!(page["dead"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = api
        .get(&format!("/v1/dlq?handler=h&limit=2&cursor={cursor}"))
        .await
        .json();
    assert_eq!(rest["dead"].as_array().unwrap().len(), 1);

    // Filters.
    assert_eq!(
        api.get("/v1/dlq?outcome=exit").await.json()["dead"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        api.get("/v1/dlq?outcome=trap").await.json()["dead"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        api.get("/v1/dlq?until=2000-01-01T00:00:00Z").await.json()["dead"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let m = api
        .get("/v1/dlq?outcome=meltdown")
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    assert!(m.contains("meltdown") && m.contains("trap"), "{m}");
    api.get("/v1/dlq?handler=ghost")
        .await
        .error(StatusCode::NOT_FOUND, "unknown_handler");
    api.get("/v1/dlq?since=yesterday")
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_input");

    // Show and replay one.
    let id = dead[0]["id"].as_str().unwrap();
    assert_eq!(api.get(&format!("/v1/dlq/{id}")).await.json()["id"], id);
    let r = api
        .request(Method::POST, &format!("/v1/dlq/{id}/replay"))
        .await;
    assert_eq!(r.json()["count"], 1);
    let d = api.get(&format!("/v1/deliveries/{id}")).await.json();
    assert_eq!(d["state"], "ready");
    assert_eq!(
        d["attempts"].as_array().unwrap().len(),
        1,
        "history is kept"
    );
    api.get(&format!("/v1/dlq/{id}"))
        .await
        .error(StatusCode::CONFLICT, "not_dead");
    api.request(Method::POST, &format!("/v1/dlq/{id}/replay"))
        .await
        .error(StatusCode::CONFLICT, "not_dead");
    let attempts = api
        .get(&format!("/v1/deliveries/{id}/attempts"))
        .await
        .json();
    assert_eq!(attempts["handler"], "h");
    assert_eq!(attempts["attempts"][0]["number"], 1);

    // Replay all matching, then purge one and all matching.
    let r = api
        .post_json("/v1/dlq/replay", json!({"handler": "h", "outcome": "exit"}))
        .await;
    assert_eq!(r.json(), json!({"count": 2, "skipped": 0}));
    for _ in 0..3 {
        api.kill_next("h").await;
    }
    let id = api.get("/v1/dlq").await.json()["dead"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        api.request(Method::DELETE, &format!("/v1/dlq/{id}"))
            .await
            .json()["count"],
        1
    );
    api.get(&format!("/v1/deliveries/{id}"))
        .await
        .error(StatusCode::NOT_FOUND, "unknown_delivery");
    let r = api
        .post_json("/v1/dlq/purge", json!({"handler": "h"}))
        .await;
    assert_eq!(r.json()["count"], 2);
    assert_eq!(api.get("/v1/dlq").await.json()["dead"], json!([]));
    api.post_json("/v1/dlq/purge", json!({"handlr": "h"}))
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_input");
}

#[tokio::test]
async fn replay_from_a_time_redelivers_to_one_handler() {
    let api = api();
    api.register("h", "t", NOOP, None).await;
    api.enqueue("t", "a", &[]).await;
    api.enqueue("t", "b", &[]).await;
    api.register("late", "t", NOOP, None).await;
    let r = api
        .request(
            Method::POST,
            "/v1/handlers/late/replay?since=2000-01-01T00:00:00Z",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["count"], 2);
    api.request(Method::POST, "/v1/handlers/late/replay")
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    api.request(Method::POST, "/v1/handlers/late/replay?since=later")
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    let stats = api.get("/v1/stats").await.json();
    let late = stats["handlers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["handler"] == "late")
        .unwrap()
        .clone();
    assert_eq!(late["ready"], 2);
}

#[tokio::test]
async fn stats_and_metrics_show_the_three_signals() {
    let api = api();
    api.register("h", "t", NOOP, Some(json!({"retries": 0})))
        .await;
    api.enqueue("t", "a", &[]).await;
    api.enqueue("t", "b", &[]).await;
    api.kill_next("h").await;

    let s = api.get("/v1/stats").await.json();
    assert_eq!(s["dlq"], 1);
    assert_eq!(s["ready"], 1);
    assert!(s["oldest_ready_age_ms"].is_u64(), "{s}");
    let h = &s["handlers"][0];
    assert_eq!(h["handler"], "h");
    assert_eq!(h["counts"]["dead"], 1);
    assert_eq!(h["counts"]["ready"], 1);
    assert_eq!(h["counts"]["succeeded"], 0);
    assert!(
        h["counts"].get("blocked").is_none(),
        "blocked shows as ready"
    );
    assert_eq!(s["topics"]["t"], 1);

    let r = api.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    for line in [
        "sluice_deliveries{handler=\"h\",state=\"dead\"} 1\n",
        "sluice_deliveries{handler=\"h\",state=\"ready\"} 1\n",
        "sluice_dlq_size{handler=\"h\"} 1\n",
        "sluice_topic_depth{topic=\"t\"} 1\n",
        "# TYPE sluice_oldest_ready_age_seconds gauge\n",
        // A labelled family with no series yet (no attempt ran in this
        // process) is not listed, as Prometheus clients do.
        "# TYPE sluice_group_commit_batch_size histogram\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
