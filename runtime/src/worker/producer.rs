//! One producer per handler: lease up to the free slots, hand each delivery to
//! an attempt task, sleep until the store signals new work or a slot frees.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::{Context, ModuleError, completer, executor};
use crate::store::{HandlerRecord, StoreError};

/// Under a backlog, the producer leases again once this many of a handler's
/// `concurrency` slots are free: a quarter of them (at least one).
fn lease_batch(concurrency: usize) -> usize {
    (concurrency / 4).max(1)
}

/// A handler that cannot run now: paused with the reason when the fault is
/// its configuration's (registering it again or resuming it ends the
/// pause), else tried again after a poll interval. No attempt is spent
/// either way.
async fn unrunnable(ctx: &Context, record: &HandlerRecord, e: &ModuleError) {
    let handler = &record.name;
    if !e.is_configuration() {
        tracing::warn!(%handler, error = %e, "cannot run the handler yet; trying again");
        tokio::time::sleep(ctx.config.poll_interval).await;
        return;
    }
    let reason = format!("its configuration cannot run: {e}");
    match ctx
        .store
        .pause_unrunnable(handler, record.version, &reason)
        .await
    {
        Ok(true) => tracing::error!(%handler, %reason, "paused the handler"),
        Ok(false) => {}
        Err(e) => {
            tracing::error!(%handler, error = %e, "cannot pause the unrunnable handler");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Runs until the handler is removed or shutdown begins; then waits for its
/// attempts in flight. Returns the handler's name.
pub async fn run(ctx: Arc<Context>, handler: String) -> String {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let slot_freed = Arc::new(Notify::new());
    let mut attempts = JoinSet::new();
    let mut ready = ctx.store.ready_signal();
    let mut stopping = ctx.stopping();
    // Compile (or load from the cache) the module now, paused or not, so the
    // first event does not wait for it; a failure here is met again by the
    // check before the first lease.
    if let Ok(record) = ctx.store.handler(&handler).await
        && let Err(e) = ctx.module(&record).await
    {
        tracing::warn!(%handler, error = %e, "cannot load the handler's module");
    }
    loop {
        if *stopping.borrow() {
            break;
        }
        let record = match ctx.store.handler(&handler).await {
            Ok(r) => r,
            Err(StoreError::UnknownHandler(_)) => break,
            Err(e) => {
                tracing::error!(%handler, error = %e, "cannot read handler");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Mark the signal seen before leasing, so work that arrives during the
        // lease wakes the wait below.
        ready.borrow_and_update();
        let free =
            (record.policy.concurrency as usize).saturating_sub(in_flight.load(Ordering::Acquire));
        let mut full_batch = false;
        if free > 0 && !record.paused {
            // Nothing is leased for a configuration that cannot run: its
            // deliveries would spend every attempt on the same host error.
            if let Err(e) = ctx.runnable(&record).await {
                unrunnable(&ctx, &record, &e).await;
                continue;
            }
            match ctx.store.lease(&handler, free).await {
                Ok(leased) => {
                    full_batch = leased.len() == free;
                    for l in leased {
                        in_flight.fetch_add(1, Ordering::AcqRel);
                        let (ctx, record, in_flight, slot_freed) = (
                            ctx.clone(),
                            record.clone(),
                            in_flight.clone(),
                            slot_freed.clone(),
                        );
                        attempts.spawn(async move {
                            let done = executor::execute(&ctx, &record, &l).await;
                            completer::settle(&ctx, &record, l, done).await;
                            in_flight.fetch_sub(1, Ordering::AcqRel);
                            slot_freed.notify_one();
                        });
                    }
                }
                Err(StoreError::UnknownHandler(_)) => break,
                Err(e) => {
                    tracing::error!(%handler, error = %e, "lease failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        while attempts.try_join_next().is_some() {}
        if full_batch {
            // There may be more ready; slots decide when to lease again, a
            // batch of them at a time: one lease per freed slot would cost
            // a store round trip per job under a backlog. Waiting for slots
            // cannot stall: while fewer than a batch are free, more than
            // three quarters of the slots hold attempts, and each ends.
            let batch = lease_batch(record.policy.concurrency as usize);
            loop {
                tokio::select! {
                    _ = slot_freed.notified() => {}
                    _ = stopping.changed() => break,
                }
                let free = (record.policy.concurrency as usize)
                    .saturating_sub(in_flight.load(Ordering::Acquire));
                if free >= batch {
                    break;
                }
            }
            continue;
        }
        tokio::select! {
            _ = ready.changed() => {}
            _ = slot_freed.notified() => {}
            _ = tokio::time::sleep(ctx.config.poll_interval) => {}
            _ = stopping.changed() => {}
        }
    }
    while attempts.join_next().await.is_some() {}
    handler
}
