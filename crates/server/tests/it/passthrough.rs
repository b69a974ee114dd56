//! Reconciliation, end to end: passthrough (docs/reconciliation.md §7). The real app, the real
//! sandbox bank (a tagged user of its own per test, movements added with `add_movement`), a
//! session that reads them (`POST /accounts/:id/scrape`, then `scrape.succeeded`), and the
//! signed `bank_movement` webhooks caught by a local receiver and checked by the independent
//! Standard Webhooks verifier of `webhooks.rs`. What was written to the outbox is read from the
//! store: a delivery is written in the transaction that stores its movement, so once the read
//! has succeeded, "no delivery" means nothing will ever be sent.

use std::time::Duration;

use reconbanker_store::{now, AccountId, DeliveryRow, UserId, BANK_MOVEMENT, CHANNEL_RESULT};
use reqwest::{Method, StatusCode};
use sandbox_bank::{AddMovement, BankConfig};
use serde_json::{json, Value};

use crate::harness::{BankFixture, ConfigOut};
use crate::reconcile::{Answer as OrdersAnswer, Orders};
use crate::webhooks::{receiver, verifies, Received, Receiver};

/// A user in `mode` with an account on its own tagged sandbox user, sending result webhooks
/// (and so forwarded movements) to a local receiver.
struct Pass {
    f: BankFixture,
    account: String,
    username: String,
    hooks: Receiver,
    user: UserId,
}

impl Pass {
    async fn new(tag: &str, mode: &str, config: Value) -> Self {
        // No deterministic movement appears during a test: only the ones it adds are new.
        let bank = BankConfig {
            movement_interval: Duration::from_secs(86_400),
            ..BankConfig::default()
        };
        let f = BankFixture::with(&[("RECONBANKER_WEBHOOK_BACKOFF_MS", "10")], bank).await;
        let r = f
            .app
            .json(
                Method::PUT,
                "/me/operation-mode",
                Some(&f.token),
                Some(json!({"mode": mode})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let hooks = receiver(Vec::new()).await;
        let username = format!("user_good+{tag}");
        let mut fields = json!({"webhook_url": hooks.url, "webhook_auth_token": "result-token-7",
                                "webhook_extra_fields": {"shop": "eu-1"}});
        if let (Some(all), Some(more)) = (fields.as_object_mut(), config.as_object()) {
            all.extend(more.clone());
        }
        let account = f.account(&username, "pass_good", fields).await;
        let me = f.app.get("/me", &f.token).await;
        let user = me.body["id"].as_str().and_then(|s| s.parse().ok()).expect("user id");
        Self {
            f,
            account,
            username,
            hooks,
            user: UserId(user),
        }
    }

    fn account_id(&self) -> AccountId {
        self.account.parse().expect("account id")
    }

    /// Adds a movement to the bank; returns its description (unique per test).
    fn add(&self, amount: &str, name: Option<&str>, description: &str, received_at: Option<&str>) -> String {
        self.f
            .bank
            .add_movement(AddMovement {
                username: self.username.clone(),
                amount: amount.into(),
                currency: "UYU".into(),
                name: name.map(str::to_owned),
                description: description.into(),
                received_at: received_at.map(|t| {
                    chrono::DateTime::parse_from_rfc3339(t)
                        .expect("an RFC 3339 date")
                        .with_timezone(&chrono::Utc)
                }),
            })
            .expect("movement added");
        description.to_owned()
    }

    /// Reads the bank now and waits until the read is stored and its session has ended.
    async fn read_bank(&self) {
        let mut events = self.f.app.events().await;
        let r = self.f.post(&format!("/accounts/{}/scrape", self.account)).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        events.next(&self.account, "scrape.succeeded").await;
        // A scrape asked for while a one-shot session is still ending is not run again (the
        // engine pokes the ending session): the next read starts once this one has stopped.
        events.next(&self.account, "session.stopped").await;
    }

    async fn movements(&self) -> Vec<Value> {
        let r = self
            .f
            .app
            .get(
                &format!("/accounts/{}/movements?limit=500", self.account),
                &self.f.token,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body.as_array().cloned().expect("an array")
    }

    /// The requests and the movements, as the dashboard lists them.
    async fn snapshot(&self) -> (Value, Vec<Value>) {
        let requests = self.f.app.get("/conciliation", &self.f.token).await;
        assert_eq!(requests.status, StatusCode::OK, "{}", requests.text);
        (requests.body, self.movements().await)
    }

    /// The stored movement with this description.
    async fn movement(&self, description: &str) -> Value {
        let all = self.movements().await;
        let found: Vec<&Value> = all.iter().filter(|m| m["description"] == description).collect();
        assert_eq!(found.len(), 1, "{description}: {all:?}");
        found[0].clone()
    }

    /// The account's `bank_movement` deliveries in the outbox.
    async fn forwarded(&self) -> Vec<DeliveryRow> {
        let all = self
            .f
            .app
            .state
            .store
            .list_deliveries(self.user, self.account_id(), 500, 0)
            .await
            .expect("deliveries");
        all.into_iter().filter(|d| d.event_type == BANK_MOVEMENT).collect()
    }

    async fn secret(&self) -> String {
        let c: ConfigOut = self
            .f
            .app
            .get_as(
                &format!("/accounts/{}/config", self.account),
                &self.f.token,
                StatusCode::OK,
            )
            .await;
        c.webhook_signing_secret
    }

    async fn notify(&self, movement: &str, token: &str) -> crate::harness::Res {
        self.f
            .app
            .json(
                Method::POST,
                &format!("/accounts/{}/movements/{movement}/notify", self.account),
                Some(token),
                None,
            )
            .await
    }

    async fn set_mode(&self, mode: &str) {
        let r = self
            .f
            .app
            .json(
                Method::PUT,
                "/me/operation-mode",
                Some(&self.f.token),
                Some(json!({"mode": mode})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
}

fn header(got: &Received, name: &str) -> Option<String> {
    got.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// The exact documented body of a forwarded movement, with the account's extra field.
fn expected(m: &Value, amount: &str, name: &str, received_at: &str) -> String {
    format!(
        r#"{{"id":"{}","amount":{amount},"currency":"UYU","name":"{name}","received_at":"{received_at}","shop":"eu-1"}}"#,
        m["id"].as_str().expect("id")
    )
}

#[tokio::test]
async fn new_movements_are_forwarded_once_signed_with_the_documented_body_but_not_the_first_read() {
    let mut p = Pass::new("pt1", "passthrough", json!({})).await;
    // The first read: the bank's history (five deterministic movements, some named) and a
    // named transfer. A baseline: stored, not forwarded.
    let base = p.add("700.00", Some("HISTORIA SA"), "pt1 history", None);
    p.read_bank().await;
    assert_eq!(p.movements().await.len(), 6);
    p.movement(&base).await;
    assert!(p.forwarded().await.is_empty(), "the first read is not forwarded");

    // New: a credit and a debit with names, one without a name, one with a blank name.
    let credit = p.add(
        "1500",
        Some("JUAN PEREZ"),
        "pt1 credit",
        Some("2026-05-13T12:30:00-03:00"),
    );
    let debit = p.add("-250.5", Some("ACME SA"), "pt1 debit", Some("2026-05-13T16:00:00Z"));
    let unnamed = p.add("10.00", None, "pt1 unnamed", None);
    let blank = p.add("11.00", Some("   "), "pt1 blank", None);
    p.read_bank().await;
    let (credit, debit) = (p.movement(&credit).await, p.movement(&debit).await);
    p.movement(&unnamed).await;
    p.movement(&blank).await;

    let secret = p.secret().await;
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let got = p.hooks.next().await;
        assert!(
            verifies(&secret, &got.headers, &got.body),
            "signed with webhook_signing_secret"
        );
        assert_eq!(header(&got, "authorization").as_deref(), Some("Bearer result-token-7"));
        assert_eq!(header(&got, "content-type").as_deref(), Some("application/json"));
        assert_eq!(header(&got, "accept").as_deref(), Some("application/json"));
        assert!(header(&got, "user-agent").is_some_and(|u| u.starts_with("Reconbanker/")));
        assert!(header(&got, "webhook-id").is_some());
        bodies.push(got.body);
    }
    bodies.sort();
    let mut want = vec![
        expected(&credit, "1500.00", "JUAN PEREZ", "2026-05-13T15:30:00.000Z"),
        expected(&debit, "-250.50", "ACME SA", "2026-05-13T16:00:00.000Z"),
    ];
    want.sort();
    assert_eq!(
        bodies, want,
        "exactly the documented fields, then the extra ones; no status"
    );
    let body: Value = serde_json::from_str(&bodies[0]).expect("json");
    assert!(body.get("status").is_none());

    // Read again: nothing new, nothing sent twice. The next webhook is the next new movement.
    p.read_bank().await;
    let next = p.add(
        "42.10",
        Some("ANA LOPEZ"),
        "pt1 next",
        Some("2026-05-14T09:00:00.250+02:00"),
    );
    p.read_bank().await;
    let next = p.movement(&next).await;
    let got = p.hooks.next().await;
    assert_eq!(
        got.body,
        expected(&next, "42.10", "ANA LOPEZ", "2026-05-14T07:00:00.000Z")
    );

    let out = p.forwarded().await;
    assert_eq!(out.len(), 3, "{out:?}");
    let subjects: Vec<String> = out.iter().filter_map(|d| d.subject_id.map(|s| s.to_string())).collect();
    for m in [&credit, &debit, &next] {
        assert!(subjects.iter().any(|s| m["id"] == *s), "{m} in {subjects:?}");
    }
    assert!(out.iter().all(|d| d.channel == CHANNEL_RESULT));
}

#[tokio::test]
async fn silent_ingestion_stores_but_forwards_nothing() {
    let p = Pass::new("pt2", "passthrough", json!({"silent_ingestion": true})).await;
    p.read_bank().await;
    let m = p.add("1500.00", Some("JUAN PEREZ"), "pt2 credit", None);
    p.read_bank().await;
    p.movement(&m).await;
    assert!(p.forwarded().await.is_empty());
}

#[tokio::test]
async fn reconcile_mode_forwards_nothing() {
    let p = Pass::new("pt3", "reconcile", json!({})).await;
    p.read_bank().await;
    let m = p.add("1500.00", Some("JUAN PEREZ"), "pt3 credit", None);
    p.read_bank().await;
    p.movement(&m).await;
    assert!(p.forwarded().await.is_empty());
    // Nor by hand.
    let m = p.movement(&m).await;
    p.notify(m["id"].as_str().expect("id"), &p.f.token)
        .await
        .assert_api_error(409, "NOT_PASSTHROUGH_MODE");
    assert!(p.forwarded().await.is_empty());
}

#[tokio::test]
async fn a_movement_is_sent_by_hand_with_the_same_webhook_id_each_time() {
    let mut p = Pass::new("pt4", "passthrough", json!({})).await;
    let base = p.add(
        "99.90",
        Some("MARIA GOMEZ"),
        "pt4 history",
        Some("2026-05-10T10:00:00Z"),
    );
    let unnamed = p.add("5.00", None, "pt4 unnamed", None);
    p.read_bank().await;
    let (base, unnamed) = (p.movement(&base).await, p.movement(&unnamed).await);
    assert!(p.forwarded().await.is_empty());
    let secret = p.secret().await;

    // A baseline movement has no delivery: one is created.
    let id = base["id"].as_str().expect("id");
    let r = p.notify(id, &p.f.token).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body, json!({"queued": true}));
    let first = p.hooks.next().await;
    assert!(verifies(&secret, &first.headers, &first.body));
    assert_eq!(
        first.body,
        expected(&base, "99.90", "MARIA GOMEZ", "2026-05-10T10:00:00.000Z")
    );
    // Again: the same delivery, so the same webhook-id (the receiver's idempotency key).
    let r = p.notify(id, &p.f.token).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let second = p.hooks.next().await;
    assert_eq!(header(&second, "webhook-id"), header(&first, "webhook-id"));
    assert_eq!(second.body, first.body);
    assert!(verifies(&secret, &second.headers, &second.body));

    // A movement forwarded when read: the resend is that delivery again.
    let new = p.add("12.00", Some("LUIS DIAZ"), "pt4 new", None);
    p.read_bank().await;
    let auto = p.hooks.next().await;
    let new = p.movement(&new).await;
    let r = p.notify(new["id"].as_str().expect("id"), &p.f.token).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let resent = p.hooks.next().await;
    assert_eq!(header(&resent, "webhook-id"), header(&auto, "webhook-id"));
    assert_eq!(resent.body, auto.body);
    assert_eq!(p.forwarded().await.len(), 2, "one delivery per movement");

    // No sender name.
    p.notify(unnamed["id"].as_str().expect("id"), &p.f.token)
        .await
        .assert_api_error(409, "NO_SENDER_NAME");

    // Unknown, malformed, another account's: 404. Another user: 404 for the account.
    p.notify(&uuid::Uuid::now_v7().to_string(), &p.f.token)
        .await
        .assert_api_error(404, "NOT_FOUND");
    p.notify("not-a-uuid", &p.f.token)
        .await
        .assert_api_error(404, "NOT_FOUND");
    let other = p.f.account("user_good+pt4b", "pass_good", json!({})).await;
    let r =
        p.f.app
            .json(
                Method::POST,
                &format!("/accounts/{other}/movements/{id}/notify"),
                Some(&p.f.token),
                None,
            )
            .await;
    r.assert_api_error(404, "NOT_FOUND");
    let stranger = p.f.app.user("stranger@example.com").await;
    let r =
        p.f.app
            .json(
                Method::PUT,
                "/me/operation-mode",
                Some(&stranger),
                Some(json!({"mode": "passthrough"})),
            )
            .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    p.notify(id, &stranger).await.assert_api_error(404, "NOT_FOUND");

    // Back in reconcile mode: refused, and nothing was created.
    p.set_mode("reconcile").await;
    p.notify(id, &p.f.token)
        .await
        .assert_api_error(409, "NOT_PASSTHROUGH_MODE");
    assert_eq!(p.forwarded().await.len(), 2);
}

#[tokio::test]
async fn switching_modes_keeps_requests_matches_and_movements_and_holds_reconciliation_work() {
    let orders = Orders::start().await;
    let mut p = Pass::new("pt5", "reconcile", json!({"pending_orders_endpoint": orders.url})).await;
    let account = p.account_id();
    // The fixture holds the background poller off the new account: this poll is the only one.
    let poll = |list: Value| {
        orders.answer(OrdersAnswer::Json(list));
        p.f.app.state.poller.poll(account)
    };
    let order = |id: &str, amount: &str, name: &str| json!({"external_id": id, "amount": amount, "currency": "UYU", "name": name});
    let list = json!([order("A", "1500.00", "Juan Perez"), order("B", "200.00", "Ana Lopez")]);
    let row = poll(list.clone()).await.expect("poll").expect("polled");
    assert_eq!(row.outcome, "succeeded");

    // Reconcile: A's transfer is matched and reported.
    let mut events = p.f.app.events().await;
    p.add("1500.00", Some("JUAN PEREZ"), "pt5 A", None);
    p.read_bank().await;
    events.next(&p.account, "conciliation.matched").await;
    let got = p.hooks.next().await;
    let body: Value = serde_json::from_str(&got.body).expect("json");
    assert_eq!(
        (body["external_id"].as_str(), body["status"].as_str()),
        (Some("A"), Some("matched"))
    );

    let (requests, movements) = p.snapshot().await;
    assert_eq!(requests.as_array().map(Vec::len), Some(2));
    let matched_movement = movements
        .iter()
        .find(|m| m["description"] == "pt5 A")
        .expect("A's movement");
    assert_eq!(matched_movement["match"]["external_id"], "A");

    // Passthrough: nothing is deleted; no poll, no pass.
    p.set_mode("passthrough").await;
    assert_eq!(p.snapshot().await, (requests.clone(), movements.clone()));
    p.f.post(&format!("/conciliation/poll/{}", p.account))
        .await
        .assert_api_error(409, "NOT_RECONCILE_MODE");
    let store = &p.f.app.state.store;
    let far = now() + chrono::Duration::days(1);
    assert!(!store.due_polls(far, 1000).await.expect("due").contains(&account));

    // B's transfer is forwarded as it is, and stays unmatched: the account is dirty but the
    // match worker does not list it.
    let b = p.add("200.00", Some("ANA LOPEZ"), "pt5 B", None);
    p.read_bank().await;
    let b = p.movement(&b).await;
    let got = p.hooks.next().await;
    assert!(verifies(&p.secret().await, &got.headers, &got.body));
    let instant = chrono::DateTime::parse_from_rfc3339(b["received_at"].as_str().expect("a date"))
        .expect("the bank's RFC 3339 date")
        .with_timezone(&chrono::Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    assert_eq!(got.body, expected(&b, "200.00", "ANA LOPEZ", &instant));
    let st = store
        .reconcile_state(account)
        .await
        .expect("state")
        .expect("a state row");
    assert!(st.dirty_seq > st.done_seq, "{st:?}");
    assert!(!store
        .dirty_accounts(1000)
        .await
        .expect("dirty")
        .iter()
        .any(|(a, _)| *a == account));
    let r = p.f.app.get("/conciliation?external_id=B", &p.f.token).await;
    assert_ne!(r.body[0]["status"], "matched", "{}", r.text);
    assert!(b["match"].is_null());

    // Back to reconcile: the work held back resumes (B is matched, reported once), polls are
    // due again, and still nothing was lost.
    let mut events = p.f.app.events().await;
    p.set_mode("reconcile").await;
    let matched = events.next(&p.account, "conciliation.matched").await;
    assert_eq!(matched.data["external_id"], "B");
    let got = p.hooks.next().await;
    let body: Value = serde_json::from_str(&got.body).expect("json");
    assert_eq!(
        (body["external_id"].as_str(), body["status"].as_str()),
        (Some("B"), Some("matched"))
    );
    assert_eq!(body["movement"]["id"], b["id"]);
    assert!(store.due_polls(far, 1000).await.expect("due").contains(&account));
    let (requests, after) = p.snapshot().await;
    let statuses: Vec<&str> = requests
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["status"].as_str())
        .collect();
    assert_eq!(statuses, vec!["matched", "matched"]);
    assert_eq!(after.len(), movements.len() + 1);
    let row = poll(list).await.expect("poll").expect("polled");
    assert_eq!((row.outcome.as_str(), row.counts.already_matched), ("succeeded", 2));
}
