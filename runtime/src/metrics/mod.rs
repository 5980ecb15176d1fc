//! The process's counters and histograms, and the `/metrics` exposition, on
//! the Prometheus project's client library (`prometheus-client`, OpenMetrics).
//!
//! [`Metrics`] holds the series the worker and the API record (attempts,
//! outcomes, durations, enqueues, lease expiries): recording is an atomic add
//! on the hot path. The store's gauges (depth, DLQ, lag, paused, flushes and
//! group-commit batch sizes) are read from [`Stats`](crate::store::Stats) at scrape time by a
//! collector. Every series name and label is listed in `docs/observability.md`;
//! a test checks the exposition against that table.
//!
//! # Module map
//! - this file: [`Metrics`], the recorded series.
//! - [`exposition`]: [`render`] in OpenMetrics or the
//!   classic text format, chosen by the scraper's `Accept` header.
//! - `store`: the scrape-time collector of the store's [`Stats`](crate::store::Stats).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use crate::outcome::Outcome;

pub mod exposition;
mod store;

pub use exposition::{Format, render};

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

/// Labels of a per-handler series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct HandlerLabel {
    pub handler: String,
}

/// Labels of `sluice_attempts_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct AttemptLabels {
    pub handler: String,
    pub outcome: String,
}

/// Labels of `sluice_egress_requests_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct EgressLabels {
    pub handler: String,
    pub origin: String,
    pub outcome: String,
}

/// Labels of `sluice_schedule_missed_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct MissedLabels {
    pub schedule: String,
    pub reason: String,
}

/// Most distinct origins counted per handler in `sluice_egress_requests_total`
/// (an allow-list of `https://*`, or refused origins, could name any host);
/// the rest are counted as `other`.
pub const MAX_EGRESS_ORIGINS: usize = 100;

/// A histogram family's constructor (a plain `fn`, so the family is nameable).
type HistogramFamily = Family<HandlerLabel, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The series recorded since the process started. Cheap to share (`Arc`);
/// every series is itself shared, so rendering clones handles, not values.
#[derive(Debug)]
pub struct Metrics {
    /// Messages accepted by enqueue (not duplicates).
    pub(crate) enqueued: Counter,
    /// Duplicate enqueues answered from the idempotency index.
    pub(crate) duplicates: Counter,
    /// Enqueues refused because a topic was full.
    pub(crate) queue_full: Counter,
    /// Leases that expired and were rescued.
    pub(crate) lease_expiries: Counter,
    /// Modules this process's upkeep deleted (nothing referenced them).
    pub(crate) modules_collected: Counter,
    /// Finished attempts per handler and outcome kind.
    pub(crate) attempts: Family<AttemptLabels, Counter>,
    /// Attempt durations.
    pub(crate) duration: HistogramFamily,
    /// From enqueue to the completion being durable, for deliveries that succeeded.
    pub(crate) end_to_end: HistogramFamily,
    /// Deliveries completed successfully.
    pub(crate) completed: Family<HandlerLabel, Counter>,
    /// Deliveries dead-lettered by the worker.
    pub(crate) dead_lettered: Family<HandlerLabel, Counter>,
    /// Attempts beyond the first (retries and redeliveries).
    pub(crate) redeliveries: Family<HandlerLabel, Counter>,
    /// Outbound HTTP requests per handler, origin and outcome.
    pub(crate) egress: Family<EgressLabels, Counter>,
    /// The origins counted so far per handler (at most [`MAX_EGRESS_ORIGINS`]).
    egress_origins: Mutex<BTreeMap<String, BTreeSet<String>>>,
    /// Schedule occurrences this process recorded as missed, by schedule and reason.
    pub(crate) schedule_missed: Family<MissedLabels, Counter>,
    /// Handlers seen so far: each gets every per-handler series (every
    /// outcome kind at 0) on first sight, so a rate over a series that has not
    /// moved yet is 0, not absent. Also what [`Metrics::totals`] sums over.
    handlers: Mutex<BTreeSet<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            enqueued: Counter::default(),
            duplicates: Counter::default(),
            queue_full: Counter::default(),
            lease_expiries: Counter::default(),
            modules_collected: Counter::default(),
            attempts: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            end_to_end: Family::new_with_constructor(latency_histogram),
            completed: Family::default(),
            dead_lettered: Family::default(),
            redeliveries: Family::default(),
            egress: Family::default(),
            egress_origins: Mutex::new(BTreeMap::new()),
            schedule_missed: Family::default(),
            handlers: Mutex::new(BTreeSet::new()),
        }
    }
}

/// The process-wide sums the dashboard's rate charts sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Messages accepted by enqueue.
    pub enqueued: u64,
    /// Deliveries completed.
    pub succeeded: u64,
    /// Attempts that did not end `ok`.
    pub failed: u64,
    /// Deliveries dead-lettered.
    pub dead_lettered: u64,
}

impl Metrics {
    /// Records the outcome of an enqueue: `accepted` new messages and
    /// `duplicates` answered from the idempotency index.
    pub fn enqueued(&self, accepted: u64, duplicates: u64) {
        self.enqueued.inc_by(accepted);
        self.duplicates.inc_by(duplicates);
    }

    /// Records an enqueue refused because its topic was full.
    pub fn queue_full(&self) {
        self.queue_full.inc();
    }

    /// Records `n` leases that expired and were rescued.
    pub fn lease_expired(&self, n: u64) {
        self.lease_expiries.inc_by(n);
    }

    /// Records `n` modules deleted by upkeep.
    pub fn modules_collected(&self, n: u64) {
        self.modules_collected.inc_by(n);
    }

    /// Records one finished attempt.
    pub fn attempt(&self, handler: &str, kind: &'static str, attempt: u32, duration: Duration) {
        let label = self.seen(handler);
        self.attempts
            .get_or_create(&AttemptLabels {
                handler: handler.to_string(),
                outcome: kind.to_string(),
            })
            .inc();
        self.duration
            .get_or_create(&label)
            .observe(duration.as_secs_f64());
        if attempt > 1 {
            self.redeliveries.get_or_create(&label).inc();
        }
    }

    /// Records how a delivery's attempt was settled; `completed` is the time
    /// from enqueue to a durable completion.
    pub fn settled(&self, handler: &str, completed: Option<Duration>, dead: bool) {
        let label = self.seen(handler);
        if let Some(latency) = completed {
            self.completed.get_or_create(&label).inc();
            self.end_to_end
                .get_or_create(&label)
                .observe(latency.as_secs_f64());
        }
        if dead {
            self.dead_lettered.get_or_create(&label).inc();
        }
    }

    /// Records an attempt's outbound requests.
    pub fn egress(&self, handler: &str, records: &[crate::sandbox::EgressRecord]) {
        if records.is_empty() {
            return;
        }
        let mut all = self
            .egress_origins
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let origins = all.entry(handler.to_string()).or_default();
        for r in records {
            let origin = if origins.contains(&r.origin) || origins.len() < MAX_EGRESS_ORIGINS {
                origins.insert(r.origin.clone());
                r.origin.clone()
            } else {
                "other".to_owned()
            };
            self.egress
                .get_or_create(&EgressLabels {
                    handler: handler.to_string(),
                    origin,
                    outcome: r.outcome.as_str().to_string(),
                })
                .inc();
        }
    }

    /// Records `n` occurrences of `schedule` missed for `reason`.
    pub fn schedule_missed(&self, schedule: &str, reason: &'static str, n: u64) {
        self.schedule_missed
            .get_or_create(&MissedLabels {
                schedule: schedule.to_string(),
                reason: reason.to_string(),
            })
            .inc_by(n);
    }

    /// The sums over every handler, now.
    pub fn totals(&self) -> Totals {
        let handlers = self.handlers.lock().unwrap_or_else(|p| p.into_inner());
        let mut t = Totals {
            enqueued: self.enqueued.get(),
            ..Totals::default()
        };
        for handler in handlers.iter() {
            let label = HandlerLabel {
                handler: handler.clone(),
            };
            t.succeeded += self.completed.get_or_create(&label).get();
            t.dead_lettered += self.dead_lettered.get_or_create(&label).get();
            for kind in Outcome::KINDS.into_iter().filter(|k| *k != "ok") {
                t.failed += self
                    .attempts
                    .get_or_create(&AttemptLabels {
                        handler: handler.clone(),
                        outcome: kind.to_string(),
                    })
                    .get();
            }
        }
        t
    }

    /// The handler's label; on first sight, creates each of its series.
    fn seen(&self, handler: &str) -> HandlerLabel {
        let label = HandlerLabel {
            handler: handler.to_string(),
        };
        let mut handlers = self.handlers.lock().unwrap_or_else(|p| p.into_inner());
        if !handlers.contains(handler) {
            handlers.insert(handler.to_string());
            for kind in Outcome::KINDS {
                let _ = self.attempts.get_or_create(&AttemptLabels {
                    handler: handler.to_string(),
                    outcome: kind.to_string(),
                });
            }
            let _ = self.duration.get_or_create(&label);
            let _ = self.end_to_end.get_or_create(&label);
            let _ = self.completed.get_or_create(&label);
            let _ = self.dead_lettered.get_or_create(&label);
            let _ = self.redeliveries.get_or_create(&label);
        }
        label
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
        let n = |origin: &str, outcome: &str| {
            m.egress
                .get_or_create(&EgressLabels {
                    handler: "h".into(),
                    origin: origin.into(),
                    outcome: outcome.into(),
                })
                .get()
        };
        assert_eq!(n("other", "denied_origin"), 5);
        assert_eq!(n("https://h0.example:443", "ok"), 1);
        assert_eq!(n("https://h0.example:443", "denied_origin"), 1);
        assert_eq!(
            m.egress_origins.lock().unwrap()["h"].len(),
            MAX_EGRESS_ORIGINS
        );
    }

    #[test]
    fn totals_sum_every_handler() {
        let m = Metrics::default();
        m.enqueued(3, 1);
        m.attempt("a", "ok", 1, Duration::from_millis(1));
        m.attempt("a", "exit", 1, Duration::from_millis(1));
        m.attempt("b", "trap", 2, Duration::from_millis(1));
        m.settled("a", Some(Duration::from_millis(3)), false);
        m.settled("b", None, true);
        assert_eq!(
            m.totals(),
            Totals {
                enqueued: 3,
                succeeded: 1,
                failed: 2,
                dead_lettered: 1
            }
        );
    }
}
