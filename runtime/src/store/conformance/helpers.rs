//! The store test helpers, once: what the cases, the model and crash tests, the
//! store bench and the integration tests' harness all build on.
//!
//! Each takes a `&dyn Store`, so it works for any backend; none waits on time
//! (a [`ManualClock`] from [`manual_clock`] stands at [`T0`] until moved).

use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::clock::{ManualClock, Timestamp};
use crate::outcome::Outcome;
use crate::policy::{Disposition, HandlerPolicy, JITTER};
use crate::store::{
    AttemptReport, DeliveryId, DeliveryState, DeliveryStatus, HandlerRecord, HandlerSpec, Leased,
    MessageId, NewMessage, Store, StoreError, StoreResult,
};

/// Where every case's clock starts: 2027-01-15, far from the epoch so that
/// "before" and "after" are never clamped at zero.
pub const T0: Timestamp = Timestamp(1_800_000_000_000);

/// A manual clock standing at [`T0`].
pub fn manual_clock() -> ManualClock {
    ManualClock::new(T0)
}

/// A tiny valid wasm module (an empty module with a custom section naming `tag`),
/// so that different tags have different sha256s.
pub fn module(tag: u8) -> Bytes {
    Bytes::from(vec![0x00, b'a', b's', b'm', 1, 0, 0, 0, 0, 2, 1, tag])
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The policy the cases use: the defaults (5 retries, 1 s backoff, 30 s timeout,
/// 75 s lease) with a fixed concurrency.
pub fn policy() -> HandlerPolicy {
    HandlerPolicy {
        concurrency: 4,
        ..HandlerPolicy::default()
    }
}

/// Registers handler `name` on `topic` with [`policy`] and module 0.
pub async fn handler(s: &dyn Store, name: &str, topic: &str) -> HandlerRecord {
    handler_with(s, name, topic, policy()).await
}

/// Registers handler `name` on `topic` with `policy` and module 0.
pub async fn handler_with(
    s: &dyn Store,
    name: &str,
    topic: &str,
    policy: HandlerPolicy,
) -> HandlerRecord {
    register(s, name, topic, policy, module(0)).await
}

/// Registers handler `name` on `topic` with `policy` and the module `wasm`
/// (a real handler's, where the test runs it); panics naming the handler if the
/// store refuses.
pub async fn register(
    s: &dyn Store,
    name: &str,
    topic: &str,
    policy: HandlerPolicy,
    wasm: Bytes,
) -> HandlerRecord {
    s.put_handler(
        HandlerSpec {
            name: name.into(),
            topic: topic.into(),
            policy,
        },
        wasm,
    )
    .await
    .unwrap_or_else(|e| panic!("put_handler {name} on {topic}: {e}"))
}

/// A plain message.
pub fn msg(topic: &str, payload: &str) -> NewMessage {
    NewMessage {
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        ..NewMessage::default()
    }
}

/// A message with an ordering key.
pub fn keyed(topic: &str, payload: &str, key: &str) -> NewMessage {
    NewMessage {
        ordering_key: Some(key.into()),
        ..msg(topic, payload)
    }
}

/// Enqueues one message, expecting a fresh id.
pub async fn enqueue1(s: &dyn Store, m: NewMessage) -> MessageId {
    let r = s.enqueue(vec![m]).await.expect("enqueue");
    assert_eq!(r.len(), 1, "one answer per message");
    assert!(!r[0].duplicate, "fresh message reported as duplicate");
    r[0].id
}

/// Enqueues `n` messages to `topic`, one call (so one acknowledgement) each;
/// message `i`'s payload is 100 bytes of `i`. Returns the ids in order.
pub async fn enqueue_n(s: &dyn Store, topic: &str, n: usize) -> Vec<MessageId> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let m = NewMessage {
            topic: topic.into(),
            payload: Bytes::from(vec![i as u8; 100]),
            ..NewMessage::default()
        };
        ids.push(enqueue1(s, m).await);
    }
    ids
}

/// An attempt report with `outcome`.
pub fn report(outcome: Outcome) -> AttemptReport {
    AttemptReport {
        outcome,
        duration_ms: 7,
        module_sha256: sha256_hex(&module(0)),
        stdout: Bytes::from_static(b"out"),
        stdout_truncated: false,
        stderr: Bytes::from_static(b"err"),
        stderr_truncated: false,
        peak_memory_bytes: 65536,
        fuel_used: None,
        egress: Vec::new(),
    }
}

/// `report`, as an attempt that ran module `wasm` (not module 0).
pub fn ran(report: AttemptReport, wasm: &[u8]) -> AttemptReport {
    AttemptReport {
        module_sha256: sha256_hex(wasm),
        ..report
    }
}

/// A successful attempt report.
pub fn ok() -> AttemptReport {
    report(Outcome::Ok)
}

/// A failed attempt report (exit 3).
pub fn failed() -> AttemptReport {
    report(Outcome::Exit { code: 3 })
}

/// The delivery of message `id` for `handler`.
pub async fn delivery_of(s: &dyn Store, id: MessageId, handler: &str) -> DeliveryStatus {
    let st = s.message(id).await.expect("message");
    let mut found: Vec<_> = st
        .deliveries
        .into_iter()
        .filter(|d| d.handler == handler)
        .collect();
    assert!(
        !found.is_empty(),
        "message {id} has no delivery for {handler}"
    );
    found.pop().expect("one delivery")
}

/// Leases everything ready for `handler` (up to 10,000).
pub async fn lease_all(s: &dyn Store, handler: &str) -> Vec<Leased> {
    s.lease(handler, 10_000).await.expect("lease")
}

/// Payloads of leased deliveries, as strings, in lease order.
pub fn payloads(leased: &[Leased]) -> Vec<String> {
    leased
        .iter()
        .map(|l| String::from_utf8_lossy(&l.message.payload).into_owned())
        .collect()
}

/// The count of `state` for `handler` in [`Store::stats`].
pub async fn count(s: &dyn Store, handler: &str, state: DeliveryState) -> u64 {
    let stats = s.stats().await.expect("stats");
    let h = stats
        .handlers
        .iter()
        .find(|h| h.handler == handler)
        .unwrap_or_else(|| panic!("stats lists no handler {handler}"));
    h.counts.get(&state).copied().unwrap_or(0)
}

/// The open deliveries of `topic` per [`Store::stats`] (0 when absent).
pub async fn depth(s: &dyn Store, topic: &str) -> u64 {
    let stats = s.stats().await.expect("stats");
    stats.topic_depth.get(topic).copied().unwrap_or(0)
}

/// Checks that every message of `ids` is there and that `handler` has exactly
/// as many ready deliveries: what a reopened store must show after `ids` were
/// acknowledged and nothing leased them.
pub async fn assert_found_and_ready(s: &dyn Store, handler: &str, ids: &[MessageId]) {
    for id in ids {
        s.message(*id)
            .await
            .unwrap_or_else(|e| panic!("acknowledged message {id}: {e}"));
    }
    assert_eq!(
        count(s, handler, DeliveryState::Ready).await,
        ids.len() as u64,
        "ready deliveries of {handler}"
    );
}

/// Checks that `r` is [`StoreError::LeaseLost`] naming delivery `id`.
pub fn assert_lease_lost<T: std::fmt::Debug>(r: StoreResult<T>, id: DeliveryId, what: &str) {
    match r {
        Err(StoreError::LeaseLost(d)) => assert_eq!(d, id, "{what}: LeaseLost names the delivery"),
        other => panic!("{what}: expected LeaseLost({id}), got {other:?}"),
    }
}

/// A retry `d` after the store records the failure.
pub fn retry_in(d: Duration) -> Disposition {
    Disposition::Retry { after: d }
}

/// A dead letter with `reason`.
pub fn dead(reason: &str) -> Disposition {
    Disposition::Dead {
        reason: reason.into(),
    }
}

/// Checks that `next_at` lies within the jittered backoff for retry `retry` of
/// `policy`, counted from `from`.
pub fn assert_backoff(policy: &HandlerPolicy, retry: u32, from: Timestamp, next_at: Timestamp) {
    let base = policy
        .backoff_ms
        .saturating_mul(1u64 << retry.saturating_sub(1).min(40))
        .min(policy.backoff_max_ms) as f64;
    let lo = from.plus(Duration::from_millis((base * (1.0 - JITTER)).floor() as u64));
    let hi = from.plus(Duration::from_millis((base * (1.0 + JITTER)).ceil() as u64));
    assert!(
        next_at >= lo && next_at <= hi,
        "retry {retry}: next_at {} not within backoff [{}, {}]",
        next_at.0,
        lo.0,
        hi.0
    );
}

/// Checks that attempt `index` of `d` was interrupted with `reason`.
pub fn assert_interrupted(d: &DeliveryStatus, index: usize, reason: &str) {
    let outcome = &d.attempts[index]
        .report
        .as_ref()
        .expect("a settled attempt has a report")
        .outcome;
    assert_eq!(
        outcome,
        &Outcome::Interrupted {
            reason: reason.to_string()
        },
        "attempt {index} of {}",
        d.id
    );
}

/// Settles expired leases as the server's rescuer does (through
/// [`Store::fail`] with the policy's fate).
pub use crate::worker::maintenance::rescue::rescue_expired;
