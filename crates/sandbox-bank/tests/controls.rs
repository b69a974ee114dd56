//! Black-box tests of the sandbox controls (`/_sandbox/…`), tagged usernames and the bank's clock:
//! each starts a fresh bank on 127.0.0.1:0 and drives it over real HTTP.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION};
use reqwest::{redirect, Client, Response, StatusCode};
use sandbox_bank::{AddMovement, BankConfig, SandboxBank};
use serde_json::{json, Value};

struct Bank {
    bank: SandboxBank,
    base: String,
}

async fn start() -> Bank {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    let bank = SandboxBank::new(BankConfig::default());
    tokio::spawn(bank.clone().serve(listener, std::future::pending()));
    Bank { bank, base }
}

fn client() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(redirect::Policy::none())
        .build()
        .expect("client")
}

fn input_value(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} input in {html}"))
        + marker.len();
    let len = html[start..].find('"').expect("closing quote");
    html[start..start + len].to_owned()
}

fn location(response: &Response) -> String {
    response
        .headers()
        .get(LOCATION)
        .expect("location header")
        .to_str()
        .expect("ascii")
        .to_owned()
}

fn row_ids(html: &str) -> Vec<String> {
    html.match_indices("<tr data-id=\"")
        .map(|(i, m)| {
            let start = i + m.len();
            let len = html[start..].find('"').expect("closing quote");
            html[start..start + len].to_owned()
        })
        .collect()
}

fn date(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("RFC 3339 date")
        .with_timezone(&Utc)
}

impl Bank {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn login(&self, client: &Client, username: &str, password: &str) -> Response {
        let html = client
            .get(self.url("/login"))
            .send()
            .await
            .expect("GET /login")
            .text()
            .await
            .expect("login page");
        let csrf = input_value(&html, "csrf");
        client
            .post(self.url("/login"))
            .form(&[("username", username), ("password", password), ("csrf", &csrf)])
            .send()
            .await
            .expect("POST /login")
    }

    /// A client logged in as `username` (a plain-login user).
    async fn logged_in(&self, username: &str, password: &str) -> Client {
        let c = client();
        let response = self.login(&c, username, password).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{username}");
        assert_eq!(location(&response), "/movements");
        c
    }

    async fn movements_html(&self, client: &Client) -> String {
        let response = client.get(self.url("/movements")).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("movements page")
    }

    async fn movements_json(&self, client: &Client) -> Vec<Value> {
        let response = client.get(self.url("/api/movements")).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("json");
        body["movements"].as_array().expect("movements array").clone()
    }

    async fn inject_raw(&self, body: impl Into<reqwest::Body>) -> Response {
        Client::new()
            .post(self.url("/_sandbox/movements"))
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .expect("POST /_sandbox/movements")
    }

    /// Injects a movement that must be accepted; returns its id.
    async fn inject(&self, body: Value) -> String {
        let response = self.inject_raw(body.to_string()).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{body}");
        let out: Value = response.json().await.expect("json");
        out["id"].as_str().expect("id").to_owned()
    }

    async fn shop_get(&self, query: &str, token: Option<&str>) -> Response {
        let mut request = Client::new().get(self.url(&format!("/_sandbox/shop/orders{query}")));
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, token);
        }
        request.send().await.expect("GET shop")
    }

    async fn shop_put(&self, query: &str, token: Option<&str>, body: &str) -> Response {
        let mut request = Client::new()
            .put(self.url(&format!("/_sandbox/shop/orders{query}")))
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_owned());
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, token);
        }
        request.send().await.expect("PUT shop")
    }
}

const BEARER: &str = "Bearer sandbox";

async fn error_of(response: Response) -> String {
    let body: Value = response.json().await.expect("json error body");
    body["error"].as_str().expect("error string").to_owned()
}

#[tokio::test]
async fn movements_are_dated_near_now() {
    let before = Utc::now();
    let b = start().await;
    let after = Utc::now();
    let interval = chrono::Duration::from_std(BankConfig::default().movement_interval).expect("interval");
    let second = chrono::Duration::seconds(1);

    let started = b.bank.started_at();
    assert!(started >= before - second && started <= after, "{started}");
    assert!((b.bank.now() - Utc::now()).abs() < chrono::Duration::seconds(5));

    let c = b.logged_in("user_good", "pass_good").await;
    let json = b.movements_json(&c).await;
    assert_eq!(json.len(), 5);
    let dates: Vec<DateTime<Utc>> = json.iter().map(|m| date(m["date"].as_str().expect("date"))).collect();
    for d in &dates {
        assert!(*d <= after, "{d} is after the start ({after})");
        assert!(
            *d >= before - interval * 5 - second,
            "{d} is long before the start ({before})"
        );
    }
    // The newest is one interval before the start; each older one another interval back.
    assert_eq!(dates[0], started - interval);
    assert!(dates.windows(2).all(|w| w[0] - w[1] == interval), "{dates:?}");
    assert!(json[0]["date"].as_str().expect("date").ends_with('Z'));

    // Advancing the clock still adds movements, dated by the bank's clock.
    b.bank.advance(Duration::from_secs(5 * 60));
    let json = b.movements_json(&c).await;
    assert_eq!(json.len(), 6);
    assert_eq!(json[0]["id"], "user_good-5");
    assert_eq!(date(json[0]["date"].as_str().expect("date")), started + interval);

    // An injected movement without a date is dated by the bank's clock (now + the advance).
    let id = b
        .inject(json!({"username": "user_good", "amount": "1.00", "currency": "EUR", "description": ""}))
        .await;
    let json = b.movements_json(&c).await;
    assert_eq!(json[0]["id"], id.as_str());
    let injected_at = date(json[0]["date"].as_str().expect("date"));
    let expected = Utc::now() + interval;
    assert!(
        (injected_at - expected).abs() < chrono::Duration::seconds(5),
        "{injected_at}"
    );
}

#[tokio::test]
async fn an_injected_movement_appears_on_the_next_read_exactly_as_given() {
    let b = start().await;
    let c = b.logged_in("user_good+inject", "pass_good").await;
    assert_eq!(b.movements_json(&c).await.len(), 5);

    let id = b
        .inject(json!({
            "username": "user_good+inject",
            "amount": "1500.1230",
            "currency": "UYU",
            "name": "JUAN PÉREZ & Co",
            "description": "Transfer REF A1B2C3",
        }))
        .await;
    assert_eq!(id, "user_good+inject-i1");
    let old = b
        .inject(json!({
            "username": "user_good+inject",
            "amount": "-0.5",
            "currency": "USD",
            "name": null,
            "description": "",
            "received_at": "2020-01-01T00:00:00.750-03:00",
        }))
        .await;
    assert_eq!(old, "user_good+inject-i2");
    let absent_name = b
        .inject(json!({
            "username": "user_good+inject",
            "amount": "7",
            "currency": "EUR",
            "description": "no name",
            "received_at": "2020-01-02T00:00:00Z",
        }))
        .await;

    let json = b.movements_json(&c).await;
    assert_eq!(json.len(), 8);
    assert_eq!(
        json[0],
        json!({
            "id": id,
            "date": json[0]["date"],
            "amount": "1500.1230",
            "currency": "UYU",
            "name": "JUAN PÉREZ & Co",
            "description": "Transfer REF A1B2C3",
        })
    );
    let last = &json[7];
    assert_eq!(
        last,
        &json!({
            "id": old,
            "date": "2020-01-01T03:00:00Z",
            "amount": "-0.5",
            "currency": "USD",
            "name": null,
            "description": "",
        })
    );
    assert_eq!(json[6]["id"], absent_name.as_str());
    assert_eq!(json[6]["name"], Value::Null);
    let dates: Vec<&str> = json.iter().map(|m| m["date"].as_str().expect("date")).collect();
    assert!(dates.windows(2).all(|w| w[0] >= w[1]), "newest first: {dates:?}");

    let html = b.movements_html(&c).await;
    let ids: Vec<&str> = json.iter().map(|m| m["id"].as_str().expect("id")).collect();
    assert_eq!(row_ids(&html), ids);
    assert!(html.contains(&format!(
        r#"<tr data-id="{id}"><td class="date">{}</td><td class="amount">1500.1230</td><td class="currency">UYU</td><td class="name">JUAN PÉREZ &amp; Co</td>"#,
        dates[0]
    )), "{html}");
    assert!(html.contains(&format!(
        r#"<tr data-id="{old}"><td class="date">2020-01-01T03:00:00Z</td><td class="amount">-0.5</td><td class="currency">USD</td><td class="name"></td><td class="description"></td></tr>"#
    )), "{html}");

    // The library method adds the same way and the expected statement agrees with the reads.
    let in_process = b
        .bank
        .add_movement(AddMovement {
            username: "user_good+inject".into(),
            amount: "42.42".into(),
            currency: "BRL".into(),
            name: Some("ANA".into()),
            description: "in process".into(),
            received_at: None,
        })
        .expect("valid movement");
    assert_eq!(in_process, "user_good+inject-i4");
    let json = b.movements_json(&c).await;
    assert_eq!(json.len(), 9);
    assert!(json
        .iter()
        .any(|m| m["id"] == in_process.as_str() && m["amount"] == "42.42"));
    let expected: Vec<String> = b
        .bank
        .movements_of("user_good+inject")
        .into_iter()
        .map(|m| m.id)
        .collect();
    let read: Vec<&str> = json.iter().map(|m| m["id"].as_str().expect("id")).collect();
    assert_eq!(read, expected);

    // The same checks in process.
    let bad = b.bank.add_movement(AddMovement {
        username: "user_good".into(),
        amount: "1.5e3".into(),
        currency: "EUR".into(),
        name: None,
        description: String::new(),
        received_at: None,
    });
    assert_eq!(bad.expect_err("bad amount").field, "amount");
}

#[tokio::test]
async fn tagged_users_are_isolated_but_behave_like_their_user() {
    let b = start().await;
    let a = b.logged_in("user_good+a", "pass_good").await;
    let bb = b.logged_in("user_good+b", "pass_good").await;
    let plain = b.logged_in("user_good", "pass_good").await;

    let base_a = b.movements_json(&a).await;
    let base_b = b.movements_json(&bb).await;
    let base_plain = b.movements_json(&plain).await;
    assert_eq!(base_a[0]["id"], "user_good+a-4");
    assert_eq!(base_b[0]["id"], "user_good+b-4");
    let content = |ms: &[Value]| -> Vec<(Value, Value)> {
        ms.iter()
            .map(|m| (m["amount"].clone(), m["description"].clone()))
            .collect()
    };
    assert_ne!(content(&base_a), content(&base_plain), "seeded with the full username");
    assert_ne!(content(&base_a), content(&base_b));

    let id = b
        .inject(json!({"username": "user_good+a", "amount": "10.00", "currency": "UYU", "description": "for a"}))
        .await;
    let read_a = b.movements_json(&a).await;
    assert_eq!(read_a.len(), 6);
    assert_eq!(read_a[0]["id"], id.as_str());
    assert_eq!(b.movements_json(&bb).await, base_b, "b does not see a's movement");
    assert_eq!(b.movements_json(&plain).await, base_plain, "nor does the untagged user");
    assert!(!b.movements_html(&bb).await.contains(&id));
    assert!(b.movements_html(&a).await.contains(r#"data-username="user_good+a""#));

    // Sessions are per full username.
    assert_eq!(b.bank.drop_sessions("user_good+a"), 1);
    assert_eq!(b.movements_json(&bb).await.len(), 5, "b's session survives a's drop");
    assert_eq!(
        client_status(&a, &b.url("/api/movements")).await,
        StatusCode::UNAUTHORIZED
    );

    // The tagged user keeps its user's password and second factor.
    let c = client();
    let html = b.login(&c, "user_good+a", "pass_otp").await.text().await.expect("page");
    assert!(html.contains(r#"data-error="bad_credentials""#), "{html}");
    let mut events = b.bank.subscribe_otp();
    let response = b.login(&c, "user_otp+x", "pass_otp").await;
    assert_eq!(location(&response), "/otp");
    let html = c
        .get(b.url("/otp"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("otp page");
    assert!(html.contains(r#"data-length="6" data-type="numeric""#), "{html}");
    let csrf = input_value(&html, "csrf");
    let response = c
        .post(b.url("/otp"))
        .form(&[("code", "123456"), ("csrf", &csrf)])
        .send()
        .await
        .expect("POST /otp");
    assert_eq!(location(&response), "/movements");
    let event = events.recv().await.expect("event");
    assert_eq!((event.username.as_str(), event.accepted), ("user_otp+x", true));
    assert_eq!(b.movements_json(&c).await[0]["id"], "user_otp+x-4");

    // Locked stays locked; bad tags are unknown users.
    let html = b
        .login(&client(), "user_locked+t", "pass_locked")
        .await
        .text()
        .await
        .expect("page");
    assert!(html.contains(r#"data-error="account_locked""#), "{html}");
    let too_long = format!("user_good+{}", "t".repeat(33));
    for name in [
        "user_good+",
        "user_good+a.b",
        "user_good+a+b",
        "nobody+a",
        too_long.as_str(),
    ] {
        let html = b.login(&client(), name, "pass_good").await.text().await.expect("page");
        assert!(html.contains(r#"data-error="bad_credentials""#), "{name}");
    }
}

async fn client_status(client: &Client, url: &str) -> StatusCode {
    client.get(url).send().await.expect("GET").status()
}

#[tokio::test]
async fn each_tagged_flaky_user_counts_its_own_failures() {
    let b = start().await;
    for name in ["user_flaky+a", "user_flaky+b", "user_flaky"] {
        let c = client();
        assert_eq!(
            b.login(&c, name, "pass_flaky").await.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{name}'s first login POST"
        );
        assert_eq!(location(&b.login(&c, name, "pass_flaky").await), "/movements");
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(client_status(&c, &b.url("/api/movements")).await.as_u16());
        }
        assert_eq!(statuses, [200, 200, 502], "{name}");
    }
    assert_eq!(b.bank.stats().server_errors, 6);
}

#[tokio::test]
async fn bad_movement_bodies_are_refused_naming_the_field() {
    let b = start().await;
    let ok = json!({"username": "user_good", "amount": "1500.00", "currency": "UYU", "name": "JUAN PEREZ", "description": "x"});
    let with = |field: &str, value: Value| {
        let mut body = ok.clone();
        body[field] = value;
        body.to_string()
    };
    let without = |field: &str| {
        let mut body = ok.clone();
        body.as_object_mut().expect("object").remove(field);
        body.to_string()
    };
    let cases: Vec<(String, &str)> = vec![
        ("{".into(), "body"),
        ("".into(), "body"),
        ("[]".into(), "body"),
        ("\"user_good\"".into(), "body"),
        (without("username"), "username"),
        (without("amount"), "amount"),
        (without("currency"), "currency"),
        (without("description"), "description"),
        (with("username", json!(1)), "username"),
        (with("username", json!("nobody")), "username"),
        (with("username", json!("user_good+")), "username"),
        (with("username", json!("user_good+a b")), "username"),
        (
            with("username", json!(format!("user_good+{}", "x".repeat(33)))),
            "username",
        ),
        (with("amount", json!(1500.0)), "amount"),
        (with("amount", json!("1.5e3")), "amount"),
        (with("amount", json!("1,500.00")), "amount"),
        (with("amount", json!("1500.12345")), "amount"),
        (with("amount", json!("+5")), "amount"),
        (with("amount", json!(".5")), "amount"),
        (with("amount", json!("5.")), "amount"),
        (with("amount", json!(" 5")), "amount"),
        (with("amount", json!("")), "amount"),
        (with("currency", json!("uyu")), "currency"),
        (with("currency", json!("UY")), "currency"),
        (with("currency", json!("UYUU")), "currency"),
        (with("currency", json!(null)), "currency"),
        (with("name", json!(5)), "name"),
        (with("name", json!(["x"])), "name"),
        (with("description", json!(null)), "description"),
        (with("received_at", json!("2025-13-01T00:00:00Z")), "received_at"),
        (with("received_at", json!("2025-01-01")), "received_at"),
        (with("received_at", json!("yesterday")), "received_at"),
        (with("received_at", json!(1_700_000_000)), "received_at"),
    ];
    for (body, field) in cases {
        let response = b.inject_raw(body.clone()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let error = error_of(response).await;
        assert!(error.starts_with(&format!("{field}:")), "{body} → {error}");
    }
    // Nothing was added by any of them.
    assert_eq!(b.bank.movements_of("user_good").len(), 5);

    // Too large a body is 413 JSON.
    let mut big = ok.clone();
    big["description"] = json!("x".repeat(64 * 1024));
    let response = b.inject_raw(big.to_string()).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(error_of(response).await.starts_with("body:"));

    // The valid body, and a null received_at, are accepted.
    assert_eq!(b.inject_raw(ok.to_string()).await.status(), StatusCode::CREATED);
    assert_eq!(
        b.inject_raw(with("received_at", Value::Null)).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(b.bank.movements_of("user_good").len(), 7);
}

#[tokio::test]
async fn the_sandbox_shop_keeps_a_verbatim_json_array_behind_a_bearer_token() {
    let b = start().await;

    // Without the token, or with another one: 401, before anything else.
    for token in [None, Some("Bearer other"), Some("Basic sandbox"), Some("sandbox")] {
        let response = b.shop_get("", token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{token:?}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body, json!({"error": "unauthorized"}));
        let response = b.shop_put("", token, "[]").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(error_of(response).await, "unauthorized");
    }

    // Initially empty.
    let response = b.shop_get("", Some(BEARER)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers().get(CONTENT_TYPE).expect("content type"),
        "application/json"
    );
    assert_eq!(response.text().await.expect("body"), "[]");

    // Stored and served back byte for byte, odd numbers included.
    let orders = "[ {\"external_id\": \"A1\", \"amount\": 1.5e3, \"currency\": \"uyu\", \"name\": \"Juan\"},\n  {\"external_id\": 7, \"amount\": 0.12345678901234567890123, \"big\": 1e400} ]";
    let response = b.shop_put("", Some(BEARER), orders).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(b.shop_get("", Some(BEARER)).await.text().await.expect("body"), orders);
    assert_eq!(b.bank.shop_orders(sandbox_bank::DEFAULT_SHOP), orders);

    // Not an array: 400, the list unchanged.
    for bad in ["{}", r#"{"data": []}"#, "1", "null", "[", "[] []", ""] {
        let response = b.shop_put("", Some(BEARER), bad).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(!error_of(response).await.is_empty());
    }
    assert_eq!(b.shop_get("", Some(BEARER)).await.text().await.expect("body"), orders);

    // Named shops are independent of each other and of the default one.
    assert_eq!(
        b.shop_put("?shop=s1", Some(BEARER), "[1]").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        b.shop_get("?shop=s1", Some(BEARER)).await.text().await.expect("body"),
        "[1]"
    );
    assert_eq!(
        b.shop_get("?shop=s2", Some(BEARER)).await.text().await.expect("body"),
        "[]"
    );
    assert_eq!(b.shop_get("", Some(BEARER)).await.text().await.expect("body"), orders);
    b.bank.set_shop_orders("s2", "[2]").expect("valid list");
    assert_eq!(
        b.shop_get("?shop=s2", Some(BEARER)).await.text().await.expect("body"),
        "[2]"
    );
    assert!(b.bank.set_shop_orders("s2", "{}").is_err());
    for bad in ["?shop=", "?shop=a.b", "?shop=a%20b"] {
        let response = b.shop_get(bad, Some(BEARER)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(error_of(response).await.starts_with("shop:"));
    }
    // An empty array clears the list.
    assert_eq!(
        b.shop_put("", Some("bearer  sandbox"), "[]").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(b.shop_get("", Some(BEARER)).await.text().await.expect("body"), "[]");
}
