//! Schedules in the store contract: what a schedule is, its durable cursor,
//! the occurrences it records, and the one change a tick makes
//! ([`ScheduleAdvance`]). What to fire when is decided by
//! [`crate::schedule::plan`], never by a backend: a backend stores what it
//! is told, checks the revision it was told to expect, and enqueues each
//! firing in the same batch (transaction) as the cursor it advances.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{MessageId, NewMessage, StoreError, StoreResult};
use crate::clock::Timestamp;
use crate::names::{validate_header, validate_key, validate_name, validate_topic};

/// Default [`ScheduleSpec::max_catch_up`] (as Kubernetes CronJob's 100 missed schedules).
pub const DEFAULT_MAX_CATCH_UP: u32 = 100;
/// Largest [`ScheduleSpec::max_catch_up`].
pub const MAX_CATCH_UP: u32 = 1000;
/// Default [`ScheduleSpec::catch_up_window_ms`]: 24 h (the idempotency window).
pub const DEFAULT_CATCH_UP_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Largest [`ScheduleSpec::jitter_ms`]: 1 h.
pub const MAX_JITTER: Duration = Duration::from_secs(3600);
/// Occurrence records kept per schedule (older ones are dropped as new ones
/// are written; the counts in [`ScheduleRecord`] keep the totals).
pub const KEPT_OCCURRENCES: u64 = 100;
/// Headers sluice adds to every scheduled message; a spec may carry at most
/// the store's maximum minus these.
pub const SCHEDULE_HEADERS: [&str; 2] = ["sluice-schedule", "sluice-scheduled-for"];

/// What to do with occurrences missed while nobody ticked (downtime, a stall).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Fire none of them.
    Skip,
    /// Fire the most recent one, once (the default).
    #[default]
    Latest,
    /// Fire every one, the most recent [`ScheduleSpec::max_catch_up`] of them.
    All,
}

/// What to do when an occurrence comes while the previous one's deliveries
/// are still open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Fire anyway.
    Allow,
    /// Do not fire it; record it as missed (the default).
    #[default]
    Skip,
    /// Keep one to fire as soon as the previous one is done; further ones
    /// meanwhile are missed.
    BufferOne,
}

/// A schedule as its owner writes it (an upsert by `id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    /// `[a-z0-9][a-z0-9._-]{0,127}`.
    pub id: String,
    /// Cron expression: 5 fields, or 6 with seconds first.
    pub cron: String,
    /// IANA time zone the expression is read in. Default `UTC`.
    #[serde(default = "utc")]
    pub timezone: String,
    /// Where each firing is enqueued; must exist.
    pub topic: String,
    /// The payload of every firing.
    #[serde(default)]
    pub payload: Bytes,
    /// Headers of every firing (plus [`SCHEDULE_HEADERS`]).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Ordering key of every firing.
    #[serde(default)]
    pub ordering_key: Option<String>,
    /// Default [`CatchUp::Latest`].
    #[serde(default)]
    pub catch_up: CatchUp,
    /// With [`CatchUp::All`], most missed occurrences fired. Default
    /// [`DEFAULT_MAX_CATCH_UP`], at most [`MAX_CATCH_UP`].
    #[serde(default = "default_max_catch_up")]
    pub max_catch_up: u32,
    /// Occurrences older than this are never caught up. Default 24 h.
    #[serde(default = "default_window_ms")]
    pub catch_up_window_ms: u64,
    /// Default [`Overlap::Skip`].
    #[serde(default)]
    pub overlap: Overlap,
    /// No occurrence before this time.
    #[serde(default)]
    pub start: Option<Timestamp>,
    /// No occurrence after this time.
    #[serde(default)]
    pub end: Option<Timestamp>,
    /// Each firing is delayed by up to this much (the same for one occurrence
    /// on every runner). Default 0, at most [`MAX_JITTER`].
    #[serde(default)]
    pub jitter_ms: u64,
}

fn utc() -> String {
    "UTC".to_string()
}
fn default_max_catch_up() -> u32 {
    DEFAULT_MAX_CATCH_UP
}
fn default_window_ms() -> u64 {
    DEFAULT_CATCH_UP_WINDOW.as_millis() as u64
}

impl ScheduleSpec {
    /// A spec with every default: `cron` in UTC onto `topic`, empty payload.
    pub fn new(id: &str, cron: &str, topic: &str) -> ScheduleSpec {
        ScheduleSpec {
            id: id.to_string(),
            cron: cron.to_string(),
            timezone: utc(),
            topic: topic.to_string(),
            payload: Bytes::new(),
            headers: BTreeMap::new(),
            ordering_key: None,
            catch_up: CatchUp::default(),
            max_catch_up: DEFAULT_MAX_CATCH_UP,
            catch_up_window_ms: default_window_ms(),
            overlap: Overlap::default(),
            start: None,
            end: None,
            jitter_ms: 0,
        }
    }

    /// The catch-up window.
    pub fn catch_up_window(&self) -> Duration {
        Duration::from_millis(self.catch_up_window_ms)
    }

    /// Checks everything but the topic's existence: names, the expression and
    /// time zone, bounds. Each error names its field.
    pub fn validate(&self, max_payload: usize, max_headers: usize) -> StoreResult<()> {
        self.check(max_payload, max_headers).map_err(|e| e.error)
    }

    /// [`ScheduleSpec::validate`], with the field that fails it apart (a
    /// manifest names it in its own terms: `sluice apply`).
    pub fn check(&self, max_payload: usize, max_headers: usize) -> Result<(), ScheduleFieldError> {
        let at = |field: &'static str| move |error: StoreError| ScheduleFieldError { field, error };
        let bad = |field: &'static str, m: String| {
            Err(ScheduleFieldError {
                field,
                error: StoreError::InvalidInput(m),
            })
        };
        validate_name("schedule id", &self.id).map_err(|e| at("id")(e.into()))?;
        validate_topic(&self.topic).map_err(|e| at("topic")(e.into()))?;
        crate::schedule::Cron::parse(&self.cron, &self.timezone).map_err(|e| {
            let field = match e {
                crate::schedule::ScheduleError::UnknownTimeZone(_) => "timezone",
                _ => "cron",
            };
            at(field)(StoreError::InvalidInput(e.to_string()))
        })?;
        if self.payload.len() > max_payload {
            return Err(at("payload")(StoreError::PayloadTooLarge {
                size: self.payload.len(),
                max: max_payload,
            }));
        }
        if let Some(k) = &self.ordering_key {
            validate_key("ordering key", k).map_err(|e| at("ordering_key")(e.into()))?;
        }
        let allowed = max_headers.saturating_sub(SCHEDULE_HEADERS.len());
        if self.headers.len() > allowed {
            return bad(
                "headers",
                format!(
                    "headers: {} given, at most {allowed} allowed on a schedule",
                    self.headers.len()
                ),
            );
        }
        for (k, v) in &self.headers {
            validate_header(k, v).map_err(|e| at("headers")(e.into()))?;
            if SCHEDULE_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
                return bad("headers", format!("headers: {k:?} is set by sluice"));
            }
        }
        if self.max_catch_up == 0 || self.max_catch_up > MAX_CATCH_UP {
            return bad(
                "max_catch_up",
                format!(
                    "max_catch_up: {} is outside 1 ..= {MAX_CATCH_UP}",
                    self.max_catch_up
                ),
            );
        }
        let window = self.catch_up_window();
        if window.is_zero() || window > crate::clock::MAX_DELAY {
            return bad(
                "catch_up_window_ms",
                format!(
                    "catch_up_window_ms: {} is outside 1 ..= {} ms",
                    self.catch_up_window_ms,
                    crate::clock::MAX_DELAY.as_millis()
                ),
            );
        }
        if Duration::from_millis(self.jitter_ms) > MAX_JITTER {
            return bad(
                "jitter_ms",
                format!(
                    "jitter_ms: {} ms is outside 0 ..= {} ms",
                    self.jitter_ms,
                    MAX_JITTER.as_millis()
                ),
            );
        }
        for (field, t) in [("start", self.start), ("end", self.end)] {
            if let Some(t) = t {
                t.check(field)
                    .map_err(|e| at(field)(StoreError::InvalidInput(e.to_string())))?;
            }
        }
        if let (Some(s), Some(e)) = (self.start, self.end)
            && e < s
        {
            return bad("end", format!("end ({e}) is before start ({s})"));
        }
        Ok(())
    }
}

/// A [`ScheduleSpec`] field that cannot be used: its name (the spec's, e.g.
/// `jitter_ms`) and the error the store answers with.
#[derive(Debug)]
pub struct ScheduleFieldError {
    /// The field.
    pub field: &'static str,
    /// Why, as [`ScheduleSpec::validate`] says it.
    pub error: StoreError,
}

/// A stored schedule: its spec and its durable state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    /// What its owner wrote.
    pub spec: ScheduleSpec,
    /// Paused: occurrences pass as missed (`paused`), nothing fires.
    pub paused: bool,
    /// Every occurrence at or before this time has been decided (fired,
    /// buffered or missed); the next tick looks strictly after it.
    pub cursor: Timestamp,
    /// With [`Overlap::BufferOne`]: the occurrence waiting for the previous
    /// one to finish.
    pub buffered: Option<Timestamp>,
    /// The message of the last occurrence fired (overlap is judged on its
    /// deliveries).
    pub last_message: Option<MessageId>,
    /// Occurrences fired by the schedule (not counting triggers).
    pub fired: u64,
    /// Occurrences not fired, by reason ([`MissReason::as_str`]).
    pub missed: BTreeMap<String, u64>,
    /// Occurrence records written so far (the number of the last one).
    pub occurrences: u64,
    /// Bumped by every change; a tick applies only at the revision it read.
    pub revision: u64,
    /// First written.
    pub created_at: Timestamp,
    /// Last changed by its owner (spec, pause).
    pub updated_at: Timestamp,
}

impl ScheduleRecord {
    /// A new schedule at `now`: the cursor starts at `now` (no occurrence
    /// before its creation is owed), or just before `start` when later.
    pub fn new(spec: ScheduleSpec, now: Timestamp) -> ScheduleRecord {
        let cursor = match spec.start {
            Some(s) if s > now => Timestamp(s.0.saturating_sub(1)),
            _ => now,
        };
        ScheduleRecord {
            spec,
            paused: false,
            cursor,
            buffered: None,
            last_message: None,
            fired: 0,
            missed: BTreeMap::new(),
            occurrences: 0,
            revision: 1,
            created_at: now,
            updated_at: now,
        }
    }

    /// This record with `spec` written over it at `now` (the upsert): the
    /// cursor and history are kept, so a changed expression applies from
    /// the cursor on.
    pub fn replaced(mut self, spec: ScheduleSpec, now: Timestamp) -> ScheduleRecord {
        if let Some(s) = spec.start
            && s > self.cursor
        {
            self.cursor = Timestamp(s.0.saturating_sub(1));
        }
        self.spec = spec;
        self.updated_at = now;
        self.revision += 1;
        self
    }

    /// This record paused or resumed at `now`.
    pub fn paused_at(mut self, paused: bool, now: Timestamp) -> ScheduleRecord {
        self.paused = paused;
        self.updated_at = now;
        self.revision += 1;
        self
    }

    /// Applies a tick's advance (the backend has checked its revision and
    /// enqueued its firings, whose answers are `messages`, one per firing in
    /// order); returns the occurrence records to write, numbered.
    pub fn apply(
        &mut self,
        advance: &ScheduleAdvance,
        messages: &[(MessageId, bool)],
        now: Timestamp,
    ) -> Vec<Occurrence> {
        let mut fired = messages.iter();
        let mut out = Vec::with_capacity(advance.occurrences.len());
        for p in &advance.occurrences {
            let (message_id, duplicate) = match p.message {
                Some(_) => fired
                    .next()
                    .map_or((None, false), |(id, d)| (Some(*id), *d)),
                None => (None, false),
            };
            if message_id.is_some() {
                self.last_message = message_id;
            }
            match (p.kind, p.reason) {
                (OccurrenceKind::Fired, _) => self.fired += 1,
                (OccurrenceKind::Missed, Some(reason)) => {
                    *self.missed.entry(reason.as_str().to_string()).or_default() += p.count;
                }
                _ => {}
            }
            self.occurrences += 1;
            out.push(Occurrence {
                n: self.occurrences,
                scheduled_for: p.scheduled_for,
                last: p.last,
                count: p.count,
                kind: p.kind,
                reason: p.reason,
                message_id,
                duplicate,
                recorded_at: now,
            });
        }
        if let Some(cursor) = advance.cursor {
            self.cursor = cursor;
            self.buffered = advance.buffered;
        }
        self.revision += 1;
        out
    }
}

/// Why an occurrence was not fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissReason {
    /// Missed while nobody ticked, and the catch-up policy let it go.
    CatchUp,
    /// Beyond [`ScheduleSpec::max_catch_up`] with [`CatchUp::All`].
    CatchUpCap,
    /// Older than the catch-up window.
    CatchUpWindow,
    /// The previous occurrence was still running (overlap policy).
    Overlap,
    /// The schedule was paused.
    Paused,
}

impl MissReason {
    /// Every reason.
    pub const ALL: [MissReason; 5] = [
        MissReason::CatchUp,
        MissReason::CatchUpCap,
        MissReason::CatchUpWindow,
        MissReason::Overlap,
        MissReason::Paused,
    ];

    /// The name in the API, the metric's `reason` label and the counts.
    pub fn as_str(self) -> &'static str {
        match self {
            MissReason::CatchUp => "catch_up",
            MissReason::CatchUpCap => "catch_up_cap",
            MissReason::CatchUpWindow => "catch_up_window",
            MissReason::Overlap => "overlap",
            MissReason::Paused => "paused",
        }
    }
}

/// What became of an occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OccurrenceKind {
    /// Enqueued by the schedule.
    Fired,
    /// Enqueued by a trigger (now, outside the cursor).
    Triggered,
    /// Held back to fire when the previous one is done (buffer one).
    Buffered,
    /// Not fired; the record says why.
    Missed,
}

impl OccurrenceKind {
    /// The name in the API and on the pages.
    pub fn as_str(self) -> &'static str {
        match self {
            OccurrenceKind::Fired => "fired",
            OccurrenceKind::Triggered => "triggered",
            OccurrenceKind::Buffered => "buffered",
            OccurrenceKind::Missed => "missed",
        }
    }
}

/// One recorded occurrence (or a run of missed ones: `count` of them, from
/// `scheduled_for` to `last`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Occurrence {
    /// 1-based, in the order recorded.
    pub n: u64,
    /// When it was due (UTC); the first of a run.
    pub scheduled_for: Timestamp,
    /// The last of a run of missed occurrences.
    pub last: Option<Timestamp>,
    /// Occurrences this record stands for (1 unless a run of missed ones).
    pub count: u64,
    /// Fired, triggered, buffered or missed.
    pub kind: OccurrenceKind,
    /// Missed: why.
    pub reason: Option<MissReason>,
    /// The enqueued message, when fired or triggered.
    pub message_id: Option<MessageId>,
    /// The enqueue found its idempotency key already used (fired before).
    pub duplicate: bool,
    /// When the tick recorded it.
    pub recorded_at: Timestamp,
}

/// One occurrence as a tick decided it, with the message to enqueue when it
/// fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedOccurrence {
    /// When it was due; the first of a run.
    pub scheduled_for: Timestamp,
    /// The last of a run.
    pub last: Option<Timestamp>,
    /// Occurrences it stands for.
    pub count: u64,
    /// What becomes of it.
    pub kind: OccurrenceKind,
    /// Missed: why.
    pub reason: Option<MissReason>,
    /// The message to enqueue (fired and triggered ones), with its
    /// idempotency key `sched:<id>:<scheduled-for>`.
    pub message: Option<NewMessage>,
}

/// The one change a tick (or a trigger) makes to a schedule, applied
/// atomically by [`Store::advance_schedule`](super::Store::advance_schedule):
/// only if the schedule is still at `revision`, every message enqueued
/// (outbox rules: no topic or depth check) in the same batch as the
/// occurrence records and the new cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleAdvance {
    /// The schedule.
    pub id: String,
    /// The revision the plan was made from.
    pub revision: u64,
    /// The new cursor and buffered occurrence; `None` leaves both (a trigger).
    pub cursor: Option<Timestamp>,
    /// The new buffered occurrence (with `cursor`).
    pub buffered: Option<Timestamp>,
    /// In order.
    pub occurrences: Vec<PlannedOccurrence>,
}

impl ScheduleAdvance {
    /// The messages to enqueue, in order.
    pub fn messages(&self) -> impl Iterator<Item = &NewMessage> {
        self.occurrences.iter().filter_map(|o| o.message.as_ref())
    }
}

/// The revision moved under a tick (another runner ticked, or the owner
/// changed the schedule): nothing was written; read it again.
pub(crate) fn conflict(id: &str) -> StoreError {
    StoreError::ScheduleConflict(id.to_string())
}
