//! The queue's verbs: enqueue (validation, idempotency, backpressure,
//! fan-out), lease, extend, complete (with the outbox) and fail. Each runs
//! its in-memory part here under the writer lock; the `Store` impl in
//! [`super`] then waits for the flush where the verb needs durability.

use super::codec::{id_time_value, parse_id_time_value};
use super::delivery::{DeliveryRec, new_id, save};
use super::txn::Txn;
use super::{Inner, Writer, codec, keys};
use crate::clock::Timestamp;
use crate::policy::Disposition;
use crate::store::{
    AttemptRecord, AttemptReport, DeliveryState, Enqueued, Lease, Leased, Message, NewMessage,
    OutboxMessage, StoreError, StoreResult,
};

impl Inner {
    /// Open deliveries of `topic`'s handlers, including this transaction's.
    fn depth(&self, w: &Writer, txn: &Txn<'_>, handlers: &[String]) -> u64 {
        let mut depth: i64 = 0;
        for h in handlers {
            for s in DeliveryState::ALL.iter().filter(|s| s.is_open()) {
                depth += w.counts.get(&(h.clone(), *s)).copied().unwrap_or(0) as i64;
                depth += txn.counts.get(&(h.clone(), *s)).copied().unwrap_or(0);
            }
        }
        depth.max(0) as u64
    }

    /// Enqueues one message into `txn`. `outbox` messages skip the topic and
    /// depth checks: refusing them would turn a downstream backlog into upstream
    /// failures of work already done (a schedule's firings go the same way).
    pub(super) fn enqueue_one(
        &self,
        w: &mut Writer,
        txn: &mut Txn<'_>,
        m: NewMessage,
        now: Timestamp,
        outbox: bool,
    ) -> StoreResult<Enqueued> {
        let subscribers = self.subscribers(&m.topic);
        if !outbox && txn.get(&keys::topic(&m.topic)).is_none() {
            return Err(StoreError::UnknownTopic(m.topic));
        }
        if outbox && subscribers.is_empty() {
            // Kept for replay (a handler registered later can `replay --since`),
            // but nobody receives it now: say so loudly.
            tracing::warn!(topic = %m.topic, "outbox message published to a topic with no handler");
        }
        if let Some(key) = &m.idempotency_key
            && let Some(v) = txn.get(&keys::idempotency(&m.topic, key))
        {
            let (id, at) = parse_id_time_value(&v, "idempotency entry")?;
            if now < at.plus(self.config.idempotency_window) {
                return Ok(Enqueued {
                    id,
                    duplicate: true,
                });
            }
        }
        if !outbox {
            let depth = self.depth(w, txn, &subscribers);
            let max = self.config.max_topic_depth;
            if depth + subscribers.len() as u64 > max {
                return Err(StoreError::QueueFull {
                    topic: m.topic,
                    depth,
                    max,
                });
            }
        }
        let id = new_id(now);
        let idempotency_key = m.idempotency_key.clone().unwrap_or_else(|| id.to_string());
        if let Some(key) = &m.idempotency_key {
            txn.put(keys::idempotency(&m.topic, key), id_time_value(id, now));
            let expiry = now.plus(self.config.idempotency_window);
            txn.put(keys::idempotency_expiry(expiry, &m.topic, key), Vec::new());
        }
        let message = Message {
            id,
            topic: m.topic,
            payload: m.payload,
            ordering_key: m.ordering_key,
            idempotency_key,
            headers: m.headers,
            enqueued_at: now,
            enqueued_at_micros: self.clock.now_micros(),
            not_before: m.not_before,
        };
        txn.put(keys::topic_message(&message.topic, id), Vec::new());
        for handler in subscribers {
            let seq = w.next_seq();
            self.new_delivery(seq, txn, &message, handler, now)?;
        }
        txn.put(keys::message(id), codec::encode(&message)?);
        Ok(Enqueued {
            id,
            duplicate: false,
        })
    }

    /// Enqueues a batch atomically (the verb; durability is the caller's).
    pub(super) fn enqueue(&self, batch: Vec<NewMessage>) -> StoreResult<Vec<Enqueued>> {
        for m in &batch {
            crate::store::validate_message(&self.config, m)?;
        }
        let mut w = self.lock();
        let now = self.clock.now();
        let mut txn = Txn::new(&self.tree);
        let mut out = Vec::with_capacity(batch.len());
        for m in batch {
            out.push(self.enqueue_one(&mut w, &mut txn, m, now, false)?);
        }
        self.commit(&mut w, txn)?;
        Ok(out)
    }

    /// Leases up to `max` of `handler`'s ready deliveries, oldest first, and
    /// records each attempt as started. Not flushed on its own: a lease lost
    /// in a crash only makes the delivery ready again.
    pub(super) fn lease(&self, handler: &str, max: usize) -> StoreResult<Vec<Leased>> {
        let record = self.handler_record(handler)?;
        if record.paused || max == 0 {
            return Ok(Vec::new());
        }
        let lease_for = record.policy.lease();
        let max_attempts = record.policy.max_attempts();
        let mut w = self.lock();
        let now = self.clock.now();
        let expires_at = now.plus(lease_for);
        let mut txn = Txn::new(&self.tree);
        let mut out = Vec::new();
        for (_, v) in self.tree.scan_prefix(keys::ready_of(handler)).take(max) {
            let (id, _) = parse_id_time_value(&v, "ready entry")?;
            let before = txn.delivery(id)?;
            let mut rec = before.clone();
            let token = w.next_seq();
            rec.state = DeliveryState::Leased;
            rec.attempt += 1;
            rec.attempt_records += 1;
            rec.lease = Some((token, expires_at));
            rec.ready_since = None;
            let attempt = AttemptRecord {
                number: rec.attempt,
                round: rec.round,
                started_at: now,
                finished_at: None,
                report: None,
            };
            txn.put(
                keys::attempt(id, rec.attempt_records),
                codec::encode_attempt(&attempt)?,
            );
            save(&mut txn, Some(&before), Some(&rec))?;
            let message = txn.message(rec.message_id)?;
            out.push(Leased {
                lease: Lease {
                    delivery_id: id,
                    token,
                    expires_at,
                },
                message,
                handler: handler.to_string(),
                attempt: rec.attempt,
                max_attempts,
            });
        }
        if !out.is_empty() {
            self.commit(&mut w, txn)?;
        }
        Ok(out)
    }

    /// Extends a lease by its handler's lease duration from now.
    pub(super) fn extend(&self, lease: &Lease) -> StoreResult<Lease> {
        let mut w = self.lock();
        let mut txn = Txn::new(&self.tree);
        let before = self.leased(&txn, lease)?;
        let lease_for = self.handler_record(&before.handler)?.policy.lease();
        let expires_at = self.clock.now().plus(lease_for);
        let mut rec = before.clone();
        rec.lease = Some((lease.token, expires_at));
        save(&mut txn, Some(&before), Some(&rec))?;
        self.commit(&mut w, txn)?;
        Ok(Lease {
            delivery_id: lease.delivery_id,
            token: lease.token,
            expires_at,
        })
    }

    /// Records a success and enqueues its outbox in the same batch.
    pub(super) fn complete(
        &self,
        lease: &Lease,
        report: AttemptReport,
        outbox: Vec<OutboxMessage>,
    ) -> StoreResult<()> {
        crate::store::validate_outbox(&outbox)?;
        self.settle(lease, report, |w, txn, rec, now| {
            rec.state = DeliveryState::Succeeded;
            self.release_key(txn, rec, now)?;
            for (i, o) in outbox.into_iter().enumerate() {
                let m = crate::store::outbox_message(rec.message_id, &rec.handler, i, o, now);
                if !self.enqueue_one(w, txn, m, now, true)?.duplicate {
                    txn.woke = true;
                }
            }
            Ok(())
        })
    }

    /// Records a failed attempt and applies the policy's disposition.
    pub(super) fn fail(
        &self,
        lease: &Lease,
        report: AttemptReport,
        disposition: Disposition,
    ) -> StoreResult<()> {
        self.settle(lease, report, |_, txn, rec, now| {
            self.dispose(txn, rec, disposition, now)
        })
    }

    /// Settles a leased delivery's attempt: checks the lease (fencing),
    /// records the report, lets `fate` set the delivery's new state and write
    /// what goes with it, then saves the delivery and commits, all in one
    /// batch.
    fn settle(
        &self,
        lease: &Lease,
        report: AttemptReport,
        fate: impl FnOnce(&mut Writer, &mut Txn<'_>, &mut DeliveryRec, Timestamp) -> StoreResult<()>,
    ) -> StoreResult<()> {
        let mut w = self.lock();
        let now = self.clock.now();
        let mut txn = Txn::new(&self.tree);
        let before = self.leased(&txn, lease)?;
        let mut rec = before.clone();
        self.finish_attempt(&mut txn, &mut rec, report, now)?;
        fate(&mut w, &mut txn, &mut rec, now)?;
        save(&mut txn, Some(&before), Some(&rec))?;
        self.commit(&mut w, txn)
    }
}
