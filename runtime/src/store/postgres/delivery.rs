//! A delivery's transitions, inside the caller's transaction: placing a new
//! or replayed delivery (behind its key or not), handing a key to the next
//! blocked delivery, fencing a lease (settling many at once is
//! [`super::settle`]). The same rules as the embedded store's
//! `delivery.rs`; the row locks make them safe across runners.

use uuid::Uuid;

use super::rows::{DELIVERY_COLS, DeliveryRow, col, state_code};
use super::sql::{execute, query_opt};
use super::{Core, Tx};
use crate::clock::Timestamp;
use crate::store::{DeliveryState, Lease, StoreError, StoreResult};

/// Where a new or replayed delivery starts: behind its key when another
/// delivery holds it, else scheduled until its not-before time, else ready.
pub(super) struct Placement {
    pub(super) state: DeliveryState,
    pub(super) due: Option<Timestamp>,
    pub(super) ready_since: Option<Timestamp>,
}

/// Scheduled until `not_before`, else ready from `now`.
pub(super) fn activation(not_before: Option<Timestamp>, now: Timestamp) -> Placement {
    match not_before.filter(|t| *t > now) {
        Some(due) => Placement {
            state: DeliveryState::Scheduled,
            due: Some(due),
            ready_since: None,
        },
        None => Placement {
            state: DeliveryState::Ready,
            due: None,
            ready_since: Some(now),
        },
    }
}

impl Core {
    /// Takes the key for delivery `id` if it is free (the upsert locks the
    /// key's row, so concurrent enqueues of one key queue here), else blocked.
    pub(super) async fn place(
        &self,
        tx: &Tx<'_>,
        id: Uuid,
        handler: &str,
        key: Option<&str>,
        not_before: Option<Timestamp>,
        now: Timestamp,
    ) -> StoreResult<Placement> {
        if let Some(key) = key {
            let row = query_opt(
                tx,
                "INSERT INTO key_heads AS k (handler, ordering_key, head) VALUES ($1, $2, $3)
                 ON CONFLICT (handler, ordering_key) DO UPDATE SET head = k.head
                 RETURNING head",
                &[&handler, &key, &id],
            )
            .await?;
            let head: Uuid = row.map(|r| r.get(0)).unwrap_or(id);
            if head != id {
                return Ok(Placement {
                    state: DeliveryState::Blocked,
                    due: None,
                    ready_since: None,
                });
            }
        }
        Ok(activation(not_before, now))
    }

    /// `rec` left the in-flight set of its key: hand the key to the next
    /// blocked delivery (by enqueue order), or free it. Returns whether a
    /// delivery became ready.
    pub(super) async fn release_key(
        &self,
        tx: &Tx<'_>,
        rec: &DeliveryRow,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let Some(key) = &rec.ordering_key else {
            return Ok(false);
        };
        let head = query_opt(
            tx,
            "SELECT head FROM key_heads WHERE handler = $1 AND ordering_key = $2 FOR UPDATE",
            &[&rec.handler, key],
        )
        .await?;
        if head.map(|r| r.get::<_, Uuid>(0)) != Some(rec.id) {
            return Ok(false);
        }
        let next = query_opt(
            tx,
            "SELECT id, not_before FROM deliveries
             WHERE handler = $1 AND ordering_key = $2 AND state = 1
             ORDER BY seq LIMIT 1 FOR UPDATE",
            &[&rec.handler, key],
        )
        .await?;
        match next {
            Some(r) => {
                let next_id: Uuid = r.get(0);
                let p = activation(super::rows::ts(r.get(1)), now);
                execute(
                    tx,
                    "UPDATE key_heads SET head = $3 WHERE handler = $1 AND ordering_key = $2",
                    &[&rec.handler, key, &next_id],
                )
                .await?;
                self.set_placement(tx, next_id, &p).await?;
                Ok(p.state == DeliveryState::Ready)
            }
            None => {
                execute(
                    tx,
                    "DELETE FROM key_heads WHERE handler = $1 AND ordering_key = $2",
                    &[&rec.handler, key],
                )
                .await?;
                Ok(false)
            }
        }
    }

    /// Writes a placement into delivery `id`.
    pub(super) async fn set_placement(
        &self,
        tx: &Tx<'_>,
        id: Uuid,
        p: &Placement,
    ) -> StoreResult<()> {
        execute(
            tx,
            "UPDATE deliveries SET state = $2, due = $3, ready_since = $4 WHERE id = $1",
            &[
                &id,
                &state_code(p.state),
                &p.due.map(col),
                &p.ready_since.map(col),
            ],
        )
        .await?;
        Ok(())
    }

    /// Locks the delivery `lease` covers and checks the lease is current
    /// (fencing): [`StoreError::LeaseLost`] otherwise.
    pub(super) async fn leased(&self, tx: &Tx<'_>, lease: &Lease) -> StoreResult<DeliveryRow> {
        let row = query_opt(
            tx,
            &format!("SELECT {DELIVERY_COLS} FROM deliveries WHERE id = $1 FOR UPDATE"),
            &[&lease.delivery_id],
        )
        .await?
        .ok_or(StoreError::LeaseLost(lease.delivery_id))?;
        let rec = DeliveryRow::from_row(&row)?;
        if rec.state != DeliveryState::Leased || rec.lease_token != Some(lease.token as i64) {
            return Err(StoreError::LeaseLost(lease.delivery_id));
        }
        Ok(rec)
    }

    /// Inserts a new delivery of message `message_id` for `handler`, placed.
    /// Returns whether it is ready.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn new_delivery(
        &self,
        tx: &Tx<'_>,
        message_id: Uuid,
        handler: &str,
        key: Option<&str>,
        not_before: Option<Timestamp>,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let id = crate::store::new_id(now);
        let p = self.place(tx, id, handler, key, not_before, now).await?;
        execute(
            tx,
            "INSERT INTO deliveries (id, message_id, handler, ordering_key, not_before, state,
                due, ready_since, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &id,
                &message_id,
                &handler,
                &key,
                &not_before.map(col),
                &state_code(p.state),
                &p.due.map(col),
                &p.ready_since.map(col),
                &col(now),
            ],
        )
        .await?;
        Ok(p.state == DeliveryState::Ready)
    }
}
