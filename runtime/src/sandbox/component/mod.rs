//! Components: the sluice world (guest-sdk/wit/handler.wit) and plain
//! `wasi:cli` command components, run under the same sandbox as ABI 1 modules
//! (docs/guest-abi.md, "Components").
//!
//! # Module map
//! - [`validate`](mod@validate): registration-time checks (world, imports,
//!   core modules), each refusal naming the problem.
//! - [`run`]: one attempt of a component, from a fresh instance to an
//!   [`Outcome`](crate::outcome::Outcome).
//! - this file: the generated bindings, the per-attempt store data and the
//!   linker (WASI 0.2 plus the world's `host` functions, which reuse ABI 1's
//!   logic in `GuestAbi`).
//!
//! # Design
//! Host calls are synchronous (the WIT functions are plain `func`s), the
//! exports are called with `call_async` on the sandbox's guest runtime, as
//! `_start` is for ABI 1, so the epoch ticks make a busy component yield and
//! its timeout cancel it. WASI 0.2 is wasmtime-wasi's with nothing granted: no
//! preopened directories, no network (TCP, UDP and name lookup disabled), no
//! host environment; a component importing `wasi:filesystem` or
//! `wasi:sockets` instantiates, and every such call fails. `wasi:http` is
//! wasmtime-wasi-http's, its outgoing requests sent by the sandbox's egress
//! client under the handler's allow-list ([`super::egress::wasi_http`]).

pub mod run;
pub mod validate;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, component};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::abi::{GuestAbi, LogLevel, PublishRefusal};
use super::egress::wasi_http::EgressHooks;
use super::run::MemoryLimiter;

/// Bindings generated from guest-sdk/wit/handler.wit.
#[allow(missing_docs, reason = "generated from the WIT, documented there")]
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../guest-sdk/wit",
        world: "job",
        exports: { default: async },
    });
}

use bindings::sluice::handler::host;

/// The store's data for one component attempt.
pub(crate) struct ComponentState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) abi: GuestAbi,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) http: WasiHttpCtx,
    pub(crate) hooks: EgressHooks,
}

impl WasiHttpView for ComponentState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl From<host::Level> for LogLevel {
    fn from(level: host::Level) -> LogLevel {
        match level {
            host::Level::Trace => LogLevel::Trace,
            host::Level::Debug => LogLevel::Debug,
            host::Level::Info => LogLevel::Info,
            host::Level::Warn => LogLevel::Warn,
            host::Level::Error => LogLevel::Error,
        }
    }
}

impl host::Host for ComponentState {
    fn log(&mut self, level: host::Level, message: String) {
        self.abi.log_line(level.into(), message.as_bytes());
    }

    fn publish(
        &mut self,
        topic: String,
        payload: Vec<u8>,
        ordering_key: Option<String>,
        delay_ms: u64,
    ) -> Result<(), host::PublishError> {
        // Past i64::MAX is past the 10-year bound too: refused as a delay.
        let delay_ms = i64::try_from(delay_ms).unwrap_or(i64::MAX);
        self.abi
            .publish_message(&topic, &payload, Ok(ordering_key.as_deref()), delay_ms)
            .map_err(|refusal| match refusal {
                PublishRefusal::InvalidTopic => host::PublishError::InvalidTopic,
                PublishRefusal::PayloadTooLarge => host::PublishError::PayloadTooLarge,
                PublishRefusal::OutboxFull => host::PublishError::OutboxFull,
                // Component strings are always UTF-8, so `BadUtf8` (a key
                // that is not) cannot happen here.
                PublishRefusal::InvalidKey | PublishRefusal::BadUtf8 => {
                    host::PublishError::InvalidKey
                }
                PublishRefusal::InvalidDelay => host::PublishError::InvalidDelay,
            })
    }
}

impl bindings::sluice::handler::types::Host for ComponentState {}

/// The component linker: WASI 0.2 (async, as ABI 1's WASI is), `wasi:http`
/// and the sluice world's `host` interface.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<ComponentState>> {
    let mut linker = component::Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    bindings::Job::add_to_linker::<ComponentState, HasSelf<ComponentState>>(&mut linker, |s| s)?;
    Ok(linker)
}
