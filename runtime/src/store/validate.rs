//! The input rules every backend enforces before it touches anything, and
//! the id every backend mints: one copy, shared.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::{
    HandlerRecord, HandlerSpec, MessageId, NewMessage, OutboxMessage, StoreConfig, StoreError,
    StoreResult,
};
use crate::clock::Timestamp;
use crate::names::{validate_handler, validate_header, validate_key, validate_topic};

/// Checks a message before any backend touches it: names, sizes, headers,
/// times. The rules every backend enforces, in one place.
pub(crate) fn validate_message(config: &StoreConfig, m: &NewMessage) -> StoreResult<()> {
    validate_topic(&m.topic)?;
    if m.payload.len() > config.max_payload_bytes {
        return Err(StoreError::PayloadTooLarge {
            size: m.payload.len(),
            max: config.max_payload_bytes,
        });
    }
    if let Some(k) = &m.ordering_key {
        validate_key("ordering key", k)?;
    }
    if let Some(k) = &m.idempotency_key {
        validate_key("idempotency key", k)?;
    }
    if m.headers.len() > config.max_headers {
        return Err(StoreError::InvalidInput(format!(
            "{} headers, at most {} allowed",
            m.headers.len(),
            config.max_headers
        )));
    }
    for (k, v) in &m.headers {
        validate_header(k, v)?;
    }
    if let Some(t) = m.not_before {
        // Last line of defence: every edge checks its own field already.
        t.check("not_before")
            .map_err(|e| StoreError::InvalidInput(e.to_string()))?;
    }
    Ok(())
}

/// Checks an attempt's outbox messages (topic and key names).
pub(crate) fn validate_outbox(outbox: &[OutboxMessage]) -> StoreResult<()> {
    for o in outbox {
        validate_topic(&o.topic)?;
        if let Some(k) = &o.ordering_key {
            validate_key("ordering key", k)?;
        }
    }
    Ok(())
}

/// Checks a handler to register: its names and policy.
pub(crate) fn validate_spec(spec: &HandlerSpec) -> StoreResult<()> {
    validate_handler(&spec.name)?;
    validate_topic(&spec.topic)?;
    spec.policy.validate()?;
    Ok(())
}

/// A registered handler keeps its topic: re-registering it on another one is
/// refused (remove it first).
pub(crate) fn check_same_topic(old: Option<&HandlerRecord>, spec: &HandlerSpec) -> StoreResult<()> {
    match old.filter(|o| o.topic != spec.topic) {
        Some(old) => Err(StoreError::InvalidInput(format!(
            "handler {:?} is subscribed to topic {:?}; remove it first to subscribe it to {:?}",
            spec.name, old.topic, spec.topic
        ))),
        None => Ok(()),
    }
}

/// A new UUID v7 at `t` (message and delivery ids, every backend).
pub(crate) fn new_id(t: Timestamp) -> Uuid {
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        t.0 / 1000,
        ((t.0 % 1000) * 1_000_000) as u32,
    );
    Uuid::new_v7(ts)
}

/// The message an attempt's outbox entry `index` becomes, every backend: its
/// idempotency key derives from (parent message, handler, index), so a re-run
/// of the attempt never publishes it twice; its headers name the parent and
/// the publisher; a delay counts from `now`, the completion.
pub(crate) fn outbox_message(
    parent: MessageId,
    handler: &str,
    index: usize,
    o: OutboxMessage,
    now: Timestamp,
) -> NewMessage {
    let mut headers = BTreeMap::new();
    headers.insert("sluice-parent".to_string(), parent.to_string());
    headers.insert("sluice-publisher".to_string(), handler.to_string());
    NewMessage {
        topic: o.topic,
        payload: o.payload,
        ordering_key: o.ordering_key,
        idempotency_key: Some(format!("outbox:{parent}:{handler}:{index}")),
        headers,
        not_before: o.delay.map(|d| now.plus(d)),
    }
}
