//! Users and dashboard auth (docs/product.md §2).

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{LoginOut, MeOut, RegisteredOut, TestApp, UserOut};

#[tokio::test]
async fn register_login_me_logout() {
    let app = TestApp::spawn().await;
    let r = app
        .json(
            Method::POST,
            "/auth/register",
            None,
            Some(json!({"email": "  Ana@Example.COM ", "password": "correct horse battery", "name": "Ana"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // Exactly `{email, id}` (the mirror denies any other field; the raw keys pin the order).
    let keys: Vec<String> = r.body.as_object().expect("obj").keys().cloned().collect();
    assert_eq!(keys, ["email", "id"]);
    let registered: RegisteredOut = r.typed(StatusCode::CREATED);
    assert_eq!(registered.email, "ana@example.com", "trimmed and lower-cased");
    let id = registered.id;

    let login: LoginOut = app
        .call(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({"email": "ANA@example.com", "password": "correct horse battery"})),
            StatusCode::OK,
        )
        .await;
    let ana = UserOut {
        id: id.clone(),
        email: "ana@example.com".into(),
        name: Some("Ana".into()),
    };
    assert_eq!(login.user, ana);
    let token = login.token;

    // `null` fields must be present on the wire, so the whole body is compared raw too.
    let me = app.get("/me", &token).await;
    assert_eq!(
        me.body,
        json!({"id": id, "email": "ana@example.com", "name": "Ana", "operation_mode": null})
    );

    let r = app
        .json(
            Method::PUT,
            "/me/operation-mode",
            Some(&token),
            Some(json!({"mode": "passthrough"})),
        )
        .await;
    assert_eq!(r.body, json!({"operation_mode": "passthrough"}));
    let me: MeOut = app.get_as("/me", &token, StatusCode::OK).await;
    assert_eq!(me.operation_mode.as_deref(), Some("passthrough"));
    app.json(
        Method::PUT,
        "/me/operation-mode",
        Some(&token),
        Some(json!({"mode": "chaos"})),
    )
    .await
    .assert_api_error(400, "VALIDATION_ERROR");

    let r = app.json(Method::POST, "/auth/logout", Some(&token), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    app.get("/me", &token).await.assert_api_error(401, "UNAUTHORIZED");
    app.json(Method::POST, "/auth/logout", Some(&token), None)
        .await
        .assert_api_error(401, "UNAUTHORIZED");
    // A fresh login still works.
    let r = app
        .json(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({"email": "ana@example.com", "password": "correct horse battery"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn registration_errors() {
    let app = TestApp::spawn().await;
    for body in [
        json!({}),
        json!({"email": "a@example.com"}),
        json!({"password": "correct horse battery"}),
        json!({"email": "", "password": ""}),
    ] {
        let r = app.json(Method::POST, "/auth/register", None, Some(body)).await;
        let e = r.api_error(400, "VALIDATION_ERROR");
        assert_eq!(e.error, "email and password required");
    }
    for email in ["nope", "a@b", "@example.com", "a b@example.com"] {
        app.json(
            Method::POST,
            "/auth/register",
            None,
            Some(json!({"email": email, "password": "correct horse battery"})),
        )
        .await
        .assert_api_error(400, "VALIDATION_ERROR");
    }
    let r = app
        .json(
            Method::POST,
            "/auth/register",
            None,
            Some(json!({"email": "a@example.com", "password": "short-pass1"})),
        )
        .await;
    r.assert_api_error(400, "VALIDATION_ERROR");
    assert!(r.text.contains("12"), "{}", r.text);
    app.json(
        Method::POST,
        "/auth/register",
        None,
        Some(json!({"email": "a@example.com", "password": 123456789012_i64})),
    )
    .await
    .assert_api_error(400, "VALIDATION_ERROR");
    app.user("dup@example.com").await;
    let r = app
        .json(
            Method::POST,
            "/auth/register",
            None,
            Some(json!({"email": "DUP@example.com", "password": "another good password"})),
        )
        .await;
    let e = r.api_error(409, "EMAIL_EXISTS");
    assert_eq!(e.error, "Email already exists");
}

#[tokio::test]
async fn unknown_email_and_wrong_password_answer_the_same() {
    let app = TestApp::spawn().await;
    app.user("real@example.com").await;
    let wrong = app
        .json(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({"email": "real@example.com", "password": "not the password"})),
        )
        .await;
    let unknown = app
        .json(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({"email": "ghost@example.com", "password": "not the password"})),
        )
        .await;
    let e = wrong.api_error(401, "UNAUTHORIZED");
    assert_eq!(wrong.status, unknown.status);
    assert_eq!(wrong.text, unknown.text);
    assert_eq!(e.error, "Invalid credentials");
    app.json(
        Method::POST,
        "/auth/login",
        None,
        Some(json!({"email": "real@example.com"})),
    )
    .await
    .assert_api_error(400, "VALIDATION_ERROR");
}

#[tokio::test]
async fn repeated_login_failures_are_429() {
    let app = TestApp::spawn_with(&[("RECONBANKER_LOGIN_FAILURES", "3")]).await;
    app.user("real@example.com").await;
    for _ in 0..3 {
        app.json(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({"email": "real@example.com", "password": "wrong password!"})),
        )
        .await
        .assert_api_error(401, "UNAUTHORIZED");
    }
    // Even the right password is refused while the client is blocked.
    let r = app
        .json(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({"email": "real@example.com", "password": "correct horse battery"})),
        )
        .await;
    r.assert_api_error(429, "RATE_LIMITED");
    let retry: u64 = r.header("retry-after").expect("Retry-After").parse().expect("secs");
    assert!((1..=900).contains(&retry));
}

#[tokio::test]
async fn tokens_are_checked() {
    let app = TestApp::spawn().await;
    let token = app.user("t@example.com").await;
    for bad in [
        "",
        "Bearer",
        "Bearer x.y.z",
        &format!("Bearer {token}x"),
        &format!("Basic {token}"),
        &token,
    ] {
        let r = app.send(Method::GET, "/me", &[("authorization", bad)], None).await;
        r.assert_api_error(401, "UNAUTHORIZED");
    }
    // A token signed with another secret.
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": uuid::Uuid::now_v7(), "jti": uuid::Uuid::now_v7(), "iat": 0, "exp": 4_000_000_000_i64, "scope": "access"}),
        &jsonwebtoken::EncodingKey::from_secret(b"some-other-secret-some-other-secret"),
    )
    .expect("encode");
    app.send(
        Method::GET,
        "/me",
        &[("authorization", &format!("Bearer {forged}"))],
        None,
    )
    .await
    .assert_api_error(401, "UNAUTHORIZED");
    assert_eq!(
        app.send(
            Method::GET,
            "/me",
            &[("authorization", &format!("bearer {token}"))],
            None
        )
        .await
        .status,
        StatusCode::OK
    );
    let _: MeOut = app.get_as("/me", &token, StatusCode::OK).await;
}
