//! The write overlay of one verb and [`Inner::commit`], which applies it as
//! one atomic batch: to the in-memory image and, in the same order, to the
//! write-ahead log's buffer. Durability comes later, from the flusher
//! ([`super::flusher`]): `commit` never waits for the disk.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::codec::{self, u64_value};
use super::delivery::DeliveryRec;
use super::memtree::MemTree;
use super::{Inner, Writer, keys, wal};
use crate::store::{DeliveryId, DeliveryState, Message, MessageId, StoreError, StoreResult};

/// Pending writes of one verb, readable before they are applied.
pub(super) struct Txn<'a> {
    tree: &'a MemTree,
    overlay: BTreeMap<Vec<u8>, Option<Bytes>>,
    /// Count changes per (handler, state); kept by `delivery::save`.
    pub(super) counts: HashMap<(String, DeliveryState), i64>,
    /// Something became ready: wake producers after the commit.
    pub(super) woke: bool,
}

impl<'a> Txn<'a> {
    pub(super) fn new(tree: &'a MemTree) -> Txn<'a> {
        Txn {
            tree,
            overlay: BTreeMap::new(),
            counts: HashMap::new(),
            woke: false,
        }
    }

    pub(super) fn get(&self, k: &[u8]) -> Option<Bytes> {
        match self.overlay.get(k) {
            Some(v) => v.clone(),
            None => self.tree.get(k),
        }
    }

    /// Sets `k`. The value is stored at its exact size (an encoder's spare
    /// capacity would otherwise stay allocated as long as the key lives).
    pub(super) fn put(&mut self, k: Vec<u8>, v: Vec<u8>) {
        self.overlay
            .insert(k, Some(Bytes::from(v.into_boxed_slice())));
    }

    pub(super) fn del(&mut self, k: Vec<u8>) {
        self.overlay.insert(k, None);
    }

    /// The first entry under `prefix`, seeing this transaction's own writes.
    pub(super) fn first(&self, prefix: &[u8]) -> Option<(Vec<u8>, Bytes)> {
        let from_tree = self
            .tree
            .scan_prefix(prefix)
            .find(|(k, _)| !matches!(self.overlay.get(k), Some(None)));
        let from_overlay = self
            .overlay
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .find_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())));
        match (from_tree, from_overlay) {
            // The same key in both: the overlay's value is the newer.
            (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    pub(super) fn delivery(&self, id: DeliveryId) -> StoreResult<DeliveryRec> {
        let v = self.get(&keys::delivery(id));
        codec::decode(&v.ok_or(StoreError::UnknownDelivery(id))?)
    }

    pub(super) fn message(&self, id: MessageId) -> StoreResult<Message> {
        let v = self.get(&keys::message(id));
        codec::decode(&v.ok_or(StoreError::UnknownMessage(id))?)
    }

    pub(super) fn count(&mut self, handler: &str, state: DeliveryState, delta: i64) {
        *self.counts.entry((handler.to_string(), state)).or_default() += delta;
    }
}

impl Inner {
    /// Applies `txn` as one atomic batch, with the counts and sequence it changed.
    pub(super) fn commit(&self, w: &mut Writer, txn: Txn<'_>) -> StoreResult<()> {
        let mut ops: wal::Ops = txn.overlay.into_iter().collect();
        let mut new_counts = Vec::with_capacity(txn.counts.len());
        for ((h, s), delta) in txn.counts {
            if delta == 0 {
                continue;
            }
            let old = w.counts.get(&(h.clone(), s)).copied().unwrap_or(0);
            let new = (old as i64 + delta).max(0) as u64;
            if s == DeliveryState::Leased {
                let in_flight = &self.flusher.in_flight;
                if new > old {
                    in_flight.fetch_add(new - old, Ordering::Relaxed);
                } else {
                    in_flight.fetch_sub(old - new, Ordering::Relaxed);
                    let settled = &self.flusher.settled;
                    settled.fetch_add(old - new, Ordering::Relaxed);
                }
            }
            ops.push((keys::count(&h, s), Some(u64_value(new))));
            new_counts.push(((h, s), new));
        }
        ops.push((keys::SEQ.to_vec(), Some(u64_value(w.seq))));
        {
            // Batch numbers are taken here, under `writer`, so they follow
            // the order batches are applied in.
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.batch += 1;
            let number = pending.batch;
            wal::encode(&mut pending.log, number, &ops);
        }
        self.tree.apply(ops);
        for (k, v) in new_counts {
            w.counts.insert(k, v);
        }
        if txn.woke {
            self.ready.send_modify(|n| *n += 1);
        }
        Ok(())
    }
}
