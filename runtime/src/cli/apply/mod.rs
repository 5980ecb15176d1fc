//! `sluice apply -f sluice.toml`: handlers as code. Reads the manifest
//! ([`manifest`]), runs each handler's `build` command, then makes the server
//! match ([`plan`]): registers what is missing, registers again what differs
//! (topic, module digest or policy), leaves alone what is the same (its
//! version does not move), and with `--prune` removes what the manifest no
//! longer names, after asking on a terminal (refused without `--yes`
//! otherwise). `--dry-run` prints the plan and changes nothing on the server.
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

pub mod manifest;
pub mod plan;

use manifest::Manifest;
use plan::{Action, Step};

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
    /// Also remove the server's handlers the manifest does not name, with all
    /// their deliveries; asks first on a terminal.
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
    let server: HandlersView = c.get("/v1/handlers").await?;
    let steps = plan::plan(&wanted, &server.handlers, &defaults.policy, a.prune)
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
    let removals: Vec<&Step> = steps
        .iter()
        .filter(|s| s.action == Action::Remove)
        .collect();
    if !removals.is_empty() && !a.yes {
        let names: Vec<&str> = removals.iter().map(|s| s.handler.as_str()).collect();
        let question = format!(
            "remove {} handler(s) ({}) with all their deliveries?",
            names.len(),
            names.join(", ")
        );
        if !confirm("remove handlers", &question)? {
            anyhow::bail!("nothing changed");
        }
    }
    for ((spec, wasm), step) in manifest.handlers.iter().zip(modules).zip(&steps) {
        if matches!(step.action, Action::Create | Action::Update) {
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
    }
    for step in &removals {
        let _: RemovedView = c
            .send(c.request(Method::DELETE, &format!("/v1/handlers/{}", step.handler)))
            .await?;
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

/// One line per step: the action, the handler, its topic, what changes.
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
            "{} {} (topic {})",
            style.paint(colour, &word),
            s.handler,
            s.topic
        );
        if !s.changes.is_empty() {
            line.push_str(&format!(": {}", s.changes.join(", ")));
        }
        out.push_str(&line);
        out.push('\n');
    }
    if steps.is_empty() {
        out.push_str("the manifest names no handlers\n");
    }
    out
}
