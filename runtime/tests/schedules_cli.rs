//! `sluice schedules ...` end to end: the binary against the API served on a
//! loopback port over a real `EmbeddedStore` on a manual clock.

mod common;
use std::sync::Arc;
use std::time::Duration;

use common::{fails, json, ok, serve, sluice};
use sluice::clock::{Clock as _, ManualClock};
use sluice::metrics::Metrics;
use sluice::store::StoreConfig;
use sluice::store::conformance::helpers::{T0, handler};
use sluice::worker::maintenance::schedules::tick;

#[test]
fn create_list_show_pause_resume_trigger_remove() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let clock = ManualClock::new(T0);
    let (store, state) = common::api_state_on(
        &dir.path().join("data"),
        StoreConfig::default(),
        None,
        Arc::new(clock.clone()),
    );
    rt.block_on(handler(store.as_ref(), "h", "t"));
    let url = serve(&rt, state);
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--url", &url]);
        sluice(&all)
    };

    let out = ok(&run(&[
        "schedules",
        "create",
        "nightly",
        "--cron",
        "0 3 * * *",
        "--topic",
        "t",
        "--timezone",
        "Europe/London",
        "--data",
        "{\"n\":1}",
        "--overlap",
        "allow",
        "--catch-up",
        "all",
        "--max-catch-up",
        "3",
        "--catch-up-window",
        "168h",
        "--jitter",
        "0s",
    ]));
    assert!(
        out.contains("nightly") && out.contains("2027-01-16T03:00:00+00:00"),
        "{out}"
    );
    let v = json(&run(&["schedules", "show", "nightly", "--json"]));
    assert_eq!(v["schedule"]["max_catch_up"], 3);
    assert_eq!(v["schedule"]["catch_up"], "all");
    assert_eq!(v["schedule"]["next"].as_array().unwrap().len(), 5);
    assert_eq!(v["schedule"]["payload_bytes"], 7);

    // Five days later: the last three nights fire (catch-up all, cap 3), two are missed.
    clock.advance(Duration::from_secs(5 * 24 * 3600));
    rt.block_on(tick(store.as_ref(), clock.now(), &Metrics::default()))
        .unwrap();
    let shown = ok(&run(&["schedules", "show", "nightly"]));
    assert!(shown.contains("missed (catch_up_cap)"), "{shown}");
    assert_eq!(
        shown.matches("fired").count(),
        4,
        "3 rows and the summary: {shown}"
    );
    assert!(
        shown.contains("2027-01-21T03:00:00+00:00"),
        "next 5 listed: {shown}"
    );
    let listed = ok(&run(&["schedules", "list"]));
    assert!(
        listed.contains("nightly") && listed.contains("active"),
        "{listed}"
    );

    assert!(ok(&run(&["schedules", "pause", "nightly"])).contains("paused"));
    assert_eq!(
        json(&run(&["schedules", "list", "--json"]))["schedules"][0]["paused"],
        true
    );
    assert!(ok(&run(&["schedules", "resume", "nightly"])).contains("resumed"));
    let t = json(&run(&["schedules", "trigger", "nightly", "--json"]));
    assert_eq!(t["kind"], "triggered");
    let m = json(&run(&[
        "status",
        t["message_id"].as_str().unwrap(),
        "--json",
    ]));
    assert!(
        m["idempotency_key"]
            .as_str()
            .unwrap()
            .starts_with("sched:nightly:trigger:")
    );

    let err = fails(&run(&[
        "schedules",
        "create",
        "bad",
        "--cron",
        "0 0 31 2 *",
        "--topic",
        "t",
    ]));
    assert!(err.contains("never matches"), "{err}");
    let err = fails(&run(&[
        "schedules",
        "create",
        "bad",
        "--cron",
        "* * * * *",
        "--topic",
        "t",
        "--tz",
        "Moon/Base",
    ]));
    assert!(err.contains("timezone"), "{err}");
    assert!(ok(&run(&["schedules", "remove", "nightly"])).contains("removed"));
    let err = fails(&run(&["schedules", "show", "nightly"]));
    assert!(err.contains("unknown schedule"), "{err}");
}
