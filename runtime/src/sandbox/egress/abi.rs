//! ABI 1's `sluice::http_request` (docs/guest-abi.md §6.3): one request,
//! its whole response written back into the guest's buffer, through the
//! same client as components' `wasi:http` ([`AttemptEgress::send`]).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use wasmtime::{Caller, Linker};

use super::client::{AttemptEgress, EgressError};
use crate::sandbox::abi::{SLUICE_ERR_BAD_POINTER, SLUICE_ERR_BAD_UTF8, SLUICE_MODULE, SLUICE_OK};

/// `http_request`: the method, URL or a header line is malformed.
pub const SLUICE_ERR_HTTP_INVALID: i32 = -10;
/// `http_request`: refused before connecting: the origin is not on the
/// handler's allow-list, or its name resolves only to forbidden addresses.
pub const SLUICE_ERR_HTTP_DENIED: i32 = -11;
/// `http_request`: the attempt's requests or request bytes are used up.
pub const SLUICE_ERR_HTTP_LIMIT: i32 = -12;
/// `http_request`: the response body passed the attempt's response limit.
pub const SLUICE_ERR_HTTP_TOO_LARGE: i32 = -13;
/// `http_request`: the name did not resolve, no connection or TLS session
/// could be made, or the connection broke.
pub const SLUICE_ERR_HTTP_FAILED: i32 = -14;
/// `http_request`: the response did not fit the buffer; the buffer holds
/// its first bytes and `out` the full lengths.
pub const SLUICE_ERR_HTTP_TRUNCATED: i32 = -15;

/// The ABI's code for a refused or failed request.
pub fn code(e: &EgressError) -> i32 {
    match e {
        EgressError::InvalidRequest(_) => SLUICE_ERR_HTTP_INVALID,
        EgressError::DeniedOrigin(_) | EgressError::DeniedAddress(_) => SLUICE_ERR_HTTP_DENIED,
        EgressError::Limit(_) => SLUICE_ERR_HTTP_LIMIT,
        EgressError::ResponseTooLarge(_) => SLUICE_ERR_HTTP_TOO_LARGE,
        EgressError::Dns(_)
        | EgressError::Connect(_)
        | EgressError::Tls(_)
        | EgressError::Protocol(_) => SLUICE_ERR_HTTP_FAILED,
    }
}

/// The guest range `(ptr, len)`, both read as unsigned, if it lies in `memory`.
fn range(memory: &[u8], ptr: i32, len: i32) -> Option<std::ops::Range<usize>> {
    let start = ptr as u32 as usize;
    let end = start.checked_add(len as u32 as usize)?;
    (end <= memory.len()).then_some(start..end)
}

/// Builds the request from the guest's bytes: method, URL, header lines
/// (`Name: value`, separated by `\n` or `\r\n`), body.
fn request(
    method: &[u8],
    url: &[u8],
    headers: &[u8],
    body: &[u8],
) -> Result<Request<Full<Bytes>>, i32> {
    let text = |b| std::str::from_utf8(b).map_err(|_| SLUICE_ERR_BAD_UTF8);
    let (method, url, headers) = (text(method)?, text(url)?, text(headers)?);
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| SLUICE_ERR_HTTP_INVALID)?;
    let mut builder = Request::builder().method(method).uri(url);
    for line in headers.split('\n').map(|l| l.trim_end_matches('\r')) {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line.split_once(':').ok_or(SLUICE_ERR_HTTP_INVALID)?;
        let name = HeaderName::from_bytes(name.trim().as_bytes());
        let value = HeaderValue::from_str(value.trim());
        let (Ok(name), Ok(value)) = (name, value) else {
            return Err(SLUICE_ERR_HTTP_INVALID);
        };
        builder = builder.header(name, value);
    }
    builder
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(|_| SLUICE_ERR_HTTP_INVALID)
}

/// What the guest gets back: status, the header block (`name: value\r\n`
/// lines), the body.
struct Answer {
    status: u16,
    headers: Vec<u8>,
    body: Bytes,
}

async fn exchange(
    egress: &Arc<AttemptEgress>,
    request: Request<Full<Bytes>>,
) -> Result<Answer, i32> {
    let response = egress.send(request).await.map_err(|e| code(&e))?;
    let status = response.status().as_u16();
    let mut headers = Vec::new();
    for (name, value) in response.headers() {
        headers.extend_from_slice(name.as_str().as_bytes());
        headers.extend_from_slice(b": ");
        headers.extend_from_slice(value.as_bytes());
        headers.extend_from_slice(b"\r\n");
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| code(&e))?
        .to_bytes();
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// Defines `sluice::http_request` in `linker`; `egress` projects the
/// store's data onto the attempt's [`AttemptEgress`].
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    egress: fn(&mut T) -> &Arc<AttemptEgress>,
) -> wasmtime::Result<()> {
    linker.func_wrap_async(
        SLUICE_MODULE,
        "http_request",
        move |mut caller: Caller<'_, T>,
              (m_ptr, m_len, u_ptr, u_len, h_ptr, h_len, b_ptr, b_len, r_ptr, r_cap, o_ptr): (
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
        )| {
            Box::new(async move {
                let Some(memory) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
                    return Ok(SLUICE_ERR_BAD_POINTER);
                };
                let data = memory.data(&caller);
                let ranges = (
                    range(data, m_ptr, m_len),
                    range(data, u_ptr, u_len),
                    range(data, h_ptr, h_len),
                    range(data, b_ptr, b_len),
                    range(data, r_ptr, r_cap),
                    range(data, o_ptr, 12),
                );
                let (Some(m), Some(u), Some(h), Some(b), Some(r), Some(o)) = ranges else {
                    return Ok(SLUICE_ERR_BAD_POINTER);
                };
                let request = match request(&data[m], &data[u], &data[h], &data[b]) {
                    Ok(request) => request,
                    Err(code) => return Ok(code),
                };
                let egress = Arc::clone(egress(caller.data_mut()));
                let answer = match exchange(&egress, request).await {
                    Ok(answer) => answer,
                    Err(code) => return Ok(code),
                };
                let data = memory.data_mut(&mut caller);
                let total = answer.headers.len() + answer.body.len();
                let mut out = Vec::with_capacity(12);
                for n in [
                    answer.status as u32,
                    answer.headers.len() as u32,
                    answer.body.len() as u32,
                ] {
                    out.extend_from_slice(&n.to_le_bytes());
                }
                data[o].copy_from_slice(&out);
                let buffer = &mut data[r];
                let head = answer.headers.len().min(buffer.len());
                buffer[..head].copy_from_slice(&answer.headers[..head]);
                let rest = (buffer.len() - head).min(answer.body.len());
                buffer[head..head + rest].copy_from_slice(&answer.body[..rest]);
                Ok(if total > buffer.len() {
                    SLUICE_ERR_HTTP_TRUNCATED
                } else {
                    SLUICE_OK
                })
            })
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_from_guest_bytes() {
        let r = request(
            b"POST",
            b"https://a.example/x",
            b"A: 1\r\nB:  two \n\n",
            b"hi",
        )
        .unwrap();
        assert_eq!(r.method(), Method::POST);
        assert_eq!(r.headers()["a"], "1");
        assert_eq!(r.headers()["b"], "two");
        assert_eq!(
            request(b"GET", b"https://a.example/", b"NoColon", b"").unwrap_err(),
            SLUICE_ERR_HTTP_INVALID
        );
        assert_eq!(
            request(b"G T", b"https://a.example/", b"", b"").unwrap_err(),
            SLUICE_ERR_HTTP_INVALID
        );
        assert_eq!(
            request(b"GET", &[0xff], b"", b"").unwrap_err(),
            SLUICE_ERR_BAD_UTF8
        );
        assert!(range(&[0; 8], 4, 4).is_some());
        assert!(range(&[0; 8], 4, 5).is_none());
        assert!(range(&[0; 8], -1, 1).is_none());
    }
}
