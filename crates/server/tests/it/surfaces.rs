//! Cross-cutting behaviour of both surfaces: JSON errors for unknown routes and methods,
//! hostile bodies never producing a 500, request ids, health and readiness.

use reqwest::{Method, StatusCode};

use crate::harness::Fixture;

#[tokio::test]
async fn dashboard_404_405_are_json() {
    let f = Fixture::new().await;
    f.app.get("/nope", &f.token).await.assert_api_error(404, "NOT_FOUND");
    f.app
        .get("/api/accounts", &f.token)
        .await
        .assert_api_error(404, "NOT_FOUND");
    f.app
        .json(Method::PATCH, "/accounts", Some(&f.token), None)
        .await
        .assert_api_error(405, "METHOD_NOT_ALLOWED");
    f.app
        .json(Method::GET, "/auth/login", None, None)
        .await
        .assert_api_error(405, "METHOD_NOT_ALLOWED");
}

#[tokio::test]
async fn health_ready_and_request_ids() {
    let f = Fixture::new().await;
    let r = f.app.send(Method::GET, "/health", &[], None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, serde_json::json!({"ok": true}));
    let r = f.app.send(Method::GET, "/ready", &[], None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let id = r.header("x-request-id").expect("request id").to_owned();
    assert_eq!(id.len(), 36);
    let r = f
        .app
        .send(Method::GET, "/health", &[("x-request-id", "abc-123")], None)
        .await;
    assert_eq!(r.header("x-request-id"), Some("abc-123"), "an incoming id is kept");
}

/// Every route that takes a body, fed garbage: always a 4xx in the route's shape, never a 500.
#[tokio::test]
async fn hostile_bodies_never_500() {
    let f = Fixture::new().await;
    let a = &f.account;
    let routes: Vec<(Method, String, bool)> = vec![
        (Method::POST, "/auth/register".into(), false),
        (Method::POST, "/auth/login".into(), false),
        (Method::PUT, "/me/operation-mode".into(), true),
        (Method::POST, "/me/api-keys".into(), true),
        (Method::POST, "/banks".into(), true),
        (Method::POST, "/accounts".into(), true),
        (Method::DELETE, format!("/accounts/{a}"), true),
        (Method::PUT, format!("/accounts/{a}/config"), true),
        (Method::POST, format!("/accounts/{a}/otp"), true),
        (Method::POST, format!("/v1/accounts/{a}/otp"), false),
    ];
    let big = vec![b'['; 70 * 1024];
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes();
    let bodies: Vec<Vec<u8>> = vec![
        vec![],
        b"null".to_vec(),
        b"true".to_vec(),
        b"[]".to_vec(),
        b"{\"a\":".to_vec(),
        b"{\"email\": {\"$gt\": \"\"}, \"password\": [1]}".to_vec(),
        b"{\"code\": \"\\u0000\\ud800\"}".to_vec(),
        b"{\"name\": \"\\u0000\", \"scopes\": [null]}".to_vec(),
        b"{\"bankId\": 1e999, \"name\": {}}".to_vec(),
        vec![0xc3, 0x28, 0xa0, 0xa1],
        deep,
        big,
    ];
    for (method, path, jwt) in &routes {
        for body in &bodies {
            let mut headers = vec![("x-api-key", f.key.as_str())];
            let bearer = format!("Bearer {}", f.token);
            if *jwt {
                headers = vec![("authorization", bearer.as_str())];
            }
            let r = f.app.send(method.clone(), path, &headers, Some(body.clone())).await;
            assert!(
                r.status.is_client_error(),
                "{method} {path} with {:?}: {} {}",
                String::from_utf8_lossy(&body[..body.len().min(40)]),
                r.status,
                r.text
            );
            assert!(r.body.is_object(), "JSON error body for {method} {path}: {}", r.text);
        }
    }
}
