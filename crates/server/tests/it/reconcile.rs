//! Reconciliation, pending orders (docs/reconciliation.md §3, §8): the poller against a local orders
//! server with scripted answers, the poll log, and the request list and detail.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode as AxStatus, Uri};
use axum::response::IntoResponse;
use reconbanker_store::AccountId;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::TestApp;

/// What the orders server does with the next request.
#[derive(Clone)]
pub(crate) enum Answer {
    Json(Value),
    Raw(u16, String),
    Redirect(String),
    Slow(Duration, Value),
}

/// A request the orders server saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    query: Option<String>,
    headers: HeaderMap,
    body: String,
}

pub(crate) struct Orders {
    pub url: String,
    script: Arc<Mutex<VecDeque<Answer>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// The answer once the script is done (`[]` unless set).
    otherwise: Arc<Mutex<Option<Value>>>,
}

impl Orders {
    pub(crate) async fn start() -> Self {
        let script: Arc<Mutex<VecDeque<Answer>>> = Arc::default();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let otherwise: Arc<Mutex<Option<Value>>> = Arc::default();
        let (s, r, o) = (script.clone(), seen.clone(), otherwise.clone());
        let handler = move |method: axum::http::Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (script, seen, otherwise) = (s.clone(), r.clone(), o.clone());
            async move {
                seen.lock().expect("seen").push(Seen {
                    method: method.to_string(),
                    query: uri.query().map(str::to_owned),
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                let answer = script.lock().expect("script").pop_front();
                match answer {
                    None => {
                        let list = otherwise.lock().expect("otherwise").clone();
                        (AxStatus::OK, list.map_or_else(|| "[]".to_owned(), |v| v.to_string())).into_response()
                    }
                    Some(Answer::Json(v)) => (AxStatus::OK, v.to_string()).into_response(),
                    Some(Answer::Raw(code, text)) => {
                        (AxStatus::from_u16(code).unwrap_or(AxStatus::OK), text).into_response()
                    }
                    Some(Answer::Redirect(to)) => {
                        (AxStatus::FOUND, [(axum::http::header::LOCATION, to)], "").into_response()
                    }
                    Some(Answer::Slow(d, v)) => {
                        tokio::time::sleep(d).await;
                        (AxStatus::OK, v.to_string()).into_response()
                    }
                }
            }
        };
        let app = axum::Router::new().route("/orders", axum::routing::any(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/orders", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            script,
            seen,
            otherwise,
        }
    }

    pub(crate) fn answer(&self, a: Answer) {
        self.script.lock().expect("script").push_back(a);
    }

    /// What the server answers once the script is done, instead of `[]` (for polls the test
    /// does not run itself, e.g. the worker's after the clock moved).
    pub(crate) fn otherwise(&self, list: Value) {
        *self.otherwise.lock().expect("otherwise") = Some(list);
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }
}

struct Fixture {
    app: TestApp,
    token: String,
    account: String,
    orders: Orders,
}

impl Fixture {
    async fn new(overrides: &[(&str, &str)]) -> Self {
        let app = TestApp::spawn_with(overrides).await;
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
                Some(json!({"pending_orders_endpoint": orders.url, "auth_token": "orders-token-1"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        Self {
            app,
            token,
            account,
            orders,
        }
    }

    fn id(&self) -> AccountId {
        self.account.parse().expect("account id")
    }

    /// Runs one poll now, in process, and returns its log row as the API shows it.
    async fn poll(&self) -> Value {
        let row = self
            .app
            .state
            .poller
            .poll(self.id())
            .await
            .expect("poll ran")
            .expect("polled");
        let log = self.polls().await;
        let first = log.first().cloned().expect("a logged poll");
        assert_eq!(first["seq"], json!(row.seq), "the newest poll is listed first");
        first
    }

    async fn polls(&self) -> Vec<Value> {
        let r = self
            .app
            .get(&format!("/accounts/{}/polls", self.account), &self.token)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body.as_array().cloned().expect("a bare array")
    }

    async fn requests(&self, query: &str) -> Vec<Value> {
        let r = self.app.get(&format!("/conciliation{query}"), &self.token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body.as_array().cloned().expect("a bare array")
    }

    /// `(external_id, status, amount, generation)` of every listed request. The match worker
    /// runs meanwhile and may move a `pending` request to `not_found` (nothing here matches):
    /// both show as `open`, which is what the poll decides.
    async fn by_external_id(&self) -> Vec<(String, String, String, i64)> {
        let mut out: Vec<_> = self
            .requests("")
            .await
            .iter()
            .map(|r| {
                (
                    r["external_id"].as_str().expect("external_id").to_owned(),
                    match r["status"].as_str().expect("status") {
                        "pending" | "not_found" => "open".to_owned(),
                        other => other.to_owned(),
                    },
                    r["amount"].as_str().expect("amount").to_owned(),
                    r["generation"].as_i64().expect("generation"),
                )
            })
            .collect();
        out.sort();
        out
    }
}

fn order(id: &str, amount: Value, name: &str) -> Value {
    json!({"external_id": id, "amount": amount, "currency": "UYU", "name": name})
}

#[tokio::test]
async fn a_poll_registers_orders_with_exact_amounts_and_logs_itself() {
    let f = Fixture::new(&[]).await;
    f.orders.answer(Answer::Raw(
        200,
        // Written by hand: the exponent and the many-decimal forms must never pass a float.
        r#"{"data": [
            {"external_id": "A-1", "amount": 1500, "currency": " uyu ", "name": "Juan Perez", "extra": true},
            {"external_id": 7, "amount": "12.5", "currency": "USD", "name": "ACME S.A.", "reference": "REF123"},
            {"external_id": "B-2", "amount": 1.5e3, "currency": "UYU", "name": "Ana"},
            {"external_id": "C-3", "amount": 0.30000000000000004, "currency": "UYU", "name": "Float"},
            {"external_id": "D-4", "amount": "1,500.00", "currency": "UYU", "name": "Grouped"},
            {"amount": 5, "currency": "UYU", "name": "No id"},
            {"external_id": "A-1", "amount": 9, "currency": "UYU", "name": "Duplicate"}
        ], "next_cursor": null}"#
            .into(),
    ));
    let poll = f.poll().await;
    assert_eq!(poll["outcome"], "succeeded", "{poll}");
    assert_eq!(poll["error"], Value::Null);
    assert_eq!(poll["http_status"], 200);
    assert_eq!(poll["pages"], 1);
    assert!(poll["bytes"].as_i64().expect("bytes") > 100);
    assert_eq!(
        poll["counts"],
        json!({"orders_seen": 5, "registered": 3, "updated": 0, "cancelled": 0, "reopened": 0,
               "already_matched": 0, "invalid": 4})
    );
    let issues = poll["issues"].as_array().expect("issues");
    let codes: Vec<(u64, Option<&str>, &str)> = issues
        .iter()
        .map(|i| {
            (
                i["index"].as_u64().expect("index"),
                i["external_id"].as_str(),
                i["code"].as_str().expect("code"),
            )
        })
        .collect();
    assert_eq!(codes[0], (3, Some("C-3"), "bad_amount"), "{issues:?}");
    assert_eq!(codes[1], (4, Some("D-4"), "bad_amount"));
    assert_eq!(codes[2].0, 5, "items count from 0");
    assert_eq!(codes[3], (6, Some("A-1"), "duplicate_external_id"));

    assert_eq!(
        f.by_external_id().await,
        vec![
            ("7".into(), "open".into(), "12.50".into(), 1),
            ("A-1".into(), "open".into(), "1500.00".into(), 1),
            ("B-2".into(), "open".into(), "1500.00".into(), 1),
        ]
    );
    let listed = f.requests("?external_id=7").await;
    assert_eq!(listed.len(), 1);
    let r = &listed[0];
    assert_eq!(r["currency"], "USD");
    assert_eq!(r["sender_name"], "ACME S.A.");
    assert_eq!(r["reference"], "REF123");
    assert_eq!(r["bank"], "sandbox");
    assert_eq!(r["account_name"], "Shop");
    assert_eq!(r["account_id"], f.account);
    let detail = f
        .app
        .get(&format!("/conciliation/{}", r["id"].as_str().expect("id")), &f.token)
        .await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.text);
    // The detail is the list item and more (attempts, match, candidates, deliveries); the
    // match worker may evaluate the request between the two reads.
    for (k, v) in r.as_object().expect("item") {
        if !["status", "reason", "updated_at"].contains(&k.as_str()) {
            assert_eq!(&detail.body[k], v, "{k}");
        }
    }
    for k in ["attempts", "match", "candidates", "deliveries"] {
        assert!(detail.body.get(k).is_some(), "{k}: {}", detail.text);
    }

    // The request carried the account's auth and our headers; the token is in no log row.
    let seen = f.orders.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].query, None, "no cursor on the first page");
    let header = |n: &str| seen[0].headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(header("authorization").as_deref(), Some("Bearer orders-token-1"));
    assert_eq!(header("accept").as_deref(), Some("application/json"));
    assert!(header("user-agent").is_some_and(|ua| ua.starts_with("Reconbanker/")));
    assert!(!serde_json::to_string(&f.polls().await)
        .expect("json")
        .contains("orders-token-1"));
}

#[tokio::test]
async fn post_with_an_api_key_auth_and_cursor_pages() {
    let f = Fixture::new(&[]).await;
    // Written by hand: the body's number must reach the customer with every digit.
    let config = r#"{"polling_method": "POST", "polling_body": {"shop": "eu-1", "min": 12345678901234567890.10},
                     "auth_type": "api_key"}"#;
    let auth = format!("Bearer {}", f.token);
    let r = f
        .app
        .send(
            Method::PUT,
            &format!("/accounts/{}/config", f.account),
            &[("authorization", &auth)],
            Some(config.into()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        r.text
            .contains(r#""polling_body":{"shop":"eu-1","min":12345678901234567890.10}"#),
        "{}",
        r.text
    );
    f.orders.answer(Answer::Json(
        json!({"data": [order("P-1", json!("10"), "Ana Lopez")], "next_cursor": "c2"}),
    ));
    f.orders.answer(Answer::Json(
        json!({"data": [order("P-2", json!("20"), "Ana Lopez")], "next_cursor": null}),
    ));
    let poll = f.poll().await;
    assert_eq!(poll["outcome"], "succeeded", "{poll}");
    assert_eq!(poll["pages"], 2);
    assert_eq!(poll["counts"]["registered"], 2);
    let seen = f.orders.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s.method, "POST");
        assert_eq!(
            s.headers.get("authorization").and_then(|v| v.to_str().ok()),
            Some("Api-Key orders-token-1")
        );
    }
    assert_eq!(seen[0].body, r#"{"shop":"eu-1","min":12345678901234567890.10}"#);
    assert_eq!(
        seen[1].body, r#"{"cursor":"c2","min":12345678901234567890.10,"shop":"eu-1"}"#,
        "the cursor joins the body"
    );
}

#[tokio::test]
async fn a_failed_poll_changes_nothing_whatever_the_failure() {
    let f = Fixture::new(&[
        ("RECONBANKER_ORDERS_MAX_BYTES", "2048"),
        ("RECONBANKER_ORDERS_TIMEOUT_SECS", "1"),
    ])
    .await;
    f.orders.answer(Answer::Json(json!([
        order("K-1", json!(100), "Juan Perez"),
        order("K-2", json!(200), "Ana")
    ])));
    assert_eq!(f.poll().await["counts"]["registered"], 2);
    let before = f.by_external_id().await;
    let huge = json!([{"external_id": "X", "amount": 1, "currency": "UYU", "name": "x".repeat(4000)}]);
    let failures = [
        (Answer::Raw(500, "oops".into()), "http_status", Some(500)),
        (Answer::Raw(204, String::new()), "http_status", Some(204)),
        (Answer::Raw(200, "{not json".into()), "invalid_json", Some(200)),
        (Answer::Raw(200, r#"{"orders": []}"#.into()), "invalid_shape", Some(200)),
        (Answer::Raw(200, "42".into()), "invalid_shape", Some(200)),
        (Answer::Json(huge), "body_too_large", Some(200)),
        (
            Answer::Redirect("http://127.0.0.1:9/elsewhere".into()),
            "redirect_refused",
            Some(302),
        ),
        (Answer::Slow(Duration::from_secs(3), json!([])), "timeout", None),
    ];
    for (answer, code, status) in failures {
        f.orders.answer(answer);
        let poll = f.poll().await;
        assert_eq!(poll["outcome"], "failed", "{code}: {poll}");
        assert_eq!(poll["error"], code, "{poll}");
        assert_eq!(poll["http_status"], json!(status), "{code}: {poll}");
        assert_eq!(poll["counts"]["cancelled"], 0);
        assert_eq!(f.by_external_id().await, before, "{code} changed nothing");
    }
    // The deadline passing while a later page is read is that page's failure.
    f.orders.answer(Answer::Json(
        json!({"data": [order("K-1", json!(100), "Juan Perez")], "next_cursor": "c1"}),
    ));
    f.orders.answer(Answer::Slow(Duration::from_secs(3), json!([])));
    let poll = f.poll().await;
    assert_eq!(
        (poll["outcome"].as_str(), poll["error"].as_str(), poll["pages"].as_i64()),
        (Some("failed"), Some("page_failed"), Some(1)),
        "{poll}"
    );
    assert_eq!(f.by_external_id().await, before, "a timed-out page changed nothing");
    // An empty list is a valid answer, and only a valid answer cancels.
    f.orders.answer(Answer::Json(json!([])));
    let poll = f.poll().await;
    assert_eq!(
        (poll["outcome"].as_str(), poll["counts"]["cancelled"].as_i64()),
        (Some("succeeded"), Some(2))
    );
}

#[tokio::test]
async fn absent_orders_are_cancelled_and_a_relisted_one_is_registered_again() {
    let f = Fixture::new(&[]).await;
    f.orders.answer(Answer::Json(json!([
        order("R-1", json!(10), "Juan"),
        order("R-2", json!(20), "Ana")
    ])));
    f.poll().await;
    f.orders.answer(Answer::Json(json!([order("R-1", json!(10), "Juan")])));
    let poll = f.poll().await;
    assert_eq!(poll["counts"]["cancelled"], 1);
    let cancelled = f.requests("?status=cancelled").await;
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0]["external_id"], "R-2");
    assert_eq!(cancelled[0]["reason"], "absent_from_pending_list");

    // Listed again: a new registration (generation 2); the cancelled row stays as history.
    f.orders.answer(Answer::Json(json!([
        order("R-1", json!(10), "Juan"),
        order("R-2", json!(25), "Ana")
    ])));
    let poll = f.poll().await;
    assert_eq!(poll["counts"]["reopened"], 1);
    assert_eq!(
        f.by_external_id().await,
        vec![
            ("R-1".into(), "open".into(), "10.00".into(), 1),
            ("R-2".into(), "cancelled".into(), "20.00".into(), 1),
            ("R-2".into(), "open".into(), "25.00".into(), 2),
        ]
    );
    // A changed order is updated in place (and counted), not registered again.
    f.orders.answer(Answer::Json(json!([
        order("R-1", json!("10.50"), "Juan"),
        order("R-2", json!(25), "Ana")
    ])));
    let poll = f.poll().await;
    assert_eq!(poll["counts"]["updated"], 1, "{poll}");
    assert!(f
        .by_external_id()
        .await
        .contains(&("R-1".into(), "open".into(), "10.50".into(), 1)));
}

#[tokio::test]
async fn a_poison_item_still_counts_as_present() {
    let f = Fixture::new(&[]).await;
    f.orders.answer(Answer::Json(json!([order("Z-1", json!(10), "Juan")])));
    f.poll().await;
    f.orders.answer(Answer::Json(
        json!([{"external_id": "Z-1", "amount": "ten", "currency": "UYU", "name": "Juan"}]),
    ));
    let poll = f.poll().await;
    assert_eq!(poll["counts"]["cancelled"], 0, "{poll}");
    assert_eq!(poll["counts"]["invalid"], 1);
    assert_eq!(
        poll["issues"],
        json!([{"index": 0, "external_id": "Z-1", "code": "bad_amount"}])
    );
    assert_eq!(
        f.by_external_id().await,
        vec![("Z-1".into(), "open".into(), "10.00".into(), 1)]
    );
}

#[tokio::test]
async fn poll_now_is_queued_for_the_worker() {
    let f = Fixture::new(&[]).await;
    let mut events = f.app.events().await;
    f.orders.answer(Answer::Json(json!([order("Q-1", json!(42), "Juan")])));
    let r = f
        .app
        .json(
            Method::POST,
            &format!("/conciliation/poll/{}", f.account),
            Some(&f.token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body, json!({"queued": true}));
    let e = events.next(&f.account, "conciliation.registered").await;
    assert_eq!(e.data["external_id"], "Q-1");
    assert_eq!(f.polls().await.len(), 1);
}

#[tokio::test]
async fn poll_now_needs_reconcile_mode_and_an_endpoint_and_is_scoped() {
    let f = Fixture::new(&[]).await;
    let path = format!("/conciliation/poll/{}", f.account);
    let r = f
        .app
        .json(
            Method::PUT,
            &format!("/accounts/{}/config", f.account),
            Some(&f.token),
            Some(json!({"pending_orders_endpoint": null})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    f.app
        .json(Method::POST, &path, Some(&f.token), None)
        .await
        .api_error(409, "NO_PENDING_ORDERS_ENDPOINT");
    let r = f
        .app
        .json(
            Method::PUT,
            "/me/operation-mode",
            Some(&f.token),
            Some(json!({"mode": "passthrough"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    f.app
        .json(Method::POST, &path, Some(&f.token), None)
        .await
        .api_error(409, "NOT_RECONCILE_MODE");
    // Another user: the account, its polls and its requests do not exist for them.
    let other = f.app.user("other@example.com").await;
    f.app
        .json(Method::POST, &path, Some(&other), None)
        .await
        .api_error(404, "NOT_FOUND");
    f.app
        .get(&format!("/accounts/{}/polls", f.account), &other)
        .await
        .api_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn requests_are_the_owners_only() {
    let f = Fixture::new(&[]).await;
    f.orders.answer(Answer::Json(json!([order("T-1", json!(10), "Juan")])));
    f.poll().await;
    let mine = f.requests("").await;
    assert_eq!(mine.len(), 1);
    let id = mine[0]["id"].as_str().expect("id").to_owned();
    let other = f.app.user("other@example.com").await;
    let r = f.app.get("/conciliation", &other).await;
    assert_eq!(r.body, json!([]));
    // A filter naming another user's account, or no account, is 404 like the account itself.
    f.app
        .get(&format!("/conciliation?account_id={}", f.account), &other)
        .await
        .api_error(404, "NOT_FOUND");
    f.app
        .get(
            &format!("/conciliation?status=processing&account_id={}", f.account),
            &other,
        )
        .await
        .api_error(404, "NOT_FOUND");
    f.app
        .get(&format!("/conciliation?account_id={}", uuid::Uuid::now_v7()), &f.token)
        .await
        .api_error(404, "NOT_FOUND");
    assert_eq!(f.requests(&format!("?account_id={}", f.account)).await.len(), 1);
    f.app
        .get(&format!("/conciliation/{id}"), &other)
        .await
        .api_error(404, "NOT_FOUND");
    f.app
        .get("/conciliation/not-a-uuid", &f.token)
        .await
        .api_error(404, "NOT_FOUND");
    // Filters: status (processing is accepted, lists nothing), unknown status and bad uuid are 400.
    assert_eq!(
        f.requests("?status=not_found").await.len(),
        1,
        "evaluated: nothing matches it"
    );
    assert_eq!(f.requests("?status=pending").await.len(), 0);
    assert_eq!(f.requests("?status=processing").await.len(), 0);
    assert_eq!(f.requests("?status=matched").await.len(), 0);
    f.app
        .get("/conciliation?status=done", &f.token)
        .await
        .api_error(400, "VALIDATION_ERROR");
    f.app
        .get("/conciliation?account_id=nope", &f.token)
        .await
        .api_error(400, "VALIDATION_ERROR");
    f.app
        .get("/conciliation?limit=501", &f.token)
        .await
        .api_error(400, "VALIDATION_ERROR");
}
