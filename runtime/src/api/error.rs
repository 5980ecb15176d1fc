//! [`ApiError`]: every failure of the HTTP API, and the one place it becomes an
//! HTTP status.
//!
//! Each response carries a JSON body `{"error": {"code": "...", "message": "..."}}`
//! whose `code` is stable (clients match on it) and whose `message` names the
//! problem for a human. The table of codes and statuses is in `docs/api.md`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::clock::RangeError;
use crate::names::NameError;
use crate::policy::PolicyError;
use crate::sandbox::SandboxError;
use crate::store::StoreError;

/// Seconds a client should wait after `429 Too Many Requests` or `503`.
pub const RETRY_AFTER_SECS: u64 = 5;

/// A failure of an API request. Store and sandbox errors keep their own type so
/// [`ApiError::status`] can decide per variant.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ApiError {
    /// From the store: status by variant (400, 404, 409, 413, 429, 503, 500).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// From the sandbox while validating a module: the module's or the limits'
    /// fault is 400, a host failure 500.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// A malformed request: a header, query, path or body that does not parse,
    /// a bad duration or time. 400.
    #[error("{0}")]
    BadRequest(String),
    /// The request body is larger than this route accepts. 413.
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The route's limit.
        limit: usize,
    },
    /// A token is configured and the request lacks it or has another. 401.
    #[error("missing or invalid bearer token (send `Authorization: Bearer <token>`)")]
    Unauthorized,
    /// The read-only token asked for a change. 403.
    #[error("the read-only token cannot change anything (use the server's token)")]
    ReadOnly,
    /// No route matches the path. 404.
    #[error("no such endpoint: {0}")]
    NoRoute(String),
    /// The route exists but not with this method. 405.
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    /// A bug or an unexpected host failure (e.g. a panicked task). 500.
    #[error("internal error: {0}")]
    Internal(String),
    /// The request head is past the server's limits (answered at the
    /// connection, [`server`](super::server)). 431.
    #[error(
        "request head too large: at most {fields} header fields and {bytes} bytes of request line and headers"
    )]
    HeadersTooLarge {
        /// [`MAX_HEADERS`](super::server::MAX_HEADERS).
        fields: usize,
        /// [`MAX_HEAD_BYTES`](super::server::MAX_HEAD_BYTES).
        bytes: usize,
    },
    /// The request target (path and query) is too long. 414.
    #[error("request target too long: at most {bytes} bytes")]
    UriTooLong {
        /// [`MAX_URI_BYTES`](super::server::MAX_URI_BYTES).
        bytes: usize,
    },
    /// Not an HTTP request: a request line or header that does not parse, a
    /// byte not allowed in the path, a bad `Content-Length`. 400.
    #[error("malformed HTTP request: {0}")]
    Malformed(String),
}

impl From<NameError> for ApiError {
    fn from(e: NameError) -> Self {
        ApiError::Store(StoreError::InvalidName(e))
    }
}

impl From<RangeError> for ApiError {
    fn from(e: RangeError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl From<PolicyError> for ApiError {
    fn from(e: PolicyError) -> Self {
        ApiError::Store(StoreError::InvalidPolicy(e))
    }
}

impl ApiError {
    /// The HTTP status and the stable error code: the one mapping of errors to
    /// statuses in the API.
    pub fn status(&self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            ApiError::Store(e) => match e {
                StoreError::InvalidName(_) => (S::BAD_REQUEST, "invalid_name"),
                StoreError::InvalidPolicy(_) => (S::BAD_REQUEST, "invalid_policy"),
                StoreError::InvalidInput(_) => (S::BAD_REQUEST, "invalid_input"),
                StoreError::PayloadTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "payload_too_large"),
                StoreError::UnknownTopic(_) => (S::NOT_FOUND, "unknown_topic"),
                StoreError::UnknownHandler(_) => (S::NOT_FOUND, "unknown_handler"),
                StoreError::UnknownMessage(_) => (S::NOT_FOUND, "unknown_message"),
                StoreError::UnknownDelivery(_) => (S::NOT_FOUND, "unknown_delivery"),
                StoreError::UnknownModule(_) => (S::NOT_FOUND, "unknown_module"),
                StoreError::UnknownSchedule(_) => (S::NOT_FOUND, "unknown_schedule"),
                StoreError::ScheduleConflict(_) => (S::CONFLICT, "schedule_conflict"),
                StoreError::NotDead(_) => (S::CONFLICT, "not_dead"),
                StoreError::QueueFull { .. } => (S::TOO_MANY_REQUESTS, "queue_full"),
                StoreError::LeaseLost(_) => (S::CONFLICT, "lease_lost"),
                StoreError::DiskFull(_) => (S::SERVICE_UNAVAILABLE, "disk_full"),
                e if e.is_unavailable() => (S::SERVICE_UNAVAILABLE, "store_unavailable"),
                _ => (S::INTERNAL_SERVER_ERROR, "store_error"),
            },
            ApiError::Sandbox(e) => match e {
                SandboxError::Validation(_)
                | SandboxError::Compile { .. }
                | SandboxError::CompileTimeout { .. }
                | SandboxError::Instantiate { .. } => (S::BAD_REQUEST, "invalid_module"),
                SandboxError::CompilerBusy { .. } => (S::SERVICE_UNAVAILABLE, "compiler_busy"),
                SandboxError::Limits(_) | SandboxError::Env { .. } => {
                    (S::BAD_REQUEST, "invalid_policy")
                }
                _ => (S::INTERNAL_SERVER_ERROR, "sandbox_error"),
            },
            ApiError::BadRequest(_) => (S::BAD_REQUEST, "invalid_input"),
            ApiError::BodyTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Unauthorized => (S::UNAUTHORIZED, "unauthorized"),
            ApiError::ReadOnly => (S::FORBIDDEN, "read_only"),
            ApiError::NoRoute(_) => (S::NOT_FOUND, "no_route"),
            ApiError::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::HeadersTooLarge { .. } => {
                (S::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large")
            }
            ApiError::UriTooLong { .. } => (S::URI_TOO_LONG, "uri_too_long"),
            ApiError::Malformed(_) => (S::BAD_REQUEST, "malformed_request"),
        }
    }
}

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// `code` and `message` of an error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `queue_full`.
    pub code: String,
    /// What went wrong, for a human.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, code, "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message: self.to_string(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        if matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_failures_are_503_with_retry_after() {
        let io = std::io::Error::other("sled went away");
        for (e, code) in [
            (StoreError::from_io(io), "store_unavailable"),
            (StoreError::Closed, "store_unavailable"),
            (
                StoreError::DiskFull(std::io::Error::from(std::io::ErrorKind::StorageFull)),
                "disk_full",
            ),
        ] {
            let e = ApiError::from(e);
            assert_eq!(e.status(), (StatusCode::SERVICE_UNAVAILABLE, code));
            let response = e.into_response();
            assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        }
    }

    #[test]
    fn corruption_and_lost_leases_are_not_the_clients_fault() {
        assert_eq!(
            ApiError::from(StoreError::Corrupt("bad key".into()))
                .status()
                .0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            ApiError::from(StoreError::LeaseLost(uuid::Uuid::nil())).status(),
            (StatusCode::CONFLICT, "lease_lost")
        );
    }
}
