//! Upkeep: promote due, next due, expired leases, prune, and releasing this
//! runner's own leases at open. Safe when every runner runs it at once: each
//! pick is `FOR UPDATE SKIP LOCKED` or a guarded update, and rescue settles
//! through the fenced [`Store::fail`](crate::store::Store::fail).

use deadpool_postgres::GenericClient;

use super::error::db;
use super::queue::Fate;
use super::rows::{DELIVERY_COLS, DeliveryRow, col};
use super::sql::{execute, query, query_one};
use super::{Core, Now};
use crate::clock::Timestamp;
use crate::store::{AttemptReport, ExpiredLease, Lease, MODULE_GRACE, PruneReport, StoreResult};

/// Leases released per transaction at open.
const RELEASE_CHUNK: i64 = 512;
/// What a released attempt's report says.
const RESTARTED: &str = "process restarted";

fn before(now: Timestamp, d: std::time::Duration) -> i64 {
    col(Timestamp(now.0.saturating_sub(d.as_millis() as u64)))
}

impl Core {
    /// Makes up to `limit` scheduled or retrying deliveries whose time has
    /// come ready. Not flushed on its own (a promotion lost in a crash is
    /// redone).
    pub(super) async fn promote_due_now(&self, limit: usize) -> StoreResult<usize> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        tx.batch_execute("SET LOCAL synchronous_commit = off")
            .await
            .map_err(db)?;
        let now = self.now(&tx).await?;
        let n = execute(
            &tx,
            "WITH due AS MATERIALIZED (
                 SELECT id FROM deliveries WHERE state IN (0, 4) AND due <= $1
                 ORDER BY due, id LIMIT $2 FOR UPDATE SKIP LOCKED)
             UPDATE deliveries d SET state = 2, due = NULL, ready_since = $1
             FROM due WHERE d.id = due.id",
            &[&col(now.at), &(limit as i64)],
        )
        .await?;
        if n > 0 {
            self.notify_ready(&tx).await?;
        }
        tx.commit().await.map_err(db)?;
        if n > 0 {
            self.signal_ready();
        }
        Ok(n as usize)
    }

    /// The earliest due time of a scheduled or retrying delivery.
    pub(super) async fn next_due_of<C: GenericClient + Sync>(
        &self,
        c: &C,
    ) -> StoreResult<Option<Timestamp>> {
        let row = query_one(
            c,
            "SELECT min(due) FROM deliveries WHERE state IN (0, 4)",
            &[],
        )
        .await?;
        Ok(super::rows::ts(row.get(0)))
    }

    /// Up to `limit` leases whose expiry passed (by the store's clock), earliest first.
    pub(super) async fn expired_leases_of<C: GenericClient + Sync>(
        &self,
        c: &C,
        limit: usize,
    ) -> StoreResult<Vec<ExpiredLease>> {
        let now = self.now(c).await?;
        let rows = query(
            c,
            "SELECT d.id, d.lease_token, d.lease_expires_at, d.handler, d.attempt,
                 coalesce(a.started_at, $1)
             FROM deliveries d
             LEFT JOIN attempts a ON a.delivery_id = d.id AND a.seq = d.attempt_records
             WHERE d.state = 3 AND d.lease_expires_at <= $1
             ORDER BY d.lease_expires_at, d.id LIMIT $2",
            &[&col(now.at), &(limit as i64)],
        )
        .await?;
        Ok(rows
            .iter()
            .map(|r| ExpiredLease {
                lease: Lease {
                    delivery_id: r.get(0),
                    token: r.get::<_, i64>(1) as u64,
                    expires_at: Timestamp(r.get::<_, i64>(2) as u64),
                },
                handler: r.get(3),
                attempt: r.get::<_, i32>(4) as u32,
                started_at: Timestamp(r.get::<_, i64>(5) as u64),
            })
            .collect())
    }

    /// Removes up to `limit` of each kind past retention or the window.
    pub(super) async fn prune_now(&self, limit: usize) -> StoreResult<PruneReport> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let now = self.now(&tx).await?;
        let limit = limit as i64;
        let window = self.config.idempotency_window;
        let idempotency_keys = execute(
            &tx,
            "DELETE FROM idempotency WHERE (topic, key) IN (
                 SELECT topic, key FROM idempotency WHERE at <= $1
                 ORDER BY at LIMIT $2 FOR UPDATE SKIP LOCKED)",
            &[&before(now.at, window), &limit],
        )
        .await?;
        let dead = execute(
            &tx,
            "DELETE FROM deliveries WHERE id IN (
                 SELECT id FROM deliveries WHERE state = 6 AND dead_at <= $1
                 ORDER BY dead_at, handler, id LIMIT $2 FOR UPDATE SKIP LOCKED)",
            &[&before(now.at, self.config.dlq_retention), &limit],
        )
        .await?;
        // Stripes of backends that are gone fold into stripe 0 (a backend
        // counts only in its own stripe: schema version 3).
        execute(
            &tx,
            "WITH gone AS (
                 DELETE FROM counters WHERE stripe <> 0
                   AND stripe NOT IN (SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL)
                 RETURNING handler, state, n)
             INSERT INTO counters AS c (handler, state, stripe, n)
             SELECT handler, state, 0, sum(n) FROM gone
             GROUP BY handler, state ORDER BY handler, state
             ON CONFLICT (handler, state, stripe) DO UPDATE SET n = c.n + EXCLUDED.n",
            &[],
        )
        .await?;
        let messages = execute(
            &tx,
            "DELETE FROM messages WHERE id IN (
                 SELECT m.id FROM messages m WHERE m.enqueued_at <= $1
                   AND NOT EXISTS (SELECT 1 FROM deliveries d
                                   WHERE d.message_id = m.id AND d.state <> 5)
                 ORDER BY m.enqueued_at, m.id LIMIT $2 FOR UPDATE SKIP LOCKED)",
            &[&before(now.at, self.config.message_retention), &limit],
        )
        .await?;
        self.commit(tx, 1).await?;
        // After the commit above: the deliveries it deleted no longer refer.
        let modules = self.collect_modules(now, limit).await?;
        Ok(PruneReport {
            messages,
            dead,
            idempotency_keys,
            modules,
        })
    }

    /// One pass of module collection: marks modules nothing references
    /// (no handler's current module, no attempt's) with the time, clears the
    /// mark of those referenced again, and deletes up to `limit` whose mark is
    /// [`MODULE_GRACE`] old and that are still unreferenced. One runner at a
    /// time (a transaction-scoped advisory lock; the others skip the pass), so
    /// passes never wait on each other's row locks. A `put_handler` of the
    /// same bytes races only with the `DELETE`: see schema version 6.
    async fn collect_modules(&self, now: Now, limit: i64) -> StoreResult<u64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let mine: bool = query_one(
            &tx,
            "SELECT pg_try_advisory_xact_lock(hashtext('sluice-module-gc:' || current_schema()))",
            &[],
        )
        .await?
        .get(0);
        if !mine {
            return Ok(0);
        }
        const USED: &str = "(EXISTS (SELECT 1 FROM handlers h WHERE h.module_sha256 = m.sha256)
             OR EXISTS (SELECT 1 FROM attempts a WHERE a.module_sha256 = m.sha256))";
        execute(
            &tx,
            &format!(
                "UPDATE modules m SET unused_since = NULL WHERE unused_since IS NOT NULL AND {USED}"
            ),
            &[],
        )
        .await?;
        execute(
            &tx,
            &format!(
                "UPDATE modules m SET unused_since = $1 WHERE unused_since IS NULL AND NOT {USED}"
            ),
            &[&col(now.at)],
        )
        .await?;
        let deleted = execute(
            &tx,
            &format!(
                "DELETE FROM modules WHERE sha256 IN (
                     SELECT sha256 FROM modules m WHERE unused_since <= $1 AND NOT {USED}
                     ORDER BY sha256 LIMIT $2 FOR UPDATE SKIP LOCKED)"
            ),
            &[&before(now.at, MODULE_GRACE), &limit],
        )
        .await?;
        self.commit(tx, 1).await?;
        if deleted > 0 {
            tracing::info!(modules = deleted, "deleted modules nothing references");
        }
        Ok(deleted)
    }

    /// Releases the leases this runner id holds (a previous life of this
    /// runner crashed or stopped with attempts in flight): each attempt is
    /// recorded as interrupted and the policy decides its fate. Other
    /// runners' leases are theirs: they expire and are rescued.
    pub(super) async fn release_own_leases(&self) -> StoreResult<u64> {
        let mut released = 0;
        loop {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(db)?;
            let now: Now = self.now(&tx).await?;
            let rows = query(
                &tx,
                &format!(
                    "SELECT {DELIVERY_COLS} FROM deliveries WHERE state = 3 AND lease_owner = $1
                     ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED"
                ),
                &[&self.runner_id, &RELEASE_CHUNK],
            )
            .await?;
            let n = rows.len();
            let mut settles = Vec::with_capacity(n);
            for r in &rows {
                let rec = DeliveryRow::from_row(r)?;
                let record = self.handler_record(&tx, &rec.handler).await.ok();
                let started = query(
                    &tx,
                    "SELECT started_at FROM attempts WHERE delivery_id = $1 AND seq = $2",
                    &[&rec.id, &rec.attempt_records],
                )
                .await?
                .first()
                .map_or(now.at, |r| Timestamp(r.get::<_, i64>(0) as u64));
                let report = AttemptReport::interrupted(
                    RESTARTED,
                    now.at.since(started).as_millis() as u64,
                    record
                        .as_ref()
                        .map(|h| h.module_sha256.clone())
                        .unwrap_or_default(),
                );
                let policy = record.map(|h| h.policy).unwrap_or_default();
                let disposition = {
                    let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
                    policy.fate(&report.outcome, rec.attempt, &mut *rng)
                };
                let lease = Lease {
                    delivery_id: rec.id,
                    token: rec.lease_token.unwrap_or_default() as u64,
                    expires_at: rec.lease_expires_at.unwrap_or(now.at),
                };
                settles.push((lease, report, Fate::Fail(disposition)));
            }
            if n > 0 {
                // Locked above: every lease is current, none is lost.
                self.settle_many(&tx, settles, now).await?;
                self.notify_ready(&tx).await?;
            }
            self.commit(tx, 1).await?;
            released += n as u64;
            if n < RELEASE_CHUNK as usize {
                if released > 0 {
                    tracing::info!(released, runner = %self.runner_id, "released this runner's leases from its previous run");
                    self.signal_ready();
                }
                return Ok(released);
            }
        }
    }
}
