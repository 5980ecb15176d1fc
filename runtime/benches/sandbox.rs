//! Sandbox overheads (docs/sandbox.md has the figures and the targets).
//!
//! Run with `cargo bench -p sluice --bench sandbox --profile dev` (dependencies
//! are opt-level 3 in dev). Medians are in
//! `target/criterion/<group>/<bench>/new/estimates.json`.

#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::sandbox::{
    GuestMetadata, Invocation, Limits, LoadedModule, ModuleOrigin, Sandbox, SandboxConfig,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.wat"));
    wat::parse_file(path).unwrap()
}

fn invocation(stdin: Bytes, limits: Limits) -> Invocation {
    Invocation {
        stdin,
        metadata: GuestMetadata {
            topic: "orders".into(),
            handler: "bench".into(),
            message_id: "01930c8e-7b5a-7cc3-a1d2-1b3c4d5e6f70".into(),
            idempotency_key: "order-17".into(),
            ordering_key: None,
            attempt: 1,
            max_attempts: 6,
            enqueued_at: "2026-11-27T22:10:43.123Z".into(),
            headers: Vec::new(),
        },
        env: vec![("GREETING".into(), "hello".into())],
        limits,
        egress: Default::default(),
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn invoke_once(rt: &tokio::runtime::Runtime, sandbox: &Sandbox, module: &LoadedModule) {
    let payload = Bytes::from_static(&[b'x'; 128]);
    let exec = rt
        .block_on(sandbox.invoke(module, invocation(payload, Limits::default())))
        .unwrap();
    assert!(exec.outcome == sluice::outcome::Outcome::Ok);
}

/// Instantiate, set up WASI, run a guest that reads 128 bytes of stdin, tear down.
fn invoke_trivial(c: &mut Criterion) {
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let module = sandbox
        .load(&fixture("read_stdin"), &Limits::default())
        .unwrap();
    let rt = current_thread();
    c.bench_function("invoke/read_stdin_128", |b| {
        b.iter(|| invoke_once(&rt, &sandbox, &module));
    });
}

/// `load` of a module whose compiled code is in the disk cache, against a
/// compile from scratch.
fn load(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(SandboxConfig {
        cache_dir: Some(dir.path().to_owned()),
        ..SandboxConfig::default()
    })
    .unwrap();
    let wasm = fixture("publish_three");
    sandbox.load(&wasm, &Limits::default()).unwrap();
    let mut group = c.benchmark_group("load");
    group.bench_function("from_cache", |b| {
        b.iter(|| {
            let m = sandbox.load(&wasm, &Limits::default()).unwrap();
            assert_eq!(m.origin(), &ModuleOrigin::Cached);
        });
    });
    let uncached = Sandbox::new(SandboxConfig::default()).unwrap();
    group.bench_function("compile", |b| {
        b.iter(|| uncached.load(&wasm, &Limits::default()).unwrap());
    });
    group.finish();
}

/// One round = one trivial invocation on each of `threads` threads at once,
/// each thread with its own current-thread runtime (as worker tasks would be).
/// Criterion reports the throughput in invocations per second: with perfect
/// scaling, 2 threads give twice the throughput of 1 (on 2 idle cores).
fn scaling(c: &mut Criterion) {
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let module = sandbox
        .load(&fixture("read_stdin"), &Limits::default())
        .unwrap();
    let mut group = c.benchmark_group("threads");
    for threads in [1usize, 2] {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_function(format!("{threads}"), |b| {
            b.iter_custom(|rounds| {
                let barrier = Arc::new(Barrier::new(threads + 1));
                let workers: Vec<_> = (0..threads)
                    .map(|_| {
                        let (sandbox, module, barrier) =
                            (sandbox.clone(), module.clone(), barrier.clone());
                        std::thread::spawn(move || {
                            let rt = current_thread();
                            barrier.wait();
                            for _ in 0..rounds {
                                invoke_once(&rt, &sandbox, &module);
                            }
                        })
                    })
                    .collect();
                barrier.wait();
                let start = Instant::now();
                for w in workers {
                    w.join().unwrap();
                }
                start.elapsed()
            });
        });
    }
    group.finish();
}

/// A busy loop with a 20 ms timeout: the time above 20 ms is how late the
/// timeout lands (target: under 50 ms).
fn timeout(c: &mut Criterion) {
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let limits = Limits {
        timeout: Duration::from_millis(20),
        ..Limits::default()
    };
    let module = sandbox.load(&fixture("infinite_loop"), &limits).unwrap();
    let rt = current_thread();
    let mut group = c.benchmark_group("timeout");
    group.sample_size(20);
    group.bench_function("busy_loop_20ms", |b| {
        b.iter(|| {
            let exec = rt
                .block_on(sandbox.invoke(&module, invocation(Bytes::new(), limits)))
                .unwrap();
            assert_eq!(exec.outcome.kind(), "timeout");
        });
    });
    group.finish();
}

criterion_group!(benches, invoke_trivial, load, scaling, timeout);
criterion_main!(benches);
