//! Recurring work: cron expressions read in a time zone, and the one rule
//! that decides what a tick fires ([`plan`]), as `HandlerPolicy::fate`
//! decides a failure's fate. Backends store schedules and apply what this
//! decides (`store/schedule.rs`); the ticker (`worker/maintenance/schedules.rs`)
//! joins the two.
//!
//! # Module map
//! | question | where |
//! | --- | --- |
//! | parsing an expression, its time zone, the next occurrence | [`Cron`], this file |
//! | what a tick fires, buffers or counts as missed; a trigger | [`plan`] |
//!
//! # Daylight-saving time
//! Expressions are evaluated on the wall clock of the schedule's time zone,
//! as Debian's and RHEL's cron do (croner follows the same convention): a
//! fixed time inside a spring-forward gap fires once, at the first instant
//! after the gap; inside a fall-back repeat it fires once, on the first
//! pass; entries whose hour (or minute) field is a wildcard keep elapsed-time
//! behaviour and fire on both passes. The time-zone database is compiled in
//! (`jiff`'s bundled tzdb), never read from the host.

mod plan;

pub use plan::{ON_TIME, Plan, SCAN_LIMIT, plan, trigger};

use croner::parser::{CronParser, Seconds, Year};
use jiff::tz::TimeZone;
use thiserror::Error;

use crate::clock::Timestamp;

/// Longest cron expression accepted, in bytes.
pub const MAX_EXPRESSION_LEN: usize = 200;
/// Longest time-zone name accepted, in bytes.
const MAX_TIMEZONE_LEN: usize = 64;

/// An expression or time zone that cannot be used, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScheduleError {
    /// The expression does not parse, or is out of bounds.
    #[error("cron: {expression:?}: {reason}")]
    InvalidCron {
        /// The expression (cut to 200 bytes).
        expression: String,
        /// Why.
        reason: String,
    },
    /// Not an IANA time zone name the compiled-in database knows.
    #[error("timezone: unknown time zone {0:?} (use an IANA name such as Europe/London or UTC)")]
    UnknownTimeZone(String),
    /// A time outside what the calendar can represent.
    #[error("cron: cannot compute the occurrence after {0}")]
    OutOfRange(Timestamp),
}

/// A parsed cron expression in its time zone.
#[derive(Debug, Clone)]
pub struct Cron {
    cron: croner::Cron,
    tz: TimeZone,
}

impl Cron {
    /// Parses `expression` (5 fields, or 6 with seconds first; `@daily` and
    /// the other nicknames) read in time zone `timezone` (IANA). Ranges are
    /// bounded per field (a hostile range is an error, never an allocation),
    /// and an expression that can never match (`0 0 30 2 *`) is refused.
    pub fn parse(expression: &str, timezone: &str) -> Result<Cron, ScheduleError> {
        let invalid = |reason: String| ScheduleError::InvalidCron {
            expression: expression.chars().take(MAX_EXPRESSION_LEN).collect(),
            reason,
        };
        if expression.len() > MAX_EXPRESSION_LEN {
            return Err(invalid(format!("longer than {MAX_EXPRESSION_LEN} bytes")));
        }
        let fields = expression.split_whitespace().count();
        if !expression.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
            return Err(invalid(format!(
                "{fields} fields; expected 5 (minute hour day-of-month month day-of-week) \
                 or 6 (seconds first)"
            )));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(expression)
            .map_err(|e| invalid(e.to_string()))?;
        let tz = time_zone(timezone)?;
        let parsed = Cron { cron, tz };
        // 2000-01-01: any expression that can match does within 28 years.
        match parsed.next_after(Timestamp(946_684_800_000)) {
            Ok(Some(_)) => Ok(parsed),
            _ => Err(invalid("never matches a date".to_string())),
        }
    }

    /// The first occurrence strictly after `t`, or `None` past
    /// [`Timestamp::MAX`].
    pub fn next_after(&self, t: Timestamp) -> Result<Option<Timestamp>, ScheduleError> {
        let at = jiff::Timestamp::from_millisecond(t.0 as i64)
            .map_err(|_| ScheduleError::OutOfRange(t))?
            .to_zoned(self.tz.clone());
        match self.cron.find_next_occurrence(&at, false) {
            Ok(next) => {
                let ms = next.timestamp().as_millisecond();
                let next = Timestamp(ms.max(0) as u64);
                Ok((next <= Timestamp::MAX).then_some(next))
            }
            Err(croner::errors::CronError::TimeSearchLimitExceeded) => Ok(None),
            Err(_) => Err(ScheduleError::OutOfRange(t)),
        }
    }

    /// The next `n` occurrences after `t` (the preview).
    pub fn upcoming(&self, mut t: Timestamp, n: usize) -> Result<Vec<Timestamp>, ScheduleError> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match self.next_after(t)? {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        Ok(out)
    }

    /// `t` as RFC 3339 with the zone's offset, e.g. `2027-03-28T03:00:00+01:00`
    /// (times are stored in UTC and shown with the offset).
    pub fn local(&self, t: Timestamp) -> String {
        match jiff::Timestamp::from_millisecond(t.0 as i64) {
            Ok(ts) => ts
                .to_zoned(self.tz.clone())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string(),
            Err(_) => t.to_rfc3339(),
        }
    }
}

/// The IANA zone `name` from the compiled-in database.
fn time_zone(name: &str) -> Result<TimeZone, ScheduleError> {
    if name == "UTC" {
        return Ok(TimeZone::UTC);
    }
    if name.is_empty() || name.len() > MAX_TIMEZONE_LEN {
        return Err(ScheduleError::UnknownTimeZone(
            name.chars().take(MAX_TIMEZONE_LEN).collect(),
        ));
    }
    TimeZone::get(name).map_err(|_| ScheduleError::UnknownTimeZone(name.to_string()))
}

#[cfg(test)]
mod tests;
