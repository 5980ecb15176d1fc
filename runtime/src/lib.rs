//! sluice: a serverless job runner for WebAssembly.
//!
//! A durable queue leases each message to a fresh, sandboxed wasmtime instance
//! with timeouts, retries with backoff, idempotency keys and a dead-letter queue.
//!
//! # Module map
//! - [`api`]: the HTTP API (axum): routes, JSON documents, the one mapping of
//!   errors to statuses, bearer-token auth.
//! - [`cli`]: the `sluice` command line: clap definitions, the HTTP client,
//!   human and JSON rendering, and `sluice run`.
//! - [`clock`]: injected time ([`clock::Clock`]), so tests never sleep.
//! - [`config`]: the settings of `sluice serve`: defaults, the TOML file,
//!   flag and environment overrides.
//! - [`metrics`]: the series behind `/metrics` (prometheus-client, OpenMetrics).
//! - [`names`]: the rules for topic and handler names and keys.
//! - [`outcome`]: the closed set of ways an attempt ends.
//! - [`policy`]: a handler's limits, retries and backoff.
//! - [`priority`]: background threads (guests, checkpoints) yield the CPU to
//!   the control plane (`SCHED_IDLE`).
//! - [`schedule`]: cron expressions in a time zone, and the rule deciding what
//!   a schedule's tick fires, buffers or misses.
//! - [`sandbox`]: narrows wasmtime for the rest of the code: validation, limits,
//!   the guest ABI. Knows nothing of queues.
//! - [`serve`]: `sluice serve`, wiring everything into one process.
//! - [`store`]: the durable queue behind a trait of queue verbs. The default
//!   backend is embedded: a write-ahead-log store with an in-memory image whose
//!   checkpoints live in sled.
//! - [`ui`]: the web dashboard at `/ui`: server-rendered pages over the same
//!   store verbs and JSON documents as the API, login and CSRF, rate history.
//! - [`units`]: durations and sizes as users type them.
//! - [`worker`]: the runner: producer, executor, completer, maintenance.

pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod metrics;
pub mod names;
pub mod outcome;
pub mod policy;
pub mod priority;
pub mod sandbox;
pub mod schedule;
pub mod serve;
pub mod store;
pub mod ui;
pub mod units;
pub mod worker;
