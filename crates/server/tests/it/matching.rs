//! Matching, end to end (docs/reconciliation.md §5, §6): orders from a scripted orders server,
//! transfers added to the real sandbox bank, a session that reads them, the match worker, and the
//! signed result webhook caught by a local receiver and checked by an independent verifier.

use reqwest::{Method, StatusCode};
use sandbox_bank::{AddMovement, BankConfig};
use serde_json::{json, Value};

use crate::harness::{BankFixture, ConfigOut, MovementMatchOut, MovementOut};
use crate::reconcile::{Answer as OrdersAnswer, Orders};
use crate::webhooks::{receiver, verifies, Receiver};

/// A reconciling shop (shared with the expiry and invariant proofs in `expiry.rs`).
pub(crate) struct Shop {
    pub(crate) f: BankFixture,
    pub(crate) account: String,
    pub(crate) username: String,
    pub(crate) orders: Orders,
    pub(crate) hooks: Receiver,
}

impl Shop {
    /// A reconciling user with an account on its own tagged sandbox user, polling a scripted
    /// orders server and sending results to a local receiver.
    async fn new(tag: &str) -> Self {
        Self::with(tag, json!({})).await
    }

    /// [`Shop::new`] with more account config fields (`config` is merged over the defaults).
    pub(crate) async fn with(tag: &str, config: Value) -> Self {
        let f = BankFixture::with(&[("RECONBANKER_WEBHOOK_BACKOFF_MS", "10")], BankConfig::default()).await;
        let r = f
            .app
            .json(
                Method::PUT,
                "/me/operation-mode",
                Some(&f.token),
                Some(json!({"mode": "reconcile"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let orders = Orders::start().await;
        let hooks = receiver(Vec::new()).await;
        let username = format!("user_good+{tag}");
        let mut settings = json!({"pending_orders_endpoint": orders.url, "webhook_url": hooks.url,
                                  "webhook_auth_token": "result-token-9", "webhook_extra_fields": {"shop": "eu-1"}});
        if let (Some(s), Some(c)) = (settings.as_object_mut(), config.as_object()) {
            s.extend(c.clone());
        }
        let account = f.account(&username, "pass_good", settings).await;
        Self {
            f,
            account,
            username,
            orders,
            hooks,
        }
    }

    pub(crate) async fn poll(&self, orders: Value) {
        self.poll_answer(OrdersAnswer::Json(orders)).await;
    }

    /// One successful poll now, in process, with the orders server answering `answer`.
    pub(crate) async fn poll_answer(&self, answer: OrdersAnswer) -> reconbanker_store::PollRow {
        self.orders.answer(answer);
        let row = self
            .f
            .app
            .state
            .poller
            .poll(self.account.parse().expect("id"))
            .await
            .expect("poll")
            .expect("polled");
        assert_eq!(row.outcome, "succeeded", "{row:?}");
        row
    }

    pub(crate) fn transfer(&self, amount: &str, name: Option<&str>, description: &str) -> String {
        self.f
            .bank
            .add_movement(AddMovement {
                username: self.username.clone(),
                amount: amount.into(),
                currency: "UYU".into(),
                name: name.map(str::to_owned),
                description: description.into(),
                received_at: None,
            })
            .expect("movement added")
    }

    /// Reads the bank now and waits for the session to finish storing what it read.
    pub(crate) async fn read_bank(&self) {
        let mut events = self.f.app.events().await;
        let r = self.f.post(&format!("/accounts/{}/scrape", self.account)).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        events.next(&self.account, "scrape.succeeded").await;
    }

    /// The account's movements, as the dashboard lists them.
    pub(crate) async fn movements(&self) -> Vec<MovementOut> {
        self.f
            .app
            .get_as(
                &format!("/accounts/{}/movements", self.account),
                &self.f.token,
                StatusCode::OK,
            )
            .await
    }

    /// `(external_id, code)` of each issue of the newest poll (the id when it was readable).
    pub(crate) async fn last_poll_issues(&self) -> Vec<(Option<String>, String)> {
        let polls = self
            .f
            .app
            .get(&format!("/accounts/{}/polls", self.account), &self.f.token)
            .await;
        assert_eq!(polls.status, StatusCode::OK, "{}", polls.text);
        polls.body[0]["issues"]
            .as_array()
            .expect("issues")
            .iter()
            .map(|i| {
                (
                    i["external_id"].as_str().map(str::to_owned),
                    i["code"].as_str().expect("code").to_owned(),
                )
            })
            .collect()
    }

    pub(crate) async fn request(&self, external_id: &str) -> Value {
        let r = self
            .f
            .app
            .get(&format!("/conciliation?external_id={external_id}"), &self.f.token)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body[0].clone()
    }

    pub(crate) async fn result_secret(&self) -> String {
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
}

pub(crate) fn order(id: &str, amount: &str, name: &str) -> Value {
    json!({"external_id": id, "amount": amount, "currency": "UYU", "name": name})
}

#[tokio::test]
async fn a_matching_transfer_is_reported_by_a_signed_result_webhook() {
    let mut shop = Shop::new("m1").await;
    let mut events = shop.f.app.events().await;
    shop.poll(json!([order("ORDER-1234", "1500.00", "José Pérez-Gómez")]))
        .await;
    shop.transfer("1500", Some("JOSE PEREZ GOMEZ"), "Transferencia");
    shop.read_bank().await;
    let matched = events.next(&shop.account, "conciliation.matched").await;
    assert_eq!(matched.data["external_id"], "ORDER-1234");
    assert_eq!(matched.data["matched_by"], "engine");

    let got = shop.hooks.next().await;
    assert!(
        verifies(&shop.result_secret().await, &got.headers, &got.body),
        "signed with webhook_signing_secret"
    );
    let header = |n: &str| got.headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(header("authorization").as_deref(), Some("Bearer result-token-9"));
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    assert!(header("webhook-id").is_some());
    // The documented five fields first, exactly, then ours, then the account's extras.
    assert!(
        got.body.starts_with(
            r#"{"external_id":"ORDER-1234","status":"matched","amount":1500.00,"currency":"UYU","name":"José Pérez-Gómez","request_id":""#
        ),
        "{}",
        got.body
    );
    let body: Value = serde_json::from_str(&got.body).expect("json");
    let request = shop.request("ORDER-1234").await;
    assert_eq!(request["status"], "matched");
    assert_eq!(body["request_id"], request["id"]);
    assert_eq!(body["movement"]["amount"], json!(1500.0));
    assert!(
        got.body.contains(r#""movement":{"id":""#)
            && got
                .body
                .contains(r#""amount":1500.00,"currency":"UYU","name":"JOSE PEREZ GOMEZ""#)
    );
    assert_eq!(body["shop"], "eu-1");
    assert!(body["occurred_at"].as_str().is_some_and(|t| t.ends_with('Z')));

    // The movements list shows which request each movement settled.
    let movements = shop.movements().await;
    let settled: Vec<_> = movements
        .iter()
        .filter_map(|m| m.matched.as_ref().map(|x| (&m.id, x)))
        .collect();
    assert_eq!(settled.len(), 1, "{movements:?}");
    assert_eq!(settled[0].0, body["movement"]["id"].as_str().expect("movement id"));
    assert_eq!(
        settled[0].1,
        &MovementMatchOut {
            request_id: request["id"].as_str().expect("id").to_owned(),
            external_id: "ORDER-1234".into(),
        }
    );
    assert!(movements.iter().all(|m| m.ignored_at.is_none()));
}

#[tokio::test]
async fn two_identical_transfers_make_the_order_ambiguous_and_a_loose_name_is_not_matched() {
    let mut shop = Shop::new("m2").await;
    let mut events = shop.f.app.events().await;
    shop.poll(json!([
        order("AMB-1", "250.00", "Juan Perez"),
        order("LOOSE-1", "777.00", "Juan Perez")
    ]))
    .await;
    shop.transfer("250.00", Some("JUAN PEREZ"), "first");
    shop.transfer("250.00", Some("PEREZ JUAN"), "second");
    shop.transfer("777.00", Some("MARIA PEREZ"), "not the same person");
    shop.read_bank().await;
    let ambiguous = events.next(&shop.account, "conciliation.ambiguous").await;
    assert_eq!(ambiguous.data["external_id"], "AMB-1");
    assert_eq!(ambiguous.data["candidate_ids"].as_array().map(Vec::len), Some(2));
    let got = shop.hooks.next().await;
    let body: Value = serde_json::from_str(&got.body).expect("json");
    assert_eq!(
        (body["external_id"].as_str(), body["status"].as_str()),
        (Some("AMB-1"), Some("ambiguous"))
    );
    assert!(body.get("movement").is_none(), "only a match names the movement");
    assert_eq!(shop.request("AMB-1").await["status"], "ambiguous");
    let loose = shop.request("LOOSE-1").await;
    assert_eq!(loose["status"], "not_found");
    assert_eq!(loose["reason"], "weak_name_only");
}

#[tokio::test]
async fn an_ambiguous_order_is_announced_once_while_its_candidates_change() {
    let mut shop = Shop::new("m2b").await;
    let mut events = shop.f.app.events().await;
    shop.poll(json!([order("AMB-2", "300.00", "Ana Gomez")])).await;
    for d in ["one", "two", "three"] {
        shop.transfer("300.00", Some("ANA GOMEZ"), d);
    }
    shop.read_bank().await;
    let ambiguous = events.next(&shop.account, "conciliation.ambiguous").await;
    assert_eq!(ambiguous.data["candidate_ids"].as_array().map(Vec::len), Some(3));
    let hook: Value = serde_json::from_str(&shop.hooks.next().await.body).expect("json");
    assert_eq!(hook["status"], "ambiguous");

    // One candidate ignored: still ambiguous between the other two. The new candidate set is an
    // attempt; it is not a second entry into `ambiguous` (RECONCILIATION §5.6: once per entry).
    let movements = shop.movements().await;
    let id_of = |description: &str| {
        movements
            .iter()
            .find(|m| m.description == description)
            .map(|m| m.id.clone())
            .expect("movement listed")
    };
    let path = |m: String| format!("/accounts/{}/movements/{m}/ignore", shop.account);
    assert_eq!(shop.f.post(&path(id_of("one"))).await.status, StatusCode::OK);
    let account = shop.account.parse().expect("account id");
    shop.f.app.state.matcher.pass(account).await.expect("pass");
    let listed = shop.request("AMB-2").await;
    let detail = format!("/conciliation/{}", listed["id"].as_str().expect("id"));
    let request = shop.f.app.get(&detail, &shop.f.token).await.body;
    assert_eq!(request["status"], "ambiguous");
    let attempts = request["attempts"].as_array().expect("attempts");
    let last = attempts.last().expect("an attempt");
    assert_eq!(last["result"], "ambiguous", "{request}");
    assert_eq!(last["candidates"].as_array().map(Vec::len), Some(2), "{request}");

    // A second ignored: the last candidate settles it.
    assert_eq!(shop.f.post(&path(id_of("two"))).await.status, StatusCode::OK);
    loop {
        let e = events.next_any(&shop.account).await;
        assert_ne!(e.kind, "conciliation.ambiguous", "announced again: {:?}", e.data);
        if e.kind == "conciliation.matched" {
            break;
        }
    }
    let hook: Value = serde_json::from_str(&shop.hooks.next().await.body).expect("json");
    assert_eq!(
        hook["status"], "matched",
        "the webhook after the one ambiguous is the match"
    );
}

#[tokio::test]
async fn an_order_whose_only_transfer_settled_another_is_told_so() {
    let mut shop = Shop::new("m2c").await;
    let mut events = shop.f.app.events().await;
    shop.poll(json!([order("S-1", "1500.00", "Juan Perez")])).await;
    shop.transfer("1500.00", Some("JUAN PEREZ"), "the one transfer");
    shop.read_bank().await;
    events.next(&shop.account, "conciliation.matched").await;
    let _ = shop.hooks.next().await;

    // A second order of the same amount and name, in a later poll: the transfer is taken.
    shop.poll(json!([
        order("S-1", "1500.00", "Juan Perez"),
        order("S-2", "1500.00", "Juan Perez")
    ]))
    .await;
    let listed = shop.request("S-2").await;
    assert_eq!(
        (listed["status"].as_str(), listed["reason"].as_str()),
        (Some("not_found"), Some("candidates_taken")),
        "{listed}"
    );
    let detail = format!("/conciliation/{}", listed["id"].as_str().expect("id"));
    let request = shop.f.app.get(&detail, &shop.f.token).await.body;
    let attempt = request["attempts"]
        .as_array()
        .and_then(|a| a.last())
        .expect("an attempt");
    let verdicts: Vec<&str> = attempt["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .filter_map(|c| c["verdict"].as_str())
        .collect();
    assert_eq!(verdicts, ["taken"], "{attempt}");
}

#[tokio::test]
async fn an_order_registered_after_its_transfer_still_matches() {
    let mut shop = Shop::new("m3").await;
    shop.transfer("99.90", Some("ACME SRL"), "Pago factura");
    shop.read_bank().await;
    let mut events = shop.f.app.events().await;
    shop.poll(json!([order("LATE-1", "99.9", "Acme S.R.L.")])).await;
    let matched = events.next(&shop.account, "conciliation.matched").await;
    assert_eq!(matched.data["external_id"], "LATE-1");
    let got = shop.hooks.next().await;
    assert!(got.body.contains(r#""amount":99.90,"#), "{}", got.body);
}
