//! The host functions of import module `sluice`: `publish` and `log`.
//!
//! On `wasm32` these call the imports the sandbox provides. Everywhere else (the
//! host, where `cargo test` runs handlers as ordinary Rust) they are a test
//! double that records each call in a thread-local, read back with the
//! [`testing`](crate::testing) module; nothing is sent anywhere.
//!
//! The only `unsafe` in the SDK is here: the two foreign calls.
#![allow(unsafe_code)]

use std::fmt;
use std::time::Duration;

use crate::error::Error;

/// Raw imports, exactly as docs/guest-abi.md §6 declares them (ABI version 1).
/// Pointers and lengths are `i32` offsets and sizes in the guest's memory.
#[cfg(target_arch = "wasm32")]
mod ffi {
    #[link(wasm_import_module = "sluice")]
    unsafe extern "C" {
        pub(super) fn publish(
            topic_ptr: i32,
            topic_len: i32,
            payload_ptr: i32,
            payload_len: i32,
            key_ptr: i32,
            key_len: i32,
            delay_ms: i64,
        ) -> i32;

        pub(super) fn log(level: i32, msg_ptr: i32, msg_len: i32);
    }
}

/// A failed `publish`: the host refused the message. Nothing was buffered.
///
/// Refusals are deterministic (a bad topic name, a payload over the limit, too
/// many publishes in one attempt), so they point at a bug in the handler or its
/// limits. Converted with `?` into [`Error::Retry`]: the attempt fails, nothing
/// already published in it is committed, and the message reaches the DLQ after
/// its retries, to be replayed once the handler is fixed. A handler may also
/// carry on after a refusal: the host stays usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishError {
    code: i32,
}

/// Why the host refused a publish: the status codes of docs/guest-abi.md §6.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PublishErrorKind {
    /// -1: the topic does not match `[a-z0-9][a-z0-9._-]{0,127}`.
    InvalidTopic,
    /// -2: the payload is longer than 1 MiB.
    PayloadTooLarge,
    /// -3: this attempt already buffered 100 messages, or 8 MiB of payloads.
    OutboxFull,
    /// -4: a pointer range outside memory (a bug in the SDK or the host).
    BadPointer,
    /// -5: the topic or ordering key is not UTF-8.
    BadUtf8,
    /// -6: the ordering key is longer than 256 bytes or contains NUL.
    InvalidKey,
    /// -7: the delay is negative.
    InvalidDelay,
    /// A status this SDK version does not know (from a newer host).
    Unknown,
}

impl PublishError {
    /// The negative status the host returned.
    pub fn code(&self) -> i32 {
        self.code
    }

    /// The reason, by status code.
    pub fn kind(&self) -> PublishErrorKind {
        match self.code {
            -1 => PublishErrorKind::InvalidTopic,
            -2 => PublishErrorKind::PayloadTooLarge,
            -3 => PublishErrorKind::OutboxFull,
            -4 => PublishErrorKind::BadPointer,
            -5 => PublishErrorKind::BadUtf8,
            -6 => PublishErrorKind::InvalidKey,
            -7 => PublishErrorKind::InvalidDelay,
            _ => PublishErrorKind::Unknown,
        }
    }
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.kind() {
            PublishErrorKind::InvalidTopic => "invalid topic name",
            PublishErrorKind::PayloadTooLarge => "payload larger than 1 MiB",
            PublishErrorKind::OutboxFull => "outbox full (100 messages or 8 MiB per attempt)",
            PublishErrorKind::BadPointer => "bad pointer",
            PublishErrorKind::BadUtf8 => "topic or key is not UTF-8",
            PublishErrorKind::InvalidKey => "invalid ordering key (over 256 bytes or NUL)",
            PublishErrorKind::InvalidDelay => "negative delay",
            PublishErrorKind::Unknown => "unknown reason",
        };
        write!(
            f,
            "publish refused by the host: {why} (status {})",
            self.code
        )
    }
}

impl std::error::Error for PublishError {}

impl From<PublishError> for Error {
    fn from(e: PublishError) -> Self {
        Error::retry(e)
    }
}

/// Starts a message to publish on `topic`; finish it with [`Publish::send`].
///
/// Published messages go to the transactional outbox (SPEC §2.5): they are
/// committed only if this attempt acknowledges, and never if it fails, so a
/// handler can publish before doing work that may still fail. Each gets an
/// idempotency key derived from (this message, this handler, its index), so a
/// re-run publishes the same messages in the same order without duplicates.
///
/// ```
/// use std::time::Duration;
///
/// fn handle(msg: &sluice_guest::Message) -> sluice_guest::Result {
///     sluice_guest::publish("email", msg.payload())
///         .key("order-42")
///         .delay(Duration::from_secs(60))
///         .send()?;
///     Ok(())
/// }
/// # assert!(handle(&sluice_guest::Message::new("orders", "{}")).is_ok());
/// # let sent = sluice_guest::testing::take_published();
/// # assert_eq!(sent[0].ordering_key.as_deref(), Some("order-42"));
/// # assert_eq!(sent[0].delay, Duration::from_secs(60));
/// ```
pub fn publish(topic: &str, payload: impl Into<Vec<u8>>) -> Publish<'_> {
    Publish {
        topic,
        payload: payload.into(),
        key: None,
        delay: Duration::ZERO,
    }
}

/// A message being built by [`publish`]; nothing happens until [`send`](Self::send).
#[derive(Debug, Clone)]
#[must_use = "a publish does nothing until `.send()`"]
pub struct Publish<'a> {
    topic: &'a str,
    payload: Vec<u8>,
    key: Option<&'a str>,
    delay: Duration,
}

impl<'a> Publish<'a> {
    /// Sets the ordering key: messages with the same key are handled one at a
    /// time, in order. An empty key means none.
    pub fn key(mut self, key: &'a str) -> Self {
        self.key = Some(key).filter(|k| !k.is_empty());
        self
    }

    /// Delays delivery by `delay` (millisecond resolution; zero means none).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Replaces the payload with `value` serialized as JSON.
    ///
    /// Serialization failing (a map with non-string keys, say) is a bug in the
    /// handler, hence a retry.
    #[cfg(feature = "serde")]
    pub fn json<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Result<Self, Error> {
        self.payload = serde_json::to_vec(value)
            .map_err(|e| Error::retry(format_args!("serializing a published message: {e}")))?;
        Ok(self)
    }

    /// Hands the message to the host's outbox for this attempt.
    pub fn send(self) -> Result<(), PublishError> {
        let delay_ms = i64::try_from(self.delay.as_millis()).unwrap_or(i64::MAX);
        let status = raw_publish(self.topic, &self.payload, self.key.unwrap_or(""), delay_ms);
        if status == 0 {
            Ok(())
        } else {
            Err(PublishError { code: status })
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn raw_publish(topic: &str, payload: &[u8], key: &str, delay_ms: i64) -> i32 {
    // Addresses and lengths are 32-bit on wasm32; the casts reinterpret them
    // as the ABI's i32 without loss.
    // SAFETY: each (pointer, length) pair describes a live slice in this
    // module's memory for the duration of the call; the host only reads them
    // and keeps no reference after it returns.
    unsafe {
        ffi::publish(
            topic.as_ptr() as i32,
            topic.len() as i32,
            payload.as_ptr() as i32,
            payload.len() as i32,
            key.as_ptr() as i32,
            key.len() as i32,
            delay_ms,
        )
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn raw_publish(topic: &str, payload: &[u8], key: &str, delay_ms: i64) -> i32 {
    crate::testing::record_publish(topic, payload, key, delay_ms)
}

/// Severity of a [`log`] line; the numbers are the ABI's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(i32)]
pub enum Level {
    /// Finest detail.
    Trace = 0,
    /// Detail for debugging.
    Debug = 1,
    /// Normal operation.
    Info = 2,
    /// Something unexpected that the handler coped with.
    Warn = 3,
    /// A failure.
    Error = 4,
}

/// Writes a structured log line through the host, tagged by the host with the
/// message, handler and attempt. Unlike stderr, it arrives as a log record with
/// a level rather than as captured text, and, like stderr, it is kept whatever
/// the attempt's outcome. The host keeps at most 1,000 lines and 64 KiB per
/// attempt and drops the rest (marking the log truncated).
pub fn log(level: Level, msg: &str) {
    raw_log(level, msg);
}

#[cfg(target_arch = "wasm32")]
fn raw_log(level: Level, msg: &str) {
    // SAFETY: `msg` is a live slice in this module's memory during the call;
    // the host copies it and keeps no reference.
    unsafe {
        ffi::log(level as i32, msg.as_ptr() as i32, msg.len() as i32);
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn raw_log(level: Level, msg: &str) {
    crate::testing::record_log(level, msg);
}

/// Logs a formatted line at `Info` through the host: `sluice_guest::info!("order {id}")`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log($crate::Level::Info, &::std::format!($($arg)*)) };
}

/// Logs a formatted line at `Warn` through the host.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log($crate::Level::Warn, &::std::format!($($arg)*)) };
}

/// Logs a formatted line at `Error` through the host.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log($crate::Level::Error, &::std::format!($($arg)*)) };
}

/// Logs a formatted line at `Debug` through the host.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log($crate::Level::Debug, &::std::format!($($arg)*)) };
}
