//! Runner-wide sandbox configuration and per-handler limits.

use std::path::PathBuf;
use std::time::Duration;

use super::error::SandboxError;

/// Largest epoch tick allowed: the timeout's precision (SPEC: tick ≤ 10 ms).
pub const MAX_EPOCH_TICK: Duration = Duration::from_millis(10);
/// Largest wall-clock timeout of one attempt (SPEC §3).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(12 * 60 * 60);
/// Largest memory ceiling of one instance (SPEC §3): 4 GiB.
pub const MAX_MEMORY_BYTES: u64 = 4 << 30;
/// WebAssembly page size, the unit of memory growth: 64 KiB, also the smallest
/// memory limit.
pub const WASM_PAGE_BYTES: u64 = 64 << 10;
/// Default wall-clock timeout of one attempt (SPEC §3): 30 s. The handler
/// policy's default too.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default memory ceiling of one instance (SPEC §3): 64 MiB. The handler
/// policy's default too.
pub const DEFAULT_MEMORY_BYTES: u64 = 64 << 20;

/// How the runner's one shared sandbox is sized. Fixed for the life of a
/// [`Sandbox`](super::Sandbox); per-handler limits are [`Limits`].
///
/// The pool is reserved up front (virtual memory, not resident memory): each
/// instance slot reserves address space for a memory of `max_memory_bytes` plus
/// guard regions, so `pool_instances × ~4 GiB` of address space by default. That
/// buys instantiation in microseconds; the price is that the pool size is a hard
/// cap on concurrent attempts, which [`Sandbox::invoke`](super::Sandbox::invoke)
/// turns into waiting, never into a failure.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Instance slots in the pooling allocator: the most attempts that can run at
    /// once. Default 256.
    pub pool_instances: u32,
    /// Per-instance memory ceiling, in bytes; every handler's
    /// [`Limits::memory_bytes`] must be at or below it. Default and maximum
    /// 4 GiB.
    pub max_memory_bytes: u64,
    /// Period of the epoch ticker that enforces timeouts and makes running guests
    /// yield. Default 5 ms; must be above zero and at most 10 ms.
    pub epoch_tick: Duration,
    /// Directory of the compiled-module cache; `None` (the default) compiles on
    /// every [`Sandbox::load`](super::Sandbox::load).
    pub cache_dir: Option<PathBuf>,
    /// Bytes of stdout kept per attempt; the rest is dropped and marked.
    /// Default 64 KiB.
    pub stdout_cap: usize,
    /// Bytes of stderr kept per attempt; the rest is dropped and marked.
    /// Default 64 KiB.
    pub stderr_cap: usize,
    /// Engine-level fuel metering. Off by default: metering costs guest speed
    /// (roughly 10–30 %) for every handler, so it is a runner-wide switch and a
    /// handler's [`Limits::fuel`] is only accepted when it is on.
    pub fuel: bool,
    /// Wasm stack per attempt, in bytes; deeper recursion traps with
    /// `stack_overflow`. Default 512 KiB, at most 1 MiB.
    pub max_wasm_stack: usize,
    /// The longest a load waits for one compile, its turn in the compile
    /// queue included ([`compile`](super::compile)); past it the module is
    /// refused. Default 2 min: an 18 MB Python component compiles in 15–30 s
    /// on two cores.
    pub compile_timeout: Duration,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            pool_instances: 256,
            max_memory_bytes: MAX_MEMORY_BYTES,
            epoch_tick: Duration::from_millis(5),
            cache_dir: None,
            stdout_cap: 64 << 10,
            stderr_cap: 64 << 10,
            fuel: false,
            max_wasm_stack: 512 << 10,
            compile_timeout: Duration::from_secs(120),
        }
    }
}

impl SandboxConfig {
    pub(crate) fn check(&self) -> Result<(), SandboxError> {
        let bad = |msg: String| Err(SandboxError::Config(msg));
        if self.pool_instances == 0 {
            return bad("pool_instances must be at least 1".into());
        }
        if self.max_memory_bytes < WASM_PAGE_BYTES || self.max_memory_bytes > MAX_MEMORY_BYTES {
            return bad(format!(
                "max_memory_bytes {} must be between 64 KiB and 4 GiB",
                self.max_memory_bytes
            ));
        }
        if self.epoch_tick.is_zero() || self.epoch_tick > MAX_EPOCH_TICK {
            return bad(format!(
                "epoch_tick {:?} must be above zero and at most 10 ms",
                self.epoch_tick
            ));
        }
        if self.max_wasm_stack < (64 << 10) || self.max_wasm_stack > (1 << 20) {
            return bad(format!(
                "max_wasm_stack {} must be between 64 KiB and 1 MiB",
                self.max_wasm_stack
            ));
        }
        if self.compile_timeout.is_zero() {
            return bad("compile_timeout must be above zero".into());
        }
        Ok(())
    }
}

/// One handler's limits, applied to each of its attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time per attempt, from instantiation to exit. Default 30 s,
    /// at most 12 h.
    pub timeout: Duration,
    /// Linear memory per instance, in bytes; growth past it traps and ends the
    /// attempt as [`Outcome::MemoryLimit`](crate::outcome::Outcome::MemoryLimit).
    /// Default 64 MiB, at most [`SandboxConfig::max_memory_bytes`].
    pub memory_bytes: u64,
    /// Fuel budget per attempt (roughly one unit per wasm instruction); `None`,
    /// the default, means unmetered. Requires [`SandboxConfig::fuel`].
    pub fuel: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: DEFAULT_TIMEOUT,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            fuel: None,
        }
    }
}

impl Limits {
    /// Checks these limits against the runner's configuration.
    pub fn check(&self, config: &SandboxConfig) -> Result<(), SandboxError> {
        let bad = |msg: String| Err(SandboxError::Limits(msg));
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return bad(format!(
                "timeout {:?} must be above zero and at most 12 h",
                self.timeout
            ));
        }
        if self.memory_bytes > config.max_memory_bytes {
            return bad(format!(
                "memory limit {} > the runner's ceiling {}",
                fmt_bytes(self.memory_bytes),
                fmt_bytes(config.max_memory_bytes)
            ));
        }
        if self.fuel.is_some() && !config.fuel {
            return bad("a fuel limit needs fuel metering, which this runner has off".into());
        }
        Ok(())
    }
}

/// `64 MiB`, `1 GiB`, `1536 KiB` or `1000 bytes`: exact, in the largest unit
/// that divides the size.
pub(crate) fn fmt_bytes(n: u64) -> String {
    for (unit, name) in [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] {
        if n >= unit && n.is_multiple_of(unit) {
            return format!("{} {name}", n / unit);
        }
    }
    format!("{n} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = SandboxConfig::default();
        c.check().unwrap();
        assert_eq!(c.epoch_tick, Duration::from_millis(5));
        assert_eq!(c.stdout_cap, 65536);
        Limits::default().check(&c).unwrap();
        assert_eq!(Limits::default().memory_bytes, 64 << 20);
    }

    #[test]
    fn limits_are_bounded_by_the_config() {
        let c = SandboxConfig {
            max_memory_bytes: 128 << 20,
            ..SandboxConfig::default()
        };
        let too_big = Limits {
            memory_bytes: 256 << 20,
            ..Limits::default()
        };
        let e = too_big.check(&c).unwrap_err().to_string();
        assert!(e.contains("256 MiB > the runner's ceiling 128 MiB"), "{e}");
        let fuel = Limits {
            fuel: Some(1),
            ..Limits::default()
        };
        assert!(fuel.check(&c).is_err());
        let slow = Limits {
            timeout: MAX_TIMEOUT + Duration::from_secs(1),
            ..Limits::default()
        };
        assert!(slow.check(&c).is_err());
    }

    #[test]
    fn bytes_format_exactly() {
        assert_eq!(fmt_bytes(200 << 20), "200 MiB");
        assert_eq!(fmt_bytes(4 << 30), "4 GiB");
        assert_eq!(fmt_bytes(1536 << 10), "1536 KiB");
        assert_eq!(fmt_bytes(1000), "1000 bytes");
    }
}
