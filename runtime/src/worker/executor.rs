//! Runs exactly one attempt: fetch the module, invoke it in the sandbox, and turn
//! what happened into a report. Guest failures are outcomes; a host failure
//! (module missing, compile error) becomes an `interrupted` outcome so the
//! delivery is retried rather than lost.

use bytes::Bytes;
use tracing::Instrument;

use super::Context;
use crate::outcome::Outcome;
use crate::policy::HandlerPolicy;
use crate::sandbox::{GuestMetadata, Invocation, Limits};
use crate::store::{AttemptReport, HandlerRecord, Leased, OutboxMessage};

/// An attempt's result, ready for the completer.
#[derive(Debug)]
pub struct Done {
    /// What the store records.
    pub report: AttemptReport,
    /// Messages to commit with a success (empty otherwise).
    pub outbox: Vec<OutboxMessage>,
}

/// The sandbox limits of a policy.
pub fn limits(policy: &HandlerPolicy) -> Limits {
    Limits {
        timeout: policy.timeout(),
        memory_bytes: policy.memory_bytes,
        fuel: policy.fuel,
    }
}

/// Runs one attempt of `leased` with the handler's module as of lease time.
pub async fn execute(ctx: &Context, handler: &HandlerRecord, leased: &Leased) -> Done {
    let span = tracing::info_span!(
        "attempt",
        message = %leased.message.id,
        handler = %leased.handler,
        attempt = leased.attempt,
    );
    run(ctx, handler, leased).instrument(span).await
}

async fn run(ctx: &Context, handler: &HandlerRecord, leased: &Leased) -> Done {
    let m = &leased.message;
    let started = std::time::Instant::now();
    let module = match ctx.module(handler).await {
        Ok(module) => module,
        Err(e) => return host_failure(handler, &e.to_string(), started),
    };
    let invocation = Invocation {
        stdin: m.payload.clone(),
        metadata: GuestMetadata {
            topic: m.topic.clone(),
            handler: leased.handler.clone(),
            message_id: m.id.to_string(),
            idempotency_key: m.idempotency_key.clone(),
            ordering_key: m.ordering_key.clone(),
            attempt: leased.attempt,
            max_attempts: leased.max_attempts,
            enqueued_at: m.enqueued_at.to_rfc3339(),
            headers: m
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        },
        env: handler
            .policy
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        limits: limits(&handler.policy),
        egress: handler.policy.egress.clone(),
    };
    match ctx.sandbox.invoke(&module, invocation).await {
        Ok(exec) => {
            for log in &exec.logs {
                tracing::info!(target: "sluice::guest", level = ?log.level, "{}", log.message);
            }
            let outbox = if exec.outcome == Outcome::Ok {
                exec.published
                    .into_iter()
                    .map(|p| OutboxMessage {
                        topic: p.topic,
                        payload: Bytes::from(p.payload),
                        ordering_key: p.ordering_key,
                        delay: p.delay,
                    })
                    .collect()
            } else {
                Vec::new()
            };
            Done {
                report: AttemptReport {
                    outcome: exec.outcome,
                    duration_ms: exec.duration.as_millis() as u64,
                    module_sha256: module.sha256().to_string(),
                    stdout: Bytes::from(exec.stdout.bytes),
                    stdout_truncated: exec.stdout.truncated,
                    stderr: Bytes::from(exec.stderr.bytes),
                    stderr_truncated: exec.stderr.truncated,
                    peak_memory_bytes: exec.peak_memory_bytes,
                    fuel_used: exec.fuel_used,
                    egress: exec.egress,
                },
                outbox,
            }
        }
        Err(e) => host_failure(handler, &e.to_string(), started),
    }
}

fn host_failure(handler: &HandlerRecord, error: &str, started: std::time::Instant) -> Done {
    tracing::error!(error = %error, "host failure running attempt");
    Done {
        report: AttemptReport::interrupted(
            &format!("host error: {error}"),
            started.elapsed().as_millis() as u64,
            handler.module_sha256.clone(),
        ),
        outbox: Vec::new(),
    }
}
