//! The dashboard at `/ui`, called as a tower service (no port) over a real
//! `EmbeddedStore` and sandbox: every page and action, its effect in the
//! store, logins, read-only and CSRF refusals, escaping of hostile values.

mod common;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use bytes::Bytes;
use tower::ServiceExt;

use sluice::store::conformance::helpers::{handler, msg};
use sluice::store::{DeliveryState, NewMessage, Store, StoreConfig};
use sluice::ui::{self, History};

const TOKEN: &str = "admin-secret";
const READ: &str = "reader-secret";

struct Ui {
    app: Router,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

fn dashboard(token: Option<&str>) -> Ui {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut state) = common::api_state(dir.path(), StoreConfig::default(), token);
    if token.is_some() {
        state.read_token = Some(READ.into());
    }
    Ui {
        app: ui::app(state, Some(Arc::new(History::default()))),
        store,
        _dir: dir,
    }
}

impl Ui {
    async fn send(&self, req: Request<Body>) -> Reply {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = to_bytes(res.into_body(), usize::MAX).await.unwrap();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn get(&self, uri: &str, cookie: Option<&str>) -> Reply {
        let mut req = Request::get(uri);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    async fn post(&self, uri: &str, cookie: Option<&str>, form: &str) -> Reply {
        let mut req = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::HOST, "localhost");
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        self.send(req.body(Body::from(form.to_string())).unwrap())
            .await
    }

    /// Logs in with `token`; returns the session cookie.
    async fn login(&self, token: &str) -> String {
        let r = self
            .post("/ui/login", None, &format!("token={token}"))
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        session_cookie(&r)
    }

    /// A page's CSRF token (from its logout or action forms).
    async fn csrf(&self, cookie: &str) -> String {
        let page = self.get("/ui/handlers", Some(cookie)).await;
        let at = page
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a form with a CSRF token");
        page.body[at + 19..at + 19 + 64].to_string()
    }
}

fn session_cookie(r: &Reply) -> String {
    let set = r
        .headers
        .get(header::SET_COOKIE)
        .expect("a session cookie")
        .to_str()
        .unwrap();
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    set.split(';').next().unwrap().to_string()
}

/// A topic with handler `h` and one dead delivery holding hostile values.
async fn hostile_dead(s: &Arc<dyn Store>) -> (uuid::Uuid, uuid::Uuid) {
    handler(s.as_ref(), "h", "t").await;
    let m = NewMessage {
        idempotency_key: Some("order-<b>1</b>".into()),
        headers: [(
            "x-evil".to_string(),
            "<img src=x onerror=alert(1)>".to_string(),
        )]
        .into(),
        payload: Bytes::from_static(b"<script>alert('payload')</script>"),
        ..msg("t", "")
    };
    let id = s.enqueue(vec![m]).await.unwrap()[0].id;
    common::kill_next(s, "h", common::trap()).await;
    let d = s.message(id).await.unwrap().deliveries[0].id;
    (id, d)
}

#[tokio::test]
async fn every_page_renders_with_its_fragments_and_security_headers() {
    let ui = dashboard(None);
    let (message, delivery) = hostile_dead(&ui.store).await;
    let first = ui.get("/ui", None).await;
    assert_eq!(first.status, StatusCode::OK);
    let cookie = session_cookie(&first);
    let csp = first.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(first.body.contains("id=\"total-dlq\">1<"), "DLQ total");
    assert!(first.body.contains("<svg"), "rate charts");
    assert!(!first.body.contains("<script>"), "no inline script");

    let handlers = ui.get("/ui/handlers", Some(&cookie)).await;
    assert_eq!(handlers.status, StatusCode::OK);
    assert!(handlers.body.contains("/ui/handlers/h/pause"));
    assert!(handlers.body.contains("dead 1"));

    let dead = ui
        .get("/ui/deliveries?handler=h&state=dead", Some(&cookie))
        .await;
    assert!(dead.body.contains(&delivery.to_string()));
    let ready = ui
        .get("/ui/deliveries?handler=h&state=ready", Some(&cookie))
        .await;
    assert!(!ready.body.contains(&delivery.to_string()));
    assert!(ready.body.contains("Nothing matches."));
    let by_key = ui
        .get(
            "/ui/deliveries?idempotency_key=order-%3Cb%3E1%3C%2Fb%3E",
            Some(&cookie),
        )
        .await;
    assert!(by_key.body.contains(&format!("/ui/messages/{message}")));
    let bad = ui.get("/ui/deliveries?state=nap", Some(&cookie)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("unknown state"));

    let detail = ui
        .get(&format!("/ui/deliveries/{delivery}"), Some(&cookie))
        .await;
    assert_eq!(detail.status, StatusCode::OK);
    for fragment in [
        "unreachable",
        "a!explode",
        "it went wrong",
        "131072 B",
        "7 ms",
        "cdcdcdcdcdcd",
    ] {
        assert!(detail.body.contains(fragment), "detail shows {fragment}");
    }
    assert!(
        !detail.body.contains("alert(&#x27;payload"),
        "payload hidden until asked"
    );
    let shown = ui
        .get(
            &format!("/ui/messages/{message}?payload=text"),
            Some(&cookie),
        )
        .await;
    assert!(
        shown.body.contains("&lt;script&gt;alert("),
        "payload as inert text"
    );
    let hex = ui
        .get(
            &format!("/ui/messages/{message}?payload=hex"),
            Some(&cookie),
        )
        .await;
    assert!(hex.body.contains("3c7363726970743e"), "payload as hex");

    let dlq = ui
        .get("/ui/dlq?handler=h&outcome=trap", Some(&cookie))
        .await;
    assert!(dlq.body.contains("id=\"matching\">1<"));
    let none = ui.get("/ui/dlq?outcome=timeout", Some(&cookie)).await;
    assert!(none.body.contains("id=\"matching\">0<"));
    let missing = ui
        .get(
            &format!("/ui/messages/{}", uuid::Uuid::nil()),
            Some(&cookie),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let js = ui.get("/ui/assets/app.js", None).await;
    assert!(js.body.contains("visibilitychange"));
}

#[tokio::test]
async fn hostile_values_render_as_inert_text() {
    let ui = dashboard(None);
    let (message, _) = hostile_dead(&ui.store).await;
    let page = ui
        .get(&format!("/ui/messages/{message}?payload=text"), None)
        .await
        .body;
    for raw in ["<script>alert", "<img src=x", "<b>1</b>"] {
        assert!(!page.contains(raw), "{raw} is escaped");
    }
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(
        page.contains("order-&lt;b&gt;1&lt;&#x2f;b&gt;")
            || page.contains("order-&lt;b&gt;1&lt;/b&gt;")
    );
}

/// A handler the runner paused shows why, the reason (which may quote a
/// module's import names) escaped.
#[tokio::test]
async fn a_handler_the_runner_paused_shows_its_reason_escaped() {
    let ui = dashboard(None);
    let h = sluice::store::conformance::helpers::handler(&*ui.store, "h", "t").await;
    let reason = "module refused: import <script>alert(1)</script>::x is not allowed";
    assert!(
        ui.store
            .pause_unrunnable("h", h.version, reason)
            .await
            .unwrap()
    );
    let page = ui.get("/ui/handlers", None).await.body;
    assert!(
        page.contains("by the runner: module refused: import &lt;script&gt;"),
        "{page}"
    );
    assert!(!page.contains("<script>alert"), "{page}");
}

/// An attempt's outbound requests are a table under it, every value escaped.
#[tokio::test]
async fn outbound_requests_show_under_their_attempt() {
    use sluice::policy::Disposition;
    use sluice::sandbox::{EgressOutcome, EgressRecord};
    let ui = dashboard(None);
    let s = &ui.store;
    handler(s.as_ref(), "h", "t").await;
    let id = s.enqueue(vec![msg("t", "x")]).await.unwrap()[0].id;
    let leased = s.lease("h", 1).await.unwrap().pop().unwrap();
    let mut report = sluice::store::conformance::helpers::failed();
    report.egress = vec![EgressRecord {
        method: "POST".into(),
        origin: "https://hooks.example.com:443".into(),
        status: None,
        request_bytes: 0,
        response_bytes: 0,
        duration_ms: 4,
        outcome: EgressOutcome::DeniedAddress,
        detail: "<script>alert(1)</script> resolves to 10.0.0.1".into(),
    }];
    let dead = Disposition::Dead { reason: "x".into() };
    s.fail(&leased.lease, report, dead).await.unwrap();
    let page = ui.get(&format!("/ui/messages/{id}"), None).await.body;
    assert!(page.contains("outbound requests"), "{page}");
    assert!(
        page.contains("https:&#x2f;&#x2f;hooks.example.com:443")
            || page.contains("https://hooks.example.com:443")
    );
    assert!(page.contains("<b>denied_address</b>"), "{page}");
    assert!(!page.contains("<script>alert(1)"), "escaped");
}

#[tokio::test]
async fn actions_change_the_store_and_need_csrf() {
    let ui = dashboard(None);
    let (_, delivery) = hostile_dead(&ui.store).await;
    let first = ui.get("/ui", None).await;
    let cookie = session_cookie(&first);
    let csrf = ui.csrf(&cookie).await;

    // Without or with a wrong CSRF token, or from another origin: refused.
    let r = ui
        .post("/ui/handlers/h/pause", Some(&cookie), "csrf=")
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = ui
        .post("/ui/handlers/h/pause", None, &format!("csrf={csrf}"))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no session");
    let req = Request::post("/ui/handlers/h/pause")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::HOST, "localhost")
        .header(header::ORIGIN, "https://evil.example")
        .header(header::COOKIE, &cookie)
        .body(Body::from(format!("csrf={csrf}")))
        .unwrap();
    assert_eq!(
        ui.send(req).await.status,
        StatusCode::FORBIDDEN,
        "cross-origin"
    );
    assert!(!ui.store.handler("h").await.unwrap().paused);

    let r = ui
        .post(
            "/ui/handlers/h/pause",
            Some(&cookie),
            &format!("csrf={csrf}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(ui.store.handler("h").await.unwrap().paused);
    let r = ui
        .post(
            "/ui/handlers/h/resume",
            Some(&cookie),
            &format!("csrf={csrf}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(!ui.store.handler("h").await.unwrap().paused);

    let back = format!("back=%2Fui%2Fdeliveries%2F{delivery}");
    let r = ui
        .post(
            &format!("/ui/dlq/{delivery}/replay"),
            Some(&cookie),
            &format!("csrf={csrf}&{back}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers[header::LOCATION],
        format!("/ui/deliveries/{delivery}")
    );
    assert_eq!(
        ui.store.delivery(delivery).await.unwrap().state,
        DeliveryState::Ready
    );

    let r = ui
        .post(
            "/ui/handlers/h/replay",
            Some(&cookie),
            &format!("csrf={csrf}&since=2000-01-01T00:00:00Z"),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let stats = ui.store.stats().await.unwrap();
    assert_eq!(
        stats.handlers[0].counts[&DeliveryState::Ready],
        2,
        "replayed since"
    );
    let r = ui
        .post(
            "/ui/handlers/h/replay",
            Some(&cookie),
            &format!("csrf={csrf}&since=soon"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bulk_dlq_actions_confirm_the_count_first() {
    let ui = dashboard(None);
    handler(ui.store.as_ref(), "h", "t").await;
    for i in 0..3 {
        ui.store
            .enqueue(vec![msg("t", &i.to_string())])
            .await
            .unwrap();
        common::kill_next(&ui.store, "h", common::trap()).await;
    }
    let cookie = session_cookie(&ui.get("/ui", None).await);
    let csrf = ui.csrf(&cookie).await;
    let form = format!("csrf={csrf}&handler=h&outcome=trap&since=&until=");
    let confirm = ui.post("/ui/dlq/replay", Some(&cookie), &form).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(
        confirm.body.contains("id=\"confirm-count\">3<"),
        "states the count"
    );
    assert_eq!(
        ui.store.stats().await.unwrap().handlers[0].counts[&DeliveryState::Dead],
        3,
        "nothing yet"
    );
    let done = ui
        .post(
            "/ui/dlq/replay",
            Some(&cookie),
            &format!("{form}&confirm=3"),
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let counts = ui.store.stats().await.unwrap().handlers[0].counts.clone();
    assert_eq!(counts[&DeliveryState::Dead], 0);
    assert_eq!(counts[&DeliveryState::Ready], 3);

    for _ in 0..3 {
        common::kill_next(&ui.store, "h", common::trap()).await;
    }
    let purge = ui.post("/ui/dlq/purge", Some(&cookie), &form).await;
    assert!(purge.body.contains("id=\"confirm-count\">3<"));
    let r = ui
        .post("/ui/dlq/purge", Some(&cookie), &format!("{form}&confirm=3"))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        ui.store.stats().await.unwrap().handlers[0].counts[&DeliveryState::Dead],
        0
    );
    let bad = ui
        .post(
            "/ui/dlq/replay",
            Some(&cookie),
            &format!("{form}&rate=fast"),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_token_needs_a_login_and_the_read_only_token_changes_nothing() {
    let ui = dashboard(Some(TOKEN));
    let (_, delivery) = hostile_dead(&ui.store).await;
    let r = ui.get("/ui", None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers[header::LOCATION], "/ui/login");
    assert_eq!(ui.get("/ui/login", None).await.status, StatusCode::OK);
    let wrong = ui.post("/ui/login", None, "token=guess").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.headers.get(header::SET_COOKIE).is_none());
    assert_eq!(
        ui.get("/ui", Some("sluice_session=forged")).await.status,
        StatusCode::SEE_OTHER
    );

    let reader = ui.login(READ).await;
    let page = ui.get("/ui/dlq", Some(&reader)).await;
    assert_eq!(page.status, StatusCode::OK, "the reader sees everything");
    assert!(page.body.contains("read-only"));
    let csrf = ui.csrf(&reader).await;
    for (path, form) in [
        (format!("/ui/dlq/{delivery}/replay"), format!("csrf={csrf}")),
        (format!("/ui/dlq/{delivery}/purge"), format!("csrf={csrf}")),
        ("/ui/handlers/h/pause".to_string(), format!("csrf={csrf}")),
        (
            "/ui/dlq/replay".to_string(),
            format!("csrf={csrf}&confirm=1"),
        ),
    ] {
        let r = ui.post(&path, Some(&reader), &form).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
        assert!(r.body.contains("read-only"), "{path}: {}", r.body);
    }
    assert_eq!(
        ui.store.delivery(delivery).await.unwrap().state,
        DeliveryState::Dead
    );
    assert!(!ui.store.handler("h").await.unwrap().paused);

    // The API refuses the read-only token's changes too, and answers its reads.
    let api = |method: &str, uri: &str| {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {READ}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(ui.send(api("GET", "/v1/dlq")).await.status, StatusCode::OK);
    let r = ui
        .send(api("POST", &format!("/v1/dlq/{delivery}/replay")))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("read_only"));
    assert_eq!(
        ui.send(api("DELETE", "/v1/handlers/h")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        ui.store.delivery(delivery).await.unwrap().state,
        DeliveryState::Dead
    );

    let admin = ui.login(TOKEN).await;
    let csrf = ui.csrf(&admin).await;
    let r = ui
        .post(
            &format!("/ui/dlq/{delivery}/replay"),
            Some(&admin),
            &format!("csrf={csrf}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        ui.store.delivery(delivery).await.unwrap().state,
        DeliveryState::Ready
    );
    let out = ui
        .post("/ui/logout", Some(&admin), &format!("csrf={csrf}"))
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(
        ui.get("/ui", Some(&admin)).await.status,
        StatusCode::SEE_OTHER,
        "logged out"
    );
}

#[tokio::test]
async fn without_the_dashboard_ui_paths_are_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let (_, state) = common::api_state(dir.path(), StoreConfig::default(), None);
    let app = ui::app(state, None);
    let res = app
        .oneshot(Request::get("/ui").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}
