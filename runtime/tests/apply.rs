//! `sluice apply -f sluice.toml` through the binary against a served API:
//! create, update (module, policy, topic), unchanged (not re-registered: the
//! version stays), prune with and without `--yes`, `--dry-run` changing
//! nothing, build commands, and a bad manifest as one error line; the same
//! for schedules (unchanged: revision and update time stay; removed before
//! handlers, created after them).

mod common;
use common::{api_state, fails, json, ok, serve, sluice};

use serde_json::Value;
use sluice::store::StoreConfig;

const NOOP: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;
const NOOP2: &str = r#"(module (memory (export "memory") 2) (func (export "_start")))"#;

struct Server {
    _rt: tokio::runtime::Runtime,
    url: String,
    dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (_store, state) = api_state(&dir.path().join("data"), StoreConfig::default(), None);
        let url = serve(&rt, state);
        Server { _rt: rt, url, dir }
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let mut all = args.to_vec();
        all.extend(["--url", &self.url]);
        sluice(&all)
    }

    fn manifest(&self, text: &str) -> String {
        let path = self.dir.path().join("sluice.toml");
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }

    fn module(&self, name: &str, wat: &str) {
        std::fs::write(self.dir.path().join(name), wat::parse_str(wat).unwrap()).unwrap();
    }

    fn handlers(&self) -> Vec<(String, String, u64)> {
        let list = json(&self.run(&["handlers", "list", "--json"]));
        list["handlers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["name"].as_str().unwrap().to_string(),
                    h["topic"].as_str().unwrap().to_string(),
                    h["version"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    fn handler(&self, name: &str) -> Value {
        json(&self.run(&["handlers", "show", name, "--json"]))
    }

    /// The server's schedules by id.
    fn schedules(&self) -> Vec<Value> {
        let list = json(&self.run(&["schedules", "list", "--json"]));
        list["schedules"].as_array().unwrap().clone()
    }

    fn schedule(&self, id: &str) -> Value {
        json(&self.run(&["schedules", "show", id, "--json"]))["schedule"].clone()
    }
}

/// The report's steps as (action, "kind name").
fn actions(report: &Value) -> Vec<(String, String)> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["action"].as_str().unwrap().to_string(),
                format!(
                    "{} {}",
                    s["kind"].as_str().unwrap(),
                    s["name"].as_str().unwrap()
                ),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

const TWO: &str = r#"
[[handler]]
name = "a"
topic = "t"
module = "a.wasm"

[[handler]]
name = "b"
topic = "t"
module = "b.wasm"
retries = 2
timeout = "5s"
memory = "16MiB"
env = { MODE = "x" }
"#;

#[test]
fn create_then_unchanged_then_update() {
    let s = Server::start();
    s.module("a.wasm", NOOP);
    s.module("b.wasm", NOOP);
    let file = s.manifest(TWO);

    // Dry run on an empty server: the plan, nothing registered.
    let out = ok(&s.run(&["apply", "-f", &file, "--dry-run"]));
    assert!(out.contains("create    handler a (topic t)"), "{out}");
    assert!(out.contains("dry run: nothing changed"), "{out}");
    assert!(s.handlers().is_empty());

    let report = json(&s.run(&["apply", "-f", &file, "--json"]));
    assert_eq!(
        actions(&report),
        pairs(&[("create", "handler a"), ("create", "handler b")])
    );
    assert_eq!(report["applied"], true);
    let b = s.handler("b");
    assert_eq!(b["policy"]["retries"], 2);
    assert_eq!(b["policy"]["timeout_ms"], 5000);
    assert_eq!(b["policy"]["memory_bytes"], 16 << 20);
    assert_eq!(b["policy"]["env"]["MODE"], "x");

    // Applied again: unchanged, not registered again (versions stay at 1).
    let out = ok(&s.run(&["apply", "-f", &file]));
    assert!(out.contains("unchanged handler a (topic t)"), "{out}");
    assert!(
        out.contains("applied: 0 created, 0 updated, 2 unchanged, 0 removed"),
        "{out}"
    );
    assert_eq!(
        s.handlers(),
        [("a".into(), "t".into(), 1), ("b".into(), "t".into(), 1)]
    );

    // A new module for a, a policy change for b: both updated, named.
    s.module("a.wasm", NOOP2);
    s.manifest(&TWO.replace("retries = 2", "retries = 3"));
    let out = ok(&s.run(&["apply", "-f", &file, "--dry-run"]));
    assert!(
        out.contains("update    handler a (topic t): module"),
        "{out}"
    );
    assert!(
        out.contains("update    handler b (topic t): policy.retries"),
        "{out}"
    );
    assert_eq!(s.handlers()[0].2, 1, "the dry run changed nothing");
    ok(&s.run(&["apply", "-f", &file]));
    assert_eq!(
        s.handlers(),
        [("a".into(), "t".into(), 2), ("b".into(), "t".into(), 2)]
    );
    assert_eq!(s.handler("b")["policy"]["retries"], 3);

    // A field removed from the manifest goes back to the server's default.
    s.manifest(&TWO.replace("retries = 2\n", ""));
    let out = ok(&s.run(&["apply", "-f", &file]));
    assert!(
        out.contains("update    handler b (topic t): policy.retries"),
        "{out}"
    );
    assert_eq!(s.handler("b")["policy"]["retries"], 5);

    // A topic change is refused before anything changes, naming handler and field.
    s.manifest(&TWO.replacen("topic = \"t\"", "topic = \"u\"", 1));
    let err = fails(&s.run(&["apply", "-f", &file]));
    assert!(
        err.contains("handler \"a\": topic: it is subscribed to \"t\""),
        "{err}"
    );
    assert_eq!(s.handler("a")["topic"], "t");
}

#[test]
fn prune_asks_and_refuses_without_yes() {
    let s = Server::start();
    s.module("a.wasm", NOOP);
    s.module("b.wasm", NOOP);
    let file = s.manifest(TWO);
    ok(&s.run(&["apply", "-f", &file]));
    let only_a = s.manifest("[[handler]]\nname = \"a\"\ntopic = \"t\"\nmodule = \"a.wasm\"\n");

    // Without --prune, b stays.
    let out = ok(&s.run(&["apply", "-f", &only_a]));
    assert!(!out.contains("remove    "), "{out}");
    assert_eq!(s.handlers().len(), 2);

    // --prune --dry-run plans the removal and does nothing.
    let out = ok(&s.run(&["apply", "-f", &only_a, "--prune", "--dry-run"]));
    assert!(out.contains("remove    handler b (topic t)"), "{out}");
    assert_eq!(s.handlers().len(), 2);

    // --prune with stdin not a terminal and no --yes: refused, nothing changed.
    let err = fails(&s.run(&["apply", "-f", &only_a, "--prune"]));
    assert!(
        err.contains("refusing to remove handlers without --yes"),
        "{err}"
    );
    assert_eq!(s.handlers().len(), 2);

    // --prune --yes removes it.
    let report = json(&s.run(&["apply", "-f", &only_a, "--prune", "--yes", "--json"]));
    assert_eq!(
        actions(&report),
        pairs(&[("unchanged", "handler a"), ("remove", "handler b")])
    );
    assert_eq!(s.handlers(), [("a".into(), "t".into(), 1)]);
}

#[test]
fn build_commands_run_in_the_manifests_directory_first() {
    let s = Server::start();
    s.module("source.wasm", NOOP);
    let file = s.manifest(
        "[[handler]]\nname = \"built\"\ntopic = \"t\"\nbuild = \"cp source.wasm out.wasm\"\nmodule = \"out.wasm\"\n",
    );
    ok(&s.run(&["apply", "-f", &file]));
    assert_eq!(s.handlers(), [("built".into(), "t".into(), 1)]);

    let failing = s.manifest(
        "[[handler]]\nname = \"built\"\ntopic = \"t\"\nbuild = \"exit 3\"\nmodule = \"out.wasm\"\n",
    );
    let out = s.run(&["apply", "-f", &failing]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: handler \"built\": build: `exit 3` failed"),
        "{err}"
    );
}

/// Each kind of bad manifest is one error line naming the file, the entry and
/// the field, and nothing is registered.
#[test]
fn a_bad_manifest_is_one_error_naming_file_entry_and_field() {
    let s = Server::start();
    s.module("a.wasm", NOOP);
    let dir = s.dir.path().to_str().unwrap().to_string();
    for (text, expected) in [
        ("[[handler]\n", "manifest: (syntax): malformed TOML"),
        (
            "[[handler]]\nname = \"a\"\ntopic = \"t\"\nmodule = \"a.wasm\"\ntimeout = \"soon\"\n",
            "handler \"a\": timeout: invalid duration \"soon\"",
        ),
        (
            "[[handler]]\nname = \"a\"\ntopic = \"t\"\nmodule = \"a.wasm\"\nretries = -1\n",
            "handler \"a\": retries: invalid value",
        ),
        (
            "[[handler]]\nname = \"a\"\ntopic = \"t\"\nmodule = \"a.wasm\"\ncolour = 1\n",
            "handler \"a\": colour: unknown field `colour`",
        ),
        (
            "[[handler]]\nname = \"a\"\ntopic = \"t\"\nmodule = \"missing.wasm\"\n",
            "handler \"a\": module: cannot read",
        ),
        (
            "[[handler]]\nname = \"a\"\ntopic = \"T\"\nmodule = \"a.wasm\"\n",
            "handler \"a\": topic: invalid topic",
        ),
        // A schedule beside a good handler: nothing is registered either.
        (
            "[[handler]]\nname = \"a\"\ntopic = \"t\"\nmodule = \"a.wasm\"\n\
             [[schedule]]\nid = \"s\"\ncron = \"0 25 * * *\"\ntopic = \"t\"\n",
            "schedule \"s\": cron: \"0 25 * * *\":",
        ),
        (
            "[[handler]]\nname = \"a\"\ntopic = \"t\"\nmodule = \"a.wasm\"\n\
             [[schedule]]\nid = \"s\"\ncron = \"0 3 * * *\"\ntopic = \"t\"\ntimezone = \"Europe/Londres\"\n",
            "schedule \"s\": timezone: unknown time zone \"Europe/Londres\"",
        ),
        (
            "[[handler]]\nname = \"a\"\ntopic = \"t\"\nmodule = \"a.wasm\"\n\
             [[schedule]]\nid = \"s\"\ncron = \"0 3 * * *\"\ntopic = \"t\"\nevery = \"day\"\n",
            "schedule \"s\": every: unknown field `every`",
        ),
    ] {
        let file = s.manifest(text);
        let err = fails(&s.run(&["apply", "-f", &file]));
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(
            err.contains(&format!("{dir}/sluice.toml: {expected}")),
            "{text}\n  got: {err}\n  expected: {expected}"
        );
    }
    let err = fails(&s.run(&["apply", "-f", &format!("{dir}/none.toml")]));
    assert!(err.contains("cannot read manifest"), "{err}");
    assert!(s.handlers().is_empty());
    assert!(s.schedules().is_empty());
}

const SCHEDULED: &str = r#"
[[handler]]
name = "a"
topic = "t"
module = "a.wasm"

[[schedule]]
id = "nightly"
cron = "0 3 * * *"
timezone = "Europe/London"
topic = "t"
payload = '{"all":true}'
headers = { source = "cron" }
catch_up = "all"
catch_up_window = "2h"
overlap = "buffer_one"
start = 2027-01-01T00:00:00Z
jitter = "30s"

[[schedule]]
id = "hourly"
cron = "0 * * * *"
topic = "t"
paused = true
"#;

/// (revision, updated_at) of a schedule.
fn written(schedule: &Value) -> (u64, String) {
    (
        schedule["revision"].as_u64().unwrap(),
        schedule["updated_at"].as_str().unwrap().to_string(),
    )
}

#[test]
fn schedules_are_created_after_handlers_updated_by_field_and_left_unchanged() {
    let s = Server::start();
    s.module("a.wasm", NOOP);
    let file = s.manifest(SCHEDULED);

    let out = ok(&s.run(&["apply", "-f", &file, "--dry-run"]));
    assert!(
        out.contains("create    handler a (topic t)\ncreate    schedule nightly (topic t)\n"),
        "{out}"
    );
    assert!(s.schedules().is_empty(), "the dry run created nothing");

    // On an empty server: topic t exists only once handler a is registered,
    // so the schedules' PUTs succeed only because handlers go first.
    let report = json(&s.run(&["apply", "-f", &file, "--json"]));
    assert_eq!(
        actions(&report),
        pairs(&[
            ("create", "handler a"),
            ("create", "schedule nightly"),
            ("create", "schedule hourly"),
        ])
    );
    let nightly = s.schedule("nightly");
    assert_eq!(nightly["cron"], "0 3 * * *");
    assert_eq!(nightly["timezone"], "Europe/London");
    assert_eq!(nightly["payload_base64"], "eyJhbGwiOnRydWV9");
    assert_eq!(nightly["headers"]["source"], "cron");
    assert_eq!(nightly["catch_up"], "all");
    assert_eq!(nightly["catch_up_window_ms"], 7_200_000);
    assert_eq!(nightly["overlap"], "buffer_one");
    assert_eq!(nightly["start"], "2027-01-01T00:00:00.000Z");
    assert_eq!(nightly["jitter_ms"], 30_000);
    assert_eq!(nightly["paused"], false);
    assert_eq!(s.schedule("hourly")["paused"], true, "paused = true");

    // Applied again: unchanged, not written (revision and update time stay).
    let before = [written(&nightly), written(&s.schedule("hourly"))];
    let out = ok(&s.run(&["apply", "-f", &file]));
    assert!(
        out.contains("unchanged schedule nightly (topic t)"),
        "{out}"
    );
    assert!(
        out.contains("applied: 0 created, 0 updated, 3 unchanged, 0 removed"),
        "{out}"
    );
    assert_eq!(
        [
            written(&s.schedule("nightly")),
            written(&s.schedule("hourly"))
        ],
        before
    );

    // A field changed: an update naming it, the schedule replaced in place.
    s.manifest(&SCHEDULED.replace("jitter = \"30s\"", "jitter = \"1m\""));
    let out = ok(&s.run(&["apply", "-f", &file, "--dry-run"]));
    assert!(
        out.contains("update    schedule nightly (topic t): jitter_ms"),
        "{out}"
    );
    assert_eq!(written(&s.schedule("nightly")), before[0], "dry run");
    ok(&s.run(&["apply", "-f", &file]));
    let replaced = s.schedule("nightly");
    assert_eq!(replaced["jitter_ms"], 60_000);
    assert_eq!(replaced["revision"], before[0].0 + 1);
    assert_eq!(replaced["created_at"], nightly["created_at"]);

    // A field left out goes back to the default.
    s.manifest(&SCHEDULED.replace("overlap = \"buffer_one\"\n", ""));
    let out = ok(&s.run(&["apply", "-f", &file]));
    assert!(
        out.contains("update    schedule nightly (topic t): jitter_ms, overlap"),
        "{out}"
    );
    assert_eq!(s.schedule("nightly")["overlap"], "skip");

    // `paused = false` resumes; a pause by hand on an entry that does not
    // say `paused` is left alone.
    s.manifest(
        &SCHEDULED
            .replace("overlap = \"buffer_one\"\n", "")
            .replace("paused = true", "paused = false"),
    );
    ok(&s.run(&["schedules", "pause", "nightly"]));
    let out = ok(&s.run(&["apply", "-f", &file]));
    assert!(
        out.contains("update    schedule hourly (topic t): paused"),
        "{out}"
    );
    assert!(
        out.contains("unchanged schedule nightly (topic t)"),
        "{out}"
    );
    assert_eq!(s.schedule("hourly")["paused"], false);
    assert_eq!(s.schedule("nightly")["paused"], true);
}

#[test]
fn prune_removes_schedules_before_handlers_and_asks_first() {
    let s = Server::start();
    s.module("a.wasm", NOOP);
    s.module("b.wasm", NOOP);
    let file = s.manifest(&format!(
        "{TWO}\n[[schedule]]\nid = \"tick\"\ncron = \"*/5 * * * *\"\ntopic = \"t\"\n"
    ));
    ok(&s.run(&["apply", "-f", &file]));
    assert_eq!(s.schedules().len(), 1);

    // A schedule made by hand is the server's too: without --prune it stays.
    ok(&s.run(&[
        "schedules",
        "create",
        "manual",
        "--cron",
        "@daily",
        "--topic",
        "t",
    ]));
    let only_a = s.manifest("[[handler]]\nname = \"a\"\ntopic = \"t\"\nmodule = \"a.wasm\"\n");
    let out = ok(&s.run(&["apply", "-f", &only_a]));
    assert!(!out.contains("remove    "), "{out}");
    assert_eq!(s.schedules().len(), 2);

    // Removals: schedules first, then handlers.
    let out = ok(&s.run(&["apply", "-f", &only_a, "--prune", "--dry-run"]));
    assert!(
        out.contains(
            "remove    schedule manual (topic t)\nremove    schedule tick (topic t)\n\
             remove    handler b (topic t)\n"
        ),
        "{out}"
    );
    assert_eq!(s.schedules().len(), 2);

    let err = fails(&s.run(&["apply", "-f", &only_a, "--prune"]));
    assert!(
        err.contains("refusing to remove handlers and schedules without --yes"),
        "{err}"
    );
    assert_eq!((s.handlers().len(), s.schedules().len()), (2, 2));

    let report = json(&s.run(&["apply", "-f", &only_a, "--prune", "--yes", "--json"]));
    assert_eq!(
        actions(&report),
        pairs(&[
            ("unchanged", "handler a"),
            ("remove", "schedule manual"),
            ("remove", "schedule tick"),
            ("remove", "handler b"),
        ])
    );
    assert!(s.schedules().is_empty());
    assert_eq!(s.handlers(), [("a".into(), "t".into(), 1)]);

    // Only schedules to remove: the refusal names them.
    ok(&s.run(&[
        "schedules",
        "create",
        "manual",
        "--cron",
        "@daily",
        "--topic",
        "t",
    ]));
    let err = fails(&s.run(&["apply", "-f", &only_a, "--prune"]));
    assert!(
        err.contains("refusing to remove schedules without --yes"),
        "{err}"
    );
    assert_eq!(s.schedules().len(), 1);
}
