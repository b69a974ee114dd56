//! Cross-instance cache invalidation: an API key revoked on one instance is refused by the
//! others on the next request, though they had it cached.

use reqwest::{Method, StatusCode};

use crate::harness::{self, Database};

#[tokio::test]
async fn a_key_revoked_on_a_is_refused_on_b_and_c_at_the_next_request() {
    let Some(server) = harness::postgres_server() else {
        return;
    };
    let db = Database::create(&server).await;
    let instances = harness::start_many(&db.url, 3, &[]).await;
    let (a, b, c) = (&instances[0], &instances[1], &instances[2]);
    let token = a.user("owner@example.com").await;
    let account = a.account(&token, "Main").await;
    let (id, key) = a.key(&token, &["status:read"]).await;
    let (_, other_key) = a.key(&token, &["status:read"]).await;
    let status = format!("/v1/accounts/{account}/status");

    // B and C authenticate the key, and so cache it.
    for i in [b, c] {
        for _ in 0..2 {
            i.v1(Method::GET, &status, &key, None).await.expect(StatusCode::OK);
        }
    }
    a.dash(Method::DELETE, &format!("/me/api-keys/{id}"), &token, None)
        .await
        .expect(StatusCode::NO_CONTENT);
    for i in [a, b, c] {
        let r = i.v1(Method::GET, &status, &key, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}: {}", i.addr, r.text);
        assert!(r.json()["error"]["code"].is_string(), "the /v1 error shape: {}", r.text);
        // Another key of the same user is untouched.
        i.v1(Method::GET, &status, &other_key, None)
            .await
            .expect(StatusCode::OK);
    }
}
