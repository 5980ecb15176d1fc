//! Stats, `/healthz` and `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::dto::StatsView;
use super::{ApiError, ApiState};
use crate::metrics::{Format, render};

/// `GET /healthz`: `200 {"status":"ok"}` while the process serves; never
/// authenticated.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "observability",
    summary = "Liveness; never authenticated",
    security(()),
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Object, example = json!({"status": "ok"}))),
)]
pub(super) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /v1/stats`.
#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "observability",
    summary = "Counts per handler and state, DLQ size, backlog and lag",
    responses((status = 200, description = "The store's counts", body = StatsView)),
)]
pub(super) async fn stats(State(state): State<ApiState>) -> Result<Json<StatsView>, ApiError> {
    let stats = state.store.stats().await?;
    Ok(Json(StatsView::new(stats, state.clock.now())))
}

/// `GET /metrics`: OpenMetrics 1.0 when `Accept` names
/// `application/openmetrics-text`, the Prometheus text format 0.0.4 otherwise.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "observability",
    summary = "Prometheus metrics (docs/observability.md)",
    responses((status = 200, description = "OpenMetrics 1.0 when `Accept` names `application/openmetrics-text`, else the text format 0.0.4",
        content((String = "text/plain"), (String = "application/openmetrics-text")))),
)]
pub(super) async fn metrics(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::from_accept(accept);
    let stats = state.store.stats().await?;
    let text = render(stats, &state.metrics, state.clock.now(), format);
    Ok(([(CONTENT_TYPE, format.content_type())], text))
}
