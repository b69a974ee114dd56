//! The External API (`/v1`): docs/product.md §7's order of checks row by row, every error code with its
//! status and shape, both key headers, scopes, account restriction, ownership, bodies, the
//! rate limit, and the broker path from a pending request to the waiting login.

use std::time::Duration;

use reconbanker_store::{CodeKind, Descriptor};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{Fixture, KeyListOut, StatusOut, SubmittedOut, TestApp};

fn status_path(account: &str) -> String {
    format!("/v1/accounts/{account}/status")
}

fn otp_path(account: &str) -> String {
    format!("/v1/accounts/{account}/otp")
}

/// `GET path` with the fixture's key and `If-None-Match: tag`.
async fn conditional_get(f: &Fixture, path: &str, tag: &str) -> crate::harness::Res {
    f.app
        .send(
            Method::GET,
            path,
            &[("x-api-key", &f.key), ("if-none-match", tag)],
            None,
        )
        .await
}

fn numeric6() -> Descriptor {
    Descriptor {
        length: 6,
        kind: CodeKind::Numeric,
        purpose: Some("login".into()),
    }
}

#[tokio::test]
async fn status_has_exactly_the_seed_shape() {
    let f = Fixture::new().await;
    let r = f.app.v1(Method::GET, &status_path(&f.account), &f.key, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.body,
        json!({"account_id": f.account, "session_running": false, "pending_assistance": null})
    );
    assert!(r.header("etag").is_some());

    let (req, _waiter) = f
        .app
        .state
        .assistance
        .open(f.account_id(), f.user_id().await, numeric6())
        .await
        .expect("open");
    let _live = f.app.state.sessions.enter(f.account_id());
    let r = f.app.v1(Method::GET, &status_path(&f.account), &f.key, None).await;
    assert_eq!(
        r.body,
        json!({
            "account_id": f.account,
            "session_running": true,
            "pending_assistance": {
                "id": req.id.to_string(),
                "type": "otp",
                "descriptor": {"length": 6, "type": "numeric", "purpose": "login"},
                "attempts": 0
            }
        })
    );
}

#[tokio::test]
async fn no_key_is_unauthorized_and_bearer_is_refused() {
    let f = Fixture::new().await;
    for (method, path) in [
        (Method::GET, status_path(&f.account)),
        (Method::POST, otp_path(&f.account)),
    ] {
        let r = f
            .app
            .send(method.clone(), &path, &[], Some(b"{\"code\":\"123456\"}".to_vec()))
            .await;
        r.assert_v1_error(401, "UNAUTHORIZED");
        for empty in [("x-api-key", "  "), ("authorization", "Api-Key   ")] {
            let r = f.app.send(method.clone(), &path, &[empty], None).await;
            r.assert_v1_error(401, "UNAUTHORIZED");
        }
        let bearer = format!("Bearer {}", f.token);
        let r = f
            .app
            .send(method.clone(), &path, &[("authorization", &bearer)], None)
            .await;
        let e = r.v1_error(401, "UNAUTHORIZED");
        assert!(e.message.contains("API key"), "{}", r.text);
        // Even a valid API key sent as a Bearer token is refused.
        let r = f
            .app
            .send(method, &path, &[("authorization", &format!("Bearer {}", f.key))], None)
            .await;
        r.assert_v1_error(401, "UNAUTHORIZED");
    }
}

#[tokio::test]
async fn malformed_unknown_revoked_and_expired_keys_are_invalid() {
    let f = Fixture::new().await;
    let path = status_path(&f.account);
    let unknown = f.app.state.keys.generate().full; // well-formed, checksum right, never stored
    let mut typo = f.key.clone();
    typo.replace_range(20..21, if &f.key[20..21] == "0" { "1" } else { "0" });
    for bad in [
        "rbk_nope",
        "garbage",
        &f.key.to_uppercase(),
        &typo,
        &unknown,
        &format!("{}x", f.key),
    ] {
        let r = f.app.v1(Method::GET, &path, bad, None).await;
        r.assert_v1_error(401, "INVALID_API_KEY");
    }

    // Expired: a key whose expiry has passed is refused even though it exists.
    let new_key = f.app.state.keys.generate();
    let user = f
        .app
        .state
        .store
        .user_by_email("owner@example.com")
        .await
        .expect("db")
        .expect("user");
    let past = reconbanker_store::now() - chrono::Duration::seconds(1);
    f.app
        .state
        .store
        .create_api_key(&reconbanker_store::ApiKeyRow {
            id: reconbanker_store::ApiKeyId::new(),
            user_id: user.id,
            name: "expired".into(),
            prefix: new_key.prefix.clone(),
            secret_hash: new_key.secret_hash.to_vec(),
            scopes: vec!["status:read".into()],
            account_ids: None,
            created_at: past - chrono::Duration::days(1),
            last_used_at: None,
            expires_at: Some(past),
            revoked_at: None,
        })
        .await
        .expect("insert");
    f.app
        .v1(Method::GET, &path, &new_key.full, None)
        .await
        .assert_v1_error(401, "INVALID_API_KEY");

    // Revoked: works (and is cached), then is refused at once after DELETE.
    assert_eq!(f.app.v1(Method::GET, &path, &f.key, None).await.status, StatusCode::OK);
    let list: KeyListOut = f.app.get_as("/me/api-keys", &f.token, StatusCode::OK).await;
    let id = list.keys[0].id.clone();
    let r = f
        .app
        .json(Method::DELETE, &format!("/me/api-keys/{id}"), Some(&f.token), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    f.app
        .v1(Method::GET, &path, &f.key, None)
        .await
        .assert_v1_error(401, "INVALID_API_KEY");
    f.app
        .v1(
            Method::POST,
            &otp_path(&f.account),
            &f.key,
            Some(json!({"code": "123456"})),
        )
        .await
        .assert_v1_error(401, "INVALID_API_KEY");
}

#[tokio::test]
async fn both_headers_work_and_authorization_wins() {
    let f = Fixture::new().await;
    let path = status_path(&f.account);
    for auth in [
        format!("Api-Key {}", f.key),
        format!("api-key {}", f.key),
        format!("API-KEY   {}  ", f.key),
    ] {
        let r = f.app.send(Method::GET, &path, &[("authorization", &auth)], None).await;
        assert_eq!(r.status, StatusCode::OK, "{auth}: {}", r.text);
    }
    let padded = format!("  {}  ", f.key);
    let r = f.app.send(Method::GET, &path, &[("x-api-key", &padded)], None).await;
    assert_eq!(r.status, StatusCode::OK, "x-api-key trimmed: {}", r.text);
    let good_auth = format!("Api-Key {}", f.key);
    let r = f
        .app
        .send(
            Method::GET,
            &path,
            &[("authorization", &good_auth), ("x-api-key", "rbk_garbage")],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "Authorization wins: {}", r.text);
    let r = f
        .app
        .send(
            Method::GET,
            &path,
            &[("authorization", "Api-Key rbk_garbage"), ("x-api-key", &f.key)],
            None,
        )
        .await;
    r.assert_v1_error(401, "INVALID_API_KEY");
}

#[tokio::test]
async fn scopes_are_enforced_per_route() {
    let f = Fixture::new().await;
    let otp_only = f.app.key(&f.token, &["otp:write"], None).await;
    let status_only = f.app.key(&f.token, &["status:read"], None).await;
    f.app
        .v1(Method::GET, &status_path(&f.account), &otp_only, None)
        .await
        .assert_v1_error(403, "FORBIDDEN");
    f.app
        .v1(
            Method::POST,
            &otp_path(&f.account),
            &status_only,
            Some(json!({"code": "123456"})),
        )
        .await
        .assert_v1_error(403, "FORBIDDEN");
    assert_eq!(
        f.app
            .v1(Method::GET, &status_path(&f.account), &status_only, None)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn order_of_checks_row_by_row() {
    let f = Fixture::new().await;
    let other_own = f.app.account(&f.token, "Second account").await;
    let restricted = f
        .app
        .key(&f.token, &["status:read", "otp:write"], Some(&[f.account.as_str()]))
        .await;
    let otp_only = f.app.key(&f.token, &["otp:write"], None).await;
    let stranger_token = f.app.user("stranger@example.com").await;
    let stranger_account = f.app.account(&stranger_token, "Theirs").await;
    let missing = uuid::Uuid::now_v7().to_string();

    // 1 before 2: a bad key is 401 even where the scope would also be missing.
    f.app
        .v1(Method::GET, &status_path("not-a-uuid"), "rbk_bad", None)
        .await
        .assert_v1_error(401, "INVALID_API_KEY");
    // 2 before 3 and 4: missing scope wins over a missing/foreign/non-UUID account.
    for acc in [missing.as_str(), "not-a-uuid", stranger_account.as_str()] {
        f.app
            .v1(Method::GET, &status_path(acc), &otp_only, None)
            .await
            .assert_v1_error(403, "FORBIDDEN");
    }
    // 3: the key's account restriction, before existence/ownership (even for a foreign or bogus id).
    for acc in [
        other_own.as_str(),
        stranger_account.as_str(),
        missing.as_str(),
        "not-a-uuid",
    ] {
        f.app
            .v1(Method::GET, &status_path(acc), &restricted, None)
            .await
            .assert_v1_error(403, "FORBIDDEN");
        f.app
            .v1(
                Method::POST,
                &otp_path(acc),
                &restricted,
                Some(json!({"code": "123456"})),
            )
            .await
            .assert_v1_error(403, "FORBIDDEN");
    }
    assert_eq!(
        f.app
            .v1(Method::GET, &status_path(&f.account), &restricted, None)
            .await
            .status,
        StatusCode::OK
    );
    // 4: missing, not a UUID, another user's → the same 404.
    let mut bodies = Vec::new();
    for acc in [missing.as_str(), "not-a-uuid", stranger_account.as_str()] {
        let r = f.app.v1(Method::GET, &status_path(acc), &f.key, None).await;
        r.assert_v1_error(404, "NOT_FOUND");
        bodies.push(r.text);
        // 4 before 5: a bad body to an account you cannot see is still 404.
        let r = f
            .app
            .send(
                Method::POST,
                &otp_path(acc),
                &[("x-api-key", &f.key)],
                Some(b"{not json".to_vec()),
            )
            .await;
        r.assert_v1_error(404, "NOT_FOUND");
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "indistinguishable: {bodies:?}");
    // 5 before 6 before 7: see the dedicated tests; here, a bad body with nothing pending is 400, not 409.
    f.app
        .v1(Method::POST, &otp_path(&f.account), &f.key, Some(json!({"code": ""})))
        .await
        .assert_v1_error(400, "VALIDATION_ERROR");
    f.app
        .v1(
            Method::POST,
            &otp_path(&f.account),
            &f.key,
            Some(json!({"code": "123456"})),
        )
        .await
        .assert_v1_error(409, "NO_PENDING_ASSISTANCE");
}

#[tokio::test]
async fn bad_bodies_are_validation_errors_and_spend_nothing() {
    let f = Fixture::new().await;
    let path = otp_path(&f.account);
    let long = "1".repeat(33);
    let raw_bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"{".to_vec(),
        b"not json".to_vec(),
        b"[]".to_vec(),
        b"\"123456\"".to_vec(),
        b"{}".to_vec(),
        br#"{"code": 123456}"#.to_vec(),
        br#"{"code": null}"#.to_vec(),
        br#"{"code": ["1"]}"#.to_vec(),
        br#"{"code": ""}"#.to_vec(),
        br#"{"code": "   "}"#.to_vec(),
        format!(r#"{{"code": "{long}"}}"#).into_bytes(),
        br#"{"code": "123456", "request_id": 5}"#.to_vec(),
        vec![0xff, 0xfe, 0x00],
    ];
    for body in &raw_bodies {
        let r = f
            .app
            .send(Method::POST, &path, &[("x-api-key", &f.key)], Some(body.clone()))
            .await;
        let e = r.v1_error(400, "VALIDATION_ERROR");
        assert!(e.details.as_ref().is_some_and(Value::is_array), "details: {}", r.text);
    }
    // With a pending 6-digit numeric request, codes that cannot match are refused before the bank.
    let (_req, _waiter) = f
        .app
        .state
        .assistance
        .open(f.account_id(), f.user_id().await, numeric6())
        .await
        .expect("open");
    for code in ["12345", "1234567", "12345a", "abcdef", "12 456"] {
        let r = f.app.v1(Method::POST, &path, &f.key, Some(json!({"code": code}))).await;
        let e = r.v1_error(400, "VALIDATION_ERROR");
        let field = e.details.as_ref().and_then(|d| d.pointer("/0/field"));
        assert_eq!(field, Some(&json!("code")), "{}", r.text);
    }
    // None of that spent the budget: five well-formed submissions still get through the limiter.
    let budget = f.app.state.assistance.otp_budget(f.account_id()).await.expect("budget");
    assert_eq!(budget.remaining, 5);
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let f = Fixture::new().await;
    let big = format!(r#"{{"code": "123456", "pad": "{}"}}"#, "x".repeat(70 * 1024));
    let r = f
        .app
        .send(
            Method::POST,
            &otp_path(&f.account),
            &[("x-api-key", &f.key)],
            Some(big.into_bytes()),
        )
        .await;
    r.assert_v1_error(413, "PAYLOAD_TOO_LARGE");
    // Exactly at the limit is not "over".
    let pad = 64 * 1024 - r#"{"code": "123456", "pad": ""}"#.len();
    let at_limit = format!(r#"{{"code": "123456", "pad": "{}"}}"#, "x".repeat(pad));
    assert_eq!(at_limit.len(), 64 * 1024);
    let r = f
        .app
        .send(
            Method::POST,
            &otp_path(&f.account),
            &[("x-api-key", &f.key)],
            Some(at_limit.into_bytes()),
        )
        .await;
    r.assert_v1_error(409, "NO_PENDING_ASSISTANCE");
}

#[tokio::test]
async fn code_reaches_the_waiting_login_then_202() {
    let f = Fixture::new().await;
    let (req, waiter) = f
        .app
        .state
        .assistance
        .open(f.account_id(), f.user_id().await, numeric6())
        .await
        .expect("open");
    let login = tokio::spawn(async move {
        tokio::time::timeout(Duration::from_secs(30), waiter.recv())
            .await
            .expect("a code within 30 s")
    });
    let r = f
        .app
        .v1(
            Method::POST,
            &otp_path(&f.account),
            &f.key,
            Some(json!({"code": " 123456 "})),
        )
        .await;
    assert!(r.header("ratelimit").is_some() && r.header("ratelimit-policy").is_some());
    let submitted: SubmittedOut = r.typed(StatusCode::ACCEPTED);
    assert_eq!(
        submitted,
        SubmittedOut {
            submitted: true,
            request_id: req.id.to_string()
        }
    );
    let code = login.await.expect("join").expect("code delivered");
    assert_eq!(code.expose(), "123456", "trimmed code, exactly");

    // While that code is being checked, nobody is waiting: a second code is refused, not queued.
    let r = f
        .app
        .v1(
            Method::POST,
            &otp_path(&f.account),
            &f.key,
            Some(json!({"code": "654321"})),
        )
        .await;
    r.assert_v1_error(409, "CODE_IN_FLIGHT");

    // Bank says wrong, another try allowed: same request, attempts + 1, waiting again.
    let rearmed = f.app.state.assistance.rearm(req.id).await.expect("rearm");
    f.app
        .state
        .assistance
        .code_rejected(req.id, f.user_id().await)
        .await
        .expect("bump")
        .expect("still pending");
    let pending = f
        .app
        .status(&f.account, &f.key)
        .await
        .pending_assistance
        .expect("pending");
    assert_eq!(pending.id, req.id.to_string());
    assert_eq!(pending.attempts, 1);
    let r = f
        .app
        .v1(
            Method::POST,
            &otp_path(&f.account),
            &f.key,
            Some(json!({"code": "111111", "request_id": req.id.to_string()})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), rearmed.recv())
            .await
            .expect("a code within 5 s")
            .expect("code")
            .expose(),
        "111111"
    );

    // Fulfilled: nothing pending any more, a later code is 409.
    f.app
        .state
        .assistance
        .close(
            req.id,
            f.user_id().await,
            reconbanker_store::AssistanceStatus::Fulfilled,
            None,
        )
        .await
        .expect("close");
    let s = f.app.status(&f.account, &f.key).await;
    assert!(s.pending_assistance.is_none(), "{s:?}");
    f.app
        .v1(
            Method::POST,
            &otp_path(&f.account),
            &f.key,
            Some(json!({"code": "123456"})),
        )
        .await
        .assert_v1_error(409, "NO_PENDING_ASSISTANCE");
}

#[tokio::test]
async fn a_code_for_an_older_request_never_reaches_a_newer_one() {
    let f = Fixture::new().await;
    let (old, _w) = f
        .app
        .state
        .assistance
        .open(f.account_id(), f.user_id().await, numeric6())
        .await
        .expect("open");
    f.app
        .state
        .assistance
        .close(
            old.id,
            f.user_id().await,
            reconbanker_store::AssistanceStatus::Cancelled,
            Some("killed"),
        )
        .await
        .expect("close");
    let (new, waiter) = f
        .app
        .state
        .assistance
        .open(f.account_id(), f.user_id().await, numeric6())
        .await
        .expect("open again");
    let r = f
        .app
        .v1(
            Method::POST,
            &otp_path(&f.account),
            &f.key,
            Some(json!({"code": "123456", "request_id": old.id.to_string()})),
        )
        .await;
    let e = r.v1_error(409, "STALE_REQUEST");
    let pending = e.details.as_ref().and_then(|d| d.get("pending_request_id"));
    assert_eq!(pending, Some(&json!(new.id.to_string())), "{}", r.text);
    let r = f
        .app
        .v1(
            Method::POST,
            &otp_path(&f.account),
            &f.key,
            Some(json!({"code": "123456", "request_id": "whatever"})),
        )
        .await;
    r.assert_v1_error(409, "STALE_REQUEST");
    // The waiter of the new request received nothing. A delivery takes the registration out
    // of the broker before the submission is answered, so after the two 409s the login must
    // still be registered; and its channel is empty (`timeout` polls the wait once before it
    // looks at its zero deadline, so a code that had arrived would be taken).
    assert!(
        f.app.state.broker.is_waiting(new.id),
        "the new request's login still waits"
    );
    let got = tokio::time::timeout(Duration::ZERO, waiter.recv()).await;
    assert!(got.is_err(), "no code reached the new request");
}

#[tokio::test]
async fn rate_limit_five_per_window_with_headers_and_stranger_cannot_spend_it() {
    let f = Fixture::new().await;
    let path = otp_path(&f.account);
    // A stranger's key cannot even see the account: 404, and no budget spent.
    let stranger = f.app.user("stranger@example.com").await;
    let stranger_key = f.app.key(&stranger, &["otp:write"], None).await;
    for _ in 0..10 {
        f.app
            .v1(Method::POST, &path, &stranger_key, Some(json!({"code": "123456"})))
            .await
            .assert_v1_error(404, "NOT_FOUND");
    }
    // Malformed submissions by the owner do not count either.
    for _ in 0..10 {
        f.app
            .v1(Method::POST, &path, &f.key, Some(json!({"code": ""})))
            .await
            .assert_v1_error(400, "VALIDATION_ERROR");
    }
    // Five well-formed submissions (nothing pending → 409 each), the dashboard sharing the budget.
    for i in 0..5 {
        let r = if i % 2 == 0 {
            f.app
                .v1(Method::POST, &path, &f.key, Some(json!({"code": "123456"})))
                .await
        } else {
            f.app
                .json(
                    Method::POST,
                    &format!("/accounts/{}/otp", f.account),
                    Some(&f.token),
                    Some(json!({"code": "123456"})),
                )
                .await
        };
        assert_eq!(r.status, StatusCode::CONFLICT, "submission {i}: {}", r.text);
    }
    let r = f
        .app
        .v1(Method::POST, &path, &f.key, Some(json!({"code": "123456"})))
        .await;
    r.assert_v1_error(429, "RATE_LIMITED");
    let retry: u64 = r.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!((1..=600).contains(&retry), "retry-after {retry}");
    assert_eq!(r.header("ratelimit-policy"), Some("\"default\";q=5;w=600"));
    assert!(
        r.header("ratelimit")
            .expect("RateLimit")
            .starts_with("\"default\";r=0;t="),
        "{:?}",
        r.header("ratelimit")
    );
    // The dashboard route sees the same exhausted budget, in its own error shape.
    let r = f
        .app
        .json(
            Method::POST,
            &format!("/accounts/{}/otp", f.account),
            Some(&f.token),
            Some(json!({"code": "123456"})),
        )
        .await;
    r.assert_api_error(429, "RATE_LIMITED");
    assert!(r.header("retry-after").is_some());
    // Another account of the same owner has its own budget.
    let second = f.app.account(&f.token, "Second").await;
    f.app
        .v1(
            Method::POST,
            &otp_path(&second),
            &f.key,
            Some(json!({"code": "123456"})),
        )
        .await
        .assert_v1_error(409, "NO_PENDING_ASSISTANCE");
}

#[tokio::test]
async fn rate_limit_window_is_configurable() {
    let app = TestApp::spawn_with(&[
        ("RECONBANKER_OTP_RATE_LIMIT", "2"),
        ("RECONBANKER_OTP_RATE_WINDOW_SECS", "60"),
    ])
    .await;
    let f = Fixture::on(app).await;
    for _ in 0..2 {
        assert_eq!(
            f.app
                .v1(Method::POST, &otp_path(&f.account), &f.key, Some(json!({"code": "1"})))
                .await
                .status,
            StatusCode::CONFLICT
        );
    }
    let r = f
        .app
        .v1(Method::POST, &otp_path(&f.account), &f.key, Some(json!({"code": "1"})))
        .await;
    r.assert_v1_error(429, "RATE_LIMITED");
    assert_eq!(r.header("ratelimit-policy"), Some("\"default\";q=2;w=60"));
}

#[tokio::test]
async fn changes_take_effect_at_once_despite_caching() {
    let f = Fixture::new().await;
    let path = status_path(&f.account);
    // Warm every cache.
    for _ in 0..3 {
        let s = f.app.status(&f.account, &f.key).await;
        assert!(s.pending_assistance.is_none(), "{s:?}");
    }
    // A new pending request shows at once.
    let (req, _w) = f
        .app
        .state
        .assistance
        .open(f.account_id(), f.user_id().await, numeric6())
        .await
        .expect("open");
    let pending = f.app.status(&f.account, &f.key).await.pending_assistance;
    assert_eq!(pending.map(|p| p.id), Some(req.id.to_string()));
    // Deleting the account: 404 at once, and its pending request is cancelled.
    let r = f
        .app
        .json(
            Method::DELETE,
            &format!("/accounts/{}", f.account),
            Some(&f.token),
            Some(json!({"confirmation_name": "Main account"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    f.app
        .v1(Method::GET, &path, &f.key, None)
        .await
        .assert_v1_error(404, "NOT_FOUND");
    assert!(!f.app.state.broker.is_waiting(req.id), "the waiting login was released");
}

#[tokio::test]
async fn last_used_at_is_kept_without_a_write_per_request() {
    let f = Fixture::new().await;
    let keys: KeyListOut = f.app.get_as("/me/api-keys", &f.token, StatusCode::OK).await;
    assert_eq!(keys.keys[0].last_used_at, None);
    let prefix = keys.keys[0].prefix.clone();
    let before = reconbanker_store::now();
    for _ in 0..20 {
        assert_eq!(
            f.app
                .v1(Method::GET, &status_path(&f.account), &f.key, None)
                .await
                .status,
            StatusCode::OK
        );
    }
    // Shown at once...
    let keys: KeyListOut = f.app.get_as("/me/api-keys", &f.token, StatusCode::OK).await;
    let shown = keys.keys[0].last_used_at.clone().expect("set");
    let shown_at = chrono::DateTime::parse_from_rfc3339(&shown).expect("rfc3339");
    assert!(shown_at >= before, "{shown} >= {before}");
    assert!(shown.ends_with('Z') && shown.len() == 24, "RFC 3339 ms Z: {shown}");
    // ...but not written to the database per request:
    let row = f
        .app
        .state
        .store
        .api_key_by_prefix(&prefix)
        .await
        .expect("db")
        .expect("row");
    assert_eq!(row.last_used_at, None, "no database write per request");
    // The periodic write-back (about once a minute) stores it.
    assert_eq!(f.app.state.keys.flush_usage().await.expect("flush"), 1);
    let row = f
        .app
        .state
        .store
        .api_key_by_prefix(&prefix)
        .await
        .expect("db")
        .expect("row");
    assert_eq!(
        row.last_used_at.map(|t| t.timestamp_millis()),
        Some(shown_at.timestamp_millis())
    );
    assert_eq!(
        f.app.state.keys.flush_usage().await.expect("flush"),
        0,
        "nothing new to write"
    );
}

#[tokio::test]
async fn last_used_at_is_written_back_at_shutdown() {
    let f = Fixture::new().await;
    assert_eq!(
        f.app
            .v1(Method::GET, &status_path(&f.account), &f.key, None)
            .await
            .status,
        StatusCode::OK
    );
    let prefix = f.key[4..12].to_owned();
    let store = f.app.state.store.clone();
    let db_url = f.app.state.config.database_url.clone();
    let _dir = f.app.shutdown().await;
    let store2 = reconbanker_store::connect(&db_url, 1).await.expect("reopen");
    let row = store2.api_key_by_prefix(&prefix).await.expect("db").expect("row");
    assert!(row.last_used_at.is_some(), "flushed on graceful shutdown");
    drop(store);
}

#[tokio::test]
async fn failed_authentications_are_rate_limited_per_client() {
    let app = TestApp::spawn_with(&[("RECONBANKER_AUTH_FAILURES_PER_MIN", "3")]).await;
    let f = Fixture::on(app).await;
    let path = status_path(&f.account);
    let bogus = f.app.state.keys.generate().full;
    for _ in 0..3 {
        f.app
            .v1(Method::GET, &path, &bogus, None)
            .await
            .assert_v1_error(401, "INVALID_API_KEY");
    }
    let r = f.app.v1(Method::GET, &path, &bogus, None).await;
    r.assert_v1_error(429, "RATE_LIMITED");
    assert!(r.header("retry-after").is_some());
}

#[tokio::test]
async fn per_key_request_rate_is_limited() {
    let app = TestApp::spawn_with(&[("RECONBANKER_V1_RATE_PER_SEC", "1"), ("RECONBANKER_V1_BURST", "3")]).await;
    let f = Fixture::on(app).await;
    let path = status_path(&f.account);
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(f.app.v1(Method::GET, &path, &f.key, None).await.status.as_u16());
        }
        v
    };
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    // Another key of the same user has its own allowance.
    let other = f.app.key(&f.token, &["status:read"], None).await;
    assert_eq!(f.app.v1(Method::GET, &path, &other, None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_in_the_v1_shape() {
    let f = Fixture::new().await;
    f.app
        .v1(Method::GET, "/v1/nope", &f.key, None)
        .await
        .assert_v1_error(404, "NOT_FOUND");
    f.app
        .v1(Method::GET, "/v1", &f.key, None)
        .await
        .assert_v1_error(404, "NOT_FOUND");
    let r = f.app.v1(Method::DELETE, &status_path(&f.account), &f.key, None).await;
    r.assert_v1_error(405, "METHOD_NOT_ALLOWED");
    assert!(r.header("allow").is_some_and(|a| a.contains("GET")), "{:?}", r.headers);
    f.app
        .v1(Method::GET, &otp_path(&f.account), &f.key, None)
        .await
        .assert_v1_error(405, "METHOD_NOT_ALLOWED");
}

#[tokio::test]
async fn api_keys_do_not_work_on_jwt_routes() {
    let f = Fixture::new().await;
    for headers in [
        vec![("authorization", format!("Api-Key {}", f.key))],
        vec![("authorization", format!("api-KEY {}", f.key))],
        vec![("x-api-key", f.key.clone())],
        vec![("authorization", format!("Bearer {}", f.key))],
    ] {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        // The scheme is case-insensitive: an API key is named as one.
        let named = !h[0].1.starts_with("Bearer");
        for path in [
            "/me",
            "/accounts",
            "/me/api-keys",
            "/banks",
            &format!("/accounts/{}/otp", f.account),
        ] {
            let r = f.app.send(Method::GET, path, &h, None).await;
            r.assert_api_error(401, "UNAUTHORIZED");
            assert_eq!(
                r.text.contains("API keys are not accepted here"),
                named,
                "{h:?} {path}: {}",
                r.text
            );
        }
    }
}

#[tokio::test]
async fn long_poll_returns_200_on_change_and_304_on_timeout() {
    let f = Fixture::new().await;
    let path = status_path(&f.account);
    let first = f.app.v1(Method::GET, &path, &f.key, None).await;
    let tag = first.header("etag").expect("etag").to_owned();
    // Plain conditional GET: 304 at once while unchanged.
    let r = conditional_get(&f, &path, &tag).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert_eq!(r.header("etag"), Some(tag.as_str()));
    // Held until the wait ends: 304 (1 s, the shortest wait).
    let started = std::time::Instant::now();
    let r = f
        .app
        .send(
            Method::GET,
            &path,
            &[("x-api-key", &f.key), ("if-none-match", &tag), ("prefer", "wait=1")],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(started.elapsed() >= Duration::from_millis(900), "held for the wait");
    assert_eq!(r.header("preference-applied"), Some("wait=1"));
    // Held until the status changes: 200 with the new status, long before the 60 s wait.
    let parked_before = f.app.state.bus.receiver_count();
    let (client, url, key, tag2) = (f.app.client.clone(), f.app.url(&path), f.key.clone(), tag.clone());
    let started = std::time::Instant::now();
    let poll = tokio::spawn(async move {
        client
            .get(url)
            .header("x-api-key", key)
            .header("if-none-match", tag2)
            .header("prefer", "wait=60")
            .send()
            .await
            .expect("poll")
    });
    // The handler subscribes to the bus, finds the status unchanged and parks (it has nothing
    // else to wait for: the status is cached). Only then does the status change.
    tokio::time::timeout(Duration::from_secs(10), async {
        while f.app.state.bus.receiver_count() == parked_before {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the long-poll did not subscribe to the bus within 10 s");
    let user = f.user_id().await;
    let (req, _waiter) = f
        .app
        .state
        .assistance
        .open(f.account_id(), user, numeric6())
        .await
        .expect("open");
    let res = tokio::time::timeout(Duration::from_secs(30), poll)
        .await
        .expect("the long-poll did not answer within 30 s of the change")
        .expect("join");
    assert_eq!(res.status(), StatusCode::OK);
    assert_ne!(
        res.headers().get("etag").and_then(|v| v.to_str().ok()),
        Some(tag.as_str())
    );
    assert_eq!(
        res.headers().get("preference-applied").and_then(|v| v.to_str().ok()),
        Some("wait=60")
    );
    let body: StatusOut = res.json().await.expect("a status");
    assert_eq!(body.pending_assistance.map(|p| p.id), Some(req.id.to_string()));
    assert!(started.elapsed() < Duration::from_secs(30));
    // A stale tag answers at once with the current status.
    let r = f
        .app
        .send(
            Method::GET,
            &path,
            &[("x-api-key", &f.key), ("if-none-match", &tag), ("prefer", "wait=60")],
            None,
        )
        .await;
    let s: StatusOut = r.typed(StatusCode::OK);
    assert_eq!(s.pending_assistance.map(|p| p.id), Some(req.id.to_string()));
}

#[tokio::test]
async fn a_foreign_authorization_scheme_leaves_x_api_key_in_charge() {
    let f = Fixture::new().await;
    let r = f
        .app
        .send(
            Method::GET,
            &status_path(&f.account),
            &[("authorization", "Basic dXNlcjpwYXNz"), ("x-api-key", &f.key)],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = f
        .app
        .send(
            Method::GET,
            &status_path(&f.account),
            &[("authorization", "Basic dXNlcjpwYXNz")],
            None,
        )
        .await;
    r.assert_v1_error(401, "UNAUTHORIZED");
}

/// Either key header sent twice is refused, whichever copy holds the valid key.
#[tokio::test]
async fn a_key_header_sent_twice_is_refused() {
    let f = Fixture::new().await;
    let path = status_path(&f.account);
    let api_key = format!("Api-Key {}", f.key);
    let junk = format!("rbk_00000000_{}", "0".repeat(64));
    let junk_auth = format!("Api-Key {junk}");
    for headers in [
        vec![("x-api-key", f.key.as_str()), ("x-api-key", junk.as_str())],
        vec![("x-api-key", junk.as_str()), ("x-api-key", f.key.as_str())],
        vec![
            ("authorization", api_key.as_str()),
            ("authorization", junk_auth.as_str()),
        ],
        vec![("authorization", api_key.as_str()), ("authorization", api_key.as_str())],
    ] {
        let mut req = f.app.client.get(f.app.url(&path));
        for (k, v) in &headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.expect("sent");
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{headers:?}");
        let body: serde_json::Value = res.json().await.expect("json");
        assert_eq!(body["error"]["code"], "UNAUTHORIZED", "{headers:?}");
    }
    let r = f.app.send(Method::GET, &path, &[("x-api-key", &f.key)], None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

/// Issue 13: raising an assistance request teaches `/v1` who owns the account, so the code that
/// answers it is authorized from memory (the database read it took before waited behind the
/// previous login's writes: 4 ms of the assist bench's 4.5 ms p50). A deletion still wins, even
/// one that lands while the request is being raised.
#[tokio::test]
async fn a_raised_request_teaches_v1_the_owner_and_a_deletion_still_wins() {
    let f = Fixture::new().await;
    let (account, user) = (f.account_id(), f.user_id().await);
    let owners = &f.app.state.accounts;
    assert_eq!(owners.cached(account), None, "nothing asked about the account yet");
    let (_req, _waiter) = f
        .app
        .state
        .assistance
        .open(account, user, numeric6())
        .await
        .expect("open");
    assert_eq!(owners.cached(account), Some(user), "the request taught the owner");
    let r = f
        .app
        .v1(
            Method::POST,
            &otp_path(&f.account),
            &f.key,
            Some(json!({"code": "123456"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);

    // A deletion between reading the generation and learning: the deletion wins.
    let seen = owners.generation();
    owners.forget(account);
    owners.learn(user, account, seen);
    assert_eq!(owners.cached(account), None, "a deletion in between wins");

    // Learnt again, then the account deleted through the API: its codes are 404 at once.
    owners.learn(user, account, owners.generation());
    let r = f
        .app
        .json(
            Method::DELETE,
            &format!("/accounts/{}", f.account),
            Some(&f.token),
            Some(json!({"confirmation_name": "Main account"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(owners.cached(account), None);
    f.app
        .v1(
            Method::POST,
            &otp_path(&f.account),
            &f.key,
            Some(json!({"code": "123456"})),
        )
        .await
        .assert_v1_error(404, "NOT_FOUND");
}

/// Issue 13: a plain status path is answered past the router (`v1::StatusShortcut`); an
/// escaped one, `HEAD`, and odd paths still go through it. Both ways answer alike.
#[tokio::test]
async fn the_status_answers_alike_whichever_way_its_path_is_written() {
    let f = Fixture::new().await;
    let plain = f.app.v1(Method::GET, &status_path(&f.account), &f.key, None).await;
    assert_eq!(plain.status, StatusCode::OK, "{}", plain.text);
    // The account id with its first character percent-escaped: the router decodes it.
    let first = f.account.as_bytes()[0];
    let escaped_path = format!("/v1/accounts/%{first:02X}{}/status", &f.account[1..]);
    let escaped = f.app.v1(Method::GET, &escaped_path, &f.key, None).await;
    assert_eq!(escaped.status, StatusCode::OK, "{}", escaped.text);
    assert_eq!(escaped.body, plain.body);
    let tag = plain.header("etag").unwrap_or_default().to_owned();
    assert!(!tag.is_empty());
    assert_eq!(escaped.header("etag"), Some(tag.as_str()));
    // Conditional requests, both ways.
    for path in [status_path(&f.account), escaped_path.clone()] {
        let r = conditional_get(&f, &path, &tag).await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{path}: {}", r.text);
    }
    // HEAD goes to the router: the same status and validator, no body.
    let head = f.app.v1(Method::HEAD, &status_path(&f.account), &f.key, None).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("etag"), Some(tag.as_str()));
    assert!(head.text.is_empty(), "{}", head.text);
    // The refusals are the same both ways: no key, a wrong key, another user's account.
    let stranger = uuid::Uuid::now_v7().to_string();
    for path in [
        status_path(&stranger),
        format!("/v1/accounts/%{:02X}{}/status", stranger.as_bytes()[0], &stranger[1..]),
    ] {
        f.app
            .v1(Method::GET, &path, &f.key, None)
            .await
            .assert_v1_error(404, "NOT_FOUND");
        f.app
            .send(Method::GET, &path, &[], None)
            .await
            .assert_v1_error(401, "UNAUTHORIZED");
        f.app
            .v1(Method::GET, &path, "rbk_00000000_00", None)
            .await
            .assert_v1_error(401, "INVALID_API_KEY");
    }
    // Paths the route does not match stay unknown.
    for path in [
        format!("/v1/accounts/{}/status/", f.account),
        "/v1/accounts//status".to_owned(),
        format!("/v1/accounts/{}/x/status", f.account),
    ] {
        f.app
            .v1(Method::GET, &path, &f.key, None)
            .await
            .assert_v1_error(404, "NOT_FOUND");
    }
}
