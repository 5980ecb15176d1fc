//! Settling attempts in batches (River's batched completer, with a fence):
//! every completion and failure the group committer holds is settled by the
//! same few statements over arrays, whatever their number: lock the
//! deliveries and check each lease (fencing), write the attempts' reports,
//! move the deliveries to their new states. Only what is rarer costs a
//! statement of its own: handing a key on, and the outbox (one bulk enqueue
//! for all of the batch's).

use std::collections::HashMap;

use uuid::Uuid;

use super::queue::Fate;
use super::rows::{DELIVERY_COLS, DeliveryRow, col, egress_json, outcome_json, state_code};
use super::sql::{execute, query};
use super::{Core, Now, Tx};
use crate::policy::Disposition;
use crate::store::{
    AttemptReport, DeliveryState, Lease, NewMessage, OutboxMessage, StoreError, StoreResult,
};

/// One attempt to settle.
pub(super) type Settle = (Lease, AttemptReport, Fate);

/// A fenced attempt and the state its delivery moves to.
struct Settled {
    rec: DeliveryRow,
    report: AttemptReport,
    state: DeliveryState,
    due: Option<i64>,
    dead_reason: Option<String>,
    outbox: Vec<OutboxMessage>,
}

impl Core {
    /// Settles `calls` in `tx`. Each answer is `Ok` or
    /// [`StoreError::LeaseLost`] (the lease is not the delivery's current
    /// one, or another call of the batch settled it first); a lost lease
    /// writes nothing. `Err` when the transaction itself failed. Also
    /// returns whether a delivery became ready (a key handed on, the outbox).
    pub(super) async fn settle_many(
        &self,
        tx: &Tx<'_>,
        calls: Vec<Settle>,
        now: Now,
    ) -> StoreResult<(Vec<StoreResult<()>>, bool)> {
        let ids: Vec<Uuid> = calls.iter().map(|c| c.0.delivery_id).collect();
        // Locked in id order: concurrent batches of other runners cannot deadlock.
        let rows = query(
            tx,
            &format!(
                "SELECT {DELIVERY_COLS} FROM deliveries WHERE id = ANY($1) ORDER BY id FOR UPDATE"
            ),
            &[&ids],
        )
        .await?;
        let mut current: HashMap<Uuid, DeliveryRow> = HashMap::with_capacity(rows.len());
        for r in &rows {
            let rec = DeliveryRow::from_row(r)?;
            current.insert(rec.id, rec);
        }
        let mut answers = Vec::with_capacity(calls.len());
        let mut settled = Vec::with_capacity(calls.len());
        for (lease, report, fate) in calls {
            let fenced = current.remove(&lease.delivery_id).and_then(|rec| {
                if rec.state == DeliveryState::Leased && rec.lease_token == Some(lease.token as i64)
                {
                    Some(rec)
                } else {
                    current.insert(rec.id, rec);
                    None
                }
            });
            let Some(rec) = fenced else {
                answers.push(Err(StoreError::LeaseLost(lease.delivery_id)));
                continue;
            };
            answers.push(Ok(()));
            settled.push(decide(rec, report, fate, now));
        }
        if settled.is_empty() {
            return Ok((answers, false));
        }
        self.finish_attempts(tx, &settled, now).await?;
        self.move_settled(tx, &settled, now).await?;
        let mut woke = false;
        // Keys are handed on in (handler, key) order, as every runner does.
        let mut releasing: Vec<&DeliveryRow> = settled
            .iter()
            .filter(|s| !s.state.is_open() && s.rec.ordering_key.is_some())
            .map(|s| &s.rec)
            .collect();
        releasing.sort_by(|a, b| (&a.handler, &a.ordering_key).cmp(&(&b.handler, &b.ordering_key)));
        for rec in releasing {
            woke |= self.release_key(tx, rec, now.at).await?;
        }
        let outbox = outbox_messages(&mut settled, now);
        if !outbox.is_empty() {
            woke |= self.enqueue_many(tx, &outbox, now, true).await?.1;
        }
        Ok((answers, woke))
    }

    /// Writes each report into its running attempt's record.
    async fn finish_attempts(&self, tx: &Tx<'_>, s: &[Settled], now: Now) -> StoreResult<()> {
        let mut outcomes = Vec::with_capacity(s.len());
        let mut egress = Vec::with_capacity(s.len());
        for x in s {
            outcomes.push(outcome_json(&x.report)?);
            egress.push(egress_json(&x.report)?);
        }
        let ids: Vec<Uuid> = s.iter().map(|x| x.rec.id).collect();
        let seqs: Vec<i32> = s.iter().map(|x| x.rec.attempt_records).collect();
        let numbers: Vec<i32> = s.iter().map(|x| x.rec.attempt as i32).collect();
        let rounds: Vec<i32> = s.iter().map(|x| x.rec.round as i32).collect();
        let durations: Vec<i64> = s.iter().map(|x| clamp(x.report.duration_ms)).collect();
        let shas: Vec<&str> = s.iter().map(|x| x.report.module_sha256.as_str()).collect();
        let stdouts: Vec<&[u8]> = s.iter().map(|x| x.report.stdout.as_ref()).collect();
        let stdout_cut: Vec<bool> = s.iter().map(|x| x.report.stdout_truncated).collect();
        let stderrs: Vec<&[u8]> = s.iter().map(|x| x.report.stderr.as_ref()).collect();
        let stderr_cut: Vec<bool> = s.iter().map(|x| x.report.stderr_truncated).collect();
        let peaks: Vec<i64> = s
            .iter()
            .map(|x| clamp(x.report.peak_memory_bytes))
            .collect();
        let fuel: Vec<Option<i64>> = s.iter().map(|x| x.report.fuel_used.map(clamp)).collect();
        execute(
            tx,
            "INSERT INTO attempts AS a (delivery_id, seq, number, round, started_at, finished_at,
                 outcome, duration_ms, module_sha256, stdout, stdout_truncated, stderr,
                 stderr_truncated, peak_memory_bytes, fuel_used, egress)
             SELECT u.id, u.seq, u.number, u.round, $1, $1, u.outcome, u.duration_ms, u.sha,
                 u.stdout, u.stdout_cut, u.stderr, u.stderr_cut, u.peak, u.fuel, u.egress
             FROM unnest($2::uuid[], $3::int[], $4::int[], $5::int[], $6::jsonb[], $7::bigint[],
                 $8::text[], $9::bytea[], $10::bool[], $11::bytea[], $12::bool[], $13::bigint[],
                 $14::bigint[], $15::jsonb[])
               AS u(id, seq, number, round, outcome, duration_ms, sha, stdout, stdout_cut,
                    stderr, stderr_cut, peak, fuel, egress)
             ON CONFLICT (delivery_id, seq) DO UPDATE SET finished_at = EXCLUDED.finished_at,
                 outcome = EXCLUDED.outcome, duration_ms = EXCLUDED.duration_ms,
                 module_sha256 = EXCLUDED.module_sha256, stdout = EXCLUDED.stdout,
                 stdout_truncated = EXCLUDED.stdout_truncated, stderr = EXCLUDED.stderr,
                 stderr_truncated = EXCLUDED.stderr_truncated,
                 peak_memory_bytes = EXCLUDED.peak_memory_bytes, fuel_used = EXCLUDED.fuel_used,
                 egress = EXCLUDED.egress",
            &[
                &col(now.at),
                &ids,
                &seqs,
                &numbers,
                &rounds,
                &outcomes,
                &durations,
                &shas,
                &stdouts,
                &stdout_cut,
                &stderrs,
                &stderr_cut,
                &peaks,
                &fuel,
                &egress,
            ],
        )
        .await?;
        Ok(())
    }

    /// Drops the leases and moves each delivery to its new state.
    async fn move_settled(&self, tx: &Tx<'_>, s: &[Settled], now: Now) -> StoreResult<()> {
        let ids: Vec<Uuid> = s.iter().map(|x| x.rec.id).collect();
        let states: Vec<i16> = s.iter().map(|x| state_code(x.state)).collect();
        let dues: Vec<Option<i64>> = s.iter().map(|x| x.due).collect();
        let reasons: Vec<Option<&str>> = s.iter().map(|x| x.dead_reason.as_deref()).collect();
        let kinds: Vec<&str> = s.iter().map(|x| x.report.outcome.kind()).collect();
        execute(
            tx,
            "UPDATE deliveries d SET state = u.state, due = u.due,
                 dead_at = CASE WHEN u.state = 6 THEN $2 ELSE d.dead_at END,
                 dead_reason = CASE WHEN u.state = 6 THEN u.reason ELSE d.dead_reason END,
                 lease_token = NULL, lease_expires_at = NULL, lease_owner = NULL,
                 last_outcome = u.kind
             FROM unnest($1::uuid[], $3::smallint[], $4::bigint[], $5::text[], $6::text[])
               AS u(id, state, due, reason, kind)
             WHERE d.id = u.id",
            &[&ids, &col(now.at), &states, &dues, &reasons, &kinds],
        )
        .await?;
        Ok(())
    }
}

/// What a fenced attempt's fate makes of its delivery.
fn decide(rec: DeliveryRow, report: AttemptReport, fate: Fate, now: Now) -> Settled {
    let (state, due, dead_reason, outbox) = match fate {
        Fate::Complete(outbox) => (DeliveryState::Succeeded, None, None, outbox),
        Fate::Fail(Disposition::Retry { after }) => (
            DeliveryState::Retrying,
            Some(col(now.at.plus(after))),
            None,
            Vec::new(),
        ),
        Fate::Fail(Disposition::Dead { reason }) => {
            tracing::warn!(delivery = %rec.id, message_id = %rec.message_id, handler = %rec.handler, %reason, "delivery dead-lettered");
            (DeliveryState::Dead, None, Some(reason), Vec::new())
        }
    };
    Settled {
        rec,
        report,
        state,
        due,
        dead_reason,
        outbox,
    }
}

/// The batch's outbox messages, keyed by (parent message, handler, index)
/// so a re-run of an attempt never publishes twice.
fn outbox_messages(settled: &mut [Settled], now: Now) -> Vec<NewMessage> {
    let mut out = Vec::new();
    for s in settled {
        for (i, o) in std::mem::take(&mut s.outbox).into_iter().enumerate() {
            let m = crate::store::outbox_message(s.rec.message_id, &s.rec.handler, i, o, now.at);
            out.push(m);
        }
    }
    out
}

/// A `u64` figure as a `bigint` column.
fn clamp(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}
