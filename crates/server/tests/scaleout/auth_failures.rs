//! Issue 11: the failed API-key authentications per address are one window across instances:
//! failures spread over A and B trip the limit on both, and the refusals that follow are
//! answered from each instance's memory, not counted in the database again.

use reqwest::{Method, StatusCode};
use sqlx::Row;

use crate::harness::{self, Database};

/// A well-formed key that no instance issued (its checksum is wrong).
const FORGED: &str = "rbk_00000000_0000000000000000000000000000000000000000000000000000000000000000";

#[tokio::test]
async fn failures_spread_over_two_instances_trip_the_limit_on_both() {
    let Some(server) = harness::postgres_server() else {
        return;
    };
    let db = Database::create(&server).await;
    let instances = harness::start_many(&db.url, 2, &[("RECONBANKER_AUTH_FAILURES_PER_MIN", "4")]).await;
    let (a, b) = (&instances[0], &instances[1]);
    let token = a.user("owner@example.com").await;
    let account = a.account(&token, "Main").await;
    let (_, key) = a.key(&token, &["status:read"]).await;
    let status = format!("/v1/accounts/{account}/status");

    // Four failures, two on each: the shared window of 4 is spent (one window per instance
    // would still have room for two more on each).
    for (n, i) in [a, b, a, b].into_iter().enumerate() {
        let r = i.v1(Method::GET, &status, FORGED, None).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "failure {} on {}: {}",
            n + 1,
            i.addr,
            r.text
        );
        assert_eq!(r.json()["error"]["code"], "INVALID_API_KEY", "{}", r.text);
    }
    for i in [a, b, a, b] {
        let r = i.v1(Method::GET, &status, FORGED, None).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "on {}: {}", i.addr, r.text);
        assert_eq!(r.json()["error"]["code"], "RATE_LIMITED", "{}", r.text);
        let retry: u64 = r.headers["retry-after"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("Retry-After is seconds");
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
    }
    // A valid key from the same address is judged first, and never refused for the failures.
    for i in [a, b] {
        i.v1(Method::GET, &status, &key, None).await.expect(StatusCode::OK);
    }
    // The database counted the four failures and the first refusal on each instance asked it
    // once; the refusals after that were answered from memory (a flood stays off the database).
    let mut conn = db.connect().await;
    let row = sqlx::query("SELECT COUNT(*) AS n FROM rate_hits WHERE bucket LIKE 'auth:%'")
        .fetch_one(&mut conn)
        .await
        .expect("count the window's rows");
    assert_eq!(row.get::<i64, _>("n"), 4, "the refused failures are not counted");
}
