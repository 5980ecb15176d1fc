//! Prunes messages past retention, dead deliveries past DLQ retention and
//! idempotency keys past their window; warns while a DLQ is non-empty.

use std::sync::Arc;

use crate::store::DeliveryState;
use crate::worker::Context;

const BATCH: usize = 10_000;

/// Runs until shutdown.
pub async fn run(ctx: Arc<Context>) {
    let interval = ctx.config.prune_interval;
    super::every(ctx, interval, |ctx| async move {
        if let Ok(stats) = ctx.store.stats().await {
            for h in &stats.handlers {
                let dead = h.counts.get(&DeliveryState::Dead).copied().unwrap_or(0);
                if dead > 0 {
                    tracing::warn!(handler = %h.handler, dead, "DLQ is not empty");
                }
            }
        }
        match ctx.store.prune(BATCH).await {
            Ok(r) => r.messages + r.dead + r.idempotency_keys >= BATCH as u64,
            Err(e) => {
                tracing::error!(error = %e, "prune failed");
                false
            }
        }
    })
    .await;
}
