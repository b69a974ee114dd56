//! The PostgreSQL event bus: streams on one instance see the events caused on the others, in
//! log order, none missing.

use reqwest::{Method, StatusCode};
use sqlx::Row;

use crate::harness::{self, Database, Instance, Sse, SseEvent};

/// The account an event is about (`/realtime/events` is camelCase, `/v1/events` snake_case).
fn account_of(e: &SseEvent) -> String {
    e.data
        .get("accountId")
        .or_else(|| e.data.get("account_id"))
        .and_then(|v| v.as_str())
        .expect("an account id")
        .to_owned()
}

/// Reads `stream` until it has seen `session.stopped` for `account`.
async fn until_stopped(stream: &mut Sse, account: &str, seen: &mut Vec<SseEvent>) {
    loop {
        let e = stream.next().await;
        let done = e.event == "session.stopped" && account_of(&e) == account;
        seen.push(e);
        if done {
            return;
        }
    }
}

/// Starts the account's session on `on` (an account with no config: it starts and stops).
async fn reactivate(on: &Instance, token: &str, account: &str) {
    on.dash(Method::POST, &format!("/accounts/{account}/reactivate"), token, None)
        .await
        .expect(StatusCode::ACCEPTED);
}

#[tokio::test]
async fn streams_on_one_instance_see_every_event_caused_on_the_others_in_order() {
    let Some(server) = harness::postgres_server() else {
        return;
    };
    let db = Database::create(&server).await;
    let mut instances = harness::start_many(&db.url, 3, &[]).await.into_iter();
    let (a, b, c) = (
        instances.next().expect("a"),
        instances.next().expect("b"),
        instances.next().expect("c"),
    );
    let token = a.user("owner@example.com").await;
    let (first, second) = (a.account(&token, "First").await, b.account(&token, "Second").await);
    let (_, key) = b.key(&token, &["status:read"]).await;

    // Both kinds of stream, on C only.
    let bearer = format!("Bearer {token}");
    let mut dashboard = Sse::open(&c, "/realtime/events", &[("authorization", &bearer)]).await;
    let mut external = Sse::open(&c, "/v1/events", &[("x-api-key", &key)]).await;

    // Sessions started alternately on A and B: each instance runs the one it was asked for and
    // logs its events.
    let (mut on_dashboard, mut on_external) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        for (instance, account) in [(&a, &first), (&b, &second)] {
            reactivate(instance, &token, account).await;
            until_stopped(&mut dashboard, account, &mut on_dashboard).await;
            until_stopped(&mut external, account, &mut on_external).await;
        }
    }

    // The truth: the user's events in the log, up to the last one the streams showed.
    let user: String = a.dash(Method::GET, "/me", &token, None).await.expect(StatusCode::OK)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut conn = db.connect().await;
    let last = on_dashboard.last().expect("events").id;
    let logged: Vec<(i64, String)> =
        sqlx::query("SELECT seq, kind FROM events WHERE user_id = $1::uuid AND seq <= $2 ORDER BY seq")
            .bind(&user)
            .bind(last)
            .fetch_all(&mut conn)
            .await
            .expect("read the log")
            .iter()
            .map(|r| (r.get("seq"), r.get("kind")))
            .collect();
    let shown = |seen: &[SseEvent]| -> Vec<(i64, String)> { seen.iter().map(|e| (e.id, e.event.clone())).collect() };
    assert_eq!(
        shown(&on_dashboard),
        logged,
        "/realtime/events on C: every event, in log order"
    );
    assert_eq!(
        shown(&on_external),
        logged,
        "/v1/events on C: every event, in log order"
    );
    for account in [&first, &second] {
        let stops = on_dashboard
            .iter()
            .filter(|e| e.event == "session.stopped" && account_of(e) == **account)
            .count();
        assert_eq!(stops, 3, "three sessions of {account}");
    }
}
