//! Handlers: registration with module upload, list, show, remove, pause,
//! resume, and replay from a time.
//!
//! Registration validates (and compiles) the module with the sandbox before
//! anything is stored, so a bad module is refused with the validator's message
//! and never reaches a worker.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use serde::Deserialize;
use utoipa::IntoParams;

use super::dto::{
    CountView, DefaultsView, HandlerView, HandlersView, RegisterRequest, RemovedView,
};
use super::error::ErrorBody;
use super::{
    ApiError, ApiState, MAX_MODULE_BYTES, POLICY_HEADER, Segment, body, json_object, query,
};
use crate::names::{validate_handler, validate_topic};
use crate::policy::HandlerPolicy;
use crate::store::HandlerSpec;
use crate::worker::executor::limits as sandbox_limits;

/// Query of `PUT /v1/handlers/{name}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct RegisterQuery {
    /// Topic to subscribe to.
    #[param(pattern = r"^[a-z0-9][a-z0-9._-]{0,127}$")]
    topic: String,
}

/// `PUT /v1/handlers/{name}?topic=T`: the body is the module, the policy is the
/// JSON header `Sluice-Policy` (absent fields take their defaults).
#[utoipa::path(
    put,
    path = "/v1/handlers/{name}",
    tag = "handlers",
    summary = "Register or replace a handler (raw module body)",
    description = "The module is validated and compiled by the sandbox before anything is stored.",
    params(
        ("name" = String, Path, description = "Handler name", pattern = r"^[a-z0-9][a-z0-9._-]{0,127}$"),
        RegisterQuery,
        ("Sluice-Policy" = Option<String>, Header, description = "The policy as a JSON object (see HandlerPolicy); absent fields take their defaults"),
    ),
    request_body(content = String, content_type = "application/octet-stream", description = "The module: a `wasm32-wasip1` command or a component (any content type; the CLI sends `application/wasm`)"),
    responses(
        (status = 200, description = "Replaced: the version is bumped, the whole policy replaced", body = HandlerView),
        (status = 201, description = "Created", body = HandlerView),
        (status = 400, description = "`invalid_module` (the validator's message), `invalid_policy` (names the field), `invalid_name`, `invalid_input`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the module is over 64 MiB", body = ErrorBody),
    ),
)]
pub(super) async fn register_raw(
    State(state): State<ApiState>,
    Segment(name): Segment,
    q: Result<Query<RegisterQuery>, QueryRejection>,
    headers: HeaderMap,
    module: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<HandlerView>), ApiError> {
    let RegisterQuery { topic } = query(q)?;
    let module = body(module, MAX_MODULE_BYTES)?;
    let mut values = headers.get_all(POLICY_HEADER).iter();
    let policy = match (values.next(), values.next()) {
        (None, _) => HandlerPolicy::default(),
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "header sluice-policy is given more than once; give it once".into(),
            ));
        }
        (Some(v), None) => HandlerPolicy::deserialize_object(
            &mut serde_json::Deserializer::from_slice(v.as_bytes()),
        )
        .map_err(|e| {
            ApiError::BadRequest(format!(
                "invalid Sluice-Policy header (a JSON object of policy fields): {e}"
            ))
        })?,
    };
    register(
        &state,
        HandlerSpec {
            name,
            topic,
            policy,
        },
        module,
    )
    .await
}

/// `POST /v1/handlers`: a JSON [`RegisterRequest`] with the module in base64.
#[utoipa::path(
    post,
    path = "/v1/handlers",
    tag = "handlers",
    summary = "Register or replace a handler (JSON, module in base64)",
    request_body = RegisterRequest,
    responses(
        (status = 200, description = "Replaced: the version is bumped, the whole policy replaced", body = HandlerView),
        (status = 201, description = "Created", body = HandlerView),
        (status = 400, description = "`invalid_module` (the validator's message), `invalid_policy` (names the field), `invalid_name`, `invalid_input`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the module is over 64 MiB", body = ErrorBody),
    ),
)]
pub(super) async fn register_json(
    State(state): State<ApiState>,
    request: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<HandlerView>), ApiError> {
    let request: RegisterRequest = json_object(&body(request, super::MODULE_JSON_LIMIT)?)?;
    let module = base64::engine::general_purpose::STANDARD
        .decode(request.module_base64.trim())
        .map_err(|e| ApiError::BadRequest(format!("module_base64 is not valid base64: {e}")))?;
    if module.len() > MAX_MODULE_BYTES {
        return Err(ApiError::BodyTooLarge {
            limit: MAX_MODULE_BYTES,
        });
    }
    let spec = HandlerSpec {
        name: request.name,
        topic: request.topic,
        policy: request.policy,
    };
    register(&state, spec, Bytes::from(module)).await
}

/// Checks names and policy, validates and compiles the module, then stores it:
/// `201 Created` for a new handler, `200 OK` for a replaced one.
async fn register(
    state: &ApiState,
    spec: HandlerSpec,
    module: Bytes,
) -> Result<(StatusCode, Json<HandlerView>), ApiError> {
    validate_handler(&spec.name)?;
    validate_topic(&spec.topic)?;
    spec.policy.validate()?;
    if module.is_empty() {
        return Err(ApiError::BadRequest(
            "the request body must be the module (a .wasm file); it is empty".into(),
        ));
    }
    let limits = sandbox_limits(&spec.policy);
    let sandbox = state.sandbox.clone();
    let wasm = module.clone();
    tokio::task::spawn_blocking(move || sandbox.load(&wasm, &limits))
        .await
        .map_err(|e| ApiError::Internal(format!("module validation task failed: {e}")))??;
    let record = state.store.put_handler(spec, module).await?;
    let status = if record.version <= 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(record.into())))
}

/// `GET /v1/defaults`.
#[utoipa::path(
    get,
    path = "/v1/defaults",
    tag = "handlers",
    summary = "The default policy a handler gets for each field it omits",
    description = "What `sluice apply` compares a manifest against: a field the manifest \
        leaves out is unchanged when the handler has the server's default.",
    responses((status = 200, description = "The defaults", body = DefaultsView)),
)]
pub(super) async fn defaults() -> Json<DefaultsView> {
    Json(DefaultsView {
        policy: HandlerPolicy::default(),
    })
}

/// `GET /v1/handlers`.
#[utoipa::path(
    get,
    path = "/v1/handlers",
    tag = "handlers",
    summary = "Every handler, by name",
    responses((status = 200, description = "The handlers", body = HandlersView)),
)]
pub(super) async fn list(State(state): State<ApiState>) -> Result<Json<HandlersView>, ApiError> {
    let handlers = state.store.handlers().await?;
    Ok(Json(HandlersView {
        handlers: handlers.into_iter().map(HandlerView::from).collect(),
    }))
}

/// `GET /v1/handlers/{name}`.
#[utoipa::path(
    get,
    path = "/v1/handlers/{name}",
    tag = "handlers",
    summary = "One handler with its policy",
    params(("name" = String, Path, description = "Handler name", pattern = r"^[a-z0-9][a-z0-9._-]{0,127}$")),
    responses(
        (status = 200, description = "The handler", body = HandlerView),
        (status = 400, description = "`invalid_input`: the name does not decode", body = ErrorBody),
        (status = 404, description = "`unknown_handler`", body = ErrorBody),
    ),
)]
pub(super) async fn show(
    State(state): State<ApiState>,
    Segment(name): Segment,
) -> Result<Json<HandlerView>, ApiError> {
    Ok(Json(state.store.handler(&name).await?.into()))
}

/// `DELETE /v1/handlers/{name}`: removes it with all its deliveries.
#[utoipa::path(
    delete,
    path = "/v1/handlers/{name}",
    tag = "handlers",
    summary = "Remove a handler with all its deliveries (open and dead)",
    params(("name" = String, Path, description = "Handler name", pattern = r"^[a-z0-9][a-z0-9._-]{0,127}$")),
    responses(
        (status = 200, description = "Removed", body = RemovedView),
        (status = 400, description = "`invalid_input`: the name does not decode", body = ErrorBody),
        (status = 404, description = "`unknown_handler`", body = ErrorBody),
    ),
)]
pub(super) async fn remove(
    State(state): State<ApiState>,
    Segment(name): Segment,
) -> Result<Json<RemovedView>, ApiError> {
    let deliveries = state.store.remove_handler(&name).await?;
    Ok(Json(RemovedView {
        handler: name,
        deliveries,
    }))
}

/// `POST /v1/handlers/{name}/pause`.
#[utoipa::path(
    post,
    path = "/v1/handlers/{name}/pause",
    tag = "handlers",
    summary = "Stop leasing the handler's deliveries (they keep queueing)",
    params(("name" = String, Path, description = "Handler name", pattern = r"^[a-z0-9][a-z0-9._-]{0,127}$")),
    responses(
        (status = 200, description = "The handler", body = HandlerView),
        (status = 400, description = "`invalid_input`: the name does not decode", body = ErrorBody),
        (status = 404, description = "`unknown_handler`", body = ErrorBody),
    ),
)]
pub(super) async fn pause(
    State(state): State<ApiState>,
    Segment(name): Segment,
) -> Result<Json<HandlerView>, ApiError> {
    Ok(Json(state.store.set_paused(&name, true).await?.into()))
}

/// `POST /v1/handlers/{name}/resume`.
#[utoipa::path(
    post,
    path = "/v1/handlers/{name}/resume",
    tag = "handlers",
    summary = "Resume a paused handler",
    params(("name" = String, Path, description = "Handler name", pattern = r"^[a-z0-9][a-z0-9._-]{0,127}$")),
    responses(
        (status = 200, description = "The handler", body = HandlerView),
        (status = 400, description = "`invalid_input`: the name does not decode", body = ErrorBody),
        (status = 404, description = "`unknown_handler`", body = ErrorBody),
    ),
)]
pub(super) async fn resume(
    State(state): State<ApiState>,
    Segment(name): Segment,
) -> Result<Json<HandlerView>, ApiError> {
    Ok(Json(state.store.set_paused(&name, false).await?.into()))
}

/// Query of `POST /v1/handlers/{name}/replay`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplayQuery {
    /// Messages enqueued at or after this RFC 3339 time.
    #[param(format = DateTime)]
    since: String,
}

/// `POST /v1/handlers/{name}/replay?since=RFC3339`: re-delivers every retained
/// message of the handler's topic enqueued at or after `since`.
#[utoipa::path(
    post,
    path = "/v1/handlers/{name}/replay",
    tag = "handlers",
    summary = "Re-deliver the handler's topic from a point in time",
    description = "Every retained message of the topic enqueued at or after `since` gets a new delivery for this handler.",
    params(("name" = String, Path, description = "Handler name", pattern = r"^[a-z0-9][a-z0-9._-]{0,127}$"), ReplayQuery),
    responses(
        (status = 200, description = "How many were re-delivered", body = CountView),
        (status = 400, description = "`invalid_input`: `since` missing or not RFC 3339", body = ErrorBody),
        (status = 404, description = "`unknown_handler`", body = ErrorBody),
    ),
)]
pub(super) async fn replay_since(
    State(state): State<ApiState>,
    Segment(name): Segment,
    q: Result<Query<ReplayQuery>, QueryRejection>,
) -> Result<Json<CountView>, ApiError> {
    let since = super::time("since", &query(q)?.since)?;
    let count = state.store.replay_since(&name, since).await?;
    Ok(Json(CountView { count, skipped: 0 }))
}
