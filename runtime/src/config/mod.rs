//! The settings of `sluice serve`: defaults, an optional TOML file, overrides.
//!
//! [`Config::load`] builds the running configuration in three layers, each
//! beating the one before: the parts' own defaults ([`StoreConfig::default`],
//! [`RunnerConfig::default`], [`SandboxConfig::default`], [`ServerConfig`],
//! [`ApiConfig`]; no default is written twice), then the file given with
//! `--config` / `SLUICE_CONFIG`, then flags and environment variables
//! ([`Overrides`]). The file's sections mirror the parts: `[server]`, `[api]`,
//! `[store]` (with `type = "embedded"`, the one backend today), `[runner]` and
//! `[sandbox]`; every setting, its default and its bound are listed in
//! `docs/configuration.md`.
//!
//! A bad file is refused before anything starts, with a [`ConfigError`] naming
//! the file and the key (`[store] max_topic_depth`): unknown sections and keys
//! (a typo must not silently keep a default), wrong types, values out of
//! bounds and unknown store types.

mod file;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::sandbox::SandboxConfig;
use crate::store::{EmbeddedSettings, StoreConfig};
use crate::worker::RunnerConfig;
use file::{File, StoreType};

/// Largest `[store] max_payload_bytes`: 64 MiB. Every enqueue body is buffered
/// whole, and a batch may carry twice this much.
pub const MAX_PAYLOAD_BYTES: u64 = 64 << 20;
/// Smallest `[store] checkpoint_bytes`: 1 MiB; below it the store would
/// checkpoint almost every write.
pub const MIN_CHECKPOINT_BYTES: u64 = 1 << 20;
/// Longest `[store] group_commit_window`: 1 s, the most latency a flush may
/// add to an acknowledgement.
pub const MAX_GROUP_COMMIT_WINDOW: Duration = Duration::from_secs(1);

/// The running configuration of `sluice serve`.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[api]`.
    pub api: ApiConfig,
    /// `[store]`.
    pub store: StoreSettings,
    /// `[runner]`.
    pub runner: RunnerConfig,
    /// `[sandbox]`. Its `cache_dir` is `<data_dir>/module-cache` unless set.
    pub sandbox: SandboxConfig,
}

/// The process: where data lives, how it stops, how it logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// The queue (`<data_dir>/queue`) and the module cache. Default `sluice-data`.
    pub data_dir: PathBuf,
    /// How long attempts in flight may finish after SIGINT/SIGTERM. Default 30 s.
    pub grace: Duration,
    /// Log lines as text or JSON. Default text.
    pub log_format: LogFormat,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("sluice-data"),
            grace: Duration::from_secs(30),
            log_format: LogFormat::Text,
        }
    }
}

impl ServerConfig {
    /// `<data_dir>/module-cache`: the compiled-module cache unless
    /// `[sandbox] cache_dir` says otherwise (also `sluice run`'s default).
    pub fn module_cache_dir(&self) -> PathBuf {
        self.data_dir.join("module-cache")
    }
}

/// The format of log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The HTTP API's listener. Body limits follow `[store] max_payload_bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// Address to listen on. Default `127.0.0.1:7777`; a non-loopback address
    /// requires a token.
    pub listen: SocketAddr,
    /// Bearer token required on every route but `/healthz`. Default none; an
    /// empty token is none.
    pub token: Option<String>,
    /// A second token that may read everything and change nothing (API and
    /// dashboard). Default none; only taken with `token`.
    pub read_token: Option<String>,
    /// Serve the dashboard at `/ui`. Default on.
    pub ui: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7777)),
            token: None,
            read_token: None,
            ui: true,
        }
    }
}

/// The store: which backend, and the limits every backend applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreSettings {
    /// `type`. Default [`StoreBackend::Embedded`] with its default tuning.
    pub backend: StoreBackend,
    /// Limits and retention, the same for every backend (a backend's own
    /// tuning is in its [`StoreBackend`] variant).
    pub config: StoreConfig,
}

/// Which store backend `sluice serve` opens (`[store] type`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreBackend {
    /// The embedded write-ahead-log store in `<data_dir>/queue`, its
    /// checkpoints in sled, with its tuning (`checkpoint_bytes`,
    /// `group_commit_window`).
    Embedded(EmbeddedSettings),
    /// A PostgreSQL database shared by any number of runners (docs/scale-out.md).
    Postgres(PgSettings),
}

impl Default for StoreBackend {
    fn default() -> Self {
        StoreBackend::Embedded(EmbeddedSettings::default())
    }
}

/// `[store] type = "postgres"`: where the database is and how to use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgSettings {
    /// `url`: `postgres://user[:password]@host[:port]/database`. Required.
    pub url: String,
    /// `pool_size`: connections per runner (plus one for LISTEN). Default 16.
    pub pool_size: usize,
    /// `schema`: the PostgreSQL schema of this installation. Default `sluice`.
    pub schema: String,
    /// `runner_id`: recorded on this runner's leases; at start the runner
    /// releases the leases of its id. Default `<hostname>:<listen port>`,
    /// unique per process on a host and stable across its restarts.
    pub runner_id: Option<String>,
}

impl PgSettings {
    /// The settings for `url` with every default.
    pub fn with_url(url: String) -> PgSettings {
        PgSettings {
            url,
            pool_size: crate::store::PG_DEFAULT_POOL_SIZE,
            schema: crate::store::PG_DEFAULT_SCHEMA.to_string(),
            runner_id: None,
        }
    }
}

/// Where `--store` points: `embedded`, or a `postgres://` URL.
fn parse_store(s: &str) -> Result<StoreChoice, String> {
    if s == "embedded" {
        Ok(StoreChoice::Embedded)
    } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        Ok(StoreChoice::Postgres(s.to_string()))
    } else {
        Err(format!(
            "expected `embedded` or a postgres:// URL, got {:?}",
            s.split('@').next_back().unwrap_or(s)
        ))
    }
}

/// The backend named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// The embedded store.
    Embedded,
    /// PostgreSQL at this URL (the file's other `[store]` PostgreSQL keys apply).
    Postgres(String),
}

/// Settings given as flags or environment variables; each beats the file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// Where the queue and the compiled-module cache live [default: sluice-data].
    #[arg(long, env = "SLUICE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on. A non-loopback address requires --token [default: 127.0.0.1:7777].
    #[arg(long, env = "SLUICE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Bearer token required on every API request (except /healthz).
    #[arg(long, env = "SLUICE_TOKEN")]
    pub token: Option<String>,
    /// A read-only token: sees everything (API and dashboard), changes nothing.
    #[arg(long, env = "SLUICE_READ_TOKEN")]
    pub read_token: Option<String>,
    /// Do not serve the dashboard at /ui.
    #[arg(long, env = "SLUICE_NO_UI")]
    pub no_ui: bool,
    /// How long running attempts may finish after SIGINT/SIGTERM [default: 30s].
    #[arg(long, env = "SLUICE_GRACE", value_parser = crate::units::parse_duration)]
    pub grace: Option<Duration>,
    /// Instances the sandbox's pool reserves (the most attempts running at once) [default: 256].
    #[arg(long, env = "SLUICE_POOL_INSTANCES")]
    pub pool_instances: Option<u32>,
    /// Log format [default: text].
    #[arg(long, env = "SLUICE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// The store: `embedded`, or `postgres://user@host:port/db` to share a
    /// PostgreSQL queue with other runners [default: embedded].
    #[arg(long, env = "SLUICE_STORE", value_parser = parse_store)]
    pub store: Option<StoreChoice>,
    /// This runner's id on a PostgreSQL store [default: HOSTNAME:LISTEN_PORT].
    #[arg(long, env = "SLUICE_RUNNER_ID")]
    pub runner_id: Option<String>,
}

/// A configuration that cannot be used, naming where it came from.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("cannot read config file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {}: malformed TOML: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// One setting is unknown, of the wrong type or out of bounds.
    #[error("{origin}: {key}: {message}")]
    Setting {
        /// `config file PATH`, or `command line or environment`.
        origin: String,
        /// Section and key, e.g. `[store] max_topic_depth`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

/// Where the overrides come from, as errors name it.
const OVERRIDES: &str = "command line or environment";

impl Config {
    /// The defaults, then the file at `path` (if any), then `overrides`.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        if let Some(path) = path {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            config = Config::from_toml(&text, path)?;
        }
        config.apply(overrides);
        config.check(OVERRIDES)?;
        if config.sandbox.cache_dir.is_none() {
            config.sandbox.cache_dir = Some(config.server.module_cache_dir());
        }
        Ok(config)
    }

    /// The defaults with the file `text` (read from `path`, which errors name)
    /// laid over them, checked.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let origin = format!("config file {}", path.display());
        let deserializer =
            toml::de::Deserializer::parse(text).map_err(|e| ConfigError::Syntax {
                path: path.to_owned(),
                message: e.to_string().trim_end().to_string(),
            })?;
        let file: File = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = key_name(e.path());
            let inner = e.into_inner();
            let mut message = inner.message().to_string();
            if !key.contains(' ') {
                message = message.replacen("unknown field", "unknown section", 1);
            }
            if let Some(span) = inner.span() {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                message = format!("{message} (line {line})");
            }
            ConfigError::Setting {
                origin: origin.clone(),
                key,
                message,
            }
        })?;
        let mut config = Config::default();
        config.lay(file, &origin)?;
        config.check(&origin)?;
        Ok(config)
    }

    /// Lays the file's values over these.
    fn lay(&mut self, file: File, origin: &str) -> Result<(), ConfigError> {
        let File {
            server,
            api,
            store,
            runner,
            sandbox,
        } = file;
        set(&mut self.server.data_dir, server.data_dir);
        set(&mut self.server.grace, server.grace);
        set(&mut self.server.log_format, server.log_format);

        set(&mut self.api.listen, api.listen);
        set(&mut self.api.token, api.token.map(Some));
        set(&mut self.api.read_token, api.read_token.map(Some));
        set(&mut self.api.ui, api.ui);

        let pg_key = [
            ("url", store.url.is_some()),
            ("pool_size", store.pool_size.is_some()),
            ("schema", store.schema.is_some()),
            ("runner_id", store.runner_id.is_some()),
        ]
        .into_iter()
        .find(|(_, given)| *given);
        let embedded_key = [
            ("checkpoint_bytes", store.checkpoint_bytes.is_some()),
            ("group_commit_window", store.group_commit_window.is_some()),
        ]
        .into_iter()
        .find(|(_, given)| *given);
        let other_backend = |key: &str, kind: &str| {
            Err(ConfigError::Setting {
                origin: origin.to_string(),
                key: format!("[store] {key}"),
                message: format!("not a setting of type = {kind:?}"),
            })
        };
        self.store.backend = match store.kind {
            None | Some(StoreType::Embedded) => {
                if let Some((key, _)) = pg_key {
                    return other_backend(key, "embedded");
                }
                let mut e = match &self.store.backend {
                    StoreBackend::Embedded(e) => e.clone(),
                    _ => EmbeddedSettings::default(),
                };
                set(&mut e.checkpoint_bytes, store.checkpoint_bytes);
                set(&mut e.group_commit_window, store.group_commit_window);
                StoreBackend::Embedded(e)
            }
            Some(StoreType::Postgres) => {
                if let Some((key, _)) = embedded_key {
                    return other_backend(key, "postgres");
                }
                let Some(url) = store.url.clone() else {
                    return Err(ConfigError::Setting {
                        origin: origin.to_string(),
                        key: "[store] url".into(),
                        message: "required with type = \"postgres\"".into(),
                    });
                };
                let mut pg = PgSettings::with_url(url);
                set(&mut pg.pool_size, store.pool_size);
                set(&mut pg.schema, store.schema.clone());
                pg.runner_id = store.runner_id.clone();
                StoreBackend::Postgres(pg)
            }
        };
        let s = &mut self.store.config;
        let bytes = |key, v: Option<file::Size>| narrow(origin, "store", key, v);
        set(
            &mut s.max_payload_bytes,
            bytes("max_payload_bytes", store.max_payload_bytes)?,
        );
        set(&mut s.max_topic_depth, store.max_topic_depth);
        set(&mut s.max_headers, store.max_headers);
        set(&mut s.idempotency_window, store.idempotency_window);
        set(&mut s.message_retention, store.message_retention);
        set(&mut s.dlq_retention, store.dlq_retention);

        let r = &mut self.runner;
        set(&mut r.poll_interval, runner.poll_interval);
        set(&mut r.promote_interval, runner.promote_interval);
        set(&mut r.rescue_interval, runner.rescue_interval);
        set(&mut r.prune_interval, runner.prune_interval);
        set(&mut r.schedule_interval, runner.schedule_interval);
        set(&mut r.handler_interval, runner.handler_interval);

        let x = &mut self.sandbox;
        let bytes = |key, v: Option<file::Size>| narrow(origin, "sandbox", key, v);
        set(&mut x.pool_instances, sandbox.pool_instances);
        set(&mut x.max_memory_bytes, sandbox.max_memory_bytes);
        set(&mut x.epoch_tick, sandbox.epoch_tick);
        set(&mut x.cache_dir, sandbox.cache_dir.map(Some));
        set(&mut x.stdout_cap, bytes("stdout_cap", sandbox.stdout_cap)?);
        set(&mut x.stderr_cap, bytes("stderr_cap", sandbox.stderr_cap)?);
        set(&mut x.fuel, sandbox.fuel);
        set(
            &mut x.max_wasm_stack,
            bytes("max_wasm_stack", sandbox.max_wasm_stack)?,
        );
        set(&mut x.compile_timeout, sandbox.compile_timeout);
        Ok(())
    }

    /// Lays the flags and environment variables over these settings.
    pub fn apply(&mut self, o: &Overrides) {
        set(&mut self.server.data_dir, o.data_dir.clone());
        set(&mut self.server.grace, o.grace);
        set(&mut self.server.log_format, o.log_format);
        set(&mut self.api.listen, o.listen);
        set(&mut self.api.token, o.token.clone().map(Some));
        set(&mut self.api.read_token, o.read_token.clone().map(Some));
        if o.no_ui {
            self.api.ui = false;
        }
        set(&mut self.sandbox.pool_instances, o.pool_instances);
        match &o.store {
            Some(StoreChoice::Embedded)
                if !matches!(self.store.backend, StoreBackend::Embedded(_)) =>
            {
                self.store.backend = StoreBackend::Embedded(EmbeddedSettings::default());
            }
            Some(StoreChoice::Embedded) => {}
            Some(StoreChoice::Postgres(url)) => match &mut self.store.backend {
                StoreBackend::Postgres(pg) => pg.url = url.clone(),
                b => *b = StoreBackend::Postgres(PgSettings::with_url(url.clone())),
            },
            None => {}
        }
        if let (Some(id), StoreBackend::Postgres(pg)) = (&o.runner_id, &mut self.store.backend) {
            pg.runner_id = Some(id.clone());
        }
    }

    /// Checks every bound, naming the first key that breaks one.
    fn check(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| {
            Err(ConfigError::Setting {
                origin: origin.to_string(),
                key: key.to_string(),
                message,
            })
        };
        let s = &self.store.config;
        if s.max_payload_bytes == 0 || s.max_payload_bytes as u64 > MAX_PAYLOAD_BYTES {
            return bad(
                "[store] max_payload_bytes",
                format!("{} bytes is outside 1 byte ..= 64 MiB", s.max_payload_bytes),
            );
        }
        if s.max_topic_depth == 0 {
            return bad("[store] max_topic_depth", "must be at least 1".into());
        }
        if let StoreBackend::Embedded(e) = &self.store.backend {
            if e.checkpoint_bytes < MIN_CHECKPOINT_BYTES {
                return bad(
                    "[store] checkpoint_bytes",
                    format!("{} bytes is below 1 MiB", e.checkpoint_bytes),
                );
            }
            if e.group_commit_window > MAX_GROUP_COMMIT_WINDOW {
                return bad(
                    "[store] group_commit_window",
                    format!("{:?} is more than 1 s", e.group_commit_window),
                );
            }
        }
        if let StoreBackend::Postgres(pg) = &self.store.backend {
            if pg.pool_size == 0 || pg.pool_size > 1024 {
                return bad(
                    "[store] pool_size",
                    format!("{} is outside 1 ..= 1024", pg.pool_size),
                );
            }
            if let Err(e) = crate::store::check_pg_schema(&pg.schema) {
                return bad("[store] schema", e.to_string());
            }
        }
        let r = &self.runner;
        for (key, d) in [
            ("poll_interval", r.poll_interval),
            ("promote_interval", r.promote_interval),
            ("rescue_interval", r.rescue_interval),
            ("prune_interval", r.prune_interval),
            ("schedule_interval", r.schedule_interval),
            ("handler_interval", r.handler_interval),
        ] {
            if d.is_zero() {
                return bad(
                    &format!("[runner] {key}"),
                    "must be above zero (a zero interval would spin)".into(),
                );
            }
        }
        if let Err(e) = self.sandbox.check() {
            // The sandbox's messages start with the field they are about.
            let text = match e {
                crate::sandbox::SandboxError::Config(text) => text,
                other => other.to_string(),
            };
            let (field, reason) = text.split_once(' ').unwrap_or(("", &text));
            return bad(&format!("[sandbox] {field}"), reason.to_string());
        }
        Ok(())
    }
}

/// Replaces `slot` with `value` when there is one.
fn set<T, U: Into<T>>(slot: &mut T, value: Option<U>) {
    if let Some(v) = value {
        *slot = v.into();
    }
}

/// A size from the file as a `usize`, refused if it does not fit.
fn narrow(
    origin: &str,
    section: &str,
    key: &str,
    value: Option<file::Size>,
) -> Result<Option<usize>, ConfigError> {
    value
        .map(|v| {
            usize::try_from(v.0).map_err(|_| ConfigError::Setting {
                origin: origin.to_string(),
                key: format!("[{section}] {key}"),
                message: format!("{} bytes is too large", v.0),
            })
        })
        .transpose()
}

/// `[store] max_topic_depth` from a serde path such as `store.max_topic_depth`.
fn key_name(path: &serde_path_to_error::Path) -> String {
    let parts: Vec<String> = path.iter().map(ToString::to_string).collect();
    match parts.as_slice() {
        [] => "(top level)".to_string(),
        [section] => format!("[{section}]"),
        [sections @ .., key] => format!("[{}] {key}", sections.join(".")),
    }
}
