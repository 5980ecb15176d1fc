//! One attempt of a component: a fresh store and instance from the handler's
//! pre-instantiated component, the same limits as an ABI 1 attempt, and the
//! export's result turned into an [`Outcome`].
//!
//! - A sluice-world component gets the delivery as a `message` record;
//!   `ok` is [`Outcome::Ok`], `reject(reason)` is [`Outcome::Rejected`] and
//!   `retry(reason)` is ABI 1's exit 75 ([`EXIT_RETRY`]), the reason
//!   appended to stderr.
//! - A `wasi:cli` command component gets ABI 1's stdin and environment;
//!   `run` returning `ok` is [`Outcome::Ok`], `err` is exit 1 (retried).

use std::sync::Arc;
use std::time::Instant;

use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;

use super::super::abi::GuestAbi;
use super::super::capture::CappedPipe;
use super::super::config::SandboxConfig;
use super::super::egress::AttemptEgress;
use super::super::egress::wasi_http::EgressHooks;
use super::super::error::SandboxError;
use super::super::run::{
    Execution, Failure, Invocation, MemoryLimiter, arm, execution, guest_wasi, outcome_of,
};
use super::ComponentState;
use super::bindings::JobPre;
use super::bindings::sluice::handler::types::{HandleError, Message};
use super::validate::{MAX_COMPONENT_MEMORIES, MAX_COMPONENT_TABLES, MAX_CORE_INSTANCES};
use crate::outcome::{EXIT_RETRY, Outcome};

/// A compiled component, pre-instantiated for its world.
#[derive(Clone)]
pub(crate) enum ComponentPre {
    /// The sluice world.
    Job(JobPre<ComponentState>),
    /// A `wasi:cli` command.
    Command(CommandPre<ComponentState>),
}

/// Runs one attempt. The caller holds an instance slot.
pub(crate) async fn run(
    pre: &ComponentPre,
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
    let message = match pre {
        ComponentPre::Command(_) => {
            wasi.stdin(MemoryInputPipe::new(stdin));
            None
        }
        ComponentPre::Job(_) => Some(Message {
            id: metadata.message_id.clone(),
            topic: metadata.topic.clone(),
            handler: metadata.handler.clone(),
            idempotency_key: metadata.idempotency_key.clone(),
            ordering_key: metadata.ordering_key.clone(),
            attempt: metadata.attempt,
            max_attempts: metadata.max_attempts,
            enqueued_at: metadata.enqueued_at.clone(),
            headers: metadata.headers.clone(),
            env: env.clone(),
            payload: stdin.to_vec(),
        }),
    };
    let state = ComponentState {
        wasi: wasi.build(),
        table: ResourceTable::new(),
        abi: GuestAbi::default(),
        limiter: MemoryLimiter::for_component(
            limits.memory_bytes,
            MAX_CORE_INSTANCES as usize,
            MAX_COMPONENT_MEMORIES as usize,
            MAX_COMPONENT_TABLES as usize,
        ),
        http: wasmtime_wasi_http::WasiHttpCtx::new(),
        hooks: EgressHooks(Arc::clone(&egress)),
    };
    let engine = match pre {
        ComponentPre::Job(p) => p.engine(),
        ComponentPre::Command(p) => p.engine(),
    };

    let started = Instant::now();
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    let fuel_budget = arm(&mut store, config, &limits, sha256)?;
    let mut note = None;
    let deadline = tokio::time::Instant::from_std(started + limits.timeout);
    let guest = async {
        match pre {
            ComponentPre::Job(pre) => {
                let job = pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(Failure::Instantiate)?;
                let message = message.expect("built for the sluice world");
                let result = job
                    .sluice_handler_handler()
                    .call_handle(&mut store, &message)
                    .await
                    .map_err(Failure::Run)?;
                Ok(match result {
                    Ok(()) => Outcome::Ok,
                    Err(HandleError::Reject(reason)) => {
                        note = Some(format!("\n[sluice: handle returned reject: {reason}]\n"));
                        Outcome::Rejected
                    }
                    Err(HandleError::Retry(reason)) => {
                        note = Some(format!("\n[sluice: handle returned retry: {reason}]\n"));
                        Outcome::Exit { code: EXIT_RETRY }
                    }
                })
            }
            ComponentPre::Command(pre) => {
                let command = pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(Failure::Instantiate)?;
                let result = command
                    .wasi_cli_run()
                    .call_run(&mut store)
                    .await
                    .map_err(Failure::Run)?;
                Ok(match result {
                    Ok(()) => Outcome::Ok,
                    Err(()) => Outcome::Exit { code: 1 },
                })
            }
        }
    };
    let result = tokio::time::timeout_at(deadline, guest).await;
    let duration = started.elapsed();
    let outcome = outcome_of(result, &store.data().limiter, &limits, sha256)?;
    let fuel_used = fuel_budget.map(|budget| budget - store.get_fuel().unwrap_or(0));
    let state = store.into_data();
    let mut stderr = stderr.take();
    if let Some(note) = note {
        stderr.bytes.extend_from_slice(note.as_bytes());
    }
    Ok(execution(
        outcome,
        stdout.take(),
        stderr,
        state.abi,
        &egress,
        duration,
        state.limiter.peak,
        fuel_used,
    ))
}
