use std::path::{Path, PathBuf};

use serde_json::json;

use super::*;
use crate::cli::apply::manifest::Manifest;
use crate::clock::Timestamp;
use crate::store::{ScheduleRecord, ScheduleSpec};

fn spec(name: &str, policy: Value) -> HandlerSpec {
    let Value::Object(policy) = policy else {
        panic!()
    };
    HandlerSpec {
        name: name.into(),
        topic: "t".into(),
        module: PathBuf::from("m.wasm"),
        build: None,
        policy,
    }
}

fn server(name: &str, sha: &str, policy: HandlerPolicy) -> HandlerView {
    HandlerView {
        name: name.into(),
        topic: "t".into(),
        module_sha256: sha.into(),
        policy,
        paused: false,
        paused_reason: None,
        created_at: String::new(),
        updated_at: String::new(),
        version: 1,
    }
}

fn summary(steps: &[Step]) -> Vec<(Action, Kind, &str, Vec<String>)> {
    steps
        .iter()
        .map(|s| (s.action, s.kind, s.name.as_str(), s.changes.clone()))
        .collect()
}

#[test]
fn create_update_unchanged_remove() {
    let defaults = HandlerPolicy {
        concurrency: 7,
        ..HandlerPolicy::default()
    };
    let retries3 = HandlerPolicy {
        retries: 3,
        ..defaults.clone()
    };
    let (a, b, c, d) = (
        spec("a", json!({})),
        spec("b", json!({"retries": 3})),
        spec("c", json!({"retries": 3})),
        spec("d", json!({})),
    );
    let wanted = [
        (&a, "aa".to_string()),
        (&b, "bb".to_string()),
        (&c, "cc".to_string()),
        (&d, "dd".to_string()),
    ];
    let on_server = [
        server("b", "bb", retries3),
        server("c", "old", defaults.clone()),
        // An absent field means the server's default: d is unchanged.
        server("d", "dd", defaults.clone()),
        server("old", "ee", defaults.clone()),
    ];
    let at = |handlers| OnServer {
        handlers,
        schedules: &[],
        defaults: &defaults,
    };
    let steps = plan(&wanted, &[], at(&on_server), true).unwrap();
    let h = Kind::Handler;
    assert_eq!(
        summary(&steps),
        [
            (Action::Create, h, "a", vec![]),
            (Action::Unchanged, h, "b", vec![]),
            (
                Action::Update,
                h,
                "c",
                vec!["module".to_string(), "policy.retries".to_string()]
            ),
            (Action::Unchanged, h, "d", vec![]),
            (Action::Remove, h, "old", vec![]),
        ]
    );
    // Without --prune nothing is removed.
    let steps = plan(&wanted, &[], at(&on_server), false).unwrap();
    assert!(steps.iter().all(|s| s.action != Action::Remove));
    // A topic change is refused, naming the handler and the field.
    let mut moved = server("d", "dd", defaults.clone());
    moved.topic = "elsewhere".into();
    let err = plan(&wanted[3..], &[], at(&[moved]), false).unwrap_err();
    assert!(err.starts_with("handler \"d\": topic:"), "{err}");
}

/// The server's view of `spec` as `GET /v1/schedules` shows it.
fn view(spec: ScheduleSpec, paused: bool) -> ScheduleView {
    let mut rec = ScheduleRecord::new(spec, Timestamp(1_700_000_000_000));
    rec.paused = paused;
    ScheduleView::new(rec, 1)
}

fn schedules(text: &str) -> Vec<ScheduleEntrySpec> {
    Manifest::parse(text, Path::new("sluice.toml"))
        .unwrap()
        .schedules
}

#[test]
fn schedules_plan_by_spec_field_and_pause_and_after_handlers() {
    let wanted = schedules(
        r#"
[[schedule]]
id = "same"
cron = "0 3 * * *"
topic = "t"
payload = "hello"
start = 2027-01-01T00:00:00Z

[[schedule]]
id = "moved"
cron = "0 4 * * *"
topic = "t"
jitter = "30s"

[[schedule]]
id = "paused"
cron = "0 3 * * *"
topic = "t"
paused = true

[[schedule]]
id = "new"
cron = "@daily"
topic = "t"
"#,
    );
    let mut same = ScheduleSpec::new("same", "0 3 * * *", "t");
    same.payload = "hello".into();
    same.start = Some(Timestamp::parse_rfc3339("2027-01-01T00:00:00Z").unwrap());
    let on_server = [
        // Every default filled in on the server's side, and paused by hand
        // (an entry without `paused` leaves that alone): still the same.
        view(same, true),
        view(ScheduleSpec::new("moved", "0 3 * * *", "t"), false),
        // The manifest says paused: a pause, not a rewrite...
        view(ScheduleSpec::new("paused", "0 3 * * *", "t"), false),
        view(ScheduleSpec::new("old", "0 3 * * *", "t"), true),
    ];
    let defaults = HandlerPolicy::default();
    let a = spec("a", json!({}));
    let handlers = [(&a, "aa".to_string())];
    let handler_on_server = [server("gone", "gg", defaults.clone())];
    let server = OnServer {
        handlers: &handler_on_server,
        schedules: &on_server,
        defaults: &defaults,
    };
    let steps = plan(&handlers, &wanted, server, true).unwrap();
    let (h, s) = (Kind::Handler, Kind::Schedule);
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        summary(&steps),
        [
            (Action::Create, h, "a", vec![]),
            (Action::Unchanged, s, "same", vec![]),
            (Action::Update, s, "moved", strings(&["cron", "jitter_ms"])),
            (Action::Update, s, "paused", strings(&["paused"])),
            (Action::Create, s, "new", vec![]),
            // Removals last: schedules before handlers.
            (Action::Remove, s, "old", vec![]),
            (Action::Remove, h, "gone", vec![]),
        ]
    );
    // ... and `paused = true` on a paused schedule is unchanged.
    let paused_on_server = [view(ScheduleSpec::new("paused", "0 3 * * *", "t"), true)];
    let server = OnServer {
        handlers: &[],
        schedules: &paused_on_server,
        defaults: &defaults,
    };
    let steps = plan(&[], &wanted[2..3], server, false).unwrap();
    assert_eq!(summary(&steps), [(Action::Unchanged, s, "paused", vec![])]);
}
