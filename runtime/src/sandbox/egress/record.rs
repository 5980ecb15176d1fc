//! What the attempt records of each outbound request: method, origin,
//! status, bytes, duration and outcome — never headers or bodies, which may
//! carry secrets.

use serde::{Deserialize, Serialize};

/// One outbound request of an attempt, as stored with the attempt and shown
/// by `sluice status`, the dashboard and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressRecord {
    /// `GET`, `POST`, …
    pub method: String,
    /// `https://api.example.com:443` (always with the port), or the URL's
    /// scheme and host as given when it was not one sluice could parse.
    pub origin: String,
    /// The response's status, if one arrived.
    pub status: Option<u16>,
    /// Request body bytes sent.
    pub request_bytes: u64,
    /// Response body bytes received (up to the limit).
    pub response_bytes: u64,
    /// From the request to the end of its response body (or to its failure,
    /// or to the last byte the guest read).
    pub duration_ms: u64,
    /// How it ended.
    pub outcome: EgressOutcome,
    /// Why it was refused or failed (the range of a refused address, the
    /// limit, the connection error); empty for `ok`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// How one outbound request ended; stored by name (JSON) on both backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EgressOutcome {
    /// A response arrived (whatever its status) and its body, if read, ended.
    Ok,
    /// Refused before any connection: the origin is not on the allow-list.
    DeniedOrigin,
    /// Refused before any connection: every address of the name is in a
    /// forbidden range.
    DeniedAddress,
    /// Refused: the attempt's request count or request bytes are used up.
    Limit,
    /// The response body passed the attempt's response byte limit and was cut.
    ResponseTooLarge,
    /// The name did not resolve.
    Dns,
    /// No connection could be made (refused, unreachable, TLS failed).
    Connect,
    /// The connection broke or the server answered something not HTTP.
    Protocol,
    /// The attempt ended (timeout, exit) while the request was in flight.
    Interrupted,
}

impl EgressOutcome {
    /// The JSON name, also the `outcome` label of
    /// `sluice_egress_requests_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            EgressOutcome::Ok => "ok",
            EgressOutcome::DeniedOrigin => "denied_origin",
            EgressOutcome::DeniedAddress => "denied_address",
            EgressOutcome::Limit => "limit",
            EgressOutcome::ResponseTooLarge => "response_too_large",
            EgressOutcome::Dns => "dns",
            EgressOutcome::Connect => "connect",
            EgressOutcome::Protocol => "protocol",
            EgressOutcome::Interrupted => "interrupted",
        }
    }
}
