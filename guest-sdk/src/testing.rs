//! The host-side test double for `publish`, `log` and `http` (not on `wasm32`).
//!
//! Off wasm, [`publish`](crate::publish), [`log`](crate::log) and
//! [`http`](crate::http) requests record each call
//! in a thread-local of the calling thread, so a unit test calls its handler
//! directly and then inspects what it published and logged. Each test runs on
//! its own thread under `cargo test`, so records never mix between tests.
//!
//! ```
//! use sluice_guest::{testing, Message};
//!
//! fn handle(msg: &Message) -> sluice_guest::Result {
//!     sluice_guest::info!("got {} bytes", msg.payload().len());
//!     sluice_guest::publish("audit", msg.payload()).send()?;
//!     Ok(())
//! }
//!
//! handle(&Message::new("orders", "hello")).unwrap();
//! let sent = testing::take_published();
//! assert_eq!(sent.len(), 1);
//! assert_eq!((sent[0].topic.as_str(), sent[0].payload.as_slice()), ("audit", &b"hello"[..]));
//! assert_eq!(testing::take_logs(), vec![(sluice_guest::Level::Info, "got 5 bytes".to_string())]);
//!
//! // Make the host refuse publishes, as a real one would past a limit:
//! testing::fail_publishes(Some(-3));
//! assert!(handle(&Message::new("orders", "hello")).is_err());
//! testing::fail_publishes(None);
//! ```

use std::cell::{Cell, RefCell};
use std::time::Duration;

use crate::host::Level;

/// One recorded call of [`publish`](crate::publish).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The topic published to.
    pub topic: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// The ordering key, if one was set.
    pub ordering_key: Option<String>,
    /// The delay (zero for none).
    pub delay: Duration,
}

impl Published {
    /// The payload as text (lossy), for assertions.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// One recorded request of [`http`](crate::http).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The URL.
    pub url: String,
    /// Its headers, in order.
    pub headers: Vec<(String, String)>,
    /// Its body.
    pub body: Vec<u8>,
}

thread_local! {
    static HTTP: RefCell<Vec<HttpRequest>> = const { RefCell::new(Vec::new()) };
    static HTTP_RESPONSE: RefCell<(u16, Vec<u8>)> = const { RefCell::new((200, Vec::new())) };
    static PUBLISHED: RefCell<Vec<Published>> = const { RefCell::new(Vec::new()) };
    static LOGS: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
    static FAIL_WITH: Cell<Option<i32>> = const { Cell::new(None) };
}

/// Takes (and clears) the messages published on this thread so far.
pub fn take_published() -> Vec<Published> {
    PUBLISHED.with(|p| p.take())
}

/// Takes (and clears) the log lines written on this thread so far.
pub fn take_logs() -> Vec<(Level, String)> {
    LOGS.with(|l| l.take())
}

/// Makes every following publish on this thread fail with status `code` (a
/// negative number) without recording it, or succeed again with `None`.
pub fn fail_publishes(code: Option<i32>) {
    FAIL_WITH.with(|f| f.set(code));
}

pub(crate) fn record_publish(topic: &str, payload: &[u8], key: &str, delay_ms: i64) -> i32 {
    if let Some(code) = FAIL_WITH.with(Cell::get) {
        return code;
    }
    PUBLISHED.with(|p| {
        p.borrow_mut().push(Published {
            topic: topic.to_owned(),
            payload: payload.to_owned(),
            ordering_key: (!key.is_empty()).then(|| key.to_owned()),
            delay: Duration::from_millis(u64::try_from(delay_ms).unwrap_or(0)),
        });
    });
    0
}

pub(crate) fn record_log(level: Level, msg: &str) {
    LOGS.with(|l| l.borrow_mut().push((level, msg.to_owned())));
}

/// Takes (and clears) the HTTP requests sent on this thread so far.
pub fn take_http_requests() -> Vec<HttpRequest> {
    HTTP.with(|h| h.take())
}

/// Makes every following HTTP request on this thread answer `status` with
/// `body` (no headers); the default is `200` with an empty body.
pub fn respond_http(status: u16, body: impl Into<Vec<u8>>) {
    HTTP_RESPONSE.with(|r| *r.borrow_mut() = (status, body.into()));
}

pub(crate) fn record_http(
    method: &str,
    url: &str,
    headers: &str,
    body: &[u8],
    buffer: &mut [u8],
    out: &mut [u32; 3],
) -> i32 {
    HTTP.with(|h| {
        h.borrow_mut().push(HttpRequest {
            method: method.to_owned(),
            url: url.to_owned(),
            headers: headers
                .lines()
                .filter_map(|l| l.split_once(": "))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            body: body.to_owned(),
        });
    });
    HTTP_RESPONSE.with(|r| {
        let (status, body) = &*r.borrow();
        if body.len() > buffer.len() {
            return -15;
        }
        buffer[..body.len()].copy_from_slice(body);
        *out = [u32::from(*status), 0, body.len() as u32];
        0
    })
}
