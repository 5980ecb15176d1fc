//! How one attempt of a handler ended: a closed set of values.
//!
//! A guest failure is data, not a host error: the sandbox returns an [`Outcome`]
//! for everything the guest did (exit, trap, timeout, a limit), and only host
//! problems (compile, instantiate, I/O) are errors. The worker then decides what
//! the outcome means for the delivery: [`Outcome::Ok`] completes it,
//! [`Outcome::Rejected`] dead-letters it at once, everything else is retried
//! under the handler's policy.
//!
//! The serde form is the public JSON of `sluice status --json`: an object with a
//! `kind` of `ok | rejected | exit | trap | timeout | memory | fuel | interrupted`.

use serde::{Deserialize, Serialize};

/// Exit status with which a guest rejects its input as permanently bad
/// (`EX_DATAERR` from sysexits.h): the delivery goes to the DLQ with no retry.
pub const EXIT_REJECT: i32 = 65;

/// Exit status of a temporary failure (`EX_TEMPFAIL`), retried like any exit
/// other than 0 and 65; a component's `retry` is recorded as it.
pub const EXIT_RETRY: i32 = 75;

/// The end of one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// Exit status 0 or a return from `main`: the message is acknowledged.
    Ok,
    /// Exit status 65: the message is permanently bad; dead-letter, no retry.
    Rejected,
    /// Any other exit status (75, `EX_TEMPFAIL`, included): a retryable failure.
    Exit {
        /// The guest's exit status.
        code: i32,
    },
    /// The guest trapped (unreachable, stack overflow, out-of-bounds access, ...).
    Trap {
        /// Short trap kind, e.g. `unreachable`, `stack_overflow`, `memory_out_of_bounds`.
        trap: String,
        /// The trap's message.
        message: String,
        /// The wasm backtrace, with function names where the module has them.
        backtrace: String,
    },
    /// The attempt ran past its wall-clock timeout and was interrupted.
    Timeout {
        /// The timeout that was enforced, in milliseconds.
        limit_ms: u64,
    },
    /// The guest tried to grow its memory past the handler's limit.
    #[serde(rename = "memory")]
    MemoryLimit {
        /// The limit that was enforced, in bytes.
        limit_bytes: u64,
    },
    /// The guest used up its fuel budget.
    #[serde(rename = "fuel")]
    FuelExhausted {
        /// The fuel budget that was enforced.
        limit: u64,
    },
    /// The attempt never reported an outcome: its process stopped or its lease
    /// expired. Recorded by the store, never produced by the sandbox.
    Interrupted {
        /// Why, e.g. `process restarted` or `lease expired`.
        reason: String,
    },
}

impl Outcome {
    /// The `kind` tag of the JSON form, also used as a metrics label.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Rejected => "rejected",
            Outcome::Exit { .. } => "exit",
            Outcome::Trap { .. } => "trap",
            Outcome::Timeout { .. } => "timeout",
            Outcome::MemoryLimit { .. } => "memory",
            Outcome::FuelExhausted { .. } => "fuel",
            Outcome::Interrupted { .. } => "interrupted",
        }
    }

    /// All kinds, in a stable order (metrics, filters).
    pub const KINDS: [&'static str; 8] = [
        "ok",
        "rejected",
        "exit",
        "trap",
        "timeout",
        "memory",
        "fuel",
        "interrupted",
    ];

    /// The outcome for a guest exit status: 0 is ok, 65 rejects, others fail.
    pub fn from_exit(code: i32) -> Outcome {
        match code {
            0 => Outcome::Ok,
            EXIT_REJECT => Outcome::Rejected,
            code => Outcome::Exit { code },
        }
    }

    /// One human line, e.g. `exit 3` or `trap unreachable: wasm trap: ...`.
    pub fn summary(&self) -> String {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::Rejected => "rejected (exit 65)".into(),
            Outcome::Exit { code } => format!("exit {code}"),
            Outcome::Trap { trap, message, .. } => format!("trap {trap}: {message}"),
            Outcome::Timeout { limit_ms } => format!("timeout after {limit_ms} ms"),
            Outcome::MemoryLimit { limit_bytes } => {
                format!("memory limit of {limit_bytes} bytes exceeded")
            }
            Outcome::FuelExhausted { limit } => format!("fuel exhausted ({limit})"),
            Outcome::Interrupted { reason } => format!("interrupted: {reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_form_uses_public_kinds() {
        for (o, kind) in [
            (Outcome::Ok, "ok"),
            (Outcome::MemoryLimit { limit_bytes: 1 }, "memory"),
            (Outcome::FuelExhausted { limit: 1 }, "fuel"),
            (Outcome::Exit { code: 3 }, "exit"),
        ] {
            let v = serde_json::to_value(&o).unwrap();
            assert_eq!(v["kind"], kind);
            assert_eq!(o.kind(), kind);
            assert_eq!(serde_json::from_value::<Outcome>(v).unwrap(), o);
        }
    }

    #[test]
    fn exit_statuses_map_per_abi() {
        assert_eq!(Outcome::from_exit(0), Outcome::Ok);
        assert_eq!(Outcome::from_exit(65), Outcome::Rejected);
        assert_eq!(Outcome::from_exit(75), Outcome::Exit { code: 75 });
    }
}
