//! `/metrics`: the registry of one scrape, encoded as OpenMetrics 1.0 when the
//! scraper asks for it (`Accept: application/openmetrics-text`, as Prometheus
//! does by default) and in the classic text format 0.0.4 otherwise (curl, older
//! scrapers).
//!
//! `prometheus-client` writes OpenMetrics only; the classic form is derived
//! from it by `classic`, which changes only what the two formats spell
//! differently (a counter family's name carries `_total`, no `# UNIT` and no
//! `# EOF`).

use std::collections::BTreeSet;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

use super::Metrics;
use super::store::StoreCollector;
use crate::clock::Timestamp;
use crate::store::Stats;

/// Which text format a scrape gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.
    OpenMetrics,
    /// Prometheus text format 0.0.4.
    Classic,
}

impl Format {
    /// OpenMetrics when the `Accept` header names it, classic otherwise.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Classic,
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Classic => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// The exposition of `metrics` and the store's `stats` (ages measured at `now`).
pub fn render(stats: Stats, metrics: &Metrics, now: Timestamp, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(StoreCollector { stats, now }));
    let m = metrics;
    for (name, help, counter) in [
        (
            "sluice_messages_enqueued",
            "Messages accepted by enqueue",
            &m.enqueued,
        ),
        (
            "sluice_enqueue_duplicates",
            "Enqueues answered from the idempotency index",
            &m.duplicates,
        ),
        (
            "sluice_enqueue_queue_full",
            "Enqueues refused because a topic was full",
            &m.queue_full,
        ),
        (
            "sluice_lease_expiries",
            "Leases that expired and were rescued",
            &m.lease_expiries,
        ),
        (
            "sluice_modules_collected",
            "Modules deleted by upkeep because nothing referenced them",
            &m.modules_collected,
        ),
    ] {
        registry.register(name, help, counter.clone());
    }
    registry.register(
        "sluice_attempts",
        "Finished attempts per handler and outcome kind",
        m.attempts.clone(),
    );
    registry.register(
        "sluice_attempt_duration_seconds",
        "Attempt wall-clock duration",
        m.duration.clone(),
    );
    registry.register(
        "sluice_end_to_end_seconds",
        "From enqueue to a durable completion, for deliveries that succeeded",
        m.end_to_end.clone(),
    );
    for (name, help, family) in [
        (
            "sluice_deliveries_completed",
            "Deliveries completed successfully",
            &m.completed,
        ),
        (
            "sluice_deliveries_dead_lettered",
            "Deliveries moved to the DLQ",
            &m.dead_lettered,
        ),
        (
            "sluice_redeliveries",
            "Attempts beyond a delivery's first",
            &m.redeliveries,
        ),
    ] {
        registry.register(name, help, family.clone());
    }
    registry.register(
        "sluice_egress_requests",
        "Outbound HTTP requests per handler, origin and outcome",
        m.egress.clone(),
    );
    registry.register(
        "sluice_schedule_missed",
        "Schedule occurrences this process recorded as not fired, by schedule and reason",
        m.schedule_missed.clone(),
    );
    let mut text = String::new();
    encode(&mut text, &registry).expect("writing to a String cannot fail");
    match format {
        Format::OpenMetrics => text,
        Format::Classic => classic(&text),
    }
}

/// The classic text format of an OpenMetrics exposition: a counter family's
/// `# HELP` and `# TYPE` name it with its samples' `_total`; `# UNIT` and
/// `# EOF` are dropped. Samples are the same in both.
fn classic(openmetrics: &str) -> String {
    let counters: BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta.and_then(|(p, rest)| rest.split_once(' ').map(|(n, r)| (p, n, r))) {
            Some((prefix, name, rest)) if counters.contains(name) => {
                out.push_str(&format!("{prefix}{name}_total {rest}\n"));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
