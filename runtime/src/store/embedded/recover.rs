//! Opening the store: the checkpoint image read from sled, the write-ahead
//! log's later batches replayed over it, the counts, sequence and handler
//! records read back, and the leases of the previous process released.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::codec::{self, parse_u64_value};
use super::delivery::save;
use super::fs::Fs;
use super::memtree::MemTree;
use super::txn::Txn;
use super::{Inner, keys, wal};
use crate::store::{AttemptReport, DeliveryState, HandlerRecord, StoreResult};

/// Leases released per batch on open.
const RELEASE_CHUNK: usize = 512;
/// The reason recorded on an attempt whose process ended while it ran.
const RESTARTED: &str = "process restarted";

/// Re-applies the log's batches that sled does not hold yet (see [`wal`]) to the
/// image; returns the number of the last batch. A torn tail is cut back and
/// reported; damage anywhere else refuses the open (`StoreError::Corrupt`).
pub(super) fn replay(
    checkpointed: u64,
    tree: &MemTree,
    fs: &dyn Fs,
    wal_dir: &Path,
) -> StoreResult<u64> {
    let mut last = checkpointed;
    let mut batches = 0;
    let torn = wal::replay(fs, wal_dir, checkpointed, |number, ops| {
        if number > last {
            tree.apply(ops);
            last = number;
            batches += 1;
        }
    })?;
    for t in torn {
        tracing::warn!(
            file = %t.path.display(),
            offset = t.at,
            bytes = t.dropped,
            "write-ahead log ended in a torn write (a crash or power cut mid-flush); \
             cut back to its last intact record: the torn bytes held only unacknowledged batches"
        );
    }
    if batches > 0 {
        tracing::info!(batches, "replayed the write-ahead log");
    }
    Ok(last)
}

/// The per-(handler, state) counts stored in `tree`.
pub(super) fn counts(tree: &MemTree) -> HashMap<(String, DeliveryState), u64> {
    tree.scan_prefix(keys::COUNTS)
        .filter_map(|(k, v)| Some((keys::parse_count(&k)?, parse_u64_value(&v))))
        .collect()
}

/// The last sequence number stored in `tree`.
pub(super) fn seq(tree: &MemTree) -> u64 {
    tree.get(keys::SEQ).map_or(0, |v| parse_u64_value(&v))
}

/// The handler records stored in `tree`, by name.
pub(super) fn handlers(tree: &MemTree) -> StoreResult<BTreeMap<String, HandlerRecord>> {
    tree.scan_prefix(keys::HANDLERS)
        .map(|(_, v)| {
            let h: HandlerRecord = codec::decode_json(&v)?;
            Ok((h.name.clone(), h))
        })
        .collect()
}

impl Inner {
    /// Settles every lease a previous process held: no attempt of it can
    /// still be running. Each attempt is recorded as interrupted ("process
    /// restarted") and the delivery's fate is the policy's, as for any other
    /// failure: a retry after the backoff, or dead when it was the last.
    pub(super) fn release_all_leases(&self) -> StoreResult<()> {
        loop {
            let mut w = self.lock();
            let now = self.clock.now();
            let mut txn = Txn::new(&self.tree);
            let leased: Vec<_> = self
                .tree
                .scan_prefix(keys::LEASED_ALL)
                .take(RELEASE_CHUNK)
                .collect();
            if leased.is_empty() {
                return Ok(());
            }
            for (k, _) in leased {
                let (_, id) = keys::parse_leased(&k)?;
                let before = txn.delivery(id)?;
                let mut rec = before.clone();
                let record = self.handler_record(&rec.handler).ok();
                let started = self.attempt_started(&txn, &rec, now)?;
                let report = AttemptReport::interrupted(
                    RESTARTED,
                    now.since(started).as_millis() as u64,
                    record
                        .as_ref()
                        .map(|h| h.module_sha256.clone())
                        .unwrap_or_default(),
                );
                let outcome = report.outcome.clone();
                self.finish_attempt(&mut txn, &mut rec, report, now)?;
                let policy = record.map(|h| h.policy).unwrap_or_default();
                let disposition = policy.fate(&outcome, rec.attempt, &mut w.rng);
                self.dispose(&mut txn, &mut rec, disposition, now)?;
                save(&mut txn, Some(&before), Some(&rec))?;
            }
            self.commit(&mut w, txn)?;
        }
    }
}
