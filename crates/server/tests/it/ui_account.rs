//! Issue 10: one account's page over HTTP (`/app/accounts/{id}`): the settings form round-trips
//! (partial update, secrets write-only and never in the HTML, the API's field errors at their
//! field), signing-secret rotation shown once, deletion with the name typed, another user's
//! account 404 like a missing one, and the runs, movements (match badge, ignore / un-ignore,
//! passthrough send) and delivery logs (dead letters, re-send) with their forms.

use reqwest::{Method, StatusCode};
use sandbox_bank::AddMovement;
use serde_json::{json, Value};

use crate::harness::*;
use crate::review::{body, header, order, Shop};
use crate::ui::{Browser, Page};
use crate::webhooks::{attempt_with_status, receiver, subscribe, webhook_fixture, Answer};

const OWNER: &str = "owner@example.com";

async fn config(app: &TestApp, token: &str, account: &str) -> Value {
    let r = app.get(&format!("/accounts/{account}/config"), token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body
}

/// The opening tag of the element with this `id`.
fn tag<'a>(page: &'a Page, id: &str) -> &'a str {
    let marker = format!("id=\"{id}\"");
    let at = page
        .body
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in {}", page.body));
    let start = page.body[..at].rfind('<').expect("tag start");
    let end = at + page.body[at..].find('>').expect("tag end");
    &page.body[start..=end]
}

/// The `li` of the row carrying `data-<kind>-id="<id>"`, up to its end.
fn row<'a>(page: &'a Page, kind: &str, id: &str) -> &'a str {
    let marker = format!("data-{kind}-id=\"{id}\"");
    let at = page
        .body
        .find(&marker)
        .unwrap_or_else(|| panic!("no {marker} in {}", page.body));
    let end = at + page.body[at..].find("</li>").expect("row end");
    &page.body[at..end]
}

#[tokio::test]
async fn the_settings_form_round_trips_with_field_errors_and_never_shows_a_secret() {
    let app = TestApp::spawn().await;
    let token = app.user(OWNER).await;
    let id = app.account(&token, "Main").await;
    let mut b = Browser::new(&app);
    let list = b.sign_in(OWNER).await;
    assert!(
        list.body.contains(&format!("href=\"/app/accounts/{id}\"")),
        "linked from the accounts list: {}",
        list.body
    );
    let path = format!("/app/accounts/{id}");
    let page = b.get(&path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    // Every field of the config has a labelled control.
    for name in [
        "login_mode",
        "session_type",
        "bank_username",
        "bank_password",
        "notification_endpoint_url",
        "notification_auth_type",
        "notification_auth_token",
        "pending_orders_endpoint",
        "polling_method",
        "polling_body",
        "auth_type",
        "auth_token",
        "retry_limit",
        "webhook_url",
        "webhook_auth_type",
        "webhook_auth_token",
        "webhook_extra_fields",
    ] {
        assert!(page.body.contains(&format!("<label for=\"f-{name}\">")), "{name}");
        assert!(tag(&page, &format!("f-{name}")).contains(&format!("name=\"{name}\"")));
    }
    for name in ["notification_events", "notify_on_expired", "silent_ingestion"] {
        assert!(page.body.contains(&format!("name=\"{name}\"")), "{name}");
    }
    assert!(page.body.contains("id=\"runs-empty\"") && page.body.contains("id=\"movements-empty\""));
    let csrf = page.csrf();
    let action = format!("{path}/config");

    let full = [
        ("csrf", csrf.as_str()),
        ("login_mode", "assisted"),
        ("session_type", "persistent"),
        ("bank_username", "ana.user-SECRET-0"),
        ("bank_password", "pw-SECRET-1"),
        ("notification_endpoint_url", "http://127.0.0.1:9/n"),
        ("notification_auth_type", "bearer"),
        ("notification_auth_token", "tok-SECRET-2"),
        ("notification_events", ""),
        ("notification_events", "login_failed"),
        ("notification_events", "poll_failed"),
        ("pending_orders_endpoint", "http://127.0.0.1:9/o"),
        ("polling_method", "POST"),
        ("polling_body", "{\"shop\": 1}"),
        ("auth_type", "api_key"),
        ("auth_token", "tok-SECRET-3"),
        ("retry_limit", "5"),
        ("webhook_url", "http://127.0.0.1:9/w"),
        ("webhook_auth_type", "bearer"),
        ("webhook_auth_token", "tok-SECRET-4"),
        ("webhook_extra_fields", "{\"tier\": 2}"),
        ("notify_on_expired", "false"),
        ("notify_on_expired", "true"),
        ("silent_ingestion", "false"),
    ];
    let r = b.post_form(&action, &full).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.header("location"), format!("{path}?done=saved"));
    let c = config(&app, &token, &id).await;
    assert_eq!(
        (
            &c["login_mode"],
            &c["session_type"],
            &c["notification_endpoint_url"],
            &c["notification_auth_type"],
            &c["notification_events"],
        ),
        (
            &json!("assisted"),
            &json!("persistent"),
            &json!("http://127.0.0.1:9/n"),
            &json!("bearer"),
            &json!(["login_failed", "poll_failed"]),
        )
    );
    assert_eq!(
        (
            &c["polling_method"],
            &c["polling_body"],
            &c["auth_type"],
            &c["retry_limit"]
        ),
        (&json!("POST"), &json!({"shop": 1}), &json!("api_key"), &json!(5))
    );
    assert_eq!(
        (
            &c["webhook_url"],
            &c["webhook_auth_type"],
            &c["webhook_extra_fields"],
            &c["notify_on_expired"],
            &c["silent_ingestion"],
        ),
        (
            &json!("http://127.0.0.1:9/w"),
            &json!("bearer"),
            &json!({"tier": 2}),
            &json!(true),
            &json!(false)
        )
    );
    assert_eq!(c["bank_username"], "ana.user-SECRET-0");
    assert_eq!(c["has_bank_password"], true);
    for t in ["notification_auth_token", "auth_token", "webhook_auth_token"] {
        assert_eq!(c[t], "********", "{t}");
    }

    // The page shows what was saved, and no secret: not the typed ones, not the signing ones.
    let page = b.get(&format!("{path}?done=saved")).await;
    assert!(page.body.contains("id=\"notice\""), "{}", page.body);
    assert!(tag(&page, "f-webhook_url").contains("value=\"http://127.0.0.1:9/w\""));
    assert!(page.body.contains("<option value=\"POST\" selected>"));
    assert!(page.body.contains("value=\"login_failed\" checked"));
    assert!(!page.body.contains("value=\"scrape_failed\" checked"));
    assert!(
        page.body.contains("value=\"true\" checked"),
        "notify_on_expired shown on"
    );
    assert!(tag(&page, "f-retry_limit").contains("value=\"5\""));
    let signing = [
        c["notification_signing_secret"].as_str().expect("secret").to_owned(),
        c["webhook_signing_secret"].as_str().expect("secret").to_owned(),
    ];
    for s in signing.iter().map(String::as_str).chain(["SECRET", "********"]) {
        assert!(!page.body.contains(s), "{s} in the page");
    }
    for name in [
        "bank_password",
        "notification_auth_token",
        "auth_token",
        "webhook_auth_token",
    ] {
        assert!(tag(&page, &format!("f-{name}")).contains("value=\"\""), "{name}");
        assert!(
            page.body.contains(&format!("name=\"clear_{name}\"")),
            "{name} can be cleared"
        );
    }

    // A partial form changes only what it carries; a blank secret keeps the stored one.
    let r = b
        .post_form(&action, &[("csrf", &csrf), ("retry_limit", "7"), ("bank_password", "")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let after = config(&app, &token, &id).await;
    assert_eq!(after["retry_limit"], 7);
    let mut expected = c.clone();
    expected["retry_limit"] = json!(7);
    assert_eq!(after, expected, "nothing else changed");
    // The clear box clears a secret.
    let r = b
        .post_form(&action, &[("csrf", &csrf), ("clear_webhook_auth_token", "on")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(config(&app, &token, &id).await["webhook_auth_token"], Value::Null);

    // Refused values: the page again (400), the API's message at the field it names, what was
    // typed kept (but never a secret), and nothing saved.
    for (name, value, words) in [
        ("retry_limit", "11", "from 0 to 10"),
        ("retry_limit", "many", "whole number"),
        ("webhook_extra_fields", "{\"amount\": 1}", "may not set"),
        ("webhook_extra_fields", "[1]", "JSON object"),
        (
            "notification_endpoint_url",
            "ftp://127.0.0.1/x",
            "notification_endpoint_url",
        ),
        ("session_type", "forever", "session_type"),
        ("polling_body", "{oops", "not a valid JSON object"),
        ("auth_token", "has a space SECRET", "printable ASCII"),
    ] {
        let r = b
            .post_form(
                &action,
                &[("csrf", &csrf), (name, value), ("bank_password", "pw-SECRET-9")],
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{name}={value}: {}", r.body);
        let err = tag(&r, &format!("err-{name}"));
        assert!(err.starts_with("<span class=\"field-error\""), "{err}");
        let at = r.body.find(&format!("id=\"err-{name}\"")).expect("error");
        let text = &r.body[at..at + r.body[at..].find("</span>").expect("end")];
        assert!(text.contains(words), "{name}={value}: {text}");
        let input = tag(&r, &format!("f-{name}"));
        assert!(input.contains("aria-invalid=\"true\""), "{input}");
        assert!(
            input.contains(&format!("err-{name}")),
            "described by its error: {input}"
        );
        assert!(r.body.contains("id=\"form-error\""));
        assert!(!r.body.contains("SECRET"), "a typed secret is not echoed");
    }
    let unchanged = config(&app, &token, &id).await;
    assert_eq!(unchanged["retry_limit"], 7);
    assert_eq!(unchanged["has_bank_password"], true);
    assert_eq!(unchanged["session_type"], "persistent");

    // Polling needs the reconcile mode: refused on the page with the API's message.
    let r = b.post_form(&format!("{path}/poll"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r.body.contains("reconcile operation mode"), "{}", r.body);
    assert!(
        !page.body.contains(&format!("action=\"{path}/poll\"")),
        "no poll button outside reconcile mode"
    );

    // Without the synchronizer token, or from another origin: refused, nothing saved.
    let r = b.post_form(&action, &[("retry_limit", "2")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    b.origin = "http://evil.example".into();
    let r = b.post_form(&action, &[("csrf", &csrf), ("retry_limit", "2")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(config(&app, &token, &id).await["retry_limit"], 7);
}

#[tokio::test]
async fn rotating_a_signing_secret_shows_the_new_one_once() {
    let app = TestApp::spawn().await;
    let token = app.user(OWNER).await;
    let id = app.account(&token, "Main").await;
    let mut b = Browser::new(&app);
    let csrf = b.sign_in(OWNER).await.csrf();
    let before = config(&app, &token, &id).await;
    for (channel, field) in [
        ("notification", "notification_signing_secret"),
        ("webhook", "webhook_signing_secret"),
    ] {
        // POST/redirect/GET: the POST answers a redirect, the new secret rides a sealed
        // one-time cookie (never in clear), and the GET shows it once.
        let r = b
            .post_form(&format!("/app/accounts/{id}/rotate/{channel}"), &[("csrf", &csrf)])
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        let location = r.header("location").to_owned();
        assert_eq!(location, format!("/app/accounts/{id}?done=rotated#rotated"));
        let now = config(&app, &token, &id).await;
        let fresh = now[field].as_str().expect("secret").to_owned();
        assert_ne!(now[field], before[field], "{field} rotated");
        let cookies = r.set_cookies().join("\n");
        assert!(
            cookies.contains("rb_flash=") && cookies.contains("HttpOnly"),
            "{cookies}"
        );
        assert!(!cookies.contains(&fresh) && !cookies.contains(fresh.trim_start_matches("whsec_")));
        assert!(!r.body.contains(&fresh));
        let url = location.split('#').next().expect("path");
        let shown = b.get(url).await;
        assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
        assert!(
            tag(&shown, "new-secret").contains(&format!("value=\"{fresh}\"")),
            "{}",
            shown.body
        );
        assert_eq!(shown.header("cache-control"), "no-store");
        assert!(shown
            .set_cookies()
            .iter()
            .any(|c| c.starts_with("rb_flash=;") && c.contains("Max-Age=0")));
        // Reloading the page shows the secret no more and rotates nothing.
        let reload = b.get(url).await;
        assert_eq!(reload.status, StatusCode::OK);
        assert!(!reload.body.contains(&fresh), "shown once");
        assert!(reload.body.contains("It is shown only once"), "{}", reload.body);
        assert_eq!(
            config(&app, &token, &id).await[field],
            fresh.as_str(),
            "not rotated again"
        );
        let again = b.get(&format!("/app/accounts/{id}")).await;
        assert!(!again.body.contains(&fresh), "shown once");
    }
    let r = b
        .post_form(&format!("/app/accounts/{id}/rotate/other"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // The flash opens only for its user and its account; a forged one is ignored.
    let r = b
        .post_form(&format!("/app/accounts/{id}/rotate/webhook"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let fresh = config(&app, &token, &id).await["webhook_signing_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let flash = b.cookies.get("rb_flash").expect("flash cookie").clone();
    let second = app.account(&token, "Second").await;
    let elsewhere = b.get(&format!("/app/accounts/{second}?done=rotated")).await;
    assert_eq!(elsewhere.status, StatusCode::OK);
    assert!(!elsewhere.body.contains(&fresh) && !elsewhere.body.contains("id=\"new-secret\""));
    let other_token = app.user("other@example.com").await;
    let theirs = app.account(&other_token, "Theirs").await;
    let mut c = Browser::new(&app);
    c.sign_in("other@example.com").await;
    c.cookies.insert("rb_flash".into(), flash);
    for path in [
        format!("/app/accounts/{theirs}?done=rotated"),
        format!("/app/accounts/{id}?done=rotated"),
    ] {
        let r = c.get(&path).await;
        assert!(
            !r.body.contains(&fresh) && !r.body.contains("id=\"new-secret\""),
            "{path}"
        );
    }
    c.cookies.insert("rb_flash".into(), "not-sealed%%".into());
    let r = c.get(&format!("/app/accounts/{theirs}?done=rotated")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(!r.body.contains("id=\"new-secret\""));
    // The owner's own page still shows it, once.
    let shown = b.get(&format!("/app/accounts/{id}?done=rotated")).await;
    assert!(tag(&shown, "new-secret").contains(&fresh));
}

#[tokio::test]
async fn deleting_needs_the_typed_name_and_another_users_account_is_not_found() {
    let app = TestApp::spawn().await;
    let token = app.user(OWNER).await;
    let id = app.account(&token, "Main account").await;
    let other = app.user("other@example.com").await;
    let foreign = app.account(&other, "Theirs").await;
    let mut b = Browser::new(&app);
    let csrf = b.sign_in(OWNER).await.csrf();

    // Another user's account answers exactly as a missing one, to read and to act on.
    let missing = b.get(&format!("/app/accounts/{}", uuid::Uuid::now_v7())).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    for path in [
        format!("/app/accounts/{foreign}"),
        "/app/accounts/not-a-uuid".to_owned(),
    ] {
        let r = b.get(&path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.body, missing.body, "{path}");
    }
    let before = config(&app, &other, &foreign).await;
    let m = uuid::Uuid::now_v7();
    for (path, fields) in [
        ("config", vec![("retry_limit", "1")]),
        ("delete", vec![("confirmation_name", "Theirs")]),
        ("rotate/notification", vec![]),
        ("rotate/webhook", vec![]),
        (&format!("movements/{m}/ignore") as &str, vec![]),
        (&format!("deliveries/webhook/{m}/resend") as &str, vec![]),
        ("read", vec![]),
    ] {
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend(fields);
        let r = b.post_form(&format!("/app/accounts/{foreign}/{path}"), &form).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.body);
        assert_eq!(r.body, missing.body, "{path}");
    }
    assert_eq!(config(&app, &other, &foreign).await, before, "untouched");
    assert_eq!(
        app.get(&format!("/accounts/{foreign}"), &other).await.status,
        StatusCode::OK
    );

    // Deleting one's own: the name must be typed, exactly.
    let action = format!("/app/accounts/{id}/delete");
    for typed in ["", "Main", "main account"] {
        let r = b
            .post_form(&action, &[("csrf", &csrf), ("confirmation_name", typed)])
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{typed:?}: {}", r.body);
        assert!(tag(&r, "confirmation_name").contains("aria-invalid=\"true\""));
        assert!(r.body.contains("id=\"err-confirmation_name\""));
    }
    let r = b.post_form(&action, &[("confirmation_name", "Main account")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no token");
    assert_eq!(app.get(&format!("/accounts/{id}"), &token).await.status, StatusCode::OK);
    let r = b
        .post_form(&action, &[("csrf", &csrf), ("confirmation_name", "Main account")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.header("location"), "/app");
    app.get(&format!("/accounts/{id}"), &token)
        .await
        .assert_api_error(404, "NOT_FOUND");
    assert_eq!(
        b.get(&format!("/app/accounts/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn runs_movements_and_result_deliveries_with_their_actions() {
    let mut shop = Shop::new("ua1", "10", Vec::new()).await;
    let mut events = shop.f.app.events().await;
    let mut attempts = shop.f.app.state.webhooks.subscribe_attempts();
    shop.poll(json!([order("UA-1", "120.00", "Maria Gomez")])).await;
    shop.settle().await;
    shop.transfer("120.00", "MARIA GOMEZ", "pay");
    shop.transfer("55.00", "SOMEONE ELSE", "noise");
    shop.read_bank().await;
    events.next(&shop.account, "conciliation.matched").await;
    let got = shop.hooks.next().await;
    assert_eq!(body(&got)["status"], "matched");
    let delivered = attempt_with_status(&mut attempts, "delivered").await;
    let request = shop.request("UA-1").await["id"].as_str().expect("id").to_owned();
    let pay = shop.movement("pay").await;
    let noise = shop.movement("noise").await;

    let mut b = Browser::new(&shop.f.app);
    b.sign_in(OWNER).await;
    let path = format!("/app/accounts/{}", shop.account);
    let page = b.get(&path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let csrf = page.csrf();
    // The run that read them, with its outcome and times for the browser to localise.
    assert!(page.body.contains("data-outcome=\"succeeded\""), "{}", page.body);
    assert!(page.body.contains("<time datetime=\""));
    // The match badge links to the request; the other movement can be ignored.
    let matched = row(&page, "movement", &pay);
    assert!(matched.contains("data-match=\"matched\""), "{matched}");
    assert!(matched.contains(&format!("href=\"/app/reconciliation/{request}\"")));
    assert!(matched.contains("UA-1"));
    assert!(!matched.contains("/ignore"), "a matched movement cannot be ignored");
    let open = row(&page, "movement", &noise);
    assert!(open.contains("data-match=\"open\""), "{open}");
    assert!(open.contains(&format!("{path}/movements/{noise}/ignore")));
    assert!(
        !page.body.contains("/notify\""),
        "no passthrough send in reconcile mode"
    );
    // Poll the pending orders now (the poller itself is held off fixture accounts).
    assert!(page.body.contains(&format!("action=\"{path}/poll\"")), "{}", page.body);
    let r = b.post_form(&format!("{path}/poll"), &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.header("location"), format!("{path}?done=polled"));
    // The result delivery, delivered, with a re-send form.
    let d = row(&page, "delivery", &delivered.id.to_string());
    assert!(d.contains("data-status=\"delivered\"") && d.contains("matched"), "{d}");
    assert!(
        d.contains("<summary>Body</summary><pre>") && d.contains("UA-1"),
        "the body sent: {d}"
    );
    assert!(page.body.contains("id=\"notification-deliveries-empty\""));

    // Ignore, then un-ignore, from the page.
    let r = b
        .post_form(&format!("{path}/movements/{noise}/ignore"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.header("location").starts_with(&format!("{path}?done=ignored")));
    let page = b.get(&format!("{path}?done=ignored")).await;
    let ignored = row(&page, "movement", &noise);
    assert!(
        ignored.contains("data-match=\"ignored\"") && ignored.contains("Un-ignore"),
        "{ignored}"
    );
    let listed = shop
        .send(Method::GET, &format!("/accounts/{}/movements", shop.account), None)
        .await;
    let m = listed
        .body
        .as_array()
        .expect("array")
        .iter()
        .find(|m| m["id"] == noise.as_str())
        .cloned();
    assert!(m.expect("listed")["ignored_at"].is_string());
    let r = b
        .post_form(&format!("{path}/movements/{noise}/unignore"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = b.get(&path).await;
    assert!(row(&page, "movement", &noise).contains("data-match=\"open\""));
    // The API's refusal is shown on the page with its status.
    let r = b
        .post_form(&format!("{path}/movements/{pay}/ignore"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(tag(&r, "form-error").starts_with("<p class=\"error\""));
    assert!(r.body.contains("settled a request"), "{}", r.body);
    let r = b
        .post_form(
            &format!("{path}/movements/{}/ignore", uuid::Uuid::now_v7()),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Re-send the result delivery: the same webhook-id again.
    let r = b
        .post_form(
            &format!("{path}/deliveries/webhook/{}/resend", delivered.id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let again = shop.hooks.next().await;
    assert_eq!(header(&again, "webhook-id"), header(&got, "webhook-id"));
    // On the other channel it is not found.
    let r = b
        .post_form(
            &format!("{path}/deliveries/notification/{}/resend", delivered.id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn dead_letters_are_listed_and_sent_again_from_the_page() {
    let f = webhook_fixture(&[("RECONBANKER_WEBHOOK_MAX_ATTEMPTS", "2")]).await;
    let mut hook = receiver(vec![Answer::Status(500), Answer::Status(502)]).await;
    let id = subscribe(&f, "user_locked", "pass_locked", &hook.url, json!(["login_failed"])).await;
    let mut attempts = f.app.state.webhooks.subscribe_attempts();
    let mut events = f.app.events().await;
    f.post(&format!("/accounts/{id}/scrape")).await;
    events.next(&id, "session.stopped").await;
    let dead = attempt_with_status(&mut attempts, "dead").await;
    hook.next().await;
    hook.next().await;

    let mut b = Browser::new(&f.app);
    b.sign_in(OWNER).await;
    let path = format!("/app/accounts/{id}");
    let page = b.get(&format!("{path}?deliveries=dead")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Showing dead letters only"), "{}", page.body);
    let d = row(&page, "delivery", &dead.id.to_string());
    assert!(d.contains("data-status=\"dead\"") && d.contains("login_failed"), "{d}");
    assert!(d.contains("attempts 2") && d.contains("receiver answered 502"), "{d}");
    // The fatal block and its reason are on the page too.
    assert!(page.body.contains("id=\"blocked\""), "{}", page.body);
    let csrf = page.csrf();
    let r = b
        .post_form(
            &format!("{path}/deliveries/notification/{}/resend", dead.id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let delivered = attempt_with_status(&mut attempts, "delivered").await;
    assert_eq!(delivered.id, dead.id);
    hook.next().await;
    let page = b.get(&format!("{path}?deliveries=dead")).await;
    assert!(
        page.body.contains("id=\"notification-deliveries-empty\""),
        "{}",
        page.body
    );
    let all = b.get(&path).await;
    assert!(row(&all, "delivery", &dead.id.to_string()).contains("data-status=\"delivered\""));
}

#[tokio::test]
async fn in_passthrough_mode_a_movement_is_sent_from_the_page() {
    let f = BankFixture::with(
        &[("RECONBANKER_WEBHOOK_BACKOFF_MS", "10")],
        sandbox_bank::BankConfig::default(),
    )
    .await;
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
    let mut hook = receiver(Vec::new()).await;
    let username = "user_good+ua3";
    let id = f.account(username, "pass_good", json!({"webhook_url": hook.url})).await;
    f.bank
        .add_movement(AddMovement {
            username: username.into(),
            amount: "42.50".into(),
            currency: "UYU".into(),
            name: Some("ANA PEREZ".into()),
            description: "first read".into(),
            received_at: None,
        })
        .expect("movement");
    let mut events = f.app.events().await;
    f.post(&format!("/accounts/{id}/scrape")).await;
    events.next(&id, "scrape.succeeded").await;
    let listed = f.app.get(&format!("/accounts/{id}/movements"), &f.token).await;
    let movement = listed
        .body
        .as_array()
        .expect("array")
        .iter()
        .find(|m| m["description"] == "first read")
        .expect("read")["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let mut b = Browser::new(&f.app);
    b.sign_in(OWNER).await;
    let path = format!("/app/accounts/{id}");
    let page = b.get(&path).await;
    let action = format!("{path}/movements/{movement}/notify");
    assert!(row(&page, "movement", &movement).contains(&action), "{}", page.body);
    let r = b.post_form(&action, &[("csrf", &page.csrf())]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let got = hook.next().await;
    let sent: Value = serde_json::from_str(&got.body).expect("json");
    assert_eq!(sent["id"], movement.as_str());
    assert_eq!(sent["amount"], json!(42.5));
}

#[tokio::test]
async fn the_accounts_list_shows_the_fatal_block_and_the_last_run() {
    let f = BankFixture::new().await;
    let locked = f.account("user_locked", "pass_locked", json!({})).await;
    let fresh = f.account("user_good", "pass_good", json!({})).await;
    let mut events = f.app.events().await;
    f.post(&format!("/accounts/{locked}/scrape")).await;
    events.next(&locked, "session.stopped").await;

    let mut b = Browser::new(&f.app);
    let page = b.sign_in(OWNER).await;
    let blocked = row(&page, "account", &locked);
    assert!(
        blocked.contains("<span class=\"badge fatal\">Blocked</span> account locked"),
        "{blocked}"
    );
    assert!(blocked.contains("data-reason=\"account_locked\""), "{blocked}");
    assert!(blocked.contains("data-outcome=\"failed\""), "the last run: {blocked}");
    assert!(blocked.contains("<time datetime=\""), "{blocked}");
    let other = row(&page, "account", &fresh);
    assert!(!other.contains("Blocked"), "{other}");
    assert!(other.contains("Last run: none yet"), "{other}");
    // The page's script reads the same from its JSON, to follow changes live.
    let live = b.fetch(Method::GET, "/app/api/accounts", None, None).await;
    let live: Value = serde_json::from_str(&live.body).expect("json");
    let live = live.as_array().expect("array");
    let l = live.iter().find(|a| a["id"] == locked.as_str()).expect("listed");
    assert_eq!(l["blocked_reason"], "account_locked");
    assert_eq!(l["last_run"]["outcome"], "failed");
    assert!(l["last_run"]["at"].is_string());
    let g = live.iter().find(|a| a["id"] == fresh.as_str()).expect("listed");
    assert_eq!(g["last_run"], Value::Null);
    // The account page says it too.
    let page = b.get(&format!("/app/accounts/{locked}")).await;
    assert!(tag(&page, "blocked").starts_with("<div"));
    assert!(page.body.contains("<span class=\"badge fatal\">Blocked</span>"));
}

#[tokio::test]
async fn every_signed_in_page_shows_the_review_queue_badge() {
    let mut shop = Shop::new("ua4", "10", Vec::new()).await;
    let mut b = Browser::new(&shop.f.app);
    b.sign_in(OWNER).await;
    let pages = [
        "/app".to_owned(),
        "/app/keys".to_owned(),
        "/app/settings".to_owned(),
        "/app/reconciliation".to_owned(),
        format!("/app/accounts/{}", shop.account),
    ];
    for p in &pages {
        let page = b.get(p).await;
        assert_eq!(page.status, StatusCode::OK, "{p}");
        assert!(!page.body.contains("review-badge"), "{p}: nothing to review yet");
    }
    let mut events = shop.f.app.events().await;
    shop.poll(json!([order("UA-4", "130.00", "Maria Gomez")])).await;
    shop.settle().await;
    shop.transfer("130.00", "MARIA GOMEZ", "first");
    shop.transfer("130", "GOMEZ MARIA", "second");
    shop.read_bank().await;
    events.next(&shop.account, "conciliation.ambiguous").await;
    assert_eq!(body(&shop.hooks.next().await)["status"], "ambiguous");
    // The request's page lists its result delivery with the body sent.
    let request = shop.request("UA-4").await["id"].as_str().expect("id").to_owned();
    let detail = b.get(&format!("/app/reconciliation/{request}")).await;
    let list = tag(&detail, "deliveries");
    assert!(list.starts_with("<ul class=\"rows\""), "{list}");
    assert_eq!(detail.body.matches("data-delivery-id=").count(), 1, "{}", detail.body);
    assert!(detail.body.contains("<strong>ambiguous</strong>"), "{}", detail.body);
    assert!(detail.body.contains("UA-4"));
    for p in &pages {
        let page = b.get(p).await;
        assert!(
            page.body
                .contains(r#"<span class="badge" id="review-badge" aria-label="1 to review">1</span>"#),
            "{p}: {}",
            page.body
        );
    }
}

#[tokio::test]
async fn long_lists_page_from_the_newest() {
    let f = BankFixture::new().await;
    let username = "user_good+ua5";
    let id = f.account(username, "pass_good", json!({})).await;
    for i in 0..55 {
        f.bank
            .add_movement(AddMovement {
                username: username.into(),
                amount: format!("{}.00", 100 + i),
                currency: "UYU".into(),
                name: Some("ANA PEREZ".into()),
                description: format!("paged-{i}"),
                received_at: None,
            })
            .expect("movement");
    }
    let mut events = f.app.events().await;
    f.post(&format!("/accounts/{id}/scrape")).await;
    events.next(&id, "scrape.succeeded").await;
    let all = f
        .app
        .get(&format!("/accounts/{id}/movements?limit=500"), &f.token)
        .await;
    let ids: Vec<String> = all
        .body
        .as_array()
        .expect("array")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .collect();
    assert!(ids.len() > 55, "{}", ids.len());

    let mut b = Browser::new(&f.app);
    b.sign_in(OWNER).await;
    let path = format!("/app/accounts/{id}");
    let first = b.get(&path).await;
    assert_eq!(first.body.matches("data-movement-id=").count(), 50);
    assert!(
        first.body.contains(&format!("data-movement-id=\"{}\"", ids[0])),
        "the newest first"
    );
    assert!(!first.body.contains(&format!("data-movement-id=\"{}\"", ids[50])));
    let older = format!("href=\"{path}?movements=50#movements-h\" rel=\"next\" data-older=\"movements\"");
    assert!(first.body.contains(&older), "{}", first.body);
    assert!(!first.body.contains("data-older=\"runs\""), "one run: no older page");
    let second = b.get(&format!("{path}?movements=50")).await;
    assert_eq!(second.status, StatusCode::OK);
    assert!(second.body.contains(&format!("data-movement-id=\"{}\"", ids[50])));
    assert!(!second.body.contains(&format!("data-movement-id=\"{}\"", ids[0])));
    assert!(
        second
            .body
            .contains(&format!("href=\"{path}#movements-h\" rel=\"prev\"")),
        "{}",
        second.body
    );
    // An unreadable offset is the first page, not an error.
    for bad in ["-5", "many", "999999999999"] {
        let page = b.get(&format!("{path}?movements={bad}")).await;
        assert_eq!(page.status, StatusCode::OK, "{bad}");
        assert!(page.body.contains(&format!("data-movement-id=\"{}\"", ids[0])), "{bad}");
    }
}
