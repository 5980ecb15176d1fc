//! Counters the worker and store record and `/metrics` renders.
//!
//! Plain atomics: recording is on the hot path (every attempt), rendering is
//! rare. Per-handler series live in a map behind a mutex touched once per attempt.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the attempt duration histogram buckets.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0,
];

/// Per-handler counters.
#[derive(Debug, Default, Clone)]
pub struct HandlerMetrics {
    /// Attempts by outcome kind.
    pub attempts: BTreeMap<&'static str, u64>,
    /// Attempt duration histogram: count per bucket of [`DURATION_BUCKETS`] (non-cumulative), then +Inf.
    pub duration_buckets: [u64; DURATION_BUCKETS.len() + 1],
    /// Sum of attempt durations, seconds.
    pub duration_sum: f64,
    /// Deliveries completed successfully.
    pub completed: u64,
    /// Deliveries dead-lettered by the worker.
    pub dead_lettered: u64,
    /// Attempts beyond the first (retries and redeliveries).
    pub redeliveries: u64,
}

/// Process-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Messages accepted by enqueue (not duplicates).
    pub enqueued: AtomicU64,
    /// Duplicate enqueues answered from the idempotency index.
    pub duplicates: AtomicU64,
    /// Enqueues refused because a topic was full.
    pub queue_full: AtomicU64,
    /// Leases that expired and were rescued.
    pub lease_expiries: AtomicU64,
    /// Per handler.
    pub handlers: Mutex<BTreeMap<String, HandlerMetrics>>,
}

impl Metrics {
    /// Records one finished attempt.
    pub fn attempt(&self, handler: &str, kind: &'static str, attempt: u32, duration: Duration) {
        let mut map = self.handlers.lock().unwrap_or_else(|p| p.into_inner());
        let h = map.entry(handler.to_string()).or_default();
        *h.attempts.entry(kind).or_default() += 1;
        let secs = duration.as_secs_f64();
        let bucket = DURATION_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(DURATION_BUCKETS.len());
        h.duration_buckets[bucket] += 1;
        h.duration_sum += secs;
        if attempt > 1 {
            h.redeliveries += 1;
        }
    }

    /// Records how a delivery's attempt was settled.
    pub fn settled(&self, handler: &str, completed: bool, dead: bool) {
        let mut map = self.handlers.lock().unwrap_or_else(|p| p.into_inner());
        let h = map.entry(handler.to_string()).or_default();
        h.completed += u64::from(completed);
        h.dead_lettered += u64::from(dead);
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A snapshot of the per-handler counters.
    pub fn snapshot(&self) -> BTreeMap<String, HandlerMetrics> {
        self.handlers.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
