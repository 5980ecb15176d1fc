//! Key layout of the store: one ordered key space, one prefix byte per index.
//!
//! Everything lives in one key space so that a state change spanning several
//! indexes is one atomic batch (in the image, the log and the checkpoint).
//! Numbers are big-endian so byte order is numeric order; names and keys are
//! NUL-terminated (the naming rules forbid NUL).
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
//! | `C` | handler, state | count |
//! | `Z` | — | last sequence number |

use uuid::Uuid;

use crate::clock::Timestamp;

pub(super) const MESSAGE: u8 = b'M';
pub(super) const TOPIC_MESSAGE: u8 = b'T';
pub(super) const DELIVERY: u8 = b'D';
pub(super) const MESSAGE_DELIVERY: u8 = b'd';
pub(super) const ATTEMPT: u8 = b'A';
pub(super) const READY: u8 = b'R';
pub(super) const SCHEDULED: u8 = b'S';
pub(super) const LEASED: u8 = b'L';
pub(super) const BLOCKED: u8 = b'B';
pub(super) const KEY_HEAD: u8 = b'K';
pub(super) const DEAD: u8 = b'X';
pub(super) const IDEMPOTENCY: u8 = b'I';
pub(super) const IDEMPOTENCY_EXPIRY: u8 = b'i';
pub(super) const HANDLER: u8 = b'H';
pub(super) const TOPIC: u8 = b'P';
pub(super) const MODULE: u8 = b'W';
pub(super) const COUNT: u8 = b'C';
pub(super) const SEQ: &[u8] = b"Z";

/// Builds a key from parts.
#[derive(Debug, Default)]
pub(super) struct Key(Vec<u8>);

impl Key {
    pub(super) fn new(prefix: u8) -> Key {
        let mut v = Vec::with_capacity(48);
        v.push(prefix);
        Key(v)
    }
    pub(super) fn name(mut self, s: &str) -> Key {
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        self
    }
    pub(super) fn id(mut self, id: Uuid) -> Key {
        self.0.extend_from_slice(id.as_bytes());
        self
    }
    pub(super) fn u64(mut self, n: u64) -> Key {
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }
    pub(super) fn u32(mut self, n: u32) -> Key {
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }
    pub(super) fn time(self, t: Timestamp) -> Key {
        self.u64(t.0)
    }
    pub(super) fn byte(mut self, b: u8) -> Key {
        self.0.push(b);
        self
    }
    pub(super) fn raw(mut self, s: &[u8]) -> Key {
        self.0.extend_from_slice(s);
        self
    }
    pub(super) fn build(self) -> Vec<u8> {
        self.0
    }
}

/// Reads a UUID at `at` in `bytes`.
pub(super) fn uuid_at(bytes: &[u8], at: usize) -> Option<Uuid> {
    bytes
        .get(at..at + 16)
        .and_then(|b| Uuid::from_slice(b).ok())
}

/// Reads a big-endian u64 at `at` in `bytes`.
pub(super) fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    bytes
        .get(at..at + 8)
        .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
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
        let a = Key::new(READY).name("h").u64(2).build();
        let b = Key::new(READY).name("h").u64(10).build();
        assert!(a < b);
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
    }
}
