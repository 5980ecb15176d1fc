//! Unit tests of the embedded engine's own mechanics (group commit, faults,
//! checkpoints); the contract's cases are in the conformance suite.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::outcome::Outcome;
use crate::policy::HandlerPolicy;
use crate::store::conformance::helpers::{
    assert_found_and_ready, enqueue_n, handler_with, manual_clock, report,
};
use crate::store::{DeliveryState, MessageId};

/// Registers handler `h` on topic `t` with the default policy.
async fn register_h(s: &EmbeddedStore) {
    handler_with(s, "h", "t", HandlerPolicy::default()).await;
}

/// While attempts run, a flush waits for their outcomes (up to the
/// window, here far longer than the test): eight concurrent completions
/// share one fsync. With nothing in flight nothing waits: the enqueues
/// before would otherwise take the whole window each, past the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushes_gather_the_outcomes_of_running_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let tuning = EmbeddedSettings {
        group_commit_window: Duration::from_secs(600),
        ..EmbeddedSettings::default()
    };
    let s = EmbeddedStore::open_with(
        dir.path(),
        StoreConfig::default(),
        &tuning,
        Arc::new(clock.clone()),
    )
    .unwrap();
    let setup = async {
        register_h(&s).await;
        for i in 0..8 {
            let m = NewMessage {
                topic: "t".into(),
                payload: Bytes::from(format!("{i}")),
                ..Default::default()
            };
            s.enqueue(vec![m]).await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), setup)
        .await
        .expect("with nothing leased, no flush waits for the window");
    let leased = s.lease("h", 8).await.unwrap();
    assert_eq!(leased.len(), 8);
    let before = s.stats().await.unwrap().durable_commits;
    let tasks: Vec<_> = leased
        .into_iter()
        .map(|l| {
            let s = s.clone();
            tokio::spawn(async move {
                s.complete(&l.lease, report(Outcome::Ok), Vec::new())
                    .await
                    .unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let flushes = s.stats().await.unwrap().durable_commits - before;
    assert_eq!(flushes, 1, "eight outcomes, one fsync");
}

#[tokio::test]
async fn smoke_enqueue_lease_complete_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let open = || {
        EmbeddedStore::open(dir.path(), StoreConfig::default(), Arc::new(clock.clone())).unwrap()
    };
    let s = open();
    register_h(&s).await;
    let e = s
        .enqueue(vec![NewMessage {
            topic: "t".into(),
            payload: Bytes::from_static(b"hi"),
            ..Default::default()
        }])
        .await
        .unwrap();
    let leased = s.lease("h", 10).await.unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].message.payload, Bytes::from_static(b"hi"));
    s.complete(&leased[0].lease, report(Outcome::Ok), vec![])
        .await
        .unwrap();
    assert!(matches!(
        s.complete(&leased[0].lease, report(Outcome::Ok), vec![])
            .await,
        Err(StoreError::LeaseLost(_))
    ));
    let second = s
        .enqueue(vec![NewMessage {
            topic: "t".into(),
            payload: Bytes::from_static(b"again"),
            ..Default::default()
        }])
        .await
        .unwrap();
    let _held = s.lease("h", 10).await.unwrap();
    drop(s);
    let s = open();
    let st = s.message(e[0].id).await.unwrap();
    assert_eq!(st.deliveries[0].state, DeliveryState::Succeeded);
    let st = s.message(second[0].id).await.unwrap();
    assert_eq!(
        st.deliveries[0].state,
        DeliveryState::Retrying,
        "released on open, waiting out the policy's backoff"
    );
    assert_eq!(
        st.deliveries[0].attempts[0]
            .report
            .as_ref()
            .unwrap()
            .outcome
            .kind(),
        "interrupted"
    );
    let stats = s.stats().await.unwrap();
    assert_eq!(stats.handlers[0].counts[&DeliveryState::Succeeded], 1);
    assert_eq!(stats.handlers[0].counts[&DeliveryState::Retrying], 1);
}
#[tokio::test]
async fn disk_full_refuses_acknowledgement_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let s =
        EmbeddedStore::open(dir.path(), StoreConfig::default(), Arc::new(clock.clone())).unwrap();
    register_h(&s).await;
    let msg = |p: &'static [u8]| NewMessage {
        topic: "t".into(),
        payload: Bytes::from_static(p),
        ..Default::default()
    };
    let acked = s.enqueue(vec![msg(b"before")]).await.unwrap();
    s.inject_fault(Some(std::io::ErrorKind::StorageFull));
    let err = s.enqueue(vec![msg(b"during")]).await.unwrap_err();
    assert!(matches!(err, StoreError::DiskFull(_)), "{err}");
    assert!(err.is_unavailable());
    s.inject_fault(None);
    let after = s.enqueue(vec![msg(b"after")]).await.unwrap();
    drop(s);
    let s = EmbeddedStore::open(dir.path(), StoreConfig::default(), Arc::new(clock)).unwrap();
    s.message(acked[0].id).await.unwrap();
    s.message(after[0].id).await.unwrap();
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let s =
        EmbeddedStore::open(dir.path(), StoreConfig::default(), Arc::new(clock.clone())).unwrap();
    register_h(&s).await;
    let before = s.stats().await.unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let m = NewMessage {
                    topic: "t".into(),
                    payload: Bytes::from(format!("{i}")),
                    ..Default::default()
                };
                s.enqueue(vec![m]).await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let after = s.stats().await.unwrap();
    assert_eq!(
        after.durable_ops - before.durable_ops,
        64,
        "every enqueue waited for a flush"
    );
    let flushes = after.durable_commits - before.durable_commits;
    assert!(
        flushes < 64,
        "64 concurrent enqueues took {flushes} flushes: no group commit"
    );
    let batched: u64 = after.commit_batches.iter().map(|(_, n)| n).sum();
    assert_eq!(batched, after.durable_commits);
}
/// A store in `dir` that checkpoints every 4 KiB of log, with a handler.
async fn small_checkpoints(dir: &Path) -> EmbeddedStore {
    let s = open_small_checkpoints(dir);
    register_h(&s).await;
    s
}

/// A store in `dir` that checkpoints every 4 KiB of log, on a fresh manual clock.
fn open_small_checkpoints(dir: &Path) -> EmbeddedStore {
    open_on_clock(dir, &manual_clock())
}

/// Drops `s`, reopens its directory and checks that every one of `ids`
/// is there, all ready.
async fn reopen_and_find(s: EmbeddedStore, dir: &Path, ids: &[MessageId]) {
    drop(s);
    let s = open_small_checkpoints(dir);
    assert_found_and_ready(&s, "h", ids).await;
}

#[tokio::test]
async fn checkpoints_bound_the_log_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = small_checkpoints(dir.path()).await;
    let ids = enqueue_n(&s, "t", 200).await;
    let logs = wal::files(&fs::OsFs, &dir.path().join("wal")).unwrap();
    assert!(
        logs.len() <= 2,
        "old log files are deleted after a checkpoint: {logs:?}"
    );
    assert_eq!(ids.len(), 200);
    reopen_and_find(s, dir.path(), &ids).await;
}

#[tokio::test]
async fn a_failed_checkpoint_keeps_the_log_for_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    let s = small_checkpoints(dir.path()).await;
    s.inject_checkpoint_fault(true);
    let mut ids = enqueue_n(&s, "t", 200).await;
    assert!(
        wal::files(&fs::OsFs, &wal_dir).unwrap().len() > 2,
        "failed checkpoints delete no log file"
    );
    s.inject_checkpoint_fault(false);
    ids.extend(enqueue_n(&s, "t", 200).await);
    // Checkpoints run on their own thread: wait for one to succeed.
    for _ in 0..500 {
        if wal::files(&fs::OsFs, &wal_dir).unwrap().len() <= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        wal::files(&fs::OsFs, &wal_dir).unwrap().len() <= 2,
        "a successful checkpoint deletes the files the failed ones kept"
    );
    // Those files held the failed checkpoints' writes: they survive only
    // if the checkpoint that succeeded copied them before deleting them.
    assert_eq!(ids.len(), 400);
    reopen_and_find(s, dir.path(), &ids).await;
}

/// A store written without the query indexes (an earlier build) gets them
/// on open: the entries are removed here, as such a build never wrote them,
/// and the reopened store answers queries from rebuilt ones.
#[tokio::test]
async fn query_indexes_are_built_on_open_when_missing() {
    use crate::store::DeliveryQuery;
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let s =
        EmbeddedStore::open(dir.path(), StoreConfig::default(), Arc::new(clock.clone())).unwrap();
    register_h(&s).await;
    let ids = enqueue_n(&s, "t", 5).await;
    let stale: Vec<_> = [&b"Q"[..], b"O", keys::QUERY_INDEX_VERSION]
        .iter()
        .flat_map(|p| s.inner.tree.scan_prefix(p).map(|(k, _)| k))
        .collect();
    assert_eq!(stale.len(), 6, "five deliveries' entries and the version");
    {
        let mut w = s.inner.lock();
        let mut txn = txn::Txn::new(&s.inner.tree);
        for k in stale {
            txn.del(k);
        }
        s.inner.commit(&mut w, txn).unwrap();
    }
    s.inner.flusher.durable().await.unwrap();
    let q = DeliveryQuery::default();
    assert!(
        s.query_deliveries(&q, None, 10)
            .await
            .unwrap()
            .deliveries
            .is_empty()
    );
    drop(s);
    let s = EmbeddedStore::open(dir.path(), StoreConfig::default(), Arc::new(clock)).unwrap();
    let found = s.query_deliveries(&q, None, 10).await.unwrap().deliveries;
    let mut got: Vec<MessageId> = found.iter().map(|d| d.message_id).collect();
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got, want);
}

/// A store at `dir` that checkpoints every 4 KiB of log, on `clock`.
fn open_on_clock(dir: &Path, clock: &crate::clock::ManualClock) -> EmbeddedStore {
    let tuning = EmbeddedSettings {
        checkpoint_bytes: 4096,
        ..EmbeddedSettings::default()
    };
    EmbeddedStore::open_with(
        dir,
        StoreConfig::default(),
        &tuning,
        Arc::new(clock.clone()),
    )
    .unwrap()
}

/// A module's collection is a delete like any other: once checkpoints have
/// copied the batch holding it into sled and deleted its log file, the
/// reopened image still has the module gone (and the kept one there).
#[tokio::test]
async fn a_collected_module_stays_gone_after_checkpoints() {
    use crate::store::MODULE_GRACE;
    use crate::store::conformance::helpers::{module, register, sha256_hex};
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let s = open_on_clock(dir.path(), &clock);
    register_h(&s).await;
    register(&s, "gone", "u", HandlerPolicy::default(), module(9)).await;
    s.remove_handler("gone").await.unwrap();
    assert_eq!(s.prune(100).await.unwrap().modules, 0);
    clock.advance(MODULE_GRACE);
    assert_eq!(s.prune(100).await.unwrap().modules, 1);
    let first_log = wal::files(&fs::OsFs, &dir.path().join("wal")).unwrap();
    enqueue_n(&s, "t", 200).await;
    let logs = wal::files(&fs::OsFs, &dir.path().join("wal")).unwrap();
    assert!(
        !logs.iter().any(|f| first_log.first() == Some(f)),
        "the log file holding the delete was checkpointed and deleted: {logs:?}"
    );
    drop(s);
    let s = open_on_clock(dir.path(), &clock);
    let gone = s.module(&sha256_hex(&module(9))).await;
    assert!(
        matches!(gone, Err(StoreError::UnknownModule(_))),
        "{gone:?}"
    );
    let h = s.handler("h").await.unwrap();
    assert!(s.module(&h.module_sha256).await.is_ok());
}

/// A store written before the module references existed (derived indexes
/// at version 1, no `U` counts) gets them on open: a dead delivery's
/// module stays through a grace after its handler moved on.
#[tokio::test]
async fn module_references_are_built_on_open_when_missing() {
    use crate::store::MODULE_GRACE;
    use crate::store::conformance::helpers::{dead, failed, module, ran, register, sha256_hex};
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let s =
        EmbeddedStore::open(dir.path(), StoreConfig::default(), Arc::new(clock.clone())).unwrap();
    register(&s, "h", "t", HandlerPolicy::default(), module(1)).await;
    enqueue_n(&s, "t", 1).await;
    let l = s.lease("h", 1).await.unwrap().remove(0);
    s.fail(&l.lease, ran(failed(), &module(1)), dead("d"))
        .await
        .unwrap();
    register(&s, "h", "t", HandlerPolicy::default(), module(2)).await;
    let refs = module_ref_counts(&s);
    assert_eq!(refs.len(), 1, "one module referenced: {refs:?}");
    let refs: Vec<_> = refs.into_iter().map(|(k, _)| k).collect();
    {
        let mut w = s.inner.lock();
        let mut txn = txn::Txn::new(&s.inner.tree);
        for k in refs {
            txn.del(k);
        }
        txn.put(
            keys::QUERY_INDEX_VERSION.to_vec(),
            codec::u64_value(1).to_vec(),
        );
        s.inner.commit(&mut w, txn).unwrap();
    }
    s.inner.flusher.durable().await.unwrap();
    drop(s);
    let s =
        EmbeddedStore::open(dir.path(), StoreConfig::default(), Arc::new(clock.clone())).unwrap();
    assert_eq!(s.prune(100).await.unwrap().modules, 0);
    clock.advance(MODULE_GRACE);
    assert_eq!(s.prune(100).await.unwrap().modules, 0);
    assert_eq!(
        s.module(&sha256_hex(&module(1))).await.unwrap(),
        module(1),
        "the dead delivery's module"
    );
}

/// The `U` entries: each referenced module's key and count.
fn module_ref_counts(s: &EmbeddedStore) -> Vec<(Vec<u8>, u64)> {
    s.inner
        .tree
        .scan_prefix(b"U")
        .map(|(k, v)| (k.to_vec(), codec::parse_u64_value(&v)))
        .collect()
}

/// A delivery counts once per module its attempts ran, however often it is
/// retried, and deleting it takes the counts back to none.
#[tokio::test]
async fn module_reference_counts_follow_deliveries() {
    use crate::store::DeadFilter;
    use crate::store::conformance::helpers::{dead, failed, module, ran, register, retry_in};
    let dir = tempfile::tempdir().unwrap();
    let s = open_small_checkpoints(dir.path());
    register(&s, "h", "t", HandlerPolicy::default(), module(1)).await;
    enqueue_n(&s, "t", 2).await;
    // Two attempts each on module 1; the second delivery's third on module 2.
    for _ in 0..2 {
        for l in s.lease("h", 2).await.unwrap() {
            s.fail(
                &l.lease,
                ran(failed(), &module(1)),
                retry_in(Duration::ZERO),
            )
            .await
            .unwrap();
        }
        s.promote_due(10).await.unwrap();
    }
    let counts: Vec<u64> = module_ref_counts(&s).into_iter().map(|(_, n)| n).collect();
    assert_eq!(counts, vec![2], "two deliveries ran module 1");
    let mut leases = s.lease("h", 2).await.unwrap();
    let last = leases.pop().unwrap();
    s.fail(&last.lease, ran(failed(), &module(2)), dead("d"))
        .await
        .unwrap();
    for l in leases {
        s.fail(&l.lease, ran(failed(), &module(1)), dead("d"))
            .await
            .unwrap();
    }
    let mut counts: Vec<u64> = module_ref_counts(&s).into_iter().map(|(_, n)| n).collect();
    counts.sort();
    assert_eq!(
        counts,
        vec![1, 2],
        "module 2 by one delivery, module 1 by both"
    );
    assert_eq!(s.purge_dead(&DeadFilter::default()).await.unwrap(), 2);
    assert!(
        module_ref_counts(&s).is_empty(),
        "{:?}",
        module_ref_counts(&s)
    );
}
