//! Schedules: records under `J`, occurrence records under `j` (the last
//! [`KEPT_OCCURRENCES`] per schedule). A tick's advance is one batch with
//! the messages it enqueues, so the cursor never moves without its firings
//! nor a firing land without its cursor; the revision check under the
//! writer lock makes a stale advance change nothing.

use super::txn::Txn;
use super::{Inner, codec, keys};
use crate::store::schedule::conflict;
use crate::store::{
    KEPT_OCCURRENCES, Occurrence, ScheduleAdvance, ScheduleRecord, ScheduleSpec, StoreError,
    StoreResult,
};

impl Inner {
    fn schedule_in(&self, txn: &Txn<'_>, id: &str) -> StoreResult<ScheduleRecord> {
        let v = txn
            .get(&keys::schedule(id))
            .ok_or_else(|| StoreError::UnknownSchedule(id.to_string()))?;
        codec::decode_json(&v)
    }

    fn save_schedule(&self, txn: &mut Txn<'_>, rec: &ScheduleRecord) -> StoreResult<()> {
        txn.put(keys::schedule(&rec.spec.id), codec::encode_json(rec)?);
        Ok(())
    }

    pub(super) fn put_schedule(&self, spec: ScheduleSpec) -> StoreResult<ScheduleRecord> {
        spec.validate(self.config.max_payload_bytes, self.config.max_headers)?;
        let mut w = self.lock();
        let now = self.clock.now();
        let mut txn = Txn::new(&self.tree);
        if txn.get(&keys::topic(&spec.topic)).is_none() {
            return Err(StoreError::UnknownTopic(spec.topic));
        }
        let rec = match self.schedule_in(&txn, &spec.id) {
            Ok(old) => old.replaced(spec, now),
            Err(StoreError::UnknownSchedule(_)) => ScheduleRecord::new(spec, now),
            Err(e) => return Err(e),
        };
        self.save_schedule(&mut txn, &rec)?;
        self.commit(&mut w, txn)?;
        Ok(rec)
    }

    pub(super) fn schedule_record(&self, id: &str) -> StoreResult<ScheduleRecord> {
        self.schedule_in(&Txn::new(&self.tree), id)
    }

    pub(super) fn schedule_records(&self) -> StoreResult<Vec<ScheduleRecord>> {
        self.tree
            .scan_prefix(keys::SCHEDULES)
            .map(|(_, v)| codec::decode_json(&v))
            .collect()
    }

    pub(super) fn set_schedule_paused(
        &self,
        id: &str,
        paused: bool,
    ) -> StoreResult<ScheduleRecord> {
        let mut w = self.lock();
        let mut txn = Txn::new(&self.tree);
        let rec = self
            .schedule_in(&txn, id)?
            .paused_at(paused, self.clock.now());
        self.save_schedule(&mut txn, &rec)?;
        self.commit(&mut w, txn)?;
        Ok(rec)
    }

    pub(super) fn remove_schedule(&self, id: &str) -> StoreResult<()> {
        let mut w = self.lock();
        let mut txn = Txn::new(&self.tree);
        self.schedule_in(&txn, id)?;
        txn.del(keys::schedule(id));
        for (k, _) in self.tree.scan_prefix(keys::occurrences_of(id)) {
            txn.del(k.to_vec());
        }
        self.commit(&mut w, txn)
    }

    pub(super) fn advance_schedule(
        &self,
        advance: &ScheduleAdvance,
    ) -> StoreResult<Vec<Occurrence>> {
        for m in advance.messages() {
            crate::store::validate_message(&self.config, m)?;
        }
        let mut w = self.lock();
        let now = self.clock.now();
        let mut txn = Txn::new(&self.tree);
        let mut rec = self.schedule_in(&txn, &advance.id)?;
        if rec.revision != advance.revision {
            return Err(conflict(&advance.id));
        }
        let mut answers = Vec::new();
        for m in advance.messages() {
            let e = self.enqueue_one(&mut w, &mut txn, m.clone(), now, true)?;
            txn.woke |= !e.duplicate;
            answers.push((e.id, e.duplicate));
        }
        let recorded = rec.apply(advance, &answers, now);
        let id = &advance.id;
        for o in &recorded {
            txn.put(keys::occurrence(id, o.n), codec::encode_json(o)?);
            if o.n > KEPT_OCCURRENCES {
                txn.del(keys::occurrence(id, o.n - KEPT_OCCURRENCES));
            }
        }
        self.save_schedule(&mut txn, &rec)?;
        self.commit(&mut w, txn)?;
        Ok(recorded)
    }

    pub(super) fn schedule_occurrences(
        &self,
        id: &str,
        limit: usize,
    ) -> StoreResult<Vec<Occurrence>> {
        self.schedule_record(id)?;
        self.tree
            .rev_chunk(&keys::occurrences_of(id), None, limit)
            .into_iter()
            .map(|(_, v)| codec::decode_json(&v))
            .collect()
    }
}
