//! Group commit for the hot durable verbs (enqueue, complete, fail): a
//! committer task (one of [`COMMITTERS`]) takes every call waiting when it
//! is free and runs them in ONE transaction: the settlements together, as statements over arrays
//! ([`super::settle`]; a lost lease writes nothing), then the enqueues
//! together, as one enqueue of all their messages, in a savepoint; only if
//! that fails (queue full) each again inside its own savepoint, so the
//! failure is the failing call's alone. Then one synchronous COMMIT (one WAL
//! flush) acknowledges them all. Under load the batch grows by
//! itself while the other committers' commits are flushing; an idle store commits a
//! lone call at once (no window to wait out).
//!
//! A commit that fails or whose outcome is unknown (the connection dropped
//! during COMMIT) answers every call of the batch with
//! [`StoreError::Unavailable`]: never an acknowledgement.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use super::error::db;
use super::settle::Settle;
use super::{Core, Now, Tx};
use crate::store::{Enqueued, NewMessage, StoreError, StoreResult};

/// Most calls one shared transaction takes.
pub(super) const MAX_BATCH: usize = 256;

/// A durable verb waiting for the committer.
pub(super) enum Op {
    /// Enqueue a validated batch.
    Enqueue(Vec<NewMessage>),
    /// Settle an attempt (boxed: a report is large).
    Settle(Box<Settle>),
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

/// Committer tasks per store. One batch fills while another commits, so a
/// call never waits for a whole commit it missed, and the database
/// group-commits their WAL flushes. Each holds one pooled connection while
/// it commits.
pub(super) const COMMITTERS: usize = 3;

/// The calls waiting for a committer, shared by the [`COMMITTERS`].
pub(super) type Queue = Arc<Mutex<mpsc::Receiver<Call>>>;

/// Runs one committer until every sender is gone: takes every call waiting
/// (while holding the queue, so calls are not split between committers
/// needlessly), then commits them as one transaction.
pub(super) async fn run(core: Arc<Core>, queue: Queue) {
    loop {
        let calls = {
            let mut rx = queue.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut calls = Vec::with_capacity(MAX_BATCH);
            calls.push(first);
            while calls.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(c) => calls.push(c),
                    Err(_) => break,
                }
            }
            calls
        };
        commit_batch(&core, calls).await;
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
    // Settlements first, all together (their statements run over arrays;
    // a lost lease writes nothing, so needs no savepoint); then each enqueue
    // in a savepoint of its own (a full queue rolls back alone).
    let mut replies = Vec::with_capacity(calls.len());
    let mut slots: Vec<Option<StoreResult<Done>>> = Vec::with_capacity(calls.len());
    let mut settles = Vec::new();
    let mut settle_slots = Vec::new();
    let mut enqueues = Vec::new();
    for call in calls {
        match call.op {
            Op::Settle(s) => {
                settle_slots.push(replies.len());
                settles.push(*s);
            }
            Op::Enqueue(batch) => enqueues.push((replies.len(), batch)),
        }
        replies.push(call.reply);
        slots.push(None);
    }
    let alone = replies.len() == 1;
    let mut woke = false;
    if !settles.is_empty() {
        match core.settle_many(&tx, settles, now).await {
            Ok((answers, w)) => {
                woke |= w;
                for (slot, a) in settle_slots.into_iter().zip(answers) {
                    slots[slot] = Some(a.map(|()| Done::Settled));
                }
            }
            Err(e) => return answer(replies, slots, Some(&e)),
        }
    }
    match enqueue_all(core, &tx, enqueues, &mut slots, alone, now).await {
        Ok(w) => woke |= w,
        Err(e) => return answer(replies, slots, Some(&e)),
    }
    let ops = slots.iter().filter(|r| matches!(r, Some(Ok(_)))).count() as u64;
    if ops == 0 {
        // Nothing to keep. Rolled back before answering: the row locks of a
        // lost lease's check must be gone when its caller goes on (a
        // dropped transaction's ROLLBACK is only sent, not awaited).
        let _ = tx.rollback().await;
        return answer(replies, slots, None);
    }
    if woke && let Err(e) = core.notify_ready(&tx).await {
        return answer(replies, slots, Some(&e));
    }
    match core.commit(tx, ops).await {
        Ok(()) => {
            if woke {
                core.signal_ready();
            }
            answer(replies, slots, None);
        }
        Err(e) => answer(replies, slots, Some(&e)),
    }
}

/// Runs the batch's enqueues: first all of them as one (their messages
/// concatenated: the statements over arrays cost the same for one message
/// or a thousand), in a savepoint; only if that fails (a full queue, an
/// unknown topic) each on its own in a savepoint, so one call's failure is
/// its own. A call alone in the batch needs no savepoint. Returns whether a
/// delivery became ready; `Err` only when the transaction itself broke.
async fn enqueue_all(
    core: &Core,
    tx: &Tx<'_>,
    enqueues: Vec<(usize, Vec<NewMessage>)>,
    slots: &mut [Option<StoreResult<Done>>],
    alone: bool,
    now: Now,
) -> StoreResult<bool> {
    if enqueues.is_empty() {
        return Ok(false);
    }
    if alone {
        let (slot, batch) = &enqueues[0];
        let r = core.enqueue_many(tx, batch, now, false).await;
        let woke = r.as_ref().is_ok_and(|(_, w)| *w);
        slots[*slot] = Some(r.map(|(out, _)| Done::Enqueued(out)));
        return Ok(woke);
    }
    if enqueues.len() > 1 {
        let merged: Vec<NewMessage> = enqueues.iter().flat_map(|(_, b)| b.clone()).collect();
        if let Ok((out, woke)) = in_savepoint(core, tx, &merged, now).await? {
            let mut out = out.into_iter();
            for (slot, batch) in &enqueues {
                slots[*slot] = Some(Ok(Done::Enqueued(out.by_ref().take(batch.len()).collect())));
            }
            return Ok(woke);
        }
    }
    let mut woke = false;
    for (slot, batch) in &enqueues {
        let r = in_savepoint(core, tx, batch, now).await?;
        woke |= r.as_ref().is_ok_and(|(_, w)| *w);
        slots[*slot] = Some(r.map(|(out, _)| Done::Enqueued(out)));
    }
    Ok(woke)
}

/// Runs one enqueue inside a savepoint: its failure rolls back only its own
/// changes. `Err` only when the transaction itself broke.
async fn in_savepoint(
    core: &Core,
    tx: &Tx<'_>,
    batch: &[NewMessage],
    now: Now,
) -> StoreResult<StoreResult<(Vec<Enqueued>, bool)>> {
    tx.batch_execute("SAVEPOINT op").await.map_err(db)?;
    let r = core.enqueue_many(tx, batch, now, false).await;
    let end = if r.is_ok() {
        "RELEASE SAVEPOINT op"
    } else {
        "ROLLBACK TO SAVEPOINT op; RELEASE SAVEPOINT op"
    };
    tx.batch_execute(end).await.map_err(db)?;
    Ok(r)
}

/// Sends each call its answer; with `failed`, every success is replaced by
/// that failure (nothing of the batch committed), and so is every call the
/// batch did not reach.
fn answer(
    replies: Vec<oneshot::Sender<StoreResult<Done>>>,
    results: Vec<Option<StoreResult<Done>>>,
    failed: Option<&StoreError>,
) {
    for (reply, r) in replies.into_iter().zip(results) {
        let r = match (r, failed) {
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
