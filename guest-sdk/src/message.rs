//! The message an attempt handles: payload from stdin, metadata from the
//! environment (SPEC §4).

use std::io::Read;

#[cfg(feature = "serde")]
use crate::error::Error;
use crate::error::Result;

/// Environment variable names of the metadata the sandbox sets.
pub mod env {
    /// Topic the message was enqueued on.
    pub const TOPIC: &str = "SLUICE_TOPIC";
    /// Name of the handler running this attempt.
    pub const HANDLER: &str = "SLUICE_HANDLER";
    /// The message id (a UUID v7).
    pub const MESSAGE_ID: &str = "SLUICE_MESSAGE_ID";
    /// The idempotency key (the producer's, or the message id).
    pub const IDEMPOTENCY_KEY: &str = "SLUICE_IDEMPOTENCY_KEY";
    /// The ordering key; set only when the message has one.
    pub const ORDERING_KEY: &str = "SLUICE_ORDERING_KEY";
    /// The attempt number, 1-based.
    pub const ATTEMPT: &str = "SLUICE_ATTEMPT";
    /// The number of attempts the handler's policy allows in total.
    pub const MAX_ATTEMPTS: &str = "SLUICE_MAX_ATTEMPTS";
    /// When the message was enqueued, RFC 3339.
    pub const ENQUEUED_AT: &str = "SLUICE_ENQUEUED_AT";
}

/// One message, as delivered to one attempt of one handler.
///
/// Built by [`Message::from_env`] (which [`run`](crate::run) calls) inside the
/// sandbox, or by [`Message::new`] and the `with_*` methods in unit tests.
///
/// Outside sluice (a plain `wasmtime run`), missing metadata reads as empty
/// strings, attempt 1 of 1, so a handler can be tried by hand with just stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    payload: Vec<u8>,
    topic: String,
    handler: String,
    id: String,
    idempotency_key: String,
    ordering_key: Option<String>,
    attempt: u32,
    max_attempts: u32,
    enqueued_at: String,
}

impl Message {
    /// A message on `topic` with `payload`, attempt 1 of 1, other metadata empty.
    /// Meant for tests; chain the `with_*` methods to set the rest.
    pub fn new(topic: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Message {
            payload: payload.into(),
            topic: topic.into(),
            handler: String::new(),
            id: String::new(),
            idempotency_key: String::new(),
            ordering_key: None,
            attempt: 1,
            max_attempts: 1,
            enqueued_at: String::new(),
        }
    }

    /// Reads the message the sandbox hands this attempt: the whole of stdin as
    /// the payload, and the `SLUICE_*` environment variables.
    ///
    /// Fails (as a retry) only if stdin cannot be read.
    pub fn from_env() -> Result<Self> {
        let mut payload = Vec::new();
        std::io::stdin().lock().read_to_end(&mut payload)?;
        Ok(Self::from_parts(payload, |name| std::env::var(name).ok()))
    }

    /// Builds a message from a payload and a lookup of the metadata variables.
    fn from_parts(payload: Vec<u8>, var: impl Fn(&str) -> Option<String>) -> Self {
        let number = |name: &str| var(name).and_then(|v| v.trim().parse::<u32>().ok());
        let attempt = number(env::ATTEMPT).unwrap_or(1).max(1);
        Message {
            payload,
            topic: var(env::TOPIC).unwrap_or_default(),
            handler: var(env::HANDLER).unwrap_or_default(),
            id: var(env::MESSAGE_ID).unwrap_or_default(),
            idempotency_key: var(env::IDEMPOTENCY_KEY).unwrap_or_default(),
            ordering_key: var(env::ORDERING_KEY).filter(|k| !k.is_empty()),
            attempt,
            max_attempts: number(env::MAX_ATTEMPTS).unwrap_or(attempt).max(attempt),
            enqueued_at: var(env::ENQUEUED_AT).unwrap_or_default(),
        }
    }

    /// The payload bytes, exactly as enqueued.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The payload as UTF-8 text; a payload that is not UTF-8 is a rejection.
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(&self.payload)
            .map_err(|e| crate::Error::reject(format_args!("payload is not UTF-8: {e}")))
    }

    /// The payload parsed as JSON into `T`.
    ///
    /// A payload that is not JSON, or not the shape of `T`, is an
    /// [`Error::Reject`]: no later attempt would parse it either.
    #[cfg(feature = "serde")]
    pub fn json<'a, T: serde::Deserialize<'a>>(&'a self) -> Result<T> {
        serde_json::from_slice(&self.payload).map_err(Error::from)
    }

    /// The topic the message was enqueued on.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The name of the handler running this attempt.
    pub fn handler(&self) -> &str {
        &self.handler
    }

    /// The message id (a UUID v7, as text).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The idempotency key: the producer's, or the message id. Use it to make
    /// side effects idempotent, since a delivery can run more than once.
    pub fn idempotency_key(&self) -> &str {
        &self.idempotency_key
    }

    /// The ordering key, if the message has one.
    pub fn ordering_key(&self) -> Option<&str> {
        self.ordering_key.as_deref()
    }

    /// This attempt's number, 1-based.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The number of attempts the handler's policy allows in total.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// True when a retryable failure of this attempt sends the message to the DLQ.
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }

    /// When the message was enqueued, RFC 3339 text as the host wrote it.
    pub fn enqueued_at(&self) -> &str {
        &self.enqueued_at
    }

    /// Sets the payload.
    pub fn with_payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.payload = payload.into();
        self
    }

    /// Sets the handler name.
    pub fn with_handler(mut self, handler: impl Into<String>) -> Self {
        self.handler = handler.into();
        self
    }

    /// Sets the message id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets the idempotency key.
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = key.into();
        self
    }

    /// Sets the ordering key.
    pub fn with_ordering_key(mut self, key: impl Into<String>) -> Self {
        self.ordering_key = Some(key.into());
        self
    }

    /// Sets the attempt number and the total allowed (`attempt` is 1-based).
    pub fn with_attempt(mut self, attempt: u32, max_attempts: u32) -> Self {
        self.attempt = attempt;
        self.max_attempts = max_attempts;
        self
    }

    /// Sets the enqueue time (RFC 3339 text).
    pub fn with_enqueued_at(mut self, at: impl Into<String>) -> Self {
        self.enqueued_at = at.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn parts(vars: &[(&str, &str)]) -> Message {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Message::from_parts(b"hi".to_vec(), |name| vars.get(name).cloned())
    }

    #[test]
    fn reads_every_metadata_variable() {
        let m = parts(&[
            ("SLUICE_TOPIC", "orders"),
            ("SLUICE_HANDLER", "mailer"),
            ("SLUICE_MESSAGE_ID", "0190a000-0000-7000-8000-000000000001"),
            ("SLUICE_IDEMPOTENCY_KEY", "order-1"),
            ("SLUICE_ORDERING_KEY", "customer-9"),
            ("SLUICE_ATTEMPT", "2"),
            ("SLUICE_MAX_ATTEMPTS", "6"),
            ("SLUICE_ENQUEUED_AT", "2025-01-02T03:04:05Z"),
        ]);
        assert_eq!(m.payload(), b"hi");
        assert_eq!(m.topic(), "orders");
        assert_eq!(m.handler(), "mailer");
        assert_eq!(m.id(), "0190a000-0000-7000-8000-000000000001");
        assert_eq!(m.idempotency_key(), "order-1");
        assert_eq!(m.ordering_key(), Some("customer-9"));
        assert_eq!((m.attempt(), m.max_attempts()), (2, 6));
        assert!(!m.is_last_attempt());
        assert_eq!(m.enqueued_at(), "2025-01-02T03:04:05Z");
    }

    #[test]
    fn missing_metadata_reads_as_a_single_first_attempt() {
        let m = parts(&[]);
        assert_eq!(m, Message::new("", "hi"));
        assert_eq!(m.ordering_key(), None);
        assert!(m.is_last_attempt());
    }

    #[test]
    fn garbled_numbers_fall_back_and_max_is_never_below_attempt() {
        let m = parts(&[("SLUICE_ATTEMPT", "x"), ("SLUICE_MAX_ATTEMPTS", "0")]);
        assert_eq!((m.attempt(), m.max_attempts()), (1, 1));
        let m = parts(&[("SLUICE_ATTEMPT", "3")]);
        assert_eq!((m.attempt(), m.max_attempts()), (3, 3));
    }

    #[test]
    fn non_utf8_text_is_a_rejection() {
        let m = Message::new("t", vec![0xff, 0xfe]);
        assert!(m.text().unwrap_err().is_reject());
        assert_eq!(Message::new("t", "ok").text(), Ok("ok"));
    }

    #[cfg(feature = "serde")]
    #[test]
    fn malformed_json_is_a_rejection() {
        #[derive(serde::Deserialize, Debug)]
        struct Order {
            #[allow(dead_code)]
            id: u64,
        }
        let bad = Message::new("t", "{not json");
        assert!(bad.json::<Order>().unwrap_err().is_reject());
        let wrong_shape = Message::new("t", r#"{"id":"seven"}"#);
        assert!(wrong_shape.json::<Order>().unwrap_err().is_reject());
        assert_eq!(
            Message::new("t", r#"{"id":7}"#).json::<Order>().unwrap().id,
            7
        );
    }
}
