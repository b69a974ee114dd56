//! Issue 12: the main flows run against a real `reconbanker serve` logging at `RUST_LOG=trace`,
//! then its whole output (stdout and stderr) is searched for every secret the test created or the
//! server generated: passwords (right and wrong), the session token, the API key (and a forged
//! one), the realtime ticket, the bank username and password, the OTP code, the notification
//! token and signing secrets, the master key and the JWT secret.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::process::Site;
use crate::webhooks::{receiver, verifies};

#[tokio::test]
async fn no_secret_reaches_the_log_at_trace_level() {
    let site = Site::new().await;
    let mut hook = receiver(vec![]).await;
    let server = site.serve(&[("RUST_LOG", "trace")]).await;

    let email = "leak-owner-7c1e@example.com";
    let password = "Pw-leakcheck-5e1f9a7c-secret";
    let wrong_password = "Wrong-pw-9b3d7e1c-attempt";
    let token = server.user(email, password).await;
    let r = server
        .call(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({ "email": email, "password": wrong_password })),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);

    let bank_username = "user_alnum+lk4e8d2b";
    let bank_password = "pass_alnum";
    let hook_token = "Hook-token-3c7a9e51f2d8";
    let account = server
        .account(
            &token,
            "Leak check",
            json!({
                "login_mode": "assisted",
                "bank_username": bank_username,
                "bank_password": bank_password,
                "notification_endpoint_url": hook.url,
                "notification_events": ["assistance_required"],
                "notification_auth_type": "bearer",
                "notification_auth_token": hook_token,
            }),
        )
        .await;
    let config = server
        .dash(Method::GET, &format!("/accounts/{account}/config"), &token, None)
        .await;
    assert_eq!(config.status, StatusCode::OK);
    let signing_secret = config.body["notification_signing_secret"]
        .as_str()
        .expect("signing secret")
        .to_owned();
    let result_secret = config.body["webhook_signing_secret"]
        .as_str()
        .expect("result signing secret")
        .to_owned();

    let key = server.key(&token, &["status:read", "otp:write"], &[&account]).await;
    let forged = format!("rbk_0badf00d_{}", "ab".repeat(32));
    let r = server
        .call(
            Method::GET,
            &format!("/v1/accounts/{account}/status"),
            Some(("x-api-key", &forged)),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let ticket = server.dash(Method::POST, "/realtime/ticket", &token, None).await;
    assert!(ticket.status.is_success(), "{}", ticket.body);
    let ticket = ticket.body["ticket"].as_str().expect("ticket").to_owned();
    let stream = server
        .client
        .get(server.url(&format!("/realtime/events?ticket={ticket}")))
        .send()
        .await
        .expect("redeem the ticket");
    assert_eq!(stream.status(), StatusCode::OK);
    drop(stream);

    // The assisted login: the bank asks for a code, the relay answers it with /v1.
    let mut events = server.events(&key, None).await;
    let r = server
        .dash(Method::POST, &format!("/accounts/{account}/scrape"), &token, None)
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let asked = events.next("assistance.requested").await;
    let request_id = asked.data["data"]["requestId"].as_str().expect("requestId").to_owned();
    let notified = hook.next().await;
    assert!(
        verifies(&signing_secret, &notified.headers, &notified.body),
        "the notification is signed with the account's secret"
    );
    let code = "AB12CD34";
    let api_key = format!("Api-Key {key}");
    let r = server
        .call(
            Method::POST,
            &format!("/v1/accounts/{account}/otp"),
            Some(("authorization", &api_key)),
            Some(json!({ "code": code, "request_id": request_id })),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    events.next("login.succeeded").await;
    let r = server.dash(Method::POST, "/auth/logout", &token, None).await;
    assert!(r.status.is_success(), "{}", r.body);

    let master_key = std::fs::read_to_string(site.data_dir().join("master.key")).expect("master key");
    let jwt_secret = std::fs::read_to_string(site.data_dir().join("jwt_secret")).expect("jwt secret");
    let log = server.kill9();
    // The log is the trace log of these flows (so the search below can find something).
    assert!(log.contains("TRACE"), "logging at trace level:\n{log}");
    assert!(log.contains(&account), "the flows are in the log");

    let key_secret = key.rsplit('_').next().expect("key secret").to_owned();
    let token_signature = token.rsplit('.').next().expect("jwt signature").to_owned();
    let secrets: Vec<(&str, &str)> = vec![
        ("password", password),
        ("wrong password", wrong_password),
        ("session token", &token),
        ("session token signature", &token_signature),
        ("API key", &key),
        ("API key secret", &key_secret),
        ("forged API key", &forged),
        ("realtime ticket", &ticket),
        ("bank username", bank_username),
        ("bank username tag", "lk4e8d2b"),
        ("bank password", bank_password),
        ("OTP code", code),
        ("notification token", hook_token),
        ("notification signing secret", &signing_secret),
        ("result signing secret", &result_secret),
        ("master key", master_key.trim()),
        ("JWT secret", jwt_secret.trim()),
    ];
    let leaked: Vec<&str> = secrets
        .iter()
        .filter(|(_, s)| log.contains(s))
        .map(|(name, _)| *name)
        .collect();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| secrets.iter().any(|(_, s)| l.contains(s)))
        .take(5)
        .collect();
    assert!(
        leaked.is_empty(),
        "secrets in the trace log: {leaked:?}, e.g. {lines:#?}"
    );
}
