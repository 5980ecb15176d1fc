//! Watches two of the three signals between scrapes and says so in the log:
//! a warning while a handler's DLQ is non-empty, and while its open depth
//! (deliveries not yet succeeded or dead) keeps growing.
//!
//! `/metrics` carries the same numbers, but a queue fails silently precisely
//! where nobody scrapes or alerts; these lines reach whoever reads the log.
//! Consumer lag (the third signal) has no warning of its own: a lagging
//! handler's depth grows, which this service reports.
//!
//! The decision is [`Watch::observe`], a pure function of successive
//! [`Stats`] samples (unit-tested without time); the service only samples the
//! store every [`INTERVAL`] and logs what it returns.
//!
//! # What "keeps growing" means
//! The open depth rose at every one of the last [`WINDOW`] samples (one
//! minute at the defaults). A depth that holds steady or drops once resets
//! it, so a busy but keeping-up handler, whose backlog fluctuates, does not
//! warn; a handler that is paused, stuck, or slower than its producers does.
//! Each condition logs when it starts (or, for a DLQ, when it grows), then
//! again every [`REPEAT`] samples while it holds: a reminder, not a flood.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::store::{DeliveryState, Stats};
use crate::worker::Context;

/// How often the store's stats are sampled.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Consecutive rising samples after which a depth counts as growing.
pub const WINDOW: usize = 6;
/// While a condition holds, it is logged again every this many samples.
pub const REPEAT: u64 = 6;

/// Something the log should say about a handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// The handler's DLQ holds `dead` deliveries.
    DlqNotEmpty {
        /// Handler.
        handler: String,
        /// Dead deliveries.
        dead: u64,
    },
    /// The handler's open depth rose at each of the last `samples` samples,
    /// from `from` to `to`.
    DepthGrowing {
        /// Handler.
        handler: String,
        /// Open depth `samples` samples ago.
        from: u64,
        /// Open depth now.
        to: u64,
        /// Samples over which it rose every time.
        samples: usize,
    },
}

impl Warning {
    /// Writes the warning as one `tracing` event with structured fields.
    pub fn log(&self) {
        match self {
            Warning::DlqNotEmpty { handler, dead } => {
                tracing::warn!(%handler, dead, "DLQ is not empty");
            }
            Warning::DepthGrowing {
                handler,
                from,
                to,
                samples,
            } => {
                tracing::warn!(
                    %handler,
                    from,
                    to,
                    samples,
                    "queue depth keeps growing (consumer slower than producers, paused or stuck?)"
                );
            }
        }
    }
}

/// What the watch remembers of one handler.
#[derive(Debug, Default)]
struct Seen {
    /// The last `window + 1` open depths, oldest first.
    depths: VecDeque<u64>,
    /// Samples since the DLQ warning was last logged, and the size it had then.
    dlq_warned: Option<(u64, u64)>,
    /// Samples since the growth warning was last logged (while it holds).
    growth_warned: Option<u64>,
}

/// The decision of the watch service: feed it successive stats, get the
/// warnings to log. Pure: no clock, no store.
#[derive(Debug)]
pub struct Watch {
    window: usize,
    repeat: u64,
    seen: BTreeMap<String, Seen>,
}

impl Watch {
    /// Growing means rising at each of the last `window` samples (at least 1);
    /// a condition that holds is logged again every `repeat` samples (at least 1).
    pub fn new(window: usize, repeat: u64) -> Watch {
        Watch {
            window: window.max(1),
            repeat: repeat.max(1),
            seen: BTreeMap::new(),
        }
    }

    /// Takes one sample; returns the warnings it calls for, by handler name.
    /// Handlers absent from `stats` (removed) are forgotten.
    pub fn observe(&mut self, stats: &Stats) -> Vec<Warning> {
        let mut out = Vec::new();
        self.seen
            .retain(|name, _| stats.handlers.iter().any(|h| &h.handler == name));
        for h in &stats.handlers {
            let seen = self.seen.entry(h.handler.clone()).or_default();
            let dead = h.counts.get(&DeliveryState::Dead).copied().unwrap_or(0);
            let open: u64 = h
                .counts
                .iter()
                .filter(|(s, _)| s.is_open())
                .map(|(_, n)| *n)
                .sum();

            // DLQ: log when it becomes non-empty or grows, then every `repeat`.
            seen.dlq_warned = match seen.dlq_warned {
                _ if dead == 0 => None,
                Some((ago, size)) if dead <= size && ago + 1 < self.repeat => Some((ago + 1, size)),
                _ => {
                    out.push(Warning::DlqNotEmpty {
                        handler: h.handler.clone(),
                        dead,
                    });
                    Some((0, dead))
                }
            };

            // Depth: rising at each of the last `window` samples.
            seen.depths.push_back(open);
            while seen.depths.len() > self.window + 1 {
                seen.depths.pop_front();
            }
            let growing = seen.depths.len() == self.window + 1
                && seen
                    .depths
                    .iter()
                    .zip(seen.depths.iter().skip(1))
                    .all(|(a, b)| b > a);
            seen.growth_warned = match seen.growth_warned {
                _ if !growing => None,
                Some(ago) if ago + 1 < self.repeat => Some(ago + 1),
                _ => {
                    out.push(Warning::DepthGrowing {
                        handler: h.handler.clone(),
                        from: seen.depths[0],
                        to: open,
                        samples: self.window,
                    });
                    Some(0)
                }
            };
        }
        out
    }
}

/// Runs until shutdown, sampling every [`INTERVAL`].
pub async fn run(ctx: Arc<Context>) {
    let watch = Arc::new(std::sync::Mutex::new(Watch::new(WINDOW, REPEAT)));
    super::every(ctx, INTERVAL, move |ctx| {
        let watch = watch.clone();
        async move {
            match ctx.store.stats().await {
                Ok(stats) => {
                    let warnings = watch
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .observe(&stats);
                    for w in &warnings {
                        w.log();
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot read stats for the watch"),
            }
            false
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::HandlerStats;

    /// Stats with one handler per `(name, ready, dead)`.
    fn stats(handlers: &[(&str, u64, u64)]) -> Stats {
        Stats {
            handlers: handlers
                .iter()
                .map(|(name, ready, dead)| HandlerStats {
                    handler: name.to_string(),
                    topic: "t".into(),
                    paused: false,
                    counts: DeliveryState::ALL
                        .into_iter()
                        .map(|s| {
                            let n = match s {
                                DeliveryState::Ready => *ready,
                                DeliveryState::Dead => *dead,
                                _ => 0,
                            };
                            (s, n)
                        })
                        .collect(),
                    oldest_ready_at: None,
                })
                .collect(),
            topic_depth: BTreeMap::new(),
            durable_commits: 0,
            durable_ops: 0,
            commit_batches: vec![],
        }
    }

    fn growing(w: &[Warning]) -> Vec<(String, u64, u64)> {
        w.iter()
            .filter_map(|w| match w {
                Warning::DepthGrowing {
                    handler, from, to, ..
                } => Some((handler.clone(), *from, *to)),
                _ => None,
            })
            .collect()
    }

    fn dlq(w: &[Warning]) -> Vec<(String, u64)> {
        w.iter()
            .filter_map(|w| match w {
                Warning::DlqNotEmpty { handler, dead } => Some((handler.clone(), *dead)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_depth_rising_at_every_sample_of_the_window_warns() {
        let mut w = Watch::new(3, 100);
        // Three rises need four samples.
        for ready in [1, 2, 3] {
            assert_eq!(w.observe(&stats(&[("h", ready, 0)])), vec![]);
        }
        assert_eq!(
            growing(&w.observe(&stats(&[("h", 4, 0)]))),
            [("h".to_string(), 1, 4)]
        );
    }

    #[test]
    fn a_flat_or_falling_sample_resets_growth() {
        let mut w = Watch::new(3, 100);
        for ready in [1, 2, 2, 3, 4] {
            assert_eq!(growing(&w.observe(&stats(&[("h", ready, 0)]))), []);
        }
        // 2 → 3 → 4 → 5: three rises since the flat sample.
        assert_eq!(
            growing(&w.observe(&stats(&[("h", 5, 0)]))),
            [("h".to_string(), 2, 5)]
        );
        // A drop ends it; a fluctuating backlog never warns.
        for ready in [4, 5, 6, 5, 6, 7, 6] {
            assert_eq!(growing(&w.observe(&stats(&[("h", ready, 0)]))), []);
        }
    }

    #[test]
    fn continued_growth_repeats_every_repeat_samples() {
        let mut w = Watch::new(2, 3);
        let mut warned_at = Vec::new();
        for (i, ready) in (1..=10).enumerate() {
            if !growing(&w.observe(&stats(&[("h", ready, 0)]))).is_empty() {
                warned_at.push(i);
            }
        }
        // Growing from sample 2 on (two rises); then every third sample.
        assert_eq!(warned_at, [2, 5, 8]);
    }

    #[test]
    fn a_non_empty_dlq_warns_at_once_on_growth_and_then_every_repeat() {
        let mut w = Watch::new(3, 3);
        let mut seen = Vec::new();
        for dead in [0, 2, 2, 2, 2, 3, 3, 1, 1, 1, 0, 0, 5] {
            seen.push(dlq(&w.observe(&stats(&[("h", 0, dead)]))));
        }
        let h = |n| vec![("h".to_string(), n)];
        assert_eq!(
            seen,
            [
                vec![],
                h(2), // became non-empty
                vec![],
                vec![],
                h(2), // still non-empty: reminder after 3 samples
                h(3), // grew: at once
                vec![],
                vec![], // shrank: no news
                h(1),   // reminder
                vec![],
                vec![], // empty: quiet
                vec![],
                h(5), // non-empty again: at once
            ]
        );
    }

    #[test]
    fn handlers_are_watched_apart_and_forgotten_when_removed() {
        let mut w = Watch::new(1, 100);
        w.observe(&stats(&[("a", 1, 0), ("b", 5, 1)]));
        let out = w.observe(&stats(&[("a", 2, 0), ("b", 4, 1)]));
        assert_eq!(growing(&out), [("a".to_string(), 1, 2)]);
        assert_eq!(dlq(&out), []);
        // b removed, then registered again: it starts afresh.
        w.observe(&stats(&[("a", 2, 0)]));
        assert_eq!(
            dlq(&w.observe(&stats(&[("a", 2, 0), ("b", 9, 1)]))),
            [("b".to_string(), 1)]
        );
    }

    #[test]
    fn the_warning_is_one_structured_log_line() {
        use std::io::Write;
        use std::sync::Mutex;

        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            Warning::DlqNotEmpty {
                handler: "resize".into(),
                dead: 3,
            }
            .log();
            Warning::DepthGrowing {
                handler: "resize".into(),
                from: 10,
                to: 70,
                samples: 6,
            }
            .log();
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["level"], "WARN");
        assert_eq!(lines[0]["fields"]["message"], "DLQ is not empty");
        assert_eq!(lines[0]["fields"]["handler"], "resize");
        assert_eq!(lines[0]["fields"]["dead"], 3);
        assert_eq!(lines[1]["fields"]["from"], 10);
        assert_eq!(lines[1]["fields"]["to"], 70);
    }
}
