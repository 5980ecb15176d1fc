//! Upkeep: promoting due deliveries, finding expired leases (the rescuer
//! settles them through `fail` with the policy's answer), and pruning
//! retention and the idempotency window, then collecting unreferenced
//! modules ([`super::modules`]). Each reads the first entries of an
//! ordered index, whatever the backlog.

use super::delivery::save;
use super::txn::Txn;
use super::{Inner, codec, keys};
use crate::clock::Timestamp;
use crate::store::{DeliveryState, ExpiredLease, Lease, Message, PruneReport, StoreResult};

/// `d` before `now`, clamped at the epoch.
fn before(now: Timestamp, d: std::time::Duration) -> Timestamp {
    Timestamp(now.0.saturating_sub(d.as_millis() as u64))
}

impl Inner {
    pub(super) fn promote_due(&self, limit: usize) -> StoreResult<usize> {
        let mut w = self.lock();
        let now = self.clock.now();
        let mut txn = Txn::new(&self.tree);
        let mut n = 0;
        for (k, _) in self.tree.scan_prefix(keys::SCHEDULED_ALL).take(limit) {
            let (due, id) = keys::parse_scheduled(&k)?;
            if due > now {
                break;
            }
            let before = txn.delivery(id)?;
            let mut rec = before.clone();
            rec.make_ready(now);
            save(&mut txn, Some(&before), Some(&rec))?;
            n += 1;
        }
        if n > 0 {
            self.commit(&mut w, txn)?;
        }
        Ok(n)
    }

    pub(super) fn next_due(&self) -> StoreResult<Option<Timestamp>> {
        match self.tree.scan_prefix(keys::SCHEDULED_ALL).next() {
            Some((k, _)) => Ok(Some(keys::parse_scheduled(&k)?.0)),
            None => Ok(None),
        }
    }

    /// Up to `limit` leases whose expiry has passed, earliest first.
    pub(super) fn expired_leases(&self, limit: usize) -> StoreResult<Vec<ExpiredLease>> {
        let now = self.clock.now();
        let txn = Txn::new(&self.tree);
        let mut out = Vec::new();
        for (k, _) in self.tree.scan_prefix(keys::LEASED_ALL).take(limit) {
            let (expires_at, id) = keys::parse_leased(&k)?;
            if expires_at > now {
                break;
            }
            let rec = txn.delivery(id)?;
            let Some((token, _)) = rec.lease else {
                continue;
            };
            out.push(ExpiredLease {
                lease: Lease {
                    delivery_id: id,
                    token,
                    expires_at,
                },
                started_at: self.attempt_started(&txn, &rec, now)?,
                handler: rec.handler,
                attempt: rec.attempt,
            });
        }
        Ok(out)
    }

    pub(super) fn prune(&self, limit: usize) -> StoreResult<PruneReport> {
        let mut report = PruneReport::default();
        let mut w = self.lock();
        let now = self.clock.now();
        let mut txn = Txn::new(&self.tree);
        // Idempotency keys past the window.
        for (k, _) in self
            .tree
            .scan_prefix(keys::IDEMPOTENCY_EXPIRY_ALL)
            .take(limit)
        {
            let (expires, ikey) = keys::parse_idempotency_expiry(&k)?;
            if expires > now {
                break;
            }
            txn.del(k.to_vec());
            if let Some(v) = txn.get(&ikey) {
                let (_, at) = codec::parse_id_time_value(&v, "idempotency entry")?;
                if now >= at.plus(self.config.idempotency_window) {
                    txn.del(ikey);
                    report.idempotency_keys += 1;
                }
            }
        }
        // Dead deliveries past DLQ retention.
        let dead_cutoff = before(now, self.config.dlq_retention);
        for h in self.handler_names() {
            for (k, _) in self.tree.scan_prefix(keys::dead_of(&h)).take(limit) {
                let (at, id) = keys::parse_dead(&k, &h)?;
                if at > dead_cutoff {
                    break;
                }
                let rec = txn.delivery(id)?;
                self.delete_delivery(&mut txn, &rec, now)?;
                report.dead += 1;
            }
        }
        // Messages past retention whose deliveries all succeeded.
        let cutoff = before(now, self.config.message_retention);
        let start = if w.prune_cursor.is_empty() {
            keys::MESSAGES.to_vec()
        } else {
            w.prune_cursor.clone()
        };
        let mut cursor = Vec::new();
        for (k, v) in self.tree.range_from(start).take(limit) {
            if !k.starts_with(keys::MESSAGES) {
                break;
            }
            let id = keys::parse_message(&k)?;
            if keys::uuid_time(id) > cutoff {
                break;
            }
            cursor = k.to_vec();
            cursor.push(0);
            let mut recs = Vec::new();
            for (dk, _) in self.tree.scan_prefix(keys::message_deliveries(id)) {
                recs.push(txn.delivery(keys::parse_message_delivery(&dk)?)?);
            }
            if recs.iter().any(|r| r.state != DeliveryState::Succeeded) {
                continue;
            }
            for r in &recs {
                self.delete_delivery(&mut txn, r, now)?;
            }
            let message: Message = codec::decode(&v)?;
            txn.del(k.to_vec());
            txn.del(keys::topic_message(&message.topic, id));
            report.messages += 1;
        }
        w.prune_cursor = cursor;
        self.commit(&mut w, txn)?;
        // After the batch above: the deliveries it deleted no longer refer.
        report.modules = self.collect_modules(&mut w, now, limit)?;
        Ok(report)
    }
}
