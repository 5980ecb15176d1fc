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

#[test]
fn every_schedule_field_reads_into_the_apis_request() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("body.bin"), [0xff, 0x00]).unwrap();
    let m = Manifest::parse(
        r#"
[[schedule]]
id = "nightly"
cron = "0 3 * * MON-FRI"
timezone = "Europe/London"
topic = "reports"
payload = '{"all":true}'
headers = { source = "cron" }
ordering_key = "nightly"
catch_up = "all"
max_catch_up = 10
catch_up_window = "2h"
overlap = "buffer_one"
start = 2027-01-01T00:00:00Z
end = "2028-01-01T00:00:00+01:00"
jitter = "30s"
paused = true

[[schedule]]
id = "binary"
cron = "*/5 * * * *"
topic = "reports"
payload_file = "body.bin"
"#,
        &dir.path().join("sluice.toml"),
    )
    .unwrap();
    let [nightly, binary] = m.schedules.as_slice() else {
        panic!("{m:?}")
    };
    assert_eq!(
        serde_json::to_value(&nightly.request).unwrap(),
        json!({"cron": "0 3 * * MON-FRI", "timezone": "Europe/London", "topic": "reports",
               "payload": "{\"all\":true}", "headers": {"source": "cron"},
               "ordering_key": "nightly", "catch_up": "all", "max_catch_up": 10,
               "catch_up_window_ms": 7_200_000, "overlap": "buffer_one",
               "start": "2027-01-01T00:00:00Z", "end": "2028-01-01T00:00:00+01:00",
               "jitter_ms": 30_000})
    );
    assert_eq!(nightly.paused, Some(true));
    assert_eq!(nightly.spec.jitter_ms, 30_000);
    assert_eq!(
        nightly.spec.end.map(|t| t.to_rfc3339()).as_deref(),
        Some("2027-12-31T23:00:00.000Z")
    );
    // Absent fields take the defaults; a payload that is not UTF-8 goes as base64.
    assert_eq!(binary.request.payload_base64.as_deref(), Some("/wA="));
    assert_eq!(binary.spec.payload.as_ref(), [0xff, 0x00]);
    assert_eq!(binary.spec.timezone, "UTC");
    assert_eq!(binary.paused, None);
}

/// Each kind of bad schedule entry: one error naming the file, the entry
/// and the field, from the same checks the server runs.
#[test]
fn bad_schedules_name_the_file_the_entry_and_the_field() {
    let ok = "id = \"s\"\ncron = \"0 3 * * *\"\ntopic = \"t\"\n";
    for (text, expected) in [
        (
            "[[schedule]]\nid = \"s\"\ncron = \"61 * * * *\"\ntopic = \"t\"\n".to_string(),
            "dir/sluice.toml: schedule \"s\": cron: \"61 * * * *\":",
        ),
        (
            "[[schedule]]\nid = \"s\"\ncron = \"0 3 * *\"\ntopic = \"t\"\n".to_string(),
            "dir/sluice.toml: schedule \"s\": cron: \"0 3 * *\": 4 fields; expected 5",
        ),
        (
            "[[schedule]]\nid = \"s\"\ncron = \"0 0 30 2 *\"\ntopic = \"t\"\n".to_string(),
            "dir/sluice.toml: schedule \"s\": cron: \"0 0 30 2 *\": never matches",
        ),
        (
            format!("[[schedule]]\n{ok}timezone = \"Mars/Olympus\"\n"),
            "dir/sluice.toml: schedule \"s\": timezone: unknown time zone \"Mars/Olympus\"",
        ),
        (
            format!("[[schedule]]\n{ok}colour = 1\n"),
            "dir/sluice.toml: schedule \"s\": colour: unknown field `colour`",
        ),
        (
            format!("[[schedule]]\n{ok}catch_up = \"sometimes\"\n"),
            "dir/sluice.toml: schedule \"s\": catch_up: unknown variant `sometimes`",
        ),
        (
            format!("[[schedule]]\n{ok}max_catch_up = 0\n"),
            "dir/sluice.toml: schedule \"s\": max_catch_up: 0 is outside 1 ..= 1000",
        ),
        (
            format!("[[schedule]]\n{ok}catch_up_window = \"soon\"\n"),
            "dir/sluice.toml: schedule \"s\": catch_up_window: invalid duration \"soon\"",
        ),
        (
            format!("[[schedule]]\n{ok}jitter = \"2h\"\n"),
            "dir/sluice.toml: schedule \"s\": jitter: 7200000 ms is outside 0 ..= 3600000 ms",
        ),
        (
            format!("[[schedule]]\n{ok}start = \"tomorrow\"\n"),
            "dir/sluice.toml: schedule \"s\": start: invalid",
        ),
        (
            format!("[[schedule]]\n{ok}start = 2027-01-01\n"),
            "dir/sluice.toml: schedule \"s\": start: invalid",
        ),
        (
            format!("[[schedule]]\n{ok}start = 5\n"),
            "dir/sluice.toml: schedule \"s\": start: expected an RFC 3339 time",
        ),
        (
            format!("[[schedule]]\n{ok}start = 2028-01-01T00:00:00Z\nend = 2027-01-01T00:00:00Z\n"),
            "dir/sluice.toml: schedule \"s\": end: end (",
        ),
        (
            format!("[[schedule]]\n{ok}payload = \"a\"\npayload_base64 = \"YQ==\"\n"),
            "dir/sluice.toml: schedule \"s\": payload: give one of",
        ),
        (
            format!("[[schedule]]\n{ok}payload_base64 = \"***\"\n"),
            "dir/sluice.toml: schedule \"s\": payload_base64: ",
        ),
        (
            format!("[[schedule]]\n{ok}payload_file = \"none.bin\"\n"),
            "dir/sluice.toml: schedule \"s\": payload_file: cannot read dir/none.bin",
        ),
        (
            format!("[[schedule]]\n{ok}headers = {{ sluice-schedule = \"x\" }}\n"),
            "dir/sluice.toml: schedule \"s\": headers: \"sluice-schedule\" is set by sluice",
        ),
        (
            format!("[[schedule]]\n{ok}ordering_key = \"\"\n"),
            "dir/sluice.toml: schedule \"s\": ordering_key: invalid ordering key",
        ),
        (
            "[[schedule]]\nid = \"S\"\ncron = \"0 3 * * *\"\ntopic = \"t\"\n".to_string(),
            "dir/sluice.toml: schedule \"S\": id: invalid schedule id",
        ),
        (
            "[[schedule]]\ncron = \"0 3 * * *\"\ntopic = \"t\"\n".to_string(),
            "dir/sluice.toml: schedule #1: id: missing",
        ),
        (
            "[[schedule]]\nid = \"s\"\ntopic = \"t\"\n".to_string(),
            "dir/sluice.toml: schedule \"s\": cron: missing",
        ),
        (
            "[[schedule]]\nid = \"s\"\ncron = \"0 3 * * *\"\ntopic = \"T\"\n".to_string(),
            "dir/sluice.toml: schedule \"s\": topic: invalid topic",
        ),
        (
            format!("[[schedule]]\n{ok}paused = \"yes\"\n"),
            "dir/sluice.toml: schedule \"s\": paused: invalid type",
        ),
        (
            format!("[[schedule]]\n{ok}\n[[schedule]]\n{ok}"),
            "dir/sluice.toml: schedule \"s\": id: named twice",
        ),
        (
            "[[schedules]]\n".to_string(),
            "dir/sluice.toml: manifest: schedules: unknown field `schedules`",
        ),
    ] {
        let err = parse(&text).expect_err(&text);
        assert!(
            err.starts_with(expected),
            "{text}\n  got: {err}\n  expected: {expected}"
        );
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
}
