//! Notification webhooks end to end (docs/product.md §8): a real receiver on port 0, the real sandbox bank,
//! signatures verified by an independent Standard Webhooks implementation written here from the
//! specification (not the production code).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::response::IntoResponse;
use base64::Engine;
use hmac::{Hmac, Mac};
use reconbanker_store::DeliveryRow;
use reqwest::{Method, StatusCode};
use sandbox_bank::BankConfig;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::harness::{BankFixture, ConfigOut, DeliveryOut, RotatedOut};

/// The JSON a receiver gets (the fields the tests read; the rest is checked raw where it
/// matters).
#[derive(Debug, serde::Deserialize)]
struct Payload {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    status: String,
    account_id: String,
    occurred_at: String,
    data: Value,
}

fn payload(body: &str) -> Payload {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not a webhook payload: {e}: {body}"))
}

/// What the receiver does with the next request.
#[derive(Clone, Copy)]
pub(crate) enum Answer {
    Status(u16),
    /// Never answers within the webhook timeout.
    Hang,
}

pub(crate) struct Received {
    pub headers: HeaderMap,
    pub body: String,
}

/// A webhook receiver: answers from a script (then 200), reports every request.
pub(crate) struct Receiver {
    pub url: String,
    got: mpsc::UnboundedReceiver<Received>,
}

pub(crate) async fn receiver(script: Vec<Answer>) -> Receiver {
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    let (tx, got) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let script = script.clone();
            let tx = tx.clone();
            async move {
                let _ = tx.send(Received {
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                let answer = script
                    .lock()
                    .expect("script")
                    .pop_front()
                    .unwrap_or(Answer::Status(200));
                match answer {
                    Answer::Status(code) => AxStatus::from_u16(code).unwrap_or(AxStatus::OK).into_response(),
                    Answer::Hang => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        AxStatus::OK.into_response()
                    }
                }
            }
        }),
    );
    let url = serve_hook(app).await;
    Receiver { url, got }
}

impl Receiver {
    pub(crate) async fn next(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(20), self.got.recv())
            .await
            .expect("a webhook POST")
            .expect("open")
    }
}

/// Standard Webhooks verification, from the specification: the signed content is
/// `{webhook-id}.{webhook-timestamp}.{body}`, HMAC-SHA256 keyed with the base64-decoded part of
/// the `whsec_` secret; `webhook-signature` is a space-separated list of `v1,<base64>`.
pub(crate) fn verifies(secret: &str, headers: &HeaderMap, body: &str) -> bool {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("secret");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("key");
    mac.update(format!("{}.{}.{}", h("webhook-id"), h("webhook-timestamp"), body).as_bytes());
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    h("webhook-signature").split(' ').any(|s| s == expected)
}

pub(crate) async fn webhook_fixture(overrides: &[(&str, &str)]) -> BankFixture {
    let mut env = vec![
        ("RECONBANKER_WEBHOOK_BACKOFF_MS", "10"),
        ("RECONBANKER_WEBHOOK_TIMEOUT_MS", "5000"),
        ("RECONBANKER_WEBHOOK_MAX_ATTEMPTS", "4"),
    ];
    env.extend_from_slice(overrides);
    BankFixture::with(&env, BankConfig::default()).await
}

pub(crate) async fn subscribe(f: &BankFixture, user: &str, password: &str, url: &str, events: Value) -> String {
    f.account(
        user,
        password,
        json!({
            "login_mode": "assisted",
            "notification_endpoint_url": url,
            "notification_events": events,
            "notification_auth_type": "bearer",
            "notification_auth_token": "receiver-token-123",
        }),
    )
    .await
}

async fn secret(f: &BankFixture, id: &str) -> String {
    let c: ConfigOut = f
        .app
        .get_as(&format!("/accounts/{id}/config"), &f.token, StatusCode::OK)
        .await;
    c.notification_signing_secret
}

/// Serves `app` on a free local port; the URL of its `/hook`.
async fn serve_hook(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

/// A `login_failed` notification to `url` from an account whose login fails: its first try,
/// as recorded (still `pending`), and the account's id.
async fn first_try_of_a_login_failure(f: &BankFixture, url: &str) -> (String, DeliveryRow) {
    let id = subscribe(f, "user_locked", "pass_locked", url, json!(["login_failed"])).await;
    let mut attempts = f.app.state.webhooks.subscribe_attempts();
    f.post(&format!("/accounts/{id}/scrape")).await;
    (id, attempt_with_status(&mut attempts, "pending").await)
}

pub(crate) async fn attempt_with_status(
    rx: &mut tokio::sync::broadcast::Receiver<DeliveryRow>,
    status: &str,
) -> DeliveryRow {
    let wait = async {
        loop {
            if let Ok(d) = rx.recv().await {
                if d.status == status {
                    return d;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .expect("a delivery attempt")
}

#[tokio::test]
async fn a_subscribed_prompt_arrives_signed_with_payload_and_headers() {
    let f = webhook_fixture(&[]).await;
    let mut hook = receiver(vec![]).await;
    let id = subscribe(&f, "user_otp", "pass_otp", &hook.url, json!(["assistance_required"])).await;
    let secret = secret(&f, &id).await;
    let mut events = f.app.events().await;
    f.post(&format!("/accounts/{id}/scrape")).await;
    let requested = events.next(&id, "assistance.requested").await;
    let got = hook.next().await;
    let body = payload(&got.body);
    assert_eq!(body.kind, "assistance_required");
    assert_eq!(body.status, "assistance.requested");
    assert_eq!(body.account_id, id);
    assert_eq!(body.data["requestId"], requested.data["requestId"]);
    assert_eq!(
        body.data["descriptor"],
        json!({"length": 6, "type": "numeric", "purpose": "login"})
    );
    assert_eq!(body.data["attempts"], 0);
    assert!(body.occurred_at.ends_with('Z'), "{}", body.occurred_at);
    let h = |n: &str| {
        got.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(h("content-type"), "application/json");
    assert_eq!(h("authorization"), "Bearer receiver-token-123");
    assert_eq!(h("webhook-id"), body.id);
    let ts: i64 = h("webhook-timestamp").parse().expect("timestamp");
    assert!((reconbanker_store::now().timestamp() - ts).abs() < 60);
    assert!(
        verifies(&secret, &got.headers, &got.body),
        "signature verifies independently"
    );
    assert!(!verifies(
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        &got.headers,
        &got.body
    ));
    assert!(
        !verifies(&secret, &got.headers, &got.body.replace("assistance", "assistanse")),
        "body is covered"
    );

    // A wrong code re-announces the same request: a second prompt with attempts 1.
    let key = f.app.key(&f.token, &["otp:write"], None).await;
    let otp = format!("/v1/accounts/{id}/otp");
    let r = f
        .app
        .v1(Method::POST, &otp, &key, Some(json!({"code": "000000"})))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let again = payload(&hook.next().await.body);
    assert_eq!(again.data["attempts"], 1);
    assert_ne!(again.id, body.id, "each delivery has its own id");

    // Locked after 3 wrong codes: login.failed happens, but is not subscribed, so never sent.
    let r = f
        .app
        .v1(Method::POST, &otp, &key, Some(json!({"code": "000000"})))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    hook.next().await;
    let r = f
        .app
        .v1(Method::POST, &otp, &key, Some(json!({"code": "000000"})))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    events.next(&id, "login.failed").await;
    let log: Vec<DeliveryOut> = f
        .app
        .get_as(&format!("/accounts/{id}/notifications"), &f.token, StatusCode::OK)
        .await;
    let types: Vec<&str> = log.iter().map(|d| d.event_type.as_str()).collect();
    assert_eq!(types, ["assistance_required"; 3], "only subscribed events are queued");
}

#[tokio::test]
async fn failures_are_retried_then_delivered_and_logged() {
    let f = webhook_fixture(&[("RECONBANKER_WEBHOOK_TIMEOUT_MS", "1000")]).await;
    let mut hook = receiver(vec![Answer::Status(500), Answer::Hang, Answer::Status(200)]).await;
    let id = subscribe(&f, "user_good", "wrong-password", &hook.url, json!(["login_failed"])).await;
    let mut attempts = f.app.state.webhooks.subscribe_attempts();
    f.post(&format!("/accounts/{id}/scrape")).await;
    let first = hook.next().await;
    let second = hook.next().await;
    let third = hook.next().await;
    let delivered = attempt_with_status(&mut attempts, "delivered").await;
    assert_eq!(delivered.attempts, 3);
    assert_eq!(delivered.last_status, Some(200));
    let wid = |r: &Received| {
        r.headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(wid(&first), wid(&second));
    assert_eq!(wid(&second), wid(&third), "the same webhook-id on every try");
    let body = payload(&third.body);
    assert_eq!(body.kind, "login_failed");
    assert_eq!(body.data["reason"], "bad_credentials");
    let log: Vec<DeliveryOut> = f
        .app
        .get_as(&format!("/accounts/{id}/notifications"), &f.token, StatusCode::OK)
        .await;
    let d = &log[0];
    assert_eq!(d.status, "delivered");
    assert_eq!(d.attempts, 3);
    assert_eq!(d.last_status, Some(200));
    assert!(d.delivered_at.is_some());
}

#[tokio::test]
async fn dead_letter_after_the_last_try_then_resend() {
    let f = webhook_fixture(&[("RECONBANKER_WEBHOOK_MAX_ATTEMPTS", "3")]).await;
    let mut hook = receiver(vec![Answer::Status(500), Answer::Status(503), Answer::Status(502)]).await;
    let id = subscribe(&f, "user_locked", "pass_locked", &hook.url, json!(["login_failed"])).await;
    let mut attempts = f.app.state.webhooks.subscribe_attempts();
    f.post(&format!("/accounts/{id}/scrape")).await;
    let dead = attempt_with_status(&mut attempts, "dead").await;
    assert_eq!(dead.attempts, 3);
    assert_eq!(dead.last_status, Some(502));
    assert_eq!(dead.last_error.as_deref(), Some("receiver answered 502"));
    for _ in 0..3 {
        hook.next().await;
    }
    let log: Vec<DeliveryOut> = f
        .app
        .get_as(&format!("/accounts/{id}/notifications"), &f.token, StatusCode::OK)
        .await;
    assert_eq!(log[0].status, "dead");
    let delivery = log[0].id.clone();
    let r = f.post(&format!("/accounts/{id}/notifications/{delivery}/resend")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let delivered = attempt_with_status(&mut attempts, "delivered").await;
    assert_eq!(delivered.id.to_string(), delivery);
    hook.next().await;
    let other = f.app.user("other@example.com").await;
    f.app
        .json(
            Method::POST,
            &format!("/accounts/{id}/notifications/{delivery}/resend"),
            Some(&other),
            None,
        )
        .await
        .assert_api_error(404, "NOT_FOUND");
    f.post(&format!("/accounts/{id}/notifications/{}/resend", uuid::Uuid::now_v7()))
        .await
        .assert_api_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn a_prompt_no_longer_pending_is_not_delivered_late() {
    // Retries are far apart: the prompt is fulfilled before its second try.
    let f = webhook_fixture(&[("RECONBANKER_WEBHOOK_BACKOFF_MS", "3600000")]).await;
    let mut hook = receiver(vec![Answer::Status(503)]).await;
    let id = subscribe(&f, "user_otp", "pass_otp", &hook.url, json!(["assistance_required"])).await;
    let mut attempts = f.app.state.webhooks.subscribe_attempts();
    let mut events = f.app.events().await;
    f.post(&format!("/accounts/{id}/scrape")).await;
    hook.next().await;
    let failed = attempt_with_status(&mut attempts, "pending").await;
    let key = f.app.key(&f.token, &["otp:write"], None).await;
    let r = f
        .app
        .v1(
            Method::POST,
            &format!("/v1/accounts/{id}/otp"),
            &key,
            Some(json!({"code": "123456"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    events.next(&id, "assistance.fulfilled").await;
    // Make the retry due now: it must be skipped, not sent.
    let r = f
        .post(&format!("/accounts/{id}/notifications/{}/resend", failed.id))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let skipped = attempt_with_status(&mut attempts, "skipped").await;
    assert_eq!(skipped.id, failed.id);
    assert_eq!(
        skipped.last_error.as_deref(),
        Some("the assistance request is no longer pending")
    );
    assert!(hook.got.try_recv().is_err(), "nothing reached the receiver");
}

#[tokio::test]
async fn a_restart_in_the_middle_of_the_retry_schedule_still_delivers() {
    // The receiver refuses until the test has restarted the app, so the delivery is still in its
    // retry schedule when the process stops, however fast the retries come.
    let f = webhook_fixture(&[
        ("RECONBANKER_WEBHOOK_BACKOFF_MS", "100"),
        ("RECONBANKER_WEBHOOK_MAX_ATTEMPTS", "50"),
    ])
    .await;
    let accept = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, mut got) = mpsc::unbounded_channel::<bool>();
    let flag = accept.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let (flag, tx) = (flag.clone(), tx.clone());
            async move {
                let ok = flag.load(std::sync::atomic::Ordering::SeqCst);
                let _ = tx.send(ok);
                if ok {
                    AxStatus::OK
                } else {
                    AxStatus::INTERNAL_SERVER_ERROR
                }
            }
        }),
    );
    let url = serve_hook(app).await;
    let (id, pending) = first_try_of_a_login_failure(&f, &url).await;
    assert_eq!(pending.attempts, 1);
    let BankFixture {
        app,
        bank: _bank,
        token,
        ..
    } = f;
    let app = app.restart(reconbanker::AppOptions::default()).await;
    let mut attempts = app.state.webhooks.subscribe_attempts();
    accept.store(true, std::sync::atomic::Ordering::SeqCst);
    let delivered = attempt_with_status(&mut attempts, "delivered").await;
    assert_eq!(
        delivered.id, pending.id,
        "the same delivery, resumed by the new process"
    );
    assert!(delivered.attempts >= 2);
    let mut refused_then_accepted = Vec::new();
    while let Ok(ok) = got.try_recv() {
        refused_then_accepted.push(ok);
    }
    assert_eq!(refused_then_accepted.last(), Some(&true));
    assert!(!refused_then_accepted[0]);
    let log: Vec<DeliveryOut> = app
        .get_as(&format!("/accounts/{id}/notifications"), &token, StatusCode::OK)
        .await;
    assert_eq!(log[0].status, "delivered");
}

#[tokio::test]
async fn the_guard_refuses_private_targets_at_send_time() {
    // Saved while private targets were allowed, sent after the operator turned that off:
    // an IP literal and a name resolving to loopback are both refused, nothing is sent.
    let f = webhook_fixture(&[]).await;
    let mut hook = receiver(vec![]).await;
    let by_name = hook.url.replace("127.0.0.1", "localhost");
    let a = subscribe(&f, "user_locked", "pass_locked", &hook.url, json!(["login_failed"])).await;
    let b = f
        .account(
            "user_good",
            "wrong-password",
            json!({"notification_endpoint_url": by_name, "notification_events": ["login_failed"]}),
        )
        .await;
    let BankFixture {
        app,
        bank: _bank,
        token,
        ..
    } = f;
    let mut overrides = app.state.config.clone();
    overrides.allow_private_targets = false;
    let app = app.restart_with_config(overrides).await;
    let mut attempts = app.state.webhooks.subscribe_attempts();
    for id in [&a, &b] {
        app.json(Method::POST, &format!("/accounts/{id}/scrape"), Some(&token), None)
            .await;
    }
    // One attempt of each account's delivery (retries of the first may come before the second).
    let mut by_account = std::collections::HashMap::new();
    while by_account.len() < 2 {
        let d = attempt_with_status(&mut attempts, "pending").await;
        by_account
            .entry(d.account_id)
            .or_insert(d.last_error.unwrap_or_default());
    }
    let mut errors: Vec<String> = by_account.into_values().collect();
    errors.sort();
    assert_eq!(
        errors[0], "target refused: 127.0.0.1 is not a public address",
        "{errors:?}"
    );
    assert_eq!(
        errors[1], "target refused: resolves to a non-public address",
        "{errors:?}"
    );
    assert!(hook.got.try_recv().is_err(), "nothing reached the receiver");
}

#[tokio::test]
async fn rotation_signs_with_every_secret_still_in_its_grace_period() {
    let f = webhook_fixture(&[]).await;
    let mut hook = receiver(vec![]).await;
    let id = subscribe(&f, "user_locked", "pass_locked", &hook.url, json!(["login_failed"])).await;
    let old = secret(&f, &id).await;
    let rotated: RotatedOut = f
        .post_as(&format!("/accounts/{id}/notifications/rotate-secret"), StatusCode::OK)
        .await;
    let middle = rotated.notification_signing_secret;
    assert_ne!(middle, old);
    assert!(rotated.previous_valid_until.is_some());
    // Rotated again within the grace (a double click): the first secret keeps the grace it
    // was promised, and the second gets its own.
    let rotated: RotatedOut = f
        .post_as(&format!("/accounts/{id}/notifications/rotate-secret"), StatusCode::OK)
        .await;
    let new = rotated.notification_signing_secret;
    assert!(rotated.previous_valid_until.is_some());
    assert_eq!(secret(&f, &id).await, new);
    f.post(&format!("/accounts/{id}/scrape")).await;
    let got = hook.next().await;
    let sig = got
        .headers
        .get("webhook-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(sig.split(' ').count(), 3, "{sig}");
    for key in [&new, &middle, &old] {
        assert!(
            verifies(key, &got.headers, &got.body),
            "signed with every secret in its grace"
        );
    }
}

#[tokio::test]
async fn retry_after_from_the_receiver_sets_the_next_try() {
    let f = webhook_fixture(&[]).await;
    let script = Arc::new(Mutex::new(0u32));
    let (tx, mut got) = mpsc::unbounded_channel::<()>();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let (script, tx) = (script.clone(), tx.clone());
            async move {
                let _ = tx.send(());
                *script.lock().expect("lock") += 1;
                (AxStatus::TOO_MANY_REQUESTS, [("retry-after", "3600")]).into_response()
            }
        }),
    );
    let url = serve_hook(app).await;
    let (_, d) = first_try_of_a_login_failure(&f, &url).await;
    tokio::time::timeout(Duration::from_secs(5), got.recv())
        .await
        .expect("posted")
        .expect("open");
    assert_eq!(d.last_status, Some(429));
    let wait = (d.next_attempt_at.expect("next") - d.last_attempt_at.expect("last")).num_seconds();
    assert!(
        (3595..=3600).contains(&wait),
        "Retry-After honoured instead of the 10 ms backoff: {wait} s"
    );
}

/// `Retry-After: 0` (or any wait shorter than ours) does not shorten the backoff: every try
/// within milliseconds would spend the delivery's budget at once.
#[tokio::test]
async fn a_retry_after_shorter_than_the_backoff_waits_the_backoff() {
    let f = webhook_fixture(&[("RECONBANKER_WEBHOOK_BACKOFF_MS", "60000")]).await;
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async { (AxStatus::TOO_MANY_REQUESTS, [("retry-after", "0")]).into_response() }),
    );
    let url = serve_hook(app).await;
    let (_, d) = first_try_of_a_login_failure(&f, &url).await;
    assert_eq!((d.last_status, d.attempts), (Some(429), 1));
    let wait = (d.next_attempt_at.expect("next") - d.last_attempt_at.expect("last")).num_seconds();
    assert!((44..=75).contains(&wait), "the 60 s backoff (±25 %), not 0: {wait} s");
}

#[tokio::test]
async fn an_expired_prompt_is_not_delivered_late() {
    let f = webhook_fixture(&[("RECONBANKER_WEBHOOK_BACKOFF_MS", "3600000")]).await;
    let mut hook = receiver(vec![Answer::Status(503)]).await;
    let id = subscribe(&f, "user_otp", "pass_otp", &hook.url, json!(["assistance_required"])).await;
    let mut attempts = f.app.state.webhooks.subscribe_attempts();
    let mut events = f.app.events().await;
    f.post(&format!("/accounts/{id}/scrape")).await;
    hook.next().await;
    let failed = attempt_with_status(&mut attempts, "pending").await;
    f.clock.advance(Duration::from_secs(5 * 60));
    events.next(&id, "assistance.expired").await;
    f.post(&format!("/accounts/{id}/notifications/{}/resend", failed.id))
        .await;
    let skipped = attempt_with_status(&mut attempts, "skipped").await;
    assert_eq!(skipped.id, failed.id);
    assert!(hook.got.try_recv().is_err(), "nothing reached the receiver");
}

#[tokio::test]
async fn a_hanging_receiver_does_not_hold_up_other_deliveries() {
    let f = webhook_fixture(&[("RECONBANKER_WEBHOOK_TIMEOUT_MS", "20000")]).await;
    let mut slow = receiver(vec![Answer::Hang]).await;
    let mut fast = receiver(vec![]).await;
    let a = subscribe(&f, "user_locked", "pass_locked", &slow.url, json!(["login_failed"])).await;
    let b = f
        .account(
            "user_good",
            "wrong-password",
            json!({"notification_endpoint_url": fast.url, "notification_events": ["login_failed"]}),
        )
        .await;
    f.post(&format!("/accounts/{a}/scrape")).await;
    slow.next().await; // A's delivery is now stuck in a send that lasts until the 20 s timeout.
    let started = std::time::Instant::now();
    f.post(&format!("/accounts/{b}/scrape")).await;
    let got = fast.next().await;
    assert_eq!(payload(&got.body).account_id, b);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "B was not held up by A: {:?}",
        started.elapsed()
    );
}
