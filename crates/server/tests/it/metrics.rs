//! Issue 11: `/metrics` (Prometheus) on its own listener, off by default. The real app with a
//! metrics address on port 0 does real work (a login waiting for its code, a webhook delivered,
//! `/v1` calls, OTP submissions); `/metrics` is scraped over HTTP and its series read back.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use reconbanker::config::Config;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::*;
use crate::webhooks::{attempt_with_status, receiver, subscribe, webhook_fixture};

/// A sample's labels, sorted.
type Labels = BTreeMap<String, String>;
/// `name` → the samples of that name, each with its labels and value.
type Samples = BTreeMap<String, Vec<(Labels, f64)>>;

/// One scrape.
struct Scrape {
    text: String,
    samples: Samples,
}

impl Scrape {
    /// The value of the sample of `name` with exactly these labels.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: Labels = labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        self.samples
            .get(name)?
            .iter()
            .find(|(l, _)| *l == want)
            .map(|(_, v)| *v)
    }

    #[track_caller]
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in:\n{}", self.text))
    }
}

/// Parses the text exposition format (the lines this exporter writes: `name{k="v",…} value`).
fn parse(text: &str) -> Scrape {
    let mut samples = Samples::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("a number in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            None => (series, Labels::new()),
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').expect("closing brace");
                let mut labels = Labels::new();
                // Label values here never hold `",` (routes, outcomes, numbers).
                for pair in inner.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once("=\"").expect("k=\"v\"");
                    labels.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
                }
                (name, labels)
            }
        };
        samples.entry(name.to_owned()).or_default().push((labels, value));
    }
    Scrape {
        text: text.to_owned(),
        samples,
    }
}

async fn scrape(addr: SocketAddr) -> Scrape {
    let res = reqwest::get(format!("http://{addr}/metrics")).await.expect("scrape");
    assert_eq!(res.status(), StatusCode::OK);
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    parse(&res.text().await.expect("body"))
}

const OTP: &str = "reconbanker_otp_submissions_total";
const HTTP: &str = "reconbanker_http_requests_total";
const HTTP_COUNT: &str = "reconbanker_http_request_duration_seconds_count";
const ATTEMPTS: &str = "reconbanker_webhook_attempts_total";

#[tokio::test]
async fn metrics_are_off_by_default_and_never_on_the_main_listener() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.metrics, None,
        "no metrics listener without RECONBANKER_METRICS_ADDR"
    );
    assert!(!app.state.metrics.is_on(), "and nothing recorded");
    app.json(Method::GET, "/metrics", None, None)
        .await
        .assert_api_error(404, "NOT_FOUND");

    // On: still not on the main listener, only on its own; anything else there is a 404.
    let app = TestApp::spawn_with(&[("RECONBANKER_METRICS_ADDR", "127.0.0.1:0")]).await;
    let metrics = app.metrics.expect("a metrics listener");
    assert_ne!(metrics, app.addr);
    app.json(Method::GET, "/metrics", None, None)
        .await
        .assert_api_error(404, "NOT_FOUND");
    let other = reqwest::get(format!("http://{metrics}/v1/openapi.json"))
        .await
        .expect("get");
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    // The series of fixed labels exist from the start, at zero; the pool is the configured one.
    let s = scrape(metrics).await;
    assert_eq!(s.get(OTP, &[("outcome", "accepted")]), 0.0);
    assert_eq!(s.get(ATTEMPTS, &[("outcome", "delivered")]), 0.0);
    assert_eq!(s.get("reconbanker_db_pool_connections", &[("state", "max")]), 4.0);
    assert_eq!(s.get("reconbanker_leases", &[("kind", "session")]), 0.0);
    assert_eq!(s.get("reconbanker_logins_waiting_for_code", &[]), 0.0);
    assert_eq!(s.get("reconbanker_outbox_deliveries", &[("status", "pending")]), 0.0);
    assert!(
        s.text.contains("# HELP reconbanker_otp_submissions_total"),
        "{}",
        s.text
    );
}

#[test]
fn a_bad_metrics_address_is_refused_naming_the_variable() {
    let err =
        Config::from_lookup(|k| (k == "RECONBANKER_METRICS_ADDR").then(|| "9100".to_owned())).expect_err("refused");
    assert!(err.to_string().contains("RECONBANKER_METRICS_ADDR"), "{err}");
}

#[tokio::test]
async fn requests_codes_sessions_and_deliveries_are_counted() {
    let f = webhook_fixture(&[("RECONBANKER_METRICS_ADDR", "127.0.0.1:0")]).await;
    let metrics = f.app.metrics.expect("a metrics listener");
    let mut hook = receiver(vec![]).await;
    let id = subscribe(&f, "user_otp", "pass_otp", &hook.url, json!(["assistance_required"])).await;
    let key = f.app.key(&f.token, &["otp:write", "status:read"], None).await;
    let before = scrape(metrics).await;
    assert_eq!(
        before.value(HTTP, &[("route", "/v1/accounts/{account_id}/status")]),
        None
    );

    // A login waiting for its code, announced by a webhook that is delivered.
    let mut attempts = f.app.state.webhooks.subscribe_attempts();
    let mut events = f.app.events().await;
    f.post(&format!("/accounts/{id}/scrape")).await;
    let requested = events.next(&id, "assistance.requested").await;
    hook.next().await;
    attempt_with_status(&mut attempts, "delivered").await;
    let waiting = scrape(metrics).await;
    assert_eq!(waiting.get("reconbanker_logins_waiting_for_code", &[]), 1.0);
    assert_eq!(waiting.get("reconbanker_sessions", &[("state", "awaiting_code")]), 1.0);
    assert_eq!(waiting.get("reconbanker_sessions", &[("state", "running")]), 0.0);
    assert_eq!(waiting.get("reconbanker_leases", &[("kind", "session")]), 1.0);
    assert_eq!(waiting.get(ATTEMPTS, &[("outcome", "delivered")]), 1.0);
    assert_eq!(waiting.get(ATTEMPTS, &[("outcome", "retry")]), 0.0);
    let pool = waiting.get("reconbanker_db_pool_connections", &[("state", "in_use")])
        + waiting.get("reconbanker_db_pool_connections", &[("state", "idle")]);
    assert!((1.0..=4.0).contains(&pool), "open connections: {pool}");

    // `/v1`: a status read, a code that cannot be right, the right code, an unknown route.
    let status = f.app.status(&id, &key).await;
    assert!(status.pending_assistance.is_some());
    let otp = format!("/v1/accounts/{id}/otp");
    f.app
        .v1(Method::POST, &otp, &key, Some(json!({"code": "12"})))
        .await
        .assert_v1_error(400, "VALIDATION_ERROR");
    let r = f
        .app
        .v1(
            Method::POST,
            &otp,
            &key,
            Some(json!({"code": "123456", "request_id": requested.data["requestId"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    events.next(&id, "session.stopped").await;
    f.app
        .v1(Method::GET, "/v1/no/such/route", &key, None)
        .await
        .assert_v1_error(404, "NOT_FOUND");

    let after = scrape(metrics).await;
    assert_eq!(after.get(OTP, &[("outcome", "accepted")]), 1.0);
    assert_eq!(after.get(OTP, &[("outcome", "invalid")]), 1.0);
    assert_eq!(after.get(OTP, &[("outcome", "no_pending")]), 0.0);
    let status_route = [
        ("route", "/v1/accounts/{account_id}/status"),
        ("method", "GET"),
        ("status", "200"),
    ];
    assert_eq!(after.get(HTTP, &status_route), 1.0);
    assert_eq!(after.get(HTTP_COUNT, &status_route), 1.0, "one duration per request");
    let otp_route = |status| {
        [
            ("route", "/v1/accounts/{account_id}/otp"),
            ("method", "POST"),
            ("status", status),
        ]
    };
    assert_eq!(after.get(HTTP, &otp_route("202")), 1.0);
    assert_eq!(after.get(HTTP, &otp_route("400")), 1.0);
    assert_eq!(
        after.get(HTTP, &[("route", "unmatched"), ("method", "GET"), ("status", "404")]),
        1.0
    );
    // The dashboard's calls are counted by their templates too.
    assert!(
        after.get(
            HTTP,
            &[
                ("route", "/accounts/{id}/scrape"),
                ("method", "POST"),
                ("status", "202")
            ]
        ) >= 1.0
    );
    // Route templates only: no account id, no raw path, in any label.
    assert!(
        !after.text.contains(&id),
        "an account id in the metrics:\n{}",
        after.text
    );
    assert!(!after.text.contains("/v1/no/such/route"), "{}", after.text);
    // The login is over: nothing waits, the lease is given back.
    assert_eq!(after.get("reconbanker_logins_waiting_for_code", &[]), 0.0);
    assert_eq!(after.get("reconbanker_leases", &[("kind", "session")]), 0.0);
}

#[tokio::test]
async fn order_polls_and_match_passes_are_counted_with_their_durations() {
    use crate::reconcile::{Answer, Orders};
    let app = TestApp::spawn_with(&[("RECONBANKER_METRICS_ADDR", "127.0.0.1:0")]).await;
    let metrics = app.metrics.expect("a metrics listener");
    let token = app.user("shop@example.com").await;
    let r = app
        .json(
            Method::PUT,
            "/me/operation-mode",
            Some(&token),
            Some(json!({"mode": "reconcile"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let account = app.account(&token, "Shop").await;
    app.hold_poller(&account).await;
    let orders = Orders::start().await;
    let r = app
        .json(
            Method::PUT,
            &format!("/accounts/{account}/config"),
            Some(&token),
            Some(json!({"pending_orders_endpoint": orders.url})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let before = scrape(metrics).await;
    assert_eq!(before.get("reconbanker_order_polls_total", &[("outcome", "ok")]), 0.0);
    assert_eq!(before.get("reconbanker_order_poll_duration_seconds_count", &[]), 0.0);

    // A poll through the worker (asked from the dashboard), then a failed one.
    orders.answer(Answer::Json(json!([
        {"external_id": "Q-1", "amount": 42, "currency": "UYU", "name": "Juan"}
    ])));
    let mut events = app.events().await;
    let r = app
        .json(
            Method::POST,
            &format!("/conciliation/poll/{account}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    events.next(&account, "conciliation.registered").await;
    orders.answer(Answer::Raw(500, "{}".into()));
    let id = account.parse().expect("account id");
    let failed = app.state.poller.poll(id).await.expect("poll ran").expect("polled");
    assert!(failed.error.is_some(), "{failed:?}");
    // A match pass (the worker may run some of its own too).
    app.state.matcher.pass(id).await.expect("pass");

    let after = scrape(metrics).await;
    assert_eq!(after.get("reconbanker_order_polls_total", &[("outcome", "ok")]), 1.0);
    assert_eq!(
        after.get("reconbanker_order_polls_total", &[("outcome", "failed")]),
        1.0
    );
    assert_eq!(after.get("reconbanker_order_poll_duration_seconds_count", &[]), 2.0);
    assert!(after.get("reconbanker_order_poll_duration_seconds_sum", &[]) > 0.0);
    let passes: f64 = ["committed", "unchanged", "error"]
        .iter()
        .map(|o| after.get("reconbanker_match_passes_total", &[("outcome", o)]))
        .sum();
    assert!(passes >= 1.0, "{}", after.text);
    assert_eq!(
        after.get("reconbanker_match_passes_total", &[("outcome", "error")]),
        0.0
    );
    assert!(after.get("reconbanker_match_pass_duration_seconds_count", &[]) >= 1.0);
}
