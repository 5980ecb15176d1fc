//! Lease (`FOR UPDATE SKIP LOCKED`, one statement per batch of leases) and
//! extend, and how an attempt settles ([`Fate`]). Enqueue is
//! [`super::enqueue`], settling [`super::settle`]: both run in the group
//! committer's shared transactions ([`super::batch`]).

use std::sync::LazyLock;

use super::error::db;
use super::rows::{MESSAGE_COLS, col, message};
use super::sql::{execute, query};
use super::{Core, Now, PgTime, Tx};
use crate::clock::Timestamp;
use crate::policy::Disposition;
use crate::store::{Lease, Leased, OutboxMessage, StoreResult};

/// How an attempt settles.
pub(super) enum Fate {
    /// Succeeded, with its outbox.
    Complete(Vec<OutboxMessage>),
    /// Failed, with the policy's disposition.
    Fail(Disposition),
}

/// Columns of [`MESSAGE_COLS`]: the lease's own follow them in [`LEASE_SQL`].
const MESSAGE_COLUMNS: usize = 9;

/// The lease statement: pick, lease, record the attempts as started (with
/// their lease token and runner), read the messages. `$1` handler, `$2`
/// most, `$3` lease duration (ms), `$4` runner id, `$5` the injected now, or
/// `NULL` for the database's clock.
///
/// "Now" is read inside the statement, once the picked rows are locked
/// (`clock` aggregates over `picked`): a row is only visible as ready once
/// the commit that made it so is done, so an attempt's recorded start and
/// its lease's expiry are never before the delivery became ready (or before
/// its previous attempt's recorded finish). A "now" read at the start of
/// the transaction could be tens of milliseconds older on a loaded machine.
static LEASE_SQL: LazyLock<String> = LazyLock::new(|| {
    let message_cols: Vec<String> = MESSAGE_COLS.split(", ").map(|c| format!("m.{c}")).collect();
    debug_assert_eq!(message_cols.len(), MESSAGE_COLUMNS);
    format!(
        "WITH picked AS MATERIALIZED (
             SELECT id FROM deliveries WHERE handler = $1 AND state = 2
             ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED),
         clock AS MATERIALIZED (
             SELECT COALESCE($5::bigint,
                 floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) AS now
             FROM (SELECT count(*) FROM picked) locked),
         leased AS (
             UPDATE deliveries d SET state = 3, attempt = d.attempt + 1,
                 attempt_records = d.attempt_records + 1,
                 lease_token = nextval('lease_tokens'), lease_expires_at = clock.now + $3,
                 lease_owner = $4, ready_since = NULL
             FROM picked, clock WHERE d.id = picked.id
             RETURNING d.id, d.message_id, d.lease_token, d.attempt, d.attempt_records,
                 d.round, d.seq, clock.now),
         started AS (
             INSERT INTO attempts (delivery_id, seq, number, round, started_at, lease_token,
                 runner)
             SELECT id, attempt_records, attempt, round, now, lease_token, $4 FROM leased)
         SELECT {}, l.id, l.lease_token, l.attempt, l.now
         FROM leased l JOIN messages m ON m.id = l.message_id
         ORDER BY l.seq",
        message_cols.join(", ")
    )
});

impl Core {
    /// Leases up to `max` ready deliveries of `handler`, oldest first, in
    /// one statement: the SKIP LOCKED pick (behind a MATERIALIZED fence so
    /// the planner cannot update more than the LIMIT), "now" read once the
    /// pick is locked, a fresh token each, this runner as owner, the
    /// attempts recorded as started, the messages read back. Its own
    /// transaction, committed without waiting for the WAL flush
    /// (`synchronous_commit = off`): a lease lost in a crash only makes the
    /// delivery ready again, and the completion's synchronous commit flushes
    /// the WAL up to and including the lease. The setting and the handler
    /// are asked for at once (pipelined on the connection): three round
    /// trips, however many leases.
    pub(super) async fn lease_now(&self, handler: &str, max: usize) -> StoreResult<Vec<Leased>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let (_, record) = tokio::try_join!(
            async {
                tx.batch_execute("SET LOCAL synchronous_commit = off")
                    .await
                    .map_err(db)
            },
            self.handler_record(&tx, handler),
        )?;
        if record.paused || max == 0 {
            return Ok(Vec::new());
        }
        let lease_for = record.policy.lease();
        let injected: Option<i64> = match &self.time {
            PgTime::Injected(clock) => Some(col(clock.now())),
            PgTime::Database => None,
        };
        let rows = query(
            &tx,
            LEASE_SQL.as_str(),
            &[
                &handler,
                &(max as i64),
                &(lease_for.as_millis() as i64),
                &self.runner_id,
                &injected,
            ],
        )
        .await?;
        tx.commit().await.map_err(db)?;
        let max_attempts = record.policy.max_attempts();
        rows.iter()
            .map(|r| {
                let n = MESSAGE_COLUMNS;
                let now = Timestamp(r.get::<_, i64>(n + 3).max(0) as u64);
                Ok(Leased {
                    lease: Lease {
                        delivery_id: r.get(n),
                        token: r.get::<_, i64>(n + 1) as u64,
                        expires_at: now.plus(lease_for),
                    },
                    message: message(r)?,
                    handler: handler.to_string(),
                    attempt: r.get::<_, i32>(n + 2) as u32,
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
}
