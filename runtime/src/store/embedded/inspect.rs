//! Inspection: a message with its deliveries, one delivery, and the counts
//! behind stats and backpressure (kept per handler and state, never scanned).

use std::collections::BTreeMap;

use super::codec::parse_id_time_value;
use super::flusher::FLUSH_BATCH_BOUNDS;
use super::txn::Txn;
use super::{Inner, keys};
use crate::store::{
    DeliveryId, DeliveryState, DeliveryStatus, HandlerStats, MessageId, MessageStatus, Stats,
    StoreResult,
};

impl Inner {
    pub(super) fn message_status(&self, id: MessageId) -> StoreResult<MessageStatus> {
        let txn = Txn::new(&self.tree);
        let message = txn.message(id)?;
        let mut deliveries = Vec::new();
        for (k, _) in self.tree.scan_prefix(keys::message_deliveries(id)) {
            let did = keys::parse_message_delivery(&k)?;
            deliveries.push(self.status(txn.delivery(did)?)?);
        }
        Ok(MessageStatus {
            message,
            deliveries,
        })
    }

    pub(super) fn delivery_status(&self, id: DeliveryId) -> StoreResult<DeliveryStatus> {
        self.status(self.read_delivery(id)?)
    }

    pub(super) fn stats(&self) -> StoreResult<Stats> {
        let handlers = self.handler_records();
        let counts = self.lock().counts.clone();
        let mut out = Vec::new();
        let mut topic_depth = BTreeMap::new();
        for h in handlers {
            let mut c = BTreeMap::new();
            for s in DeliveryState::ALL {
                c.insert(s, counts.get(&(h.name.clone(), s)).copied().unwrap_or(0));
            }
            let open: u64 = c.iter().filter(|(s, _)| s.is_open()).map(|(_, n)| *n).sum();
            *topic_depth.entry(h.topic.clone()).or_insert(0) += open;
            let oldest_ready_at = match self.tree.scan_prefix(keys::ready_of(&h.name)).next() {
                Some((_, v)) => Some(parse_id_time_value(&v, "ready entry")?.1),
                None => None,
            };
            out.push(HandlerStats {
                handler: h.name,
                topic: h.topic,
                paused: h.paused,
                counts: c,
                oldest_ready_at,
            });
        }
        let done = self.flusher.done.borrow().clone();
        Ok(Stats {
            handlers: out,
            topic_depth,
            durable_commits: done.flushes,
            durable_ops: self.flusher.durable_ops(),
            commit_batches: FLUSH_BATCH_BOUNDS
                .iter()
                .copied()
                .zip(done.batches)
                .collect(),
        })
    }
}
