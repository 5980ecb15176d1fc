//! `validate`: acknowledges a payload that is valid JSON (any JSON value) and
//! rejects anything else with exit status 65, which sends it straight to the
//! dead-letter queue with no retry: a malformed message never gets better.

use sluice_guest::{Message, Result};

fn handle(msg: &Message) -> Result {
    // Parsing into a `Value` checks everything `IgnoredAny` would skip: UTF-8
    // inside strings, and nesting deeper than serde_json's limit of 128.
    // `json` turns a parse error into `Error::Reject`.
    let _: serde_json::Value = msg.json()?;
    println!("valid: {} bytes of JSON", msg.payload().len());
    Ok(())
}

fn main() {
    sluice_guest::run(handle);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(payload: &str) -> i32 {
        sluice_guest::exit_code(&handle(&Message::new("t", payload)))
    }

    #[test]
    fn acknowledges_valid_json() {
        for ok in [r#"{"a":[1,2,{"b":null}]}"#, "[]", "42", r#""s""#, " true "] {
            assert_eq!(exit(ok), 0, "{ok}");
        }
    }

    #[test]
    fn rejects_malformed_json() {
        for bad in ["", "{", r#"{"a":}"#, "[1,]", "nul", "{} {}", "\u{feff}{}"] {
            assert_eq!(exit(bad), 65, "{bad:?}");
        }
        let not_utf8 = Message::new("t", b"\"\xff\"".to_vec());
        assert!(handle(&not_utf8).unwrap_err().is_reject());
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(exit(&deep), 65);
    }
}
