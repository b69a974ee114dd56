//! Issue 12: crash tests of the real binary. A `reconbanker serve` process is killed with
//! SIGKILL at a bad moment and a new one is started on the same database and data directory
//! (the suite's backend: SQLite, or PostgreSQL with `RECONBANKER_TEST_BACKEND=postgres`).

use std::collections::{HashMap, HashSet};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::process::Site;
use crate::webhooks::{receiver, Answer};

/// Killed while a login waits for a code: after the restart the dead login's request is closed
/// (`assistance.cancelled`, reason `process_restart`), nothing is pending, and its code gets no 202.
#[tokio::test]
async fn kill_while_a_login_waits_for_a_code() {
    let site = Site::new().await;
    let server = site.serve(&[]).await;
    let token = server.user("crash-otp@example.com", "crash password 1234").await;
    let account = server
        .account(
            &token,
            "Waits for a code",
            json!({ "login_mode": "assisted", "bank_username": "user_otp", "bank_password": "pass_otp" }),
        )
        .await;
    let key = server.key(&token, &["status:read", "otp:write"], &[&account]).await;
    let mut events = server.events(&key, None).await;
    let r = server
        .dash(Method::POST, &format!("/accounts/{account}/scrape"), &token, None)
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let asked = events.next("assistance.requested").await;
    let request_id = asked.data["data"]["requestId"].as_str().expect("requestId").to_owned();
    drop(events);
    server.kill9();

    let server = site.serve(&[]).await;
    // Everything after the request, replayed from the store: its cancellation by the boot.
    let mut events = server.events(&key, Some(&asked.id)).await;
    let cancelled = events.next("assistance.cancelled").await;
    assert_eq!(cancelled.data["data"]["requestId"], request_id.as_str());
    assert_eq!(cancelled.data["data"]["reason"], "process_restart");

    let status = server
        .call(
            Method::GET,
            &format!("/v1/accounts/{account}/status"),
            Some(("x-api-key", &key)),
            None,
        )
        .await;
    assert_eq!(status.status, StatusCode::OK);
    assert!(status.body["pending_assistance"].is_null(), "{}", status.body);
    for body in [
        json!({ "code": "123456", "request_id": request_id }),
        json!({ "code": "123456" }),
    ] {
        let r = server
            .call(
                Method::POST,
                &format!("/v1/accounts/{account}/otp"),
                Some(("x-api-key", &key)),
                Some(body.clone()),
            )
            .await;
        assert_ne!(r.status, StatusCode::ACCEPTED, "a code for a dead login: {body}");
        assert!(r.status.is_client_error(), "{} {}", r.status, r.body);
    }
    let runs = server
        .dash(Method::GET, &format!("/accounts/{account}/runs"), &token, None)
        .await;
    assert_eq!(runs.status, StatusCode::OK);
    let runs = runs.body.as_array().cloned().unwrap_or_default();
    assert!(!runs.is_empty(), "the dead login's run is listed");
    assert!(
        runs.iter()
            .all(|r| r["ended_at"].is_string() || r["endedAt"].is_string()),
        "no run left open: {runs:?}"
    );
}

/// Killed while webhook deliveries are claimed and in flight (the receiver holds them): after
/// the restart every delivery arrives, each with the `webhook-id` of its first attempt.
#[tokio::test]
async fn kill_while_deliveries_are_claimed() {
    const ACCOUNTS: usize = 3;
    let site = Site::new().await;
    // The first attempts hang (in flight when the process dies); later ones are answered 200.
    let mut hook = receiver(vec![Answer::Hang; ACCOUNTS]).await;
    let env = [("RECONBANKER_WEBHOOK_TIMEOUT_MS", "60000")];
    let server = site.serve(&env).await;
    let token = server.user("crash-hooks@example.com", "crash password 1234").await;
    let mut accounts = Vec::new();
    for i in 0..ACCOUNTS {
        accounts.push(
            server
                .account(
                    &token,
                    &format!("Locked {i}"),
                    json!({
                        "login_mode": "assisted",
                        "bank_username": "user_locked",
                        "bank_password": "pass_locked",
                        "notification_endpoint_url": hook.url,
                        "notification_events": ["login_failed"],
                    }),
                )
                .await,
        );
    }
    for account in &accounts {
        let r = server
            .dash(Method::POST, &format!("/accounts/{account}/scrape"), &token, None)
            .await;
        assert!(r.status.is_success(), "{}", r.body);
    }
    let mut first: HashMap<String, String> = HashMap::new();
    for _ in 0..ACCOUNTS {
        let got = hook.next().await;
        let id = got
            .headers
            .get("webhook-id")
            .expect("webhook-id")
            .to_str()
            .expect("ascii")
            .to_owned();
        let body: serde_json::Value = serde_json::from_str(&got.body).expect("json");
        let account = account_of(&body);
        assert!(first.insert(account, id).is_none(), "one first attempt per account");
    }
    server.kill9();

    let _server = site.serve(&env).await;
    let mut again: HashMap<String, String> = HashMap::new();
    while again.len() < ACCOUNTS {
        let got = hook.next().await;
        let id = got
            .headers
            .get("webhook-id")
            .expect("webhook-id")
            .to_str()
            .expect("ascii")
            .to_owned();
        let body: serde_json::Value = serde_json::from_str(&got.body).expect("json");
        let account = account_of(&body);
        assert_eq!(first.get(&account), Some(&id), "re-sent with its first webhook-id");
        again.insert(account, id);
    }
    let expected: HashSet<&String> = first.keys().collect();
    assert_eq!(again.keys().collect::<HashSet<_>>(), expected);
    let mut ids: Vec<&String> = first.values().collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), ACCOUNTS, "a webhook-id per delivery");
}

fn account_of(body: &serde_json::Value) -> String {
    ["account_id", "accountId"]
        .iter()
        .find_map(|k| body[k].as_str().or(body["data"][k].as_str()))
        .unwrap_or_else(|| panic!("no account id in {body}"))
        .to_owned()
}

/// Killed during a burst of writes: after the restart every acknowledged write is there and the
/// database is intact (SQLite: `PRAGMA integrity_check`).
#[tokio::test]
async fn kill_during_a_burst_of_writes() {
    const WRITERS: usize = 8;
    const KILL_AFTER: usize = 60;
    let site = Site::new().await;
    let server = site.serve(&[("RECONBANKER_SANDBOX_BANK", "off")]).await;
    let token = server.user("crash-burst@example.com", "crash password 1234").await;
    let server = std::sync::Arc::new(server);
    let (acks, mut acked) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let server = server.clone();
        let token = token.clone();
        let acks = acks.clone();
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("burst {w}-{i}");
                let bearer = format!("Bearer {token}");
                let res = server
                    .client
                    .post(server.url("/me/api-keys"))
                    .header("authorization", &bearer)
                    .json(&json!({ "name": name, "scopes": ["status:read"] }))
                    .send()
                    .await;
                // The process dies under the burst: an unanswered write is not acknowledged.
                let Ok(res) = res else { return };
                if res.status() != StatusCode::CREATED {
                    return;
                }
                let Ok(body) = res.json::<serde_json::Value>().await else {
                    return;
                };
                if let Some(id) = body["id"].as_str() {
                    let _ = acks.send(id.to_owned());
                }
            }
        }));
    }
    drop(acks);
    let mut acknowledged = HashSet::new();
    while acknowledged.len() < KILL_AFTER {
        let id = tokio::time::timeout(crate::process::WAIT, acked.recv())
            .await
            .expect("writes are acknowledged")
            .expect("writers running");
        acknowledged.insert(id);
    }
    // SIGKILL now, with writes in flight.
    server.kill9();
    for w in writers {
        w.await.expect("writer");
    }
    while let Some(id) = acked.recv().await {
        acknowledged.insert(id);
    }

    let server = site.serve(&[("RECONBANKER_SANDBOX_BANK", "off")]).await;
    let ready = server.call(Method::GET, "/ready", None, None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    let token = {
        let r = server
            .call(
                Method::POST,
                "/auth/login",
                None,
                Some(json!({ "email": "crash-burst@example.com", "password": "crash password 1234" })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["token"].as_str().expect("token").to_owned()
    };
    let listed = server.dash(Method::GET, "/me/api-keys?limit=500", &token, None).await;
    assert_eq!(listed.status, StatusCode::OK);
    let stored: HashSet<String> = listed.body["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["id"].as_str().map(str::to_owned))
        .collect();
    let lost: Vec<&String> = acknowledged.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    // A write after the crash works.
    let r = server
        .dash(
            Method::POST,
            "/me/api-keys",
            &token,
            Some(json!({ "name": "after the crash", "scopes": ["status:read"] })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    drop(server);
    if site.is_sqlite() {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&site.database_url).await.expect("open");
        let check: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&mut conn)
            .await
            .expect("integrity_check");
        assert_eq!(check, "ok");
    }
}
