//! Counters the worker and store record and `/metrics` renders.
//!
//! Plain atomics: recording is on the hot path (every attempt), rendering is
//! rare. Per-handler series live in a map behind a mutex touched once per attempt.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the attempt duration histogram buckets.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0,
];

/// Upper bounds (seconds) of the enqueue-to-completion histogram: 0.25 ms steps
/// to 5 ms, then coarser.
pub const LATENCY_BUCKETS: [f64; 28] = [
    0.00025, 0.0005, 0.00075, 0.001, 0.00125, 0.0015, 0.00175, 0.002, 0.00225, 0.0025, 0.00275,
    0.003, 0.00325, 0.0035, 0.00375, 0.004, 0.00425, 0.0045, 0.00475, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.5, 1.0, 10.0, 60.0,
];

/// A histogram with fixed buckets (non-cumulative counts, last one +Inf).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Upper bounds, seconds.
    pub bounds: &'static [f64],
    /// Count per bucket; one more than `bounds` (+Inf).
    pub counts: Vec<u64>,
    /// Sum of observations, seconds.
    pub sum: f64,
}

impl Histogram {
    /// An empty histogram over `bounds`.
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    /// Records one observation.
    pub fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += secs;
    }

    /// Observations recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q` quantile (0..=1), interpolated linearly inside its bucket.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            if *c > 0 && (seen + c) as f64 >= rank {
                let lo = if i == 0 { 0.0 } else { self.bounds[i - 1] };
                let hi = *self.bounds.get(i).unwrap_or(&lo);
                let within = (rank - seen as f64) / *c as f64;
                return Some(lo + (hi - lo) * within.clamp(0.0, 1.0));
            }
            seen += c;
        }
        self.bounds.last().copied()
    }
}

/// Per-handler counters.
#[derive(Debug, Clone)]
pub struct HandlerMetrics {
    /// Attempts by outcome kind.
    pub attempts: BTreeMap<&'static str, u64>,
    /// Attempt durations.
    pub duration: Histogram,
    /// From enqueue to the completion being durable, for deliveries that succeeded.
    pub end_to_end: Histogram,
    /// Deliveries completed successfully.
    pub completed: u64,
    /// Deliveries dead-lettered by the worker.
    pub dead_lettered: u64,
    /// Attempts beyond the first (retries and redeliveries).
    pub redeliveries: u64,
    /// Outbound HTTP requests by (origin, outcome); at most
    /// [`MAX_EGRESS_ORIGINS`] origins, the rest counted as `other`.
    pub egress: BTreeMap<(String, &'static str), u64>,
}

/// Most distinct origins counted per handler in `sluice_egress_requests_total`
/// (an allow-list of `https://*`, or refused origins, could name any host).
pub const MAX_EGRESS_ORIGINS: usize = 100;

impl Default for HandlerMetrics {
    fn default() -> Self {
        HandlerMetrics {
            attempts: BTreeMap::new(),
            duration: Histogram::new(&DURATION_BUCKETS),
            end_to_end: Histogram::new(&LATENCY_BUCKETS),
            completed: 0,
            dead_lettered: 0,
            redeliveries: 0,
            egress: BTreeMap::new(),
        }
    }
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
    /// Schedule occurrences this process recorded as missed, by (schedule, reason).
    pub schedule_missed: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl Metrics {
    /// Records one finished attempt.
    pub fn attempt(&self, handler: &str, kind: &'static str, attempt: u32, duration: Duration) {
        let mut map = self.handlers.lock().unwrap_or_else(|p| p.into_inner());
        let h = map.entry(handler.to_string()).or_default();
        *h.attempts.entry(kind).or_default() += 1;
        h.duration.observe(duration);
        if attempt > 1 {
            h.redeliveries += 1;
        }
    }

    /// Records an attempt's outbound requests.
    pub fn egress(&self, handler: &str, records: &[crate::sandbox::EgressRecord]) {
        if records.is_empty() {
            return;
        }
        let mut map = self.handlers.lock().unwrap_or_else(|p| p.into_inner());
        let h = map.entry(handler.to_string()).or_default();
        for r in records {
            let origins: BTreeSet<&String> = h.egress.keys().map(|(o, _)| o).collect();
            let origin = if origins.contains(&r.origin) || origins.len() < MAX_EGRESS_ORIGINS {
                r.origin.clone()
            } else {
                "other".to_owned()
            };
            *h.egress.entry((origin, r.outcome.as_str())).or_default() += 1;
        }
    }

    /// Records how a delivery's attempt was settled; `end_to_end` is the time
    /// from enqueue to a durable completion.
    pub fn settled(&self, handler: &str, completed: Option<Duration>, dead: bool) {
        let mut map = self.handlers.lock().unwrap_or_else(|p| p.into_inner());
        let h = map.entry(handler.to_string()).or_default();
        if let Some(latency) = completed {
            h.completed += 1;
            h.end_to_end.observe(latency);
        }
        h.dead_lettered += u64::from(dead);
    }

    /// Records `n` occurrences of `schedule` missed for `reason`.
    pub fn schedule_missed(&self, schedule: &str, reason: &'static str, n: u64) {
        let mut map = self
            .schedule_missed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *map.entry((schedule.to_string(), reason)).or_default() += n;
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A snapshot of the per-handler counters.
    pub fn snapshot(&self) -> BTreeMap<String, HandlerMetrics> {
        self.handlers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{EgressOutcome, EgressRecord};

    #[test]
    fn egress_origins_per_handler_are_bounded() {
        let m = Metrics::default();
        let record = |origin: String, outcome| EgressRecord {
            method: "GET".into(),
            origin,
            status: None,
            request_bytes: 0,
            response_bytes: 0,
            duration_ms: 1,
            outcome,
            detail: String::new(),
        };
        let many: Vec<_> = (0..MAX_EGRESS_ORIGINS + 5)
            .map(|i| {
                record(
                    format!("https://h{i}.example:443"),
                    EgressOutcome::DeniedOrigin,
                )
            })
            .collect();
        m.egress("h", &many);
        m.egress(
            "h",
            &[record("https://h0.example:443".into(), EgressOutcome::Ok)],
        );
        let egress = &m.snapshot()["h"].egress;
        assert_eq!(egress[&("other".to_owned(), "denied_origin")], 5);
        assert_eq!(egress[&("https://h0.example:443".to_owned(), "ok")], 1);
        assert_eq!(egress.len(), MAX_EGRESS_ORIGINS + 2);
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let mut h = Histogram::new(&LATENCY_BUCKETS);
        for _ in 0..99 {
            h.observe(Duration::from_micros(600));
        }
        h.observe(Duration::from_millis(40));
        let p50 = h.quantile(0.5).unwrap();
        assert!((0.0005..=0.00075).contains(&p50), "{p50}");
        let p999 = h.quantile(0.999).unwrap();
        assert!((0.025..=0.05).contains(&p999), "{p999}");
        assert_eq!(h.count(), 100);
    }
}
