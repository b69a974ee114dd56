//! Issue 10: the reconciliation list past its first 200 requests (paging with the filters kept)
//! and its search by external id, over HTTP.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::Value;

use crate::review::{order, Shop};
use crate::ui::{Browser, Page};

const OWNER: &str = "owner@example.com";

/// The request ids the page lists under "Requests" (the review queue is above it).
fn listed(page: &Page) -> Vec<String> {
    let Some(at) = page.body.find("id=\"requests\"") else {
        return Vec::new();
    };
    let marker = "data-request-id=\"";
    page.body[at..]
        .match_indices(marker)
        .map(|(i, _)| {
            let rest = &page.body[at + i + marker.len()..];
            rest[..rest.find('"').expect("quote")].to_owned()
        })
        .collect()
}

/// The `href` of the pager link with this `rel`.
fn link(page: &Page, rel: &str) -> Option<String> {
    let marker = format!("rel=\"{rel}\"");
    let at = page.body.find(&marker)?;
    let start = page.body[..at].rfind("href=\"").expect("href") + 6;
    let end = start + page.body[start..].find('"').expect("quote");
    Some(page.body[start..end].replace("&amp;", "&"))
}

#[tokio::test]
async fn the_list_pages_past_200_requests_and_finds_one_by_its_external_id() {
    let shop = Shop::new("uipage", "10", Vec::new()).await;
    let orders: Vec<Value> = (0..205)
        .map(|i| order(&format!("P-{i:03}"), &format!("{}.00", 100 + i), "Maria Gomez"))
        .collect();
    shop.poll(Value::Array(orders)).await;
    // The match pass has run (its commit is a compare-and-set): the statuses are settled.
    shop.settle().await;
    let all = shop.f.app.get("/conciliation?limit=500", &shop.f.token).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    // Every request has the same status (no movement yet); filtering by it keeps them all.
    let status = all.body[0]["status"].as_str().expect("status").to_owned();
    let all: HashSet<String> = all
        .body
        .as_array()
        .expect("list")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(all.len(), 205);
    let mut b = Browser::new(&shop.f.app);
    b.sign_in(OWNER).await;

    // The first page: 200, and a link to the older ones.
    let first = b.get("/app/reconciliation").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let page1 = listed(&first);
    assert_eq!(page1.len(), 200);
    assert!(first.body.contains("Requests 1–200"), "{}", first.body);
    assert!(link(&first, "prev").is_none());
    let next = link(&first, "next").expect("an older page");
    assert_eq!(next, "/app/reconciliation?offset=200#list-h");

    // The second: the other 5, a link back, none further; together, every request once.
    let second = b.get(next.split('#').next().expect("path")).await;
    assert_eq!(second.status, StatusCode::OK);
    let page2 = listed(&second);
    assert_eq!(page2.len(), 5);
    assert!(second.body.contains("Requests 201–205"));
    assert!(link(&second, "next").is_none());
    assert_eq!(link(&second, "prev").as_deref(), Some("/app/reconciliation#list-h"));
    let seen: HashSet<String> = page1.iter().chain(&page2).cloned().collect();
    assert_eq!(seen, all, "every request once");

    // The filters are kept in the pager's links.
    let filtered = b
        .get(&format!(
            "/app/reconciliation?status={status}&account_id={}",
            shop.account
        ))
        .await;
    assert_eq!(listed(&filtered).len(), 200, "{}", filtered.body);
    let next = link(&filtered, "next").expect("older");
    assert_eq!(
        next,
        format!(
            "/app/reconciliation?status={status}&account_id={}&offset=200#list-h",
            shop.account
        )
    );
    assert_eq!(listed(&b.get(next.split('#').next().expect("path")).await).len(), 5);

    // An unreadable or out-of-range offset is the first page; past the end, an empty state.
    for q in ["offset=bogus", "offset=-5", "offset=99999999"] {
        let p = b.get(&format!("/app/reconciliation?{q}")).await;
        assert_eq!(p.status, StatusCode::OK, "{q}");
        assert_eq!(listed(&p), page1, "{q}");
    }
    let past = b.get("/app/reconciliation?offset=1000").await;
    assert!(listed(&past).is_empty());
    assert!(past.body.contains("No more requests."), "{}", past.body);

    // By external id, exactly (surrounding blanks ignored).
    let found = b.get("/app/reconciliation?external_id=+P-042+").await;
    assert_eq!(found.status, StatusCode::OK);
    let one = listed(&found);
    assert_eq!(one.len(), 1, "{}", found.body);
    assert!(found.body.contains(">P-042</a>"));
    assert!(found.body.contains(r#"name="external_id" type="search" value="P-042""#));
    assert!(link(&found, "next").is_none());
    let none = b.get("/app/reconciliation?external_id=P-04").await;
    assert!(listed(&none).is_empty(), "exact, not a prefix");
    assert!(none.body.contains("No request matches these filters"));
    let bad = b.get("/app/reconciliation?external_id=P%01").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("id=\"form-error\""), "{}", bad.body);
    let long = b
        .get(&format!("/app/reconciliation?external_id={}", "x".repeat(201)))
        .await;
    assert_eq!(long.status, StatusCode::BAD_REQUEST);
    // Another user's account, or none, is refused like a malformed one (the JSON route's 404).
    let theirs = shop.f.app.user("someone-else@example.com").await;
    let foreign = shop.f.app.account(&theirs, "Theirs").await;
    for account in [foreign, uuid::Uuid::now_v7().to_string(), "nope".to_owned()] {
        let p = b.get(&format!("/app/reconciliation?account_id={account}")).await;
        assert_eq!(p.status, StatusCode::BAD_REQUEST, "{account}");
        assert!(p.body.contains("Pick an account from the list."), "{}", p.body);
        assert!(listed(&p).is_empty(), "{account}");
    }
}
