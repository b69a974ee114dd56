//! Session ownership across instances: `sessionOwner`, and a starting instance's boot cleanup
//! leaves a live instance's waiting login alone.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{self, Database, Sse};

#[tokio::test]
async fn a_starting_instance_spares_the_login_another_live_instance_is_holding() {
    let Some(server) = harness::postgres_server() else {
        return;
    };
    let db = Database::create(&server).await;
    let (_bank, bank_url) = harness::sandbox_bank().await;
    let env = [("RECONBANKER_SANDBOX_BANK", bank_url.as_str())];
    let a = harness::start(&db.url, &env).await;
    assert!(!a.id.is_empty(), "the ready line names the instance: {}", a.log());

    let token = a.user("owner@example.com").await;
    let account = a.account(&token, "Main").await;
    let (_, key) = a.key(&token, &["otp:write", "status:read"]).await;
    let detail = format!("/accounts/{account}");
    let before = a.dash(Method::GET, &detail, &token, None).await.expect(StatusCode::OK);
    assert_eq!(before["sessionOwner"], json!(null), "no session yet");

    let bearer = format!("Bearer {token}");
    let mut events = Sse::open(&a, "/realtime/events", &[("authorization", &bearer)]).await;
    a.dash(
        Method::PUT,
        &format!("{detail}/config"),
        &token,
        Some(json!({"bank_username": "user_otp", "bank_password": "pass_otp", "login_mode": "assisted"})),
    )
    .await
    .expect(StatusCode::OK);
    a.dash(Method::POST, &format!("{detail}/scrape"), &token, None).await;
    loop {
        if events.next().await.event == "assistance.requested" {
            break;
        }
    }
    let during = a.dash(Method::GET, &detail, &token, None).await.expect(StatusCode::OK);
    assert_eq!(during["sessionOwner"], json!(a.id), "A drives the login");

    // B starts while A's login waits for its code: B's boot cleanup must not cancel it.
    let b = harness::start(&db.url, &env).await;
    assert_ne!(a.id, b.id);
    let seen_on_b = b.dash(Method::GET, &detail, &token, None).await.expect(StatusCode::OK);
    assert_eq!(seen_on_b["sessionOwner"], json!(a.id), "B sees A as the owner");
    let status = b
        .v1(Method::GET, &format!("/v1/accounts/{account}/status"), &key, None)
        .await
        .expect(StatusCode::OK);
    assert!(
        status["pendingAssistance"].is_object() || status["pending_assistance"].is_object(),
        "the request is still pending after B's start: {status}"
    );

    // A's login is alive: the code reaches it, and the bank accepts it.
    a.v1(
        Method::POST,
        &format!("/v1/accounts/{account}/otp"),
        &key,
        Some(json!({"code": "123456"})),
    )
    .await
    .expect(StatusCode::ACCEPTED);
    let mut kinds = Vec::new();
    loop {
        let e = events.next().await;
        assert_ne!(e.event, "assistance.cancelled", "cancelled: {kinds:?}");
        kinds.push(e.event.clone());
        if e.event == "session.stopped" {
            break;
        }
    }
    assert!(kinds.iter().any(|k| k == "login.succeeded"), "{kinds:?}");
    // The one-shot session ended and gave its lease up.
    let after = b.dash(Method::GET, &detail, &token, None).await.expect(StatusCode::OK);
    assert_eq!(after["sessionOwner"], json!(null));
}
