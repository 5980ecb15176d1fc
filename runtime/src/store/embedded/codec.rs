//! Every value encoding of the embedded store, in one place: records
//! (postcard), handler records (JSON), attempt records (below), and the small
//! fixed-layout values of the indexes ([`super::keys`] has their keys).
//!
//! # Attempt records: compact binary, not JSON
//!
//! Attempts are the store's most numerous values after messages (one per
//! lease, rewritten at its outcome), and all of them stay in memory
//! (`memtree`). As JSON an `ok` attempt took ~330 bytes (field names, the
//! captured output as arrays of numbers) and its encode and decode showed up
//! in the drain's profile; as postcard it takes about a third of that.
//!
//! Format: [`BINARY`] then postcard of [`Stored`]. The outcome inside is JSON:
//! its serde form is internally tagged (the API's shape), which postcard
//! cannot read back, and it is a few bytes for the common outcomes. Records
//! written by earlier versions are JSON objects (first byte `{`) and are
//! still read. An attempt that made outbound requests has a trailing
//! section after the postcard body: the JSON of its egress records (absent,
//! as in records written before egress existed, means none).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::clock::Timestamp;
use crate::store::{AttemptRecord, AttemptReport, StoreError, StoreResult};

/// A record (message, delivery) in postcard.
pub(super) fn encode<T: Serialize>(v: &T) -> StoreResult<Vec<u8>> {
    postcard::to_stdvec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A record written by [`encode`].
pub(super) fn decode<'a, T: Deserialize<'a>>(b: &'a [u8]) -> StoreResult<T> {
    postcard::from_bytes(b).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A handler record, as JSON: few, small, and readable in a dump.
pub(super) fn encode_json<T: Serialize>(v: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A value written by [`encode_json`].
pub(super) fn decode_json<'a, T: Deserialize<'a>>(b: &'a [u8]) -> StoreResult<T> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// `what` is not what it should be.
pub(super) fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("malformed {what}"))
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

/// An id alone: the value of a key head and of a blocked entry.
pub(super) fn id_value(id: Uuid) -> Vec<u8> {
    id.as_bytes().to_vec()
}

/// The id written by [`id_value`]; `what` names the index in the error.
pub(super) fn parse_id_value(v: &[u8], what: &str) -> StoreResult<Uuid> {
    uuid_at(v, 0).ok_or_else(|| corrupt(what))
}

/// An id and a time: a ready entry (delivery id, ready since) and an
/// idempotency entry (message id, enqueued at).
pub(super) fn id_time_value(id: Uuid, at: Timestamp) -> Vec<u8> {
    let mut v = id.as_bytes().to_vec();
    v.extend_from_slice(&at.0.to_be_bytes());
    v
}

/// The pair written by [`id_time_value`]; `what` names the index in the error.
pub(super) fn parse_id_time_value(v: &[u8], what: &str) -> StoreResult<(Uuid, Timestamp)> {
    match (uuid_at(v, 0), u64_at(v, 16)) {
        (Some(id), Some(t)) => Ok((id, Timestamp(t))),
        _ => Err(corrupt(what)),
    }
}

/// A count or a sequence number.
pub(super) fn u64_value(n: u64) -> Bytes {
    Bytes::copy_from_slice(&n.to_be_bytes())
}

/// The number written by [`u64_value`] (0 when malformed: counts are
/// rebuilt by use, never trusted for safety).
pub(super) fn parse_u64_value(v: &[u8]) -> u64 {
    u64_at(v, 0).unwrap_or(0)
}

/// First byte of a binary record (a JSON record starts with `{`).
const BINARY: u8 = 1;

#[derive(Serialize, Deserialize)]
struct Stored {
    number: u32,
    round: u32,
    started_at: Timestamp,
    finished_at: Option<Timestamp>,
    report: Option<StoredReport>,
}

#[derive(Serialize, Deserialize)]
struct StoredReport {
    /// JSON of the [`crate::outcome::Outcome`].
    outcome: Bytes,
    duration_ms: u64,
    module_sha256: String,
    stdout: Bytes,
    stdout_truncated: bool,
    stderr: Bytes,
    stderr_truncated: bool,
    peak_memory_bytes: u64,
    fuel_used: Option<u64>,
}

fn corrupt_attempt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("malformed attempt record: {e}"))
}

/// The stored bytes of `a`.
pub(super) fn encode_attempt(a: &AttemptRecord) -> StoreResult<Vec<u8>> {
    let report = match &a.report {
        None => None,
        Some(r) => Some(StoredReport {
            outcome: Bytes::from(serde_json::to_vec(&r.outcome).map_err(corrupt_attempt)?),
            duration_ms: r.duration_ms,
            module_sha256: r.module_sha256.clone(),
            stdout: r.stdout.clone(),
            stdout_truncated: r.stdout_truncated,
            stderr: r.stderr.clone(),
            stderr_truncated: r.stderr_truncated,
            peak_memory_bytes: r.peak_memory_bytes,
            fuel_used: r.fuel_used,
        }),
    };
    let stored = Stored {
        number: a.number,
        round: a.round,
        started_at: a.started_at,
        finished_at: a.finished_at,
        report,
    };
    let mut out = vec![BINARY];
    postcard::to_io(&stored, &mut out).map_err(corrupt_attempt)?;
    if let Some(r) = a.report.as_ref().filter(|r| !r.egress.is_empty()) {
        serde_json::to_writer(&mut out, &r.egress).map_err(corrupt_attempt)?;
    }
    Ok(out)
}

/// The record stored as `b`, binary or (from older versions) JSON.
pub(super) fn decode_attempt(b: &[u8]) -> StoreResult<AttemptRecord> {
    let Some((&BINARY, body)) = b.split_first() else {
        return serde_json::from_slice(b).map_err(corrupt_attempt);
    };
    let (s, rest): (Stored, &[u8]) = postcard::take_from_bytes(body).map_err(corrupt_attempt)?;
    let egress = if rest.is_empty() {
        Vec::new()
    } else {
        serde_json::from_slice(rest).map_err(corrupt_attempt)?
    };
    let report = match s.report {
        None => None,
        Some(r) => Some(AttemptReport {
            outcome: serde_json::from_slice(&r.outcome).map_err(corrupt_attempt)?,
            duration_ms: r.duration_ms,
            module_sha256: r.module_sha256,
            stdout: r.stdout,
            stdout_truncated: r.stdout_truncated,
            stderr: r.stderr,
            stderr_truncated: r.stderr_truncated,
            peak_memory_bytes: r.peak_memory_bytes,
            fuel_used: r.fuel_used,
            egress,
        }),
    };
    Ok(AttemptRecord {
        number: s.number,
        round: s.round,
        started_at: s.started_at,
        finished_at: s.finished_at,
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Outcome;
    use crate::sandbox::{EgressOutcome, EgressRecord};

    fn record(outcome: Outcome) -> AttemptRecord {
        AttemptRecord {
            number: 2,
            round: 1,
            started_at: Timestamp(1_700_000_000_000),
            finished_at: Some(Timestamp(1_700_000_000_120)),
            report: Some(AttemptReport {
                outcome,
                duration_ms: 120,
                module_sha256: "ab".repeat(32),
                stdout: Bytes::from_static(b"out\n"),
                stdout_truncated: true,
                stderr: Bytes::from_static(b"err\n"),
                stderr_truncated: false,
                peak_memory_bytes: 1 << 20,
                fuel_used: Some(42),
                egress: Vec::new(),
            }),
        }
    }

    #[test]
    fn records_round_trip_smaller_than_json_and_old_json_still_reads() {
        let trap = Outcome::Trap {
            trap: "unreachable".into(),
            message: "wasm trap".into(),
            backtrace: "0: f".into(),
        };
        for a in [
            record(Outcome::Ok),
            record(trap),
            AttemptRecord {
                report: None,
                finished_at: None,
                ..record(Outcome::Ok)
            },
        ] {
            let bytes = encode_attempt(&a).expect("encode");
            assert_eq!(decode_attempt(&bytes).expect("decode"), a);
            let json = serde_json::to_vec(&a).expect("json");
            assert!(
                bytes.len() * 2 < json.len(),
                "{} vs {}",
                bytes.len(),
                json.len()
            );
            assert_eq!(
                decode_attempt(&json).expect("json decode"),
                a,
                "older records"
            );
        }
        assert!(decode_attempt(&[BINARY, 0xff]).is_err());

        // With egress records: the trailing section; without it (as written
        // before egress existed) none.
        let mut with = record(Outcome::Ok);
        let egress = EgressRecord {
            method: "POST".into(),
            origin: "https://api.example.com:443".into(),
            status: Some(201),
            request_bytes: 12,
            response_bytes: 3,
            duration_ms: 40,
            outcome: EgressOutcome::Ok,
            detail: String::new(),
        };
        with.report.as_mut().unwrap().egress = vec![egress.clone(), egress];
        let bytes = encode_attempt(&with).unwrap();
        assert_eq!(decode_attempt(&bytes).unwrap(), with);
        let plain = encode_attempt(&record(Outcome::Ok)).unwrap();
        assert!(
            bytes.starts_with(&plain),
            "the old layout, then the section"
        );
        assert!(decode_attempt(&[&plain[..], b"{"].concat()).is_err());
        assert!(decode_attempt(b"").is_err());
    }
}
