//! Promotes scheduled and retrying deliveries whose time has come to ready.

use std::sync::Arc;

use crate::worker::Context;

const BATCH: usize = 1024;

/// Runs until shutdown.
pub async fn run(ctx: Arc<Context>) {
    let interval = ctx.config.promote_interval;
    super::every(ctx, interval, |ctx| async move {
        match ctx.store.promote_due(BATCH).await {
            Ok(n) => n == BATCH,
            Err(e) => {
                tracing::error!(error = %e, "promote failed");
                false
            }
        }
    })
    .await;
}
