//! `publish`: fans an order out to two topics through the transactional outbox.
//!
//! Input: `{"order_id": "A-1" | 17, "email": "a@example.com", "total": 12.5}`
//! (other fields are ignored). Output, both with the order id as ordering key:
//!
//! - topic `email`: `{"order_id":"A-1","email":"a@example.com"}`
//! - topic `analytics`: `{"event":"order_placed","order_id":"A-1","total":12.5}`
//!
//! An order that is not JSON, lacks a field or has one of the wrong type is
//! rejected (exit 65). Both messages are committed only if the attempt
//! acknowledges, and a retried attempt re-publishes the same two messages with
//! the same derived idempotency keys, so downstream sees each once. With
//! `FAIL_FIRST_ATTEMPT` set in the handler's environment, attempt 1 publishes
//! and then fails (exit 75), to show exactly that.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sluice_guest::{Error, Message, Result};

/// An order id: text, or a non-negative integer (used as text).
#[derive(Deserialize)]
#[serde(untagged)]
enum OrderId {
    Text(String),
    Number(u64),
}

impl OrderId {
    fn into_text(self) -> String {
        match self {
            OrderId::Text(s) => s,
            OrderId::Number(n) => n.to_string(),
        }
    }
}

#[derive(Deserialize)]
struct Order<'a> {
    order_id: OrderId,
    email: String,
    /// Kept exactly as written (`12.50` stays `12.50`), checked to be a number.
    #[serde(borrow)]
    total: &'a RawValue,
}

#[derive(Serialize)]
struct EmailRequest<'a> {
    order_id: &'a str,
    email: &'a str,
}

#[derive(Serialize)]
struct OrderPlaced<'a> {
    event: &'static str,
    order_id: &'a str,
    total: &'a RawValue,
}

fn handle(msg: &Message) -> Result {
    let order: Order<'_> = msg.json()?;
    if !order
        .total
        .get()
        .starts_with(|c: char| c == '-' || c.is_ascii_digit())
    {
        return Err(Error::reject("total is not a number"));
    }
    let order_id = order.order_id.into_text();
    if order_id.is_empty() {
        return Err(Error::reject("order_id is empty"));
    }
    sluice_guest::publish("email", Vec::new())
        .json(&EmailRequest {
            order_id: &order_id,
            email: &order.email,
        })?
        .key(&order_id)
        .send()?;
    sluice_guest::publish("analytics", Vec::new())
        .json(&OrderPlaced {
            event: "order_placed",
            order_id: &order_id,
            total: order.total,
        })?
        .key(&order_id)
        .send()?;
    println!("published order {order_id} to email and analytics");
    if msg.attempt() == 1 && std::env::var_os("FAIL_FIRST_ATTEMPT").is_some() {
        // Demonstrates the outbox: what this attempt published is discarded.
        return Err(Error::retry(
            "failing after publishing, as FAIL_FIRST_ATTEMPT asks",
        ));
    }
    Ok(())
}

fn main() {
    sluice_guest::run(handle);
}

#[cfg(test)]
mod tests {
    use sluice_guest::testing;

    use super::*;

    #[test]
    fn fans_out_to_email_and_analytics_keyed_by_order() {
        let order = r#"{"order_id":"A-1","email":"a@example.com","total":12.5,"items":3}"#;
        assert_eq!(handle(&Message::new("orders", order)), Ok(()));
        let sent = testing::take_published();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].topic, "email");
        assert_eq!(
            sent[0].text(),
            r#"{"order_id":"A-1","email":"a@example.com"}"#
        );
        assert_eq!(sent[1].topic, "analytics");
        assert_eq!(
            sent[1].text(),
            r#"{"event":"order_placed","order_id":"A-1","total":12.5}"#
        );
        assert!(
            sent.iter()
                .all(|p| p.ordering_key.as_deref() == Some("A-1"))
        );
        assert!(sent.iter().all(|p| p.delay.is_zero()));
    }

    #[test]
    fn numeric_order_ids_become_text_keys_and_totals_pass_unchanged() {
        let order = r#"{"order_id":17,"email":"b@example.com","total":10.50}"#;
        assert_eq!(handle(&Message::new("orders", order)), Ok(()));
        let sent = testing::take_published();
        assert_eq!(sent[0].ordering_key.as_deref(), Some("17"));
        assert_eq!(
            sent[1].text(),
            r#"{"event":"order_placed","order_id":"17","total":10.50}"#
        );
    }

    #[test]
    fn rejects_bad_orders_and_publishes_nothing() {
        for bad in [
            "not json",
            r#"{"email":"a@example.com","total":1}"#,
            r#"{"order_id":"A","email":7,"total":1}"#,
            r#"{"order_id":"A","email":"a@example.com","total":"1"}"#,
            r#"{"order_id":"A","email":"a@example.com","total":[1]}"#,
            r#"{"order_id":"","email":"a@example.com","total":1}"#,
        ] {
            let err = handle(&Message::new("orders", bad)).unwrap_err();
            assert!(err.is_reject(), "{bad}: {err}");
        }
        assert!(testing::take_published().is_empty());
    }

    #[test]
    fn a_refused_publish_fails_the_attempt_for_retry() {
        testing::fail_publishes(Some(-1));
        let order = r#"{"order_id":"A-1","email":"a@example.com","total":1}"#;
        let result = handle(&Message::new("orders", order));
        testing::fail_publishes(None);
        assert_eq!(result.map_err(|e| e.exit_code()), Err(75));
    }
}
