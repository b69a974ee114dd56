//! The committed OpenAPI document of `/v1` is the generated one: this test fails on drift.

use reqwest::{Method, StatusCode};

use crate::harness::TestApp;

const COMMITTED: &str = include_str!("../../../../docs/openapi-v1.json");

#[tokio::test]
async fn committed_openapi_matches_the_code_and_is_served() {
    let generated = reconbanker::http::v1::openapi_json();
    assert_eq!(
        COMMITTED.trim(),
        generated.trim(),
        "docs/openapi-v1.json is stale: regenerate it with `cargo run -q -- openapi > docs/openapi-v1.json`"
    );
    let app = TestApp::spawn().await;
    let r = app.send(Method::GET, "/v1/openapi.json", &[], None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["openapi"], "3.1.0");
    assert!(r.body["paths"]["/v1/accounts/{accountId}/status"]["get"].is_object());
    assert!(r.body["paths"]["/v1/accounts/{accountId}/otp"]["post"].is_object());
    let schemes = &r.body["components"]["securitySchemes"];
    assert_eq!(schemes["ApiKeyHeader"]["name"], "x-api-key");
    assert_eq!(schemes["ApiKeyAuthorization"]["name"], "Authorization");
}
