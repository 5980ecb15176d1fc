//! The shape of the config file: one optional table per part, every key
//! optional, unknown keys refused. Durations and sizes are written as users
//! type them ([`crate::units`]).

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::LogFormat;
use crate::units::{parse_duration, parse_size};

/// The whole file. Missing sections keep every default.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct File {
    pub server: ServerSection,
    pub api: ApiSection,
    pub store: StoreSection,
    pub runner: RunnerSection,
    pub sandbox: SandboxSection,
}

/// `[server]`: the process itself.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct ServerSection {
    pub data_dir: Option<PathBuf>,
    pub grace: Option<Dur>,
    pub log_format: Option<LogFormat>,
}

/// `[api]`: the HTTP listener.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct ApiSection {
    pub listen: Option<SocketAddr>,
    pub token: Option<String>,
    pub read_token: Option<String>,
    pub ui: Option<bool>,
}

/// `[store]`: which backend (`type`) and the queue's limits and retention.
/// Keys of one backend only sit beside the shared ones: `checkpoint_bytes`
/// and `group_commit_window` are the embedded engine's, `url`, `pool_size`,
/// `schema` and `runner_id` PostgreSQL's; `Config::lay` refuses those given
/// for another `type`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct StoreSection {
    #[serde(rename = "type")]
    pub kind: Option<StoreType>,
    pub max_payload_bytes: Option<Size>,
    pub max_topic_depth: Option<u64>,
    pub max_headers: Option<usize>,
    pub idempotency_window: Option<Dur>,
    pub message_retention: Option<Dur>,
    pub dlq_retention: Option<Dur>,
    pub checkpoint_bytes: Option<Size>,
    pub group_commit_window: Option<Dur>,
    pub url: Option<String>,
    pub pool_size: Option<usize>,
    pub schema: Option<String>,
    pub runner_id: Option<String>,
}

/// The backends a `[store] type` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum StoreType {
    Embedded,
    Postgres,
}

/// `[runner]`: how often the runner's loops wake.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RunnerSection {
    pub poll_interval: Option<Dur>,
    pub promote_interval: Option<Dur>,
    pub rescue_interval: Option<Dur>,
    pub prune_interval: Option<Dur>,
    pub schedule_interval: Option<Dur>,
    pub handler_interval: Option<Dur>,
}

/// `[sandbox]`: the one shared wasmtime engine and its pool.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct SandboxSection {
    pub pool_instances: Option<u32>,
    pub max_memory_bytes: Option<Size>,
    pub epoch_tick: Option<Dur>,
    pub cache_dir: Option<PathBuf>,
    pub stdout_cap: Option<Size>,
    pub stderr_cap: Option<Size>,
    pub fuel: Option<bool>,
    pub max_wasm_stack: Option<Size>,
    pub compile_timeout: Option<Dur>,
}

/// A duration: `"30s"`, `"1h 30m"`, `"250ms"`, or an integer of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Dur(pub Duration);

/// A size in bytes: `"64MiB"`, `"512KiB"`, or an integer of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Size(pub u64);

impl From<Dur> for Duration {
    fn from(d: Dur) -> Duration {
        d.0
    }
}

impl From<Size> for u64 {
    fn from(s: Size) -> u64 {
        s.0
    }
}

/// Reads a string with `parse` or a non-negative integer with `from_int`.
struct Human<T> {
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
    from_int: fn(u64) -> T,
    _t: PhantomData<T>,
}

impl<T> Visitor<'_> for Human<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Ok((self.from_int)(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        u64::try_from(v)
            .map(self.from_int)
            .map_err(|_| E::custom(format!("{v} is negative")))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Human {
            expecting: "a duration such as \"30s\" or \"250ms\"",
            parse: |s| parse_duration(s).map(Dur),
            from_int: |n| Dur(Duration::from_secs(n)),
            _t: PhantomData,
        })
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Human {
            expecting: "a size such as \"64MiB\" or a number of bytes",
            parse: |s| parse_size(s).map(Size),
            from_int: Size,
            _t: PhantomData,
        })
    }
}
