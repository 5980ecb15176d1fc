//! The DLQ: list (filtered, paged by cursor), show, replay and purge, one or
//! all matching.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use serde::Deserialize;
use utoipa::IntoParams;

use super::dto::{CountView, DeadFilterView, DeadLettersView, DeliveryView};
use super::error::ErrorBody;
use super::{
    ApiError, ApiState, MAX_PAGE, Segment, body, json_object, outcome_kind, page_limit, query, uuid,
};
use crate::store::{DeadFilter, DeliveryState, StoreError};

/// Largest JSON filter body.
const FILTER_BODY_LIMIT: usize = 64 << 10;

/// Query of `GET /v1/dlq`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Only this handler's DLQ.
    handler: Option<String>,
    /// Dead at or after (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Dead before (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
    /// The last attempt's outcome kind.
    #[param(pattern = r"^(ok|rejected|exit|trap|timeout|memory|fuel|interrupted)$")]
    outcome: Option<String>,
    /// Page size, 1 ..= 1000; default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// The previous page's `next_cursor`.
    #[param(format = Uuid)]
    cursor: Option<String>,
}

/// `GET /v1/dlq?handler=&since=&until=&outcome=&limit=&cursor=`.
#[utoipa::path(
    get,
    path = "/v1/dlq",
    tag = "dlq",
    summary = "Dead deliveries, oldest death first, paged by cursor",
    params(ListQuery),
    responses(
        (status = 200, description = "A page", body = DeadLettersView),
        (status = 400, description = "`invalid_input`: a parameter that does not parse (named)", body = ErrorBody),
        (status = 404, description = "`unknown_handler`: `handler` names none", body = ErrorBody),
    ),
)]
pub(super) async fn list(
    State(state): State<ApiState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<DeadLettersView>, ApiError> {
    let q = query(q)?;
    let filter = dead_filter(DeadFilterView {
        handler: q.handler,
        since: q.since,
        until: q.until,
        outcome: q.outcome,
    })?;
    let limit = page_limit(q.limit)?;
    let after = q.cursor.map(|c| uuid("cursor", &c)).transpose()?;
    let dead = state.store.dead_letters(&filter, after, limit).await?;
    let next_cursor = if dead.len() == limit {
        dead.last().map(|d| d.id)
    } else {
        None
    };
    Ok(Json(DeadLettersView {
        dead: dead.into_iter().map(DeliveryView::from).collect(),
        next_cursor,
    }))
}

/// `GET /v1/dlq/{id}`: a dead delivery (`409 not_dead` if it is not dead).
#[utoipa::path(
    get,
    path = "/v1/dlq/{id}",
    tag = "dlq",
    summary = "One dead delivery with its attempts",
    params(("id" = String, Path, description = "Delivery id", format = Uuid)),
    responses(
        (status = 200, description = "The dead delivery", body = DeliveryView),
        (status = 400, description = "`invalid_input`: not a UUID", body = ErrorBody),
        (status = 404, description = "`unknown_delivery`", body = ErrorBody),
        (status = 409, description = "`not_dead`: the delivery is not in the DLQ", body = ErrorBody),
    ),
)]
pub(super) async fn show(
    State(state): State<ApiState>,
    Segment(id): Segment,
) -> Result<Json<DeliveryView>, ApiError> {
    let id = uuid("delivery", &id)?;
    let delivery = state.store.delivery(id).await?;
    if delivery.state != DeliveryState::Dead {
        return Err(StoreError::NotDead(id).into());
    }
    Ok(Json(delivery.into()))
}

/// `POST /v1/dlq/{id}/replay`: back to ready with fresh attempts.
#[utoipa::path(
    post,
    path = "/v1/dlq/{id}/replay",
    tag = "dlq",
    summary = "Replay one dead delivery: back to ready with fresh attempts",
    params(("id" = String, Path, description = "Delivery id", format = Uuid)),
    responses(
        (status = 200, description = "Replayed (`count: 1`)", body = CountView),
        (status = 400, description = "`invalid_input`: not a UUID", body = ErrorBody),
        (status = 404, description = "`unknown_delivery`", body = ErrorBody),
        (status = 409, description = "`not_dead`: the delivery is not in the DLQ", body = ErrorBody),
    ),
)]
pub(super) async fn replay_one(
    State(state): State<ApiState>,
    Segment(id): Segment,
) -> Result<Json<CountView>, ApiError> {
    state.store.replay_dead(uuid("delivery", &id)?).await?;
    Ok(Json(CountView {
        count: 1,
        skipped: 0,
    }))
}

/// `DELETE /v1/dlq/{id}`: purges one dead delivery.
#[utoipa::path(
    delete,
    path = "/v1/dlq/{id}",
    tag = "dlq",
    summary = "Purge one dead delivery",
    params(("id" = String, Path, description = "Delivery id", format = Uuid)),
    responses(
        (status = 200, description = "Purged (`count: 1`)", body = CountView),
        (status = 400, description = "`invalid_input`: not a UUID", body = ErrorBody),
        (status = 404, description = "`unknown_delivery`", body = ErrorBody),
        (status = 409, description = "`not_dead`: the delivery is not in the DLQ", body = ErrorBody),
    ),
)]
pub(super) async fn purge_one(
    State(state): State<ApiState>,
    Segment(id): Segment,
) -> Result<Json<CountView>, ApiError> {
    state.store.purge_dead_one(uuid("delivery", &id)?).await?;
    Ok(Json(CountView {
        count: 1,
        skipped: 0,
    }))
}

/// `POST /v1/dlq/replay` with a JSON [`DeadFilterView`]: replays every dead
/// delivery matching it when the request starts. Deliveries that die again
/// meanwhile are not replayed twice.
#[utoipa::path(
    post,
    path = "/v1/dlq/replay",
    tag = "dlq",
    summary = "Replay every dead delivery matching a filter",
    description = "Every delivery matching when the request starts; one replayed or purged meanwhile is counted as `skipped`.",
    request_body(content = DeadFilterView, description = "Which dead deliveries; `{}` is the whole DLQ"),
    responses(
        (status = 200, description = "How many were replayed and skipped", body = CountView),
        (status = 400, description = "`invalid_input`: the filter does not parse", body = ErrorBody),
        (status = 404, description = "`unknown_handler`: `handler` names none", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is over 64 KiB", body = ErrorBody),
    ),
)]
pub(super) async fn replay_matching(
    State(state): State<ApiState>,
    request: Result<Bytes, BytesRejection>,
) -> Result<Json<CountView>, ApiError> {
    let filter = dead_filter(json_object(&body(request, FILTER_BODY_LIMIT)?)?)?;
    // Snapshot the ids first: a replayed delivery leaves the DLQ and could come
    // back (die again) while we page, and the cursor needs it to stay dead.
    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let page = state.store.dead_letters(&filter, after, MAX_PAGE).await?;
        let full = page.len() == MAX_PAGE;
        after = page.last().map(|d| d.id);
        ids.extend(page.into_iter().map(|d| d.id));
        if !full {
            break;
        }
    }
    let mut counts = CountView::default();
    for id in ids {
        match state.store.replay_dead(id).await {
            Ok(()) => counts.count += 1,
            Err(StoreError::NotDead(_) | StoreError::UnknownDelivery(_)) => counts.skipped += 1,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Json(counts))
}

/// `POST /v1/dlq/purge` with a JSON [`DeadFilterView`]: purges every dead
/// delivery matching it.
#[utoipa::path(
    post,
    path = "/v1/dlq/purge",
    tag = "dlq",
    summary = "Purge every dead delivery matching a filter",
    request_body(content = DeadFilterView, description = "Which dead deliveries; `{}` is the whole DLQ"),
    responses(
        (status = 200, description = "How many were purged", body = CountView),
        (status = 400, description = "`invalid_input`: the filter does not parse", body = ErrorBody),
        (status = 404, description = "`unknown_handler`: `handler` names none", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is over 64 KiB", body = ErrorBody),
    ),
)]
pub(super) async fn purge_matching(
    State(state): State<ApiState>,
    request: Result<Bytes, BytesRejection>,
) -> Result<Json<CountView>, ApiError> {
    let filter = dead_filter(json_object(&body(request, FILTER_BODY_LIMIT)?)?)?;
    let count = state.store.purge_dead(&filter).await?;
    Ok(Json(CountView { count, skipped: 0 }))
}

/// The store's filter from its JSON/query form: parses times, checks the
/// outcome kind.
pub(crate) fn dead_filter(view: DeadFilterView) -> Result<DeadFilter, ApiError> {
    Ok(DeadFilter {
        handler: view.handler,
        since: view.since.map(|t| super::time("since", &t)).transpose()?,
        until: view.until.map(|t| super::time("until", &t)).transpose()?,
        outcome: outcome_kind(view.outcome)?,
    })
}
