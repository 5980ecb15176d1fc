//! The JSON documents of the API, shared by the server and the CLI.
//!
//! Store records are converted into these views at the edge: times become
//! RFC 3339 strings, delivery states their public names (SPEC §1), captured
//! output lossy UTF-8 strings. The CLI deserializes the same types, so `--json`
//! output is exactly what the server sent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::clock::Timestamp;
use crate::outcome::Outcome;
use crate::policy::HandlerPolicy;
use crate::sandbox::EgressRecord;
use crate::store::{
    AttemptRecord, DeliveryState, DeliveryStatus, HandlerRecord, HandlerStats, MessageStatus, Stats,
};

/// Answer to one enqueued message (`202 Accepted`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnqueuedView {
    /// The message id; for a duplicate, the original message's id.
    pub id: Uuid,
    /// True when the idempotency key was seen within the window: nothing new was created.
    pub duplicate: bool,
}

/// Answer to a batch enqueue: one entry per message, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchEnqueuedView {
    /// Per message.
    pub messages: Vec<EnqueuedView>,
}

/// One message of a batch enqueue. Exactly one of `payload` (UTF-8 text) and
/// `payload_base64` may be given (none: empty payload); at most one of
/// `delay_ms`, `delay` and `not_before`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BatchItem {
    /// Payload as text.
    pub payload: Option<String>,
    /// Payload as standard base64, for binary data.
    pub payload_base64: Option<String>,
    /// Ordering key.
    pub ordering_key: Option<String>,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
    /// Delay in milliseconds, at most 3650 days.
    #[schema(maximum = 315_360_000_000_u64)]
    pub delay_ms: Option<u64>,
    /// Delay as text, e.g. `10s`.
    pub delay: Option<String>,
    /// Not delivered before this RFC 3339 time.
    #[schema(format = DateTime)]
    pub not_before: Option<String>,
    /// Free-form headers.
    pub headers: BTreeMap<String, String>,
}

/// A message with its deliveries (`GET /v1/messages/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MessageView {
    /// Message id.
    pub id: Uuid,
    /// Topic.
    pub topic: String,
    /// Ordering key.
    pub ordering_key: Option<String>,
    /// The producer's idempotency key, or the message id.
    pub idempotency_key: String,
    /// Headers.
    pub headers: BTreeMap<String, String>,
    /// RFC 3339.
    pub enqueued_at: String,
    /// RFC 3339, if delayed.
    pub not_before: Option<String>,
    /// Payload size in bytes.
    pub payload_bytes: usize,
    /// One per handler (plus replays).
    pub deliveries: Vec<DeliveryView>,
}

impl From<MessageStatus> for MessageView {
    fn from(s: MessageStatus) -> Self {
        let m = s.message;
        MessageView {
            id: m.id,
            topic: m.topic,
            ordering_key: m.ordering_key,
            idempotency_key: m.idempotency_key,
            headers: m.headers,
            enqueued_at: m.enqueued_at.to_rfc3339(),
            not_before: m.not_before.map(Timestamp::to_rfc3339),
            payload_bytes: m.payload.len(),
            deliveries: s.deliveries.into_iter().map(DeliveryView::from).collect(),
        }
    }
}

/// One delivery (one message for one handler) with its attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryView {
    /// Delivery id.
    pub id: Uuid,
    /// Its message.
    pub message_id: Uuid,
    /// Its handler.
    pub handler: String,
    /// `scheduled | ready | leased | retrying | succeeded | dead`.
    pub state: String,
    /// Scheduled or retrying: when it becomes ready (RFC 3339).
    pub next_at: Option<String>,
    /// Leased: when the lease expires.
    pub lease_expires_at: Option<String>,
    /// Dead: why.
    pub dead_reason: Option<String>,
    /// Dead: since when.
    pub dead_at: Option<String>,
    /// Created (enqueue or replay-from-time).
    pub created_at: String,
    /// Every attempt, oldest first, across replays.
    pub attempts: Vec<AttemptView>,
}

impl From<DeliveryStatus> for DeliveryView {
    fn from(d: DeliveryStatus) -> Self {
        DeliveryView {
            id: d.id,
            message_id: d.message_id,
            handler: d.handler,
            state: d.state.public_name().to_string(),
            next_at: d.next_at.map(Timestamp::to_rfc3339),
            lease_expires_at: d.lease_expires_at.map(Timestamp::to_rfc3339),
            dead_reason: d.dead_reason,
            dead_at: d.dead_at.map(Timestamp::to_rfc3339),
            created_at: d.created_at.to_rfc3339(),
            attempts: d.attempts.into_iter().map(AttemptView::from).collect(),
        }
    }
}

/// One attempt. While it runs, `outcome` and `finished_at` are `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttemptView {
    /// 1-based within its round.
    pub number: u32,
    /// 0 for the first life, +1 per replay from the DLQ.
    pub round: u32,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339; `null` while running.
    pub finished_at: Option<String>,
    /// How it ended (object with `kind`); `null` while running.
    pub outcome: Option<Outcome>,
    /// Captured stdout, lossy UTF-8.
    pub stdout: String,
    /// True when stdout was cut at the cap.
    pub stdout_truncated: bool,
    /// Captured stderr, lossy UTF-8.
    pub stderr: String,
    /// True when stderr was cut at the cap.
    pub stderr_truncated: bool,
    /// Wall-clock duration.
    pub duration_ms: Option<u64>,
    /// sha256 of the module that ran.
    pub module_sha256: Option<String>,
    /// Peak linear memory.
    pub peak_memory_bytes: Option<u64>,
    /// Fuel consumed, when metered.
    pub fuel_used: Option<u64>,
    /// Its outbound HTTP requests, in order (never headers or bodies).
    #[serde(default)]
    pub egress: Vec<EgressRecord>,
}

impl From<AttemptRecord> for AttemptView {
    fn from(a: AttemptRecord) -> Self {
        let mut v = AttemptView {
            number: a.number,
            round: a.round,
            started_at: a.started_at.to_rfc3339(),
            finished_at: a.finished_at.map(Timestamp::to_rfc3339),
            outcome: None,
            stdout: String::new(),
            stdout_truncated: false,
            stderr: String::new(),
            stderr_truncated: false,
            duration_ms: None,
            module_sha256: None,
            peak_memory_bytes: None,
            fuel_used: None,
            egress: Vec::new(),
        };
        if let Some(r) = a.report {
            v.outcome = Some(r.outcome);
            v.stdout = String::from_utf8_lossy(&r.stdout).into_owned();
            v.stdout_truncated = r.stdout_truncated;
            v.stderr = String::from_utf8_lossy(&r.stderr).into_owned();
            v.stderr_truncated = r.stderr_truncated;
            v.duration_ms = Some(r.duration_ms);
            v.module_sha256 = Some(r.module_sha256);
            v.peak_memory_bytes = Some(r.peak_memory_bytes);
            v.fuel_used = r.fuel_used;
            v.egress = r.egress;
        }
        v
    }
}

/// The attempts of one delivery (`GET /v1/deliveries/{id}/attempts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttemptsView {
    /// The delivery.
    pub delivery_id: Uuid,
    /// Its handler.
    pub handler: String,
    /// Oldest first.
    pub attempts: Vec<AttemptView>,
}

/// A registered handler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HandlerView {
    /// Name.
    pub name: String,
    /// Subscribed topic.
    pub topic: String,
    /// sha256 of the current module.
    pub module_sha256: String,
    /// Limits, retries, concurrency, environment (durations in ms).
    pub policy: HandlerPolicy,
    /// Paused handlers keep receiving deliveries but run none.
    pub paused: bool,
    /// Present when the runner paused the handler because its
    /// configuration cannot run here (e.g. a memory limit above the server's
    /// `max_memory_bytes`); no delivery spent an attempt on it. Registering
    /// the handler again or resuming it clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_reason: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Bumped on every re-registration.
    pub version: u64,
}

impl From<HandlerRecord> for HandlerView {
    fn from(h: HandlerRecord) -> Self {
        HandlerView {
            name: h.name,
            topic: h.topic,
            module_sha256: h.module_sha256,
            policy: h.policy,
            paused: h.paused,
            paused_reason: h.paused_reason,
            created_at: h.created_at.to_rfc3339(),
            updated_at: h.updated_at.to_rfc3339(),
            version: h.version,
        }
    }
}

/// All handlers (`GET /v1/handlers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HandlersView {
    /// By name.
    pub handlers: Vec<HandlerView>,
}

/// The server's defaults (`GET /v1/defaults`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DefaultsView {
    /// What a handler gets for each policy field its registration omits
    /// (`concurrency` is the server's number of CPU cores).
    pub policy: HandlerPolicy,
}

/// Registration through `POST /v1/handlers` (JSON instead of a raw module body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Handler name.
    pub name: String,
    /// Topic to subscribe to.
    pub topic: String,
    /// Policy, a JSON object; omitted fields take their defaults.
    #[serde(default, deserialize_with = "HandlerPolicy::deserialize_object")]
    pub policy: HandlerPolicy,
    /// The module, standard base64.
    pub module_base64: String,
}

/// A handler removed with its deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RemovedView {
    /// The handler.
    pub handler: String,
    /// Deliveries (open and dead) removed with it.
    pub deliveries: u64,
}

/// A page of the DLQ (`GET /v1/dlq`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeadLettersView {
    /// Dead deliveries, oldest death first.
    pub dead: Vec<DeliveryView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<Uuid>,
}

/// A page of a delivery search (`GET /v1/deliveries`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveriesView {
    /// Matches, newest first unless `order=oldest`.
    pub deliveries: Vec<DeliveryView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<Uuid>,
}

/// A delivery search (query of `GET /v1/deliveries`, and of the dashboard's
/// lists and search form): every field optional, all given must match.
/// Times are RFC 3339; `state` is a public state name; `order` is `newest`
/// (default) or `oldest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliverySearch {
    /// A delivery id.
    #[param(format = Uuid)]
    pub delivery_id: Option<String>,
    /// A message id.
    #[param(format = Uuid)]
    pub message_id: Option<String>,
    /// A producer's idempotency key.
    pub idempotency_key: Option<String>,
    /// An ordering key.
    pub ordering_key: Option<String>,
    /// A topic.
    pub topic: Option<String>,
    /// A handler.
    pub handler: Option<String>,
    /// `scheduled | ready | leased | retrying | succeeded | dead`.
    #[param(pattern = r"^(scheduled|ready|leased|retrying|succeeded|dead)?$")]
    pub state: Option<String>,
    /// The last attempt's outcome kind (`exit`, `trap`, ...).
    #[param(pattern = r"^(ok|rejected|exit|trap|timeout|memory|fuel|interrupted)?$")]
    pub outcome: Option<String>,
    /// Created at or after.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Created before.
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// `newest` (default) or `oldest`.
    #[param(pattern = r"^(newest|oldest)?$")]
    pub order: Option<String>,
    /// Page size, 1 ..= 1000; default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The previous page's `next_cursor`.
    #[param(format = Uuid)]
    pub cursor: Option<String>,
}

/// How many deliveries a replay or purge affected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CountView {
    /// Replayed (back to ready) or purged.
    pub count: u64,
    /// Matched at the start but no longer dead when reached (replayed or
    /// purged concurrently).
    #[serde(default)]
    pub skipped: u64,
}

/// Which dead deliveries a bulk replay or purge applies to (JSON body of
/// `POST /v1/dlq/replay` and `POST /v1/dlq/purge`). Times are RFC 3339; an empty
/// filter matches the whole DLQ.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DeadFilterView {
    /// Only this handler's DLQ.
    pub handler: Option<String>,
    /// Dead at or after.
    pub since: Option<String>,
    /// Dead before.
    pub until: Option<String>,
    /// Last attempt's outcome kind (`exit`, `trap`, ...).
    pub outcome: Option<String>,
}

/// Counts of one handler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HandlerStatsView {
    /// Handler.
    pub handler: String,
    /// Its topic.
    pub topic: String,
    /// Paused?
    pub paused: bool,
    /// Deliveries per public state (`ready` includes those waiting for their
    /// ordering key's turn).
    pub counts: BTreeMap<String, u64>,
    /// Ready deliveries (consumer backlog).
    pub ready: u64,
    /// Dead deliveries (the handler's DLQ).
    pub dlq: u64,
    /// When the oldest ready delivery became ready (RFC 3339).
    pub oldest_ready_at: Option<String>,
    /// Its age in milliseconds (consumer lag), by the server's clock.
    pub oldest_ready_age_ms: Option<u64>,
}

/// Store-wide counts (`GET /v1/stats`), with the three signals of SPEC §7 summed
/// over handlers: `dlq`, `ready` and `oldest_ready_age_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatsView {
    /// Per handler.
    pub handlers: Vec<HandlerStatsView>,
    /// Open (undelivered) deliveries per topic: the backpressure measure.
    pub topics: BTreeMap<String, u64>,
    /// Dead deliveries in all DLQs.
    pub dlq: u64,
    /// Ready deliveries of all handlers.
    pub ready: u64,
    /// Age of the oldest ready delivery of any handler, ms.
    pub oldest_ready_age_ms: Option<u64>,
    /// Durable commits so far (group commit): the embedded store's fsyncs,
    /// PostgreSQL's synchronous COMMITs by this runner. Named `flushes` on
    /// the wire since it was the embedded store's alone.
    pub flushes: u64,
}

impl HandlerStatsView {
    /// Views one handler's counts, ages measured at `now`.
    pub fn new(h: HandlerStats, now: Timestamp) -> Self {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for state in DeliveryState::ALL {
            *counts.entry(state.public_name().to_string()).or_default() +=
                h.counts.get(&state).copied().unwrap_or(0);
        }
        let ready = counts["ready"];
        let dlq = counts["dead"];
        HandlerStatsView {
            handler: h.handler,
            topic: h.topic,
            paused: h.paused,
            counts,
            ready,
            dlq,
            oldest_ready_at: h.oldest_ready_at.map(Timestamp::to_rfc3339),
            oldest_ready_age_ms: h.oldest_ready_at.map(|t| now.since(t).as_millis() as u64),
        }
    }
}

impl StatsView {
    /// Views the store's stats, ages measured at `now`.
    pub fn new(s: Stats, now: Timestamp) -> Self {
        let handlers: Vec<HandlerStatsView> = s
            .handlers
            .into_iter()
            .map(|h| HandlerStatsView::new(h, now))
            .collect();
        StatsView {
            dlq: handlers.iter().map(|h| h.dlq).sum(),
            ready: handlers.iter().map(|h| h.ready).sum(),
            oldest_ready_age_ms: handlers.iter().filter_map(|h| h.oldest_ready_age_ms).max(),
            handlers,
            topics: s.topic_depth,
            flushes: s.durable_commits,
        }
    }
}
