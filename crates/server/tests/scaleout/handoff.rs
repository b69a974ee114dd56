//! The assistance broker across instances: a code submitted to one instance reaches the login
//! another instance holds (and the bank judges it); when the holder is killed, another instance
//! takes the account over within the lease time, the old request is cancelled `owner_lost`, and
//! a code for it is refused (409), never accepted into the void.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{self, Database, Instance, Sse, SseEvent};

/// The lease length of the take-over test (the shortest the setting allows).
const LEASE_SECS: u64 = 3;

/// A field of an event's data (`/realtime/events` carries the event's own data).
fn field<'a>(e: &'a SseEvent, name: &str) -> &'a Value {
    match &e.data[name] {
        Value::Null => &e.data["data"][name],
        v => v,
    }
}

/// The next event of one of `kinds`, skipping the others.
async fn next_of(events: &mut Sse, kinds: &[&str]) -> SseEvent {
    loop {
        let e = events.next().await;
        if kinds.contains(&e.event.as_str()) {
            return e;
        }
    }
}

struct Login {
    token: String,
    key: String,
    account: String,
    events: Sse,
}

/// A user, an assisted account on the sandbox bank's `user_otp`, and a realtime stream on
/// `watch`; the session is started on `holder`, which then waits for the code.
async fn assisted_login(holder: &Instance, watch: &Instance) -> (Login, String) {
    let token = holder.user("owner@example.com").await;
    let account = holder.account(&token, "Main").await;
    let (_, key) = holder.key(&token, &["otp:write", "status:read"]).await;
    let bearer = format!("Bearer {token}");
    let mut events = Sse::open(watch, "/realtime/events", &[("authorization", &bearer)]).await;
    let detail = format!("/accounts/{account}");
    holder
        .dash(
            Method::PUT,
            &format!("{detail}/config"),
            &token,
            Some(json!({"bank_username": "user_otp", "bank_password": "pass_otp", "login_mode": "assisted"})),
        )
        .await
        .expect(StatusCode::OK);
    holder
        .dash(Method::POST, &format!("{detail}/scrape"), &token, None)
        .await;
    let requested = next_of(&mut events, &["assistance.requested"]).await;
    let request = field(&requested, "requestId").as_str().expect("requestId").to_owned();
    (
        Login {
            token,
            key,
            account,
            events,
        },
        request,
    )
}

#[tokio::test]
async fn a_code_sent_to_another_instance_reaches_the_login_and_the_bank_judges_it() {
    let Some(server) = harness::postgres_server() else {
        return;
    };
    let db = Database::create(&server).await;
    let (_bank, bank_url) = harness::sandbox_bank().await;
    let env = [("RECONBANKER_SANDBOX_BANK", bank_url.as_str())];
    let all = harness::start_many(&db.url, 3, &env).await;
    let (a, b, c) = (&all[0], &all[1], &all[2]);
    let (mut login, request) = assisted_login(a, c).await;
    let detail = format!("/accounts/{}", login.account);
    let seen = b
        .dash(Method::GET, &detail, &login.token, None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(seen["sessionOwner"], json!(a.id), "A holds the login");

    // A wrong code through C's dashboard: C answers 202 only once A's login has it, and the
    // bank refuses it — the same request is announced again with one attempt more.
    let res = c
        .dash(
            Method::POST,
            &format!("{detail}/otp"),
            &login.token,
            Some(json!({"code": "000000", "request_id": request})),
        )
        .await;
    let body = res.expect(StatusCode::ACCEPTED);
    assert_eq!(
        body["requestId"].as_str().or(body["request_id"].as_str()),
        Some(request.as_str())
    );
    let again = next_of(&mut login.events, &["assistance.requested", "assistance.cancelled"]).await;
    assert_eq!(again.event, "assistance.requested", "{again:?}");
    assert_eq!(field(&again, "requestId"), &json!(request));
    assert_eq!(field(&again, "attempts"), &json!(1), "the bank judged the code");

    // The right code through B's `/v1`: 202, and the bank accepts it.
    b.v1(
        Method::POST,
        &format!("/v1/accounts/{}/otp", login.account),
        &login.key,
        Some(json!({"code": "123456", "request_id": request})),
    )
    .await
    .expect(StatusCode::ACCEPTED);
    let mut kinds = Vec::new();
    loop {
        let e = login.events.next().await;
        assert_ne!(e.event, "assistance.cancelled", "{e:?} after {kinds:?}");
        kinds.push(e.event.clone());
        if e.event == "session.stopped" {
            break;
        }
    }
    assert!(kinds.iter().any(|k| k == "assistance.fulfilled"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "login.succeeded"), "{kinds:?}");

    // Nothing is pending any more: a further code on B is refused, not parked.
    let late = b
        .v1(
            Method::POST,
            &format!("/v1/accounts/{}/otp", login.account),
            &login.key,
            Some(json!({"code": "123456"})),
        )
        .await;
    let body = late.expect(StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], json!("NO_PENDING_ASSISTANCE"), "{body}");
    // No code is left in the hand-off table.
    let mut conn = db.connect().await;
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM code_offers")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(left, 0);
}

#[tokio::test]
async fn killing_the_holder_hands_the_account_to_another_instance_and_the_old_request_takes_no_code() {
    let Some(server) = harness::postgres_server() else {
        return;
    };
    let db = Database::create(&server).await;
    let (_bank, bank_url) = harness::sandbox_bank().await;
    let lease = LEASE_SECS.to_string();
    let env = [
        ("RECONBANKER_SANDBOX_BANK", bank_url.as_str()),
        ("RECONBANKER_SESSION_LEASE_SECS", lease.as_str()),
    ];
    let mut all = harness::start_many(&db.url, 3, &env).await;
    let (c, b) = (all.pop().expect("C"), all.pop().expect("B"));
    let a = all.pop().expect("A");
    let (mut login, old) = assisted_login(&a, &c).await;
    let detail = format!("/accounts/{}", login.account);
    let a_id = a.id.clone();
    let otp = format!("/v1/accounts/{}/otp", login.account);

    // kill -9 of the instance holding the login.
    let killed_at = Instant::now();
    drop(a);

    // A code for the old request, at once on B: nobody takes it — 409, never 202. Meanwhile
    // another instance takes the account over: the old request is cancelled `owner_lost`, and
    // a new login asks for a code.
    let refused = b.v1(
        Method::POST,
        &otp,
        &login.key,
        Some(json!({"code": "123456", "request_id": old})),
    );
    let lost = async {
        let e = next_of(&mut login.events, &["assistance.cancelled", "assistance.fulfilled"]).await;
        (e, killed_at.elapsed())
    };
    let (res, (cancelled, lost_after)) = tokio::join!(refused, lost);
    let body = res.expect(StatusCode::CONFLICT);
    assert!(
        ["NO_PENDING_ASSISTANCE", "STALE_REQUEST"].contains(&body["error"]["code"].as_str().unwrap_or_default()),
        "{body}"
    );
    assert_eq!(cancelled.event, "assistance.cancelled", "{cancelled:?}");
    assert_eq!(field(&cancelled, "requestId"), &json!(old));
    assert_eq!(field(&cancelled, "reason"), &json!("owner_lost"));
    let requested = next_of(&mut login.events, &["assistance.requested"]).await;
    let new = field(&requested, "requestId").as_str().expect("requestId").to_owned();
    assert_ne!(new, old);
    let taken_after = killed_at.elapsed();
    eprintln!(
        "take-over: owner_lost {} ms, new request {} ms after kill -9 (lease {LEASE_SECS} s)",
        lost_after.as_millis(),
        taken_after.as_millis()
    );
    // The lease runs out at most one lease length after A's last renewal; the sweep looks
    // ten times per lease. Generous for a loaded machine, far below the 5-minute assistance
    // timeout that would otherwise end the old request.
    assert!(
        lost_after <= Duration::from_secs(2 * LEASE_SECS),
        "taken over {lost_after:?} after the kill"
    );
    let owner = b
        .dash(Method::GET, &detail, &login.token, None)
        .await
        .expect(StatusCode::OK)["sessionOwner"]
        .clone();
    assert!(owner == json!(b.id) || owner == json!(c.id), "{owner} (A was {a_id})");
    let (holder, other) = if owner == json!(b.id) { (&b, &c) } else { (&c, &b) };

    // A code for the old request is refused on every live instance; the new one works.
    for i in [holder, other] {
        let body = i
            .v1(
                Method::POST,
                &otp,
                &login.key,
                Some(json!({"code": "123456", "request_id": old})),
            )
            .await
            .expect(StatusCode::CONFLICT);
        assert_eq!(body["error"]["code"], json!("STALE_REQUEST"), "{body}");
        assert_eq!(body["error"]["details"]["pending_request_id"], json!(new), "{body}");
    }
    other
        .v1(
            Method::POST,
            &otp,
            &login.key,
            Some(json!({"code": "123456", "request_id": new})),
        )
        .await
        .expect(StatusCode::ACCEPTED);
    let done = next_of(
        &mut login.events,
        &["assistance.fulfilled", "assistance.cancelled", "assistance.expired"],
    )
    .await;
    assert_eq!(done.event, "assistance.fulfilled", "{done:?}");
    assert_eq!(field(&done, "requestId"), &json!(new));
}

#[tokio::test]
async fn the_otp_budget_of_an_account_is_one_budget_across_instances() {
    let Some(server) = harness::postgres_server() else {
        return;
    };
    let db = Database::create(&server).await;
    const LIMIT: usize = 4;
    let limit = LIMIT.to_string();
    let env = [("RECONBANKER_OTP_RATE_LIMIT", limit.as_str())];
    let all = harness::start_many(&db.url, 3, &env).await;
    let token = all[0].user("owner@example.com").await;
    let account = all[0].account(&token, "Main").await;
    let (_, key) = all[0].key(&token, &["otp:write"]).await;
    let otp = format!("/v1/accounts/{account}/otp");
    // Nothing is pending: each code is counted, then refused with 409. Spread over the three
    // instances, the budget runs out after LIMIT codes in all, not LIMIT per instance.
    for n in 0..LIMIT {
        let body = all[n % 3]
            .v1(Method::POST, &otp, &key, Some(json!({"code": "123456"})))
            .await
            .expect(StatusCode::CONFLICT);
        assert_eq!(body["error"]["code"], json!("NO_PENDING_ASSISTANCE"), "{body}");
    }
    for i in &all {
        let res = i.v1(Method::POST, &otp, &key, Some(json!({"code": "123456"}))).await;
        res.expect(StatusCode::TOO_MANY_REQUESTS);
    }
}
