//! Realtime tickets across instances: issued on one, good once on any.

use reqwest::{Method, StatusCode};

use crate::harness::{self, Database, Sse};

#[tokio::test]
async fn a_ticket_issued_on_a_works_once_on_b_and_is_refused_after_everywhere() {
    let Some(server) = harness::postgres_server() else {
        return;
    };
    let db = Database::create(&server).await;
    let instances = harness::start_many(&db.url, 3, &[]).await;
    let (a, b, c) = (&instances[0], &instances[1], &instances[2]);
    let token = a.user("owner@example.com").await;

    let issued = a
        .dash(Method::POST, "/realtime/ticket", &token, None)
        .await
        .expect(StatusCode::OK);
    let ticket = issued["ticket"].as_str().expect("ticket").to_owned();
    let path = format!("/realtime/events?ticket={ticket}");
    let _stream = Sse::open(b, &path, &[]).await;
    for i in [b, c, a] {
        let again = i.call(Method::GET, &path, &[], None).await;
        assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{}: {}", i.addr, again.text);
        assert!(
            again.json()["code"].is_string(),
            "the dashboard error shape: {}",
            again.text
        );
    }
    // A ticket nobody issued is refused too.
    let forged = a.call(Method::GET, "/realtime/events?ticket=AAAA", &[], None).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
}
