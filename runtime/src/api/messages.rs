//! Enqueue (single and batch) and message, delivery and attempt inspection.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;

use super::dto::{
    AttemptsView, BatchEnqueuedView, BatchItem, DeliveryView, EnqueuedView, MessageView,
};
use super::error::ErrorBody;
use super::{ApiError, ApiState, MAX_BATCH, Segment, body, json, uuid};
use crate::clock::{Timestamp, check_delay};
use crate::names::validate_header;
use crate::store::{Enqueued, NewMessage, StoreError};
use crate::units::parse_delay;

/// Producer's idempotency key.
const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Ordering key.
const ORDERING_KEY: &str = "sluice-ordering-key";
/// Delay, e.g. `10s`.
const DELAY: &str = "sluice-delay";
/// Not before, RFC 3339.
const NOT_BEFORE: &str = "sluice-not-before";
/// Prefix of message headers: `Sluice-Header-Foo: bar` stores `foo: bar`.
const HEADER_PREFIX: &str = "sluice-header-";

/// `POST /v1/topics/{topic}/messages`: the raw body is the payload.
#[utoipa::path(
    post,
    path = "/v1/topics/{topic}/messages",
    tag = "messages",
    summary = "Enqueue one message",
    description = "The raw body is the payload, passed to each handler's stdin as is. \
        Acknowledged (`202`) only once the message and its deliveries are durable.",
    params(
        ("topic" = String, Path, description = "Topic name", pattern = r"^[a-z0-9][a-z0-9._-]{0,127}$"),
        ("Idempotency-Key" = Option<String>, Header, description = "A repeat on the topic within the dedup window (24 h) returns the original id and creates nothing", min_length = 1, max_length = 256),
        ("Sluice-Ordering-Key" = Option<String>, Header, description = "Messages with the same key are handled one at a time per handler, in order", min_length = 1, max_length = 256),
        ("Sluice-Delay" = Option<String>, Header, description = "Deliver no sooner than now + this delay, e.g. `10s`, `1m30s`, `250ms` (a bare number is seconds; at most 3650 days; not with Sluice-Not-Before)", pattern = r"^([0-9]{1,5}(ms|s|m)?|[0-9]{1,4}h)$"),
        ("Sluice-Not-Before" = Option<String>, Header, description = "Deliver no sooner than this RFC 3339 time (at most 9999-12-31T23:59:59.999Z)", format = DateTime),
    ),
    request_body(content = String, content_type = "application/octet-stream", description = "The payload (any bytes, at most the server's maximum payload, default 1 MiB)"),
    responses(
        (status = 202, description = "Durably enqueued, or a duplicate of a message within the window (`duplicate: true`, the original id)", body = EnqueuedView),
        (status = 400, description = "`invalid_input` (a header that does not parse, is given twice, or is out of range), `invalid_name` (topic, key or `Sluice-Header-*`)", body = ErrorBody),
        (status = 404, description = "`unknown_topic`: no handler was ever registered on the topic", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 429, description = "`queue_full`: the topic is at its maximum depth; nothing was enqueued", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
)]
pub(super) async fn enqueue(
    State(state): State<ApiState>,
    Segment(topic): Segment,
    headers: HeaderMap,
    payload: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<EnqueuedView>), ApiError> {
    let payload = body(payload, state.enqueue_body_limit())?;
    let text = |name: &str| header_text(&headers, name);
    let mut message_headers = BTreeMap::new();
    for name in headers.keys() {
        if let Some(key) = name.as_str().strip_prefix(HEADER_PREFIX) {
            let value = text(name.as_str())?.unwrap_or_default();
            message_headers.insert(key.to_string(), value);
        }
    }
    check_headers(&message_headers)?;
    let delay = text(DELAY)?
        .map(|d| parse_delay("Sluice-Delay", &d))
        .transpose()
        .map_err(ApiError::BadRequest)?;
    let not_before = text(NOT_BEFORE)?
        .map(|t| super::time("Sluice-Not-Before", &t))
        .transpose()?;
    let message = NewMessage {
        topic,
        payload,
        ordering_key: text(ORDERING_KEY)?,
        idempotency_key: text(IDEMPOTENCY_KEY)?,
        headers: message_headers,
        not_before: schedule(delay, not_before, state.clock.now())?,
    };
    let enqueued = enqueue_all(&state, vec![message]).await?;
    Ok((StatusCode::ACCEPTED, Json(view(enqueued[0]))))
}

/// `POST /v1/topics/{topic}/messages:batch`: a JSON array of [`BatchItem`],
/// enqueued atomically (all or nothing).
#[utoipa::path(
    post,
    path = "/v1/topics/{topic}/messages:batch",
    tag = "messages",
    summary = "Enqueue 1 to 1000 messages atomically",
    description = "All or nothing: any error enqueues none. Answers in request order.",
    params(("topic" = String, Path, description = "Topic name", pattern = r"^[a-z0-9][a-z0-9._-]{0,127}$")),
    request_body(content = Vec<BatchItem>, description = "1 to 1000 messages"),
    responses(
        (status = 202, description = "Every message durably enqueued (or a duplicate)", body = BatchEnqueuedView),
        (status = 400, description = "`invalid_input` (the body, or `message N: ...`), `invalid_name`", body = ErrorBody),
        (status = 404, description = "`unknown_topic`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: a payload or the body over its limit", body = ErrorBody),
        (status = 429, description = "`queue_full`; nothing was enqueued", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
)]
pub(super) async fn enqueue_batch(
    State(state): State<ApiState>,
    Segment(topic): Segment,
    request: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<BatchEnqueuedView>), ApiError> {
    let items: Vec<BatchItem> = json(&body(request, state.batch_body_limit())?)?;
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(ApiError::BadRequest(format!(
            "a batch holds 1 to {MAX_BATCH} messages, not {}",
            items.len()
        )));
    }
    let now = state.clock.now();
    let messages = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            batch_message(&topic, item, now)
                .map_err(|e| ApiError::BadRequest(format!("message {i}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let enqueued = enqueue_all(&state, messages).await?;
    let messages = enqueued.into_iter().map(view).collect();
    Ok((StatusCode::ACCEPTED, Json(BatchEnqueuedView { messages })))
}

/// `GET /v1/messages/{id}`.
#[utoipa::path(
    get,
    path = "/v1/messages/{id}",
    tag = "messages",
    summary = "A message with its deliveries and their attempts",
    params(("id" = String, Path, description = "Message id", format = Uuid)),
    responses(
        (status = 200, description = "The message", body = MessageView),
        (status = 400, description = "`invalid_input`: not a UUID", body = ErrorBody),
        (status = 404, description = "`unknown_message` (or pruned)", body = ErrorBody),
    ),
)]
pub(super) async fn message(
    State(state): State<ApiState>,
    Segment(id): Segment,
) -> Result<Json<MessageView>, ApiError> {
    let status = state.store.message(uuid("message", &id)?).await?;
    Ok(Json(status.into()))
}

/// `GET /v1/deliveries/{id}`.
#[utoipa::path(
    get,
    path = "/v1/deliveries/{id}",
    tag = "messages",
    summary = "One delivery with its attempts",
    params(("id" = String, Path, description = "Delivery id", format = Uuid)),
    responses(
        (status = 200, description = "The delivery", body = DeliveryView),
        (status = 400, description = "`invalid_input`: not a UUID", body = ErrorBody),
        (status = 404, description = "`unknown_delivery`", body = ErrorBody),
    ),
)]
pub(super) async fn delivery(
    State(state): State<ApiState>,
    Segment(id): Segment,
) -> Result<Json<DeliveryView>, ApiError> {
    let status = state.store.delivery(uuid("delivery", &id)?).await?;
    Ok(Json(status.into()))
}

/// `GET /v1/deliveries/{id}/attempts`.
#[utoipa::path(
    get,
    path = "/v1/deliveries/{id}/attempts",
    tag = "messages",
    summary = "The attempts of one delivery",
    params(("id" = String, Path, description = "Delivery id", format = Uuid)),
    responses(
        (status = 200, description = "Its attempts, oldest first", body = AttemptsView),
        (status = 400, description = "`invalid_input`: not a UUID", body = ErrorBody),
        (status = 404, description = "`unknown_delivery`", body = ErrorBody),
    ),
)]
pub(super) async fn attempts(
    State(state): State<ApiState>,
    Segment(id): Segment,
) -> Result<Json<AttemptsView>, ApiError> {
    let d = DeliveryView::from(state.store.delivery(uuid("delivery", &id)?).await?);
    Ok(Json(AttemptsView {
        delivery_id: d.id,
        handler: d.handler,
        attempts: d.attempts,
    }))
}

/// Enqueues and records the enqueue counters.
async fn enqueue_all(state: &ApiState, batch: Vec<NewMessage>) -> Result<Vec<Enqueued>, ApiError> {
    match state.store.enqueue(batch).await {
        Ok(enqueued) => {
            let duplicates = enqueued.iter().filter(|e| e.duplicate).count() as u64;
            state
                .metrics
                .enqueued(enqueued.len() as u64 - duplicates, duplicates);
            Ok(enqueued)
        }
        Err(e @ StoreError::QueueFull { .. }) => {
            state.metrics.queue_full();
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

fn view(e: Enqueued) -> EnqueuedView {
    EnqueuedView {
        id: e.id,
        duplicate: e.duplicate,
    }
}

/// A header as text; `None` when absent. A header given more than once is
/// refused (which one is meant cannot be told).
fn header_text(headers: &HeaderMap, name: &str) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::BadRequest(format!(
            "header {name} is given more than once; give it once"
        )));
    }
    value
        .to_str()
        .map(|v| Some(v.to_string()))
        .map_err(|_| ApiError::BadRequest(format!("header {name} is not visible ASCII text")))
}

/// The one check of a message's headers, for the single and the batch route.
fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), ApiError> {
    for (name, value) in headers {
        validate_header(name, value)?;
    }
    Ok(())
}

/// The not-before time from a delay (relative to `now`, the server's clock) or
/// an absolute time; giving both is an error.
fn schedule(
    delay: Option<Duration>,
    not_before: Option<Timestamp>,
    now: Timestamp,
) -> Result<Option<Timestamp>, ApiError> {
    match (delay, not_before) {
        (Some(_), Some(_)) => Err(ApiError::BadRequest(
            "give a delay or a not-before time, not both".into(),
        )),
        (Some(d), None) => Ok(Some(now.plus(d))),
        (None, at) => Ok(at),
    }
}

fn batch_message(topic: &str, item: BatchItem, now: Timestamp) -> Result<NewMessage, ApiError> {
    let payload = match (item.payload, item.payload_base64) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "give payload or payload_base64, not both".into(),
            ));
        }
        (Some(text), None) => Bytes::from(text),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map(Bytes::from)
            .map_err(|e| {
                ApiError::BadRequest(format!("payload_base64 is not valid base64: {e}"))
            })?,
        (None, None) => Bytes::new(),
    };
    let delay = match (item.delay_ms, item.delay) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "give delay_ms or delay, not both".into(),
            ));
        }
        (Some(ms), None) => Some(check_delay("delay_ms", Duration::from_millis(ms))?),
        (None, Some(text)) => Some(parse_delay("delay", &text).map_err(ApiError::BadRequest)?),
        (None, None) => None,
    };
    let not_before = item
        .not_before
        .map(|t| super::time("not_before", &t))
        .transpose()?;
    check_headers(&item.headers)?;
    Ok(NewMessage {
        topic: topic.to_string(),
        payload,
        ordering_key: item.ordering_key,
        idempotency_key: item.idempotency_key,
        headers: item.headers,
        not_before: schedule(delay, not_before, now)?,
    })
}
