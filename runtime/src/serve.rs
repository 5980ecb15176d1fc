//! `sluice serve`: the store, the sandbox, the runner and the HTTP API in one process.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use crate::api::ApiState;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, LogFormat, Overrides, PgSettings, StoreBackend};
use crate::metrics::Metrics;
use crate::sandbox::Sandbox;
use crate::store::{EmbeddedStore, PgOptions, PgStore, PgTime, Store};
use crate::ui::{self, History, history::SAMPLE_EVERY, history::Sample};
use crate::worker::Runner;

/// Options of `sluice serve`. Every setting comes from the built-in defaults,
/// then the `--config` file, then these flags and their environment variables
/// (docs/configuration.md).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// TOML file of server settings (docs/configuration.md); flags and
    /// environment variables override it.
    #[arg(long, env = "SLUICE_CONFIG", value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// Settings that beat the file.
    #[command(flatten)]
    pub overrides: Overrides,
}

/// Sets up logging: `RUST_LOG` filters (default `info`), text or JSON lines.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,sled=warn,wasmtime=warn,cranelift=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == LogFormat::Json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Runs the server until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref(), &args.overrides)?;
    init_logging(config.server.log_format);
    let Config {
        server,
        api,
        store: store_settings,
        runner: runner_config,
        sandbox: sandbox_config,
    } = config;
    let token = api.token.filter(|t| !t.is_empty());
    let read_token = api.read_token.filter(|t| !t.is_empty());
    if read_token.is_some() && token.is_none() {
        anyhow::bail!("--read-token (or [api] read_token) needs --token too");
    }
    if !api.listen.ip().is_loopback() && token.is_none() {
        anyhow::bail!(
            "listening on {} (not loopback) requires --token (or SLUICE_TOKEN, or [api] token)",
            api.listen
        );
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let max_payload_bytes = store_settings.config.max_payload_bytes;
    let store: Arc<dyn Store> = match store_settings.backend {
        StoreBackend::Embedded(tuning) => Arc::new(
            EmbeddedStore::open_with(
                &server.data_dir.join("queue"),
                store_settings.config,
                &tuning,
                clock.clone(),
            )
            .with_context(|| format!("cannot open the store in {}", server.data_dir.display()))?,
        ),
        StoreBackend::Postgres(pg) => {
            let options = pg_options(&pg, api.listen.port());
            tracing::info!(runner_id = %options.runner_id, schema = %options.schema, "opening the PostgreSQL store");
            Arc::new(
                PgStore::open(options, store_settings.config)
                    .await
                    .context("cannot open the PostgreSQL store")?,
            )
        }
    };
    let sandbox = Sandbox::new(sandbox_config).context("cannot start the sandbox")?;
    let metrics = Arc::new(Metrics::default());
    let runner = Runner::start(
        store.clone(),
        sandbox.clone(),
        metrics.clone(),
        clock.clone(),
        runner_config,
    );
    let history = api.ui.then(|| Arc::new(History::default()));
    if let Some(h) = history.clone() {
        let (metrics, clock) = (metrics.clone(), clock.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            loop {
                tick.tick().await;
                h.record(Sample::of(&metrics, clock.now()));
            }
        });
    }
    let app = ui::app(
        ApiState {
            store: store.clone(),
            sandbox,
            metrics,
            token,
            read_token,
            max_payload_bytes,
            clock,
        },
        history,
    );
    let listener = tokio::net::TcpListener::bind(api.listen)
        .await
        .with_context(|| format!("cannot listen on {}", api.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %server.data_dir.display(), "sluice listening");
    // One line on stdout, read by scripts and tests; the dashboard's address
    // goes to the log.
    println!("sluice listening on http://{addr}");
    if api.ui {
        tracing::info!(url = %format!("http://{addr}/ui"), "dashboard");
    }
    crate::api::server::serve(listener, app, shutdown_signal())
        .await
        .context("HTTP server failed")?;
    tracing::info!(grace = ?server.grace, "shutting down: no new leases; waiting for attempts in flight");
    runner.shutdown(server.grace).await;
    drop(runner);
    drop(store);
    tracing::info!("stopped");
    Ok(())
}

/// The store options of `[store] type = "postgres"`: the database's clock,
/// and the runner id (default `<hostname>:<listen port>`: unique per process
/// on a host, stable across its restarts, so a restart releases exactly its
/// own leases).
fn pg_options(pg: &PgSettings, port: u16) -> PgOptions {
    let runner_id = pg.runner_id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string());
        format!("{host}:{port}")
    });
    PgOptions {
        url: pg.url.clone(),
        schema: pg.schema.clone(),
        pool_size: pg.pool_size,
        runner_id,
        time: PgTime::Database,
        poll_fallback: crate::store::PG_DEFAULT_POLL_FALLBACK,
    }
}

/// `sluice migrate`: creates or migrates a PostgreSQL store's schema.
pub async fn migrate(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref(), &args.overrides)?;
    let StoreBackend::Postgres(pg) = &config.store.backend else {
        anyhow::bail!("`sluice migrate` is for a PostgreSQL store: pass --store postgres://...");
    };
    let options = pg_options(pg, config.api.listen.port());
    let version = crate::store::pg_migrate(&options)
        .await
        .context("cannot migrate the PostgreSQL store")?;
    println!("schema {:?} is at version {version}", options.schema);
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
