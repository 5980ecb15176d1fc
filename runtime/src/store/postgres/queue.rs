//! The queue's verbs inside a transaction: enqueue (idempotency, backpressure,
//! fan-out), lease (`FOR UPDATE SKIP LOCKED`), extend, and settling an
//! attempt (complete with its outbox, fail). The durable ones run in the
//! group committer's shared transactions ([`super::batch`]).

use std::collections::BTreeMap;

use super::rows::{MESSAGE_COLS, col, message, open_codes};
use super::sql::{execute, query, query_one};
use super::{Core, Now, Tx};
use crate::policy::Disposition;
use crate::store::{
    AttemptReport, Enqueued, Lease, Leased, NewMessage, OutboxMessage, StoreError, StoreResult,
};

/// How an attempt settles.
pub(super) enum Fate {
    /// Succeeded, with its outbox.
    Complete(Vec<OutboxMessage>),
    /// Failed, with the policy's disposition.
    Fail(Disposition),
}

impl Core {
    /// Enqueues one (validated) message. Outbox messages skip the topic and
    /// depth checks, as in the embedded store: refusing them would turn a
    /// downstream backlog into upstream failures of work already done.
    /// Returns the answer and whether a delivery became ready.
    pub(super) async fn enqueue_one(
        &self,
        tx: &Tx<'_>,
        m: NewMessage,
        now: Now,
        outbox: bool,
    ) -> StoreResult<(Enqueued, bool)> {
        let row = query_one(
            tx,
            "SELECT EXISTS (SELECT 1 FROM topics WHERE name = $1),
                    ARRAY(SELECT name FROM handlers WHERE topic = $1 ORDER BY name)",
            &[&m.topic],
        )
        .await?;
        let topic_known: bool = row.get(0);
        let subscribers: Vec<String> = row.get(1);
        if !outbox && !topic_known {
            return Err(StoreError::UnknownTopic(m.topic));
        }
        if outbox && subscribers.is_empty() {
            tracing::warn!(topic = %m.topic, "outbox message published to a topic with no handler");
        }
        let id = crate::store::new_id(now.at);
        if let Some(key) = &m.idempotency_key {
            // Inserts the key, or takes it over once the window has passed;
            // a concurrent duplicate waits here for the original's commit.
            let window = self.config.idempotency_window.as_millis() as i64;
            let row = query_one(
                tx,
                "INSERT INTO idempotency AS i (topic, key, message_id, at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (topic, key) DO UPDATE SET
                   message_id = CASE WHEN i.at + $5 <= $4 THEN EXCLUDED.message_id ELSE i.message_id END,
                   at = CASE WHEN i.at + $5 <= $4 THEN EXCLUDED.at ELSE i.at END
                 RETURNING message_id",
                &[&m.topic, key, &id, &col(now.at), &window],
            )
            .await?;
            let original: uuid::Uuid = row.get(0);
            if original != id {
                return Ok((
                    Enqueued {
                        id: original,
                        duplicate: true,
                    },
                    false,
                ));
            }
        }
        if !outbox {
            let row = query_one(
                tx,
                "SELECT coalesce(sum(n), 0)::bigint FROM counters
                 WHERE handler = ANY($1) AND state = ANY($2)",
                &[&subscribers, &open_codes()],
            )
            .await?;
            let depth = row.get::<_, i64>(0).max(0) as u64;
            let max = self.config.max_topic_depth;
            if depth + subscribers.len() as u64 > max {
                return Err(StoreError::QueueFull {
                    topic: m.topic,
                    depth,
                    max,
                });
            }
        }
        let idempotency_key = m.idempotency_key.clone().unwrap_or_else(|| id.to_string());
        let headers = serde_json::to_value(&m.headers)
            .map_err(|e| StoreError::InvalidInput(format!("headers: {e}")))?;
        execute(
            tx,
            "INSERT INTO messages (id, topic, payload, ordering_key, idempotency_key, headers,
                enqueued_at, enqueued_at_micros, not_before)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &id,
                &m.topic,
                &m.payload.as_ref(),
                &m.ordering_key,
                &idempotency_key,
                &headers,
                &col(now.at),
                &(now.micros as i64),
                &m.not_before.map(col),
            ],
        )
        .await?;
        let mut woke = false;
        for h in &subscribers {
            woke |= self
                .new_delivery(tx, id, h, m.ordering_key.as_deref(), m.not_before, now.at)
                .await?;
        }
        Ok((
            Enqueued {
                id,
                duplicate: false,
            },
            woke,
        ))
    }

    /// Enqueues a validated batch in `tx`: all or nothing.
    pub(super) async fn enqueue_in(
        &self,
        tx: &Tx<'_>,
        batch: Vec<NewMessage>,
        now: Now,
    ) -> StoreResult<(Vec<Enqueued>, bool)> {
        let mut out = Vec::with_capacity(batch.len());
        let mut woke = false;
        for m in batch {
            let (e, w) = self.enqueue_one(tx, m, now, false).await?;
            woke |= w;
            out.push(e);
        }
        Ok((out, woke))
    }

    /// Leases up to `max` ready deliveries of `handler`, oldest first: the
    /// SKIP LOCKED pick (behind a MATERIALIZED fence so the planner cannot
    /// update more than the LIMIT), a fresh token each, this runner as owner,
    /// the attempts recorded as started. Committed without waiting for the
    /// WAL flush (`synchronous_commit = off`): a lease lost in a crash only
    /// makes the delivery ready again, and the completion's synchronous
    /// commit flushes the WAL up to and including the lease.
    pub(super) async fn lease_in(
        &self,
        tx: &Tx<'_>,
        handler: &str,
        max: usize,
        now: Now,
    ) -> StoreResult<Vec<Leased>> {
        let record = self.handler_record(tx, handler).await?;
        if record.paused || max == 0 {
            return Ok(Vec::new());
        }
        let expires_at = now.at.plus(record.policy.lease());
        let rows = query(
            tx,
            "WITH picked AS MATERIALIZED (
                 SELECT id FROM deliveries WHERE handler = $1 AND state = 2
                 ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED)
             UPDATE deliveries d SET state = 3, attempt = d.attempt + 1,
                 attempt_records = d.attempt_records + 1,
                 lease_token = nextval('lease_tokens'), lease_expires_at = $3,
                 lease_owner = $4, ready_since = NULL
             FROM picked WHERE d.id = picked.id
             RETURNING d.id, d.message_id, d.lease_token, d.attempt, d.attempt_records,
                 d.round, d.seq",
            &[&handler, &(max as i64), &col(expires_at), &self.runner_id],
        )
        .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut picked: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.get::<_, i64>(6),
                    r.get::<_, uuid::Uuid>(0),
                    r.get::<_, uuid::Uuid>(1),
                    r.get::<_, i64>(2),
                    r.get::<_, i32>(3),
                    r.get::<_, i32>(4),
                    r.get::<_, i32>(5),
                )
            })
            .collect();
        picked.sort_by_key(|p| p.0);
        let ids: Vec<uuid::Uuid> = picked.iter().map(|p| p.1).collect();
        let seqs: Vec<i32> = picked.iter().map(|p| p.5).collect();
        let numbers: Vec<i32> = picked.iter().map(|p| p.4).collect();
        let rounds: Vec<i32> = picked.iter().map(|p| p.6).collect();
        execute(
            tx,
            "INSERT INTO attempts (delivery_id, seq, number, round, started_at)
             SELECT u.id, u.seq, u.number, u.round, $5
             FROM unnest($1::uuid[], $2::int[], $3::int[], $4::int[]) AS u(id, seq, number, round)",
            &[&ids, &seqs, &numbers, &rounds, &col(now.at)],
        )
        .await?;
        let message_ids: Vec<uuid::Uuid> = picked.iter().map(|p| p.2).collect();
        let mut messages = BTreeMap::new();
        for r in query(
            tx,
            &format!("SELECT {MESSAGE_COLS} FROM messages WHERE id = ANY($1)"),
            &[&message_ids],
        )
        .await?
        {
            let m = message(&r)?;
            messages.insert(m.id, m);
        }
        let max_attempts = record.policy.max_attempts();
        picked
            .into_iter()
            .map(|(_, id, message_id, token, attempt, _, _)| {
                let message = messages
                    .get(&message_id)
                    .cloned()
                    .ok_or_else(|| StoreError::Corrupt(format!("delivery {id} has no message")))?;
                Ok(Leased {
                    lease: Lease {
                        delivery_id: id,
                        token: token as u64,
                        expires_at,
                    },
                    message,
                    handler: handler.to_string(),
                    attempt: attempt as u32,
                    max_attempts,
                })
            })
            .collect()
    }

    /// Extends a lease by its handler's lease duration from now (guarded).
    pub(super) async fn extend_in(
        &self,
        tx: &Tx<'_>,
        lease: &Lease,
        now: Now,
    ) -> StoreResult<Lease> {
        let rec = self.leased(tx, lease).await?;
        let lease_for = self.handler_record(tx, &rec.handler).await?.policy.lease();
        let expires_at = now.at.plus(lease_for);
        execute(
            tx,
            "UPDATE deliveries SET lease_expires_at = $2 WHERE id = $1",
            &[&rec.id, &col(expires_at)],
        )
        .await?;
        Ok(Lease {
            delivery_id: lease.delivery_id,
            token: lease.token,
            expires_at,
        })
    }

    /// Settles a leased delivery's attempt: fences the lease, records the
    /// report, applies the fate (success with its outbox, or the policy's
    /// disposition). Returns whether a delivery became ready.
    pub(super) async fn settle_in(
        &self,
        tx: &Tx<'_>,
        lease: &Lease,
        report: AttemptReport,
        fate: Fate,
        now: Now,
    ) -> StoreResult<bool> {
        let rec = self.leased(tx, lease).await?;
        self.finish_attempt(tx, &rec, &report, now.at).await?;
        match fate {
            Fate::Fail(disposition) => self.dispose(tx, &rec, disposition, now.at).await,
            Fate::Complete(outbox) => {
                execute(
                    tx,
                    "UPDATE deliveries SET state = 5, due = NULL WHERE id = $1",
                    &[&rec.id],
                )
                .await?;
                let mut woke = self.release_key(tx, &rec, now.at).await?;
                for (i, o) in outbox.into_iter().enumerate() {
                    let mut headers = BTreeMap::new();
                    headers.insert("sluice-parent".to_string(), rec.message_id.to_string());
                    headers.insert("sluice-publisher".to_string(), rec.handler.clone());
                    let m = NewMessage {
                        topic: o.topic,
                        payload: o.payload,
                        ordering_key: o.ordering_key,
                        idempotency_key: Some(format!(
                            "outbox:{}:{}:{i}",
                            rec.message_id, rec.handler
                        )),
                        headers,
                        not_before: o.delay.map(|d| now.at.plus(d)),
                    };
                    woke |= self.enqueue_one(tx, m, now, true).await?.1;
                }
                Ok(woke)
            }
        }
    }
}
