//! The embedded backend: an in-memory image of one ordered key space, a
//! write-ahead log with group commit, and checkpoints kept in sled.
//!
//! # Where things are
//! | concern | file |
//! | --- | --- |
//! | the type, `open`, the `Store` verbs and which of them wait for the disk | `mod.rs` |
//! | opening: log replay, counts, leases of the previous process released | [`recover`] |
//! | the write overlay of one verb and `commit` (one atomic batch) | [`txn`] |
//! | group commit (how an acknowledgement is made durable), checkpoints | [`flusher`] |
//! | the delivery record, its index entries and state transitions | [`delivery`] |
//! | enqueue, lease, extend, complete (with the outbox), fail | [`queue`] |
//! | handlers and modules | [`handlers`] |
//! | module references and their collection by upkeep | [`modules`] |
//! | the DLQ, replay and purge | [`dlq`] |
//! | promote due, expired leases, prune | [`upkeep`] |
//! | schedules and their occurrences; a tick's advance in one batch | [`schedules`] |
//! | message, delivery, stats | [`inspect`] |
//! | deliveries by state, key, topic, handler, outcome and time (`query_deliveries`) | [`query`] |
//! | key layout, one typed constructor per index | [`keys`] |
//! | every value encoding | [`codec`] |
//! | the in-memory image | [`memtree`] |
//! | the write-ahead log's files and records; torn tails and damage | [`wal`] |
//! | the file-system interface the log is written through | [`fs`] |
//! | sled, as the checkpoint sink (the only file that names sled) | [`image`] |
//!
//! # Design
//! - **One key space, atomic batches.** All indexes share one ordered key
//!   space ([`keys`]), so each verb is one batch of blind writes: applied
//!   atomically to the in-memory image ([`memtree`]), appended as one record
//!   to the write-ahead log ([`wal`]), and copied into sled at a checkpoint.
//! - **Reads from memory.** Every read and ordered scan is served by the
//!   image, so a verb costs a few map operations; sled is read only on open
//!   and written only at checkpoints, off the hot path.
//! - **One writer at a time.** Verbs that change state read and write under a
//!   mutex held only for in-memory work (microseconds), never across a flush.
//! - **Group commit.** A flusher thread writes the buffered log records and
//!   `fdatasync`s them whenever someone waits for durability; every writer
//!   whose batch was applied before a flush *started* is covered by it, so a
//!   burst of N writers costs about two fsyncs, not N. A verb returns only
//!   after a flush covering it succeeded, a duplicate enqueue included (it
//!   waits until the original is durable).
//! - **Checkpoints.** When the log file passes `EmbeddedSettings::checkpoint_bytes`,
//!   the flusher starts a new file and a checkpoint thread copies the older
//!   files' records into sled's image ([`image`]) and deletes the files.
//! - **Leases are not flushed on their own.** A lease lost in a crash only
//!   means the delivery is ready again on restart (at-least-once); the
//!   attempt's completion is flushed, and its flush carries the lease with it.
//! - **Counts in memory, persisted with each batch.** Per-(handler, state)
//!   counts give stats and backpressure without scanning.
//! - **Policy is not decided here.** A failure's fate comes in as a
//!   [`Disposition`] from `HandlerPolicy::fate`; the leases released on open
//!   ask the same function.

#[cfg(test)]
mod bitrot;
mod codec;
mod delivery;
mod dlq;
mod flusher;
mod fs;
mod handlers;
mod image;
mod inspect;
mod keys;
mod memtree;
mod modules;
#[cfg(test)]
mod powerloss;
mod query;
mod queue;
mod recover;
mod schedules;
#[cfg(test)]
mod simfs;
#[cfg(test)]
mod tests;
mod txn;
mod upkeep;
mod wal;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::watch;

use self::flusher::{FlushSettings, Flusher};
use self::image::SledImage;
use self::memtree::MemTree;
use super::{
    AttemptReport, DeadFilter, DeliveryId, DeliveryPage, DeliveryQuery, DeliveryState,
    DeliveryStatus, Enqueued, ExpiredLease, HandlerRecord, HandlerSpec, Lease, Leased, MessageId,
    MessageStatus, NewMessage, Occurrence, OutboxMessage, PruneReport, ScheduleAdvance,
    ScheduleRecord, ScheduleSpec, Stats, Store, StoreConfig, StoreError, StoreResult,
};
use crate::clock::{Clock, Timestamp};
use crate::policy::Disposition;

/// The embedded engine's own tuning (the shared limits are
/// [`StoreConfig`]'s). `[store] checkpoint_bytes` and `group_commit_window`
/// in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedSettings {
    /// Write-ahead log size that triggers a checkpoint (the changes since the
    /// last one written to sled, then older log files deleted). Default
    /// 64 MiB; bounds the replay at open and the log files a checkpoint
    /// reads back.
    pub checkpoint_bytes: u64,
    /// Longest time a flush waits, while attempts are running and settling,
    /// for their outcomes to share its fsync. Default 1 ms; zero flushes at
    /// once. Only taken when attempts are in flight and one settled since the
    /// last flush, so an idle queue's latency is unchanged, and so is an
    /// enqueue's beside long-running guests; under load it trades up to this
    /// much latency for fewer fsyncs per job (docs/store.md).
    pub group_commit_window: Duration,
}

impl Default for EmbeddedSettings {
    fn default() -> Self {
        EmbeddedSettings {
            checkpoint_bytes: 64 << 20,
            group_commit_window: Duration::from_millis(1),
        }
    }
}

/// The embedded store. Cheap to clone; clones share the store.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore").finish_non_exhaustive()
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

/// What only the writer (under [`Inner::writer`]) reads and changes.
struct Writer {
    counts: HashMap<(String, DeliveryState), u64>,
    /// The last number handed out: enqueue order and lease tokens.
    seq: u64,
    rng: StdRng,
    prune_cursor: Vec<u8>,
}

impl Writer {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.flusher.stop();
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`, with time from `clock`.
    ///
    /// Leases held by a previous process are released at once: their attempts
    /// are recorded as [`Outcome::Interrupted`](crate::outcome::Outcome) ("process
    /// restarted"; they count as attempts) and the policy decides the rest, as
    /// for any failure: retry after the backoff, or dead after the last attempt.
    pub fn open(
        dir: &Path,
        config: StoreConfig,
        clock: Arc<dyn Clock>,
    ) -> StoreResult<EmbeddedStore> {
        EmbeddedStore::open_with(dir, config, &EmbeddedSettings::default(), clock)
    }

    /// [`EmbeddedStore::open`] with the engine's own tuning.
    pub fn open_with(
        dir: &Path,
        config: StoreConfig,
        settings: &EmbeddedSettings,
        clock: Arc<dyn Clock>,
    ) -> StoreResult<EmbeddedStore> {
        std::fs::create_dir_all(dir).map_err(StoreError::from_io)?;
        let (image, entries, checkpointed) = SledImage::open_dir(dir, settings.checkpoint_bytes)?;
        EmbeddedStore::open_on(
            Arc::new(fs::OsFs),
            &dir.join("wal"),
            (image, entries, checkpointed),
            config,
            settings,
            clock,
        )
    }

    /// Opens the store on `image` (sled's, as opened) with its log in
    /// `wal_dir` on `fs`.
    fn open_on(
        fs: Arc<dyn fs::Fs>,
        wal_dir: &Path,
        (image, entries, checkpointed): (SledImage, image::Entries, u64),
        config: StoreConfig,
        tuning: &EmbeddedSettings,
        clock: Arc<dyn Clock>,
    ) -> StoreResult<EmbeddedStore> {
        fs.create_dir_all(wal_dir)
            .and_then(|()| wal_dir.parent().map_or(Ok(()), |p| fs.sync_dir(p)))
            .map_err(StoreError::from_io)?;
        let tree = MemTree::from_entries(entries);
        let batch = recover::replay(checkpointed, &tree, &*fs, wal_dir)?;
        let log = wal::LogFile::create_next(fs, wal_dir).map_err(StoreError::from_io)?;
        if batch == checkpointed {
            // sled holds every batch in the older files; otherwise they stay
            // until the next checkpoint has written them to sled.
            log.delete_older().map_err(StoreError::from_io)?;
        }
        let counts = recover::counts(&tree);
        let seq = recover::seq(&tree);
        let handlers = recover::handlers(&tree)?;
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
            checkpoint_bytes: tuning.checkpoint_bytes,
            window: tuning.group_commit_window,
            in_flight: Arc::new(AtomicU64::new(leased)),
            settled: Arc::default(),
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
            ready: watch::channel(0).0,
            handlers_changed: watch::channel(0).0,
        });
        inner.build_query_indexes()?;
        inner.release_all_leases()?;
        Ok(EmbeddedStore { inner })
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

    /// Waits until everything committed so far is on disk: the step that
    /// turns a verb's in-memory change into an acknowledgement.
    async fn durable<T>(&self, value: T) -> StoreResult<T> {
        self.inner.flusher.durable().await?;
        Ok(value)
    }
}

/// Each verb runs its in-memory part (the files above) and, where it changes
/// what an acknowledgement promises, waits for the flush that covers it.
/// Leases and promotions are not flushed on their own: losing one in a crash
/// only makes a delivery ready again.
#[async_trait]
impl Store for EmbeddedStore {
    async fn put_handler(&self, spec: HandlerSpec, module: Bytes) -> StoreResult<HandlerRecord> {
        let record = self.inner.put_handler(spec, &module)?;
        self.durable(record).await
    }

    async fn handler(&self, name: &str) -> StoreResult<HandlerRecord> {
        self.inner.handler_record(name)
    }

    async fn handlers(&self) -> StoreResult<Vec<HandlerRecord>> {
        Ok(self.inner.handler_records())
    }

    async fn module(&self, sha256: &str) -> StoreResult<Bytes> {
        self.inner.module(sha256)
    }

    async fn pause_unrunnable(&self, name: &str, version: u64, reason: &str) -> StoreResult<bool> {
        let changed = self.inner.pause_unrunnable(name, version, reason)?;
        self.durable(changed).await
    }

    async fn set_paused(&self, name: &str, paused: bool) -> StoreResult<HandlerRecord> {
        let record = self.inner.set_paused(name, paused)?;
        self.durable(record).await
    }

    async fn remove_handler(&self, name: &str) -> StoreResult<u64> {
        let removed = self.inner.remove_handler(name)?;
        self.durable(removed).await
    }

    async fn enqueue(&self, batch: Vec<NewMessage>) -> StoreResult<Vec<Enqueued>> {
        let out = self.inner.enqueue(batch)?;
        self.durable(out).await
    }

    async fn lease(&self, handler: &str, max: usize) -> StoreResult<Vec<Leased>> {
        self.inner.lease(handler, max)
    }

    async fn extend(&self, lease: &Lease) -> StoreResult<Lease> {
        self.inner.extend(lease)
    }

    async fn complete(
        &self,
        lease: &Lease,
        report: AttemptReport,
        outbox: Vec<OutboxMessage>,
    ) -> StoreResult<()> {
        self.inner.complete(lease, report, outbox)?;
        self.durable(()).await
    }

    async fn fail(
        &self,
        lease: &Lease,
        report: AttemptReport,
        disposition: Disposition,
    ) -> StoreResult<()> {
        self.inner.fail(lease, report, disposition)?;
        self.durable(()).await
    }

    fn ready_signal(&self) -> watch::Receiver<u64> {
        self.inner.ready.subscribe()
    }

    fn handlers_signal(&self) -> watch::Receiver<u64> {
        self.inner.handlers_changed.subscribe()
    }

    async fn replay_dead(&self, id: DeliveryId) -> StoreResult<()> {
        self.inner.replay_dead(id)?;
        self.durable(()).await
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
        let purged = self.inner.purge_dead(filter)?;
        self.durable(purged).await
    }

    async fn purge_dead_one(&self, id: DeliveryId) -> StoreResult<()> {
        self.inner.purge_dead_one(id)?;
        self.durable(()).await
    }

    async fn replay_since(&self, handler: &str, since: Timestamp) -> StoreResult<u64> {
        let count = self.inner.replay_since(handler, since)?;
        self.durable(count).await
    }

    async fn promote_due(&self, limit: usize) -> StoreResult<usize> {
        self.inner.promote_due(limit)
    }

    async fn next_due(&self) -> StoreResult<Option<Timestamp>> {
        self.inner.next_due()
    }

    async fn expired_leases(&self, limit: usize) -> StoreResult<Vec<ExpiredLease>> {
        self.inner.expired_leases(limit)
    }

    async fn prune(&self, limit: usize) -> StoreResult<PruneReport> {
        let report = self.inner.prune(limit)?;
        self.durable(report).await
    }

    async fn put_schedule(&self, spec: ScheduleSpec) -> StoreResult<ScheduleRecord> {
        let rec = self.inner.put_schedule(spec)?;
        self.durable(rec).await
    }

    async fn schedule(&self, id: &str) -> StoreResult<ScheduleRecord> {
        self.inner.schedule_record(id)
    }

    async fn schedules(&self) -> StoreResult<Vec<ScheduleRecord>> {
        self.inner.schedule_records()
    }

    async fn set_schedule_paused(&self, id: &str, paused: bool) -> StoreResult<ScheduleRecord> {
        let rec = self.inner.set_schedule_paused(id, paused)?;
        self.durable(rec).await
    }

    async fn remove_schedule(&self, id: &str) -> StoreResult<()> {
        self.inner.remove_schedule(id)?;
        self.durable(()).await
    }

    async fn advance_schedule(&self, advance: ScheduleAdvance) -> StoreResult<Vec<Occurrence>> {
        let recorded = self.inner.advance_schedule(&advance)?;
        self.durable(recorded).await
    }

    async fn schedule_occurrences(&self, id: &str, limit: usize) -> StoreResult<Vec<Occurrence>> {
        self.inner.schedule_occurrences(id, limit)
    }

    async fn message(&self, id: MessageId) -> StoreResult<MessageStatus> {
        self.inner.message_status(id)
    }

    async fn delivery(&self, id: DeliveryId) -> StoreResult<DeliveryStatus> {
        self.inner.delivery_status(id)
    }

    async fn stats(&self) -> StoreResult<Stats> {
        self.inner.stats()
    }

    async fn query_deliveries(
        &self,
        query: &DeliveryQuery,
        after: Option<DeliveryId>,
        limit: usize,
    ) -> StoreResult<DeliveryPage> {
        self.inner.query_deliveries(query, after, limit)
    }
}
