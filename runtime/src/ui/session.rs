//! Who is looking: login with a token, sessions in a cookie, roles, CSRF.
//!
//! - **No token on the server** (loopback by default): every browser is an
//!   admin; a session is still opened on its first page, for its CSRF token.
//! - **With a token**: `/ui/login` asks for it. The server's token opens an
//!   admin session, the read-only token (`--read-token`) a read-only one;
//!   anything else is refused. The cookie (`sluice_session`) holds a random
//!   session id, never the token: `HttpOnly; SameSite=Strict; Path=/ui`.
//! - **CSRF**: every form carries the session's random CSRF token; a `POST`
//!   without it, with another, or with an `Origin` other than the server's
//!   own is refused. SameSite=Strict already keeps the cookie off
//!   cross-site requests; the token also covers the tokenless mode.
//!
//! Sessions live in memory (a restart logs everyone out), at most
//! [`MAX_SESSIONS`], the oldest dropped first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use axum::Form;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use super::{UiError, UiState};
use crate::api::auth::same;

/// The session cookie's name.
pub const COOKIE: &str = "sluice_session";
/// Most sessions kept; the oldest is dropped past this.
pub const MAX_SESSIONS: usize = 1024;

/// What a session may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Every page; no action.
    ReadOnly,
}

/// One logged-in browser.
#[derive(Debug, Clone, Serialize)]
pub struct Session {
    /// Its role.
    pub role: Role,
    /// The token its forms must carry.
    pub csrf: String,
}

/// The sessions of this process.
#[derive(Debug, Default)]
pub struct Sessions {
    inner: Mutex<(HashMap<String, Session>, VecDeque<String>)>,
}

impl Sessions {
    /// Opens a session; returns its id.
    pub fn open(&self, role: Role) -> String {
        let id = random_hex();
        let session = Session {
            role,
            csrf: random_hex(),
        };
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0.insert(id.clone(), session);
        g.1.push_back(id.clone());
        while g.1.len() > MAX_SESSIONS {
            if let Some(old) = g.1.pop_front() {
                g.0.remove(&old);
            }
        }
        id
    }

    /// The session `id`, if open.
    pub fn get(&self, id: &str) -> Option<Session> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0.get(id).cloned()
    }

    /// Closes a session.
    pub fn close(&self, id: &str) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0.remove(id);
        g.1.retain(|s| s != id);
    }
}

/// 32 random bytes, hex.
fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The `Set-Cookie` value of session `id`.
fn cookie(id: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/ui"
    ))
    .expect("hex is a valid header value")
}

/// The session id in the request's cookies.
fn cookie_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// The session of a page request. Without one: a redirect to the login form
/// when the server has a token; otherwise a new admin session, whose cookie
/// the page sets ([`Viewer::new_cookie`]).
#[derive(Debug, Clone)]
pub struct Viewer {
    /// Its session.
    pub session: Session,
    /// Set when the session was opened by this request.
    pub new_cookie: Option<HeaderValue>,
}

/// The answer to a page request without a session on a server with a token.
#[derive(Debug)]
pub struct LoginFirst;

impl IntoResponse for LoginFirst {
    fn into_response(self) -> Response {
        Redirect::to("/ui/login").into_response()
    }
}

impl FromRequestParts<UiState> for Viewer {
    type Rejection = LoginFirst;

    async fn from_request_parts(parts: &mut Parts, state: &UiState) -> Result<Self, LoginFirst> {
        if let Some(session) = cookie_id(&parts.headers).and_then(|id| state.sessions.get(&id)) {
            return Ok(Viewer {
                session,
                new_cookie: None,
            });
        }
        if state.api.token.is_some() {
            return Err(LoginFirst);
        }
        let id = state.sessions.open(Role::Admin);
        let session = state.sessions.get(&id).expect("just opened");
        Ok(Viewer {
            session,
            new_cookie: Some(cookie(&id)),
        })
    }
}

impl Viewer {
    /// `page` with the new session's cookie, if one was opened.
    pub fn respond(&self, page: impl IntoResponse) -> Response {
        let mut res = page.into_response();
        if let Some(c) = &self.new_cookie {
            res.headers_mut().insert(header::SET_COOKIE, c.clone());
        }
        res
    }
}

/// The session behind a state-changing `POST`, checked: an open session, the
/// form's CSRF token, the request's origin and (with [`Actor::admin`]) its role.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The session.
    pub session: Session,
}

impl Actor {
    /// Checks a `POST`: its session, its origin and the form's `csrf`.
    pub fn check(parts: &HeaderMap, state: &UiState, csrf: &str) -> Result<Actor, UiError> {
        let session = cookie_id(parts)
            .and_then(|id| state.sessions.get(&id))
            .ok_or(UiError::Csrf)?;
        if !same_origin(parts) || !same(csrf.as_bytes(), session.csrf.as_bytes()) {
            return Err(UiError::Csrf);
        }
        Ok(Actor { session })
    }

    /// Refuses a read-only session.
    pub fn admin(self) -> Result<Actor, UiError> {
        match self.session.role {
            Role::Admin => Ok(self),
            Role::ReadOnly => Err(UiError::ReadOnly),
        }
    }
}

/// False when the request names an `Origin` whose host is not the `Host` it
/// was sent to (a cross-site form); true without an `Origin` (older clients).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, h)| h);
    matches!((origin_host, host), (Some(o), Some(h)) if o == h)
}

/// The login form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `GET /ui/login`.
pub async fn login_form(State(state): State<UiState>) -> Result<Response, UiError> {
    Ok(state
        .render(
            "login.html",
            minijinja::context! { error => None::<String>, needs_token => state.api.token.is_some() },
        )?
        .into_response())
}

/// `POST /ui/login`: the server's token opens an admin session, the
/// read-only token a read-only one; a wrong token is `401` with the form again.
pub async fn login(
    State(state): State<UiState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, UiError> {
    if !same_origin(&headers) {
        return Err(UiError::Csrf);
    }
    let given = form.token.trim().as_bytes();
    let role = match (&state.api.token, &state.api.read_token) {
        (None, _) => Some(Role::Admin),
        (Some(t), _) if same(given, t.as_bytes()) => Some(Role::Admin),
        (Some(_), Some(r)) if same(given, r.as_bytes()) => Some(Role::ReadOnly),
        _ => None,
    };
    let Some(role) = role else {
        let page = state.render(
            "login.html",
            minijinja::context! { error => Some("wrong token"), needs_token => true },
        )?;
        return Ok((StatusCode::UNAUTHORIZED, page).into_response());
    };
    let id = state.sessions.open(role);
    let mut res = Redirect::to("/ui").into_response();
    res.headers_mut().insert(header::SET_COOKIE, cookie(&id));
    Ok(res)
}

/// The form of an action that needs nothing but its CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    /// The session's CSRF token.
    pub csrf: String,
}

/// `POST /ui/logout`: closes the session and expires the cookie.
pub async fn logout(
    State(state): State<UiState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, UiError> {
    Actor::check(&headers, &state, &form.csrf)?;
    if let Some(id) = cookie_id(&headers) {
        state.sessions.close(&id);
    }
    let mut res = Redirect::to("/ui/login").into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("sluice_session=; HttpOnly; SameSite=Strict; Path=/ui; Max-Age=0"),
    );
    Ok(res)
}
