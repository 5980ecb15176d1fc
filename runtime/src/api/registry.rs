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

use super::dto::{CountView, HandlerView, HandlersView, RegisterRequest, RemovedView};
use super::{ApiError, ApiState, MAX_MODULE_BYTES, POLICY_HEADER, Segment, body, json, query};
use crate::names::{validate_handler, validate_topic};
use crate::policy::HandlerPolicy;
use crate::store::HandlerSpec;
use crate::worker::executor::limits as sandbox_limits;

/// Query of `PUT /v1/handlers/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RegisterQuery {
    topic: String,
}

/// `PUT /v1/handlers/{name}?topic=T`: the body is the module, the policy is the
/// JSON header `Sluice-Policy` (absent fields take their defaults).
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
pub(super) async fn register_json(
    State(state): State<ApiState>,
    request: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<HandlerView>), ApiError> {
    let request: RegisterRequest = json(&body(request, super::MODULE_JSON_LIMIT)?)?;
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

/// `GET /v1/handlers`.
pub(super) async fn list(State(state): State<ApiState>) -> Result<Json<HandlersView>, ApiError> {
    let handlers = state.store.handlers().await?;
    Ok(Json(HandlersView {
        handlers: handlers.into_iter().map(HandlerView::from).collect(),
    }))
}

/// `GET /v1/handlers/{name}`.
pub(super) async fn show(
    State(state): State<ApiState>,
    Segment(name): Segment,
) -> Result<Json<HandlerView>, ApiError> {
    Ok(Json(state.store.handler(&name).await?.into()))
}

/// `DELETE /v1/handlers/{name}`: removes it with all its deliveries.
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
pub(super) async fn pause(
    State(state): State<ApiState>,
    Segment(name): Segment,
) -> Result<Json<HandlerView>, ApiError> {
    Ok(Json(state.store.set_paused(&name, true).await?.into()))
}

/// `POST /v1/handlers/{name}/resume`.
pub(super) async fn resume(
    State(state): State<ApiState>,
    Segment(name): Segment,
) -> Result<Json<HandlerView>, ApiError> {
    Ok(Json(state.store.set_paused(&name, false).await?.into()))
}

/// Query of `POST /v1/handlers/{name}/replay`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplayQuery {
    since: String,
}

/// `POST /v1/handlers/{name}/replay?since=RFC3339`: re-delivers every retained
/// message of the handler's topic enqueued at or after `since`.
pub(super) async fn replay_since(
    State(state): State<ApiState>,
    Segment(name): Segment,
    q: Result<Query<ReplayQuery>, QueryRejection>,
) -> Result<Json<CountView>, ApiError> {
    let since = super::time("since", &query(q)?.since)?;
    let count = state.store.replay_since(&name, since).await?;
    Ok(Json(CountView { count, skipped: 0 }))
}
