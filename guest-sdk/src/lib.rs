//! Write [sluice] handlers in Rust.
//!
//! A sluice handler is a WASI command (`wasm32-wasip1`) that gets one message per
//! run: the payload on stdin, the metadata in `SLUICE_*` environment variables,
//! and it ends with an exit status that acknowledges (0), rejects (65) or asks
//! for a retry (anything else; 75 by convention). This crate turns that into a
//! plain function from a [`Message`] to a [`Result`]:
//!
//! | handler returns | exit status | the queue then |
//! | --- | --- | --- |
//! | `Ok(())` | 0 | acknowledges; commits what the attempt published |
//! | `Err(Error::Retry(_))` | 75 ([`EXIT_RETRY`]) | retries with backoff, then the DLQ |
//! | `Err(Error::Reject(_))` | 65 ([`EXIT_REJECT`]) | dead-letters at once, no retry |
//! | a panic | trap (`unreachable`) | retries, like `Retry` |
//!
//! The exact contract with the host (ABI version 1) is docs/guest-abi.md; the
//! user guide, with the other languages, is docs/guest-sdk.md.
//!
//! Either error's reason is written to stderr, the attempt's log.
//! A delivery runs *at least once*: a crash or timeout after your side effect
//! but before the acknowledgement is durable runs it again, so make side effects
//! idempotent, e.g. with [`Message::idempotency_key`].
//!
//! # Example
//!
//! ```no_run
//! use serde::Deserialize;
//! use sluice_guest::{Error, Message, Result};
//!
//! #[derive(Deserialize)]
//! struct Order<'a> {
//!     order_id: &'a str,
//!     email: &'a str,
//!     total: f64,
//! }
//!
//! fn handle(msg: &Message) -> Result {
//!     // Malformed JSON, or a missing field, is a rejection: straight to the DLQ.
//!     let order: Order<'_> = msg.json()?;
//!     if order.total < 0.0 {
//!         return Err(Error::reject(format_args!("negative total {}", order.total)));
//!     }
//!     sluice_guest::info!("order {} for {}", order.order_id, order.email);
//!     // Committed only if this attempt acknowledges (transactional outbox).
//!     sluice_guest::publish("email", order.email)
//!         .key(order.order_id)
//!         .send()?;
//!     println!("handled order {} (attempt {})", order.order_id, msg.attempt());
//!     Ok(())
//! }
//!
//! fn main() {
//!     sluice_guest::run(handle);
//! }
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip1`. The same
//! function is unit-testable on the host, where publish and log are recorded
//! for inspection by the [`testing`] module.
//!
//! # Modules
//!
//! - [`Message`] (`message.rs`): the payload and metadata of one attempt, read
//!   from stdin and the environment; `json` with the `serde` feature.
//! - [`Error`], [`ResultExt`] and the exit statuses (`error.rs`): retry or reject.
//! - [`publish`], [`log`] and the `info!`/`warn!`/`error!`/`debug!` macros
//!   (`host.rs`): the host functions of import module `sluice`.
//! - [`testing`]: the host-side test double for publish and log (not on wasm).
//!
//! # Features
//!
//! - `serde`: `Message::json` and `Publish::json` through `serde_json`.
//!
//! [sluice]: https://example.invalid/sluice

mod error;
mod host;
pub mod http;
mod message;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

use std::io::Write;

pub use error::{EXIT_OK, EXIT_REJECT, EXIT_RETRY, Error, Result, ResultExt};
pub use host::{Level, Publish, PublishError, PublishErrorKind, log, publish};
pub use message::{Message, env};

/// Runs `handler` on this attempt's message and ends the attempt with the
/// status its result maps to; call it last in `main`.
///
/// Reads the whole of stdin as the payload and the `SLUICE_*` variables as the
/// metadata and calls the handler once. On `Ok` it returns, so `main` returns
/// and the module exits 0 without calling `proc_exit` (the host handles an
/// exit call like a trap, which costs more than a return). On an error it
/// writes the reason to stderr, flushes stdout and exits with [`EXIT_RETRY`] or
/// [`EXIT_REJECT`]. A panic is not caught: on wasm it aborts, which traps, and
/// a trap is retried.
pub fn run<F>(handler: F)
where
    F: FnOnce(&Message) -> Result,
{
    let result = Message::from_env().and_then(|msg| handler(&msg));
    let code = exit_code(&result);
    if code == EXIT_OK {
        return;
    }
    if let Err(e) = &result {
        eprintln!("sluice: {e}");
    }
    // `process::exit` skips destructors, so flush what the handler printed.
    if let Err(e) = std::io::stdout().flush() {
        eprintln!("sluice: flushing stdout: {e}");
    }
    std::process::exit(code)
}

/// The exit status a handler's result maps to.
pub fn exit_code(result: &Result) -> i32 {
    match result {
        Ok(()) => EXIT_OK,
        Err(e) => e.exit_code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_map_to_exit_statuses() {
        assert_eq!(exit_code(&Ok(())), 0);
        assert_eq!(exit_code(&Err(Error::retry("later"))), 75);
        assert_eq!(exit_code(&Err(Error::reject("never"))), 65);
    }

    #[test]
    fn publish_records_topic_payload_key_and_delay() {
        publish("email", "a").send().unwrap();
        publish("analytics", b"b".to_vec())
            .key("k1")
            .delay(std::time::Duration::from_millis(1500))
            .send()
            .unwrap();
        publish("x", "c").key("").send().unwrap();
        let sent = testing::take_published();
        assert_eq!(sent.len(), 3);
        assert_eq!(
            (sent[0].topic.as_str(), sent[0].text()),
            ("email", "a".into())
        );
        assert_eq!(sent[0].ordering_key, None);
        assert_eq!(sent[1].ordering_key.as_deref(), Some("k1"));
        assert_eq!(sent[1].delay.as_millis(), 1500);
        assert_eq!(sent[2].ordering_key, None, "an empty key means none");
        assert!(testing::take_published().is_empty(), "take clears");
    }

    #[test]
    fn refused_publish_is_a_retry_and_records_nothing() {
        testing::fail_publishes(Some(-2));
        let err = publish("email", "a").send().unwrap_err();
        testing::fail_publishes(None);
        assert_eq!(err.code(), -2);
        assert_eq!(err.kind(), PublishErrorKind::PayloadTooLarge);
        assert!(err.to_string().contains("larger than 1 MiB"));
        testing::fail_publishes(Some(-99));
        let unknown = publish("email", "a").send().unwrap_err();
        testing::fail_publishes(None);
        assert_eq!(unknown.kind(), PublishErrorKind::Unknown);
        assert!(!Error::from(err).is_reject());
        assert!(testing::take_published().is_empty());
    }

    #[test]
    fn log_macros_record_level_and_text() {
        info!("n={}", 1);
        warn!("w");
        error!("e");
        debug!("d");
        log(Level::Trace, "t");
        let levels: Vec<Level> = testing::take_logs().into_iter().map(|(l, _)| l).collect();
        assert_eq!(
            levels,
            [
                Level::Info,
                Level::Warn,
                Level::Error,
                Level::Debug,
                Level::Trace
            ]
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn publish_json_serializes_the_payload() {
        publish("t", "")
            .json(&serde_json::json!({"a": 1}))
            .unwrap()
            .send()
            .unwrap();
        assert_eq!(testing::take_published()[0].text(), r#"{"a":1}"#);
    }
}
