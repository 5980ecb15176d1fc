//! The mixed workload both fault runs drive (the embedded crash harness and
//! the multi-runner PostgreSQL run): the handlers and what each does with an
//! attempt, the producers and their requests, and starting `sluice serve`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sluice::api::dto::EnqueuedView;
use sluice::clock::{Clock, SystemClock, Timestamp};
use sluice::outcome::Outcome;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

/// What a handler does with an attempt, for telling expected outcomes apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Behaviour {
    /// `ack`: always ok.
    Ack,
    /// `flaky`: exit 75 on attempts 1 and 2.
    Flaky,
    /// `publish` with `FAIL_FIRST_ATTEMPT`: exit 75 on attempt 1.
    FailFirst,
    /// `validate`: rejects what is not JSON.
    Validate,
}

impl Behaviour {
    pub(super) fn expect(self, attempt: u32, bad_payload: bool) -> Outcome {
        let retry = Outcome::Exit { code: 75 };
        match self {
            Behaviour::Ack => Outcome::Ok,
            Behaviour::Flaky if attempt < 3 => retry,
            Behaviour::FailFirst if attempt == 1 => retry,
            Behaviour::Validate if bad_payload => Outcome::Rejected,
            _ => Outcome::Ok,
        }
    }
}

/// A registered handler.
pub(super) struct HandlerDef {
    pub(super) name: &'static str,
    pub(super) topic: &'static str,
    module: &'static str,
    pub(super) behaviour: Behaviour,
    pub(super) retries: u32,
    concurrency: u32,
    env: &'static [(&'static str, &'static str)],
}

const RETRIES: u32 = 8;

pub(super) const HANDLERS: &[HandlerDef] = &[
    HandlerDef {
        name: "order-publish",
        topic: "orders",
        module: "publish",
        behaviour: Behaviour::FailFirst,
        retries: RETRIES,
        concurrency: 4,
        env: &[("FAIL_FIRST_ATTEMPT", "1")],
    },
    HandlerDef {
        name: "order-audit",
        topic: "orders",
        module: "ack",
        behaviour: Behaviour::Ack,
        retries: RETRIES,
        concurrency: 2,
        env: &[],
    },
    HandlerDef {
        name: "mailer",
        topic: "email",
        module: "ack",
        behaviour: Behaviour::Ack,
        retries: RETRIES,
        concurrency: 2,
        env: &[],
    },
    HandlerDef {
        name: "analytics",
        topic: "analytics",
        module: "ack",
        behaviour: Behaviour::Ack,
        retries: RETRIES,
        concurrency: 2,
        env: &[],
    },
    HandlerDef {
        name: "job-flaky",
        topic: "jobs",
        module: "flaky",
        behaviour: Behaviour::Flaky,
        retries: RETRIES,
        concurrency: 4,
        env: &[],
    },
    HandlerDef {
        name: "job-ack",
        topic: "jobs",
        module: "ack",
        behaviour: Behaviour::Ack,
        retries: RETRIES,
        concurrency: 2,
        env: &[],
    },
    HandlerDef {
        name: "keyed-ack",
        topic: "keyed",
        module: "ack",
        behaviour: Behaviour::Ack,
        retries: RETRIES,
        concurrency: 4,
        env: &[],
    },
    HandlerDef {
        name: "keyed-flaky",
        topic: "keyed",
        module: "flaky",
        behaviour: Behaviour::Flaky,
        retries: RETRIES,
        concurrency: 4,
        env: &[],
    },
    HandlerDef {
        name: "signup-validate",
        topic: "signups",
        module: "validate",
        behaviour: Behaviour::Validate,
        retries: RETRIES,
        concurrency: 2,
        env: &[],
    },
];

/// Handlers whose deliveries come from the outbox of `order-publish`, with the
/// index of the message they receive in its outbox.
pub(super) const OUTBOX_CHILDREN: &[(&str, &str, usize)] =
    &[("mailer", "email", 0), ("analytics", "analytics", 1)];

pub(super) fn handler(name: &str) -> &'static HandlerDef {
    HANDLERS
        .iter()
        .find(|h| h.name == name)
        .unwrap_or_else(|| panic!("unknown handler {name}"))
}

/// The time limits every handler is registered with.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// `timeout_ms`: the attempt's hard stop.
    pub(super) timeout_ms: u64,
    /// `lease_ms`; `None` for the policy's default (2.5 × timeout).
    pub(super) lease_ms: Option<u64>,
}

/// One acknowledged enqueue, as the producer saw it.
#[derive(Debug, Clone)]
pub(super) struct Acked {
    pub(super) id: Uuid,
    pub(super) topic: &'static str,
    pub(super) idempotency_key: String,
    pub(super) ordering_key: Option<String>,
    pub(super) bad_payload: bool,
    pub(super) delayed: bool,
}

/// One enqueue a producer wants acknowledged.
struct Request {
    topic: &'static str,
    payload: String,
    idempotency_key: String,
    ordering_key: Option<String>,
    delay_ms: Option<u64>,
    bad_payload: bool,
}

/// What producers and the fault loop share.
pub(super) struct Shared {
    /// Each runner's base URL; `None` while it is down. Written by the fault
    /// loop, read by producers (each send goes to a random live runner).
    pub(super) urls: RwLock<Vec<Option<String>>>,
    /// The bearer token, when the runners require one.
    pub(super) token: Option<String>,
    /// Set when the faults are over: producers finish their message and stop.
    pub(super) stop: AtomicBool,
    /// Acknowledged enqueues, in acknowledgement order (per producer, that is
    /// enqueue order). Appended by producers.
    pub(super) acked: Mutex<Vec<Acked>>,
    /// Broken promises noticed while running.
    pub(super) violations: Mutex<Vec<String>>,
    pub(super) acknowledged_on_retry: AtomicU64,
    pub(super) reenqueues: AtomicU64,
    pub(super) unavailable: AtomicU64,
}

impl Shared {
    pub(super) fn new(runners: usize, token: Option<String>) -> Shared {
        Shared {
            urls: RwLock::new(vec![None; runners]),
            token,
            stop: AtomicBool::new(false),
            acked: Mutex::new(Vec::new()),
            violations: Mutex::new(Vec::new()),
            acknowledged_on_retry: AtomicU64::new(0),
            reenqueues: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
        }
    }

    /// Marks runner `i` up at `url`, or down.
    pub(super) fn set_url(&self, i: usize, url: Option<String>) {
        self.urls.write().unwrap_or_else(|p| p.into_inner())[i] = url;
    }

    /// A live runner's URL, picked at random.
    fn any_url(&self, rng: &mut StdRng) -> Option<String> {
        let urls = self.urls.read().unwrap_or_else(|p| p.into_inner());
        let live: Vec<&String> = urls.iter().flatten().collect();
        (!live.is_empty()).then(|| live[rng.random_range(0..live.len())].clone())
    }

    /// Runner `i`'s URL.
    pub(super) fn url(&self, i: usize) -> Option<String> {
        self.urls.read().unwrap_or_else(|p| p.into_inner())[i].clone()
    }

    pub(super) fn violation(&self, v: String) {
        self.violations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(v);
    }

    /// An HTTP client for the runners (with the token, if any).
    pub(super) fn client(&self) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = &self.token {
            headers.insert(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {t}").parse().expect("token header"),
            );
        }
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(0)
            .default_headers(headers)
            .build()
            .expect("http client")
    }
}

pub(super) fn now_ms() -> u64 {
    SystemClock.now().0
}

pub(super) fn ms(field: &str, s: &str) -> u64 {
    Timestamp::parse_rfc3339(s)
        .unwrap_or_else(|e| panic!("{field} {s:?}: {e}"))
        .0
}

/// The `sluice` binary: `SLUICE_BIN`, or what `cargo build -p sluice --bin
/// sluice` produces (a no-op when it is up to date).
pub fn sluice_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("SLUICE_BIN") {
        return PathBuf::from(bin);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(crate::repo_root())
        .args([
            "build",
            "--quiet",
            "-p",
            "sluice",
            "--bin",
            "sluice",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo build -p sluice");
    assert!(out.status.success(), "cargo build -p sluice failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "sluice")
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .expect("cargo build did not report the sluice executable")
}

/// A running `sluice serve`.
pub(super) struct Server {
    child: Child,
    /// Gets the address once the server listens.
    pub(super) ready: tokio::sync::oneshot::Receiver<String>,
}

/// Starts `command` (a `sluice serve` with its arguments), its stderr
/// appended to `log`, its stdout watched for the address it listens on.
pub(super) fn spawn_server(mut command: Command, log: &Path) -> Server {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("server log");
    let mut child = command
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sluice serve");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, ready) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        let mut tx = Some(tx);
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(url) = line.strip_prefix("sluice listening on ")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    Server { child, ready }
}

/// SIGKILLs the server; returns when (host clock, ms).
pub(super) async fn kill(server: &mut Server) -> u64 {
    let at = now_ms();
    server.child.start_kill().expect("SIGKILL");
    server.child.wait().await.expect("reap");
    at
}

/// Waits until `server` listens (60 s at most: a harness failure).
pub(super) async fn listening(server: &mut Server, log: &Path) -> String {
    tokio::time::timeout(Duration::from_secs(60), &mut server.ready)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "sluice serve did not listen within 60 s; see {}",
                log.display()
            )
        })
        .unwrap_or_else(|_| {
            panic!(
                "sluice serve exited before listening; see {}",
                log.display()
            )
        })
}

/// Registers every handler of the workload through `url`.
pub(super) async fn register(client: &reqwest::Client, url: &str, limits: Limits) {
    for h in HANDLERS {
        let module = std::fs::read(crate::example("rust", h.module)).expect("module");
        let env: BTreeMap<&str, &str> = h.env.iter().copied().collect();
        let mut policy = serde_json::json!({
            "timeout_ms": limits.timeout_ms,
            "retries": h.retries,
            "backoff_ms": 20,
            "backoff_max_ms": 200,
            "concurrency": h.concurrency,
            "env": env,
        });
        if let Some(lease) = limits.lease_ms {
            policy["lease_ms"] = lease.into();
        }
        let res = client
            .put(format!("{url}/v1/handlers/{}?topic={}", h.name, h.topic))
            .header("content-type", "application/wasm")
            .header("sluice-policy", policy.to_string())
            .body(module)
            .send()
            .await
            .expect("register");
        let status = res.status();
        assert!(
            status.is_success(),
            "register {}: {status} {}",
            h.name,
            res.text().await.unwrap_or_default()
        );
    }
}

fn next_request(rng: &mut StdRng, producer: usize, n: u64) -> Request {
    let idempotency_key = format!("p{producer}-{n}");
    let pick = rng.random_range(0..100);
    let mut r = Request {
        topic: "jobs",
        payload: format!("{{\"n\":{n}}}"),
        idempotency_key,
        ordering_key: None,
        delay_ms: None,
        bad_payload: false,
    };
    match pick {
        0..20 => {
            r.topic = "orders";
            r.payload = format!(
                r#"{{"order_id":"o-{producer}-{n}","email":"u{n}@example.com","total":{n}.5}}"#
            );
        }
        20..40 => {
            if rng.random_bool(0.3) {
                r.delay_ms = Some(rng.random_range(50..1500));
            }
        }
        40..80 => {
            r.topic = "keyed";
            r.ordering_key = Some(format!("p{producer}-k{}", rng.random_range(0..3)));
        }
        _ => {
            r.topic = "signups";
            if rng.random_bool(0.25) {
                r.payload = format!("not json {n}");
                r.bad_payload = true;
            }
        }
    }
    r
}

/// Sends `r` until a runner acknowledges it (through kills, restarts and
/// outages; each try to a random live runner). `None` only for an answer
/// that is neither 202 nor transient (a violation).
async fn send_until_acked(
    client: &reqwest::Client,
    shared: &Shared,
    rng: &mut StdRng,
    r: &Request,
) -> Option<(EnqueuedView, usize)> {
    let mut tries = 0;
    loop {
        let Some(url) = shared.any_url(rng) else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        tries += 1;
        let mut req = client
            .post(format!("{url}/v1/topics/{}/messages", r.topic))
            .header("idempotency-key", &r.idempotency_key)
            .body(r.payload.clone());
        if let Some(key) = &r.ordering_key {
            req = req.header("sluice-ordering-key", key);
        }
        if let Some(d) = r.delay_ms {
            req = req.header("sluice-delay", format!("{d}ms"));
        }
        match req.send().await {
            Ok(res) if res.status() == reqwest::StatusCode::ACCEPTED => match res.json().await {
                Ok(view) => return Some((view, tries)),
                Err(_) => continue, // killed mid-answer
            },
            Ok(res) if res.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                shared.unavailable.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(res) => {
                let status = res.status();
                let body = res.text().await.unwrap_or_default();
                shared.violation(format!(
                    "enqueue {} answered {status}: {body}",
                    r.idempotency_key
                ));
                return None;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// One producer: enqueues until `shared.stop`, recording each acknowledgement.
pub(super) async fn produce(shared: Arc<Shared>, producer: usize, seed: u64) {
    let client = shared.client();
    let mut rng = StdRng::seed_from_u64(seed ^ (producer as u64).wrapping_mul(0x9e37_79b9));
    let mut n = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        n += 1;
        let r = next_request(&mut rng, producer, n);
        let Some((view, tries)) = send_until_acked(&client, &shared, &mut rng, &r).await else {
            continue;
        };
        if view.duplicate {
            if tries > 1 {
                shared.acknowledged_on_retry.fetch_add(1, Ordering::Relaxed);
            } else {
                shared.violation(format!(
                    "fresh key {} answered as a duplicate",
                    r.idempotency_key
                ));
            }
        }
        shared
            .acked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Acked {
                id: view.id,
                topic: r.topic,
                idempotency_key: r.idempotency_key.clone(),
                ordering_key: r.ordering_key.clone(),
                bad_payload: r.bad_payload,
                delayed: r.delay_ms.is_some(),
            });
        if rng.random_bool(0.1) {
            if let Some((again, _)) = send_until_acked(&client, &shared, &mut rng, &r).await
                && (again.id != view.id || !again.duplicate)
            {
                shared.violation(format!(
                    "re-enqueue of {} gave {} (duplicate {}), not {}",
                    r.idempotency_key, again.id, again.duplicate, view.id
                ));
            }
            shared.reenqueues.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(2..20))).await;
    }
}
