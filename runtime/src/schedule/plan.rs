//! What a tick does with a schedule: the one rule, applied by every runner
//! and backend alike.
//!
//! A tick at `now` looks at the occurrences after the schedule's cursor up to
//! `now` (and its end). Those due within [`ON_TIME`] of `now` are on time and
//! fire. Older ones were missed while nobody ticked: past the catch-up window
//! they are missed (`catch_up_window`); within it the catch-up policy decides
//! (`skip`: none fire; `latest`: the most recent fires, unless an on-time one
//! fires in the same tick; `all`: the most recent `max_catch_up` fire, the rest
//! are missed as `catch_up_cap`). Every one that would fire then meets the
//! overlap policy, judged on the previous occurrence's deliveries: `allow`
//! fires; `skip` misses it (`overlap`) while they are open; `buffer_one` keeps
//! one to fire once they are done. A paused schedule misses every occurrence
//! (`paused`). Runs of missed occurrences with one reason are one record.

use std::collections::BTreeMap;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{Cron, ScheduleError};
use crate::clock::Timestamp;
use crate::store::{
    CatchUp, MissReason, NewMessage, OccurrenceKind, Overlap, PlannedOccurrence, SCHEDULE_HEADERS,
    ScheduleAdvance, ScheduleRecord, ScheduleSpec,
};

/// An occurrence due at most this long ago is on time, not caught up: a
/// tick every second, or a runner busy for a few seconds, never counts as
/// downtime. Capped by the schedule's catch-up window.
pub const ON_TIME: Duration = Duration::from_secs(60);
/// Most occurrences one tick looks at; a schedule further behind (a
/// per-second expression after a long stop) is worked off over several
/// ticks, each bounded.
pub const SCAN_LIMIT: usize = 10_000;

/// What a tick decided for one schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The change to apply; `None` when nothing is due.
    pub advance: Option<ScheduleAdvance>,
    /// More occurrences are due than one tick looks at: tick again at once.
    pub more: bool,
}

/// Decides what a tick at `now` does with `rec`; `previous_done` tells
/// whether the deliveries of the last occurrence fired
/// ([`ScheduleRecord::last_message`]) are all done (succeeded or dead).
pub fn plan(
    rec: &ScheduleRecord,
    now: Timestamp,
    previous_done: bool,
) -> Result<Plan, ScheduleError> {
    let spec = &rec.spec;
    let cron = Cron::parse(&spec.cron, &spec.timezone)?;
    let until = spec.end.map_or(now, |e| e.min(now));
    let mut due = Vec::new();
    let mut more = false;
    let mut t = rec.cursor;
    while let Some(next) = cron.next_after(t)? {
        if next > until {
            break;
        }
        if due.len() == SCAN_LIMIT {
            more = true;
            break;
        }
        due.push(next);
        t = next;
    }
    let mut out = Vec::new();
    let mut busy = !previous_done;
    let mut buffered = rec.buffered;
    if let Some(b) = buffered
        && !busy
        && !rec.paused
    {
        out.push(fire(spec, b, OccurrenceKind::Fired));
        busy = true;
        buffered = None;
    }
    if due.is_empty() && out.is_empty() {
        return Ok(Plan {
            advance: None,
            more: false,
        });
    }
    let cursor = due.last().copied().unwrap_or(rec.cursor);
    if rec.paused {
        for t in due {
            missed(&mut out, t, MissReason::Paused);
        }
    } else {
        let window = spec.catch_up_window();
        let expired_before = Timestamp(now.0.saturating_sub(window.as_millis() as u64));
        let on_time_from = Timestamp(now.0.saturating_sub(ON_TIME.min(window).as_millis() as u64));
        let (expired, rest): (Vec<_>, Vec<_>) = due.into_iter().partition(|t| *t < expired_before);
        let (late, on_time): (Vec<_>, Vec<_>) = rest.into_iter().partition(|t| *t < on_time_from);
        for t in expired {
            missed(&mut out, t, MissReason::CatchUpWindow);
        }
        let caught_up: &[Timestamp] = match spec.catch_up {
            CatchUp::Skip => &[],
            CatchUp::Latest if on_time.is_empty() => &late[late.len().saturating_sub(1)..],
            CatchUp::Latest => &[],
            CatchUp::All => &late[late.len().saturating_sub(spec.max_catch_up as usize)..],
        };
        let dropped = late.len() - caught_up.len();
        let reason = match spec.catch_up {
            CatchUp::All => MissReason::CatchUpCap,
            _ => MissReason::CatchUp,
        };
        for t in &late[..dropped] {
            missed(&mut out, *t, reason);
        }
        for &t in caught_up.iter().chain(&on_time) {
            match (spec.overlap, busy) {
                (Overlap::Allow, _) | (_, false) => {
                    out.push(fire(spec, t, OccurrenceKind::Fired));
                    busy = true;
                }
                (Overlap::BufferOne, true) if buffered.is_none() => {
                    buffered = Some(t);
                    out.push(record(t, OccurrenceKind::Buffered, None));
                }
                _ => missed(&mut out, t, MissReason::Overlap),
            }
        }
    }
    Ok(Plan {
        advance: Some(ScheduleAdvance {
            id: spec.id.clone(),
            revision: rec.revision,
            cursor: Some(cursor),
            buffered,
            occurrences: out,
        }),
        more,
    })
}

/// A trigger at `now`: one firing with its own key
/// (`sched:<id>:trigger:<now>`), leaving the cursor where it is.
pub fn trigger(rec: &ScheduleRecord, now: Timestamp) -> ScheduleAdvance {
    ScheduleAdvance {
        id: rec.spec.id.clone(),
        revision: rec.revision,
        cursor: None,
        buffered: None,
        occurrences: vec![fire(&rec.spec, now, OccurrenceKind::Triggered)],
    }
}

fn record(t: Timestamp, kind: OccurrenceKind, reason: Option<MissReason>) -> PlannedOccurrence {
    PlannedOccurrence {
        scheduled_for: t,
        last: None,
        count: 1,
        kind,
        reason,
        message: None,
    }
}

/// Records `t` as missed for `reason`, extending the previous record when
/// it is a run of the same reason.
fn missed(out: &mut Vec<PlannedOccurrence>, t: Timestamp, reason: MissReason) {
    if let Some(last) = out.last_mut()
        && last.kind == OccurrenceKind::Missed
        && last.reason == Some(reason)
    {
        last.count += 1;
        last.last = Some(t);
        return;
    }
    out.push(record(t, OccurrenceKind::Missed, Some(reason)));
}

/// The occurrence at `t` fired: its message, keyed `sched:<id>:<t>`
/// (`sched:<id>:trigger:<t>` for a trigger), so a second firing of it is a
/// duplicate enqueue that creates nothing.
fn fire(spec: &ScheduleSpec, t: Timestamp, kind: OccurrenceKind) -> PlannedOccurrence {
    let key = match kind {
        OccurrenceKind::Triggered => format!("sched:{}:trigger:{}", spec.id, t.to_rfc3339()),
        _ => format!("sched:{}:{}", spec.id, t.to_rfc3339()),
    };
    let mut headers: BTreeMap<String, String> = spec.headers.clone();
    headers.insert(SCHEDULE_HEADERS[0].to_string(), spec.id.clone());
    headers.insert(SCHEDULE_HEADERS[1].to_string(), t.to_rfc3339());
    let not_before = (spec.jitter_ms > 0).then(|| t.plus(jitter(&key, spec.jitter_ms)));
    PlannedOccurrence {
        message: Some(NewMessage {
            topic: spec.topic.clone(),
            payload: spec.payload.clone(),
            ordering_key: spec.ordering_key.clone(),
            idempotency_key: Some(key),
            headers,
            not_before,
        }),
        ..record(t, kind, None)
    }
}

/// A delay in `0 ..= max_ms` derived from the occurrence's key, so every
/// runner computes the same one.
fn jitter(key: &str, max_ms: u64) -> Duration {
    let digest = Sha256::digest(key.as_bytes());
    let n = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    Duration::from_millis(n % (max_ms + 1))
}
