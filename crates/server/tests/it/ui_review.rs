//! Issue 10: the reconciliation review screen over HTTP (`/app/reconciliation`): the list, its
//! filters and empty states, the review queue and its badge, a request's candidates, and the
//! resolve / reject / run / re-send forms (CSRF, PRG, errors on the page, another user's → 404).
//! The rules are the review API's (tests/it/review.rs); this checks the screen's wiring.

use reqwest::StatusCode;
use serde_json::json;

use crate::review::{body, header, order, str_of, Shop};
use crate::ui::Browser;
use crate::webhooks::verifies;

const OWNER: &str = "owner@example.com";

/// An ambiguous request `external_id` of 120.00 UYU with two strong candidates, "first" and
/// "second", and its ambiguous webhook received.
async fn ambiguous(shop: &mut Shop, external_id: &str) -> String {
    let mut events = shop.f.app.events().await;
    shop.poll(json!([order(external_id, "120.00", "Maria Gomez")])).await;
    shop.settle().await;
    shop.transfer("120.00", "MARIA GOMEZ", "first");
    shop.transfer("120", "GOMEZ MARIA", "second");
    shop.read_bank().await;
    events.next(&shop.account, "conciliation.ambiguous").await;
    assert_eq!(body(&shop.hooks.next().await)["status"], "ambiguous");
    str_of(&shop.request(external_id).await["id"])
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[tokio::test]
async fn an_ambiguous_request_is_resolved_from_the_review_screen_and_the_matched_webhook_is_sent() {
    let mut shop = Shop::new("ui1", "10", Vec::new()).await;
    let id = ambiguous(&mut shop, "UI-AMB-1").await;
    let mut b = Browser::new(&shop.f.app);
    b.sign_in(OWNER).await;

    // The list: the request in the queue and in the list; the badge counts it.
    let list = b.get("/app/reconciliation").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert!(
        list.body.contains(r#"id="review-badge" aria-label="1 to review">1<"#),
        "{}",
        list.body
    );
    assert_eq!(count(&list.body, &format!("href=\"/app/reconciliation/{id}\"")), 2);
    assert!(list.body.contains(r#"data-status="ambiguous""#));
    assert!(list.body.contains(r#"<label for="f-status">"#) && list.body.contains(r#"<label for="f-account">"#));
    // Filtered to nothing: an empty state that says how to get back.
    let none = b.get("/app/reconciliation?status=matched").await;
    assert_eq!(none.status, StatusCode::OK);
    assert!(none.body.contains(r#"id="list-empty""#), "{}", none.body);
    assert!(none.body.contains("Show all"));
    assert!(
        none.body.contains(r#"<option value="matched" selected>"#),
        "{}",
        none.body
    );
    let bad = b.get("/app/reconciliation?status=bogus").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains(r#"id="form-error""#), "{}", bad.body);
    let by_account = b
        .get(&format!(
            "/app/reconciliation?account_id={}&status=ambiguous",
            shop.account
        ))
        .await;
    assert_eq!(
        count(&by_account.body, &format!("href=\"/app/reconciliation/{id}\"")),
        2
    );

    // The detail: both candidates, each with its reason and a form to pick it.
    let first = shop.movement("first").await;
    let second = shop.movement("second").await;
    let page = b.get(&format!("/app/reconciliation/{id}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(count(&page.body, r#"data-verdict="alternative""#), 2, "{}", page.body);
    assert_eq!(count(&page.body, "A strong match, but not the only one"), 2);
    for m in [&first, &second] {
        assert!(page.body.contains(&format!(r#"name="movement_id" value="{m}""#)), "{m}");
    }
    // issue 10: each attempt's recorded candidates, as the API reports them.
    let detail = shop.detail(&id).await;
    let attempts = detail["attempts"].as_array().expect("attempts");
    assert!(
        attempts
            .iter()
            .any(|a| a["candidates"].as_array().is_some_and(|c| !c.is_empty())),
        "the ambiguous attempt recorded its candidates: {detail}"
    );
    for a in attempts {
        let recorded = a["candidates"].as_array().expect("candidates");
        if !recorded.is_empty() {
            assert!(
                page.body
                    .contains(&format!("<summary>Candidates recorded ({})</summary>", recorded.len())),
                "{}",
                page.body
            );
            for m in [&first, &second] {
                if a["candidates"].to_string().contains(m.as_str()) {
                    let at = page.body.find("Candidates recorded").expect("recorded");
                    assert!(page.body[at..].contains(m.as_str()), "{m} recorded");
                }
            }
        }
    }
    let csrf = page.csrf();
    let resolve = format!("/app/reconciliation/{id}/resolve");

    // Refused: another origin, and a missing synchronizer token. Nothing changes.
    b.origin = "http://evil.example".into();
    let r = b
        .post_form(&resolve, &[("csrf", &csrf), ("movement_id", &second)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("CSRF_REFUSED"), "{}", r.body);
    b.origin = format!("http://{}", shop.f.app.addr);
    let r = b.post_form(&resolve, &[("movement_id", &second)]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(shop.request("UI-AMB-1").await["status"], "ambiguous");

    // A malformed movement: the page again, with the message.
    let r = b.post_form(&resolve, &[("csrf", &csrf), ("movement_id", "nope")]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains(r#"id="form-error""#), "{}", r.body);

    // The human picks "second": redirected back, matched, the signed webhook sent.
    let r = b
        .post_form(&resolve, &[("csrf", &csrf), ("movement_id", &second)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let back = format!("/app/reconciliation/{id}?done=resolved");
    assert_eq!(r.header("location"), back);
    let page = b.get(&back).await;
    assert!(page.body.contains(r#"id="notice""#), "{}", page.body);
    assert!(page.body.contains(r#"data-status="matched""#));
    assert!(page
        .body
        .contains(&format!(r#"data-movement-id="{second}" data-verdict="chosen""#)));
    assert!(
        !page.body.contains(&format!("/app/reconciliation/{id}/resolve")),
        "closed: no pick"
    );
    let secret = shop.result_secret().await;
    let got = shop.hooks.next().await;
    assert!(verifies(&secret, &got.headers, &got.body), "signed: {}", got.body);
    let b_json = body(&got);
    assert_eq!(b_json["status"], "matched");
    assert_eq!(b_json["movement"]["id"], json!(second));
    // The queue is empty now, and so is the badge.
    let list = b.get("/app/reconciliation").await;
    assert!(list.body.contains(r#"id="queue-empty""#), "{}", list.body);
    assert!(!list.body.contains("review-badge"));

    // Closed: run is refused on the page with the API's message …
    let r = b
        .post_form(&format!("/app/reconciliation/{id}/run"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r.body.contains("can no longer change"), "{}", r.body);
    // … and re-send queues the same delivery again.
    let r = b
        .post_form(&format!("/app/reconciliation/{id}/notify"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.header("location"), format!("/app/reconciliation/{id}?done=notified"));
    let again = shop.hooks.next().await;
    assert_eq!(body(&again)["status"], "matched");
    assert_eq!(header(&again, "webhook-id"), header(&got, "webhook-id"));
}

#[tokio::test]
async fn rejecting_from_the_screen_and_another_users_request_is_not_found() {
    let mut shop = Shop::new("ui2", "10", Vec::new()).await;
    let id = ambiguous(&mut shop, "UI-REJ-1").await;

    // Another user: empty states, and the request is 404 to read and to act on.
    shop.f.app.user("other@example.com").await;
    let mut other = Browser::new(&shop.f.app);
    other.sign_in("other@example.com").await;
    let list = other.get("/app/reconciliation").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains(r#"id="queue-empty""#) && list.body.contains(r#"id="list-empty""#));
    assert!(list.body.contains("Add a bank account"), "{}", list.body);
    assert!(!list.body.contains("UI-REJ-1"));
    let csrf = list.csrf();
    assert_eq!(
        other.get(&format!("/app/reconciliation/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        other.get("/app/reconciliation/not-a-uuid").await.status,
        StatusCode::NOT_FOUND
    );
    for action in ["reject", "run", "notify"] {
        let r = other
            .post_form(&format!("/app/reconciliation/{id}/{action}"), &[("csrf", &csrf)])
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{action}: {}", r.body);
    }
    assert_eq!(shop.request("UI-REJ-1").await["status"], "ambiguous");

    // The owner rules both candidates out.
    let mut b = Browser::new(&shop.f.app);
    b.sign_in(OWNER).await;
    let page = b.get(&format!("/app/reconciliation/{id}")).await;
    let csrf = page.csrf();
    let r = b
        .post_form(&format!("/app/reconciliation/{id}/reject"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = b.get(&format!("/app/reconciliation/{id}?done=rejected")).await;
    assert!(page.body.contains(r#"data-status="not_found""#), "{}", page.body);
    assert_eq!(count(&page.body, r#"data-verdict="rejected""#), 2, "{}", page.body);
    let r = shop.request("UI-REJ-1").await;
    assert_eq!(
        (&r["status"], &r["reason"]),
        (&json!("not_found"), &json!("candidates_rejected"))
    );
    // Run puts it back to pending for the matcher.
    let r = b
        .post_form(&format!("/app/reconciliation/{id}/run"), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.header("location"), format!("/app/reconciliation/{id}?done=run"));
}
