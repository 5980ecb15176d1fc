//! Module references and their garbage collection.
//!
//! A module stays while a handler's current module is it or a retained
//! delivery's attempt recorded it (`module_sha256`). The second is kept as an
//! index, so collection never reads attempts: a settled attempt adds `U`
//! (module, delivery) and its reverse `u` (delivery, module); deleting a
//! delivery deletes both. Upkeep ([`Inner::collect_modules`], after prune's
//! batch) walks the modules: one found unreferenced gets a `w` mark with the
//! time, and goes at the first pass [`MODULE_GRACE`] later if it is still
//! unreferenced; a reference found meanwhile drops the mark. All under the
//! writer mutex, so a `put_handler` of the same bytes is ordered before or
//! after a pass, never inside it. Deletes are ordinary batch operations, so
//! the log and the checkpoint replay them like any other.

use std::collections::HashSet;

use super::codec::{parse_u64_value, u64_value};
use super::txn::Txn;
use super::{Inner, Writer, codec, keys};
use crate::clock::Timestamp;
use crate::store::{DeliveryId, MODULE_GRACE, StoreResult};

/// Records that delivery `id`'s attempts ran module `sha256` (nothing for
/// an attempt that recorded none, as when its handler was gone).
pub(super) fn refer(txn: &mut Txn<'_>, id: DeliveryId, sha256: &str) {
    if sha256.is_empty() {
        return;
    }
    let back = keys::delivery_module(id, sha256);
    if txn.get(&back).is_none() {
        txn.put(keys::module_ref(sha256, id), Vec::new());
        txn.put(back, Vec::new());
    }
}

impl Inner {
    /// Drops delivery `id`'s module references (it is being deleted).
    pub(super) fn forget_refs(&self, txn: &mut Txn<'_>, id: DeliveryId) -> StoreResult<()> {
        for (k, _) in self.tree.scan_prefix(keys::delivery_modules(id)) {
            let sha = keys::parse_delivery_module(&k)?;
            txn.del(keys::module_ref(&sha, id));
            txn.del(k.to_vec());
        }
        Ok(())
    }

    /// The references of delivery `id`'s stored attempts (building the index
    /// for a store written before it existed).
    pub(super) fn refer_attempts(&self, txn: &mut Txn<'_>, id: DeliveryId) -> StoreResult<()> {
        for (_, v) in self.tree.scan_prefix(keys::attempts(id)) {
            if let Some(report) = codec::decode_attempt(&v)?.report {
                refer(txn, id, &report.module_sha256);
            }
        }
        Ok(())
    }

    /// One pass of module collection (see the module docs); returns how
    /// many modules it deleted, at most `limit`.
    pub(super) fn collect_modules(
        &self,
        w: &mut Writer,
        now: Timestamp,
        limit: usize,
    ) -> StoreResult<u64> {
        let current: HashSet<String> = self
            .handler_records()
            .into_iter()
            .map(|h| h.module_sha256)
            .collect();
        let mut txn = Txn::new(&self.tree);
        let mut deleted = 0u64;
        let mut changed = false;
        for (k, _) in self.tree.scan_prefix(keys::MODULES) {
            let sha = keys::parse_module(&k)?;
            let used = current.contains(&sha)
                || self
                    .tree
                    .scan_prefix(keys::module_refs(&sha))
                    .next()
                    .is_some();
            let mark = keys::module_unused(&sha);
            let since = txn.get(&mark).map(|v| Timestamp(parse_u64_value(&v)));
            match since {
                Some(_) if used => txn.del(mark),
                None if !used => txn.put(mark, u64_value(now.0).to_vec()),
                Some(t) if !used && now >= t.plus(MODULE_GRACE) && deleted < limit as u64 => {
                    txn.del(k.to_vec());
                    txn.del(mark);
                    deleted += 1;
                }
                _ => continue,
            }
            changed = true;
        }
        if changed {
            self.commit(w, txn)?;
        }
        if deleted > 0 {
            tracing::info!(modules = deleted, "deleted modules nothing references");
        }
        Ok(deleted)
    }
}
