//! Pacing and progress of `sluice dlq replay --all --rate N`: pure functions
//! of elapsed time, so they are tested without a clock; the command sleeps
//! what [`Pacer::wait`] says and prints what [`progress`] renders.

use std::time::Duration;

/// Spaces operations at least `1 / rate` apart, from the first one on.
///
/// The schedule is "no sooner than the previous slot plus the interval": after
/// a stall (a slow request), the next operation goes at once but the ones after
/// it are spaced again, so the rate is never exceeded in a burst to catch up
/// (tokio's `MissedTickBehavior::Delay`, as a value).
#[derive(Debug, Clone)]
pub struct Pacer {
    interval: Duration,
    /// The next slot, as time since the start.
    next: Duration,
}

impl Pacer {
    /// A pacer for `rate` operations per second (positive and finite; clamped
    /// to one per ~31 years at the slow end).
    pub fn new(rate: f64) -> Pacer {
        let secs = if rate.is_finite() && rate > 0.0 {
            (1.0 / rate).min(1e9)
        } else {
            0.0
        };
        Pacer {
            interval: Duration::from_secs_f64(secs),
            next: Duration::ZERO,
        }
    }

    /// How long to wait before the next operation, `elapsed` after the start;
    /// books that operation's slot.
    pub fn wait(&mut self, elapsed: Duration) -> Duration {
        let wait = self.next.saturating_sub(elapsed);
        self.next = self.next.max(elapsed) + self.interval;
        wait
    }
}

/// The progress line: `[#######-------------] 7/20 (6 replayed, 1 skipped) at 3.5/s`,
/// with `width` cells in the bar. `done` counts replayed and skipped.
pub fn progress(
    done: usize,
    total: usize,
    skipped: u64,
    elapsed: Duration,
    width: usize,
) -> String {
    let filled = (done.min(total) * width)
        .checked_div(total)
        .unwrap_or(width);
    let rate = done as f64 / elapsed.as_secs_f64().max(0.001);
    format!(
        "[{}{}] {done}/{total} ({} replayed, {skipped} skipped) at {rate:.1}/s",
        "#".repeat(filled),
        "-".repeat(width - filled),
        (done as u64).saturating_sub(skipped),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn operations_are_spaced_one_interval_apart() {
        let mut p = Pacer::new(4.0); // every 250 ms
        assert_eq!(p.wait(MS(0)), MS(0), "the first goes at once");
        assert_eq!(p.wait(MS(10)), MS(240));
        assert_eq!(p.wait(MS(250)), MS(250));
        assert_eq!(p.wait(MS(500)), MS(250));
    }

    #[test]
    fn n_operations_take_at_least_n_minus_one_intervals() {
        // Whatever the requests cost, 11 replays at 10/s span at least 1 s.
        for cost in [0, 3, 40, 99] {
            let mut p = Pacer::new(10.0);
            let mut now = Duration::ZERO;
            let mut starts = Vec::new();
            for _ in 0..11 {
                now += p.wait(now);
                starts.push(now);
                now += MS(cost);
            }
            assert!(
                starts[10] - starts[0] >= MS(1000),
                "cost {cost}: {starts:?}"
            );
            for w in starts.windows(2) {
                assert!(w[1] - w[0] >= MS(100), "cost {cost}: {starts:?}");
            }
        }
    }

    #[test]
    fn a_stall_is_not_made_up_with_a_burst() {
        let mut p = Pacer::new(10.0);
        assert_eq!(p.wait(MS(0)), MS(0));
        // The request took 1 s: the next goes at once, the one after 100 ms later.
        assert_eq!(p.wait(MS(1000)), MS(0));
        assert_eq!(p.wait(MS(1001)), MS(99));
    }

    #[test]
    fn a_high_rate_barely_waits() {
        let mut p = Pacer::new(1e6);
        assert_eq!(p.wait(MS(0)), MS(0));
        assert!(p.wait(MS(0)) <= Duration::from_micros(1));
        assert_eq!(Pacer::new(0.5).wait(MS(0)), MS(0));
        let mut slow = Pacer::new(0.5);
        slow.wait(MS(0));
        assert_eq!(slow.wait(MS(0)), MS(2000));
    }

    #[test]
    fn the_progress_bar_fills_with_the_work_done() {
        assert_eq!(
            progress(7, 20, 1, Duration::from_secs(2), 20),
            "[#######-------------] 7/20 (6 replayed, 1 skipped) at 3.5/s"
        );
        assert_eq!(
            progress(0, 3, 0, Duration::ZERO, 6),
            "[------] 0/3 (0 replayed, 0 skipped) at 0.0/s"
        );
        assert_eq!(
            progress(3, 3, 0, Duration::from_secs(1), 6),
            "[######] 3/3 (3 replayed, 0 skipped) at 3.0/s"
        );
        assert!(progress(0, 0, 0, Duration::ZERO, 4).starts_with("[####] 0/0"));
    }
}
