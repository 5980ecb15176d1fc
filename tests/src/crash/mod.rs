//! The crash harness: the real `sluice serve` under a mixed workload, killed
//! with SIGKILL at random moments and restarted on the same data directory,
//! then the whole history checked through the HTTP API.
//!
//! # What runs
//! - **Handlers** (the example modules, registered once): `orders` fans out to
//!   `order-publish` (publishes to `email` and `analytics` through the outbox,
//!   and fails its first attempt after publishing) and `order-audit`; `email`
//!   and `analytics` have one `ack` handler each; `jobs` goes to `job-flaky`
//!   (fails attempts 1 and 2) and `job-ack`; `keyed` (ordering keys) to
//!   `keyed-ack` and `keyed-flaky`; `signups` to `signup-validate` (a quarter
//!   of the payloads are not JSON: rejected, dead at once).
//! - **Producers** enqueue without pause, each with its own idempotency keys
//!   and ordering keys; some messages are delayed. A producer sends each
//!   message until it is acknowledged (`202`), through kills, always with the
//!   same key, as a careful producer does; now and then it re-enqueues an
//!   acknowledged message on purpose, which must return the same id.
//! - **Kills**: each server life lasts a random time, then gets SIGKILL; about
//!   one life in ten is killed while it starts (opening and recovering the
//!   store). After the last kill a final life drains everything.
//!
//! # What is checked, for every acknowledged enqueue
//! - the message exists, with exactly one delivery per handler subscribed to
//!   its topic, each `succeeded` or `dead`;
//! - its attempts are what the handler does (ack: `ok`; flaky: `exit 75`
//!   twice, then `ok`; ...) except `interrupted` ones, and nothing runs after
//!   a durable final outcome; every `interrupted` attempt says "process
//!   restarted", started in a life that was killed and was recorded when a
//!   later life opened the store: each is explained by a kill;
//! - a delayed message did not run before its time;
//! - per ordering key and handler, each message's attempts all start after the
//!   previous message's last attempt finished, in enqueue order;
//! - per handler, deliveries = acknowledged messages on its topic (no ghost, no
//!   copy); downstream of the outbox, deliveries = orders that succeeded, and
//!   each (parent, index) resolves through its idempotency key
//!   `outbox:<parent>:order-publish:<i>` to one message carrying
//!   `sluice-parent`/`sluice-publisher`: no duplicate, none lost.
//!
//! Run with `scripts/crash.sh` (`make crash`); a reduced run is
//! `tests/tests/crash.rs`. The `sluice` binary is built (or found up to date)
//! with `cargo build -p sluice --bin sluice`, or taken from `SLUICE_BIN`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sluice::api::dto::{EnqueuedView, MessageView, StatsView};
use sluice::clock::{Clock, SystemClock, Timestamp};
use sluice::outcome::Outcome;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

mod check;

use check::check;

/// How a run is shaped.
#[derive(Debug, Clone)]
pub struct CrashConfig {
    /// SIGKILLs before the final, draining life.
    pub kills: usize,
    /// Concurrent producers.
    pub producers: usize,
    /// Seeds the workload and the kill schedule.
    pub seed: u64,
    /// Shortest life of a server that is not killed while starting, in ms.
    pub min_life_ms: u64,
    /// Longest life, in ms.
    pub max_life_ms: u64,
    /// Keep the data directory here instead of a temporary one.
    pub data_dir: Option<PathBuf>,
}

impl Default for CrashConfig {
    fn default() -> Self {
        CrashConfig {
            kills: 50,
            producers: 4,
            seed: 1,
            min_life_ms: 100,
            max_life_ms: 900,
            data_dir: None,
        }
    }
}

/// What a run saw. `violations` is empty when every promise held.
#[derive(Debug, Default)]
pub struct CrashReport {
    /// SIGKILLs.
    pub kills: usize,
    /// Of those, kills while the server was starting (before it listened).
    pub kills_while_starting: usize,
    /// Acknowledged enqueues (distinct messages).
    pub messages: usize,
    /// Acknowledged only on a retry that found the first try durable
    /// (`duplicate: true` after a connection lost to a kill).
    pub acknowledged_on_retry: usize,
    /// Deliberate re-enqueues with the same idempotency key (same id back).
    pub reenqueues: usize,
    /// Delayed messages.
    pub delayed: usize,
    /// Deliveries checked (including outbox children).
    pub deliveries: usize,
    /// Attempts checked, by outcome kind.
    pub attempts: BTreeMap<String, usize>,
    /// `interrupted` attempts (each explained by a kill).
    pub interrupted: usize,
    /// Most `interrupted` attempts recorded for one kill.
    pub max_interrupted_per_kill: usize,
    /// Deliveries that ended dead (rejected, or attempts exhausted).
    pub dead: usize,
    /// Outbox messages checked (each (parent, index) once).
    pub outbox_messages: usize,
    /// Outbox messages found more than once.
    pub outbox_duplicates: usize,
    /// Consecutive same-key pairs whose order was checked.
    pub ordering_pairs: usize,
    /// `503` answers to enqueues (none expected: no fault is injected).
    pub unavailable: usize,
    /// Wall-clock duration of the run, in seconds.
    pub seconds: f64,
    /// Broken promises, described.
    pub violations: Vec<String>,
}

impl fmt::Display for CrashReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "kill points (SIGKILL):        {} ({} while starting)",
            self.kills, self.kills_while_starting
        )?;
        writeln!(f, "messages acknowledged:        {}", self.messages)?;
        writeln!(
            f,
            "  acknowledged on a retry:    {} (first try durable, answer lost to a kill)",
            self.acknowledged_on_retry
        )?;
        writeln!(
            f,
            "  idempotent re-enqueues:     {} (same id back)",
            self.reenqueues
        )?;
        writeln!(f, "  delayed:                    {}", self.delayed)?;
        writeln!(f, "deliveries checked:           {}", self.deliveries)?;
        let total: usize = self.attempts.values().sum();
        let kinds: Vec<String> = self
            .attempts
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        writeln!(
            f,
            "attempts checked:             {total} ({})",
            kinds.join(", ")
        )?;
        writeln!(
            f,
            "interrupted attempts:         {} over {} kills (at most {} for one kill), every one explained by a kill",
            self.interrupted, self.kills, self.max_interrupted_per_kill
        )?;
        writeln!(f, "dead deliveries:              {}", self.dead)?;
        writeln!(f, "outbox messages checked:      {}", self.outbox_messages)?;
        writeln!(
            f,
            "outbox duplicates found:      {}",
            self.outbox_duplicates
        )?;
        writeln!(f, "per-key order pairs checked:  {}", self.ordering_pairs)?;
        writeln!(f, "503 answers:                  {}", self.unavailable)?;
        writeln!(f, "duration:                     {:.0} s", self.seconds)?;
        write!(f, "violations:                   {}", self.violations.len())?;
        for v in self.violations.iter().take(30) {
            write!(f, "\n  - {v}")?;
        }
        Ok(())
    }
}

/// What a handler does with an attempt, for telling expected outcomes apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
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
    fn expect(self, attempt: u32, bad_payload: bool) -> Outcome {
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
struct HandlerDef {
    name: &'static str,
    topic: &'static str,
    module: &'static str,
    behaviour: Behaviour,
    retries: u32,
    concurrency: u32,
    env: &'static [(&'static str, &'static str)],
}

const RETRIES: u32 = 8;

const HANDLERS: &[HandlerDef] = &[
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
const OUTBOX_CHILDREN: &[(&str, &str, usize)] =
    &[("mailer", "email", 0), ("analytics", "analytics", 1)];

fn handler(name: &str) -> &'static HandlerDef {
    HANDLERS
        .iter()
        .find(|h| h.name == name)
        .unwrap_or_else(|| panic!("unknown handler {name}"))
}

/// One acknowledged enqueue, as the producer saw it.
#[derive(Debug, Clone)]
struct Acked {
    id: Uuid,
    topic: &'static str,
    idempotency_key: String,
    ordering_key: Option<String>,
    bad_payload: bool,
    delayed: bool,
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

/// One server process's life, in server-clock milliseconds (same host clock).
#[derive(Debug, Clone, Copy)]
struct Life {
    spawned: u64,
    ready: Option<u64>,
    killed: Option<u64>,
}

/// What producers and the kill loop share.
struct Shared {
    /// The live server's base URL; `None` while it is down. Written by the
    /// kill loop, read by producers.
    url: RwLock<Option<String>>,
    /// Set when the kills are over: producers finish their message and stop.
    stop: AtomicBool,
    /// Acknowledged enqueues, in acknowledgement order (per producer, that is
    /// enqueue order). Appended by producers.
    acked: Mutex<Vec<Acked>>,
    /// Broken promises noticed while running.
    violations: Mutex<Vec<String>>,
    acknowledged_on_retry: AtomicU64,
    reenqueues: AtomicU64,
    unavailable: AtomicU64,
}

fn now_ms() -> u64 {
    SystemClock.now().0
}

fn ms(field: &str, s: &str) -> u64 {
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
struct Server {
    child: Child,
    /// Gets the address once the server listens.
    ready: tokio::sync::oneshot::Receiver<String>,
}

fn spawn_server(bin: &Path, dir: &Path) -> Server {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .expect("server log");
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--grace", "1s"])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--pool-instances", "32"])
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

async fn kill(server: &mut Server) -> u64 {
    let at = now_ms();
    server.child.start_kill().expect("SIGKILL");
    server.child.wait().await.expect("reap");
    at
}

async fn register(client: &reqwest::Client, url: &str) {
    for h in HANDLERS {
        let module = std::fs::read(crate::example("rust", h.module)).expect("module");
        let env: BTreeMap<&str, &str> = h.env.iter().copied().collect();
        let policy = serde_json::json!({
            "timeout_ms": 10_000,
            "retries": h.retries,
            "backoff_ms": 20,
            "backoff_max_ms": 200,
            "concurrency": h.concurrency,
            "env": env,
        });
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

/// Sends `r` until the server acknowledges it (through kills and restarts).
/// `None` only for an answer that is neither 202 nor transient (a violation).
async fn send_until_acked(
    client: &reqwest::Client,
    shared: &Shared,
    r: &Request,
) -> Option<(EnqueuedView, usize)> {
    let mut tries = 0;
    loop {
        let url = shared.url.read().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(url) = url else {
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
                violation(
                    shared,
                    format!("enqueue {} answered {status}: {body}", r.idempotency_key),
                );
                return None;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

fn violation(shared: &Shared, v: String) {
    shared
        .violations
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(v);
}

async fn produce(shared: Arc<Shared>, producer: usize, seed: u64) {
    let client = client();
    let mut rng = StdRng::seed_from_u64(seed ^ (producer as u64).wrapping_mul(0x9e37_79b9));
    let mut n = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        n += 1;
        let r = next_request(&mut rng, producer, n);
        let Some((view, tries)) = send_until_acked(&client, &shared, &r).await else {
            continue;
        };
        if view.duplicate {
            if tries > 1 {
                shared.acknowledged_on_retry.fetch_add(1, Ordering::Relaxed);
            } else {
                violation(
                    &shared,
                    format!("fresh key {} answered as a duplicate", r.idempotency_key),
                );
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
            if let Some((again, _)) = send_until_acked(&client, &shared, &r).await
                && (again.id != view.id || !again.duplicate)
            {
                violation(
                    &shared,
                    format!(
                        "re-enqueue of {} gave {} (duplicate {}), not {}",
                        r.idempotency_key, again.id, again.duplicate, view.id
                    ),
                );
            }
            shared.reenqueues.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(2..20))).await;
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .expect("http client")
}

/// Runs the harness. Panics only on a harness failure (cannot start the
/// server); broken promises are in [`CrashReport::violations`].
pub async fn run(config: CrashConfig) -> CrashReport {
    let started = std::time::Instant::now();
    let bin = sluice_binary();
    let temp;
    let dir = match &config.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d).expect("data dir");
            d.clone()
        }
        None => {
            temp = tempfile::tempdir().expect("tempdir");
            temp.path().to_path_buf()
        }
    };
    let mut rng = StdRng::seed_from_u64(config.seed);
    let shared = Arc::new(Shared {
        url: RwLock::new(None),
        stop: AtomicBool::new(false),
        acked: Mutex::new(Vec::new()),
        violations: Mutex::new(Vec::new()),
        acknowledged_on_retry: AtomicU64::new(0),
        reenqueues: AtomicU64::new(0),
        unavailable: AtomicU64::new(0),
    });
    let client = client();
    let mut lives: Vec<Life> = Vec::new();
    let mut report = CrashReport::default();
    let mut producers = tokio::task::JoinSet::new();
    let mut kills_while_starting = 0;

    for life in 0..=config.kills {
        let spawned = now_ms();
        let mut server = spawn_server(&bin, &dir);
        let first = life == 0;
        let last = life == config.kills;
        let early = !first && !last && rng.random_bool(0.1);
        let mut ready = None;
        if early {
            // Kill while it opens the store and recovers the previous crash.
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..60))).await;
        } else {
            let url = tokio::time::timeout(Duration::from_secs(60), &mut server.ready)
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "sluice serve did not listen within 60 s; see {}",
                        dir.join("server.log").display()
                    )
                })
                .expect("sluice serve exited before listening");
            ready = Some(now_ms());
            if first {
                register(&client, &url).await;
                for p in 0..config.producers {
                    producers.spawn(produce(shared.clone(), p, config.seed));
                }
            }
            *shared.url.write().unwrap_or_else(|p| p.into_inner()) = Some(url);
        }
        if last {
            lives.push(Life {
                spawned,
                ready,
                killed: None,
            });
            shared.stop.store(true, Ordering::Relaxed);
            while producers.join_next().await.is_some() {}
            report = check(&client, &shared, &lives).await;
            kill(&mut server).await;
            break;
        }
        if !early {
            let life_ms = rng.random_range(config.min_life_ms..=config.max_life_ms);
            tokio::time::sleep(Duration::from_millis(life_ms)).await;
        }
        *shared.url.write().unwrap_or_else(|p| p.into_inner()) = None;
        let killed = kill(&mut server).await;
        if early && server.ready.try_recv().is_err() {
            kills_while_starting += 1;
        }
        lives.push(Life {
            spawned,
            ready,
            killed: Some(killed),
        });
    }
    report.kills = config.kills;
    report.kills_while_starting = kills_while_starting;
    report.acknowledged_on_retry = shared.acknowledged_on_retry.load(Ordering::Relaxed) as usize;
    report.reenqueues = shared.reenqueues.load(Ordering::Relaxed) as usize;
    report.unavailable = shared.unavailable.load(Ordering::Relaxed) as usize;
    report.seconds = started.elapsed().as_secs_f64();
    let mut noticed =
        std::mem::take(&mut *shared.violations.lock().unwrap_or_else(|p| p.into_inner()));
    noticed.append(&mut report.violations);
    report.violations = noticed;
    if !report.violations.is_empty() && config.data_dir.is_none() {
        // Keep the evidence.
        let kept = std::env::temp_dir().join(format!("sluice-crash-{}", config.seed));
        let _ = std::fs::remove_dir_all(&kept);
        if std::fs::rename(&dir, &kept).is_ok() {
            report
                .violations
                .push(format!("data directory kept in {}", kept.display()));
        }
    }
    report
}
