//! The DLQ: list (filtered, paged by cursor), show, replay and purge, one or
//! all matching.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use serde::Deserialize;

use super::dto::{CountView, DeadFilterView, DeadLettersView, DeliveryView};
use super::{
    ApiError, ApiState, MAX_PAGE, Segment, body, json, outcome_kind, page_limit, query, uuid,
};
use crate::store::{DeadFilter, DeliveryState, StoreError};

/// Largest JSON filter body.
const FILTER_BODY_LIMIT: usize = 64 << 10;

/// Query of `GET /v1/dlq`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct ListQuery {
    handler: Option<String>,
    since: Option<String>,
    until: Option<String>,
    outcome: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /v1/dlq?handler=&since=&until=&outcome=&limit=&cursor=`.
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
pub(super) async fn replay_matching(
    State(state): State<ApiState>,
    request: Result<Bytes, BytesRejection>,
) -> Result<Json<CountView>, ApiError> {
    let filter = dead_filter(json(&body(request, FILTER_BODY_LIMIT)?)?)?;
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
pub(super) async fn purge_matching(
    State(state): State<ApiState>,
    request: Result<Bytes, BytesRejection>,
) -> Result<Json<CountView>, ApiError> {
    let filter = dead_filter(json(&body(request, FILTER_BODY_LIMIT)?)?)?;
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
