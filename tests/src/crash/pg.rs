//! The multi-runner fault run: three `sluice serve --store postgres://…`
//! processes on one database (a fresh schema) under the crash harness's
//! mixed workload, producers enqueueing through all of them, while:
//!
//! - random runners are SIGKILLed at random moments and restarted under the
//!   same runner id (one restart in ten is killed again while it starts);
//! - the database is restarted once (`scripts/pg.sh restart`, a fast
//!   shutdown that cuts every connection): verbs answer `503` meanwhile;
//! - runner 2, moved into a network namespace after the database restart,
//!   is cut off the network (the host end of its veth pair taken down) for
//!   longer than its leases, so the other two rescue them, then healed: its
//!   late completions reach the database and must be refused (`LeaseLost`).
//!   The cut is repeated (three times at most) until one of its leases was
//!   rescued.
//!
//! Then the shared checker (`check.rs`, through the HTTP API) and the
//! database's own history (`pg_check.rs`, read from the schema) prove
//! what docs/crash-testing.md lists. Time is the real one here (three
//! processes and a database): leases are short (3 s, rescue every 250 ms) so
//! rescues come quickly, but nothing is asserted on durations except each
//! attempt's own timeout.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::process::Command;

use super::netns::Netns;
use super::pg_check::{self, Faults, PgReport};
use super::workload::{
    Limits, Server, Shared, kill, listening, now_ms, produce, register, sluice_binary, spawn_server,
};
use super::{Life, keep_evidence};

/// Whether the run must cut a runner off the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Fail when a network namespace cannot be made (not root): CI.
    Required,
    /// Skip the cut, saying so in the report, when it cannot be made.
    IfAvailable,
}

/// How a run is shaped.
#[derive(Debug, Clone)]
pub struct PgFaultConfig {
    /// The cluster of `scripts/pg.sh` (`SLUICE_TEST_PG_URL`), on 127.0.0.1.
    pub url: String,
    /// SIGKILLs of runners (not counting kills while starting).
    pub kills: usize,
    /// Concurrent producers.
    pub producers: usize,
    /// Seeds the workload and the fault schedule.
    pub seed: u64,
    /// Shortest time between two kills, in ms.
    pub min_gap_ms: u64,
    /// Longest time between two kills, in ms.
    pub max_gap_ms: u64,
    /// The network cut.
    pub cut: Cut,
}

impl Default for PgFaultConfig {
    fn default() -> Self {
        PgFaultConfig {
            url: String::new(),
            kills: 8,
            producers: 4,
            seed: 1,
            min_gap_ms: 300,
            max_gap_ms: 1500,
            cut: Cut::Required,
        }
    }
}

/// Runners on the database; the last one is the one cut off.
const RUNNERS: usize = 3;
/// Short enough that rescues come within a run, long enough that an
/// attempt of a trivial handler never times out on a loaded machine.
const LIMITS: Limits = Limits {
    timeout_ms: 2_000,
    lease_ms: Some(3_000),
};
const RESCUE_INTERVAL_MS: u64 = 250;
/// Bearer token of every runner (the one in the namespace listens on a
/// non-loopback address, which requires one).
const TOKEN: &str = "pg-fault-token";
/// After a heal, the cut runner is not killed for this long, so its late
/// completions (TCP retransmits back off to seconds) reach the database.
const AFTER_HEAL_MS: u64 = 8_000;

/// The runner ids, `r0`, `r1`, `r2`.
pub(super) fn runner_id(i: usize) -> String {
    format!("r{i}")
}

/// What starting a runner needs.
struct Runners {
    bin: PathBuf,
    dir: PathBuf,
    config_file: PathBuf,
    /// The database URL as the host sees it.
    url: String,
    netns: Option<Netns>,
    /// Runner 2 runs in the namespace (once the database listens there).
    moved: bool,
}

impl Runners {
    fn log(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{}.log", runner_id(i)))
    }

    fn spawn(&self, i: usize) -> Server {
        let inside = self.moved && i == RUNNERS - 1;
        let mut command = match (&self.netns, inside) {
            (Some(ns), true) => {
                let mut c = Command::new("ip");
                c.args(ns.exec_prefix()).arg(&self.bin);
                c
            }
            _ => Command::new(&self.bin),
        };
        let (listen, url) = match (&self.netns, inside) {
            (Some(ns), true) => (
                format!("{}:0", ns.ns_addr),
                self.url.replacen("127.0.0.1", &ns.host_addr, 1),
            ),
            _ => ("127.0.0.1:0".to_string(), self.url.clone()),
        };
        command
            .arg("serve")
            .arg("--config")
            .arg(&self.config_file)
            .args(["--store", &url, "--runner-id", &runner_id(i)])
            .args(["--listen", &listen, "--token", TOKEN, "--grace", "1s"])
            .arg("--data-dir")
            .arg(self.dir.join(runner_id(i)))
            .args(["--pool-instances", "32", "--log-format", "json"]);
        spawn_server(command, &self.log(i))
    }
}

/// A line on stderr as the run goes (a long run takes minutes).
fn progress(what: &str) {
    eprintln!("pg-fault: {} {what}", now_ms());
}

/// A fresh schema name for this run.
fn schema_name(seed: u64) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "pgfault_{}_{}_{nanos}",
        seed % 1_000_000,
        std::process::id()
    )
}

/// Restarts the cluster of `scripts/pg.sh`, listening also on `extra`.
async fn restart_database(extra: Option<&str>) -> Result<(), String> {
    let mut c = Command::new(crate::repo_root().join("scripts/pg.sh"));
    c.arg("restart");
    if let Some(a) = extra {
        c.env("SLUICE_PG_LISTEN", a);
    }
    let out = c
        .output()
        .await
        .map_err(|e| format!("scripts/pg.sh: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "scripts/pg.sh restart failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The run's state: runners, their lives, the faults so far.
struct Run {
    runners: Runners,
    shared: Arc<Shared>,
    servers: Vec<Server>,
    faults: Faults,
    kills_while_starting: usize,
}

impl Run {
    /// Starts runner `i` and waits until it listens; one start in ten (when
    /// `early` may) is SIGKILLed first, while it starts.
    async fn start(&mut self, i: usize, rng: &mut StdRng, early: bool) -> Server {
        if early && rng.random_bool(0.1) {
            let spawned = now_ms();
            let mut server = self.runners.spawn(i);
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..60))).await;
            let killed = kill(&mut server).await;
            if server.ready.try_recv().is_err() {
                self.kills_while_starting += 1;
            }
            self.faults.lives[i].push(Life {
                spawned,
                ready: None,
                killed: Some(killed),
            });
        }
        let spawned = now_ms();
        let mut server = self.runners.spawn(i);
        let url = listening(&mut server, &self.runners.log(i)).await;
        self.faults.lives[i].push(Life {
            spawned,
            ready: Some(now_ms()),
            killed: None,
        });
        self.shared.set_url(i, Some(url));
        server
    }

    /// SIGKILLs runner `i` and starts it again.
    async fn kill_and_restart(&mut self, i: usize, rng: &mut StdRng) {
        progress(&format!("kill {}", runner_id(i)));
        self.shared.set_url(i, None);
        let killed = kill(&mut self.servers[i]).await;
        if let Some(l) = self.faults.lives[i].last_mut() {
            l.killed = Some(killed);
        }
        self.servers[i] = self.start(i, rng, true).await;
    }

    /// Cuts the last runner off for longer than a lease, then heals it.
    async fn cut(&mut self) -> Result<(), String> {
        progress("cut r2 off the network");
        let ns = self.runners.netns.as_ref().expect("namespace");
        let i = RUNNERS - 1;
        let url = self.shared.url(i);
        self.shared.set_url(i, None);
        let down = now_ms();
        ns.cut()?;
        let lease = LIMITS.lease_ms.unwrap_or(LIMITS.timeout_ms);
        tokio::time::sleep(Duration::from_millis(
            lease + 4 * RESCUE_INTERVAL_MS + 1_000,
        ))
        .await;
        ns.heal()?;
        self.faults.cuts.push((down, now_ms()));
        self.shared.set_url(i, url);
        Ok(())
    }
}

/// Runs the faults and checks everything. Panics on a harness failure
/// (cannot start a runner, cannot restart the database, no namespace under
/// [`Cut::Required`]); broken promises are in the report's violations.
pub async fn run(config: PgFaultConfig) -> PgReport {
    let started = std::time::Instant::now();
    let bin = sluice_binary();
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().to_path_buf();
    let schema = schema_name(config.seed);
    let mut notes = Vec::new();
    let netns = match Netns::create(std::process::id()) {
        Ok(ns) => Some(ns),
        Err(e) if config.cut == Cut::Required => {
            panic!("the network cut needs a network namespace (run as root with `ip`): {e}")
        }
        Err(e) => {
            notes.push(format!("network cut skipped: {e}"));
            None
        }
    };
    let config_file = dir.join("sluice.toml");
    std::fs::write(
        &config_file,
        format!(
            "[store]\ntype = \"postgres\"\nurl = \"{}\"\nschema = \"{schema}\"\npool_size = 8\n\n\
             [runner]\nrescue_interval = \"{RESCUE_INTERVAL_MS}ms\"\n",
            config.url
        ),
    )
    .expect("config file");
    let mut rng = StdRng::seed_from_u64(config.seed);
    let shared = Arc::new(Shared::new(RUNNERS, Some(TOKEN.to_string())));
    let client = shared.client();
    let mut run = Run {
        runners: Runners {
            bin,
            dir: dir.clone(),
            config_file,
            url: config.url.clone(),
            netns,
            moved: false,
        },
        shared: shared.clone(),
        servers: Vec::new(),
        faults: Faults {
            lives: vec![Vec::new(); RUNNERS],
            ..Faults::default()
        },
        kills_while_starting: 0,
    };
    for i in 0..RUNNERS {
        let server = run.start(i, &mut rng, false).await;
        run.servers.push(server);
    }
    let url0 = shared.url(0).expect("runner 0");
    register(&client, &url0, LIMITS).await;
    let mut producers = tokio::task::JoinSet::new();
    for p in 0..config.producers {
        producers.spawn(produce(shared.clone(), p, config.seed));
    }

    let restart_at = config.kills / 3;
    let cut_at = (2 * config.kills / 3).max(restart_at + 1);
    let mut protect_until = 0;
    let mut kills = 0;
    for event in 0..=config.kills {
        let gap = rng.random_range(config.min_gap_ms..=config.max_gap_ms);
        tokio::time::sleep(Duration::from_millis(gap)).await;
        if event == restart_at {
            let extra = run.runners.netns.as_ref().map(|ns| ns.host_addr.clone());
            progress("restart the database");
            let begin = now_ms();
            restart_database(extra.as_deref())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            run.faults.db_restarts.push((begin, now_ms()));
            if run.runners.netns.is_some() {
                // From now on the last runner lives in the namespace.
                run.runners.moved = true;
                run.kill_and_restart(RUNNERS - 1, &mut rng).await;
                kills += 1;
            }
        }
        if event == cut_at && run.runners.netns.is_some() {
            // Cut only a runner at work: wait (30 s at most) until the
            // one in the namespace has leased since it started there.
            let r = RUNNERS - 1;
            let since = run.faults.lives[r]
                .last()
                .and_then(|l| l.ready)
                .unwrap_or(0);
            for _ in 0..150 {
                let n = pg_check::started_since(&config.url, &schema, &runner_id(r), since).await;
                if n.unwrap_or(0) > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            for _ in 0..3 {
                run.cut().await.unwrap_or_else(|e| panic!("{e}"));
                if pg_check::rescued_in_cuts(&config.url, &schema, &run.faults)
                    .await
                    .unwrap_or(0)
                    > 0
                {
                    break;
                }
            }
            protect_until = now_ms() + AFTER_HEAL_MS;
        }
        if event == config.kills {
            break;
        }
        let victims = if now_ms() < protect_until {
            RUNNERS - 1
        } else {
            RUNNERS
        };
        let victim = rng.random_range(0..victims);
        run.kill_and_restart(victim, &mut rng).await;
        kills += 1;
    }
    // Let the cut runner's late completions land before the check reads.
    let wait = protect_until.saturating_sub(now_ms());
    tokio::time::sleep(Duration::from_millis(wait)).await;
    shared.stop.store(true, Ordering::Relaxed);
    while producers.join_next().await.is_some() {}
    progress("faults over: drain and check");

    let url0 = shared.url(0).expect("runner 0");
    let mut report = PgReport::default();
    // The explanations need every attempt's runner: read the history once
    // nothing is left to run.
    if let Err(e) = super::check::drain(&client, &url0).await {
        report.base.violations.push(e);
    }
    match pg_check::history(&config.url, &schema).await {
        Ok(history) => {
            let explain = pg_check::Explainer {
                faults: &run.faults,
                history: &history,
            };
            let mut base = super::check::check(&client, &url0, &shared, &explain, LIMITS).await;
            base.violations.append(&mut report.base.violations);
            report.base = base;
            let logs: Vec<PathBuf> = (0..RUNNERS).map(|i| run.runners.log(i)).collect();
            pg_check::check(&history, &run.faults, &logs, &mut report);
        }
        Err(e) => report.base.violations.push(e),
    }
    for s in &mut run.servers {
        kill(s).await;
    }
    report.base.kills = kills;
    report.base.kills_while_starting = run.kills_while_starting;
    report.db_restarts = run.faults.db_restarts.len();
    report.cuts = run.faults.cuts.len();
    report.schema = schema;
    report.notes = notes;
    report.base.finish(&shared, started);
    if !report.cuts_skipped() && report.rescued_from_cut == 0 {
        report.base.violations.push(format!(
            "{} cuts of r2 and none of its leases was rescued: the cut proved nothing",
            report.cuts
        ));
    }
    drop(run.runners.netns.take());
    if !report.base.violations.is_empty() {
        let kept = temp.keep();
        let _ = std::fs::write(kept.join("report.txt"), report.to_string());
        keep_evidence(
            &mut report.base,
            &kept,
            &format!("sluice-pg-fault-{}", config.seed),
        );
    }
    report
}
