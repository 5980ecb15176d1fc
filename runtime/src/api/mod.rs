//! The HTTP API: JSON under `/v1`, plus `/metrics` and `/healthz`.
//!
//! [`router`] builds the whole axum [`Router`] from an [`ApiState`]; `sluice
//! serve` binds it to a listener, tests call it with `tower::ServiceExt::oneshot`
//! without opening a port. Every failure is an [`ApiError`], turned into a status
//! and a JSON body `{"error": {"code", "message"}}` in exactly one place
//! ([`ApiError::status`]). The routes, their bodies and statuses are documented in
//! `docs/api.md`, and as OpenAPI 3.1 by the routes themselves ([`openapi`]).
//!
//! # Module map
//! - [`error`]: [`ApiError`], the one mapping of errors to statuses.
//! - [`dto`]: the JSON documents, shared with the CLI.
//! - `auth`: the bearer-token check.
//! - `messages`: enqueue (single and batch), message, delivery and attempts.
//! - `modules`: a module's bytes by sha256, a message's payload (`sluice run --delivery`).
//! - `registry`: handler registration (module validated by the sandbox first),
//!   list, show, remove, pause, resume, replay from a time.
//! - `dlq`: list, show, replay and purge dead deliveries.
//! - [`schedules`]: schedules (create or replace, list, show, pause, resume,
//!   trigger, remove) and their documents.
//! - `search`: `GET /v1/deliveries`, the delivery search (shared with the dashboard).
//! - [`openapi`]: the OpenAPI 3.1 document, generated from the routes.
//! - `observe`: stats, `/healthz` and `/metrics` (rendered by [`crate::metrics`]).
//! - [`server`]: the accept loop on hyper that `sluice serve` runs; it answers
//!   what hyper refuses before routing (a head past the limits, a request that
//!   does not parse) with the same JSON errors.
//!
//! # Body limits
//! Each route reads at most a fixed number of bytes and answers `413` with the
//! JSON error past it (never a bare 413): enqueue takes the store's maximum
//! payload plus [`BODY_MARGIN`], so a payload just over the maximum gets the
//! store's exact message; a batch takes [`ApiState::batch_body_limit`]; module
//! uploads take [`MAX_MODULE_BYTES`] (×4/3 as base64 JSON).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{StatusCode, Uri};
use axum::middleware;
use utoipa::OpenApi as _;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt as _};
use utoipa_axum::routes;

use crate::clock::{Clock, SystemClock};
use crate::metrics::Metrics;
use crate::sandbox::Sandbox;
use crate::store::{Store, StoreConfig};

pub(crate) mod auth;
pub(crate) mod dlq;
pub mod dto;
pub mod error;
mod messages;
mod modules;
mod observe;
pub mod openapi;
mod registry;
pub mod schedules;
pub(crate) mod search;
pub mod server;

pub use error::ApiError;

/// Largest module accepted at registration: 64 MiB.
pub const MAX_MODULE_BYTES: usize = 64 << 20;
/// Bytes a request body may exceed its payload limit by (headers of a batch,
/// JSON framing), so the store, not the transport, names an oversized payload.
pub const BODY_MARGIN: usize = 64 << 10;
/// Most messages in one batch enqueue.
pub const MAX_BATCH: usize = 1000;
/// Default page size of the list routes (`GET /v1/dlq`, `GET /v1/deliveries`).
pub const DEFAULT_PAGE: usize = 100;
/// Largest page size of the list routes.
pub const MAX_PAGE: usize = 1000;
/// Header carrying a handler's policy as JSON on `PUT /v1/handlers/{name}`.
pub const POLICY_HEADER: &str = "sluice-policy";
/// [`POLICY_HEADER`] as the OpenAPI document spells it.
const POLICY_HEADER_NAME: &str = "Sluice-Policy";

/// What every request handler shares. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    /// The queue.
    pub store: Arc<dyn Store>,
    /// Validates modules at registration.
    pub sandbox: Sandbox,
    /// Counters for `/metrics`; enqueue records `enqueued`, `duplicates` and
    /// `queue_full` here.
    pub metrics: Arc<Metrics>,
    /// When set, every route but `/healthz` requires `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// A second, read-only token (`--read-token`): with it, `GET` and `HEAD`
    /// are answered and every other method is `403 read_only`. Only taken
    /// together with `token`.
    pub read_token: Option<String>,
    /// The store's [`StoreConfig::max_payload_bytes`]; sizes the enqueue body limits.
    pub max_payload_bytes: usize,
    /// The store's clock, the API's only one: relative delays (`Sluice-Delay`,
    /// a batch item's `delay`) start from it, and ages in `/v1/stats` and
    /// `/metrics` (consumer lag) are measured on it, so both agree with the
    /// store's timestamps. The system
    /// clock in a server; a [`ManualClock`](crate::clock::ManualClock) in tests.
    pub clock: Arc<dyn Clock>,
}

impl ApiState {
    /// State with the default maximum payload (1 MiB) and the system clock; set
    /// [`ApiState::max_payload_bytes`] when the store is configured otherwise,
    /// and [`ApiState::clock`] when it runs on another clock.
    pub fn new(
        store: Arc<dyn Store>,
        sandbox: Sandbox,
        metrics: Arc<Metrics>,
        token: Option<String>,
    ) -> ApiState {
        ApiState {
            store,
            sandbox,
            metrics,
            token,
            read_token: None,
            max_payload_bytes: StoreConfig::default().max_payload_bytes,
            clock: Arc::new(SystemClock),
        }
    }

    /// Body limit of a single enqueue: the maximum payload plus [`BODY_MARGIN`].
    pub fn enqueue_body_limit(&self) -> usize {
        self.max_payload_bytes.saturating_add(BODY_MARGIN)
    }

    /// Body limit of a batch enqueue: 16 MiB, or twice the maximum payload
    /// (base64 inflates by 4/3) if that is more.
    pub fn batch_body_limit(&self) -> usize {
        batch_limit(self.max_payload_bytes)
    }
}

/// Body limit of a batch enqueue for a maximum payload of `max_payload_bytes`.
fn batch_limit(max_payload_bytes: usize) -> usize {
    (16usize << 20).max(max_payload_bytes.saturating_mul(2)) + BODY_MARGIN
}

/// Body limit of a module upload as JSON with base64 (`POST /v1/handlers`).
const MODULE_JSON_LIMIT: usize = MAX_MODULE_BYTES / 3 * 4 + BODY_MARGIN;

/// The body limits of the routes that take one.
#[derive(Debug, Clone, Copy)]
struct BodyLimits {
    enqueue: usize,
    batch: usize,
    schedule: usize,
}

impl Default for BodyLimits {
    /// The limits of a server with the default maximum payload.
    fn default() -> Self {
        let store = StoreConfig::default();
        BodyLimits {
            enqueue: store.max_payload_bytes.saturating_add(BODY_MARGIN),
            batch: batch_limit(store.max_payload_bytes),
            schedule: schedules::limit_for(store.max_payload_bytes),
        }
    }
}

/// Every route with its OpenAPI operation: a route is documented by being
/// registered ([`openapi`]).
fn routes(limits: BodyLimits) -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        // messages
        .routes(routes!(messages::enqueue).layer(DefaultBodyLimit::max(limits.enqueue)))
        .routes(routes!(messages::enqueue_batch).layer(DefaultBodyLimit::max(limits.batch)))
        .routes(routes!(messages::message))
        .routes(routes!(modules::payload))
        .routes(routes!(modules::module))
        .routes(routes!(search::list))
        .routes(routes!(messages::delivery))
        .routes(routes!(messages::attempts))
        // handlers
        .routes(
            routes!(registry::list, registry::register_json)
                .layer(DefaultBodyLimit::max(MODULE_JSON_LIMIT)),
        )
        .routes(routes!(registry::register_raw).layer(DefaultBodyLimit::max(MAX_MODULE_BYTES)))
        .routes(routes!(registry::show, registry::remove))
        .routes(routes!(registry::pause))
        .routes(routes!(registry::resume))
        .routes(routes!(registry::replay_since))
        .routes(routes!(registry::defaults))
        // DLQ
        .routes(routes!(dlq::list))
        .routes(routes!(dlq::replay_matching))
        .routes(routes!(dlq::purge_matching))
        .routes(routes!(dlq::show, dlq::purge_one))
        .routes(routes!(dlq::replay_one))
        // schedules
        .routes(routes!(schedules::list))
        .routes(routes!(schedules::put).layer(DefaultBodyLimit::max(limits.schedule)))
        .routes(routes!(schedules::show, schedules::remove))
        .routes(routes!(schedules::pause))
        .routes(routes!(schedules::resume))
        .routes(routes!(schedules::trigger))
        // observability
        .routes(routes!(observe::stats))
        .routes(routes!(observe::metrics))
        .routes(routes!(observe::healthz))
        .routes(routes!(openapi::serve))
}

/// The whole API. With a token in `state`, everything but `/healthz` is
/// authenticated.
pub fn router(state: ApiState) -> Router {
    let limits = BodyLimits {
        enqueue: state.enqueue_body_limit(),
        batch: state.batch_body_limit(),
        schedule: schedules::put_limit(&state),
    };
    let (routes, _) = routes(limits).split_for_parts();
    // The token is checked around everything, fallbacks included: without it,
    // an unknown path or method is 401, not 404/405.
    routes
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .with_state(state)
}

async fn no_route(uri: Uri) -> ApiError {
    ApiError::NoRoute(uri.path().to_string())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// The body of a request, or our JSON 413 when it is over `limit`.
fn body(result: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    result.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::BodyTooLarge { limit }
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    })
}

/// One path parameter. A segment that does not decode (a bad percent-escape,
/// not UTF-8) is our JSON 400, not axum's `text/plain` rejection.
struct Segment(String);

impl<S: Send + Sync> FromRequestParts<S> for Segment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(segment)| Segment(segment))
            .map_err(|rejection| {
                ApiError::BadRequest(format!("invalid path: {}", rejection.body_text()))
            })
    }
}

/// A JSON document from a request body, naming what does not parse.
fn json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

/// A JSON *object* from a request body, as a struct. Anything else is
/// refused: serde would read a struct from an array by position, so
/// `[null, null]` would pass as an empty DLQ filter (schemathesis found it).
fn json_object<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = json(bytes)?;
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "invalid JSON body: expected an object".into(),
        ));
    }
    // Errors name the field (`overlap: unknown variant ...`).
    serde_path_to_error::deserialize(value)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

/// A UUID from a path segment; `what` names it in the error.
fn uuid(what: &str, s: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(s)
        .map_err(|_| ApiError::BadRequest(format!("invalid {what} id {s:?}: expected a UUID")))
}

/// A query string, naming what does not parse.
fn query<T>(
    result: Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, ApiError> {
    result
        .map(|q| q.0)
        .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
}

/// A page size from a query: [`DEFAULT_PAGE`] when absent, within 1 ..= [`MAX_PAGE`].
fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::BadRequest(format!(
            "limit must be within 1 ..= {MAX_PAGE}, not {limit}"
        )));
    }
    Ok(limit)
}

/// An outcome kind filter, checked against [`Outcome::KINDS`](crate::outcome::Outcome::KINDS).
fn outcome_kind(kind: Option<String>) -> Result<Option<String>, ApiError> {
    use crate::outcome::Outcome;
    match kind {
        Some(k) if !Outcome::KINDS.contains(&k.as_str()) => Err(ApiError::BadRequest(format!(
            "unknown outcome kind {k:?}: use one of {}",
            Outcome::KINDS.join(", ")
        ))),
        k => Ok(k),
    }
}

/// An RFC 3339 time from a query or body field named `field`.
/// Every accepted time is at most [`Timestamp::MAX`](crate::clock::Timestamp::MAX).
fn time(field: &str, s: &str) -> Result<crate::clock::Timestamp, ApiError> {
    crate::clock::Timestamp::parse_rfc3339(s)
        .map_err(|e| ApiError::BadRequest(format!("{field}: {e}")))
}
