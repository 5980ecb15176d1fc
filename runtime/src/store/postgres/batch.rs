//! Group commit for the hot durable verbs (enqueue, complete, fail): one
//! committer task takes every call waiting when it is free and runs them in
//! ONE transaction, each inside its own savepoint, so a call that fails
//! (queue full, lease lost) rolls back alone; then one synchronous COMMIT
//! (one WAL flush) acknowledges them all. Under load the batch grows by
//! itself while the previous commit is flushing; an idle store commits a
//! lone call at once (no window to wait out).
//!
//! A commit that fails or whose outcome is unknown (the connection dropped
//! during COMMIT) answers every call of the batch with
//! [`StoreError::Unavailable`]: never an acknowledgement.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::error::db;
use super::queue::Fate;
use super::{Core, Now, Tx};
use crate::store::{AttemptReport, Enqueued, Lease, NewMessage, StoreError, StoreResult};

/// Most calls one shared transaction takes.
pub(super) const MAX_BATCH: usize = 256;

/// A durable verb waiting for the committer.
pub(super) enum Op {
    /// Enqueue a validated batch.
    Enqueue(Vec<NewMessage>),
    /// Settle an attempt (boxed: a report is large).
    Settle(Box<(Lease, AttemptReport, Fate)>),
}

/// A verb's answer.
pub(super) enum Done {
    /// The enqueue's answers.
    Enqueued(Vec<Enqueued>),
    /// The attempt was settled.
    Settled,
}

/// One waiting call.
pub(super) struct Call {
    pub(super) op: Op,
    pub(super) reply: oneshot::Sender<StoreResult<Done>>,
}

/// Runs the committer until every sender is gone.
pub(super) async fn run(core: Arc<Core>, mut rx: mpsc::Receiver<Call>) {
    let mut calls = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        calls.push(first);
        while calls.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => calls.push(c),
                Err(_) => break,
            }
        }
        let batch = std::mem::take(&mut calls);
        commit_batch(&core, batch).await;
    }
}

async fn commit_batch(core: &Core, calls: Vec<Call>) {
    let mut client = match core.client().await {
        Ok(c) => c,
        Err(e) => return fail_all(calls, &e),
    };
    let tx = match client.transaction().await {
        Ok(tx) => tx,
        Err(e) => return fail_all(calls, &db(e)),
    };
    let now = match core.now(&tx).await {
        Ok(n) => n,
        Err(e) => return fail_all(calls, &e),
    };
    let alone = calls.len() == 1;
    let mut results = Vec::with_capacity(calls.len());
    let mut replies = Vec::with_capacity(calls.len());
    let mut woke = false;
    for call in calls {
        replies.push(call.reply);
        let r = if alone {
            run_op(core, &tx, call.op, now).await
        } else {
            match in_savepoint(core, &tx, call.op, now).await {
                Ok(r) => r,
                Err(e) => {
                    // The transaction itself broke: nothing of it commits.
                    results.push(Err(e));
                    let e = StoreError::Unavailable("the shared transaction failed".into());
                    return answer(replies, results, Some(&e));
                }
            }
        };
        if let Ok((_, w)) = &r {
            woke |= *w;
        }
        results.push(r.map(|(d, _)| d));
    }
    if alone && results[0].is_err() {
        // Dropping the transaction rolls it back.
        return answer(replies, results, None);
    }
    let ops = results.iter().filter(|r| r.is_ok()).count() as u64;
    if woke && let Err(e) = core.notify_ready(&tx).await {
        return answer(replies, results, Some(&e));
    }
    match core.commit(tx, ops).await {
        Ok(()) => {
            if woke {
                core.signal_ready();
            }
            answer(replies, results, None);
        }
        Err(e) => answer(replies, results, Some(&e)),
    }
}

/// Runs one call inside a savepoint: its failure rolls back only its own
/// changes. `Err` only when the transaction itself broke.
async fn in_savepoint(
    core: &Core,
    tx: &Tx<'_>,
    op: Op,
    now: Now,
) -> StoreResult<StoreResult<(Done, bool)>> {
    tx.batch_execute("SAVEPOINT op").await.map_err(db)?;
    let r = run_op(core, tx, op, now).await;
    let end = if r.is_ok() {
        "RELEASE SAVEPOINT op"
    } else {
        "ROLLBACK TO SAVEPOINT op; RELEASE SAVEPOINT op"
    };
    tx.batch_execute(end).await.map_err(db)?;
    Ok(r)
}

async fn run_op(core: &Core, tx: &Tx<'_>, op: Op, now: Now) -> StoreResult<(Done, bool)> {
    match op {
        Op::Enqueue(batch) => {
            let (out, woke) = core.enqueue_in(tx, batch, now).await?;
            Ok((Done::Enqueued(out), woke))
        }
        Op::Settle(settle) => {
            let (lease, report, fate) = *settle;
            let woke = core.settle_in(tx, &lease, report, fate, now).await?;
            Ok((Done::Settled, woke))
        }
    }
}

/// Sends each call its answer; with `failed`, every success is replaced by
/// that failure (nothing of the batch committed).
fn answer(
    replies: Vec<oneshot::Sender<StoreResult<Done>>>,
    results: Vec<StoreResult<Done>>,
    failed: Option<&StoreError>,
) {
    let mut results = results.into_iter();
    for reply in replies {
        let r = match (results.next(), failed) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(_)) | None, Some(f)) => Err(unavailable(f)),
            (Some(Ok(d)), None) => Ok(d),
            (None, None) => Err(StoreError::Unavailable(
                "the shared transaction stopped before this call".into(),
            )),
        };
        let _ = reply.send(r);
    }
}

fn fail_all(calls: Vec<Call>, e: &StoreError) {
    for c in calls {
        let _ = c.reply.send(Err(unavailable(e)));
    }
}

fn unavailable(e: &StoreError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}
