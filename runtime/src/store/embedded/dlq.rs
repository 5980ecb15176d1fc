//! The dead-letter queue and replay: listing dead deliveries by filter,
//! replaying one, purging, and re-delivering a topic's retained messages
//! from a time.

use super::delivery::{DeliveryRec, save};
use super::txn::Txn;
use super::{Inner, keys};
use crate::clock::Timestamp;
use crate::store::{DeadFilter, DeliveryId, DeliveryState, StoreError, StoreResult};

/// Dead deliveries purged, or messages replayed, per batch.
const CHUNK: usize = 1024;
/// Retained messages re-delivered per batch by `replay_since`.
const REPLAY_CHUNK: usize = 512;

impl Inner {
    pub(super) fn replay_dead(&self, id: DeliveryId) -> StoreResult<()> {
        let mut w = self.lock();
        let now = self.clock.now();
        let mut txn = Txn::new(&self.tree);
        let before = txn.delivery(id)?;
        if before.state != DeliveryState::Dead {
            return Err(StoreError::NotDead(id));
        }
        let mut rec = before.clone();
        rec.round += 1;
        rec.attempt = 0;
        rec.dead_at = None;
        rec.dead_reason = None;
        rec.not_before = None;
        self.place(&mut txn, &mut rec, now)?;
        save(&mut txn, Some(&before), Some(&rec))?;
        self.commit(&mut w, txn)
    }

    /// Dead deliveries matching `filter`, oldest death first (ties by handler,
    /// then id), starting after `after`. Reads at most `limit` matches per
    /// handler, then merges.
    pub(super) fn dead_matching(
        &self,
        filter: &DeadFilter,
        after: Option<DeliveryId>,
        limit: usize,
    ) -> StoreResult<Vec<DeliveryRec>> {
        let handlers: Vec<String> = match &filter.handler {
            Some(h) => vec![self.handler_record(h)?.name],
            None => self.handler_names(),
        };
        // The cursor's position in the global order (dead at, handler, id).
        let cursor = match after {
            Some(id) => {
                let rec = self.read_delivery(id)?;
                Some((rec.dead_at.unwrap_or(Timestamp(0)), rec.handler, id))
            }
            None => None,
        };
        let since = filter.since.unwrap_or(Timestamp(0));
        let mut found: Vec<(Timestamp, String, DeliveryRec)> = Vec::new();
        for h in handlers {
            let prefix = keys::dead_of(&h);
            let lo = match &cursor {
                Some((at, ch, id)) if *at >= since => {
                    if &h < ch {
                        keys::dead_since(&h, Timestamp(at.0 + 1))
                    } else if &h == ch {
                        let mut k = keys::dead(&h, *at, *id);
                        k.push(0);
                        k
                    } else {
                        keys::dead_since(&h, *at)
                    }
                }
                _ => keys::dead_since(&h, since),
            };
            let mut taken = 0;
            for (k, _) in self.tree.range_from(lo) {
                if !k.starts_with(&prefix) || taken >= limit {
                    break;
                }
                let (at, id) = keys::parse_dead(&k, &h)?;
                if filter.until.is_some_and(|u| at >= u) {
                    break;
                }
                let rec = self.read_delivery(id)?;
                if let Some(kind) = &filter.outcome
                    && self.last_outcome_kind(&rec)? != Some(kind.as_str())
                {
                    continue;
                }
                found.push((at, h.clone(), rec));
                taken += 1;
            }
        }
        found.sort_by(|a, b| (a.0, &a.1, a.2.id).cmp(&(b.0, &b.1, b.2.id)));
        Ok(found.into_iter().take(limit).map(|(_, _, r)| r).collect())
    }

    /// Purges every dead delivery matching `filter`, in batches.
    pub(super) fn purge_dead(&self, filter: &DeadFilter) -> StoreResult<u64> {
        let mut purged = 0;
        loop {
            let recs = self.dead_matching(filter, None, CHUNK)?;
            if recs.is_empty() {
                return Ok(purged);
            }
            let mut w = self.lock();
            let now = self.clock.now();
            let mut txn = Txn::new(&self.tree);
            for rec in recs {
                // Re-read under the lock: it may have been replayed meanwhile.
                let rec = match txn.delivery(rec.id) {
                    Ok(r) if r.state == DeliveryState::Dead => r,
                    _ => continue,
                };
                self.delete_delivery(&mut txn, &rec, now)?;
                purged += 1;
            }
            self.commit(&mut w, txn)?;
        }
    }

    pub(super) fn purge_dead_one(&self, id: DeliveryId) -> StoreResult<()> {
        let mut w = self.lock();
        let now = self.clock.now();
        let mut txn = Txn::new(&self.tree);
        let rec = txn.delivery(id)?;
        if rec.state != DeliveryState::Dead {
            return Err(StoreError::NotDead(id));
        }
        self.delete_delivery(&mut txn, &rec, now)?;
        self.commit(&mut w, txn)
    }

    /// New deliveries for `handler` of its topic's messages enqueued at or
    /// after `since`; returns how many.
    pub(super) fn replay_since(&self, handler: &str, since: Timestamp) -> StoreResult<u64> {
        let record = self.handler_record(handler)?;
        let prefix = keys::topic_messages(&record.topic);
        let mut from = keys::topic_messages_since(&record.topic, since);
        let mut count = 0;
        loop {
            let mut w = self.lock();
            let now = self.clock.now();
            let mut txn = Txn::new(&self.tree);
            let mut last = None;
            for (k, _) in self.tree.range_from(from.clone()).take(REPLAY_CHUNK) {
                if !k.starts_with(&prefix) {
                    break;
                }
                let id = keys::parse_topic_message(&k, &record.topic)?;
                let Ok(message) = txn.message(id) else {
                    continue;
                };
                let seq = w.next_seq();
                self.new_delivery(seq, &mut txn, &message, handler.to_string(), now)?;
                count += 1;
                last = Some(k.to_vec());
            }
            self.commit(&mut w, txn)?;
            match last {
                Some(mut k) => {
                    k.push(0);
                    from = k;
                }
                None => return Ok(count),
            }
        }
    }
}
