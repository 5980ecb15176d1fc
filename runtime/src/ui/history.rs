//! The rolling history behind the overview's rate charts: the process's
//! counters (enqueued, succeeded, failed attempts, dead-lettered) sampled
//! once a minute by `sluice serve`, kept for a day, drawn as SVG polylines
//! on the server.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

use crate::clock::Timestamp;
use crate::metrics::Metrics;

/// Samples kept: one a minute for a day.
pub const SAMPLES: usize = 24 * 60;
/// How often `sluice serve` samples.
pub const SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// The counters at one moment (cumulative since the process started).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// When.
    pub at: Timestamp,
    /// Messages accepted.
    pub enqueued: u64,
    /// Deliveries completed.
    pub succeeded: u64,
    /// Attempts that did not end `ok`.
    pub failed: u64,
    /// Deliveries dead-lettered.
    pub dead_lettered: u64,
}

impl Sample {
    /// All counters zero at `at`.
    pub fn zero(at: Timestamp) -> Sample {
        Sample {
            at,
            enqueued: 0,
            succeeded: 0,
            failed: 0,
            dead_lettered: 0,
        }
    }

    /// The counters of `metrics` now.
    pub fn of(metrics: &Metrics, at: Timestamp) -> Sample {
        let t = metrics.totals();
        Sample {
            at,
            enqueued: t.enqueued,
            succeeded: t.succeeded,
            failed: t.failed,
            dead_lettered: t.dead_lettered,
        }
    }
}

/// The last day of samples.
#[derive(Debug, Default)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
}

/// One chart: a polyline per series over a fixed 600 × 120 box.
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    /// `1 h` or `24 h`.
    pub title: &'static str,
    /// (series name, SVG `points`, total over the span).
    pub series: Vec<(&'static str, String, u64)>,
    /// Largest per-minute rate on the chart (its top).
    pub max_per_minute: u64,
}

impl History {
    /// Records a sample, dropping the oldest past [`SAMPLES`].
    pub fn record(&self, s: Sample) {
        let mut q = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        q.push_back(s);
        while q.len() > SAMPLES + 1 {
            q.pop_front();
        }
    }

    /// The last hour's and the last day's charts, per minute, ending with `now`.
    pub fn charts(&self, now: Sample) -> Vec<Chart> {
        let mut samples: Vec<Sample> = self
            .samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        samples.push(now);
        [("1 h", 60), ("24 h", SAMPLES)]
            .into_iter()
            .map(|(title, minutes)| chart(title, &samples, minutes))
            .collect()
    }
}

/// A series: its name and the counter it reads.
type Field = (&'static str, fn(&Sample) -> u64);

/// A chart of the per-minute differences of the last `minutes + 1` samples.
fn chart(title: &'static str, samples: &[Sample], minutes: usize) -> Chart {
    let from = samples.len().saturating_sub(minutes + 1);
    let window = &samples[from..];
    let fields: [Field; 4] = [
        ("enqueued", |s| s.enqueued),
        ("succeeded", |s| s.succeeded),
        ("failed", |s| s.failed),
        ("dead-lettered", |s| s.dead_lettered),
    ];
    let rates: Vec<(&'static str, Vec<u64>)> = fields
        .iter()
        .map(|(name, f)| {
            let r = window
                .windows(2)
                .map(|w| f(&w[1]).saturating_sub(f(&w[0])))
                .collect();
            (*name, r)
        })
        .collect();
    let max = rates
        .iter()
        .flat_map(|(_, r)| r.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let series = rates
        .into_iter()
        .map(|(name, r)| {
            let total = r.iter().sum();
            let step = 600.0 / minutes.max(1) as f64;
            let offset = (minutes - r.len()) as f64 * step;
            // A history shorter than the chart starts from zero where it
            // starts (nothing was counted before), so even its first minute
            // draws a line rather than a lone point.
            let start = (r.len() < minutes).then(|| format!("{offset:.1},120.0"));
            let points = start
                .into_iter()
                .chain(r.iter().enumerate().map(|(i, v)| {
                    let x = offset + (i + 1) as f64 * step;
                    let y = 120.0 - (*v as f64 / max as f64) * 115.0;
                    format!("{x:.1},{y:.1}")
                }))
                .collect::<Vec<_>>()
                .join(" ");
            (name, points, total)
        })
        .collect();
    Chart {
        title,
        series,
        max_per_minute: max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_show_per_minute_differences() {
        let h = History::default();
        for i in 0..3u64 {
            h.record(Sample {
                enqueued: i * 10,
                ..Sample::zero(Timestamp(i * 60_000))
            });
        }
        let charts = h.charts(Sample {
            enqueued: 50,
            ..Sample::zero(Timestamp(180_000))
        });
        let hour = &charts[0];
        assert_eq!(hour.title, "1 h");
        assert_eq!(hour.max_per_minute, 30);
        assert_eq!(hour.series[0].0, "enqueued");
        assert_eq!(hour.series[0].2, 50);
        let points: Vec<&str> = hour.series[0].1.split(' ').collect();
        assert_eq!(
            points.len(),
            4,
            "three minutes, from zero where the history starts"
        );
        assert_eq!(points[0], "570.0,120.0");
        assert!(
            hour.series[0].1.ends_with("600.0,5.0"),
            "{}",
            hour.series[0].1
        );
        assert_eq!(hour.series[3].2, 0);
    }
}
