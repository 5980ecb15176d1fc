//! The dashboard's pages. Each asks the store the same verbs as `/v1` and
//! renders the same JSON documents (`api::dto`) through a template.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::history::Sample;
use super::session::Viewer;
use super::{PAYLOAD_SHOWN_BYTES, UiError, UiState};
use crate::api::ApiError;
use crate::api::dlq::dead_filter;
use crate::api::dto::{
    DeadFilterView, DeliverySearch, DeliveryView, HandlerView, MessageView, StatsView,
};
use crate::api::search::Search;
use crate::outcome::Outcome;
use crate::store::{DeadFilter, DeliveryState};

/// Dead deliveries counted for the DLQ page's bulk confirmation, at most.
pub const DLQ_COUNT_LIMIT: usize = 100_000;

fn parse<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, UiError> {
    q.map(|q| q.0)
        .map_err(|r| UiError::Api(ApiError::BadRequest(r.body_text())))
}

fn uuid(what: &str, s: &str) -> Result<uuid::Uuid, UiError> {
    uuid::Uuid::parse_str(s)
        .map_err(|_| UiError::Api(ApiError::BadRequest(format!("invalid {what} id {s:?}"))))
}

/// What every page's frame shows.
#[derive(Serialize)]
pub(super) struct Frame<'a> {
    page: &'a str,
    csrf: &'a str,
    read_only: bool,
    login: bool,
}

pub(super) fn frame<'a>(state: &UiState, viewer: &'a Viewer, page: &'a str) -> Frame<'a> {
    Frame {
        page,
        csrf: &viewer.session.csrf,
        read_only: viewer.session.role == super::session::Role::ReadOnly,
        login: state.api.token.is_some(),
    }
}

/// `GET /ui`: the three signals per handler, totals and rate charts.
pub async fn overview(State(state): State<UiState>, viewer: Viewer) -> Result<Response, UiError> {
    let now = state.api.clock.now();
    let stats = StatsView::new(state.api.store.stats().await?, now);
    let charts = state.history.charts(Sample::of(&state.api.metrics, now));
    let page = state.render(
        "overview.html",
        minijinja::context! { frame => frame(&state, &viewer, "overview"), stats, charts },
    )?;
    Ok(viewer.respond(page))
}

/// `GET /ui/handlers`: policy, module, version, counts; pause, resume, replay.
pub async fn handlers(State(state): State<UiState>, viewer: Viewer) -> Result<Response, UiError> {
    let now = state.api.clock.now();
    let stats = StatsView::new(state.api.store.stats().await?, now);
    let handlers: Vec<_> = state
        .api
        .store
        .handlers()
        .await?
        .into_iter()
        .map(|h| {
            let counts = stats
                .handlers
                .iter()
                .find(|s| s.handler == h.name)
                .map(|s| s.counts.clone())
                .unwrap_or_default();
            minijinja::context! { h => HandlerView::from(h), counts }
        })
        .collect();
    let page = state.render(
        "handlers.html",
        minijinja::context! { frame => frame(&state, &viewer, "handlers"), handlers },
    )?;
    Ok(viewer.respond(page))
}

/// `GET /ui/deliveries?…`: the search form and its results, which are also
/// the lists of deliveries by state per handler (the `/v1/deliveries` query).
pub async fn deliveries(
    State(state): State<UiState>,
    viewer: Viewer,
    q: Result<Query<DeliverySearch>, QueryRejection>,
) -> Result<Response, UiError> {
    let form = parse(q)?;
    let search = Search::parse(DeliverySearch {
        limit: Some(form.limit.unwrap_or(50)),
        ..form.clone()
    })?;
    let page = search.run(&state.api).await?;
    let results: Vec<DeliveryView> = page
        .deliveries
        .into_iter()
        .map(DeliveryView::from)
        .collect();
    let next = page.next.map(|n| {
        let mut f = form.clone();
        f.cursor = Some(n.to_string());
        serde_urlencoded_query(&f)
    });
    let handlers = handler_names(&state).await?;
    let rendered = state.render(
        "deliveries.html",
        minijinja::context! {
            frame => frame(&state, &viewer, "deliveries"),
            form, results, next, handlers,
            states => ["scheduled", "ready", "leased", "retrying", "succeeded", "dead"],
            kinds => Outcome::KINDS,
        },
    )?;
    Ok(viewer.respond(rendered))
}

/// Every handler's name, for the filters' choices.
async fn handler_names(state: &UiState) -> Result<Vec<String>, UiError> {
    Ok(state
        .api
        .store
        .handlers()
        .await?
        .into_iter()
        .map(|h| h.name)
        .collect())
}

/// A search form as a query string (for the next page's link).
fn serde_urlencoded_query(f: &DeliverySearch) -> String {
    let v = serde_json::to_value(f).unwrap_or_default();
    let mut out = Vec::new();
    if let Some(map) = v.as_object() {
        for (k, v) in map {
            let s = match v {
                serde_json::Value::String(s) if !s.is_empty() => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => continue,
            };
            out.push(format!("{k}={}", percent(&s)));
        }
    }
    out.join("&")
}

/// Percent-encodes everything but unreserved characters.
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// How the message page shows the payload.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PayloadQuery {
    /// `text` or `hex`; hidden when absent.
    payload: Option<String>,
}

/// `GET /ui/deliveries/{id}`: the page of the delivery's message, this
/// delivery first.
pub async fn delivery(
    State(state): State<UiState>,
    viewer: Viewer,
    Path(id): Path<String>,
    q: Result<Query<PayloadQuery>, QueryRejection>,
) -> Result<Response, UiError> {
    let id = uuid("delivery", &id)?;
    let d = state.api.store.delivery(id).await?;
    render_message(&state, &viewer, d.message_id, Some(id), parse(q)?).await
}

/// `GET /ui/messages/{id}`: the message, every delivery and every attempt
/// across replay rounds; the payload on request, size-capped, text or hex.
pub async fn message(
    State(state): State<UiState>,
    viewer: Viewer,
    Path(id): Path<String>,
    q: Result<Query<PayloadQuery>, QueryRejection>,
) -> Result<Response, UiError> {
    let id = uuid("message", &id)?;
    render_message(&state, &viewer, id, None, parse(q)?).await
}

async fn render_message(
    state: &UiState,
    viewer: &Viewer,
    id: uuid::Uuid,
    first: Option<uuid::Uuid>,
    q: PayloadQuery,
) -> Result<Response, UiError> {
    let status = state.api.store.message(id).await?;
    let payload = &status.message.payload;
    let shown = &payload[..payload.len().min(PAYLOAD_SHOWN_BYTES)];
    let payload_view = match q.payload.as_deref() {
        None => None,
        Some("text") => Some(String::from_utf8_lossy(shown).into_owned()),
        Some("hex") => Some(
            shown
                .chunks(32)
                .map(hex::encode)
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "unknown payload view {other:?}: use text or hex"
            ))
            .into());
        }
    };
    let payload_bytes = payload.len();
    let payload_cut = payload_view.is_some() && payload_bytes > PAYLOAD_SHOWN_BYTES;
    let mut view = MessageView::from(status);
    if let Some(first) = first {
        view.deliveries.sort_by_key(|d| d.id != first);
    }
    let page = state.render(
        "message.html",
        minijinja::context! {
            frame => frame(state, viewer, "message"),
            message => view, first, payload => payload_view, payload_bytes, payload_cut,
            payload_cap => PAYLOAD_SHOWN_BYTES,
        },
    )?;
    Ok(viewer.respond(page))
}

/// `GET /ui/dlq?handler=&outcome=&since=&until=&cursor=`: dead deliveries,
/// filtered, with the count the bulk actions would touch.
pub async fn dlq(
    State(state): State<UiState>,
    viewer: Viewer,
    q: Result<Query<DlqQuery>, QueryRejection>,
) -> Result<Response, UiError> {
    let q = parse(q)?;
    let view = q.filter_view();
    let filter = dead_filter(view.clone())?;
    let after = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(uuid("cursor", c)?),
        None => None,
    };
    let page = state.api.store.dead_letters(&filter, after, 50).await?;
    let next = (page.len() == 50)
        .then(|| page.last().map(|d| d.id))
        .flatten();
    let dead: Vec<DeliveryView> = page.into_iter().map(DeliveryView::from).collect();
    let matching = count_dead(&state, &filter).await?;
    let handlers = handler_names(&state).await?;
    let rendered = state.render(
        "dlq.html",
        minijinja::context! {
            frame => frame(&state, &viewer, "dlq"),
            filter => view, dead, next, matching, handlers, kinds => Outcome::KINDS,
            count_limit => DLQ_COUNT_LIMIT,
        },
    )?;
    Ok(viewer.respond(rendered))
}

/// How many dead deliveries match `filter` (up to [`DLQ_COUNT_LIMIT`]).
pub async fn count_dead(state: &UiState, filter: &DeadFilter) -> Result<usize, UiError> {
    Ok(dead_ids(state, filter).await?.len())
}

/// The ids of the dead deliveries matching `filter`, oldest death first
/// (up to [`DLQ_COUNT_LIMIT`]).
pub async fn dead_ids(state: &UiState, filter: &DeadFilter) -> Result<Vec<uuid::Uuid>, UiError> {
    let mut ids = Vec::new();
    let mut after = None;
    while ids.len() < DLQ_COUNT_LIMIT {
        let page = state.api.store.dead_letters(filter, after, 1000).await?;
        let full = page.len() == 1000;
        after = page.last().map(|d| d.id);
        ids.extend(
            page.into_iter()
                .filter(|d| d.state == DeliveryState::Dead)
                .map(|d| d.id),
        );
        if !full {
            break;
        }
    }
    ids.truncate(DLQ_COUNT_LIMIT);
    Ok(ids)
}

/// The DLQ page's query: a [`DeadFilterView`] as form fields, and a cursor.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DlqQuery {
    /// Handler.
    pub handler: Option<String>,
    /// Outcome kind.
    pub outcome: Option<String>,
    /// Dead at or after (RFC 3339).
    pub since: Option<String>,
    /// Dead before (RFC 3339).
    pub until: Option<String>,
    /// Page cursor.
    pub cursor: Option<String>,
}

impl DlqQuery {
    /// The filter, empty fields absent.
    pub fn filter_view(&self) -> DeadFilterView {
        let given = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        DeadFilterView {
            handler: given(&self.handler),
            since: given(&self.since),
            until: given(&self.until),
            outcome: given(&self.outcome),
        }
    }
}
