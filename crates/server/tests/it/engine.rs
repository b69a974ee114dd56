//! Bank sessions and assisted login end to end, against the real sandbox bank on port 0
//! (docs/product.md §5, §6, §10). Tests wait on the app's events, never on sleeps; assistance expiry is
//! driven by the injected manual clock.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use sandbox_bank::BankConfig;
use serde_json::{json, Value};

use crate::harness::{BankFixture, KilledOut, MovementOut, PendingOut, QueuedOut, RunOut, SubmittedOut, TestApp};

fn assisted() -> Value {
    json!({"login_mode": "assisted"})
}

#[tokio::test]
async fn simple_login_reads_movements_and_stores_them_once() {
    let f = BankFixture::new().await;
    let id = f.account("user_good", "pass_good", json!({})).await;
    let expected = f.bank.movements_of("user_good").len();
    assert!(expected > 0);
    let mut events = f.app.events().await;
    let queued: QueuedOut = f.post_as(&format!("/accounts/{id}/scrape"), StatusCode::ACCEPTED).await;
    assert_eq!(queued, QueuedOut { queued: true });
    let e = events.next(&id, "scrape.succeeded").await;
    assert_eq!(e.data["new_movements"], expected);
    events.next(&id, "session.stopped").await;

    let list = f.app.get(&format!("/accounts/{id}/movements"), &f.token).await;
    // Every field is on the wire (`name` may be `null`, never absent).
    let first = list.body[0].clone();
    for field in [
        "id",
        "amount",
        "currency",
        "name",
        "description",
        "received_at",
        "read_at",
    ] {
        assert!(first.get(field).is_some(), "{field} in {first}");
    }
    let rows: Vec<MovementOut> = list.typed(StatusCode::OK);
    assert_eq!(rows.len(), expected);
    let dates: Vec<&str> = rows.iter().map(|m| m.received_at.as_str()).collect();
    assert!(dates.windows(2).all(|w| w[0] >= w[1]), "newest first: {dates:?}");

    // Read twice, stored once.
    f.post(&format!("/accounts/{id}/scrape")).await;
    let e = events.next(&id, "scrape.succeeded").await;
    assert_eq!(e.data["new_movements"], 0);
    events.next(&id, "session.stopped").await;
    let again: Vec<MovementOut> = f
        .app
        .get_as(&format!("/accounts/{id}/movements?limit=500"), &f.token, StatusCode::OK)
        .await;
    assert_eq!(again.len(), expected);

    let runs: Vec<RunOut> = f
        .app
        .get_as(&format!("/accounts/{id}/runs"), &f.token, StatusCode::OK)
        .await;
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].outcome, "succeeded");
    assert_eq!(runs[0].new_movements, 0);
    assert_eq!(runs[1].new_movements as usize, expected);
    assert_eq!(runs[1].movements_read as usize, expected);
    assert!(runs[0].ended_at.is_some());
}

#[tokio::test]
async fn a_scrape_asked_for_while_a_one_shot_session_ends_is_not_dropped() {
    let f = BankFixture::new().await;
    let id = f.account("user_good", "pass_good", json!({})).await;
    let mut events = f.app.events().await;
    f.post(&format!("/accounts/{id}/scrape")).await;
    events.next(&id, "scrape.succeeded").await;
    // The session has read and is ending (logout, run record): this scrape reaches it while it
    // is still live but will not read again, so a new session must read.
    let r = f.post(&format!("/accounts/{id}/scrape")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    events.next(&id, "session.stopped").await;
    let e = events.next(&id, "scrape.succeeded").await;
    assert_eq!(e.data["new_movements"], 0);
    events.next(&id, "session.stopped").await;
    let runs: Vec<RunOut> = f
        .app
        .get_as(&format!("/accounts/{id}/runs"), &f.token, StatusCode::OK)
        .await;
    assert_eq!(runs.len(), 2, "{runs:?}");
}

#[tokio::test]
async fn assisted_login_through_v1_to_the_letter() {
    let f = BankFixture::new().await;
    let id = f.account("user_otp", "pass_otp", assisted()).await;
    let key = f.app.key(&f.token, &["otp:write", "status:read"], None).await;
    let otp = format!("/v1/accounts/{id}/otp");
    let mut events = f.app.events().await;
    f.post(&format!("/accounts/{id}/scrape")).await;

    let requested = events.next(&id, "assistance.requested").await;
    assert_eq!(requested.data["attempts"], 0);
    assert_eq!(
        requested.data["descriptor"],
        json!({"length": 6, "type": "numeric", "purpose": "login"})
    );
    let s = f.app.status(&id, &key).await;
    let pending = s.pending_assistance.expect("pending");
    let request_id = pending.id.clone();
    assert_eq!(requested.data["requestId"], request_id);
    assert!(s.session_running);
    assert_eq!(pending.kind, "otp");
    let d = &pending.descriptor;
    assert_eq!(
        (d.length, d.kind.as_str(), d.purpose.as_deref()),
        (6, "numeric", Some("login"))
    );
    assert_eq!(pending.attempts, 0);
    assert_eq!(f.account_out(&id).await.session_status, "awaiting_code");

    // Wrong code: the same request stays pending with attempts 1, announced again.
    let mut bank_otps = f.bank.subscribe_otp();
    let r = f
        .app
        .v1(Method::POST, &otp, &key, Some(json!({"code": "000000"})))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let judged = tokio::time::timeout(Duration::from_secs(30), bank_otps.recv())
        .await
        .expect("the bank judged no code within 30 s");
    assert!(!judged.expect("bank judged it").accepted);
    let again = events.next(&id, "assistance.requested").await;
    assert_eq!(again.data["attempts"], 1);
    assert_eq!(again.data["requestId"], request_id);
    let pending = f.app.status(&id, &key).await.pending_assistance.expect("pending");
    assert_eq!(pending.id, request_id);
    assert_eq!(pending.attempts, 1);

    // A code that cannot match the descriptor is refused here and spends no bank attempt.
    let judged = f.bank.stats().otp_submissions;
    for bad in ["12345", "abcdef", "1234567"] {
        let r = f.app.v1(Method::POST, &otp, &key, Some(json!({"code": bad}))).await;
        r.assert_v1_error(400, "VALIDATION_ERROR");
    }
    assert_eq!(f.bank.stats().otp_submissions, judged, "no bank attempt burned");

    // Right code: fulfilled, movements read, nothing pending.
    let r = f
        .app
        .v1(
            Method::POST,
            &otp,
            &key,
            Some(json!({"code": "123456", "request_id": request_id})),
        )
        .await;
    let submitted: SubmittedOut = r.typed(StatusCode::ACCEPTED);
    assert_eq!(
        submitted,
        SubmittedOut {
            submitted: true,
            request_id: request_id.clone()
        }
    );
    let fulfilled = events.next(&id, "assistance.fulfilled").await;
    assert_eq!(fulfilled.data["requestId"], request_id);
    events.next(&id, "login.succeeded").await;
    let scraped = events.next(&id, "scrape.succeeded").await;
    assert!(scraped.data["new_movements"].as_u64().expect("count") > 0);
    events.next(&id, "session.stopped").await;
    let s = f.app.status(&id, &key).await;
    assert!(s.pending_assistance.is_none(), "{s:?}");
    assert!(!s.session_running);
    let row = f
        .app
        .state
        .store
        .assistance_by_id(request_id.parse().expect("uuid"))
        .await
        .expect("db")
        .expect("row");
    assert_eq!(row.status, reconbanker_store::AssistanceStatus::Fulfilled);
    assert_eq!(row.attempts, 1);
    let movements: Vec<MovementOut> = f
        .app
        .get_as(&format!("/accounts/{id}/movements"), &f.token, StatusCode::OK)
        .await;
    assert!(!movements.is_empty());
}

#[tokio::test]
async fn alphanumeric_codes_through_the_dashboard() {
    let f = BankFixture::new().await;
    let id = f.account("user_alnum", "pass_alnum", assisted()).await;
    let mut events = f.app.events().await;
    f.post(&format!("/accounts/{id}/scrape")).await;
    let requested = events.next(&id, "assistance.requested").await;
    assert_eq!(requested.data["descriptor"]["type"], "alphanumeric");
    assert_eq!(requested.data["descriptor"]["length"], 8);
    let pending: PendingOut = f
        .app
        .get_as(&format!("/accounts/{id}/otp"), &f.token, StatusCode::OK)
        .await;
    assert_eq!(pending.descriptor.length, 8);
    assert_eq!(pending.attempts, 0);
    let path = format!("/accounts/{id}/otp");
    f.app
        .json(Method::POST, &path, Some(&f.token), Some(json!({"code": "AB12-D34"})))
        .await
        .assert_api_error(400, "VALIDATION_ERROR");
    let r = f
        .app
        .json(Method::POST, &path, Some(&f.token), Some(json!({"code": "AB12CD34"})))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    events.next(&id, "assistance.fulfilled").await;
    events.next(&id, "scrape.succeeded").await;
    assert_eq!(f.app.get(&path, &f.token).await.body, Value::Null);
}

#[tokio::test]
async fn three_wrong_codes_lock_the_login_and_restart_clears_the_block() {
    let f = BankFixture::new().await;
    let id = f.account("user_otp", "pass_otp", assisted()).await;
    let key = f.app.key(&f.token, &["otp:write"], None).await;
    let otp = format!("/v1/accounts/{id}/otp");
    let mut events = f.app.events().await;
    f.post(&format!("/accounts/{id}/scrape")).await;
    let first = events.next(&id, "assistance.requested").await;
    for attempt in 1..=3 {
        let r = f
            .app
            .v1(Method::POST, &otp, &key, Some(json!({"code": "000000"})))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "attempt {attempt}: {}", r.text);
        if attempt < 3 {
            let e = events.next(&id, "assistance.requested").await;
            assert_eq!(e.data["attempts"], attempt);
        }
    }
    let cancelled = events.next(&id, "assistance.cancelled").await;
    assert_eq!(cancelled.data["requestId"], first.data["requestId"]);
    assert_eq!(cancelled.data["reason"], "otp_rejected");
    let failed = events.next(&id, "login.failed").await;
    assert_eq!(failed.data["reason"], "otp_rejected");
    events.next(&id, "session.needs_attention").await;
    events.next(&id, "session.stopped").await;
    let acc = f.account_out(&id).await;
    assert_eq!(acc.scrape_blocked_reason.as_deref(), Some("otp_rejected"));
    assert!(acc.scrape_blocked_at.is_some());
    assert_eq!(acc.session_status, "needs_attention");
    f.app
        .v1(Method::POST, &otp, &key, Some(json!({"code": "123456"})))
        .await
        .assert_v1_error(409, "NO_PENDING_ASSISTANCE");

    // restart clears the block and runs a session: a new request, not the old one.
    let queued: QueuedOut = f
        .post_as(&format!("/accounts/{id}/restart"), StatusCode::ACCEPTED)
        .await;
    assert_eq!(queued, QueuedOut { queued: true });
    let fresh = events.next(&id, "assistance.requested").await;
    assert_ne!(fresh.data["requestId"], first.data["requestId"]);
    let acc = f.account_out(&id).await;
    assert_eq!(acc.scrape_blocked_at, None);
    assert_eq!(acc.scrape_blocked_reason, None);
}

#[tokio::test]
async fn no_code_before_the_timeout_expires_the_request() {
    let f = BankFixture::new().await;
    let id = f.account("user_otp", "pass_otp", assisted()).await;
    let mut events = f.app.events().await;
    f.post(&format!("/accounts/{id}/scrape")).await;
    let requested = events.next(&id, "assistance.requested").await;
    // Injected time: five minutes pass at once.
    f.clock.advance(Duration::from_secs(5 * 60));
    let expired = events.next(&id, "assistance.expired").await;
    assert_eq!(expired.data["requestId"], requested.data["requestId"]);
    let failed = events.next(&id, "login.failed").await;
    assert_eq!(failed.data["reason"], "assistance_expired");
    events.next(&id, "session.stopped").await;
    assert_eq!(
        f.account_out(&id).await.scrape_blocked_reason.as_deref(),
        Some("assistance_expired"),
        "an expired assisted login is fatal"
    );
    let row = f
        .app
        .state
        .store
        .assistance_by_id(requested.data["requestId"].as_str().expect("id").parse().expect("uuid"))
        .await
        .expect("db")
        .expect("row");
    assert_eq!(row.status, reconbanker_store::AssistanceStatus::Expired);
    assert_eq!(f.bank.stats().otp_submissions, 0);
}

#[tokio::test]
async fn kill_cancels_and_a_later_code_is_409() {
    let f = BankFixture::new().await;
    let id = f.account("user_otp", "pass_otp", assisted()).await;
    let key = f.app.key(&f.token, &["otp:write", "status:read"], None).await;
    let mut events = f.app.events().await;
    f.post(&format!("/accounts/{id}/scrape")).await;
    events.next(&id, "assistance.requested").await;
    let killed: KilledOut = f.post_as(&format!("/accounts/{id}/kill"), StatusCode::ACCEPTED).await;
    assert_eq!(killed, KilledOut { killed: true });
    let cancelled = events.next(&id, "assistance.cancelled").await;
    assert_eq!(cancelled.data["reason"], "killed");
    let stopped = events.next(&id, "session.stopped").await;
    assert_eq!(stopped.data["reason"], "killed");
    f.app
        .v1(
            Method::POST,
            &format!("/v1/accounts/{id}/otp"),
            &key,
            Some(json!({"code": "123456"})),
        )
        .await
        .assert_v1_error(409, "NO_PENDING_ASSISTANCE");
    let s = f.app.status(&id, &key).await;
    assert!(!s.session_running);
    assert!(s.pending_assistance.is_none(), "{s:?}");
    assert_eq!(
        f.account_out(&id).await.scrape_blocked_at,
        None,
        "a kill is not a fatal failure"
    );
    assert_eq!(
        f.post(&format!("/accounts/{id}/kill")).await.body,
        json!({"killed": false})
    );
}

#[tokio::test]
async fn deleting_an_account_mid_login_cancels_it() {
    let f = BankFixture::new().await;
    let id = f.account("user_otp", "pass_otp", assisted()).await;
    let mut events = f.app.events().await;
    f.post(&format!("/accounts/{id}/scrape")).await;
    events.next(&id, "assistance.requested").await;
    let r = f
        .app
        .json(
            Method::DELETE,
            &format!("/accounts/{id}"),
            Some(&f.token),
            Some(json!({"confirmation_name": "user_otp"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let cancelled = events.next(&id, "assistance.cancelled").await;
    assert_eq!(cancelled.data["reason"], "account_deleted");
    events.next(&id, "session.stopped").await;
    assert!(!f.app.state.sessions.is_running(id.parse().expect("uuid")));
}

#[tokio::test]
async fn a_flaky_bank_is_retried_without_a_block() {
    let f = BankFixture::new().await;
    let id = f.account("user_flaky", "pass_flaky", json!({})).await;
    let mut events = f.app.events().await;
    f.post(&format!("/accounts/{id}/scrape")).await;
    let failed = events.next(&id, "login.failed").await;
    assert!(
        failed.data["reason"].as_str().expect("reason").starts_with("retryable"),
        "{}",
        failed.data
    );
    events.next(&id, "login.succeeded").await;
    events.next(&id, "scrape.succeeded").await;
    events.next(&id, "session.stopped").await;
    assert_eq!(f.account_out(&id).await.scrape_blocked_at, None);
    assert!(f.bank.stats().server_errors >= 1);
    let runs: Vec<RunOut> = f
        .app
        .get_as(&format!("/accounts/{id}/runs"), &f.token, StatusCode::OK)
        .await;
    let outcomes: Vec<&str> = runs.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(outcomes, ["succeeded", "failed"], "newest first");
}

#[tokio::test]
async fn fatal_failures_block_the_account() {
    let f = BankFixture::new().await;
    for (user, password, extra, reason) in [
        ("user_good", "wrong-password", json!({}), "bad_credentials"),
        ("user_locked", "pass_locked", json!({}), "account_locked"),
        (
            "user_otp",
            "pass_otp",
            json!({"login_mode": "simple"}),
            "second_factor_required",
        ),
    ] {
        let id = f.account(user, password, extra).await;
        let mut events = f.app.events().await;
        f.post(&format!("/accounts/{id}/scrape")).await;
        let failed = events.next(&id, "login.failed").await;
        assert_eq!(failed.data["reason"], reason);
        events.next(&id, "session.stopped").await;
        let acc = f.account_out(&id).await;
        assert_eq!(acc.scrape_blocked_reason.as_deref(), Some(reason));
        assert_eq!(acc.session_status, "needs_attention");
    }
}

#[tokio::test]
async fn a_restart_with_a_login_pending_leaves_nothing_pending() {
    let f = BankFixture::new().await;
    let id = f.account("user_otp", "pass_otp", assisted()).await;
    let key = f.app.key(&f.token, &["status:read"], None).await;
    let mut events = f.app.events().await;
    f.post(&format!("/accounts/{id}/scrape")).await;
    let requested = events.next(&id, "assistance.requested").await;
    let request_id: reconbanker_store::AssistanceRequestId =
        requested.data["requestId"].as_str().expect("id").parse().expect("uuid");

    let app = f.app.restart(reconbanker::AppOptions::default()).await;
    let s = app.status(&id, &key).await;
    assert!(s.pending_assistance.is_none(), "{s:?}");
    assert!(!s.session_running);
    let row = app
        .state
        .store
        .assistance_by_id(request_id)
        .await
        .expect("db")
        .expect("row");
    assert_eq!(row.status, reconbanker_store::AssistanceStatus::Cancelled);
    assert_eq!(row.reason.as_deref(), Some("shutdown"), "a graceful stop says so");

    // A process that died without shutting down leaves its request pending in the database:
    // the next boot closes it as `process_restart`.
    let user = app
        .state
        .store
        .user_by_email("owner@example.com")
        .await
        .expect("db")
        .expect("user");
    let (orphan, _w) = app
        .state
        .assistance
        .open(
            id.parse().expect("uuid"),
            user.id,
            reconbanker_store::Descriptor {
                length: 6,
                kind: reconbanker_store::CodeKind::Numeric,
                purpose: None,
            },
        )
        .await
        .expect("open");
    std::mem::forget(_w);
    let app = app.restart(reconbanker::AppOptions::default()).await;
    let row = app
        .state
        .store
        .assistance_by_id(orphan.id)
        .await
        .expect("db")
        .expect("row");
    assert_eq!(row.status, reconbanker_store::AssistanceStatus::Cancelled);
    assert_eq!(row.reason.as_deref(), Some("process_restart"));
    let logged = app.state.store.list_events(user.id, None, 0, 500).await.expect("log");
    let announced = logged.iter().any(|e| {
        e.kind == "assistance.cancelled"
            && e.data.contains(&orphan.id.to_string())
            && e.data.contains("process_restart")
    });
    assert!(announced, "the boot-time cancellation is announced in the event log");
    let s = app.status(&id, &key).await;
    assert!(s.pending_assistance.is_none(), "{s:?}");
}

#[tokio::test]
async fn persistent_sessions_read_new_movements_and_log_in_again() {
    let f = BankFixture::with(&[("RECONBANKER_POLL_INTERVAL_SECS", "3600")], BankConfig::default()).await;
    // Subscribed first: the scheduler may start the session as soon as the account exists.
    let mut events = f.app.events().await;
    let id = f
        .account("user_good", "pass_good", json!({"session_type": "persistent"}))
        .await;
    let interval = f.bank.config().movement_interval;
    let r = f.post(&format!("/accounts/{id}/reactivate")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.body, json!({"started": true}));
    let started = events.next(&id, "session.started").await;
    assert_eq!(started.data["kind"], "persistent");
    let first = events.next(&id, "scrape.succeeded").await;
    let initial = first.data["new_movements"].as_u64().expect("n");
    assert!(initial > 0);
    assert_eq!(f.account_out(&id).await.session_status, "running");

    // Two new movements appear at the bank; the live session reads them (scrape = read now).
    f.bank.advance(interval * 2);
    f.post(&format!("/accounts/{id}/scrape")).await;
    let next = events.next(&id, "scrape.succeeded").await;
    assert_eq!(next.data["new_movements"], 2);
    let logins_before = f.bank.stats().logins_succeeded;

    // The bank drops the session: the engine logs in again and keeps reading.
    assert!(f.bank.drop_sessions("user_good") >= 1);
    f.bank.advance(interval);
    f.post(&format!("/accounts/{id}/scrape")).await;
    events.next(&id, "login.succeeded").await;
    let after = events.next(&id, "scrape.succeeded").await;
    assert_eq!(after.data["new_movements"], 1);
    assert_eq!(f.bank.stats().logins_succeeded, logins_before + 1);
    let total: Vec<MovementOut> = f
        .app
        .get_as(&format!("/accounts/{id}/movements?limit=500"), &f.token, StatusCode::OK)
        .await;
    assert_eq!(total.len() as u64, initial + 3);

    let r = f.post(&format!("/accounts/{id}/kill")).await;
    assert_eq!(r.body, json!({"killed": true}));
    events.next(&id, "session.stopped").await;
}

#[tokio::test]
async fn session_endpoints_are_tenant_scoped() {
    let f = BankFixture::new().await;
    let id = f.account("user_good", "pass_good", json!({})).await;
    let other = f.app.user("other@example.com").await;
    for (method, path) in [
        (Method::POST, "scrape"),
        (Method::POST, "restart"),
        (Method::POST, "kill"),
        (Method::POST, "reactivate"),
        (Method::GET, "movements"),
        (Method::GET, "runs"),
    ] {
        let r = f
            .app
            .json(method, &format!("/accounts/{id}/{path}"), Some(&other), None)
            .await;
        r.assert_api_error(404, "NOT_FOUND");
    }
    let _: &TestApp = &f.app;
}

#[tokio::test]
async fn a_slow_bank_times_out_as_a_retryable_failure() {
    let bank = BankConfig {
        slow_delay: Duration::from_secs(3),
        ..BankConfig::default()
    };
    let f = BankFixture::with(
        &[
            ("RECONBANKER_BANK_TIMEOUT_SECS", "1"),
            ("RECONBANKER_RETRY_ATTEMPTS", "0"),
        ],
        bank,
    )
    .await;
    let id = f.account("user_slow", "pass_slow", json!({})).await;
    let mut events = f.app.events().await;
    f.post(&format!("/accounts/{id}/scrape")).await;
    let failed = events.next(&id, "login.failed").await;
    assert_eq!(failed.data["reason"], "retryable: timeout");
    let stopped = events.next(&id, "session.stopped").await;
    assert_eq!(stopped.data["reason"], "retries_exhausted");
    assert_eq!(
        f.account_out(&id).await.scrape_blocked_at,
        None,
        "a timeout is not fatal"
    );
}

#[tokio::test]
async fn kill_then_reactivate_never_runs_two_sessions_at_once() {
    let f = BankFixture::with(&[("RECONBANKER_POLL_INTERVAL_SECS", "3600")], BankConfig::default()).await;
    let id = f
        .account("user_good", "pass_good", json!({"session_type": "persistent"}))
        .await;
    let mut events = f.app.events().await;
    f.post(&format!("/accounts/{id}/reactivate")).await;
    events.next(&id, "scrape.succeeded").await;
    let mut sessions = f.app.events().await;
    assert_eq!(
        f.post(&format!("/accounts/{id}/kill")).await.body,
        json!({"killed": true})
    );
    // Asked for again while the killed session may still be winding down: the new one starts
    // only after the old one has stopped.
    f.post(&format!("/accounts/{id}/reactivate")).await;
    let mut order = Vec::new();
    while order.len() < 2 {
        let e = sessions.next_any(&id).await;
        if e.kind == "session.started" || e.kind == "session.stopped" {
            order.push(e.kind.clone());
        }
    }
    assert_eq!(order, ["session.stopped", "session.started"], "{order:?}");
    events.next(&id, "scrape.succeeded").await;
    assert_eq!(
        f.post(&format!("/accounts/{id}/kill")).await.body,
        json!({"killed": true})
    );
}

#[tokio::test]
async fn the_scheduler_keeps_persistent_sessions_reading_and_skips_blocked_accounts() {
    let f = BankFixture::with(
        &[
            ("RECONBANKER_SCAN_INTERVAL_MS", "20"),
            ("RECONBANKER_POLL_INTERVAL_SECS", "1"),
        ],
        BankConfig::default(),
    )
    .await;
    let mut events = f.app.events().await;
    // Nobody asks: the scheduler starts the persistent session and the poll timer reads.
    let id = f
        .account("user_good", "pass_good", json!({"session_type": "persistent"}))
        .await;
    events.next(&id, "session.started").await;
    events.next(&id, "scrape.succeeded").await;
    f.bank.advance(f.bank.config().movement_interval);
    let polled = events.next(&id, "scrape.succeeded").await;
    assert_eq!(
        polled.data["new_movements"], 1,
        "read by the poll timer, without a scrape request"
    );
    assert_eq!(
        f.post(&format!("/accounts/{id}/kill")).await.body,
        json!({"killed": true})
    );

    // A fatal failure blocks the account: the scheduler leaves it alone until restart.
    let locked = f
        .account("user_locked", "pass_locked", json!({"session_type": "persistent"}))
        .await;
    let failed = events.next(&locked, "login.failed").await;
    assert_eq!(failed.data["reason"], "account_locked");
    events.next(&locked, "session.stopped").await;
    let attempts = f.bank.stats().logins_attempted;
    // Scans pass, proven by the scheduler's own work rather than by elapsed time: each probe
    // is a new persistent account, started by a scan that listed the blocked account too. None
    // of those scans starts a session for the blocked one: no session is live for it and the
    // bank saw only the probes' logins.
    let locked_id = locked.parse().expect("uuid");
    const PROBES: u64 = 3;
    for n in 0..PROBES {
        let probe = f
            .account("user_good", "pass_good", json!({"session_type": "persistent"}))
            .await;
        events.next(&probe, "session.started").await;
        events.next(&probe, "scrape.succeeded").await;
        assert!(
            !f.app.state.sessions.is_running(locked_id),
            "a blocked account is not scheduled (probe {n})"
        );
        let killed: KilledOut = f
            .post_as(&format!("/accounts/{probe}/kill"), StatusCode::ACCEPTED)
            .await;
        assert_eq!(killed, KilledOut { killed: true });
        events.next(&probe, "session.stopped").await;
    }
    assert_eq!(f.bank.stats().logins_attempted, attempts + PROBES);
    f.post(&format!("/accounts/{locked}/restart")).await;
    events.next(&locked, "session.started").await;
}
