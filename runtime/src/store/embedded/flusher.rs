//! Group commit and checkpoints: the flusher thread, which makes applied
//! batches durable (one `fdatasync` covers every batch applied before it
//! started), and the checkpoint thread it starts, which copies older log
//! files into sled's image ([`super::image`]) and deletes them.
//!
//! How an acknowledgement is made durable: a verb commits its batch
//! ([`super::Inner::commit`], in memory and into the log buffer), then awaits
//! [`Flusher::durable`], which returns once a flush that started after the
//! commit has synced. While attempts are running, a flush waits up to
//! `group_commit_window` for their outcomes to share its fsync.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use super::image::SledImage;
use super::{Pending, wal};
use crate::store::{StoreError, StoreResult};

#[derive(Debug, Clone, Default)]
pub(super) struct FlushDone {
    /// Id of the last flush that finished.
    pub(super) id: u64,
    /// Number of the last batch made durable (every batch up to it is).
    covered: u64,
    /// Its error, if it failed.
    error: Option<Arc<StoreErrorRepr>>,
    pub(super) flushes: u64,
    /// Verbs made durable, over all flushes.
    pub(super) ops: u64,
    /// Flushes per batch size (verbs covered), non-cumulative, by [`FLUSH_BATCH_BOUNDS`].
    pub(super) batches: [u64; FLUSH_BATCH_BOUNDS.len()],
}

pub(super) use crate::store::COMMIT_BATCH_BOUNDS as FLUSH_BATCH_BOUNDS;

#[derive(Debug)]
struct StoreErrorRepr {
    kind: std::io::ErrorKind,
    raw: Option<i32>,
    message: String,
}

struct FlushState {
    /// Id the next flush will get.
    next: u64,
    pending: bool,
    /// Verbs waiting for the next flush (its batch size).
    waiters: u64,
    stop: bool,
}

pub(super) struct Flusher {
    state: Arc<(Mutex<FlushState>, Condvar)>,
    /// An injected I/O failure every flush reports while set (fault tests).
    pub(super) fault: Arc<Mutex<Option<std::io::ErrorKind>>>,
    pub(super) done: watch::Sender<FlushDone>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The checkpoint store (shared with the flusher thread, for fault tests).
    pub(super) image: Arc<SledImage>,
    /// Deliveries in the leased state over all handlers (attempts running):
    /// kept by `Inner::commit` from the leased counts, read by the flusher.
    pub(super) in_flight: Arc<AtomicU64>,
    /// Attempts settled since the last flush took the log: kept by
    /// `Inner::commit`, reset by the flusher.
    pub(super) settled: Arc<AtomicU64>,
    /// The writers' log buffer, for the number of the last batch applied.
    pending: Arc<Mutex<Pending>>,
    /// Verbs that found their batch already durable and waited for no flush.
    covered_early: AtomicU64,
}

/// What the flusher goes by besides the log.
pub(super) struct FlushSettings {
    /// Log file size that starts a checkpoint.
    pub(super) checkpoint_bytes: u64,
    /// Longest wait for running attempts' outcomes to join a flush.
    pub(super) window: Duration,
    /// Deliveries leased and not yet settled (attempts running).
    pub(super) in_flight: Arc<AtomicU64>,
    /// Attempts settled since the last flush took the log.
    pub(super) settled: Arc<AtomicU64>,
}

/// The flusher: waits for someone to need durability, writes every buffered
/// log record and syncs; all waiters registered before it started are covered.
fn flush_loop(
    state: &(Mutex<FlushState>, Condvar),
    done: &watch::Sender<FlushDone>,
    fault: &Mutex<Option<std::io::ErrorKind>>,
    disk: &Arc<SledImage>,
    mut log: wal::LogFile,
    pending: &Arc<Mutex<Pending>>,
    settings: &FlushSettings,
) {
    // Bytes not yet written (a failed write is retried before anything newer).
    let mut carry: Vec<u8> = Vec::new();
    let mut checkpointing: Option<JoinHandle<()>> = None;
    // The log so far and the number of its last batch.
    let take_log = || {
        let mut p = pending.lock().unwrap_or_else(|p| p.into_inner());
        (std::mem::take(&mut p.log), p.batch)
    };
    let mut covered = 0;
    loop {
        let (id, batch) = {
            let (lock, cv) = state;
            let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
            while !s.pending && !s.stop {
                s = cv.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            // Gather: while attempts are running and finishing (one settled
            // since the last flush), more outcomes will want a flush soon;
            // wait for them (each waiter notifies) up to the window. Attempts
            // that run long without finishing (a spinning guest) make no one
            // wait: an enqueue then pays no window for outcomes that never come.
            let until = std::time::Instant::now() + settings.window;
            while s.pending
                && !s.stop
                && settings.in_flight.load(Ordering::Relaxed) > 0
                && settings.settled.load(Ordering::Relaxed) > 0
            {
                let left = until.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                s = cv
                    .wait_timeout(s, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            if !s.pending {
                // Stopping: write what is left and leave sled up to date, so a
                // clean shutdown needs no replay.
                drop(s);
                carry.extend_from_slice(&take_log().0);
                let _ = log.append_durable(&carry);
                if let Some(t) = checkpointing.take() {
                    let _ = t.join();
                }
                let at = log.position();
                if let Err(e) = disk.write_log(&*at.fs, &at.dir, u64::MAX) {
                    tracing::warn!(error = %e, "checkpoint on close failed; the log is kept");
                }
                break;
            }
            s.pending = false;
            s.next += 1;
            (s.next - 1, std::mem::take(&mut s.waiters))
        };
        settings.settled.store(0, Ordering::Relaxed);
        let (records, last) = take_log();
        carry.extend_from_slice(&records);
        let injected = *fault.lock().unwrap_or_else(|p| p.into_inner());
        let result = match injected {
            Some(kind) => Err(wal::Failure::NotWritten(std::io::Error::new(
                kind,
                "injected fault",
            ))),
            None => log.append_durable(&carry),
        };
        let result = match result {
            Ok(()) => {
                carry.clear();
                covered = last;
                if log.len() > settings.checkpoint_bytes {
                    checkpoint(disk, &mut log, &mut checkpointing);
                }
                Ok(())
            }
            // Written but not known durable: never write these bytes twice.
            Err(wal::Failure::NotSynced(e)) => {
                carry.clear();
                Err(e)
            }
            Err(wal::Failure::NotWritten(e)) => Err(e),
        };
        done.send_modify(|d| {
            d.id = id;
            d.covered = covered;
            d.flushes += 1;
            d.ops += batch;
            let i = FLUSH_BATCH_BOUNDS
                .iter()
                .position(|b| batch <= *b)
                .unwrap_or(0);
            d.batches[i] += 1;
            d.error = result.err().map(|e| {
                Arc::new(StoreErrorRepr {
                    kind: e.kind(),
                    raw: e.raw_os_error(),
                    message: e.to_string(),
                })
            });
        });
    }
}

/// Moves to a new log file, then, on a thread of its own so appends to the new
/// file never wait for sled, copies the records of the older files to sled
/// and deletes them. The changes are read back from those files rather than
/// kept in memory since the last checkpoint. One checkpoint at a time; a
/// failure keeps the files, so the next checkpoint reads them again and
/// nothing is lost.
fn checkpoint(disk: &Arc<SledImage>, log: &mut wal::LogFile, running: &mut Option<JoinHandle<()>>) {
    if running.as_ref().is_some_and(|t| !t.is_finished()) {
        return;
    }
    if let Some(t) = running.take() {
        let _ = t.join();
    }
    let next = match log.create_next_after() {
        Ok(next) => next,
        Err(e) => return tracing::warn!(error = %e, "checkpoint: cannot start a new log file"),
    };
    let at = next.position();
    *log = next;
    let disk = Arc::clone(disk);
    let spawned = std::thread::Builder::new()
        .name("sluice-checkpoint".into())
        .spawn(move || {
            crate::priority::background_thread("sluice-checkpoint");
            let started = std::time::Instant::now();
            let bytes = match disk.write_log(&*at.fs, &at.dir, at.number) {
                Ok(bytes) => bytes,
                Err(e) => {
                    return tracing::warn!(error = %e, "checkpoint: sled write failed; keeping the log");
                }
            };
            tracing::debug!(
                bytes,
                ms = started.elapsed().as_millis() as u64,
                "checkpoint written to sled"
            );
            if let Err(e) = wal::delete_before(&*at.fs, &at.dir, at.number) {
                tracing::warn!(error = %e, "checkpoint: cannot delete old log files");
            }
        });
    match spawned {
        Ok(t) => *running = Some(t),
        Err(e) => tracing::warn!(error = %e, "checkpoint: cannot start its thread"),
    }
}

impl Flusher {
    /// Starts the flusher thread. It owns the log file and starts checkpoints.
    pub(super) fn start(
        disk: SledImage,
        log: wal::LogFile,
        pending: Arc<Mutex<Pending>>,
        settings: FlushSettings,
    ) -> Flusher {
        let state = Arc::new((
            Mutex::new(FlushState {
                next: 1,
                pending: false,
                waiters: 0,
                stop: false,
            }),
            Condvar::new(),
        ));
        let (done, _) = watch::channel(FlushDone::default());
        let fault: Arc<Mutex<Option<std::io::ErrorKind>>> = Arc::default();
        let image = Arc::new(disk);
        let in_flight = settings.in_flight.clone();
        let settled = settings.settled.clone();
        let thread = {
            let (state, done, fault) = (state.clone(), done.clone(), fault.clone());
            let (disk, pending) = (Arc::clone(&image), Arc::clone(&pending));
            std::thread::Builder::new()
                .name("sluice-flusher".into())
                .spawn(move || {
                    flush_loop(&state, &done, &fault, &disk, log, &pending, &settings);
                })
                .expect("spawn flusher thread")
        };
        Flusher {
            state,
            fault,
            done,
            thread: Mutex::new(Some(thread)),
            image,
            in_flight,
            settled,
            pending,
            covered_early: AtomicU64::new(0),
        }
    }

    /// Verbs made durable so far: those a flush covered plus those that found
    /// their batch already durable.
    pub(super) fn durable_ops(&self) -> u64 {
        self.done.borrow().ops + self.covered_early.load(Ordering::Relaxed)
    }

    /// Waits until everything applied before this call is on disk: for the
    /// first successful flush that took the log after the caller's batch was
    /// applied (a flush that started earlier but took it covers it too), or
    /// the failure of a flush that started after this call.
    pub(super) async fn durable(&self) -> StoreResult<()> {
        let mut rx = self.done.subscribe();
        let batch = self.pending.lock().unwrap_or_else(|p| p.into_inner()).batch;
        if rx.borrow().covered >= batch {
            // Made durable by a flush that took the log after our commit.
            // Counted apart: a `send_modify` would wake every waiter.
            self.covered_early.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let target = {
            let (lock, cv) = &*self.state;
            let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
            if s.stop {
                return Err(StoreError::Closed);
            }
            // A flusher gathering for running attempts needs waking only
            // when the last one has reported; otherwise its window ends it.
            let wake = !s.pending || self.in_flight.load(Ordering::Relaxed) == 0;
            s.pending = true;
            s.waiters += 1;
            if wake {
                cv.notify_one();
            }
            s.next
        };
        let done = rx
            .wait_for(|d| d.covered >= batch || d.id >= target)
            .await
            .map_err(|_| StoreError::Closed)?;
        if done.covered >= batch {
            return Ok(());
        }
        match &done.error {
            None => Ok(()),
            Some(e) => {
                let io = match e.raw {
                    Some(raw) => std::io::Error::from_raw_os_error(raw),
                    None => std::io::Error::new(e.kind, e.message.clone()),
                };
                Err(StoreError::from_io(io))
            }
        }
    }

    pub(super) fn stop(&self) {
        {
            let (lock, cv) = &*self.state;
            let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
            s.stop = true;
            cv.notify_one();
        }
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}
