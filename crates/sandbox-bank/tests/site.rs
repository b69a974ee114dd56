//! Black-box tests of the sandbox bank: each starts a fresh bank on 127.0.0.1:0 and drives it
//! over real HTTP with a cookie-keeping client, the way the connector will.

use std::time::Duration;

use reqwest::header::{LOCATION, SET_COOKIE};
use reqwest::{redirect, Client, Response, StatusCode};
use sandbox_bank::{BankConfig, SandboxBank};
use serde_json::Value;

struct Bank {
    bank: SandboxBank,
    base: String,
}

async fn start(config: BankConfig) -> Bank {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    let bank = SandboxBank::new(config);
    tokio::spawn(bank.clone().serve(listener, std::future::pending()));
    Bank { bank, base }
}

async fn start_default() -> Bank {
    start(BankConfig::default()).await
}

/// A browser-like client that keeps cookies but does not follow redirects, so tests see them.
fn client() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(redirect::Policy::none())
        .build()
        .expect("client")
}

/// The value of the first `name="NAME" value="..."` input.
fn input_value(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} input in {html}"))
        + marker.len();
    let len = html[start..].find('"').expect("closing quote");
    html[start..start + len].to_owned()
}

/// The value of attribute `attr` in the element that contains `anchor`.
fn attribute(html: &str, anchor: &str, attr: &str) -> String {
    let at = html.find(anchor).unwrap_or_else(|| panic!("no {anchor} in {html}"));
    let tag_end = at + html[at..].find('>').expect("tag end");
    let tag_start = html[..at].rfind('<').expect("tag start");
    let tag = &html[tag_start..tag_end];
    let marker = format!("{attr}=\"");
    let start = tag.find(&marker).unwrap_or_else(|| panic!("no {attr} in {tag}")) + marker.len();
    let len = tag[start..].find('"').expect("closing quote");
    tag[start..start + len].to_owned()
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

impl Bank {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, client: &Client, path: &str) -> Response {
        client.get(self.url(path)).send().await.expect("GET")
    }

    async fn post(&self, client: &Client, path: &str, form: &[(&str, &str)]) -> Response {
        client.post(self.url(path)).form(form).send().await.expect("POST")
    }

    /// Fetches the login form and posts it back with these credentials.
    async fn login(&self, client: &Client, username: &str, password: &str) -> Response {
        let page = self.get(client, "/login").await;
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.expect("login page");
        assert!(
            html.contains(r#"<form id="login-form" method="post" action="/login">"#),
            "{html}"
        );
        let csrf = input_value(&html, "csrf");
        self.post(
            client,
            "/login",
            &[("username", username), ("password", password), ("csrf", &csrf)],
        )
        .await
    }

    /// Fetches the OTP form and posts this code.
    async fn submit_code(&self, client: &Client, code: &str) -> Response {
        let page = self.get(client, "/otp").await;
        assert_eq!(page.status(), StatusCode::OK);
        let csrf = input_value(&page.text().await.expect("otp page"), "csrf");
        self.post(client, "/otp", &[("code", code), ("csrf", &csrf)]).await
    }

    async fn movements_html(&self, client: &Client) -> String {
        let response = self.get(client, "/movements").await;
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("movements page")
    }

    async fn movements_json(&self, client: &Client) -> Vec<Value> {
        let response = self.get(client, "/api/movements").await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("json");
        body["movements"].as_array().expect("movements array").clone()
    }
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

fn error_code(html: &str) -> String {
    attribute(html, "class=\"error\"", "data-error")
}

#[tokio::test]
async fn home_links_to_login() {
    let b = start_default().await;
    let response = b.get(&client(), "/").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.expect("home").contains(r#"href="/login""#));
}

#[tokio::test]
async fn good_login_shows_movements_in_html_and_json() {
    let b = start_default().await;
    let c = client();

    let response = b.login(&c, "user_good", "pass_good").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/movements");
    let cookie = response
        .headers()
        .get(SET_COOKIE)
        .expect("set-cookie")
        .to_str()
        .expect("ascii");
    assert!(
        cookie.starts_with("sandbox_session=") && cookie.contains("HttpOnly"),
        "{cookie}"
    );

    let html = b.movements_html(&c).await;
    assert!(html.contains(r#"<table id="movements">"#));
    let ids = row_ids(&html);
    assert_eq!(
        ids,
        [
            "user_good-4",
            "user_good-3",
            "user_good-2",
            "user_good-1",
            "user_good-0"
        ]
    );
    for cell in [
        "td class=\"date\"",
        "td class=\"amount\"",
        "td class=\"currency\">EUR",
        "td class=\"name\"",
        "td class=\"description\"",
    ] {
        assert!(html.contains(cell), "missing {cell}");
    }

    let json = b.movements_json(&c).await;
    let json_ids: Vec<&str> = json.iter().map(|m| m["id"].as_str().expect("id")).collect();
    assert_eq!(json_ids, ids);
    let expected = b.bank.movements_of("user_good");
    for (m, e) in json.iter().zip(&expected) {
        assert_eq!(m["amount"], e.amount());
        assert_eq!(m["date"], e.date_rfc3339());
        assert_eq!(m["currency"], "EUR");
        assert_eq!(m["name"].as_str(), e.name.as_deref());
        assert_eq!(m["description"], e.description);
        let amount = m["amount"].as_str().expect("amount string");
        let (_, decimals) = amount.split_once('.').expect("decimal point");
        assert_eq!(decimals.len(), 2, "{amount}");
    }
    // The first row's cells, as the HTML shows them.
    let first = &expected[0];
    assert!(html.contains(&format!(
        r#"<tr data-id="{}"><td class="date">{}</td><td class="amount">{}</td><td class="currency">EUR</td>"#,
        first.id,
        first.date_rfc3339(),
        first.amount()
    )));

    let stats = b.bank.stats();
    assert_eq!(stats.logins_attempted, 1);
    assert_eq!(stats.logins_succeeded, 1);
    assert_eq!(stats.live_sessions, 1);
}

#[tokio::test]
async fn unauthenticated_reads_are_refused() {
    let b = start_default().await;
    let c = client();
    let response = b.get(&c, "/movements").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/login");

    let response = b.get(&c, "/api/movements").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body, serde_json::json!({"error": "not_logged_in"}));

    let response = b.get(&c, "/otp").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/login");

    let response = b.get(&c, "/nowhere").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(&response.text().await.expect("body")), "not_found");
}

#[tokio::test]
async fn otp_user_wrong_code_then_right_code() {
    let b = start_default().await;
    let c = client();
    let mut events = b.bank.subscribe_otp();

    let response = b.login(&c, "user_otp", "pass_otp").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/otp");
    // Waiting for a code is not logged in.
    assert_eq!(b.get(&c, "/movements").await.status(), StatusCode::SEE_OTHER);

    let page = b.get(&c, "/otp").await.text().await.expect("otp page");
    assert!(page.contains(r#"<form id="otp-form" method="post" action="/otp" data-length="6" data-type="numeric" data-purpose="login""#), "{page}");
    assert!(page.contains(r#"name="code""#));
    assert_eq!(attribute(&page, "id=\"otp-form\"", "data-attempts-left"), "3");

    let response = b.submit_code(&c, "000000").await;
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.expect("wrong code page");
    assert_eq!(error_code(&html), "wrong_code");
    assert_eq!(attribute(&html, "data-error=\"wrong_code\"", "data-attempts-left"), "2");
    let event = events.recv().await.expect("event");
    assert_eq!((event.username.as_str(), event.accepted), ("user_otp", false));

    let response = b.submit_code(&c, "123456").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/movements");
    let event = events.recv().await.expect("event");
    assert_eq!((event.username.as_str(), event.accepted), ("user_otp", true));

    assert_eq!(row_ids(&b.movements_html(&c).await).len(), 5);
    // Logged in now: the OTP page is gone.
    assert_eq!(b.get(&c, "/otp").await.status(), StatusCode::SEE_OTHER);

    let stats = b.bank.stats();
    assert_eq!(
        (stats.otp_submissions, stats.otp_accepted, stats.logins_succeeded),
        (2, 1, 1)
    );
}

#[tokio::test]
async fn three_wrong_codes_lock_the_login_and_a_fresh_login_starts_over() {
    let b = start_default().await;
    let c = client();
    let mut events = b.bank.subscribe_otp();

    b.login(&c, "user_otp", "pass_otp").await;
    // The form page is fetched once; its csrf token stays valid across attempts.
    let csrf = input_value(&b.get(&c, "/otp").await.text().await.expect("otp page"), "csrf");
    for left in ["2", "1"] {
        let html = b
            .post(&c, "/otp", &[("code", "999999"), ("csrf", &csrf)])
            .await
            .text()
            .await
            .expect("page");
        assert_eq!(
            attribute(&html, "data-error=\"wrong_code\"", "data-attempts-left"),
            left
        );
    }
    let response = b.post(&c, "/otp", &[("code", "999999"), ("csrf", &csrf)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(error_code(&response.text().await.expect("locked page")), "otp_locked");
    for _ in 0..3 {
        assert!(!events.recv().await.expect("event").accepted);
    }

    // The session is gone: the right code now is too late.
    let response = b.post(&c, "/otp", &[("code", "123456"), ("csrf", &csrf)]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/login");
    assert_eq!(b.get(&c, "/otp").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(b.get(&c, "/movements").await.status(), StatusCode::SEE_OTHER);
    assert!(
        events.try_recv().is_err(),
        "no event without a session waiting for a code"
    );

    // A fresh login has all its attempts again.
    b.login(&c, "user_otp", "pass_otp").await;
    let page = b.get(&c, "/otp").await.text().await.expect("otp page");
    assert_eq!(attribute(&page, "id=\"otp-form\"", "data-attempts-left"), "3");
    assert_eq!(location(&b.submit_code(&c, "123456").await), "/movements");
}

#[tokio::test]
async fn otp_attempts_are_configurable() {
    let b = start(BankConfig {
        otp_attempts: 1,
        ..BankConfig::default()
    })
    .await;
    let c = client();
    b.login(&c, "user_otp", "pass_otp").await;
    let html = b.submit_code(&c, "111111").await.text().await.expect("page");
    assert_eq!(error_code(&html), "otp_locked");
}

#[tokio::test]
async fn alnum_user_asks_for_eight_characters() {
    let b = start_default().await;
    let c = client();
    let mut events = b.bank.subscribe_otp();
    assert_eq!(location(&b.login(&c, "user_alnum", "pass_alnum").await), "/otp");
    let page = b.get(&c, "/otp").await.text().await.expect("otp page");
    assert_eq!(attribute(&page, "id=\"otp-form\"", "data-length"), "8");
    assert_eq!(attribute(&page, "id=\"otp-form\"", "data-type"), "alphanumeric");
    assert_eq!(attribute(&page, "id=\"otp-form\"", "data-purpose"), "login");

    // The numeric user's code is not this user's code.
    let html = b.submit_code(&c, "123456").await.text().await.expect("page");
    assert_eq!(error_code(&html), "wrong_code");
    let response = b.submit_code(&c, "AB12CD34").await;
    assert_eq!(location(&response), "/movements");
    assert!(!events.recv().await.expect("event").accepted);
    let event = events.recv().await.expect("event");
    assert_eq!((event.username.as_str(), event.accepted), ("user_alnum", true));
    assert!(b.movements_html(&c).await.contains("user_alnum-0"));
}

#[tokio::test]
async fn locked_user_is_told_so() {
    let b = start_default().await;
    let c = client();
    let response = b.login(&c, "user_locked", "pass_locked").await;
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.expect("page");
    assert!(
        html.contains(r#"<p class="error" data-error="account_locked">"#),
        "{html}"
    );
    assert!(html.contains(r#"id="login-form""#));
    assert_eq!(b.get(&c, "/movements").await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn bad_credentials_for_wrong_password_and_unknown_user() {
    let b = start_default().await;
    let c = client();
    for (user, pass) in [
        ("user_good", "nope"),
        ("nobody", "pass_good"),
        ("user_locked", "nope"),
        ("", ""),
    ] {
        let response = b.login(&c, user, pass).await;
        assert_eq!(response.status(), StatusCode::OK);
        let html = response.text().await.expect("page");
        assert_eq!(error_code(&html), "bad_credentials", "{user}");
    }
    // The re-rendered form can be posted again as is.
    let html = b.login(&c, "user_good", "nope").await.text().await.expect("page");
    let csrf = input_value(&html, "csrf");
    let response = b
        .post(
            &c,
            "/login",
            &[("username", "user_good"), ("password", "pass_good"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(location(&response), "/movements");
    assert_eq!(b.bank.stats().logins_attempted, 6);
}

#[tokio::test]
async fn login_without_a_valid_csrf_token_is_refused() {
    let b = start_default().await;
    let c = client();
    // No session at all.
    let response = b
        .post(&c, "/login", &[("username", "user_good"), ("password", "pass_good")])
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&response.text().await.expect("page")), "csrf");

    // A session, but the token missing or wrong.
    b.get(&c, "/login").await;
    for csrf in [None, Some("forged")] {
        let mut form = vec![("username", "user_good"), ("password", "pass_good")];
        form.extend(csrf.map(|t| ("csrf", t)));
        let response = b.post(&c, "/login", &form).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error_code(&response.text().await.expect("page")), "csrf");
    }

    // Another visitor's token is no good either.
    let other = client();
    let html = b.get(&other, "/login").await.text().await.expect("page");
    let foreign = input_value(&html, "csrf");
    let response = b
        .post(
            &c,
            "/login",
            &[("username", "user_good"), ("password", "pass_good"), ("csrf", &foreign)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // OTP form too.
    b.login(&c, "user_otp", "pass_otp").await;
    let response = b.post(&c, "/otp", &[("code", "123456"), ("csrf", "forged")]).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&response.text().await.expect("page")), "csrf");
    assert_eq!(location(&b.submit_code(&c, "123456").await), "/movements");
}

#[tokio::test]
async fn flaky_user_fails_every_odd_login_post_and_every_third_read() {
    let b = start_default().await;
    let c = client();
    let html = b.get(&c, "/login").await.text().await.expect("page");
    let csrf = input_value(&html, "csrf");
    let form = [
        ("username", "user_flaky"),
        ("password", "pass_flaky"),
        ("csrf", csrf.as_str()),
    ];

    let response = b.post(&c, "/login", &form).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&response.text().await.expect("page")), "unavailable");
    // Retrying the same form gets in.
    let response = b.post(&c, "/login", &form).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/movements");

    // Reads 1, 2 fine; 3 fails; 4, 5 fine; 6 fails (HTML and JSON share the count).
    let mut statuses = Vec::new();
    for i in 0..6 {
        let path = if i % 2 == 0 { "/movements" } else { "/api/movements" };
        statuses.push(b.get(&c, path).await.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 502, 200, 200, 502]);
    assert_eq!(b.bank.stats().server_errors, 3);

    // The third login POST (odd) fails again; the fourth succeeds.
    let c2 = client();
    assert_eq!(
        b.login(&c2, "user_flaky", "pass_flaky").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        b.login(&c2, "user_flaky", "pass_flaky").await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(b.bank.stats().server_errors, 4);
}

#[tokio::test(start_paused = true)]
async fn slow_user_waits_before_every_answer() {
    // Longer than the idle timeout on purpose: the wait must not cost the session.
    let delay = Duration::from_secs(3600);
    let b = start(BankConfig {
        slow_delay: delay,
        ..BankConfig::default()
    })
    .await;
    let c = client();

    let started = tokio::time::Instant::now();
    let response = b.login(&c, "user_slow", "pass_slow").await;
    assert_eq!(location(&response), "/movements");
    assert!(
        started.elapsed() >= delay,
        "login answered after {:?}",
        started.elapsed()
    );

    let started = tokio::time::Instant::now();
    assert_eq!(b.movements_html(&c).await.matches("<tr data-id=").count(), 5);
    assert!(
        started.elapsed() >= delay,
        "movements answered after {:?}",
        started.elapsed()
    );

    let started = tokio::time::Instant::now();
    let response = b.post(&c, "/logout", &[]).await;
    assert_eq!(location(&response), "/login");
    assert!(
        started.elapsed() >= delay,
        "logout answered after {:?}",
        started.elapsed()
    );

    // The same round trip for a normal user takes no (paused) time at all.
    let good = client();
    let started = tokio::time::Instant::now();
    assert_eq!(location(&b.login(&good, "user_good", "pass_good").await), "/movements");
    b.movements_html(&good).await;
    assert!(
        started.elapsed() < delay,
        "user_good answered after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn slow_user_delay_is_real_time_without_a_paused_clock() {
    let delay = Duration::from_millis(300);
    let b = start(BankConfig {
        slow_delay: delay,
        ..BankConfig::default()
    })
    .await;
    let c = client();
    let started = std::time::Instant::now();
    let response = b.login(&c, "user_slow", "pass_slow").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(started.elapsed() >= delay);
    // Other users are not slowed down by it... nor is the slow user's anonymous login page.
    let good = client();
    assert_eq!(location(&b.login(&good, "user_good", "pass_good").await), "/movements");
}

#[tokio::test]
async fn advancing_the_clock_adds_movements_and_keeps_old_ones() {
    let b = start_default().await;
    let c = client();
    b.login(&c, "user_good", "pass_good").await;
    let before = b.movements_json(&c).await;
    assert_eq!(before.len(), 5);

    b.bank.advance(Duration::from_secs(5 * 60 * 3));
    let after = b.movements_json(&c).await;
    assert_eq!(after.len(), 8);
    let new_ids: Vec<&str> = after[..3].iter().map(|m| m["id"].as_str().expect("id")).collect();
    assert_eq!(new_ids, ["user_good-7", "user_good-6", "user_good-5"]);
    assert_eq!(&after[3..], &before[..], "old movements unchanged");
    assert!(after[0]["date"].as_str() > after[1]["date"].as_str(), "newest first");

    // The HTML view agrees, and the session survived the jump.
    let html = b.movements_html(&c).await;
    assert_eq!(row_ids(&html).len(), 8);
    assert_eq!(row_ids(&html)[0], "user_good-7");
}

#[tokio::test]
async fn dropped_sessions_must_log_in_again() {
    let b = start_default().await;
    let c = client();
    let other = client();
    b.login(&c, "user_good", "pass_good").await;
    b.login(&other, "user_otp", "pass_otp").await;
    assert_eq!(b.get(&c, "/movements").await.status(), StatusCode::OK);

    assert_eq!(b.bank.drop_sessions("user_good"), 1);
    assert_eq!(b.bank.stats().live_sessions, 0);
    let response = b.get(&c, "/movements").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/login");
    assert_eq!(b.get(&c, "/api/movements").await.status(), StatusCode::UNAUTHORIZED);
    // The other user's pending login is untouched, until dropped too.
    assert_eq!(b.get(&other, "/otp").await.status(), StatusCode::OK);
    assert_eq!(b.bank.drop_sessions("user_otp"), 1);
    assert_eq!(b.get(&other, "/otp").await.status(), StatusCode::SEE_OTHER);

    assert_eq!(location(&b.login(&c, "user_good", "pass_good").await), "/movements");
    assert_eq!(b.get(&c, "/movements").await.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn idle_sessions_expire() {
    let b = start(BankConfig {
        session_idle_timeout: Duration::from_secs(600),
        ..BankConfig::default()
    })
    .await;
    let c = client();
    b.login(&c, "user_good", "pass_good").await;
    tokio::time::advance(Duration::from_secs(300)).await;
    assert_eq!(b.get(&c, "/movements").await.status(), StatusCode::OK);
    // Used 300 s ago: still alive after another 500 s, gone after 700 s more.
    tokio::time::advance(Duration::from_secs(500)).await;
    assert_eq!(b.get(&c, "/movements").await.status(), StatusCode::OK);
    tokio::time::advance(Duration::from_secs(700)).await;
    assert_eq!(b.get(&c, "/movements").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(b.bank.stats().live_sessions, 0);
}

#[tokio::test]
async fn logout_ends_the_session() {
    let b = start_default().await;
    let c = client();
    b.login(&c, "user_good", "pass_good").await;
    let response = b.post(&c, "/logout", &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/login");
    assert_eq!(b.bank.stats().live_sessions, 0);
    assert_eq!(b.get(&c, "/movements").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(b.get(&c, "/api/movements").await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn session_cookie_value_cannot_be_replayed_after_login() {
    let b = start_default().await;
    let c = client();
    let response = b.get(&c, "/login").await;
    let pre = response
        .headers()
        .get(SET_COOKIE)
        .expect("pre-login cookie")
        .to_str()
        .expect("ascii")
        .to_owned();
    let pre_value = pre.split(';').next().expect("pair").to_owned();
    let csrf = input_value(&response.text().await.expect("page"), "csrf");
    b.post(
        &c,
        "/login",
        &[("username", "user_good"), ("password", "pass_good"), ("csrf", &csrf)],
    )
    .await;

    // The pre-login id was replaced, not promoted.
    let raw = Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .expect("client");
    let response = raw
        .get(b.url("/movements"))
        .header("cookie", pre_value)
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn escaping_keeps_the_markup_parseable() {
    let b = start(BankConfig {
        movement_interval: Duration::from_secs(1),
        ..BankConfig::default()
    })
    .await;
    b.bank.advance(Duration::from_secs(150));
    let c = client();
    b.login(&c, "user_good", "pass_good").await;
    let html = b.movements_html(&c).await;
    let expected = b.bank.movements_of("user_good");
    assert_eq!(row_ids(&html).len(), expected.len());
    let names: Vec<&str> = expected.iter().filter_map(|m| m.name.as_deref()).collect();
    assert!(
        names.contains(&"<Metro> Transit") && names.contains(&"O'Brien & Sons"),
        "{names:?}"
    );
    assert!(html.contains(r#"<td class="name">&lt;Metro&gt; Transit</td>"#));
    assert!(html.contains(r#"<td class="name">O&#39;Brien &amp; Sons</td>"#));
    assert!(html.contains(r#"<td class="name">Café Lumière</td>"#));
    assert!(!html.contains("<Metro>"));
    assert!(html.contains(r#"<td class="name"></td>"#), "a movement without a name");
    // A bad-credentials page echoes the username escaped.
    let html = b.login(&c, "<script>\"x\"", "nope").await.text().await.expect("page");
    assert!(html.contains("value=\"&lt;script&gt;&quot;x&quot;\""), "{html}");
}
