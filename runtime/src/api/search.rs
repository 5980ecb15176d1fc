//! The delivery search, `GET /v1/deliveries`: the query form parsed into a
//! [`DeliveryQuery`] once, here, for the API and the dashboard alike.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use uuid::Uuid;

use super::dto::{DeliveriesView, DeliverySearch, DeliveryView};
use super::error::ErrorBody;
use super::{ApiError, ApiState, outcome_kind, page_limit, query, time, uuid};
use crate::store::{DeliveryPage, DeliveryQuery, DeliveryState};

/// A parsed search: the store's query, its cursor and page size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Search {
    pub(crate) query: DeliveryQuery,
    pub(crate) after: Option<Uuid>,
    pub(crate) limit: usize,
}

impl Search {
    /// Parses a search form. Empty fields (as an HTML form sends them) are
    /// absent; anything else that does not parse is a `400` naming the field.
    pub(crate) fn parse(s: DeliverySearch) -> Result<Search, ApiError> {
        let given = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        let id = |what: &str, v: Option<String>| given(v).map(|v| uuid(what, v.trim())).transpose();
        let state = match given(s.state) {
            Some(name) => Some(DeliveryState::from_public_name(&name).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "unknown state {name:?}: use one of scheduled, ready, leased, retrying, succeeded, dead"
                ))
            })?),
            None => None,
        };
        let newest_first = match given(s.order).as_deref() {
            None | Some("newest") => true,
            Some("oldest") => false,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "unknown order {other:?}: use newest or oldest"
                )));
            }
        };
        Ok(Search {
            query: DeliveryQuery {
                delivery_id: id("delivery", s.delivery_id)?,
                message_id: id("message", s.message_id)?,
                idempotency_key: given(s.idempotency_key),
                ordering_key: given(s.ordering_key),
                topic: given(s.topic),
                handler: given(s.handler),
                state,
                outcome: outcome_kind(given(s.outcome))?,
                since: given(s.since).map(|t| time("since", &t)).transpose()?,
                until: given(s.until).map(|t| time("until", &t)).transpose()?,
                newest_first,
            },
            after: id("cursor", s.cursor)?,
            limit: page_limit(s.limit)?,
        })
    }

    /// Runs the search against the store.
    pub(crate) async fn run(&self, state: &ApiState) -> Result<DeliveryPage, ApiError> {
        Ok(state
            .store
            .query_deliveries(&self.query, self.after, self.limit)
            .await?)
    }
}

/// `GET /v1/deliveries?delivery_id=&message_id=&idempotency_key=&ordering_key=&topic=&handler=&state=&outcome=&since=&until=&order=&limit=&cursor=`.
#[utoipa::path(
    get,
    path = "/v1/deliveries",
    tag = "messages",
    summary = "Search deliveries",
    description = "Every parameter is optional and every one given must match; an empty value counts as absent.",
    params(DeliverySearch),
    responses(
        (status = 200, description = "A page, newest first unless `order=oldest`", body = DeliveriesView),
        (status = 400, description = "`invalid_input`: a parameter that does not parse (named)", body = ErrorBody),
        (status = 404, description = "`unknown_handler`: `handler` names none", body = ErrorBody),
    ),
)]
pub(super) async fn list(
    State(state): State<ApiState>,
    q: Result<Query<DeliverySearch>, QueryRejection>,
) -> Result<Json<DeliveriesView>, ApiError> {
    let page = Search::parse(query(q)?)?.run(&state).await?;
    Ok(Json(DeliveriesView {
        deliveries: page
            .deliveries
            .into_iter()
            .map(DeliveryView::from)
            .collect(),
        next_cursor: page.next,
    }))
}
