//! The Schedules pages: every schedule with its next time and counts, one
//! schedule with its next five times and last occurrences (linked to their
//! messages); pause, resume and trigger as CSRF-checked `POST`s, refused for
//! a read-only session. Each calls the store verb its `/v1` route calls.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::pages::frame;
use super::session::{Actor, Viewer};
use super::{UiError, UiState};
use crate::api::schedules::{ScheduleView, detail};

/// `GET /ui/schedules`.
pub async fn list(State(state): State<UiState>, viewer: Viewer) -> Result<Response, UiError> {
    let schedules: Vec<ScheduleView> = state
        .api
        .store
        .schedules()
        .await?
        .into_iter()
        .map(|r| ScheduleView::new(r, 1))
        .collect();
    let page = state.render(
        "schedules.html",
        minijinja::context! { frame => frame(&state, &viewer, "schedules"), schedules },
    )?;
    Ok(viewer.respond(page))
}

/// `GET /ui/schedules/{id}`.
pub async fn show(
    State(state): State<UiState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let d = detail(&state.api, &id).await?;
    let page = state.render(
        "schedule.html",
        minijinja::context! {
            frame => frame(&state, &viewer, "schedules"),
            s => d.schedule,
            occurrences => d.occurrences,
        },
    )?;
    Ok(viewer.respond(page))
}

/// The form of every schedule action.
#[derive(Debug, Deserialize)]
pub struct ScheduleForm {
    csrf: String,
}

/// What a schedule action does.
enum Act {
    Pause,
    Resume,
    Trigger,
}

/// `POST /ui/schedules/{id}/pause`.
pub async fn pause(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<ScheduleForm>,
) -> Result<Response, UiError> {
    act(&state, &headers, &id, &f, Act::Pause).await
}

/// `POST /ui/schedules/{id}/resume`.
pub async fn resume(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<ScheduleForm>,
) -> Result<Response, UiError> {
    act(&state, &headers, &id, &f, Act::Resume).await
}

/// `POST /ui/schedules/{id}/trigger`: one firing now, its own key.
pub async fn trigger(
    State(state): State<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<ScheduleForm>,
) -> Result<Response, UiError> {
    act(&state, &headers, &id, &f, Act::Trigger).await
}

/// Checks the session and CSRF token, runs the verb, goes back to the page.
async fn act(
    state: &UiState,
    headers: &HeaderMap,
    id: &str,
    f: &ScheduleForm,
    what: Act,
) -> Result<Response, UiError> {
    Actor::check(headers, state, &f.csrf)?.admin()?;
    let store = state.api.store.as_ref();
    match what {
        Act::Pause => drop(store.set_schedule_paused(id, true).await?),
        Act::Resume => drop(store.set_schedule_paused(id, false).await?),
        Act::Trigger => {
            let now = state.api.clock.now();
            crate::worker::maintenance::schedules::trigger(store, id, now).await?;
            tracing::info!(schedule = %id, "triggered from the dashboard");
        }
    }
    Ok(back(id))
}

/// Back to the schedule's page (its id is checked by the verb: a valid name).
fn back(id: &str) -> Response {
    let mut to = String::from("/ui/schedules/");
    to.extend(url_escape(id));
    Redirect::to(&to).into_response()
}

/// A schedule id is `[a-z0-9._-]`, safe in a path; anything else (never
/// stored) is dropped rather than echoed into a header.
fn url_escape(id: &str) -> impl Iterator<Item = char> + '_ {
    id.chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}
