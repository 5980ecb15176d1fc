//! Durations (`30s`, `1h 30m`, `250ms`) and sizes (`64MiB`, `1 GiB`, `512k`) as
//! users type them.

use std::time::Duration;

/// Parses a duration such as `30s`, `1m30s`, `250ms` or `2h`. A bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("invalid duration {s:?} (e.g. 30s, 1m30s, 250ms): {e}"))
}

/// Parses a message delay ([`parse_duration`]) and checks it against
/// [`MAX_DELAY`](crate::clock::MAX_DELAY); `field` names it in the error.
pub fn parse_delay(field: &'static str, s: &str) -> Result<Duration, String> {
    let d = parse_duration(s).map_err(|e| format!("{field}: {e}"))?;
    crate::clock::check_delay(field, d).map_err(|e| e.to_string())
}

/// Parses a size such as `64MiB`, `64MB`, `512k` or `1048576` (bytes). Units are
/// binary (k = KiB, M = MiB, G = GiB), as memory limits are.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?} (e.g. 64MiB, 512KiB, 1GiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "invalid size unit in {s:?} (use B, KiB, MiB or GiB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert!(parse_duration("soon").unwrap_err().contains("soon"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("1 GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }
}
