//! Black-box tests of the JavaScript sandbox bank's server side (`/js/…`, issue 9): the shell
//! carries no form, and the JSON API behaves like the HTML bank for the same scripted users.
//! (The pages themselves are driven in headless Chromium by `crates/browser/tests`.)

use reqwest::{redirect, Client, StatusCode};
use sandbox_bank::{BankConfig, SandboxBank};
use serde_json::{json, Value};

async fn start() -> (SandboxBank, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    let bank = SandboxBank::new(BankConfig::default());
    tokio::spawn(bank.clone().serve(listener, std::future::pending()));
    (bank, base)
}

fn client() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(redirect::Policy::none())
        .build()
        .expect("client")
}

async fn csrf(c: &Client, base: &str) -> String {
    let r: Value = c
        .get(format!("{base}/js/api/session"))
        .send()
        .await
        .expect("session")
        .json()
        .await
        .expect("json");
    r["csrf"].as_str().expect("csrf").to_owned()
}

/// `Bearer <token>` of the client's logged-in session (`/js/api/session` hands it to the app).
async fn bearer(c: &Client, base: &str) -> String {
    let r: Value = c
        .get(format!("{base}/js/api/session"))
        .send()
        .await
        .expect("session")
        .json()
        .await
        .expect("json");
    assert_eq!(r["stage"], "authenticated", "{r}");
    format!("Bearer {}", r["token"].as_str().expect("a token once logged in"))
}

async fn post(c: &Client, url: String, body: Value) -> (StatusCode, Value) {
    let r = c.post(url).json(&body).send().await.expect("post");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_shell_has_no_form_and_the_script_is_served() {
    let (_bank, base) = start().await;
    for page in ["/js/login", "/js/otp", "/js/movements"] {
        let body = reqwest::get(format!("{base}{page}"))
            .await
            .expect("get")
            .text()
            .await
            .expect("text");
        assert!(body.contains("<script src=\"/js/app.js\">"), "{page}: {body}");
        assert!(!body.contains("password") && !body.contains("<form"), "{page}: {body}");
    }
    let js = reqwest::get(format!("{base}/js/app.js")).await.expect("get");
    assert!(js.headers()["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("text/javascript"));
    assert!(js.text().await.expect("text").contains("XMLHttpRequest"));
}

#[tokio::test]
async fn a_login_with_a_code_reads_movements_as_json() {
    let (bank, base) = start().await;
    let c = client();
    let token = csrf(&c, &base).await;
    let (s, b) = post(
        &c,
        format!("{base}/js/api/login"),
        json!({"username": "user_otp", "password": "pass_otp", "csrf": token}),
    )
    .await;
    assert_eq!((s, b.clone()), (StatusCode::OK, json!({"next": "otp"})));
    let otp: Value = c
        .get(format!("{base}/js/api/otp"))
        .send()
        .await
        .expect("otp")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (otp["length"].as_u64(), otp["type"].as_str()),
        (Some(6), Some("numeric"))
    );
    let token = otp["csrf"].as_str().expect("csrf").to_owned();
    let (s, b) = post(
        &c,
        format!("{base}/js/api/otp"),
        json!({"code": "000000", "csrf": token}),
    )
    .await;
    assert_eq!(
        (s, b),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"error": "wrong_code", "attemptsLeft": 2})
        )
    );
    let (s, _) = post(
        &c,
        format!("{base}/js/api/otp"),
        json!({"code": "123456", "csrf": token}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    // The movements API wants the session's bearer token, as the bank's own app sends it.
    let bearer = bearer(&c, &base).await;
    for sent in [None, Some("Bearer wrong"), Some(bearer.replace("Bearer ", "").as_str())] {
        let mut req = c.get(format!("{base}/js/api/movements"));
        if let Some(v) = sent {
            req = req.header("authorization", v);
        }
        let r = req.send().await.expect("m");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{sent:?}");
    }
    let m: Value = c
        .get(format!("{base}/js/api/movements"))
        .header("authorization", &bearer)
        .send()
        .await
        .expect("m")
        .json()
        .await
        .expect("json");
    assert_eq!(m["account"], "user_otp");
    let ids: Vec<&str> = m["movements"]
        .as_array()
        .expect("array")
        .iter()
        .map(|x| x["id"].as_str().expect("id"))
        .collect();
    let expected: Vec<String> = bank.movements_of("user_otp").into_iter().map(|x| x.id).collect();
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn refusals_have_their_codes() {
    let (_bank, base) = start().await;
    let c = client();
    let token = csrf(&c, &base).await;
    let (s, b) = post(
        &c,
        format!("{base}/js/api/login"),
        json!({"username": "user_good", "password": "nope", "csrf": token}),
    )
    .await;
    assert_eq!((s, b), (StatusCode::UNAUTHORIZED, json!({"error": "bad_credentials"})));
    let (s, b) = post(
        &c,
        format!("{base}/js/api/login"),
        json!({"username": "user_locked", "password": "pass_locked", "csrf": token}),
    )
    .await;
    assert_eq!((s, b), (StatusCode::FORBIDDEN, json!({"error": "account_locked"})));
    let (s, b) = post(
        &c,
        format!("{base}/js/api/login"),
        json!({"username": "user_flaky", "password": "pass_flaky", "csrf": token}),
    )
    .await;
    assert_eq!(
        (s, b),
        (StatusCode::SERVICE_UNAVAILABLE, json!({"error": "unavailable"}))
    );
    let (s, b) = post(
        &c,
        format!("{base}/js/api/login"),
        json!({"username": "user_good", "password": "pass_good", "csrf": "x"}),
    )
    .await;
    assert_eq!((s, b), (StatusCode::BAD_REQUEST, json!({"error": "csrf"})));
    let r = client()
        .get(format!("{base}/js/api/movements"))
        .send()
        .await
        .expect("m");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (s, b) = post(&c, format!("{base}/js/api/otp"), json!({"code": "1"})).await;
    assert_eq!((s, b), (StatusCode::UNAUTHORIZED, json!({"error": "not_logged_in"})));
}

#[tokio::test]
async fn a_redesigned_bank_marks_its_shell_and_can_go_back() {
    let (bank, base) = start().await;
    let shell = || async {
        reqwest::get(format!("{base}/js/login"))
            .await
            .expect("get")
            .text()
            .await
            .expect("text")
    };
    assert!(!shell().await.contains("data-design"));
    bank.set_js_redesign(true);
    assert!(shell().await.contains("<body data-page=\"loading\" data-design=\"2\">"));
    let js = reqwest::get(format!("{base}/js/app.js"))
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert!(js.contains("redesigned-submit"), "the app changes its submit control");
    bank.set_js_redesign(false);
    assert!(!shell().await.contains("data-design"));
}

#[tokio::test]
async fn movements_come_in_pages_when_the_user_has_a_page_size() {
    let (bank, base) = start().await;
    let c = client();
    let token = csrf(&c, &base).await;
    let (s, _) = post(
        &c,
        format!("{base}/js/api/login"),
        json!({"username": "user_good+pages", "password": "pass_good", "csrf": token}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let all: Vec<String> = bank.movements_of("user_good+pages").into_iter().map(|m| m.id).collect();
    assert_eq!(all.len(), 5);
    let page = |q: &'static str| {
        let c = c.clone();
        let base = base.clone();
        async move {
            let bearer = bearer(&c, &base).await;
            let r = c
                .get(format!("{base}/js/api/movements{q}"))
                .header("authorization", bearer)
                .send()
                .await
                .expect("m");
            let status = r.status();
            (status, r.json::<Value>().await.expect("json"))
        }
    };
    let ids = |v: &Value| -> Vec<String> {
        v["movements"]
            .as_array()
            .expect("array")
            .iter()
            .map(|m| m["id"].as_str().expect("id").to_owned())
            .collect()
    };
    // No page size: one page with everything.
    let (s, v) = page("").await;
    assert_eq!(
        (s, ids(&v), &v["page"], &v["nextPage"]),
        (StatusCode::OK, all.clone(), &json!(1), &Value::Null)
    );

    bank.set_js_page_size("user_good+pages", Some(2));
    let (_, v) = page("").await;
    assert_eq!((ids(&v), &v["nextPage"]), (all[..2].to_vec(), &json!(2)));
    let (_, v) = page("?page=2").await;
    assert_eq!((ids(&v), &v["nextPage"]), (all[2..4].to_vec(), &json!(3)));
    let (_, v) = page("?page=3").await;
    assert_eq!((ids(&v), &v["nextPage"]), (all[4..].to_vec(), &Value::Null));
    let (_, v) = page("?page=9").await;
    assert_eq!((ids(&v), &v["nextPage"]), (Vec::<String>::new(), &Value::Null));
    for bad in ["?page=0", "?page=x", "?page=-1"] {
        let (s, v) = page(bad).await;
        assert_eq!(
            (s, v),
            (StatusCode::BAD_REQUEST, json!({"error": "bad_request"})),
            "{bad}"
        );
    }
    // The size removed: one page again.
    bank.set_js_page_size("user_good+pages", None);
    let (_, v) = page("").await;
    assert_eq!(ids(&v), all);
}

/// Remember-device without the cookie: the token the accepted code hands the app (which keeps
/// it in `localStorage`) logs the same user in without a code when sent in the login's body.
#[tokio::test]
async fn the_device_token_in_the_login_body_spares_the_code() {
    let (_bank, base) = start().await;
    let c = client();
    let token = csrf(&c, &base).await;
    let login = |csrf: String, device: Value| json!({"username": "user_otp", "password": "pass_otp", "csrf": csrf, "device": device});
    let (s, b) = post(&c, format!("{base}/js/api/login"), login(token, Value::Null)).await;
    assert_eq!((s, b), (StatusCode::OK, json!({"next": "otp"})));
    let otp: Value = c
        .get(format!("{base}/js/api/otp"))
        .send()
        .await
        .expect("otp")
        .json()
        .await
        .expect("json");
    let token = otp["csrf"].as_str().expect("csrf").to_owned();
    let (s, b) = post(
        &c,
        format!("{base}/js/api/otp"),
        json!({"code": "123456", "csrf": token}),
    )
    .await;
    assert_eq!((s, &b["next"]), (StatusCode::OK, &json!("movements")));
    let device = b["device"].as_str().expect("a device token").to_owned();
    assert_eq!(device.len(), 32);

    // A fresh browser (no cookies) that sends the token: no code. A wrong one: a code.
    for (sent, next) in [(json!(device), "movements"), (json!("0".repeat(32)), "otp")] {
        let fresh = client();
        let token = csrf(&fresh, &base).await;
        let (s, b) = post(&fresh, format!("{base}/js/api/login"), login(token, sent)).await;
        assert_eq!((s, b), (StatusCode::OK, json!({"next": next})));
    }
}
