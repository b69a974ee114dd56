//! The outbox across instances: the webhooks queued on any instance are sent by whichever
//! instance's worker claims them — each one exactly once, none lost.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::Row;

use crate::harness::{self, Database, WAIT};

/// A local receiver answering 204 to every POST; what it heard, by `webhook-id`, in order.
struct Receiver {
    url: String,
    heard: Arc<Mutex<Vec<String>>>,
    arrived: Arc<tokio::sync::Notify>,
}

impl Receiver {
    async fn start() -> Self {
        let heard: Arc<Mutex<Vec<String>>> = Arc::default();
        let arrived = Arc::new(tokio::sync::Notify::new());
        let (h, a) = (heard.clone(), arrived.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap| {
                let (h, a) = (h.clone(), a.clone());
                async move {
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("(none)")
                        .to_owned();
                    h.lock().unwrap_or_else(|p| p.into_inner()).push(id);
                    a.notify_one();
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, heard, arrived }
    }

    fn heard(&self) -> Vec<String> {
        self.heard.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until `n` different webhooks have arrived.
    async fn until_distinct(&self, n: usize) {
        let wait = async {
            loop {
                let arrived = self.arrived.notified();
                if self.heard().iter().collect::<BTreeSet<_>>().len() >= n {
                    return;
                }
                arrived.await;
            }
        };
        tokio::time::timeout(WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("{n} webhooks within {WAIT:?}; heard {:?}", self.heard()));
    }
}

/// Three instances, each with every role; twelve accounts whose login fails (`user_locked`),
/// each asked to read on a different instance in turn, all at once. Every `login_failed`
/// webhook is queued by the instance that ran the login and raced for by the three webhook
/// workers. Once the instances have stopped (an attempt under way finishes first), the receiver
/// has heard every queued delivery exactly once, and each is recorded delivered after one
/// attempt.
#[tokio::test]
async fn every_webhook_queued_on_any_instance_is_delivered_exactly_once() {
    let Some(server) = harness::postgres_server() else {
        return;
    };
    const ACCOUNTS: usize = 12;
    let db = Database::create(&server).await;
    let (_bank, bank_url) = harness::sandbox_bank().await;
    let hook = Receiver::start().await;
    let env = [
        ("RECONBANKER_SANDBOX_BANK", bank_url.as_str()),
        ("RECONBANKER_ALLOW_PRIVATE_TARGETS", "true"),
    ];
    let instances = harness::start_many(&db.url, 3, &env).await;
    let token = instances[0].user("hooks@example.com").await;
    let mut accounts = Vec::new();
    for n in 0..ACCOUNTS {
        let on = &instances[n % instances.len()];
        let account = on.account(&token, &format!("Locked {n}")).await;
        on.dash(
            Method::PUT,
            &format!("/accounts/{account}/config"),
            &token,
            Some(json!({
                "bank_username": "user_locked",
                "bank_password": "pass_locked",
                "notification_endpoint_url": hook.url,
                "notification_events": ["login_failed"],
            })),
        )
        .await
        .expect(StatusCode::OK);
        accounts.push(account);
    }
    let reads = accounts.iter().enumerate().map(|(n, account)| {
        let on = &instances[(n + 1) % instances.len()];
        let (path, token) = (format!("/accounts/{account}/scrape"), token.clone());
        async move { on.dash(Method::POST, &path, &token, None).await }
    });
    for r in futures_util::future::join_all(reads).await {
        assert!(r.status.is_success(), "{}", r.text);
    }
    hook.until_distinct(ACCOUNTS).await;
    // Stopped, no instance has an attempt under way: what the receiver heard is final.
    for i in instances {
        assert!(i.stop().success());
    }

    let mut conn = db.connect().await;
    let rows = sqlx::query("SELECT id, event_type, status, attempts FROM deliveries")
        .fetch_all(&mut conn)
        .await
        .expect("deliveries");
    let mut queued = BTreeSet::new();
    for r in &rows {
        let id: uuid::Uuid = r.get("id");
        let (kind, status, attempts): (String, String, i32) = (r.get("event_type"), r.get("status"), r.get("attempts"));
        assert_eq!(
            (kind.as_str(), status.as_str(), attempts),
            ("login_failed", "delivered", 1),
            "delivery {id}"
        );
        queued.insert(id.to_string());
    }
    assert_eq!(queued.len(), ACCOUNTS, "one login_failed webhook per account");
    let mut heard: BTreeMap<String, usize> = BTreeMap::new();
    for id in hook.heard() {
        *heard.entry(id).or_default() += 1;
    }
    let twice: Vec<_> = heard.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "webhooks sent more than once: {twice:?}");
    assert_eq!(heard.keys().cloned().collect::<BTreeSet<_>>(), queued);
    drop(conn);
}
