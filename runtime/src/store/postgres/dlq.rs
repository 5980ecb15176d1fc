//! The DLQ and replay: listing dead deliveries by death time, replaying one,
//! purging, and re-delivering a topic's retained messages since a time.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::error::db;
use super::rows::{DELIVERY_COLS, DeliveryRow, col, state_code};
use super::sql::{execute, query, query_opt};
use super::{Core, Tx};
use crate::clock::Timestamp;
use crate::store::{DeadFilter, DeliveryId, DeliveryState, StoreError, StoreResult};

/// Dead deliveries purged per transaction.
const PURGE_CHUNK: i64 = 1024;
/// Messages replayed per transaction.
const REPLAY_CHUNK: i64 = 512;

/// The filter's WHERE clause over `deliveries`, with parameters $1..$5:
/// handler, since, until, outcome kind, and the cursor (dead_at, handler, id).
const DEAD_WHERE: &str = "state = 6
     AND ($1::text IS NULL OR handler = $1)
     AND dead_at >= $2
     AND ($3::bigint IS NULL OR dead_at < $3)
     AND ($4::text IS NULL OR last_outcome = $4)";

impl Core {
    /// Dead deliveries matching `filter`, oldest death first (then handler,
    /// id), after the delivery `after`.
    pub(super) async fn dead_matching<C: GenericClient + Sync>(
        &self,
        c: &C,
        filter: &DeadFilter,
        after: Option<DeliveryId>,
        limit: usize,
    ) -> StoreResult<Vec<DeliveryRow>> {
        if let Some(h) = &filter.handler {
            self.handler_record(c, h).await?;
        }
        let since = col(filter.since.unwrap_or(Timestamp(0)));
        let until = filter.until.map(col);
        let cursor = match after {
            Some(id) => {
                let rec = self.delivery_row(c, id).await?;
                Some((col(rec.dead_at.unwrap_or(Timestamp(0))), rec.handler, id))
            }
            None => None,
        };
        let (c_at, c_handler, c_id) = match &cursor {
            Some((at, h, id)) => (Some(*at), Some(h.clone()), Some(*id)),
            None => (None, None, None),
        };
        let rows = query(
            c,
            &format!(
                "SELECT {DELIVERY_COLS} FROM deliveries WHERE {DEAD_WHERE}
                 AND ($5::bigint IS NULL OR (dead_at, handler, id) > ($5, $6, $7))
                 ORDER BY dead_at, handler, id LIMIT $8"
            ),
            &[
                &filter.handler,
                &since,
                &until,
                &filter.outcome,
                &c_at,
                &c_handler,
                &c_id,
                &(limit as i64),
            ],
        )
        .await?;
        rows.iter().map(DeliveryRow::from_row).collect()
    }

    /// Replays one dead delivery: a new round, placed like a new delivery.
    pub(super) async fn replay_dead_in(
        &self,
        tx: &Tx<'_>,
        id: DeliveryId,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let row = query_opt(
            tx,
            &format!("SELECT {DELIVERY_COLS} FROM deliveries WHERE id = $1 FOR UPDATE"),
            &[&id],
        )
        .await?
        .ok_or(StoreError::UnknownDelivery(id))?;
        let rec = DeliveryRow::from_row(&row)?;
        if rec.state != DeliveryState::Dead {
            return Err(StoreError::NotDead(id));
        }
        let p = self
            .place(tx, id, &rec.handler, rec.ordering_key.as_deref(), None, now)
            .await?;
        execute(
            tx,
            "UPDATE deliveries SET round = round + 1, attempt = 0, dead_at = NULL,
                 dead_reason = NULL, not_before = NULL, state = $2, due = $3, ready_since = $4
             WHERE id = $1",
            &[
                &id,
                &state_code(p.state),
                &p.due.map(col),
                &p.ready_since.map(col),
            ],
        )
        .await?;
        Ok(p.state == DeliveryState::Ready)
    }

    /// Purges dead deliveries matching `filter`, a chunk per transaction.
    pub(super) async fn purge_dead_now(&self, filter: &DeadFilter) -> StoreResult<u64> {
        if let Some(h) = &filter.handler {
            let c = self.client().await?;
            self.handler_record(&c, h).await?;
        }
        let since = col(filter.since.unwrap_or(Timestamp(0)));
        let until = filter.until.map(col);
        let mut purged = 0;
        loop {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(db)?;
            let n = execute(
                &tx,
                &format!(
                    "DELETE FROM deliveries WHERE id IN (
                         SELECT id FROM deliveries WHERE {DEAD_WHERE} LIMIT $5 FOR UPDATE)"
                ),
                &[
                    &filter.handler,
                    &since,
                    &until,
                    &filter.outcome,
                    &PURGE_CHUNK,
                ],
            )
            .await?;
            self.commit(tx, 1).await?;
            purged += n;
            if n < PURGE_CHUNK as u64 {
                return Ok(purged);
            }
        }
    }

    /// Purges one dead delivery.
    pub(super) async fn purge_dead_one_in(&self, tx: &Tx<'_>, id: DeliveryId) -> StoreResult<()> {
        let row = query_opt(
            tx,
            "SELECT state FROM deliveries WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?
        .ok_or(StoreError::UnknownDelivery(id))?;
        if row.get::<_, i16>(0) != state_code(DeliveryState::Dead) {
            return Err(StoreError::NotDead(id));
        }
        execute(tx, "DELETE FROM deliveries WHERE id = $1", &[&id]).await?;
        Ok(())
    }

    /// New deliveries for `handler` of every retained message of its topic
    /// enqueued at or after `since`, in chunks by message id.
    pub(super) async fn replay_since_now(
        &self,
        handler: &str,
        since: Timestamp,
    ) -> StoreResult<u64> {
        let topic = {
            let c = self.client().await?;
            self.handler_record(&c, handler).await?.topic
        };
        let mut after: Option<Uuid> = None;
        let mut count = 0;
        loop {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(db)?;
            let now = self.now(&tx).await?;
            let rows = query(
                &tx,
                "SELECT id, ordering_key, not_before FROM messages
                 WHERE topic = $1 AND enqueued_at >= $2 AND ($3::uuid IS NULL OR id > $3)
                 ORDER BY id LIMIT $4",
                &[&topic, &col(since), &after, &REPLAY_CHUNK],
            )
            .await?;
            let mut woke = false;
            for r in &rows {
                let id: Uuid = r.get(0);
                let key: Option<String> = r.get(1);
                let not_before = super::rows::ts(r.get(2));
                woke |= self
                    .new_delivery(&tx, id, handler, key.as_deref(), not_before, now.at)
                    .await?;
                after = Some(id);
            }
            if woke {
                self.notify_ready(&tx).await?;
            }
            self.commit(tx, 1).await?;
            if woke {
                self.signal_ready();
            }
            count += rows.len() as u64;
            if rows.len() < REPLAY_CHUNK as usize {
                return Ok(count);
            }
        }
    }
}
