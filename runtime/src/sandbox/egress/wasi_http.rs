//! The `wasi:http` outgoing handler of components: wasmtime-wasi-http's
//! implementation of the interfaces, with its `send_request` hook replaced
//! by [`AttemptEgress::send`], so a component's requests take the same
//! checked path as ABI 1's `sluice::http_request`.
//!
//! The request options a guest may set (connect, first-byte and
//! between-bytes timeouts) are not applied: the attempt's timeout bounds
//! every request (docs/egress.md).

use std::future::Future;
use std::sync::Arc;

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::client::{AttemptEgress, EgressError};

/// The hooks of one component attempt.
pub(crate) struct EgressHooks(pub(crate) Arc<AttemptEgress>);

/// The `wasi:http` error a guest sees for a refused or failed request.
pub fn error_code(e: &EgressError) -> Error {
    match e {
        EgressError::InvalidRequest(_) => Error::HttpRequestUriInvalid,
        EgressError::DeniedOrigin(_) | EgressError::Limit(_) => Error::HttpRequestDenied,
        EgressError::DeniedAddress(_) => Error::DestinationIpProhibited,
        EgressError::ResponseTooLarge(max) => Error::HttpResponseBodySize(Some(*max)),
        EgressError::Dns(m) => Error::DnsError {
            rcode: Some(m.clone()),
            info_code: None,
        },
        EgressError::Connect(_) => Error::ConnectionRefused,
        EgressError::Tls(_) => Error::TlsProtocolError,
        EgressError::Protocol(_) => Error::HttpProtocolError,
    }
}

/// What the hook returns: the response, and a future reporting the
/// connection's end (the connection lives in the response body here, so it
/// reports nothing).
type Sent = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), Error>> + Send>,
    ),
    Error,
>;

impl WasiHttpHooks for EgressHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let egress = Arc::clone(&self.0);
        Box::new(async move {
            let response = egress.send(request).await.map_err(|e| error_code(&e))?;
            let response = response.map(|body| body.map_err(|e| error_code(&e)).boxed_unsync());
            let done: Box<dyn Future<Output = Result<(), Error>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}
