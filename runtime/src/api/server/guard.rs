//! The guard between hyper and a connection's socket: hyper's own answer to a
//! request it cannot parse is replaced by our JSON error.
//!
//! hyper writes into [`Guard`], which only buffers; the connection task
//! ([`run`]) sends the buffer after each turn of hyper's connection future.
//! When hyper cannot parse a request head it writes its automatic answer
//! (`HTTP/1.1 400|414|431 …`, `content-length: 0`) as the last bytes of the
//! connection and its future ends, in that same turn, with a parse error. So
//! at that point the answer is still the tail of the buffer, unsent: it is
//! cut off and our [`ApiError`] of the same status takes its place. A write
//! never waits once the automatic answer has begun: a write of at most
//! [`SMALL_WRITE`] bytes is always taken, so an answer split at the buffer's
//! cap ends in the same turn as its beginning.

use std::error::Error as StdError;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse as _;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::{MAX_HEAD_BYTES, MAX_HEADERS, MAX_URI_BYTES};
use crate::api::ApiError;

/// Bytes hyper may hand over before its writes wait for the socket: 64 KiB.
const OUT_CAP: usize = 64 << 10;
/// A write this small is always taken (hyper's automatic answer is about
/// 100 bytes).
const SMALL_WRITE: usize = 512;
/// After answering a parse error, the rest of the request is read and dropped
/// for at most this long and [`LINGER_BYTES`] before the socket closes:
/// closing with unread bytes would reset the connection, and the client could
/// lose the answer before reading it.
const LINGER: Duration = Duration::from_secs(2);
/// See [`LINGER`]: 4 MiB.
const LINGER_BYTES: u64 = 4 << 20;

/// The socket and what hyper handed over for it.
struct Socket {
    io: TokioIo<TcpStream>,
    /// Bytes from hyper; `out[sent..]` is not sent yet.
    out: Vec<u8>,
    sent: usize,
    /// hyper's last write waited for room: wake the task once there is.
    blocked: bool,
    /// A send failed: hyper's next read or write returns it.
    failed: Option<io::ErrorKind>,
}

impl Socket {
    /// Sends what hyper handed over; ready when all of it is sent.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.out.len() {
            let n = ready!(Pin::new(self.io.inner_mut()).poll_write(cx, &self.out[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.out.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    fn unsent(&self) -> usize {
        self.out.len() - self.sent
    }

    fn check(&self) -> io::Result<()> {
        self.failed.map_or(Ok(()), |kind| Err(kind.into()))
    }
}

/// What hyper reads from and writes to: reads go to the socket, writes to the
/// buffer [`run`] sends.
pub(super) struct Guard(Arc<Mutex<Socket>>);

fn lock(socket: &Mutex<Socket>) -> MutexGuard<'_, Socket> {
    socket.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Read for Guard {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let mut s = lock(&self.0);
        s.check()?;
        Pin::new(&mut s.io).poll_read(cx, buf)
    }
}

impl Write for Guard {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut s = lock(&self.0);
        s.check()?;
        if s.unsent() >= OUT_CAP && buf.len() > SMALL_WRITE {
            // `run` sends the buffer after this turn and wakes the task.
            s.blocked = true;
            return Poll::Pending;
        }
        let n = buf.len().min(OUT_CAP);
        s.out.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // `run` sends after every turn; the socket itself has no buffer.
        Poll::Ready(lock(&self.0).check())
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // `run` shuts the socket down once the last bytes are sent.
        Poll::Ready(lock(&self.0).check())
    }
}

/// Serves one connection: `serve` builds hyper's connection on the guard;
/// `stop` resolving starts its graceful shutdown.
pub(super) async fn run<C>(
    stream: TcpStream,
    stop: impl Future<Output = ()>,
    serve: impl FnOnce(Guard) -> C,
) where
    C: GracefulConnection,
    C::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let socket = Arc::new(Mutex::new(Socket {
        io: TokioIo::new(stream),
        out: Vec::new(),
        sent: 0,
        blocked: false,
        failed: None,
    }));
    let mut conn = Box::pin(serve(Guard(socket.clone())));
    let mut stop = pin!(stop);
    let mut stopping = false;
    let ended = poll_fn(|cx| {
        if !stopping && stop.as_mut().poll(cx).is_ready() {
            stopping = true;
            conn.as_mut().graceful_shutdown();
        }
        let ended = conn.as_mut().poll(cx);
        if ended.is_pending() {
            let mut s = lock(&socket);
            match s.poll_send(cx) {
                Poll::Ready(Ok(())) if std::mem::take(&mut s.blocked) => cx.waker().wake_by_ref(),
                Poll::Ready(Ok(())) | Poll::Pending => {}
                Poll::Ready(Err(e)) => {
                    s.failed = Some(e.kind());
                    cx.waker().wake_by_ref();
                }
            }
        }
        ended
    })
    .await
    .map_err(Into::into);
    drop(conn);
    // hyper is done with the guard (no route upgrades a connection).
    let Ok(socket) = Arc::try_unwrap(socket) else {
        return;
    };
    let s = socket.into_inner().unwrap_or_else(PoisonError::into_inner);
    if s.failed.is_some() {
        return;
    }
    let mut out = s.out;
    out.drain(..s.sent);
    let mut stream = s.io.into_inner();
    let parse_error = ended
        .as_ref()
        .err()
        .and_then(|e| e.downcast_ref::<hyper::Error>())
        .filter(|e| e.is_parse());
    let answered = match parse_error.and_then(|e| automatic_answer(&out).map(|a| (e, a))) {
        Some((error, answer)) => {
            out.truncate(answer.start);
            out.extend(render(answer.error(error), answer.date).await);
            true
        }
        None => false,
    };
    if stream.write_all(&out).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    if answered {
        let mut rest = (&mut stream).take(LINGER_BYTES);
        let _ =
            tokio::time::timeout(LINGER, tokio::io::copy(&mut rest, &mut tokio::io::sink())).await;
    }
}

/// hyper's automatic answer at the end of `out`.
#[derive(Debug, PartialEq, Eq)]
struct Automatic {
    /// Where it starts in `out`.
    start: usize,
    status: StatusCode,
    /// Its `date` header line, reused in ours.
    date: Option<Vec<u8>>,
}

impl Automatic {
    /// Our error for hyper's answer to `error`.
    fn error(&self, error: &hyper::Error) -> ApiError {
        match self.status {
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ApiError::HeadersTooLarge {
                fields: MAX_HEADERS,
                bytes: MAX_HEAD_BYTES,
            },
            StatusCode::URI_TOO_LONG => ApiError::UriTooLong {
                bytes: MAX_URI_BYTES,
            },
            _ => ApiError::Malformed(error.to_string()),
        }
    }
}

/// Finds hyper's automatic answer to a parse error, the last thing in `out`:
/// a head with status 400, 414 or 431, `content-length: 0` and nothing after.
fn automatic_answer(out: &[u8]) -> Option<Automatic> {
    const START: &[u8] = b"HTTP/1.1 ";
    let start = out.windows(START.len()).rposition(|w| w == START)?;
    let head = std::str::from_utf8(&out[start..]).ok()?;
    let fields = head.strip_suffix("\r\n\r\n")?;
    let status: u16 = head.get(START.len()..START.len() + 3)?.parse().ok()?;
    let status = StatusCode::from_u16(status).ok()?;
    if ![
        StatusCode::BAD_REQUEST,
        StatusCode::URI_TOO_LONG,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    ]
    .contains(&status)
    {
        return None;
    }
    let mut lines = fields.split("\r\n").skip(1);
    if !lines
        .clone()
        .any(|l| l.eq_ignore_ascii_case("content-length: 0"))
    {
        return None;
    }
    let date = lines
        .find(|l| l.len() > 5 && l[..5].eq_ignore_ascii_case("date:"))
        .map(|l| l.as_bytes().to_vec());
    Some(Automatic {
        start,
        status,
        date,
    })
}

/// `error` as HTTP/1.1 bytes, with `connection: close`.
async fn render(error: ApiError, date: Option<Vec<u8>>) -> Vec<u8> {
    let (parts, body) = error.into_response().into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let status = parts.status;
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    out.extend_from_slice(b"connection: close\r\n");
    if let Some(date) = date {
        out.extend_from_slice(&date);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "date: Wed, 02 Dec 2026 17:00:00 GMT";

    #[test]
    fn hypers_answer_is_found_at_the_end_only() {
        let answer = format!(
            "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n{DATE}\r\n\r\n"
        );
        // After the tail of an earlier response whose body looks like one.
        let body = "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        let out = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}{answer}",
            body.len()
        );
        let found = automatic_answer(out.as_bytes()).unwrap();
        assert_eq!(found.start, out.len() - answer.len());
        assert_eq!(found.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(found.date.as_deref(), Some(DATE.as_bytes()));
        // A response that is not hyper's: a body, another status, bytes after.
        for out in [
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}".to_string(),
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_string(),
            "HTTP/1.1 400 Bad Request\r\ncontent-type: x\r\n\r\n".to_string(),
            format!("{answer}x"),
            String::new(),
        ] {
            assert_eq!(automatic_answer(out.as_bytes()), None, "{out:?}");
        }
    }

    #[tokio::test]
    async fn the_replacement_is_the_json_error_with_connection_close() {
        let error = ApiError::UriTooLong {
            bytes: MAX_URI_BYTES,
        };
        let bytes = render(error, Some(DATE.as_bytes().to_vec())).await;
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.contains("\r\nconnection: close"), "{head}");
        assert!(head.contains(DATE), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "uri_too_long");
    }
}
