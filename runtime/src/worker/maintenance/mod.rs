//! Background upkeep, one service per file. Each loops until shutdown.

pub mod promote;
pub mod prune;
pub mod rescue;
pub mod schedules;
pub mod watch;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::Context;

/// Runs `step` every `interval` until shutdown; a step returning `true` asks to
/// run again at once (more work was left).
async fn every<F, Fut>(ctx: Arc<Context>, interval: Duration, mut step: F)
where
    F: FnMut(Arc<Context>) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut stopping = ctx.stopping();
    loop {
        if *stopping.borrow() {
            return;
        }
        if step(ctx.clone()).await {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stopping.changed() => {}
        }
    }
}
