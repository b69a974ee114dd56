//! The reconciliation review API, end to end (docs/reconciliation.md §8, §9): a request's
//! detail, manual resolve and reject, run, notify, the summary, movement ignore, and the result
//! webhook's delivery log — against the real app, the sandbox bank, a scripted orders server and
//! a local webhook receiver checked by an independent Standard Webhooks verifier.

use reqwest::{Method, StatusCode};
use sandbox_bank::{AddMovement, BankConfig};
use serde_json::{json, Value};

use crate::harness::{BankFixture, ConfigOut, Res};
use crate::reconcile::{Answer as OrdersAnswer, Orders};
use crate::webhooks::{receiver, verifies, Answer as HookAnswer, Received, Receiver};

pub(crate) struct Shop {
    pub(crate) f: BankFixture,
    pub(crate) account: String,
    pub(crate) username: String,
    pub(crate) orders: Orders,
    pub(crate) hooks: Receiver,
}

impl Shop {
    /// A reconciling user with an account on its own tagged sandbox user, polling a scripted
    /// orders server and sending results to a local receiver that first answers `script`.
    pub(crate) async fn new(tag: &str, backoff_ms: &str, script: Vec<HookAnswer>) -> Self {
        let f = BankFixture::with(&[("RECONBANKER_WEBHOOK_BACKOFF_MS", backoff_ms)], BankConfig::default()).await;
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
        let hooks = receiver(script).await;
        let username = format!("user_good+{tag}");
        let account = f
            .account(
                &username,
                "pass_good",
                json!({"pending_orders_endpoint": orders.url, "webhook_url": hooks.url}),
            )
            .await;
        Self {
            f,
            account,
            username,
            orders,
            hooks,
        }
    }

    pub(crate) async fn poll(&self, orders: Value) {
        self.orders.answer(OrdersAnswer::Json(orders));
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
    }

    pub(crate) fn transfer(&self, amount: &str, name: &str, description: &str) {
        self.f
            .bank
            .add_movement(AddMovement {
                username: self.username.clone(),
                amount: amount.into(),
                currency: "UYU".into(),
                name: Some(name.to_owned()),
                description: description.into(),
                received_at: None,
            })
            .expect("movement added");
    }

    /// Reads the bank now and waits for the session to finish storing what it read.
    pub(crate) async fn read_bank(&self) {
        let mut events = self.f.app.events().await;
        let r = self.f.post(&format!("/accounts/{}/scrape", self.account)).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        events.next(&self.account, "scrape.succeeded").await;
    }

    /// Runs a match pass of the account now (the worker may run one too: the commit is a
    /// compare-and-set, so after this returns every change so far has been evaluated).
    pub(crate) async fn settle(&self) {
        self.f
            .app
            .state
            .matcher
            .pass(self.account.parse().expect("id"))
            .await
            .expect("pass");
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

    pub(crate) async fn detail(&self, id: &str) -> Value {
        let r = self.f.app.get(&format!("/conciliation/{id}"), &self.f.token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body
    }

    /// The id of the account's movement with this description.
    pub(crate) async fn movement(&self, description: &str) -> String {
        let r = self
            .f
            .app
            .get(&format!("/accounts/{}/movements", self.account), &self.f.token)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let found: Vec<&Value> = r
            .body
            .as_array()
            .expect("array")
            .iter()
            .filter(|m| m["description"] == description)
            .collect();
        assert_eq!(found.len(), 1, "{description}: {}", r.text);
        found[0]["id"].as_str().expect("id").to_owned()
    }

    pub(crate) async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Res {
        self.f.app.json(method, path, Some(&self.f.token), body).await
    }

    pub(crate) async fn resolve(&self, id: &str, body: Value) -> Res {
        self.send(Method::POST, &format!("/conciliation/{id}/resolve"), Some(body))
            .await
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

pub(crate) fn header(got: &Received, name: &str) -> String {
    got.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

pub(crate) fn body(got: &Received) -> Value {
    serde_json::from_str(&got.body).expect("json body")
}

pub(crate) fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}")).to_owned()
}

#[tokio::test]
async fn a_manual_resolve_of_an_ambiguous_request_is_reported_after_the_ambiguous_webhook() {
    // The receiver refuses the first two attempts: the ambiguous delivery is still pending
    // (retrying) when the human resolves, so the matched one must wait for it.
    let mut shop = Shop::new("r1", "300", vec![HookAnswer::Status(500), HookAnswer::Status(500)]).await;
    let mut events = shop.f.app.events().await;
    shop.poll(json!([order("AMB-1", "250.00", "Juan Perez")])).await;
    // Evaluated once with nothing to match (one attempt), whoever runs the pass.
    shop.settle().await;
    shop.transfer("250.00", "JUAN PEREZ", "first");
    shop.transfer("250", "PEREZ JUAN", "second");
    shop.read_bank().await;
    events.next(&shop.account, "conciliation.ambiguous").await;
    let first = shop.hooks.next().await;
    assert_eq!(body(&first)["status"], "ambiguous");

    let id = str_of(&shop.request("AMB-1").await["id"]);
    let d = shop.detail(&id).await;
    assert_eq!(d["status"], "ambiguous");
    assert_eq!(d["reason"], "several_equally_plausible");
    assert_eq!(d["match"], Value::Null);
    let attempts = d["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{d}");
    assert_eq!(
        (&attempts[0]["result"], &attempts[0]["reason"]),
        (&json!("not_found"), &json!("no_movement_with_amount"))
    );
    assert_eq!(
        (
            &attempts[1]["result"],
            &attempts[1]["trigger"],
            &attempts[1]["attempt_number"]
        ),
        (&json!("ambiguous"), &json!("movements"), &json!(2))
    );
    assert_eq!(attempts[1]["candidates"].as_array().map(Vec::len), Some(2));
    let candidates = d["candidates"].as_array().expect("candidates");
    assert_eq!(candidates.len(), 2, "{d}");
    for c in candidates {
        assert_eq!(c["verdict"], "alternative", "{c}");
        assert_eq!(c["movement"]["amount"], "250.00", "canonical amount text");
        assert_eq!(c["movement"]["currency"], "UYU");
        assert_eq!(
            c["checks"],
            json!({"amount": true, "currency": true, "window": true, "reference": false,
                   "name": c["checks"]["name"].clone()})
        );
        assert_eq!(c["checks"]["name"]["score"], 1000);
        assert_eq!(c["checks"]["name"]["band"], "strong");
        assert!(c["movement"]["received_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
    let deliveries = d["deliveries"].as_array().expect("deliveries");
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0]["event_type"], "ambiguous");
    assert_eq!(deliveries[0]["id"], json!(header(&first, "webhook-id")));

    // The human picks the second transfer.
    let chosen = shop.movement("second").await;
    let r = shop.resolve(&id, json!({"movement_id": chosen})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let d = r.body;
    assert_eq!(d["status"], "matched");
    assert_eq!(d["reason"], "resolved_manually");
    let m = &d["match"];
    assert_eq!(m["bank_transaction_id"], json!(chosen));
    assert_eq!(m["request_id"], json!(id));
    assert_eq!(
        (
            &m["matched_by"],
            &m["is_primary"],
            &m["amount"],
            &m["currency"],
            &m["sender_name"]
        ),
        (
            &json!("manual"),
            &json!(true),
            &json!("250.00"),
            &json!("UYU"),
            &json!("PEREZ JUAN")
        )
    );
    let attempts = d["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 3);
    assert_eq!(
        (&attempts[2]["result"], &attempts[2]["trigger"], &attempts[2]["reason"]),
        (&json!("matched"), &json!("resolve"), &json!("resolved_manually"))
    );
    assert!(attempts[2]["user_id"].is_string());
    let verdicts: Vec<(String, String)> = d["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .map(|c| (str_of(&c["movement"]["id"]), str_of(&c["verdict"])))
        .collect();
    assert!(verdicts.contains(&(chosen.clone(), "chosen".into())), "{verdicts:?}");
    assert!(verdicts.iter().any(|(_, v)| v == "alternative"), "{verdicts:?}");
    let matched = events.next(&shop.account, "conciliation.matched").await;
    assert_eq!(matched.data["matched_by"], "manual");
    assert_eq!(matched.data["movement_id"], json!(chosen));

    // Received in order: the ambiguous one (retried until accepted, same webhook-id) and only
    // then the match.
    let secret = shop.result_secret().await;
    let second = shop.hooks.next().await;
    let third = shop.hooks.next().await;
    let last = shop.hooks.next().await;
    for got in [&second, &third] {
        assert_eq!(body(got)["status"], "ambiguous", "{}", got.body);
        assert_eq!(header(got, "webhook-id"), header(&first, "webhook-id"));
    }
    assert_eq!(body(&last)["status"], "matched", "{}", last.body);
    assert_ne!(header(&last, "webhook-id"), header(&first, "webhook-id"));
    for got in [&first, &second, &third, &last] {
        assert!(verifies(&secret, &got.headers, &got.body), "signed: {}", got.body);
    }
    let b = body(&last);
    assert_eq!(b["request_id"], json!(id));
    assert_eq!(b["movement"]["id"], json!(chosen));
    assert_eq!(b["movement"]["name"], "PEREZ JUAN");
    assert!(last.body.contains(r#""amount":250.00,"#), "{}", last.body);

    // Closed now: resolve, run and resolve-null are refused; the chosen movement cannot be
    // ignored; the movements list shows the match.
    shop.resolve(&id, json!({"movement_id": chosen}))
        .await
        .api_error(409, "REQUEST_CLOSED");
    shop.resolve(&id, json!({"movement_id": null}))
        .await
        .api_error(409, "REQUEST_CLOSED");
    shop.send(Method::POST, &format!("/conciliation/{id}/run"), None)
        .await
        .api_error(409, "REQUEST_CLOSED");
    shop.send(
        Method::POST,
        &format!("/accounts/{}/movements/{chosen}/ignore", shop.account),
        None,
    )
    .await
    .api_error(409, "MOVEMENT_TAKEN");
}

#[tokio::test]
async fn resolve_checks_the_movement_and_the_body() {
    let shop = Shop::new("r2", "10", Vec::new()).await;
    let mut events = shop.f.app.events().await;
    shop.poll(json!([
        order("E-1", "300.00", "Carlos Diaz"),
        order("E-2", "300.00", "Ana Lopez")
    ]))
    .await;
    shop.transfer("300.00", "MARIA GOMEZ", "stranger");
    shop.transfer("301.00", "CARLOS DIAZ", "off by one");
    shop.transfer("-300.00", "CARLOS DIAZ", "money out");
    shop.transfer("300.00", "PEDRO RUIZ", "to ignore");
    shop.read_bank().await;
    shop.settle().await;
    let e1 = shop.request("E-1").await;
    assert_eq!(e1["status"], "not_found");
    let id = str_of(&e1["id"]);
    let d = shop.detail(&id).await;
    let verdicts: Vec<String> = d["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .map(|c| str_of(&c["verdict"]))
        .collect();
    assert_eq!(verdicts, ["name_too_different", "name_too_different"], "{d}");

    let path = |m: &str| format!("/accounts/{}/movements/{m}/ignore", shop.account);
    let stranger = shop.movement("stranger").await;
    let off = shop.movement("off by one").await;
    let out = shop.movement("money out").await;
    let ignored = shop.movement("to ignore").await;
    shop.resolve(&id, json!({"movement_id": off}))
        .await
        .api_error(400, "AMOUNT_MISMATCH");
    shop.resolve(&id, json!({"movement_id": out}))
        .await
        .api_error(400, "MOVEMENT_NOT_ELIGIBLE");
    let r = shop.send(Method::POST, &path(&ignored), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["id"], json!(ignored));
    assert!(r.body["ignored_at"].is_string());
    assert_eq!(r.body["match"], Value::Null);
    shop.resolve(&id, json!({"movement_id": ignored}))
        .await
        .api_error(400, "MOVEMENT_NOT_ELIGIBLE");
    // The ignored movement shows as such in the review view.
    let d = shop.detail(&id).await;
    assert!(d["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .any(|c| c["movement"]["id"] == json!(ignored) && c["verdict"] == "ignored"));
    // Another account of the same user: not eligible.
    let other_account = shop.f.account("user_good+r2b", "pass_good", json!({})).await;
    let mut scraped = shop.f.app.events().await;
    shop.f
        .bank
        .add_movement(AddMovement {
            username: "user_good+r2b".into(),
            amount: "300.00".into(),
            currency: "UYU".into(),
            name: Some("CARLOS DIAZ".into()),
            description: "elsewhere".into(),
            received_at: None,
        })
        .expect("added");
    let r = shop.f.post(&format!("/accounts/{other_account}/scrape")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    scraped.next(&other_account, "scrape.succeeded").await;
    let r = shop
        .f
        .app
        .get(&format!("/accounts/{other_account}/movements"), &shop.f.token)
        .await;
    let elsewhere = r
        .body
        .as_array()
        .expect("array")
        .iter()
        .find(|m| m["description"] == "elsewhere")
        .expect("moved")["id"]
        .clone();
    shop.resolve(&id, json!({"movement_id": elsewhere}))
        .await
        .api_error(400, "MOVEMENT_NOT_ELIGIBLE");
    // Bodies: missing, malformed, not an object; an unknown movement.
    for bad in [json!({}), json!({"movement_id": "nope"}), json!({"movement_id": 7})] {
        let e = shop.resolve(&id, bad.clone()).await.api_error(400, "VALIDATION_ERROR");
        let field = e.details.as_ref().and_then(|d| d.first()).map(|d| d.field.as_str());
        assert_eq!(field, Some("movement_id"), "{bad}");
    }
    let e = shop
        .resolve(&id, json!({"movement_id": null, "unexpectedField": 1}))
        .await
        .api_error(400, "VALIDATION_ERROR");
    let field = e.details.as_ref().and_then(|d| d.first()).map(|d| d.field.as_str());
    assert_eq!(field, Some("unexpectedField"));
    shop.resolve(&id, json!([1]))
        .await
        .assert_api_error(400, "VALIDATION_ERROR");
    let auth = format!("Bearer {}", shop.f.token);
    let r = shop
        .f
        .app
        .send(
            Method::POST,
            &format!("/conciliation/{id}/resolve"),
            &[("authorization", auth.as_str()), ("content-type", "application/json")],
            Some(b"{not json".to_vec()),
        )
        .await;
    r.assert_api_error(400, "VALIDATION_ERROR");
    shop.resolve(&id, json!({"movement_id": uuid::Uuid::now_v7()}))
        .await
        .api_error(404, "NOT_FOUND");
    shop.resolve("not-a-uuid", json!({"movement_id": stranger}))
        .await
        .api_error(404, "NOT_FOUND");

    // A human may settle on a name the engine would not: the window and the name are theirs to
    // judge, never the amount.
    let r = shop.resolve(&id, json!({"movement_id": stranger})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "matched");
    assert_eq!(
        r.body["match"]["score"],
        json!(r.body["match"]["explanation"]["candidate"]["score"])
    );
    let e = events.next(&shop.account, "conciliation.matched").await;
    assert_eq!(e.data["external_id"], "E-1");
    // E-2 cannot have it any more.
    let e2 = str_of(&shop.request("E-2").await["id"]);
    shop.resolve(&e2, json!({"movement_id": stranger}))
        .await
        .api_error(409, "MOVEMENT_TAKEN");
    // The request is judged before the body (§8): a bad body for a closed, an unknown or
    // another user's request is that request's answer.
    for bad in [json!({}), json!({"movement_id": "abc"})] {
        shop.resolve(&id, bad.clone()).await.api_error(409, "REQUEST_CLOSED");
        shop.resolve(&uuid::Uuid::now_v7().to_string(), bad.clone())
            .await
            .api_error(404, "NOT_FOUND");
    }
    // Un-ignored: back in play.
    let r = shop.send(Method::DELETE, &path(&ignored), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["ignored_at"], Value::Null);
    events.next(&shop.account, "movement.unignored").await;
    shop.send(Method::POST, &path("not-a-uuid"), None)
        .await
        .api_error(404, "NOT_FOUND");
    shop.send(Method::POST, &path(&uuid::Uuid::now_v7().to_string()), None)
        .await
        .api_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn rejecting_the_candidates_keeps_them_out_and_a_new_transfer_settles_the_order() {
    let mut shop = Shop::new("r3", "10", Vec::new()).await;
    let mut events = shop.f.app.events().await;
    shop.poll(json!([order("REJ-1", "80.00", "Lucia Fernandez")])).await;
    shop.settle().await;
    shop.transfer("80.00", "LUCIA FERNANDEZ", "one");
    shop.transfer("80.00", "FERNANDEZ LUCIA", "two");
    shop.read_bank().await;
    events.next(&shop.account, "conciliation.ambiguous").await;
    assert_eq!(body(&shop.hooks.next().await)["status"], "ambiguous");
    let id = str_of(&shop.request("REJ-1").await["id"]);

    let r = shop.resolve(&id, json!({"movement_id": null})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "not_found");
    assert_eq!(r.body["reason"], "candidates_rejected");
    let verdicts: Vec<String> = r.body["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .map(|c| str_of(&c["verdict"]))
        .collect();
    assert_eq!(verdicts, ["rejected", "rejected"]);
    // The human's attempt (the worker may already have evaluated the request after it).
    let by_hand: Vec<Value> = r.body["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .filter(|a| a["trigger"] == "resolve")
        .cloned()
        .collect();
    assert_eq!(by_hand.len(), 1, "{}", r.text);
    assert_eq!(
        (
            &by_hand[0]["result"],
            &by_hand[0]["reason"],
            &by_hand[0]["attempt_number"]
        ),
        (&json!("not_found"), &json!("candidates_rejected"), &json!(3))
    );
    assert!(by_hand[0]["user_id"].is_string());
    let rejected = events.next(&shop.account, "conciliation.rejected").await;
    assert_eq!(rejected.data["movement_ids"].as_array().map(Vec::len), Some(2));

    // The pass never proposes them again …
    shop.settle().await;
    let r = shop.request("REJ-1").await;
    assert_eq!(
        (&r["status"], &r["reason"]),
        (&json!("not_found"), &json!("candidates_rejected"))
    );
    // … and a new transfer settles the order.
    shop.transfer("80.00", "LUCIA FERNANDEZ", "three");
    shop.read_bank().await;
    let matched = events.next(&shop.account, "conciliation.matched").await;
    assert_eq!(matched.data["movement_id"], json!(shop.movement("three").await));
    assert_eq!(matched.data["matched_by"], "engine");
    let got = shop.hooks.next().await;
    assert_eq!(body(&got)["status"], "matched");
}

#[tokio::test]
async fn run_evaluates_again_and_notify_resends_the_same_delivery() {
    let mut shop = Shop::new("r4", "10", Vec::new()).await;
    let mut events = shop.f.app.events().await;
    shop.poll(json!([
        order("RUN-1", "42.00", "Sofia Castro"),
        order("DONE-1", "55.00", "Diego Silva"),
        order("GONE-1", "66.00", "Laura Rios")
    ]))
    .await;
    shop.transfer("55.00", "DIEGO SILVA", "paid");
    shop.read_bank().await;
    events.next(&shop.account, "conciliation.matched").await;
    let first = shop.hooks.next().await;
    shop.settle().await;
    let run_id = str_of(&shop.request("RUN-1").await["id"]);
    let done_id = str_of(&shop.request("DONE-1").await["id"]);
    assert_eq!(shop.request("RUN-1").await["status"], "not_found");

    // Run: back to pending, evaluated again, recorded with trigger `run` (the decision itself
    // did not change).
    let r = shop
        .send(Method::POST, &format!("/conciliation/{run_id}/run"), None)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body, json!({"queued": true}));
    events.next(&shop.account, "conciliation.run_requested").await;
    shop.settle().await;
    let d = shop.detail(&run_id).await;
    assert_eq!(d["status"], "not_found");
    let triggers: Vec<String> = d["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| str_of(&a["trigger"]))
        .collect();
    assert_eq!(triggers.last().map(String::as_str), Some("run"), "{triggers:?}");
    assert_eq!(triggers.len(), 2, "{triggers:?}");

    // Notify: a not_found request has nothing to send; a matched one sends its delivery again
    // with the same webhook-id.
    shop.send(Method::POST, &format!("/conciliation/{run_id}/notify"), None)
        .await
        .api_error(409, "NOTHING_TO_SEND");
    let r = shop
        .send(Method::POST, &format!("/conciliation/{done_id}/notify"), None)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body["queued"], true);
    assert_eq!(r.body["delivery_id"], json!(header(&first, "webhook-id")));
    let again = shop.hooks.next().await;
    assert_eq!(header(&again, "webhook-id"), header(&first, "webhook-id"));
    assert_eq!(again.body, first.body, "the frozen body");
    assert!(verifies(&shop.result_secret().await, &again.headers, &again.body));
    events.next(&shop.account, "conciliation.notified").await;

    // Cancelled (gone from the list): closed for run and resolve, nothing to notify.
    shop.poll(json!([order("RUN-1", "42.00", "Sofia Castro")])).await;
    let gone = shop.request("GONE-1").await;
    assert_eq!(gone["status"], "cancelled");
    let gone = str_of(&gone["id"]);
    shop.send(Method::POST, &format!("/conciliation/{gone}/run"), None)
        .await
        .api_error(409, "REQUEST_CLOSED");
    shop.send(Method::POST, &format!("/conciliation/{gone}/notify"), None)
        .await
        .api_error(409, "NOTHING_TO_SEND");
    shop.resolve(&gone, json!({"movement_id": null}))
        .await
        .api_error(409, "REQUEST_CLOSED");

    // The result deliveries: newest first, filtered by status, re-sent with the same id.
    let path = format!("/accounts/{}/webhooks/deliveries", shop.account);
    let r = shop.f.app.get(&path, &shop.f.token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let list = r.body.as_array().expect("array").clone();
    assert_eq!(list.len(), 1, "{}", r.text);
    assert_eq!(list[0]["event_type"], "matched");
    assert_eq!(list[0]["subject_id"], json!(done_id));
    assert_eq!(list[0]["payload"]["external_id"], "DONE-1");
    let r = shop.f.app.get(&format!("{path}?status=dead"), &shop.f.token).await;
    assert_eq!(r.body, json!([]));
    shop.f
        .app
        .get(&format!("{path}?status=bogus"), &shop.f.token)
        .await
        .api_error(400, "VALIDATION_ERROR");
    shop.f
        .app
        .get(&format!("{path}?limit=0"), &shop.f.token)
        .await
        .api_error(400, "VALIDATION_ERROR");
    let delivery = str_of(&list[0]["id"]);
    let r = shop
        .send(Method::POST, &format!("{path}/{delivery}/resend"), None)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let third = shop.hooks.next().await;
    assert_eq!(header(&third, "webhook-id"), delivery);
    shop.send(Method::POST, &format!("{path}/{}/resend", uuid::Uuid::now_v7()), None)
        .await
        .api_error(404, "NOT_FOUND");
    // The notification log does not list result deliveries.
    let r = shop
        .f
        .app
        .get(&format!("/accounts/{}/notifications", shop.account), &shop.f.token)
        .await;
    assert_eq!(r.body, json!([]), "{}", r.text);
    shop.send(
        Method::POST,
        &format!("/accounts/{}/notifications/{delivery}/resend", shop.account),
        None,
    )
    .await
    .api_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn ignoring_a_candidate_lets_the_other_one_settle_the_order_and_the_summary_counts() {
    let mut shop = Shop::new("r5", "10", Vec::new()).await;
    let mut events = shop.f.app.events().await;
    shop.poll(json!([
        order("IGN-1", "120.00", "Pablo Mendez"),
        order("WEAK-1", "77.00", "Juan Perez")
    ]))
    .await;
    shop.transfer("120.00", "PABLO MENDEZ", "real");
    shop.transfer("120.00", "PABLO MENDEZ", "refund of something else");
    shop.transfer("77.00", "MARIA PEREZ", "weak");
    shop.read_bank().await;
    events.next(&shop.account, "conciliation.ambiguous").await;
    shop.hooks.next().await;
    shop.settle().await;

    let summary = |q: String| {
        let app = &shop.f.app;
        let token = shop.f.token.clone();
        async move { app.get(&format!("/conciliation/summary{q}"), &token).await }
    };
    let r = summary(String::new()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.body,
        json!([{"account_id": shop.account, "review": 2, "counts": {
            "pending": 0, "not_found": 1, "ambiguous": 1, "failed": 0, "matched": 0,
            "cancelled": 0, "expired": 0}}])
    );

    let noise = shop.movement("refund of something else").await;
    let path = format!("/accounts/{}/movements/{noise}/ignore", shop.account);
    let r = shop.send(Method::POST, &path, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let ignored = events.next(&shop.account, "movement.ignored").await;
    assert_eq!(ignored.data["movement_id"], json!(noise));
    // Ignoring again changes nothing (same mark).
    let again = shop.send(Method::POST, &path, None).await;
    assert_eq!(again.body["ignored_at"], r.body["ignored_at"]);
    let matched = events.next(&shop.account, "conciliation.matched").await;
    assert_eq!(matched.data["external_id"], "IGN-1");
    assert_eq!(matched.data["movement_id"], json!(shop.movement("real").await));
    let got = shop.hooks.next().await;
    assert_eq!(body(&got)["status"], "matched");
    let movements = shop
        .f
        .app
        .get(&format!("/accounts/{}/movements", shop.account), &shop.f.token)
        .await;
    let listed = movements
        .body
        .as_array()
        .expect("array")
        .iter()
        .find(|m| m["id"] == json!(noise))
        .expect("listed")
        .clone();
    assert_eq!(listed["ignored_at"], r.body["ignored_at"]);
    assert_eq!(listed, r.body, "the movement as the list shows it");

    shop.settle().await;
    let r = summary(format!("?account_id={}", shop.account)).await;
    assert_eq!(r.body[0]["counts"]["matched"], 1);
    assert_eq!(r.body[0]["counts"]["ambiguous"], 0);
    assert_eq!(r.body[0]["review"], 1, "the weak one");
    summary("?account_id=nope".into())
        .await
        .api_error(400, "VALIDATION_ERROR");
    summary(format!("?account_id={}", uuid::Uuid::now_v7()))
        .await
        .api_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn another_users_requests_accounts_movements_and_deliveries_are_not_found() {
    let mut shop = Shop::new("r6", "10", Vec::new()).await;
    let mut events = shop.f.app.events().await;
    shop.poll(json!([order("MINE-1", "10.00", "Eva Torres")])).await;
    shop.transfer("10.00", "EVA TORRES", "mine");
    shop.transfer("10.00", "OTRO NOMBRE", "spare");
    shop.read_bank().await;
    events.next(&shop.account, "conciliation.matched").await;
    shop.hooks.next().await;
    let id = str_of(&shop.request("MINE-1").await["id"]);
    let spare = shop.movement("spare").await;
    let delivery = str_of(&shop.detail(&id).await["deliveries"][0]["id"]);
    let acc = &shop.account;

    let other = shop.f.app.user("intruder@example.com").await;
    let as_other = |method: Method, path: String, body: Option<Value>| {
        let app = &shop.f.app;
        let token = other.clone();
        async move { app.json(method, &path, Some(&token), body).await }
    };
    for (method, path, body) in [
        (Method::GET, format!("/conciliation/{id}"), None),
        (
            Method::POST,
            format!("/conciliation/{id}/resolve"),
            Some(json!({"movement_id": spare})),
        ),
        (
            Method::POST,
            format!("/conciliation/{id}/resolve"),
            Some(json!({"movement_id": null})),
        ),
        (Method::POST, format!("/conciliation/{id}/run"), None),
        (Method::POST, format!("/conciliation/{id}/notify"), None),
        (Method::GET, format!("/conciliation/summary?account_id={acc}"), None),
        (Method::POST, format!("/accounts/{acc}/movements/{spare}/ignore"), None),
        (
            Method::DELETE,
            format!("/accounts/{acc}/movements/{spare}/ignore"),
            None,
        ),
        (Method::GET, format!("/accounts/{acc}/webhooks/deliveries"), None),
        (
            Method::POST,
            format!("/accounts/{acc}/webhooks/deliveries/{delivery}/resend"),
            None,
        ),
    ] {
        let r = as_other(method.clone(), path.clone(), body).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {path}: {}", r.text);
        r.assert_api_error(404, "NOT_FOUND");
    }
    // Their own summary lists nothing of ours.
    let r = as_other(Method::GET, "/conciliation/summary".into(), None).await;
    assert_eq!(r.body, json!([]));
    // An intruder's own account cannot reach our movement either.
    let theirs = shop.f.app.account(&other, "theirs").await;
    let r = as_other(
        Method::POST,
        format!("/accounts/{theirs}/movements/{spare}/ignore"),
        None,
    )
    .await;
    r.assert_api_error(404, "NOT_FOUND");
    // In passthrough, requests are frozen: no decision, no result webhook.
    let r = shop
        .send(Method::PUT, "/me/operation-mode", Some(json!({"mode": "passthrough"})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for path in [format!("/conciliation/{id}/run"), format!("/conciliation/{id}/notify")] {
        shop.send(Method::POST, &path, None)
            .await
            .api_error(409, "NOT_RECONCILE_MODE");
    }
    shop.resolve(&id, json!({"movement_id": null}))
        .await
        .api_error(409, "NOT_RECONCILE_MODE");
    // Nothing changed for the owner.
    let r = shop
        .f
        .app
        .get(&format!("/accounts/{acc}/movements"), &shop.f.token)
        .await;
    assert!(r
        .body
        .as_array()
        .expect("array")
        .iter()
        .all(|m| m["ignored_at"].is_null()));
    assert_eq!(shop.detail(&id).await["status"], "matched");
}
