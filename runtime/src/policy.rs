//! A handler's policy: limits, retries with backoff, lease and concurrency.
//!
//! Defaults follow SPEC §3 and are listed on each field. The policy is stored
//! with the handler, so every place that settles a failed attempt decides its
//! fate with the same code, [`HandlerPolicy::fate`]: the completer (after a
//! failed attempt), the rescuer (an expired lease) and the store's release of
//! a previous process's leases on open. A backend applies the answer; it
//! never decides one.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::outcome::Outcome;
use crate::sandbox::EgressPolicy;
use crate::sandbox::config::{DEFAULT_MEMORY_BYTES, DEFAULT_TIMEOUT, MAX_TIMEOUT, WASM_PAGE_BYTES};

/// Largest memory limit: the sandbox's, 4 GiB (SPEC §3).
pub use crate::sandbox::config::MAX_MEMORY_BYTES;

/// Longest timeout, lease or backoff: the sandbox's longest timeout, 12 h.
pub const MAX_DURATION_MS: u64 = MAX_TIMEOUT.as_millis() as u64;
/// The dead reason of a rejected message.
pub const REJECTED: &str = "rejected by the handler (exit 65)";
/// Relative jitter applied to each backoff delay (±20 %).
pub const JITTER: f64 = 0.2;

/// A policy value out of bounds, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid {field}: {reason}")]
pub struct PolicyError {
    /// The offending field, e.g. `timeout`.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// Per-handler settings. Durations are milliseconds so the JSON is unambiguous.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HandlerPolicy {
    /// Wall-clock limit per attempt, enforced in the sandbox. Default 30 s, at most 12 h.
    #[schema(minimum = 1, maximum = 43_200_000)]
    pub timeout_ms: u64,
    /// Visibility timeout of a lease. Default `None`: 2.5 × timeout. At most 12 h,
    /// and never shorter than the timeout (a lease must outlive its attempt).
    #[schema(maximum = 43_200_000)]
    pub lease_ms: Option<u64>,
    /// Retries after the first attempt before the DLQ. Default 5, at most 1000.
    #[schema(maximum = 1000)]
    pub retries: u32,
    /// First backoff delay; doubles per retry (1, 2, 4, 8, 16 s by default), ±20 % jitter.
    #[schema(maximum = 43_200_000)]
    pub backoff_ms: u64,
    /// Cap on one backoff delay, at least `backoff_ms`. Default 1 h, at most 12 h.
    #[schema(maximum = 43_200_000)]
    pub backoff_max_ms: u64,
    /// Linear memory limit per instance. Default 64 MiB, at least 64 KiB, at most 4 GiB.
    #[schema(minimum = 65_536, maximum = 4_294_967_296_u64)]
    pub memory_bytes: u64,
    /// Fuel budget per attempt, if metered. Default `None` (unmetered).
    #[schema(minimum = 1)]
    pub fuel: Option<u64>,
    /// Attempts in flight at once for this handler. Default: the number of CPU cores, at most 10000.
    #[schema(minimum = 1, maximum = 10_000)]
    pub concurrency: u32,
    /// Environment passed to the guest besides the `SLUICE_*` metadata.
    pub env: BTreeMap<String, String>,
    /// Outbound HTTP(S): the origins the handler may call, address ranges
    /// it may reach, per-attempt limits. Default: no egress at all
    /// (docs/egress.md).
    pub egress: EgressPolicy,
}

impl Default for HandlerPolicy {
    fn default() -> Self {
        HandlerPolicy {
            timeout_ms: DEFAULT_TIMEOUT.as_millis() as u64,
            lease_ms: None,
            retries: 5,
            backoff_ms: 1_000,
            backoff_max_ms: 3_600_000,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            fuel: None,
            concurrency: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(2),
            env: BTreeMap::new(),
            egress: EgressPolicy::default(),
        }
    }
}

/// What becomes of a delivery after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Disposition {
    /// Wait out a backoff, then become ready again. The backoff is relative:
    /// the store adds it to its own "now" (the database's clock on
    /// PostgreSQL), so a runner's clock never places a retry.
    Retry {
        /// How long to wait, from the moment the store records the failure.
        after: Duration,
    },
    /// Move to the handler's DLQ.
    Dead {
        /// Why, e.g. `rejected` or `attempts exhausted (6 of 6): exit 3`.
        reason: String,
    },
}

impl HandlerPolicy {
    /// Checks every bound, naming the first field that breaks one.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let bad = |field, reason: String| Err(PolicyError { field, reason });
        if self.timeout_ms == 0 || self.timeout_ms > MAX_DURATION_MS {
            return bad(
                "timeout",
                format!("{} ms is outside 1 ms ..= 12 h", self.timeout_ms),
            );
        }
        if let Some(lease) = self
            .lease_ms
            .filter(|l| *l > MAX_DURATION_MS || *l < self.timeout_ms)
        {
            return bad(
                "lease",
                format!("{lease} ms must be within timeout ..= 12 h"),
            );
        }
        if self.memory_bytes < WASM_PAGE_BYTES || self.memory_bytes > MAX_MEMORY_BYTES {
            return bad(
                "memory",
                format!("{} bytes is outside 64 KiB ..= 4 GiB", self.memory_bytes),
            );
        }
        if self.concurrency == 0 || self.concurrency > 10_000 {
            return bad(
                "concurrency",
                format!("{} is outside 1 ..= 10000", self.concurrency),
            );
        }
        if self.retries > 1000 {
            return bad("retries", format!("{} is more than 1000", self.retries));
        }
        if self.backoff_ms > MAX_DURATION_MS || self.backoff_max_ms > MAX_DURATION_MS {
            return bad("backoff", "at most 12 h".into());
        }
        if self.backoff_max_ms < self.backoff_ms {
            return bad(
                "backoff_max",
                format!(
                    "{} ms is below backoff_ms ({} ms)",
                    self.backoff_max_ms, self.backoff_ms
                ),
            );
        }
        if self.fuel == Some(0) {
            return bad("fuel", "must be positive when set".into());
        }
        // The sandbox's own rule (it checks again before every attempt), so a
        // configuration that could never run is refused here, once.
        if let Err(e) = crate::sandbox::validate_env(self.env.iter()) {
            return bad("env", e.to_string());
        }
        if let Err(e) = self.egress.validate() {
            return bad(e.field, e.reason);
        }
        Ok(())
    }

    /// The policy of a JSON *object* (missing fields take their defaults).
    /// Anything else is refused: serde would read a struct from an array by
    /// position (`[1,2]` as `timeout_ms=1, lease_ms=2`). For
    /// `#[serde(deserialize_with)]` and the `Sluice-Policy` header alike.
    pub fn deserialize_object<'de, D>(d: D) -> Result<HandlerPolicy, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        let object = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        serde_json::from_value(serde_json::Value::Object(object)).map_err(serde::de::Error::custom)
    }

    /// The wall-clock timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The lease (visibility timeout): `lease_ms`, else 2.5 × timeout, capped at 12 h.
    pub fn lease(&self) -> Duration {
        let ms = self
            .lease_ms
            .unwrap_or(self.timeout_ms.saturating_mul(5) / 2)
            .min(MAX_DURATION_MS);
        Duration::from_millis(ms)
    }

    /// Attempts in all: the first plus the retries.
    pub fn max_attempts(&self) -> u32 {
        self.retries.saturating_add(1)
    }

    /// The delay before retry number `retry` (1-based): `backoff × 2^(retry-1)`,
    /// capped, then scaled by a factor drawn from `[1 - JITTER, 1 + JITTER]`.
    pub fn backoff(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let exp = retry.saturating_sub(1).min(40);
        let base = self
            .backoff_ms
            .saturating_mul(1u64 << exp)
            .min(self.backoff_max_ms);
        let factor = rng.random_range((1.0 - JITTER)..=(1.0 + JITTER));
        Duration::from_millis((base as f64 * factor).round() as u64)
    }

    /// The fate of a delivery whose attempt number `attempt` (1-based) ended
    /// in `outcome`, anything but [`Outcome::Ok`]: a rejection is dead at once;
    /// any other failure (an exit code, a trap, a limit, an interrupted
    /// attempt: an expired lease, a restart, a host error) goes by
    /// [`after_failure`](Self::after_failure). The one fate rule.
    pub fn fate(&self, outcome: &Outcome, attempt: u32, rng: &mut impl Rng) -> Disposition {
        match outcome {
            Outcome::Rejected => Disposition::Dead {
                reason: REJECTED.to_string(),
            },
            outcome => self.after_failure(attempt, &outcome.summary(), rng),
        }
    }

    /// The fate of a delivery whose attempt number `attempt` (1-based) failed with
    /// `summary`: retry after a backoff while attempts remain, else dead (the
    /// reason names the count and the last failure). Used through
    /// [`fate`](Self::fate).
    pub fn after_failure(&self, attempt: u32, summary: &str, rng: &mut impl Rng) -> Disposition {
        if attempt >= self.max_attempts() {
            Disposition::Dead {
                reason: format!(
                    "attempts exhausted ({attempt} of {}): {summary}",
                    self.max_attempts()
                ),
            }
        } else {
            Disposition::Retry {
                after: self.backoff(attempt, rng),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn default_backoff_is_1_2_4_8_16_with_jitter() {
        let p = HandlerPolicy::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for (retry, base) in [
            (1, 1000.0),
            (2, 2000.0),
            (3, 4000.0),
            (4, 8000.0),
            (5, 16000.0),
        ] {
            for _ in 0..100 {
                let d = p.backoff(retry, &mut rng).as_millis() as f64;
                assert!(
                    d >= base * 0.8 - 1.0 && d <= base * 1.2 + 1.0,
                    "{retry}: {d}"
                );
            }
        }
    }

    #[test]
    fn sixth_failure_is_dead() {
        let p = HandlerPolicy::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert!(matches!(
            p.after_failure(5, "exit 3", &mut rng),
            Disposition::Retry { .. }
        ));
        match p.after_failure(6, "exit 3", &mut rng) {
            Disposition::Dead { reason } => assert!(reason.contains("6 of 6"), "{reason}"),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn lease_defaults_to_two_and_a_half_timeouts() {
        let p = HandlerPolicy::default();
        assert_eq!(p.lease(), Duration::from_secs(75));
        p.validate().unwrap();
    }

    #[test]
    fn bounds_name_the_field() {
        let p = HandlerPolicy {
            timeout_ms: MAX_DURATION_MS + 1,
            ..Default::default()
        };
        assert_eq!(p.validate().unwrap_err().field, "timeout");
        let p = HandlerPolicy {
            memory_bytes: 8 << 30,
            ..Default::default()
        };
        assert_eq!(p.validate().unwrap_err().field, "memory");
        let mut p = HandlerPolicy::default();
        p.env.insert("SLUICE_TOPIC".into(), "x".into());
        assert_eq!(p.validate().unwrap_err().field, "env");
        let p = HandlerPolicy {
            backoff_ms: 5_000,
            backoff_max_ms: 1_000,
            ..Default::default()
        };
        assert_eq!(p.validate().unwrap_err().field, "backoff_max");
    }

    #[test]
    fn an_env_that_could_never_run_is_refused() {
        for (k, v) in [("A", "nul\0inside"), ("A=B", "x"), ("", "x"), ("N\0", "x")] {
            let mut p = HandlerPolicy::default();
            p.env.insert(k.into(), v.into());
            assert_eq!(p.validate().unwrap_err().field, "env", "{k:?}={v:?}");
        }
        let mut p = HandlerPolicy::default();
        p.env
            .insert("BIG".into(), "x".repeat(crate::sandbox::MAX_ENV_BYTES));
        let e = p.validate().unwrap_err();
        assert!(e.reason.contains("bytes"), "{e}");
    }

    #[test]
    fn egress_is_validated_and_old_policies_read_back() {
        let mut p = HandlerPolicy::default();
        p.egress.allow.push("https://api.example.com/path".into());
        let e = p.validate().unwrap_err();
        assert_eq!(e.field, "egress.allow");
        assert!(
            e.to_string().contains("https://api.example.com/path"),
            "{e}"
        );
        // A policy stored before egress existed.
        let old: HandlerPolicy = serde_json::from_str(r#"{"timeout_ms": 5, "env": {}}"#).unwrap();
        assert_eq!(old.egress, EgressPolicy::default());
        assert!(old.egress.allow.is_empty(), "deny by default");
    }

    #[test]
    fn only_an_object_is_a_policy() {
        let parse =
            |s: &str| HandlerPolicy::deserialize_object(&mut serde_json::Deserializer::from_str(s));
        assert!(parse("[1,2]").is_err());
        assert!(parse("7").is_err());
        assert_eq!(parse(r#"{"timeout_ms": 5}"#).unwrap().timeout_ms, 5);
    }
}
