//! Module references and their garbage collection.
//!
//! A module stays while a handler's current module is it or a retained
//! delivery's attempt recorded it (`module_sha256`). The second is kept as a
//! count per module (`U`: how many retained deliveries have an attempt that
//! ran it), so collection never reads attempts and the image holds one key
//! per module, not one per delivery: an attempt that settles counts its
//! delivery once (unless an earlier attempt of the same delivery ran the same
//! module), and deleting a delivery takes its modules off. Upkeep
//! ([`Inner::collect_modules`], after prune's batch) walks the modules: one
//! found unreferenced gets a `w` mark with the time, and goes at the first
//! pass [`MODULE_GRACE`] later if it is still unreferenced; a reference found
//! meanwhile drops the mark. All under the writer mutex, so a `put_handler`
//! of the same bytes is ordered before or after a pass, never inside it.
//! Deletes are ordinary batch operations, so the log and the checkpoint
//! replay them like any other.

use std::collections::{BTreeSet, HashSet};

use super::codec::{parse_u64_value, u64_value};
use super::delivery::DeliveryRec;
use super::txn::Txn;
use super::{Inner, Writer, codec, keys};
use crate::clock::Timestamp;
use crate::store::{DeliveryId, MODULE_GRACE, StoreResult};

/// Counts delivery `rec`'s attempt that ran module `sha256`, unless one of
/// its earlier attempts ran the same module (nothing for an attempt that
/// recorded none, as when its handler was gone). Only a retried delivery
/// reads its earlier attempts.
pub(super) fn refer(txn: &mut Txn<'_>, rec: &DeliveryRec, sha256: &str) -> StoreResult<()> {
    if sha256.is_empty() {
        return Ok(());
    }
    for index in 1..rec.attempt_records {
        if let Some(v) = txn.get(&keys::attempt(rec.id, index))
            && codec::decode_attempt(&v)?
                .report
                .is_some_and(|r| r.module_sha256 == sha256)
        {
            return Ok(());
        }
    }
    add(txn, sha256, 1);
    Ok(())
}

/// Moves module `sha256`'s reference count by `delta`; a count of 0 is no key.
fn add(txn: &mut Txn<'_>, sha256: &str, delta: i64) {
    let key = keys::module_refs(sha256);
    let n = txn
        .get(&key)
        .map_or(0, |v| parse_u64_value(&v))
        .saturating_add_signed(delta);
    if n == 0 {
        txn.del(key);
    } else {
        txn.put(key, u64_value(n).to_vec());
    }
}

impl Inner {
    /// The modules delivery `id`'s stored attempts ran, each once.
    fn ran_modules(&self, txn: &Txn<'_>, id: DeliveryId) -> StoreResult<BTreeSet<String>> {
        let mut ran = BTreeSet::new();
        for (k, _) in self.tree.scan_prefix(keys::attempts(id)) {
            if let Some(v) = txn.get(&k)
                && let Some(report) = codec::decode_attempt(&v)?.report
                && !report.module_sha256.is_empty()
            {
                ran.insert(report.module_sha256);
            }
        }
        Ok(ran)
    }

    /// Takes delivery `id`'s references off its modules (it is being
    /// deleted; call before its attempts are).
    pub(super) fn forget_refs(&self, txn: &mut Txn<'_>, id: DeliveryId) -> StoreResult<()> {
        for sha in self.ran_modules(txn, id)? {
            add(txn, &sha, -1);
        }
        Ok(())
    }

    /// Counts the references of delivery `id`'s stored attempts (building
    /// the counts for a store written before they existed).
    pub(super) fn refer_attempts(&self, txn: &mut Txn<'_>, id: DeliveryId) -> StoreResult<()> {
        for sha in self.ran_modules(txn, id)? {
            add(txn, &sha, 1);
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
            let used = current.contains(&sha) || txn.get(&keys::module_refs(&sha)).is_some();
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
