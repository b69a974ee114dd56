//! Issue 11: `/metrics` behind a bearer token (`RECONBANKER_METRICS_TOKEN`): a scrape without
//! it, with another token or another scheme is 401 in the dashboard's error shape; with it, 200.

use reconbanker::config::Config;
use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::*;

const TOKEN: &str = "scrape-token-0123456789abcdef";

#[tokio::test]
async fn metrics_with_a_token_answer_only_the_scraper_that_sends_it() {
    let app = TestApp::spawn_with(&[
        ("RECONBANKER_METRICS_ADDR", "127.0.0.1:0"),
        ("RECONBANKER_METRICS_TOKEN", TOKEN),
    ])
    .await;
    let metrics = app.metrics.expect("a metrics listener");
    let url = format!("http://{metrics}/metrics");
    let http = reqwest::Client::new();
    let wrong = format!("Bearer {TOKEN}x");
    let basic = format!("Basic {TOKEN}");
    let prefix = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
    for auth in [
        None,
        Some(wrong.as_str()),
        Some(basic.as_str()),
        Some(prefix.as_str()),
        Some("Bearer"),
    ] {
        let mut req = http.get(&url);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let res = req.send().await.expect("scrape");
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(
            res.headers().get("www-authenticate").and_then(|v| v.to_str().ok()),
            Some("Bearer realm=\"metrics\"")
        );
        let body: Value = res.json().await.expect("JSON");
        assert_eq!(body["code"], "UNAUTHORIZED", "{body}");
        assert!(body["error"].is_string(), "{body}");
        assert!(!body.to_string().contains(TOKEN), "the token is never echoed: {body}");
    }
    let res = http
        .get(&url)
        .header("authorization", format!("bearer {TOKEN}"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.expect("body");
    assert!(text.contains("# HELP reconbanker_otp_submissions_total"), "{text}");
}

#[test]
fn a_bad_metrics_token_is_refused_naming_the_variable_not_the_value() {
    for bad in ["short-token", "has a space in it 0123456789", &"x".repeat(257)] {
        let err = Config::from_lookup(|k| (k == "RECONBANKER_METRICS_TOKEN").then(|| bad.to_owned()))
            .expect_err("refused")
            .to_string();
        assert!(err.contains("RECONBANKER_METRICS_TOKEN"), "{err}");
        assert!(!err.contains(bad), "the value is not quoted: {err}");
    }
    let ok = Config::from_lookup(|k| (k == "RECONBANKER_METRICS_TOKEN").then(|| TOKEN.to_owned())).expect("valid");
    assert_eq!(ok.metrics_token.as_ref().map(|t| t.expose().as_str()), Some(TOKEN));
    assert!(!format!("{ok:?}").contains(TOKEN), "Debug redacts the token");
}
