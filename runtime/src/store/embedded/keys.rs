//! Key layout of the embedded store: one ordered key space, one prefix byte
//! per index, and a typed constructor (and, where keys are read back, a
//! parser) per index. Nothing else in the store builds or slices a key.
//!
//! Everything lives in one key space so that a state change spanning several
//! indexes is one atomic batch (in the image, the log and the checkpoint).
//! Numbers are big-endian so byte order is numeric order; names and keys are
//! NUL-terminated (the naming rules forbid NUL). Values are encoded in
//! [`super::codec`].
//!
//! | prefix | key | value |
//! | --- | --- | --- |
//! | `M` | message id | message |
//! | `T` | topic, message id | — (replay from a time) |
//! | `D` | delivery id | delivery |
//! | `d` | message id, delivery id | — (a message's deliveries) |
//! | `A` | delivery id, attempt index | attempt record |
//! | `R` | handler, seq | delivery id, ready since (ready, in enqueue order) |
//! | `S` | due time, delivery id | — (scheduled and retrying) |
//! | `L` | lease expiry, delivery id | — (leased) |
//! | `B` | handler, ordering key, seq | delivery id (blocked behind its key) |
//! | `K` | handler, ordering key | delivery id of the key's head |
//! | `X` | handler, dead at, delivery id | — (the DLQ) |
//! | `I` | topic, idempotency key | message id, enqueued at |
//! | `i` | expiry, topic, idempotency key | — (pruning the window) |
//! | `H` | handler | handler record |
//! | `P` | topic | — (known topics) |
//! | `W` | module sha256 | module bytes |
//! | `U` | module sha256 | count of retained deliveries whose attempts ran it (absent: 0) |
//! | `w` | module sha256 | time upkeep first found it unreferenced (its grace) |
//! | `C` | handler, state | count |
//! | `Q` | handler, state, delivery id | — (every delivery by state, in creation order) |
//! | `O` | handler, ordering key, delivery id | — (deliveries by ordering key) |
//! | `J` | schedule id | schedule record (JSON) |
//! | `j` | schedule id, occurrence number | occurrence record (JSON) |
//! | `Y` | — | version of the derived indexes (`Q`, `O`, `U`); absent or older: built on open |
//! | `Z` | — | last sequence number |
//!
//! Which of `R`, `S`, `L`, `B`, `X` a delivery has follows from its state
//! alone: [`super::delivery::state_entry`] derives it, and only
//! [`super::delivery`]'s `save` writes it, with its `Q` and `O` entries.

use uuid::Uuid;

use super::codec::{corrupt, u64_at, uuid_at};
use crate::clock::Timestamp;
use crate::store::{DeliveryId, DeliveryState, MessageId, StoreResult};

const MESSAGE: u8 = b'M';
const TOPIC_MESSAGE: u8 = b'T';
const DELIVERY: u8 = b'D';
const MESSAGE_DELIVERY: u8 = b'd';
const ATTEMPT: u8 = b'A';
const READY: u8 = b'R';
const SCHEDULED: u8 = b'S';
const LEASED: u8 = b'L';
const BLOCKED: u8 = b'B';
const KEY_HEAD: u8 = b'K';
const DEAD: u8 = b'X';
const IDEMPOTENCY: u8 = b'I';
const IDEMPOTENCY_EXPIRY: u8 = b'i';
const HANDLER: u8 = b'H';
const TOPIC: u8 = b'P';
const MODULE: u8 = b'W';
const MODULE_REF: u8 = b'U';
const MODULE_UNUSED: u8 = b'w';
const COUNT: u8 = b'C';
const BY_STATE: u8 = b'Q';
const BY_ORDERING_KEY: u8 = b'O';
const SCHEDULE: u8 = b'J';
const OCCURRENCE: u8 = b'j';

/// The key of the query indexes' version.
pub(super) const QUERY_INDEX_VERSION: &[u8] = b"Y";

/// The key of the last sequence number.
pub(super) const SEQ: &[u8] = b"Z";
/// Prefix of every message record (in id order, so in enqueue time order).
pub(super) const MESSAGES: &[u8] = &[MESSAGE];
/// Prefix of every delivery record.
pub(super) const DELIVERIES: &[u8] = &[DELIVERY];
/// Prefix of the scheduled index, earliest due first.
pub(super) const SCHEDULED_ALL: &[u8] = &[SCHEDULED];
/// Prefix of the lease index, earliest expiry first.
pub(super) const LEASED_ALL: &[u8] = &[LEASED];
/// Prefix of the idempotency window's expiries, earliest first.
pub(super) const IDEMPOTENCY_EXPIRY_ALL: &[u8] = &[IDEMPOTENCY_EXPIRY];
/// Prefix of every count.
pub(super) const COUNTS: &[u8] = &[COUNT];
/// Prefix of every handler record.
pub(super) const HANDLERS: &[u8] = &[HANDLER];
/// Prefix of every module.
pub(super) const MODULES: &[u8] = &[MODULE];
/// Prefix of every schedule record, by id.
pub(super) const SCHEDULES: &[u8] = &[SCHEDULE];

/// Builds a key from parts.
struct Key(Vec<u8>);

impl Key {
    fn new(prefix: u8) -> Key {
        let mut v = Vec::with_capacity(48);
        v.push(prefix);
        Key(v)
    }
    fn name(mut self, s: &str) -> Key {
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        self
    }
    fn id(mut self, id: Uuid) -> Key {
        self.0.extend_from_slice(id.as_bytes());
        self
    }
    fn u64(mut self, n: u64) -> Key {
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }
    fn time(self, t: Timestamp) -> Key {
        self.u64(t.0)
    }
    fn raw(mut self, s: &[u8]) -> Key {
        self.0.extend_from_slice(s);
        self
    }
    fn build(self) -> Vec<u8> {
        self.0
    }
}

/// `(time, id)` after a one-byte prefix: the layout of `S` and `L`.
fn parse_time_id(k: &[u8], what: &str) -> StoreResult<(Timestamp, Uuid)> {
    match (u64_at(k, 1), uuid_at(k, 9)) {
        (Some(t), Some(id)) => Ok((Timestamp(t), id)),
        _ => Err(corrupt(what)),
    }
}

/// A message record.
pub(super) fn message(id: MessageId) -> Vec<u8> {
    Key::new(MESSAGE).id(id).build()
}

/// The message id of a [`message`] key.
pub(super) fn parse_message(k: &[u8]) -> StoreResult<MessageId> {
    uuid_at(k, 1).ok_or_else(|| corrupt("message key"))
}

/// A message in its topic's index.
pub(super) fn topic_message(topic: &str, id: MessageId) -> Vec<u8> {
    Key::new(TOPIC_MESSAGE).name(topic).id(id).build()
}

/// Prefix of a topic's messages.
pub(super) fn topic_messages(topic: &str) -> Vec<u8> {
    Key::new(TOPIC_MESSAGE).name(topic).build()
}

/// Where a topic's messages enqueued at or after `since` start.
pub(super) fn topic_messages_since(topic: &str, since: Timestamp) -> Vec<u8> {
    topic_message(topic, min_uuid_at(since))
}

/// The message id of a [`topic_message`] key of `topic`.
pub(super) fn parse_topic_message(k: &[u8], topic: &str) -> StoreResult<MessageId> {
    uuid_at(k, 1 + topic.len() + 1).ok_or_else(|| corrupt("topic index key"))
}

/// A delivery record.
pub(super) fn delivery(id: DeliveryId) -> Vec<u8> {
    Key::new(DELIVERY).id(id).build()
}

/// A delivery in its message's index.
pub(super) fn message_delivery(message: MessageId, id: DeliveryId) -> Vec<u8> {
    Key::new(MESSAGE_DELIVERY).id(message).id(id).build()
}

/// Prefix of a message's deliveries.
pub(super) fn message_deliveries(message: MessageId) -> Vec<u8> {
    Key::new(MESSAGE_DELIVERY).id(message).build()
}

/// The delivery id of a [`message_delivery`] key.
pub(super) fn parse_message_delivery(k: &[u8]) -> StoreResult<DeliveryId> {
    uuid_at(k, 17).ok_or_else(|| corrupt("message delivery key"))
}

/// Attempt record number `index` (1-based, across rounds) of a delivery.
pub(super) fn attempt(id: DeliveryId, index: u32) -> Vec<u8> {
    let mut k = Key::new(ATTEMPT).id(id).build();
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// Prefix of a delivery's attempts, oldest first.
pub(super) fn attempts(id: DeliveryId) -> Vec<u8> {
    Key::new(ATTEMPT).id(id).build()
}

/// A ready delivery, in its handler's enqueue order.
pub(super) fn ready(handler: &str, seq: u64) -> Vec<u8> {
    Key::new(READY).name(handler).u64(seq).build()
}

/// Prefix of a handler's ready deliveries, oldest first.
pub(super) fn ready_of(handler: &str) -> Vec<u8> {
    Key::new(READY).name(handler).build()
}

/// A scheduled or retrying delivery, by due time.
pub(super) fn scheduled(due: Timestamp, id: DeliveryId) -> Vec<u8> {
    Key::new(SCHEDULED).time(due).id(id).build()
}

/// `(due, delivery)` of a [`scheduled`] key.
pub(super) fn parse_scheduled(k: &[u8]) -> StoreResult<(Timestamp, DeliveryId)> {
    parse_time_id(k, "scheduled key")
}

/// A leased delivery, by lease expiry.
pub(super) fn leased(expires: Timestamp, id: DeliveryId) -> Vec<u8> {
    Key::new(LEASED).time(expires).id(id).build()
}

/// `(expiry, delivery)` of a [`leased`] key.
pub(super) fn parse_leased(k: &[u8]) -> StoreResult<(Timestamp, DeliveryId)> {
    parse_time_id(k, "lease key")
}

/// A delivery blocked behind its ordering key, in enqueue order.
pub(super) fn blocked(handler: &str, key: &str, seq: u64) -> Vec<u8> {
    Key::new(BLOCKED).name(handler).name(key).u64(seq).build()
}

/// Prefix of the deliveries blocked behind one key, oldest first.
pub(super) fn blocked_of(handler: &str, key: &str) -> Vec<u8> {
    Key::new(BLOCKED).name(handler).name(key).build()
}

/// The head (the one delivery in flight) of an ordering key.
pub(super) fn key_head(handler: &str, key: &str) -> Vec<u8> {
    Key::new(KEY_HEAD).name(handler).name(key).build()
}

/// A dead delivery in its handler's DLQ, by time of death.
pub(super) fn dead(handler: &str, at: Timestamp, id: DeliveryId) -> Vec<u8> {
    Key::new(DEAD).name(handler).time(at).id(id).build()
}

/// Prefix of a handler's DLQ, oldest death first.
pub(super) fn dead_of(handler: &str) -> Vec<u8> {
    Key::new(DEAD).name(handler).build()
}

/// Where a handler's DLQ entries dead at or after `at` start.
pub(super) fn dead_since(handler: &str, at: Timestamp) -> Vec<u8> {
    Key::new(DEAD).name(handler).time(at).build()
}

/// `(dead at, delivery)` of a [`dead`] key of `handler`.
pub(super) fn parse_dead(k: &[u8], handler: &str) -> StoreResult<(Timestamp, DeliveryId)> {
    let at = 1 + handler.len() + 1;
    match (u64_at(k, at), uuid_at(k, at + 8)) {
        (Some(t), Some(id)) => Ok((Timestamp(t), id)),
        _ => Err(corrupt("dead key")),
    }
}

/// A producer's idempotency key on a topic.
pub(super) fn idempotency(topic: &str, key: &str) -> Vec<u8> {
    Key::new(IDEMPOTENCY)
        .name(topic)
        .raw(key.as_bytes())
        .build()
}

/// When an idempotency key leaves the window.
pub(super) fn idempotency_expiry(expires: Timestamp, topic: &str, key: &str) -> Vec<u8> {
    Key::new(IDEMPOTENCY_EXPIRY)
        .time(expires)
        .name(topic)
        .raw(key.as_bytes())
        .build()
}

/// `(expiry, the idempotency key it expires)` of an [`idempotency_expiry`] key.
pub(super) fn parse_idempotency_expiry(k: &[u8]) -> StoreResult<(Timestamp, Vec<u8>)> {
    let expires = u64_at(k, 1).ok_or_else(|| corrupt("idempotency expiry key"))?;
    Ok((
        Timestamp(expires),
        Key::new(IDEMPOTENCY).raw(&k[9..]).build(),
    ))
}

/// A handler record.
pub(super) fn handler(name: &str) -> Vec<u8> {
    Key::new(HANDLER).raw(name.as_bytes()).build()
}

/// A known topic.
pub(super) fn topic(name: &str) -> Vec<u8> {
    Key::new(TOPIC).name(name).build()
}

/// A module's bytes.
pub(super) fn module(sha256: &str) -> Vec<u8> {
    Key::new(MODULE).raw(sha256.as_bytes()).build()
}

/// The sha256 of a [`module`] key.
pub(super) fn parse_module(k: &[u8]) -> StoreResult<String> {
    k.get(1..)
        .and_then(|s| std::str::from_utf8(s).ok())
        .map(str::to_string)
        .ok_or_else(|| corrupt("module key"))
}

/// How many retained deliveries have an attempt that ran a module.
pub(super) fn module_refs(sha256: &str) -> Vec<u8> {
    Key::new(MODULE_REF).raw(sha256.as_bytes()).build()
}

/// Since when a module has been found unreferenced.
pub(super) fn module_unused(sha256: &str) -> Vec<u8> {
    Key::new(MODULE_UNUSED).raw(sha256.as_bytes()).build()
}

/// A handler's count of deliveries in `state`.
pub(super) fn count(handler: &str, state: DeliveryState) -> Vec<u8> {
    let mut k = Key::new(COUNT).name(handler).build();
    k.push(state as u8);
    k
}

/// `(handler, state)` of a [`count`] key, `None` when malformed.
pub(super) fn parse_count(k: &[u8]) -> Option<(String, DeliveryState)> {
    let rest = k.get(1..)?;
    let nul = rest.iter().position(|b| *b == 0)?;
    let handler = String::from_utf8_lossy(&rest[..nul]).into_owned();
    let state = rest
        .get(nul + 1)
        .and_then(|b| DeliveryState::ALL.get(*b as usize))?;
    Some((handler, *state))
}

/// A schedule record.
pub(super) fn schedule(id: &str) -> Vec<u8> {
    Key::new(SCHEDULE).raw(id.as_bytes()).build()
}

/// Occurrence record `n` of a schedule.
pub(super) fn occurrence(id: &str, n: u64) -> Vec<u8> {
    Key::new(OCCURRENCE).name(id).u64(n).build()
}

/// Prefix of a schedule's occurrence records, oldest first.
pub(super) fn occurrences_of(id: &str) -> Vec<u8> {
    Key::new(OCCURRENCE).name(id).build()
}

/// A delivery in its handler's index by state.
pub(super) fn by_state(handler: &str, state: DeliveryState, id: DeliveryId) -> Vec<u8> {
    by_state_of(handler, state)
        .into_iter()
        .chain(*id.as_bytes())
        .collect()
}

/// Prefix of a handler's deliveries in `state`, oldest first.
pub(super) fn by_state_of(handler: &str, state: DeliveryState) -> Vec<u8> {
    let mut k = Key::new(BY_STATE).name(handler).build();
    k.push(state as u8);
    k
}

/// A delivery in its handler's index by ordering key.
pub(super) fn by_ordering_key(handler: &str, key: &str, id: DeliveryId) -> Vec<u8> {
    Key::new(BY_ORDERING_KEY)
        .name(handler)
        .name(key)
        .id(id)
        .build()
}

/// Prefix of a handler's deliveries with ordering key `key`, oldest first.
pub(super) fn by_ordering_key_of(handler: &str, key: &str) -> Vec<u8> {
    Key::new(BY_ORDERING_KEY).name(handler).name(key).build()
}

/// The delivery id ending a [`by_state`] or [`by_ordering_key`] key.
pub(super) fn parse_trailing_id(k: &[u8]) -> StoreResult<DeliveryId> {
    k.len()
        .checked_sub(16)
        .and_then(|at| uuid_at(k, at))
        .ok_or_else(|| corrupt("query index key"))
}

/// The smallest UUID v7 at or after `t`: lower bound for time ranges over ids.
pub(super) fn min_uuid_at(t: Timestamp) -> Uuid {
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&t.0.to_be_bytes()[2..]);
    Uuid::from_bytes(b)
}

/// The millisecond timestamp inside a UUID v7.
pub(super) fn uuid_time(id: Uuid) -> Timestamp {
    let b = id.as_bytes();
    let mut n = [0u8; 8];
    n[2..].copy_from_slice(&b[..6]);
    Timestamp(u64::from_be_bytes(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_sort_as_bytes() {
        assert!(ready("h", 2) < ready("h", 10));
        assert!(ready("h", u64::MAX) < ready_of("h\u{1}"));
    }

    #[test]
    fn every_parser_reads_its_constructor() {
        let id = Uuid::now_v7();
        let t = Timestamp(1_800_000_000_123);
        assert_eq!(parse_message(&message(id)).unwrap(), id);
        assert_eq!(
            parse_topic_message(&topic_message("top", id), "top").unwrap(),
            id
        );
        assert_eq!(
            parse_message_delivery(&message_delivery(Uuid::now_v7(), id)).unwrap(),
            id
        );
        assert_eq!(parse_scheduled(&scheduled(t, id)).unwrap(), (t, id));
        assert_eq!(parse_leased(&leased(t, id)).unwrap(), (t, id));
        let sha = "ab".repeat(32);
        assert_eq!(parse_module(&module(&sha)).unwrap(), sha);
        assert_eq!(parse_dead(&dead("h", t, id), "h").unwrap(), (t, id));
        assert!(dead("h", t, id).starts_with(&dead_of("h")));
        assert!(dead("h", t, id) >= dead_since("h", t));
        assert_eq!(
            parse_idempotency_expiry(&idempotency_expiry(t, "top", "k")).unwrap(),
            (t, idempotency("top", "k"))
        );
        assert_eq!(
            parse_count(&count("h", DeliveryState::Dead)),
            Some(("h".to_string(), DeliveryState::Dead))
        );
        assert!(parse_leased(b"L").is_err());
        let q = by_state("h", DeliveryState::Ready, id);
        assert!(q.starts_with(&by_state_of("h", DeliveryState::Ready)));
        assert_eq!(parse_trailing_id(&q).unwrap(), id);
        let o = by_ordering_key("h", "k", id);
        assert!(o.starts_with(&by_ordering_key_of("h", "k")));
        assert!(!o.starts_with(&by_ordering_key_of("h", "")));
        assert_eq!(parse_trailing_id(&o).unwrap(), id);
        assert!(occurrence("s", 2) < occurrence("s", 10));
        assert!(occurrence("s", u64::MAX).starts_with(&occurrences_of("s")));
        assert!(!occurrence("s.a", 1).starts_with(&occurrences_of("s")));
        assert!(schedule("s").starts_with(SCHEDULES));
    }

    #[test]
    fn uuid_time_round_trips() {
        let t = Timestamp(1_795_000_000_123);
        assert_eq!(uuid_time(min_uuid_at(t)), t);
        let id = Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            1_795_000_000,
            123_000_000,
        ));
        assert_eq!(uuid_time(id), t);
        assert!(min_uuid_at(t) <= id);
        assert!(topic_messages_since("t", t) <= topic_message("t", id));
    }
}
