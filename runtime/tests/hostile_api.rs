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

/// Serves a fresh API with `sluice serve`'s server on a loopback port.
async fn listening() -> (std::net::SocketAddr, tempfile::TempDir) {
    let (app, dir) = app(None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(sluice::api::server::serve(
        listener,
        app,
        std::future::pending(),
    ));
    (addr, dir)
}

/// Writes `request` (in a task of its own: the server may answer before it
/// has read all of it) and reads until the server closes.
async fn exchange(addr: std::net::SocketAddr, request: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (mut r, mut w) = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap()
        .into_split();
    let writer = tokio::spawn(async move {
        let _ = w.write_all(&request).await;
        w
    });
    let mut answer = Vec::new();
    r.read_to_end(&mut answer).await.unwrap();
    drop(writer.await.unwrap());
    String::from_utf8(answer).unwrap()
}

/// The responses in `answer`: (status, head, JSON body), in order.
fn responses(mut answer: &str) -> Vec<(u16, String, Value)> {
    let mut out = Vec::new();
    while !answer.is_empty() {
        let (head, rest) = answer.split_once("\r\n\r\n").expect("a head");
        let status = head[9..12].parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap_or_else(|| panic!("no content-length: {head}"))
            .parse()
            .unwrap();
        let body = serde_json::from_str(&rest[..length])
            .unwrap_or_else(|e| panic!("{head}: not JSON ({e}): {:?}", &rest[..length]));
        out.push((status, head.to_string(), body));
        answer = &rest[length..];
    }
    out
}

/// Asserts the one answer to `request` is the JSON error `status`/`code`
/// with `connection: close`; returns its message.
async fn refused_raw(
    addr: std::net::SocketAddr,
    request: Vec<u8>,
    status: u16,
    code: &str,
) -> String {
    let answer = exchange(addr, request).await;
    let got = responses(&answer);
    assert_eq!(got.len(), 1, "{answer}");
    let (got_status, head, body) = &got[0];
    assert_eq!(
        (*got_status, body["error"]["code"].as_str()),
        (status, Some(code)),
        "{answer}"
    );
    assert!(
        head.contains("\r\ncontent-type: application/json"),
        "{head}"
    );
    assert!(head.contains("\r\nconnection: close"), "{head}");
    body["error"]["message"].as_str().unwrap().to_string()
}

fn get(target: &[u8], headers: &str) -> Vec<u8> {
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(target);
    req.extend_from_slice(format!(" HTTP/1.1\r\nhost: x\r\n{headers}\r\n").as_bytes());
    req
}

#[tokio::test]
async fn what_hyper_refuses_before_routing_is_the_json_error_too() {
    use sluice::api::server::{MAX_HEAD_BYTES, MAX_HEADERS, MAX_URI_BYTES};
    let (addr, _dir) = listening().await;
    // Past the number of header fields (Host is one of them).
    let many: String = (0..MAX_HEADERS).map(|i| format!("x-h{i}: v\r\n")).collect();
    let m = refused_raw(addr, get(b"/v1/stats", &many), 431, "headers_too_large").await;
    assert!(
        m.contains(&format!("at most {MAX_HEADERS} header fields")),
        "{m}"
    );
    // A header value of 1 MB.
    let big = format!("x-big: {}\r\n", "v".repeat(1 << 20));
    let m = refused_raw(addr, get(b"/v1/stats", &big), 431, "headers_too_large").await;
    assert!(m.contains(&format!("{MAX_HEAD_BYTES} bytes")), "{m}");
    // A path past the request target's bound.
    let long = format!("/v1/handlers/{}", "a".repeat(MAX_URI_BYTES));
    let m = refused_raw(addr, get(long.as_bytes(), ""), 414, "uri_too_long").await;
    assert!(m.contains(&format!("at most {MAX_URI_BYTES} bytes")), "{m}");
    // A raw 0xff byte in the path.
    let m = refused_raw(
        addr,
        get(b"/v1/handlers/\xff", ""),
        400,
        "malformed_request",
    )
    .await;
    assert!(m.starts_with("malformed HTTP request"), "{m}");
    // A Content-Length that is not a number.
    let bad_length =
        b"POST /v1/topics/t/messages HTTP/1.1\r\nhost: x\r\ncontent-length: 1x\r\n\r\nx";
    let m = refused_raw(addr, bad_length.to_vec(), 400, "malformed_request").await;
    assert!(m.contains("content-length"), "{m}");
    // At the limit itself the request is routed: host, connection and the rest.
    let fields: String = (2..MAX_HEADERS)
        .map(|i| format!("x-h{i}: v\r\n"))
        .chain(["connection: close\r\n".to_string()])
        .collect();
    let answer = exchange(addr, get(b"/v1/stats", &fields)).await;
    assert_eq!(responses(&answer)[0].0, 200, "{answer}");
}

#[tokio::test]
async fn keep_alive_holds_and_a_bad_request_after_good_ones_gets_its_json_error() {
    let (addr, _dir) = listening().await;
    // Two pipelined requests on one connection, then one that does not parse:
    // both answers, then the JSON 400, then the connection closes.
    let mut req = get(b"/v1/stats", "");
    req.extend(get(b"/no/such/path", ""));
    req.extend_from_slice(b"GET /v1/stats HTTP/1.1\r\nhost: x\r\ncontent-length: -1\r\n\r\n");
    let answer = exchange(addr, req).await;
    let got = responses(&answer);
    let statuses: Vec<u16> = got.iter().map(|r| r.0).collect();
    assert_eq!(statuses, [200, 404, 400], "{answer}");
    assert_eq!(got[1].2["error"]["code"], "no_route");
    assert_eq!(got[2].2["error"]["code"], "malformed_request");
    assert!(!got[0].1.contains("connection: close"), "{}", got[0].1);
    assert!(got[2].1.contains("connection: close"), "{}", got[2].1);
}

/// `n` as unsigned LEB128.
fn leb(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A module of `_start` and few huge functions of `nop`s, `code_bytes` of
/// bodies in all (each under wasmparser's bound on one body, 7.6 MB).
fn few_huge_functions(code_bytes: usize) -> Vec<u8> {
    const BODY: usize = 6 << 20;
    let bodies: Vec<usize> = (0..code_bytes.div_ceil(BODY))
        .map(|i| BODY.min(code_bytes - i * BODY))
        .collect();
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    let section = |id: u8, payload: &[u8], wasm: &mut Vec<u8>| {
        wasm.push(id);
        leb(payload.len(), wasm);
        wasm.extend_from_slice(payload);
    };
    section(1, &[1, 0x60, 0, 0], &mut wasm); // one type: [] -> []
    let mut functions = Vec::new();
    leb(bodies.len() + 1, &mut functions);
    functions.resize(functions.len() + bodies.len() + 1, 0);
    section(3, &functions, &mut wasm);
    section(5, &[1, 0, 1], &mut wasm); // one memory, one page
    section(7, b"\x02\x06memory\x02\x00\x06_start\x00\x00", &mut wasm);
    let mut code = Vec::new();
    leb(bodies.len() + 1, &mut code);
    code.extend_from_slice(&[2, 0, 0x0b]); // `_start`: no locals, end
    for size in bodies {
        let mut body = vec![0]; // no locals
        body.resize(size - 1, 0x01); // nop
        body.push(0x0b); // end
        leb(body.len(), &mut code);
        code.extend_from_slice(&body);
    }
    section(10, &code, &mut wasm);
    wasm
}

#[tokio::test]
async fn registration_past_the_code_size_bound_is_a_400_naming_it() {
    let (app, _dir) = app(None);
    // Four functions, far under the function bound, but 16 MiB + 1 KiB of code.
    let max = sluice::sandbox::validate::MAX_CODE_BYTES as usize;
    let wasm = few_huge_functions(max + 1024);
    wasmparser::validate(&wasm).unwrap();
    let req = Request::put("/v1/handlers/h?topic=t")
        .body(Body::from(wasm))
        .unwrap();
    let m = refused(&app, req, StatusCode::BAD_REQUEST, "invalid_module").await;
    assert!(m.contains("of code; at most 16 MiB supported"), "{m}");
    // The same shape, small, is registered.
    let req = Request::put("/v1/handlers/h?topic=t")
        .body(Body::from(few_huge_functions(4096)))
        .unwrap();
    assert_eq!(call(&app, req).await.0, StatusCode::CREATED);
}

#[tokio::test]
async fn a_compile_past_the_compile_timeout_is_a_400_naming_the_bound() {
    use sluice::sandbox::{Sandbox, SandboxConfig};
    let dir = tempfile::tempdir().unwrap();
    let (_store, mut state) = common::api_state(dir.path(), StoreConfig::default(), None);
    state.sandbox = Sandbox::new(SandboxConfig {
        pool_instances: 2,
        max_memory_bytes: 256 << 20,
        compile_timeout: std::time::Duration::from_millis(10),
        ..SandboxConfig::default()
    })
    .unwrap();
    let app = sluice::api::router(state);
    // 20,000 functions: within the function bound, far more than 10 ms to compile.
    let wat = format!(
        r#"(module (memory (export "memory") 1) (func (export "_start")) {})"#,
        "(func (result i32) i32.const 1)".repeat(20_000)
    );
    let req = Request::put("/v1/handlers/h?topic=t")
        .body(Body::from(wat::parse_str(wat).unwrap()))
        .unwrap();
    let m = refused(&app, req, StatusCode::BAD_REQUEST, "invalid_module").await;
    assert!(
        m.contains("took longer than 10ms") && m.contains("compile_timeout"),
        "{m}"
    );
    // Nothing was registered.
    let (status, _) = call(
        &app,
        Request::get("/v1/handlers/h").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
