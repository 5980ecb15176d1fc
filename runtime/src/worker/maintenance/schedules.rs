//! Ticks every schedule: reads it, decides with [`crate::schedule::plan`]
//! (overlap judged on the deliveries of the last occurrence fired) and has
//! the store apply the advance in one batch with its enqueues.
//!
//! Safe when every runner ticks at once (several `sluice serve` on one
//! PostgreSQL database): an advance applies only at the revision it was
//! planned from, so the second runner's is refused
//! ([`StoreError::ScheduleConflict`]), writes nothing, and that runner plans
//! again from what the first wrote; and each firing's idempotency key
//! (`sched:<id>:<scheduled-for>`) makes a repeated one a duplicate that
//! creates nothing. No leader, no lock held between ticks.

use std::sync::Arc;

use crate::clock::Timestamp;
use crate::metrics::Metrics;
use crate::schedule;
use crate::store::{Occurrence, OccurrenceKind, ScheduleRecord, Store, StoreError, StoreResult};
use crate::worker::Context;

/// Plans made again after a conflict before the schedule waits for the next tick.
const RETRIES: usize = 3;

/// Runs until shutdown.
pub async fn run(ctx: Arc<Context>) {
    let interval = ctx.config.schedule_interval;
    super::every(ctx, interval, |ctx| async move {
        match tick(ctx.store.as_ref(), ctx.clock.now(), &ctx.metrics).await {
            Ok(report) => report.more,
            Err(e) => {
                tracing::error!(error = %e, "schedule tick failed");
                false
            }
        }
    })
    .await;
}

/// What one tick did, over every schedule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Occurrences enqueued as new messages.
    pub fired: u64,
    /// Occurrences fired again whose key had been used: nothing created.
    pub duplicates: u64,
    /// Occurrences missed (every reason).
    pub missed: u64,
    /// Advances refused because another tick or a change came first.
    pub conflicts: u64,
    /// Some schedule has more due than one tick looks at.
    pub more: bool,
}

/// Ticks every schedule at `now`. A schedule that cannot be planned (its
/// expression no longer parses) is logged and left; a store failure ends
/// the tick.
pub async fn tick(store: &dyn Store, now: Timestamp, metrics: &Metrics) -> StoreResult<TickReport> {
    let mut report = TickReport::default();
    for rec in store.schedules().await? {
        tick_one(store, rec, now, metrics, &mut report).await?;
    }
    Ok(report)
}

async fn tick_one(
    store: &dyn Store,
    mut rec: ScheduleRecord,
    now: Timestamp,
    metrics: &Metrics,
    report: &mut TickReport,
) -> StoreResult<()> {
    for _ in 0..RETRIES {
        let done = previous_done(store, &rec).await?;
        let plan = match schedule::plan(&rec, now, done) {
            Ok(plan) => plan,
            Err(e) => {
                tracing::warn!(schedule = %rec.spec.id, error = %e, "schedule cannot be planned");
                return Ok(());
            }
        };
        let Some(advance) = plan.advance else {
            return Ok(());
        };
        match store.advance_schedule(advance).await {
            Ok(recorded) => {
                count(&rec.spec.id, &recorded, metrics, report);
                report.more |= plan.more;
                return Ok(());
            }
            Err(StoreError::ScheduleConflict(_)) => {
                report.conflicts += 1;
                rec = match store.schedule(&rec.spec.id).await {
                    Ok(rec) => rec,
                    Err(StoreError::UnknownSchedule(_)) => return Ok(()),
                    Err(e) => return Err(e),
                };
            }
            // Removed meanwhile.
            Err(StoreError::UnknownSchedule(_)) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn count(id: &str, recorded: &[Occurrence], metrics: &Metrics, report: &mut TickReport) {
    for o in recorded {
        match (o.kind, o.reason) {
            (OccurrenceKind::Fired, _) if o.duplicate => report.duplicates += 1,
            (OccurrenceKind::Fired, _) => report.fired += 1,
            (OccurrenceKind::Missed, Some(reason)) => {
                report.missed += o.count;
                metrics.schedule_missed(id, reason.as_str(), o.count);
                tracing::info!(schedule = id, reason = reason.as_str(), count = o.count,
                    first = %o.scheduled_for, "schedule occurrences missed");
            }
            _ => {}
        }
    }
}

/// Whether every delivery of the schedule's last fired occurrence is done
/// (succeeded or dead); true when none was fired or its message was pruned.
pub async fn previous_done(store: &dyn Store, rec: &ScheduleRecord) -> StoreResult<bool> {
    let Some(id) = rec.last_message else {
        return Ok(true);
    };
    match store.message(id).await {
        Ok(m) => Ok(m.deliveries.iter().all(|d| !d.state.is_open())),
        Err(StoreError::UnknownMessage(_)) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Fires schedule `id` now, outside its cursor, with its own key
/// (`sched:<id>:trigger:<now>`; a second trigger in the same millisecond
/// is a duplicate). Returns the occurrence recorded.
pub async fn trigger(store: &dyn Store, id: &str, now: Timestamp) -> StoreResult<Occurrence> {
    let mut last = None;
    for _ in 0..RETRIES {
        let rec = store.schedule(id).await?;
        match store.advance_schedule(schedule::trigger(&rec, now)).await {
            Ok(mut recorded) => {
                return recorded
                    .pop()
                    .ok_or_else(|| StoreError::Corrupt("a trigger recorded nothing".into()));
            }
            Err(e @ StoreError::ScheduleConflict(_)) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| StoreError::ScheduleConflict(id.to_string())))
}
