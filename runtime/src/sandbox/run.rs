//! One attempt: a fresh store and instance, WASI set up per the guest ABI, the
//! guest run under its limits, and whatever happened turned into an [`Outcome`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::{InstancePre, ResourceLimiter, Store, Trap, UpdateDeadline, WasmBacktrace};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

use super::abi::{AbiViolation, GuestAbi, GuestLog, Published};
use super::capture::{CappedPipe, Captured};
use super::config::{Limits, SandboxConfig};
use super::egress::{AttemptEgress, EgressPolicy, EgressRecord};
use super::error::SandboxError;
use super::validate::MAX_TABLE_ELEMENTS;
use super::wasi_guard::{RANDOM_CHUNK, WasiGuard};
use crate::outcome::Outcome;

/// Who the guest is running for: becomes the `SLUICE_*` environment variables
/// (docs/guest-abi.md §2). Filled in by the worker from the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestMetadata {
    /// `SLUICE_TOPIC`.
    pub topic: String,
    /// `SLUICE_HANDLER`, and `argv[0]`.
    pub handler: String,
    /// `SLUICE_MESSAGE_ID`.
    pub message_id: String,
    /// `SLUICE_IDEMPOTENCY_KEY`.
    pub idempotency_key: String,
    /// `SLUICE_ORDERING_KEY`, set only when `Some`.
    pub ordering_key: Option<String>,
    /// `SLUICE_ATTEMPT`, 1-based.
    pub attempt: u32,
    /// `SLUICE_MAX_ATTEMPTS`.
    pub max_attempts: u32,
    /// `SLUICE_ENQUEUED_AT`, RFC 3339.
    pub enqueued_at: String,
    /// The message's headers, sorted by name: a component's
    /// `message.headers`; ABI 1 modules do not see them.
    pub headers: Vec<(String, String)>,
}

impl GuestMetadata {
    /// The `SLUICE_*` variables, in the ABI's order.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("SLUICE_TOPIC".to_owned(), self.topic.clone()),
            ("SLUICE_HANDLER".to_owned(), self.handler.clone()),
            ("SLUICE_MESSAGE_ID".to_owned(), self.message_id.clone()),
            (
                "SLUICE_IDEMPOTENCY_KEY".to_owned(),
                self.idempotency_key.clone(),
            ),
        ];
        if let Some(key) = &self.ordering_key {
            env.push(("SLUICE_ORDERING_KEY".to_owned(), key.clone()));
        }
        env.extend([
            ("SLUICE_ATTEMPT".to_owned(), self.attempt.to_string()),
            (
                "SLUICE_MAX_ATTEMPTS".to_owned(),
                self.max_attempts.to_string(),
            ),
            ("SLUICE_ENQUEUED_AT".to_owned(), self.enqueued_at.clone()),
        ]);
        env
    }
}

/// Everything one attempt needs besides the module.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The payload, given to the guest on stdin.
    pub stdin: Bytes,
    /// Who the guest runs for.
    pub metadata: GuestMetadata,
    /// The handler's configured environment, after the `SLUICE_*` variables.
    pub env: Vec<(String, String)>,
    /// The handler's limits.
    pub limits: Limits,
    /// The handler's outbound HTTP policy (default: none allowed).
    pub egress: EgressPolicy,
}

/// What one attempt did. Produced for every guest behaviour; only host
/// failures are [`SandboxError`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    /// How the attempt ended.
    pub outcome: Outcome,
    /// stdout, the attempt's result.
    pub stdout: Captured,
    /// stderr, the attempt's log.
    pub stderr: Captured,
    /// Messages for the outbox, in publish order; always empty unless
    /// `outcome` is [`Outcome::Ok`] (the outbox commits only with success).
    pub published: Vec<Published>,
    /// Lines from `sluice::log`, kept whatever the outcome.
    pub logs: Vec<GuestLog>,
    /// The attempt's outbound requests, in order, whatever the outcome.
    pub egress: Vec<EgressRecord>,
    /// Whether `sluice::log` lines were dropped past the per-attempt cap.
    pub logs_truncated: bool,
    /// Wall-clock time from instantiation to the end (time spent waiting for a
    /// free instance slot is not counted).
    pub duration: Duration,
    /// Largest linear memory size the guest reached, in bytes.
    pub peak_memory_bytes: u64,
    /// Fuel consumed, when the runner meters fuel.
    pub fuel_used: Option<u64>,
}

/// Most bytes of a handler's configured environment, names and values (plus
/// `=` and NUL each) summed: 64 KiB. It is copied into every attempt.
pub const MAX_ENV_BYTES: usize = 64 << 10;

/// Checks a handler's configured environment (docs/guest-abi.md §2): names are
/// non-empty, without `=` or NUL, and not `SLUICE_*`; values have no NUL; the
/// whole is at most [`MAX_ENV_BYTES`]. The policy checks it with this at
/// registration, the sandbox before every attempt.
pub fn validate_env<'a, K, V>(
    env: impl IntoIterator<Item = (&'a K, &'a V)>,
) -> Result<(), SandboxError>
where
    K: AsRef<str> + ?Sized + 'a,
    V: AsRef<str> + ?Sized + 'a,
{
    let mut total = 0usize;
    for (name, value) in env {
        let (name, value) = (name.as_ref(), value.as_ref());
        total = total.saturating_add(name.len() + value.len() + 2);
        let reason = if name.is_empty() {
            Some("names must not be empty")
        } else if name.contains('=') || name.contains('\0') {
            Some("names must not contain '=' or NUL")
        } else if name.starts_with("SLUICE_") {
            Some("names starting with SLUICE_ are reserved")
        } else if value.contains('\0') {
            Some("values must not contain NUL")
        } else if total > MAX_ENV_BYTES {
            Some("the environment is over 64 KiB (65536 bytes) in all")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(SandboxError::Env {
                name: name.to_owned(),
                reason,
            });
        }
    }
    Ok(())
}

/// The store's data for one attempt.
pub(crate) struct HostState {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) abi: GuestAbi,
    pub(crate) guard: WasiGuard,
    pub(crate) egress: Arc<AttemptEgress>,
    limiter: MemoryLimiter,
}

/// Enforces the handler's memory limit. A refused growth traps (rather than
/// letting `memory.grow` return -1) and is remembered, so the outcome is
/// [`Outcome::MemoryLimit`] and not a generic trap.
pub(crate) struct MemoryLimiter {
    limit: u64,
    pub(crate) peak: u64,
    pub(crate) hit: bool,
    /// Core instances, memories and tables one attempt may create: 1 each for
    /// an ABI 1 module, the component bounds for a component.
    counts: (usize, usize, usize),
}

impl MemoryLimiter {
    /// A limiter of `limit` bytes per memory for an ABI 1 module.
    pub(crate) fn new(limit: u64) -> MemoryLimiter {
        MemoryLimiter {
            limit,
            peak: 0,
            hit: false,
            counts: (1, 1, 1),
        }
    }

    /// Same, for a component of at most `instances` core instances, `memories`
    /// memories and `tables` tables.
    pub(crate) fn for_component(
        limit: u64,
        instances: usize,
        memories: usize,
        tables: usize,
    ) -> MemoryLimiter {
        MemoryLimiter {
            counts: (instances, memories, tables),
            ..MemoryLimiter::new(limit)
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit} bytes exceeded: growth to {desired} bytes refused")]
struct MemoryLimitHit {
    limit: u64,
    desired: u64,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let desired = desired as u64;
        if desired > self.limit {
            self.hit = true;
            return Err(wasmtime::Error::new(MemoryLimitHit {
                limit: self.limit,
                desired,
            }));
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired as u64 <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        self.counts.0
    }

    fn memories(&self) -> usize {
        self.counts.1
    }

    fn tables(&self) -> usize {
        self.counts.2
    }
}

pub(crate) enum Failure {
    /// Instantiation failed: a guest failure only if the limiter or a trap says so.
    Instantiate(wasmtime::Error),
    /// `_start` failed: always the guest's doing.
    Run(wasmtime::Error),
}

/// The WASI context every kind of guest starts from: capped stdout and
/// stderr, the handler's name as `argv[0]`, the `SLUICE_*` metadata and the
/// handler's environment, no sockets, no name lookup, and one random-bytes
/// call bounded at [`RANDOM_CHUNK`] (it runs without yielding; ABI 1's
/// `random_get` is replaced by `wasi_guard`'s, which yields per piece).
pub(crate) fn guest_wasi(
    metadata: &GuestMetadata,
    env: &[(String, String)],
    stdout: &CappedPipe,
    stderr: &CappedPipe,
) -> WasiCtxBuilder {
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(stdout.clone())
        .stderr(stderr.clone())
        .arg(&metadata.handler)
        .envs(&metadata.env_vars())
        .envs(env)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .max_random_size(RANDOM_CHUNK as u64);
    wasi
}

/// Runs one attempt. The caller holds an instance slot.
pub(crate) async fn run(
    pre: &InstancePre<HostState>,
    sha256: &str,
    config: &SandboxConfig,
    invocation: Invocation,
    egress: Arc<AttemptEgress>,
) -> Result<Execution, SandboxError> {
    let Invocation {
        stdin,
        metadata,
        env,
        limits,
        egress: _,
    } = invocation;
    let stdout = CappedPipe::new(config.stdout_cap);
    let stderr = CappedPipe::new(config.stderr_cap);
    let mut wasi = guest_wasi(&metadata, &env, &stdout, &stderr);
    wasi.stdin(MemoryInputPipe::new(stdin));
    let state = HostState {
        wasi: wasi.build_p1(),
        abi: GuestAbi::default(),
        guard: WasiGuard::default(),
        egress,
        limiter: MemoryLimiter::new(limits.memory_bytes),
    };

    let started = Instant::now();
    let mut store = Store::new(pre.module().engine(), state);
    store.limiter(|s| &mut s.limiter);
    let fuel_budget = arm(&mut store, config, &limits, sha256)?;

    let deadline = tokio::time::Instant::from_std(started + limits.timeout);
    let guest = async {
        let instance = pre
            .instantiate_async(&mut store)
            .await
            .map_err(Failure::Instantiate)?;
        let start = instance
            .get_typed_func::<(), ()>(&mut store, "_start")
            .map_err(Failure::Instantiate)?;
        start
            .call_async(&mut store, ())
            .await
            .map_err(Failure::Run)?;
        Ok(Outcome::Ok)
    };
    let result = tokio::time::timeout_at(deadline, guest).await;
    let duration = started.elapsed();
    let outcome = outcome_of(result, &store.data().limiter, &limits, sha256)?;
    let fuel_used = fuel_budget.map(|budget| budget - store.get_fuel().unwrap_or(0));
    let state = store.into_data();
    let mut stderr = stderr.take();
    if let Some(note) = state.guard.note() {
        stderr.bytes.extend_from_slice(note.as_bytes());
    }
    Ok(execution(
        outcome,
        stdout.take(),
        stderr,
        state.abi,
        &state.egress,
        duration,
        state.limiter.peak,
        fuel_used,
    ))
}

/// Arms a fresh store with the attempt's epoch yield and fuel budget (the
/// caller sets the limiter); returns the budget when fuel is metered.
pub(crate) fn arm<T>(
    store: &mut Store<T>,
    config: &SandboxConfig,
    limits: &Limits,
    sha256: &str,
) -> Result<Option<u64>, SandboxError> {
    // Every tick, a running guest yields to the async runtime; the timeout
    // then cancels it at the first yield past the deadline.
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
    let fuel_budget = config.fuel.then(|| limits.fuel.unwrap_or(u64::MAX));
    if let Some(fuel) = fuel_budget {
        store
            .set_fuel(fuel)
            .map_err(|e| SandboxError::Instantiate {
                sha256: sha256.into(),
                message: e.to_string(),
            })?;
    }
    Ok(fuel_budget)
}

/// Turns how the guest future ended (`Err` when the deadline passed) into the
/// attempt's outcome: ABI 1 modules and components alike. `Err` only for an
/// instantiation failure that is not the guest's doing.
pub(crate) fn outcome_of(
    result: Result<Result<Outcome, Failure>, tokio::time::error::Elapsed>,
    limiter: &MemoryLimiter,
    limits: &Limits,
    sha256: &str,
) -> Result<Outcome, SandboxError> {
    Ok(match result {
        Err(_elapsed) => Outcome::Timeout {
            limit_ms: limits.timeout.as_millis() as u64,
        },
        Ok(Ok(outcome)) => outcome,
        Ok(Err(Failure::Run(e))) => {
            classify(&e, limiter, limits).unwrap_or_else(|| host_error_trap(&e))
        }
        Ok(Err(Failure::Instantiate(e))) => match classify(&e, limiter, limits) {
            Some(outcome) => outcome,
            None => {
                return Err(SandboxError::Instantiate {
                    sha256: sha256.into(),
                    message: format!("{e:#}"),
                });
            }
        },
    })
}

/// The [`Execution`] of a finished attempt; the outbox is kept only on success.
#[expect(
    clippy::too_many_arguments,
    reason = "one call per guest kind, each naming every part"
)]
pub(crate) fn execution(
    outcome: Outcome,
    stdout: Captured,
    stderr: Captured,
    abi: GuestAbi,
    egress: &AttemptEgress,
    duration: Duration,
    peak_memory_bytes: u64,
    fuel_used: Option<u64>,
) -> Execution {
    let published = if outcome == Outcome::Ok {
        abi.outbox
    } else {
        Vec::new()
    };
    Execution {
        outcome,
        stdout,
        stderr,
        published,
        logs: abi.logs,
        logs_truncated: abi.logs_truncated,
        egress: egress.records(),
        duration,
        peak_memory_bytes,
        fuel_used,
    }
}

/// The outcome a guest-caused error stands for; `None` if nothing marks it as
/// the guest's doing.
fn classify(e: &wasmtime::Error, limiter: &MemoryLimiter, limits: &Limits) -> Option<Outcome> {
    if let Some(exit) = e.downcast_ref::<I32Exit>() {
        return Some(Outcome::from_exit(exit.0));
    }
    if limiter.hit || e.downcast_ref::<MemoryLimitHit>().is_some() {
        return Some(Outcome::MemoryLimit {
            limit_bytes: limits.memory_bytes,
        });
    }
    let backtrace = || {
        e.downcast_ref::<WasmBacktrace>()
            .map(format_backtrace)
            .unwrap_or_default()
    };
    if let Some(trap) = e.downcast_ref::<Trap>() {
        return Some(match trap {
            Trap::OutOfFuel => Outcome::FuelExhausted {
                limit: limits.fuel.unwrap_or(u64::MAX),
            },
            Trap::Interrupt => Outcome::Timeout {
                limit_ms: limits.timeout.as_millis() as u64,
            },
            trap => Outcome::Trap {
                trap: trap_kind(trap),
                message: trap.to_string(),
                backtrace: backtrace(),
            },
        });
    }
    if let Some(v) = e.downcast_ref::<AbiViolation>() {
        return Some(Outcome::Trap {
            trap: v.kind.into(),
            message: v.to_string(),
            backtrace: backtrace(),
        });
    }
    let message = error_message(e);
    if message.contains("invalid exit status") {
        return Some(Outcome::Trap {
            trap: "invalid_exit_status".into(),
            message,
            backtrace: backtrace(),
        });
    }
    None
}

/// A host function refused the guest in a way with no specific kind.
fn host_error_trap(e: &wasmtime::Error) -> Outcome {
    Outcome::Trap {
        trap: "host_error".into(),
        message: error_message(e),
        backtrace: e
            .downcast_ref::<WasmBacktrace>()
            .map(format_backtrace)
            .unwrap_or_default(),
    }
}

/// The error's chain of messages, without the backtrace wasmtime attaches as
/// context (it goes in its own field).
fn error_message(e: &wasmtime::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .filter(|m| !m.starts_with("error while executing at wasm backtrace"))
        .collect::<Vec<_>>()
        .join(": ")
}

/// `unreachable`, `stack_overflow`, ...: wasmtime's trap code in snake_case.
fn trap_kind(trap: &Trap) -> String {
    if *trap == Trap::UnreachableCodeReached {
        return "unreachable".into();
    }
    let name = format!("{trap:?}");
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// wasmtime's frame list (innermost first, demangled names), without its
/// heading line.
fn format_backtrace(bt: &WasmBacktrace) -> String {
    let text = bt.to_string();
    let mut lines = text.lines();
    if text.starts_with("error while executing") {
        lines.next();
    }
    lines.collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trap_kinds_are_snake_case() {
        assert_eq!(trap_kind(&Trap::UnreachableCodeReached), "unreachable");
        assert_eq!(trap_kind(&Trap::StackOverflow), "stack_overflow");
        assert_eq!(
            trap_kind(&Trap::IntegerDivisionByZero),
            "integer_division_by_zero"
        );
        assert_eq!(trap_kind(&Trap::MemoryOutOfBounds), "memory_out_of_bounds");
    }

    #[test]
    fn metadata_becomes_sluice_env_in_abi_order() {
        let m = GuestMetadata {
            topic: "orders".into(),
            handler: "billing".into(),
            message_id: "0190".into(),
            idempotency_key: "idem".into(),
            ordering_key: None,
            attempt: 2,
            max_attempts: 6,
            enqueued_at: "2026-11-27T22:10:43.123Z".into(),
            headers: Vec::new(),
        };
        let names: Vec<_> = m.env_vars().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            names,
            [
                "SLUICE_TOPIC",
                "SLUICE_HANDLER",
                "SLUICE_MESSAGE_ID",
                "SLUICE_IDEMPOTENCY_KEY",
                "SLUICE_ATTEMPT",
                "SLUICE_MAX_ATTEMPTS",
                "SLUICE_ENQUEUED_AT"
            ]
        );
        let with_key = GuestMetadata {
            ordering_key: Some("user:1".into()),
            ..m
        };
        assert!(
            with_key
                .env_vars()
                .contains(&("SLUICE_ORDERING_KEY".into(), "user:1".into()))
        );
    }

    #[test]
    fn handler_env_cannot_shadow_metadata() {
        validate_env([("GREETING", "hi")].iter().map(|(k, v)| (*k, *v))).unwrap();
        for (k, v) in [("SLUICE_TOPIC", "x"), ("", "x"), ("A=B", "x"), ("A", "x\0")] {
            assert!(
                validate_env([(k, v)].iter().map(|(k, v)| (*k, *v))).is_err(),
                "{k}"
            );
        }
    }
}
