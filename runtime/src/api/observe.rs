//! Stats, `/healthz` and `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::dto::StatsView;
use super::{ApiError, ApiState, prometheus};

/// `GET /healthz`: `200 {"status":"ok"}` while the process serves; never
/// authenticated.
pub(super) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /v1/stats`.
pub(super) async fn stats(State(state): State<ApiState>) -> Result<Json<StatsView>, ApiError> {
    let stats = state.store.stats().await?;
    Ok(Json(StatsView::new(stats, state.clock.now())))
}

/// `GET /metrics`: Prometheus text exposition format 0.0.4.
pub(super) async fn metrics(State(state): State<ApiState>) -> Result<impl IntoResponse, ApiError> {
    let stats = state.store.stats().await?;
    let text = prometheus::render(&stats, &state.metrics, state.clock.now());
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    ))
}
