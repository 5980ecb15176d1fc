//! Makes an attempt's outcome durable. Ok completes (with the outbox,
//! atomically); any other outcome gets the policy's fate
//! ([`HandlerPolicy::fate`](crate::policy::HandlerPolicy::fate): a rejection
//! dead-letters at once, anything else retries with backoff or, with no
//! attempts left, dead-letters).

use super::Context;
use super::executor::Done;
use crate::outcome::Outcome;
use crate::policy::Disposition;
use crate::store::{HandlerRecord, Leased, StoreError};

/// Settles one attempt. A lost lease means the delivery was rescued meanwhile:
/// its outcome is dropped (at-least-once: it runs again).
pub async fn settle(ctx: &Context, handler: &HandlerRecord, leased: Leased, done: Done) {
    let Done { report, outbox } = done;
    let kind = report.outcome.kind();
    let duration = std::time::Duration::from_millis(report.duration_ms);
    ctx.metrics
        .attempt(&leased.handler, kind, leased.attempt, duration);
    ctx.metrics.egress(&leased.handler, &report.egress);
    let (result, completed, dead) = match &report.outcome {
        Outcome::Ok => (
            ctx.store.complete(&leased.lease, report, outbox).await,
            true,
            false,
        ),
        outcome => {
            let disposition = handler
                .policy
                .fate(outcome, leased.attempt, &mut rand::rng());
            let dead = matches!(disposition, Disposition::Dead { .. });
            tracing::info!(outcome = %outcome.summary(), ?disposition, "attempt failed");
            (
                ctx.store.fail(&leased.lease, report, disposition).await,
                false,
                dead,
            )
        }
    };
    match result {
        Ok(()) => {
            let latency = completed.then(|| {
                let micros = ctx
                    .clock
                    .now_micros()
                    .saturating_sub(leased.message.enqueued_at_micros);
                std::time::Duration::from_micros(micros)
            });
            ctx.metrics.settled(&leased.handler, latency, dead);
        }
        Err(StoreError::LeaseLost(id)) => {
            tracing::warn!(delivery = %id, "lease lost before the outcome was recorded; the delivery runs again");
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot record the outcome; the lease will expire and the delivery runs again");
        }
    }
}
