//! How a handler says an attempt failed, and what exit status that becomes.
//!
//! The sandbox only sees an exit status (SPEC §4), so the SDK's error is a closed
//! choice between the two things a handler can mean: *try again later* and *this
//! message will never work*. Everything else (the reason) is text for the
//! attempt's log.

use std::fmt;

/// Exit status that acknowledges the message.
pub const EXIT_OK: i32 = 0;
/// Exit status that rejects the message as permanently bad (`EX_DATAERR`): it
/// goes straight to the handler's dead-letter queue, with no retry.
pub const EXIT_REJECT: i32 = 65;
/// Exit status of a retryable failure (`EX_TEMPFAIL`). Any status other than 0
/// and 65 is retried; this one is the conventional choice.
pub const EXIT_RETRY: i32 = 75;

/// A failed attempt: retry it later, or reject the message for good.
///
/// Which to choose: [`Error::Retry`] when another attempt could succeed (a
/// dependency is down, a rate limit, a bug you will fix and then replay from the
/// DLQ); [`Error::Reject`] when the message itself is bad and no attempt ever
/// could (malformed JSON, a missing field, an order that does not exist).
/// Retries are bounded by the handler's policy, so a wrong `Retry` costs a few
/// attempts before the DLQ; a wrong `Reject` costs none.
///
/// Conversions used by `?`: [`std::io::Error`] becomes `Retry`, a malformed
/// payload (`serde_json::Error`, with the `serde` feature) becomes `Reject`, and
/// [`PublishError`](crate::PublishError) becomes `Retry`. For other errors use
/// [`ResultExt::or_retry`] / [`ResultExt::or_reject`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A failure another attempt may not have: exit status 75, retried under the
    /// handler's policy (then the DLQ once attempts run out).
    Retry(String),
    /// The message is permanently bad: exit status 65, straight to the DLQ.
    Reject(String),
}

impl Error {
    /// A retryable failure with a reason for the log.
    pub fn retry(reason: impl fmt::Display) -> Self {
        Error::Retry(reason.to_string())
    }

    /// A rejection with a reason for the log.
    pub fn reject(reason: impl fmt::Display) -> Self {
        Error::Reject(reason.to_string())
    }

    /// The exit status this error ends the attempt with: [`EXIT_RETRY`] or
    /// [`EXIT_REJECT`].
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Retry(_) => EXIT_RETRY,
            Error::Reject(_) => EXIT_REJECT,
        }
    }

    /// True for [`Error::Reject`].
    pub fn is_reject(&self) -> bool {
        matches!(self, Error::Reject(_))
    }

    /// The reason given when the error was made.
    pub fn reason(&self) -> &str {
        match self {
            Error::Retry(r) | Error::Reject(r) => r,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Retry(r) => write!(f, "retry: {r}"),
            Error::Reject(r) => write!(f, "reject: {r}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    /// I/O inside the sandbox (stdin, stdout) failing is not the message's fault.
    fn from(e: std::io::Error) -> Self {
        Error::retry(e)
    }
}

#[cfg(feature = "serde")]
impl From<serde_json::Error> for Error {
    /// A payload that does not parse, or does not have the expected shape, will
    /// not parse on the next attempt either.
    fn from(e: serde_json::Error) -> Self {
        Error::reject(format_args!("malformed JSON payload: {e}"))
    }
}

/// The handler's result: `Ok(())` acknowledges the message.
pub type Result<T = (), E = Error> = std::result::Result<T, E>;

/// Turns any displayable error into a retry or a rejection, for `?`.
///
/// ```
/// use sluice_guest::{Message, ResultExt};
///
/// fn handle(msg: &Message) -> sluice_guest::Result {
///     let text = std::str::from_utf8(msg.payload()).or_reject()?;
///     let n: u64 = text.trim().parse().or_reject()?;
///     let _ = n;
///     Ok(())
/// }
/// # assert!(handle(&Message::new("t", "12")).is_ok());
/// # assert!(handle(&Message::new("t", "twelve")).unwrap_err().is_reject());
/// ```
pub trait ResultExt<T> {
    /// An `Err` becomes [`Error::Retry`] with the error's text as the reason.
    fn or_retry(self) -> Result<T>;
    /// An `Err` becomes [`Error::Reject`] with the error's text as the reason.
    fn or_reject(self) -> Result<T>;
}

impl<T, E: fmt::Display> ResultExt<T> for std::result::Result<T, E> {
    fn or_retry(self) -> Result<T> {
        self.map_err(Error::retry)
    }

    fn or_reject(self) -> Result<T> {
        self.map_err(Error::reject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_the_abi_exit_statuses() {
        assert_eq!(Error::retry("db down").exit_code(), 75);
        assert_eq!(Error::reject("bad").exit_code(), 65);
        assert_eq!(Error::retry("x").to_string(), "retry: x");
        assert_eq!(Error::reject("y").reason(), "y");
    }

    #[test]
    fn io_errors_retry() {
        let e: Error = std::io::Error::other("pipe").into();
        assert!(!e.is_reject());
    }

    #[test]
    fn result_ext_keeps_the_reason() {
        let r: std::result::Result<(), &str> = Err("nope");
        assert_eq!(r.or_reject(), Err(Error::Reject("nope".into())));
        assert_eq!(r.or_retry(), Err(Error::Retry("nope".into())));
    }
}
