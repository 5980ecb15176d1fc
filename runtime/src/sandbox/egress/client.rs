//! The one path every outbound request takes, from a component's
//! `wasi:http` call and ABI 1's `sluice::http_request` alike: count it
//! against the attempt's limits, check its origin against the allow-list,
//! resolve the name here, keep only addresses the policy allows, connect to
//! one of those (so no second resolution can swap in another: no DNS
//! rebinding), speak TLS with the bundled web PKI roots for `https`, send,
//! and hand back a response whose body counts against the attempt's
//! response limit. Every step is recorded in the attempt ([`EgressRecord`]).
//!
//! Redirects are not followed: the guest sees the 3xx, and a request it
//! makes to the `Location` goes through here like any other.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST};
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::policy::{Origin, Rules, Scheme};
use super::record::{EgressOutcome, EgressRecord};

/// Why a request was refused or failed, as the guest is told (a
/// `wasi:http` error code, an ABI 1 code) and the attempt records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EgressError {
    /// The request itself is malformed (no absolute http(s) URL, …).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The origin is not on the allow-list; nothing was resolved or sent.
    #[error("{0} is not on the handler's egress allow-list")]
    DeniedOrigin(String),
    /// Every address of the name is in a forbidden range; nothing was sent.
    #[error("{0}")]
    DeniedAddress(String),
    /// The attempt's request count or request bytes are used up.
    #[error("egress limit: {0}")]
    Limit(String),
    /// The response body passed the attempt's response byte limit.
    #[error("egress limit: response bodies over {0} bytes in this attempt")]
    ResponseTooLarge(u64),
    /// The name did not resolve.
    #[error("cannot resolve {0}")]
    Dns(String),
    /// No connection (refused, unreachable) or no TLS session.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The TLS handshake failed (certificate, protocol).
    #[error("TLS: {0}")]
    Tls(String),
    /// The connection broke or the answer was not HTTP.
    #[error("HTTP: {0}")]
    Protocol(String),
}

impl EgressError {
    /// The recorded outcome of a request that ended with this error.
    pub fn outcome(&self) -> EgressOutcome {
        match self {
            EgressError::InvalidRequest(_) | EgressError::Protocol(_) => EgressOutcome::Protocol,
            EgressError::DeniedOrigin(_) => EgressOutcome::DeniedOrigin,
            EgressError::DeniedAddress(_) => EgressOutcome::DeniedAddress,
            EgressError::Limit(_) => EgressOutcome::Limit,
            EgressError::ResponseTooLarge(_) => EgressOutcome::ResponseTooLarge,
            EgressError::Dns(_) => EgressOutcome::Dns,
            EgressError::Connect(_) | EgressError::Tls(_) => EgressOutcome::Connect,
        }
    }
}

/// Connections open at once per handler, shared by all its attempts.
pub type ConnectionSlots = Arc<Semaphore>;

/// One attempt's egress: its rules, the handler's connection slots, the
/// attempt's counters and its records. Shared (`Arc`) by the guest's host
/// calls and the bodies of requests in flight; read once by the invoker
/// when the attempt has ended.
#[derive(Debug)]
pub struct AttemptEgress {
    rules: Rules,
    connections: ConnectionSlots,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    requests: u32,
    request_bytes: u64,
    response_bytes: u64,
    records: Vec<EgressRecord>,
    /// When each record's request started; `None` once it has ended.
    open: Vec<Option<Instant>>,
}

impl AttemptEgress {
    /// An attempt's egress under `rules`, taking connections from `connections`.
    pub fn new(rules: Rules, connections: ConnectionSlots) -> Arc<AttemptEgress> {
        Arc::new(AttemptEgress {
            rules,
            connections,
            state: Mutex::new(State::default()),
        })
    }

    /// The attempt's records, in request order; a request still in flight
    /// is recorded as [`EgressOutcome::Interrupted`] with its time so far.
    pub fn records(&self) -> Vec<EgressRecord> {
        let mut state = self.lock();
        let State { records, open, .. } = &mut *state;
        for (r, started) in records.iter_mut().zip(open.iter_mut()) {
            if let Some(t) = started.take() {
                r.duration_ms = t.elapsed().as_millis() as u64;
            }
        }
        records.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a request as started (outcome `interrupted` until it ends).
    fn begin(&self, method: &str, origin: String) -> usize {
        let mut s = self.lock();
        s.records.push(EgressRecord {
            method: method.to_owned(),
            origin,
            status: None,
            request_bytes: 0,
            response_bytes: 0,
            duration_ms: 0,
            outcome: EgressOutcome::Interrupted,
            detail: String::new(),
        });
        s.open.push(Some(Instant::now()));
        s.records.len() - 1
    }

    /// Ends record `i` with `outcome` (a later end overrides an earlier one:
    /// headers are `ok`, a body cut at the limit then `response_too_large`).
    fn end(&self, i: usize, outcome: EgressOutcome, detail: String, last: bool) {
        let mut s = self.lock();
        let started = if last { s.open[i].take() } else { s.open[i] };
        let r = &mut s.records[i];
        if let Some(t) = started {
            r.duration_ms = t.elapsed().as_millis() as u64;
        }
        r.outcome = outcome;
        r.detail = detail;
    }

    /// Sends `request` under the policy; see the module docs. The request's
    /// URI must be absolute (`https://host[:port]/path`).
    pub async fn send<B>(
        self: &Arc<Self>,
        request: Request<B>,
    ) -> Result<Response<ResponseBody>, EgressError>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let method = request.method().as_str().to_owned();
        let origin = origin_of(request.uri());
        let shown = match &origin {
            Ok(o) => o.to_string(),
            Err(_) => shown_uri(request.uri()),
        };
        let i = self.begin(&method, shown);
        let result = match origin {
            Ok(origin) => self.send_checked(i, origin, request).await,
            Err(e) => Err(e),
        };
        match &result {
            Ok(response) => {
                self.lock().records[i].status = Some(response.status().as_u16());
                self.end(i, EgressOutcome::Ok, String::new(), false);
            }
            Err(e) => self.end(i, e.outcome(), e.to_string(), true),
        }
        result
    }

    async fn send_checked<B>(
        self: &Arc<Self>,
        i: usize,
        origin: Origin,
        request: Request<B>,
    ) -> Result<Response<ResponseBody>, EgressError>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let limits = &self.rules.policy;
        {
            let mut s = self.lock();
            if s.requests >= limits.max_requests {
                return Err(EgressError::Limit(format!(
                    "the attempt's {} requests are used up",
                    limits.max_requests
                )));
            }
            s.requests += 1;
            let declared = request
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            if s.request_bytes.saturating_add(declared) > limits.max_request_bytes {
                return Err(request_bytes_limit(limits.max_request_bytes));
            }
        }
        if !self.rules.allows_origin(&origin) {
            return Err(EgressError::DeniedOrigin(origin.to_string()));
        }
        let addresses = self.resolve(&origin).await?;
        let permit = Arc::clone(&self.connections)
            .acquire_owned()
            .await
            .map_err(|_| EgressError::Connect("connection slots closed".into()))?;
        let tcp = connect(&addresses, origin.port).await?;
        let (mut sender, conn) = match origin.scheme {
            Scheme::Http => handshake(tcp).await?,
            Scheme::Https => {
                let name = rustls::pki_types::ServerName::try_from(origin.host.clone())
                    .map_err(|e| EgressError::InvalidRequest(format!("{}: {e}", origin.host)))?;
                let tls = tokio_rustls::TlsConnector::from(tls_config())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| EgressError::Tls(e.to_string()))?;
                handshake(tls).await?
            }
        };
        // The connection runs beside the guest; it ends (and frees its
        // slot) when the response body is done or dropped.
        let connection = AbortOnDrop(tokio::spawn(async move {
            let _permit = permit;
            let _ = conn.await;
        }));
        let request = self.outgoing(i, &origin, request)?;
        let response = sender.send_request(request).await.map_err(|e| {
            if self.lock().request_bytes > limits.max_request_bytes {
                request_bytes_limit(limits.max_request_bytes)
            } else {
                EgressError::Protocol(e.to_string())
            }
        })?;
        Ok(response.map(|body| ResponseBody {
            inner: body,
            egress: Arc::clone(self),
            index: i,
            done: false,
            _connection: connection,
        }))
    }

    /// The addresses of `origin` the policy allows, or why there are none.
    async fn resolve(&self, origin: &Origin) -> Result<Vec<IpAddr>, EgressError> {
        let all: Vec<IpAddr> = match origin.ip() {
            Some(ip) => vec![ip],
            None => tokio::net::lookup_host((origin.host.as_str(), origin.port))
                .await
                .map_err(|e| EgressError::Dns(format!("{}: {e}", origin.host)))?
                .map(|a| a.ip())
                .collect(),
        };
        let mut refused = None;
        let allowed: Vec<IpAddr> = all
            .iter()
            .copied()
            .filter(|ip| match self.rules.check_address(*ip) {
                Ok(()) => true,
                Err(range) => {
                    refused.get_or_insert((*ip, range));
                    false
                }
            })
            .collect();
        match (allowed.is_empty(), refused) {
            (false, _) => Ok(allowed),
            (true, Some((ip, range))) => Err(EgressError::DeniedAddress(format!(
                "{} resolves to {ip}, {range}, which the policy does not allow",
                origin.host
            ))),
            (true, None) => Err(EgressError::Dns(format!("{}: no addresses", origin.host))),
        }
    }

    /// The request as sent: origin-form URI, a `Host` header, and a body
    /// counted against the attempt's request bytes.
    fn outgoing<B>(
        self: &Arc<Self>,
        i: usize,
        origin: &Origin,
        request: Request<B>,
    ) -> Result<Request<RequestBody<B>>, EgressError> {
        let (mut parts, body) = request.into_parts();
        if !parts.headers.contains_key(HOST) {
            let default_port = origin.port == origin.scheme.default_port();
            let host = match (origin.host.contains(':'), default_port) {
                (true, true) => format!("[{}]", origin.host),
                (true, false) => format!("[{}]:{}", origin.host, origin.port),
                (false, true) => origin.host.clone(),
                (false, false) => format!("{}:{}", origin.host, origin.port),
            };
            let value = HeaderValue::from_str(&host)
                .map_err(|e| EgressError::InvalidRequest(format!("host {host:?}: {e}")))?;
            parts.headers.insert(HOST, value);
        }
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        parts.uri = Uri::try_from(path).map_err(|e| EgressError::InvalidRequest(e.to_string()))?;
        Ok(Request::from_parts(
            parts,
            RequestBody {
                inner: body,
                egress: Arc::clone(self),
                index: i,
            },
        ))
    }
}

fn request_bytes_limit(max: u64) -> EgressError {
    EgressError::Limit(format!("request bodies over {max} bytes in this attempt"))
}

/// The origin of an absolute `http(s)` URI.
fn origin_of(uri: &Uri) -> Result<Origin, EgressError> {
    let bad = |why: &str| EgressError::InvalidRequest(format!("{}: {why}", shown_uri(uri)));
    let scheme = uri.scheme_str().ok_or_else(|| bad("not an absolute URL"))?;
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("user information in the URL"));
    }
    Origin::of(scheme, authority.host(), authority.port_u16()).map_err(|e| bad(&e))
}

/// A URI as recorded when it has no usable origin: scheme and authority
/// only (a path or query may carry secrets), at most 200 bytes.
fn shown_uri(uri: &Uri) -> String {
    let mut s = match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(a)) => format!("{scheme}://{}", a.host()),
        (None, Some(a)) => a.host().to_owned(),
        _ => "(no origin)".to_owned(),
    };
    s.truncate(s.floor_char_boundary(200));
    s
}

/// Connects to the first of `addresses` that answers on `port`.
async fn connect(addresses: &[IpAddr], port: u16) -> Result<TcpStream, EgressError> {
    let mut last = None;
    for ip in addresses {
        match TcpStream::connect(SocketAddr::new(*ip, port)).await {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(e) => last = Some(format!("{ip} port {port}: {e}")),
        }
    }
    Err(EgressError::Connect(last.unwrap_or_default()))
}

type Handshake<B> = (
    hyper::client::conn::http1::SendRequest<RequestBody<B>>,
    Pin<Box<dyn std::future::Future<Output = hyper::Result<()>> + Send>>,
);

/// An HTTP/1.1 client connection over `io`.
async fn handshake<B, I>(io: I) -> Result<Handshake<B>, EgressError>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| EgressError::Protocol(e.to_string()))?;
    Ok((sender, Box::pin(conn)))
}

/// The TLS client configuration: the web PKI roots bundled at build time
/// (webpki-roots), so a handler's TLS does not depend on the host's store;
/// HTTP/1.1 only.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    Arc::clone(CONFIG.get_or_init(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }))
}

/// Aborts the connection task when the response body is dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A request body, counted against the attempt's request bytes: past the
/// limit it fails, which aborts the request.
pub struct RequestBody<B> {
    inner: B,
    egress: Arc<AttemptEgress>,
    index: usize,
}

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        if let Some(data) = frame.data_ref() {
            let n = data.len() as u64;
            let max = self.egress.rules.policy.max_request_bytes;
            let mut s = self.egress.lock();
            s.request_bytes = s.request_bytes.saturating_add(n);
            s.records[self.index].request_bytes += n;
            if s.request_bytes > max {
                return Poll::Ready(Some(Err(request_bytes_limit(max).into())));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body, counted against the attempt's response bytes: the frame
/// that would pass the limit is an error instead, and the body ends there.
/// Holds the connection: dropping the body closes it and frees its slot.
pub struct ResponseBody {
    inner: hyper::body::Incoming,
    egress: Arc<AttemptEgress>,
    index: usize,
    done: bool,
    _connection: AbortOnDrop,
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = EgressError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, EgressError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let (i, egress) = (self.index, Arc::clone(&self.egress));
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                self.done = true;
                let outcome = egress.lock().records[i].outcome;
                egress.end(i, outcome, String::new(), true);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                let e = EgressError::Protocol(e.to_string());
                egress.end(i, e.outcome(), e.to_string(), true);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    let max = egress.rules.policy.max_response_bytes;
                    let over = {
                        let mut s = egress.lock();
                        let over = s.response_bytes.saturating_add(n) > max;
                        if !over {
                            s.response_bytes += n;
                            s.records[i].response_bytes += n;
                        }
                        over
                    };
                    if over {
                        self.done = true;
                        let e = EgressError::ResponseTooLarge(max);
                        egress.end(i, e.outcome(), e.to_string(), true);
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_of_urls() {
        let o = origin_of(&Uri::from_static("https://API.example.com/x?secret=1")).unwrap();
        assert_eq!(o.to_string(), "https://api.example.com:443");
        let o = origin_of(&Uri::from_static("http://[::1]:8080/")).unwrap();
        assert_eq!(o.to_string(), "http://[::1]:8080");
        assert!(origin_of(&Uri::from_static("/relative")).is_err());
        let e = origin_of(&Uri::from_static("ftp://files.example.com/a?k=v")).unwrap_err();
        assert!(!e.to_string().contains("k=v"), "no query in errors: {e}");
        assert!(origin_of(&Uri::from_static("https://user:pw@example.com/")).is_err());
    }
}
