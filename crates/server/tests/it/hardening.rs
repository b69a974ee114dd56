//! Issue 12 — what a hostile client found: control characters, unreadable path parameters,
//! unknown fields, values echoed in errors, and the `/v1` schema saying what the server does.
//! Each test runs on the backend the harness picked (SQLite, or PostgreSQL in the second run).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{Fixture, Res};

/// A 400 `VALIDATION_ERROR` in the dashboard shape whose only detail names `field`.
#[track_caller]
fn assert_field_error(r: &Res, field: &str) {
    r.assert_api_error(400, "VALIDATION_ERROR");
    assert_eq!(r.body["details"][0]["field"], field, "{}", r.text);
}

/// A password is a secret, not a free-text name: whatever characters it holds (a tab, even a
/// NUL) are hashed, never stored as text, so they register and log in on both backends.
#[tokio::test]
async fn passwords_may_hold_control_characters() {
    let f = Fixture::new().await;
    let creds = json!({"email": "tabs@example.com", "password": "tab\there and nul\u{0} too"});
    let r = f
        .app
        .json(Method::POST, "/auth/register", None, Some(creds.clone()))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = f.app.json(Method::POST, "/auth/login", None, Some(creds)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let wrong = json!({"email": "tabs@example.com", "password": "tab\there and nul too"});
    let r = f.app.json(Method::POST, "/auth/login", None, Some(wrong)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
}

/// Finding 3: a NUL (or any control character) in a free-text input is a 400 naming the field on
/// both backends — PostgreSQL `text` refuses NUL (it was a 500), SQLite stored it.
/// The same rule for a free-text query filter: a NUL in `external_id` was a 500 on PostgreSQL
/// (found by the fuzz stage).
#[tokio::test]
async fn control_characters_in_a_query_filter_are_refused_naming_the_field() {
    let f = Fixture::new().await;
    for bad in ["%00", "a%0Ab", "%C2%85"] {
        let r = f
            .app
            .json(
                Method::GET,
                &format!("/conciliation?external_id={bad}"),
                Some(&f.token),
                None,
            )
            .await;
        assert_field_error(&r, "external_id");
    }
    let r = f
        .app
        .json(Method::GET, "/conciliation?external_id=order-7", Some(&f.token), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn control_characters_in_free_text_are_refused_naming_the_field() {
    let f = Fixture::new().await;
    let app = &f.app;
    assert!(app.state.store.grant_admin("owner@example.com").await.expect("grant"));
    let bank = app.sandbox_bank(&f.token).await;
    for bad in ["nul\u{0}name", "bell\u{7}", "line\nbreak", "del\u{7f}", "c1\u{85}"] {
        let r = app
            .json(
                Method::POST,
                "/auth/register",
                None,
                Some(json!({"email": "nul@example.com", "password": "correct horse battery", "name": bad})),
            )
            .await;
        assert_field_error(&r, "name");
        let r = app
            .json(
                Method::POST,
                "/accounts",
                Some(&f.token),
                Some(json!({"bankId": bank, "name": bad})),
            )
            .await;
        assert_field_error(&r, "name");
        let r = app
            .json(
                Method::POST,
                "/me/api-keys",
                Some(&f.token),
                Some(json!({"name": bad, "scopes": ["status:read"]})),
            )
            .await;
        assert_field_error(&r, "name");
        let r = app
            .json(
                Method::POST,
                "/banks",
                Some(&f.token),
                Some(json!({"code": "nulbank", "name": bad})),
            )
            .await;
        assert_field_error(&r, "name");
        let r = app
            .json(
                Method::PUT,
                &format!("/accounts/{}/config", f.account),
                Some(&f.token),
                Some(json!({"bank_username": bad})),
            )
            .await;
        assert_field_error(&r, "bank_username");
        let r = app
            .json(
                Method::POST,
                "/me/api-keys",
                Some(&f.token),
                Some(json!({"name": "ok", "scopes": ["status:read", bad]})),
            )
            .await;
        assert_field_error(&r, "scopes[1]");
        let r = app
            .v1(
                Method::POST,
                &format!("/v1/accounts/{}/otp", f.account),
                &f.key,
                Some(json!({"code": format!("12{bad}")})),
            )
            .await;
        r.assert_v1_error(400, "VALIDATION_ERROR");
        assert_eq!(r.body["error"]["details"][0]["field"], "code", "{}", r.text);
    }
    // Nothing was stored: the user list of names is still clean (no second user, no extra key).
    let keys: Value = app.get("/me/api-keys", &f.token).await.body;
    assert_eq!(keys["keys"].as_array().map(Vec::len), Some(1), "{keys}");
    let r = app
        .json(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({"email": "nul@example.com", "password": "correct horse battery"})),
        )
        .await;
    r.assert_api_error(401, "UNAUTHORIZED");
}

/// Finding 4: a dashboard path parameter that is not UTF-8 once decoded is the dashboard's JSON
/// 404, on every route with a parameter; so is a 60 KB path.
#[tokio::test]
async fn unreadable_dashboard_path_parameters_are_json_404() {
    let f = Fixture::new().await;
    let a = &f.account;
    let bad = "%FF%FE";
    let routes: Vec<(Method, String)> = vec![
        (Method::GET, format!("/banks/{bad}")),
        (Method::DELETE, format!("/me/api-keys/{bad}")),
        (Method::GET, format!("/accounts/{bad}")),
        (Method::GET, format!("/accounts/{bad}/config")),
        (Method::POST, format!("/conciliation/poll/{bad}")),
        (Method::GET, format!("/conciliation/{bad}")),
        (Method::POST, format!("/conciliation/{bad}/resolve")),
        (Method::POST, format!("/conciliation/{bad}/run")),
        (Method::POST, format!("/conciliation/{bad}/notify")),
        (Method::POST, format!("/accounts/{a}/movements/{bad}/notify")),
        (Method::POST, format!("/accounts/{a}/movements/{bad}/ignore")),
        (Method::DELETE, format!("/accounts/{a}/movements/{bad}/ignore")),
        (Method::POST, format!("/accounts/{a}/webhooks/deliveries/{bad}/resend")),
        (Method::POST, format!("/accounts/{a}/notifications/{bad}/resend")),
    ];
    for (method, path) in routes {
        let r = f
            .app
            .json(
                method.clone(),
                &path,
                Some(&f.token),
                Some(json!({"movement_id": null})),
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {path}: {}", r.text);
        r.assert_api_error(404, "NOT_FOUND");
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{method} {path}"
        );
    }
    // A 60 KB path (too long for the client library's URI type: sent raw) reaches the router and
    // is a JSON 404. Past 64 KB, hyper answers 414 itself, before any layer of ours: a transport
    // error the server cannot shape (README, "Transport errors").
    let head = format!("GET /accounts/{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(100 * 1024));
    let res = raw(f.app.addr, &head, b"").await;
    assert!(res.starts_with("http/1.1 414"), "{}", &res[..res.len().min(300)]);
    for long in [
        format!("/accounts/{}", "a".repeat(60 * 1024)),
        format!("/banks/{}", "b".repeat(60 * 1024)),
        format!("/nowhere/{}", "c".repeat(60 * 1024)),
    ] {
        let head = format!(
            "GET {long} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
            f.token
        );
        let res = raw(f.app.addr, &head, b"").await;
        assert!(res.starts_with("http/1.1 404"), "{}", &res[..res.len().min(300)]);
        assert!(
            res.contains("content-type: application/json"),
            "{}",
            &res[..res.len().min(300)]
        );
    }
}

/// Every dashboard route that changes something, read from the route table: the ones that take a
/// body are listed with a valid body and must refuse an unknown field naming it; the rest take
/// none. A new route must be added to one of the two lists, so none is forgotten.
#[tokio::test]
async fn every_dashboard_body_refuses_unknown_fields() {
    let f = Fixture::new().await;
    let a = &f.account;
    let uuid = uuid::Uuid::now_v7();
    let with_body: Vec<(&str, &str, String, Value)> = vec![
        (
            "POST",
            "/auth/register",
            "/auth/register".into(),
            json!({"email": "x@example.com", "password": "correct horse battery"}),
        ),
        (
            "POST",
            "/auth/login",
            "/auth/login".into(),
            json!({"email": "owner@example.com", "password": "correct horse battery"}),
        ),
        (
            "PUT",
            "/me/operation-mode",
            "/me/operation-mode".into(),
            json!({"mode": "reconcile"}),
        ),
        (
            "POST",
            "/me/api-keys",
            "/me/api-keys".into(),
            json!({"name": "k", "scopes": ["status:read"]}),
        ),
        ("POST", "/banks", "/banks".into(), json!({"code": "zz", "name": "Z"})),
        (
            "POST",
            "/accounts",
            "/accounts".into(),
            json!({"bankId": uuid.to_string(), "name": "n"}),
        ),
        (
            "DELETE",
            "/accounts/{id}",
            format!("/accounts/{a}"),
            json!({"confirmation_name": "Main account"}),
        ),
        (
            "PUT",
            "/accounts/{id}/config",
            format!("/accounts/{a}/config"),
            json!({}),
        ),
        (
            "POST",
            "/accounts/{id}/otp",
            format!("/accounts/{a}/otp"),
            json!({"code": "123456"}),
        ),
        (
            "POST",
            "/conciliation/{id}/resolve",
            format!("/conciliation/{uuid}/resolve"),
            json!({"movement_id": null}),
        ),
        // Issue 10: two-factor sign-in.
        (
            "POST",
            "/me/two-factor/confirm",
            "/me/two-factor/confirm".into(),
            json!({"code": "123456"}),
        ),
        (
            "POST",
            "/me/two-factor/disable",
            "/me/two-factor/disable".into(),
            json!({"code": "123456"}),
        ),
    ];
    for (method, route, path, body) in &with_body {
        let mut body = body.clone();
        body["unexpectedField"] = json!(1);
        let r = f
            .app
            .json(method.parse().expect("method"), path, Some(&f.token), Some(body))
            .await;
        if *route == "/conciliation/{id}/resolve" {
            // Its request is judged before its body (docs/reconciliation.md §8), and this one
            // names none; review.rs checks the unknown field on a real request.
            r.assert_api_error(404, "NOT_FOUND");
            continue;
        }
        assert_field_error(&r, "unexpectedField");
    }
    // A key sent twice is refused naming it (a JSON map would keep the last one silently).
    let auth = format!("Bearer {}", f.token);
    for (method, _, path, body) in &with_body {
        let (key, value) = match body.as_object().and_then(|o| o.iter().next()) {
            Some((k, v)) => (k.clone(), v.clone()),
            None => ("retry_limit".to_owned(), json!(3)),
        };
        let inner = body.to_string();
        let inner = inner.trim_start_matches('{').trim_end_matches('}');
        let sep = if inner.is_empty() { "" } else { "," };
        let text = format!("{{{}:{value},{inner}{sep}{}:{value}}}", json!(key), json!(key));
        let r = f
            .app
            .send(
                method.parse().expect("method"),
                path,
                &[("authorization", &auth), ("content-type", "application/json")],
                Some(text.clone().into_bytes()),
            )
            .await;
        assert_field_error(&r, &key);
        assert_eq!(
            r.body["details"][0]["message"],
            format!("duplicate field `{key}`"),
            "{text}: {}",
            r.text
        );
    }
    let without_body = [
        "POST /auth/logout",
        "DELETE /me/api-keys/{id}",
        "POST /accounts/{id}/scrape",
        "POST /accounts/{id}/restart",
        "POST /accounts/{id}/kill",
        "POST /accounts/{id}/reactivate",
        "POST /accounts/{id}/movements/{movement_id}/notify",
        "POST /accounts/{id}/notifications/rotate-secret",
        "POST /accounts/{id}/webhooks/rotate-secret",
        "POST /conciliation/poll/{id}",
        "POST /conciliation/{id}/run",
        "POST /conciliation/{id}/notify",
        "POST /accounts/{id}/movements/{movement_id}/ignore",
        "DELETE /accounts/{id}/movements/{movement_id}/ignore",
        "POST /accounts/{id}/webhooks/deliveries/{delivery_id}/resend",
        "POST /accounts/{id}/notifications/{delivery_id}/resend",
        "POST /realtime/ticket",
        // Issue 10: two-factor sign-in.
        "POST /me/two-factor/setup",
    ];
    // A route without a body takes none (or `{}`): a field, something not JSON, or too much is
    // refused like any other body, before the route acts (a refused logout keeps its token).
    let big = vec![b' '; 70_000];
    for route in &without_body {
        let (method, template) = route.split_once(' ').expect("METHOD /path");
        let owned = template.starts_with("/accounts/") || template.starts_with("/conciliation/poll/");
        let id = if owned { a.to_string() } else { uuid.to_string() };
        let path = template
            .replace("{id}", &id)
            .replace("{movement_id}", &uuid.to_string())
            .replace("{delivery_id}", &uuid.to_string());
        let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
        let send = |body: Vec<u8>| f.app.send(method.parse().expect("method"), &path, &headers, Some(body));
        let r = send(br#"{"zzz":1}"#.to_vec()).await;
        assert_field_error(&r, "zzz");
        let r = send(b"garbage".to_vec()).await;
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("VALIDATION_ERROR")),
            "{route}: {}",
            r.text
        );
        let r = send(big.clone()).await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{route}: {}", r.text);
    }
    let listed: Vec<String> = with_body
        .iter()
        .map(|(m, route, _, _)| format!("{m} {route}"))
        .chain(without_body.iter().map(|s| s.to_string()))
        .collect();
    for route in writing_routes() {
        assert!(
            listed.contains(&route),
            "{route} is in the route table but in neither list of this test"
        );
    }
}

/// A key sent twice, at any depth, is refused naming it: on a resolve, where the last of two
/// `movement_id`s would have settled the request with a movement the client may not have meant
/// (nothing changes), in a config's free-form `webhook_extra_fields`, and on `/v1`.
#[tokio::test]
async fn a_key_sent_twice_is_refused_wherever_it_is() {
    let f = Fixture::new().await;
    let a = &f.account;
    let auth = format!("Bearer {}", f.token);
    let send = |method: Method, path: String, text: &'static str| {
        let auth = auth.clone();
        let app = &f.app;
        async move {
            app.send(
                method,
                &path,
                &[("authorization", &auth), ("content-type", "application/json")],
                Some(text.as_bytes().to_vec()),
            )
            .await
        }
    };
    let uuid = uuid::Uuid::now_v7();
    let r = send(
        Method::POST,
        format!("/conciliation/{uuid}/resolve"),
        r#"{"movement_id":null,"movement_id":"01a23450-0e27-7762-91e3-8ffc746464be"}"#,
    )
    .await;
    assert_field_error(&r, "movement_id");
    let path = format!("/accounts/{a}/config");
    let r = send(
        Method::PUT,
        path.clone(),
        r#"{"webhook_extra_fields":{"shop":"a","shop":"b"}}"#,
    )
    .await;
    assert_field_error(&r, "webhook_extra_fields.shop");
    let r = send(
        Method::PUT,
        path.clone(),
        r#"{"webhook_extra_fields":{"list":[{"k":1,"\u006b":2}]}}"#,
    )
    .await;
    assert_field_error(&r, "webhook_extra_fields.list[0].k");
    let stored = f.app.get(&path, &f.token).await;
    assert_eq!(stored.body["webhook_extra_fields"], json!({}), "nothing was stored");
    // Distinct keys, and the same key in two objects, are fine.
    let r = send(
        Method::PUT,
        path,
        r#"{"webhook_extra_fields":{"a":{"k":1},"b":{"k":2}}}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // /v1 answers in its own error shape.
    let key = f.app.key(&f.token, &["otp:write"], None).await;
    let r = f
        .app
        .send(
            Method::POST,
            &format!("/v1/accounts/{a}/otp"),
            &[("x-api-key", &key), ("content-type", "application/json")],
            Some(br#"{"code":"123456","code":"654321"}"#.to_vec()),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.text.contains("duplicate field `code`"), "{}", r.text);
}

/// `METHOD /path` of every dashboard route with POST, PUT or DELETE, read from `http/mod.rs`.
fn writing_routes() -> Vec<String> {
    let src = include_str!("../../src/http/mod.rs");
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + ".route(".len()..];
        let Some(start) = rest.find('"') else { break };
        let after = &rest[start + 1..];
        let Some(end) = after.find('"') else { break };
        let path = &after[..end];
        // The handlers of this route: up to the closing `)` of `.route(`.
        let mut depth = 1;
        let mut stop = 0;
        for (j, c) in rest.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        stop = j;
                        break;
                    }
                }
                _ => {}
            }
        }
        let handlers = &rest[..stop];
        if path.starts_with("/v1") {
            continue;
        }
        for (needle, method) in [("post(", "POST"), ("put(", "PUT"), ("delete(", "DELETE")] {
            if handlers
                .match_indices(needle)
                .any(|(k, _)| k == 0 || !handlers.as_bytes()[k - 1].is_ascii_alphanumeric())
            {
                out.push(format!("{method} {path}"));
            }
        }
    }
    assert!(out.len() > 20, "the route table was read: {out:?}");
    out
}

/// Valid JSON of the wrong shape is never called invalid JSON: a choice given a number, a list
/// of choices given a number, a number past what a float holds (RFC 8259 sets no range) — each
/// names its field. Only a body that does not parse is "not valid JSON".
#[tokio::test]
async fn valid_json_of_the_wrong_type_names_its_field() {
    let f = Fixture::new().await;
    let auth = format!("Bearer {}", f.token);
    let path = format!("/accounts/{}/config", f.account);
    let headers = [("authorization", auth.as_str())];
    let put = |body: &'static str| f.app.send(Method::PUT, &path, &headers, Some(body.into()));
    for (body, field, message) in [
        (r#"{"session_type": 1}"#, "session_type", "has the wrong type"),
        (
            r#"{"notification_events": [1]}"#,
            "notification_events[0]",
            "has the wrong type",
        ),
        (r#"{"retry_limit": 1e400}"#, "retry_limit", "is a number out of range"),
        (
            r#"{"polling_body": {"min": -1e400}}"#,
            "polling_body.min",
            "is a number out of range",
        ),
        (
            r#"{"retry_limit": 99999999999}"#,
            "retry_limit",
            "expected a whole number from 0 to 4294967295",
        ),
    ] {
        let r = put(body).await;
        assert_field_error(&r, field);
        assert_eq!(r.body["details"][0]["message"], message, "{body}: {}", r.text);
    }
    // A required field left out is named too (it was `field: null`).
    let r = f
        .app
        .json(
            Method::POST,
            &format!("/accounts/{}/otp", f.account),
            Some(&f.token),
            Some(json!({})),
        )
        .await;
    assert_field_error(&r, "code");
    assert_eq!(r.body["details"][0]["message"], "is required", "{}", r.text);
    let r = f
        .app
        .v1(
            Method::POST,
            &format!("/v1/accounts/{}/otp", f.account),
            &f.key,
            Some(json!({"request_id": "x"})),
        )
        .await;
    r.assert_v1_error(400, "VALIDATION_ERROR");
    assert_eq!(r.body["error"]["details"][0]["field"], "code", "{}", r.text);
    for body in [r#"{"retry_limit": }"#, r#"{"retry_limit": 1"#, r#"{"a": 1} x"#] {
        let r = put(body).await;
        r.assert_api_error(400, "VALIDATION_ERROR");
        assert_eq!(r.body["error"], "Request body is not valid JSON", "{body}: {}", r.text);
    }
}

/// Finding 7: a secret sent with the wrong JSON type is never quoted back; the message names the
/// field and the expected type.
#[tokio::test]
async fn type_errors_name_the_field_and_type_never_the_value() {
    let f = Fixture::new().await;
    let a = &f.account;
    let secret_number = 987_654_321u64;
    let cases: Vec<(Method, String, Value, &str)> = vec![
        (
            Method::POST,
            "/auth/login".into(),
            json!({"email": "owner@example.com", "password": secret_number}),
            "password",
        ),
        (
            Method::POST,
            "/auth/register".into(),
            json!({"email": "z@example.com", "password": [secret_number]}),
            "password",
        ),
        (
            Method::POST,
            format!("/accounts/{a}/otp"),
            json!({"code": secret_number}),
            "code",
        ),
        (
            Method::PUT,
            format!("/accounts/{a}/config"),
            json!({"bank_password": secret_number}),
            "bank_password",
        ),
        (
            Method::PUT,
            format!("/accounts/{a}/config"),
            json!({"session_type": "s3cr3t-987654321"}),
            "session_type",
        ),
        (
            Method::PUT,
            format!("/accounts/{a}/config"),
            json!({"retry_limit": -987654321}),
            "retry_limit",
        ),
    ];
    for (method, path, body, field) in cases {
        let r = f.app.json(method.clone(), &path, Some(&f.token), Some(body)).await;
        assert_field_error(&r, field);
        assert!(
            !r.text.contains("987654321"),
            "{method} {path} echoed the value: {}",
            r.text
        );
        let message = r.body["details"][0]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("expected "), "{method} {path}: {}", r.text);
    }
    let r = f
        .app
        .v1(
            Method::POST,
            &format!("/v1/accounts/{a}/otp"),
            &f.key,
            Some(json!({"code": secret_number})),
        )
        .await;
    r.assert_v1_error(400, "VALIDATION_ERROR");
    assert_eq!(r.body["error"]["details"][0]["field"], "code");
    assert!(!r.text.contains("987654321"), "{}", r.text);
}

/// Finding 8: the published `/v1` schema refuses a code of only whitespace, as the server does.
#[tokio::test]
async fn v1_schema_refuses_a_whitespace_only_code_like_the_server() {
    let f = Fixture::new().await;
    let doc = f.app.send(Method::GET, "/v1/openapi.json", &[], None).await.body;
    let code = &doc["components"]["schemas"]["OtpSubmission"]["properties"]["code"];
    let pattern = code["pattern"].as_str().expect("the code has a pattern");
    let re = regex::Regex::new(pattern).expect("an ECMA-compatible pattern");
    for blank in [" ", "   ", "\u{3000}"] {
        assert!(!re.is_match(blank), "the schema accepts {blank:?}");
    }
    assert!(re.is_match("123456") && re.is_match(" 12 "));
    let r = f
        .app
        .v1(
            Method::POST,
            &format!("/v1/accounts/{}/otp", f.account),
            &f.key,
            Some(json!({"code": "   "})),
        )
        .await;
    r.assert_v1_error(400, "VALIDATION_ERROR");
}

/// Finding 1: the failed-login limit holds under concurrency — an attempt takes its place in the
/// window when it starts, so 100 concurrent wrong passwords get at most `limit` verdicts of 401;
/// the rest are 429. A success gives its place back.
#[tokio::test]
async fn concurrent_wrong_passwords_cannot_bypass_the_failed_login_limit() {
    let app = crate::harness::TestApp::spawn_with(&[("RECONBANKER_LOGIN_FAILURES", "10")]).await;
    let _ = app.user("victim@example.com").await;
    // Successes do not count: twelve in a row stay fine with a limit of ten.
    for _ in 0..12 {
        let r = app
            .json(
                Method::POST,
                "/auth/login",
                None,
                Some(json!({"email": "victim@example.com", "password": "correct horse battery"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..100 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.json(
                Method::POST,
                "/auth/login",
                None,
                Some(json!({"email": "victim@example.com", "password": format!("wrong password {i}")})),
            )
            .await
            .status
            .as_u16()
        }));
    }
    let mut checked = 0;
    let mut limited = 0;
    for t in tasks {
        match t.await.expect("task") {
            401 => checked += 1,
            429 => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        checked <= 10,
        "{checked} wrong passwords were checked with a limit of 10"
    );
    assert_eq!(checked + limited, 100);
}

/// Finding 10: failures from an address never lock out a valid key from the same address.
#[tokio::test]
async fn a_valid_key_is_never_locked_out_by_other_clients_failures() {
    let app = crate::harness::TestApp::spawn_with(&[("RECONBANKER_AUTH_FAILURES_PER_MIN", "3")]).await;
    let f = Fixture::on(app).await;
    let path = format!("/v1/accounts/{}/status", f.account);
    let bogus = f.app.state.keys.generate().full;
    for _ in 0..30 {
        let r = f.app.v1(Method::GET, &path, &bogus, None).await;
        assert!(matches!(r.status.as_u16(), 401 | 429), "{}", r.text);
    }
    let r = f.app.v1(Method::GET, &path, &bogus, None).await;
    r.assert_v1_error(429, "RATE_LIMITED");
    for _ in 0..5 {
        let r = f.app.v1(Method::GET, &path, &f.key, None).await;
        assert_eq!(r.status, StatusCode::OK, "the valid key: {}", r.text);
    }
}

/// Finding 11: a key with a plain CRC checksum (what anyone could compute) is refused without
/// the database; the negative cache answers a signed but unknown prefix without a second read.
/// Proven from the outside: with the database gone, both are still a clean 401, not a 500.
#[tokio::test]
async fn forged_and_unknown_keys_are_refused_without_the_database() {
    let f = Fixture::new().await;
    let path = format!("/v1/accounts/{}/status", f.account);
    // A CRC-checksummed key of the seed's shape: what the old format let anyone make.
    let head = format!("rbk_{}_{}", "0badc0de", "ab".repeat(28));
    let forged = format!("{head}{:08x}", crc32fast::hash(head.as_bytes()));
    assert_eq!(forged.len(), 4 + 8 + 1 + 64);
    let unknown = f.app.state.keys.generate().full;
    // First sight of the signed unknown key reads the database once.
    f.app
        .v1(Method::GET, &path, &unknown, None)
        .await
        .assert_v1_error(401, "INVALID_API_KEY");
    // Warm the valid key's cache too, then take the database away.
    assert_eq!(f.app.v1(Method::GET, &path, &f.key, None).await.status, StatusCode::OK);
    f.app.state.store.close().await;
    for key in [&forged, &unknown] {
        let r = f.app.v1(Method::GET, &path, key, None).await;
        r.assert_v1_error(401, "INVALID_API_KEY");
    }
}

/// Finding 12: a refusal that leaves the body unread (a 413; a 401 before the body) says
/// `Connection: close`; a request whose body was read keeps the connection.
#[tokio::test]
async fn refusals_that_leave_the_body_unread_close_the_connection() {
    let f = Fixture::new().await;
    // Larger than what the server reads in one go, so the refusal leaves most of it unread.
    let big = vec![b'a'; 4 * 1024 * 1024];
    let head = format!(
        "POST /auth/register HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        big.len()
    );
    let res = raw(f.app.addr, &head, &big).await;
    assert!(res.starts_with("http/1.1 413"), "{res}");
    assert!(res.contains("\r\nconnection: close\r\n"), "{res}");

    let body = br#"{"code":"123456"}"#;
    let head = format!(
        "POST /v1/accounts/{}/otp HTTP/1.1\r\nhost: x\r\nx-api-key: nope\r\ncontent-length: {}\r\n\r\n",
        f.account,
        body.len()
    );
    let res = raw(f.app.addr, &head, body).await;
    assert!(res.starts_with("http/1.1 401"), "{res}");
    assert!(res.contains("\r\nconnection: close\r\n"), "{res}");

    let body = br#"{"email":"a@example.com","password":"short"}"#;
    let head = format!(
        "POST /auth/register HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let res = raw(f.app.addr, &head, body).await;
    assert!(res.starts_with("http/1.1 400"), "{res}");
    assert!(
        !res.contains("connection: close"),
        "a read body keeps the connection: {res}"
    );
}

/// A slow client cannot hold a connection: one that sends half a request's head, or nothing,
/// is closed once `RECONBANKER_CLIENT_TIMEOUT_MS` has passed; one that announces a body and
/// sends part of it gets a 400 with `Connection: close`. (The 10 s bound only keeps a broken
/// server from hanging the suite; the deadline under test is 300 ms.)
#[tokio::test]
async fn slow_clients_are_cut_off_at_the_client_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = crate::harness::TestApp::spawn_with(&[("RECONBANKER_CLIENT_TIMEOUT_MS", "300")]).await;
    let f = Fixture::on(app).await;
    let bound = std::time::Duration::from_secs(10);
    for sent in ["GET /health HTTP/1.1\r\nhost: x\r\n", ""] {
        let mut s = tokio::net::TcpStream::connect(f.app.addr).await.expect("connect");
        s.write_all(sent.as_bytes()).await.expect("write");
        let started = std::time::Instant::now();
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(bound, s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("the server kept a stalled connection open ({sent:?})"))
            .unwrap_or(0);
        assert_eq!(
            n,
            0,
            "closed without a response: {:?}",
            String::from_utf8_lossy(&buf[..n])
        );
        assert!(
            started.elapsed() >= std::time::Duration::from_millis(250),
            "{sent:?}: closed at the deadline, not before"
        );
    }
    // A body announced and not sent in full.
    let head = format!(
        "PUT /accounts/{}/config HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n",
        f.account, f.token
    );
    let res = tokio::time::timeout(bound, raw(f.app.addr, &head, b"{}"))
        .await
        .expect("the server answered a stalled body");
    assert!(res.starts_with("http/1.1 400"), "{res}");
    assert!(res.contains("connection: close"), "{res}");
    // A client in time is served as before, on a kept-alive connection.
    let r = f.app.get(&format!("/accounts/{}/config", f.account), &f.token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

/// Sends raw bytes on a fresh connection; returns the response head (lowercased).
async fn raw(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut r, mut w) = s.into_split();
    let mut out = head.as_bytes().to_vec();
    out.extend_from_slice(body);
    // Written on the side: a server that refuses early stops reading, and the write may
    // never finish (its error is expected then).
    let writer = tokio::spawn(async move {
        let _ = w.write_all(&out).await;
        w
    });
    let s = &mut r;
    let mut buf = vec![0u8; 16 * 1024];
    let mut got = Vec::new();
    // Read the head of the response (the status line and headers end with a blank line).
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await.expect("read");
        assert!(n > 0, "the server closed without a response");
        got.extend_from_slice(&buf[..n]);
    }
    writer.abort();
    String::from_utf8_lossy(&got).to_ascii_lowercase()
}

/// Finding 6: the IPv4-translated form `::ffff:0:a.b.c.d` (and the other embeddings of a
/// private IPv4 address) is refused in every URL field, and the bank `loginUrl` goes through the
/// guard too. (The table of addresses is the unit test in `support::guard`.)
#[tokio::test]
async fn embedded_private_ipv4_is_refused_in_every_url_field_and_the_bank_login_url() {
    let app = crate::harness::TestApp::spawn_with(&[("RECONBANKER_ALLOW_PRIVATE_TARGETS", "false")]).await;
    let f = Fixture::on(app).await;
    assert!(f.app.state.store.grant_admin("owner@example.com").await.expect("grant"));
    let hostile = [
        "http://[::ffff:0:a9fe:a9fe]/latest/meta-data",
        "http://[::ffff:0:7f00:1]:8080/",
        "http://[2606:4700::5efe:a9fe:a9fe]/",
        "http://10.0.0.1/login",
    ];
    for url in hostile {
        for field in ["notification_endpoint_url", "webhook_url", "pending_orders_endpoint"] {
            let r = f
                .app
                .json(
                    Method::PUT,
                    &format!("/accounts/{}/config", f.account),
                    Some(&f.token),
                    Some(json!({ field: url })),
                )
                .await;
            assert_field_error(&r, field);
        }
        let r = f
            .app
            .json(
                Method::POST,
                "/banks",
                Some(&f.token),
                Some(json!({"code": "evil", "name": "Evil", "loginUrl": url})),
            )
            .await;
        assert_field_error(&r, "loginUrl");
    }
    let r = f
        .app
        .json(
            Method::POST,
            "/banks",
            Some(&f.token),
            Some(json!({"code": "fine", "name": "Fine", "loginUrl": "https://93.184.216.34/login"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

/// Finding 9: a delivery this instance had claimed when it died (claimed with its instance id and
/// the two-minute lease, as a dead process leaves it) is taken back at the next boot and sent
/// within seconds — not after the lease — with the same `webhook-id` as its first attempt.
#[tokio::test]
async fn a_restarted_instance_takes_back_its_own_delivery_claims_at_boot() {
    use crate::webhooks::{receiver, Answer};
    let f = crate::harness::BankFixture::with(
        &[
            // A failed attempt waits ten minutes: only the boot can make it due again soon.
            ("RECONBANKER_WEBHOOK_BACKOFF_MS", "600000"),
            ("RECONBANKER_WEBHOOK_TIMEOUT_MS", "5000"),
        ],
        sandbox_bank::BankConfig::default(),
    )
    .await;
    let mut hook = receiver(vec![Answer::Status(500)]).await;
    let id = f
        .account(
            "user_locked",
            "pass_locked",
            json!({
                "login_mode": "assisted",
                "notification_endpoint_url": hook.url,
                "notification_events": ["login_failed"],
            }),
        )
        .await;
    let mut attempts = f.app.state.webhooks.subscribe_attempts();
    f.post(&format!("/accounts/{id}/scrape")).await;
    let first = hook.next().await;
    let webhook_id = first.headers.get("webhook-id").cloned().expect("webhook-id");
    let crate::harness::BankFixture { app, bank: _bank, .. } = f;
    // The attempt's outcome (500 → retry in 10 min) is recorded before the claim below.
    let retry = loop {
        let d = tokio::time::timeout(std::time::Duration::from_secs(20), attempts.recv())
            .await
            .expect("the attempt is recorded")
            .expect("attempts");
        if d.status == "pending" {
            break d;
        }
    };
    // What a process that died while sending leaves behind: the row claimed by this instance,
    // leased for two minutes.
    let instance = std::fs::read_to_string(app.state.config.data_dir.join("instance_id")).expect("instance id");
    let due = retry.next_attempt_at.expect("rescheduled");
    let claimed = app
        .state
        .store
        .claim_due_deliveries(
            due,
            reconbanker_store::now() + chrono::Duration::minutes(2),
            10,
            instance.trim(),
        )
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    let app = app.restart(reconbanker::AppOptions::default()).await;
    let again = hook.next().await;
    assert_eq!(
        again.headers.get("webhook-id"),
        Some(&webhook_id),
        "the same webhook-id"
    );
    drop(app);
}

/// Keys issued before the keyed checksum (a CRC-32) keep working after the upgrade: a key of the
/// old checksum is looked up only when its prefix named a key at boot, so a CRC key made up by
/// anyone is still refused from memory (no database read).
#[tokio::test]
async fn keys_issued_with_the_old_checksum_keep_working() {
    use sha2::Digest;
    let f = Fixture::new().await;
    let user = f.user_id().await;
    let crate::harness::Fixture { app, account, .. } = f;
    // What the previous release stored for a key it issued: the prefix and SHA-256(secret).
    let head = format!("rbk_01dc0de5_{}", "cd".repeat(28));
    let old = format!("{head}{:08x}", crc32fast::hash(head.as_bytes()));
    let row = reconbanker_store::ApiKeyRow {
        id: reconbanker_store::ApiKeyId::new(),
        user_id: user,
        name: "issued by the previous release".into(),
        prefix: "01dc0de5".into(),
        secret_hash: sha2::Sha256::digest(&old.as_bytes()[13..]).to_vec(),
        scopes: vec!["status:read".into()],
        account_ids: None,
        created_at: reconbanker_store::now(),
        last_used_at: None,
        expires_at: None,
        revoked_at: None,
    };
    app.state.store.create_api_key(&row).await.expect("old key");
    let app = app.restart(reconbanker::AppOptions::default()).await;
    let path = format!("/v1/accounts/{account}/status");
    assert_eq!(app.v1(Method::GET, &path, &old, None).await.status, StatusCode::OK);
    // The old key with another secret, and a CRC key whose prefix named nothing at boot.
    let wrong = format!("rbk_01dc0de5_{}", "ce".repeat(28));
    let wrong = format!("{wrong}{:08x}", crc32fast::hash(wrong.as_bytes()));
    let made_up = format!("rbk_0badc0de_{}", "cd".repeat(28));
    let made_up = format!("{made_up}{:08x}", crc32fast::hash(made_up.as_bytes()));
    for key in [&wrong, &made_up] {
        app.v1(Method::GET, &path, key, None)
            .await
            .assert_v1_error(401, "INVALID_API_KEY");
    }
    app.state.store.close().await;
    app.v1(Method::GET, &path, &made_up, None)
        .await
        .assert_v1_error(401, "INVALID_API_KEY");
}

/// A control character from outside never reaches the database, on either backend (PostgreSQL
/// text cannot hold a NUL: one such pending order stopped the account's polls for good, and
/// one such bank movement failed every read). An order with one in its id, name or reference is
/// an invalid item with its code (the rest of the poll applies); a movement's text has each
/// one turned into a space.
#[tokio::test]
async fn control_characters_from_the_customer_or_the_bank_never_stop_the_account() {
    use crate::matching::Shop;
    use crate::reconcile::Answer as OrdersAnswer;

    let mut shop = Shop::with("nul", json!({})).await;
    let item = |id: &str, name: &str, reference: &str| {
        format!(
            r#"{{"external_id":"{id}","amount":"11.00","currency":"UYU","name":"{name}","reference":"{reference}"}}"#
        )
    };
    let items = [
        item("GOOD-1", "Ana Lopez", "R-1"),
        item("NUL\\u0000ID", "Nul Id", "R-2"),
        item("NUL-NAME", "Nul\\u0000Name", "R-3"),
        item("NUL-REF", "Nul Ref", "ref\\u0000"),
    ];
    let row = shop
        .poll_answer(OrdersAnswer::Raw(200, format!("[{}]", items.join(","))))
        .await;
    assert_eq!(row.outcome, "succeeded", "{row:?}");
    assert_eq!((row.counts.registered, row.counts.invalid), (1, 3), "{row:?}");
    assert_eq!(
        shop.last_poll_issues().await,
        [
            (None, "bad_external_id".to_owned()),
            (Some("NUL-NAME".to_owned()), "bad_name".to_owned()),
            (Some("NUL-REF".to_owned()), "bad_reference".to_owned()),
        ]
    );

    shop.transfer("11.00", Some("ANA\u{0}LOPEZ"), "Transfer\u{0}encia");
    shop.read_bank().await;
    let movements = shop.movements().await;
    let m = movements
        .iter()
        .find(|m| m.amount == "11.00")
        .expect("the movement was stored");
    assert_eq!(
        (m.name.as_deref(), m.description.as_str()),
        (Some("ANA LOPEZ"), "Transfer encia")
    );
    // And it settles the valid order.
    let got = shop.hooks.next().await;
    assert!(
        got.body.contains(r#""external_id":"GOOD-1","status":"matched""#),
        "{}",
        got.body
    );
}
