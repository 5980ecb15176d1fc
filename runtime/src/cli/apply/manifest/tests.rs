use serde_json::json;

use super::*;

fn parse(text: &str) -> Result<Manifest, String> {
    Manifest::parse(text, Path::new("dir/sluice.toml")).map_err(|e| e.to_string())
}

#[test]
fn every_field_reads_into_the_apis_policy() {
    let m = parse(
        r#"
[[handler]]
name = "resize"
topic = "images"
module = "target/resize.wasm"
build = "make resize"
timeout = "10s"
lease = "1m"
retries = 2
backoff = "250ms"
backoff_max = "5s"
memory = "32MiB"
fuel = 1000
concurrency = 3
env = { MODE = "fast" }

[[handler]]
name = "mail"
topic = "email"
module = "mail.wasm"
memory = 1048576
"#,
    )
    .unwrap();
    let [resize, mail] = m.handlers.as_slice() else {
        panic!("{m:?}")
    };
    assert_eq!(resize.module, Path::new("dir/target/resize.wasm"));
    assert_eq!(resize.build.as_deref(), Some("make resize"));
    assert_eq!(
        Value::Object(resize.policy.clone()),
        json!({"timeout_ms": 10000, "lease_ms": 60000, "retries": 2, "backoff_ms": 250,
               "backoff_max_ms": 5000, "memory_bytes": 33554432, "fuel": 1000,
               "concurrency": 3, "env": {"MODE": "fast"}})
    );
    assert_eq!(
        Value::Object(mail.policy.clone()),
        json!({"memory_bytes": 1048576})
    );
    let defaults = HandlerPolicy::default();
    let p = mail.policy_over(&defaults).unwrap();
    assert_eq!(p.memory_bytes, 1 << 20);
    assert_eq!(p.timeout_ms, defaults.timeout_ms);
}

#[test]
fn an_empty_manifest_has_no_handlers() {
    assert!(parse("").unwrap().handlers.is_empty());
}

/// Each kind of bad manifest: one error naming the file, the entry and the field.
#[test]
fn bad_manifests_name_the_file_the_entry_and_the_field() {
    let ok = "name = \"a\"\ntopic = \"t\"\nmodule = \"a.wasm\"\n";
    for (text, expected) in [
        (
            "[[handler]\n",
            "dir/sluice.toml: manifest: (syntax): malformed TOML",
        ),
        (
            "[[handlers]]\n",
            "dir/sluice.toml: manifest: handlers: unknown field `handlers`",
        ),
        (
            &format!("[[handler]]\n{ok}colour = \"red\"\n"),
            "dir/sluice.toml: handler \"a\": colour: unknown field `colour`",
        ),
        (
            &format!("[[handler]]\n{ok}retries = \"five\"\n"),
            "dir/sluice.toml: handler \"a\": retries: invalid type",
        ),
        (
            &format!(
                "[[handler]]\n{ok}\n[[handler]]\nname = \"b\"\ntopic = \"t\"\nmodule = \"b.wasm\"\ntimeout = \"soon\"\n"
            ),
            "dir/sluice.toml: handler \"b\": timeout: invalid duration \"soon\"",
        ),
        (
            "[[handler]]\ntopic = \"t\"\nmodule = \"a.wasm\"\n",
            "dir/sluice.toml: handler #1: name: missing",
        ),
        (
            "[[handler]]\nname = \"A\"\ntopic = \"t\"\nmodule = \"a.wasm\"\n",
            "dir/sluice.toml: handler \"A\": name: invalid handler",
        ),
        (
            "[[handler]]\nname = \"a\"\ntopic = \"t t\"\nmodule = \"a.wasm\"\n",
            "dir/sluice.toml: handler \"a\": topic: invalid topic",
        ),
        (
            "[[handler]]\nname = \"a\"\ntopic = \"t\"\n",
            "dir/sluice.toml: handler \"a\": module: missing",
        ),
        (
            &format!("[[handler]]\n{ok}memory = \"lots\"\n"),
            "dir/sluice.toml: handler \"a\": memory: invalid size \"lots\"",
        ),
        (
            &format!("[[handler]]\n{ok}memory = \"8GiB\"\n"),
            "dir/sluice.toml: handler \"a\": memory: 8589934592 bytes is outside",
        ),
        (
            &format!("[[handler]]\n{ok}timeout = \"1s\"\nlease = \"500ms\"\n"),
            "dir/sluice.toml: handler \"a\": lease: 500 ms must be within timeout",
        ),
        (
            &format!("[[handler]]\n{ok}concurrency = 0\n"),
            "dir/sluice.toml: handler \"a\": concurrency: 0 is outside",
        ),
        (
            &format!("[[handler]]\n{ok}env = {{ SLUICE_TOPIC = \"x\" }}\n"),
            "dir/sluice.toml: handler \"a\": env:",
        ),
        (
            &format!("[[handler]]\n{ok}build = \" \"\n"),
            "dir/sluice.toml: handler \"a\": build: empty",
        ),
        (
            &format!("[[handler]]\n{ok}\n[[handler]]\n{ok}"),
            "dir/sluice.toml: handler \"a\": name: named twice",
        ),
    ] {
        let err = parse(text).expect_err(text);
        assert!(
            err.starts_with(expected),
            "{text}\n  got: {err}\n  expected: {expected}"
        );
    }
}
