//! The crash harness: the real `sluice serve` under a mixed workload, killed
//! with SIGKILL at random moments and restarted on the same data directory,
//! then the whole history checked through the HTTP API. [`pg`] is the same
//! workload and checker on three runners sharing one PostgreSQL database,
//! with a database restart and a network cut besides the kills.
//!
//! # Files
//! - `workload.rs`: the handlers, the producers, starting `sluice serve`;
//! - `check.rs`: the checker over the HTTP API, shared by both runs;
//! - this file: the embedded run; `pg.rs`, `pg_check.rs` (checks over the
//!   database's history), `netns.rs`: the multi-runner run.
//!
//! # What runs
//! - **Handlers** (the example modules, registered once): `orders` fans out to
//!   `order-publish` (publishes to `email` and `analytics` through the outbox,
//!   and fails its first attempt after publishing) and `order-audit`; `email`
//!   and `analytics` have one `ack` handler each; `jobs` goes to `job-flaky`
//!   (fails attempts 1 and 2) and `job-ack`; `keyed` (ordering keys) to
//!   `keyed-ack` and `keyed-flaky`; `signups` to `signup-validate` (a quarter
//!   of the payloads are not JSON: rejected, dead at once).
//! - **Producers** enqueue without pause, each with its own idempotency keys
//!   and ordering keys; some messages are delayed. A producer sends each
//!   message until it is acknowledged (`202`), through kills, always with the
//!   same key, as a careful producer does; now and then it re-enqueues an
//!   acknowledged message on purpose, which must return the same id.
//! - **Kills**: each server life lasts a random time, then gets SIGKILL; about
//!   one life in ten is killed while it starts (opening and recovering the
//!   store). After the last kill a final life drains everything.
//!
//! # What is checked, for every acknowledged enqueue
//! - the message exists, with exactly one delivery per handler subscribed to
//!   its topic, each `succeeded` or `dead`;
//! - its attempts are what the handler does (ack: `ok`; flaky: `exit 75`
//!   twice, then `ok`; ...) except `interrupted` ones, and nothing runs after
//!   a durable final outcome; no settled attempt ran past its timeout; every
//!   `interrupted` attempt says "process restarted", started in a life that
//!   was killed and was recorded when a later life opened the store: each is
//!   explained by a kill;
//! - a delayed message did not run before its time;
//! - per ordering key and handler, each message's attempts all start after the
//!   previous message's last attempt finished, in enqueue order;
//! - per handler, deliveries = acknowledged messages on its topic (no ghost, no
//!   copy); downstream of the outbox, deliveries = orders that succeeded, and
//!   each (parent, index) resolves through its idempotency key
//!   `outbox:<parent>:order-publish:<i>` to one message carrying
//!   `sluice-parent`/`sluice-publisher`: no duplicate, none lost.
//!
//! Run with `scripts/crash.sh` (`make crash`); a reduced run is
//! `tests/tests/crash.rs`. The `sluice` binary is built (or found up to date)
//! with `cargo build -p sluice --bin sluice`, or taken from `SLUICE_BIN`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sluice::api::dto::AttemptView;
use tokio::process::Command;
use uuid::Uuid;

mod check;
mod netns;
pub mod pg;
mod pg_check;
mod workload;

pub use workload::sluice_binary;
use workload::{Limits, Server, Shared, kill, listening, now_ms, produce, register, spawn_server};

/// How a run is shaped.
#[derive(Debug, Clone)]
pub struct CrashConfig {
    /// SIGKILLs before the final, draining life.
    pub kills: usize,
    /// Concurrent producers.
    pub producers: usize,
    /// Seeds the workload and the kill schedule.
    pub seed: u64,
    /// Shortest life of a server that is not killed while starting, in ms.
    pub min_life_ms: u64,
    /// Longest life, in ms.
    pub max_life_ms: u64,
    /// Keep the data directory here instead of a temporary one.
    pub data_dir: Option<PathBuf>,
}

impl Default for CrashConfig {
    fn default() -> Self {
        CrashConfig {
            kills: 50,
            producers: 4,
            seed: 1,
            min_life_ms: 100,
            max_life_ms: 900,
            data_dir: None,
        }
    }
}

/// What a run saw. `violations` is empty when every promise held.
#[derive(Debug, Default)]
pub struct CrashReport {
    /// SIGKILLs.
    pub kills: usize,
    /// Of those, kills while the server was starting (before it listened).
    pub kills_while_starting: usize,
    /// Acknowledged enqueues (distinct messages).
    pub messages: usize,
    /// Acknowledged only on a retry that found the first try durable
    /// (`duplicate: true` after a connection lost to a kill).
    pub acknowledged_on_retry: usize,
    /// Deliberate re-enqueues with the same idempotency key (same id back).
    pub reenqueues: usize,
    /// Delayed messages.
    pub delayed: usize,
    /// Deliveries checked (including outbox children).
    pub deliveries: usize,
    /// Attempts checked, by outcome kind.
    pub attempts: BTreeMap<String, usize>,
    /// `interrupted` attempts (each explained by a fault).
    pub interrupted: usize,
    /// Of those, by reason (`process restarted`, `lease expired`).
    pub interrupted_by: BTreeMap<String, usize>,
    /// Settled attempts whose duration was checked against the timeout.
    pub timeout_checks: usize,
    /// Most `interrupted` attempts recorded for one kill.
    pub max_interrupted_per_kill: usize,
    /// Deliveries that ended dead (rejected, or attempts exhausted).
    pub dead: usize,
    /// Outbox messages checked (each (parent, index) once).
    pub outbox_messages: usize,
    /// Outbox messages found more than once.
    pub outbox_duplicates: usize,
    /// Consecutive same-key pairs whose order was checked.
    pub ordering_pairs: usize,
    /// `503` answers to enqueues (none expected from the embedded store: no
    /// fault is injected; the PostgreSQL run's database restart causes some).
    pub unavailable: usize,
    /// Wall-clock duration of the run, in seconds.
    pub seconds: f64,
    /// Broken promises, described.
    pub violations: Vec<String>,
}

impl fmt::Display for CrashReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "kill points (SIGKILL):        {} ({} while starting)",
            self.kills, self.kills_while_starting
        )?;
        writeln!(f, "messages acknowledged:        {}", self.messages)?;
        writeln!(
            f,
            "  acknowledged on a retry:    {} (first try durable, answer lost to a kill)",
            self.acknowledged_on_retry
        )?;
        writeln!(
            f,
            "  idempotent re-enqueues:     {} (same id back)",
            self.reenqueues
        )?;
        writeln!(f, "  delayed:                    {}", self.delayed)?;
        writeln!(f, "deliveries checked:           {}", self.deliveries)?;
        let total: usize = self.attempts.values().sum();
        let kinds: Vec<String> = self
            .attempts
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        writeln!(
            f,
            "attempts checked:             {total} ({})",
            kinds.join(", ")
        )?;
        let reasons: Vec<String> = self
            .interrupted_by
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        writeln!(
            f,
            "interrupted attempts:         {} ({}), at most {} for one fault, every one explained by a fault",
            self.interrupted,
            reasons.join(", "),
            self.max_interrupted_per_kill
        )?;
        writeln!(
            f,
            "attempts within the timeout:  {} checked",
            self.timeout_checks
        )?;
        writeln!(f, "dead deliveries:              {}", self.dead)?;
        writeln!(f, "outbox messages checked:      {}", self.outbox_messages)?;
        writeln!(
            f,
            "outbox duplicates found:      {}",
            self.outbox_duplicates
        )?;
        writeln!(f, "per-key order pairs checked:  {}", self.ordering_pairs)?;
        writeln!(f, "503 answers:                  {}", self.unavailable)?;
        writeln!(f, "duration:                     {:.0} s", self.seconds)?;
        write!(f, "violations:                   {}", self.violations.len())?;
        for v in self.violations.iter().take(30) {
            write!(f, "\n  - {v}")?;
        }
        Ok(())
    }
}

/// One server process's life, in host-clock milliseconds (the server's
/// clock is the same host's).
#[derive(Debug, Clone, Copy)]
struct Life {
    spawned: u64,
    ready: Option<u64>,
    killed: Option<u64>,
}

/// The embedded run's explanation of an `interrupted` attempt: only a kill
/// of the one server, recorded as "process restarted" by the life that next
/// opened the store.
struct Kills<'a>(&'a [Life]);

impl check::Explain for Kills<'_> {
    fn explain(
        &self,
        _delivery: Uuid,
        _attempt: &AttemptView,
        reason: &str,
        started: u64,
        finished: u64,
    ) -> Result<usize, String> {
        if reason != "process restarted" {
            return Err("not by a kill".into());
        }
        explain_kill(self.0, started, finished).ok_or_else(|| "explained by no kill".into())
    }
}

/// The killed life an interrupted attempt belongs to: it started in that
/// life and was recorded while a later life opened the store (`lives` are
/// one runner's, in order).
fn explain_kill(lives: &[Life], started: u64, finished: u64) -> Option<usize> {
    let i = lives
        .iter()
        .position(|l| l.spawned <= started && l.killed.is_some_and(|k| started <= k))?;
    let killed = lives[i].killed?;
    let recorded_on_open = lives[i + 1..].iter().any(|l| {
        let opened_by = l.ready.or(l.killed).unwrap_or(u64::MAX);
        l.spawned <= finished && finished <= opened_by
    });
    (finished >= killed && recorded_on_open).then_some(i)
}

/// The embedded server: `sluice serve` on the data directory under `dir`.
fn spawn_embedded(bin: &Path, dir: &Path) -> Server {
    let mut command = Command::new(bin);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--grace", "1s"])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--pool-instances", "32"]);
    spawn_server(command, &dir.join("server.log"))
}

/// The embedded run's time limits: long enough that nothing times out.
const EMBEDDED_LIMITS: Limits = Limits {
    timeout_ms: 10_000,
    lease_ms: None,
};

/// Runs the harness. Panics only on a harness failure (cannot start the
/// server); broken promises are in [`CrashReport::violations`].
pub async fn run(config: CrashConfig) -> CrashReport {
    let started = std::time::Instant::now();
    let bin = sluice_binary();
    let temp;
    let dir = match &config.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d).expect("data dir");
            d.clone()
        }
        None => {
            temp = tempfile::tempdir().expect("tempdir");
            temp.path().to_path_buf()
        }
    };
    let mut rng = StdRng::seed_from_u64(config.seed);
    let shared = Arc::new(Shared::new(1, None));
    let client = shared.client();
    let mut lives: Vec<Life> = Vec::new();
    let mut report = CrashReport::default();
    let mut producers = tokio::task::JoinSet::new();
    let mut kills_while_starting = 0;

    for life in 0..=config.kills {
        let spawned = now_ms();
        let mut server = spawn_embedded(&bin, &dir);
        let first = life == 0;
        let last = life == config.kills;
        let early = !first && !last && rng.random_bool(0.1);
        let mut ready = None;
        if early {
            // Kill while it opens the store and recovers the previous crash.
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..60))).await;
        } else {
            let url = listening(&mut server, &dir.join("server.log")).await;
            ready = Some(now_ms());
            if first {
                register(&client, &url, EMBEDDED_LIMITS).await;
                for p in 0..config.producers {
                    producers.spawn(produce(shared.clone(), p, config.seed));
                }
            }
            shared.set_url(0, Some(url));
        }
        if last {
            lives.push(Life {
                spawned,
                ready,
                killed: None,
            });
            shared.stop.store(true, Ordering::Relaxed);
            while producers.join_next().await.is_some() {}
            let url = shared.url(0).expect("final server");
            report = check::check(&client, &url, &shared, &Kills(&lives), EMBEDDED_LIMITS).await;
            kill(&mut server).await;
            break;
        }
        if !early {
            let life_ms = rng.random_range(config.min_life_ms..=config.max_life_ms);
            tokio::time::sleep(Duration::from_millis(life_ms)).await;
        }
        shared.set_url(0, None);
        let killed = kill(&mut server).await;
        if early && server.ready.try_recv().is_err() {
            kills_while_starting += 1;
        }
        lives.push(Life {
            spawned,
            ready,
            killed: Some(killed),
        });
    }
    report.kills = config.kills;
    report.kills_while_starting = kills_while_starting;
    report.finish(&shared, started);
    if !report.violations.is_empty() && config.data_dir.is_none() {
        keep_evidence(&mut report, &dir, &format!("sluice-crash-{}", config.seed));
    }
    report
}

impl CrashReport {
    /// Adds what the producers counted and noticed, and the duration.
    fn finish(&mut self, shared: &Shared, started: std::time::Instant) {
        self.acknowledged_on_retry = shared.acknowledged_on_retry.load(Ordering::Relaxed) as usize;
        self.reenqueues = shared.reenqueues.load(Ordering::Relaxed) as usize;
        self.unavailable = shared.unavailable.load(Ordering::Relaxed) as usize;
        self.seconds = started.elapsed().as_secs_f64();
        let mut noticed =
            std::mem::take(&mut *shared.violations.lock().unwrap_or_else(|p| p.into_inner()));
        noticed.append(&mut self.violations);
        self.violations = noticed;
    }
}

/// Moves a failed run's directory (data, server logs) to `$TMPDIR/name`.
fn keep_evidence(report: &mut CrashReport, dir: &Path, name: &str) {
    let kept = std::env::temp_dir().join(name);
    let _ = std::fs::remove_dir_all(&kept);
    if std::fs::rename(dir, &kept).is_ok() {
        report
            .violations
            .push(format!("run directory kept in {}", kept.display()));
    }
}
