//! Banks, accounts and account config (docs/product.md §4, §5).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{AccountOut, BankOut, ConfigOut, IdOut, TestApp};

#[tokio::test]
async fn banks_list_get_and_admin_create() {
    let app = TestApp::spawn().await;
    let token = app.user("admin@example.com").await;
    let banks = app.get("/banks", &token).await;
    assert_eq!(banks.status, StatusCode::OK, "{}", banks.text);
    let mut fields: Vec<&String> = banks.body[0].as_object().expect("obj").keys().collect();
    fields.sort();
    assert_eq!(fields, ["code", "id", "loginUrl", "name", "status"]);
    let banks: Vec<BankOut> = banks.typed(StatusCode::OK);
    let sandbox = &banks[0];
    assert_eq!(sandbox.code, "sandbox");
    let id = &sandbox.id;
    let got: BankOut = app.get_as(&format!("/banks/{id}"), &token, StatusCode::OK).await;
    assert_eq!(got.code, "sandbox");
    app.get(&format!("/banks/{}", uuid::Uuid::now_v7()), &token)
        .await
        .assert_api_error(404, "NOT_FOUND");
    app.get("/banks/nope", &token).await.assert_api_error(404, "NOT_FOUND");

    let new_bank = json!({"code": "mybank", "name": "My Bank", "loginUrl": "https://bank.example/login"});
    app.json(Method::POST, "/banks", Some(&token), Some(new_bank.clone()))
        .await
        .assert_api_error(403, "FORBIDDEN");
    assert!(app.state.store.grant_admin("admin@example.com").await.expect("grant"));
    let created: IdOut = app
        .post_as("/banks", &token, Some(new_bank.clone()), StatusCode::CREATED)
        .await;
    assert!(uuid::Uuid::parse_str(&created.id).is_ok(), "{created:?}");
    app.json(Method::POST, "/banks", Some(&token), Some(new_bank))
        .await
        .assert_api_error(409, "BANK_EXISTS");
    for bad in [
        json!({"name": "x"}),
        json!({"code": "UPPER", "name": "x"}),
        json!({"code": "ok", "name": "x", "loginUrl": "ftp://x"}),
    ] {
        app.json(Method::POST, "/banks", Some(&token), Some(bad))
            .await
            .assert_api_error(400, "VALIDATION_ERROR");
    }
    let banks: Vec<BankOut> = app.get_as("/banks", &token, StatusCode::OK).await;
    // sandbox, sandbox-js (issue 9) and the new one.
    assert_eq!(banks.len(), 3);
}

#[tokio::test]
async fn accounts_crud_and_tenancy() {
    let app = TestApp::spawn().await;
    let token = app.user("a@example.com").await;
    let other = app.user("b@example.com").await;
    let bank = app.sandbox_bank(&token).await;

    for body in [
        json!({}),
        json!({"bankId": bank}),
        json!({"name": "x"}),
        json!({"bankId": bank, "name": "  "}),
    ] {
        let r = app.json(Method::POST, "/accounts", Some(&token), Some(body)).await;
        let e = r.api_error(400, "VALIDATION_ERROR");
        assert_eq!(e.error, "bankId and name are required");
    }
    for bank_id in [uuid::Uuid::now_v7().to_string(), "sandbox".into()] {
        app.json(
            Method::POST,
            "/accounts",
            Some(&token),
            Some(json!({"bankId": bank_id, "name": "x"})),
        )
        .await
        .assert_api_error(400, "VALIDATION_ERROR");
    }
    let r = app
        .json(
            Method::POST,
            "/accounts",
            Some(&token),
            Some(json!({"bankId": bank, "name": "Main"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let created: AccountOut = serde_json::from_value(r.body.clone()).expect("an account");
    let id = created.id.clone();
    // The whole wire shape, `null`s included.
    assert_eq!(
        r.body,
        json!({"id": id, "bank": "sandbox", "name": "Main", "status": "active", "sessionStatus": "off", "scrapeBlockedAt": null, "scrapeBlockedReason": null})
    );
    let listed: Vec<AccountOut> = app.get_as("/accounts", &token, StatusCode::OK).await;
    assert_eq!(listed, [created]);
    assert_eq!(app.get("/accounts", &token).await.body, json!([r.body]));
    // The detail adds the instance holding the session lease (issue 11): none here.
    let mut detail = r.body.clone();
    detail["sessionOwner"] = Value::Null;
    assert_eq!(app.get(&format!("/accounts/{id}"), &token).await.body, detail);
    let theirs: Vec<AccountOut> = app.get_as("/accounts", &other, StatusCode::OK).await;
    assert!(theirs.is_empty(), "{theirs:?}");
    for path in [
        format!("/accounts/{id}"),
        format!("/accounts/{id}/config"),
        format!("/accounts/{id}/otp"),
    ] {
        let r = app.get(&path, &other).await;
        r.assert_api_error(404, "NOT_FOUND");
    }
    let e = app
        .get(&format!("/accounts/{id}"), &other)
        .await
        .api_error(404, "NOT_FOUND");
    assert_eq!(e.error, "Account not found");
    app.get("/accounts/not-a-uuid", &token)
        .await
        .assert_api_error(404, "NOT_FOUND");

    // Delete needs the current name.
    let path = format!("/accounts/{id}");
    app.json(Method::DELETE, &path, Some(&token), Some(json!({})))
        .await
        .assert_api_error(400, "VALIDATION_ERROR");
    app.json(Method::DELETE, &path, Some(&token), None)
        .await
        .assert_api_error(400, "VALIDATION_ERROR");
    app.json(
        Method::DELETE,
        &path,
        Some(&token),
        Some(json!({"confirmation_name": "main"})),
    )
    .await
    .assert_api_error(400, "VALIDATION_ERROR");
    app.json(
        Method::DELETE,
        &path,
        Some(&other),
        Some(json!({"confirmation_name": "Main"})),
    )
    .await
    .assert_api_error(404, "NOT_FOUND");
    let r = app
        .json(
            Method::DELETE,
            &path,
            Some(&token),
            Some(json!({"confirmation_name": "Main"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    app.get(&path, &token).await.assert_api_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn config_defaults_partial_update_and_masking() {
    let app = TestApp::spawn().await;
    let token = app.user("c@example.com").await;
    let id = app.account(&token, "Main").await;
    let path = format!("/accounts/{id}/config");
    let d = app.get(&path, &token).await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.text);
    let typed: ConfigOut = serde_json::from_value(d.body.clone()).expect("a config document");
    let secret = typed.notification_signing_secret;
    assert!(secret.starts_with("whsec_"));
    let result_secret = typed.webhook_signing_secret;
    assert!(result_secret.starts_with("whsec_"));
    assert_ne!(secret, result_secret, "each webhook channel has its own secret");
    let mut expected = json!({
        "session_type": "one-shot", "login_mode": "simple", "bank_username": null, "has_bank_password": false,
        "notification_endpoint_url": null, "notification_auth_type": null, "notification_auth_token": null,
        "notification_events": [], "notification_signing_secret": secret,
        "webhook_signing_secret": result_secret, "pending_orders_endpoint": null,
        "polling_method": "GET", "polling_body": null, "auth_type": null, "auth_token": null, "webhook_url": null,
        "webhook_auth_type": null, "webhook_auth_token": null, "retry_limit": 3, "notify_on_expired": false,
        "webhook_extra_fields": {}, "silent_ingestion": false
    });
    assert_eq!(d.body, expected);

    let r = app
        .json(
            Method::PUT,
            &path,
            Some(&token),
            Some(json!({
                "login_mode": "assisted", "bank_username": "user_otp", "bank_password": "hunter2-bank-pass",
                "notification_endpoint_url": "http://127.0.0.1:9/hook", "notification_auth_type": "bearer",
                "notification_auth_token": "tok-abc-123", "notification_events": ["assistance_required", "login_failed", "login_failed"],
                "webhook_extra_fields": {"shop": "eu-1"}
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    expected["login_mode"] = json!("assisted");
    expected["bank_username"] = json!("user_otp");
    expected["has_bank_password"] = json!(true);
    expected["notification_endpoint_url"] = json!("http://127.0.0.1:9/hook");
    expected["notification_auth_type"] = json!("bearer");
    expected["notification_auth_token"] = json!("********");
    expected["notification_events"] = json!(["assistance_required", "login_failed"]);
    expected["webhook_extra_fields"] = json!({"shop": "eu-1"});
    assert_eq!(r.body, expected);
    assert!(!r.text.contains("hunter2") && !r.text.contains("tok-abc"));
    assert_eq!(app.get(&path, &token).await.body, expected, "persisted");

    // Partial: absent unchanged; the mask keeps the stored token; null clears.
    let r = app
        .json(
            Method::PUT,
            &path,
            Some(&token),
            Some(json!({"session_type": "persistent", "notification_auth_token": "********", "bank_username": null})),
        )
        .await;
    expected["session_type"] = json!("persistent");
    expected["bank_username"] = Value::Null;
    assert_eq!(r.body, expected);
    let (settings, secrets) = raw_config(&app, &id).await;
    assert!(
        secrets.windows(b"hunter2".len()).all(|w| w != b"hunter2"),
        "bank password encrypted at rest"
    );
    assert!(
        secrets.windows(b"tok-abc".len()).all(|w| w != b"tok-abc"),
        "token encrypted at rest"
    );
    assert!(!settings.contains("hunter2") && !settings.contains("tok-abc"));
    // Sending the whole document back (with its masks and the signing secret) changes nothing.
    let r = app
        .json(Method::PUT, &path, Some(&token), Some(strip_read_only(&expected)))
        .await;
    assert_eq!(r.body, expected, "{}", r.text);
    let r = app
        .json(
            Method::PUT,
            &path,
            Some(&token),
            Some(json!({"notification_auth_token": null})),
        )
        .await;
    assert_eq!(r.body.get("notification_auth_token"), Some(&Value::Null), "{}", r.text);
    let cleared: ConfigOut = r.typed(StatusCode::OK);
    assert_eq!(cleared.notification_auth_token, None);
}

fn strip_read_only(doc: &Value) -> Value {
    let mut d = doc.clone();
    d.as_object_mut().expect("obj").remove("has_bank_password");
    d
}

/// Changes of the same config at the same time all take effect: two `PUT`s of different
/// fields, and a `PUT` beside a secret rotation (the secret the rotation answers is the one
/// stored, and the `PUT`'s fields stay).
#[tokio::test]
async fn concurrent_config_changes_all_take_effect() {
    let app = TestApp::spawn().await;
    let token = app.user("race@example.com").await;
    let id = app.account(&token, "Main").await;
    let path = format!("/accounts/{id}/config");
    let rotate = format!("/accounts/{id}/webhooks/rotate-secret");
    for round in 0..20u32 {
        let notify = round % 2 == 0;
        let (a, b, r) = tokio::join!(
            app.json(
                Method::PUT,
                &path,
                Some(&token),
                Some(json!({"retry_limit": round % 10 + 1}))
            ),
            app.json(
                Method::PUT,
                &path,
                Some(&token),
                Some(json!({"notify_on_expired": notify}))
            ),
            app.json(Method::POST, &rotate, Some(&token), None),
        );
        for res in [&a, &b, &r] {
            assert_eq!(res.status, StatusCode::OK, "round {round}: {}", res.text);
        }
        let stored = app.get(&path, &token).await;
        assert_eq!(
            stored.body["retry_limit"],
            json!(round % 10 + 1),
            "round {round}: {}",
            stored.text
        );
        assert_eq!(
            stored.body["notify_on_expired"],
            json!(notify),
            "round {round}: {}",
            stored.text
        );
        assert_eq!(
            stored.body["webhook_signing_secret"], r.body["webhook_signing_secret"],
            "round {round}: the rotation's answer is the stored secret"
        );
    }
}

async fn raw_config(app: &TestApp, id: &str) -> (String, Vec<u8>) {
    let user = app
        .state
        .store
        .user_by_email("c@example.com")
        .await
        .expect("db")
        .expect("user");
    let row = app
        .state
        .store
        .account_config(user.id, id.parse().expect("uuid"))
        .await
        .expect("db")
        .expect("row");
    (row.settings, row.secrets.expect("sealed"))
}

#[tokio::test]
async fn config_validation() {
    let app = TestApp::spawn_with(&[("RECONBANKER_ALLOW_PRIVATE_TARGETS", "false")]).await;
    let token = app.user("c@example.com").await;
    let id = app.account(&token, "Main").await;
    let path = format!("/accounts/{id}/config");
    for (body, field) in [
        (json!({"session_type": "forever"}), "session_type"),
        (json!({"login_mode": "manual"}), "login_mode"),
        (json!({"notification_auth_type": "basic"}), "notification_auth_type"),
        (json!({"notification_events": ["everything"]}), "notification_events[0]"),
        (json!({"polling_method": "PATCH"}), "polling_method"),
        (json!({"retry_limit": 99}), "retry_limit"),
        (json!({"retry_limit": "3"}), "retry_limit"),
        (json!({"notify_on_expired": "yes"}), "notify_on_expired"),
        (json!({"webhook_extra_fields": {"amount": 5}}), "webhook_extra_fields"),
        (json!({"webhook_extra_fields": [1]}), "webhook_extra_fields"),
        (
            json!({"notification_endpoint_url": "ftp://example.com"}),
            "notification_endpoint_url",
        ),
        (
            json!({"notification_endpoint_url": "not a url"}),
            "notification_endpoint_url",
        ),
        (json!({"webhook_url": "http://127.0.0.1/x"}), "webhook_url"),
        (json!({"webhook_url": "http://localhost:8080/x"}), "webhook_url"),
        (
            json!({"pending_orders_endpoint": "http://169.254.169.254/latest/meta-data"}),
            "pending_orders_endpoint",
        ),
        (
            json!({"notification_endpoint_url": "http://[::ffff:10.0.0.1]/"}),
            "notification_endpoint_url",
        ),
        (
            json!({"notification_endpoint_url": "https://user:pw@93.184.216.34/"}),
            "notification_endpoint_url",
        ),
        (
            json!({"notification_signing_secret": "whsec_mine"}),
            "notification_signing_secret",
        ),
        (
            json!({"webhook_signing_secret": "whsec_mine"}),
            "webhook_signing_secret",
        ),
        (
            json!({"webhook_extra_fields": {"request_id": "x"}}),
            "webhook_extra_fields",
        ),
        (
            json!({"webhook_extra_fields": {"occurred_at": "x"}}),
            "webhook_extra_fields",
        ),
        (
            json!({"webhook_extra_fields": {"movement": {}}}),
            "webhook_extra_fields",
        ),
        (json!({"auth_token": "two words"}), "auth_token"),
        (json!({"bank_password": ""}), "bank_password"),
        (json!({"surprise": true}), "surprise"),
    ] {
        let r = app.json(Method::PUT, &path, Some(&token), Some(body.clone())).await;
        let e = r.api_error(400, "VALIDATION_ERROR");
        let details = e.details.as_ref().and_then(|d| d.first()).map(|d| d.field.as_str());
        let ok = details == Some(field) || e.error.contains(field);
        assert!(ok, "{body} should name {field}: {}", r.text);
    }
    // A public IP literal passes the outbound rule without DNS.
    let r = app
        .json(
            Method::PUT,
            &path,
            Some(&token),
            Some(json!({"notification_endpoint_url": "https://93.184.216.34/hook"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn the_result_webhook_secret_rotates_on_its_own() {
    let app = TestApp::spawn().await;
    let token = app.user("r@example.com").await;
    let id = app.account(&token, "Main").await;
    let path = format!("/accounts/{id}/config");
    let before: ConfigOut = app.get(&path, &token).await.typed(StatusCode::OK);
    let r = app
        .json(
            Method::POST,
            &format!("/accounts/{id}/webhooks/rotate-secret"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let fresh = r.body["webhook_signing_secret"]
        .as_str()
        .expect("the new secret")
        .to_owned();
    assert!(fresh.starts_with("whsec_") && fresh != before.webhook_signing_secret);
    assert!(r.body.get("notification_signing_secret").is_none(), "{}", r.text);
    assert!(
        r.body["previous_valid_until"].is_string(),
        "the old secret keeps signing for a while"
    );
    let after: ConfigOut = app.get(&path, &token).await.typed(StatusCode::OK);
    assert_eq!(after.webhook_signing_secret, fresh);
    assert_eq!(
        after.notification_signing_secret, before.notification_signing_secret,
        "the notification secret is untouched"
    );
    // Sending the shown value back is harmless; the events list takes the new poll_failed.
    let r = app
        .json(
            Method::PUT,
            &path,
            Some(&token),
            Some(json!({"webhook_signing_secret": fresh, "notification_events": ["poll_failed"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["notification_events"], json!(["poll_failed"]));
    // Another user's account is not found.
    let other = app.user("o@example.com").await;
    let r = app
        .json(
            Method::POST,
            &format!("/accounts/{id}/webhooks/rotate-secret"),
            Some(&other),
            None,
        )
        .await;
    r.api_error(404, "NOT_FOUND");
}
