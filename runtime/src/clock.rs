//! Time, injected.
//!
//! Everything that depends on "now" (leases, backoff, delays, retention) reads it
//! from a [`Clock`], so tests move time with [`ManualClock::advance`] instead of
//! sleeping out a backoff.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Longest delay a message may be given (a producer's delay, a batch
/// `delay_ms`, a guest's `publish` delay): 10 years (3650 days).
pub const MAX_DELAY: Duration = Duration::from_secs(3650 * 24 * 3600);
/// [`MAX_DELAY`] as users read it in errors.
const MAX_DELAY_TEXT: &str = "0 ..= 3650 days";

/// A time or duration outside the one representable range, naming the field
/// where it entered and the range.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {value} is outside {range}")]
pub struct RangeError {
    /// Where the value entered, e.g. `Sluice-Delay` or `delay_ms`.
    pub field: &'static str,
    /// The value as given.
    pub value: String,
    /// The accepted range.
    pub range: &'static str,
}

/// `d` if it is within [`MAX_DELAY`]; `field` names it in the error.
pub fn check_delay(field: &'static str, d: Duration) -> Result<Duration, RangeError> {
    if d > MAX_DELAY {
        return Err(RangeError {
            field,
            value: format!("{} ms", d.as_millis()),
            range: MAX_DELAY_TEXT,
        });
    }
    Ok(d)
}

/// Milliseconds since the Unix epoch, UTC. Shown as RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The latest representable time, `9999-12-31T23:59:59.999Z` (the last one
    /// RFC 3339 can write). Every time that enters sluice is checked against
    /// it ([`Timestamp::check`]).
    pub const MAX: Timestamp = Timestamp(253_402_300_799_999);

    /// `self` if it is at most [`Timestamp::MAX`]; `field` names it in the error.
    pub fn check(self, field: &'static str) -> Result<Timestamp, RangeError> {
        if self > Timestamp::MAX {
            return Err(RangeError {
                field,
                value: format!("{} ms after the epoch", self.0),
                range: "1970-01-01T00:00:00Z ..= 9999-12-31T23:59:59.999Z",
            });
        }
        Ok(self)
    }

    /// Milliseconds since the epoch.
    pub fn millis(self) -> u64 {
        self.0
    }

    /// This time plus `d` (saturating).
    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(d.as_millis().min(u64::MAX as u128) as u64),
        )
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// RFC 3339 with milliseconds, e.g. `2026-11-27T22:10:43.123Z`. Never
    /// panics: a time past [`Timestamp::MAX`] (none is accepted, but one may
    /// be stored by an older version) is written as `+<ms>ms`.
    pub fn to_rfc3339(self) -> String {
        if self > Timestamp::MAX {
            return format!("+{}ms", self.0);
        }
        humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(self.0)).to_string()
    }

    /// Parses RFC 3339 (`2026-11-27T22:10:43Z`, fractional seconds allowed).
    pub fn parse_rfc3339(s: &str) -> Result<Timestamp, String> {
        let t = humantime::parse_rfc3339_weak(s.trim())
            .map_err(|e| format!("invalid RFC 3339 time {s:?}: {e}"))?;
        let d = t
            .duration_since(UNIX_EPOCH)
            .map_err(|_| format!("time {s:?} is before 1970"))?;
        Timestamp(d.as_millis().min(u64::MAX as u128) as u64)
            .check("time")
            .map_err(|e| e.to_string())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;

    /// The current time in microseconds since the epoch, for latency figures
    /// finer than a [`Timestamp`]. Defaults to `now()` in microseconds.
    fn now_micros(&self) -> u64 {
        self.now().0.saturating_mul(1000)
    }
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(d.as_millis() as u64)
    }

    fn now_micros(&self) -> u64 {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        d.as_micros() as u64
    }
}

/// A clock that only moves when told to; clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock(Arc::new(AtomicU64::new(start.0)))
    }

    /// Moves time forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Sets the time (may move backwards, to test clock skew).
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        let t = Timestamp(1_795_000_000_123);
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()).unwrap(), t);
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
    }

    #[test]
    fn times_and_delays_have_one_range_and_never_panic_to_format() {
        assert_eq!(Timestamp::MAX.to_rfc3339(), "9999-12-31T23:59:59.999Z");
        assert_eq!(Timestamp(u64::MAX).to_rfc3339(), format!("+{}ms", u64::MAX));
        Timestamp::MAX.check("t").unwrap();
        let e = Timestamp(Timestamp::MAX.0 + 1)
            .check("not_before")
            .unwrap_err();
        assert!(e.to_string().starts_with("not_before: "), "{e}");
        check_delay("d", MAX_DELAY).unwrap();
        let e = check_delay("delay_ms", MAX_DELAY + Duration::from_millis(1)).unwrap_err();
        assert!(e.to_string().contains("delay_ms") && e.to_string().contains("3650 days"));
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(Timestamp(1000));
        let c2 = c.clone();
        c.advance(Duration::from_secs(2));
        assert_eq!(c2.now(), Timestamp(3000));
    }
}
