//! `validate`: acknowledges a payload that is valid JSON (any JSON value) and
//! rejects anything else with exit status 65, which sends it straight to the
//! dead-letter queue with no retry: a malformed message never gets better.

use serde::de::IgnoredAny;
use sluice_guest::{Message, Result};

fn handle(msg: &Message) -> Result {
    // `IgnoredAny` checks the syntax of the whole document without building it;
    // `json` turns a parse error into `Error::Reject`.
    let IgnoredAny = msg.json()?;
    println!("valid: {} bytes of JSON", msg.payload().len());
    Ok(())
}

fn main() {
    sluice_guest::run(handle)
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
    }
}
