//! Schedules over HTTP: `/v1/schedules` and the dashboard's Schedules page,
//! called as a tower service (no port) over a real `EmbeddedStore` on a
//! manual clock; ticks go through the ticker's own `tick`.

mod common;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use sluice::clock::{Clock as _, ManualClock};
use sluice::metrics::Metrics;
use sluice::store::conformance::helpers::{T0, handler};
use sluice::store::{Store, StoreConfig};
use sluice::worker::maintenance::schedules::tick;

async fn call(app: &Router, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    let req = Request::builder().method(method).uri(uri);
    let req = match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    };
    let res = app.clone().oneshot(req.unwrap()).await.unwrap();
    let status = res.status();
    let bytes = to_bytes(res.into_body(), usize::MAX).await.unwrap();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, v)
}

fn setup() -> (
    Arc<dyn Store>,
    sluice::api::ApiState,
    ManualClock,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let (store, state) = common::api_state_on(
        dir.path(),
        StoreConfig::default(),
        None,
        Arc::new(clock.clone()),
    );
    (store, state, clock, dir)
}

#[tokio::test]
async fn schedules_api_creates_previews_fires_pauses_triggers_and_removes() {
    let (store, state, clock, _dir) = setup();
    let app = sluice::api::router(state);
    handler(store.as_ref(), "h", "t").await;

    let body = json!({"cron": "0 9 * * *", "timezone": "Europe/London", "topic": "t",
        "payload": "{\"report\":1}", "headers": {"x-a": "b"}, "overlap": "allow"});
    let (status, v) = call(&app, "PUT", "/v1/schedules/daily", Some(body.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["catch_up"], "latest", "defaults filled in");
    assert_eq!(v["max_catch_up"], 100);
    // T0 is 2027-01-15T08:00Z; 09:00 in London in January is 09:00 UTC.
    assert_eq!(v["next"][0], "2027-01-15T09:00:00.000Z");
    assert_eq!(v["next_local"][0], "2027-01-15T09:00:00+00:00");
    assert_eq!(v["next"].as_array().unwrap().len(), 5);
    let (status, _) = call(&app, "PUT", "/v1/schedules/daily", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "an upsert");

    for (bad, code, says) in [
        (
            json!({"cron": "* * *", "topic": "t"}),
            "invalid_input",
            "cron",
        ),
        (
            json!({"cron": "* * * * *", "topic": "t", "timezone": "Nowhere/Land"}),
            "invalid_input",
            "timezone",
        ),
        (
            json!({"cron": "* * * * *", "topic": "nope"}),
            "unknown_topic",
            "nope",
        ),
        (
            json!({"cron": "* * * * *", "topic": "t", "overlap": "sometimes"}),
            "invalid_input",
            "overlap",
        ),
        (
            json!({"cron": "* * * * *", "topic": "t", "cadence": 1}),
            "invalid_input",
            "cadence",
        ),
        (
            json!({"cron": "* * * * *", "topic": "t", "start": "soon"}),
            "invalid_input",
            "start",
        ),
    ] {
        let (status, v) = call(&app, "PUT", "/v1/schedules/bad", Some(bad)).await;
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(status.is_client_error());
        assert!(
            v["error"]["message"].as_str().unwrap().contains(says),
            "{v}"
        );
    }

    clock.advance(Duration::from_secs(3600));
    tick(store.as_ref(), clock.now(), &Metrics::default())
        .await
        .unwrap();
    let (_, d) = call(&app, "GET", "/v1/schedules/daily", None).await;
    let o = &d["occurrences"][0];
    assert_eq!(o["kind"], "fired");
    assert_eq!(o["scheduled_for"], "2027-01-15T09:00:00.000Z");
    let message = o["message_id"].as_str().unwrap().to_string();
    let (_, m) = call(&app, "GET", &format!("/v1/messages/{message}"), None).await;
    assert_eq!(m["idempotency_key"], "sched:daily:2027-01-15T09:00:00.000Z");
    assert_eq!(m["headers"]["sluice-schedule"], "daily");
    assert_eq!(d["schedule"]["next"][0], "2027-01-16T09:00:00.000Z");

    let (_, v) = call(&app, "POST", "/v1/schedules/daily/pause", None).await;
    assert_eq!(v["paused"], true);
    let (_, v) = call(&app, "POST", "/v1/schedules/daily/resume", None).await;
    assert_eq!(v["paused"], false);
    let (status, t) = call(&app, "POST", "/v1/schedules/daily/trigger", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(t["kind"], "triggered");
    let (_, list) = call(&app, "GET", "/v1/schedules", None).await;
    assert_eq!(list["schedules"][0]["id"], "daily");
    assert_eq!(
        list["schedules"][0]["fired"], 1,
        "a trigger is not a fired occurrence"
    );
    assert_eq!(list["schedules"][0]["cursor"], "2027-01-15T09:00:00.000Z");

    let (status, v) = call(&app, "DELETE", "/v1/schedules/daily", None).await;
    assert_eq!((status, &v["schedule"]), (StatusCode::OK, &json!("daily")));
    let (status, v) = call(&app, "GET", "/v1/schedules/daily", None).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!("unknown_schedule"))
    );
    let (status, _) = call(&app, "POST", "/v1/schedules/daily/trigger", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn misses_are_counted_in_the_metric() {
    let (store, state, clock, _dir) = setup();
    let metrics = state.metrics.clone();
    let app = sluice::api::router(state);
    handler(store.as_ref(), "h", "t").await;
    let body = json!({"cron": "0 * * * *", "topic": "t", "catch_up": "skip"});
    call(&app, "PUT", "/v1/schedules/hourly", Some(body)).await;
    clock.advance(Duration::from_secs(3 * 3600 + 1800));
    tick(store.as_ref(), clock.now(), &metrics).await.unwrap();
    let (_, text) = call(&app, "GET", "/metrics", None).await;
    let text = text.as_str().unwrap();
    assert!(
        text.contains("sluice_schedule_missed_total{schedule=\"hourly\",reason=\"catch_up\"} 3"),
        "{text}"
    );
}

#[tokio::test]
async fn the_dashboard_lists_shows_and_acts_on_schedules_csrf_checked() {
    let (store, state, clock, _dir) = setup();
    let app = sluice::ui::app(state, Some(Arc::new(sluice::ui::History::default())));
    handler(store.as_ref(), "h", "t").await;
    let mut spec = sluice::store::ScheduleSpec::new("nightly", "0 3 * * *", "t");
    spec.timezone = "America/New_York".into();
    store.put_schedule(spec).await.unwrap();
    clock.advance(Duration::from_secs(24 * 3600));
    tick(store.as_ref(), clock.now(), &Metrics::default())
        .await
        .unwrap();

    let get = |uri: &str, cookie: Option<String>| {
        let mut req = Request::get(uri);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        let app = app.clone();
        let req = req.body(Body::empty()).unwrap();
        async move { app.oneshot(req).await.unwrap() }
    };
    let res = get("/ui/schedules", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = res.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = String::from_utf8(
        to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(
        page.contains("nightly") && page.contains("America&#x2f;New_York"),
        "{page}"
    );
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token");
    let csrf = page[at + 19..at + 19 + 64].to_string();

    let res = get("/ui/schedules/nightly", Some(cookie.clone())).await;
    let page = String::from_utf8(
        to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(
        page.contains("/ui/messages/"),
        "occurrences link their messages: {page}"
    );
    assert!(
        page.contains("2027-01-17T03:00:00-05:00"),
        "next times in the zone: {page}"
    );
    assert!(page.contains("missed") || page.contains("fired"));

    let post = |uri: &str, form: String| {
        let req = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::HOST, "localhost")
            .header(header::COOKIE, cookie.clone())
            .body(Body::from(form))
            .unwrap();
        let app = app.clone();
        async move { app.oneshot(req).await.unwrap().status() }
    };
    assert_eq!(
        post("/ui/schedules/nightly/pause", "csrf=wrong".into()).await,
        StatusCode::FORBIDDEN
    );
    assert!(!store.schedule("nightly").await.unwrap().paused);
    assert_eq!(
        post("/ui/schedules/nightly/pause", format!("csrf={csrf}")).await,
        StatusCode::SEE_OTHER
    );
    assert!(store.schedule("nightly").await.unwrap().paused);
    assert_eq!(
        post("/ui/schedules/nightly/resume", format!("csrf={csrf}")).await,
        StatusCode::SEE_OTHER
    );
    assert!(!store.schedule("nightly").await.unwrap().paused);
    let before = store
        .schedule_occurrences("nightly", 10)
        .await
        .unwrap()
        .len();
    assert_eq!(
        post("/ui/schedules/nightly/trigger", format!("csrf={csrf}")).await,
        StatusCode::SEE_OTHER
    );
    let after = store.schedule_occurrences("nightly", 10).await.unwrap();
    assert_eq!(after.len(), before + 1);
    assert_eq!(after[0].kind, sluice::store::OccurrenceKind::Triggered);
}
