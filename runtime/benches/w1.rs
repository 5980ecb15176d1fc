//! Workload W1 against the real server over its real API (docs/benchmarks.md).
//!
//! Starts `sluice serve` in a temporary directory, registers the `w1` example
//! handler (parse JSON, FNV-1a of the email, exit 0) and measures:
//! (a) enqueue of N messages one per request (1 client, and 16 concurrent
//! clients) and in batches; (b) the drain of N messages; (c) enqueue-to-completion
//! latency at 500 messages/s for 10 s (from the server's end-to-end histogram);
//! and the server's peak RSS. Prints one `SYSTEM=sluice ...` line and a summary.
//!
//! Run: `scripts/bench-w1.sh` (builds the example, then `cargo bench --bench w1`).
//! Environment: `W1_N` (default 20000), `W1_CONCURRENCY` (handler concurrency,
//! default 64), `W1_RATE` (default 500), `W1_SECONDS` (default 10),
//! `W1_HANDLER` (the handler's language: `rust` (default), `python`, `js` or
//! `go`; W2 is W1 with the handler in Python, JavaScript or Go, built from
//! `examples/<lang>/w1`), `W1_MEMORY_MB` (the handler's memory limit, default
//! the policy's), `W1_SLUICE_BIN` (the server binary to run, default the one
//! this bench was built with: pairs of builds can be compared side by side).
//!
//! Options (after `--`): `--store postgres://user@host:port/db` runs the
//! servers on that PostgreSQL database instead of the embedded store, in a
//! fresh schema dropped at the end; `--runners N` (PostgreSQL only, default
//! one) starts N `sluice serve` processes on it: the phases talk to the
//! first, every runner drains (`W1_STORE`, `W1_RUNNERS` do the same).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn payload(i: u64) -> String {
    let mut p = format!(r#"{{"user_id":{i},"email":"user{i}@example.com","seq":{i},"pad":""#);
    while p.len() < 126 {
        p.push('x');
    }
    p.push_str("\"}");
    p
}

/// Where the servers keep the queue.
#[derive(Clone)]
enum Backend {
    Embedded,
    /// A database URL and the schema of this run.
    Postgres {
        url: String,
        schema: String,
    },
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::Postgres { .. } => "postgres",
        }
    }
}

/// The command line and environment: `--store URL`, `--runners N`.
fn options() -> (Backend, usize) {
    let mut store = std::env::var("W1_STORE").ok();
    let mut runners = env_num("W1_RUNNERS", 1) as usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--store" => store = args.next(),
            "--runners" => runners = args.next().and_then(|n| n.parse().ok()).unwrap_or(1),
            _ => {} // `--bench` and cargo's filters
        }
    }
    let backend = match store.as_deref() {
        None | Some("embedded") => Backend::Embedded,
        Some(url) if url.starts_with("postgres") => Backend::Postgres {
            url: url.to_string(),
            schema: format!("w1_{}", std::process::id()),
        },
        Some(other) => panic!("--store {other:?}: expected embedded or postgres://..."),
    };
    assert!(
        runners >= 1 && (runners == 1 || matches!(backend, Backend::Postgres { .. })),
        "--runners N needs --store postgres://... (and N >= 1)"
    );
    (backend, runners)
}

struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Runner number `runner` of the run on `backend`.
    fn start(backend: &Backend, runner: usize) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let bin = std::env::var("W1_SLUICE_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_sluice").to_string());
        let mut cmd = Command::new(bin);
        cmd.args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path());
        if let Backend::Postgres { url, schema } = backend {
            let config = dir.path().join("sluice.toml");
            std::fs::write(
                &config,
                format!(
                    "[store]\ntype = \"postgres\"\nurl = {url:?}\nschema = {schema:?}\nrunner_id = \"w1-{runner}\"\n"
                ),
            )
            .expect("config file");
            cmd.arg("--config").arg(config);
        }
        let child = cmd
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sluice serve");
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// CPU time the server has used so far (user + system, seconds) and its
    /// minor page faults.
    fn cpu_and_faults(&self) -> (f64, f64) {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which may hold spaces): minflt is the
        // 8th, utime and stime the 12th and 13th (clock ticks, 100 a second).
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<f64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0.0))
            .collect();
        let at = |i: usize| f.get(i).copied().unwrap_or(0.0);
        ((at(11) + at(12)) / 100.0, at(7))
    }

    /// Peak resident set size of the server, MiB.
    fn peak_rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

async fn check(resp: reqwest::Response) -> Value {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    assert!(status.is_success(), "HTTP {status}: {body}");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

async fn register(
    c: &reqwest::Client,
    base: &str,
    name: &str,
    topic: &str,
    wasm: &[u8],
    concurrency: u64,
) {
    let mut policy = json!({ "concurrency": concurrency, "timeout_ms": 10_000 });
    if let Some(mb) = std::env::var("W1_MEMORY_MB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        policy["memory_bytes"] = json!(mb << 20);
    }
    let policy = policy.to_string();
    check(
        c.put(format!("{base}/v1/handlers/{name}?topic={topic}"))
            .header("Sluice-Policy", policy)
            .body(wasm.to_vec())
            .send()
            .await
            .unwrap(),
    )
    .await;
}

async fn set_paused(c: &reqwest::Client, base: &str, name: &str, paused: bool) {
    let verb = if paused { "pause" } else { "resume" };
    check(
        c.post(format!("{base}/v1/handlers/{name}/{verb}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
}

/// Enqueues `n` messages one per request from `clients` concurrent clients.
async fn enqueue_single(c: &reqwest::Client, base: &str, topic: &str, n: u64, clients: u64) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (c, next, url) = (
            c.clone(),
            next.clone(),
            format!("{base}/v1/topics/{topic}/messages"),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as u64;
                if i >= n {
                    break;
                }
                let r = c.post(&url).body(payload(i)).send().await.unwrap();
                assert_eq!(r.status(), 202, "{}", r.text().await.unwrap_or_default());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Enqueues `n` messages in batches of `batch` from 4 concurrent clients.
async fn enqueue_batches(c: &reqwest::Client, base: &str, topic: &str, n: u64, batch: u64) -> f64 {
    let bodies: Vec<String> = (0..n)
        .step_by(batch as usize)
        .map(|from| {
            let items: Vec<Value> = (from..(from + batch).min(n))
                .map(|i| json!({ "payload": payload(i) }))
                .collect();
            Value::Array(items).to_string()
        })
        .collect();
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (c, next, bodies) = (c.clone(), next.clone(), bodies.clone());
        let url = format!("{base}/v1/topics/{topic}/messages:batch");
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let r = c
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202, "{}", r.text().await.unwrap_or_default());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn succeeded(c: &reqwest::Client, base: &str, handler: &str) -> u64 {
    let stats = check(c.get(format!("{base}/v1/stats")).send().await.unwrap()).await;
    stats["handlers"]
        .as_array()
        .and_then(|hs| hs.iter().find(|h| h["handler"] == handler))
        .and_then(|h| h["counts"]["succeeded"].as_u64())
        .unwrap_or(0)
}

/// p50 and p99 (ms) of the handler's end-to-end histogram, from `/metrics`.
async fn latency_quantiles(c: &reqwest::Client, base: &str, handler: &str) -> (f64, f64) {
    let text = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    let prefix = "sluice_end_to_end_seconds_bucket{";
    for line in text
        .lines()
        .filter(|l| l.starts_with(prefix) && l.contains(&format!("handler=\"{handler}\"")))
    {
        let le = line
            .split("le=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("+Inf");
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap()
        };
        let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        buckets.push((le, count));
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map_or(0.0, |b| b.1);
    let q = |q: f64| {
        let rank = q * total;
        let mut prev = (0.0, 0.0);
        for &(le, cum) in &buckets {
            if cum >= rank {
                let hi = if le.is_finite() { le } else { prev.0 };
                let span = (cum - prev.1).max(1.0);
                return (prev.0 + (hi - prev.0) * ((rank - prev.1) / span)) * 1000.0;
            }
            prev = (le, cum);
        }
        f64::NAN
    };
    (q(0.5), q(0.99))
}

async fn run() {
    let n = env_num("W1_N", 20_000);
    let concurrency = env_num("W1_CONCURRENCY", 64);
    let rate = env_num("W1_RATE", 500);
    let seconds = env_num("W1_SECONDS", 10);
    let lang = std::env::var("W1_HANDLER").unwrap_or_else(|_| "rust".into());
    let wasm_path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../target/examples/{lang}/w1.wasm"));
    let wasm = std::fs::read(&wasm_path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (build it with scripts/build-examples.sh {lang})",
            wasm_path.display()
        )
    });
    let (backend, runners) = options();
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    // One at a time: the first creates the schema.
    let mut servers = Vec::new();
    for i in 0..runners {
        let server = Server::start(&backend, i);
        let mut up = false;
        for _ in 0..400 {
            if c.get(format!("{}/healthz", server.base))
                .send()
                .await
                .is_ok()
            {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(up, "runner {i} did not answer /healthz within 20 s");
        servers.push(server);
    }
    let base = servers[0].base.clone();
    // (a) enqueue: single requests go to a topic whose handler stays paused.
    register(&c, &base, "w1-single", "w1-single", &wasm, concurrency).await;
    set_paused(&c, &base, "w1-single", true).await;
    let sequential = enqueue_single(&c, &base, "w1-single", n / 10, 1).await;
    let single16 = enqueue_single(&c, &base, "w1-single", n, 16).await;
    register(&c, &base, "w1", "w1", &wasm, concurrency).await;
    set_paused(&c, &base, "w1", true).await;
    let batch = enqueue_batches(&c, &base, "w1", n, 500).await;
    // (b) drain.
    let (start, (cpu0, faults0)) = (Instant::now(), servers[0].cpu_and_faults());
    set_paused(&c, &base, "w1", false).await;
    while succeeded(&c, &base, "w1").await < n {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let wall = start.elapsed().as_secs_f64();
    let drain = n as f64 / wall;
    let (cpu1, faults1) = servers[0].cpu_and_faults();
    let cpu = cpu1 - cpu0;
    let cpu_us = cpu * 1e6 / n as f64;
    let faults = (faults1 - faults0) / n as f64;
    let cpu_pct = 100.0 * cpu / wall;
    // (c) latency at a steady rate, measured after the drain (fresh histogram
    // series: a second handler on its own topic).
    register(&c, &base, "w1-latency", "w1-latency", &wasm, concurrency).await;
    let total = rate * seconds;
    let url = format!("{base}/v1/topics/w1-latency/messages");
    let start = Instant::now();
    let mut sent = Vec::new();
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let (c, url) = (c.clone(), url.clone());
        sent.push(tokio::spawn(async move {
            let r = c.post(&url).body(payload(i)).send().await.unwrap();
            assert_eq!(r.status(), 202);
        }));
    }
    for s in sent {
        s.await.unwrap();
    }
    while succeeded(&c, &base, "w1-latency").await < total {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (p50, p99) = latency_quantiles(&c, &base, "w1-latency").await;
    let rss = servers[0].peak_rss_mb();
    drop(servers);
    if let Backend::Postgres { url, schema } = &backend {
        drop_schema(url, schema).await;
    }
    let group_commit = match backend {
        Backend::Embedded => "flusher-thread window=1ms-while-attempts-run",
        Backend::Postgres { .. } => "committer-task shared-transaction",
    };
    let settings = format!(
        "store={} runners={runners} n={n} handler_concurrency={concurrency} pool=256 group_commit={group_commit} allocator={} batch=500 clients=16 rate={rate}/s for {seconds}s profile={}",
        backend.name(),
        if cfg!(feature = "mimalloc") {
            "mimalloc"
        } else {
            "glibc"
        },
        if cfg!(debug_assertions) {
            "dev(deps O3)"
        } else {
            "release"
        }
    );
    println!(
        "SYSTEM=sluice-{} handler={lang} enqueue_single_jps={single16:.0} enqueue_batch_jps={batch:.0} drain_jps={drain:.0} drain_cpu_us_per_job={cpu_us:.0} drain_cpu_pct={cpu_pct:.0} drain_faults_per_job={faults:.0} p50_ms={p50:.2} p99_ms={p99:.2} rss_mb={rss:.0} settings=\"{settings}\"",
        backend.name()
    );
    println!(
        "\nW1: {n} messages of ~128 B, handler w1 in {lang} (JSON parse + FNV-1a), fsync before every ack.\n\
         enqueue, 1 client, 1 per request:   {sequential:>9.0} msg/s\n\
         enqueue, 16 clients, 1 per request: {single16:>9.0} msg/s\n\
         enqueue, batches of 500:            {batch:>9.0} msg/s\n\
         drain (fresh instance per job):     {drain:>9.0} jobs/s ({cpu_us:.0} µs of server CPU and {faults:.0} page faults per job, {cpu_pct:.0} % CPU)\n\
         latency at {rate}/s: p50 {p50:.2} ms, p99 {p99:.2} ms (server end-to-end histogram)\n\
         peak RSS of the server: {rss:.0} MiB"
    );
}

/// Drops the run's schema (its tables and everything in them).
async fn drop_schema(url: &str, schema: &str) {
    let Ok((client, conn)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await else {
        eprintln!("could not connect to drop schema {schema}");
        return;
    };
    let conn = tokio::spawn(conn);
    if let Err(e) = client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
    {
        eprintln!("DROP SCHEMA {schema}: {e}");
    }
    drop(client);
    let _ = conn.await;
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}
