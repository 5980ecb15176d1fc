//! What each client command does: one request (or a few), then JSON or human
//! output.

use std::io::{IsTerminal, Write as _};
use std::time::Instant;

use anyhow::Context as _;
use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::client::{Client, ServerError};
use super::pace::{self, Pacer};
use super::render::{self, Color, Style};
use super::{
    AttemptsArgs, Command, Conn, DeadFilterArgs, DlqArgs, DlqCommand, EnqueueArgs, HandlersArgs,
    HandlersCommand, RegisterArgs, ReplayArgs, StatsArgs, StatusArgs, read_payload,
};
use crate::api::POLICY_HEADER;
use crate::api::dto::{
    AttemptsView, CountView, DeadFilterView, DeadLettersView, DeliveryView, EnqueuedView,
    HandlerView, HandlersView, MessageView, RemovedView, StatsView,
};

/// Output of one command: JSON or human, colour decided once.
struct Out {
    json: bool,
    style: Style,
}

impl Out {
    fn new(conn: &Conn) -> Out {
        Out {
            json: conn.json,
            style: Style::detect(),
        }
    }

    /// Prints `doc` as JSON, or `human(doc)` as text.
    fn print<T: Serialize>(&self, doc: &T, human: impl FnOnce(&T, &Style) -> String) {
        if self.json {
            let text = serde_json::to_string_pretty(doc).expect("views serialize");
            println!("{text}");
        } else {
            print!("{}", human(doc, &self.style));
        }
    }
}

fn client(conn: &Conn) -> anyhow::Result<Client> {
    Client::new(&conn.url, conn.token.clone())
}

/// Runs a client command.
pub(super) async fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Register(args) => register(args).await,
        Command::Handlers(args) => handlers(args).await,
        Command::Enqueue(args) => enqueue(args).await,
        Command::Status(args) => status(args).await,
        Command::Attempts(args) => attempts(args).await,
        Command::Dlq(args) => dlq(args).await,
        Command::Replay(args) => replay(args).await,
        Command::Stats(args) => stats(args).await,
        Command::Serve(_) | Command::Run(_) | Command::Migrate(_) | Command::Schedules(_) => {
            unreachable!("dispatched by cli::execute")
        }
    }
}

async fn register(a: RegisterArgs) -> anyhow::Result<()> {
    let wasm =
        std::fs::read(&a.module).with_context(|| format!("reading {}", a.module.display()))?;
    // Only the options given: the server fills in its defaults for the rest.
    let mut policy = Map::new();
    let ms = |d: std::time::Duration| json!(d.as_millis() as u64);
    let mut set = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            policy.insert(k.to_string(), v);
        }
    };
    set("timeout_ms", a.timeout.map(ms));
    set("lease_ms", a.lease.map(ms));
    set("memory_bytes", a.memory.map(|m| json!(m)));
    set("fuel", a.fuel.map(|f| json!(f)));
    set("retries", a.retries.map(|r| json!(r)));
    set("backoff_ms", a.backoff.map(ms));
    set("backoff_max_ms", a.backoff_max.map(ms));
    set("concurrency", a.concurrency.map(|c| json!(c)));
    if !a.env.is_empty() {
        let env: Map<String, Value> = a.env.into_iter().map(|(k, v)| (k, json!(v))).collect();
        set("env", Some(Value::Object(env)));
    }
    set("egress", a.egress.json());
    if crate::sandbox::is_component(&wasm) {
        // The server answers once the component is compiled (and cached).
        eprintln!(
            "sluice: {} is a component: the server compiles it before answering \
             (tens of seconds for a Python or JavaScript one; once, then cached)",
            a.module.display()
        );
    }
    let c = client(&a.conn)?;
    let request = c
        .request(Method::PUT, &format!("/v1/handlers/{}", a.name))
        .query(&[("topic", &a.topic)])
        .header(CONTENT_TYPE, "application/wasm")
        .header(POLICY_HEADER, Value::Object(policy).to_string())
        .body(wasm);
    let h: HandlerView = c.send(request).await?;
    Out::new(&a.conn).print(&h, |h, s| {
        format!(
            "registered {} v{} on topic {} (module {})\n",
            s.paint(Color::Bold, &h.name),
            h.version,
            h.topic,
            &h.module_sha256[..h.module_sha256.len().min(12)]
        )
    });
    Ok(())
}

async fn handlers(a: HandlersArgs) -> anyhow::Result<()> {
    let c = client(&a.conn)?;
    let out = Out::new(&a.conn);
    match a.command {
        HandlersCommand::List => {
            let list: HandlersView = c.get("/v1/handlers").await?;
            out.print(&list, |l, s| render::handlers(&l.handlers, s));
        }
        HandlersCommand::Show { name } => {
            let h: HandlerView = c.get(&format!("/v1/handlers/{name}")).await?;
            out.print(&h, render::handler);
        }
        HandlersCommand::Remove { name } => {
            let r: RemovedView = c
                .send(c.request(Method::DELETE, &format!("/v1/handlers/{name}")))
                .await?;
            out.print(&r, |r, _| {
                format!("removed {} with {} deliveries\n", r.handler, r.deliveries)
            });
        }
        HandlersCommand::Pause { name } => {
            let h: HandlerView = c.post(&format!("/v1/handlers/{name}/pause")).await?;
            out.print(&h, |h, _| format!("paused {}\n", h.name));
        }
        HandlersCommand::Resume { name } => {
            let h: HandlerView = c.post(&format!("/v1/handlers/{name}/resume")).await?;
            out.print(&h, |h, _| format!("resumed {}\n", h.name));
        }
    }
    Ok(())
}

async fn enqueue(a: EnqueueArgs) -> anyhow::Result<()> {
    let payload = read_payload(a.data, a.file.as_ref())?;
    let c = client(&a.conn)?;
    let mut request = c
        .request(Method::POST, &format!("/v1/topics/{}/messages", a.topic))
        .body(payload);
    if let Some(k) = &a.key {
        request = request.header("Sluice-Ordering-Key", k);
    }
    if let Some(k) = &a.idempotency_key {
        request = request.header("Idempotency-Key", k);
    }
    if let Some(d) = a.delay {
        request = request.header("Sluice-Delay", format!("{}ms", d.as_millis()));
    }
    if let Some(at) = &a.at {
        request = request.header("Sluice-Not-Before", at);
    }
    for (k, v) in &a.headers {
        request = request.header(format!("Sluice-Header-{k}"), v);
    }
    let e: EnqueuedView = c.send(request).await?;
    if e.duplicate && !a.conn.json {
        eprintln!("note: duplicate idempotency key; this is the original message's id");
    }
    Out::new(&a.conn).print(&e, |e, _| format!("{}\n", e.id));
    Ok(())
}

async fn status(a: StatusArgs) -> anyhow::Result<()> {
    let m: MessageView = client(&a.conn)?
        .get(&format!("/v1/messages/{}", a.message_id))
        .await?;
    Out::new(&a.conn).print(&m, render::message);
    Ok(())
}

async fn attempts(a: AttemptsArgs) -> anyhow::Result<()> {
    let v: AttemptsView = client(&a.conn)?
        .get(&format!("/v1/deliveries/{}/attempts", a.delivery_id))
        .await?;
    Out::new(&a.conn).print(&v, |v, s| {
        let mut text = format!("delivery {}  handler {}\n", v.delivery_id, v.handler);
        if v.attempts.is_empty() {
            text.push_str("no attempts yet\n");
        }
        for at in &v.attempts {
            text.push_str(&render::attempt(at, s, Some(render::EXCERPT_BYTES)));
        }
        text
    });
    Ok(())
}

fn filter_view(f: DeadFilterArgs) -> DeadFilterView {
    DeadFilterView {
        handler: f.handler,
        since: f.since,
        until: f.until,
        outcome: f.outcome,
    }
}

async fn dlq(a: DlqArgs) -> anyhow::Result<()> {
    let c = client(&a.conn)?;
    let out = Out::new(&a.conn);
    match a.command {
        DlqCommand::List {
            filter,
            limit,
            cursor,
        } => {
            let page = dlq_page(&c, &filter_view(filter), limit, cursor).await?;
            out.print(&page, render::dead_letters);
        }
        DlqCommand::Show { delivery_id } => {
            let d: DeliveryView = c.get(&format!("/v1/dlq/{delivery_id}")).await?;
            out.print(&d, render::delivery);
        }
        DlqCommand::Replay {
            delivery_id: Some(id),
            ..
        } => {
            let n: CountView = c.post(&format!("/v1/dlq/{id}/replay")).await?;
            out.print(&n, |_, _| format!("replayed {id}\n"));
        }
        DlqCommand::Replay {
            filter,
            rate: Some(rate),
            ..
        } => {
            let n = replay_at_rate(&c, &filter_view(filter), rate).await?;
            out.print(&n, |n, _| {
                format!("replayed {} (skipped {})\n", n.count, n.skipped)
            });
        }
        DlqCommand::Replay { filter, .. } => {
            let request = c
                .request(Method::POST, "/v1/dlq/replay")
                .json(&filter_view(filter));
            let n: CountView = c.send(request).await?;
            out.print(&n, |n, _| {
                format!("replayed {} (skipped {})\n", n.count, n.skipped)
            });
        }
        DlqCommand::Purge {
            delivery_id,
            filter,
            yes,
            ..
        } => {
            let what = match (&delivery_id, &filter.handler) {
                (Some(id), _) => format!("dead delivery {id}"),
                (None, Some(h)) => format!("every matching dead delivery of handler {h}"),
                (None, None) => "every matching dead delivery".to_string(),
            };
            if !yes && !confirm(&format!("Purge {what}? This cannot be undone."))? {
                anyhow::bail!("purge cancelled");
            }
            let n: CountView = match delivery_id {
                Some(id) => {
                    c.send(c.request(Method::DELETE, &format!("/v1/dlq/{id}")))
                        .await?
                }
                None => {
                    let request = c
                        .request(Method::POST, "/v1/dlq/purge")
                        .json(&filter_view(filter));
                    c.send(request).await?
                }
            };
            out.print(&n, |n, _| format!("purged {}\n", n.count));
        }
    }
    Ok(())
}

async fn dlq_page(
    c: &Client,
    f: &DeadFilterView,
    limit: usize,
    cursor: Option<Uuid>,
) -> anyhow::Result<DeadLettersView> {
    let mut q: Vec<(&str, String)> = vec![("limit", limit.to_string())];
    for (k, v) in [
        ("handler", &f.handler),
        ("since", &f.since),
        ("until", &f.until),
        ("outcome", &f.outcome),
    ] {
        if let Some(v) = v {
            q.push((k, v.clone()));
        }
    }
    if let Some(cursor) = cursor {
        q.push(("cursor", cursor.to_string()));
    }
    c.send(c.request(Method::GET, "/v1/dlq").query(&q)).await
}

/// Replays every matching dead delivery, at most `rate` per second: lists them
/// first (the cursor needs them to stay dead while paging), then replays one by
/// one with a progress line on a terminal.
async fn replay_at_rate(c: &Client, f: &DeadFilterView, rate: f64) -> anyhow::Result<CountView> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = dlq_page(c, f, 1000, cursor).await?;
        ids.extend(page.dead.iter().map(|d| d.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let progress = std::io::stderr().is_terminal();
    let mut pacer = Pacer::new(rate);
    let started = Instant::now();
    let mut n = CountView::default();
    for (i, id) in ids.iter().enumerate() {
        tokio::time::sleep(pacer.wait(started.elapsed())).await;
        match c.post::<CountView>(&format!("/v1/dlq/{id}/replay")).await {
            Ok(_) => n.count += 1,
            Err(e)
                if e.downcast_ref::<ServerError>()
                    .is_some_and(|s| s.code == "not_dead" || s.code == "unknown_delivery") =>
            {
                n.skipped += 1;
            }
            Err(e) => {
                if progress {
                    eprintln!();
                }
                return Err(e.context(format!("after replaying {} of {}", n.count, ids.len())));
            }
        }
        if progress {
            let line = pace::progress(i + 1, ids.len(), n.skipped, started.elapsed(), 30);
            eprint!("\r{line} ");
            let _ = std::io::stderr().flush();
        }
    }
    if progress && !ids.is_empty() {
        eprintln!();
    }
    Ok(n)
}

/// Asks on the terminal; refuses when stdin is not one.
fn confirm(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("refusing to purge without --yes: stdin is not a terminal to confirm on");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

async fn replay(a: ReplayArgs) -> anyhow::Result<()> {
    let c = client(&a.conn)?;
    let request = c
        .request(Method::POST, &format!("/v1/handlers/{}/replay", a.handler))
        .query(&[("since", &a.since)]);
    let n: CountView = c.send(request).await?;
    Out::new(&a.conn).print(&n, |n, _| {
        format!(
            "re-delivering {} messages to {} (enqueued since {})\n",
            n.count, a.handler, a.since
        )
    });
    Ok(())
}

async fn stats(a: StatsArgs) -> anyhow::Result<()> {
    let s: StatsView = client(&a.conn)?.get("/v1/stats").await?;
    Out::new(&a.conn).print(&s, render::stats);
    Ok(())
}
