//! The durable queue, behind a trait of queue verbs.
//!
//! [`Store`] speaks queue, not storage: enqueue, lease, extend, complete, fail,
//! replay, promote due, expired leases, prune, stats. Nothing in it is shaped
//! like a storage engine, so Postgres or NATS JetStream can implement it; every
//! backend runs the shared [`conformance`] suite. Backends store what they are
//! told: a failure's fate is [`HandlerPolicy::fate`]'s, applied by whoever
//! settles the attempt.
//!
//! # Module map
//! | question | where |
//! | --- | --- |
//! | the verbs and the types they speak | this file |
//! | the input rules every backend enforces (names, sizes, headers, times), new ids | `validate.rs` |
//! | schedules: spec, durable cursor, occurrences, the advance a tick applies | `schedule.rs` |
//! | the embedded backend (default): a write-ahead-log store whose checkpoints live in sled | [`EmbeddedStore`], `embedded/` (its own map in `embedded/mod.rs`) |
//! | how is an acknowledgement made durable? | `embedded/flusher.rs` (group commit); `embedded/mod.rs` shows which verbs wait |
//! | where is a delivery leased? completed? failed? | `embedded/queue.rs` |
//! | which index entries does a delivery have in each state? | `embedded/delivery.rs` (`state_entry`, `save`) |
//! | what happens to leases after a crash? | `embedded/recover.rs` |
//! | how are expired leases rescued? | `worker/maintenance/rescue.rs` asks [`Store::expired_leases`], settles through [`Store::fail`] |
//! | the key layout | `embedded/keys.rs` |
//! | the conformance suite every backend passes (a test kit: compiled for tests and with feature `testkit`; one file per verb group) | `conformance/`, docs/store.md |
//!
//! # Invariants every backend keeps
//! - **Durable before acknowledged.** A verb that changes state returns `Ok` only
//!   once the change is on disk. Concurrent callers share flushes (group commit).
//! - **Fan-out is atomic.** An enqueue creates the message and one delivery per
//!   handler subscribed at that moment, all or nothing.
//! - **Fencing.** Changing a leased delivery needs its [`Lease`]; a stale lease (the
//!   delivery was rescued or released meanwhile) gets [`StoreError::LeaseLost`].
//! - **Per-key order.** Per handler, at most one delivery per ordering key is
//!   in flight (ready, leased or retrying), in enqueue order.
//! - **Cost does not grow with backlog.** Enqueue, lease and complete touch
//!   ordered indexes only; nothing scans the backlog.
//!
//! Delivery states and their transitions are drawn in `docs/delivery-states.md`.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::clock::Timestamp;
use crate::names::NameError;
use crate::outcome::Outcome;
use crate::policy::{Disposition, HandlerPolicy, PolicyError};
use crate::sandbox::EgressRecord;

#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
mod embedded;
mod postgres;
mod schedule;
mod validate;

pub use embedded::{EmbeddedSettings, EmbeddedStore};
pub use postgres::{
    DEFAULT_POLL_FALLBACK as PG_DEFAULT_POLL_FALLBACK, DEFAULT_POOL_SIZE as PG_DEFAULT_POOL_SIZE,
    DEFAULT_SCHEMA as PG_DEFAULT_SCHEMA, PgOptions, PgStore, PgTime,
    check_schema as check_pg_schema, migrate as pg_migrate,
};

pub use schedule::{
    CatchUp, DEFAULT_CATCH_UP_WINDOW, DEFAULT_MAX_CATCH_UP, KEPT_OCCURRENCES, MAX_CATCH_UP,
    MAX_JITTER, MissReason, Occurrence, OccurrenceKind, Overlap, PlannedOccurrence,
    SCHEDULE_HEADERS, ScheduleAdvance, ScheduleFieldError, ScheduleRecord, ScheduleSpec,
};
pub(crate) use validate::{
    check_same_topic, new_id, outbox_message, validate_message, validate_outbox, validate_spec,
};

/// A message's id: a UUID v7, so ids sort by enqueue time.
pub type MessageId = Uuid;
/// A delivery's id (one message for one handler): a UUID v7.
pub type DeliveryId = Uuid;

/// Limits and retention of a store, the same for every backend. Defaults per
/// SPEC §2–3. A backend's own tuning is its own: [`EmbeddedSettings`] for the
/// embedded engine's log, [`PgOptions`] for PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// Largest payload accepted. Default 1 MiB.
    pub max_payload_bytes: usize,
    /// Most undelivered deliveries per topic before enqueue gets
    /// [`StoreError::QueueFull`]. Default 1,000,000.
    pub max_topic_depth: u64,
    /// How long an idempotency key is remembered. Default 24 h.
    pub idempotency_window: Duration,
    /// How long a message is kept for replay once all its deliveries are done. Default 7 days.
    pub message_retention: Duration,
    /// How long a dead delivery stays in the DLQ. Default 14 days.
    pub dlq_retention: Duration,
    /// Most headers per message. Default 64.
    pub max_headers: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_payload_bytes: 1 << 20,
            max_topic_depth: 1_000_000,
            idempotency_window: Duration::from_secs(24 * 3600),
            message_retention: Duration::from_secs(7 * 24 * 3600),
            dlq_retention: Duration::from_secs(14 * 24 * 3600),
            max_headers: 64,
        }
    }
}

/// Upper bounds of the durable-commit batch-size histogram in
/// [`Stats::commit_batches`] (`u64::MAX` = +Inf), for every backend.
pub const COMMIT_BATCH_BOUNDS: [u64; 12] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, u64::MAX];

/// A message to enqueue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewMessage {
    /// The topic; must exist (have had a handler registered).
    pub topic: String,
    /// The payload, passed to the guest on stdin exactly as given.
    pub payload: Bytes,
    /// Messages with the same key are handled one at a time, in enqueue order.
    pub ordering_key: Option<String>,
    /// Deduplicates enqueues within the window; default: the message id.
    pub idempotency_key: Option<String>,
    /// Free-form headers, kept with the message.
    pub headers: BTreeMap<String, String>,
    /// Not delivered before this time.
    pub not_before: Option<Timestamp>,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// UUID v7.
    pub id: MessageId,
    /// Its topic.
    pub topic: String,
    /// The payload.
    pub payload: Bytes,
    /// Ordering key, if any.
    pub ordering_key: Option<String>,
    /// The producer's idempotency key, or the message id.
    pub idempotency_key: String,
    /// Headers.
    pub headers: BTreeMap<String, String>,
    /// When it was accepted.
    pub enqueued_at: Timestamp,
    /// When it was accepted, in microseconds since the epoch (end-to-end latency).
    pub enqueued_at_micros: u64,
    /// Not delivered before this time.
    pub not_before: Option<Timestamp>,
}

/// The answer to one enqueued message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enqueued {
    /// The message id (the original one for a duplicate).
    pub id: MessageId,
    /// True when the idempotency key was seen within the window: nothing was created.
    pub duplicate: bool,
}

/// A handler to register: one module subscribed to one topic, with its policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandlerSpec {
    /// Handler name, `[a-z0-9][a-z0-9._-]{0,127}`.
    pub name: String,
    /// The topic it subscribes to (created if new).
    pub topic: String,
    /// Limits, retries, concurrency, environment.
    pub policy: HandlerPolicy,
}

/// A registered handler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandlerRecord {
    /// Name.
    pub name: String,
    /// Subscribed topic.
    pub topic: String,
    /// sha256 (hex) of the current module.
    pub module_sha256: String,
    /// Policy.
    pub policy: HandlerPolicy,
    /// A paused handler keeps receiving deliveries but none is leased.
    pub paused: bool,
    /// Why the runner paused it, when it did: its configuration cannot run
    /// on this runner (e.g. a memory limit above the sandbox's ceiling, a
    /// module the engine refuses). `None` when running or paused by a user.
    /// Registering the handler again or resuming it clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_reason: Option<String>,
    /// First registration.
    pub created_at: Timestamp,
    /// Last change (module, policy or pause).
    pub updated_at: Timestamp,
    /// Bumped on every re-registration.
    pub version: u64,
}

/// The right to change one leased delivery. Stale once the delivery was rescued,
/// released or completed: then every use gets [`StoreError::LeaseLost`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// Fencing token, unique per lease.
    pub token: u64,
    /// The lease ends here unless extended.
    pub expires_at: Timestamp,
}

/// A lease whose expiry passed: its attempt outlived the lease (a stuck or
/// vanished worker). The rescuer settles it through [`Store::fail`] with the
/// policy's answer; fencing makes that safe against a late completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredLease {
    /// The expired lease (still the current one when listed).
    pub lease: Lease,
    /// The delivery's handler.
    pub handler: String,
    /// The attempt's number, 1-based, counted since the last replay.
    pub attempt: u32,
    /// When the attempt was leased.
    pub started_at: Timestamp,
}

/// A delivery handed to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leased {
    /// The lease to complete or fail with.
    pub lease: Lease,
    /// The message.
    pub message: Message,
    /// The handler.
    pub handler: String,
    /// This attempt's number, 1-based, counted since the last replay.
    pub attempt: u32,
    /// Attempts allowed by the policy at lease time.
    pub max_attempts: u32,
}

/// What a finished attempt reports. `started_at` and the number come from the lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptReport {
    /// How it ended.
    pub outcome: Outcome,
    /// Wall-clock duration.
    pub duration_ms: u64,
    /// sha256 of the module that ran.
    pub module_sha256: String,
    /// Captured stdout (capped).
    pub stdout: Bytes,
    /// True when stdout was cut at the cap.
    pub stdout_truncated: bool,
    /// Captured stderr (capped).
    pub stderr: Bytes,
    /// True when stderr was cut at the cap.
    pub stderr_truncated: bool,
    /// Peak linear memory.
    pub peak_memory_bytes: u64,
    /// Fuel consumed, when metered.
    pub fuel_used: Option<u64>,
    /// The attempt's outbound HTTP requests, in order (method, origin,
    /// status, bytes, duration, outcome; never headers or bodies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<EgressRecord>,
}

impl AttemptReport {
    /// The report of an attempt that never reported an outcome (a restart, an
    /// expired lease, a host failure): no output, [`Outcome::Interrupted`].
    pub fn interrupted(reason: &str, duration_ms: u64, module_sha256: String) -> AttemptReport {
        AttemptReport {
            outcome: Outcome::Interrupted {
                reason: reason.to_string(),
            },
            duration_ms,
            module_sha256,
            stdout: Bytes::new(),
            stdout_truncated: false,
            stderr: Bytes::new(),
            stderr_truncated: false,
            peak_memory_bytes: 0,
            fuel_used: None,
            egress: Vec::new(),
        }
    }
}

/// One recorded attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// 1-based within its round.
    pub number: u32,
    /// 0 for the first life of the delivery, +1 per replay from the DLQ.
    pub round: u32,
    /// When it was leased.
    pub started_at: Timestamp,
    /// When its outcome was recorded; `None` while running.
    pub finished_at: Option<Timestamp>,
    /// The report; `None` while running.
    pub report: Option<AttemptReport>,
}

/// A message going out through the transactional outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Target topic.
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
    /// Ordering key, if any.
    pub ordering_key: Option<String>,
    /// Delay relative to the completion.
    pub delay: Option<Duration>,
}

/// Where a delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its not-before time.
    Scheduled,
    /// Waiting behind an earlier delivery with the same ordering key. Shown as
    /// `ready` to users (it waits for nothing but its turn).
    Blocked,
    /// Can be leased.
    Ready,
    /// A worker holds it.
    Leased,
    /// Waiting out a backoff.
    Retrying,
    /// Done.
    Succeeded,
    /// In the DLQ.
    Dead,
}

impl DeliveryState {
    /// Every state.
    pub const ALL: [DeliveryState; 7] = [
        DeliveryState::Scheduled,
        DeliveryState::Blocked,
        DeliveryState::Ready,
        DeliveryState::Leased,
        DeliveryState::Retrying,
        DeliveryState::Succeeded,
        DeliveryState::Dead,
    ];

    /// The state as users see it (SPEC §1): `blocked` shows as `ready`.
    pub fn public_name(self) -> &'static str {
        match self {
            DeliveryState::Scheduled => "scheduled",
            DeliveryState::Blocked | DeliveryState::Ready => "ready",
            DeliveryState::Leased => "leased",
            DeliveryState::Retrying => "retrying",
            DeliveryState::Succeeded => "succeeded",
            DeliveryState::Dead => "dead",
        }
    }

    /// The state named `name` as users see it ([`DeliveryState::public_name`]);
    /// `ready` is [`DeliveryState::Ready`], which queries match with `Blocked`.
    pub fn from_public_name(name: &str) -> Option<DeliveryState> {
        DeliveryState::ALL
            .into_iter()
            .filter(|s| *s != DeliveryState::Blocked)
            .find(|s| s.public_name() == name)
    }

    /// Not yet succeeded or dead: counts towards the topic's depth.
    pub fn is_open(self) -> bool {
        !matches!(self, DeliveryState::Succeeded | DeliveryState::Dead)
    }
}

/// A delivery with its history, for inspection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryStatus {
    /// Delivery id.
    pub id: DeliveryId,
    /// Its message.
    pub message_id: MessageId,
    /// Its handler.
    pub handler: String,
    /// Current state.
    pub state: DeliveryState,
    /// Scheduled or retrying: when it becomes ready.
    pub next_at: Option<Timestamp>,
    /// Leased: when the lease expires.
    pub lease_expires_at: Option<Timestamp>,
    /// Dead: why.
    pub dead_reason: Option<String>,
    /// Dead: since when.
    pub dead_at: Option<Timestamp>,
    /// Creation (enqueue or replay).
    pub created_at: Timestamp,
    /// Every attempt, oldest first, across replays.
    pub attempts: Vec<AttemptRecord>,
}

/// A message with all its deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageStatus {
    /// The message.
    pub message: Message,
    /// One per handler subscribed at enqueue (plus replays).
    pub deliveries: Vec<DeliveryStatus>,
}

/// Which dead deliveries a DLQ verb applies to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeadFilter {
    /// Only this handler's DLQ.
    pub handler: Option<String>,
    /// Dead at or after.
    pub since: Option<Timestamp>,
    /// Dead before.
    pub until: Option<Timestamp>,
    /// Only deliveries whose last attempt ended with this outcome kind.
    pub outcome: Option<String>,
}

/// Which deliveries [`Store::query_deliveries`] returns: every criterion set
/// must hold (an empty query matches every delivery). The dashboard's lists and
/// search and `GET /v1/deliveries` all ask through this one verb.
///
/// A backend serves it from indexes: a delivery id, a message id or an
/// idempotency key names its few candidates directly; otherwise the
/// handler (or the topic's handlers, or every handler) and the state (or
/// the ordering key) select ordered index ranges, bounded by the time range.
/// `outcome` and the remaining criteria filter those candidates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeliveryQuery {
    /// Only this delivery.
    pub delivery_id: Option<DeliveryId>,
    /// Only this message's deliveries.
    pub message_id: Option<MessageId>,
    /// Only deliveries of the message(s) enqueued with this idempotency key
    /// (the producer's key or, by default, the message id), found through the
    /// idempotency index, so within the idempotency window (default 24 h).
    pub idempotency_key: Option<String>,
    /// Only messages with this ordering key.
    pub ordering_key: Option<String>,
    /// Only deliveries for handlers subscribed to this topic.
    pub topic: Option<String>,
    /// Only this handler's deliveries.
    pub handler: Option<String>,
    /// Only deliveries in this state as users see it: `Ready` also matches
    /// `Blocked` (see [`DeliveryState::public_name`]).
    pub state: Option<DeliveryState>,
    /// Only deliveries whose last finished attempt ended with this outcome
    /// kind ([`Outcome::kind`]).
    pub outcome: Option<String>,
    /// Created (enqueued, or re-delivered by `replay_since`) at or after.
    pub since: Option<Timestamp>,
    /// Created before.
    pub until: Option<Timestamp>,
    /// Newest first (the default for lists) instead of oldest first.
    pub newest_first: bool,
}

impl DeliveryQuery {
    /// Whether a delivery in `state` matches this query's state criterion.
    pub fn state_matches(&self, state: DeliveryState) -> bool {
        match self.state {
            None => true,
            Some(DeliveryState::Ready | DeliveryState::Blocked) => {
                matches!(state, DeliveryState::Ready | DeliveryState::Blocked)
            }
            Some(s) => s == state,
        }
    }
}

/// One page of [`Store::query_deliveries`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryPage {
    /// The matches, in the query's order (by delivery id, which is a UUID v7
    /// of its creation time).
    pub deliveries: Vec<DeliveryStatus>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next: Option<DeliveryId>,
}

/// Counts of one handler, the three signals among them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandlerStats {
    /// Handler.
    pub handler: String,
    /// Its topic.
    pub topic: String,
    /// Paused?
    pub paused: bool,
    /// Deliveries per state (every state present, `blocked` separate).
    pub counts: BTreeMap<DeliveryState, u64>,
    /// When the oldest ready delivery became ready (consumer lag).
    pub oldest_ready_at: Option<Timestamp>,
}

/// Store-wide counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Per handler.
    pub handlers: Vec<HandlerStats>,
    /// Open deliveries per topic (the backpressure measure).
    pub topic_depth: BTreeMap<String, u64>,
    /// Durable commits made since the store was opened: the embedded
    /// store's log fsyncs, PostgreSQL's synchronous COMMITs (every runner
    /// counts its own).
    pub durable_commits: u64,
    /// Verbs those commits made durable (group commit: `durable_ops /
    /// durable_commits` is the mean batch).
    pub durable_ops: u64,
    /// Durable commits by the verbs they covered: (upper bound, count),
    /// non-cumulative; the last bound is `u64::MAX` (+Inf).
    pub commit_batches: Vec<(u64, u64)>,
}

/// What one prune pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneReport {
    /// Messages past retention with every delivery done.
    pub messages: u64,
    /// Dead deliveries past DLQ retention.
    pub dead: u64,
    /// Idempotency keys past the window.
    pub idempotency_keys: u64,
    /// Modules garbage-collected: no handler's current module, no retained
    /// attempt's, for at least [`MODULE_GRACE`].
    #[serde(default)]
    pub modules: u64,
}

/// How long a module nothing references is kept before upkeep deletes it,
/// counted from the prune pass that first finds it unreferenced: the longest
/// an attempt can run (the sandbox's longest timeout, 12 h). An attempt still
/// running a module its handler no longer uses (re-registered or removed
/// meanwhile) records that module when it settles, well inside the grace, so
/// the module is referenced again before it could go (docs/cli.md, "Modules").
pub const MODULE_GRACE: Duration = Duration::from_millis(crate::policy::MAX_DURATION_MS);

/// A store failure. Every variant names the problem; none acknowledges anything
/// that is not durable.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A topic, handler or key breaks the naming rules.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// A policy value is out of bounds.
    #[error(transparent)]
    InvalidPolicy(#[from] PolicyError),
    /// Something else about the input is wrong (e.g. too many headers).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The payload is larger than the configured maximum.
    #[error("payload of {size} bytes exceeds the maximum of {max} bytes")]
    PayloadTooLarge {
        /// Its size.
        size: usize,
        /// The maximum.
        max: usize,
    },
    /// No handler was ever registered on this topic.
    #[error("unknown topic {0:?}: register a handler on it first")]
    UnknownTopic(String),
    /// No such handler.
    #[error("unknown handler {0:?}")]
    UnknownHandler(String),
    /// No such message (or it was pruned).
    #[error("unknown message {0}")]
    UnknownMessage(MessageId),
    /// No such delivery (or it was pruned).
    #[error("unknown delivery {0}")]
    UnknownDelivery(DeliveryId),
    /// No module with this sha256 is stored.
    #[error("unknown module {0}")]
    UnknownModule(String),
    /// No such schedule.
    #[error("unknown schedule {0:?}")]
    UnknownSchedule(String),
    /// A tick's advance was made from a revision that moved meanwhile
    /// (another runner ticked, or the schedule changed); nothing was written.
    #[error("schedule {0:?} changed meanwhile; read it again")]
    ScheduleConflict(String),
    /// The verb needs a dead delivery.
    #[error("delivery {0} is not dead")]
    NotDead(DeliveryId),
    /// The topic is at its maximum depth; nothing was enqueued. Retry later.
    #[error("topic {topic:?} is full ({depth} undelivered, maximum {max}); retry later")]
    QueueFull {
        /// The topic.
        topic: String,
        /// Its depth.
        depth: u64,
        /// The maximum.
        max: u64,
    },
    /// The lease is stale: the delivery was rescued, released or completed.
    #[error("lease on delivery {0} was lost (expired, released or already completed)")]
    LeaseLost(DeliveryId),
    /// The disk is full; nothing was acknowledged.
    #[error("disk full: {0}")]
    DiskFull(#[source] std::io::Error),
    /// An I/O error from the store's files; nothing was acknowledged.
    #[error("store I/O error: {0}")]
    Io(#[source] std::io::Error),
    /// Stored data could not be decoded.
    #[error("store corrupted: {0}")]
    Corrupt(String),
    /// The store is shutting down or was closed.
    #[error("store closed")]
    Closed,
    /// The database could not be reached, or a commit's outcome is unknown
    /// (the connection dropped during COMMIT); nothing was acknowledged.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store's schema was written by a newer sluice; this one refuses to
    /// touch it rather than misread it.
    #[error(
        "the store's schema is version {found}, newer than this sluice's {supported}: upgrade sluice"
    )]
    SchemaTooNew {
        /// The version found.
        found: i32,
        /// The newest version this build knows.
        supported: i32,
    },
}

impl StoreError {
    /// An I/O error, split into [`StoreError::DiskFull`] and [`StoreError::Io`].
    pub fn from_io(e: std::io::Error) -> StoreError {
        if e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28) {
            StoreError::DiskFull(e)
        } else {
            StoreError::Io(e)
        }
    }

    /// Transient failures of the store itself (503): retrying later may work.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::DiskFull(_)
                | StoreError::Io(_)
                | StoreError::Closed
                | StoreError::Unavailable(_)
        )
    }
}

/// Result of a store verb.
pub type StoreResult<T> = Result<T, StoreError>;

/// The queue's verbs. See the module docs for the invariants.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // ---- handlers and modules ----

    /// Registers or replaces a handler and stores its module. Replacing keeps the
    /// handler's deliveries; attempts leased later run the new module.
    async fn put_handler(&self, spec: HandlerSpec, module: Bytes) -> StoreResult<HandlerRecord>;
    /// One handler.
    async fn handler(&self, name: &str) -> StoreResult<HandlerRecord>;
    /// All handlers, by name.
    async fn handlers(&self) -> StoreResult<Vec<HandlerRecord>>;
    /// A module's bytes by sha256: any handler's current module, and any
    /// module a retained attempt records, until [`Store::prune`] collects it.
    async fn module(&self, sha256: &str) -> StoreResult<Bytes>;
    /// Pauses or resumes a handler: paused, its deliveries wait and none is
    /// leased. Clears a [`HandlerRecord::paused_reason`].
    async fn set_paused(&self, name: &str, paused: bool) -> StoreResult<HandlerRecord>;
    /// The runner's pause of a handler whose configuration cannot run, so no
    /// delivery spends its attempts on it: pauses `name` with `reason` if it
    /// is still at `version` (a registration since then may have fixed it)
    /// and not paused already. Returns whether it paused it (`false` too when
    /// the handler is gone). The pause ends
    /// when the handler is registered again or resumed.
    async fn pause_unrunnable(&self, name: &str, version: u64, reason: &str) -> StoreResult<bool>;
    /// Removes a handler with all its deliveries (open and dead). Returns how many
    /// deliveries went with it.
    async fn remove_handler(&self, name: &str) -> StoreResult<u64>;

    // ---- the queue ----

    /// Enqueues a batch atomically: every message with its fan-out, or nothing
    /// (e.g. [`StoreError::QueueFull`]). Duplicates return the original id.
    async fn enqueue(&self, batch: Vec<NewMessage>) -> StoreResult<Vec<Enqueued>>;
    /// Leases up to `max` ready deliveries of `handler`, oldest first, for the
    /// handler's lease duration. A paused handler gets none. Records each attempt
    /// as started.
    async fn lease(&self, handler: &str, max: usize) -> StoreResult<Vec<Leased>>;
    /// Extends a lease by the handler's lease duration from now.
    async fn extend(&self, lease: &Lease) -> StoreResult<Lease>;
    /// Records a successful attempt and commits its outbox atomically with it.
    /// Outbox messages get idempotency keys derived from (message, handler, index),
    /// so a re-run never duplicates them downstream.
    async fn complete(
        &self,
        lease: &Lease,
        report: AttemptReport,
        outbox: Vec<OutboxMessage>,
    ) -> StoreResult<()>;
    /// Records a failed attempt and retries or dead-letters the delivery.
    async fn fail(
        &self,
        lease: &Lease,
        report: AttemptReport,
        disposition: Disposition,
    ) -> StoreResult<()>;
    /// Wakes when deliveries may have become ready (enqueue, completion, promotion,
    /// rescue). Producers wait on this instead of polling.
    fn ready_signal(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Wakes when a handler is registered, updated, paused, resumed or removed,
    /// so the runner starts a new handler's producer at once rather than at
    /// its next poll.
    fn handlers_signal(&self) -> tokio::sync::watch::Receiver<u64>;

    // ---- the DLQ and replay ----

    /// Replays one dead delivery: back to ready with fresh attempts; history kept.
    async fn replay_dead(&self, id: DeliveryId) -> StoreResult<()>;
    /// Dead deliveries matching `filter`, oldest death first, after `after`.
    async fn dead_letters(
        &self,
        filter: &DeadFilter,
        after: Option<DeliveryId>,
        limit: usize,
    ) -> StoreResult<Vec<DeliveryStatus>>;
    /// Purges dead deliveries matching `filter`; returns how many.
    async fn purge_dead(&self, filter: &DeadFilter) -> StoreResult<u64>;
    /// Purges one dead delivery.
    async fn purge_dead_one(&self, id: DeliveryId) -> StoreResult<()>;
    /// Re-delivers every retained message of the handler's topic enqueued at or
    /// after `since` to that handler, as new deliveries. Returns how many.
    async fn replay_since(&self, handler: &str, since: Timestamp) -> StoreResult<u64>;

    // ---- upkeep ----

    /// Makes up to `limit` scheduled or retrying deliveries whose time has come ready.
    async fn promote_due(&self, limit: usize) -> StoreResult<usize>;
    /// The earliest time a scheduled or retrying delivery becomes due.
    async fn next_due(&self) -> StoreResult<Option<Timestamp>>;
    /// Up to `limit` leases whose expiry has passed, earliest first. Changes
    /// nothing: the rescuer records each attempt as interrupted through
    /// [`Store::fail`] with the policy's disposition.
    async fn expired_leases(&self, limit: usize) -> StoreResult<Vec<ExpiredLease>>;
    /// Removes up to `limit` items past retention or the idempotency window,
    /// and up to `limit` modules that no handler uses and no retained attempt
    /// records, once they have been so for [`MODULE_GRACE`] (the first pass
    /// that finds one unreferenced starts its grace; registering it again, or
    /// an attempt recording it, ends the grace). Safe on every runner at once.
    async fn prune(&self, limit: usize) -> StoreResult<PruneReport>;

    // ---- schedules (types and rules: schedule.rs, crate::schedule) ----

    /// Creates or replaces (by id) a schedule; its topic must exist.
    /// Replacing keeps its cursor, counts and occurrences.
    async fn put_schedule(&self, spec: ScheduleSpec) -> StoreResult<ScheduleRecord>;
    /// One schedule.
    async fn schedule(&self, id: &str) -> StoreResult<ScheduleRecord>;
    /// Every schedule, by id.
    async fn schedules(&self) -> StoreResult<Vec<ScheduleRecord>>;
    /// Pauses or resumes a schedule.
    async fn set_schedule_paused(&self, id: &str, paused: bool) -> StoreResult<ScheduleRecord>;
    /// Removes a schedule and its occurrence records (its messages stay).
    async fn remove_schedule(&self, id: &str) -> StoreResult<()>;
    /// Applies a tick's (or trigger's) advance in one batch: the messages
    /// enqueued (duplicates create nothing), the occurrences recorded, the
    /// cursor moved; or, when the schedule is no longer at the advance's
    /// revision, nothing ([`StoreError::ScheduleConflict`]). Returns the
    /// occurrences recorded.
    async fn advance_schedule(&self, advance: ScheduleAdvance) -> StoreResult<Vec<Occurrence>>;
    /// A schedule's last `limit` occurrence records, newest first.
    async fn schedule_occurrences(&self, id: &str, limit: usize) -> StoreResult<Vec<Occurrence>>;

    // ---- inspection ----

    /// Deliveries matching `query`, in its order, after the delivery `after`
    /// (exclusive; a cursor from [`DeliveryPage::next`]), at most `limit`.
    /// Served from indexes (see [`DeliveryQuery`]); a query naming an unknown
    /// handler gets [`StoreError::UnknownHandler`].
    async fn query_deliveries(
        &self,
        query: &DeliveryQuery,
        after: Option<DeliveryId>,
        limit: usize,
    ) -> StoreResult<DeliveryPage>;

    /// A message with its deliveries and their attempts.
    async fn message(&self, id: MessageId) -> StoreResult<MessageStatus>;
    /// One delivery with its attempts.
    async fn delivery(&self, id: DeliveryId) -> StoreResult<DeliveryStatus>;
    /// Counts per handler and topic.
    async fn stats(&self) -> StoreResult<Stats>;
}
