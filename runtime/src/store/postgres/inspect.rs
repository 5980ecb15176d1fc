//! Inspection: a message with its deliveries, a delivery with its attempts,
//! and stats from the striped counters (no scan of the backlog).

use std::collections::BTreeMap;

use deadpool_postgres::GenericClient;

use super::Core;
use super::rows::{
    ATTEMPT_COLS, DELIVERY_COLS, DeliveryRow, MESSAGE_COLS, attempt, message, state_of, ts,
};
use super::sql::{query, query_opt};
use crate::store::{
    DeliveryId, DeliveryState, DeliveryStatus, HandlerStats, MessageId, MessageStatus, Stats,
    StoreError, StoreResult,
};

impl Core {
    /// One delivery's row.
    pub(super) async fn delivery_row<C: GenericClient + Sync>(
        &self,
        c: &C,
        id: DeliveryId,
    ) -> StoreResult<DeliveryRow> {
        let row = query_opt(
            c,
            &format!("SELECT {DELIVERY_COLS} FROM deliveries WHERE id = $1"),
            &[&id],
        )
        .await?
        .ok_or(StoreError::UnknownDelivery(id))?;
        DeliveryRow::from_row(&row)
    }

    /// A delivery with its attempts, oldest first.
    pub(super) async fn status_of<C: GenericClient + Sync>(
        &self,
        c: &C,
        rec: DeliveryRow,
    ) -> StoreResult<DeliveryStatus> {
        let rows = query(
            c,
            &format!("SELECT {ATTEMPT_COLS} FROM attempts WHERE delivery_id = $1 ORDER BY seq"),
            &[&rec.id],
        )
        .await?;
        let attempts = rows.iter().map(attempt).collect::<StoreResult<Vec<_>>>()?;
        Ok(rec.status(attempts))
    }

    /// A message with its deliveries (by id: creation order).
    pub(super) async fn message_status_of<C: GenericClient + Sync>(
        &self,
        c: &C,
        id: MessageId,
    ) -> StoreResult<MessageStatus> {
        let row = query_opt(
            c,
            &format!("SELECT {MESSAGE_COLS} FROM messages WHERE id = $1"),
            &[&id],
        )
        .await?
        .ok_or(StoreError::UnknownMessage(id))?;
        let message = message(&row)?;
        let rows = query(
            c,
            &format!("SELECT {DELIVERY_COLS} FROM deliveries WHERE message_id = $1 ORDER BY id"),
            &[&id],
        )
        .await?;
        let mut deliveries = Vec::with_capacity(rows.len());
        for r in &rows {
            deliveries.push(self.status_of(c, DeliveryRow::from_row(r)?).await?);
        }
        Ok(MessageStatus {
            message,
            deliveries,
        })
    }

    /// Counts per handler and topic, and the durable commits of this store.
    pub(super) async fn stats_of<C: GenericClient + Sync>(&self, c: &C) -> StoreResult<Stats> {
        let handlers = self.handler_records(c).await?;
        let mut counts: BTreeMap<(String, DeliveryState), u64> = BTreeMap::new();
        for r in query(
            c,
            "SELECT handler, state, sum(n)::bigint FROM counters GROUP BY handler, state",
            &[],
        )
        .await?
        {
            let n: i64 = r.get(2);
            counts.insert((r.get(0), state_of(r.get(1))?), n.max(0) as u64);
        }
        let mut out = Vec::with_capacity(handlers.len());
        let mut topic_depth = BTreeMap::new();
        for h in handlers {
            let mut c_h = BTreeMap::new();
            for s in DeliveryState::ALL {
                c_h.insert(s, counts.get(&(h.name.clone(), s)).copied().unwrap_or(0));
            }
            let open: u64 = c_h
                .iter()
                .filter(|(s, _)| s.is_open())
                .map(|(_, n)| *n)
                .sum();
            *topic_depth.entry(h.topic.clone()).or_insert(0) += open;
            let oldest_ready_at = query_opt(
                c,
                "SELECT ready_since FROM deliveries WHERE handler = $1 AND state = 2
                 ORDER BY seq LIMIT 1",
                &[&h.name],
            )
            .await?
            .and_then(|r| ts(r.get(0)));
            out.push(HandlerStats {
                handler: h.name,
                topic: h.topic,
                paused: h.paused,
                counts: c_h,
                oldest_ready_at,
            });
        }
        let commits = self.commits.snapshot();
        Ok(Stats {
            handlers: out,
            topic_depth,
            durable_commits: commits.commits,
            durable_ops: commits.ops,
            commit_batches: commits.batches,
        })
    }
}
