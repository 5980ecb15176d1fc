//! The `sluice` command line.
//!
//! Every command but `serve` and `run` is a client of a running server over
//! HTTP (`--url`, `SLUICE_URL`; `--token`, `SLUICE_TOKEN`). Read commands print
//! readable tables, or with `--json` exactly one JSON document (the API's). An
//! error is one line on stderr, `error: ...` with the server's message, and a
//! non-zero exit. The commands are documented in `docs/cli.md`.
//!
//! # Module map
//! - this file: the clap definitions ([`Cli`], [`Command`]) and [`execute`].
//! - [`client`]: the HTTP client.
//! - [`render`]: human output (tables, attempts), colour only on a terminal.
//! - [`pace`]: the pacing and progress line of `dlq replay --all --rate`.
//! - [`egress`]: the allow-list flags shared by `register` and `run`.
//! - `examples`: the examples of `--help`, one block per command.
//! - `commands`: what each client command does.
//! - [`apply`]: `sluice apply -f sluice.toml`, handlers as code.
//! - [`init`]: `sluice init <lang> <name>`, a handler project to start from.
//! - `run`: `sluice run`, one local invocation in the sandbox, no server.
//! - `rerun`: `sluice run --delivery`, a recorded attempt run again locally.
//! - `schedules`: `sluice schedules ...`, its arguments and output.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use uuid::Uuid;

use crate::clock::Timestamp;
use crate::serve::ServeArgs;
use crate::units::{parse_delay, parse_duration, parse_size};

pub mod apply;
pub mod client;
mod commands;
pub mod egress;
mod examples;
pub mod init;
pub mod pace;
pub mod render;
mod rerun;
mod run;
mod schedules;

/// `sluice --version`: the version and the guest interfaces this build runs
/// (a unit test keeps it in step with the sandbox's constants).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (guest ABI 1: wasm32-wasip1 core modules; WIT world sluice:handler@1.0.0 and \
     wasi:cli/run@0.2 components)"
);

/// sluice: a serverless job runner for WebAssembly.
#[derive(Debug, Parser)]
#[command(name = "sluice", version = VERSION, propagate_version = true, after_help = examples::TOP)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: queue, runner and HTTP API in one process.
    #[command(after_help = examples::SERVE)]
    Serve(ServeArgs),
    /// Create or migrate a PostgreSQL store's schema ahead of `serve` (which
    /// also does it at start); takes serve's `--config` and `--store`.
    #[command(after_help = examples::MIGRATE)]
    Migrate(ServeArgs),
    /// Register (or replace) a handler: a WASM module subscribed to a topic.
    #[command(after_help = examples::REGISTER)]
    Register(RegisterArgs),
    /// List, show, remove, pause or resume handlers.
    #[command(alias = "handler", after_help = examples::HANDLERS)]
    Handlers(HandlersArgs),
    /// Enqueue a message on a topic; prints its id.
    #[command(after_help = examples::ENQUEUE)]
    Enqueue(EnqueueArgs),
    /// Show a message with its deliveries and their attempts.
    #[command(after_help = examples::STATUS)]
    Status(StatusArgs),
    /// Show the attempts of one delivery.
    #[command(after_help = examples::ATTEMPTS)]
    Attempts(AttemptsArgs),
    /// Inspect, replay or purge the dead-letter queue.
    #[command(after_help = examples::DLQ)]
    Dlq(DlqArgs),
    /// Re-deliver a handler's topic from a point in time.
    #[command(after_help = examples::REPLAY)]
    Replay(ReplayArgs),
    /// Create, list, show, pause, resume, trigger or remove schedules (cron).
    #[command(alias = "schedule", after_help = examples::SCHEDULES)]
    Schedules(schedules::SchedulesArgs),
    /// Counts per handler and state, DLQ size, backlog and lag.
    #[command(after_help = examples::STATS)]
    Stats(StatsArgs),
    /// Invoke a module once, locally, in the same sandbox (no server needed).
    #[command(after_help = examples::RUN)]
    Run(RunArgs),
    /// Make the server's handlers match a manifest (sluice.toml): create,
    /// update, leave unchanged, and with --prune remove.
    #[command(after_help = examples::APPLY)]
    Apply(apply::ApplyArgs),
    /// Create a handler project: source, build script and manifest entry.
    #[command(after_help = examples::INIT)]
    Init(init::InitArgs),
    /// Print the HTTP API's OpenAPI 3.1 document (as served at /v1/openapi.json).
    #[command(after_help = examples::OPENAPI)]
    Openapi,
    /// Print a shell completion script: bash, zsh or fish.
    #[command(after_help = examples::COMPLETIONS)]
    Completions(CompletionsArgs),
}

/// `sluice completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    shell: CompletionShell,
}

/// The shells `completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompletionShell {
    /// `source <(sluice completions bash)`, or into /etc/bash_completion.d/.
    Bash,
    /// Into a directory on `$fpath` as `_sluice`.
    Zsh,
    /// Into ~/.config/fish/completions/sluice.fish.
    Fish,
}

/// The completion script for `shell`.
pub fn completions(shell: CompletionShell) -> String {
    use clap::CommandFactory as _;
    use clap_complete::Shell;
    let shell = match shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "sluice", &mut out);
    String::from_utf8(out).expect("completion scripts are UTF-8")
}

/// How to reach the server, and how to print. Accepted after any client command.
#[derive(Debug, Clone, Args)]
pub struct Conn {
    /// Server URL.
    #[arg(long, env = "SLUICE_URL", default_value = client::DEFAULT_URL, global = true)]
    pub url: String,
    /// Bearer token, when the server requires one.
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print the server's JSON document instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `sluice register`.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    conn: Conn,
    /// Handler name (`[a-z0-9][a-z0-9._-]{0,127}`).
    name: String,
    /// Topic to subscribe to (created if new).
    #[arg(long)]
    topic: String,
    /// The module (`wasm32-wasip1` command).
    #[arg(long, value_name = "FILE.wasm")]
    module: PathBuf,
    #[command(flatten)]
    policy: PolicyArgs,
}

/// The policy fields of `register` (and of a manifest entry of `apply`):
/// each optional, the server fills in its defaults for those not given.
#[derive(Debug, Clone, Default, Args)]
pub struct PolicyArgs {
    /// Wall-clock limit per attempt [server default: 30s].
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Lease (visibility timeout) [server default: 2.5 × timeout].
    #[arg(long, value_parser = parse_duration)]
    pub lease: Option<Duration>,
    /// Memory limit per instance, e.g. 64MiB [server default: 64MiB].
    #[arg(long, value_parser = parse_size)]
    pub memory: Option<u64>,
    /// Fuel budget per attempt [server default: unmetered].
    #[arg(long)]
    pub fuel: Option<u64>,
    /// Retries before the DLQ [server default: 5].
    #[arg(long)]
    pub retries: Option<u32>,
    /// First backoff delay, doubling per retry [server default: 1s].
    #[arg(long, value_parser = parse_duration)]
    pub backoff: Option<Duration>,
    /// Longest backoff delay [server default: 1h].
    #[arg(long, value_parser = parse_duration)]
    pub backoff_max: Option<Duration>,
    /// Attempts in flight at once [server default: its CPU cores].
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// Environment variable for the guest (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = key_value)]
    pub env: Vec<(String, String)>,
    /// Outbound HTTP: the allow-list and its limits.
    #[command(flatten)]
    pub egress: egress::EgressArgs,
}
impl PolicyArgs {
    /// The fields given, as the API's policy JSON (`timeout_ms`, ...).
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::json;
        let ms = |d: &Duration| json!(d.as_millis() as u64);
        let fields = [
            ("timeout_ms", self.timeout.as_ref().map(ms)),
            ("lease_ms", self.lease.as_ref().map(ms)),
            ("memory_bytes", self.memory.map(|m| json!(m))),
            ("fuel", self.fuel.map(|f| json!(f))),
            ("retries", self.retries.map(|r| json!(r))),
            ("backoff_ms", self.backoff.as_ref().map(ms)),
            ("backoff_max_ms", self.backoff_max.as_ref().map(ms)),
            ("concurrency", self.concurrency.map(|c| json!(c))),
        ];
        let mut policy: serde_json::Map<String, serde_json::Value> = fields
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
            .collect();
        if !self.env.is_empty() {
            let env: serde_json::Map<String, serde_json::Value> = self
                .env
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            policy.insert("env".into(), serde_json::Value::Object(env));
        }
        if let Some(egress) = self.egress.json() {
            policy.insert("egress".into(), egress);
        }
        policy
    }
}

/// `sluice handlers`.
#[derive(Debug, Args)]
pub struct HandlersArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    command: HandlersCommand,
}

/// `sluice handlers ...`.
#[derive(Debug, Subcommand)]
enum HandlersCommand {
    /// All handlers.
    #[command(alias = "ls")]
    List,
    /// One handler with its policy.
    Show {
        /// Handler name.
        name: String,
    },
    /// Remove a handler with all its deliveries (open and dead).
    #[command(alias = "rm")]
    Remove {
        /// Handler name.
        name: String,
    },
    /// Stop leasing the handler's deliveries (they keep queueing).
    Pause {
        /// Handler name.
        name: String,
    },
    /// Resume a paused handler.
    Resume {
        /// Handler name.
        name: String,
    },
}

/// `sluice enqueue`.
#[derive(Debug, Args)]
pub struct EnqueueArgs {
    #[command(flatten)]
    conn: Conn,
    /// Topic.
    topic: String,
    /// Payload; `-` reads stdin. None (and no --file): an empty payload.
    #[arg(conflicts_with = "file")]
    data: Option<String>,
    /// Read the payload from a file.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Ordering key: messages with the same key are handled one at a time, in order.
    #[arg(long, alias = "ordering-key")]
    key: Option<String>,
    /// Idempotency key: a repeat within the window returns the original id.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Deliver no sooner than this from now, e.g. 10s.
    #[arg(long, value_parser = |s: &str| parse_delay("--delay", s), conflicts_with = "at")]
    delay: Option<Duration>,
    /// Deliver no sooner than this RFC 3339 time.
    #[arg(long, value_parser = |s: &str| Timestamp::parse_rfc3339(s).map(|_| s.to_string()))]
    at: Option<String>,
    /// Message header (repeatable).
    #[arg(long = "header", value_name = "K=V", value_parser = key_value)]
    headers: Vec<(String, String)>,
}

/// `sluice status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    conn: Conn,
    /// Message id (printed by `enqueue`).
    message_id: Uuid,
}

/// `sluice attempts`.
#[derive(Debug, Args)]
pub struct AttemptsArgs {
    #[command(flatten)]
    conn: Conn,
    /// Delivery id (shown by `status`).
    delivery_id: Uuid,
}

/// `sluice dlq`.
#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    command: DlqCommand,
}

/// Which dead deliveries: shared by `dlq list`, `dlq replay --all` and `dlq purge --all`.
#[derive(Debug, Clone, Default, Args)]
struct DeadFilterArgs {
    /// Only this handler's DLQ.
    #[arg(long)]
    handler: Option<String>,
    /// Dead at or after this RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Dead before this RFC 3339 time.
    #[arg(long)]
    until: Option<String>,
    /// Last attempt's outcome: ok, rejected, exit, trap, timeout, memory, fuel, interrupted.
    #[arg(long)]
    outcome: Option<String>,
}

/// `sluice dlq ...`.
#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Dead deliveries, oldest death first.
    #[command(alias = "ls")]
    List {
        #[command(flatten)]
        filter: DeadFilterArgs,
        /// Page size (1..=1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Continue after this delivery (printed at the end of a full page).
        #[arg(long)]
        cursor: Option<Uuid>,
    },
    /// One dead delivery with its attempts.
    Show {
        /// Delivery id.
        delivery_id: Uuid,
    },
    /// Replay one dead delivery, or all matching (`--handler NAME --all`).
    Replay {
        /// Delivery id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        delivery_id: Option<Uuid>,
        /// Every dead delivery matching the filter.
        #[arg(long, requires = "handler")]
        all: bool,
        #[command(flatten)]
        filter: DeadFilterArgs,
        /// Replays per second (with --all), e.g. 10 or 10/s; a progress line shows on a terminal.
        #[arg(long, requires = "all", value_parser = parse_rate)]
        rate: Option<f64>,
    },
    /// Delete one dead delivery, or all matching (`--handler NAME --all`).
    Purge {
        /// Delivery id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        delivery_id: Option<Uuid>,
        /// Every dead delivery matching the filter.
        #[arg(long, requires = "handler")]
        all: bool,
        #[command(flatten)]
        filter: DeadFilterArgs,
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// `sluice replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    conn: Conn,
    /// Handler to re-deliver to.
    #[arg(long)]
    handler: String,
    /// Messages enqueued at or after this RFC 3339 time.
    #[arg(long)]
    since: String,
}

/// `sluice stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    conn: Conn,
}

/// `sluice run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The module (with `--delivery`, the one that ran is fetched instead).
    #[arg(required_unless_present = "delivery")]
    module: Option<PathBuf>,
    /// Re-run a delivery's attempt locally: its payload, metadata, handler
    /// policy and the exact module that ran, fetched from the server.
    #[arg(long, conflicts_with_all = ["module", "data", "file", "env", "timeout", "memory", "fuel", "topic", "handler", "key"])]
    delivery: Option<Uuid>,
    /// With `--delivery`: which attempt, 1-based across replays [default: the last].
    #[arg(long, requires = "delivery")]
    attempt: Option<u32>,
    /// With `--delivery`: run this build instead of the recorded module.
    #[arg(long = "module", value_name = "FILE.wasm", requires = "delivery")]
    fixed_module: Option<PathBuf>,
    /// With `--delivery`: the server.
    #[arg(long, env = "SLUICE_URL", default_value = client::DEFAULT_URL)]
    url: String,
    /// With `--delivery`: bearer token.
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Payload for stdin; `-` reads stdin.
    #[arg(conflicts_with = "file")]
    data: Option<String>,
    /// Read the payload from a file.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Environment variable for the guest (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = key_value)]
    env: Vec<(String, String)>,
    /// Wall-clock limit [default: 30s, the sandbox's].
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Memory limit [default: 64MiB, the sandbox's].
    #[arg(long, value_parser = parse_size)]
    memory: Option<u64>,
    /// Fuel budget (turns metering on).
    #[arg(long)]
    fuel: Option<u64>,
    #[command(flatten)]
    egress: egress::EgressArgs,
    /// `SLUICE_TOPIC` for the guest.
    #[arg(long, default_value = "local")]
    topic: String,
    /// `SLUICE_HANDLER` for the guest [default: the file's stem].
    #[arg(long)]
    handler: Option<String>,
    /// `SLUICE_ORDERING_KEY` for the guest.
    #[arg(long)]
    key: Option<String>,
    /// Print one JSON document (the attempt, published messages, logs).
    #[arg(long)]
    json: bool,
    /// Where compiled modules are cached, so a component compiles once
    /// [default: sluice-data/module-cache, the server's].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

/// Runs a command other than `serve`; returns the process's exit code.
pub async fn execute(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(_) => anyhow::bail!("`serve` is run by the binary, not the client"),
        Command::Migrate(args) => crate::serve::migrate(args)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Run(args) => run::run(args).await,
        Command::Init(args) => init::init(args).map(|()| ExitCode::SUCCESS),
        Command::Openapi => {
            print!("{}", crate::api::openapi::json());
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions(args) => {
            print!("{}", completions(args.shell));
            Ok(ExitCode::SUCCESS)
        }
        Command::Schedules(args) => schedules::execute(args).await.map(|()| ExitCode::SUCCESS),
        other => commands::execute(other).await.map(|()| ExitCode::SUCCESS),
    }
}

/// `KEY=VALUE`.
fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// `10`, `10/s` or `0.5/s`: a positive rate per second.
fn parse_rate(s: &str) -> Result<f64, String> {
    let n = s.trim().trim_end_matches("/s");
    match n.trim().parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err(format!(
            "invalid rate {s:?}: expected a positive number per second, e.g. 10/s"
        )),
    }
}

/// The payload of `enqueue` and `run`: the argument, stdin for `-`, a file, or empty.
fn read_payload(data: Option<String>, file: Option<&PathBuf>) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context as _;
    use std::io::Read as _;
    Ok(match (data, file) {
        (Some(d), _) if d == "-" => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading the payload from stdin")?;
            buf
        }
        (Some(d), _) => d.into_bytes(),
        (None, Some(path)) => {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
        }
        (None, None) => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_documented_forms_parse() {
        for line in [
            "sluice serve --data-dir /tmp/x --listen 127.0.0.1:9 --token t",
            "sluice serve --config s.toml --grace 5s --pool-instances 8 --log-format json",
            "sluice register resize --topic images --module m.wasm --timeout 30s --memory 64MiB --retries 5 --backoff 1s --concurrency 4 --env A=1 --env B=2 --fuel 100 --lease 1m",
            "sluice handlers list",
            "sluice handlers show resize --json",
            "sluice handlers remove resize",
            "sluice handlers pause resize",
            "sluice handlers resume resize",
            "sluice enqueue images hello --key k --idempotency-key i --delay 10s --header a=b --header c=d",
            "sluice enqueue images - --at 2030-01-01T00:00:00Z",
            "sluice enqueue images --file p.bin --url http://127.0.0.1:1 --token t",
            "sluice status 0190e0e0-0000-7000-8000-000000000000 --json",
            "sluice attempts 0190e0e0-0000-7000-8000-000000000000",
            "sluice dlq list --handler h --since 2030-01-01T00:00:00Z --until 2031-01-01T00:00:00Z --outcome trap",
            "sluice dlq show 0190e0e0-0000-7000-8000-000000000000",
            "sluice dlq replay 0190e0e0-0000-7000-8000-000000000000",
            "sluice dlq replay --handler h --all --rate 5/s",
            "sluice dlq purge 0190e0e0-0000-7000-8000-000000000000 --yes",
            "sluice dlq purge --handler h --all",
            "sluice replay --handler h --since 2030-01-01T00:00:00Z",
            "sluice stats --json",
            "sluice run m.wasm data --env K=V --timeout 1s --memory 1MiB",
            "sluice run --delivery 0190e0e0-0000-7000-8000-000000000000 --attempt 2 --module fix.wasm --json",
            "sluice apply -f sluice.toml --dry-run",
            "sluice apply --prune --yes --json",
            "sluice init rust hello",
            "sluice init as hello --dir /tmp/h",
            "sluice openapi",
            "sluice completions zsh",
            "sluice schedules create nightly --cron 0_3_*_*_* --topic t --tz Europe/London --data {} --catch-up all --max-catch-up 5 --catch-up-window 1h --overlap buffer-one --jitter 30s --header a=b --key k --start 2030-01-01T00:00:00Z",
            "sluice schedules list --json",
            "sluice schedules show nightly",
            "sluice schedules pause nightly",
            "sluice schedules resume nightly",
            "sluice schedules trigger nightly",
            "sluice schedules remove nightly",
            "sluice run m.wasm --allow-origin https://api.example.com --allow-address 10.0.0.0/8 --egress-max-requests 3",
            "sluice register h --topic t --module m.wasm --allow-origin http://127.0.0.1:8080 --allow-address 127.0.0.1 --egress-max-response-bytes 1MiB --egress-max-request-bytes 1KiB --egress-max-connections 2",
        ] {
            let args = line.split(' ').map(|a| a.replace('_', " "));
            if let Err(e) = Cli::try_parse_from(args) {
                panic!("{line}: {e}");
            }
        }
    }

    #[test]
    fn bad_forms_are_refused() {
        for line in [
            "sluice enqueue t --delay 1s --at 2030-01-01T00:00:00Z",
            "sluice enqueue t --delay soon",
            "sluice enqueue t --delay 99999999999d",
            "sluice enqueue t --at 10000-01-01T00:00:00Z",
            "sluice enqueue t --at tomorrow",
            "sluice register h --topic t --module m.wasm --memory lots",
            "sluice dlq replay --all",
            "sluice dlq replay",
            "sluice dlq purge 0190e0e0-0000-7000-8000-000000000000 --handler h --all",
            "sluice dlq replay 0190e0e0-0000-7000-8000-000000000000 --rate 5",
            "sluice status not-a-uuid",
            "sluice run",
            "sluice run m.wasm --delivery 0190e0e0-0000-7000-8000-000000000000",
            "sluice register h --topic t --module m.wasm --env NOEQUALS",
        ] {
            assert!(
                Cli::try_parse_from(line.split(' ')).is_err(),
                "{line} parsed"
            );
        }
    }

    #[test]
    fn the_version_names_the_guest_interfaces_the_sandbox_runs() {
        use crate::sandbox::component::validate::HANDLER_EXPORT;
        assert!(VERSION.starts_with(env!("CARGO_PKG_VERSION")));
        assert!(
            VERSION.contains(&format!("guest ABI {}", crate::sandbox::abi::ABI_VERSION)),
            "{VERSION}"
        );
        // `sluice:handler/handler@1.0.0` is an interface of package `sluice:handler@1.0.0`.
        let package = HANDLER_EXPORT.replace("/handler@", "@");
        assert!(VERSION.contains(&package), "{VERSION} lacks {package}");
    }

    #[test]
    fn help_lists_every_command_with_an_example() {
        let help = Cli::command().render_long_help().to_string();
        for sub in Cli::command().get_subcommands() {
            let name = sub.get_name();
            if name == "help" {
                continue;
            }
            assert!(
                help.contains(&format!("  sluice {name}")),
                "no example of `sluice {name}` in --help:\n{help}"
            );
        }
    }

    /// `sluice COMMAND --help` ends with examples: one of the command, one of
    /// each of its subcommands, and every `sluice ...` line of them parses
    /// (a redirect or pipe after it aside).
    #[test]
    fn each_commands_help_has_an_example_of_each_subcommand() {
        let mut cli = Cli::command();
        cli.build();
        for sub in cli.get_subcommands().filter(|s| s.get_name() != "help") {
            let name = sub.get_name();
            let examples = sub
                .get_after_help()
                .unwrap_or_else(|| panic!("`sluice {name} --help` has no examples"))
                .to_string();
            assert!(examples.starts_with("Examples:\n"), "{name}: {examples}");
            let lines: Vec<&str> = examples
                .lines()
                .filter_map(|l| l.trim_start().strip_prefix("sluice "))
                .collect();
            assert!(
                lines.iter().any(|l| l.starts_with(name)),
                "no example of `sluice {name}`:\n{examples}"
            );
            for subsub in sub.get_subcommands().filter(|s| s.get_name() != "help") {
                let prefix = format!("{name} {}", subsub.get_name());
                assert!(
                    lines.iter().any(|l| l.starts_with(&prefix)),
                    "no example of `sluice {prefix}` under `sluice {name} --help`:\n{examples}"
                );
            }
            for line in &lines {
                let words = shlex::split(line).unwrap_or_else(|| panic!("{line}: quoting"));
                let words = words
                    .iter()
                    .take_while(|w| !matches!(w.as_str(), ">" | "|"));
                let args = std::iter::once("sluice").chain(words.map(String::as_str));
                if let Err(e) = Cli::try_parse_from(args) {
                    panic!("`sluice {line}` (under `sluice {name} --help`): {e}");
                }
            }
        }
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10/s"), Ok(10.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
    }
}
