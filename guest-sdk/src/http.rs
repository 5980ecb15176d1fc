//! Outbound HTTP(S) through the host function `sluice::http_request`
//! (docs/guest-abi.md §6.3), under the handler's egress policy: only the
//! origins it allows, private and metadata addresses refused unless named,
//! per-attempt limits (docs/egress.md).
//!
//! ```
//! use sluice_guest::{http, testing, Message};
//!
//! fn handle(msg: &Message) -> sluice_guest::Result {
//!     let response = http::post("https://hooks.example.com/orders")
//!         .header("content-type", "application/json")
//!         // The provider drops a repeat of the same key: a retry after a
//!         // timeout does not post twice.
//!         .header("idempotency-key", msg.idempotency_key())
//!         .body(msg.payload())
//!         .send()?;
//!     if !response.is_success() {
//!         return Err(sluice_guest::Error::retry(format_args!("webhook answered {}", response.status)));
//!     }
//!     Ok(())
//! }
//!
//! testing::respond_http(201, "created");
//! handle(&Message::new("orders", "{}")).unwrap();
//! let sent = testing::take_http_requests();
//! assert_eq!(sent[0].method, "POST");
//! assert_eq!(sent[0].url, "https://hooks.example.com/orders");
//! ```
//!
//! Redirects are not followed: a 3xx comes back as it is, and a request to
//! its `location` is checked against the policy like any other.
#![allow(unsafe_code)]

use std::fmt;

use crate::error::Error;

#[cfg(target_arch = "wasm32")]
mod ffi {
    #[link(wasm_import_module = "sluice")]
    unsafe extern "C" {
        #[allow(clippy::too_many_arguments)]
        pub(super) fn http_request(
            method_ptr: i32,
            method_len: i32,
            url_ptr: i32,
            url_len: i32,
            headers_ptr: i32,
            headers_len: i32,
            body_ptr: i32,
            body_len: i32,
            response_ptr: i32,
            response_cap: i32,
            out_ptr: i32,
        ) -> i32;
    }
}

/// Default most bytes of a response (header block and body) kept: 1 MiB.
pub const DEFAULT_MAX_RESPONSE: usize = 1 << 20;

/// A request being built; nothing is sent until [`send`](Self::send).
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until `.send()`"]
pub struct Request {
    method: String,
    url: String,
    headers: String,
    body: Vec<u8>,
    max_response: usize,
}

/// `GET url`.
pub fn get(url: &str) -> Request {
    request("GET", url)
}

/// `POST url`.
pub fn post(url: &str) -> Request {
    request("POST", url)
}

/// A request with any method (`PUT`, `DELETE`, …).
pub fn request(method: &str, url: &str) -> Request {
    Request {
        method: method.to_owned(),
        url: url.to_owned(),
        headers: String::new(),
        body: Vec::new(),
        max_response: DEFAULT_MAX_RESPONSE,
    }
}

impl Request {
    /// Adds a header (repeatable). A name or value with a line break is
    /// refused by the host as an invalid request.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push_str(name);
        self.headers.push_str(": ");
        self.headers.push_str(value);
        self.headers.push('\n');
        self
    }

    /// The request body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Most bytes of the response (header block and body) this handler
    /// keeps; past it, [`send`](Self::send) fails with
    /// [`HttpErrorKind::Truncated`]. Default [`DEFAULT_MAX_RESPONSE`].
    pub fn max_response(mut self, bytes: usize) -> Self {
        self.max_response = bytes;
        self
    }

    /// Sends the request and waits for the whole response (within the
    /// attempt's timeout).
    pub fn send(self) -> Result<Response, HttpError> {
        let mut buffer = vec![0u8; self.max_response];
        let mut out = [0u32; 3];
        let code = raw_request(&self, &mut buffer, &mut out);
        if code != 0 {
            return Err(HttpError { code });
        }
        let [status, headers_len, body_len] = out.map(|n| n as usize);
        let head = String::from_utf8_lossy(&buffer[..headers_len]);
        let headers = head
            .split("\r\n")
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Ok(Response {
            status: status as u16,
            headers,
            body: buffer[headers_len..headers_len + body_len].to_vec(),
        })
    }
}

/// A response, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Its headers, names lowercase, in order.
    pub headers: Vec<(String, String)>,
    /// Its body.
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A refused or failed request: the status codes of docs/guest-abi.md §6.3.
/// Converted with `?` into [`Error::Retry`]: an outage or a refusal is
/// retried with backoff (a refusal until the policy is fixed, then replay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpError {
    code: i32,
}

/// Why a request failed, by status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HttpErrorKind {
    /// -4: a pointer range outside memory (a bug in the SDK or the host).
    BadPointer,
    /// -5: method, URL or headers are not UTF-8.
    BadUtf8,
    /// -10: the method, URL or a header is malformed.
    Invalid,
    /// -11: the origin is not on the allow-list, or its name resolves only
    /// to addresses the policy forbids; nothing was sent.
    Denied,
    /// -12: the attempt's requests or request bytes are used up.
    Limit,
    /// -13: the response passed the attempt's response byte limit.
    TooLarge,
    /// -14: no resolution, connection or TLS session, or the connection broke.
    Failed,
    /// -15: the response did not fit [`Request::max_response`].
    Truncated,
    /// A status this SDK version does not know (from a newer host).
    Unknown,
}

impl HttpError {
    /// The negative status the host returned.
    pub fn code(&self) -> i32 {
        self.code
    }

    /// The reason, by status code.
    pub fn kind(&self) -> HttpErrorKind {
        match self.code {
            -4 => HttpErrorKind::BadPointer,
            -5 => HttpErrorKind::BadUtf8,
            -10 => HttpErrorKind::Invalid,
            -11 => HttpErrorKind::Denied,
            -12 => HttpErrorKind::Limit,
            -13 => HttpErrorKind::TooLarge,
            -14 => HttpErrorKind::Failed,
            -15 => HttpErrorKind::Truncated,
            _ => HttpErrorKind::Unknown,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.kind() {
            HttpErrorKind::BadPointer => "bad pointer",
            HttpErrorKind::BadUtf8 => "method, URL or headers not UTF-8",
            HttpErrorKind::Invalid => "invalid method, URL or header",
            HttpErrorKind::Denied => "denied by the handler's egress policy",
            HttpErrorKind::Limit => "the attempt's request limit is used up",
            HttpErrorKind::TooLarge => "response over the attempt's limit",
            HttpErrorKind::Failed => "no connection, or it broke",
            HttpErrorKind::Truncated => "response larger than the buffer",
            HttpErrorKind::Unknown => "unknown reason",
        };
        write!(f, "HTTP request failed: {why} (status {})", self.code)
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for Error {
    fn from(e: HttpError) -> Self {
        Error::retry(e)
    }
}

#[cfg(target_arch = "wasm32")]
fn raw_request(r: &Request, buffer: &mut [u8], out: &mut [u32; 3]) -> i32 {
    // SAFETY: each (pointer, length) pair describes a live slice in this
    // module's memory for the duration of the call; the host reads the
    // request slices and writes only inside `buffer` and `out` (12 bytes),
    // keeping no reference after it returns.
    unsafe {
        ffi::http_request(
            r.method.as_ptr() as i32,
            r.method.len() as i32,
            r.url.as_ptr() as i32,
            r.url.len() as i32,
            r.headers.as_ptr() as i32,
            r.headers.len() as i32,
            r.body.as_ptr() as i32,
            r.body.len() as i32,
            buffer.as_mut_ptr() as i32,
            buffer.len() as i32,
            out.as_mut_ptr() as i32,
        )
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn raw_request(r: &Request, buffer: &mut [u8], out: &mut [u32; 3]) -> i32 {
    crate::testing::record_http(&r.method, &r.url, &r.headers, &r.body, buffer, out)
}
