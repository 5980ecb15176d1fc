//! Rows and the Rust types they hold: one column list per table, one decoder
//! per row shape, the state codes.

use std::collections::BTreeMap;

use bytes::Bytes;
use tokio_postgres::Row;

use super::error::corrupt;
use crate::clock::Timestamp;
use crate::store::{
    AttemptRecord, AttemptReport, DeliveryId, DeliveryState, DeliveryStatus, HandlerRecord,
    Message, MessageId, StoreResult,
};

/// The `smallint` stored for a state (the partial indexes name these numbers).
pub(super) fn state_code(s: DeliveryState) -> i16 {
    match s {
        DeliveryState::Scheduled => 0,
        DeliveryState::Blocked => 1,
        DeliveryState::Ready => 2,
        DeliveryState::Leased => 3,
        DeliveryState::Retrying => 4,
        DeliveryState::Succeeded => 5,
        DeliveryState::Dead => 6,
    }
}

/// The state a stored `smallint` means.
pub(super) fn state_of(code: i16) -> StoreResult<DeliveryState> {
    DeliveryState::ALL
        .into_iter()
        .find(|s| state_code(*s) == code)
        .ok_or_else(|| corrupt("delivery state", code))
}

/// Open states (count towards a topic's depth), as codes.
pub(super) fn open_codes() -> Vec<i16> {
    DeliveryState::ALL
        .into_iter()
        .filter(|s| s.is_open())
        .map(state_code)
        .collect()
}

/// A time column (ms since the epoch).
pub(super) fn ts(v: Option<i64>) -> Option<Timestamp> {
    v.map(|t| Timestamp(t.max(0) as u64))
}

/// A time as a column value.
pub(super) fn col(t: Timestamp) -> i64 {
    t.0.min(i64::MAX as u64) as i64
}

/// The columns of a delivery, in [`DeliveryRow::from_row`]'s order.
pub(super) const DELIVERY_COLS: &str = "id, message_id, handler, ordering_key, not_before, seq, \
     state, due, lease_token, lease_expires_at, attempt, attempt_records, round, dead_reason, \
     dead_at, created_at";

/// A delivery as stored.
#[derive(Debug, Clone)]
pub(super) struct DeliveryRow {
    pub(super) id: DeliveryId,
    pub(super) message_id: MessageId,
    pub(super) handler: String,
    pub(super) ordering_key: Option<String>,
    pub(super) state: DeliveryState,
    pub(super) due: Option<Timestamp>,
    pub(super) lease_token: Option<i64>,
    pub(super) lease_expires_at: Option<Timestamp>,
    pub(super) attempt: u32,
    pub(super) attempt_records: i32,
    pub(super) round: u32,
    pub(super) dead_reason: Option<String>,
    pub(super) dead_at: Option<Timestamp>,
    pub(super) created_at: Timestamp,
}

impl DeliveryRow {
    /// Decodes a row selected with [`DELIVERY_COLS`].
    pub(super) fn from_row(r: &Row) -> StoreResult<DeliveryRow> {
        Ok(DeliveryRow {
            id: r.get(0),
            message_id: r.get(1),
            handler: r.get(2),
            ordering_key: r.get(3),
            state: state_of(r.get(6))?,
            due: ts(r.get(7)),
            lease_token: r.get(8),
            lease_expires_at: ts(r.get(9)),
            attempt: r.get::<_, i32>(10) as u32,
            attempt_records: r.get(11),
            round: r.get::<_, i32>(12) as u32,
            dead_reason: r.get(13),
            dead_at: ts(r.get(14)),
            created_at: Timestamp(r.get::<_, i64>(15) as u64),
        })
    }

    /// What inspection shows, with its attempts.
    pub(super) fn status(self, attempts: Vec<AttemptRecord>) -> DeliveryStatus {
        DeliveryStatus {
            id: self.id,
            message_id: self.message_id,
            handler: self.handler,
            state: self.state,
            next_at: self.due,
            lease_expires_at: self.lease_expires_at,
            dead_reason: self.dead_reason,
            dead_at: self.dead_at,
            created_at: self.created_at,
            attempts,
        }
    }
}

/// The columns of a message, in [`message`]'s order.
pub(super) const MESSAGE_COLS: &str = "id, topic, payload, ordering_key, idempotency_key, headers, \
     enqueued_at, enqueued_at_micros, not_before";

/// Decodes a row selected with [`MESSAGE_COLS`].
pub(super) fn message(r: &Row) -> StoreResult<Message> {
    let headers: serde_json::Value = r.get(5);
    let headers: BTreeMap<String, String> =
        serde_json::from_value(headers).map_err(|e| corrupt("message headers", e))?;
    Ok(Message {
        id: r.get(0),
        topic: r.get(1),
        payload: Bytes::from(r.get::<_, Vec<u8>>(2)),
        ordering_key: r.get(3),
        idempotency_key: r.get(4),
        headers,
        enqueued_at: Timestamp(r.get::<_, i64>(6) as u64),
        enqueued_at_micros: r.get::<_, i64>(7) as u64,
        not_before: ts(r.get(8)),
    })
}

/// The columns of a handler, in [`handler`]'s order.
pub(super) const HANDLER_COLS: &str =
    "name, topic, module_sha256, policy, paused, created_at, updated_at, version, paused_reason";

/// Decodes a row selected with [`HANDLER_COLS`].
pub(super) fn handler(r: &Row) -> StoreResult<HandlerRecord> {
    let policy: serde_json::Value = r.get(3);
    Ok(HandlerRecord {
        name: r.get(0),
        topic: r.get(1),
        module_sha256: r.get(2),
        policy: serde_json::from_value(policy).map_err(|e| corrupt("handler policy", e))?,
        paused: r.get(4),
        created_at: Timestamp(r.get::<_, i64>(5) as u64),
        updated_at: Timestamp(r.get::<_, i64>(6) as u64),
        version: r.get::<_, i64>(7) as u64,
        paused_reason: r.get(8),
    })
}

/// The columns of an attempt, in [`attempt`]'s order.
pub(super) const ATTEMPT_COLS: &str = "number, round, started_at, finished_at, outcome, duration_ms, \
     module_sha256, stdout, stdout_truncated, stderr, stderr_truncated, peak_memory_bytes, fuel_used, \
     egress";

/// Decodes a row selected with [`ATTEMPT_COLS`].
pub(super) fn attempt(r: &Row) -> StoreResult<AttemptRecord> {
    let outcome: Option<serde_json::Value> = r.get(4);
    let report = match outcome {
        None => None,
        Some(o) => Some(AttemptReport {
            outcome: serde_json::from_value(o).map_err(|e| corrupt("attempt outcome", e))?,
            duration_ms: r.get::<_, Option<i64>>(5).unwrap_or(0) as u64,
            module_sha256: r.get::<_, Option<String>>(6).unwrap_or_default(),
            stdout: Bytes::from(r.get::<_, Option<Vec<u8>>>(7).unwrap_or_default()),
            stdout_truncated: r.get::<_, Option<bool>>(8).unwrap_or(false),
            stderr: Bytes::from(r.get::<_, Option<Vec<u8>>>(9).unwrap_or_default()),
            stderr_truncated: r.get::<_, Option<bool>>(10).unwrap_or(false),
            peak_memory_bytes: r.get::<_, Option<i64>>(11).unwrap_or(0) as u64,
            fuel_used: r.get::<_, Option<i64>>(12).map(|f| f as u64),
            egress: match r.get::<_, Option<serde_json::Value>>(13) {
                None => Vec::new(),
                Some(v) => serde_json::from_value(v).map_err(|e| corrupt("attempt egress", e))?,
            },
        }),
    };
    Ok(AttemptRecord {
        number: r.get::<_, i32>(0) as u32,
        round: r.get::<_, i32>(1) as u32,
        started_at: Timestamp(r.get::<_, i64>(2) as u64),
        finished_at: ts(r.get(3)),
        report,
    })
}

/// An attempt's egress records as their JSON column (`NULL` when none).
pub(super) fn egress_json(r: &AttemptReport) -> StoreResult<Option<serde_json::Value>> {
    if r.egress.is_empty() {
        return Ok(None);
    }
    serde_json::to_value(&r.egress)
        .map(Some)
        .map_err(|e| corrupt("attempt egress", e))
}

/// An outcome as its JSON column.
pub(super) fn outcome_json(r: &AttemptReport) -> StoreResult<serde_json::Value> {
    serde_json::to_value(&r.outcome).map_err(|e| corrupt("attempt outcome", e))
}
