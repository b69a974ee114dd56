//! The `failed` status, end to end (docs/reconciliation.md §2 `failed`, §5.7, §9): a match pass
//! whose commit keeps erroring (a trigger installed behind the app's back refuses every match
//! row) moves the request it evaluates to `failed` after the account's `retry_limit`; `run`
//! returns it to `pending`; once storage works again a pass settles it. No result webhook is
//! sent for `failed`.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, Executor};

use crate::matching::{order, Shop};

/// Statements that make (`true`) or stop making (`false`) every insert of a match row fail.
fn refuse_matches(url: &str, on: bool) -> Vec<&'static str> {
    match (url.starts_with("sqlite:"), on) {
        (true, true) => vec![
            "CREATE TRIGGER refuse_matches BEFORE INSERT ON conciliation_matches \
             BEGIN SELECT RAISE(ABORT, 'injected storage error'); END",
        ],
        (true, false) => vec!["DROP TRIGGER refuse_matches"],
        (false, true) => vec![
            "CREATE FUNCTION refuse_matches() RETURNS trigger AS $$ \
             BEGIN RAISE EXCEPTION 'injected storage error'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_matches BEFORE INSERT ON conciliation_matches \
             FOR EACH ROW EXECUTE FUNCTION refuse_matches()",
        ],
        (false, false) => vec![
            "DROP TRIGGER refuse_matches ON conciliation_matches",
            "DROP FUNCTION refuse_matches()",
        ],
    }
}

async fn database(url: &str, statements: &[&str]) {
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.expect("connect");
        for s in statements {
            c.execute(*s).await.expect("statement");
        }
        let _ = c.close().await;
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.expect("connect");
        for s in statements {
            c.execute(*s).await.expect("statement");
        }
        let _ = c.close().await;
    }
}

#[tokio::test]
async fn a_pass_that_keeps_erroring_fails_the_request_until_storage_works_again() {
    let mut shop = Shop::with("f1", json!({"retry_limit": 2})).await;
    let mut events = shop.f.app.events().await;
    let url = shop.f.app.state.config.database_url.clone();
    database(&url, &refuse_matches(&url, true)).await;

    // The transfer first: every pass that sees the order would match it.
    shop.transfer("42.00", Some("SOFIA CASTRO"), "order FAIL-1");
    shop.read_bank().await;
    shop.poll(json!([order("FAIL-1", "42.00", "Sofia Castro")])).await;

    // The pass would match it, but its commit errors: after `retry_limit` passes, `failed`.
    let e = events.next(&shop.account, "conciliation.failed").await;
    let r = shop.request("FAIL-1").await;
    let id = r["id"].as_str().expect("id").to_owned();
    assert_eq!(
        e.data,
        json!({"request_id": id, "external_id": "FAIL-1", "reason": "evaluation_error"})
    );
    assert_eq!(r["status"], "failed");
    let detail = |d: &Value| -> Vec<(String, String, String)> {
        d["attempts"]
            .as_array()
            .expect("attempts")
            .iter()
            .map(|a| {
                let s = |k: &str| a[k].as_str().unwrap_or("null").to_owned();
                (s("result"), s("reason"), s("trigger"))
            })
            .collect()
    };
    let get = |path: String| {
        let app = &shop.f.app;
        let token = shop.f.token.clone();
        async move {
            let r = app.get(&path, &token).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            r.body
        }
    };
    let failed = (
        "failed".to_owned(),
        "evaluation_error".to_owned(),
        "movements".to_owned(),
    );
    assert_eq!(
        detail(&get(format!("/conciliation/{id}")).await),
        std::slice::from_ref(&failed)
    );

    // Run: back to `pending`; the next pass errors again, and it fails again (its errors are
    // consecutive: a run does not reset them).
    let r = shop
        .f
        .app
        .json(
            Method::POST,
            &format!("/conciliation/{id}/run"),
            Some(&shop.f.token),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    events.next(&shop.account, "conciliation.run_requested").await;
    events.next(&shop.account, "conciliation.failed").await;
    assert_eq!(
        detail(&get(format!("/conciliation/{id}")).await),
        [failed.clone(), failed.clone()]
    );

    // Storage works again: the next pass matches it (recorded as the run the human asked for),
    // and the first result webhook is the `matched` one.
    database(&url, &refuse_matches(&url, false)).await;
    events.next(&shop.account, "conciliation.matched").await;
    let d = get(format!("/conciliation/{id}")).await;
    assert_eq!(d["status"], "matched");
    let attempts = detail(&d);
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert_eq!((attempts[2].0.as_str(), attempts[2].2.as_str()), ("matched", "run"));
    let hook = shop.hooks.next().await;
    let body: Value = serde_json::from_str(&hook.body).expect("json body");
    assert_eq!(body["status"], "matched");
    assert_eq!(body["external_id"], "FAIL-1");
}
