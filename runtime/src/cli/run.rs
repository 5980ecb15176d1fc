//! `sluice run FILE.wasm`: one local invocation under the same sandbox as the
//! server, for handler authors. Prints the attempt (the same rendering as
//! `status`), published messages and guest logs, and exits as the module did:
//! 0 ok, 65 rejected, the guest's status for any other exit, 1 otherwise.

use std::process::ExitCode;

use anyhow::Context as _;
use bytes::Bytes;
use serde::Serialize;

use super::RunArgs;
use super::render::{self, Color, Style};
use crate::api::dto::AttemptView;
use crate::clock::{Clock as _, SystemClock};
use crate::outcome::Outcome;
use crate::sandbox::{
    GuestLog, GuestMetadata, Invocation, Limits, Sandbox, SandboxConfig, is_component,
};

/// The JSON document of `sluice run --json`.
#[derive(Debug, Serialize)]
struct RunView {
    attempt: AttemptView,
    published: Vec<PublishedView>,
    logs: Vec<GuestLog>,
    logs_truncated: bool,
}

#[derive(Debug, Serialize)]
struct PublishedView {
    topic: String,
    payload: String,
    ordering_key: Option<String>,
    delay_ms: Option<u64>,
}

pub(super) async fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let wasm =
        std::fs::read(&a.module).with_context(|| format!("reading {}", a.module.display()))?;
    let stdin = super::read_payload(a.data, a.file.as_ref())?;
    let egress = a.egress.policy()?;
    let defaults = Limits::default();
    let limits = Limits {
        timeout: a.timeout.unwrap_or(defaults.timeout),
        memory_bytes: a.memory.unwrap_or(defaults.memory_bytes),
        fuel: a.fuel,
    };
    let cache_dir = a
        .cache_dir
        .unwrap_or_else(|| crate::config::ServerConfig::default().module_cache_dir());
    let sandbox = Sandbox::new(SandboxConfig {
        pool_instances: 1,
        fuel: a.fuel.is_some(),
        cache_dir: Some(cache_dir.clone()),
        ..SandboxConfig::default()
    })?;
    if sandbox.needs_compile(&wasm) && is_component(&wasm) {
        eprintln!(
            "sluice: compiling {} ({:.1} MB component; tens of seconds for Python or \
             JavaScript, once: cached in {})",
            a.module.display(),
            wasm.len() as f64 / 1e6,
            cache_dir.display()
        );
    }
    let module = sandbox.load(&wasm, &limits)?;
    let handler = a.handler.unwrap_or_else(|| {
        a.module
            .file_stem()
            .map_or("local".into(), |s| s.to_string_lossy().into_owned())
    });
    let id = uuid::Uuid::now_v7().to_string();
    let started = SystemClock.now();
    let invocation = Invocation {
        stdin: Bytes::from(stdin),
        metadata: GuestMetadata {
            topic: a.topic,
            handler,
            idempotency_key: id.clone(),
            message_id: id,
            ordering_key: a.key,
            attempt: 1,
            max_attempts: 1,
            enqueued_at: started.to_rfc3339(),
            headers: Vec::new(),
        },
        env: a.env,
        limits,
        egress,
    };
    let x = sandbox.invoke(&module, invocation).await?;
    let code = exit_code(&x.outcome);
    let view = RunView {
        attempt: AttemptView {
            number: 1,
            round: 0,
            started_at: started.to_rfc3339(),
            finished_at: Some(SystemClock.now().to_rfc3339()),
            outcome: Some(x.outcome),
            stdout: String::from_utf8_lossy(&x.stdout.bytes).into_owned(),
            stdout_truncated: x.stdout.truncated,
            stderr: String::from_utf8_lossy(&x.stderr.bytes).into_owned(),
            stderr_truncated: x.stderr.truncated,
            duration_ms: Some(x.duration.as_millis() as u64),
            module_sha256: Some(module.sha256().to_string()),
            peak_memory_bytes: Some(x.peak_memory_bytes),
            fuel_used: x.fuel_used,
            egress: x.egress,
        },
        published: x
            .published
            .into_iter()
            .map(|p| PublishedView {
                topic: p.topic,
                payload: String::from_utf8_lossy(&p.payload).into_owned(),
                ordering_key: p.ordering_key,
                delay_ms: p.delay.map(|d| d.as_millis() as u64),
            })
            .collect(),
        logs: x.logs,
        logs_truncated: x.logs_truncated,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{}", human(&view, &Style::detect()));
    }
    Ok(ExitCode::from(code))
}

fn human(v: &RunView, style: &Style) -> String {
    let mut out = render::attempt(&v.attempt, style, None);
    for l in &v.logs {
        out.push_str(&format!("  log {}: {}\n", l.level.as_str(), l.message));
    }
    if v.logs_truncated {
        out.push_str(&format!(
            "  {}\n",
            style.paint(Color::Dim, "… more log lines were dropped")
        ));
    }
    for p in &v.published {
        let key = p
            .ordering_key
            .as_ref()
            .map_or(String::new(), |k| format!(" key {k}"));
        let delay = p
            .delay_ms
            .map_or(String::new(), |d| format!(" after {}", render::millis(d)));
        out.push_str(&format!(
            "  published to {}{key}{delay}: {}\n",
            p.topic, p.payload
        ));
    }
    out
}

/// The process exit status for an outcome: 0 ok, 65 rejected, the guest's
/// status for another exit (1 if it does not fit 1..=255), 1 otherwise.
fn exit_code(o: &Outcome) -> u8 {
    match o {
        Outcome::Ok => 0,
        Outcome::Rejected => crate::outcome::EXIT_REJECT as u8,
        Outcome::Exit { code } => u8::try_from(*code).ok().filter(|c| *c != 0).unwrap_or(1),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_outcome() {
        assert_eq!(exit_code(&Outcome::Ok), 0);
        assert_eq!(exit_code(&Outcome::Rejected), 65);
        assert_eq!(exit_code(&Outcome::Exit { code: 75 }), 75);
        assert_eq!(exit_code(&Outcome::Exit { code: 300 }), 1);
        assert_eq!(exit_code(&Outcome::Timeout { limit_ms: 1 }), 1);
    }
}
