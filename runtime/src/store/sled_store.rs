//! The embedded backend: sled 0.34 on disk, an in-memory image, a write-ahead
//! log, group commit.
//!
//! # Design
//! - **One tree, atomic batches.** All indexes share one ordered key space (see
//!   [`super::keys`]), so each verb is one batch of blind writes: applied
//!   atomically to the in-memory image ([`MemTree`]), appended as one record to
//!   the write-ahead log ([`wal`]), and written to sled as part of one atomic
//!   `apply_batch` at the next checkpoint.
//! - **Reads from memory.** Every read and ordered scan is served by the image,
//!   so a verb costs a few map operations; sled is read only on open (to load the
//!   image) and written only at checkpoints, off the hot path.
//! - **One writer at a time.** Verbs that change state read and write under a
//!   mutex held only for in-memory work (microseconds), never across a flush.
//! - **Group commit.** A dedicated flusher thread writes the buffered log records
//!   and `fdatasync`s them whenever someone waits for durability; every writer
//!   whose batch was applied before a flush *started* is covered by it, so a burst
//!   of N writers costs about two fsyncs, not N. A verb returns only after a flush
//!   covering it succeeded. That includes a duplicate enqueue: it waits until the
//!   original is durable.
//! - **Checkpoints.** When the log file passes `StoreConfig::checkpoint_bytes`,
//!   the flusher starts a new file and a checkpoint thread copies the older
//!   files' records (those sled lacks) into sled's image ([`super::image`]) as
//!   one atomic batch, and deletes the files.
//!   Nothing but the log holds those changes meanwhile, so the only copy of
//!   the store in memory is the image.
//! - **Leases are not flushed on their own.** A lease lost in a crash only
//!   means the delivery is ready again on restart (at-least-once); the attempt's
//!   completion is flushed, and its flush carries the lease with it.
//! - **Counts in memory, persisted with each batch.** Per-(handler, state)
//!   counts give stats and backpressure without scanning.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use uuid::Uuid;

use super::attempt_codec;
use super::image::{SledImage, sled_error};
use super::keys::{self, Key, u64_at, uuid_at};
use super::memtree::MemTree;
use super::wal;
use super::*;
use crate::clock::{Clock, Timestamp};
use crate::names::{validate_handler, validate_key, validate_topic};
use crate::policy::Disposition;

/// A delivery as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeliveryRec {
    id: DeliveryId,
    message_id: MessageId,
    handler: String,
    ordering_key: Option<String>,
    not_before: Option<Timestamp>,
    /// Enqueue order (global sequence).
    seq: u64,
    state: DeliveryState,
    /// Scheduled or retrying: when due.
    due: Option<Timestamp>,
    lease: Option<(u64, Timestamp)>,
    ready_since: Option<Timestamp>,
    /// Attempt number within the round (1-based once leased).
    attempt: u32,
    /// Attempt records written, across rounds.
    attempt_records: u32,
    round: u32,
    dead_reason: Option<String>,
    dead_at: Option<Timestamp>,
    created_at: Timestamp,
}

/// The embedded store on sled 0.34. Cheap to clone; clones share the database.
#[derive(Clone)]
pub struct SledStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
    }
}

struct Inner {
    tree: MemTree,
    config: StoreConfig,
    clock: Arc<dyn Clock>,
    /// Serialises state changes; held for in-memory work only.
    writer: Mutex<Writer>,
    /// Handler records by name; written under `writer`, read by anyone.
    handlers: RwLock<BTreeMap<String, HandlerRecord>>,
    flusher: Flusher,
    /// Applied batches not yet logged or checkpointed; appended under `writer`.
    pending: Arc<Mutex<Pending>>,
    ready: watch::Sender<u64>,
    /// Bumped whenever a handler is registered, changed or removed.
    handlers_changed: watch::Sender<u64>,
}

/// What the flusher and the checkpoint take from the writers.
#[derive(Default)]
struct Pending {
    /// Log records not yet written; taken by the flusher.
    log: Vec<u8>,
    /// Number of the last batch applied.
    batch: u64,
}

struct Writer {
    counts: HashMap<(String, DeliveryState), u64>,
    seq: u64,
    rng: StdRng,
    prune_cursor: Vec<u8>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.flusher.stop();
    }
}

impl SledStore {
    /// Opens (or creates) the store in `dir`, with time from `clock`.
    ///
    /// Leases held by a previous process are released at once: their attempts are
    /// recorded as [`Outcome::Interrupted`] (they count as attempts) and the
    /// deliveries become ready, or dead if that was their last attempt.
    pub fn open(dir: &Path, config: StoreConfig, clock: Arc<dyn Clock>) -> StoreResult<SledStore> {
        std::fs::create_dir_all(dir).map_err(StoreError::from_io)?;
        let db = open_db(dir)?;
        if db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == LEGACY_TREE.as_bytes())
        {
            return Err(StoreError::Corrupt(format!(
                "{} was written by an older sluice (one sled key per store key); \
                 this version reads only its checkpoint image: drain it with the older \
                 version or start with an empty data directory",
                dir.display()
            )));
        }
        let wal_dir = dir.join("wal");
        std::fs::create_dir_all(&wal_dir).map_err(StoreError::from_io)?;
        let (image, entries, checkpointed) = SledImage::open(db, config.checkpoint_bytes)?;
        let tree = MemTree::from_entries(entries);
        let batch = replay(checkpointed, &tree, &wal_dir)?;
        let log = wal::LogFile::create_next(&wal_dir).map_err(StoreError::from_io)?;
        if batch == checkpointed {
            // sled holds every batch in the older files; otherwise they stay
            // until the next checkpoint has written them to sled.
            log.delete_older().map_err(StoreError::from_io)?;
        }
        let mut counts = HashMap::new();
        for kv in tree.scan_prefix([keys::COUNT]) {
            let (k, v) = kv;
            let rest = &k[1..];
            let Some(nul) = rest.iter().position(|b| *b == 0) else {
                continue;
            };
            let handler = String::from_utf8_lossy(&rest[..nul]).into_owned();
            let Some(state) = rest
                .get(nul + 1)
                .and_then(|b| DeliveryState::ALL.get(*b as usize))
            else {
                continue;
            };
            counts.insert((handler, *state), u64_at(&v, 0).unwrap_or(0));
        }
        let seq = tree.get(keys::SEQ).and_then(|v| u64_at(&v, 0)).unwrap_or(0);
        let mut handlers = BTreeMap::new();
        for kv in tree.scan_prefix([keys::HANDLER]) {
            let (_, v) = kv;
            let h: HandlerRecord = decode_json(&v)?;
            handlers.insert(h.name.clone(), h);
        }
        let (ready, _) = watch::channel(0);
        let (handlers_changed, _) = watch::channel(0);
        let pending = Arc::new(Mutex::new(Pending {
            batch,
            log: Vec::new(),
        }));
        let leased = counts
            .iter()
            .filter(|((_, s), _)| *s == DeliveryState::Leased)
            .map(|(_, n)| *n)
            .sum();
        let settings = FlushSettings {
            checkpoint_bytes: config.checkpoint_bytes,
            window: config.group_commit_window,
            in_flight: Arc::new(AtomicU64::new(leased)),
        };
        let inner = Arc::new(Inner {
            flusher: Flusher::start(image, log, pending.clone(), settings),
            pending,
            tree,
            config,
            clock,
            writer: Mutex::new(Writer {
                counts,
                seq,
                rng: StdRng::from_os_rng(),
                prune_cursor: Vec::new(),
            }),
            handlers: RwLock::new(handlers),
            ready,
            handlers_changed,
        });
        let store = SledStore { inner };
        store.release_all_leases()?;
        Ok(store)
    }

    fn release_all_leases(&self) -> StoreResult<()> {
        let inner = &self.inner;
        loop {
            let mut w = inner.lock();
            let mut txn = Txn::new(&inner.tree);
            let now = inner.clock.now();
            let leased: Vec<_> = inner.tree.scan_prefix([keys::LEASED]).take(512).collect();
            if leased.is_empty() {
                return Ok(());
            }
            for (k, _) in leased {
                let id = uuid_at(&k, 9).ok_or_else(|| corrupt("lease key"))?;
                txn.del(k);
                let mut rec = txn.delivery(id)?;
                let reason = "process restarted".to_string();
                inner.record_interrupted(&mut txn, &mut rec, &reason, now)?;
                let max = inner
                    .policy(&rec.handler)
                    .map(|p| p.max_attempts())
                    .unwrap_or(1);
                if rec.attempt >= max {
                    let reason = format!(
                        "attempts exhausted ({} of {max}): interrupted: {reason}",
                        rec.attempt
                    );
                    inner.kill(&mut txn, &mut rec, reason, now)?;
                } else {
                    inner.move_to(&mut txn, &mut rec, DeliveryState::Ready);
                    inner.activate(&mut txn, &mut rec, now, None, false);
                }
                txn.put_delivery(&rec)?;
            }
            inner.commit(&mut w, txn)?;
        }
    }

    /// Makes every flush fail with `fault` (e.g. `StorageFull`) until called with
    /// `None`: a stand-in for a full disk or a failing device in fault tests.
    /// Writes made meanwhile are not acknowledged; they become durable with the
    /// first flush after the fault clears.
    pub fn inject_fault(&self, fault: Option<std::io::ErrorKind>) {
        *self
            .inner
            .flusher
            .fault
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = fault;
    }

    /// Makes every checkpoint fail while `on` (fault tests): the log files are
    /// kept and the checkpoint's writes go to the next one.
    pub fn inject_checkpoint_fault(&self, on: bool) {
        self.inner.flusher.image.set_fault(on);
    }

    /// Flushes done so far (group commit: compare with the verbs that waited).
    pub fn flush_count(&self) -> u64 {
        self.inner.flusher.done.borrow().flushes
    }
}

/// The sled tree of the layout before the checkpoint image (one sled key per
/// store key), refused on open.
const LEGACY_TREE: &str = "queue";

/// Opens sled. A store dropped a moment ago in this process may still hold
/// its file lock while sled's IO threads finish; wait up to 5 s for it.
pub(super) fn open_db(dir: &Path) -> StoreResult<sled::Db> {
    let config = sled::Config::new()
        .path(dir)
        .mode(sled::Mode::HighThroughput)
        // Read only on open and written at checkpoints: the image serves reads.
        .cache_capacity(64 << 20)
        .flush_every_ms(None);
    let mut tries = 0;
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && tries < 500 =>
            {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other.map_err(sled_error),
        }
    }
}

/// Re-applies the log's batches that sled does not hold yet (see [`wal`]) to the
/// image; returns the number of the last batch.
fn replay(checkpointed: u64, tree: &MemTree, wal_dir: &Path) -> StoreResult<u64> {
    let mut last = checkpointed;
    let mut batches = 0;
    wal::for_each(wal_dir, u64::MAX, |number, ops| {
        if number > last {
            tree.apply(ops);
            last = number;
            batches += 1;
        }
    })
    .map_err(StoreError::from_io)?;
    if batches > 0 {
        tracing::info!(batches, "replayed the write-ahead log");
    }
    Ok(last)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("malformed {what}"))
}

fn encode<T: Serialize>(v: &T) -> StoreResult<Vec<u8>> {
    postcard::to_stdvec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<'a, T: Deserialize<'a>>(b: &'a [u8]) -> StoreResult<T> {
    postcard::from_bytes(b).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode_json<T: Serialize>(v: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode_json<'a, T: Deserialize<'a>>(b: &'a [u8]) -> StoreResult<T> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn new_id(t: Timestamp) -> Uuid {
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        t.0 / 1000,
        ((t.0 % 1000) * 1_000_000) as u32,
    );
    Uuid::new_v7(ts)
}

// ---------------------------------------------------------------------------
// Transactions: an overlay of writes, applied as one batch.

/// Pending writes of one verb, readable before they are applied.
struct Txn<'a> {
    tree: &'a MemTree,
    overlay: BTreeMap<Vec<u8>, Option<Bytes>>,
    counts: HashMap<(String, DeliveryState), i64>,
    /// Something became ready: wake producers after the commit.
    woke: bool,
}

impl<'a> Txn<'a> {
    fn new(tree: &'a MemTree) -> Txn<'a> {
        Txn {
            tree,
            overlay: BTreeMap::new(),
            counts: HashMap::new(),
            woke: false,
        }
    }

    fn get(&self, k: &[u8]) -> StoreResult<Option<Bytes>> {
        match self.overlay.get(k) {
            Some(v) => Ok(v.clone()),
            None => Ok(self.tree.get(k)),
        }
    }

    /// Sets `k`. The value is stored at its exact size (an encoder's spare
    /// capacity would otherwise stay allocated as long as the key lives).
    fn put(&mut self, k: Vec<u8>, v: Vec<u8>) {
        self.overlay
            .insert(k, Some(Bytes::from(v.into_boxed_slice())));
    }

    fn del(&mut self, k: Vec<u8>) {
        self.overlay.insert(k, None);
    }

    /// The first entry under `prefix`, seeing this transaction's own writes.
    fn first(&self, prefix: &[u8]) -> StoreResult<Option<(Vec<u8>, Bytes)>> {
        let from_tree = self
            .tree
            .scan_prefix(prefix)
            .find(|(k, _)| !matches!(self.overlay.get(k), Some(None)));
        let from_overlay = self
            .overlay
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .find_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())));
        Ok(match (from_tree, from_overlay) {
            // The same key in both: the overlay's value is the newer.
            (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
            (a, b) => a.or(b),
        })
    }

    fn delivery(&self, id: DeliveryId) -> StoreResult<DeliveryRec> {
        let v = self.get(&Key::new(keys::DELIVERY).id(id).build())?;
        decode(&v.ok_or(StoreError::UnknownDelivery(id))?)
    }

    fn put_delivery(&mut self, rec: &DeliveryRec) -> StoreResult<()> {
        let v = encode(rec)?;
        self.put(Key::new(keys::DELIVERY).id(rec.id).build(), v);
        Ok(())
    }

    fn message(&self, id: MessageId) -> StoreResult<Message> {
        let v = self.get(&Key::new(keys::MESSAGE).id(id).build())?;
        decode(&v.ok_or(StoreError::UnknownMessage(id))?)
    }

    fn count(&mut self, handler: &str, state: DeliveryState, delta: i64) {
        *self.counts.entry((handler.to_string(), state)).or_default() += delta;
    }
}

// ---------------------------------------------------------------------------
// Group commit.

#[derive(Debug, Clone, Default)]
struct FlushDone {
    /// Id of the last flush that finished.
    id: u64,
    /// Its error, if it failed.
    error: Option<Arc<StoreErrorRepr>>,
    flushes: u64,
    /// Verbs made durable, over all flushes.
    ops: u64,
    /// Flushes per batch size (verbs covered), non-cumulative, by [`FLUSH_BATCH_BOUNDS`].
    batches: [u64; FLUSH_BATCH_BOUNDS.len()],
}

/// Upper bounds of the group-commit batch-size histogram (`u64::MAX` = +Inf).
const FLUSH_BATCH_BOUNDS: [u64; 12] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, u64::MAX];

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

struct Flusher {
    state: Arc<(Mutex<FlushState>, Condvar)>,
    /// An injected I/O failure every flush reports while set (fault tests).
    fault: Arc<Mutex<Option<std::io::ErrorKind>>>,
    done: watch::Sender<FlushDone>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The checkpoint store (shared with the flusher thread, for fault tests).
    image: Arc<SledImage>,
    /// Deliveries in the leased state over all handlers (attempts running):
    /// kept by `Inner::commit` from the leased counts, read by the flusher.
    in_flight: Arc<AtomicU64>,
}

/// What the flusher goes by besides the log.
struct FlushSettings {
    /// Log file size that starts a checkpoint.
    checkpoint_bytes: u64,
    /// Longest wait for running attempts' outcomes to join a flush.
    window: Duration,
    /// Deliveries leased and not yet settled (attempts running).
    in_flight: Arc<AtomicU64>,
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
    let take_log = || std::mem::take(&mut pending.lock().unwrap_or_else(|p| p.into_inner()).log);
    loop {
        let (id, batch) = {
            let (lock, cv) = state;
            let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
            while !s.pending && !s.stop {
                s = cv.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            // Gather: while attempts are running, their outcomes will want a
            // flush soon; wait for them (each waiter notifies) up to the window.
            let until = std::time::Instant::now() + settings.window;
            while s.pending && !s.stop && settings.in_flight.load(Ordering::Relaxed) > 0 {
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
                carry.extend_from_slice(&take_log());
                let _ = log.append_durable(&carry);
                if let Some(t) = checkpointing.take() {
                    let _ = t.join();
                }
                let (dir, _) = log.position();
                if let Err(e) = disk.write_log(&dir, u64::MAX) {
                    tracing::warn!(error = %e, "checkpoint on close failed; the log is kept");
                }
                break;
            }
            s.pending = false;
            s.next += 1;
            (s.next - 1, std::mem::take(&mut s.waiters))
        };
        carry.extend_from_slice(&take_log());
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
    let (dir, number) = next.position();
    *log = next;
    let disk = Arc::clone(disk);
    let spawned = std::thread::Builder::new()
        .name("sluice-checkpoint".into())
        .spawn(move || {
            lower_priority();
            let started = std::time::Instant::now();
            let bytes = match disk.write_log(&dir, number) {
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
            if let Err(e) = wal::delete_before(&dir, number) {
                tracing::warn!(error = %e, "checkpoint: cannot delete old log files");
            }
        });
    match spawned {
        Ok(t) => *running = Some(t),
        Err(e) => tracing::warn!(error = %e, "checkpoint: cannot start its thread"),
    }
}

/// Gives the calling thread the lowest CPU priority (nice 19; per thread on
/// Linux): a checkpoint only bounds replay time, so it yields the cores to
/// attempts and to the flusher instead of stretching their latency.
fn lower_priority() {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), 19) {
        tracing::debug!(error = %e, "checkpoint: cannot lower the thread's priority");
    }
}

impl Flusher {
    /// Starts the flusher thread. It owns the log file and starts checkpoints.
    fn start(
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
        let thread = {
            let (state, done, fault) = (state.clone(), done.clone(), fault.clone());
            let disk = Arc::clone(&image);
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
        }
    }

    /// Waits until everything applied before this call is on disk.
    async fn durable(&self) -> StoreResult<()> {
        let mut rx = self.done.subscribe();
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
            .wait_for(|d| d.id >= target)
            .await
            .map_err(|_| StoreError::Closed)?;
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

    fn stop(&self) {
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

// ---------------------------------------------------------------------------
// State changes, shared by the verbs.

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn policy(&self, handler: &str) -> Option<HandlerPolicy> {
        self.handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(handler)
            .map(|h| h.policy.clone())
    }

    /// Replaces (or with `None` removes) a handler's cached record, after its
    /// batch is committed, and signals the change.
    fn set_handler(&self, name: &str, record: Option<HandlerRecord>) {
        let mut handlers = self.handlers.write().unwrap_or_else(|p| p.into_inner());
        match record {
            Some(record) => handlers.insert(name.to_string(), record),
            None => handlers.remove(name),
        };
        drop(handlers);
        self.handlers_changed.send_modify(|n| *n += 1);
    }

    fn handler_record(&self, name: &str) -> StoreResult<HandlerRecord> {
        self.handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::UnknownHandler(name.to_string()))
    }

    /// Applies `txn` as one atomic batch, with the counts and sequence it changed.
    fn commit(&self, w: &mut Writer, txn: Txn<'_>) -> StoreResult<()> {
        let mut ops: wal::Ops = txn.overlay.into_iter().collect();
        let mut new_counts = Vec::with_capacity(txn.counts.len());
        for ((h, s), delta) in txn.counts {
            if delta == 0 {
                continue;
            }
            let old = w.counts.get(&(h.clone(), s)).copied().unwrap_or(0);
            let new = (old as i64 + delta).max(0) as u64;
            if s == DeliveryState::Leased {
                let in_flight = &self.flusher.in_flight;
                if new > old {
                    in_flight.fetch_add(new - old, Ordering::Relaxed);
                } else {
                    in_flight.fetch_sub(old - new, Ordering::Relaxed);
                }
            }
            ops.push((
                Key::new(keys::COUNT).name(&h).byte(s as u8).build(),
                Some(Bytes::copy_from_slice(&new.to_be_bytes())),
            ));
            new_counts.push(((h, s), new));
        }
        ops.push((
            keys::SEQ.to_vec(),
            Some(Bytes::copy_from_slice(&w.seq.to_be_bytes())),
        ));
        {
            // Batch numbers are taken here, under `writer`, so they follow
            // the order batches are applied in.
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.batch += 1;
            let number = pending.batch;
            wal::encode(&mut pending.log, number, &ops);
        }
        self.tree.apply(ops);
        for (k, v) in new_counts {
            w.counts.insert(k, v);
        }
        if txn.woke {
            self.ready.send_modify(|n| *n += 1);
        }
        Ok(())
    }

    fn next_seq(w: &mut Writer) -> u64 {
        w.seq += 1;
        w.seq
    }

    /// Counts a state change and sets it on the record.
    fn move_to(&self, txn: &mut Txn<'_>, rec: &mut DeliveryRec, to: DeliveryState) {
        txn.count(&rec.handler, rec.state, -1);
        txn.count(&rec.handler, to, 1);
        rec.state = to;
    }

    /// Places a new or replayed delivery: behind its key if the key is busy,
    /// else scheduled or ready. `rec.state` must already be counted by the caller
    /// as `Blocked` placeholder-free: this sets and counts the final state.
    fn place(&self, txn: &mut Txn<'_>, rec: &mut DeliveryRec, now: Timestamp) -> StoreResult<()> {
        if let Some(key) = rec.ordering_key.clone() {
            let head = Key::new(keys::KEY_HEAD)
                .name(&rec.handler)
                .name(&key)
                .build();
            match txn.get(&head)?.and_then(|v| uuid_at(&v, 0)) {
                Some(holder) if holder != rec.id => {
                    txn.put(
                        Key::new(keys::BLOCKED)
                            .name(&rec.handler)
                            .name(&key)
                            .u64(rec.seq)
                            .build(),
                        rec.id.as_bytes().to_vec(),
                    );
                    txn.count(&rec.handler, DeliveryState::Blocked, 1);
                    rec.state = DeliveryState::Blocked;
                    return Ok(());
                }
                _ => txn.put(head, rec.id.as_bytes().to_vec()),
            }
        }
        let nb = rec.not_before;
        self.activate(txn, rec, now, nb, true);
        Ok(())
    }

    /// Moves a delivery that holds its key (or has none) to scheduled or ready.
    /// A `new` delivery is not counted in any state yet.
    fn activate(
        &self,
        txn: &mut Txn<'_>,
        rec: &mut DeliveryRec,
        now: Timestamp,
        not_before: Option<Timestamp>,
        new: bool,
    ) {
        let state = if not_before.is_some_and(|t| t > now) {
            DeliveryState::Scheduled
        } else {
            DeliveryState::Ready
        };
        if new {
            txn.count(&rec.handler, state, 1);
            rec.state = state;
        } else {
            self.move_to(txn, rec, state);
        }
        self.index_active(txn, rec, now, not_before);
    }

    fn index_active(
        &self,
        txn: &mut Txn<'_>,
        rec: &mut DeliveryRec,
        now: Timestamp,
        not_before: Option<Timestamp>,
    ) {
        if rec.state == DeliveryState::Scheduled {
            let due = not_before.unwrap_or(now);
            rec.due = Some(due);
            txn.put(
                Key::new(keys::SCHEDULED).time(due).id(rec.id).build(),
                Vec::new(),
            );
        } else {
            rec.due = None;
            rec.ready_since = Some(now);
            let mut v = rec.id.as_bytes().to_vec();
            v.extend_from_slice(&now.0.to_be_bytes());
            txn.put(
                Key::new(keys::READY)
                    .name(&rec.handler)
                    .u64(rec.seq)
                    .build(),
                v,
            );
            txn.woke = true;
        }
    }

    /// Removes the index entry of the delivery's current state.
    fn unindex(&self, txn: &mut Txn<'_>, rec: &DeliveryRec) {
        let key = match rec.state {
            DeliveryState::Ready => Key::new(keys::READY).name(&rec.handler).u64(rec.seq),
            DeliveryState::Scheduled | DeliveryState::Retrying => Key::new(keys::SCHEDULED)
                .time(rec.due.unwrap_or(Timestamp(0)))
                .id(rec.id),
            DeliveryState::Leased => Key::new(keys::LEASED)
                .time(rec.lease.map(|l| l.1).unwrap_or(Timestamp(0)))
                .id(rec.id),
            DeliveryState::Blocked => Key::new(keys::BLOCKED)
                .name(&rec.handler)
                .name(rec.ordering_key.as_deref().unwrap_or(""))
                .u64(rec.seq),
            DeliveryState::Dead => Key::new(keys::DEAD)
                .name(&rec.handler)
                .time(rec.dead_at.unwrap_or(Timestamp(0)))
                .id(rec.id),
            DeliveryState::Succeeded => return,
        };
        txn.del(key.build());
    }

    /// The delivery left the in-flight set for its key: hand the key to the next
    /// blocked delivery, if any.
    fn release_key(&self, txn: &mut Txn<'_>, rec: &DeliveryRec, now: Timestamp) -> StoreResult<()> {
        let Some(key) = &rec.ordering_key else {
            return Ok(());
        };
        let head = Key::new(keys::KEY_HEAD)
            .name(&rec.handler)
            .name(key)
            .build();
        if txn.get(&head)?.and_then(|v| uuid_at(&v, 0)) != Some(rec.id) {
            return Ok(());
        }
        let prefix = Key::new(keys::BLOCKED).name(&rec.handler).name(key).build();
        match txn.first(&prefix)? {
            Some((bkey, v)) => {
                txn.del(bkey);
                let next_id = uuid_at(&v, 0).ok_or_else(|| corrupt("blocked entry"))?;
                let mut next = txn.delivery(next_id)?;
                txn.put(head, next_id.as_bytes().to_vec());
                let nb = next.not_before;
                self.activate(txn, &mut next, now, nb, false);
                txn.put_delivery(&next)?;
            }
            None => txn.del(head),
        }
        Ok(())
    }

    /// Checks the lease and returns the delivery it covers.
    fn leased(&self, txn: &Txn<'_>, lease: &Lease) -> StoreResult<DeliveryRec> {
        let rec = txn.delivery(lease.delivery_id).map_err(|e| match e {
            StoreError::UnknownDelivery(id) => StoreError::LeaseLost(id),
            e => e,
        })?;
        if rec.state != DeliveryState::Leased || rec.lease.map(|l| l.0) != Some(lease.token) {
            return Err(StoreError::LeaseLost(lease.delivery_id));
        }
        Ok(rec)
    }

    /// Writes the outcome into the running attempt's record and drops the lease.
    fn finish_attempt(
        &self,
        txn: &mut Txn<'_>,
        rec: &mut DeliveryRec,
        report: AttemptReport,
        now: Timestamp,
    ) -> StoreResult<()> {
        let key = Key::new(keys::ATTEMPT)
            .id(rec.id)
            .u32(rec.attempt_records)
            .build();
        let mut attempt: AttemptRecord = match txn.get(&key)? {
            Some(v) => attempt_codec::decode(&v)?,
            None => AttemptRecord {
                number: rec.attempt,
                round: rec.round,
                started_at: now,
                finished_at: None,
                report: None,
            },
        };
        attempt.finished_at = Some(now);
        attempt.report = Some(report);
        txn.put(key, attempt_codec::encode(&attempt)?);
        if let Some((_, expires)) = rec.lease.take() {
            txn.del(Key::new(keys::LEASED).time(expires).id(rec.id).build());
        }
        Ok(())
    }

    fn record_interrupted(
        &self,
        txn: &mut Txn<'_>,
        rec: &mut DeliveryRec,
        reason: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        let module = self
            .handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&rec.handler)
            .map(|h| h.module_sha256.clone());
        let key = Key::new(keys::ATTEMPT)
            .id(rec.id)
            .u32(rec.attempt_records)
            .build();
        let started = match txn.get(&key)? {
            Some(v) => attempt_codec::decode(&v)?.started_at,
            None => now,
        };
        let report = AttemptReport::interrupted(
            reason,
            now.since(started).as_millis() as u64,
            module.unwrap_or_default(),
        );
        self.finish_attempt(txn, rec, report, now)
    }

    /// Dead-letters a delivery (its lease and index entry already removed).
    fn kill(
        &self,
        txn: &mut Txn<'_>,
        rec: &mut DeliveryRec,
        reason: String,
        now: Timestamp,
    ) -> StoreResult<()> {
        self.move_to(txn, rec, DeliveryState::Dead);

        rec.dead_at = Some(now);
        rec.due = None;
        txn.put(
            Key::new(keys::DEAD)
                .name(&rec.handler)
                .time(now)
                .id(rec.id)
                .build(),
            Vec::new(),
        );
        tracing::warn!(delivery = %rec.id, message_id = %rec.message_id, handler = %rec.handler, %reason, "delivery dead-lettered");
        rec.dead_reason = Some(reason);
        self.release_key(txn, rec, now)
    }

    /// Applies a failure's disposition to a delivery whose attempt was finished.
    fn dispose(
        &self,
        txn: &mut Txn<'_>,
        rec: &mut DeliveryRec,
        disposition: Disposition,
        now: Timestamp,
    ) -> StoreResult<()> {
        match disposition {
            Disposition::Retry { at } => {
                self.move_to(txn, rec, DeliveryState::Retrying);
                rec.due = Some(at);
                txn.put(
                    Key::new(keys::SCHEDULED).time(at).id(rec.id).build(),
                    Vec::new(),
                );
                Ok(())
            }
            Disposition::Dead { reason } => self.kill(txn, rec, reason, now),
        }
    }

    /// Deletes a delivery with its attempts and index entries.
    fn delete_delivery(
        &self,
        txn: &mut Txn<'_>,
        rec: &DeliveryRec,
        now: Timestamp,
    ) -> StoreResult<()> {
        self.unindex(txn, rec);
        if rec.state.is_open() {
            self.release_key(txn, rec, now)?;
        }
        txn.count(&rec.handler, rec.state, -1);
        txn.del(Key::new(keys::DELIVERY).id(rec.id).build());
        txn.del(
            Key::new(keys::MESSAGE_DELIVERY)
                .id(rec.message_id)
                .id(rec.id)
                .build(),
        );
        for kv in self
            .tree
            .scan_prefix(Key::new(keys::ATTEMPT).id(rec.id).build())
        {
            let (k, _) = kv;
            txn.del(k.to_vec());
        }
        Ok(())
    }

    /// Open deliveries of `topic`'s handlers, including this transaction's.
    fn depth(&self, w: &Writer, txn: &Txn<'_>, handlers: &[String]) -> u64 {
        let mut depth: i64 = 0;
        for h in handlers {
            for s in DeliveryState::ALL.iter().filter(|s| s.is_open()) {
                depth += w.counts.get(&(h.clone(), *s)).copied().unwrap_or(0) as i64;
                depth += txn.counts.get(&(h.clone(), *s)).copied().unwrap_or(0);
            }
        }
        depth.max(0) as u64
    }

    fn validate(&self, m: &NewMessage) -> StoreResult<()> {
        validate_topic(&m.topic)?;
        if m.payload.len() > self.config.max_payload_bytes {
            return Err(StoreError::PayloadTooLarge {
                size: m.payload.len(),
                max: self.config.max_payload_bytes,
            });
        }
        if let Some(k) = &m.ordering_key {
            validate_key("ordering key", k)?;
        }
        if let Some(k) = &m.idempotency_key {
            validate_key("idempotency key", k)?;
        }
        if m.headers.len() > self.config.max_headers {
            return Err(StoreError::InvalidInput(format!(
                "{} headers, at most {} allowed",
                m.headers.len(),
                self.config.max_headers
            )));
        }
        for (k, v) in &m.headers {
            if k.is_empty() || k.len() > 256 || v.len() > 4096 {
                return Err(StoreError::InvalidInput(format!(
                    "header {k:?}: names are 1 to 256 bytes, values at most 4096"
                )));
            }
        }
        Ok(())
    }

    /// Enqueues one message into `txn`. `outbox` messages skip the topic and
    /// depth checks: refusing them would turn a downstream backlog into upstream
    /// failures of work already done.
    fn enqueue_one(
        &self,
        w: &mut Writer,
        txn: &mut Txn<'_>,
        m: NewMessage,
        now: Timestamp,
        outbox: bool,
    ) -> StoreResult<Enqueued> {
        let subscribers: Vec<String> = self
            .handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|h| h.topic == m.topic)
            .map(|h| h.name.clone())
            .collect();
        if !outbox
            && txn
                .get(&Key::new(keys::TOPIC).name(&m.topic).build())?
                .is_none()
        {
            return Err(StoreError::UnknownTopic(m.topic));
        }
        if outbox && subscribers.is_empty() {
            // Kept for replay (a handler registered later can `replay --since`),
            // but nobody receives it now: say so loudly.
            tracing::warn!(topic = %m.topic, "outbox message published to a topic with no handler");
        }
        if let Some(key) = &m.idempotency_key {
            let ikey = Key::new(keys::IDEMPOTENCY)
                .name(&m.topic)
                .raw(key.as_bytes())
                .build();
            if let Some(v) = txn.get(&ikey)? {
                let at = Timestamp(u64_at(&v, 16).unwrap_or(0));
                if now < at.plus(self.config.idempotency_window) {
                    let id = uuid_at(&v, 0).ok_or_else(|| corrupt("idempotency entry"))?;
                    return Ok(Enqueued {
                        id,
                        duplicate: true,
                    });
                }
            }
        }
        if !outbox {
            let depth = self.depth(w, txn, &subscribers);
            let max = self.config.max_topic_depth;
            if depth + subscribers.len() as u64 > max {
                return Err(StoreError::QueueFull {
                    topic: m.topic,
                    depth,
                    max,
                });
            }
        }
        let id = new_id(now);
        let idempotency_key = m.idempotency_key.clone().unwrap_or_else(|| id.to_string());
        if let Some(key) = &m.idempotency_key {
            let mut v = id.as_bytes().to_vec();
            v.extend_from_slice(&now.0.to_be_bytes());
            txn.put(
                Key::new(keys::IDEMPOTENCY)
                    .name(&m.topic)
                    .raw(key.as_bytes())
                    .build(),
                v,
            );
            let expiry = now.plus(self.config.idempotency_window);
            txn.put(
                Key::new(keys::IDEMPOTENCY_EXPIRY)
                    .time(expiry)
                    .name(&m.topic)
                    .raw(key.as_bytes())
                    .build(),
                Vec::new(),
            );
        }
        let message = Message {
            id,
            topic: m.topic,
            payload: m.payload,
            ordering_key: m.ordering_key,
            idempotency_key,
            headers: m.headers,
            enqueued_at: now,
            enqueued_at_micros: self.clock.now_micros(),
            not_before: m.not_before,
        };
        txn.put(
            Key::new(keys::TOPIC_MESSAGE)
                .name(&message.topic)
                .id(id)
                .build(),
            Vec::new(),
        );
        for handler in subscribers {
            self.new_delivery(w, txn, &message, handler, now)?;
        }
        txn.put(Key::new(keys::MESSAGE).id(id).build(), encode(&message)?);
        Ok(Enqueued {
            id,
            duplicate: false,
        })
    }

    fn new_delivery(
        &self,
        w: &mut Writer,
        txn: &mut Txn<'_>,
        message: &Message,
        handler: String,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut rec = DeliveryRec {
            id: new_id(now),
            message_id: message.id,
            handler,
            ordering_key: message.ordering_key.clone(),
            not_before: message.not_before,
            seq: Self::next_seq(w),
            state: DeliveryState::Ready,
            due: None,
            lease: None,
            ready_since: None,
            attempt: 0,
            attempt_records: 0,
            round: 0,
            dead_reason: None,
            dead_at: None,
            created_at: now,
        };
        txn.put(
            Key::new(keys::MESSAGE_DELIVERY)
                .id(message.id)
                .id(rec.id)
                .build(),
            Vec::new(),
        );
        self.place(txn, &mut rec, now)?;
        txn.put_delivery(&rec)
    }

    fn status(&self, rec: DeliveryRec) -> StoreResult<DeliveryStatus> {
        let mut attempts = Vec::new();
        for kv in self
            .tree
            .scan_prefix(Key::new(keys::ATTEMPT).id(rec.id).build())
        {
            let (_, v) = kv;
            attempts.push(attempt_codec::decode(&v)?);
        }
        Ok(DeliveryStatus {
            id: rec.id,
            message_id: rec.message_id,
            handler: rec.handler,
            state: rec.state,
            next_at: rec.due,
            lease_expires_at: rec.lease.map(|l| l.1),
            dead_reason: rec.dead_reason,
            dead_at: rec.dead_at,
            created_at: rec.created_at,
            attempts,
        })
    }

    fn read_delivery(&self, id: DeliveryId) -> StoreResult<DeliveryRec> {
        Txn::new(&self.tree).delivery(id)
    }

    /// Dead deliveries matching `filter`, oldest death first (ties by handler,
    /// then id), starting after `after`. Reads at most `limit` matches per
    /// handler, then merges.
    fn dead_matching(
        &self,
        filter: &DeadFilter,
        after: Option<DeliveryId>,
        limit: usize,
    ) -> StoreResult<Vec<DeliveryRec>> {
        let handlers: Vec<String> = match &filter.handler {
            Some(h) => vec![self.handler_record(h)?.name],
            None => self
                .handlers
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .cloned()
                .collect(),
        };
        // The cursor's position in the global order (dead at, handler, id).
        let cursor = match after {
            Some(id) => {
                let rec = self.read_delivery(id)?;
                Some((rec.dead_at.unwrap_or(Timestamp(0)), rec.handler, id))
            }
            None => None,
        };
        let since = filter.since.unwrap_or(Timestamp(0));
        let mut found: Vec<(Timestamp, String, DeliveryRec)> = Vec::new();
        for h in handlers {
            let prefix = Key::new(keys::DEAD).name(&h).build();
            let lo = match &cursor {
                Some((at, ch, id)) if *at >= since => {
                    if &h < ch {
                        Key::new(keys::DEAD).name(&h).u64(at.0 + 1).build()
                    } else if &h == ch {
                        let mut k = Key::new(keys::DEAD).name(&h).time(*at).id(*id).build();
                        k.push(0);
                        k
                    } else {
                        Key::new(keys::DEAD).name(&h).time(*at).build()
                    }
                }
                _ => Key::new(keys::DEAD).name(&h).time(since).build(),
            };
            let mut taken = 0;
            for kv in self.tree.range_from(lo) {
                let (k, _) = kv;
                if !k.starts_with(&prefix) || taken >= limit {
                    break;
                }
                let at = Timestamp(u64_at(&k, prefix.len()).ok_or_else(|| corrupt("dead key"))?);
                if filter.until.is_some_and(|u| at >= u) {
                    break;
                }
                let id = uuid_at(&k, prefix.len() + 8).ok_or_else(|| corrupt("dead key"))?;
                let rec = self.read_delivery(id)?;
                if let Some(kind) = &filter.outcome {
                    let last = self.tree.get(
                        Key::new(keys::ATTEMPT)
                            .id(id)
                            .u32(rec.attempt_records)
                            .build(),
                    );
                    let last_kind = match last {
                        Some(v) => attempt_codec::decode(&v)?.report.map(|r| r.outcome.kind()),
                        None => None,
                    };
                    if last_kind != Some(kind.as_str()) {
                        continue;
                    }
                }
                found.push((at, h.clone(), rec));
                taken += 1;
            }
        }
        found.sort_by(|a, b| (a.0, &a.1, a.2.id).cmp(&(b.0, &b.1, b.2.id)));
        Ok(found.into_iter().take(limit).map(|(_, _, r)| r).collect())
    }
}

#[async_trait]
impl Store for SledStore {
    async fn put_handler(&self, spec: HandlerSpec, module: Bytes) -> StoreResult<HandlerRecord> {
        validate_handler(&spec.name)?;
        validate_topic(&spec.topic)?;
        spec.policy.validate()?;
        let inner = &self.inner;
        let sha = hex::encode(Sha256::digest(&module));
        let record = {
            let mut w = inner.lock();
            let now = inner.clock.now();
            let mut txn = Txn::new(&inner.tree);
            let old = inner
                .handlers
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&spec.name)
                .cloned();
            if let Some(old) = old.as_ref().filter(|o| o.topic != spec.topic) {
                return Err(StoreError::InvalidInput(format!(
                    "handler {:?} is subscribed to topic {:?}; remove it first to subscribe it to {:?}",
                    spec.name, old.topic, spec.topic
                )));
            }
            let record = HandlerRecord {
                name: spec.name.clone(),
                topic: spec.topic.clone(),
                module_sha256: sha.clone(),
                policy: spec.policy,
                paused: old.as_ref().is_some_and(|o| o.paused),
                created_at: old.as_ref().map_or(now, |o| o.created_at),
                updated_at: now,
                version: old.as_ref().map_or(1, |o| o.version + 1),
            };
            let mkey = Key::new(keys::MODULE).raw(sha.as_bytes()).build();
            if txn.get(&mkey)?.is_none() {
                txn.put(mkey, module.to_vec());
            }
            txn.put(
                Key::new(keys::HANDLER).raw(spec.name.as_bytes()).build(),
                encode_json(&record)?,
            );
            txn.put(Key::new(keys::TOPIC).name(&spec.topic).build(), Vec::new());
            inner.commit(&mut w, txn)?;
            inner.set_handler(&spec.name, Some(record.clone()));
            record
        };
        inner.flusher.durable().await?;
        Ok(record)
    }

    async fn handler(&self, name: &str) -> StoreResult<HandlerRecord> {
        self.inner.handler_record(name)
    }

    async fn handlers(&self) -> StoreResult<Vec<HandlerRecord>> {
        Ok(self
            .inner
            .handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect())
    }

    async fn module(&self, sha256: &str) -> StoreResult<Bytes> {
        let v = self
            .inner
            .tree
            .get(Key::new(keys::MODULE).raw(sha256.as_bytes()).build());
        v.ok_or_else(|| StoreError::UnknownModule(sha256.to_string()))
    }

    async fn set_paused(&self, name: &str, paused: bool) -> StoreResult<HandlerRecord> {
        let inner = &self.inner;
        let record = {
            let mut w = inner.lock();
            let mut record = inner.handler_record(name)?;
            record.paused = paused;
            record.updated_at = inner.clock.now();
            let mut txn = Txn::new(&inner.tree);
            txn.put(
                Key::new(keys::HANDLER).raw(name.as_bytes()).build(),
                encode_json(&record)?,
            );
            txn.woke = !paused;
            inner.commit(&mut w, txn)?;
            inner.set_handler(name, Some(record.clone()));
            record
        };
        inner.flusher.durable().await?;
        Ok(record)
    }

    async fn remove_handler(&self, name: &str) -> StoreResult<u64> {
        let inner = &self.inner;
        {
            let mut w = inner.lock();
            inner.handler_record(name)?;
            let mut txn = Txn::new(&inner.tree);
            txn.del(Key::new(keys::HANDLER).raw(name.as_bytes()).build());
            inner.commit(&mut w, txn)?;
            inner.set_handler(name, None);
        }
        // No new deliveries reach it now; delete the existing ones in chunks so
        // the queue keeps moving meanwhile.
        let mut removed = 0u64;
        let mut from = vec![keys::DELIVERY];
        loop {
            let mut w = inner.lock();
            let now = inner.clock.now();
            let mut txn = Txn::new(&inner.tree);
            let mut seen = 0;
            let mut last = None;
            for kv in inner.tree.range_from(from.clone()) {
                let (k, v) = kv;
                if k.first() != Some(&keys::DELIVERY) || seen >= 4096 {
                    break;
                }
                seen += 1;
                last = Some(k.to_vec());
                let rec: DeliveryRec = decode(&v)?;
                if rec.handler == name {
                    inner.delete_delivery(&mut txn, &rec, now)?;
                    removed += 1;
                }
            }
            for s in DeliveryState::ALL {
                txn.del(Key::new(keys::COUNT).name(name).byte(s as u8).build());
            }
            inner.commit(&mut w, txn)?;
            w.counts.retain(|(h, _), _| h != name);
            match last {
                Some(mut k) if seen >= 4096 => {
                    k.push(0);
                    from = k;
                }
                _ => break,
            }
        }
        inner.flusher.durable().await?;
        Ok(removed)
    }

    async fn enqueue(&self, batch: Vec<NewMessage>) -> StoreResult<Vec<Enqueued>> {
        let inner = &self.inner;
        for m in &batch {
            inner.validate(m)?;
        }
        let out = {
            let mut w = inner.lock();
            let now = inner.clock.now();
            let mut txn = Txn::new(&inner.tree);
            let mut out = Vec::with_capacity(batch.len());
            for m in batch {
                out.push(inner.enqueue_one(&mut w, &mut txn, m, now, false)?);
            }
            inner.commit(&mut w, txn)?;
            out
        };
        inner.flusher.durable().await?;
        Ok(out)
    }

    async fn lease(&self, handler: &str, max: usize) -> StoreResult<Vec<Leased>> {
        let inner = &self.inner;
        let record = inner.handler_record(handler)?;
        if record.paused || max == 0 {
            return Ok(Vec::new());
        }
        let lease_for = record.policy.lease();
        let max_attempts = record.policy.max_attempts();
        let mut w = inner.lock();
        let now = inner.clock.now();
        let expires_at = now.plus(lease_for);
        let mut txn = Txn::new(&inner.tree);
        let mut out = Vec::new();
        for kv in inner
            .tree
            .scan_prefix(Key::new(keys::READY).name(handler).build())
            .take(max)
        {
            let (k, v) = kv;
            txn.del(k.to_vec());
            let id = uuid_at(&v, 0).ok_or_else(|| corrupt("ready entry"))?;
            let mut rec = txn.delivery(id)?;
            let token = Inner::next_seq(&mut w);
            inner.move_to(&mut txn, &mut rec, DeliveryState::Leased);
            rec.attempt += 1;
            rec.attempt_records += 1;
            rec.lease = Some((token, expires_at));
            rec.ready_since = None;
            txn.put(
                Key::new(keys::LEASED).time(expires_at).id(id).build(),
                Vec::new(),
            );
            let attempt = AttemptRecord {
                number: rec.attempt,
                round: rec.round,
                started_at: now,
                finished_at: None,
                report: None,
            };
            txn.put(
                Key::new(keys::ATTEMPT)
                    .id(id)
                    .u32(rec.attempt_records)
                    .build(),
                attempt_codec::encode(&attempt)?,
            );
            txn.put_delivery(&rec)?;
            let message = txn.message(rec.message_id)?;
            out.push(Leased {
                lease: Lease {
                    delivery_id: id,
                    token,
                    expires_at,
                },
                message,
                handler: handler.to_string(),
                attempt: rec.attempt,
                max_attempts,
            });
        }
        if !out.is_empty() {
            inner.commit(&mut w, txn)?;
        }
        Ok(out)
    }

    async fn extend(&self, lease: &Lease) -> StoreResult<Lease> {
        let inner = &self.inner;
        let mut w = inner.lock();
        let mut txn = Txn::new(&inner.tree);
        let mut rec = inner.leased(&txn, lease)?;
        let lease_for = inner
            .policy(&rec.handler)
            .map(|p| p.lease())
            .unwrap_or(Duration::from_secs(75));
        let expires_at = inner.clock.now().plus(lease_for);
        if let Some((_, old)) = rec.lease {
            txn.del(Key::new(keys::LEASED).time(old).id(rec.id).build());
        }
        rec.lease = Some((lease.token, expires_at));
        txn.put(
            Key::new(keys::LEASED).time(expires_at).id(rec.id).build(),
            Vec::new(),
        );
        txn.put_delivery(&rec)?;
        inner.commit(&mut w, txn)?;
        Ok(Lease {
            delivery_id: lease.delivery_id,
            token: lease.token,
            expires_at,
        })
    }

    async fn complete(
        &self,
        lease: &Lease,
        report: AttemptReport,
        outbox: Vec<OutboxMessage>,
    ) -> StoreResult<()> {
        let inner = &self.inner;
        for o in &outbox {
            validate_topic(&o.topic)?;
            if let Some(k) = &o.ordering_key {
                validate_key("ordering key", k)?;
            }
        }
        {
            let mut w = inner.lock();
            let now = inner.clock.now();
            let mut txn = Txn::new(&inner.tree);
            let mut rec = inner.leased(&txn, lease)?;
            inner.finish_attempt(&mut txn, &mut rec, report, now)?;
            inner.move_to(&mut txn, &mut rec, DeliveryState::Succeeded);
            inner.release_key(&mut txn, &rec, now)?;
            txn.put_delivery(&rec)?;
            for (i, o) in outbox.into_iter().enumerate() {
                let mut headers = BTreeMap::new();
                headers.insert("sluice-parent".to_string(), rec.message_id.to_string());
                headers.insert("sluice-publisher".to_string(), rec.handler.clone());
                let m = NewMessage {
                    topic: o.topic,
                    payload: o.payload,
                    ordering_key: o.ordering_key,
                    idempotency_key: Some(format!("outbox:{}:{}:{i}", rec.message_id, rec.handler)),
                    headers,
                    not_before: o.delay.map(|d| now.plus(d)),
                };
                let e = inner.enqueue_one(&mut w, &mut txn, m, now, true)?;
                if !e.duplicate {
                    txn.woke = true;
                }
            }
            inner.commit(&mut w, txn)?;
        }
        inner.flusher.durable().await
    }

    async fn fail(
        &self,
        lease: &Lease,
        report: AttemptReport,
        disposition: Disposition,
    ) -> StoreResult<()> {
        let inner = &self.inner;
        {
            let mut w = inner.lock();
            let now = inner.clock.now();
            let mut txn = Txn::new(&inner.tree);
            let mut rec = inner.leased(&txn, lease)?;
            inner.finish_attempt(&mut txn, &mut rec, report, now)?;
            inner.dispose(&mut txn, &mut rec, disposition, now)?;
            txn.put_delivery(&rec)?;
            inner.commit(&mut w, txn)?;
        }
        inner.flusher.durable().await
    }

    fn ready_signal(&self) -> watch::Receiver<u64> {
        self.inner.ready.subscribe()
    }

    fn handlers_signal(&self) -> watch::Receiver<u64> {
        self.inner.handlers_changed.subscribe()
    }

    async fn replay_dead(&self, id: DeliveryId) -> StoreResult<()> {
        let inner = &self.inner;
        {
            let mut w = inner.lock();
            let now = inner.clock.now();
            let mut txn = Txn::new(&inner.tree);
            let mut rec = txn.delivery(id)?;
            if rec.state != DeliveryState::Dead {
                return Err(StoreError::NotDead(id));
            }
            inner.unindex(&mut txn, &rec);
            txn.count(&rec.handler, DeliveryState::Dead, -1);
            rec.round += 1;
            rec.attempt = 0;
            rec.dead_at = None;
            rec.dead_reason = None;
            rec.not_before = None;
            inner.place(&mut txn, &mut rec, now)?;
            txn.put_delivery(&rec)?;
            inner.commit(&mut w, txn)?;
        }
        inner.flusher.durable().await
    }

    async fn dead_letters(
        &self,
        filter: &DeadFilter,
        after: Option<DeliveryId>,
        limit: usize,
    ) -> StoreResult<Vec<DeliveryStatus>> {
        let recs = self.inner.dead_matching(filter, after, limit)?;
        recs.into_iter().map(|r| self.inner.status(r)).collect()
    }

    async fn purge_dead(&self, filter: &DeadFilter) -> StoreResult<u64> {
        let inner = &self.inner;
        let mut purged = 0;
        loop {
            let recs = inner.dead_matching(filter, None, 1024)?;
            if recs.is_empty() {
                break;
            }
            let mut w = inner.lock();
            let now = inner.clock.now();
            let mut txn = Txn::new(&inner.tree);
            for rec in recs {
                // Re-read under the lock: it may have been replayed meanwhile.
                let rec = match txn.delivery(rec.id) {
                    Ok(r) if r.state == DeliveryState::Dead => r,
                    _ => continue,
                };
                inner.delete_delivery(&mut txn, &rec, now)?;
                purged += 1;
            }
            inner.commit(&mut w, txn)?;
        }
        inner.flusher.durable().await?;
        Ok(purged)
    }

    async fn purge_dead_one(&self, id: DeliveryId) -> StoreResult<()> {
        let inner = &self.inner;
        {
            let mut w = inner.lock();
            let now = inner.clock.now();
            let mut txn = Txn::new(&inner.tree);
            let rec = txn.delivery(id)?;
            if rec.state != DeliveryState::Dead {
                return Err(StoreError::NotDead(id));
            }
            inner.delete_delivery(&mut txn, &rec, now)?;
            inner.commit(&mut w, txn)?;
        }
        inner.flusher.durable().await
    }

    async fn replay_since(&self, handler: &str, since: Timestamp) -> StoreResult<u64> {
        let inner = &self.inner;
        let record = inner.handler_record(handler)?;
        let prefix = Key::new(keys::TOPIC_MESSAGE).name(&record.topic).build();
        let mut from = Key::new(keys::TOPIC_MESSAGE)
            .name(&record.topic)
            .id(keys::min_uuid_at(since))
            .build();
        let mut count = 0;
        loop {
            let mut w = inner.lock();
            let now = inner.clock.now();
            let mut txn = Txn::new(&inner.tree);
            let mut last = None;
            for kv in inner.tree.range_from(from.clone()).take(512) {
                let (k, _) = kv;
                if !k.starts_with(&prefix) {
                    break;
                }
                let id = uuid_at(&k, prefix.len()).ok_or_else(|| corrupt("topic index"))?;
                let Ok(message) = txn.message(id) else {
                    continue;
                };
                inner.new_delivery(&mut w, &mut txn, &message, handler.to_string(), now)?;
                count += 1;
                last = Some(k.to_vec());
            }
            inner.commit(&mut w, txn)?;
            match last {
                Some(mut k) => {
                    k.push(0);
                    from = k;
                }
                None => break,
            }
        }
        inner.flusher.durable().await?;
        Ok(count)
    }

    async fn promote_due(&self, limit: usize) -> StoreResult<usize> {
        let inner = &self.inner;
        let promoted = {
            let mut w = inner.lock();
            let now = inner.clock.now();
            let mut txn = Txn::new(&inner.tree);
            let mut n = 0;
            for kv in inner.tree.scan_prefix([keys::SCHEDULED]).take(limit) {
                let (k, _) = kv;
                if u64_at(&k, 1).is_none_or(|due| due > now.0) {
                    break;
                }
                let id = uuid_at(&k, 9).ok_or_else(|| corrupt("scheduled key"))?;
                txn.del(k.to_vec());
                let mut rec = txn.delivery(id)?;
                inner.activate(&mut txn, &mut rec, now, None, false);
                txn.put_delivery(&rec)?;
                n += 1;
            }
            if n > 0 {
                inner.commit(&mut w, txn)?;
            }
            n
        };
        Ok(promoted)
    }

    async fn next_due(&self) -> StoreResult<Option<Timestamp>> {
        let first = self.inner.tree.scan_prefix([keys::SCHEDULED]).next();
        match first {
            Some(kv) => {
                let (k, _) = kv;
                Ok(u64_at(&k, 1).map(Timestamp))
            }
            None => Ok(None),
        }
    }

    async fn rescue_expired(&self, limit: usize) -> StoreResult<usize> {
        let inner = &self.inner;
        let rescued = {
            let mut w = inner.lock();
            let now = inner.clock.now();
            let mut txn = Txn::new(&inner.tree);
            let mut n = 0;
            let expired: Vec<_> = inner.tree.scan_prefix([keys::LEASED]).take(limit).collect();
            for kv in expired {
                let (k, _) = kv;
                if u64_at(&k, 1).is_none_or(|exp| exp > now.0) {
                    break;
                }
                let id = uuid_at(&k, 9).ok_or_else(|| corrupt("lease key"))?;
                let mut rec = txn.delivery(id)?;
                let reason = "lease expired";
                inner.record_interrupted(&mut txn, &mut rec, reason, now)?;
                let policy = inner.policy(&rec.handler).unwrap_or_default();
                let summary = format!("interrupted: {reason}");
                let disposition = policy.after_failure(rec.attempt, &summary, now, &mut w.rng);
                tracing::warn!(delivery = %id, handler = %rec.handler, "lease expired; delivery rescued");
                inner.dispose(&mut txn, &mut rec, disposition, now)?;
                txn.put_delivery(&rec)?;
                n += 1;
            }
            if n > 0 {
                inner.commit(&mut w, txn)?;
            }
            n
        };
        if rescued > 0 {
            inner.flusher.durable().await?;
        }
        Ok(rescued)
    }

    async fn prune(&self, limit: usize) -> StoreResult<PruneReport> {
        let inner = &self.inner;
        let mut report = PruneReport::default();
        {
            let mut w = inner.lock();
            let now = inner.clock.now();
            let mut txn = Txn::new(&inner.tree);
            // Idempotency keys past the window.
            for kv in inner
                .tree
                .scan_prefix([keys::IDEMPOTENCY_EXPIRY])
                .take(limit)
            {
                let (k, _) = kv;
                if u64_at(&k, 1).is_none_or(|exp| exp > now.0) {
                    break;
                }
                txn.del(k.to_vec());
                let ikey = Key::new(keys::IDEMPOTENCY).raw(&k[9..]).build();
                if let Some(v) = txn.get(&ikey)? {
                    let at = Timestamp(u64_at(&v, 16).unwrap_or(0));
                    if now >= at.plus(inner.config.idempotency_window) {
                        txn.del(ikey);
                        report.idempotency_keys += 1;
                    }
                }
            }
            // Dead deliveries past DLQ retention.
            let dead_cutoff = Timestamp(
                now.0
                    .saturating_sub(inner.config.dlq_retention.as_millis() as u64),
            );
            let names: Vec<String> = inner
                .handlers
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .cloned()
                .collect();
            for h in names {
                let prefix = Key::new(keys::DEAD).name(&h).build();
                for kv in inner.tree.scan_prefix(&prefix).take(limit) {
                    let (k, _) = kv;
                    if u64_at(&k, prefix.len()).is_none_or(|t| t > dead_cutoff.0) {
                        break;
                    }
                    let id = uuid_at(&k, prefix.len() + 8).ok_or_else(|| corrupt("dead key"))?;
                    let rec = txn.delivery(id)?;
                    inner.delete_delivery(&mut txn, &rec, now)?;
                    report.dead += 1;
                }
            }
            // Messages past retention whose deliveries all succeeded.
            let cutoff = Timestamp(
                now.0
                    .saturating_sub(inner.config.message_retention.as_millis() as u64),
            );
            let start = if w.prune_cursor.is_empty() {
                vec![keys::MESSAGE]
            } else {
                w.prune_cursor.clone()
            };
            let mut cursor = Vec::new();
            for kv in inner.tree.range_from(start).take(limit) {
                let (k, v) = kv;
                if k.first() != Some(&keys::MESSAGE) {
                    break;
                }
                let id = uuid_at(&k, 1).ok_or_else(|| corrupt("message key"))?;
                if keys::uuid_time(id) > cutoff {
                    break;
                }
                cursor = k.to_vec();
                cursor.push(0);
                let mut recs = Vec::new();
                for kv in inner
                    .tree
                    .scan_prefix(Key::new(keys::MESSAGE_DELIVERY).id(id).build())
                {
                    let (dk, _) = kv;
                    let did = uuid_at(&dk, 17).ok_or_else(|| corrupt("message delivery key"))?;
                    recs.push(txn.delivery(did)?);
                }
                if recs.iter().any(|r| r.state != DeliveryState::Succeeded) {
                    continue;
                }
                for r in &recs {
                    inner.delete_delivery(&mut txn, r, now)?;
                }
                let message: Message = decode(&v)?;
                txn.del(k.to_vec());
                txn.del(
                    Key::new(keys::TOPIC_MESSAGE)
                        .name(&message.topic)
                        .id(id)
                        .build(),
                );
                report.messages += 1;
            }
            w.prune_cursor = cursor;
            inner.commit(&mut w, txn)?;
        }
        inner.flusher.durable().await?;
        Ok(report)
    }

    async fn message(&self, id: MessageId) -> StoreResult<MessageStatus> {
        let inner = &self.inner;
        let txn = Txn::new(&inner.tree);
        let message = txn.message(id)?;
        let mut deliveries = Vec::new();
        for kv in inner
            .tree
            .scan_prefix(Key::new(keys::MESSAGE_DELIVERY).id(id).build())
        {
            let (k, _) = kv;
            let did = uuid_at(&k, 17).ok_or_else(|| corrupt("message delivery key"))?;
            deliveries.push(inner.status(txn.delivery(did)?)?);
        }
        Ok(MessageStatus {
            message,
            deliveries,
        })
    }

    async fn delivery(&self, id: DeliveryId) -> StoreResult<DeliveryStatus> {
        let rec = self.inner.read_delivery(id)?;
        self.inner.status(rec)
    }

    async fn stats(&self) -> StoreResult<Stats> {
        let inner = &self.inner;
        let handlers: Vec<HandlerRecord> = inner
            .handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let counts = inner.lock().counts.clone();
        let mut out = Vec::new();
        let mut topic_depth = BTreeMap::new();
        for h in handlers {
            let mut c = BTreeMap::new();
            for s in DeliveryState::ALL {
                c.insert(s, counts.get(&(h.name.clone(), s)).copied().unwrap_or(0));
            }
            let open: u64 = c.iter().filter(|(s, _)| s.is_open()).map(|(_, n)| *n).sum();
            *topic_depth.entry(h.topic.clone()).or_insert(0) += open;
            let oldest_ready_at = match inner
                .tree
                .scan_prefix(Key::new(keys::READY).name(&h.name).build())
                .next()
            {
                Some(kv) => u64_at(&kv.1, 16).map(Timestamp),
                None => None,
            };
            out.push(HandlerStats {
                handler: h.name,
                topic: h.topic,
                paused: h.paused,
                counts: c,
                oldest_ready_at,
            });
        }
        let done = inner.flusher.done.borrow().clone();
        Ok(Stats {
            handlers: out,
            topic_depth,
            flushes: done.flushes,
            flushed_ops: done.ops,
            flush_batches: FLUSH_BATCH_BOUNDS
                .iter()
                .copied()
                .zip(done.batches)
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::outcome::Outcome;

    /// While attempts run, a flush waits for their outcomes (up to the
    /// window, here far longer than the test): eight concurrent completions
    /// share one fsync. With nothing in flight nothing waits: the enqueues
    /// before would otherwise take the whole window each, past the timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn flushes_gather_the_outcomes_of_running_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp(1_800_000_000_000));
        let config = StoreConfig {
            group_commit_window: Duration::from_secs(600),
            ..StoreConfig::default()
        };
        let s = SledStore::open(dir.path(), config, Arc::new(clock.clone())).unwrap();
        let setup = async {
            register(&s).await;
            for i in 0..8 {
                let m = NewMessage {
                    topic: "t".into(),
                    payload: Bytes::from(format!("{i}")),
                    ..Default::default()
                };
                s.enqueue(vec![m]).await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(60), setup)
            .await
            .expect("with nothing leased, no flush waits for the window");
        let leased = s.lease("h", 8).await.unwrap();
        assert_eq!(leased.len(), 8);
        let before = s.stats().await.unwrap().flushes;
        let tasks: Vec<_> = leased
            .into_iter()
            .map(|l| {
                let s = s.clone();
                tokio::spawn(async move {
                    s.complete(&l.lease, report(Outcome::Ok), Vec::new())
                        .await
                        .unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let flushes = s.stats().await.unwrap().flushes - before;
        assert_eq!(flushes, 1, "eight outcomes, one fsync");
    }

    /// Registers handler `h` on topic `t`.
    async fn register(s: &SledStore) {
        let spec = HandlerSpec {
            name: "h".into(),
            topic: "t".into(),
            policy: HandlerPolicy::default(),
        };
        s.put_handler(spec, Bytes::from_static(b"\0asm"))
            .await
            .unwrap();
    }

    fn report(outcome: Outcome) -> AttemptReport {
        AttemptReport {
            outcome,
            ..AttemptReport::interrupted("", 1, "x".into())
        }
    }

    #[tokio::test]
    async fn smoke_enqueue_lease_complete_restart() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp(1_800_000_000_000));
        let open = || {
            SledStore::open(dir.path(), StoreConfig::default(), Arc::new(clock.clone())).unwrap()
        };
        let s = open();
        register(&s).await;
        let e = s
            .enqueue(vec![NewMessage {
                topic: "t".into(),
                payload: Bytes::from_static(b"hi"),
                ..Default::default()
            }])
            .await
            .unwrap();
        let leased = s.lease("h", 10).await.unwrap();
        assert_eq!(leased.len(), 1);
        assert_eq!(leased[0].message.payload, Bytes::from_static(b"hi"));
        s.complete(&leased[0].lease, report(Outcome::Ok), vec![])
            .await
            .unwrap();
        assert!(matches!(
            s.complete(&leased[0].lease, report(Outcome::Ok), vec![])
                .await,
            Err(StoreError::LeaseLost(_))
        ));
        let second = s
            .enqueue(vec![NewMessage {
                topic: "t".into(),
                payload: Bytes::from_static(b"again"),
                ..Default::default()
            }])
            .await
            .unwrap();
        let _held = s.lease("h", 10).await.unwrap();
        drop(s);
        let s = open();
        let st = s.message(e[0].id).await.unwrap();
        assert_eq!(st.deliveries[0].state, DeliveryState::Succeeded);
        let st = s.message(second[0].id).await.unwrap();
        assert_eq!(
            st.deliveries[0].state,
            DeliveryState::Ready,
            "released on open"
        );
        assert_eq!(
            st.deliveries[0].attempts[0]
                .report
                .as_ref()
                .unwrap()
                .outcome
                .kind(),
            "interrupted"
        );
        let stats = s.stats().await.unwrap();
        assert_eq!(stats.handlers[0].counts[&DeliveryState::Succeeded], 1);
        assert_eq!(stats.handlers[0].counts[&DeliveryState::Ready], 1);
    }
    #[tokio::test]
    async fn disk_full_refuses_acknowledgement_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp(1_800_000_000_000));
        let s =
            SledStore::open(dir.path(), StoreConfig::default(), Arc::new(clock.clone())).unwrap();
        register(&s).await;
        let msg = |p: &'static [u8]| NewMessage {
            topic: "t".into(),
            payload: Bytes::from_static(p),
            ..Default::default()
        };
        let acked = s.enqueue(vec![msg(b"before")]).await.unwrap();
        s.inject_fault(Some(std::io::ErrorKind::StorageFull));
        let err = s.enqueue(vec![msg(b"during")]).await.unwrap_err();
        assert!(matches!(err, StoreError::DiskFull(_)), "{err}");
        assert!(err.is_unavailable());
        s.inject_fault(None);
        let after = s.enqueue(vec![msg(b"after")]).await.unwrap();
        drop(s);
        let s = SledStore::open(dir.path(), StoreConfig::default(), Arc::new(clock)).unwrap();
        s.message(acked[0].id).await.unwrap();
        s.message(after[0].id).await.unwrap();
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_share_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp(1_800_000_000_000));
        let s =
            SledStore::open(dir.path(), StoreConfig::default(), Arc::new(clock.clone())).unwrap();
        register(&s).await;
        let before = s.stats().await.unwrap();
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    let m = NewMessage {
                        topic: "t".into(),
                        payload: Bytes::from(format!("{i}")),
                        ..Default::default()
                    };
                    s.enqueue(vec![m]).await.unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let after = s.stats().await.unwrap();
        assert_eq!(
            after.flushed_ops - before.flushed_ops,
            64,
            "every enqueue waited for a flush"
        );
        let flushes = after.flushes - before.flushes;
        assert!(
            flushes < 64,
            "64 concurrent enqueues took {flushes} flushes: no group commit"
        );
        let batched: u64 = after.flush_batches.iter().map(|(_, n)| n).sum();
        assert_eq!(batched, after.flushes);
    }
    /// Enqueues `n` messages of 100 bytes to topic `t`, one call each.
    async fn enqueue_one_by_one(s: &SledStore, n: usize) -> Vec<MessageId> {
        let mut ids = Vec::new();
        for i in 0..n {
            let m = NewMessage {
                topic: "t".into(),
                payload: Bytes::from(vec![i as u8; 100]),
                ..Default::default()
            };
            ids.push(s.enqueue(vec![m]).await.unwrap()[0].id);
        }
        ids
    }

    /// A store in `dir` that checkpoints every 4 KiB of log, with a handler.
    async fn small_checkpoints(dir: &Path) -> SledStore {
        let s =
            SledStore::open(dir, small_checkpoint_config(), Arc::new(checkpoint_clock())).unwrap();
        register(&s).await;
        s
    }

    fn small_checkpoint_config() -> StoreConfig {
        StoreConfig {
            checkpoint_bytes: 4096,
            ..StoreConfig::default()
        }
    }

    fn checkpoint_clock() -> ManualClock {
        ManualClock::new(Timestamp(1_800_000_000_000))
    }

    /// Drops `s`, reopens its directory and checks that every one of `ids`
    /// is there, all ready.
    async fn reopen_and_find(s: SledStore, dir: &Path, ids: &[MessageId]) {
        drop(s);
        let s =
            SledStore::open(dir, small_checkpoint_config(), Arc::new(checkpoint_clock())).unwrap();
        for id in ids {
            s.message(*id).await.unwrap();
        }
        assert_eq!(
            s.stats().await.unwrap().handlers[0].counts[&DeliveryState::Ready],
            ids.len() as u64
        );
    }

    #[tokio::test]
    async fn checkpoints_bound_the_log_and_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = small_checkpoints(dir.path()).await;
        let ids = enqueue_one_by_one(&s, 200).await;
        let logs = wal::files(&dir.path().join("wal")).unwrap();
        assert!(
            logs.len() <= 2,
            "old log files are deleted after a checkpoint: {logs:?}"
        );
        assert_eq!(ids.len(), 200);
        reopen_and_find(s, dir.path(), &ids).await;
    }

    #[tokio::test]
    async fn a_failed_checkpoint_keeps_the_log_for_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join("wal");
        let s = small_checkpoints(dir.path()).await;
        s.inject_checkpoint_fault(true);
        let mut ids = enqueue_one_by_one(&s, 200).await;
        assert!(
            wal::files(&wal_dir).unwrap().len() > 2,
            "failed checkpoints delete no log file"
        );
        s.inject_checkpoint_fault(false);
        ids.extend(enqueue_one_by_one(&s, 200).await);
        // Checkpoints run on their own thread: wait for one to succeed.
        for _ in 0..500 {
            if wal::files(&wal_dir).unwrap().len() <= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            wal::files(&wal_dir).unwrap().len() <= 2,
            "a successful checkpoint deletes the files the failed ones kept"
        );
        // Those files held the failed checkpoints' writes: they survive only
        // if the checkpoint that succeeded copied them before deleting them.
        assert_eq!(ids.len(), 400);
        reopen_and_find(s, dir.path(), &ids).await;
    }
}
