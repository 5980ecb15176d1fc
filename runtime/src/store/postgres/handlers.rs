//! Handlers and modules. Read from the database on every use (no cache), so
//! a registration, re-registration, pause or resume made through any runner
//! is what every runner's next lease sees; the handlers signal
//! ([`super::notify`]) only makes them look at once.

use bytes::Bytes;
use deadpool_postgres::GenericClient;
use sha2::{Digest, Sha256};

use super::error::db;
use super::rows::{HANDLER_COLS, col, handler};
use super::sql::{execute, query, query_opt};
use super::{Core, Now, Tx};
use crate::store::{HandlerRecord, HandlerSpec, StoreError, StoreResult};

/// Deliveries deleted per statement when a handler goes.
const REMOVE_CHUNK: i64 = 4096;

impl Core {
    /// One handler, from `c` (a transaction or a plain connection).
    pub(super) async fn handler_record<C: GenericClient + Sync>(
        &self,
        c: &C,
        name: &str,
    ) -> StoreResult<HandlerRecord> {
        let row = query_opt(
            c,
            &format!("SELECT {HANDLER_COLS} FROM handlers WHERE name = $1"),
            &[&name],
        )
        .await?
        .ok_or_else(|| StoreError::UnknownHandler(name.to_string()))?;
        handler(&row)
    }

    /// All handlers, by name.
    pub(super) async fn handler_records<C: GenericClient + Sync>(
        &self,
        c: &C,
    ) -> StoreResult<Vec<HandlerRecord>> {
        query(
            c,
            &format!("SELECT {HANDLER_COLS} FROM handlers ORDER BY name"),
            &[],
        )
        .await?
        .iter()
        .map(handler)
        .collect()
    }

    /// Registers or replaces a handler (validated) and stores its module.
    pub(super) async fn put_handler_in(
        &self,
        tx: &Tx<'_>,
        spec: HandlerSpec,
        module: &[u8],
        now: Now,
    ) -> StoreResult<HandlerRecord> {
        let sha = hex::encode(Sha256::digest(module));
        let old = query_opt(
            tx,
            &format!("SELECT {HANDLER_COLS} FROM handlers WHERE name = $1 FOR UPDATE"),
            &[&spec.name],
        )
        .await?
        .map(|r| handler(&r))
        .transpose()?;
        crate::store::check_same_topic(old.as_ref(), &spec)?;
        let record = HandlerRecord {
            name: spec.name.clone(),
            topic: spec.topic.clone(),
            module_sha256: sha.clone(),
            policy: spec.policy,
            // The runner's pause for an unrunnable configuration ends with a
            // new registration; a user's pause stays.
            paused: old
                .as_ref()
                .is_some_and(|o| o.paused && o.paused_reason.is_none()),
            paused_reason: None,
            created_at: old.as_ref().map_or(now.at, |o| o.created_at),
            updated_at: now.at,
            version: old.as_ref().map_or(1, |o| o.version + 1),
        };
        // Stored, or in use again: either way its grace (if upkeep had
        // started one) ends, in the row write a concurrent collection's
        // DELETE waits for and re-checks (schema version 6). If that DELETE
        // went first, the conflict is gone and the row is inserted anew.
        execute(
            tx,
            "INSERT INTO modules (sha256, bytes) VALUES ($1, $2)
             ON CONFLICT (sha256) DO UPDATE SET unused_since = NULL",
            &[&sha, &module],
        )
        .await?;
        execute(
            tx,
            "INSERT INTO topics (name) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&record.topic],
        )
        .await?;
        let policy = serde_json::to_value(&record.policy)
            .map_err(|e| StoreError::InvalidInput(format!("policy: {e}")))?;
        execute(
            tx,
            "INSERT INTO handlers (name, topic, module_sha256, policy, paused, version,
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (name) DO UPDATE SET module_sha256 = $3, policy = $4,
                 paused = $5, paused_reason = NULL, version = $6, updated_at = $8",
            &[
                &record.name,
                &record.topic,
                &record.module_sha256,
                &policy,
                &record.paused,
                &(record.version as i64),
                &col(record.created_at),
                &col(record.updated_at),
            ],
        )
        .await?;
        Ok(record)
    }

    /// A module's bytes.
    pub(super) async fn module_bytes<C: GenericClient + Sync>(
        &self,
        c: &C,
        sha256: &str,
    ) -> StoreResult<Bytes> {
        let row = query_opt(c, "SELECT bytes FROM modules WHERE sha256 = $1", &[&sha256])
            .await?
            .ok_or_else(|| StoreError::UnknownModule(sha256.to_string()))?;
        Ok(Bytes::from(row.get::<_, Vec<u8>>(0)))
    }

    /// Pauses or resumes a handler.
    pub(super) async fn set_paused_in(
        &self,
        tx: &Tx<'_>,
        name: &str,
        paused: bool,
        now: Now,
    ) -> StoreResult<HandlerRecord> {
        let row = query_opt(
            tx,
            &format!(
                "UPDATE handlers SET paused = $2, paused_reason = NULL, updated_at = $3
                 WHERE name = $1 RETURNING {HANDLER_COLS}"
            ),
            &[&name, &paused, &col(now.at)],
        )
        .await?
        .ok_or_else(|| StoreError::UnknownHandler(name.to_string()))?;
        handler(&row)
    }

    /// The runner's pause of an unrunnable handler, if it is still at
    /// `version` and running; whether it paused it.
    pub(super) async fn pause_unrunnable_in(
        &self,
        tx: &Tx<'_>,
        name: &str,
        version: u64,
        reason: &str,
        now: Now,
    ) -> StoreResult<bool> {
        let n = execute(
            tx,
            "UPDATE handlers SET paused = true, paused_reason = $3, updated_at = $4
             WHERE name = $1 AND version = $2 AND NOT paused",
            &[&name, &(version as i64), &reason, &col(now.at)],
        )
        .await?;
        Ok(n > 0)
    }

    /// Removes a handler with its deliveries, key heads and counts; returns
    /// how many deliveries went. The handler row goes first (so no runner
    /// leases for it any more), then the deliveries in chunks, each its own
    /// transaction, so a huge backlog never makes one huge transaction.
    pub(super) async fn remove_handler_now(&self, name: &str) -> StoreResult<u64> {
        {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(db)?;
            let gone = execute(&tx, "DELETE FROM handlers WHERE name = $1", &[&name]).await?;
            if gone == 0 {
                return Err(StoreError::UnknownHandler(name.to_string()));
            }
            execute(&tx, "DELETE FROM key_heads WHERE handler = $1", &[&name]).await?;
            self.commit(tx, 1).await?;
        }
        self.signal_handlers().await;
        let mut removed = 0;
        loop {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(db)?;
            let chunk = execute(
                &tx,
                "DELETE FROM deliveries WHERE id IN (
                     SELECT id FROM deliveries WHERE handler = $1 LIMIT $2)",
                &[&name, &REMOVE_CHUNK],
            )
            .await?;
            if chunk < REMOVE_CHUNK as u64 {
                execute(&tx, "DELETE FROM counters WHERE handler = $1", &[&name]).await?;
            }
            self.commit(tx, 1).await?;
            removed += chunk;
            if chunk < REMOVE_CHUNK as u64 {
                return Ok(removed);
            }
        }
    }
}
