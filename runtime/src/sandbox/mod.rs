//! The WASM sandbox: narrows wasmtime for the rest of the code; knows nothing of
//! queues.
//!
//! The worker hands it module bytes and one [`Invocation`] per attempt and gets
//! back an [`Execution`] whose [`Outcome`](crate::outcome::Outcome) says how the
//! guest ended. Guest failures (exit statuses, traps, timeouts, limits) are
//! values; only host failures are [`SandboxError`]s. Only the worker joins the
//! sandbox and the store.
//!
//! The guest ABI is docs/guest-abi.md; design and measurements are
//! docs/sandbox.md.
//!
//! # Module map
//! - [`config`]: [`SandboxConfig`] (runner-wide, with every default) and
//!   [`Limits`] (per handler).
//! - [`validate`](mod@validate): registration-time checks of a module against
//!   the ABI, each refusal naming the problem; tells core modules from
//!   components.
//! - [`component`]: components of the sluice world (guest-sdk/wit) and
//!   `wasi:cli` command components: their checks, linker and attempt.
//! - [`abi`]: the ABI's constants and the `sluice::publish` / `sluice::log` host
//!   functions.
//! - [`egress`]: outbound HTTP(S) under the handler's allow-list, for
//!   components (`wasi:http`) and ABI 1 (`sluice::http_request`) alike.
//! - [`capture`]: capped stdout/stderr capture.
//! - [`wasi_guard`]: the WASI functions sluice defines itself (`random_get` in
//!   pieces, `sock_*` denied and counted without host log lines).
//! - [`cache`]: the on-disk compiled-module cache.
//! - [`run`]: one attempt, from a fresh instance to an [`Outcome`](crate::outcome::Outcome).
//! - [`error`](mod@error): [`SandboxError`].
//!
//! # Design
//! One [`wasmtime::Engine`] with the pooling allocator is shared by every
//! handler; a background thread advances its epoch every
//! [`SandboxConfig::epoch_tick`]. [`Sandbox::load`] validates and compiles a
//! module once (through the disk cache) into an `InstancePre`;
//! [`Sandbox::invoke`] takes an instance slot (waiting if the pool is full),
//! then runs the attempt on the sandbox's own guest runtime (one thread per
//! core, in the background class of [`crate::priority`]): instantiates, runs `_start` with async WASI so
//! no WASI call blocks a thread, and yields at every epoch tick so a busy guest
//! neither starves other guests nor outlives its timeout. The caller's runtime
//! (the API, completions, upkeep) only awaits the result, so it is never queued
//! behind a spinning guest.

pub mod abi;
pub mod cache;
pub mod capture;
pub mod compile;
pub mod component;
pub mod config;
pub mod egress;
pub mod error;
pub mod run;
pub mod validate;
pub mod wasi_guard;

use std::fmt;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::{
    Enabled, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, WasmBacktraceDetails,
};

pub use abi::{GuestLog, LogLevel, Published};
pub use cache::ModuleOrigin;
pub use capture::Captured;
pub use config::{Limits, SandboxConfig};
pub use egress::{EgressOutcome, EgressPolicy, EgressRecord};
pub use error::SandboxError;
pub use run::{Execution, GuestMetadata, Invocation, MAX_ENV_BYTES, validate_env};
pub use validate::{GuestKind, ModuleInfo, ValidationError, is_component, validate};

use cache::{Compiled, DiskCache, Lookup};
use component::ComponentState;
use component::run::ComponentPre;
use config::fmt_bytes;
use run::HostState;

/// Bytes of a freed instance's linear memory that are reset and kept resident
/// for the next attempt instead of being returned to the kernel (`madvise`) and
/// faulted in again: cuts per-attempt overhead roughly in half (docs/sandbox.md).
/// With `PAGEMAP_SCAN` (Linux 6.7+) only the pages the attempt touched are
/// reset. 1 MiB measured the same as 256 KiB in W1 (throughput and RSS).
const MEMORY_KEEP_RESIDENT: usize = 256 << 10;

/// Same for the async (fiber) stack an attempt runs on.
const STACK_KEEP_RESIDENT: usize = 128 << 10;
/// Same for the function table.
const TABLE_KEEP_RESIDENT: usize = 16 << 10;

/// The runner's sandbox: one shared engine, instance pool, linker and epoch
/// ticker. Cheap to clone (an `Arc`); the ticker thread stops when the last
/// clone is dropped.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<HostState>,
    /// The linker of components (WASI 0.2 and the sluice world).
    components: wasmtime::component::Linker<ComponentState>,
    /// Each handler's outbound connection slots, shared by its attempts.
    egress_slots: egress::HandlerSlots,
    /// Shared with each attempt's task on the guest runtime.
    config: Arc<SandboxConfig>,
    cache: Option<DiskCache>,
    /// The one compile lane (one at a time, bounded queue, timeout); cache
    /// hits do not use it.
    compiler: compile::Compiler,
    /// One permit per instance slot: `invoke` waits for a permit, so a full pool
    /// delays attempts instead of failing them.
    slots: Semaphore,
    /// Where guests run: their own threads, one per core, at a lower
    /// scheduling priority, so busy guests never queue the control plane (API,
    /// completions, upkeep) behind them.
    guests: GuestRuntime,
    _ticker: Ticker,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox")
            .field("config", &self.inner.config)
            .field("free_slots", &self.inner.slots.available_permits())
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Builds the engine and reserves the instance pool.
    ///
    /// Fails with [`SandboxError::Config`] for out-of-range settings,
    /// [`SandboxError::PoolReservation`] if the machine cannot reserve the pool
    /// (address space: about `pool_instances × (max_memory_bytes + guards)`), and
    /// [`SandboxError::Cache`] if the cache directory cannot be created.
    pub fn new(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        config.check()?;
        let n = config.pool_instances;
        let mut pool = PoolingAllocationConfig::new();
        // Every slot may hold a component: up to MAX_CORE_INSTANCES core
        // instances (metadata only) and MAX_COMPONENT_TABLES tables (address
        // space of a table each), but one memory, as an ABI 1 module; the
        // memory reservation is the expensive part and stays one per slot.
        let core_instances = n.saturating_mul(component::validate::MAX_CORE_INSTANCES);
        let tables = n.saturating_mul(component::validate::MAX_COMPONENT_TABLES);
        pool.total_component_instances(n)
            .total_core_instances(core_instances)
            .total_memories(n)
            .total_tables(tables)
            .total_stacks(n)
            .total_gc_heaps(n)
            .max_memories_per_module(validate::MAX_MEMORIES)
            .max_tables_per_module(validate::MAX_TABLES)
            .max_core_instances_per_component(component::validate::MAX_CORE_INSTANCES)
            .max_memories_per_component(component::validate::MAX_COMPONENT_MEMORIES)
            .max_tables_per_component(component::validate::MAX_COMPONENT_TABLES)
            .table_elements(validate::MAX_TABLE_ELEMENTS as usize)
            .max_memory_size(config.max_memory_bytes as usize)
            .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
            .async_stack_keep_resident(STACK_KEEP_RESIDENT)
            .table_keep_resident(TABLE_KEEP_RESIDENT)
            // Not `decommit_batch_size`: a slot waiting in a decommit batch
            // still counts as taken, so a full pool refused an instance even
            // though an attempt had finished (a flaky pool test showed it).
            .pagemap_scan(Enabled::Auto);
        let mut wasm = wasmtime::Config::new();
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .epoch_interruption(true)
            // A compile takes one core, never every core running attempts need.
            .parallel_compilation(false)
            .consume_fuel(config.fuel)
            .max_wasm_stack(config.max_wasm_stack)
            .async_stack_size(config.max_wasm_stack + (1 << 20))
            .wasm_backtrace_details(WasmBacktraceDetails::Disable);
        let engine = Engine::new(&wasm).map_err(|e| SandboxError::PoolReservation {
            instances: n,
            memory: fmt_bytes(config.max_memory_bytes),
            message: format!("{e:#}"),
        })?;

        let mut linker = Linker::new(&engine);
        let linked =
            wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut HostState| &mut s.wasi)
                .and_then(|()| abi::add_to_linker(&mut linker, |s: &mut HostState| &mut s.abi))
                .and_then(|()| {
                    egress::abi::add_to_linker(&mut linker, |s: &mut HostState| &s.egress)
                })
                .and_then(|()| {
                    wasi_guard::add_to_linker(&mut linker, |s: &mut HostState| &mut s.guard)
                });
        linked.map_err(|e| SandboxError::Config(format!("cannot define host functions: {e:#}")))?;
        let components = component::linker(&engine).map_err(|e| {
            SandboxError::Config(format!("cannot define component host functions: {e:#}"))
        })?;

        let cache = match &config.cache_dir {
            Some(dir) => Some(DiskCache::open(dir, &engine)?),
            None => None,
        };
        let ticker = Ticker::start(engine.clone(), config.epoch_tick)
            .map_err(|e| SandboxError::Config(format!("cannot start the epoch ticker: {e}")))?;
        let guests = GuestRuntime::start()
            .map_err(|e| SandboxError::Config(format!("cannot start the guest threads: {e}")))?;
        Ok(Sandbox {
            inner: Arc::new(Inner {
                engine,
                linker,
                components,
                egress_slots: egress::HandlerSlots::default(),
                slots: Semaphore::new(n as usize),
                compiler: compile::Compiler::new(config.compile_timeout),
                guests,
                cache,
                config: Arc::new(config),
                _ticker: ticker,
            }),
        })
    }

    /// The configuration this sandbox was built with.
    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    /// Instance slots free right now (for metrics; `invoke` waits when zero).
    pub fn free_slots(&self) -> usize {
        self.inner.slots.available_permits()
    }

    /// Validates `wasm` against the ABI and `limits`, compiles it (or loads it
    /// from the disk cache) and prepares it for instantiation.
    ///
    /// This blocks the calling thread while it compiles (milliseconds to
    /// tens of seconds for large components) on the compile thread
    /// ([`compile`]: one at a time, a bounded queue, a timeout; no parallel
    /// compilation, so a compile takes one core, never all of them): from
    /// async code, call it inside `spawn_blocking`. What one compile may cost
    /// is bounded by validation ([`validate::MAX_FUNCTIONS`],
    /// [`validate::MAX_CODE_BYTES`]). A cache that cannot be written is
    /// logged and skipped, never an error.
    pub fn load(&self, wasm: &[u8], limits: &Limits) -> Result<Arc<LoadedModule>, SandboxError> {
        let inner = &*self.inner;
        limits.check(&inner.config)?;
        let info = validate(wasm, limits.memory_bytes)?;
        let sha256 = hex::encode(Sha256::digest(wasm));
        let instantiate_error = |e: wasmtime::Error| SandboxError::Instantiate {
            sha256: sha256.clone(),
            message: format!("{e:#}"),
        };
        let (pre, origin) = match info.kind {
            GuestKind::Abi1 => {
                let (engine, wasm) = (inner.engine.clone(), wasm.to_vec());
                let (module, origin) =
                    self.compiled(&sha256, move || Module::from_binary(&engine, &wasm))?;
                let pre = inner
                    .linker
                    .instantiate_pre(&module)
                    .map_err(instantiate_error)?;
                (Code::Core(pre), origin)
            }
            GuestKind::Handler | GuestKind::Command => {
                let (engine, wasm) = (inner.engine.clone(), wasm.to_vec());
                let (component, origin) = self.compiled(&sha256, move || {
                    wasmtime::component::Component::from_binary(&engine, &wasm)
                })?;
                let pre = inner
                    .components
                    .instantiate_pre(&component)
                    .map_err(instantiate_error)?;
                let pre = if info.kind == GuestKind::Handler {
                    ComponentPre::Job(
                        component::bindings::JobPre::new(pre).map_err(instantiate_error)?,
                    )
                } else {
                    ComponentPre::Command(
                        wasmtime_wasi::p2::bindings::CommandPre::new(pre)
                            .map_err(instantiate_error)?,
                    )
                };
                (Code::Component(pre), origin)
            }
        };
        Ok(Arc::new(LoadedModule {
            sha256,
            pre,
            info,
            origin,
        }))
    }

    /// Whether loading `wasm` would compile it (no usable cache entry), which
    /// takes tens of seconds for an interpreter component: the CLI says so
    /// before it starts. Reads only the cache entry's path.
    pub fn needs_compile(&self, wasm: &[u8]) -> bool {
        let sha256 = hex::encode(Sha256::digest(wasm));
        match &self.inner.cache {
            None => true,
            Some(cache) => !cache.path(&sha256).exists(),
        }
    }

    /// The compiled code for `sha256`: from the disk cache if it has a valid
    /// entry, else compiled by `compile` on the compile lane and stored.
    fn compiled<T: Compiled + Send + 'static>(
        &self,
        sha256: &str,
        compile: impl FnOnce() -> wasmtime::Result<T> + Send + 'static,
    ) -> Result<(T, ModuleOrigin), SandboxError> {
        let inner = &*self.inner;
        let compile = || inner.compiler.run(sha256, compile);
        let Some(cache) = &inner.cache else {
            return Ok((compile()?, ModuleOrigin::Compiled));
        };
        let (code, origin) = match cache.get(&inner.engine, sha256) {
            Lookup::Hit(code) => (code, ModuleOrigin::Cached),
            Lookup::Miss => (compile()?, ModuleOrigin::Compiled),
            Lookup::Stale(reason) => {
                tracing::warn!(%sha256, %reason, "recompiling module: unusable cache entry");
                (compile()?, ModuleOrigin::Recompiled { reason })
            }
        };
        if origin != ModuleOrigin::Cached
            && let Err(e) = cache.put(sha256, &code)
        {
            tracing::warn!(%sha256, error = %e, "cannot write module cache entry");
        }
        Ok((code, origin))
    }

    /// Checks what [`Sandbox::invoke`] checks of an attempt's configuration
    /// before it runs anything: the limits against this sandbox, the
    /// environment, the egress rules. The runner checks a handler with it
    /// before leasing, so a configuration that can never run here (e.g. a
    /// memory limit above `max_memory_bytes`, after a restart with a lower
    /// ceiling) pauses the handler instead of spending attempts.
    pub fn check_config<'a, K, V>(
        &self,
        limits: &Limits,
        env: impl IntoIterator<Item = (&'a K, &'a V)>,
        egress: &EgressPolicy,
    ) -> Result<(), SandboxError>
    where
        K: AsRef<str> + ?Sized + 'a,
        V: AsRef<str> + ?Sized + 'a,
    {
        self.configured(limits, env, egress).map(drop)
    }

    /// [`Sandbox::check_config`], keeping the parsed egress rules.
    fn configured<'a, K, V>(
        &self,
        limits: &Limits,
        env: impl IntoIterator<Item = (&'a K, &'a V)>,
        egress: &EgressPolicy,
    ) -> Result<egress::Rules, SandboxError>
    where
        K: AsRef<str> + ?Sized + 'a,
        V: AsRef<str> + ?Sized + 'a,
    {
        limits.check(&self.inner.config)?;
        validate_env(env)?;
        egress
            .rules()
            .map_err(|e| SandboxError::Limits(e.to_string()))
    }

    /// Runs one attempt of `module` in a fresh instance.
    ///
    /// Waits for a free instance slot first (a full pool delays, never fails);
    /// the timeout starts once the slot is taken. Every guest behaviour is an
    /// [`Execution`]; errors are host failures only: invalid limits or
    /// environment, or an instantiation failure that is not the guest's doing.
    /// Must run inside a tokio runtime (timers).
    pub async fn invoke(
        &self,
        module: &LoadedModule,
        invocation: Invocation,
    ) -> Result<Execution, SandboxError> {
        let inner = &*self.inner;
        let rules = self.configured(
            &invocation.limits,
            invocation.env.iter().map(|(k, v)| (k, v)),
            &invocation.egress,
        )?;
        let slots = inner
            .egress_slots
            .get(&invocation.metadata.handler, rules.policy.max_connections);
        let egress = egress::AttemptEgress::new(rules, slots);
        let _slot = inner
            .slots
            .acquire()
            .await
            .expect("the slot semaphore is never closed");
        // Shared handles only: the config is not copied per attempt.
        let (pre, sha256, config) = (
            module.pre.clone(),
            module.sha256.clone(),
            Arc::clone(&inner.config),
        );
        let task = inner.guests.runtime().spawn(async move {
            match &pre {
                Code::Core(pre) => run::run(pre, &sha256, &config, invocation, egress).await,
                Code::Component(pre) => {
                    component::run::run(pre, &sha256, &config, invocation, egress).await
                }
            }
        });
        // Dropping this call (a shutdown's abort) stops the guest too.
        let _abort = AbortOnDrop(task.abort_handle());
        task.await
            .map_err(|e| SandboxError::GuestTask(e.to_string()))?
    }
}

/// Aborts a spawned guest task when the call awaiting it is dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The guests' own multi-threaded tokio runtime, one worker thread per core,
/// each in the background class ([`crate::priority::background_thread`]). The runtime is shut down in the background when the
/// last [`Sandbox`] clone goes (dropping it in place would block, which async
/// code must not).
struct GuestRuntime(Option<tokio::runtime::Runtime>);

impl GuestRuntime {
    fn start() -> std::io::Result<GuestRuntime> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores)
            .thread_name("sluice-guest")
            .on_thread_start(|| crate::priority::background_thread("sluice-guest"))
            .enable_all()
            .build()?;
        Ok(GuestRuntime(Some(runtime)))
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for GuestRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// A module's compiled code, pre-instantiated for its kind.
#[derive(Clone)]
enum Code {
    /// An ABI 1 core module.
    Core(InstancePre<HostState>),
    /// A component of the sluice world or a `wasi:cli` command.
    Component(ComponentPre),
}

/// A validated, compiled module or component ready to instantiate; share it
/// with `Arc` across attempts.
pub struct LoadedModule {
    sha256: String,
    pre: Code,
    info: ModuleInfo,
    origin: ModuleOrigin,
}

impl LoadedModule {
    /// sha256 of the module's bytes, lowercase hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// What validation learnt about the module.
    pub fn info(&self) -> &ModuleInfo {
        &self.info
    }

    /// Whether the code was compiled now or came from the disk cache.
    pub fn origin(&self) -> &ModuleOrigin {
        &self.origin
    }
}

impl fmt::Debug for LoadedModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedModule")
            .field("sha256", &self.sha256)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// The thread that advances the engine's epoch. Dropping it (with the last
/// [`Sandbox`] clone) disconnects the channel, which wakes the thread at once,
/// and joins it.
struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// Dangles once the thread has exited (the thread owns the `Arc`).
    #[cfg_attr(not(test), expect(dead_code, reason = "read by the unit tests"))]
    alive: Weak<()>,
}

impl Ticker {
    fn start(engine: Engine, tick: Duration) -> std::io::Result<Ticker> {
        let (stop, rx) = mpsc::channel::<()>();
        let token = Arc::new(());
        let alive = Arc::downgrade(&token);
        let thread = std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                let _token = token;
                while let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(tick) {
                    engine.increment_epoch();
                }
            })?;
        Ok(Ticker {
            stop: Some(stop),
            thread: Some(thread),
            alive,
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticker_thread_stops_with_the_last_clone() {
        let sandbox = Sandbox::new(SandboxConfig {
            pool_instances: 2,
            max_memory_bytes: 1 << 20,
            ..SandboxConfig::default()
        })
        .unwrap();
        let clone = sandbox.clone();
        let alive = sandbox.inner._ticker.alive.clone();
        drop(sandbox);
        assert!(alive.upgrade().is_some(), "a clone still holds the ticker");
        drop(clone);
        // The last drop joined the thread, which released its token.
        assert!(alive.upgrade().is_none());
    }
}
