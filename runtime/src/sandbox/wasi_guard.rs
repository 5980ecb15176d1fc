//! The WASI preview 1 functions sluice defines itself instead of taking
//! wasmtime-wasi's, because the originals let a guest cost the host more than
//! its own attempt:
//!
//! - `random_get` fills the buffer in [`RANDOM_CHUNK`]-byte pieces and yields
//!   to the runtime between them, so one call for 60 MiB cannot hold the
//!   thread past the attempt's timeout (the original allocated and filled the
//!   whole buffer in one step: 478 ms past a 3 s timeout). The hard stop's
//!   slack is docs/sandbox.md's.
//! - `sock_accept`, `sock_recv`, `sock_send` and `sock_shutdown` answer as the
//!   originals do (`badf` for an fd that is not open, `notsock` for stdio, the
//!   only fds a guest has), but without the WARN line the originals write to
//!   the host's log on every call (67,391 lines in one 3 s attempt). Denied
//!   calls are counted instead; the count is the attempt's data (a note on its
//!   stderr), not host log noise.

use rand::RngCore;
use wasmtime::{Caller, Linker};

use super::abi::WASI_MODULE;

/// Bytes of one `random_get` piece; the call yields to the runtime after each.
pub const RANDOM_CHUNK: usize = 256 << 10;

/// WASI errno `badf`.
const ERRNO_BADF: i32 = 8;
/// WASI errno `fault`: a range outside memory.
const ERRNO_FAULT: i32 = 21;
/// WASI errno `notsock`.
const ERRNO_NOTSOCK: i32 = 57;

/// Per-attempt state of the replaced functions. Written by them on the
/// guest's thread; read once by the invoker after the guest has ended.
#[derive(Debug, Default)]
pub(crate) struct WasiGuard {
    /// `sock_*` calls refused during the attempt.
    pub(crate) denied_socket_calls: u64,
}

impl WasiGuard {
    /// The errno of a refused `sock_*` call on `fd`, counted.
    fn deny_socket(&mut self, fd: i32) -> i32 {
        self.denied_socket_calls += 1;
        if (0..=2).contains(&fd) {
            ERRNO_NOTSOCK
        } else {
            ERRNO_BADF
        }
    }

    /// The note appended to the attempt's stderr, if anything was denied.
    pub(crate) fn note(&self) -> Option<String> {
        (self.denied_socket_calls > 0).then(|| {
            format!(
                "\n[sluice: {} sock_* call(s) denied: the sandbox has no sockets]\n",
                self.denied_socket_calls
            )
        })
    }
}

/// Replaces wasmtime-wasi's `random_get` and `sock_*` in `linker` (call after
/// wasmtime-wasi's `add_to_linker_async`); `guard` projects the store's data
/// onto the attempt's [`WasiGuard`].
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    guard: fn(&mut T) -> &mut WasiGuard,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap_async(
        WASI_MODULE,
        "random_get",
        |mut caller: Caller<'_, T>, (ptr, len): (i32, i32)| {
            Box::new(async move { random_get(&mut caller, ptr as u32, len as u32).await })
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "sock_accept",
        move |mut caller: Caller<'_, T>, fd: i32, _flags: i32, _fd_out: i32| -> i32 {
            guard(caller.data_mut()).deny_socket(fd)
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "sock_recv",
        move |mut caller: Caller<'_, T>,
              fd: i32,
              _iovs: i32,
              _iovs_len: i32,
              _flags: i32,
              _len_out: i32,
              _flags_out: i32|
              -> i32 { guard(caller.data_mut()).deny_socket(fd) },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "sock_send",
        move |mut caller: Caller<'_, T>,
              fd: i32,
              _iovs: i32,
              _iovs_len: i32,
              _flags: i32,
              _len_out: i32|
              -> i32 { guard(caller.data_mut()).deny_socket(fd) },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "sock_shutdown",
        move |mut caller: Caller<'_, T>, fd: i32, _how: i32| -> i32 {
            guard(caller.data_mut()).deny_socket(fd)
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Fills `len` bytes at `ptr` with random bytes, a [`RANDOM_CHUNK`] at a time,
/// yielding between pieces so the attempt's timeout can stop it mid-call.
async fn random_get<T: Send>(caller: &mut Caller<'_, T>, ptr: u32, len: u32) -> i32 {
    let Some(memory) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return ERRNO_FAULT;
    };
    let (start, len) = (ptr as usize, len as usize);
    if start
        .checked_add(len)
        .is_none_or(|end| end > memory.data_size(&mut *caller))
    {
        return ERRNO_FAULT;
    }
    let mut done = 0;
    while done < len {
        let n = RANDOM_CHUNK.min(len - done);
        // Memory can only grow while we wait, so the range stays in bounds.
        let at = start + done;
        rand::rng().fill_bytes(&mut memory.data_mut(&mut *caller)[at..at + n]);
        done += n;
        if done < len {
            tokio::task::yield_now().await;
        }
    }
    0
}
