//! Schedules: one row per schedule (its record as JSON, and the revision),
//! numbered occurrence rows (the last [`KEPT_OCCURRENCES`]). A tick's
//! advance locks the schedule's row, checks the revision and runs its
//! enqueues in the same transaction as the new record: several runners
//! ticking at once serialise on the row, and the loser finds the revision
//! moved ([`StoreError::ScheduleConflict`]) and writes nothing.

use deadpool_postgres::GenericClient;

use super::error::corrupt;
use super::sql::{execute, query, query_opt};
use super::{Core, Now, Tx};
use crate::store::schedule::conflict;
use crate::store::{
    KEPT_OCCURRENCES, Occurrence, ScheduleAdvance, ScheduleRecord, ScheduleSpec, StoreError,
    StoreResult,
};

fn json<T: serde::Serialize>(v: &T) -> StoreResult<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| corrupt("schedule record", e))
}

fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> StoreResult<T> {
    serde_json::from_value(v).map_err(|e| corrupt("schedule record", e))
}

impl Core {
    /// One schedule; with `lock`, its row locked for the transaction.
    async fn schedule_of<C: GenericClient + Sync>(
        &self,
        c: &C,
        id: &str,
        lock: bool,
    ) -> StoreResult<ScheduleRecord> {
        let sql = if lock {
            "SELECT record FROM schedules WHERE id = $1 FOR UPDATE"
        } else {
            "SELECT record FROM schedules WHERE id = $1"
        };
        let row = query_opt(c, sql, &[&id])
            .await?
            .ok_or_else(|| StoreError::UnknownSchedule(id.to_string()))?;
        from_json(row.get(0))
    }

    async fn save_schedule(&self, tx: &Tx<'_>, rec: &ScheduleRecord) -> StoreResult<()> {
        execute(
            tx,
            "INSERT INTO schedules (id, revision, record) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET revision = EXCLUDED.revision, record = EXCLUDED.record",
            &[&rec.spec.id, &(rec.revision as i64), &json(rec)?],
        )
        .await?;
        Ok(())
    }

    /// One schedule.
    pub(super) async fn schedule_record<C: GenericClient + Sync>(
        &self,
        c: &C,
        id: &str,
    ) -> StoreResult<ScheduleRecord> {
        self.schedule_of(c, id, false).await
    }

    /// Every schedule, by id.
    pub(super) async fn schedule_records<C: GenericClient + Sync>(
        &self,
        c: &C,
    ) -> StoreResult<Vec<ScheduleRecord>> {
        query(c, "SELECT record FROM schedules ORDER BY id", &[])
            .await?
            .into_iter()
            .map(|r| from_json(r.get(0)))
            .collect()
    }

    /// Creates or replaces a (validated) schedule.
    pub(super) async fn put_schedule_in(
        &self,
        tx: &Tx<'_>,
        spec: ScheduleSpec,
        now: Now,
    ) -> StoreResult<ScheduleRecord> {
        let known = query_opt(tx, "SELECT 1 FROM topics WHERE name = $1", &[&spec.topic])
            .await?
            .is_some();
        if !known {
            return Err(StoreError::UnknownTopic(spec.topic));
        }
        let rec = match self.schedule_of(tx, &spec.id, true).await {
            Ok(old) => old.replaced(spec, now.at),
            Err(StoreError::UnknownSchedule(_)) => ScheduleRecord::new(spec, now.at),
            Err(e) => return Err(e),
        };
        self.save_schedule(tx, &rec).await?;
        Ok(rec)
    }

    /// Pauses or resumes a schedule.
    pub(super) async fn set_schedule_paused_in(
        &self,
        tx: &Tx<'_>,
        id: &str,
        paused: bool,
        now: Now,
    ) -> StoreResult<ScheduleRecord> {
        let rec = self
            .schedule_of(tx, id, true)
            .await?
            .paused_at(paused, now.at);
        self.save_schedule(tx, &rec).await?;
        Ok(rec)
    }

    /// Removes a schedule with its occurrence rows.
    pub(super) async fn remove_schedule_in(&self, tx: &Tx<'_>, id: &str) -> StoreResult<()> {
        let n = execute(tx, "DELETE FROM schedules WHERE id = $1", &[&id]).await?;
        if n == 0 {
            return Err(StoreError::UnknownSchedule(id.to_string()));
        }
        Ok(())
    }

    /// Applies an advance in `tx`: returns the occurrences recorded and
    /// whether a delivery became ready.
    pub(super) async fn advance_schedule_in(
        &self,
        tx: &Tx<'_>,
        advance: &ScheduleAdvance,
        now: Now,
    ) -> StoreResult<(Vec<Occurrence>, bool)> {
        let mut rec = self.schedule_of(tx, &advance.id, true).await?;
        if rec.revision != advance.revision {
            return Err(conflict(&advance.id));
        }
        let mut answers = Vec::new();
        let mut woke = false;
        for m in advance.messages() {
            let (e, w) = self
                .enqueue_many(tx, std::slice::from_ref(m), now, true)
                .await?;
            woke |= w;
            answers.extend(e.iter().map(|e| (e.id, e.duplicate)));
        }
        let recorded = rec.apply(advance, &answers, now.at);
        for o in &recorded {
            execute(
                tx,
                "INSERT INTO schedule_occurrences (schedule_id, n, record) VALUES ($1, $2, $3)",
                &[&advance.id, &(o.n as i64), &json(o)?],
            )
            .await?;
        }
        if let Some(last) = recorded.last()
            && last.n > KEPT_OCCURRENCES
        {
            execute(
                tx,
                "DELETE FROM schedule_occurrences WHERE schedule_id = $1 AND n <= $2",
                &[&advance.id, &((last.n - KEPT_OCCURRENCES) as i64)],
            )
            .await?;
        }
        self.save_schedule(tx, &rec).await?;
        Ok((recorded, woke))
    }

    /// A schedule's last `limit` occurrence records, newest first.
    pub(super) async fn schedule_occurrences_of<C: GenericClient + Sync>(
        &self,
        c: &C,
        id: &str,
        limit: usize,
    ) -> StoreResult<Vec<Occurrence>> {
        self.schedule_of(c, id, false).await?;
        query(
            c,
            "SELECT record FROM schedule_occurrences WHERE schedule_id = $1
             ORDER BY n DESC LIMIT $2",
            &[&id, &(limit.min(i64::MAX as usize) as i64)],
        )
        .await?
        .into_iter()
        .map(|r| from_json(r.get(0)))
        .collect()
    }
}
