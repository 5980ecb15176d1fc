//! Rescues deliveries whose lease expired (a stuck or vanished worker): asks
//! the store for expired leases and settles each through [`Store::fail`]
//! with an interrupted attempt ("lease expired") and the policy's fate, as
//! the completer settles any failure. Fencing makes the race with a late
//! completion safe: whichever comes second gets `LeaseLost`.

use std::sync::Arc;

use crate::clock::Clock;
use crate::store::{AttemptReport, Store, StoreError, StoreResult};
use crate::worker::Context;

const BATCH: usize = 1024;
/// The reason recorded on a rescued attempt.
pub const LEASE_EXPIRED: &str = "lease expired";

/// Runs until shutdown.
pub async fn run(ctx: Arc<Context>) {
    let interval = ctx.config.rescue_interval;
    super::every(ctx, interval, |ctx| async move {
        match rescue_expired(ctx.store.as_ref(), ctx.clock.as_ref(), BATCH).await {
            Ok(n) => {
                ctx.metrics.lease_expired(n as u64);
                n == BATCH
            }
            Err(e) => {
                tracing::error!(error = %e, "rescue failed");
                false
            }
        }
    })
    .await;
}

/// Settles up to `limit` expired leases; returns how many it settled (a
/// lease completed meanwhile is skipped).
pub async fn rescue_expired(
    store: &dyn Store,
    clock: &dyn Clock,
    limit: usize,
) -> StoreResult<usize> {
    let mut rescued = 0;
    for expired in store.expired_leases(limit).await? {
        let handler = match store.handler(&expired.handler).await {
            Ok(h) => h,
            // Removed meanwhile, with its deliveries.
            Err(StoreError::UnknownHandler(_)) => continue,
            Err(e) => return Err(e),
        };
        let now = clock.now();
        let report = AttemptReport::interrupted(
            LEASE_EXPIRED,
            now.since(expired.started_at).as_millis() as u64,
            handler.module_sha256,
        );
        let disposition = handler
            .policy
            .fate(&report.outcome, expired.attempt, &mut rand::rng());
        tracing::warn!(delivery = %expired.lease.delivery_id, handler = %expired.handler, "lease expired; delivery rescued");
        match store.fail(&expired.lease, report, disposition).await {
            Ok(()) => rescued += 1,
            Err(StoreError::LeaseLost(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(rescued)
}
