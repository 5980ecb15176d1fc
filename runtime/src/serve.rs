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
