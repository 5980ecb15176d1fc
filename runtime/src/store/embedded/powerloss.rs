//! Power-loss tests: the store runs a mixed workload with its log on a
//! simulated disk ([`super::simfs`]) and sled's checkpoints observed write by
//! write; then, at many random cut points, the disk a power cut would leave
//! is built and the store reopened on it. Each reopening must succeed, hold
//! exactly a prefix of the batches committed (never half a batch), and keep
//! every acknowledged enqueue, completion (with its outbox) and failure.
//!
//! sled opens its own files, so it is modelled at its contract's grain: its
//! batches are atomic and its `flush` makes every batch applied before it
//! durable. The test takes a copy of sled's directory after each of its
//! writes (flushing it first); a cut may find any state from the last one a
//! finished flush covered up to the last write begun before the cut.
//!
//! `SLUICE_POWERLOSS_CUTS` sets the number of cuts (default 600, `make crash`
//! runs more); `SLUICE_POWERLOSS_SEED` replays a failing run.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::fs::Fs;
use super::image::{SledImage, Step};
use super::memtree::MemTree;
use super::simfs::SimFs;
use super::*;
use crate::outcome::Outcome;
use crate::policy::HandlerPolicy;
use crate::store::conformance::helpers::{handler_with, manual_clock, ok, report};
use crate::store::{DeliveryState, MessageId};

/// What the workload did, each with the cut point from which it was
/// acknowledged (every cut at or after it must keep it).
#[derive(Debug, Clone)]
enum Done {
    Enqueued {
        ids: Vec<MessageId>,
        acked: usize,
    },
    Completed {
        delivery: DeliveryId,
        acked: usize,
    },
    Failed {
        delivery: DeliveryId,
        attempt: u32,
        acked: usize,
    },
}

/// sled's writes as the test saw them: for each, the cut point at its start
/// and the copy of sled's directory after it; and the flushes.
#[derive(Default)]
struct SledLog {
    /// Cut point at which write `k + 1` began.
    begins: Vec<usize>,
    /// (cut point after the flush returned, writes it covers).
    flushes: Vec<(usize, usize)>,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// Order-independent digest of a key space: equal for equal contents.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Digest(u64);

impl Digest {
    fn entry(k: &[u8], v: &[u8]) -> u64 {
        let mut h = DefaultHasher::new();
        k.hash(&mut h);
        v.hash(&mut h);
        h.finish()
    }

    fn of_tree(tree: &MemTree) -> Digest {
        Digest(
            tree.scan_prefix([])
                .fold(0, |d, (k, v)| d ^ Digest::entry(&k, &v)),
        )
    }
}

/// The digest of the key space after each batch number, from every record
/// the run wrote to its log files.
fn reference(written: &[(String, Vec<u8>)]) -> Vec<Digest> {
    let mut batches = BTreeMap::new();
    for (_, data) in written {
        for (number, ops) in wal::decode(data).0 {
            batches.insert(number, ops);
        }
    }
    let mut state: HashMap<Vec<u8>, Bytes> = HashMap::new();
    let mut digest = 0;
    let mut out = vec![Digest(0)];
    for (number, ops) in batches {
        assert_eq!(number as usize, out.len(), "batch numbers are consecutive");
        for (k, v) in ops {
            if let Some(old) = state.remove(&k) {
                digest ^= Digest::entry(&k, &old);
            }
            if let Some(v) = v {
                digest ^= Digest::entry(&k, &v);
                state.insert(k, v);
            }
        }
        out.push(Digest(digest));
    }
    out
}

fn tuning() -> EmbeddedSettings {
    EmbeddedSettings {
        // Checkpoints and compactions every few dozen batches.
        checkpoint_bytes: 24 << 10,
        ..EmbeddedSettings::default()
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs the workload on a store whose log is on `sim` and whose sled image
/// is in `sled_dir`; returns what was acknowledged, and sled's writes.
async fn run_workload(
    sim: &SimFs,
    sled_dir: &Path,
    snapshots: &Path,
    seed: u64,
) -> (Vec<Done>, Arc<Mutex<SledLog>>) {
    let (image, entries, checkpointed) =
        SledImage::open_dir(sled_dir, tuning().checkpoint_bytes).expect("sled");
    copy_dir(sled_dir, &snapshots.join("0"));
    let log = Arc::new(Mutex::new(SledLog::default()));
    {
        let (log, sim, sled_dir, snapshots) = (
            Arc::clone(&log),
            sim.clone(),
            sled_dir.to_path_buf(),
            snapshots.to_path_buf(),
        );
        let observer: image::Observer = Box::new(move |db, step| {
            let mut log = log.lock().expect("log");
            match step {
                Step::Begin => log.begins.push(sim.now()),
                Step::Applied => {
                    db.flush().expect("flush for the copy");
                    copy_dir(&sled_dir, &snapshots.join(log.begins.len().to_string()));
                }
                Step::Flushed => {
                    let covered = log.begins.len();
                    log.flushes.push((sim.now(), covered));
                }
            }
        });
        assert!(image.observer.set(observer).is_ok());
    }
    let clock = manual_clock();
    let store = EmbeddedStore::open_on(
        Arc::new(sim.clone()),
        &wal_dir(),
        (image, entries, checkpointed),
        StoreConfig::default(),
        &tuning(),
        Arc::new(clock.clone()),
    )
    .expect("open");
    let policy = HandlerPolicy {
        concurrency: 8,
        retries: 2,
        ..HandlerPolicy::default()
    };
    handler_with(&store, "h", "t", policy.clone()).await;
    handler_with(&store, "hc", "c", policy).await;
    let done = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for producer in 0..2u64 {
        let (s, sim, done) = (store.clone(), sim.clone(), Arc::clone(&done));
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ producer);
            for i in 0..150 {
                let batch: Vec<_> = (0..rng.random_range(1..=4))
                    .map(|j| NewMessage {
                        topic: "t".into(),
                        payload: Bytes::from(format!("p{producer}-{i}-{j}-{}", "x".repeat(100))),
                        ..Default::default()
                    })
                    .collect();
                let ids = s.enqueue(batch).await.expect("enqueue");
                let acked = sim.now();
                let ids = ids.into_iter().map(|e| e.id).collect();
                done.lock()
                    .expect("done")
                    .push(Done::Enqueued { ids, acked });
            }
        }));
    }
    for worker in 0..2u64 {
        let (s, sim, done, clock) = (store.clone(), sim.clone(), Arc::clone(&done), clock.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ (worker + 100));
            let mut idle = 0;
            while idle < 50 {
                let leased = s.lease("h", 3).await.expect("lease");
                if leased.is_empty() {
                    idle += 1;
                    // Retries come due as time moves.
                    clock.advance(Duration::from_secs(20));
                    s.promote_due(100).await.expect("promote");
                    tokio::task::yield_now().await;
                    continue;
                }
                idle = 0;
                for l in leased {
                    let delivery = l.lease.delivery_id;
                    let record = if rng.random_bool(0.7) {
                        let child = OutboxMessage {
                            topic: "c".into(),
                            payload: Bytes::from(delivery.to_string()),
                            ordering_key: None,
                            delay: None,
                        };
                        s.complete(&l.lease, ok(), vec![child])
                            .await
                            .expect("complete");
                        Done::Completed {
                            delivery,
                            acked: sim.now(),
                        }
                    } else {
                        let outcome = Outcome::Exit { code: 3 };
                        let policy = HandlerPolicy::default();
                        let fate = policy.fate(&outcome, l.attempt, &mut rng);
                        s.fail(&l.lease, report(outcome), fate).await.expect("fail");
                        Done::Failed {
                            delivery,
                            attempt: l.attempt,
                            acked: sim.now(),
                        }
                    };
                    done.lock().expect("done").push(record);
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    drop(store);
    let done = done.lock().expect("done").clone();
    (done, log)
}

fn wal_dir() -> PathBuf {
    PathBuf::from("/sim/data/wal")
}

/// The sled state a cut at `cut` may find: any write from the last one a
/// finished flush covered to the last one begun; and that last one covered.
fn sled_state(log: &SledLog, cut: usize, rng: &mut impl Rng) -> (usize, usize) {
    let lo = log
        .flushes
        .iter()
        .filter(|(at, _)| *at <= cut)
        .map(|(_, covered)| *covered)
        .max()
        .unwrap_or(0);
    let hi = log.begins.iter().filter(|at| **at < cut).count().max(lo);
    (rng.random_range(lo..=hi), lo)
}

/// Reopens the store on a cut's disk and checks it against what was done.
async fn check_cut(
    cut: usize,
    disk: SimFs,
    sled_dir: &Path,
    reference: &[Digest],
    done: &[Done],
) -> Result<(), String> {
    let (image, entries, checkpointed) = SledImage::open_dir(sled_dir, tuning().checkpoint_bytes)
        .map_err(|e| format!("sled image does not open: {e}"))?;
    // The key space recovered before anything else runs: a prefix of the
    // batches committed, to the byte.
    let tree = MemTree::from_entries(entries.clone());
    // As opening does first: a cut before the log directory existed leaves none.
    disk.create_dir_all(&wal_dir()).map_err(|e| e.to_string())?;
    let last = recover::replay(checkpointed, &tree, &disk, &wal_dir())
        .map_err(|e| format!("log replay refused: {e}"))?;
    let want = reference
        .get(last as usize)
        .ok_or_else(|| format!("recovered batch {last} was never committed"))?;
    if Digest::of_tree(&tree) != *want {
        return Err(format!(
            "the key space after batch {last} is not what the batches up to it make"
        ));
    }
    let store = EmbeddedStore::open_on(
        Arc::new(disk),
        &wal_dir(),
        (image, entries, checkpointed),
        StoreConfig::default(),
        &tuning(),
        Arc::new(manual_clock()),
    )
    .map_err(|e| format!("store does not open: {e}"))?;
    // Nothing this check does needs writing to sled on close.
    store.inject_checkpoint_fault(true);
    let mut children: HashMap<String, usize> = HashMap::new();
    // Before its registration was durable, "hc" has no deliveries.
    let leased = match store.lease("hc", 1 << 20).await {
        Err(StoreError::UnknownHandler(_)) => Vec::new(),
        other => other.map_err(|e| e.to_string())?,
    };
    for l in leased {
        *children
            .entry(String::from_utf8_lossy(&l.message.payload).into_owned())
            .or_default() += 1;
    }
    for d in done {
        match d {
            Done::Enqueued { ids, acked } => {
                let mut present = 0;
                for id in ids {
                    if store.message(*id).await.is_ok() {
                        present += 1;
                    }
                }
                if *acked <= cut && present != ids.len() {
                    return Err(format!(
                        "acknowledged enqueue {ids:?} lost ({present} kept)"
                    ));
                }
                if present != 0 && present != ids.len() {
                    return Err(format!("half a batch: {present} of {ids:?}"));
                }
            }
            Done::Completed { delivery, acked } => {
                let state = store.delivery(*delivery).await.map(|d| d.state);
                let succeeded = matches!(state, Ok(DeliveryState::Succeeded));
                if *acked <= cut && !succeeded {
                    return Err(format!(
                        "acknowledged completion of {delivery} lost: {state:?}"
                    ));
                }
                let copies = children.get(&delivery.to_string()).copied().unwrap_or(0);
                if copies != usize::from(succeeded) {
                    return Err(format!(
                        "{delivery} succeeded: {succeeded}, yet its outbox child exists {copies} times"
                    ));
                }
            }
            Done::Failed {
                delivery,
                attempt,
                acked,
            } => {
                if *acked > cut {
                    continue;
                }
                let status = store
                    .delivery(*delivery)
                    .await
                    .map_err(|e| format!("{delivery} of an acknowledged failure: {e}"))?;
                let recorded = status
                    .attempts
                    .iter()
                    .filter(|a| a.report.is_some())
                    .count();
                if recorded < *attempt as usize {
                    return Err(format!(
                        "acknowledged failure of attempt {attempt} of {delivery} lost ({recorded} recorded)"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The power-loss test: at every cut, the store opens without help, holds a
/// prefix of the committed batches and keeps everything acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_anywhere_loses_nothing_acknowledged() {
    let seed = env_or("SLUICE_POWERLOSS_SEED", rand::random::<u64>());
    let cuts = env_or("SLUICE_POWERLOSS_CUTS", 600usize);
    eprintln!("power-loss test: seed {seed} (SLUICE_POWERLOSS_SEED), {cuts} cuts");
    let root = tempfile::tempdir().expect("tempdir");
    let (sled_dir, snapshots) = (root.path().join("sled"), root.path().join("snap"));
    let sim = SimFs::default();
    let (done, sled_log) = run_workload(&sim, &sled_dir, &snapshots, seed).await;
    let sled_log = std::mem::take(&mut *sled_log.lock().expect("log"));
    let reference = reference(&sim.everything_written());
    let total = sim.now();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut points: Vec<usize> = (0..cuts).map(|_| rng.random_range(0..=total)).collect();
    points.sort_unstable();
    let mut cutter = sim.cutter();
    let mut checked = 0usize;
    let mut during_checkpoint = 0usize;
    let mut failures = Vec::new();
    for (i, cut) in points.iter().copied().enumerate() {
        let disk = cutter.cut(cut, &mut rng);
        let (state, flushed) = sled_state(&sled_log, cut, &mut rng);
        if state > flushed {
            during_checkpoint += 1;
        }
        let dir = root.path().join(format!("cut-{i}"));
        copy_dir(&snapshots.join(state.to_string()), &dir);
        checked += done
            .iter()
            .filter(|d| match d {
                Done::Enqueued { acked, .. }
                | Done::Completed { acked, .. }
                | Done::Failed { acked, .. } => *acked <= cut,
            })
            .count();
        if let Err(e) = check_cut(cut, disk, &dir, &reference, &done).await {
            failures.push(format!("cut {cut} of {total} (sled state {state}): {e}"));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    eprintln!(
        "power-loss test: {} cut points over {total} disk operations ({} sled writes, {} sled \
         flushes; {during_checkpoint} cuts found sled between flushes); {} operations \
         acknowledged, {checked} acknowledged-operation checks; {} failures",
        points.len(),
        sled_log.begins.len(),
        sled_log.flushes.len(),
        done.len(),
        failures.len()
    );
    assert!(
        sled_log.flushes.len() >= 5,
        "the workload must checkpoint (and compact) several times"
    );
    assert!(failures.is_empty(), "seed {seed}: {failures:#?}");
}

/// The set of distinct cut outcomes is not trivial: some cuts lose
/// unacknowledged work (otherwise the simulated disk would be syncing
/// everything and the test above could not fail).
#[test]
fn a_cut_loses_what_was_not_synced() {
    let sim = SimFs::default();
    let dir = wal_dir();
    sim.create_dir_all(&dir).expect("mkdir");
    let mut log = wal::LogFile::create_next(Arc::new(sim.clone()), &dir).expect("create");
    let mut buf = Vec::new();
    wal::encode(
        &mut buf,
        1,
        &[(b"k".to_vec(), Some(Bytes::from_static(b"v")))],
    );
    log.append_durable(&buf).expect("append");
    // Written, never synced.
    let mut more = Vec::new();
    wal::encode(
        &mut more,
        2,
        &[(b"k2".to_vec(), Some(Bytes::from(vec![9u8; 3000])))],
    );
    let mut file = sim
        .open_write(&dir.join("wal-0000000000000001.log"))
        .expect("open");
    file.write_at(&more, buf.len() as u64).expect("write");
    let mut rng = StdRng::seed_from_u64(7);
    let mut outcomes = HashSet::new();
    let mut cutter = sim.cutter();
    for _ in 0..64 {
        let disk = cutter.cut(sim.now(), &mut rng);
        let mut numbers = Vec::new();
        wal::replay(&disk, &dir, 0, |n, _| numbers.push(n)).expect("replay");
        outcomes.insert(numbers);
    }
    assert!(
        outcomes.contains(&vec![1]),
        "the unsynced record can be lost"
    );
    assert!(outcomes.contains(&vec![1, 2]), "or kept");
    assert!(
        outcomes.iter().all(|o| o.first() == Some(&1)),
        "the synced one never is"
    );
}
