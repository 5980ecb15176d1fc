//! stdout and stderr capture with a cap: overflow is dropped and marked, and the
//! guest's writes always succeed.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Output a guest wrote to stdout or stderr, up to the configured cap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Captured {
    /// The first bytes written, at most the cap.
    pub bytes: Vec<u8>,
    /// Whether the guest wrote more than the cap (the rest was dropped).
    pub truncated: bool,
}

/// A WASI output stream into a [`Captured`] buffer. Clones share the buffer:
/// the WASI context holds one, the invoker keeps another to read the result.
#[derive(Debug, Clone)]
pub(crate) struct CappedPipe {
    cap: usize,
    buf: Arc<Mutex<Captured>>,
}

impl CappedPipe {
    pub(crate) fn new(cap: usize) -> CappedPipe {
        CappedPipe {
            cap,
            buf: Arc::new(Mutex::new(Captured::default())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Captured> {
        // A poisoned lock only means another writer panicked mid-append; the
        // bytes are still a valid prefix.
        self.buf.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn append(&self, data: &[u8]) {
        let mut c = self.lock();
        let room = self.cap.saturating_sub(c.bytes.len());
        if data.len() > room {
            c.truncated = true;
        }
        let take = data.len().min(room);
        c.bytes.extend_from_slice(&data[..take]);
    }

    /// What was captured; called once the guest has ended.
    pub(crate) fn take(&self) -> Captured {
        std::mem::take(&mut *self.lock())
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// Every write is accepted whole: past the cap the bytes are dropped, never
/// refused, so a chatty guest neither fails nor blocks.
impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(usize::MAX)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CappedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_is_dropped_and_marked() {
        let mut p = CappedPipe::new(8);
        p.write(Bytes::from_static(b"hello")).unwrap();
        assert!(!p.lock().truncated);
        p.write(Bytes::from_static(b" world")).unwrap();
        p.write(Bytes::from_static(b"!")).unwrap();
        let c = p.take();
        assert_eq!(c.bytes, b"hello wo");
        assert!(c.truncated);
    }

    #[test]
    fn exactly_the_cap_is_not_truncated() {
        let mut p = CappedPipe::new(5);
        p.write(Bytes::from_static(b"hello")).unwrap();
        p.write(Bytes::new()).unwrap();
        assert_eq!(
            p.take(),
            Captured {
                bytes: b"hello".to_vec(),
                truncated: false
            }
        );
    }
}
