//! Enqueue as a few statements over arrays, whatever the batch's size: one
//! query for the topics (known? subscribers, depth), one upsert of the
//! idempotency keys, one insert of the messages, one of the deliveries
//! (River's `JobInsertFastMany` shape). Only a keyed delivery costs a
//! statement of its own: its `key_heads` row decides whether it waits.
//! The same code enqueues an attempt's outbox, inside its completion.

use std::collections::HashMap;

use uuid::Uuid;

use super::rows::{col, open_codes, state_code};
use super::sql::{execute, query};
use super::{Core, Now, Tx};
use crate::store::{DeliveryState, Enqueued, NewMessage, StoreError, StoreResult};

/// What the batch's topics are, read once per batch.
struct TopicInfo {
    known: bool,
    subscribers: Vec<String>,
    /// Open deliveries of its subscribers (this transaction's included).
    depth: u64,
}

/// The deliveries of a batch, as the columns of one insert.
#[derive(Default)]
struct NewDeliveries {
    id: Vec<Uuid>,
    message_id: Vec<Uuid>,
    handler: Vec<String>,
    ordering_key: Vec<Option<String>>,
    not_before: Vec<Option<i64>>,
    state: Vec<i16>,
    due: Vec<Option<i64>>,
    ready_since: Vec<Option<i64>>,
}

impl Core {
    /// Enqueues a validated batch in `tx`: all or nothing. `outbox` messages
    /// (an attempt's, inside its completion) skip the topic and depth checks,
    /// as in the embedded store: refusing them would turn a downstream
    /// backlog into upstream failures of work already done. Returns the
    /// answers in the batch's order and whether a delivery became ready.
    pub(super) async fn enqueue_many(
        &self,
        tx: &Tx<'_>,
        batch: &[NewMessage],
        now: Now,
        outbox: bool,
    ) -> StoreResult<(Vec<Enqueued>, bool)> {
        let topics = self.topic_info(tx, batch).await?;
        if !outbox && let Some(m) = batch.iter().find(|m| !topics[&m.topic].known) {
            return Err(StoreError::UnknownTopic(m.topic.clone()));
        }
        // Ids in batch order (UUID v7: enqueue order); a key seen twice in
        // the batch answers the first one's id, as a later enqueue would.
        let proposed: Vec<Uuid> = batch.iter().map(|_| crate::store::new_id(now.at)).collect();
        let originals = self.claim_keys(tx, batch, &proposed, now).await?;
        let mut answers = Vec::with_capacity(batch.len());
        let mut first_of_key: HashMap<(&str, &str), Uuid> = HashMap::new();
        for (m, id) in batch.iter().zip(&proposed) {
            let answer = match &m.idempotency_key {
                None => Enqueued {
                    id: *id,
                    duplicate: false,
                },
                Some(key) => match first_of_key.get(&(m.topic.as_str(), key.as_str())) {
                    Some(first) => Enqueued {
                        id: *first,
                        duplicate: true,
                    },
                    None => {
                        let original = originals[&(m.topic.clone(), key.clone())];
                        first_of_key.insert((&m.topic, key), original);
                        Enqueued {
                            id: original,
                            duplicate: original != *id,
                        }
                    }
                },
            };
            answers.push(answer);
        }
        if !outbox {
            check_depth(batch, &answers, &topics, self.config.max_topic_depth)?;
        }
        for m in batch {
            if outbox && topics[&m.topic].subscribers.is_empty() {
                tracing::warn!(topic = %m.topic, "outbox message published to a topic with no handler");
            }
        }
        let fresh: Vec<(&NewMessage, Uuid)> = batch
            .iter()
            .zip(&answers)
            .filter(|(_, a)| !a.duplicate)
            .map(|(m, a)| (m, a.id))
            .collect();
        if fresh.is_empty() {
            return Ok((answers, false));
        }
        let mut rows = NewDeliveries::default();
        for (m, id) in &fresh {
            for h in &topics[&m.topic].subscribers {
                let d = crate::store::new_id(now.at);
                let key = m.ordering_key.as_deref();
                let p = self.place(tx, d, h, key, m.not_before, now.at).await?;
                rows.id.push(d);
                rows.message_id.push(*id);
                rows.handler.push(h.clone());
                rows.ordering_key.push(m.ordering_key.clone());
                rows.not_before.push(m.not_before.map(col));
                rows.state.push(state_code(p.state));
                rows.due.push(p.due.map(col));
                rows.ready_since.push(p.ready_since.map(col));
            }
        }
        let woke = rows.state.contains(&state_code(DeliveryState::Ready));
        self.insert_all(tx, &fresh, &rows, now).await?;
        Ok((answers, woke))
    }

    /// The batch's topics: known, subscribers (by name), open depth.
    async fn topic_info(
        &self,
        tx: &Tx<'_>,
        batch: &[NewMessage],
    ) -> StoreResult<HashMap<String, TopicInfo>> {
        let mut names: Vec<&str> = batch.iter().map(|m| m.topic.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let rows = query(
            tx,
            "SELECT t.name, EXISTS (SELECT 1 FROM topics WHERE name = t.name),
                 ARRAY(SELECT name FROM handlers WHERE topic = t.name ORDER BY name),
                 (SELECT coalesce(sum(c.n), 0)::bigint FROM counters c
                  JOIN handlers h ON h.name = c.handler
                  WHERE h.topic = t.name AND c.state = ANY($2))
             FROM unnest($1::text[]) AS t(name)",
            &[&names, &open_codes()],
        )
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    TopicInfo {
                        known: r.get(1),
                        subscribers: r.get(2),
                        depth: r.get::<_, i64>(3).max(0) as u64,
                    },
                )
            })
            .collect())
    }

    /// Claims the batch's idempotency keys (first occurrence of each) for
    /// the proposed ids, or takes a key over once its window has passed; a
    /// concurrent duplicate waits here for the original's commit. Returns
    /// each key's message id: the proposed one, or the original's.
    async fn claim_keys(
        &self,
        tx: &Tx<'_>,
        batch: &[NewMessage],
        proposed: &[Uuid],
        now: Now,
    ) -> StoreResult<HashMap<(String, String), Uuid>> {
        let mut claims: Vec<(&str, &str, Uuid)> = Vec::new();
        for (m, id) in batch.iter().zip(proposed) {
            if let Some(key) = &m.idempotency_key {
                claims.push((&m.topic, key, *id));
            }
        }
        if claims.is_empty() {
            return Ok(HashMap::new());
        }
        // First occurrence of each key, in (topic, key) order: concurrent
        // batches lock the keys in one order, so they cannot deadlock.
        claims.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        claims.dedup_by(|b, a| (a.0, a.1) == (b.0, b.1));
        let topics: Vec<&str> = claims.iter().map(|c| c.0).collect();
        let keys: Vec<&str> = claims.iter().map(|c| c.1).collect();
        let ids: Vec<Uuid> = claims.iter().map(|c| c.2).collect();
        let window = self.config.idempotency_window.as_millis() as i64;
        let rows = query(
            tx,
            "INSERT INTO idempotency AS i (topic, key, message_id, at)
             SELECT u.topic, u.key, u.id, $4 FROM unnest($1::text[], $2::text[], $3::uuid[])
               AS u(topic, key, id)
             ON CONFLICT (topic, key) DO UPDATE SET
               message_id = CASE WHEN i.at + $5 <= $4 THEN EXCLUDED.message_id ELSE i.message_id END,
               at = CASE WHEN i.at + $5 <= $4 THEN EXCLUDED.at ELSE i.at END
             RETURNING topic, key, message_id",
            &[&topics, &keys, &ids, &col(now.at), &window],
        )
        .await?;
        Ok(rows
            .iter()
            .map(|r| ((r.get(0), r.get(1)), r.get(2)))
            .collect())
    }

    /// Inserts the batch's new messages and their deliveries: one
    /// statement (the deliveries' foreign key sees the messages inserted by
    /// its `WITH`).
    async fn insert_all(
        &self,
        tx: &Tx<'_>,
        fresh: &[(&NewMessage, Uuid)],
        rows: &NewDeliveries,
        now: Now,
    ) -> StoreResult<()> {
        let mut headers = Vec::with_capacity(fresh.len());
        for (m, _) in fresh {
            headers.push(
                serde_json::to_value(&m.headers)
                    .map_err(|e| StoreError::InvalidInput(format!("headers: {e}")))?,
            );
        }
        let ids: Vec<Uuid> = fresh.iter().map(|f| f.1).collect();
        let topics: Vec<&str> = fresh.iter().map(|f| f.0.topic.as_str()).collect();
        let payloads: Vec<&[u8]> = fresh.iter().map(|f| f.0.payload.as_ref()).collect();
        let ordering: Vec<Option<&str>> =
            fresh.iter().map(|f| f.0.ordering_key.as_deref()).collect();
        let keys: Vec<String> = fresh
            .iter()
            .map(|(m, id)| m.idempotency_key.clone().unwrap_or_else(|| id.to_string()))
            .collect();
        let not_before: Vec<Option<i64>> = fresh.iter().map(|f| f.0.not_before.map(col)).collect();
        execute(
            tx,
            "WITH m AS (
                 INSERT INTO messages (id, topic, payload, ordering_key, idempotency_key, headers,
                     enqueued_at, enqueued_at_micros, not_before)
                 SELECT u.id, u.topic, u.payload, u.ordering_key, u.idempotency_key, u.headers,
                     $1, $2, u.not_before
                 FROM unnest($3::uuid[], $4::text[], $5::bytea[], $6::text[], $7::text[],
                     $8::jsonb[], $9::bigint[])
                   AS u(id, topic, payload, ordering_key, idempotency_key, headers, not_before))
             INSERT INTO deliveries (id, message_id, handler, ordering_key, not_before, state,
                 due, ready_since, created_at)
             SELECT u.id, u.message_id, u.handler, u.ordering_key, u.not_before, u.state,
                 u.due, u.ready_since, $1
             FROM unnest($10::uuid[], $11::uuid[], $12::text[], $13::text[], $14::bigint[],
                 $15::smallint[], $16::bigint[], $17::bigint[])
               AS u(id, message_id, handler, ordering_key, not_before, state, due, ready_since)",
            &[
                &col(now.at),
                &(now.micros as i64),
                &ids,
                &topics,
                &payloads,
                &ordering,
                &keys,
                &headers,
                &not_before,
                &rows.id,
                &rows.message_id,
                &rows.handler,
                &rows.ordering_key,
                &rows.not_before,
                &rows.state,
                &rows.due,
                &rows.ready_since,
            ],
        )
        .await?;
        Ok(())
    }
}

/// Refuses the batch with [`StoreError::QueueFull`] when its new messages
/// would take a topic past `max` open deliveries, naming the depth the first
/// message past it met (as if the batch were enqueued one by one).
fn check_depth(
    batch: &[NewMessage],
    answers: &[Enqueued],
    topics: &HashMap<String, TopicInfo>,
    max: u64,
) -> StoreResult<()> {
    let mut added: HashMap<&str, u64> = HashMap::new();
    for (m, a) in batch.iter().zip(answers) {
        if a.duplicate {
            continue;
        }
        let info = &topics[&m.topic];
        let so_far = added.entry(&m.topic).or_default();
        let depth = info.depth + *so_far;
        let fanout = info.subscribers.len() as u64;
        if depth + fanout > max {
            return Err(StoreError::QueueFull {
                topic: m.topic.clone(),
                depth,
                max,
            });
        }
        *so_far += fanout;
    }
    Ok(())
}
