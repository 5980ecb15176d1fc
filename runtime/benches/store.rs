//! Throughput of the sled store, durable (every acknowledged call fsynced).
//!
//! A plain bench binary (`harness = false`) rather than criterion: the backlog
//! prefill (1,000,000 deliveries by default, ~6 GiB of RAM) is built once and the figures are
//! measured against it, which criterion's per-benchmark setup does not suit, and
//! each figure is a throughput over a few seconds of real fsyncs, not a per-call
//! latency distribution.
//!
//! Run: `cargo bench -p sluice --bench store --profile dev`
//! (`SLUICE_BENCH_BACKLOG=100000` for a smaller backlog, `SLUICE_BENCH_SECS` to
//! change the length of each measurement, default 3 s, `SLUICE_BENCH_SETTLE_SECS`
//! for the pause after the prefill, default 15 s).
//!
//! Figures, for an empty store and then at the backlog:
//! - `enqueue 1 producer`: one task enqueuing one message at a time; without
//!   concurrency every call waits for its own fsync (the baseline).
//! - `enqueue 64 producers x1`: 64 tasks enqueuing one message per call; group
//!   commit shares the fsyncs.
//! - `enqueue 64 producers x16`: the same with batches of 16.
//! - `lease+complete`: 8 workers, each leasing 64 at a time and completing them
//!   concurrently, draining 100,000 deliveries (from a store holding just those,
//!   then from the backlog); one cycle is one delivery leased and completed.
//!
//! Besides throughput, each row shows how many operations one fsync covered (the
//! store's `flushes` counter) and the process CPU time per operation, which tell
//! a disk-bound figure from a CPU-bound one.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use sluice::clock::SystemClock;
use sluice::policy::HandlerPolicy;
use sluice::store::conformance::helpers::{handler_with, ok};
use sluice::store::{EmbeddedStore, NewMessage, Store, StoreConfig};

/// The `sluice` binary's allocator (feature `mimalloc`, on by default).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PAYLOAD: &[u8] = &[b'x'; 128];

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn message() -> NewMessage {
    NewMessage {
        topic: "bench".into(),
        payload: Bytes::from_static(PAYLOAD),
        ..NewMessage::default()
    }
}

async fn open(dir: &Path) -> Arc<EmbeddedStore> {
    let config = StoreConfig {
        max_topic_depth: u64::MAX,
        ..StoreConfig::default()
    };
    let store = EmbeddedStore::open(dir, config, Arc::new(SystemClock)).expect("open");
    let policy = HandlerPolicy {
        concurrency: 512,
        ..HandlerPolicy::default()
    };
    handler_with(&store, "worker", "bench", policy).await;
    Arc::new(store)
}

/// CPU seconds this process used so far (user + system), from `/proc/self/stat`;
/// 0 where that file does not exist.
fn cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// What one measurement saw.
#[derive(Clone, Copy)]
struct Sample {
    ops: u64,
    secs: f64,
    flushes: u64,
    cpu_secs: f64,
}

/// Runs `tasks` copies of `body` until `secs` have passed or `limit` operations
/// are done; `body` returns how many operations it did per call. Returns
/// (operations, seconds, flushes).
async fn measure<F, Fut>(
    store: &Arc<EmbeddedStore>,
    tasks: usize,
    secs: f64,
    limit: u64,
    body: F,
) -> Sample
where
    F: Fn(Arc<EmbeddedStore>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = u64> + Send,
{
    let flushes_before = store.stats().await.expect("stats").durable_commits;
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let body = Arc::new(body);
    let cpu_before = cpu_secs();
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (store, stop, ops, body) = (Arc::clone(store), stop.clone(), ops.clone(), body.clone());
        handles.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) && ops.load(Ordering::Relaxed) < limit {
                let n = body(Arc::clone(&store)).await;
                ops.fetch_add(n, Ordering::Relaxed);
            }
        }));
    }
    while start.elapsed().as_secs_f64() < secs && ops.load(Ordering::Relaxed) < limit {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.await.expect("task");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let flushes = store.stats().await.expect("stats").durable_commits - flushes_before;
    Sample {
        ops: ops.load(Ordering::Relaxed),
        secs: elapsed,
        flushes,
        cpu_secs: cpu_secs() - cpu_before,
    }
}

fn row(name: &str, backlog: &str, m: Sample) -> f64 {
    let rate = m.ops as f64 / m.secs;
    let per_flush = if m.flushes > 0 {
        m.ops as f64 / m.flushes as f64
    } else {
        f64::NAN
    };
    let cpu_us = m.cpu_secs * 1e6 / m.ops.max(1) as f64;
    println!(
        "| {name:<26} | {backlog:>11} | {rate:>9.0} /s | {:>7} in {:>5.2} s | {per_flush:>9.1} | {cpu_us:>9.1} |",
        m.ops, m.secs
    );
    rate
}

async fn enqueue_single(store: Arc<EmbeddedStore>) -> u64 {
    store.enqueue(vec![message()]).await.expect("enqueue");
    1
}

async fn enqueue_batch(store: Arc<EmbeddedStore>) -> u64 {
    store.enqueue(vec![message(); 16]).await.expect("enqueue");
    16
}

async fn lease_complete(store: Arc<EmbeddedStore>) -> u64 {
    let leased = store.lease("worker", 64).await.expect("lease");
    let n = leased.len() as u64;
    let mut done = Vec::with_capacity(leased.len());
    for l in leased {
        let store = Arc::clone(&store);
        done.push(tokio::spawn(async move {
            store
                .complete(&l.lease, ok(), vec![])
                .await
                .expect("complete");
        }));
    }
    for d in done {
        d.await.expect("complete task");
    }
    if n == 0 {
        tokio::task::yield_now().await;
    }
    n
}

/// Enqueues `n` deliveries in batches of 1,000 from 4 tasks.
async fn prefill(store: &Arc<EmbeddedStore>, n: u64) {
    let start = Instant::now();
    let per_task = n / 4;
    let mut handles = Vec::new();
    for _ in 0..4 {
        let store = Arc::clone(store);
        handles.push(tokio::spawn(async move {
            let mut left = per_task;
            while left > 0 {
                let b = left.min(1000);
                store
                    .enqueue(vec![message(); b as usize])
                    .await
                    .expect("prefill");
                left -= b;
            }
        }));
    }
    for h in handles {
        h.await.expect("prefill task");
    }
    eprintln!(
        "prefilled {} deliveries in {:.1} s",
        per_task * 4,
        start.elapsed().as_secs_f64()
    );
}

/// Deliveries drained by the lease+complete measurement.
const DRAIN: u64 = 100_000;

/// The four figures on fresh stores (each enqueue figure from an empty store;
/// lease+complete draining `DRAIN` deliveries down to zero).
async fn empty_suite(secs: f64) -> [f64; 4] {
    let mut out = [0.0; 4];
    let enqueues: [(&str, usize, bool); 3] = [
        ("enqueue 1 producer", 1, false),
        ("enqueue 64 producers x1", 64, false),
        ("enqueue 64 producers x16", 64, true),
    ];
    for (i, (name, tasks, batch)) in enqueues.into_iter().enumerate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path()).await;
        let m = if batch {
            measure(&store, tasks, secs, u64::MAX, enqueue_batch).await
        } else {
            measure(&store, tasks, secs, u64::MAX, enqueue_single).await
        };
        out[i] = row(name, "0", m);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    prefill(&store, DRAIN).await;
    let m = measure(&store, 8, 120.0, DRAIN, lease_complete).await;
    out[3] = row("lease+complete (8 x 64)", "100k to 0", m);
    out
}

/// The four figures on one store holding `backlog` ready deliveries.
async fn backlog_suite(backlog: u64, secs: f64) -> [f64; 4] {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    prefill(&store, backlog).await;
    // Let the database's background work after the burst (segment writes and
    // cleaning) settle, so the figures are the steady state at this backlog.
    let settle = env_u64("SLUICE_BENCH_SETTLE_SECS", 15);
    tokio::time::sleep(Duration::from_secs(settle)).await;
    let b = backlog.to_string();
    [
        row(
            "enqueue 1 producer",
            &b,
            measure(&store, 1, secs, u64::MAX, enqueue_single).await,
        ),
        row(
            "enqueue 64 producers x1",
            &b,
            measure(&store, 64, secs, u64::MAX, enqueue_single).await,
        ),
        row(
            "enqueue 64 producers x16",
            &b,
            measure(&store, 64, secs, u64::MAX, enqueue_batch).await,
        ),
        row(
            "lease+complete (8 x 64)",
            &b,
            measure(&store, 8, 120.0, DRAIN.min(backlog), lease_complete).await,
        ),
    ]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let backlog = env_u64("SLUICE_BENCH_BACKLOG", 1_000_000);
    let secs = env_u64("SLUICE_BENCH_SECS", 3) as f64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!(
            "| measurement                | backlog     | throughput   | operations         | ops/flush | CPU µs/op |"
        );
        println!(
            "| -------------------------- | ----------- | ------------ | ------------------ | --------- | --------- |"
        );

        let empty = empty_suite(secs).await;
        let full = backlog_suite(backlog, secs).await;

        println!();
        for (i, name) in ["enqueue 1", "enqueue 64x1", "enqueue 64x16", "lease+complete"]
            .iter()
            .enumerate()
        {
            println!(
                "{name}: {:.0}/s empty, {:.0}/s at {backlog} backlog ({:+.1} %)",
                empty[i],
                full[i],
                (full[i] / empty[i] - 1.0) * 100.0
            );
        }
    });
}
