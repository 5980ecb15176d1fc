//! The multi-runner run's checks over the database's own history, read from
//! the schema: every attempt names its lease token and runner (schema
//! version 7), so which runner ran what, and whether the attempt that
//! settled a delivery held its last lease, are facts, not guesses.
//!
//! - Every lease made one attempt record, with a fresh token, increasing
//!   with the attempt's position.
//! - A succeeded delivery's `ok` attempt is its last one and holds the
//!   greatest token issued for it: no completion under an older lease (a
//!   cut-off or killed runner's) was accepted.
//! - Every outbox child was committed by its parent's winning attempt (its
//!   enqueue time is that attempt's settle time, one transaction), exactly
//!   two per succeeded order and none for any other.
//! - Every `LeaseLost` refusal a runner logged ("lease lost before the
//!   outcome was recorded") is for a delivery whose attempt under that
//!   runner's lease was interrupted (rescued or released): the refused
//!   completion wrote nothing.
//! - Every interrupted attempt is explained by a fault of its own runner (a
//!   kill, the cut) or by the database restart ([`Explainer`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;

use sluice::api::dto::AttemptView;
use tokio_postgres::NoTls;
use uuid::Uuid;

use super::check::Explain;
use super::pg::runner_id;
use super::{CrashReport, Life, explain_kill};

/// The faults of a run, in host-clock ms.
#[derive(Debug, Default)]
pub(super) struct Faults {
    /// Per runner, its lives in order.
    pub(super) lives: Vec<Vec<Life>>,
    /// The last runner's network cuts: (down, healed).
    pub(super) cuts: Vec<(u64, u64)>,
    /// Database restarts: (began, listening again).
    pub(super) db_restarts: Vec<(u64, u64)>,
}

/// What the multi-runner run saw: the shared report, then its own figures.
#[derive(Debug, Default)]
pub struct PgReport {
    /// The shared checker's report (kills, messages, attempts, order, ...).
    pub base: CrashReport,
    /// Database restarts.
    pub db_restarts: usize,
    /// Network cuts of the last runner.
    pub cuts: usize,
    /// The run's schema (kept in the database for inspection).
    pub schema: String,
    /// Attempts per runner.
    pub attempts_by_runner: BTreeMap<String, usize>,
    /// Attempts rescued by another runner after their lease expired.
    pub rescued: usize,
    /// Of those, leases of the cut runner that expired during a cut.
    pub rescued_from_cut: usize,
    /// Leases released by their runner's restart ("process restarted").
    pub released: usize,
    /// Late completions refused with `LeaseLost`, as runners logged them.
    pub lease_lost: usize,
    /// Of those, by the cut runner after a heal.
    pub lease_lost_after_cut: usize,
    /// Succeeded deliveries whose winning attempt was checked to hold the
    /// last lease.
    pub last_lease_checks: usize,
    /// Outbox children checked against their parent's winning attempt.
    pub outbox_children: usize,
    /// Why part of the run was skipped, if it was.
    pub notes: Vec<String>,
}

impl PgReport {
    /// Whether the run had no network cut (no namespace outside CI).
    pub fn cuts_skipped(&self) -> bool {
        self.cuts == 0
    }
}

impl fmt::Display for PgReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.base;
        writeln!(f, "schema:                       {}", self.schema)?;
        writeln!(
            f,
            "runner kills (SIGKILL):       {} (+{} while starting)",
            b.kills, b.kills_while_starting
        )?;
        writeln!(f, "database restarts:            {}", self.db_restarts)?;
        writeln!(f, "network cuts (runner r2):     {}", self.cuts)?;
        let by: Vec<String> = self
            .attempts_by_runner
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        writeln!(f, "attempts by runner:           {}", by.join(", "))?;
        writeln!(
            f,
            "leases rescued (expired):     {} ({} of r2 during a cut)",
            self.rescued, self.rescued_from_cut
        )?;
        writeln!(f, "leases released on restart:   {}", self.released)?;
        writeln!(
            f,
            "LeaseLost refusals:           {} ({} by r2 after a heal), none committed anything",
            self.lease_lost, self.lease_lost_after_cut
        )?;
        writeln!(
            f,
            "winning attempt = last lease: {} succeeded deliveries checked",
            self.last_lease_checks
        )?;
        writeln!(
            f,
            "outbox children checked:      {} (each committed by its parent's winning attempt)",
            self.outbox_children
        )?;
        for n in &self.notes {
            writeln!(f, "note:                         {n}")?;
        }
        write!(f, "{b}")
    }
}

/// One attempt record.
#[derive(Debug, Clone)]
pub(super) struct AttemptRow {
    seq: i32,
    number: i32,
    lease_token: Option<i64>,
    runner: Option<String>,
    kind: Option<String>,
    reason: Option<String>,
    started_at: i64,
    finished_at: Option<i64>,
}

/// One delivery and its attempts, in order.
#[derive(Debug)]
pub(super) struct DeliveryRow {
    message_id: Uuid,
    handler: String,
    succeeded: bool,
    attempts: Vec<AttemptRow>,
}

/// The schema's history.
pub(super) struct History {
    deliveries: HashMap<Uuid, DeliveryRow>,
    /// Outbox children: (id, parent, idempotency key, enqueued at).
    children: Vec<(Uuid, Option<String>, String, i64)>,
}

async fn connect(url: &str, schema: &str) -> Result<tokio_postgres::Client, String> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| format!("connect to {url}: {e}"))?;
    tokio::spawn(connection);
    client
        .batch_execute(&format!("SET search_path TO \"{schema}\""))
        .await
        .map_err(|e| e.to_string())?;
    Ok(client)
}

const ATTEMPTS_SQL: &str = "SELECT d.id, d.message_id, d.handler, d.state, a.seq, a.number,
        a.lease_token, a.runner, a.outcome->>'kind', a.outcome->>'reason', a.started_at,
        a.finished_at
     FROM deliveries d JOIN attempts a ON a.delivery_id = d.id
     ORDER BY d.id, a.seq";

/// Reads every delivery, attempt and outbox child of `schema`.
pub(super) async fn history(url: &str, schema: &str) -> Result<History, String> {
    let client = connect(url, schema).await?;
    let rows = client
        .query(ATTEMPTS_SQL, &[])
        .await
        .map_err(|e| format!("read attempts: {e}"))?;
    let mut deliveries: HashMap<Uuid, DeliveryRow> = HashMap::new();
    for r in rows {
        let id: Uuid = r.get(0);
        let d = deliveries.entry(id).or_insert_with(|| DeliveryRow {
            message_id: r.get(1),
            handler: r.get(2),
            // `succeeded` is state 5 (store/postgres/rows.rs).
            succeeded: r.get::<_, i16>(3) == 5,
            attempts: Vec::new(),
        });
        d.attempts.push(AttemptRow {
            seq: r.get(4),
            number: r.get(5),
            lease_token: r.get(6),
            runner: r.get(7),
            kind: r.get(8),
            reason: r.get(9),
            started_at: r.get(10),
            finished_at: r.get(11),
        });
    }
    let children = client
        .query(
            "SELECT id, headers->>'sluice-parent', idempotency_key, enqueued_at FROM messages
             WHERE headers ? 'sluice-parent'",
            &[],
        )
        .await
        .map_err(|e| format!("read outbox children: {e}"))?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    Ok(History {
        deliveries,
        children,
    })
}

/// How many leases of the last runner expired and were rescued during a cut.
pub(super) async fn rescued_in_cuts(
    url: &str,
    schema: &str,
    faults: &Faults,
) -> Result<usize, String> {
    let client = connect(url, schema).await?;
    let runner = runner_id(faults.lives.len() - 1);
    let mut n = 0;
    for (down, up) in &faults.cuts {
        let row = client
            .query_one(
                "SELECT count(*) FROM attempts WHERE runner = $1
                 AND outcome->>'reason' = 'lease expired' AND started_at <= $3
                 AND finished_at >= $2",
                &[&runner, &(*down as i64), &(*up as i64)],
            )
            .await
            .map_err(|e| e.to_string())?;
        n += row.get::<_, i64>(0) as usize;
    }
    Ok(n)
}

/// How many attempts `runner` started at or after `since` (ms).
pub(super) async fn started_since(
    url: &str,
    schema: &str,
    runner: &str,
    since: u64,
) -> Result<usize, String> {
    let client = connect(url, schema).await?;
    let row = client
        .query_one(
            "SELECT count(*) FROM attempts WHERE runner = $1 AND started_at >= $2",
            &[&runner, &(since as i64)],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get::<_, i64>(0) as usize)
}

fn overlaps(window: (u64, u64), started: u64, finished: u64) -> bool {
    window.0 <= finished && started <= window.1
}

/// Explains an interrupted attempt by a fault of the runner that held its
/// lease, or by the database restart.
pub(super) struct Explainer<'a> {
    pub(super) faults: &'a Faults,
    pub(super) history: &'a History,
}

/// Fault ids for counting: kills are `runner << 32 | life`, cuts and
/// restarts above.
const CUT_ID: usize = 1 << 48;
const RESTART_ID: usize = 1 << 49;

impl Explain for Explainer<'_> {
    fn explain(
        &self,
        delivery: Uuid,
        attempt: &AttemptView,
        reason: &str,
        started: u64,
        finished: u64,
    ) -> Result<usize, String> {
        let runner = self
            .history
            .deliveries
            .get(&delivery)
            .and_then(|d| {
                d.attempts
                    .iter()
                    .find(|a| a.number as u32 == attempt.number)
            })
            .and_then(|a| a.runner.clone())
            .ok_or("no runner recorded for the attempt")?;
        let r = (0..self.faults.lives.len())
            .find(|i| runner_id(*i) == runner)
            .ok_or_else(|| format!("unknown runner {runner}"))?;
        let lives = &self.faults.lives[r];
        match reason {
            // Released by the runner's next life, at its start.
            "process restarted" => explain_kill(lives, started, finished)
                .map(|life| r << 32 | life)
                .ok_or_else(|| format!("released, but no kill of {runner} explains it")),
            // Rescued by another runner: its runner was killed or cut off,
            // or the database restarted, while it ran.
            "lease expired" => {
                if let Some(life) = lives
                    .iter()
                    .position(|l| l.killed.is_some_and(|k| started <= k && k <= finished))
                {
                    return Ok(r << 32 | life);
                }
                if r == self.faults.lives.len() - 1
                    && let Some(c) = self
                        .faults
                        .cuts
                        .iter()
                        .position(|c| overlaps(*c, started, finished))
                {
                    return Ok(CUT_ID + c);
                }
                self.faults
                    .db_restarts
                    .iter()
                    .position(|w| overlaps(*w, started, finished))
                    .map(|w| RESTART_ID + w)
                    .ok_or_else(|| {
                        format!("rescued, but no kill or cut of {runner} nor a database restart explains it")
                    })
            }
            other => Err(format!("unexpected reason {other:?}")),
        }
    }
}

/// The deliveries a runner's log (JSON lines) says a completion of was
/// refused (`LeaseLost`), with the time logged.
fn refusals(log: &PathBuf) -> Vec<(Uuid, String)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("lease lost before the outcome was recorded"))
        })
        .filter_map(|v| {
            let id = v["fields"]["delivery"].as_str()?.parse().ok()?;
            Some((id, v["timestamp"].as_str().unwrap_or_default().to_string()))
        })
        .collect()
}

/// Checks the history (see the module's docs), counting into `report`.
pub(super) fn check(history: &History, faults: &Faults, logs: &[PathBuf], report: &mut PgReport) {
    let mut v = Vec::new();
    // Leases and attempts.
    let mut winners: HashMap<Uuid, i64> = HashMap::new();
    for (id, d) in &history.deliveries {
        let mut last_token = 0;
        for (i, a) in d.attempts.iter().enumerate() {
            let what = format!("{} / {} attempt {}", d.message_id, d.handler, a.number);
            if a.seq as usize != i + 1 {
                v.push(format!("{what}: record {} at position {}", a.seq, i + 1));
            }
            let (Some(token), Some(runner)) = (a.lease_token, &a.runner) else {
                v.push(format!("{what}: no lease token or runner recorded"));
                continue;
            };
            *report.attempts_by_runner.entry(runner.clone()).or_default() += 1;
            if token <= last_token {
                v.push(format!(
                    "{what}: lease token {token} not after the previous one {last_token}"
                ));
            }
            last_token = token;
            match a.reason.as_deref() {
                Some("lease expired") => {
                    report.rescued += 1;
                    let cut_runner = runner_id(faults.lives.len() - 1);
                    let finished = a.finished_at.unwrap_or(i64::MAX) as u64;
                    if *runner == cut_runner
                        && faults
                            .cuts
                            .iter()
                            .any(|c| overlaps(*c, a.started_at as u64, finished))
                    {
                        report.rescued_from_cut += 1;
                    }
                }
                Some("process restarted") => report.released += 1,
                _ => {}
            }
        }
        if d.succeeded {
            report.last_lease_checks += 1;
            let oks: Vec<&AttemptRow> = d
                .attempts
                .iter()
                .filter(|a| a.kind.as_deref() == Some("ok"))
                .collect();
            let last = d.attempts.last();
            match (oks.as_slice(), last) {
                ([ok], Some(last)) if ok.seq == last.seq && ok.lease_token == Some(last_token) => {
                    winners.insert(*id, ok.finished_at.unwrap_or(-1));
                }
                _ => v.push(format!(
                    "{} / {}: succeeded, but its ok attempts {:?} are not the one holding the last lease ({last_token})",
                    d.message_id,
                    d.handler,
                    oks.iter().map(|a| (a.seq, a.lease_token)).collect::<Vec<_>>()
                )),
            }
        }
    }
    // The outbox: committed with the winning attempt of `order-publish`.
    let publishers: HashMap<Uuid, Uuid> = history
        .deliveries
        .iter()
        .filter(|(_, d)| d.handler == "order-publish")
        .map(|(id, d)| (d.message_id, *id))
        .collect();
    let mut per_parent: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (id, parent, key, enqueued_at) in &history.children {
        report.outbox_children += 1;
        let Some(parent) = parent else { continue };
        per_parent.entry(parent.clone()).or_default().push(key);
        let winner = parent
            .parse::<Uuid>()
            .ok()
            .and_then(|p| publishers.get(&p))
            .and_then(|id| winners.get(id));
        match winner {
            Some(at) if at == enqueued_at => {}
            other => v.push(format!(
                "outbox child {id} of {parent} enqueued at {enqueued_at}, not by its parent's winning attempt (settled at {other:?})"
            )),
        }
    }
    for (parent, keys) in &per_parent {
        if keys.len() != 2 {
            v.push(format!(
                "order {parent} has {} outbox children: {keys:?}",
                keys.len()
            ));
        }
    }
    // Refused late completions wrote nothing.
    for (i, log) in logs.iter().enumerate() {
        let runner = runner_id(i);
        for (delivery, at) in refusals(log) {
            report.lease_lost += 1;
            let logged = sluice::clock::Timestamp::parse_rfc3339(&at).map_or(0, |t| t.0);
            if i == logs.len() - 1 && faults.cuts.first().is_some_and(|c| c.0 <= logged) {
                report.lease_lost_after_cut += 1;
            }
            let interrupted = history.deliveries.get(&delivery).is_some_and(|d| {
                d.attempts.iter().any(|a| {
                    a.runner.as_deref() == Some(runner.as_str())
                        && a.kind.as_deref() == Some("interrupted")
                })
            });
            if !interrupted {
                v.push(format!(
                    "{runner} logged LeaseLost for {delivery} at {at}, but none of its attempts there was interrupted"
                ));
            }
        }
    }
    report.base.violations.append(&mut v);
}
