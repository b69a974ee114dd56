//! One `/v1` request budget per API key across instances: requests spread over A, B and C
//! spend one budget, not one each.

use std::time::Instant;

use reqwest::{Method, StatusCode};

use crate::harness::{self, Database};

#[tokio::test]
async fn requests_spread_over_three_instances_spend_one_budget_per_key() {
    let Some(server) = harness::postgres_server() else {
        return;
    };
    let db = Database::create(&server).await;
    // A burst of 6, then one request a second: slices of one request (exact).
    let env = [("RECONBANKER_V1_RATE_PER_SEC", "1"), ("RECONBANKER_V1_BURST", "6")];
    let instances = harness::start_many(&db.url, 3, &env).await;
    let token = instances[0].user("owner@example.com").await;
    let account = instances[0].account(&token, "Main").await;
    let (_, key) = instances[0].key(&token, &["status:read"]).await;
    let (_, other_key) = instances[0].key(&token, &["status:read"]).await;
    let status = format!("/v1/accounts/{account}/status");

    let started = Instant::now();
    let mut allowed = 0u32;
    let mut refused_on = [false; 3];
    for round in 0..10 {
        for (n, i) in instances.iter().enumerate() {
            let r = i.v1(Method::GET, &status, &key, None).await;
            match r.status {
                StatusCode::OK => allowed += 1,
                StatusCode::TOO_MANY_REQUESTS => {
                    assert_eq!(r.json()["error"]["code"], "RATE_LIMITED", "{}", r.text);
                    refused_on[n] = true;
                }
                other => panic!("round {round} on {}: {other} {}", i.addr, r.text),
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // One budget: the burst, plus what the rate refilled meanwhile (one a second). Three
    // budgets (one per instance) would allow 18 before any refill.
    let most = 6 + elapsed.ceil() as u32;
    assert!(
        (6..=most).contains(&allowed),
        "{allowed} of 30 allowed in {elapsed:.2} s; one shared budget allows 6 to {most}"
    );
    assert_eq!(refused_on, [true; 3], "every instance refuses once the budget is spent");
    // Another key of the same user has its own budget, on every instance.
    for i in &instances {
        i.v1(Method::GET, &status, &other_key, None)
            .await
            .expect(StatusCode::OK);
    }
}
