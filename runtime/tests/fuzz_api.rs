//! Fuzzing the HTTP API with proptest: random bodies, headers, names,
//! durations, times, queries, methods and paths, and random or mutated module
//! bytes at registration, sent to the real router (no port) on a real
//! `EmbeddedStore` and sandbox.
//!
//! Every input must get a well-formed answer: no panic, never a 5xx (no store
//! fault is injected, so a 5xx could only be bad input treated as a bug), and
//! every error a JSON body `{"error": {"code", "message"}}`. Every message an
//! enqueue got accepted must round-trip: its status reads back (`GET
//! /v1/messages/{id}`, `200` JSON), renders as the CLI shows it, and the DLQ
//! listing still answers. Besides random values, the generators draw edge
//! values: the boundaries of every integer, time and duration, repeated
//! headers, non-UTF-8 and control bytes.
//!
//! `SLUICE_FUZZ_CASES` sets the cases per property (default 200, a few seconds
//! each); the long run in docs/crash-testing.md used
//! `SLUICE_FUZZ_CASES=500000 cargo test -p sluice --test fuzz_api -- --test-threads 1`
//! (2,000,000 cases in about 10 minutes).

mod common;
use std::sync::OnceLock;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode};
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;

use sluice::api::dto::{DeadLettersView, MessageView};
use sluice::api::router;
use sluice::cli::render;
use sluice::store::StoreConfig;

/// A WASI command that does nothing: the seed of module mutations.
const NOOP: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

struct Fuzz {
    rt: tokio::runtime::Runtime,
    app: Router,
    _dir: tempfile::TempDir,
}

/// One router for every case of the run (state accumulates, as in a server).
fn fuzz() -> &'static Fuzz {
    static FUZZ: OnceLock<Fuzz> = OnceLock::new();
    FUZZ.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            max_payload_bytes: 4096,
            ..StoreConfig::default()
        };
        let (_store, state) = common::api_state(dir.path(), config, None);
        let app = router(state);
        let fuzz = Fuzz { rt, app, _dir: dir };
        // A topic that exists, so enqueues reach the store's own checks.
        let wasm = wat::parse_str(NOOP).unwrap();
        let req = Request::put("/v1/handlers/h?topic=t")
            .body(Body::from(wasm))
            .unwrap();
        let (status, _) = fuzz.send(req);
        assert!(status.is_success(), "{status}");
        fuzz
    })
}

impl Fuzz {
    fn send(&self, req: Request<Body>) -> (StatusCode, Vec<u8>) {
        self.rt.block_on(async {
            let res = self.app.clone().oneshot(req).await.unwrap();
            let status = res.status();
            let body = to_bytes(res.into_body(), usize::MAX).await.unwrap();
            (status, body.to_vec())
        })
    }

    /// Sends and checks the answer is well formed; returns the status.
    fn check(&self, what: &str, req: Request<Body>) -> Result<StatusCode, TestCaseError> {
        let (status, body) = self.send(req);
        let text = String::from_utf8_lossy(&body);
        prop_assert!(
            !status.is_server_error(),
            "{what}: {status} for bad input: {text}"
        );
        if status.is_client_error() {
            let v: Value = serde_json::from_slice(&body).map_err(|e| {
                TestCaseError::fail(format!("{what}: {status}, not JSON ({e}): {text}"))
            })?;
            prop_assert!(
                v["error"]["code"].as_str().is_some_and(|c| !c.is_empty()),
                "{what}: {v}"
            );
            prop_assert!(
                v["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "{what}: {v}"
            );
        } else if !body.is_empty() && !text.starts_with('#') {
            // Success answers are JSON too (`/metrics` is Prometheus text).
            prop_assert!(
                serde_json::from_slice::<Value>(&body).is_ok(),
                "{what}: {status}, not JSON: {text}"
            );
        }
        Ok(status)
    }

    /// Reads back every message id in an accepted enqueue's answer: status,
    /// rendering, and the DLQ listing must all answer.
    fn round_trip(&self, what: &str, answer: &Value) -> Result<(), TestCaseError> {
        let ids: Vec<&str> = match answer.get("messages") {
            Some(list) => list
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["id"].as_str())
                .collect(),
            None => answer["id"].as_str().into_iter().collect(),
        };
        prop_assert!(!ids.is_empty(), "{what}: accepted without ids: {answer}");
        for id in ids {
            let get = Request::get(format!("/v1/messages/{id}"))
                .body(Body::empty())
                .unwrap();
            let (status, body) = self.send(get);
            let text = String::from_utf8_lossy(&body);
            prop_assert_eq!(
                status,
                StatusCode::OK,
                "{}: accepted {} reads back as {}",
                what,
                id,
                text
            );
            let view: MessageView = serde_json::from_slice(&body)
                .map_err(|e| TestCaseError::fail(format!("{what}: {id}: {e}: {text}")))?;
            prop_assert!(!render::message(&view, &render::Style::plain()).is_empty());
        }
        let (status, body) = self.send(Request::get("/v1/dlq").body(Body::empty()).unwrap());
        prop_assert_eq!(status, StatusCode::OK);
        let page: Result<DeadLettersView, _> = serde_json::from_slice(&body);
        prop_assert!(page.is_ok(), "{}: DLQ listing: {:?}", what, page.err());
        Ok(())
    }

    /// Sends, checks, and on `202` reads every accepted message back.
    fn check_enqueue(&self, what: &str, req: Request<Body>) -> Result<StatusCode, TestCaseError> {
        let (status, body) = self.send(req);
        let text = String::from_utf8_lossy(&body).into_owned();
        prop_assert!(!status.is_server_error(), "{what}: {status}: {text}");
        let v: Value = serde_json::from_slice(&body).map_err(|e| {
            TestCaseError::fail(format!("{what}: {status}, not JSON ({e}): {text}"))
        })?;
        if status == StatusCode::ACCEPTED {
            self.round_trip(what, &v)?;
        } else {
            prop_assert!(
                v["error"]["code"].as_str().is_some_and(|c| !c.is_empty()),
                "{what}: {v}"
            );
        }
        Ok(status)
    }
}

/// Edge values of a duration: around the longest delay (3650 days), integer
/// limits, units that overflow.
fn edge_duration() -> impl Strategy<Value = String> {
    let max = sluice::clock::MAX_DELAY.as_millis() as u64;
    prop_oneof![
        Just(format!("{max}ms")),
        Just(format!("{}ms", max + 1)),
        Just("3650days".to_string()),
        Just("3651days".to_string()),
        Just(format!("{}ms", u64::MAX)),
        Just(format!("{}", u64::MAX)),
        Just(format!("{}s", i64::MAX)),
        Just("99999999999d".to_string()),
        Just("1e12s".to_string()),
        Just("300000y".to_string()),
        Just("0".to_string()),
        Just("0ms".to_string()),
    ]
}

/// Edge values of a time: the ends of the range and just past them.
fn edge_time() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("9999-12-31T23:59:59.999Z".to_string()),
        Just("9999-12-31T23:59:59.999999999Z".to_string()),
        Just("10000-01-01T00:00:00Z".to_string()),
        Just("1970-01-01T00:00:00Z".to_string()),
        Just("1969-12-31T23:59:59Z".to_string()),
        Just("2262-04-11T23:47:16.854775807Z".to_string()),
    ]
}

/// Edge integers: 0, 1, 2^53 ± 1, the limits of i64/u64, the longest delay ± 1.
fn edge_integer() -> impl Strategy<Value = Value> {
    let max = sluice::clock::MAX_DELAY.as_millis() as u64;
    prop_oneof![
        Just(Value::from(0u64)),
        Just(Value::from(1u64)),
        Just(Value::from((1u64 << 53) - 1)),
        Just(Value::from(1u64 << 53)),
        Just(Value::from(i64::MAX)),
        Just(Value::from(i64::MIN)),
        Just(Value::from(u64::MAX)),
        Just(Value::from(max)),
        Just(Value::from(max + 1)),
        Just(Value::from(-1i64)),
    ]
}

/// Header values with control bytes, non-UTF-8 and the edges above; those
/// `http` itself refuses to carry are dropped by the caller.
fn edge_header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        edge_duration().prop_map(String::into_bytes),
        edge_time().prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..12),
        Just(vec![0xff, 0xfe]),
        Just(b"a\tb".to_vec()),
    ]
}

/// Percent-encodes a path segment or query value (everything but unreserved).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Names: mostly near the rules (`[a-z0-9][a-z0-9._-]{0,127}`), some anything.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9][a-z0-9._-]{0,20}",
        "[a-z0-9][a-z0-9._-]{120,140}",
        "[A-Za-z0-9._~ /%-]{0,12}",
        any::<String>(),
        Just("t".to_string()),
    ]
}

/// Durations as users write them, and garbage.
fn duration() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,6}(ms|s|m|h)?",
        "[0-9]{1,3}h[0-9]{1,2}m[0-9]{1,2}s",
        "[0-9]{15,25}(ms|s|h|d)?",
        "-[0-9]{1,4}s",
        "[ -~]{0,12}",
        edge_duration(),
    ]
}

/// Times in RFC 3339, near misses, and garbage.
fn time() -> impl Strategy<Value = String> {
    prop_oneof![
        "(19|20|21|99)[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9](\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}",
        "[ -~]{0,30}",
        edge_time(),
    ]
}

/// Header values that `http` accepts (visible ASCII and spaces, some bytes
/// above 0x7f as opaque octets).
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[ -~]{0,40}".prop_map(String::into_bytes),
        proptest::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff], 0..40),
        Just(Vec::new()),
        edge_header_value(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        edge_integer(),
        "[\\x00-\\x1f\\x7f]{1,4}".prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[ -~]{0,16}".prop_map(Value::from),
        duration().prop_map(Value::from),
        time().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A batch entry: the real fields with random values, sometimes an unknown one.
fn batch_item() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        Just("payload"),
        Just("payload_base64"),
        Just("ordering_key"),
        Just("idempotency_key"),
        Just("delay_ms"),
        Just("delay"),
        Just("not_before"),
        Just("headers"),
        Just("bogus"),
    ];
    proptest::collection::vec((field, json_value()), 0..5).prop_map(|fields| {
        Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    })
}

/// A policy document: the real fields with random values.
fn policy() -> impl Strategy<Value = String> {
    let field = prop_oneof![
        Just("timeout_ms"),
        Just("lease_ms"),
        Just("retries"),
        Just("backoff_ms"),
        Just("backoff_max_ms"),
        Just("memory_bytes"),
        Just("fuel"),
        Just("concurrency"),
        Just("env"),
        Just("nope"),
    ];
    let number = prop_oneof![
        any::<u64>().prop_map(Value::from),
        (0u64..100_000).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
    ];
    let value = prop_oneof![number, json_value()];
    prop_oneof![
        proptest::collection::vec((field, value), 0..6).prop_map(|fields| {
            Value::Object(
                fields
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            )
            .to_string()
        }),
        "[ -~]{0,40}",
    ]
}

/// Module bytes: random, or the valid seed module with random byte edits,
/// truncation or an appended tail.
fn module() -> impl Strategy<Value = Vec<u8>> {
    let seed = wat::parse_str(NOOP).unwrap();
    let n = seed.len();
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        proptest::collection::vec((0..n, any::<u8>()), 1..6).prop_map({
            let seed = seed.clone();
            move |edits| {
                let mut m = seed.clone();
                for (i, b) in edits {
                    m[i] = b;
                }
                m
            }
        }),
        (0..n).prop_map({
            let seed = seed.clone();
            move |len| seed[..len].to_vec()
        }),
        proptest::collection::vec(any::<u8>(), 1..40).prop_map(move |tail| {
            let mut m = seed.clone();
            m.extend(tail);
            m
        }),
    ]
}

fn cases() -> u32 {
    std::env::var("SLUICE_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(200)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const ENQUEUE_HEADERS: &[&str] = &[
    "idempotency-key",
    "sluice-ordering-key",
    "sluice-delay",
    "sluice-not-before",
    "sluice-header-x",
    "sluice-header-",
    "content-type",
    "authorization",
];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn enqueue_any_topic_headers_and_body(
        topic in name(),
        headers in proptest::collection::vec(
            (proptest::sample::select(ENQUEUE_HEADERS), header_value()), 0..5),
        delay in proptest::option::of(duration()),
        not_before in proptest::option::of(time()),
        body in proptest::collection::vec(any::<u8>(), 0..5000),
    ) {
        let f = fuzz();
        let mut req = Request::post(format!("/v1/topics/{}/messages", enc(&topic)));
        // Repeats are drawn on purpose (the same header twice must be refused).
        for (k, v) in &headers {
            if axum::http::HeaderValue::from_bytes(v).is_ok() {
                req = req.header(*k, v.as_slice());
            }
        }
        if let Some(d) = &delay {
            req = req.header("sluice-delay", d.as_str());
        }
        if let Some(t) = &not_before {
            req = req.header("sluice-not-before", t.as_str());
        }
        let status = f.check_enqueue("enqueue", req.body(Body::from(body)).unwrap())?;
        prop_assert!(status == StatusCode::ACCEPTED || status.is_client_error());
    }

    #[test]
    fn batch_any_body(
        topic in prop_oneof![Just("t".to_string()), name()],
        items in proptest::collection::vec(batch_item(), 0..8),
        raw in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
    ) {
        let f = fuzz();
        let body = raw.unwrap_or_else(|| Value::from(items).to_string().into_bytes());
        let req = Request::post(format!("/v1/topics/{}/messages:batch", enc(&topic)))
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        f.check_enqueue("batch", req)?;
    }

    #[test]
    fn register_any_module_name_topic_and_policy(
        handler in name(),
        topic in name(),
        module in module(),
        policy in proptest::option::of(policy()),
        json_body in any::<bool>(),
    ) {
        let f = fuzz();
        let req = if json_body {
            let mut doc = json!({"name": handler, "topic": topic});
            doc["module_base64"] = Value::from(base64_encode(&module));
            if let Some(p) = &policy {
                doc["policy"] = serde_json::from_str(p).unwrap_or(Value::from(p.as_str()));
            }
            Request::post("/v1/handlers")
                .header("content-type", "application/json")
                .body(Body::from(doc.to_string()))
                .unwrap()
        } else {
            let mut req = Request::put(format!("/v1/handlers/{}?topic={}", enc(&handler), enc(&topic)))
                .header("content-type", "application/wasm");
            // A policy `http` cannot carry (a DEL byte) goes in the JSON form only.
            if let Some(p) = policy.as_ref().filter(|p| axum::http::HeaderValue::from_str(p).is_ok()) {
                req = req.header("sluice-policy", p.as_str());
            }
            req.body(Body::from(module)).unwrap()
        };
        f.check("register", req)?;
    }

    #[test]
    fn any_method_path_and_query(
        method in proptest::sample::select(vec![
            Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::PATCH,
        ]),
        route in proptest::sample::select(vec![
            "/v1/messages/{}", "/v1/deliveries/{}", "/v1/deliveries/{}/attempts",
            "/v1/handlers/{}", "/v1/handlers/{}/pause", "/v1/handlers/{}/resume",
            "/v1/handlers/{}/replay", "/v1/dlq/{}", "/v1/dlq/{}/replay", "/v1/dlq",
            "/v1/dlq/replay", "/v1/dlq/purge", "/v1/stats", "/metrics", "/healthz",
            "/v1/{}", "/{}", "/v1/topics/{}/messages",
        ]),
        segment in prop_oneof![name(), Just("0190a000-0000-7000-8000-000000000001".to_string())],
        query in proptest::collection::vec(
            (proptest::sample::select(vec!["since", "until", "limit", "cursor", "handler", "outcome", "topic", "x"]),
             prop_oneof![time(), "[0-9]{1,25}", name()]),
            0..4),
        body in prop_oneof![
            json_value().prop_map(|v| v.to_string().into_bytes()),
            proptest::collection::vec(any::<u8>(), 0..100),
        ],
    ) {
        let f = fuzz();
        let mut uri = route.replace("{}", &enc(&segment));
        if !query.is_empty() {
            let q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={}", enc(v))).collect();
            uri = format!("{uri}?{}", q.join("&"));
        }
        let req = Request::builder()
            .method(method)
            .uri(uri.as_str())
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        f.check(&uri, req)?;
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
