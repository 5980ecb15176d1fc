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

    /// Parses RFC 3339: `2026-11-27T22:10:43Z`, fractional seconds, `T`, `t`
    /// or a space between date and time, `Z`, `z`, a `±HH:MM` offset or none
    /// (UTC). A time before 1970 is in the past like the epoch, and is taken
    /// as it; one past [`Timestamp::MAX`] is refused.
    pub fn parse_rfc3339(s: &str) -> Result<Timestamp, String> {
        let invalid = |why: &str| format!("invalid RFC 3339 time {s:?}: {why}");
        let millis = rfc3339_millis(s.trim()).map_err(invalid)?;
        Timestamp(u64::try_from(millis).unwrap_or(0))
            .check("time")
            .map_err(|e| e.to_string())
    }
}

/// Milliseconds since the epoch (negative before it) of an RFC 3339 time.
fn rfc3339_millis(t: &str) -> Result<i128, &'static str> {
    let b = t.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Result<i128, &'static str> {
        let digits = b.get(range).ok_or("too short")?;
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err("expected YYYY-MM-DDTHH:MM:SS");
        }
        Ok(digits.iter().fold(0, |n, d| n * 10 + i128::from(d - b'0')))
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return Err("expected YYYY-MM-DDTHH:MM:SS");
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return Err("expected T between the date and the time");
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month) || day < 1 || day > month_days[month as usize - 1] {
        return Err("no such date");
    }
    // 60 is a leap second, counted as the last of its minute.
    if hour > 23 || minute > 59 || second > 60 {
        return Err("no such time of day");
    }
    let mut rest = &t[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return Err("expected digits after the decimal point");
        }
        let ms = &fraction[..n.min(3)];
        millis = ms.parse::<i128>().map_err(|_| "bad fraction")? * 10_i128.pow(3 - ms.len() as u32);
        rest = &fraction[n..];
    }
    let offset_minutes = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let o = rest.as_bytes();
            if o.len() != 6 || !matches!(o[0], b'+' | b'-') || o[3] != b':' {
                return Err("expected Z or an offset such as +02:00");
            }
            let digits = |r: std::ops::Range<usize>| {
                rest[r]
                    .parse::<i128>()
                    .map_err(|_| "expected Z or an offset such as +02:00")
            };
            let (h, m) = (digits(1..3)?, digits(4..6)?);
            if h > 23 || m > 59 {
                return Err("offset out of range");
            }
            let minutes = h * 60 + m;
            if o[0] == b'-' { -minutes } else { minutes }
        }
    };
    // Days from the civil date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_minutes * 60;
    Ok(seconds * 1000 + millis)
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
        let at = |s: &str| Timestamp::parse_rfc3339(s).map(|t| t.0);
        assert_eq!(at("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(at("2026-11-27T22:10:43.1234Z"), Ok(1_795_817_443_123));
        assert_eq!(at("2026-11-28T00:10:43.123+02:00"), Ok(1_795_817_443_123));
        assert_eq!(at("2026-11-27 21:10:43.123-01:00"), Ok(1_795_817_443_123));
        assert_eq!(at("2026-11-27t22:10:43.123z"), Ok(1_795_817_443_123));
        assert_eq!(at("2024-02-29T00:00:00Z"), Ok(1_709_164_800_000));
        // Before the epoch: as the epoch (it is past either way).
        assert_eq!(at("0885-01-14T20:44:44.4626-06:52"), Ok(0));
        assert_eq!(at("1969-12-31T23:00:00-02:00"), Ok(3_600_000));
        assert_eq!(at("9999-12-31T23:59:59.999999Z"), Ok(Timestamp::MAX.0));
        for bad in [
            "2023-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00+24:00",
            "2026-01-01T00:00:00.Z",
            "2026-01-01",
            "10000-01-01T00:00:00Z",
        ] {
            assert!(at(bad).is_err(), "{bad}");
        }
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
