//! The HTTP server of `sluice serve`: our own accept loop on hyper, so that
//! every answer, hyper's own included, is the JSON error of `docs/api.md`.
//!
//! `axum::serve` hands a connection to hyper and never sees what hyper answers
//! by itself: when a request head does not parse or is past hyper's limits,
//! hyper writes an empty `400`, `414` or `431` and closes the connection,
//! without calling the router. hyper has no hook for those answers, so
//! [`serve`] puts a guard between hyper and the socket (`guard.rs`): hyper's
//! writes go to a buffer that the connection task sends after each turn of
//! hyper's connection future; when that future ends with a parse error, the
//! buffer's tail is hyper's automatic answer, and the task sends the
//! [`ApiError`](super::ApiError) of the same status instead (with
//! `connection: close`). docs/decisions.md says why this and not a tower layer.
//!
//! The limits hyper enforces are ours, set here once: [`MAX_HEADERS`],
//! [`MAX_HEAD_BYTES`] and [`MAX_URI_BYTES`] (docs/api.md). Otherwise it serves
//! as `axum::serve` did: HTTP/1.1 with keep-alive (and HTTP/2 with prior
//! knowledge), graceful shutdown (no new connections, each connection ends
//! after the request it is serving), an accept error that is not the peer's
//! paused for a second (out of file descriptors) rather than spinning.

mod guard;

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Most header fields in a request (every field counts, `Host` too): 100.
/// Past it the answer is `431 headers_too_large`.
pub const MAX_HEADERS: usize = 100;
/// Most bytes of a request head (request line and header fields): 400 KiB.
/// Room for a handler's environment in `Sluice-Policy` (at most
/// [`MAX_ENV_BYTES`](crate::sandbox::MAX_ENV_BYTES), escaped as JSON). Past
/// it the answer is `431 headers_too_large`.
pub const MAX_HEAD_BYTES: usize = 400 << 10;
/// Longest request target (path and query) in bytes: hyper's fixed bound,
/// 65,534. Past it the answer is `414 uri_too_long`.
pub const MAX_URI_BYTES: usize = u16::MAX as usize - 1;

/// Pause after an accept error that is not a connection's own (e.g. out of
/// file descriptors), so the loop does not spin.
const ACCEPT_PAUSE: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting
/// and waits for every open connection to end (a connection in the middle of
/// a request finishes it, then closes).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    // `stop` tells connections to shut down gracefully; `done` is held by each
    // connection task, so its `closed()` resolves when the last one ends.
    let (stop, stopping) = watch::channel(false);
    let (done, connections) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    tokio::spawn(connection(stream, app.clone(), stopping.clone(), connections.clone()));
                }
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    tracing::error!(error = %e, "cannot accept a connection; pausing");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    drop(connections);
    let _ = stop.send(true);
    done.closed().await;
    Ok(())
}

/// One connection, to its end.
async fn connection(
    stream: TcpStream,
    app: Router,
    mut stopping: watch::Receiver<bool>,
    _alive: watch::Receiver<()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEAD_BYTES);
    let stop = async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    guard::run(stream, stop, |io| {
        builder.serve_connection_with_upgrades(io, TowerToHyperService::new(app))
    })
    .await;
}

/// An accept error that is the peer's, not the listener's: skip it.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
