//! The dashboard's actions: every one a `POST` whose form carries the
//! session's CSRF token, refused for a read-only session
//! ([`Actor::admin`]), answered with `303 See Other` back to the page it came
//! from. Each calls the store verb its `/v1` route calls.

use std::time::Instant;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::pages::{DlqQuery, dead_ids};
use super::session::Actor;
use super::{UiError, UiState};
use crate::api::ApiError;
use crate::api::dlq::dead_filter;
use crate::cli::pace::Pacer;
use crate::store::StoreError;

/// A single action's form.
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    csrf: String,
    /// Where to go afterwards (a `/ui` path).
    #[serde(default)]
    back: Option<String>,
    /// `replay-since`: RFC 3339.
    #[serde(default)]
    since: Option<String>,
}

/// `back` when it is a dashboard path, else `default`.
fn back_to(back: Option<&str>, default: &str) -> Redirect {
    match back {
        Some(b) if b.starts_with("/ui") && !b.starts_with("//") && !b.contains("\\") => {
            Redirect::to(b)
        }
        _ => Redirect::to(default),
    }
}

fn uuid(s: &str) -> Result<uuid::Uuid, UiError> {
    uuid::Uuid::parse_str(s)
        .map_err(|_| UiError::Api(ApiError::BadRequest(format!("invalid delivery id {s:?}"))))
}

/// `POST /ui/handlers/{name}/pause`.
pub async fn pause(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<ActionForm>,
) -> Result<Response, UiError> {
    set_paused(&state, &headers, &name, f, true).await
}

/// `POST /ui/handlers/{name}/resume`.
pub async fn resume(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<ActionForm>,
) -> Result<Response, UiError> {
    set_paused(&state, &headers, &name, f, false).await
}

async fn set_paused(
    state: &UiState,
    headers: &HeaderMap,
    name: &str,
    f: ActionForm,
    paused: bool,
) -> Result<Response, UiError> {
    Actor::check(headers, state, &f.csrf)?.admin()?;
    state.api.store.set_paused(name, paused).await?;
    Ok(back_to(f.back.as_deref(), "/ui/handlers").into_response())
}

/// `POST /ui/handlers/{name}/replay` with `since`: re-delivers the topic's
/// retained messages from that time to this handler.
pub async fn replay_since(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<ActionForm>,
) -> Result<Response, UiError> {
    Actor::check(&headers, &state, &f.csrf)?.admin()?;
    let since = f.since.as_deref().unwrap_or("");
    let since = crate::clock::Timestamp::parse_rfc3339(since.trim())
        .map_err(|e| UiError::Api(ApiError::BadRequest(format!("since: {e}"))))?;
    let n = state.api.store.replay_since(&name, since).await?;
    tracing::info!(handler = %name, replayed = n, "replayed from the dashboard");
    Ok(back_to(f.back.as_deref(), "/ui/handlers").into_response())
}

/// `POST /ui/dlq/{id}/replay`.
pub async fn replay_one(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<ActionForm>,
) -> Result<Response, UiError> {
    Actor::check(&headers, &state, &f.csrf)?.admin()?;
    state.api.store.replay_dead(uuid(&id)?).await?;
    Ok(back_to(f.back.as_deref(), "/ui/dlq").into_response())
}

/// `POST /ui/dlq/{id}/purge`.
pub async fn purge_one(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<ActionForm>,
) -> Result<Response, UiError> {
    Actor::check(&headers, &state, &f.csrf)?.admin()?;
    state.api.store.purge_dead_one(uuid(&id)?).await?;
    Ok(back_to(f.back.as_deref(), "/ui/dlq").into_response())
}

/// A bulk action's form: the DLQ filter, the count confirmed, a rate.
#[derive(Debug, Deserialize)]
pub struct BulkForm {
    csrf: String,
    #[serde(default)]
    handler: Option<String>,
    #[serde(default)]
    outcome: Option<String>,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    until: Option<String>,
    /// The count the confirmation page stated; absent: show that page.
    #[serde(default)]
    confirm: Option<String>,
    /// Replays per second (empty: all at once).
    #[serde(default)]
    rate: Option<String>,
}

impl BulkForm {
    fn query(&self) -> DlqQuery {
        DlqQuery {
            handler: self.handler.clone(),
            outcome: self.outcome.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
            cursor: None,
        }
    }

    fn rate(&self) -> Result<Option<f64>, UiError> {
        match self
            .rate
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
        {
            None => Ok(None),
            Some(r) => match r.parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 => Ok(Some(v)),
                _ => Err(UiError::Api(ApiError::BadRequest(format!(
                    "rate must be a positive number of replays per second, not {r:?}"
                )))),
            },
        }
    }
}

/// `POST /ui/dlq/replay`: without `confirm`, a page stating how many dead
/// deliveries match and asking to confirm; with it, replays them (paced at
/// `rate` per second in the background, as `sluice dlq replay --rate` does).
pub async fn replay_matching(
    State(state): State<UiState>,
    headers: HeaderMap,
    Form(f): Form<BulkForm>,
) -> Result<Response, UiError> {
    bulk(state, headers, f, Bulk::Replay).await
}

/// `POST /ui/dlq/purge`: as [`replay_matching`], purging.
pub async fn purge_matching(
    State(state): State<UiState>,
    headers: HeaderMap,
    Form(f): Form<BulkForm>,
) -> Result<Response, UiError> {
    bulk(state, headers, f, Bulk::Purge).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bulk {
    Replay,
    Purge,
}

async fn bulk(
    state: UiState,
    headers: HeaderMap,
    f: BulkForm,
    what: Bulk,
) -> Result<Response, UiError> {
    let actor = Actor::check(&headers, &state, &f.csrf)?.admin()?;
    let view = f.query().filter_view();
    let filter = dead_filter(view.clone())?;
    let rate = f.rate()?;
    let ids = dead_ids(&state, &filter).await?;
    let verb = match what {
        Bulk::Replay => "replay",
        Bulk::Purge => "purge",
    };
    if f.confirm.is_none() {
        let page = state.render(
            "confirm.html",
            minijinja::context! {
                frame => minijinja::context! { page => "dlq", csrf => actor.session.csrf, read_only => false },
                verb, count => ids.len(), filter => view, rate => f.rate,
            },
        )?;
        return Ok(page.into_response());
    }
    match what {
        Bulk::Purge => {
            let n = state.api.store.purge_dead(&filter).await?;
            tracing::info!(purged = n, "purged from the dashboard");
        }
        Bulk::Replay => {
            let store = state.api.store.clone();
            let task = async move {
                let start = Instant::now();
                let mut pacer = rate.map(Pacer::new);
                let (mut replayed, mut skipped) = (0u64, 0u64);
                for id in ids {
                    if let Some(p) = pacer.as_mut() {
                        tokio::time::sleep(p.wait(start.elapsed())).await;
                    }
                    match store.replay_dead(id).await {
                        Ok(()) => replayed += 1,
                        Err(StoreError::NotDead(_) | StoreError::UnknownDelivery(_)) => {
                            skipped += 1;
                        }
                        Err(e) => return Err(e),
                    }
                }
                tracing::info!(replayed, skipped, "replayed from the dashboard");
                Ok(())
            };
            if rate.is_some() {
                tokio::spawn(async move {
                    if let Err(e) = task.await {
                        tracing::error!(error = %e, "paced replay from the dashboard stopped");
                    }
                });
            } else {
                task.await?;
            }
        }
    }
    Ok(Redirect::to("/ui/dlq").into_response())
}
