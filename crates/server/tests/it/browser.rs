//! Issue 9: the engine and `/v1` flows once more on `sandbox-js`, the JavaScript sandbox bank,
//! through the browser connector and its built-in definition (`banks/sandbox-js.toml`) in
//! headless Chromium. Skipped with a notice when no Chromium is installed, unless
//! `REQUIRE_CHROMIUM=1` (CI), where that fails.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{AccountOut, BankFixture, BankOut, MovementOut, SubmittedOut};

fn chromium_or_skip() -> bool {
    if reconbanker_browser::runtime::find_chromium().is_some() {
        return true;
    }
    assert!(
        std::env::var("REQUIRE_CHROMIUM").as_deref() != Ok("1"),
        "REQUIRE_CHROMIUM=1 but no Chromium was found (apt-get install chromium)"
    );
    eprintln!("NOTICE: no Chromium found (install Debian's `chromium`); the sandbox-js tests are SKIPPED");
    false
}

/// An account on `sandbox-js` with these bank credentials, assisted.
async fn js_account(f: &BankFixture, username: &str, password: &str) -> String {
    let banks: Vec<BankOut> = f.app.get_as("/banks", &f.token, StatusCode::OK).await;
    let bank = banks
        .into_iter()
        .find(|b| b.code == "sandbox-js")
        .expect("sandbox-js is seeded");
    assert!(
        bank.login_url.as_deref().is_some_and(|u| u.ends_with("/js/login")),
        "{:?}",
        bank.login_url
    );
    let created: AccountOut = f
        .app
        .post_as(
            "/accounts",
            &f.token,
            Some(json!({"bankId": bank.id, "name": username})),
            StatusCode::CREATED,
        )
        .await;
    let config = json!({"bank_username": username, "bank_password": password, "login_mode": "assisted"});
    let r = f
        .app
        .json(
            Method::PUT,
            &format!("/accounts/{}/config", created.id),
            Some(&f.token),
            Some(config),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    created.id
}

#[tokio::test]
async fn assisted_login_through_v1_on_the_javascript_bank() {
    if !chromium_or_skip() {
        return;
    }
    let f = BankFixture::new().await;
    let id = js_account(&f, "user_otp+js", "pass_otp").await;
    let key = f.app.key(&f.token, &["otp:write", "status:read"], None).await;
    let otp = format!("/v1/accounts/{id}/otp");
    let mut events = f.app.events().await;
    f.post(&format!("/accounts/{id}/scrape")).await;

    // The descriptor was read from the page the app rendered.
    let requested = events.next(&id, "assistance.requested").await;
    assert_eq!(
        requested.data["descriptor"],
        json!({"length": 6, "type": "numeric", "purpose": "login"})
    );
    let request_id = requested.data["requestId"].as_str().expect("id").to_owned();
    let pending = f.app.status(&id, &key).await.pending_assistance.expect("pending");
    assert_eq!((pending.id.as_str(), pending.attempts), (request_id.as_str(), 0));

    // A wrong code: typed into the page, refused by the bank, the same request asked again.
    let mut judged = f.bank.subscribe_otp();
    let r = f
        .app
        .v1(Method::POST, &otp, &key, Some(json!({"code": "000000"})))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let verdict = tokio::time::timeout(Duration::from_secs(30), judged.recv())
        .await
        .expect("the bank judged no code within 30 s")
        .expect("judged");
    assert_eq!((verdict.username.as_str(), verdict.accepted), ("user_otp+js", false));
    let again = events.next(&id, "assistance.requested").await;
    assert_eq!(
        (again.data["requestId"].as_str(), again.data["attempts"].as_u64()),
        (Some(request_id.as_str()), Some(1))
    );

    // The right code: fulfilled, the movements (JSON from the app's XHR) stored exactly.
    let r = f
        .app
        .v1(
            Method::POST,
            &otp,
            &key,
            Some(json!({"code": "123456", "request_id": request_id})),
        )
        .await;
    let submitted: SubmittedOut = r.typed(StatusCode::ACCEPTED);
    assert!(submitted.submitted);
    events.next(&id, "assistance.fulfilled").await;
    events.next(&id, "login.succeeded").await;
    let scraped = events.next(&id, "scrape.succeeded").await;
    let want = f.bank.movements_of("user_otp+js");
    assert_eq!(scraped.data["new_movements"].as_u64(), Some(want.len() as u64));
    let stored: Vec<MovementOut> = f
        .app
        .get_as(&format!("/accounts/{id}/movements"), &f.token, StatusCode::OK)
        .await;
    let mut got: Vec<(String, String, Option<String>, String)> = stored
        .iter()
        .map(|m| {
            (
                m.amount.clone(),
                m.description.clone(),
                m.name.clone(),
                m.currency.clone(),
            )
        })
        .collect();
    let mut expected: Vec<(String, String, Option<String>, String)> = want
        .iter()
        .map(|m| {
            (
                m.amount().to_owned(),
                m.description.clone(),
                m.name.clone(),
                m.currency.clone(),
            )
        })
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    assert!(f.app.status(&id, &key).await.pending_assistance.is_none());
}

#[tokio::test]
async fn a_bad_password_on_the_javascript_bank_blocks_the_account() {
    if !chromium_or_skip() {
        return;
    }
    let f = BankFixture::new().await;
    let id = js_account(&f, "user_good+jsbad", "wrong").await;
    let mut events = f.app.events().await;
    f.post(&format!("/accounts/{id}/scrape")).await;
    let failed = events.next(&id, "login.failed").await;
    assert_eq!(failed.data["reason"], "bad_credentials");
}
