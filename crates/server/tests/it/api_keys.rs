//! API key management (docs/product.md §3).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{KeyListOut, KeyOut, TestApp};

#[tokio::test]
async fn create_shows_the_key_once_and_list_never() {
    let app = TestApp::spawn().await;
    let token = app.user("k@example.com").await;
    let account = app.account(&token, "A").await;
    let r = app
        .json(
            Method::POST,
            "/me/api-keys",
            Some(&token),
            Some(json!({"name": " SMS relay ", "scopes": ["otp:write", "status:read", "otp:write"], "account_ids": [account], "expires_at": "2099-01-01T00:00:00Z"})),
        )
        .await;
    // `null` fields must be on the wire, not just absent.
    assert_eq!(r.body.get("last_used_at"), Some(&Value::Null), "{}", r.text);
    assert_eq!(r.body.get("revoked_at"), Some(&Value::Null), "{}", r.text);
    let created: KeyOut = r.typed(StatusCode::CREATED);
    let key = created.key.expect("key");
    let re = regex_like(&key);
    assert!(re, "documented format: {key}");
    assert_eq!(created.prefix, &key[4..12]);
    assert_eq!(created.name, "SMS relay");
    assert_eq!(created.scopes, ["otp:write", "status:read"]);
    assert_eq!(created.account_ids, Some(vec![account]));
    assert_eq!(created.expires_at.as_deref(), Some("2099-01-01T00:00:00.000Z"));
    assert_eq!(created.last_used_at, None);
    assert_eq!(created.revoked_at, None);

    let list = app.get("/me/api-keys", &token).await;
    assert!(!list.text.contains(&key[13..]), "the secret never appears again");
    let listed = list.body["keys"][0].clone();
    let typed: KeyListOut = list.typed(StatusCode::OK);
    assert_eq!(typed.available_scopes, ["otp:write", "status:read"]);
    assert_eq!(typed.keys[0].key, None);
    assert!(listed.get("key").is_none());
    // What is answered is what is stored: whole milliseconds, a leap second as the next instant.
    for (given, shown) in [
        ("2098-12-31T23:59:60Z", "2099-01-01T00:00:00.000Z"),
        ("2099-06-01T12:00:00.123456789+02:00", "2099-06-01T10:00:00.123Z"),
    ] {
        let r = app
            .json(
                Method::POST,
                "/me/api-keys",
                Some(&token),
                Some(json!({"name": given, "scopes": ["status:read"], "expires_at": given})),
            )
            .await;
        let made: KeyOut = r.typed(StatusCode::CREATED);
        assert_eq!(made.expires_at.as_deref(), Some(shown), "{given}");
        let list = app.get("/me/api-keys", &token).await;
        let stored = list.body["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .find(|k| k["name"] == given)
            .expect("listed")["expires_at"]
            .clone();
        assert_eq!(stored, json!(shown), "{given}");
    }
    let mut fields: Vec<&String> = listed.as_object().expect("obj").keys().collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "account_ids",
            "created_at",
            "expires_at",
            "id",
            "last_used_at",
            "name",
            "prefix",
            "revoked_at",
            "scopes"
        ]
    );
}

fn regex_like(key: &str) -> bool {
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    key.len() == 77 && key.starts_with("rbk_") && hex(&key[4..12]) && &key[12..13] == "_" && hex(&key[13..])
}

#[tokio::test]
async fn validation() {
    let app = TestApp::spawn().await;
    let token = app.user("k@example.com").await;
    let other = app.user("other@example.com").await;
    let foreign = app.account(&other, "Theirs").await;
    let account = app.account(&token, "Mine").await;
    for (body, field) in [
        (json!({"scopes": ["otp:write"]}), "name"),
        (json!({"name": "   ", "scopes": ["otp:write"]}), "name"),
        (json!({"name": "x".repeat(101), "scopes": ["otp:write"]}), "name"),
        (json!({"name": "k"}), "scopes"),
        (json!({"name": "k", "scopes": []}), "scopes"),
        (json!({"name": "k", "scopes": ["admin"]}), "scopes"),
        (
            json!({"name": "k", "scopes": ["otp:write"], "account_ids": [foreign]}),
            "account_ids",
        ),
        (
            json!({"name": "k", "scopes": ["otp:write"], "account_ids": ["nope"]}),
            "account_ids",
        ),
        (
            json!({"name": "k", "scopes": ["otp:write"], "account_ids": []}),
            "account_ids",
        ),
        (
            json!({"name": "k", "scopes": ["otp:write"], "expires_at": "2001-01-01T00:00:00Z"}),
            "expires_at",
        ),
        (
            json!({"name": "k", "scopes": ["otp:write"], "expires_at": "tomorrow"}),
            "expires_at",
        ),
    ] {
        let r = app
            .json(Method::POST, "/me/api-keys", Some(&token), Some(body.clone()))
            .await;
        let e = r.api_error(400, "VALIDATION_ERROR");
        let details = e.details.unwrap_or_else(|| panic!("{body}: details: {}", r.text));
        assert_eq!(details[0].field, field, "{body}: {}", r.text);
    }
    // A refused item is named by its position, never quoted (it may be a secret pasted in the
    // wrong field).
    for (body, message) in [
        (
            json!({"name": "k", "scopes": ["otp:write", "s3cr3t-value"]}),
            "item 2 is not a known scope (known: otp:write, status:read)",
        ),
        (
            json!({"name": "k", "scopes": ["otp:write"], "account_ids": [account, "s3cr3t-value"]}),
            "item 2 is not one of your accounts",
        ),
        (
            json!({"name": "k", "scopes": ["otp:write"], "account_ids": [account, account, foreign]}),
            "item 3 is not one of your accounts",
        ),
    ] {
        let r = app
            .json(Method::POST, "/me/api-keys", Some(&token), Some(body.clone()))
            .await;
        let e = r.api_error(400, "VALIDATION_ERROR");
        let details = e.details.unwrap_or_else(|| panic!("{body}: details: {}", r.text));
        assert_eq!(details[0].message, message, "{body}: {}", r.text);
        assert!(!r.text.contains("s3cr3t") && !r.text.contains(&foreign), "{}", r.text);
    }
    for body in [
        json!({"name": 5, "scopes": ["otp:write"]}),
        json!({"name": "k", "scopes": "otp:write"}),
        json!({"name": "k", "scopes": ["otp:write"], "extra": 1}),
    ] {
        app.json(Method::POST, "/me/api-keys", Some(&token), Some(body))
            .await
            .assert_api_error(400, "VALIDATION_ERROR");
    }
}

#[tokio::test]
async fn revoke_keeps_the_key_listed() {
    let app = TestApp::spawn().await;
    let token = app.user("k@example.com").await;
    let other = app.user("other@example.com").await;
    app.key(&token, &["status:read"], None).await;
    let list: KeyListOut = app.get_as("/me/api-keys", &token, StatusCode::OK).await;
    let id = list.keys[0].id.clone();
    app.json(Method::DELETE, &format!("/me/api-keys/{id}"), Some(&other), None)
        .await
        .assert_api_error(404, "NOT_FOUND");
    let r = app
        .json(Method::DELETE, &format!("/me/api-keys/{id}"), Some(&token), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let listed: KeyListOut = app.get_as("/me/api-keys", &token, StatusCode::OK).await;
    assert!(listed.keys[0].revoked_at.is_some(), "{listed:?}");
    app.json(Method::DELETE, &format!("/me/api-keys/{id}"), Some(&token), None)
        .await
        .assert_api_error(404, "NOT_FOUND");
    app.json(Method::DELETE, "/me/api-keys/not-a-uuid", Some(&token), None)
        .await
        .assert_api_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn list_is_paginated() {
    let app = TestApp::spawn().await;
    let token = app.user("k@example.com").await;
    for _ in 0..3 {
        app.key(&token, &["status:read"], None).await;
    }
    let page: KeyListOut = app.get_as("/me/api-keys?limit=2", &token, StatusCode::OK).await;
    assert_eq!(page.keys.len(), 2);
    let page: KeyListOut = app
        .get_as("/me/api-keys?limit=2&offset=2", &token, StatusCode::OK)
        .await;
    assert_eq!(page.keys.len(), 1);
    for bad in ["limit=0", "limit=501", "limit=x", "offset=-1"] {
        app.get(&format!("/me/api-keys?{bad}"), &token)
            .await
            .assert_api_error(400, "VALIDATION_ERROR");
    }
}
