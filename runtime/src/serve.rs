//! `sluice serve`: the store, the sandbox, the runner and the HTTP API in one process.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Options of `sluice serve`. Defaults: data in `./sluice-data`, loopback only.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Where the queue and the compiled-module cache live.
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "sluice-data")]
    pub data_dir: PathBuf,
    /// Address to listen on. A non-loopback address requires --token.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:7777")]
    pub listen: SocketAddr,
    /// Bearer token required on every API request (except /healthz).
    #[arg(long, env = "SLUICE_TOKEN")]
    pub token: Option<String>,
    /// How long running attempts may finish after SIGINT/SIGTERM.
    #[arg(long, default_value = "30s", value_parser = crate::units::parse_duration)]
    pub grace: std::time::Duration,
    /// Instances the sandbox's pool reserves (the most attempts running at once).
    #[arg(long, default_value_t = 256)]
    pub pool_instances: u32,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

use std::sync::Arc;

use anyhow::Context as _;

use crate::api::{ApiState, router};
use crate::clock::{Clock, SystemClock};
use crate::metrics::Metrics;
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::store::{EmbeddedStore, Store, StoreConfig};
use crate::worker::{Runner, RunnerConfig};

/// Sets up logging: `RUST_LOG` filters (default `info`), text or JSON lines.
pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,sled=warn,wasmtime=warn,cranelift=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Runs the server until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(&args.log_format);
    if !args.listen.ip().is_loopback() && args.token.as_deref().is_none_or(str::is_empty) {
        anyhow::bail!(
            "listening on {} (not loopback) requires --token (or SLUICE_TOKEN)",
            args.listen
        );
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store_config = StoreConfig::default();
    let max_payload_bytes = store_config.max_payload_bytes;
    let store = EmbeddedStore::open(&args.data_dir.join("queue"), store_config, clock.clone())
        .with_context(|| format!("cannot open the store in {}", args.data_dir.display()))?;
    let store: Arc<dyn Store> = Arc::new(store);
    let sandbox = Sandbox::new(SandboxConfig {
        pool_instances: args.pool_instances,
        cache_dir: Some(args.data_dir.join("module-cache")),
        ..SandboxConfig::default()
    })
    .context("cannot start the sandbox")?;
    let metrics = Arc::new(Metrics::default());
    let runner = Runner::start(
        store.clone(),
        sandbox.clone(),
        metrics.clone(),
        clock.clone(),
        RunnerConfig::default(),
    );
    let app = router(ApiState {
        store: store.clone(),
        sandbox,
        metrics,
        token: args.token.clone().filter(|t| !t.is_empty()),
        max_payload_bytes,
        clock,
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %args.data_dir.display(), "sluice listening");
    println!("sluice listening on http://{addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("HTTP server failed")?;
    tracing::info!(grace = ?args.grace, "shutting down: no new leases; waiting for attempts in flight");
    runner.shutdown(args.grace).await;
    drop(runner);
    drop(store);
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
