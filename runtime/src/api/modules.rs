//! Raw bytes for re-running an attempt locally (`sluice run --delivery`):
//! a module by its sha256 (every attempt records the one that ran; modules
//! are kept) and a message's payload.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::{ApiError, ApiState, Segment, uuid};

/// `GET /v1/modules/{sha256}`: the module's bytes (`application/wasm`).
pub(super) async fn module(
    State(state): State<ApiState>,
    Segment(sha256): Segment,
) -> Result<impl IntoResponse, ApiError> {
    let bytes = state.store.module(&sha256).await?;
    Ok(([(header::CONTENT_TYPE, "application/wasm")], bytes))
}

/// `GET /v1/messages/{id}/payload`: the payload exactly as enqueued
/// (`application/octet-stream`).
pub(super) async fn payload(
    State(state): State<ApiState>,
    Segment(id): Segment,
) -> Result<impl IntoResponse, ApiError> {
    let m = state.store.message(uuid("message", &id)?).await?.message;
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        m.payload,
    ))
}
