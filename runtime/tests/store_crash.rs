//! A real crash test of the sled store: kill -9 at random moments, then check that
//! everything acknowledged is there.
//!
//! The test re-executes its own binary as a child process (selected by the
//! `SLUICE_CRASH_CHILD_DIR` environment variable, see [`child_process_entry`]).
//! The child opens the store and runs many concurrent producers (single
//! messages and batches) and consumers (lease, complete), printing one line per
//! acknowledged enqueue (`E <message id>`) or completion (`C <delivery id>`)
//! right after the call returns, flushed per line. The parent kills the child
//! with SIGKILL at a random moment, reopens the store and checks that every
//! acknowledged message exists with its delivery, every acknowledged completion
//! is `succeeded`, and no lease of the dead process survived the reopen. Several
//! rounds share one store directory, so each round also recovers the previous
//! round's crash.
//!
//! Run: `cargo test -p sluice --test store_crash` (about 30 s).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use uuid::Uuid;

use sluice::clock::SystemClock;
use sluice::policy::HandlerPolicy;
use sluice::store::conformance::helpers::{handler_with, ok};
use sluice::store::{
    DeliveryState, EmbeddedSettings, EmbeddedStore, NewMessage, Store, StoreConfig, StoreError,
};

const CHILD_ENV: &str = "SLUICE_CRASH_CHILD_DIR";
const ROUNDS: usize = 15;
const PRODUCERS: usize = 24;
const CONSUMERS: usize = 8;

/// Checkpoints every MiB of log, so kills also land in checkpoints and
/// compactions, and reopens load images as well as replay logs.
fn open(dir: &Path) -> EmbeddedStore {
    let tuning = EmbeddedSettings {
        checkpoint_bytes: 1 << 20,
        ..EmbeddedSettings::default()
    };
    EmbeddedStore::open_with(dir, StoreConfig::default(), &tuning, Arc::new(SystemClock))
        .expect("open store")
}

/// One acknowledged line on stdout, written and flushed as a whole.
fn ack(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}

/// The child's body: a no-op in a normal test run (the variable is unset).
#[test]
fn child_process_entry() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let store = Arc::new(open(Path::new(&dir)));
        match store.handler("h").await {
            Ok(_) => {}
            Err(StoreError::UnknownHandler(_)) => {
                let policy = HandlerPolicy {
                    concurrency: 64,
                    ..HandlerPolicy::default()
                };
                handler_with(&*store, "h", "t", policy).await;
            }
            Err(e) => panic!("handler: {e}"),
        }
        ack("\nREADY\n");
        let mut tasks = Vec::new();
        for p in 0..PRODUCERS {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                for i in 0u64.. {
                    let n = if (p + i as usize).is_multiple_of(4) {
                        8
                    } else {
                        1
                    };
                    let batch = (0..n)
                        .map(|j| NewMessage {
                            topic: "t".into(),
                            payload: Bytes::from(format!("{p}-{i}-{j}")),
                            ..NewMessage::default()
                        })
                        .collect();
                    let done = store.enqueue(batch).await.expect("enqueue");
                    let mut line = String::new();
                    for e in done {
                        line.push_str(&format!("E {}\n", e.id));
                    }
                    ack(&line);
                }
            }));
        }
        for _ in 0..CONSUMERS {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                let mut signal = store.ready_signal();
                loop {
                    let leased = store.lease("h", 16).await.expect("lease");
                    if leased.is_empty() {
                        let _ =
                            tokio::time::timeout(Duration::from_millis(20), signal.changed()).await;
                        continue;
                    }
                    let mut done = Vec::new();
                    for l in leased {
                        let store = Arc::clone(&store);
                        done.push(tokio::spawn(async move {
                            store
                                .complete(&l.lease, ok(), vec![])
                                .await
                                .expect("complete");
                            ack(&format!("C {}\n", l.lease.delivery_id));
                        }));
                    }
                    for d in done {
                        d.await.expect("completion task");
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
    });
}

/// Kills the child if the parent panics, so no orphan keeps loading the machine.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines the child acknowledged before it died; a last line cut by the kill is
/// not an acknowledgement and is dropped.
struct Acks {
    enqueued: Vec<Uuid>,
    completed: Vec<Uuid>,
}

fn parse(lines: &[String]) -> Acks {
    let mut acks = Acks {
        enqueued: Vec::new(),
        completed: Vec::new(),
    };
    for line in lines {
        let Some(line) = line.strip_suffix('\n') else {
            continue;
        };
        if let Some(id) = line.strip_prefix("E ") {
            acks.enqueued.push(id.parse().expect("message id"));
        } else if let Some(id) = line.strip_prefix("C ") {
            acks.completed.push(id.parse().expect("delivery id"));
        }
    }
    acks
}

async fn verify(store: &EmbeddedStore, enqueued: &[Uuid], completed: &[Uuid], round: usize) {
    for id in enqueued {
        let st = store
            .message(*id)
            .await
            .unwrap_or_else(|e| panic!("round {round}: acknowledged message {id} lost: {e}"));
        assert_eq!(
            st.deliveries.len(),
            1,
            "round {round}: message {id} has its delivery"
        );
    }
    for id in completed {
        let d = store
            .delivery(*id)
            .await
            .unwrap_or_else(|e| panic!("round {round}: completed delivery {id} lost: {e}"));
        assert_eq!(
            d.state,
            DeliveryState::Succeeded,
            "round {round}: acknowledged completion of {id} lost"
        );
    }
    let stats = store.stats().await.expect("stats");
    let leased = stats.handlers[0].counts[&DeliveryState::Leased];
    assert_eq!(
        leased, 0,
        "round {round}: leases of the killed process released on open"
    );
}

#[test]
fn acknowledged_work_survives_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut rng = rand::rng();
    let mut all_enqueued = BTreeSet::new();
    let mut all_completed = BTreeSet::new();
    let started = Instant::now();
    for round in 0..ROUNDS {
        let mut child = KillOnDrop(
            Command::new(&exe)
                .args([
                    "child_process_entry",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn child"),
        );
        let stdout = child.0.stdout.take().expect("child stdout");
        let (ready_tx, ready_rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut lines = Vec::new();
            let mut ready = Some(ready_tx);
            loop {
                let mut line = String::new();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => return lines,
                    Ok(_) => {
                        // libtest prints "test child_process_entry ... " first.
                        if line.ends_with("READY\n")
                            && let Some(tx) = ready.take()
                        {
                            let _ = tx.send(());
                        }
                        lines.push(line);
                    }
                }
            }
        });
        if round % 5 == 4 {
            // Every fifth kill lands anywhere from spawn on, possibly while the
            // child is still opening the store and releasing the last leases.
            std::thread::sleep(Duration::from_millis(rng.random_range(0..400)));
        } else {
            ready_rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("round {round}: child never opened the store"));
            // The crash moment: anywhere from just after open to 1 s of load (the
            // store acknowledges some 20,000 operations a second here).
            std::thread::sleep(Duration::from_millis(rng.random_range(20..1_000)));
        }
        child.0.kill().expect("SIGKILL");
        let status = child.0.wait().expect("reap child");
        assert!(
            !status.success(),
            "round {round}: child ended by itself: {status}"
        );
        let acks = parse(&reader.join().expect("reader"));
        eprintln!(
            "round {round}: killed after {} enqueues and {} completions acknowledged",
            acks.enqueued.len(),
            acks.completed.len()
        );
        rt.block_on(async {
            let store = open(dir.path());
            verify(&store, &acks.enqueued, &acks.completed, round).await;
        });
        all_enqueued.extend(acks.enqueued);
        all_completed.extend(acks.completed);
    }
    rt.block_on(async {
        let store = open(dir.path());
        let enq: Vec<_> = all_enqueued.iter().copied().collect();
        let done: Vec<_> = all_completed.iter().copied().collect();
        verify(&store, &enq, &done, ROUNDS).await;
    });
    eprintln!(
        "{ROUNDS} kills in {:.1} s: {} enqueues and {} completions acknowledged, all present",
        started.elapsed().as_secs_f64(),
        all_enqueued.len(),
        all_completed.len()
    );
    assert!(all_enqueued.len() > 1000, "the child did real work");
    assert!(!all_completed.is_empty(), "the child completed deliveries");
}
