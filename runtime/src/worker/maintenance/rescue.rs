//! Rescues deliveries whose lease expired (a stuck or vanished worker): the
//! attempt is recorded as interrupted and the delivery retried or dead-lettered.

use std::sync::Arc;

use crate::metrics::Metrics;
use crate::worker::Context;

const BATCH: usize = 1024;

/// Runs until shutdown.
pub async fn run(ctx: Arc<Context>) {
    let interval = ctx.config.rescue_interval;
    super::every(ctx, interval, |ctx| async move {
        match ctx.store.rescue_expired(BATCH).await {
            Ok(n) => {
                Metrics::add(&ctx.metrics.lease_expiries, n as u64);
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
