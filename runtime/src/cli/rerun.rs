//! `sluice run --delivery ID [--attempt N] [--module FILE.wasm]`: fetches a
//! delivery's payload, metadata and handler policy from the server, and the
//! exact module that ran the attempt (by the sha256 it recorded; modules are
//! kept), runs it once locally in the same sandbox, and prints the outcome
//! beside the recorded one. With `--module`, a fixed build runs on the same
//! input instead: reproduce, fix, check the fix, then replay from the DLQ.

use std::process::ExitCode;

use anyhow::Context as _;
use reqwest::Method;
use serde::Serialize;
use uuid::Uuid;

use super::RunArgs;
use super::client::Client;
use super::render::{self, Color, Style};
use super::run::{RunView, exit_code, human, invoke};
use crate::api::dto::{AttemptView, DeliveryView, HandlerView, MessageView};
use crate::clock::Timestamp;
use crate::store::Message;

/// The JSON document of `sluice run --delivery --json`.
#[derive(Debug, Serialize)]
struct RerunView {
    delivery_id: Uuid,
    /// The attempt run again, as recorded.
    recorded: AttemptView,
    /// The module that ran locally: the recorded one, or `--module`'s.
    module: String,
    /// This run.
    local: RunView,
    /// Same outcome kind, stdout and stderr as recorded.
    same: bool,
}

pub(super) async fn rerun(a: RunArgs, id: Uuid) -> anyhow::Result<ExitCode> {
    let c = Client::new(&a.url, a.token.clone())?;
    let d: DeliveryView = c.get(&format!("/v1/deliveries/{id}")).await?;
    let finished: Vec<&AttemptView> = d.attempts.iter().filter(|a| a.outcome.is_some()).collect();
    let recorded = match a.attempt {
        Some(n) => d
            .attempts
            .get((n as usize).wrapping_sub(1))
            .filter(|a| a.outcome.is_some())
            .with_context(|| {
                format!(
                    "delivery {id} has no finished attempt {n} (it has {} attempts)",
                    d.attempts.len()
                )
            })?,
        None => *finished
            .last()
            .with_context(|| format!("delivery {id} has no finished attempt yet"))?,
    };
    let m: MessageView = c.get(&format!("/v1/messages/{}", d.message_id)).await?;
    let payload = bytes(&c, &format!("/v1/messages/{}/payload", d.message_id)).await?;
    let h: HandlerView = c.get(&format!("/v1/handlers/{}", d.handler)).await?;
    let (wasm, path) = match &a.fixed_module {
        Some(path) => (
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
            path.clone(),
        ),
        None => {
            let sha = recorded
                .module_sha256
                .as_deref()
                .context("the attempt recorded no module")?;
            let wasm = bytes(&c, &format!("/v1/modules/{sha}")).await?;
            (wasm, format!("module {sha}").into())
        }
    };
    let message = Message {
        id: m.id,
        topic: m.topic,
        payload: payload.into(),
        ordering_key: m.ordering_key,
        idempotency_key: m.idempotency_key,
        headers: m.headers,
        enqueued_at: Timestamp::parse_rfc3339(&m.enqueued_at).map_err(anyhow::Error::msg)?,
        enqueued_at_micros: 0,
        not_before: None,
    };
    let invocation = crate::worker::executor::invocation(
        &message,
        &d.handler,
        (recorded.number, h.policy.max_attempts()),
        &h.policy,
    );
    let local = invoke(&wasm, &path, invocation, a.cache_dir.clone()).await?;
    let kind = |v: &AttemptView| v.outcome.as_ref().map(|o| o.kind());
    let same = kind(recorded) == kind(&local.attempt)
        && recorded.stdout == local.attempt.stdout
        && recorded.stderr == local.attempt.stderr;
    let code = exit_code(local.attempt.outcome.as_ref().expect("a finished run"));
    let view = RerunView {
        delivery_id: id,
        recorded: recorded.clone(),
        module: path.display().to_string(),
        local,
        same,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        let style = Style::detect();
        let mut out = format!("recorded (delivery {id}, handler {}):\n", d.handler);
        out.push_str(&render::attempt(&view.recorded, &style, None));
        out.push_str(&format!("\nlocal ({}):\n", view.module));
        out.push_str(&human(&view.local, &style));
        let verdict = if same {
            style.paint(Color::Green, "same outcome, stdout and stderr as recorded")
        } else {
            style.paint(Color::Yellow, "differs from the recorded attempt")
        };
        out.push_str(&format!("\n{verdict}\n"));
        print!("{out}");
    }
    Ok(ExitCode::from(code))
}

/// The raw body of `GET path`, or the server's error.
async fn bytes(c: &Client, path: &str) -> anyhow::Result<Vec<u8>> {
    let res = c
        .request(Method::GET, path)
        .send()
        .await
        .with_context(|| format!("GET {path}"))?;
    if !res.status().is_success() {
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        let message = serde_json::from_str::<crate::api::error::ErrorBody>(&body)
            .map(|b| b.error.message)
            .unwrap_or(body);
        anyhow::bail!("{message} ({status})");
    }
    Ok(res.bytes().await.context("reading the answer")?.to_vec())
}
