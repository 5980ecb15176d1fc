//! The bearer-token check: with a token configured, a request without
//! `Authorization: Bearer <token>` gets `401` before anything else is decided
//! (route, method, path parameters), so an unauthenticated client learns
//! nothing about the API but that it needs a token. Only `/healthz` is open.
//! The read-only token, when configured, passes `GET` and `HEAD` only; any
//! other method with it is `403 read_only`, refused here, before the route.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};

use super::{ApiError, ApiState};

/// The one path answered without a token.
pub(super) const OPEN_PATH: &str = "/healthz";

/// Middleware around the whole router (routes, fallbacks and all).
pub(super) async fn require_token(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(token) = &state.token
        && request.uri().path() != OPEN_PATH
    {
        let presented = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match presented {
            Some(p) if same(p.as_bytes(), token.as_bytes()) => {}
            Some(p)
                if state
                    .read_token
                    .as_ref()
                    .is_some_and(|r| same(p.as_bytes(), r.as_bytes())) =>
            {
                if !is_read(request.method()) {
                    return Err(ApiError::ReadOnly);
                }
            }
            _ => return Err(ApiError::Unauthorized),
        }
    }
    Ok(next.run(request).await)
}

/// Methods the read-only token may use.
pub(crate) fn is_read(method: &axum::http::Method) -> bool {
    *method == axum::http::Method::GET || *method == axum::http::Method::HEAD
}

/// Compares the sha256 digests of both in constant time: the time taken is
/// independent of the inputs' lengths and of where they differ, so response
/// times leak nothing of the token.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn same_compares_whole_tokens() {
        assert!(super::same(b"secret", b"secret"));
        assert!(!super::same(b"secret", b"secreT"));
        assert!(!super::same(b"secret", b"secre"));
        assert!(!super::same(b"", b"secret"));
    }
}
