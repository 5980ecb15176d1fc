//! `webhook`: posts each message's payload to `WEBHOOK_URL` (the handler's
//! configured environment), with the message's idempotency key as the
//! provider's `Idempotency-Key`, so a retry after a timeout or a crash is
//! recognised as the same delivery (docs/idempotent-calls.md).
//!
//! - 2xx: acknowledged; prints `webhook <status> <body>`.
//! - 3xx with a `location`: follows it (at most 3 hops), each hop a new
//!   request checked against the handler's egress policy like the first.
//! - 4xx other than 408 and 429: the provider refuses this payload for
//!   good: rejected (DLQ, no retry).
//! - anything else (5xx, 408, 429, a refused or failed request): retried.

use sluice_guest::{Error, Message, Result, http};

/// Most redirects followed.
const MAX_HOPS: usize = 3;

/// Where the payload is posted, from the handler's environment.
fn target() -> Result<String> {
    std::env::var("WEBHOOK_URL").map_err(|_| Error::retry("WEBHOOK_URL is not set"))
}

fn handle(msg: &Message) -> Result {
    post(msg, target()?)
}

/// Posts `msg` to `url`, following redirects.
fn post(msg: &Message, mut url: String) -> Result {
    for _ in 0..=MAX_HOPS {
        let response = http::post(&url)
            .header("content-type", "application/json")
            .header("idempotency-key", msg.idempotency_key())
            .body(msg.payload())
            .send()?;
        let status = response.status;
        match status {
            200..=299 => {
                println!("webhook {status} {}", response.text());
                return Ok(());
            }
            300..=399 => {
                let location = response
                    .header("location")
                    .ok_or_else(|| Error::retry(format_args!("{status} without a location")))?;
                println!("redirect {status} -> {location}");
                url = location.to_owned();
            }
            408 | 429 => return Err(Error::retry(format_args!("webhook answered {status}"))),
            400..=499 => return Err(Error::reject(format_args!("webhook answered {status}"))),
            _ => return Err(Error::retry(format_args!("webhook answered {status}"))),
        }
    }
    Err(Error::retry(format_args!("more than {MAX_HOPS} redirects")))
}

fn main() {
    sluice_guest::run(handle);
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_guest::testing;

    #[test]
    fn posts_the_payload_with_the_idempotency_key() {
        let url = || "https://hooks.example.com/in".to_owned();
        testing::respond_http(202, "queued");
        let msg = Message::new("orders", r#"{"id":1}"#).with_idempotency_key("order-1");
        assert_eq!(post(&msg, url()), Ok(()));
        let sent = testing::take_http_requests();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].url, "https://hooks.example.com/in");
        assert!(
            sent[0]
                .headers
                .contains(&("idempotency-key".into(), "order-1".into()))
        );
        assert_eq!(sent[0].body, br#"{"id":1}"#);
        testing::respond_http(422, "bad");
        assert!(post(&msg, url()).unwrap_err().is_reject());
        testing::respond_http(503, "");
        assert!(!post(&msg, url()).unwrap_err().is_reject());
    }
}
