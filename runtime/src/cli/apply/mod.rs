//! `sluice apply -f sluice.toml`: handlers and schedules as code. Reads the
//! manifest ([`manifest`]), runs each handler's `build` command, then makes
//! the server match ([`plan`]): creates what is missing, writes again what
//! differs (a handler's module digest or policy, a schedule's spec or pause),
//! leaves alone what is the same (a handler's version, a schedule's revision
//! do not move), and with `--prune` removes what the manifest no longer
//! names, after asking on a terminal (refused without `--yes` otherwise).
//! `--dry-run` prints the plan and changes nothing on the server.
//!
//! # Module map
//! - [`manifest`]: `sluice.toml`, read and checked, errors naming file, entry and field.
//! - [`plan`]: the create / update / unchanged / remove steps, computed without I/O.
//! - this file: the command (build, fetch, plan, confirm, apply, print).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use clap::Args;
use reqwest::Method;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Conn;
use super::commands::{confirm, put_handler};
use super::render::{Color, Style};
use crate::api::dto::{DefaultsView, HandlersView, RemovedView};
use crate::api::schedules::{RemovedScheduleView, ScheduleView, SchedulesView};

pub mod manifest;
pub mod plan;

use manifest::Manifest;
use plan::{Action, Kind, Step};

/// `sluice apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    conn: Conn,
    /// The manifest.
    #[arg(
        short = 'f',
        long = "file",
        value_name = "sluice.toml",
        default_value = "sluice.toml"
    )]
    file: PathBuf,
    /// Print the plan (create / update / unchanged / remove) and change nothing
    /// on the server (build commands still run: the modules' digests decide).
    #[arg(long)]
    dry_run: bool,
    /// Also remove the server's handlers (with all their deliveries) and
    /// schedules the manifest does not name; asks first on a terminal.
    #[arg(long)]
    prune: bool,
    /// With --prune: do not ask (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
}

/// The JSON of `apply --json`.
#[derive(Debug, Serialize)]
struct Report {
    /// The manifest.
    manifest: PathBuf,
    /// False for `--dry-run`.
    applied: bool,
    /// Every step, in order.
    steps: Vec<Step>,
}

/// Runs `sluice apply`.
pub(super) async fn apply(a: ApplyArgs) -> anyhow::Result<()> {
    let manifest = Manifest::load(&a.file)?;
    let dir = a.file.parent().unwrap_or(Path::new("."));
    let mut modules = Vec::new();
    for spec in &manifest.handlers {
        if let Some(build) = &spec.build {
            run_build(dir, &spec.name, build)?;
        }
        let wasm = std::fs::read(&spec.module).with_context(|| {
            format!(
                "{}: handler {:?}: module: cannot read {}",
                manifest.path.display(),
                spec.name,
                spec.module.display()
            )
        })?;
        modules.push(wasm);
    }
    let wanted: Vec<plan::Wanted<'_>> = manifest
        .handlers
        .iter()
        .zip(&modules)
        .map(|(spec, wasm)| (spec, hex::encode(Sha256::digest(wasm))))
        .collect();

    let c = super::client::Client::new(&a.conn.url, a.conn.token.clone())?;
    let defaults: DefaultsView = c.get("/v1/defaults").await?;
    let handlers: HandlersView = c.get("/v1/handlers").await?;
    let schedules: SchedulesView = c.get("/v1/schedules").await?;
    let server = plan::OnServer {
        handlers: &handlers.handlers,
        schedules: &schedules.schedules,
        defaults: &defaults.policy,
    };
    let steps = plan::plan(&wanted, &manifest.schedules, server, a.prune)
        .map_err(|e| anyhow::anyhow!("{}: {e}", manifest.path.display()))?;
    let style = Style::detect();
    if !a.conn.json {
        print!("{}", render_plan(&steps, &style));
    }
    let report = |applied, steps| Report {
        manifest: manifest.path.clone(),
        applied,
        steps,
    };
    if a.dry_run {
        if a.conn.json {
            print_json(&report(false, steps));
        } else {
            println!("dry run: nothing changed");
        }
        return Ok(());
    }
    let removals = |kind| -> Vec<&str> {
        steps
            .iter()
            .filter(|s| s.action == Action::Remove && s.kind == kind)
            .map(|s| s.name.as_str())
            .collect()
    };
    let (gone_handlers, gone_schedules) = (removals(Kind::Handler), removals(Kind::Schedule));
    let nothing_removed = gone_handlers.is_empty() && gone_schedules.is_empty();
    if !nothing_removed && !a.yes {
        let mut what = Vec::new();
        if !gone_handlers.is_empty() {
            what.push(format!(
                "{} handler(s) ({}) with all their deliveries",
                gone_handlers.len(),
                gone_handlers.join(", ")
            ));
        }
        if !gone_schedules.is_empty() {
            what.push(format!(
                "{} schedule(s) ({})",
                gone_schedules.len(),
                gone_schedules.join(", ")
            ));
        }
        let verb = match (gone_handlers.is_empty(), gone_schedules.is_empty()) {
            (false, false) => "remove handlers and schedules",
            (false, true) => "remove handlers",
            _ => "remove schedules",
        };
        if !confirm(verb, &format!("remove {}?", what.join(" and ")))? {
            anyhow::bail!("nothing changed");
        }
    }
    let mut modules: Vec<Option<Vec<u8>>> = modules.into_iter().map(Some).collect();
    for step in &steps {
        match (step.kind, step.action) {
            (_, Action::Unchanged) => {}
            (Kind::Handler, Action::Create | Action::Update) => {
                let i = manifest
                    .handlers
                    .iter()
                    .position(|h| h.name == step.name)
                    .expect("a handler step comes from the manifest");
                let spec = &manifest.handlers[i];
                let wasm = modules[i].take().expect("each handler is one step");
                put_handler(
                    &c,
                    &spec.name,
                    &spec.topic,
                    &spec.policy,
                    wasm,
                    &spec.module,
                )
                .await?;
            }
            (Kind::Schedule, Action::Create | Action::Update) => {
                let want = manifest
                    .schedules
                    .iter()
                    .find(|s| s.id == step.name)
                    .expect("a schedule step comes from the manifest");
                put_schedule(&c, want, step).await?;
            }
            (Kind::Schedule, Action::Remove) => {
                let path = format!("/v1/schedules/{}", step.name);
                let _: RemovedScheduleView = c.send(c.request(Method::DELETE, &path)).await?;
            }
            (Kind::Handler, Action::Remove) => {
                let path = format!("/v1/handlers/{}", step.name);
                let _: RemovedView = c.send(c.request(Method::DELETE, &path)).await?;
            }
        }
    }
    if a.conn.json {
        print_json(&report(true, steps));
    } else {
        let count = |action| steps.iter().filter(|s| s.action == action).count();
        println!(
            "applied: {} created, {} updated, {} unchanged, {} removed",
            count(Action::Create),
            count(Action::Update),
            count(Action::Unchanged),
            count(Action::Remove)
        );
    }
    Ok(())
}

/// Creates or updates one schedule: `PUT` when it is new or its spec differs
/// (replacing keeps its cursor and history), then pause or resume when the
/// manifest's `paused` differs from what the server has.
async fn put_schedule(
    c: &super::client::Client,
    want: &manifest::ScheduleEntrySpec,
    step: &Step,
) -> anyhow::Result<()> {
    let entry = |e: anyhow::Error| anyhow::anyhow!("schedule {:?}: {e}", want.id);
    let path = format!("/v1/schedules/{}", want.id);
    let spec_differs = step.action == Action::Create || step.changes.iter().any(|c| c != "paused");
    // Only a pause differing: the server's state is the other one.
    let mut paused_now = None;
    if spec_differs {
        let rb = c.request(Method::PUT, &path).json(&want.request);
        let v: ScheduleView = c.send(rb).await.map_err(entry)?;
        paused_now = Some(v.paused);
    }
    if let Some(paused) = want.paused
        && paused_now != Some(paused)
    {
        let verb = if paused { "pause" } else { "resume" };
        let _: ScheduleView = c.post(&format!("{path}/{verb}")).await.map_err(entry)?;
    }
    Ok(())
}

/// Runs a handler's build command with `sh -c` in the manifest's directory;
/// its output goes to stderr, so `--json` stays one document.
fn run_build(dir: &Path, handler: &str, build: &str) -> anyhow::Result<()> {
    eprintln!("sluice: building {handler}: {build}");
    let status = Command::new("sh")
        .arg("-c")
        .arg(build)
        .current_dir(dir)
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("handler {handler:?}: build: cannot run `{build}`"))?;
    if !status.success() {
        anyhow::bail!("handler {handler:?}: build: `{build}` failed ({status})");
    }
    Ok(())
}

fn print_json<T: Serialize>(doc: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(doc).expect("plans serialize")
    );
}

/// One line per step: the action, the kind and name, its topic, what changes.
fn render_plan(steps: &[Step], style: &Style) -> String {
    let mut out = String::new();
    for s in steps {
        let colour = match s.action {
            Action::Create => Color::Green,
            Action::Update => Color::Yellow,
            Action::Unchanged => Color::Dim,
            Action::Remove => Color::Red,
        };
        let word = format!("{:<9}", s.action.word());
        let mut line = format!(
            "{} {} {} (topic {})",
            style.paint(colour, &word),
            s.kind.word(),
            s.name,
            s.topic
        );
        if !s.changes.is_empty() {
            line.push_str(&format!(": {}", s.changes.join(", ")));
        }
        out.push_str(&line);
        out.push('\n');
    }
    if steps.is_empty() {
        out.push_str("the manifest names no handlers and no schedules\n");
    }
    out
}
