//! Outbound HTTP under a per-handler allow-list (docs/egress.md), through the
//! real runner against HTTP servers this test starts on loopback, which the
//! test policies name explicitly (`allow_addresses: 127.0.0.1/32`): the
//! webhook examples in Rust and C (ABI 1, `sluice::http_request`) and
//! JavaScript (a component, `fetch` over `wasi:http`) each get a response;
//! a host not on the list, a name resolving to a loopback address the policy
//! does not name, and a redirect to a forbidden address are refused without
//! a connection (the servers see nothing); a slow server is cut off at the
//! attempt's timeout; a huge response is cut at its limit; every request is
//! recorded in the attempt and counted in the metrics.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use sluice::outcome::Outcome;
use sluice::policy::HandlerPolicy;
use sluice::sandbox::{EgressOutcome, EgressPolicy, EgressRecord, Limits};
use sluice::store::{DeliveryState, MessageStatus, Store as _};
use sluice_tests::{Harness, example};

/// One request a test server saw: its path, idempotency key and body.
type Request = (String, String, Vec<u8>);

/// What a test server saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Request>>>);

impl Seen {
    fn take(&self) -> Vec<Request> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

/// A loopback HTTP server: `/hook` answers 201 `created`, `/redirect` 302 to
/// `redirect_to`, `/slow` after a minute, `/huge` with 4 MiB.
struct Server {
    addr: SocketAddr,
    seen: Seen,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn server(ip: &str, redirect_to: Option<String>) -> Server {
    let seen = Seen::default();
    let record = |path: &'static str| {
        move |State(seen): State<Seen>, headers: HeaderMap, body: Bytes| async move {
            let key = headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            seen.0
                .lock()
                .unwrap()
                .push((path.into(), key, body.to_vec()));
        }
    };
    let redirect = redirect_to.unwrap_or_default();
    let app = Router::new()
        .route(
            "/hook",
            post({
                let record = record("/hook");
                move |s, h, b| async move {
                    record(s, h, b).await;
                    (StatusCode::CREATED, "created")
                }
            }),
        )
        .route(
            "/redirect",
            post({
                let record = record("/redirect");
                move |s, h, b| async move {
                    record(s, h, b).await;
                    (StatusCode::FOUND, [(header::LOCATION, redirect)], "")
                }
            }),
        )
        .route(
            "/slow",
            post({
                let record = record("/slow");
                move |s, h, b| async move {
                    record(s, h, b).await;
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    "too late"
                }
            }),
        )
        .route(
            "/huge",
            post({
                let record = record("/huge");
                move |s, h, b| async move {
                    record(s, h, b).await;
                    Response::new(Body::from(vec![b'x'; 4 << 20])).into_response()
                }
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Server { addr, seen, task }
}

/// A policy that allows `origins` and the loopback address 127.0.0.1 only,
/// posting to `url`, with no retries (a failure is dead at once).
fn policy(url: &str, origins: &[String]) -> HandlerPolicy {
    let mut p = HandlerPolicy {
        timeout_ms: 10_000,
        retries: 0,
        egress: EgressPolicy {
            allow: origins.to_vec(),
            allow_addresses: vec!["127.0.0.1/32".into()],
            ..EgressPolicy::default()
        },
        ..HandlerPolicy::default()
    };
    p.env.insert("WEBHOOK_URL".into(), url.into());
    p
}

fn origin(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// `sluice_egress_requests_total{handler,origin,outcome}` as `/metrics` shows it.
async fn egress_counted(h: &Harness, handler: &str, origin: &str, outcome: &str) -> u64 {
    use sluice::clock::Clock as _;
    let stats = h.store.stats().await.unwrap();
    let text = sluice::metrics::render(
        stats,
        &h.metrics,
        h.clock.now(),
        sluice::metrics::Format::Classic,
    );
    let series = format!(
        "sluice_egress_requests_total{{handler=\"{handler}\",origin=\"{origin}\",outcome=\"{outcome}\"}} "
    );
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |n| n.parse().unwrap())
}

/// The first attempt's report of the message's only delivery.
fn egress(s: &MessageStatus) -> (Outcome, Vec<EgressRecord>, String) {
    let report = s.deliveries[0].attempts[0].report.as_ref().unwrap();
    (
        report.outcome.clone(),
        report.egress.clone(),
        String::from_utf8_lossy(&report.stdout).into_owned(),
    )
}

async fn precompile(h: &Harness, lang: &str) {
    let wasm = std::fs::read(example(lang, "webhook")).unwrap();
    let sandbox = h.sandbox.clone();
    tokio::task::spawn_blocking(move || sandbox.load(&wasm, &Limits::default()))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{lang} webhook: {e}"));
}

/// Each language's webhook posts to an allowed loopback server and gets its
/// answer, with the message's idempotency key; the attempt records it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_in_rust_c_and_javascript_reach_an_allowed_server() {
    let h = Harness::start_with_shared_cache().await;
    let hook = server("127.0.0.1", None).await;
    let allowed = vec![origin(hook.addr)];
    for lang in ["rust", "c", "js"] {
        precompile(&h, lang).await;
        let url = format!("http://{}/hook", hook.addr);
        let topic = format!("orders-{lang}");
        h.register(
            &format!("hook-{lang}"),
            &topic,
            &example(lang, "webhook"),
            policy(&url, &allowed),
        )
        .await;
        let payload = format!(r#"{{"order":"{lang}"}}"#);
        let id = h.enqueue(&topic, &payload).await;
        let s = h.settle(id).await;
        let (outcome, records, stdout) = egress(&s);
        assert_eq!(outcome, Outcome::Ok, "{lang}: {s:#?}");
        assert_eq!(s.deliveries[0].state, DeliveryState::Succeeded);
        assert!(stdout.contains("webhook 201 created"), "{lang}: {stdout}");
        assert_eq!(records.len(), 1, "{lang}: {records:#?}");
        let r = &records[0];
        assert_eq!(
            (r.method.as_str(), r.origin.as_str(), r.status, r.outcome),
            (
                "POST",
                origin(hook.addr).as_str(),
                Some(201),
                EgressOutcome::Ok
            ),
            "{lang}: {r:#?}"
        );
        assert_eq!(r.request_bytes, payload.len() as u64, "{lang}");
        assert_eq!(r.response_bytes, "created".len() as u64, "{lang}");
        let seen = hook.seen.take();
        assert_eq!(seen.len(), 1, "{lang}");
        let message = h.store.message(id).await.unwrap().message;
        assert_eq!(
            seen[0].1, message.idempotency_key,
            "{lang}: the provider's key"
        );
        assert_eq!(seen[0].2, payload.as_bytes(), "{lang}");
        let counted = egress_counted(&h, &format!("hook-{lang}"), &origin(hook.addr), "ok").await;
        assert_eq!(counted, 1, "{lang}");
    }
    h.stop().await;
}

/// Refusals happen before any connection: an origin not on the list, a
/// name resolving to a loopback address the policy does not name, and a
/// redirect (followed by the guest as a new request) to an allowed origin
/// whose address is forbidden.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_never_reach_a_server() {
    let h = Harness::start_with_shared_cache().await;
    precompile(&h, "rust").await;
    let module = example("rust", "webhook");
    // 127.0.0.2 is loopback too, and not in the allowed 127.0.0.1/32.
    let forbidden = server("127.0.0.2", None).await;
    let other = server("127.0.0.1", None).await;
    let target = format!("http://{}/hook", forbidden.addr);
    let hook = server("127.0.0.1", Some(target)).await;

    let cases = [
        // Not on the list at all.
        (
            "unlisted",
            format!("http://{}/hook", other.addr),
            vec![origin(hook.addr)],
            vec![EgressOutcome::DeniedOrigin],
        ),
        // On the list by name, but the name is loopback, not named.
        (
            "localhost",
            format!("http://localhost:{}/hook", other.addr.port()),
            vec![format!("http://localhost:{}", other.addr.port())],
            vec![EgressOutcome::DeniedAddress],
        ),
        // The 302 arrives; the hop to the forbidden address is refused.
        (
            "redirect",
            format!("http://{}/redirect", hook.addr),
            vec![origin(hook.addr), origin(forbidden.addr)],
            vec![EgressOutcome::Ok, EgressOutcome::DeniedAddress],
        ),
    ];
    for (name, url, allowed, expected) in cases {
        let mut p = policy(&url, &allowed);
        if name == "localhost" {
            // Loopback is not named: the allowed name resolves to nothing allowed.
            p.egress.allow_addresses.clear();
        }
        h.register(name, name, &module, p).await;
        let id = h.enqueue(name, "{}").await;
        let s = h.settle(id).await;
        let (outcome, records, _) = egress(&s);
        assert_eq!(outcome, Outcome::Exit { code: 75 }, "{name}: {s:#?}");
        assert_eq!(s.deliveries[0].state, DeliveryState::Dead, "{name}");
        let outcomes: Vec<_> = records.iter().map(|r| r.outcome).collect();
        assert_eq!(outcomes, expected, "{name}: {records:#?}");
        let last = records.last().unwrap();
        assert_eq!(last.status, None, "{name}");
        assert!(!last.detail.is_empty(), "{name}: says why");
        if name == "redirect" {
            assert_eq!(records[0].status, Some(302));
            assert!(last.detail.contains("127.0.0.2"), "{}", last.detail);
        }
        if name == "localhost" {
            assert!(last.detail.contains("loopback"), "{}", last.detail);
        }
    }
    assert!(
        forbidden.seen.take().is_empty(),
        "the forbidden server saw nothing"
    );
    assert!(
        other.seen.take().is_empty(),
        "the unlisted server saw nothing"
    );
    let seen: Vec<_> = hook.seen.take().into_iter().map(|s| s.0).collect();
    assert_eq!(seen, ["/redirect"]);
    let counted = egress_counted(&h, "redirect", &origin(forbidden.addr), "denied_address").await;
    assert_eq!(counted, 1);
    h.stop().await;
}

/// A server that never answers is cut off at the attempt's timeout (the
/// request recorded as interrupted); a response past the attempt's limit is
/// cut there, and the guest sees an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_huge_responses_are_cut_off() {
    let h = Harness::start_with_shared_cache().await;
    precompile(&h, "rust").await;
    let module = example("rust", "webhook");
    let srv = server("127.0.0.1", None).await;
    let allowed = vec![origin(srv.addr)];

    let mut slow = policy(&format!("http://{}/slow", srv.addr), &allowed);
    slow.timeout_ms = 1_000;
    h.register("slow", "slow", &module, slow).await;
    let id = h.enqueue("slow", "{}").await;
    let s = h.settle(id).await;
    let (outcome, records, _) = egress(&s);
    assert_eq!(outcome, Outcome::Timeout { limit_ms: 1_000 }, "{s:#?}");
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].outcome,
        EgressOutcome::Interrupted,
        "{records:#?}"
    );
    let took = s.deliveries[0].attempts[0]
        .report
        .as_ref()
        .unwrap()
        .duration_ms;
    assert!(
        took < 5_000,
        "the hard stop ended the request in flight: {took} ms"
    );

    let mut huge = policy(&format!("http://{}/huge", srv.addr), &allowed);
    huge.egress.max_response_bytes = 64 << 10;
    h.register("huge", "huge", &module, huge).await;
    let id = h.enqueue("huge", "{}").await;
    let s = h.settle(id).await;
    let (outcome, records, _) = egress(&s);
    assert_eq!(outcome, Outcome::Exit { code: 75 }, "{s:#?}");
    assert_eq!(records[0].status, Some(200));
    assert_eq!(
        records[0].outcome,
        EgressOutcome::ResponseTooLarge,
        "{records:#?}"
    );
    assert!(records[0].response_bytes <= 64 << 10, "{records:#?}");

    let redir = server("127.0.0.1", Some(format!("http://{}/hook", srv.addr))).await;
    let both = vec![origin(srv.addr), origin(redir.addr)];
    let mut once = policy(&format!("http://{}/redirect", redir.addr), &both);
    once.egress.max_requests = 1;
    h.register("once", "once", &module, once).await;
    let s = h.settle(h.enqueue("once", "{}").await).await;
    let outcomes: Vec<_> = egress(&s).1.iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes, [EgressOutcome::Ok, EgressOutcome::Limit]);

    let seen: BTreeMap<String, usize> =
        srv.seen
            .take()
            .into_iter()
            .fold(BTreeMap::new(), |mut m, s| {
                *m.entry(s.0).or_default() += 1;
                m
            });
    assert_eq!(
        seen,
        BTreeMap::from([("/huge".into(), 1), ("/slow".into(), 1)])
    );
    assert_eq!(
        redir.seen.take().len(),
        1,
        "the redirect, and no hop past the limit"
    );
    h.stop().await;
}

/// ABI 1's `http_request` at the edge: a buffer outside memory is `-4` and
/// records nothing; under the default policy (no egress) a request is `-11`,
/// refused before any resolution, and recorded.
#[tokio::test]
async fn the_host_function_refuses_by_default() {
    use sluice::sandbox::{GuestMetadata, Invocation, Sandbox, SandboxConfig};
    let path = sluice_tests::repo_root().join("runtime/tests/fixtures/http_denied.wat");
    let sandbox = Sandbox::new(SandboxConfig {
        pool_instances: 2,
        max_memory_bytes: 1 << 20,
        ..SandboxConfig::default()
    })
    .unwrap();
    let limits = Limits {
        memory_bytes: 1 << 20,
        ..Limits::default()
    };
    let module = sandbox
        .load(&wat::parse_file(path).unwrap(), &limits)
        .unwrap();
    let metadata = GuestMetadata {
        topic: "t".into(),
        handler: "h".into(),
        message_id: "m".into(),
        idempotency_key: "k".into(),
        ordering_key: None,
        attempt: 1,
        max_attempts: 1,
        enqueued_at: "2026-12-02T00:00:00.000Z".into(),
        headers: Vec::new(),
    };
    let invocation = Invocation {
        stdin: Default::default(),
        metadata,
        env: Vec::new(),
        limits,
        egress: EgressPolicy::default(),
    };
    let x = sandbox.invoke(&module, invocation).await.unwrap();
    assert_eq!(x.outcome, Outcome::Ok, "{x:#?}");
    assert_eq!(x.egress.len(), 1, "{:#?}", x.egress);
    assert_eq!(x.egress[0].outcome, EgressOutcome::DeniedOrigin);
    assert_eq!(x.egress[0].origin, "https://example.com:443");
    assert_eq!(
        (x.egress[0].method.as_str(), x.egress[0].status),
        ("GET", None)
    );
}
