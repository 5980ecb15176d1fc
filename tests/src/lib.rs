//! Helpers for the integration tests: an in-process runner on a real sled store
//! and the real sandbox, with an injected clock, and the example modules.
//!
//! Tests wait for *states* (polling the store's status, a few ms apart) and skip
//! backoffs by moving the [`ManualClock`]; nothing sleeps out a retry delay.

pub mod crash;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluice::clock::{Clock, ManualClock};
use sluice::metrics::Metrics;
use sluice::policy::HandlerPolicy;
use sluice::sandbox::{Sandbox, SandboxConfig};
use sluice::store::conformance::helpers::{manual_clock, msg, register};
use sluice::store::{
    DeliveryState, EmbeddedStore, HandlerRecord, MessageId, MessageStatus, NewMessage, Store,
    StoreConfig,
};
use sluice::worker::{Runner, RunnerConfig};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Path of a built example module, e.g. `example("rust", "ack")`. Panics with the
/// command to run when it is missing: a test must never pass by skipping.
pub fn example(lang: &str, name: &str) -> PathBuf {
    let p = repo_root()
        .join("target/examples")
        .join(lang)
        .join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: build the examples with scripts/build-examples.sh (make test does)",
        p.display()
    );
    p
}

/// The compiled-module cache tests share: `target/test-module-cache` (entries
/// are keyed by module and engine, and written atomically, so tests running
/// at once may share it).
pub fn shared_cache_dir() -> PathBuf {
    repo_root().join("target/test-module-cache")
}

/// An in-process sluice: real store, sandbox and runner; time under test control.
pub struct Harness {
    /// The store.
    pub store: Arc<EmbeddedStore>,
    /// The injected clock (also the runner's).
    pub clock: ManualClock,
    /// The runner.
    pub runner: Runner,
    /// The sandbox.
    pub sandbox: Sandbox,
    /// Counters.
    pub metrics: Arc<Metrics>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Starts a runner on a fresh store.
    pub async fn start() -> Harness {
        Harness::start_with_pool(32).await
    }

    /// Starts a runner whose sandbox runs at most `pool_instances` attempts at once.
    pub async fn start_with_pool(pool_instances: u32) -> Harness {
        Harness::start_with(pool_instances, None).await
    }

    /// Starts a runner whose compiled-module cache is [`shared_cache_dir`],
    /// kept across tests and runs: an interpreter component compiles in tens
    /// of seconds, once, then every later harness deserializes it.
    pub async fn start_with_shared_cache() -> Harness {
        Harness::start_with(32, Some(shared_cache_dir())).await
    }

    async fn start_with(pool_instances: u32, cache_dir: Option<PathBuf>) -> Harness {
        Harness::start_with_sandbox(SandboxConfig {
            pool_instances,
            cache_dir,
            fuel: true,
            ..SandboxConfig::default()
        })
        .await
    }

    /// Starts a runner on a sandbox built from `config` (its module cache in
    /// the test's directory unless `config` names one).
    pub async fn start_with_sandbox(mut config: SandboxConfig) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        config
            .cache_dir
            .get_or_insert_with(|| dir.path().join("cache"));
        let sandbox = Sandbox::new(config).expect("sandbox");
        Harness::open_on(dir, manual_clock(), sandbox).await
    }

    /// Stops the runner, closes the store and opens both again on the same
    /// directory, clock and sandbox: what a process restart does (leases
    /// held are released on open, as after a crash).
    pub async fn restart(self) -> Harness {
        let Harness {
            store,
            clock,
            runner,
            sandbox,
            metrics: _,
            _dir: dir,
        } = self;
        runner.shutdown(Duration::from_secs(5)).await;
        drop(runner);
        drop(store);
        Harness::open_on(dir, clock, sandbox).await
    }

    /// A store and runner on `dir` and `clock`. The store's files are locked
    /// until the previous store's last handle is gone (an aborted task may
    /// drop its own a moment later), so opening retries for a few seconds.
    async fn open_on(dir: tempfile::TempDir, clock: ManualClock, sandbox: Sandbox) -> Harness {
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        let mut tries = 0;
        let store = loop {
            match EmbeddedStore::open(
                &dir.path().join("queue"),
                StoreConfig::default(),
                shared.clone(),
            ) {
                Ok(s) => break Arc::new(s),
                Err(_) if tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("reopen the store: {e}"),
            }
        };
        let metrics = Arc::new(Metrics::default());
        let config = RunnerConfig {
            poll_interval: Duration::from_millis(50),
            promote_interval: Duration::from_millis(5),
            rescue_interval: Duration::from_millis(20),
            // Prune acts on the injected clock only (retention, module
            // grace): frequent passes cost little and let a test see one.
            prune_interval: Duration::from_millis(20),
            // Never in a test's lifetime: producers start only on the
            // store's handlers signal, so every runner test proves it.
            handler_interval: Duration::from_secs(3600),
            ..RunnerConfig::default()
        };
        let runner = Runner::start(
            store.clone(),
            sandbox.clone(),
            metrics.clone(),
            shared,
            config,
        );
        Harness {
            store,
            clock,
            runner,
            sandbox,
            metrics,
            _dir: dir,
        }
    }

    /// Registers `name` on `topic` with the module at `path`.
    pub async fn register(
        &self,
        name: &str,
        topic: &str,
        path: &PathBuf,
        policy: HandlerPolicy,
    ) -> HandlerRecord {
        let wasm = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        register(&*self.store, name, topic, policy, Bytes::from(wasm)).await
    }

    /// Enqueues one message.
    pub async fn enqueue(&self, topic: &str, payload: &str) -> MessageId {
        self.enqueue_message(msg(topic, payload)).await
    }

    /// Enqueues one message with all its options.
    pub async fn enqueue_message(&self, m: NewMessage) -> MessageId {
        let e = self.store.enqueue(vec![m]).await.expect("enqueue");
        e[0].id
    }

    /// Waits until every delivery of the message has succeeded or died, moving
    /// the clock past each backoff instead of waiting it out.
    pub async fn settle(&self, id: MessageId) -> MessageStatus {
        for _ in 0..4000 {
            let status = self.store.message(id).await.expect("status");
            if !status.deliveries.is_empty() && status.deliveries.iter().all(|d| !d.state.is_open())
            {
                return status;
            }
            let now = self.clock.now();
            if let Some(next) = status
                .deliveries
                .iter()
                .filter(|d| matches!(d.state, DeliveryState::Retrying | DeliveryState::Scheduled))
                .filter_map(|d| d.next_at)
                .min()
                .filter(|next| *next > now)
            {
                self.clock.advance(next.since(now));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!(
            "message {id} did not settle: {:#?}",
            self.store.message(id).await
        );
    }

    /// Waits until the runner has paused `handler` (or panics after a few
    /// seconds); returns its record.
    pub async fn paused(&self, handler: &str) -> HandlerRecord {
        for _ in 0..4000 {
            let record = self.store.handler(handler).await.expect("handler");
            if record.paused {
                return record;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("handler {handler} was not paused");
    }

    /// Waits until `handlers` have no open delivery (downstream work from
    /// completions included); returns how many deliveries each has in all.
    pub async fn drained(&self, handlers: &[&str]) -> std::collections::BTreeMap<String, u64> {
        for _ in 0..4000 {
            let stats = self.store.stats().await.expect("stats");
            let mine: Vec<_> = stats
                .handlers
                .iter()
                .filter(|s| handlers.contains(&s.handler.as_str()))
                .collect();
            let open: u64 = mine
                .iter()
                .flat_map(|s| {
                    s.counts
                        .iter()
                        .filter(|(st, _)| st.is_open())
                        .map(|(_, n)| *n)
                })
                .sum();
            if mine.len() == handlers.len() && open == 0 {
                return mine
                    .iter()
                    .map(|s| (s.handler.clone(), s.counts.values().sum()))
                    .collect();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!(
            "handlers {handlers:?} did not drain: {:#?}",
            self.store.stats().await
        );
    }

    /// Shuts the runner down.
    pub async fn stop(self) {
        self.runner.shutdown(Duration::from_secs(5)).await;
    }
}
