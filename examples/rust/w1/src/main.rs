//! `w1`: the benchmark's workload 1, kept lean so the measurement is the
//! runner, not the handler: parse a small JSON user record, compute the 32-bit
//! FNV-1a hash of its email, print it, acknowledge.
//!
//! Input: `{"user_id":123,"email":"user123@example.com","seq":123,"pad":"xxx"}`.
//! Output (stdout): `fnv1a=<8 hex digits>`. Malformed input is rejected (65).

use std::borrow::Cow;

use serde::Deserialize;
use sluice_guest::{Message, Result};

#[derive(Deserialize)]
struct Record<'a> {
    #[allow(dead_code)]
    user_id: u64,
    /// Borrowed from the payload unless it contains escapes.
    #[serde(borrow)]
    email: Cow<'a, str>,
    #[allow(dead_code)]
    seq: u64,
    // `pad` and any other field are skipped without being copied.
}

/// 32-bit FNV-1a.
fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn handle(msg: &Message) -> Result {
    let record: Record<'_> = msg.json()?;
    println!("fnv1a={:08x}", fnv1a32(record.email.as_bytes()));
    Ok(())
}

fn main() {
    sluice_guest::run(handle);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_reference_vectors() {
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn acknowledges_records_and_rejects_garbage() {
        let ok = r#"{"user_id":123,"email":"user123@example.com","seq":123,"pad":"xxx"}"#;
        assert_eq!(handle(&Message::new("w1", ok)), Ok(()));
        let escaped = r#"{"user_id":1,"email":"a\u0040b","seq":1,"pad":""}"#;
        assert_eq!(handle(&Message::new("w1", escaped)), Ok(()));
        let bad = handle(&Message::new("w1", r#"{"user_id":1}"#)).unwrap_err();
        assert!(bad.is_reject());
    }
}
