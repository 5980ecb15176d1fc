//! `ack`: acknowledges every message, after printing one line about it.
//!
//! The line goes to stdout, which sluice keeps as the attempt's result:
//! `ack topic=<topic> id=<message id> attempt=<n> bytes=<payload length>`.

use sluice_guest::{Message, Result};

/// The line this handler prints for `msg`.
fn summary(msg: &Message) -> String {
    format!(
        "ack topic={} id={} attempt={} bytes={}",
        msg.topic(),
        msg.id(),
        msg.attempt(),
        msg.payload().len()
    )
}

fn handle(msg: &Message) -> Result {
    println!("{}", summary(msg));
    Ok(())
}

fn main() {
    sluice_guest::run(handle);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledges_and_describes_the_message() {
        let msg = Message::new("orders", "hello")
            .with_id("0190a000-0000-7000-8000-000000000001")
            .with_attempt(2, 6);
        assert_eq!(handle(&msg), Ok(()));
        assert_eq!(
            summary(&msg),
            "ack topic=orders id=0190a000-0000-7000-8000-000000000001 attempt=2 bytes=5"
        );
    }

    #[test]
    fn acknowledges_an_empty_payload() {
        assert_eq!(handle(&Message::new("t", "")), Ok(()));
    }
}
