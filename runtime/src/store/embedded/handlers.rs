//! Handlers and modules: registration, pause and resume, removal (with
//! every delivery of the handler), and the in-memory cache of handler
//! records that every verb reads.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::delivery::DeliveryRec;
use super::txn::Txn;
use super::{Inner, codec, keys};
use crate::store::{DeliveryState, HandlerRecord, HandlerSpec, StoreError, StoreResult};

/// Deliveries examined per batch while removing a handler, so the queue
/// keeps moving meanwhile.
const REMOVE_CHUNK: usize = 4096;

impl Inner {
    /// Replaces (or with `None` removes) a handler's cached record, after its
    /// batch is committed, and signals the change.
    fn set_handler(&self, name: &str, record: Option<HandlerRecord>) {
        let mut handlers = self.handlers.write().unwrap_or_else(|p| p.into_inner());
        match record {
            Some(record) => handlers.insert(name.to_string(), record),
            None => handlers.remove(name),
        };
        drop(handlers);
        self.handlers_changed.send_modify(|n| *n += 1);
    }

    /// One handler's record.
    pub(super) fn handler_record(&self, name: &str) -> StoreResult<HandlerRecord> {
        self.handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::UnknownHandler(name.to_string()))
    }

    /// Every handler's record, by name.
    pub(super) fn handler_records(&self) -> Vec<HandlerRecord> {
        self.handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Every handler's name.
    pub(super) fn handler_names(&self) -> Vec<String> {
        self.handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// The handlers subscribed to `topic`.
    pub(super) fn subscribers(&self, topic: &str) -> Vec<String> {
        self.handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|h| h.topic == topic)
            .map(|h| h.name.clone())
            .collect()
    }

    pub(super) fn put_handler(
        &self,
        spec: HandlerSpec,
        module: &[u8],
    ) -> StoreResult<HandlerRecord> {
        crate::store::validate_spec(&spec)?;
        let sha = hex::encode(Sha256::digest(module));
        let mut w = self.lock();
        let now = self.clock.now();
        let mut txn = Txn::new(&self.tree);
        let old = self.handler_record(&spec.name).ok();
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
            created_at: old.as_ref().map_or(now, |o| o.created_at),
            updated_at: now,
            version: old.as_ref().map_or(1, |o| o.version + 1),
        };
        let mkey = keys::module(&sha);
        if txn.get(&mkey).is_none() {
            txn.put(mkey, module.to_vec());
        }
        // In use again: its grace (if upkeep had started one) ends.
        txn.del(keys::module_unused(&sha));
        txn.put(keys::handler(&spec.name), codec::encode_json(&record)?);
        txn.put(keys::topic(&spec.topic), Vec::new());
        self.commit(&mut w, txn)?;
        self.set_handler(&spec.name, Some(record.clone()));
        Ok(record)
    }

    pub(super) fn module(&self, sha256: &str) -> StoreResult<Bytes> {
        self.tree
            .get(keys::module(sha256))
            .ok_or_else(|| StoreError::UnknownModule(sha256.to_string()))
    }

    pub(super) fn set_paused(&self, name: &str, paused: bool) -> StoreResult<HandlerRecord> {
        self.change_pause(name, paused, None, |_| true)
            .map(|(record, _)| record)
    }

    pub(super) fn pause_unrunnable(
        &self,
        name: &str,
        version: u64,
        reason: &str,
    ) -> StoreResult<bool> {
        match self.change_pause(name, true, Some(reason.to_string()), |r| {
            r.version == version && !r.paused
        }) {
            Ok((_, changed)) => Ok(changed),
            Err(StoreError::UnknownHandler(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sets the pause and its reason if `when` holds for the current record;
    /// returns the record and whether it changed.
    fn change_pause(
        &self,
        name: &str,
        paused: bool,
        reason: Option<String>,
        when: impl FnOnce(&HandlerRecord) -> bool,
    ) -> StoreResult<(HandlerRecord, bool)> {
        let mut w = self.lock();
        let mut record = self.handler_record(name)?;
        if !when(&record) {
            return Ok((record, false));
        }
        record.paused = paused;
        record.paused_reason = reason;
        record.updated_at = self.clock.now();
        let mut txn = Txn::new(&self.tree);
        txn.put(keys::handler(name), codec::encode_json(&record)?);
        txn.woke = !paused;
        self.commit(&mut w, txn)?;
        self.set_handler(name, Some(record.clone()));
        Ok((record, true))
    }

    /// Removes the handler, then its deliveries in chunks; returns how many.
    pub(super) fn remove_handler(&self, name: &str) -> StoreResult<u64> {
        {
            let mut w = self.lock();
            self.handler_record(name)?;
            let mut txn = Txn::new(&self.tree);
            txn.del(keys::handler(name));
            self.commit(&mut w, txn)?;
            self.set_handler(name, None);
        }
        // No new deliveries reach it now; delete the existing ones.
        let mut removed = 0u64;
        let mut from = keys::DELIVERIES.to_vec();
        loop {
            let mut w = self.lock();
            let now = self.clock.now();
            let mut txn = Txn::new(&self.tree);
            let mut seen = 0;
            let mut last = None;
            for (k, v) in self.tree.range_from(from.clone()) {
                if !k.starts_with(keys::DELIVERIES) || seen >= REMOVE_CHUNK {
                    break;
                }
                seen += 1;
                last = Some(k.to_vec());
                let rec: DeliveryRec = codec::decode(&v)?;
                if rec.handler == name {
                    self.delete_delivery(&mut txn, &rec, now)?;
                    removed += 1;
                }
            }
            for s in DeliveryState::ALL {
                txn.del(keys::count(name, s));
            }
            self.commit(&mut w, txn)?;
            w.counts.retain(|(h, _), _| h != name);
            match last {
                Some(mut k) if seen >= REMOVE_CHUNK => {
                    k.push(0);
                    from = k;
                }
                _ => break,
            }
        }
        Ok(removed)
    }
}
