//! The store's gauges, read from [`Stats`] at scrape time: deliveries per
//! handler and state, DLQ size, consumer lag, paused handlers, topic depth,
//! store flushes and the group-commit batch sizes.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::HandlerLabel;
use crate::clock::Timestamp;
use crate::store::{DeliveryState, Stats};

/// One scrape's view of the store.
#[derive(Debug)]
pub(super) struct StoreCollector {
    /// The stats read for this scrape.
    pub stats: Stats,
    /// The store's clock at the scrape; ages are measured against it.
    pub now: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabels {
    handler: String,
    state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TopicLabel {
    topic: String,
}

/// A gauge family: one `(labels, value)` per series.
fn gauges<L: EncodeLabelSet, V: prometheus_client::encoding::EncodeGaugeValue + Copy>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, V)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let handlers = &self.stats.handlers;
        let label = |h: &crate::store::HandlerStats| HandlerLabel {
            handler: h.handler.clone(),
        };
        gauges(
            &mut encoder,
            "sluice_deliveries",
            "Deliveries per handler and state",
            handlers.iter().flat_map(|h| {
                DeliveryState::ALL.into_iter().map(move |state| {
                    let n = h.counts.get(&state).copied().unwrap_or(0);
                    let state = match state {
                        // Shown to users as ready; kept apart here for diagnosis.
                        DeliveryState::Blocked => "blocked",
                        s => s.public_name(),
                    };
                    let labels = StateLabels {
                        handler: h.handler.clone(),
                        state,
                    };
                    (labels, n as i64)
                })
            }),
        )?;
        gauges(
            &mut encoder,
            "sluice_dlq_size",
            "Dead deliveries in each handler's DLQ",
            handlers.iter().map(|h| {
                let dead = h.counts.get(&DeliveryState::Dead).copied().unwrap_or(0);
                (label(h), dead as i64)
            }),
        )?;
        gauges(
            &mut encoder,
            "sluice_oldest_ready_age_seconds",
            "Age of each handler's oldest ready delivery (consumer lag); 0 when none is ready",
            handlers.iter().map(|h| {
                let age = h
                    .oldest_ready_at
                    .map_or(0.0, |t| self.now.since(t).as_secs_f64());
                (label(h), age)
            }),
        )?;
        gauges(
            &mut encoder,
            "sluice_handler_paused",
            "1 when the handler is paused",
            handlers.iter().map(|h| (label(h), i64::from(h.paused))),
        )?;
        gauges(
            &mut encoder,
            "sluice_topic_depth",
            "Open (undelivered) deliveries per topic",
            self.stats.topic_depth.iter().map(|(topic, depth)| {
                let labels = TopicLabel {
                    topic: topic.clone(),
                };
                (labels, *depth as i64)
            }),
        )?;
        let flushes = ConstCounter::new(self.stats.durable_commits);
        flushes.encode(encoder.encode_descriptor(
            "sluice_store_flushes",
            "Store flushes (group commits)",
            None,
            flushes.metric_type(),
        )?)?;
        let batches = BatchHistogram::of(&self.stats);
        batches.encode(encoder.encode_descriptor(
            "sluice_group_commit_batch_size",
            "Store verbs made durable per flush (group commit); _sum is every verb flushed",
            None,
            batches.metric_type(),
        )?)
    }
}

/// The store's batch-size histogram, already bucketed by the store.
#[derive(Debug)]
struct BatchHistogram {
    /// `(upper bound, count)`, non-cumulative; the last bound is +Inf.
    buckets: Vec<(f64, u64)>,
    /// Every verb flushed.
    sum: f64,
}

impl BatchHistogram {
    /// From [`Stats::commit_batches`] (`u64::MAX` meaning +Inf); a +Inf
    /// bucket is added when missing, so the series is always complete.
    fn of(stats: &Stats) -> BatchHistogram {
        let mut buckets: Vec<(f64, u64)> = stats
            .commit_batches
            .iter()
            .map(|&(bound, n)| {
                // prometheus-client writes `f64::MAX` as `+Inf`.
                let bound = if bound == u64::MAX {
                    f64::MAX
                } else {
                    bound as f64
                };
                (bound, n)
            })
            .collect();
        if buckets.last().is_none_or(|(b, _)| *b != f64::MAX) {
            buckets.push((f64::MAX, 0));
        }
        BatchHistogram {
            buckets,
            sum: stats.durable_ops as f64,
        }
    }
}

impl EncodeMetric for BatchHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let count = self.buckets.iter().map(|(_, n)| n).sum();
        encoder.encode_histogram::<NoLabelSet>(self.sum, count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}
