//! Names users choose: topics, handlers, ordering and idempotency keys.
//!
//! Topic and handler names match `[a-z0-9][a-z0-9._-]{0,127}` (SPEC §1): safe in
//! URLs, file names, metrics labels and as prefixes of the store's index keys.
//! Keys are free text up to [`MAX_KEY_LEN`] bytes without NUL.

use thiserror::Error;

/// Longest topic or handler name, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Longest ordering or idempotency key, in bytes.
pub const MAX_KEY_LEN: usize = 256;

/// A name or key that breaks the rules, with the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid {what} {value:?}: {reason}")]
pub struct NameError {
    /// What was being named: `topic`, `handler`, `ordering key`, ...
    pub what: &'static str,
    /// The offending value (cut to 200 characters).
    pub value: String,
    /// The rule it breaks.
    pub reason: &'static str,
}

fn refuse(what: &'static str, value: &str, reason: &'static str) -> NameError {
    NameError {
        what,
        value: value.chars().take(200).collect(),
        reason,
    }
}

/// Checks a topic or handler name; `what` names it in the error.
pub fn validate_name(what: &'static str, name: &str) -> Result<(), NameError> {
    const RULE: &str = "names match [a-z0-9][a-z0-9._-]{0,127}";
    let bytes = name.as_bytes();
    match bytes.first() {
        None => return Err(refuse(what, name, "must not be empty")),
        Some(b) if !(b.is_ascii_lowercase() || b.is_ascii_digit()) => {
            return Err(refuse(what, name, RULE));
        }
        _ => {}
    }
    if bytes.len() > MAX_NAME_LEN {
        return Err(refuse(what, name, "longer than 128 bytes"));
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(refuse(what, name, RULE));
    }
    Ok(())
}

/// Checks a topic name.
pub fn validate_topic(name: &str) -> Result<(), NameError> {
    validate_name("topic", name)
}

/// Checks a handler name.
pub fn validate_handler(name: &str) -> Result<(), NameError> {
    validate_name("handler", name)
}

/// Checks an ordering or idempotency key; `what` names it in the error.
pub fn validate_key(what: &'static str, key: &str) -> Result<(), NameError> {
    if key.is_empty() {
        return Err(refuse(what, key, "must not be empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(refuse(what, key, "longer than 256 bytes"));
    }
    if key.contains('\0') {
        return Err(refuse(what, key, "must not contain NUL"));
    }
    Ok(())
}

/// Longest message header name, in bytes.
pub const MAX_HEADER_NAME_LEN: usize = 128;
/// Longest message header value, in bytes.
pub const MAX_HEADER_VALUE_LEN: usize = 4096;

/// Checks one message header, however it arrived (a `Sluice-Header-*` HTTP
/// header or a batch entry's `headers`): the name is 1 to 128 bytes of lower
/// case HTTP token characters (`a-z 0-9 ! # $ % & ' * + - . ^ _ | ~`), the value
/// at most 4096 bytes of visible ASCII, spaces and tabs (no control bytes).
pub fn validate_header(name: &str, value: &str) -> Result<(), NameError> {
    const TOKEN: &[u8] = b"!#$%&'*+-.^_`|~";
    if name.is_empty() {
        return Err(refuse("header name", name, "must not be empty"));
    }
    if name.len() > MAX_HEADER_NAME_LEN {
        return Err(refuse("header name", name, "longer than 128 bytes"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || TOKEN.contains(&b))
    {
        return Err(refuse(
            "header name",
            name,
            "lower case letters, digits and !#$%&'*+-.^_`|~ only",
        ));
    }
    if value.len() > MAX_HEADER_VALUE_LEN {
        return Err(refuse("header value", value, "longer than 4096 bytes"));
    }
    if !value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        return Err(refuse(
            "header value",
            value,
            "visible ASCII, spaces and tabs only (no control bytes)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec_pattern() {
        for ok in ["a", "orders", "orders.v2", "a-b_c.d", "0", &"x".repeat(128)] {
            validate_topic(ok).unwrap();
        }
        for bad in [
            "",
            "Orders",
            "-a",
            ".a",
            "a b",
            "a/b",
            "é",
            &"x".repeat(129),
        ] {
            let e = validate_topic(bad).unwrap_err();
            assert_eq!(e.what, "topic");
        }
    }

    #[test]
    fn keys_are_bounded_text() {
        validate_key("ordering key", "user:42").unwrap();
        assert!(validate_key("ordering key", "").is_err());
        assert!(validate_key("ordering key", "a\0b").is_err());
        assert!(validate_key("ordering key", &"k".repeat(257)).is_err());
    }

    #[test]
    fn headers_follow_the_http_rules() {
        validate_header("x-trace_id.v2", "a b\tc").unwrap();
        for (name, value) in [
            ("", "v"),
            ("Upper", "v"),
            ("a b", "v"),
            ("a", "nul\0"),
            ("a", "line\nbreak"),
            ("a", "é"),
        ] {
            assert!(validate_header(name, value).is_err(), "{name:?}: {value:?}");
        }
    }
}
