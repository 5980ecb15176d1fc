//! The HTTP client of the CLI: one [`Client`] per invocation, bearer token on
//! every request, server errors turned into [`ServerError`]s carrying the API's
//! `code` and `message`.

use std::fmt;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;

use crate::api::error::ErrorBody;

/// Where the server listens unless `--url` or `SLUICE_URL` says otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:7777";

/// An error answer of the server: its status, code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// HTTP status.
    pub status: StatusCode,
    /// The API's error code, e.g. `queue_full` (`http_error` when the body was not ours).
    pub code: String,
    /// The API's message.
    pub message: String,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ServerError {}

/// A connection to one sluice server.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client for the server at `url` (e.g. `http://127.0.0.1:7777`).
    pub fn new(url: &str, token: Option<String>) -> anyhow::Result<Client> {
        let base = url.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            anyhow::bail!("invalid server URL {url:?}: expected http://HOST:PORT");
        }
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .user_agent(concat!("sluice-cli/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Client { http, base, token })
    }

    /// A request to `path` (starting with `/`), authenticated when a token is set.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let rb = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// `GET path`, decoded.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.request(Method::GET, path)).await
    }

    /// `POST path` without a body, decoded.
    pub async fn post<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.request(Method::POST, path)).await
    }

    /// Sends a request and decodes a 2xx JSON answer; anything else becomes a
    /// [`ServerError`] or a connection error naming the server.
    pub async fn send<T: DeserializeOwned>(&self, rb: RequestBuilder) -> anyhow::Result<T> {
        let response = rb.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| anyhow::anyhow!("reading the answer of {}: {}", self.base, root(&e)))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!("unexpected answer from {} ({status}): {e}", self.base)
            });
        }
        Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => ServerError {
                status,
                code: body.error.code,
                message: body.error.message,
            },
            Err(_) => ServerError {
                status,
                code: "http_error".into(),
                message: format!(
                    "server answered {status}: {}",
                    String::from_utf8_lossy(&bytes).trim()
                ),
            },
        }
        .into())
    }

    fn unreachable(&self, e: &reqwest::Error) -> anyhow::Error {
        anyhow::anyhow!(
            "cannot reach the sluice server at {} ({}); is `sluice serve` running? (set --url or SLUICE_URL)",
            self.base,
            root(e)
        )
    }
}

/// The innermost cause of an error: reqwest's own message is generic.
fn root(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
