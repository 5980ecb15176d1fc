//! Compiles run on a thread of their own, one at a time, within a deadline.
//!
//! What one compile may cost is bounded before it starts by validation
//! ([`MAX_FUNCTIONS`](super::validate::MAX_FUNCTIONS),
//! [`MAX_CODE_BYTES`](super::validate::MAX_CODE_BYTES)). Three more bounds
//! hold here:
//! - one compile at a time in the whole runner (API registrations and
//!   producers alike), so compiles never take the memory and cores that
//!   running attempts need;
//! - at most [`MAX_PENDING_COMPILES`] compiles running or waiting; past that a
//!   load is refused ([`SandboxError::CompilerBusy`], a 503) instead of
//!   queueing without end;
//! - a caller waits at most the configured compile timeout, queueing
//!   included ([`SandboxError::CompileTimeout`]). wasmtime cannot cancel a
//!   compile, so one that overruns finishes on its thread and is discarded
//!   (within the bounds above), and a compile whose caller gave up while it
//!   waited for its turn never starts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::SandboxError;

/// Compiles running or waiting for their turn, at most.
pub const MAX_PENDING_COMPILES: usize = 4;

/// The runner's one compile lane.
#[derive(Debug)]
pub(super) struct Compiler {
    turn: Arc<Mutex<()>>,
    pending: Arc<AtomicUsize>,
    timeout: Duration,
}

/// One pending compile, counted until its thread ends.
struct Pending(Arc<AtomicUsize>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Compiler {
    pub(super) fn new(timeout: Duration) -> Compiler {
        Compiler {
            turn: Arc::new(Mutex::new(())),
            pending: Arc::new(AtomicUsize::new(0)),
            timeout,
        }
    }

    /// Compiles running or waiting now.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Runs `job` (the compile of module `sha256`) on the compile thread and
    /// waits for it within the timeout.
    pub(super) fn run<T: Send + 'static>(
        &self,
        sha256: &str,
        job: impl FnOnce() -> wasmtime::Result<T> + Send + 'static,
    ) -> Result<T, SandboxError> {
        let taken = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_PENDING_COMPILES).then_some(n + 1)
            });
        if taken.is_err() {
            return Err(SandboxError::CompilerBusy {
                max: MAX_PENDING_COMPILES,
            });
        }
        let pending = Pending(self.pending.clone());
        let compile_error = |message: String| SandboxError::Compile {
            sha256: sha256.to_owned(),
            message,
        };
        let deadline = Instant::now() + self.timeout;
        let (tx, rx) = mpsc::sync_channel(1);
        let turn = self.turn.clone();
        std::thread::Builder::new()
            .name("sluice-compile".into())
            .spawn(move || {
                let _pending = pending;
                let _turn = turn.lock().unwrap_or_else(|p| p.into_inner());
                if Instant::now() < deadline {
                    // The receiver may be gone (its caller timed out): the
                    // result is then dropped.
                    let _ = tx.send(job());
                }
            })
            .map_err(|e| compile_error(format!("cannot start the compile thread: {e}")))?;
        match rx.recv_timeout(self.timeout) {
            Ok(result) => result.map_err(|e| compile_error(format!("{e:#}"))),
            Err(mpsc::RecvTimeoutError::Disconnected) if Instant::now() < deadline => {
                Err(compile_error("the compile panicked".into()))
            }
            Err(_) => Err(SandboxError::CompileTimeout {
                sha256: sha256.to_owned(),
                timeout: self.timeout,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    /// A job that blocks until `release` is dropped or sent to, and records
    /// how many jobs ran at once.
    fn gated(
        running: &Arc<AtomicUsize>,
        most: &Arc<AtomicUsize>,
    ) -> (
        mpsc::Sender<()>,
        impl FnOnce() -> wasmtime::Result<u32> + Send + 'static,
    ) {
        let (release, gate) = mpsc::channel::<()>();
        let (running, most) = (running.clone(), most.clone());
        let job = move || {
            let now = running.fetch_add(1, Ordering::AcqRel) + 1;
            most.fetch_max(now, Ordering::AcqRel);
            let _ = gate.recv();
            running.fetch_sub(1, Ordering::AcqRel);
            Ok(7)
        };
        (release, job)
    }

    #[test]
    fn compiles_run_one_at_a_time_and_past_the_bound_are_refused() {
        let compiler = Arc::new(Compiler::new(Duration::from_secs(600)));
        let (running, most) = (Arc::default(), Arc::default());
        let mut releases = Vec::new();
        let mut callers = Vec::new();
        for _ in 0..MAX_PENDING_COMPILES {
            let (release, job) = gated(&running, &most);
            releases.push(release);
            let compiler = compiler.clone();
            callers.push(std::thread::spawn(move || compiler.run("x", job)));
        }
        while compiler.pending() < MAX_PENDING_COMPILES {
            std::thread::yield_now();
        }
        let refused = compiler.run("y", || Ok(0));
        assert!(
            matches!(
                refused,
                Err(SandboxError::CompilerBusy {
                    max: MAX_PENDING_COMPILES
                })
            ),
            "{refused:?}"
        );
        drop(releases);
        for caller in callers {
            assert_eq!(caller.join().unwrap().unwrap(), 7);
        }
        assert_eq!(most.load(Ordering::Acquire), 1, "two compiles ran at once");
        while compiler.pending() > 0 {
            std::thread::yield_now();
        }
        assert_eq!(compiler.run("z", || Ok(1)).unwrap(), 1);
    }

    #[test]
    fn a_caller_waits_at_most_the_timeout_and_a_compile_it_gave_up_never_starts() {
        let compiler = Compiler::new(Duration::from_millis(50));
        let (running, most) = (Arc::default(), Arc::default());
        let (release, slow) = gated(&running, &most);
        let timed_out = compiler.run("slow", slow);
        assert!(
            matches!(&timed_out, Err(SandboxError::CompileTimeout { sha256, .. }) if sha256 == "slow"),
            "{timed_out:?}"
        );
        let msg = timed_out.unwrap_err().to_string();
        assert!(msg.contains("50ms"), "{msg}");
        // The slow compile still holds the turn: the next one waits, times
        // out in the queue, and never runs.
        let started = Arc::new(AtomicBool::new(false));
        let flag = started.clone();
        let queued = compiler.run("queued", move || {
            flag.store(true, Ordering::Release);
            Ok(0)
        });
        assert!(matches!(queued, Err(SandboxError::CompileTimeout { .. })));
        drop(release);
        while compiler.pending() > 0 {
            std::thread::yield_now();
        }
        assert!(!started.load(Ordering::Acquire));
        assert_eq!(compiler.run("next", || Ok(3)).unwrap(), 3);
    }

    #[test]
    fn a_panicking_compile_is_an_error() {
        let compiler = Compiler::new(Duration::from_secs(600));
        let result = compiler.run::<u32>("p", || panic!("cranelift bug"));
        assert!(
            matches!(&result, Err(SandboxError::Compile { message, .. }) if message.contains("panicked")),
            "{result:?}"
        );
        while compiler.pending() > 0 {
            std::thread::yield_now();
        }
        assert_eq!(compiler.run("after", || Ok(2)).unwrap(), 2);
    }
}
