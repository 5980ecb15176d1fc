//! `sluice schedules create|list|show|pause|resume|trigger|remove`: a client
//! of `/v1/schedules` (docs/cli.md).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde::Serialize;

use super::client::Client;
use super::render::{Color, Style, Table};
use super::{Conn, key_value, read_payload};
use crate::api::schedules::{
    OccurrenceView, RemovedScheduleView, ScheduleDetailView, ScheduleRequest, ScheduleView,
    SchedulesView, payload_fields,
};
use crate::store::{CatchUp, Overlap};
use crate::units::parse_duration;

/// `sluice schedules`.
#[derive(Debug, Args)]
pub struct SchedulesArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    command: SchedulesCommand,
}

/// `--catch-up`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum CatchUpArg {
    Skip,
    Latest,
    All,
}

/// `--overlap`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum OverlapArg {
    Allow,
    Skip,
    BufferOne,
}

/// `sluice schedules ...`.
#[derive(Debug, Subcommand)]
// Parsed once per process: the size of `Create` does not matter.
#[allow(clippy::large_enum_variant)]
enum SchedulesCommand {
    /// Create or replace (by id) a schedule; replacing keeps its cursor and history.
    #[command(alias = "put")]
    Create {
        /// Schedule id (`[a-z0-9][a-z0-9._-]{0,127}`).
        id: String,
        /// Cron expression, 5 fields or 6 with seconds first, e.g. "0 9 * * MON-FRI".
        #[arg(long)]
        cron: String,
        /// Topic every firing is enqueued on (must exist).
        #[arg(long)]
        topic: String,
        /// IANA time zone the expression is read in [server default: UTC].
        #[arg(long, alias = "tz")]
        timezone: Option<String>,
        /// Payload of every firing; `-` reads stdin.
        #[arg(long, conflicts_with = "file")]
        data: Option<String>,
        /// Read the payload from a file.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Message header (repeatable).
        #[arg(long = "header", value_name = "K=V", value_parser = key_value)]
        headers: Vec<(String, String)>,
        /// Ordering key of every firing.
        #[arg(long)]
        key: Option<String>,
        /// Missed occurrences after downtime [server default: latest].
        #[arg(long, value_enum)]
        catch_up: Option<CatchUpArg>,
        /// Most missed occurrences fired by `--catch-up all` [server default: 100].
        #[arg(long)]
        max_catch_up: Option<u32>,
        /// Occurrences older than this are never caught up [server default: 24h].
        #[arg(long, value_parser = parse_duration)]
        catch_up_window: Option<Duration>,
        /// An occurrence while the previous one runs [server default: skip].
        #[arg(long, value_enum)]
        overlap: Option<OverlapArg>,
        /// No occurrence before this RFC 3339 time.
        #[arg(long)]
        start: Option<String>,
        /// No occurrence after this RFC 3339 time.
        #[arg(long)]
        end: Option<String>,
        /// Delay each firing by up to this, e.g. 30s [server default: 0].
        #[arg(long, value_parser = parse_duration)]
        jitter: Option<Duration>,
    },
    /// Every schedule with its next time.
    #[command(alias = "ls")]
    List,
    /// One schedule: the next 5 times and the last occurrences with their messages.
    Show {
        /// Schedule id.
        id: String,
    },
    /// Stop firing (occurrences pass as missed, reason `paused`).
    Pause {
        /// Schedule id.
        id: String,
    },
    /// Fire again from the next occurrence.
    Resume {
        /// Schedule id.
        id: String,
    },
    /// Enqueue one firing now with its own key; the cursor does not move.
    Trigger {
        /// Schedule id.
        id: String,
    },
    /// Remove a schedule (the messages it enqueued stay).
    #[command(alias = "rm")]
    Remove {
        /// Schedule id.
        id: String,
    },
}

/// Runs `sluice schedules ...`.
pub(super) async fn execute(a: SchedulesArgs) -> anyhow::Result<()> {
    let c = Client::new(&a.conn.url, a.conn.token.clone())?;
    let style = Style::detect();
    let json = a.conn.json;
    let path = |id: &str, verb: &str| format!("/v1/schedules/{id}{verb}");
    match a.command {
        SchedulesCommand::Create {
            id,
            cron,
            topic,
            timezone,
            data,
            file,
            headers,
            key,
            catch_up,
            max_catch_up,
            catch_up_window,
            overlap,
            start,
            end,
            jitter,
        } => {
            let (payload, payload_base64) = payload_fields(read_payload(data, file.as_ref())?);
            let request = ScheduleRequest {
                cron,
                timezone,
                topic,
                payload,
                payload_base64,
                headers: headers.into_iter().collect(),
                ordering_key: key,
                catch_up: catch_up.map(|c| match c {
                    CatchUpArg::Skip => CatchUp::Skip,
                    CatchUpArg::Latest => CatchUp::Latest,
                    CatchUpArg::All => CatchUp::All,
                }),
                max_catch_up,
                catch_up_window_ms: catch_up_window.map(|d| d.as_millis() as u64),
                overlap: overlap.map(|o| match o {
                    OverlapArg::Allow => Overlap::Allow,
                    OverlapArg::Skip => Overlap::Skip,
                    OverlapArg::BufferOne => Overlap::BufferOne,
                }),
                start,
                end,
                jitter_ms: jitter.map(|d| d.as_millis() as u64),
            };
            let rb = c.request(Method::PUT, &path(&id, "")).json(&request);
            let v: ScheduleView = c.send(rb).await?;
            print(json, &v, |v| {
                format!(
                    "schedule {} ({} in {}) onto topic {}; next {}\n",
                    style.paint(Color::Bold, &v.id),
                    v.cron,
                    v.timezone,
                    v.topic,
                    v.next_local.first().map_or("never", String::as_str)
                )
            });
        }
        SchedulesCommand::List => {
            let v: SchedulesView = c.get("/v1/schedules").await?;
            print(json, &v, |v| list(&v.schedules, &style));
        }
        SchedulesCommand::Show { id } => {
            let v: ScheduleDetailView = c.get(&path(&id, "")).await?;
            print(json, &v, |v| show(v, &style));
        }
        SchedulesCommand::Pause { id } => pause(&c, json, &path(&id, "/pause")).await?,
        SchedulesCommand::Resume { id } => pause(&c, json, &path(&id, "/resume")).await?,
        SchedulesCommand::Trigger { id } => {
            let o: OccurrenceView = c.post(&path(&id, "/trigger")).await?;
            print(json, &o, |o| {
                let m = o
                    .message_id
                    .map_or_else(|| "-".to_string(), |m| m.to_string());
                format!("triggered {id}: message {m}\n")
            });
        }
        SchedulesCommand::Remove { id } => {
            let rb = c.request(Method::DELETE, &path(&id, ""));
            let v: RemovedScheduleView = c.send(rb).await?;
            print(json, &v, |v| format!("removed schedule {}\n", v.schedule));
        }
    }
    Ok(())
}

/// `pause` or `resume` (`path` says which).
async fn pause(c: &Client, json: bool, path: &str) -> anyhow::Result<()> {
    let v: ScheduleView = c.post(path).await?;
    print(json, &v, |v| {
        let now = if v.paused { "paused" } else { "resumed" };
        format!("schedule {} {now}\n", v.id)
    });
    Ok(())
}

/// The server's document as JSON, or `human(doc)`.
fn print<T: Serialize>(json: bool, doc: &T, human: impl FnOnce(&T) -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(doc).expect("views serialize")
        );
    } else {
        print!("{}", human(doc));
    }
}

/// A policy as the API spells it (`buffer_one`).
fn name<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// `catch_up 2, overlap 1`, or `none`.
fn missed(s: &ScheduleView) -> String {
    if s.missed.is_empty() {
        return "none".into();
    }
    let parts: Vec<String> = s.missed.iter().map(|(r, n)| format!("{r} {n}")).collect();
    parts.join(", ")
}

/// `sluice schedules list`.
fn list(schedules: &[ScheduleView], style: &Style) -> String {
    let mut t = Table::new(&[
        "ID", "CRON", "TIMEZONE", "TOPIC", "STATUS", "NEXT", "FIRED", "MISSED",
    ]);
    for s in schedules {
        t.row_colored(vec![
            (s.id.clone(), None),
            (s.cron.clone(), None),
            (s.timezone.clone(), None),
            (s.topic.clone(), None),
            if s.paused {
                ("paused".into(), Some(Color::Yellow))
            } else {
                ("active".into(), None)
            },
            (
                s.next_local.first().cloned().unwrap_or_else(|| "-".into()),
                None,
            ),
            (s.fired.to_string(), None),
            (s.missed.values().sum::<u64>().to_string(), None),
        ]);
    }
    t.render(style)
}

/// `sluice schedules show`.
fn show(d: &ScheduleDetailView, style: &Style) -> String {
    let s = &d.schedule;
    let mut out = format!(
        "{}  {} in {} onto topic {}{}\n  catch-up {} (max {}, window {}), overlap {}, jitter {}\n  fired {}, missed {}, cursor {}\n\nnext:\n",
        style.paint(Color::Bold, &s.id),
        s.cron,
        s.timezone,
        s.topic,
        if s.paused { " (paused)" } else { "" },
        name(&s.catch_up),
        s.max_catch_up,
        super::render::millis(s.catch_up_window_ms),
        name(&s.overlap),
        super::render::millis(s.jitter_ms),
        s.fired,
        missed(s),
        s.cursor,
    );
    for (utc, local) in s.next.iter().zip(&s.next_local) {
        out.push_str(&format!("  {local}  ({utc})\n"));
    }
    out.push_str("\nlast occurrences:\n");
    let mut t = Table::new(&["SCHEDULED FOR", "KIND", "COUNT", "MESSAGE"]);
    for o in &d.occurrences {
        let kind = match &o.reason {
            Some(r) => format!("{} ({r})", o.kind),
            None if o.duplicate => format!("{} (duplicate)", o.kind),
            None => o.kind.clone(),
        };
        let when = match &o.last {
            Some(last) => format!("{} .. {last}", o.scheduled_for),
            None => o.scheduled_for.clone(),
        };
        let color = (o.kind == "missed").then_some(Color::Yellow);
        t.row_colored(vec![
            (when, None),
            (kind, color),
            (o.count.to_string(), None),
            (
                o.message_id.map_or_else(|| "-".into(), |m| m.to_string()),
                None,
            ),
        ]);
    }
    out.push_str(&t.render(style));
    out
}
