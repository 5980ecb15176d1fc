//! Sandbox edge cases, one `.wat` fixture each (runtime/tests/fixtures/), named
//! for what it triggers. Every test also shows the runner survives: the guest's
//! failure comes back as an `Outcome`, never as a panic or a host error.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sluice::outcome::Outcome;
use sluice::sandbox::{
    Execution, GuestMetadata, Invocation, Limits, LoadedModule, LogLevel, ModuleOrigin, Sandbox,
    SandboxConfig, SandboxError, ValidationError, abi, validate,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.wat"));
    wat::parse_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn config() -> SandboxConfig {
    SandboxConfig {
        pool_instances: 8,
        max_memory_bytes: 256 << 20,
        ..SandboxConfig::default()
    }
}

fn sandbox() -> Sandbox {
    Sandbox::new(config()).unwrap()
}

fn limits() -> Limits {
    Limits {
        timeout: Duration::from_secs(10),
        memory_bytes: 16 << 20,
        fuel: None,
    }
}

fn metadata() -> GuestMetadata {
    GuestMetadata {
        topic: "orders".into(),
        handler: "billing".into(),
        message_id: "01930c8e-7b5a-7cc3-a1d2-1b3c4d5e6f70".into(),
        idempotency_key: "order-17".into(),
        ordering_key: None,
        attempt: 1,
        max_attempts: 6,
        enqueued_at: "2026-11-27T22:10:43.123Z".into(),
        headers: Vec::new(),
    }
}

fn invocation(stdin: &'static [u8], limits: Limits) -> Invocation {
    Invocation {
        stdin: Bytes::from_static(stdin),
        metadata: metadata(),
        env: Vec::new(),
        limits,
        egress: Default::default(),
    }
}

fn load(sandbox: &Sandbox, name: &str) -> Arc<LoadedModule> {
    sandbox.load(&fixture(name), &limits()).unwrap()
}

async fn run_with(name: &str, limits: Limits) -> Execution {
    let sandbox = sandbox();
    let module = sandbox.load(&fixture(name), &limits).unwrap();
    sandbox
        .invoke(&module, invocation(b"payload", limits))
        .await
        .unwrap()
}

async fn run(name: &str) -> Execution {
    run_with(name, limits()).await
}

#[tokio::test]
async fn echo_reads_the_payload_on_stdin() {
    let sandbox = sandbox();
    let module = load(&sandbox, "echo_stdin");
    let exec = sandbox
        .invoke(&module, invocation(b"{\"order\": 17}", limits()))
        .await
        .unwrap();
    assert_eq!(exec.outcome, Outcome::Ok);
    assert_eq!(exec.stdout.bytes, b"{\"order\": 17}");
    assert!(!exec.stdout.truncated);
    assert!(exec.published.is_empty());
    assert_eq!(exec.peak_memory_bytes, 64 << 10);
    assert_eq!(exec.fuel_used, None);
}

#[tokio::test]
async fn infinite_loop_times_out() {
    let limits = Limits {
        timeout: Duration::from_millis(200),
        ..limits()
    };
    let exec = run_with("infinite_loop", limits).await;
    assert_eq!(exec.outcome, Outcome::Timeout { limit_ms: 200 });
    assert!(exec.duration >= Duration::from_millis(200));
}

#[tokio::test]
async fn sleeping_in_a_host_call_times_out() {
    let limits = Limits {
        timeout: Duration::from_millis(200),
        ..limits()
    };
    let exec = run_with("sleep_forever", limits).await;
    assert_eq!(exec.outcome, Outcome::Timeout { limit_ms: 200 });
}

#[tokio::test]
async fn memory_grow_bomb_hits_the_memory_limit() {
    let exec = run("memory_grow_bomb").await;
    assert_eq!(
        exec.outcome,
        Outcome::MemoryLimit {
            limit_bytes: 16 << 20
        }
    );
    assert!(exec.peak_memory_bytes <= 16 << 20);
    assert!(exec.peak_memory_bytes > 8 << 20);
}

#[tokio::test]
async fn deep_recursion_overflows_the_stack() {
    let exec = run("deep_recursion").await;
    match exec.outcome {
        Outcome::Trap { trap, message, .. } => {
            assert_eq!(trap, "stack_overflow");
            assert!(message.contains("call stack exhausted"), "{message}");
        }
        other => panic!("expected a stack overflow, got {other:?}"),
    }
}

#[tokio::test]
async fn unreachable_traps_with_a_named_backtrace() {
    let exec = run("unreachable").await;
    match exec.outcome {
        Outcome::Trap {
            trap,
            message,
            backtrace,
        } => {
            assert_eq!(trap, "unreachable");
            assert!(message.contains("unreachable"), "{message}");
            let explode = backtrace.find("explode").expect(&backtrace);
            let handle = backtrace.find("handle").expect(&backtrace);
            assert!(explode < handle, "innermost frame first:\n{backtrace}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[tokio::test]
async fn huge_stdout_is_truncated_and_marked() {
    let exec = run("huge_stdout").await;
    assert_eq!(
        exec.outcome,
        Outcome::Ok,
        "writes past the cap still succeed"
    );
    assert_eq!(exec.stdout.bytes.len(), 64 << 10);
    assert!(exec.stdout.bytes.iter().all(|b| *b == b'a'));
    assert!(exec.stdout.truncated);
    assert_eq!(exec.stderr.bytes, b"still running\n");
    assert!(!exec.stderr.truncated);
}

#[tokio::test]
async fn exit_statuses_map_to_outcomes() {
    assert_eq!(run("exit_0").await.outcome, Outcome::Ok);
    assert_eq!(run("exit_65").await.outcome, Outcome::Rejected);
    assert_eq!(run("exit_3").await.outcome, Outcome::Exit { code: 3 });
    match run("exit_invalid_status").await.outcome {
        Outcome::Trap { trap, .. } => assert_eq!(trap, "invalid_exit_status"),
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[tokio::test]
async fn host_files_are_out_of_reach() {
    let exec = run("open_host_file").await;
    assert_eq!(exec.outcome, Outcome::Ok);
    // errno 8 is EBADF: there is no preopened directory to open anything from.
    assert_eq!(exec.stdout.bytes, [8, 8, 8]);
}

#[tokio::test]
async fn environment_is_the_metadata_and_the_handler_env_only() {
    let sandbox = sandbox();
    let module = load(&sandbox, "dump_env");
    let mut inv = invocation(b"", limits());
    inv.metadata.ordering_key = Some("user:42".into());
    inv.env = vec![("GREETING".into(), "hello".into())];
    let exec = sandbox.invoke(&module, inv).await.unwrap();
    assert_eq!(exec.outcome, Outcome::Ok);
    let text = String::from_utf8(exec.stdout.bytes).unwrap();
    let (args, env) = text.split_once("\0\0").unwrap();
    assert_eq!(args, "billing");
    let env: Vec<&str> = env.trim_end_matches('\0').split('\0').collect();
    assert_eq!(
        env,
        [
            "SLUICE_TOPIC=orders",
            "SLUICE_HANDLER=billing",
            "SLUICE_MESSAGE_ID=01930c8e-7b5a-7cc3-a1d2-1b3c4d5e6f70",
            "SLUICE_IDEMPOTENCY_KEY=order-17",
            "SLUICE_ORDERING_KEY=user:42",
            "SLUICE_ATTEMPT=1",
            "SLUICE_MAX_ATTEMPTS=6",
            "SLUICE_ENQUEUED_AT=2026-11-27T22:10:43.123Z",
            "GREETING=hello",
        ]
    );
}

#[tokio::test]
async fn handler_env_cannot_override_metadata() {
    let sandbox = sandbox();
    let module = load(&sandbox, "dump_env");
    let mut inv = invocation(b"", limits());
    inv.env = vec![("SLUICE_ATTEMPT".into(), "1".into())];
    let err = sandbox.invoke(&module, inv).await.unwrap_err();
    assert!(matches!(err, SandboxError::Env { .. }), "{err}");
}

#[tokio::test]
async fn clocks_and_random_are_available() {
    let sandbox = sandbox();
    let module = load(&sandbox, "clocks_and_random");
    let a = sandbox
        .invoke(&module, invocation(b"", limits()))
        .await
        .unwrap();
    let b = sandbox
        .invoke(&module, invocation(b"", limits()))
        .await
        .unwrap();
    assert_eq!(a.outcome, Outcome::Ok);
    let out = &a.stdout.bytes;
    assert_eq!(out.len(), 56);
    let u64_at = |i: usize| u64::from_le_bytes(out[i..i + 8].try_into().unwrap());
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let guest_now = Duration::from_nanos(u64_at(0));
    assert!(
        now.abs_diff(guest_now) < Duration::from_secs(60),
        "realtime is the host's"
    );
    assert!(u64_at(16) >= u64_at(8), "monotonic never goes back");
    assert_ne!(&out[24..56], &[0u8; 32], "random bytes");
    assert_ne!(
        &out[24..56],
        &b.stdout.bytes[24..56],
        "fresh random per attempt"
    );
}

#[tokio::test]
async fn publish_three_messages_then_exit_0() {
    let exec = run("publish_three").await;
    assert_eq!(exec.outcome, Outcome::Ok);
    assert_eq!(
        exec.stdout.bytes,
        [0, 0, 0],
        "every publish returned SLUICE_OK"
    );
    let summary: Vec<_> = exec
        .published
        .iter()
        .map(|p| {
            (
                p.topic.as_str(),
                p.payload.as_slice(),
                p.ordering_key.as_deref(),
                p.delay,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("orders.audit", &b"first"[..], None, None),
            ("orders.audit", &b"second"[..], Some("user:42"), None),
            (
                "orders.audit",
                &b"third"[..],
                None,
                Some(Duration::from_millis(1500))
            ),
        ]
    );
    assert_eq!(exec.logs.len(), 1);
    assert_eq!(exec.logs[0].level, LogLevel::Info);
    assert_eq!(exec.logs[0].message, "published three");
}

#[tokio::test]
async fn publish_then_trap_publishes_nothing() {
    let exec = run("publish_then_trap").await;
    assert!(
        matches!(exec.outcome, Outcome::Trap { .. }),
        "{:?}",
        exec.outcome
    );
    assert!(
        exec.published.is_empty(),
        "the outbox commits only with success"
    );
    assert_eq!(exec.logs.len(), 1, "logs are kept whatever the outcome");
    assert_eq!(exec.logs[0].level, LogLevel::Error);
}

#[tokio::test]
async fn log_with_a_bad_pointer_traps() {
    match run("log_bad_pointer").await.outcome {
        Outcome::Trap { trap, message, .. } => {
            assert_eq!(trap, "bad_pointer");
            assert!(message.contains("sluice::log"), "{message}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[tokio::test]
async fn every_attempt_gets_a_fresh_instance() {
    let sandbox = sandbox();
    let module = load(&sandbox, "fresh_instance");
    for _ in 0..3 {
        let exec = sandbox
            .invoke(&module, invocation(b"", limits()))
            .await
            .unwrap();
        // Exit status is runs × (word at address 0): 1 only if both started at 0.
        assert_eq!(exec.outcome, Outcome::Exit { code: 1 });
    }
}

fn refusal(wasm: &[u8]) -> ValidationError {
    match sandbox().load(wasm, &limits()) {
        Err(SandboxError::Validation(e)) => e,
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[test]
fn unknown_import_is_refused_by_name() {
    let e = refusal(&fixture("unknown_import"));
    assert!(matches!(e, ValidationError::ForbiddenImport { .. }));
    assert!(
        e.to_string().contains("import env::foo is not allowed"),
        "{e}"
    );
}

#[test]
fn unknown_wasi_function_and_mistyped_sluice_import_are_refused() {
    let e = refusal(
        &wat::parse_str(
            r#"(module (import "wasi_snapshot_preview1" "sock_open" (func))
                       (func (export "_start")))"#,
        )
        .unwrap(),
    );
    assert!(
        e.to_string().contains("wasi_snapshot_preview1::sock_open"),
        "{e}"
    );
    let e = refusal(
        &wat::parse_str(
            r#"(module (import "sluice" "publish" (func (param i32 i32) (result i32)))
                       (func (export "_start")))"#,
        )
        .unwrap(),
    );
    assert_eq!(
        e.to_string(),
        "import sluice::publish has type (i32, i32) -> (i32), \
         the ABI's is (i32, i32, i32, i32, i32, i32, i64) -> (i32)"
    );
    let e = refusal(
        &wat::parse_str(r#"(module (import "env" "memory" (memory 1)) (func (export "_start")))"#)
            .unwrap(),
    );
    assert!(
        e.to_string().contains("only functions may be imported"),
        "{e}"
    );
}

#[test]
fn missing_start_is_refused() {
    assert_eq!(
        refusal(&fixture("missing_start")),
        ValidationError::MissingStart
    );
    let e = refusal(&wat::parse_str(r#"(module (func (export "_start") (param i32)))"#).unwrap());
    assert!(
        e.to_string()
            .contains("_start must be a function of type () -> ()"),
        "{e}"
    );
}

#[test]
fn invalid_bytes_are_refused_with_wasmparser_message() {
    let e = refusal(b"definitely not wasm");
    let text = e.to_string();
    assert!(text.starts_with("invalid wasm: "), "{text}");
    assert!(text.contains("magic header"), "{text}");
    // Truncated module: valid header, then nothing where a section should be.
    let mut wasm = fixture("exit_0");
    wasm.truncate(wasm.len() - 3);
    assert!(matches!(
        refusal(&wasm),
        ValidationError::InvalidWasm { .. }
    ));
}

#[test]
fn memory_minimum_above_the_limit_is_refused() {
    let wasm = fixture("memory_minimum_200mib");
    let limits = Limits {
        memory_bytes: 64 << 20,
        ..limits()
    };
    let e = validate(&wasm, limits.memory_bytes).unwrap_err();
    assert_eq!(e.to_string(), "memory minimum 200 MiB > limit 64 MiB");
    assert!(matches!(
        sandbox().load(&wasm, &limits),
        Err(SandboxError::Validation(
            ValidationError::MemoryTooLarge { .. }
        ))
    ));
    let roomy = Limits {
        memory_bytes: 256 << 20,
        ..limits
    };
    let info = validate(&wasm, roomy.memory_bytes).unwrap();
    assert_eq!(info.min_memory_bytes, 200 << 20);
}

#[tokio::test]
async fn an_invocation_limit_below_the_declared_minimum_is_a_memory_outcome() {
    let sandbox = Sandbox::new(config()).unwrap();
    let roomy = Limits {
        memory_bytes: 256 << 20,
        ..limits()
    };
    let module = sandbox
        .load(&fixture("memory_minimum_200mib"), &roomy)
        .unwrap();
    let tight = Limits {
        memory_bytes: 64 << 20,
        ..limits()
    };
    let exec = sandbox
        .invoke(&module, invocation(b"", tight))
        .await
        .unwrap();
    assert_eq!(
        exec.outcome,
        Outcome::MemoryLimit {
            limit_bytes: 64 << 20
        }
    );
    let exec = sandbox
        .invoke(&module, invocation(b"", roomy))
        .await
        .unwrap();
    assert_eq!(exec.outcome, Outcome::Ok);
    assert_eq!(exec.peak_memory_bytes, 200 << 20);
}

#[test]
fn validation_reports_imports() {
    let info = validate(&fixture("publish_three"), 1 << 20).unwrap();
    assert_eq!(
        info.imports,
        [
            "sluice::publish",
            "sluice::log",
            "wasi_snapshot_preview1::fd_write"
        ]
    );
    assert_eq!(abi::ABI_VERSION, 1);
}

#[tokio::test]
async fn fuel_limit_stops_a_loop() {
    let sandbox = Sandbox::new(SandboxConfig {
        fuel: true,
        ..config()
    })
    .unwrap();
    let limits = Limits {
        fuel: Some(100_000),
        ..limits()
    };
    let module = sandbox.load(&fixture("infinite_loop"), &limits).unwrap();
    let exec = sandbox
        .invoke(&module, invocation(b"", limits))
        .await
        .unwrap();
    assert_eq!(exec.outcome, Outcome::FuelExhausted { limit: 100_000 });
    assert_eq!(exec.fuel_used, Some(100_000));

    let module = sandbox.load(&fixture("exit_0"), &limits).unwrap();
    let exec = sandbox
        .invoke(&module, invocation(b"", limits))
        .await
        .unwrap();
    assert_eq!(exec.outcome, Outcome::Ok);
    assert!(exec.fuel_used.unwrap() < 100, "{:?}", exec.fuel_used);
}

#[test]
fn fuel_limit_needs_metering() {
    let limits = Limits {
        fuel: Some(1),
        ..limits()
    };
    let err = sandbox().load(&fixture("exit_0"), &limits).unwrap_err();
    assert!(matches!(err, SandboxError::Limits(_)), "{err}");
}

#[test]
fn a_pool_the_machine_cannot_reserve_fails_clearly() {
    // 100,000 slots of 4 GiB is ~400 TiB of address space: more than x86-64's
    // 128 TiB of user space with 4-level paging (machines with 5-level paging
    // could reserve it; ours do not).
    let err = Sandbox::new(SandboxConfig {
        pool_instances: 100_000,
        ..SandboxConfig::default()
    })
    .unwrap_err();
    assert!(matches!(err, SandboxError::PoolReservation { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("100000 instances"), "{text}");
    assert!(text.contains("lower pool_instances"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocations_beyond_the_pool_size_all_complete() {
    let sandbox = Sandbox::new(SandboxConfig {
        pool_instances: 2,
        ..config()
    })
    .unwrap();
    let module = load(&sandbox, "echo_stdin");
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (sandbox, module) = (sandbox.clone(), module.clone());
            tokio::spawn(async move {
                let mut inv = invocation(b"", limits());
                inv.stdin = Bytes::from(format!("message {i}"));
                sandbox.invoke(&module, inv).await
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let exec = task.await.unwrap().unwrap();
        assert_eq!(exec.outcome, Outcome::Ok);
        assert_eq!(exec.stdout.bytes, format!("message {i}").as_bytes());
    }
    assert_eq!(sandbox.free_slots(), 2);
}

#[tokio::test]
async fn the_runner_survives_every_fixture() {
    let sandbox = sandbox();
    let limits = Limits {
        timeout: Duration::from_millis(100),
        ..limits()
    };
    for name in [
        "infinite_loop",
        "memory_grow_bomb",
        "deep_recursion",
        "unreachable",
        "huge_stdout",
        "exit_65",
        "exit_3",
        "exit_invalid_status",
        "open_host_file",
        "publish_then_trap",
        "log_bad_pointer",
        "sleep_forever",
    ] {
        let module = sandbox.load(&fixture(name), &limits).unwrap();
        let exec = sandbox.invoke(&module, invocation(b"x", limits)).await;
        assert!(exec.is_ok(), "{name}: {exec:?}");
    }
    let module = load(&sandbox, "echo_stdin");
    let exec = sandbox
        .invoke(&module, invocation(b"still here", limits))
        .await
        .unwrap();
    assert_eq!(exec.stdout.bytes, b"still here");
    assert_eq!(sandbox.free_slots(), 8);
}

fn cache_entry(dir: &Path) -> PathBuf {
    let entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries[0].clone()
}

#[tokio::test]
async fn the_disk_cache_is_used_and_bad_entries_are_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let cached = || {
        Sandbox::new(SandboxConfig {
            cache_dir: Some(dir.path().to_owned()),
            ..config()
        })
        .unwrap()
    };
    let wasm = fixture("echo_stdin");

    let first = cached().load(&wasm, &limits()).unwrap();
    assert_eq!(first.origin(), &ModuleOrigin::Compiled);
    let entry = cache_entry(dir.path());
    assert!(
        entry
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(first.sha256())
    );

    // A new sandbox (as after a restart) loads the entry instead of compiling.
    let sandbox = cached();
    let second = sandbox.load(&wasm, &limits()).unwrap();
    assert_eq!(second.origin(), &ModuleOrigin::Cached);
    assert_eq!(second.sha256(), first.sha256());
    let exec = sandbox
        .invoke(&second, invocation(b"from cache", limits()))
        .await
        .unwrap();
    assert_eq!(exec.stdout.bytes, b"from cache");

    // An entry from another engine (different compatibility hash in the header).
    let mut bytes = std::fs::read(&entry).unwrap();
    bytes[16] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();
    match cached().load(&wasm, &limits()).unwrap().origin() {
        ModuleOrigin::Recompiled { reason } => {
            assert!(reason.contains("compatibility"), "{reason}");
        }
        other => panic!("expected a recompile, got {other:?}"),
    }
    assert_eq!(
        cached().load(&wasm, &limits()).unwrap().origin(),
        &ModuleOrigin::Cached
    );

    // Corrupted artifact bytes: caught by the checksum, never deserialized.
    let mut bytes = std::fs::read(&entry).unwrap();
    let last = bytes.len() - 100;
    bytes[last] ^= 0x55;
    std::fs::write(&entry, &bytes).unwrap();
    match cached().load(&wasm, &limits()).unwrap().origin() {
        ModuleOrigin::Recompiled { reason } => assert!(reason.contains("checksum"), "{reason}"),
        other => panic!("expected a recompile, got {other:?}"),
    }

    // A torn write (truncated file).
    let bytes = std::fs::read(&entry).unwrap();
    std::fs::write(&entry, &bytes[..40]).unwrap();
    assert!(matches!(
        cached().load(&wasm, &limits()).unwrap().origin(),
        ModuleOrigin::Recompiled { .. }
    ));
    let sandbox = cached();
    let module = sandbox.load(&wasm, &limits()).unwrap();
    assert_eq!(module.origin(), &ModuleOrigin::Cached);
    let exec = sandbox
        .invoke(&module, invocation(b"ok", limits()))
        .await
        .unwrap();
    assert_eq!(exec.stdout.bytes, b"ok");
}

#[tokio::test]
async fn one_long_random_get_is_stopped_by_the_timeout_mid_call() {
    let limits = Limits {
        timeout: Duration::from_millis(1),
        memory_bytes: 64 << 20,
        fuel: None,
    };
    let exec = run_with("random_get_60mib", limits).await;
    assert_eq!(exec.outcome, Outcome::Timeout { limit_ms: 1 }, "{exec:?}");
}

/// A `MakeWriter` into a shared buffer, to see what the host logs.
#[derive(Clone, Default)]
struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn denied_socket_calls_are_counted_in_stderr_not_logged_by_the_host() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/open_sockets.wat");
    let sandbox = sandbox();
    let module = sandbox
        .load(&wat::parse_file(&path).unwrap(), &limits())
        .unwrap();
    let exec = sandbox
        .invoke(&module, invocation(b"", limits()))
        .await
        .unwrap();
    assert_eq!(exec.outcome, Outcome::Exit { code: 77 }, "{exec:?}");
    let stderr = String::from_utf8_lossy(&exec.stderr.bytes);
    assert!(stderr.contains("40 sock_* call(s) denied"), "{stderr}");
    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        !logged.contains("sock_"),
        "the host logged the guest's calls: {logged}"
    );
}

#[test]
fn a_module_past_the_function_bound_is_refused_before_compiling() {
    let max = validate::MAX_FUNCTIONS as usize;
    let module = |functions: usize| {
        let wat = format!(
            r#"(module (memory (export "memory") 1) (func (export "_start")) {})"#,
            "(func)".repeat(functions - 1)
        );
        wat::parse_str(wat).unwrap()
    };
    validate(&module(max), 16 << 20).unwrap();
    let e = validate(&module(max + 1), 16 << 20).unwrap_err();
    assert_eq!(
        e,
        ValidationError::TooMany {
            what: "functions",
            count: max as u32 + 1,
            max: max as u32
        }
    );
    assert!(
        e.to_string().contains("50001 functions; at most 50000"),
        "{e}"
    );
}

/// Guests run in the background class (`SCHED_IDLE`), so a waking
/// control-plane thread preempts them at once (docs/sandbox.md).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn guest_threads_run_under_sched_idle() {
    let sandbox = sandbox();
    let module = load(&sandbox, "echo_stdin");
    let exec = sandbox
        .invoke(&module, invocation(b"{}", limits()))
        .await
        .unwrap();
    assert_eq!(exec.outcome, Outcome::Ok);
    let mut guests = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue; // the thread ended meanwhile
        };
        if comm.trim_end() != "sluice-guest" {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        // Field 41 (policy), counted after the command name's ')'.
        let policy = stat[stat.rfind(')').unwrap() + 2..]
            .split(' ')
            .nth(41 - 3)
            .unwrap();
        assert_eq!(
            policy, "5",
            "a sluice-guest thread not under SCHED_IDLE: {stat}"
        );
        guests += 1;
    }
    assert!(guests > 0, "no sluice-guest thread found");
}
