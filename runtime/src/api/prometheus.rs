//! Renders the store's stats and the process counters in the Prometheus text
//! exposition format (0.0.4).
//!
//! Gauges come from [`Stats`] (read at scrape time); counters and the attempt
//! duration and end-to-end histograms from [`Metrics`]. Histograms are stored
//! per bucket and exposed cumulatively, as the format requires.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::clock::Timestamp;
use crate::metrics::{HandlerMetrics, Histogram, Metrics};
use crate::outcome::Outcome;
use crate::store::{DeliveryState, Stats};

/// The exposition text.
pub(super) fn render(stats: &Stats, metrics: &Metrics, now: Timestamp) -> String {
    let mut out = Exposition::default();

    out.family(
        "sluice_deliveries",
        "gauge",
        "Deliveries per handler and state.",
    );
    for h in &stats.handlers {
        for state in DeliveryState::ALL {
            let n = h.counts.get(&state).copied().unwrap_or(0);
            let s = match state {
                // Shown to users as ready; kept apart here for diagnosis.
                DeliveryState::Blocked => "blocked",
                s => s.public_name(),
            };
            out.sample(
                "sluice_deliveries",
                &[("handler", &h.handler), ("state", s)],
                n as f64,
            );
        }
    }
    out.family(
        "sluice_dlq_size",
        "gauge",
        "Dead deliveries in each handler's DLQ.",
    );
    for h in &stats.handlers {
        let n = h.counts.get(&DeliveryState::Dead).copied().unwrap_or(0);
        out.sample("sluice_dlq_size", &[("handler", &h.handler)], n as f64);
    }
    out.family(
        "sluice_oldest_ready_age_seconds",
        "gauge",
        "Age of each handler's oldest ready delivery (consumer lag); 0 when none is ready.",
    );
    for h in &stats.handlers {
        let age = h
            .oldest_ready_at
            .map_or(0.0, |t| now.since(t).as_secs_f64());
        out.sample(
            "sluice_oldest_ready_age_seconds",
            &[("handler", &h.handler)],
            age,
        );
    }
    out.family(
        "sluice_handler_paused",
        "gauge",
        "1 when the handler is paused.",
    );
    for h in &stats.handlers {
        out.sample(
            "sluice_handler_paused",
            &[("handler", &h.handler)],
            f64::from(u8::from(h.paused)),
        );
    }
    out.family(
        "sluice_topic_depth",
        "gauge",
        "Open (undelivered) deliveries per topic.",
    );
    for (topic, depth) in &stats.topic_depth {
        out.sample("sluice_topic_depth", &[("topic", topic)], *depth as f64);
    }
    out.family(
        "sluice_store_flushes_total",
        "counter",
        "Durable store commits (group commits: the embedded store's fsyncs, PostgreSQL's synchronous COMMITs).",
    );
    out.sample(
        "sluice_store_flushes_total",
        &[],
        stats.durable_commits as f64,
    );
    out.family(
        "sluice_group_commit_batch_size",
        "histogram",
        "Store verbs made durable per flush (group commit); _sum is every verb flushed.",
    );
    out.count_histogram(
        "sluice_group_commit_batch_size",
        &stats.commit_batches,
        stats.durable_ops,
    );

    for (name, help, counter) in [
        (
            "sluice_messages_enqueued_total",
            "Messages accepted by enqueue.",
            &metrics.enqueued,
        ),
        (
            "sluice_enqueue_duplicates_total",
            "Enqueues answered from the idempotency index.",
            &metrics.duplicates,
        ),
        (
            "sluice_enqueue_queue_full_total",
            "Enqueues refused because a topic was full.",
            &metrics.queue_full,
        ),
        (
            "sluice_lease_expiries_total",
            "Leases that expired and were rescued.",
            &metrics.lease_expiries,
        ),
    ] {
        out.family(name, "counter", help);
        out.sample(name, &[], counter.load(Ordering::Relaxed) as f64);
    }

    let handlers = metrics.snapshot();
    out.family(
        "sluice_attempts_total",
        "counter",
        "Finished attempts per handler and outcome kind.",
    );
    for (handler, m) in &handlers {
        for kind in Outcome::KINDS {
            let n = m.attempts.get(kind).copied().unwrap_or(0);
            out.sample(
                "sluice_attempts_total",
                &[("handler", handler), ("outcome", kind)],
                n as f64,
            );
        }
    }
    for (name, help, pick) in [
        (
            "sluice_attempt_duration_seconds",
            "Attempt wall-clock duration.",
            (|m| &m.duration) as fn(&HandlerMetrics) -> &Histogram,
        ),
        (
            "sluice_end_to_end_seconds",
            "From enqueue to a durable completion, for deliveries that succeeded.",
            |m| &m.end_to_end,
        ),
    ] {
        out.family(name, "histogram", help);
        for (handler, m) in &handlers {
            out.histogram(name, handler, pick(m));
        }
    }
    for (name, help, get) in [
        (
            "sluice_deliveries_completed_total",
            "Deliveries completed successfully.",
            (|m| m.completed) as fn(&HandlerMetrics) -> u64,
        ),
        (
            "sluice_deliveries_dead_lettered_total",
            "Deliveries moved to the DLQ.",
            |m| m.dead_lettered,
        ),
        (
            "sluice_redeliveries_total",
            "Attempts beyond a delivery's first.",
            |m| m.redeliveries,
        ),
    ] {
        out.family(name, "counter", help);
        for (handler, m) in &handlers {
            out.sample(name, &[("handler", handler)], get(m) as f64);
        }
    }
    out.family(
        "sluice_schedule_missed_total",
        "counter",
        "Schedule occurrences this process recorded as not fired, by schedule and reason.",
    );
    let missed = metrics
        .schedule_missed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for ((schedule, reason), n) in &missed {
        out.sample(
            "sluice_schedule_missed_total",
            &[("schedule", schedule), ("reason", reason)],
            *n as f64,
        );
    }
    let name = "sluice_egress_requests_total";
    out.family(
        name,
        "counter",
        "Outbound HTTP requests per handler, origin and outcome.",
    );
    for (handler, m) in &handlers {
        for ((origin, outcome), n) in &m.egress {
            let labels = [
                ("handler", handler.as_str()),
                ("origin", origin),
                ("outcome", outcome),
            ];
            out.sample(name, &labels, *n as f64);
        }
    }
    out.text
}

#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// A histogram's series: cumulative `_bucket`s (ending with `+Inf`), `_sum`, `_count`.
    fn histogram(&mut self, name: &str, handler: &str, h: &Histogram) {
        let mut cumulative = 0;
        for (i, count) in h.counts.iter().enumerate() {
            cumulative += count;
            let le = h
                .bounds
                .get(i)
                .map_or("+Inf".to_string(), |b| b.to_string());
            self.sample(
                &format!("{name}_bucket"),
                &[("handler", handler), ("le", &le)],
                cumulative as f64,
            );
        }
        self.sample(&format!("{name}_sum"), &[("handler", handler)], h.sum);
        self.sample(
            &format!("{name}_count"),
            &[("handler", handler)],
            cumulative as f64,
        );
    }

    /// A histogram of counts without labels from `(upper bound, count)` pairs,
    /// non-cumulative, `u64::MAX` meaning +Inf; a `+Inf` bucket is added when
    /// missing, so the series is always complete.
    fn count_histogram(&mut self, name: &str, buckets: &[(u64, u64)], sum: u64) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        let mut saw_inf = false;
        for (bound, count) in buckets {
            cumulative += count;
            let le = if *bound == u64::MAX {
                saw_inf = true;
                "+Inf".to_string()
            } else {
                bound.to_string()
            };
            self.sample(&bucket, &[("le", &le)], cumulative as f64);
        }
        if !saw_inf {
            self.sample(&bucket, &[("le", "+Inf")], cumulative as f64);
        }
        self.sample(&format!("{name}_sum"), &[], sum as f64);
        self.sample(&format!("{name}_count"), &[], cumulative as f64);
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let metrics = Metrics::default();
        metrics.attempt("h", "ok", 1, std::time::Duration::from_millis(2));
        metrics.attempt("h", "exit", 2, std::time::Duration::from_millis(200));
        let stats = Stats {
            handlers: vec![],
            topic_depth: Default::default(),
            durable_commits: 3,
            durable_ops: 9,
            commit_batches: vec![(2, 1), (4, 2), (u64::MAX, 0)],
        };
        let text = render(&stats, &metrics, Timestamp(0));
        assert!(
            text.contains("sluice_attempt_duration_seconds_bucket{handler=\"h\",le=\"0.001\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "sluice_attempt_duration_seconds_bucket{handler=\"h\",le=\"0.0025\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("sluice_attempt_duration_seconds_bucket{handler=\"h\",le=\"+Inf\"} 2\n")
        );
        assert!(text.contains("sluice_attempt_duration_seconds_count{handler=\"h\"} 2\n"));
        assert!(text.contains("sluice_attempts_total{handler=\"h\",outcome=\"exit\"} 1\n"));
        assert!(text.contains("sluice_redeliveries_total{handler=\"h\"} 1\n"));
        assert!(text.contains("sluice_store_flushes_total 3\n"));
    }

    #[test]
    fn group_commit_batch_sizes_are_a_cumulative_histogram() {
        let stats = Stats {
            handlers: vec![],
            topic_depth: Default::default(),
            durable_commits: 3,
            durable_ops: 9,
            commit_batches: vec![(1, 0), (2, 1), (4, 2), (u64::MAX, 0)],
        };
        let text = render(&stats, &Metrics::default(), Timestamp(0));
        let expected = "# TYPE sluice_group_commit_batch_size histogram\n\
            sluice_group_commit_batch_size_bucket{le=\"1\"} 0\n\
            sluice_group_commit_batch_size_bucket{le=\"2\"} 1\n\
            sluice_group_commit_batch_size_bucket{le=\"4\"} 3\n\
            sluice_group_commit_batch_size_bucket{le=\"+Inf\"} 3\n\
            sluice_group_commit_batch_size_sum 9\n\
            sluice_group_commit_batch_size_count 3\n";
        assert!(text.contains(expected), "{text}");

        // Without an explicit +Inf bound, one is added.
        let mut out = Exposition::default();
        out.count_histogram("x", &[(8, 2)], 10);
        assert_eq!(
            out.text,
            "x_bucket{le=\"8\"} 2\nx_bucket{le=\"+Inf\"} 2\nx_sum 10\nx_count 2\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
