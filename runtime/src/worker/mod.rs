//! The runner: joins the store and the sandbox.
//!
//! The life of a delivery is three single-purpose parts that pass data, not
//! control (after River):
//! - [`producer`]: one per handler, started when the store's handlers signal
//!   announces it; loads the module at once, leases ready deliveries, never
//!   more than its free slots (`concurrency` minus attempts in flight), and
//!   wakes on the store's ready signal instead of polling.
//! - [`executor`]: runs exactly one attempt in the sandbox and turns whatever
//!   happened into an [`AttemptReport`] plus outbox messages.
//! - [`completer`]: makes the outcome durable (complete with the outbox, retry
//!   with backoff, or dead-letter) before the delivery counts as done.
//!
//! Background upkeep lives one service per file under [`maintenance`].
//!
//! Shutdown stops leasing, lets attempts in flight finish within a grace period
//! and abandons the rest: their leases are released when the store is next
//! opened, so a restart resumes where this process stopped.
//!
//! [`AttemptReport`]: crate::store::AttemptReport

pub mod completer;
pub mod executor;
pub mod maintenance;
pub mod producer;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::sandbox::{LoadedModule, Sandbox, SandboxError};
use crate::store::{HandlerRecord, Store, StoreError};

/// Runner settings. Defaults suit a server; tests shorten the intervals.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// A producer looks for work at least this often even without a signal. Default 1 s.
    pub poll_interval: Duration,
    /// How often due scheduled and retrying deliveries are promoted. Default 10 ms.
    pub promote_interval: Duration,
    /// How often expired leases are rescued. Default 1 s.
    pub rescue_interval: Duration,
    /// How often retention and the idempotency window are pruned. Default 60 s.
    pub prune_interval: Duration,
    /// How often schedules are ticked (an occurrence fires within this of
    /// its time). Default 1 s.
    pub schedule_interval: Duration,
    /// How often the set of handlers is re-read besides whenever the store's
    /// handlers signal changes (a fallback). Default 1 s.
    pub handler_interval: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            poll_interval: Duration::from_secs(1),
            promote_interval: Duration::from_millis(10),
            rescue_interval: Duration::from_secs(1),
            prune_interval: Duration::from_secs(60),
            schedule_interval: Duration::from_secs(1),
            handler_interval: Duration::from_secs(1),
        }
    }
}

/// What every task of the runner shares.
pub struct Context {
    /// The queue.
    pub store: Arc<dyn Store>,
    /// The sandbox.
    pub sandbox: Sandbox,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Time, for backoff.
    pub clock: Arc<dyn Clock>,
    /// Settings.
    pub config: RunnerConfig,
    /// Compiled modules by sha256; written by executors on a miss.
    modules: Mutex<HashMap<String, Arc<LoadedModule>>>,
    /// `true` once shutdown began: producers stop leasing.
    stopping: watch::Sender<bool>,
}

impl Context {
    /// The compiled module for a handler's current version, loaded once per sha256.
    pub async fn module(&self, handler: &HandlerRecord) -> Result<Arc<LoadedModule>, ModuleError> {
        let sha = &handler.module_sha256;
        if let Some(m) = self
            .modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sha)
        {
            return Ok(m.clone());
        }
        let bytes = self.store.module(sha).await?;
        let limits = executor::limits(&handler.policy);
        let sandbox = self.sandbox.clone();
        let module = tokio::task::spawn_blocking(move || sandbox.load(&bytes, &limits))
            .await
            .map_err(|e| ModuleError::Task(e.to_string()))??;
        self.modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sha.clone(), module.clone());
        Ok(module)
    }

    /// Whether `handler` as recorded can run here: its limits, environment
    /// and egress rules against the sandbox, and its module loaded (compiled
    /// at most once per sha256). The producer asks before leasing, so a
    /// configuration fault pauses the handler instead of spending attempts.
    pub async fn runnable(&self, handler: &HandlerRecord) -> Result<(), ModuleError> {
        let p = &handler.policy;
        self.sandbox
            .check_config(&executor::limits(p), &p.env, &p.egress)?;
        self.module(handler).await.map(drop)
    }

    /// A receiver that turns `true` when shutdown begins.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }
}

/// A handler's module could not be fetched or loaded, or its configuration
/// cannot run here (a host problem, not the guest's).
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// The store could not give the module.
    #[error("cannot fetch the module: {0}")]
    Store(#[from] StoreError),
    /// The sandbox refused the module or the handler's limits.
    #[error("{0}")]
    Sandbox(#[from] SandboxError),
    /// The loading task failed (a panic or a shutdown).
    #[error("the module's loading task failed: {0}")]
    Task(String),
}

impl ModuleError {
    /// Whether the fault is the configuration's and recurs until someone
    /// changes it ([`SandboxError::is_configuration`], or a module the store
    /// does not have): then the handler is paused rather than retried.
    pub fn is_configuration(&self) -> bool {
        match self {
            ModuleError::Store(e) => matches!(e, StoreError::UnknownModule(_)),
            ModuleError::Sandbox(e) => e.is_configuration(),
            ModuleError::Task(_) => false,
        }
    }
}

/// A running runner. Drop it after [`Runner::shutdown`].
pub struct Runner {
    ctx: Arc<Context>,
    tasks: Mutex<JoinSet<()>>,
}

impl Runner {
    /// Starts the supervisor (one producer per handler) and the maintenance services.
    pub fn start(
        store: Arc<dyn Store>,
        sandbox: Sandbox,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        config: RunnerConfig,
    ) -> Runner {
        let (stopping, _) = watch::channel(false);
        let ctx = Arc::new(Context {
            store,
            sandbox,
            metrics,
            clock,
            config,
            modules: Mutex::new(HashMap::new()),
            stopping,
        });
        let mut tasks = JoinSet::new();
        tasks.spawn(supervise(ctx.clone()));
        tasks.spawn(maintenance::promote::run(ctx.clone()));
        tasks.spawn(maintenance::rescue::run(ctx.clone()));
        tasks.spawn(maintenance::prune::run(ctx.clone()));
        tasks.spawn(maintenance::watch::run(ctx.clone()));
        tasks.spawn(maintenance::schedules::run(ctx.clone()));
        Runner {
            ctx,
            tasks: Mutex::new(tasks),
        }
    }

    /// The shared context.
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Stops leasing, waits up to `grace` for attempts in flight, then abandons
    /// the rest (the store releases their leases when next opened).
    pub async fn shutdown(&self, grace: Duration) {
        self.ctx.stopping.send_replace(true);
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(grace = ?grace, "grace period over; abandoning attempts still running (released on next start)");
            tasks.abort_all();
        }
    }
}

/// Keeps one producer per registered handler.
async fn supervise(ctx: Arc<Context>) {
    let mut producers: JoinSet<String> = JoinSet::new();
    let mut running: HashSet<String> = HashSet::new();
    let mut stopping = ctx.stopping();
    let mut changed = ctx.store.handlers_signal();
    loop {
        changed.borrow_and_update();
        match ctx.store.handlers().await {
            Ok(handlers) => {
                for h in handlers {
                    if running.insert(h.name.clone()) {
                        producers.spawn(producer::run(ctx.clone(), h.name));
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot list handlers"),
        }
        while let Some(done) = producers.try_join_next() {
            if let Ok(name) = done {
                running.remove(&name);
            }
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = tokio::time::sleep(ctx.config.handler_interval) => {}
            _ = stopping.wait_for(|s| *s) => break,
        }
    }
    // Producers stop on the same signal and wait for their attempts.
    while producers.join_next().await.is_some() {}
}
