//! The PostgreSQL backend: every verb a transaction on one shared database,
//! so any number of runners (`sluice serve` processes, on any hosts) share
//! one queue with the guarantees of SPEC §2.
//!
//! # Where things are
//! | concern | file |
//! | --- | --- |
//! | the type, options, `open`, the `Store` verbs and the transaction each runs in | `mod.rs` |
//! | the schema, its version and migrations | [`schema`] |
//! | group commit: concurrent enqueues and settlements share one transaction and one COMMIT | [`batch`] |
//! | enqueue (idempotency, backpressure, fan-out) as statements over arrays, the outbox too | [`enqueue`] |
//! | settling attempts in batches: fencing, reports, new states, keys handed on, outbox | [`settle`] |
//! | lease (one statement per batch), extend, the fates | [`queue`] |
//! | a delivery's transitions: placing behind its key, handing the key on, fencing, disposing | [`delivery`] |
//! | handlers and modules | [`handlers`] |
//! | the DLQ, replay and purge | [`dlq`] |
//! | promote due, expired leases, prune, releasing this runner's leases at open | [`upkeep`] |
//! | message, delivery, stats | [`inspect`] |
//! | listing and searching deliveries (`query_deliveries`) | [`query`] |
//! | schedules, their occurrences, a tick's advance under the row's lock | [`schedules`] |
//! | LISTEN/NOTIFY signals across runners, the polling fallback | [`notify`] |
//! | rows and columns, state codes | [`rows`] |
//! | prepared statements | [`sql`] |
//! | database errors as store errors (503) | [`error`] |
//!
//! # Design (docs/decisions.md, docs/scale-out.md)
//! - **Durable = committed.** A verb that changes what an acknowledgement
//!   promises returns only after its transaction committed with
//!   `synchronous_commit = on`; concurrent enqueues and settlements share a
//!   transaction and its WAL flush ([`batch`]). Leases, extensions and
//!   promotions commit with `synchronous_commit = off`: losing one in a
//!   crash only makes a delivery ready again, and the next synchronous
//!   commit flushes the WAL up to and including it.
//! - **Fencing** is a guarded row: settling locks the delivery and checks
//!   its state and lease token (from the `lease_tokens` sequence).
//! - **Per-key order** is a row per (handler, key) in `key_heads`.
//! - **Time.** With [`PgTime::Database`] (production) every "now" is the
//!   database's clock, read once per transaction, so runners' clock skew
//!   does not move lease expiries, due times or rescue; [`PgTime::Injected`]
//!   takes it from a [`Clock`] (the conformance kit's manual clock).
//! - **Runner identity.** Each lease records its runner's id; at open a
//!   runner releases only the leases its own id holds. Other runners' leases
//!   expire and are rescued.
//! - **No cache of shared state.** Handlers are read from the database, so
//!   a change through any runner is seen by all.

mod batch;
mod delivery;
mod dlq;
mod enqueue;
mod error;
mod handlers;
mod inspect;
mod notify;
mod query;
mod queue;
mod rows;
mod schedules;
mod schema;
mod settle;
mod sql;
mod upkeep;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{mpsc, oneshot, watch};

use self::batch::{Call, Done, Op};
use self::error::{db, pool};
use self::queue::Fate;
use super::{
    AttemptReport, COMMIT_BATCH_BOUNDS, DeadFilter, DeliveryId, DeliveryPage, DeliveryQuery,
    DeliveryStatus, Enqueued, ExpiredLease, HandlerRecord, HandlerSpec, Lease, Leased, MessageId,
    MessageStatus, NewMessage, Occurrence, OutboxMessage, PruneReport, ScheduleAdvance,
    ScheduleRecord, ScheduleSpec, Stats, Store, StoreConfig, StoreError, StoreResult,
};
use crate::clock::{SharedClock, Timestamp};
use crate::policy::Disposition;

/// A transaction on a pooled connection.
pub(super) type Tx<'a> = deadpool_postgres::Transaction<'a>;

/// Default PostgreSQL schema of an installation.
pub const DEFAULT_SCHEMA: &str = "sluice";
/// Default connections in a runner's pool (plus one for LISTEN).
pub const DEFAULT_POOL_SIZE: usize = 16;
/// Default [`PgOptions::poll_fallback`]: 1 s.
pub const DEFAULT_POLL_FALLBACK: Duration = Duration::from_secs(1);
/// How long a verb waits for a pooled connection (or a new one) before it
/// answers [`StoreError::Unavailable`].
const POOL_WAIT: Duration = Duration::from_secs(5);

/// Where a PostgreSQL store takes "now" from.
#[derive(Clone)]
pub enum PgTime {
    /// The database's clock (`clock_timestamp()`), once per transaction:
    /// production, so runners' clock skew does not matter.
    Database,
    /// An injected clock (tests drive time with a manual clock).
    Injected(SharedClock),
}

impl fmt::Debug for PgTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgTime::Database => f.write_str("Database"),
            PgTime::Injected(_) => f.write_str("Injected"),
        }
    }
}

/// How to reach and use the database.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `postgres://user[:password]@host[:port]/database[?options]`.
    pub url: String,
    /// The PostgreSQL schema holding this installation's tables, created if
    /// missing: `[a-z_][a-z0-9_]{0,62}`. Default [`DEFAULT_SCHEMA`].
    pub schema: String,
    /// Connections in the pool. Default [`DEFAULT_POOL_SIZE`].
    pub pool_size: usize,
    /// This runner's id, recorded on its leases; at open the leases of this
    /// id are released. Must be unique per running process and stable across
    /// its restarts.
    pub runner_id: String,
    /// Where "now" comes from.
    pub time: PgTime,
    /// The ready signal is bumped at least this often, so a notification
    /// lost while the listener was disconnected only delays a wake. Default
    /// [`DEFAULT_POLL_FALLBACK`].
    pub poll_fallback: Duration,
}

/// One point in time of a transaction: ms for the queue, µs for latency figures.
#[derive(Debug, Clone, Copy)]
pub(super) struct Now {
    pub(super) at: Timestamp,
    pub(super) micros: u64,
}

/// Durable commits made by this store (group commit: ops / commits is the mean batch).
#[derive(Default)]
pub(super) struct Commits {
    commits: AtomicU64,
    ops: AtomicU64,
    batches: [AtomicU64; COMMIT_BATCH_BOUNDS.len()],
}

/// A copy of [`Commits`].
pub(super) struct CommitsSnapshot {
    pub(super) commits: u64,
    pub(super) ops: u64,
    pub(super) batches: Vec<(u64, u64)>,
}

impl Commits {
    fn record(&self, ops: u64) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.ops.fetch_add(ops, Ordering::Relaxed);
        let i = COMMIT_BATCH_BOUNDS
            .iter()
            .position(|b| ops <= *b)
            .unwrap_or(0);
        self.batches[i].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> CommitsSnapshot {
        CommitsSnapshot {
            commits: self.commits.load(Ordering::Relaxed),
            ops: self.ops.load(Ordering::Relaxed),
            batches: COMMIT_BATCH_BOUNDS
                .iter()
                .zip(&self.batches)
                .map(|(b, n)| (*b, n.load(Ordering::Relaxed)))
                .collect(),
        }
    }
}

/// What every verb shares.
pub(super) struct Core {
    pool: Pool,
    config: StoreConfig,
    time: PgTime,
    runner_id: String,
    /// Unique per open store: the payload of its notifications.
    instance: String,
    channels: (String, String),
    signals: notify::Signals,
    rng: Mutex<StdRng>,
    commits: Commits,
    poll_fallback: Duration,
}

impl Core {
    /// A pooled connection.
    pub(super) async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool)
    }

    /// The transaction's "now".
    pub(super) async fn now<C: GenericClient + Sync>(&self, c: &C) -> StoreResult<Now> {
        match &self.time {
            PgTime::Injected(clock) => Ok(Now {
                at: clock.now(),
                micros: clock.now_micros(),
            }),
            PgTime::Database => {
                let row = sql::query_one(
                    c,
                    "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint",
                    &[],
                )
                .await?;
                let micros = row.get::<_, i64>(0).max(0) as u64;
                Ok(Now {
                    at: Timestamp(micros / 1000),
                    micros,
                })
            }
        }
    }

    /// Commits a durable transaction covering `ops` verbs. A failed COMMIT
    /// (outcome unknown) is [`StoreError::Unavailable`].
    pub(super) async fn commit(&self, tx: Tx<'_>, ops: u64) -> StoreResult<()> {
        tx.commit().await.map_err(|e| {
            StoreError::Unavailable(format!("commit failed, outcome unknown: {}", db(e)))
        })?;
        self.commits.record(ops);
        Ok(())
    }
}

/// The PostgreSQL store. Cheap to clone; clones share the pool and tasks.
#[derive(Clone)]
pub struct PgStore {
    core: Arc<Core>,
    committer: mpsc::Sender<Call>,
    _tasks: Arc<Tasks>,
}

/// The background tasks, stopped when the last clone of the store goes.
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("runner_id", &self.core.runner_id)
            .finish_non_exhaustive()
    }
}

/// Checks a PostgreSQL schema name: `[a-z_][a-z0-9_]{0,62}`.
pub fn check_schema(name: &str) -> StoreResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidInput(format!(
            "PostgreSQL schema {name:?}: expected [a-z_][a-z0-9_]{{0,62}}"
        )))
    }
}

/// The connection settings for `options`: the URL, this schema on the
/// search path, and keepalives so a cut network is noticed.
fn pg_config(options: &PgOptions) -> StoreResult<tokio_postgres::Config> {
    check_schema(&options.schema)?;
    let mut config = tokio_postgres::Config::from_str(&options.url).map_err(|e| {
        StoreError::InvalidInput(format!("PostgreSQL URL {:?}: {e}", redact(&options.url)))
    })?;
    config
        .options(format!("-c search_path={}", options.schema))
        .application_name("sluice")
        .connect_timeout(POOL_WAIT)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(5));
    Ok(config)
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Creates or migrates the schema of `options` without opening a store
/// (`sluice migrate`). Returns the schema version now in place.
pub async fn migrate(options: &PgOptions) -> StoreResult<i32> {
    let config = pg_config(options)?;
    let (mut client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(db)?;
    let conn = tokio::spawn(connection);
    let v = schema::migrate(&mut client, &options.schema).await;
    drop(client);
    let _ = conn.await;
    v
}

impl PgStore {
    /// Connects, creates or migrates the schema, starts listening, and
    /// releases the leases this runner id held in its previous life (their
    /// attempts recorded as interrupted, "process restarted"; the policy
    /// decides the rest, as for any failure).
    pub async fn open(options: PgOptions, config: StoreConfig) -> StoreResult<PgStore> {
        let pg = pg_config(&options)?;
        migrate(&options).await?;
        let manager = Manager::from_config(
            pg.clone(),
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .recycle_timeout(Some(POOL_WAIT))
            .build()
            .map_err(|e| StoreError::InvalidInput(format!("PostgreSQL pool: {e}")))?;
        let core = Arc::new(Core {
            pool,
            config,
            time: options.time.clone(),
            runner_id: options.runner_id.clone(),
            instance: crate::store::new_id(Timestamp(0)).to_string(),
            channels: notify::channels(&options.schema),
            signals: notify::Signals {
                ready: watch::channel(0).0,
                handlers: watch::channel(0).0,
            },
            rng: Mutex::new(StdRng::from_os_rng()),
            commits: Commits::default(),
            poll_fallback: options.poll_fallback,
        });
        let listener = notify::start(pg, Arc::clone(&core)).await?;
        let tasks = Tasks(vec![listener]);
        core.release_own_leases().await?;
        let (tx, rx) = mpsc::channel(batch::MAX_BATCH * 4);
        let queue: batch::Queue = Arc::new(tokio::sync::Mutex::new(rx));
        let mut tasks = tasks;
        for _ in 0..batch::COMMITTERS {
            tasks
                .0
                .push(tokio::spawn(batch::run(Arc::clone(&core), queue.clone())));
        }
        Ok(PgStore {
            core,
            committer: tx,
            _tasks: Arc::new(tasks),
        })
    }

    /// Sends a durable verb to the group committer and waits for its commit.
    async fn batched(&self, op: Op) -> StoreResult<Done> {
        let (reply, rx) = oneshot::channel();
        self.committer
            .send(Call { op, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn settle(&self, lease: &Lease, report: AttemptReport, fate: Fate) -> StoreResult<()> {
        match self
            .batched(Op::Settle(Box::new((lease.clone(), report, fate))))
            .await?
        {
            Done::Settled => Ok(()),
            Done::Enqueued(_) => Err(StoreError::Corrupt("committer answered out of kind".into())),
        }
    }
}

/// Runs `$body` (an expression giving `(value, woke)`, with `$tx` and `$now`
/// in scope) in its own transaction on `$core`, then commits: durably
/// (counted as a durable commit) or, with `lazy`, with
/// `synchronous_commit = off`. Sends the ready notification when `woke`.
macro_rules! in_tx {
    ($core:expr, $mode:ident, |$tx:ident, $now:ident| $body:expr) => {{
        let core: &Core = $core;
        let mut client = core.client().await?;
        let $tx = client.transaction().await.map_err(db)?;
        in_tx!(@mode $mode, $tx);
        let $now = core.now(&$tx).await?;
        let (value, woke): (_, bool) = $body;
        if woke {
            core.notify_ready(&$tx).await?;
        }
        in_tx!(@commit $mode, core, $tx);
        if woke {
            core.signal_ready();
        }
        value
    }};
    (@mode durable, $tx:ident) => {};
    (@mode lazy, $tx:ident) => {
        $tx.batch_execute("SET LOCAL synchronous_commit = off")
            .await
            .map_err(db)?;
    };
    (@commit durable, $core:ident, $tx:ident) => {
        $core.commit($tx, 1).await?;
    };
    (@commit lazy, $core:ident, $tx:ident) => {
        $tx.commit().await.map_err(db)?;
    };
}

/// Enqueue, complete and fail go through the group committer; the other
/// changing verbs run in a transaction of their own; reads use a pooled
/// connection outside any explicit transaction.
#[async_trait]
impl Store for PgStore {
    async fn put_handler(&self, spec: HandlerSpec, module: Bytes) -> StoreResult<HandlerRecord> {
        crate::store::validate_spec(&spec)?;
        let record = in_tx!(&self.core, durable, |tx, now| (
            self.core.put_handler_in(&tx, spec, &module, now).await?,
            false
        ));
        self.core.signal_handlers().await;
        Ok(record)
    }

    async fn handler(&self, name: &str) -> StoreResult<HandlerRecord> {
        let c = self.core.client().await?;
        self.core.handler_record(&c, name).await
    }

    async fn handlers(&self) -> StoreResult<Vec<HandlerRecord>> {
        let c = self.core.client().await?;
        self.core.handler_records(&c).await
    }

    async fn module(&self, sha256: &str) -> StoreResult<Bytes> {
        let c = self.core.client().await?;
        self.core.module_bytes(&c, sha256).await
    }

    async fn pause_unrunnable(&self, name: &str, version: u64, reason: &str) -> StoreResult<bool> {
        let changed = in_tx!(&self.core, durable, |tx, now| (
            self.core
                .pause_unrunnable_in(&tx, name, version, reason, now)
                .await?,
            false
        ));
        if changed {
            self.core.signal_handlers().await;
        }
        Ok(changed)
    }

    async fn set_paused(&self, name: &str, paused: bool) -> StoreResult<HandlerRecord> {
        let record = in_tx!(&self.core, durable, |tx, now| (
            self.core.set_paused_in(&tx, name, paused, now).await?,
            !paused
        ));
        self.core.signal_handlers().await;
        Ok(record)
    }

    async fn remove_handler(&self, name: &str) -> StoreResult<u64> {
        self.core.remove_handler_now(name).await
    }

    async fn enqueue(&self, batch: Vec<NewMessage>) -> StoreResult<Vec<Enqueued>> {
        for m in &batch {
            crate::store::validate_message(&self.core.config, m)?;
        }
        match self.batched(Op::Enqueue(batch)).await? {
            Done::Enqueued(out) => Ok(out),
            Done::Settled => Err(StoreError::Corrupt("committer answered out of kind".into())),
        }
    }

    async fn lease(&self, handler: &str, max: usize) -> StoreResult<Vec<Leased>> {
        self.core.lease_now(handler, max).await
    }

    async fn extend(&self, lease: &Lease) -> StoreResult<Lease> {
        Ok(in_tx!(&self.core, lazy, |tx, now| (
            self.core.extend_in(&tx, lease, now).await?,
            false
        )))
    }

    async fn complete(
        &self,
        lease: &Lease,
        report: AttemptReport,
        outbox: Vec<OutboxMessage>,
    ) -> StoreResult<()> {
        crate::store::validate_outbox(&outbox)?;
        self.settle(lease, report, Fate::Complete(outbox)).await
    }

    async fn fail(
        &self,
        lease: &Lease,
        report: AttemptReport,
        disposition: Disposition,
    ) -> StoreResult<()> {
        self.settle(lease, report, Fate::Fail(disposition)).await
    }

    fn ready_signal(&self) -> watch::Receiver<u64> {
        self.core.signals.ready.subscribe()
    }

    fn handlers_signal(&self) -> watch::Receiver<u64> {
        self.core.signals.handlers.subscribe()
    }

    async fn replay_dead(&self, id: DeliveryId) -> StoreResult<()> {
        in_tx!(&self.core, durable, |tx, now| {
            let woke = self.core.replay_dead_in(&tx, id, now.at).await?;
            ((), woke)
        });
        Ok(())
    }

    async fn dead_letters(
        &self,
        filter: &DeadFilter,
        after: Option<DeliveryId>,
        limit: usize,
    ) -> StoreResult<Vec<DeliveryStatus>> {
        let c = self.core.client().await?;
        let recs = self.core.dead_matching(&c, filter, after, limit).await?;
        let mut out = Vec::with_capacity(recs.len());
        for r in recs {
            out.push(self.core.status_of(&c, r).await?);
        }
        Ok(out)
    }

    async fn query_deliveries(
        &self,
        query: &DeliveryQuery,
        after: Option<DeliveryId>,
        limit: usize,
    ) -> StoreResult<DeliveryPage> {
        let c = self.core.client().await?;
        self.core.query_in(&c, query, after, limit).await
    }

    async fn purge_dead(&self, filter: &DeadFilter) -> StoreResult<u64> {
        self.core.purge_dead_now(filter).await
    }

    async fn purge_dead_one(&self, id: DeliveryId) -> StoreResult<()> {
        in_tx!(&self.core, durable, |tx, _now| (
            self.core.purge_dead_one_in(&tx, id).await?,
            false
        ));
        Ok(())
    }

    async fn replay_since(&self, handler: &str, since: Timestamp) -> StoreResult<u64> {
        self.core.replay_since_now(handler, since).await
    }

    async fn promote_due(&self, limit: usize) -> StoreResult<usize> {
        self.core.promote_due_now(limit).await
    }

    async fn next_due(&self) -> StoreResult<Option<Timestamp>> {
        let c = self.core.client().await?;
        self.core.next_due_of(&c).await
    }

    async fn expired_leases(&self, limit: usize) -> StoreResult<Vec<ExpiredLease>> {
        let c = self.core.client().await?;
        self.core.expired_leases_of(&c, limit).await
    }

    async fn prune(&self, limit: usize) -> StoreResult<PruneReport> {
        self.core.prune_now(limit).await
    }

    async fn put_schedule(&self, spec: ScheduleSpec) -> StoreResult<ScheduleRecord> {
        let config = &self.core.config;
        spec.validate(config.max_payload_bytes, config.max_headers)?;
        Ok(in_tx!(&self.core, durable, |tx, now| (
            self.core.put_schedule_in(&tx, spec, now).await?,
            false
        )))
    }

    async fn schedule(&self, id: &str) -> StoreResult<ScheduleRecord> {
        let c = self.core.client().await?;
        self.core.schedule_record(&c, id).await
    }

    async fn schedules(&self) -> StoreResult<Vec<ScheduleRecord>> {
        let c = self.core.client().await?;
        self.core.schedule_records(&c).await
    }

    async fn set_schedule_paused(&self, id: &str, paused: bool) -> StoreResult<ScheduleRecord> {
        Ok(in_tx!(&self.core, durable, |tx, now| (
            self.core
                .set_schedule_paused_in(&tx, id, paused, now)
                .await?,
            false
        )))
    }

    async fn remove_schedule(&self, id: &str) -> StoreResult<()> {
        in_tx!(&self.core, durable, |tx, _now| (
            self.core.remove_schedule_in(&tx, id).await?,
            false
        ));
        Ok(())
    }

    async fn advance_schedule(&self, advance: ScheduleAdvance) -> StoreResult<Vec<Occurrence>> {
        for m in advance.messages() {
            crate::store::validate_message(&self.core.config, m)?;
        }
        Ok(in_tx!(&self.core, durable, |tx, now| {
            self.core.advance_schedule_in(&tx, &advance, now).await?
        }))
    }

    async fn schedule_occurrences(&self, id: &str, limit: usize) -> StoreResult<Vec<Occurrence>> {
        let c = self.core.client().await?;
        self.core.schedule_occurrences_of(&c, id, limit).await
    }

    async fn message(&self, id: MessageId) -> StoreResult<MessageStatus> {
        let c = self.core.client().await?;
        self.core.message_status_of(&c, id).await
    }

    async fn delivery(&self, id: DeliveryId) -> StoreResult<DeliveryStatus> {
        let c = self.core.client().await?;
        let rec = self.core.delivery_row(&c, id).await?;
        self.core.status_of(&c, rec).await
    }

    async fn stats(&self) -> StoreResult<Stats> {
        let c = self.core.client().await?;
        self.core.stats_of(&c).await
    }
}
