//! The guest ABI's constants and the `sluice` host functions
//! (docs/guest-abi.md is the contract; this file must match it).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmparser::ValType;
use wasmtime::{Caller, Linker};

use crate::clock::check_delay;
use crate::names::{validate_key, validate_topic};

/// Version of the guest ABI described in docs/guest-abi.md.
pub const ABI_VERSION: u32 = 1;
/// Import module of WASI preview 1.
pub const WASI_MODULE: &str = "wasi_snapshot_preview1";
/// Import module of the sluice host functions.
pub const SLUICE_MODULE: &str = "sluice";

/// `publish` buffered the message.
pub const SLUICE_OK: i32 = 0;
/// `publish`: the topic is not a valid topic name.
pub const SLUICE_ERR_INVALID_TOPIC: i32 = -1;
/// `publish`: the payload is longer than [`MAX_PUBLISH_PAYLOAD`].
pub const SLUICE_ERR_PAYLOAD_TOO_LARGE: i32 = -2;
/// `publish`: the attempt's outbox is full ([`MAX_PUBLISHES`] or [`MAX_OUTBOX_BYTES`]).
pub const SLUICE_ERR_OUTBOX_FULL: i32 = -3;
/// `publish`: a pointer range lies outside memory, or there is no exported memory.
pub const SLUICE_ERR_BAD_POINTER: i32 = -4;
/// `publish`: topic or ordering key is not UTF-8.
pub const SLUICE_ERR_BAD_UTF8: i32 = -5;
/// `publish`: the ordering key breaks the key rules.
pub const SLUICE_ERR_INVALID_KEY: i32 = -6;
/// `publish`: `delay_ms` is negative or longer than
/// [`MAX_DELAY`](crate::clock::MAX_DELAY) (10 years).
pub const SLUICE_ERR_INVALID_DELAY: i32 = -7;

/// Largest payload of one published message: 1 MiB (SPEC §1's message maximum).
pub const MAX_PUBLISH_PAYLOAD: usize = 1 << 20;
/// Most messages one attempt may publish.
pub const MAX_PUBLISHES: usize = 100;
/// Most payload bytes one attempt may publish in total: 8 MiB.
pub const MAX_OUTBOX_BYTES: usize = 8 << 20;
/// Most `log` lines kept per attempt.
pub const MAX_LOG_LINES: usize = 1000;
/// Most `log` message bytes kept per attempt: 64 KiB.
pub const MAX_LOG_BYTES: usize = 64 << 10;

/// The 46 functions of WASI preview 1; a module may import only these from
/// [`WASI_MODULE`].
pub const WASI_P1_FUNCTIONS: [&str; 46] = [
    "args_get",
    "args_sizes_get",
    "environ_get",
    "environ_sizes_get",
    "clock_res_get",
    "clock_time_get",
    "fd_advise",
    "fd_allocate",
    "fd_close",
    "fd_datasync",
    "fd_fdstat_get",
    "fd_fdstat_set_flags",
    "fd_fdstat_set_rights",
    "fd_filestat_get",
    "fd_filestat_set_size",
    "fd_filestat_set_times",
    "fd_pread",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "fd_pwrite",
    "fd_read",
    "fd_readdir",
    "fd_renumber",
    "fd_seek",
    "fd_sync",
    "fd_tell",
    "fd_write",
    "path_create_directory",
    "path_filestat_get",
    "path_filestat_set_times",
    "path_link",
    "path_open",
    "path_readlink",
    "path_remove_directory",
    "path_rename",
    "path_symlink",
    "path_unlink_file",
    "poll_oneoff",
    "proc_exit",
    "proc_raise",
    "sched_yield",
    "random_get",
    "sock_accept",
    "sock_recv",
    "sock_send",
    "sock_shutdown",
];

const PUBLISH_PARAMS: [ValType; 7] = [
    ValType::I32,
    ValType::I32,
    ValType::I32,
    ValType::I32,
    ValType::I32,
    ValType::I32,
    ValType::I64,
];
const LOG_PARAMS: [ValType; 3] = [ValType::I32, ValType::I32, ValType::I32];
/// `http_request`: method, URL, headers, body, response buffer (pointer and
/// length each), then the pointer of the 12-byte result.
const HTTP_REQUEST_PARAMS: [ValType; 11] = [ValType::I32; 11];

/// The ABI's type (params, results) of the `sluice` function `name`.
pub(crate) fn sluice_import_type(name: &str) -> Option<(&'static [ValType], &'static [ValType])> {
    match name {
        "publish" => Some((&PUBLISH_PARAMS, &[ValType::I32])),
        "log" => Some((&LOG_PARAMS, &[])),
        "http_request" => Some((&HTTP_REQUEST_PARAMS, &[ValType::I32])),
        _ => None,
    }
}

/// A message a guest published during an attempt, for the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// Destination topic (syntax checked).
    pub topic: String,
    /// Payload bytes, at most [`MAX_PUBLISH_PAYLOAD`].
    pub payload: Vec<u8>,
    /// Ordering key, if the guest gave one.
    pub ordering_key: Option<String>,
    /// Delay before the message becomes deliverable, if the guest gave one.
    pub delay: Option<Duration>,
}

/// Level of a guest log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// 0 (and below).
    Trace,
    /// 1.
    Debug,
    /// 2.
    Info,
    /// 3.
    Warn,
    /// 4 (and above).
    Error,
}

impl LogLevel {
    /// The level for the ABI's number, clamping out-of-range values.
    pub fn from_abi(level: i32) -> LogLevel {
        match level {
            i32::MIN..=0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            _ => LogLevel::Error,
        }
    }

    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// One line a guest wrote with `sluice::log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestLog {
    /// Its level.
    pub level: LogLevel,
    /// Its message (invalid UTF-8 replaced with U+FFFD).
    pub message: String,
}

/// A guest broke the ABI in a way that has no error code (a `log` call with a
/// range outside memory): it traps with kind [`AbiViolation::kind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sluice::{function}: {message}")]
pub(crate) struct AbiViolation {
    pub(crate) kind: &'static str,
    pub(crate) function: &'static str,
    pub(crate) message: String,
}

/// Why a publish was refused; ABI 1 returns [`PublishRefusal::code`], the
/// component world a `publish-error` case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PublishRefusal {
    /// [`SLUICE_ERR_INVALID_TOPIC`].
    InvalidTopic,
    /// [`SLUICE_ERR_PAYLOAD_TOO_LARGE`].
    PayloadTooLarge,
    /// [`SLUICE_ERR_OUTBOX_FULL`].
    OutboxFull,
    /// [`SLUICE_ERR_BAD_UTF8`] (ABI 1 only: component strings are UTF-8).
    BadUtf8,
    /// [`SLUICE_ERR_INVALID_KEY`].
    InvalidKey,
    /// [`SLUICE_ERR_INVALID_DELAY`].
    InvalidDelay,
}

impl PublishRefusal {
    /// ABI 1's code for it.
    pub(crate) fn code(self) -> i32 {
        match self {
            PublishRefusal::InvalidTopic => SLUICE_ERR_INVALID_TOPIC,
            PublishRefusal::PayloadTooLarge => SLUICE_ERR_PAYLOAD_TOO_LARGE,
            PublishRefusal::OutboxFull => SLUICE_ERR_OUTBOX_FULL,
            PublishRefusal::BadUtf8 => SLUICE_ERR_BAD_UTF8,
            PublishRefusal::InvalidKey => SLUICE_ERR_INVALID_KEY,
            PublishRefusal::InvalidDelay => SLUICE_ERR_INVALID_DELAY,
        }
    }
}

/// Per-attempt state of the `sluice` functions. Written by the host functions
/// on the guest's thread, read once by the invoker after the guest has ended.
#[derive(Debug, Default)]
pub(crate) struct GuestAbi {
    pub(crate) outbox: Vec<Published>,
    outbox_bytes: usize,
    pub(crate) logs: Vec<GuestLog>,
    log_bytes: usize,
    pub(crate) logs_truncated: bool,
}

impl GuestAbi {
    /// `sluice::publish` on the guest's memory; returns the ABI's code.
    pub(crate) fn publish(
        &mut self,
        memory: Option<&[u8]>,
        topic: (i32, i32),
        payload: (i32, i32),
        key: (i32, i32),
        delay_ms: i64,
    ) -> i32 {
        let Some(memory) = memory else {
            return SLUICE_ERR_BAD_POINTER;
        };
        let (Some(topic), Some(payload), Some(key)) = (
            slice(memory, topic),
            slice(memory, payload),
            slice(memory, key),
        ) else {
            return SLUICE_ERR_BAD_POINTER;
        };
        let Ok(topic) = std::str::from_utf8(topic) else {
            return SLUICE_ERR_BAD_UTF8;
        };
        let key = if key.is_empty() {
            Ok(None)
        } else {
            std::str::from_utf8(key).map(Some).map_err(|_| ())
        };
        match self.publish_message(topic, payload, key, delay_ms) {
            Ok(()) => SLUICE_OK,
            Err(refusal) => refusal.code(),
        }
    }

    /// The checks and the outbox shared by ABI 1's `sluice::publish` and the
    /// component world's `publish`, in the ABI's order: topic, ordering key
    /// (`Err(())` when it was not UTF-8), delay, payload size, outbox room.
    pub(crate) fn publish_message(
        &mut self,
        topic: &str,
        payload: &[u8],
        key: Result<Option<&str>, ()>,
        delay_ms: i64,
    ) -> Result<(), PublishRefusal> {
        if validate_topic(topic).is_err() {
            return Err(PublishRefusal::InvalidTopic);
        }
        let ordering_key = match key {
            Err(()) => return Err(PublishRefusal::BadUtf8),
            Ok(None) => None,
            Ok(Some(key)) => {
                if validate_key("ordering key", key).is_err() {
                    return Err(PublishRefusal::InvalidKey);
                }
                Some(key.to_owned())
            }
        };
        let delay = match u64::try_from(delay_ms).map(Duration::from_millis) {
            Ok(d) if check_delay("delay_ms", d).is_ok() => d,
            _ => return Err(PublishRefusal::InvalidDelay),
        };
        if payload.len() > MAX_PUBLISH_PAYLOAD {
            return Err(PublishRefusal::PayloadTooLarge);
        }
        if self.outbox.len() >= MAX_PUBLISHES
            || self.outbox_bytes + payload.len() > MAX_OUTBOX_BYTES
        {
            return Err(PublishRefusal::OutboxFull);
        }
        self.outbox_bytes += payload.len();
        self.outbox.push(Published {
            topic: topic.to_owned(),
            payload: payload.to_vec(),
            ordering_key,
            delay: (!delay.is_zero()).then_some(delay),
        });
        Ok(())
    }

    /// `sluice::log` on the guest's memory.
    pub(crate) fn log(
        &mut self,
        memory: Option<&[u8]>,
        level: i32,
        msg: (i32, i32),
    ) -> Result<(), AbiViolation> {
        let Some(bytes) = memory.and_then(|m| slice(m, msg)) else {
            return Err(AbiViolation {
                kind: "bad_pointer",
                function: "log",
                message: match memory {
                    None => "the module exports no memory named `memory`".into(),
                    Some(m) => format!(
                        "message range {}+{} lies outside memory of {} bytes",
                        msg.0 as u32,
                        msg.1 as u32,
                        m.len()
                    ),
                },
            });
        };
        self.log_line(LogLevel::from_abi(level), bytes);
        Ok(())
    }

    /// Keeps one log line (ABI 1's `sluice::log` and the component world's
    /// `log`), or marks the log truncated once the per-attempt caps are reached.
    pub(crate) fn log_line(&mut self, level: LogLevel, bytes: &[u8]) {
        if self.logs.len() >= MAX_LOG_LINES || self.log_bytes + bytes.len() > MAX_LOG_BYTES {
            self.logs_truncated = true;
            return;
        }
        self.log_bytes += bytes.len();
        self.logs.push(GuestLog {
            level,
            message: String::from_utf8_lossy(bytes).into_owned(),
        });
    }
}

/// The guest range `(ptr, len)`, both read as unsigned, if it lies in `memory`.
fn slice(memory: &[u8], (ptr, len): (i32, i32)) -> Option<&[u8]> {
    let start = ptr as u32 as usize;
    let end = start.checked_add(len as u32 as usize)?;
    memory.get(start..end)
}

/// Defines `sluice::publish` and `sluice::log` in `linker`; `abi` projects the
/// store's data onto the attempt's [`GuestAbi`].
pub(crate) fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    abi: fn(&mut T) -> &mut GuestAbi,
) -> wasmtime::Result<()> {
    linker.func_wrap(
        SLUICE_MODULE,
        "publish",
        move |mut caller: Caller<'_, T>,
              topic_ptr: i32,
              topic_len: i32,
              payload_ptr: i32,
              payload_len: i32,
              key_ptr: i32,
              key_len: i32,
              delay_ms: i64|
              -> i32 {
            let memory = caller.get_export("memory").and_then(|e| e.into_memory());
            match memory {
                Some(memory) => {
                    let (data, state) = memory.data_and_store_mut(&mut caller);
                    abi(state).publish(
                        Some(data),
                        (topic_ptr, topic_len),
                        (payload_ptr, payload_len),
                        (key_ptr, key_len),
                        delay_ms,
                    )
                }
                None => SLUICE_ERR_BAD_POINTER,
            }
        },
    )?;
    linker.func_wrap(
        SLUICE_MODULE,
        "log",
        move |mut caller: Caller<'_, T>,
              level: i32,
              msg_ptr: i32,
              msg_len: i32|
              -> wasmtime::Result<()> {
            let memory = caller.get_export("memory").and_then(|e| e.into_memory());
            let result = match memory {
                Some(memory) => {
                    let (data, state) = memory.data_and_store_mut(&mut caller);
                    abi(state).log(Some(data), level, (msg_ptr, msg_len))
                }
                None => abi(caller.data_mut()).log(None, level, (msg_ptr, msg_len)),
            };
            result.map_err(wasmtime::Error::new)
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> Vec<u8> {
        let mut m = vec![0u8; 256];
        m[0..6].copy_from_slice(b"orders");
        m[16..21].copy_from_slice(b"hello");
        m[32..36].copy_from_slice(b"k:42");
        m[48..50].copy_from_slice(&[0xff, 0xfe]);
        m[64..67].copy_from_slice(b"Bad");
        m
    }

    #[test]
    fn publish_buffers_in_order() {
        let m = mem();
        let mut abi = GuestAbi::default();
        assert_eq!(abi.publish(Some(&m), (0, 6), (16, 5), (0, 0), 0), SLUICE_OK);
        assert_eq!(
            abi.publish(Some(&m), (0, 6), (16, 0), (32, 4), 1500),
            SLUICE_OK
        );
        assert_eq!(abi.outbox[0].payload, b"hello");
        assert_eq!(abi.outbox[0].ordering_key, None);
        assert_eq!(abi.outbox[0].delay, None);
        assert_eq!(abi.outbox[1].ordering_key.as_deref(), Some("k:42"));
        assert_eq!(abi.outbox[1].delay, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn publish_refusals_use_documented_codes() {
        let m = mem();
        let mut abi = GuestAbi::default();
        let cases = [
            ((0, 6), (250, 10), (0, 0), 0, SLUICE_ERR_BAD_POINTER),
            ((-1, 6), (16, 5), (0, 0), 0, SLUICE_ERR_BAD_POINTER),
            ((48, 2), (16, 5), (0, 0), 0, SLUICE_ERR_BAD_UTF8),
            ((64, 3), (16, 5), (0, 0), 0, SLUICE_ERR_INVALID_TOPIC),
            ((0, 0), (16, 5), (0, 0), 0, SLUICE_ERR_INVALID_TOPIC),
            ((0, 6), (16, 5), (48, 2), 0, SLUICE_ERR_BAD_UTF8),
            ((0, 6), (16, 5), (120, 1), 0, SLUICE_ERR_INVALID_KEY),
            ((0, 6), (16, 5), (0, 0), -1, SLUICE_ERR_INVALID_DELAY),
            ((0, 6), (16, 5), (0, 0), i64::MIN, SLUICE_ERR_INVALID_DELAY),
            ((0, 6), (16, 5), (0, 0), i64::MAX, SLUICE_ERR_INVALID_DELAY),
            (
                (0, 6),
                (16, 5),
                (0, 0),
                crate::clock::MAX_DELAY.as_millis() as i64 + 1,
                SLUICE_ERR_INVALID_DELAY,
            ),
        ];
        for (topic, payload, key, delay, code) in cases {
            assert_eq!(abi.publish(Some(&m), topic, payload, key, delay), code);
        }
        assert_eq!(
            abi.publish(None, (0, 6), (16, 5), (0, 0), 0),
            SLUICE_ERR_BAD_POINTER
        );
        assert!(abi.outbox.is_empty());

        let mut m2 = vec![b'x'; MAX_PUBLISH_PAYLOAD + 16];
        m2[..6].copy_from_slice(b"orders");
        let len = (MAX_PUBLISH_PAYLOAD + 1) as i32;
        assert_eq!(
            abi.publish(Some(&m2), (0, 6), (8, len), (0, 0), 0),
            SLUICE_ERR_PAYLOAD_TOO_LARGE
        );
    }

    #[test]
    fn outbox_is_bounded_by_count_and_bytes() {
        let mut m = vec![b'x'; MAX_PUBLISH_PAYLOAD + 8];
        m[..6].copy_from_slice(b"orders");
        let mut abi = GuestAbi::default();
        let full = MAX_PUBLISH_PAYLOAD as i32;
        for _ in 0..MAX_OUTBOX_BYTES / MAX_PUBLISH_PAYLOAD {
            assert_eq!(
                abi.publish(Some(&m), (0, 6), (8, full), (0, 0), 0),
                SLUICE_OK
            );
        }
        assert_eq!(
            abi.publish(Some(&m), (0, 6), (8, 1), (0, 0), 0),
            SLUICE_ERR_OUTBOX_FULL
        );
        let mut abi = GuestAbi::default();
        for _ in 0..MAX_PUBLISHES {
            assert_eq!(abi.publish(Some(&m), (0, 6), (8, 0), (0, 0), 0), SLUICE_OK);
        }
        assert_eq!(
            abi.publish(Some(&m), (0, 6), (8, 0), (0, 0), 0),
            SLUICE_ERR_OUTBOX_FULL
        );
    }

    #[test]
    fn log_clamps_levels_and_bounds_lines() {
        let m = mem();
        let mut abi = GuestAbi::default();
        abi.log(Some(&m), -3, (16, 5)).unwrap();
        abi.log(Some(&m), 9, (48, 2)).unwrap();
        assert_eq!(abi.logs[0].level, LogLevel::Trace);
        assert_eq!(abi.logs[1].level, LogLevel::Error);
        assert_eq!(abi.logs[1].message, "\u{fffd}\u{fffd}");
        let e = abi.log(Some(&m), 2, (250, 10)).unwrap_err();
        assert_eq!(e.kind, "bad_pointer");
        for _ in 0..MAX_LOG_LINES {
            abi.log(Some(&m), 2, (16, 5)).unwrap();
        }
        assert!(abi.logs_truncated);
        assert_eq!(abi.logs.len(), MAX_LOG_LINES);
    }
}
