//! Raw bytes for re-running an attempt locally (`sluice run --delivery`):
//! a module by its sha256 (every attempt records the one that ran; modules
//! are kept) and a message's payload.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::error::ErrorBody;
use super::{ApiError, ApiState, Segment, uuid};

/// `GET /v1/modules/{sha256}`: the module's bytes (`application/wasm`).
#[utoipa::path(
    get,
    path = "/v1/modules/{sha256}",
    tag = "handlers",
    summary = "A module's bytes by its sha256",
    description = "Every attempt records the sha256 of the module that ran it; modules are kept, \
        so `sluice run --delivery` can run exactly that version again.",
    params(("sha256" = String, Path, description = "The module's sha256, 64 lowercase hex digits")),
    responses(
        (status = 200, description = "The module", content_type = "application/wasm", body = Vec<u8>),
        (status = 400, description = "`invalid_input`, `invalid_name`: not a sha256", body = ErrorBody),
        (status = 404, description = "`unknown_module`", body = ErrorBody),
    ),
)]
pub(super) async fn module(
    State(state): State<ApiState>,
    Segment(sha256): Segment,
) -> Result<impl IntoResponse, ApiError> {
    let bytes = state.store.module(&sha256).await?;
    Ok(([(header::CONTENT_TYPE, "application/wasm")], bytes))
}

/// `GET /v1/messages/{id}/payload`: the payload exactly as enqueued
/// (`application/octet-stream`).
#[utoipa::path(
    get,
    path = "/v1/messages/{id}/payload",
    tag = "messages",
    summary = "A message's payload, byte for byte",
    params(("id" = String, Path, description = "Message id (UUID)", format = Uuid)),
    responses(
        (status = 200, description = "The payload", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, description = "`invalid_input`: not a UUID", body = ErrorBody),
        (status = 404, description = "`unknown_message`", body = ErrorBody),
    ),
)]
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
