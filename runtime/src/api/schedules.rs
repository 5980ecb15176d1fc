//! Schedules: create or replace (an upsert by id), list, show (the next
//! five times and the last occurrences with their messages), pause,
//! resume, trigger and remove; and their JSON documents, shared with the
//! CLI and the dashboard. Routes and bodies are in `docs/api.md`.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::ErrorBody;
use super::{ApiError, ApiState, Segment, body, json_object};
use crate::clock::Timestamp;
use crate::store::{CatchUp, Occurrence, Overlap, ScheduleRecord, ScheduleSpec};

/// Largest body of `PUT /v1/schedules/{id}`: the payload, as base64, plus margin.
pub(super) fn put_limit(state: &ApiState) -> usize {
    limit_for(state.max_payload_bytes)
}

/// [`put_limit`] for a maximum payload of `max_payload_bytes`.
pub(super) fn limit_for(max_payload_bytes: usize) -> usize {
    max_payload_bytes.saturating_mul(2) + super::BODY_MARGIN
}

/// Times previewed by `GET /v1/schedules/{id}`.
pub const PREVIEW: usize = 5;
/// Occurrences shown by `GET /v1/schedules/{id}`.
pub const SHOWN_OCCURRENCES: usize = 20;

/// The body of `PUT /v1/schedules/{id}`: absent fields take their defaults
/// (`store::ScheduleSpec`); times are RFC 3339.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// Cron expression: 5 fields, or 6 with seconds first.
    pub cron: String,
    /// IANA time zone. Default `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Target topic (must exist).
    pub topic: String,
    /// Payload as UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// Payload as base64 (instead of `payload`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    /// Message headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Ordering key of every firing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering_key: Option<String>,
    /// `skip`, `latest` (default) or `all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = r"^(skip|latest|all)$")]
    pub catch_up: Option<CatchUp>,
    /// Most missed occurrences fired by `all`. Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_catch_up: Option<u32>,
    /// Occurrences older than this are never caught up. Default 24 h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up_window_ms: Option<u64>,
    /// `allow`, `skip` (default) or `buffer_one`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = r"^(allow|skip|buffer_one)$")]
    pub overlap: Option<Overlap>,
    /// RFC 3339: no occurrence before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// RFC 3339: no occurrence after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Each firing delayed by up to this. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<u64>,
}

impl ScheduleRequest {
    /// The spec of schedule `id`, defaults filled in from [`ScheduleSpec::new`].
    pub fn into_spec(self, id: &str) -> Result<ScheduleSpec, ApiError> {
        self.into_spec_with_field(id).map_err(|(_, e)| e)
    }

    /// [`ScheduleRequest::into_spec`], with the field an error is about
    /// (`payload`, `payload_base64`, `start` or `end`).
    pub fn into_spec_with_field(self, id: &str) -> Result<ScheduleSpec, (&'static str, ApiError)> {
        let mut spec = ScheduleSpec::new(id, &self.cron, &self.topic);
        spec.payload = match (self.payload, self.payload_base64) {
            (Some(_), Some(_)) => {
                return Err((
                    "payload",
                    ApiError::BadRequest("give payload or payload_base64, not both".into()),
                ));
            }
            (Some(text), None) => Bytes::from(text),
            (None, Some(b64)) => Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| {
                        (
                            "payload_base64",
                            ApiError::BadRequest(format!("payload_base64: {e}")),
                        )
                    })?,
            ),
            (None, None) => Bytes::new(),
        };
        let time = |field: &'static str, t: Option<String>| {
            t.map(|t| super::time(field, &t).map_err(|e| (field, e)))
                .transpose()
        };
        spec.start = time("start", self.start)?;
        spec.end = time("end", self.end)?;
        if let Some(tz) = self.timezone {
            spec.timezone = tz;
        }
        spec.headers = self.headers;
        spec.ordering_key = self.ordering_key;
        spec.catch_up = self.catch_up.unwrap_or(spec.catch_up);
        spec.max_catch_up = self.max_catch_up.unwrap_or(spec.max_catch_up);
        spec.catch_up_window_ms = self.catch_up_window_ms.unwrap_or(spec.catch_up_window_ms);
        spec.overlap = self.overlap.unwrap_or(spec.overlap);
        spec.jitter_ms = self.jitter_ms.unwrap_or(spec.jitter_ms);
        Ok(spec)
    }
}

/// A payload as the request's fields: `(payload, payload_base64)`, text when
/// it is UTF-8, neither when it is empty.
pub fn payload_fields(payload: Vec<u8>) -> (Option<String>, Option<String>) {
    match String::from_utf8(payload) {
        Ok(text) if text.is_empty() => (None, None),
        Ok(text) => (Some(text), None),
        Err(e) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(e.into_bytes())),
        ),
    }
}

/// A schedule (`GET /v1/schedules`, and the head of `GET /v1/schedules/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleView {
    /// Id.
    pub id: String,
    /// Cron expression.
    pub cron: String,
    /// IANA time zone.
    pub timezone: String,
    /// Target topic.
    pub topic: String,
    /// Payload as base64.
    pub payload_base64: String,
    /// Payload size in bytes.
    pub payload_bytes: usize,
    /// Headers.
    pub headers: BTreeMap<String, String>,
    /// Ordering key.
    pub ordering_key: Option<String>,
    /// Catch-up policy.
    #[schema(value_type = String)]
    pub catch_up: CatchUp,
    /// Most missed occurrences fired by `all`.
    pub max_catch_up: u32,
    /// Catch-up window, ms.
    pub catch_up_window_ms: u64,
    /// Overlap policy.
    #[schema(value_type = String)]
    pub overlap: Overlap,
    /// RFC 3339.
    pub start: Option<String>,
    /// RFC 3339.
    pub end: Option<String>,
    /// Jitter, ms.
    pub jitter_ms: u64,
    /// Paused?
    pub paused: bool,
    /// RFC 3339: every occurrence up to here is decided.
    pub cursor: String,
    /// RFC 3339: the occurrence waiting for the previous one (buffer one).
    pub buffered: Option<String>,
    /// The last occurrence's message.
    pub last_message_id: Option<Uuid>,
    /// Occurrences fired.
    pub fired: u64,
    /// Occurrences missed, by reason.
    pub missed: BTreeMap<String, u64>,
    /// The next occurrences after the cursor, RFC 3339 UTC.
    pub next: Vec<String>,
    /// The same, in the schedule's time zone (with its offset).
    pub next_local: Vec<String>,
    /// Bumped by every change.
    pub revision: u64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl ScheduleView {
    /// The view of `rec`, previewing `preview` next times.
    pub fn new(rec: ScheduleRecord, preview: usize) -> ScheduleView {
        let (next, next_local) =
            match crate::schedule::Cron::parse(&rec.spec.cron, &rec.spec.timezone) {
                Ok(cron) => {
                    let times: Vec<Timestamp> = cron
                        .upcoming(rec.cursor, preview)
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|t| rec.spec.end.is_none_or(|e| *t <= e))
                        .collect();
                    (
                        times.iter().map(|t| t.to_rfc3339()).collect(),
                        times.iter().map(|t| cron.local(*t)).collect(),
                    )
                }
                Err(_) => (Vec::new(), Vec::new()),
            };
        let s = rec.spec;
        ScheduleView {
            payload_base64: base64::engine::general_purpose::STANDARD.encode(&s.payload),
            payload_bytes: s.payload.len(),
            id: s.id,
            cron: s.cron,
            timezone: s.timezone,
            topic: s.topic,
            headers: s.headers,
            ordering_key: s.ordering_key,
            catch_up: s.catch_up,
            max_catch_up: s.max_catch_up,
            catch_up_window_ms: s.catch_up_window_ms,
            overlap: s.overlap,
            start: s.start.map(Timestamp::to_rfc3339),
            end: s.end.map(Timestamp::to_rfc3339),
            jitter_ms: s.jitter_ms,
            paused: rec.paused,
            cursor: rec.cursor.to_rfc3339(),
            buffered: rec.buffered.map(Timestamp::to_rfc3339),
            last_message_id: rec.last_message,
            fired: rec.fired,
            missed: rec.missed,
            next,
            next_local,
            revision: rec.revision,
            created_at: rec.created_at.to_rfc3339(),
            updated_at: rec.updated_at.to_rfc3339(),
        }
    }

    /// The spec it shows (the inverse of [`ScheduleView::new`] for the owner's
    /// fields), to compare with a wanted one.
    pub fn spec(&self) -> Result<ScheduleSpec, ApiError> {
        ScheduleRequest {
            cron: self.cron.clone(),
            timezone: Some(self.timezone.clone()),
            topic: self.topic.clone(),
            payload: None,
            payload_base64: Some(self.payload_base64.clone()),
            headers: self.headers.clone(),
            ordering_key: self.ordering_key.clone(),
            catch_up: Some(self.catch_up),
            max_catch_up: Some(self.max_catch_up),
            catch_up_window_ms: Some(self.catch_up_window_ms),
            overlap: Some(self.overlap),
            start: self.start.clone(),
            end: self.end.clone(),
            jitter_ms: Some(self.jitter_ms),
        }
        .into_spec(&self.id)
    }
}

/// Every schedule (`GET /v1/schedules`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SchedulesView {
    /// By id.
    pub schedules: Vec<ScheduleView>,
}

/// One occurrence record (or a run of missed ones).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OccurrenceView {
    /// 1-based, in the order recorded.
    pub n: u64,
    /// RFC 3339: when it was due (the first of a run).
    pub scheduled_for: String,
    /// RFC 3339: the last of a run.
    pub last: Option<String>,
    /// Occurrences it stands for.
    pub count: u64,
    /// `fired`, `triggered`, `buffered` or `missed`.
    pub kind: String,
    /// Missed: `catch_up`, `catch_up_cap`, `catch_up_window`, `overlap` or `paused`.
    pub reason: Option<String>,
    /// The message enqueued (`GET /v1/messages/{id}`).
    pub message_id: Option<Uuid>,
    /// Its key had been used: nothing new was enqueued.
    pub duplicate: bool,
    /// RFC 3339.
    pub recorded_at: String,
}

impl From<Occurrence> for OccurrenceView {
    fn from(o: Occurrence) -> Self {
        OccurrenceView {
            n: o.n,
            scheduled_for: o.scheduled_for.to_rfc3339(),
            last: o.last.map(Timestamp::to_rfc3339),
            count: o.count,
            kind: o.kind.as_str().to_string(),
            reason: o.reason.map(|r| r.as_str().to_string()),
            message_id: o.message_id,
            duplicate: o.duplicate,
            recorded_at: o.recorded_at.to_rfc3339(),
        }
    }
}

/// A schedule with its last occurrences (`GET /v1/schedules/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleDetailView {
    /// The schedule, with the next [`PREVIEW`] times.
    pub schedule: ScheduleView,
    /// The last [`SHOWN_OCCURRENCES`] occurrence records, newest first.
    pub occurrences: Vec<OccurrenceView>,
}

/// A schedule with its occurrences, as `GET /v1/schedules/{id}` shows it.
pub async fn detail(state: &ApiState, id: &str) -> Result<ScheduleDetailView, ApiError> {
    let rec = state.store.schedule(id).await?;
    let occurrences = state
        .store
        .schedule_occurrences(id, SHOWN_OCCURRENCES)
        .await?;
    Ok(ScheduleDetailView {
        schedule: ScheduleView::new(rec, PREVIEW),
        occurrences: occurrences.into_iter().map(OccurrenceView::from).collect(),
    })
}

/// `PUT /v1/schedules/{id}`: creates (201) or replaces (200) the schedule.
#[utoipa::path(
    put,
    path = "/v1/schedules/{id}",
    tag = "schedules",
    summary = "Create or replace a schedule",
    request_body = ScheduleRequest,
    params(("id" = String, Path, description = "Schedule id", pattern = r"^[a-z0-9][a-z0-9._-]{0,127}$")),
    responses(
        (status = 200, description = "Replaced", body = ScheduleView),
        (status = 201, description = "Created", body = ScheduleView),
        (status = 400, description = "`invalid_input`, `invalid_name`", body = ErrorBody),
        (status = 404, description = "`unknown_schedule`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
    ),
)]
pub(super) async fn put(
    State(state): State<ApiState>,
    Segment(id): Segment,
    request: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ScheduleView>), ApiError> {
    let request: ScheduleRequest = json_object(&body(request, put_limit(&state))?)?;
    let rec = state.store.put_schedule(request.into_spec(&id)?).await?;
    let status = if rec.revision <= 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(ScheduleView::new(rec, PREVIEW))))
}

/// `GET /v1/schedules`.
#[utoipa::path(
    get,
    path = "/v1/schedules",
    tag = "schedules",
    summary = "Every schedule",

    responses(
        (status = 200, description = "The schedules", body = SchedulesView),

    ),
)]
pub(super) async fn list(State(state): State<ApiState>) -> Result<Json<SchedulesView>, ApiError> {
    let schedules = state.store.schedules().await?;
    Ok(Json(SchedulesView {
        schedules: schedules
            .into_iter()
            .map(|r| ScheduleView::new(r, 1))
            .collect(),
    }))
}

/// `GET /v1/schedules/{id}`.
#[utoipa::path(
    get,
    path = "/v1/schedules/{id}",
    tag = "schedules",
    summary = "One schedule with its next times and recent occurrences",
    params(("id" = String, Path, description = "Schedule id", pattern = r"^[a-z0-9][a-z0-9._-]{0,127}$")),
    responses(
        (status = 200, description = "The schedule", body = ScheduleDetailView),
        (status = 400, description = "`invalid_input`, `invalid_name`", body = ErrorBody),
        (status = 404, description = "`unknown_schedule`", body = ErrorBody),
    ),
)]
pub(super) async fn show(
    State(state): State<ApiState>,
    Segment(id): Segment,
) -> Result<Json<ScheduleDetailView>, ApiError> {
    Ok(Json(detail(&state, &id).await?))
}

/// The answer of `DELETE /v1/schedules/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RemovedScheduleView {
    /// The schedule removed.
    pub schedule: String,
}

/// `DELETE /v1/schedules/{id}`: the schedule and its occurrence records go;
/// the messages it enqueued stay.
#[utoipa::path(
    delete,
    path = "/v1/schedules/{id}",
    tag = "schedules",
    summary = "Remove a schedule",
    params(("id" = String, Path, description = "Schedule id", pattern = r"^[a-z0-9][a-z0-9._-]{0,127}$")),
    responses(
        (status = 200, description = "Removed", body = RemovedScheduleView),
        (status = 400, description = "`invalid_input`, `invalid_name`", body = ErrorBody),
        (status = 404, description = "`unknown_schedule`", body = ErrorBody),
    ),
)]
pub(super) async fn remove(
    State(state): State<ApiState>,
    Segment(id): Segment,
) -> Result<Json<RemovedScheduleView>, ApiError> {
    state.store.remove_schedule(&id).await?;
    Ok(Json(RemovedScheduleView { schedule: id }))
}

/// `POST /v1/schedules/{id}/pause`.
#[utoipa::path(
    post,
    path = "/v1/schedules/{id}/pause",
    tag = "schedules",
    summary = "Pause a schedule (occurrences are missed, not fired)",
    params(("id" = String, Path, description = "Schedule id", pattern = r"^[a-z0-9][a-z0-9._-]{0,127}$")),
    responses(
        (status = 200, description = "The schedule", body = ScheduleView),
        (status = 400, description = "`invalid_input`, `invalid_name`", body = ErrorBody),
        (status = 404, description = "`unknown_schedule`", body = ErrorBody),
    ),
)]
pub(super) async fn pause(
    State(state): State<ApiState>,
    Segment(id): Segment,
) -> Result<Json<ScheduleView>, ApiError> {
    let rec = state.store.set_schedule_paused(&id, true).await?;
    Ok(Json(ScheduleView::new(rec, PREVIEW)))
}

/// `POST /v1/schedules/{id}/resume`.
#[utoipa::path(
    post,
    path = "/v1/schedules/{id}/resume",
    tag = "schedules",
    summary = "Resume a paused schedule",
    params(("id" = String, Path, description = "Schedule id", pattern = r"^[a-z0-9][a-z0-9._-]{0,127}$")),
    responses(
        (status = 200, description = "The schedule", body = ScheduleView),
        (status = 400, description = "`invalid_input`, `invalid_name`", body = ErrorBody),
        (status = 404, description = "`unknown_schedule`", body = ErrorBody),
    ),
)]
pub(super) async fn resume(
    State(state): State<ApiState>,
    Segment(id): Segment,
) -> Result<Json<ScheduleView>, ApiError> {
    let rec = state.store.set_schedule_paused(&id, false).await?;
    Ok(Json(ScheduleView::new(rec, PREVIEW)))
}

/// `POST /v1/schedules/{id}/trigger`: enqueues one firing now with its own
/// key; the cursor does not move. `202 Accepted` with the occurrence.
#[utoipa::path(
    post,
    path = "/v1/schedules/{id}/trigger",
    tag = "schedules",
    summary = "Fire a schedule now (an idempotent enqueue)",
    params(("id" = String, Path, description = "Schedule id", pattern = r"^[a-z0-9][a-z0-9._-]{0,127}$")),
    responses(
        (status = 202, description = "The occurrence fired", body = OccurrenceView),
        (status = 400, description = "`invalid_input`, `invalid_name`", body = ErrorBody),
        (status = 404, description = "`unknown_schedule`", body = ErrorBody),
    ),
)]
pub(super) async fn trigger(
    State(state): State<ApiState>,
    Segment(id): Segment,
) -> Result<(StatusCode, Json<OccurrenceView>), ApiError> {
    let o = crate::worker::maintenance::schedules::trigger(
        state.store.as_ref(),
        &id,
        state.clock.now(),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(o.into())))
}
