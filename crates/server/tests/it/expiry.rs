//! Expiry and the reconciliation invariants, end to end (docs/reconciliation.md §1, §3.5–§3.6,
//! §5.4–§5.9, §6): the real app with a manual clock, the real sandbox bank, a scripted orders
//! server and a local receiver checked by an independent Standard Webhooks verifier (the
//! [`Shop`] of `matching.rs`). What `reconcile.rs` and `matching.rs` already prove is not
//! repeated here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use reconbanker::{App, AppOptions};
use reconbanker_store::{AccountId, DeliveryRow, UserId};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{MeOut, MovementOut, TestApp};
use crate::matching::{order, Shop};
use crate::reconcile::Answer as OrdersAnswer;
use crate::webhooks::verifies;

/// A request's life: 120 h from its registration (docs/reconciliation.md §2).
const LIFE: Duration = Duration::from_secs(120 * 3600);

impl Shop {
    fn id(&self) -> AccountId {
        self.account.parse().expect("account id")
    }

    async fn owner(&self) -> UserId {
        let me: MeOut = self.f.app.get_as("/me", &self.f.token, StatusCode::OK).await;
        me.id.parse().expect("user id")
    }

    /// Every registration of `external_id`, newest first.
    async fn requests_of(&self, external_id: &str) -> Vec<Value> {
        let r = self
            .f
            .app
            .get(&format!("/conciliation?external_id={external_id}"), &self.f.token)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body.as_array().cloned().expect("a bare array")
    }

    /// `(status, reason)` of the newest registration of `external_id`.
    async fn status(&self, external_id: &str) -> (String, Option<String>) {
        let r = self.request(external_id).await;
        (
            r["status"].as_str().expect("status").to_owned(),
            r["reason"].as_str().map(str::to_owned),
        )
    }

    /// The account's result-webhook deliveries as the outbox holds them (written with the
    /// decision, in its transaction).
    async fn results(&self) -> Vec<DeliveryRow> {
        let owner = self.owner().await;
        let mut rows: Vec<DeliveryRow> = self
            .f
            .app
            .state
            .store
            .list_deliveries(owner, self.id(), 500, 0)
            .await
            .expect("deliveries")
            .into_iter()
            .filter(|d| d.channel == "result")
            .collect();
        rows.sort_by_key(|d| d.created_at);
        rows
    }

    async fn set_mode(&self, mode: &str) {
        let r = self
            .f
            .app
            .json(
                Method::PUT,
                "/me/operation-mode",
                Some(&self.f.token),
                Some(json!({ "mode": mode })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }

    /// Runs a match pass now, in process, so what follows reads settled decisions.
    async fn settle(&self) {
        self.f.app.state.matcher.pass(self.id()).await.expect("pass");
    }
}

fn ts(t: reconbanker_store::Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn instant(v: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().expect("a timestamp")).expect("RFC 3339")
}

#[tokio::test]
async fn open_requests_expire_at_120_hours_with_the_expired_webhook_when_asked() {
    let mut shop = Shop::with("x1", json!({"notify_on_expired": true})).await;
    let list = json!([
        order("NF-1", "1500.00", "Ana Lopez"),
        order("AMB-1", "250.00", "Juan Perez")
    ]);
    let mut events = shop.f.app.events().await;
    shop.poll(list).await;
    shop.transfer("250.00", Some("JUAN PEREZ"), "first");
    shop.transfer("250.00", Some("PEREZ JUAN"), "second");
    shop.read_bank().await;
    events.next(&shop.account, "conciliation.ambiguous").await;
    let got = shop.hooks.next().await;
    assert!(got.body.contains(r#""status":"ambiguous""#), "{}", got.body);
    assert_eq!(shop.status("NF-1").await.0, "not_found");
    // No more polls (they would mark the account dirty too): from here only the sweep can
    // send the account to a pass.
    let r = shop
        .f
        .app
        .json(
            Method::PUT,
            &format!("/accounts/{}/config", shop.account),
            Some(&shop.f.token),
            Some(json!({"pending_orders_endpoint": null})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for ext in ["NF-1", "AMB-1"] {
        let r = shop.request(ext).await;
        assert_eq!(
            instant(&r["expires_at"]) - instant(&r["created_at"]),
            chrono::Duration::hours(120),
            "{r}"
        );
    }

    // One millisecond before: not overdue (the bound is `now >= expires_at`).
    shop.f.clock.advance(LIFE - Duration::from_millis(1));
    assert_eq!(shop.f.app.state.expiry.sweep().await.expect("sweep"), vec![]);
    assert_eq!(shop.status("NF-1").await.0, "not_found");
    assert_eq!(shop.status("AMB-1").await.0, "ambiguous");

    // Past 120 h, the worker's sweep (on its next tick of the clock) marks the account and the
    // pass expires both: not_found and ambiguous alike.
    shop.f.clock.advance(shop.f.app.state.config.expire_sweep);
    let mut expired = BTreeMap::new();
    for _ in 0..2 {
        let e = events.next(&shop.account, "conciliation.expired").await;
        expired.insert(e.data["external_id"].as_str().expect("external_id").to_owned(), e);
    }
    assert_eq!(expired.keys().collect::<Vec<_>>(), ["AMB-1", "NF-1"]);
    for ext in ["NF-1", "AMB-1"] {
        assert_eq!(
            shop.status(ext).await,
            ("expired".into(), Some("expired_after_5_days".into()))
        );
    }
    assert_eq!(
        shop.f.app.state.expiry.sweep().await.expect("sweep"),
        vec![],
        "nothing overdue is left"
    );

    // The `expired` webhooks: the documented fields, ours, the extras; exact and signed.
    let secret = shop.result_secret().await;
    let mut bodies = BTreeMap::new();
    for _ in 0..2 {
        let got = shop.hooks.next().await;
        assert!(verifies(&secret, &got.headers, &got.body), "signed: {}", got.body);
        let body: Value = serde_json::from_str(&got.body).expect("json");
        bodies.insert(body["external_id"].as_str().expect("external_id").to_owned(), got.body);
    }
    let want = |ext: &str, amount: &str, name: &str| {
        let e = &expired[ext];
        format!(
            r#"{{"external_id":"{ext}","status":"expired","amount":{amount},"currency":"UYU","name":"{name}","request_id":"{}","occurred_at":"{}","shop":"eu-1"}}"#,
            e.data["request_id"].as_str().expect("request_id"),
            ts(e.occurred_at)
        )
    };
    assert_eq!(bodies["NF-1"], want("NF-1", "1500.00", "Ana Lopez"));
    assert_eq!(bodies["AMB-1"], want("AMB-1", "250.00", "Juan Perez"));
    let kinds: Vec<(String, String)> = shop
        .results()
        .await
        .iter()
        .map(|d| (d.event_type.clone(), d.status.clone()))
        .collect();
    assert_eq!(kinds.iter().filter(|(k, _)| k == "expired").count(), 2, "{kinds:?}");
}

#[tokio::test]
async fn an_open_request_frozen_in_passthrough_expires_after_the_switch_back_without_a_webhook() {
    // notify_on_expired is off by default.
    let shop = Shop::with("x2", json!({})).await;
    let list = json!([order("P-1", "80.00", "Rosa Diaz")]);
    shop.orders.otherwise(list.clone());
    // Registered and evaluated in reconcile mode (nothing pays it), then the user switches:
    // no poll, pass or expiry runs in passthrough, so the request stays as it was.
    shop.poll(list).await;
    shop.settle().await;
    shop.set_mode("passthrough").await;
    assert_eq!(shop.status("P-1").await.0, "not_found");

    shop.f.clock.advance(LIFE);
    assert_eq!(
        shop.f.app.state.expiry.sweep().await.expect("sweep"),
        vec![],
        "no expiry in passthrough"
    );
    assert_eq!(shop.status("P-1").await.0, "not_found", "frozen");

    let mut events = shop.f.app.events().await;
    shop.set_mode("reconcile").await;
    let e = events.next(&shop.account, "conciliation.expired").await;
    assert_eq!(e.data["external_id"], "P-1");
    assert_eq!(
        shop.status("P-1").await,
        ("expired".into(), Some("expired_after_5_days".into()))
    );
    // The event and any delivery are written in one transaction: none was.
    assert_eq!(
        shop.results().await.len(),
        0,
        "no expired webhook without notify_on_expired"
    );
}

#[tokio::test]
async fn amount_forms_match_exactly_and_refused_forms_are_never_registered() {
    let mut shop = Shop::with("x3", json!({})).await;
    // Written by hand: an extra field's number must reach the webhook with every digit (a
    // binary float would send 1234567890123456.8).
    let extras = r#"{"webhook_extra_fields": {"shop": "eu-1", "tier": 2, "fee": 1234567890123456.78}}"#;
    let auth = format!("Bearer {}", shop.f.token);
    let config = format!("/accounts/{}/config", shop.account);
    let r = shop
        .f
        .app
        .send(Method::PUT, &config, &[("authorization", &auth)], Some(extras.into()))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let want = r#""webhook_extra_fields":{"fee":1234567890123456.78,"shop":"eu-1","tier":2}"#;
    assert!(r.text.contains(want), "{}", r.text);
    assert!(shop.f.app.get(&config, &shop.f.token).await.text.contains(want));
    let mut events = shop.f.app.events().await;
    // Written by hand: the exponent and the refused forms must never pass a float.
    let item = |id: &str, amount: &str, name: &str| {
        format!(r#"{{"external_id":"{id}","amount":{amount},"currency":"UYU","name":"{name}"}}"#)
    };
    let refused = [
        ("1500.00001", "bad_amount"),
        ("-1500", "bad_amount"),
        (r#""-1500.00""#, "bad_amount"),
        (r#""NaN""#, "bad_amount"),
        (r#""Infinity""#, "bad_amount"),
        (r#""1,500.00""#, "bad_amount"),
        (r#""1500 ""#, "bad_amount"),
        (r#""1.5e3 UYU""#, "bad_amount"),
        ("1e16", "bad_amount"),
        ("0", "bad_amount"),
        ("true", "bad_type"),
        ("null", "missing_field"),
    ];
    let mut items = vec![
        item("NUM", "1500", "Ana Lopez"),
        item("STR", r#""1500.00""#, "Bruno Diaz"),
        item("EXP", "1.5e3", "Carla Gomez"),
    ];
    for (i, (amount, _)) in refused.iter().enumerate() {
        items.push(item(&format!("BAD-{i}"), amount, "Dario Ruiz"));
    }
    let row = shop
        .poll_answer(OrdersAnswer::Raw(200, format!("[{}]", items.join(","))))
        .await;
    assert_eq!((row.counts.registered, row.counts.invalid), (3, refused.len() as i64));
    let want: Vec<(Option<String>, String)> = refused
        .iter()
        .enumerate()
        .map(|(i, (_, code))| (Some(format!("BAD-{i}")), (*code).to_owned()))
        .collect();
    assert_eq!(shop.last_poll_issues().await, want);

    for name in ["ANA LOPEZ", "BRUNO DIAZ", "CARLA GOMEZ", "DARIO RUIZ"] {
        shop.transfer("1500.00", Some(name), "Transferencia");
    }
    shop.read_bank().await;
    let mut matched = BTreeSet::new();
    for _ in 0..3 {
        let e = events.next(&shop.account, "conciliation.matched").await;
        matched.insert(e.data["external_id"].as_str().expect("external_id").to_owned());
    }
    assert_eq!(matched, BTreeSet::from(["EXP".into(), "NUM".into(), "STR".into()]));
    for ext in ["NUM", "STR", "EXP"] {
        let r = shop.request(ext).await;
        assert_eq!(
            (r["status"].as_str(), r["amount"].as_str()),
            (Some("matched"), Some("1500.00"))
        );
    }
    for i in 0..refused.len() {
        assert_eq!(shop.requests_of(&format!("BAD-{i}")).await, Vec::<Value>::new());
    }
    shop.settle().await;
    let unmatched: Vec<Option<String>> = shop
        .movements()
        .await
        .into_iter()
        .filter(|m| m.amount == "1500.00" && m.matched.is_none())
        .map(|m| m.name)
        .collect();
    assert_eq!(unmatched, [Some("DARIO RUIZ".to_owned())]);

    // Each result: the documented fields first, the movement, then the extras, never
    // overriding.
    for _ in 0..3 {
        let got = shop.hooks.next().await;
        assert!(got
            .body
            .contains(r#","status":"matched","amount":1500.00,"currency":"UYU","#));
        let movement = got.body.find(r#""movement":{"#).expect("movement");
        let extras = got
            .body
            .find(r#"},"fee":1234567890123456.78,"shop":"eu-1","tier":2}"#)
            .expect("extras last");
        assert!(movement < extras, "{}", got.body);
        assert!(
            got.body
                .ends_with(r#"},"fee":1234567890123456.78,"shop":"eu-1","tier":2}"#),
            "{}",
            got.body
        );
        assert_eq!(got.body.matches(r#""status":"#).count(), 1);
    }
    // The delivery log shows each body as it was sent: its numbers and its order.
    let log = shop
        .f
        .app
        .get(
            &format!("/accounts/{}/webhooks/deliveries", shop.account),
            &shop.f.token,
        )
        .await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.text);
    assert_eq!(
        log.text.matches(r#""payload":{"external_id":"#).count(),
        3,
        "{}",
        log.text
    );
    assert_eq!(log.text.matches(r#","amount":1500.00,"#).count(), 6, "{}", log.text);
    assert_eq!(
        log.text.matches(r#","fee":1234567890123456.78,"#).count(),
        3,
        "{}",
        log.text
    );
}

#[tokio::test]
async fn names_age_pairing_the_better_name_and_a_missing_sender() {
    let mut shop = Shop::with("x4", json!({})).await;
    let mut events = shop.f.app.events().await;
    // Registered first: the older of two identical orders (its id sorts last, so age decides,
    // not the id), and the looser of two names.
    let first = json!([
        order("Z-OLD", "320.00", "Laura Sanz"),
        order("BW-LOOSE", "900.00", "Juan Perez")
    ]);
    shop.poll(first.clone()).await;
    shop.f.clock.advance(Duration::from_secs(60));
    let mut all = first.as_array().cloned().expect("list");
    all.extend([
        order("A-NEW", "320.00", "Laura Sanz"),
        order("BW-EXACT", "900.00", "Juan Carlos Perez Gomez"),
        order("NONAME", "555.00", "Pedro Ruiz"),
        order("ACCENTS", "777.00", "José María Muñoz-Peña"),
    ]);
    shop.orders.otherwise(Value::Array(all.clone()));
    shop.poll(Value::Array(all)).await;

    shop.transfer("320.00", Some("LAURA SANZ"), "one of two");
    shop.transfer("900.00", Some("JUAN CARLOS PEREZ GOMEZ"), "exact name");
    shop.transfer("555.00", None, "no sender name");
    shop.transfer("777.00", Some("jose MARIA munoz pena"), "accents, case, hyphen");
    shop.read_bank().await;
    let mut matched = BTreeMap::new();
    for _ in 0..3 {
        let e = events.next(&shop.account, "conciliation.matched").await;
        matched.insert(
            e.data["external_id"].as_str().expect("external_id").to_owned(),
            e.data["reason"].clone(),
        );
    }
    assert_eq!(
        matched,
        BTreeMap::from([
            ("ACCENTS".to_owned(), Value::Null),
            ("BW-EXACT".to_owned(), Value::Null),
            ("Z-OLD".to_owned(), json!("paired_by_age")),
        ])
    );
    shop.settle().await;
    // Left open. (Their reason is `candidates_taken` in the pass that matched the others, but a
    // later pass no longer sees movements matched earlier and says `no_movement_with_amount`:
    // reported, not pinned here.)
    assert_eq!(shop.status("A-NEW").await.0, "not_found");
    assert_eq!(shop.status("BW-LOOSE").await.0, "not_found");
    assert_eq!(
        shop.status("NONAME").await,
        ("not_found".into(), Some("no_sender_name".into()))
    );
    assert_eq!(shop.status("Z-OLD").await.1.as_deref(), Some("paired_by_age"));

    // The next identical transfer settles the other order.
    shop.transfer("320.00", Some("LAURA SANZ"), "two of two");
    shop.read_bank().await;
    let e = events.next(&shop.account, "conciliation.matched").await;
    assert_eq!(e.data["external_id"], "A-NEW");
    assert_eq!(shop.status("A-NEW").await.0, "matched");
    assert_eq!(shop.status("NONAME").await.0, "not_found");
    // One result webhook per match, none for not_found.
    for _ in 0..4 {
        let got = shop.hooks.next().await;
        assert!(got.body.contains(r#""status":"matched""#), "{}", got.body);
    }
    let results = shop.results().await;
    assert_eq!(results.len(), 4);
    assert!(results.iter().all(|d| d.event_type == "matched"));
}

#[tokio::test]
async fn a_cancelled_order_is_never_settled_and_its_second_generation_is() {
    let mut shop = Shop::with("x5", json!({})).await;
    let mut events = shop.f.app.events().await;
    let listed = json!([order("C-1", "500.00", "Luis Mora")]);
    shop.poll(listed.clone()).await;
    let first = shop.request("C-1").await;
    // Absent from a successful poll: cancelled, with no webhook.
    shop.poll(json!([])).await;
    assert_eq!(
        shop.status("C-1").await,
        ("cancelled".into(), Some("absent_from_pending_list".into()))
    );
    shop.transfer("500.00", Some("LUIS MORA"), "paid after the cancel");
    shop.read_bank().await;
    shop.settle().await;
    assert!(shop.movements().await.iter().all(|m| m.matched.is_none()));
    assert_eq!(shop.status("C-1").await.0, "cancelled", "a cancelled row is final");

    // Listed again: generation 2, which the waiting transfer settles.
    shop.orders.otherwise(listed.clone());
    shop.poll(listed).await;
    let e = events.next(&shop.account, "conciliation.matched").await;
    let rows = shop.requests_of("C-1").await;
    let summary: Vec<(i64, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["generation"].as_i64().expect("generation"),
                r["status"].as_str().expect("status"),
            )
        })
        .collect();
    assert_eq!(summary, [(2, "matched"), (1, "cancelled")]);
    assert_eq!(rows[1]["id"], first["id"]);
    assert_eq!(e.data["request_id"], rows[0]["id"]);
    let got = shop.hooks.next().await;
    let body: Value = serde_json::from_str(&got.body).expect("json");
    assert_eq!(body["request_id"], rows[0]["id"]);
    assert_eq!(shop.results().await.len(), 1, "the cancel sent nothing");
}

#[tokio::test]
async fn a_result_committed_just_before_a_crash_is_delivered_once_after_the_restart() {
    let mut shop = Shop::with("x6", json!({})).await;
    shop.transfer("600.00", Some("ROSA DIAZ"), "Pago");
    shop.read_bank().await;
    let options = || AppOptions {
        clock: Some(Arc::new(shop.f.clock.clone())),
        ..AppOptions::default()
    };
    let config = shop.f.app.state.config.clone();
    let id = shop.id();
    let dir = shop.f.app.shutdown().await;

    // A process that polls, commits the match with its frozen webhook, and dies before its
    // webhook worker runs (it is built, never served).
    let doomed = App::build_with(config.clone(), options()).await.expect("app builds");
    let list = json!([order("R-1", "600.00", "Rosa Diaz")]);
    shop.orders.otherwise(list.clone());
    shop.orders.answer(OrdersAnswer::Json(list));
    let row = doomed.state.poller.poll(id).await.expect("poll").expect("polled");
    assert_eq!(row.counts.registered, 1);
    assert!(doomed.state.matcher.pass(id).await.expect("pass"), "committed");
    drop(doomed);

    shop.f.app = TestApp::start(config, dir, options()).await;
    let queued = shop.results().await;
    assert_eq!(queued.len(), 1);
    let got = shop.hooks.next().await;
    assert_eq!(
        got.headers.get("webhook-id").and_then(|v| v.to_str().ok()),
        Some(queued[0].id.to_string().as_str())
    );
    assert!(verifies(&shop.result_secret().await, &got.headers, &got.body));
    assert!(
        got.body.contains(r#""external_id":"R-1","status":"matched""#),
        "{}",
        got.body
    );

    // Another pass on the same state writes nothing more; the next webhook is another
    // request's, not the first one again.
    shop.settle().await;
    let mut events = shop.f.app.events().await;
    shop.poll(json!([
        order("R-1", "600.00", "Rosa Diaz"),
        order("R-2", "610.00", "Rosa Diaz")
    ]))
    .await;
    shop.transfer("610.00", Some("ROSA DIAZ"), "Pago 2");
    shop.read_bank().await;
    events.next(&shop.account, "conciliation.matched").await;
    let next = shop.hooks.next().await;
    assert!(next.body.contains(r#""external_id":"R-2""#), "{}", next.body);
    let results = shop.results().await;
    assert_eq!(results.len(), 2);
    assert_eq!(
        (results[0].status.as_str(), results[0].attempts),
        ("delivered", 1),
        "sent once: {results:?}"
    );
}

#[tokio::test]
async fn reserved_extra_field_keys_are_refused_by_name() {
    let app = TestApp::spawn().await;
    let token = app.user("extras@example.com").await;
    let account = app.account(&token, "Shop").await;
    let path = format!("/accounts/{account}/config");
    let put = |fields: Value| {
        app.json(
            Method::PUT,
            &path,
            Some(&token),
            Some(json!({ "webhook_extra_fields": fields })),
        )
    };
    let reserved = [
        "external_id",
        "status",
        "amount",
        "currency",
        "name",
        "id",
        "received_at",
        "request_id",
        "occurred_at",
        "movement",
    ];
    for key in reserved {
        let r = put(json!({ key: 1, "shop": "eu-1" })).await;
        r.assert_api_error(400, "VALIDATION_ERROR");
        let message = r.body["details"][0]["message"].as_str().unwrap_or_default();
        assert_eq!(r.body["details"][0]["field"], "webhook_extra_fields");
        assert!(message.starts_with(&format!("may not set \"{key}\" (")), "{message}");
    }
    let r = put(json!({"status": "x", "shop": "eu-1", "movement": {}, "amount": 1})).await;
    r.assert_api_error(400, "VALIDATION_ERROR");
    let message = r.body["details"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(r#"may not set "amount", "movement", "status" ("#),
        "every reserved key is named: {message}"
    );
    // Nothing was stored by the refusals; a clean set is.
    let r = app.get(&path, &token).await;
    assert_eq!(r.body["webhook_extra_fields"], json!({}), "{}", r.text);
    let r = put(json!({"shop": "eu-1", "statuses": 2})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["webhook_extra_fields"], json!({"shop": "eu-1", "statuses": 2}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_passes_never_match_a_movement_twice() {
    if std::env::var("RECONBANKER_TEST_BACKEND").as_deref() != Ok("postgres") {
        println!(
            "NOTICE: racing passes run on SQLite here; the PostgreSQL run needs \
             RECONBANKER_TEST_BACKEND=postgres and TEST_DATABASE_URL (scripts/test.sh does both)"
        );
    }
    let shop = Shop::with("x7", json!({})).await;
    let id = shop.id();
    let mut listed = Vec::new();
    for round in 0..3 {
        for i in 0..6 {
            let amount = format!("{}.{:02}", 700 + round, i + 1);
            shop.transfer(&amount, Some("ANA LOPEZ"), "race");
            // Every transfer has two identical orders that could take it.
            listed.push(order(&format!("R{round}-{i}"), &amount, "Ana Lopez"));
            listed.push(order(&format!("R{round}-{i}-b"), &amount, "Ana Lopez"));
        }
        shop.read_bank().await;
        shop.orders.otherwise(Value::Array(listed.clone()));
        shop.orders.answer(OrdersAnswer::Json(Value::Array(listed.clone())));
        // The orders are registered; then four passes (and the worker's own) run on the
        // account at once, each on its own connection.
        let matcher = &shop.f.app.state.matcher;
        shop.f.app.state.poller.poll(id).await.expect("poll").expect("polled");
        let (a, b, c, d) = tokio::join!(matcher.pass(id), matcher.pass(id), matcher.pass(id), matcher.pass(id));
        for r in [a, b, c, d] {
            r.expect("a lost race is never an error");
        }
    }
    shop.settle().await;
    let movements: Vec<MovementOut> = shop
        .movements()
        .await
        .into_iter()
        .filter(|m| m.description == "race")
        .collect();
    assert_eq!(movements.len(), 18);
    let settled: BTreeSet<String> = movements
        .iter()
        .map(|m| m.matched.as_ref().expect("every transfer matched").request_id.clone())
        .collect();
    assert_eq!(settled.len(), 18, "one request per movement");
    let r = shop
        .f
        .app
        .get("/conciliation?status=matched&limit=500", &shop.f.token)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let matched: BTreeSet<String> = r
        .body
        .as_array()
        .expect("array")
        .iter()
        .map(|x| x["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(matched, settled);
    // One frozen `matched` webhook per matched request.
    let subjects: Vec<String> = shop
        .results()
        .await
        .iter()
        .filter(|d| d.event_type == "matched")
        .map(|d| d.subject_id.expect("subject").to_string())
        .collect();
    assert_eq!(subjects.len(), 18);
    assert_eq!(subjects.into_iter().collect::<BTreeSet<_>>(), matched);
}
