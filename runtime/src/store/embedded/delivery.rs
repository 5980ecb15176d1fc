//! The delivery record and its state transitions.
//!
//! A delivery's index entry (ready, scheduled, leased, blocked or dead) and
//! its per-state count follow from its state alone: [`state_entry`] derives
//! the entry and [`save`] is the one function that writes a delivery, given
//! its record before and after the change. It removes the old entry, writes
//! the new one and moves the count, so indexes cannot drift from states.
//! It also keeps the query indexes (`Q` by handler and state, `O` by
//! ordering key; see [`query_entries`]) behind `Store::query_deliveries`.
//! The transitions below only change the record's fields.

use serde::{Deserialize, Serialize};

use super::codec::{self, id_time_value, id_value, parse_id_value};
use super::txn::Txn;
use super::{Inner, keys};
use crate::clock::Timestamp;
use crate::policy::Disposition;
use crate::store::{
    AttemptRecord, AttemptReport, DeliveryId, DeliveryState, DeliveryStatus, Lease, Message,
    MessageId, StoreError, StoreResult,
};

/// A delivery as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct DeliveryRec {
    pub(super) id: DeliveryId,
    pub(super) message_id: MessageId,
    pub(super) handler: String,
    pub(super) ordering_key: Option<String>,
    pub(super) not_before: Option<Timestamp>,
    /// Enqueue order (global sequence).
    pub(super) seq: u64,
    pub(super) state: DeliveryState,
    /// Scheduled or retrying: when due.
    pub(super) due: Option<Timestamp>,
    /// Leased: (fencing token, expiry).
    pub(super) lease: Option<(u64, Timestamp)>,
    /// Ready: since when (consumer lag).
    pub(super) ready_since: Option<Timestamp>,
    /// Attempt number within the round (1-based once leased).
    pub(super) attempt: u32,
    /// Attempt records written, across rounds.
    pub(super) attempt_records: u32,
    pub(super) round: u32,
    pub(super) dead_reason: Option<String>,
    pub(super) dead_at: Option<Timestamp>,
    pub(super) created_at: Timestamp,
}

pub(super) use crate::store::new_id;

/// The index entry (key, value) of a delivery in its state; `None` for
/// succeeded deliveries, which are found through their message only.
pub(super) fn state_entry(rec: &DeliveryRec) -> Option<(Vec<u8>, Vec<u8>)> {
    let at = |t: Option<Timestamp>| t.unwrap_or(Timestamp(0));
    Some(match rec.state {
        DeliveryState::Ready => (
            keys::ready(&rec.handler, rec.seq),
            id_time_value(rec.id, at(rec.ready_since)),
        ),
        DeliveryState::Scheduled | DeliveryState::Retrying => {
            (keys::scheduled(at(rec.due), rec.id), Vec::new())
        }
        DeliveryState::Leased => (keys::leased(at(rec.lease.map(|l| l.1)), rec.id), Vec::new()),
        DeliveryState::Blocked => (
            keys::blocked(
                &rec.handler,
                rec.ordering_key.as_deref().unwrap_or(""),
                rec.seq,
            ),
            id_value(rec.id),
        ),
        DeliveryState::Dead => (
            keys::dead(&rec.handler, at(rec.dead_at), rec.id),
            Vec::new(),
        ),
        DeliveryState::Succeeded => return None,
    })
}

/// The query index keys of a delivery: by (handler, state) and, when it has
/// one, by (handler, ordering key). Values are empty.
pub(super) fn query_entries(rec: &DeliveryRec) -> impl Iterator<Item = Vec<u8>> + use<> {
    let by_state = keys::by_state(&rec.handler, rec.state, rec.id);
    let by_key = rec
        .ordering_key
        .as_deref()
        .map(|k| keys::by_ordering_key(&rec.handler, k, rec.id));
    std::iter::once(by_state).chain(by_key)
}

/// Writes a delivery's change: `before` is its stored record (`None` when
/// new), `after` its new one (`None` to delete it). Removes the old index
/// entry, writes the new one, moves the count and writes (or deletes) the
/// record and its place in its message's index. Attempts are the caller's.
pub(super) fn save(
    txn: &mut Txn<'_>,
    before: Option<&DeliveryRec>,
    after: Option<&DeliveryRec>,
) -> StoreResult<()> {
    let old = before.and_then(state_entry);
    let new = after.and_then(state_entry);
    if let Some((k, _)) = &old
        && new.as_ref().is_none_or(|(n, _)| n != k)
    {
        txn.del(k.clone());
    }
    let old_query: Vec<_> = before.into_iter().flat_map(query_entries).collect();
    let new_query: Vec<_> = after.into_iter().flat_map(query_entries).collect();
    for k in &old_query {
        if !new_query.contains(k) {
            txn.del(k.clone());
        }
    }
    for k in new_query {
        if !old_query.contains(&k) {
            txn.put(k, Vec::new());
        }
    }
    if let Some(rec) = before {
        txn.count(&rec.handler, rec.state, -1);
    }
    if let Some((k, v)) = new {
        txn.put(k, v);
    }
    match after {
        Some(rec) => {
            txn.count(&rec.handler, rec.state, 1);
            if rec.state == DeliveryState::Ready {
                txn.woke = true;
            }
            if before.is_none() {
                txn.put(keys::message_delivery(rec.message_id, rec.id), Vec::new());
            }
            txn.put(keys::delivery(rec.id), codec::encode(rec)?);
        }
        None => {
            if let Some(rec) = before {
                txn.del(keys::message_delivery(rec.message_id, rec.id));
                txn.del(keys::delivery(rec.id));
            }
        }
    }
    Ok(())
}

impl DeliveryRec {
    /// A new delivery of `message` for `handler`, not yet placed.
    pub(super) fn new(message: &Message, handler: String, seq: u64, now: Timestamp) -> Self {
        DeliveryRec {
            id: new_id(now),
            message_id: message.id,
            handler,
            ordering_key: message.ordering_key.clone(),
            not_before: message.not_before,
            seq,
            state: DeliveryState::Ready,
            due: None,
            lease: None,
            ready_since: None,
            attempt: 0,
            attempt_records: 0,
            round: 0,
            dead_reason: None,
            dead_at: None,
            created_at: now,
        }
    }

    /// Scheduled until its not-before time, else ready (it holds its key or
    /// has none).
    pub(super) fn activate(&mut self, now: Timestamp) {
        match self.not_before.filter(|t| *t > now) {
            Some(due) => {
                self.state = DeliveryState::Scheduled;
                self.due = Some(due);
            }
            None => self.make_ready(now),
        }
    }

    /// Ready from `now` on.
    pub(super) fn make_ready(&mut self, now: Timestamp) {
        self.state = DeliveryState::Ready;
        self.due = None;
        self.ready_since = Some(now);
    }

    /// What inspection shows of it, with its attempts.
    pub(super) fn status(self, attempts: Vec<AttemptRecord>) -> DeliveryStatus {
        DeliveryStatus {
            id: self.id,
            message_id: self.message_id,
            handler: self.handler,
            state: self.state,
            next_at: self.due,
            lease_expires_at: self.lease.map(|l| l.1),
            dead_reason: self.dead_reason,
            dead_at: self.dead_at,
            created_at: self.created_at,
            attempts,
        }
    }
}

impl Inner {
    /// Places a new or replayed delivery: behind its key if the key is busy,
    /// else scheduled or ready.
    pub(super) fn place(
        &self,
        txn: &mut Txn<'_>,
        rec: &mut DeliveryRec,
        now: Timestamp,
    ) -> StoreResult<()> {
        if let Some(key) = &rec.ordering_key {
            let head = keys::key_head(&rec.handler, key);
            match txn.get(&head) {
                Some(v) if parse_id_value(&v, "key head")? != rec.id => {
                    rec.state = DeliveryState::Blocked;
                    return Ok(());
                }
                _ => txn.put(head, id_value(rec.id)),
            }
        }
        rec.activate(now);
        Ok(())
    }

    /// The delivery left the in-flight set for its key: hand the key to the next
    /// blocked delivery, if any.
    pub(super) fn release_key(
        &self,
        txn: &mut Txn<'_>,
        rec: &DeliveryRec,
        now: Timestamp,
    ) -> StoreResult<()> {
        let Some(key) = &rec.ordering_key else {
            return Ok(());
        };
        let head = keys::key_head(&rec.handler, key);
        match txn.get(&head) {
            Some(v) if parse_id_value(&v, "key head")? == rec.id => {}
            _ => return Ok(()),
        }
        match txn.first(&keys::blocked_of(&rec.handler, key)) {
            Some((_, v)) => {
                let next_id = parse_id_value(&v, "blocked entry")?;
                let before = txn.delivery(next_id)?;
                let mut next = before.clone();
                txn.put(head, id_value(next_id));
                next.activate(now);
                save(txn, Some(&before), Some(&next))?;
            }
            None => txn.del(head),
        }
        Ok(())
    }

    /// Checks the lease and returns the delivery it covers.
    pub(super) fn leased(&self, txn: &Txn<'_>, lease: &Lease) -> StoreResult<DeliveryRec> {
        let rec = txn.delivery(lease.delivery_id).map_err(|e| match e {
            StoreError::UnknownDelivery(id) => StoreError::LeaseLost(id),
            e => e,
        })?;
        if rec.state != DeliveryState::Leased || rec.lease.map(|l| l.0) != Some(lease.token) {
            return Err(StoreError::LeaseLost(lease.delivery_id));
        }
        Ok(rec)
    }

    /// Writes the outcome into the running attempt's record and drops the lease.
    pub(super) fn finish_attempt(
        &self,
        txn: &mut Txn<'_>,
        rec: &mut DeliveryRec,
        report: AttemptReport,
        now: Timestamp,
    ) -> StoreResult<()> {
        let key = keys::attempt(rec.id, rec.attempt_records);
        let mut attempt: AttemptRecord = match txn.get(&key) {
            Some(v) => codec::decode_attempt(&v)?,
            None => AttemptRecord {
                number: rec.attempt,
                round: rec.round,
                started_at: now,
                finished_at: None,
                report: None,
            },
        };
        attempt.finished_at = Some(now);
        super::modules::refer(txn, rec, &report.module_sha256)?;
        attempt.report = Some(report);
        txn.put(key, codec::encode_attempt(&attempt)?);
        rec.lease = None;
        Ok(())
    }

    /// When the running attempt of `rec` started (`now` if it has no record).
    pub(super) fn attempt_started(
        &self,
        txn: &Txn<'_>,
        rec: &DeliveryRec,
        now: Timestamp,
    ) -> StoreResult<Timestamp> {
        match txn.get(&keys::attempt(rec.id, rec.attempt_records)) {
            Some(v) => Ok(codec::decode_attempt(&v)?.started_at),
            None => Ok(now),
        }
    }

    /// Dead-letters a delivery whose attempt was finished.
    fn kill(
        &self,
        txn: &mut Txn<'_>,
        rec: &mut DeliveryRec,
        reason: String,
        now: Timestamp,
    ) -> StoreResult<()> {
        rec.state = DeliveryState::Dead;
        rec.dead_at = Some(now);
        rec.due = None;
        tracing::warn!(delivery = %rec.id, message_id = %rec.message_id, handler = %rec.handler, %reason, "delivery dead-lettered");
        rec.dead_reason = Some(reason);
        self.release_key(txn, rec, now)
    }

    /// Applies a failure's disposition (the policy's answer) to a delivery
    /// whose attempt was finished.
    pub(super) fn dispose(
        &self,
        txn: &mut Txn<'_>,
        rec: &mut DeliveryRec,
        disposition: Disposition,
        now: Timestamp,
    ) -> StoreResult<()> {
        match disposition {
            Disposition::Retry { after } => {
                rec.state = DeliveryState::Retrying;
                rec.due = Some(now.plus(after));
                Ok(())
            }
            Disposition::Dead { reason } => self.kill(txn, rec, reason, now),
        }
    }

    /// Deletes a delivery with its attempts, index entries and module references.
    pub(super) fn delete_delivery(
        &self,
        txn: &mut Txn<'_>,
        rec: &DeliveryRec,
        now: Timestamp,
    ) -> StoreResult<()> {
        if rec.state.is_open() {
            self.release_key(txn, rec, now)?;
        }
        save(txn, Some(rec), None)?;
        self.forget_refs(txn, rec.id)?;
        for (k, _) in self.tree.scan_prefix(keys::attempts(rec.id)) {
            txn.del(k.to_vec());
        }
        Ok(())
    }

    /// Creates and places a delivery of `message` for `handler`.
    pub(super) fn new_delivery(
        &self,
        seq: u64,
        txn: &mut Txn<'_>,
        message: &Message,
        handler: String,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut rec = DeliveryRec::new(message, handler, seq, now);
        self.place(txn, &mut rec, now)?;
        save(txn, None, Some(&rec))
    }

    /// A delivery with its attempts, oldest first.
    pub(super) fn status(&self, rec: DeliveryRec) -> StoreResult<DeliveryStatus> {
        let attempts = self
            .tree
            .scan_prefix(keys::attempts(rec.id))
            .map(|(_, v)| codec::decode_attempt(&v))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(rec.status(attempts))
    }

    pub(super) fn read_delivery(&self, id: DeliveryId) -> StoreResult<DeliveryRec> {
        Txn::new(&self.tree).delivery(id)
    }
}
