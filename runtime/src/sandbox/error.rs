//! Host failures of the sandbox. Guest failures are never errors: they are
//! [`Outcome`](crate::outcome::Outcome) values inside an
//! [`Execution`](super::Execution).

use std::path::PathBuf;

use thiserror::Error;

use super::validate::ValidationError;

/// Something the host could not do: configure, reserve, validate, compile,
/// instantiate, read or write the cache. The attempt (if any) did not run, so
/// the worker must not count it as the guest's failure.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// A [`SandboxConfig`](super::SandboxConfig) value is out of range.
    #[error("invalid sandbox configuration: {0}")]
    Config(String),
    /// The machine could not reserve the instance pool (address space), or the
    /// engine could not be built.
    #[error(
        "cannot reserve the sandbox instance pool ({instances} instances, \
         memories up to {memory}): {message}; lower pool_instances or max_memory_bytes"
    )]
    PoolReservation {
        /// Configured instance slots.
        instances: u32,
        /// Configured per-instance memory ceiling, formatted.
        memory: String,
        /// The engine's error.
        message: String,
    },
    /// The module breaks the guest ABI (docs/guest-abi.md §1).
    #[error("module refused: {0}")]
    Validation(#[from] ValidationError),
    /// A handler's [`Limits`](super::Limits) are out of range.
    #[error("invalid limits: {0}")]
    Limits(String),
    /// A handler's configured environment variable is not allowed.
    #[error("invalid environment variable {name:?}: {reason}")]
    Env {
        /// The variable's name.
        name: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// wasmtime could not compile a module that passed validation.
    #[error("compiling module {sha256}: {message}")]
    Compile {
        /// The module's sha256.
        sha256: String,
        /// wasmtime's error.
        message: String,
    },
    /// Compiling took longer than the sandbox's compile timeout (waiting for
    /// its turn included): the module costs more than one registration may.
    #[error(
        "compiling module {sha256} took longer than {timeout:?}, the bound on one compile \
         ([sandbox] compile_timeout); make the module smaller or raise the bound"
    )]
    CompileTimeout {
        /// The module's sha256.
        sha256: String,
        /// The bound.
        timeout: std::time::Duration,
    },
    /// Too many compiles are running or waiting; retrying later may work.
    #[error("{max} module compiles are already running or waiting; try again shortly")]
    CompilerBusy {
        /// [`MAX_PENDING_COMPILES`](super::compile::MAX_PENDING_COMPILES).
        max: usize,
    },
    /// wasmtime could not link or instantiate a module for a reason that is not
    /// the guest's doing.
    #[error("instantiating module {sha256}: {message}")]
    Instantiate {
        /// The module's sha256.
        sha256: String,
        /// wasmtime's error.
        message: String,
    },
    /// The task running an attempt on the guest threads panicked or was
    /// cancelled (a host bug or a shutdown, not the guest's doing).
    #[error("the attempt's guest task failed: {0}")]
    GuestTask(String),
    /// The compiled-module cache directory could not be created or used.
    #[error("module cache {}: {source}", path.display())]
    Cache {
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl SandboxError {
    /// Whether the error is the configuration's fault (the sandbox's
    /// settings against the handler's limits, environment or module): it
    /// recurs on every attempt until someone changes the configuration, so
    /// retrying only spends attempts. The rest (a busy compiler, the cache,
    /// a guest task that failed) may pass.
    pub fn is_configuration(&self) -> bool {
        match self {
            SandboxError::Config(_)
            | SandboxError::Validation(_)
            | SandboxError::Limits(_)
            | SandboxError::Env { .. }
            | SandboxError::Compile { .. }
            | SandboxError::CompileTimeout { .. }
            | SandboxError::Instantiate { .. } => true,
            SandboxError::PoolReservation { .. }
            | SandboxError::CompilerBusy { .. }
            | SandboxError::GuestTask(_)
            | SandboxError::Cache { .. } => false,
        }
    }
}
