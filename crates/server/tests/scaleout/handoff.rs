
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
