//! The web dashboard at `/ui`: server-rendered HTML over the same store
//! verbs and JSON documents as `/v1` (no second data path), templates and
//! assets embedded in the binary, no JavaScript needed except for live
//! refresh.
//!
//! # Module map
//! | question | where |
//! | --- | --- |
//! | the router, the shared state, the security headers, rendering | this file |
//! | login, sessions, roles (admin / read-only), CSRF | [`session`] |
//! | the pages (overview, handlers, deliveries and search, message, DLQ) | [`pages`] |
//! | the actions (pause, resume, replay-since, DLQ replay and purge) | [`actions`] |
//! | the rolling history behind the overview's rate charts | [`history`] |
//! | the schedules pages and their actions (pause, resume, trigger) | [`schedules`] |
//! | the templates and assets | `templates/`, `assets/` |
//!
//! # Safety
//! - Every value is escaped by the template engine (minijinja's HTML
//!   auto-escape for `.html` templates); no template marks anything safe.
//! - Responses carry a Content-Security-Policy without inline scripts or
//!   styles (`script-src 'self'`): the one script is `/ui/assets/app.js`.
//! - Every state change is a `POST` carrying the session's CSRF token, and
//!   the session cookie is `HttpOnly; SameSite=Strict`; a read-only session's
//!   changes are refused by the server ([`session::Role`]).

pub mod actions;
pub mod history;
pub mod pages;
pub mod schedules;
pub mod session;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::Environment;
use serde::Serialize;
use thiserror::Error;

use crate::api::{ApiError, ApiState, router as api_router};

pub use history::History;
pub use session::Sessions;

/// The Content-Security-Policy of every dashboard response.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Largest payload shown on the message page; the rest is cut with a mark.
pub const PAYLOAD_SHOWN_BYTES: usize = 64 << 10;

/// What the dashboard's handlers share. Cheap to clone.
#[derive(Clone)]
pub struct UiState {
    /// The API's state: the store, the clock, the tokens.
    pub api: ApiState,
    /// Logged-in browsers.
    pub sessions: Arc<Sessions>,
    /// Rate history for the overview's charts.
    pub history: Arc<History>,
    templates: Arc<Environment<'static>>,
}

impl UiState {
    /// The dashboard over `api`, with `history` (sampled by the server).
    pub fn new(api: ApiState, history: Arc<History>) -> UiState {
        UiState {
            api,
            sessions: Arc::new(Sessions::default()),
            history,
            templates: Arc::new(templates()),
        }
    }

    /// Renders template `name` with `ctx`.
    fn render(&self, name: &str, ctx: impl Serialize) -> Result<Html<String>, UiError> {
        let t = self
            .templates
            .get_template(name)
            .map_err(|e| UiError::Template(e.to_string()))?;
        t.render(ctx)
            .map(Html)
            .map_err(|e| UiError::Template(e.to_string()))
    }
}

/// The templates, compiled once; HTML auto-escape by file name.
fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("templates/base.html")),
        ("login.html", include_str!("templates/login.html")),
        ("overview.html", include_str!("templates/overview.html")),
        ("handlers.html", include_str!("templates/handlers.html")),
        ("deliveries.html", include_str!("templates/deliveries.html")),
        ("message.html", include_str!("templates/message.html")),
        ("dlq.html", include_str!("templates/dlq.html")),
        ("confirm.html", include_str!("templates/confirm.html")),
        ("error.html", include_str!("templates/error.html")),
        ("schedules.html", include_str!("templates/schedules.html")),
        ("schedule.html", include_str!("templates/schedule.html")),
        (
            "schedule_actions.html",
            include_str!("templates/schedule_actions.html"),
        ),
    ] {
        env.add_template(name, source)
            .unwrap_or_else(|e| panic!("built-in template {name}: {e}"));
    }
    env
}

/// The whole server: the API, and the dashboard when `ui` is on. The
/// dashboard's routes sit beside the API's bearer-token layer, not under it:
/// a browser presents a session cookie instead ([`session`]).
pub fn app(api: ApiState, ui: Option<Arc<History>>) -> Router {
    let routes = api_router(api.clone());
    match ui {
        Some(history) => routes.merge(router(UiState::new(api, history))),
        None => routes,
    }
}

/// The dashboard's routes, all under `/ui`.
pub fn router(state: UiState) -> Router {
    Router::new()
        .route("/ui", get(pages::overview))
        .route("/ui/", get(pages::overview))
        .route("/ui/login", get(session::login_form).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/handlers", get(pages::handlers))
        .route("/ui/handlers/{name}/pause", post(actions::pause))
        .route("/ui/handlers/{name}/resume", post(actions::resume))
        .route("/ui/handlers/{name}/replay", post(actions::replay_since))
        .route("/ui/deliveries", get(pages::deliveries))
        .route("/ui/deliveries/{id}", get(pages::delivery))
        .route("/ui/messages/{id}", get(pages::message))
        .route("/ui/dlq", get(pages::dlq))
        .route("/ui/dlq/replay", post(actions::replay_matching))
        .route("/ui/dlq/purge", post(actions::purge_matching))
        .route("/ui/dlq/{id}/replay", post(actions::replay_one))
        .route("/ui/dlq/{id}/purge", post(actions::purge_one))
        .route("/ui/schedules", get(schedules::list))
        .route("/ui/schedules/{id}", get(schedules::show))
        .route("/ui/schedules/{id}/pause", post(schedules::pause))
        .route("/ui/schedules/{id}/resume", post(schedules::resume))
        .route("/ui/schedules/{id}/trigger", post(schedules::trigger))
        .route("/ui/assets/app.js", get(script))
        .route("/ui/assets/style.css", get(style))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// The security headers on every dashboard response. The referrer policy is
/// `same-origin`, not `no-referrer`: under `no-referrer` browsers send
/// `Origin: null` on form posts, which the CSRF check must refuse.
async fn security_headers(request: axum::extract::Request, next: Next) -> Response {
    let mut res = next.run(request).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/app.js"),
    )
}

async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/style.css"),
    )
}

/// A dashboard request that failed, rendered as an HTML page with its status.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum UiError {
    /// From the API layer (the store, a bad query): its status and message.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The session's role may not do this (a read-only token). 403.
    #[error("read-only session: this action is refused (log in with the server's token)")]
    ReadOnly,
    /// The form's CSRF token is missing or wrong, or the request came from
    /// another origin. 403.
    #[error("cross-site request refused: reload the page and try again")]
    Csrf,
    /// A template failed to render: a bug. 500.
    #[error("template error: {0}")]
    Template(String),
}

impl From<crate::store::StoreError> for UiError {
    fn from(e: crate::store::StoreError) -> Self {
        UiError::Api(e.into())
    }
}

impl UiError {
    fn status(&self) -> StatusCode {
        match self {
            UiError::Api(e) => e.status().0,
            UiError::ReadOnly | UiError::Csrf => StatusCode::FORBIDDEN,
            UiError::Template(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "dashboard request failed");
        }
        let message = self.to_string();
        let body = templates()
            .get_template("error.html")
            .and_then(|t| t.render(minijinja::context! { status => status.as_u16(), message }))
            .unwrap_or_else(|_| "error".to_string());
        (status, Html(body)).into_response()
    }
}
