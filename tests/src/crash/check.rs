//! The checker both fault runs share: waits until every delivery is drained,
//! then reads the whole history back through the HTTP API and checks each
//! promise listed in the harness's docs. What explains an `interrupted`
//! attempt is the run's own ([`Explain`]): a kill of the one server for the
//! embedded store; a kill, the network cut or the database restart for the
//! PostgreSQL run.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sluice::api::dto::{AttemptView, EnqueuedView, MessageView, StatsView};
use sluice::outcome::Outcome;
use uuid::Uuid;

use super::CrashReport;
use super::workload::{HANDLERS, Limits, OUTBOX_CHILDREN, Shared, handler, ms};

/// Tells which fault explains an `interrupted` attempt.
pub(super) trait Explain {
    /// The fault (an index the report counts attempts per) that explains
    /// the interrupted `attempt` of `delivery`, started at `started` and
    /// recorded at `finished` (ms), or why none does.
    fn explain(
        &self,
        delivery: Uuid,
        attempt: &AttemptView,
        reason: &str,
        started: u64,
        finished: u64,
    ) -> Result<usize, String>;
}

async fn get<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
) -> Result<T, String> {
    let res = client.get(url).send().await.map_err(|e| e.to_string())?;
    let status = res.status();
    if !status.is_success() {
        return Err(format!(
            "{status}: {}",
            res.text().await.unwrap_or_default()
        ));
    }
    res.json().await.map_err(|e| e.to_string())
}

/// Waits until no delivery is open (asking the runner at `url`, 300 s at
/// most); returns the final stats.
pub(super) async fn drain(client: &reqwest::Client, url: &str) -> Result<StatsView, String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let stats: StatsView = get(client, &format!("{url}/v1/stats")).await?;
        let open: u64 = stats
            .handlers
            .iter()
            .flat_map(|h| {
                h.counts
                    .iter()
                    .filter(|(s, _)| !matches!(s.as_str(), "succeeded" | "dead"))
                    .map(|(_, n)| *n)
            })
            .sum();
        if open == 0 {
            return Ok(stats);
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("{open} deliveries still open after 300 s"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until no delivery is open (asking the runner at `url`), then
/// checks the whole history; every handler was registered with `limits`.
pub(super) async fn check(
    client: &reqwest::Client,
    url: &str,
    shared: &Shared,
    explain: &dyn Explain,
    limits: Limits,
) -> CrashReport {
    let mut r = CrashReport::default();
    let v = |r: &mut CrashReport, s: String| r.violations.push(s);

    // 1. Drain: every delivery succeeded or dead.
    let stats = match drain(client, url).await {
        Ok(stats) => stats,
        Err(e) => {
            v(&mut r, e);
            get(client, &format!("{url}/v1/stats"))
                .await
                .expect("stats")
        }
    };
    let totals: BTreeMap<String, u64> = stats
        .handlers
        .iter()
        .map(|h| (h.handler.clone(), h.counts.values().sum()))
        .collect();

    let acked = shared
        .acked
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    r.messages = acked.len();
    r.delayed = acked.iter().filter(|a| a.delayed).count();
    let mut per_kill: BTreeMap<usize, usize> = BTreeMap::new();
    let mut ctx = Checker {
        explain,
        limits,
        report: &mut r,
        per_kill: &mut per_kill,
    };

    // 2. Every acknowledged message: fan-out, outcomes, delays.
    let mut by_id: BTreeMap<Uuid, MessageView> = BTreeMap::new();
    let mut per_topic: BTreeMap<&str, u64> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for a in &acked {
        if !ids.insert(a.id) {
            ctx.violation(format!("two acknowledged keys share message {}", a.id));
            continue;
        }
        *per_topic.entry(a.topic).or_default() += 1;
        let m: MessageView = match get(client, &format!("{url}/v1/messages/{}", a.id)).await {
            Ok(m) => m,
            Err(e) => {
                ctx.violation(format!(
                    "acknowledged message {} ({}) lost: {e}",
                    a.id, a.idempotency_key
                ));
                continue;
            }
        };
        if m.topic != a.topic
            || m.idempotency_key != a.idempotency_key
            || m.ordering_key != a.ordering_key
        {
            ctx.violation(format!(
                "message {} does not match its enqueue: {m:?}",
                a.id
            ));
        }
        let expected: BTreeSet<&str> = HANDLERS
            .iter()
            .filter(|h| h.topic == a.topic)
            .map(|h| h.name)
            .collect();
        ctx.deliveries(&m, &expected, a.bad_payload);
        by_id.insert(a.id, m);
    }

    // 3. Per handler: as many deliveries as acknowledged messages on its topic.
    let mut succeeded_orders = Vec::new();
    for a in acked.iter().filter(|a| a.topic == "orders") {
        if let Some(m) = by_id.get(&a.id)
            && m.deliveries
                .iter()
                .any(|d| d.handler == "order-publish" && d.state == "succeeded")
        {
            succeeded_orders.push(a.id);
        }
    }
    for h in HANDLERS {
        let expected =
            if let Some((_, _, _)) = OUTBOX_CHILDREN.iter().find(|(n, _, _)| *n == h.name) {
                succeeded_orders.len() as u64
            } else {
                per_topic.get(h.topic).copied().unwrap_or(0)
            };
        let actual = totals.get(h.name).copied().unwrap_or(0);
        if actual != expected {
            ctx.violation(format!(
                "handler {} has {actual} deliveries, expected {expected}",
                h.name
            ));
            if OUTBOX_CHILDREN.iter().any(|(n, _, _)| *n == h.name) && actual > expected {
                ctx.report.outbox_duplicates += (actual - expected) as usize;
            }
        }
    }

    // 4. The outbox: each (parent, index) resolves to one message from that parent.
    for parent in &succeeded_orders {
        for (h, topic, index) in OUTBOX_CHILDREN {
            let key = format!("outbox:{parent}:order-publish:{index}");
            let res = client
                .post(format!("{url}/v1/topics/{topic}/messages"))
                .header("idempotency-key", &key)
                .body("probe")
                .send()
                .await;
            let view: EnqueuedView = match res {
                Ok(res) if res.status() == reqwest::StatusCode::ACCEPTED => {
                    res.json().await.expect("enqueued view")
                }
                other => {
                    ctx.violation(format!("probe {key}: {other:?}"));
                    continue;
                }
            };
            if !view.duplicate {
                ctx.violation(format!("outbox message {key} was never published"));
                continue;
            }
            ctx.report.outbox_messages += 1;
            let m: MessageView = match get(client, &format!("{url}/v1/messages/{}", view.id)).await
            {
                Ok(m) => m,
                Err(e) => {
                    ctx.violation(format!("outbox message {key} ({}): {e}", view.id));
                    continue;
                }
            };
            let parent_text = parent.to_string();
            if m.headers.get("sluice-parent") != Some(&parent_text)
                || m.headers.get("sluice-publisher").map(String::as_str) != Some("order-publish")
            {
                ctx.violation(format!("outbox message {key} has headers {:?}", m.headers));
            }
            ctx.deliveries(&m, &BTreeSet::from([*h]), false);
        }
    }

    // 5. Per-key order: per handler, each message's attempts start after the
    // previous message's last attempt finished.
    let mut keyed: BTreeMap<&str, Vec<Uuid>> = BTreeMap::new();
    for a in &acked {
        if let Some(k) = &a.ordering_key {
            keyed.entry(k.as_str()).or_default().push(a.id);
        }
    }
    for ids in keyed.values() {
        for h in HANDLERS.iter().filter(|h| h.topic == "keyed") {
            let mut previous: Option<(Uuid, u64)> = None;
            for id in ids {
                let Some(d) = by_id
                    .get(id)
                    .and_then(|m| m.deliveries.iter().find(|d| d.handler == h.name))
                else {
                    continue;
                };
                let first_start = d
                    .attempts
                    .iter()
                    .map(|a| ms("started_at", &a.started_at))
                    .min();
                let last_end = d
                    .attempts
                    .iter()
                    .filter_map(|a| a.finished_at.as_deref())
                    .map(|t| ms("finished_at", t))
                    .max();
                if let (Some((prev, end)), Some(start)) = (previous, first_start) {
                    ctx.report.ordering_pairs += 1;
                    if start < end {
                        ctx.violation(format!(
                            "{}: message {id} started at {start} before the previous one with its key ({prev}) finished at {end}",
                            h.name
                        ));
                    }
                }
                if let Some(end) = last_end {
                    previous = Some((*id, end));
                }
            }
        }
    }
    r.max_interrupted_per_kill = per_kill.values().copied().max().unwrap_or(0);
    r
}

/// Checks deliveries and attempts, counting as it goes.
struct Checker<'a> {
    explain: &'a dyn Explain,
    limits: Limits,
    report: &'a mut CrashReport,
    /// `interrupted` attempts per fault.
    per_kill: &'a mut BTreeMap<usize, usize>,
}

impl Checker<'_> {
    fn violation(&mut self, v: String) {
        self.report.violations.push(v);
    }

    fn deliveries(&mut self, m: &MessageView, expected: &BTreeSet<&str>, bad_payload: bool) {
        let handlers: BTreeSet<&str> = m.deliveries.iter().map(|d| d.handler.as_str()).collect();
        if handlers != *expected || m.deliveries.len() != expected.len() {
            self.violation(format!(
                "message {} has deliveries for {handlers:?}, expected one each for {expected:?}",
                m.id
            ));
        }
        let not_before = m.not_before.as_deref().map(|t| ms("not_before", t));
        for d in &m.deliveries {
            self.report.deliveries += 1;
            let def = handler(&d.handler);
            let max = def.retries + 1;
            let mut end: Option<&str> = None;
            let mut previous_finish = 0;
            for (i, a) in d.attempts.iter().enumerate() {
                let what = format!("{} / {} attempt {}", m.id, d.handler, a.number);
                let Some(outcome) = &a.outcome else {
                    self.violation(format!("{what}: still running after the drain"));
                    continue;
                };
                *self
                    .report
                    .attempts
                    .entry(outcome.kind().to_string())
                    .or_default() += 1;
                if a.number as usize != i + 1 || a.round != 0 {
                    self.violation(format!(
                        "{what}: numbered {} round {} at position {}",
                        a.number,
                        a.round,
                        i + 1
                    ));
                }
                if let Some(e) = end {
                    self.violation(format!("{what}: ran after a durable final outcome ({e})"));
                }
                let started = ms("started_at", &a.started_at);
                let finished = a
                    .finished_at
                    .as_deref()
                    .map_or(started, |t| ms("finished_at", t));
                if started < previous_finish {
                    self.violation(format!("{what}: overlaps the previous attempt"));
                }
                previous_finish = finished;
                if i == 0
                    && let Some(nb) = not_before
                    && started < nb
                {
                    self.violation(format!(
                        "{what}: started at {started}, before its time {nb}"
                    ));
                }
                match outcome {
                    Outcome::Interrupted { reason } => {
                        self.report.interrupted += 1;
                        *self
                            .report
                            .interrupted_by
                            .entry(reason.clone())
                            .or_default() += 1;
                        match self.explain.explain(d.id, a, reason, started, finished) {
                            Ok(fault) => *self.per_kill.entry(fault).or_default() += 1,
                            Err(why) => self.violation(format!(
                                "{what}: interrupted ({reason}, {started}..{finished}): {why}"
                            )),
                        }
                        if a.number >= max {
                            end = Some("dead");
                        }
                    }
                    outcome => {
                        // The sandbox's hard stop: no attempt that settled
                        // ran past its handler's timeout.
                        self.report.timeout_checks += 1;
                        if a.duration_ms.is_none_or(|t| t > self.limits.timeout_ms) {
                            self.violation(format!(
                                "{what}: ran {:?} ms, past its timeout of {} ms",
                                a.duration_ms, self.limits.timeout_ms
                            ));
                        }
                        let expected = def.behaviour.expect(a.number, bad_payload);
                        if *outcome != expected {
                            self.violation(format!("{what}: {outcome:?}, expected {expected:?}"));
                        }
                        end = match outcome {
                            Outcome::Ok => Some("succeeded"),
                            Outcome::Rejected => Some("dead"),
                            _ if a.number >= max => Some("dead"),
                            _ => None,
                        };
                    }
                }
            }
            match end {
                Some(state) if state == d.state => {}
                _ => self.violation(format!(
                    "{} / {}: state {} after attempts ending in {end:?}",
                    m.id, d.handler, d.state
                )),
            }
            if d.state == "dead" {
                self.report.dead += 1;
            }
        }
    }
}
