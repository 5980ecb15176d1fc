//! Prunes messages past retention, dead deliveries past DLQ retention and
//! idempotency keys past their window, and collects modules nothing
//! references ([`Store::prune`](crate::store::Store::prune)). (The "DLQ is not
//! empty" warning lives in [`super::watch`].)

use std::sync::Arc;

use crate::worker::Context;

const BATCH: usize = 10_000;

/// Runs until shutdown.
pub async fn run(ctx: Arc<Context>) {
    let interval = ctx.config.prune_interval;
    super::every(ctx, interval, |ctx| async move {
        match ctx.store.prune(BATCH).await {
            Ok(r) => {
                ctx.metrics.modules_collected(r.modules);
                r.messages + r.dead + r.idempotency_keys + r.modules >= BATCH as u64
            }
            Err(e) => {
                tracing::error!(error = %e, "prune failed");
                false
            }
        }
    })
    .await;
}
