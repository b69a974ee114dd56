//! Issue 10: the dashboard's Settings for administrators (the banks: list and add, the rules of
//! `POST /banks`) and the API-key page's account restriction, over HTTP.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::harness::TestApp;
use crate::ui::{Browser, Page};

const ADMIN: &str = "admin@example.com";

/// The opening tag of the element with this `id`.
fn tag<'a>(page: &'a Page, id: &str) -> &'a str {
    let marker = format!("id=\"{id}\"");
    let at = page
        .body
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in {}", page.body));
    let start = page.body[..at].rfind('<').expect("tag start");
    let end = at + page.body[at..].find('>').expect("tag end");
    &page.body[start..=end]
}

async fn banks(app: &TestApp, token: &str) -> Vec<Value> {
    let r = app.get("/banks", token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body.as_array().expect("a list").clone()
}

#[tokio::test]
async fn an_administrator_lists_and_adds_banks_in_settings_and_others_see_none() {
    let app = TestApp::spawn().await;
    let token = app.user(ADMIN).await;
    app.user("operator@example.com").await;
    assert!(app.state.store.grant_admin(ADMIN).await.expect("grant"));

    // An operator who is not an administrator: no banks section, and the form's post is the
    // API's 403.
    let mut op = Browser::new(&app);
    let op_csrf = op.sign_in("operator@example.com").await.csrf();
    let settings = op.get("/app/settings").await;
    assert_eq!(settings.status, StatusCode::OK);
    assert!(!settings.body.contains("id=\"banks-h\""), "{}", settings.body);
    let refused = op
        .post_form(
            "/app/settings/banks",
            &[("csrf", &op_csrf), ("code", "opbank"), ("name", "Op Bank")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let body: Value = serde_json::from_str(&refused.body).expect("JSON");
    assert_eq!(body["code"], "FORBIDDEN");

    // The administrator sees every bank the API lists.
    let mut b = Browser::new(&app);
    let csrf = b.sign_in(ADMIN).await.csrf();
    let page = b.get("/app/settings").await;
    assert_eq!(page.status, StatusCode::OK);
    let listed = banks(&app, &token).await;
    assert!(!listed.is_empty());
    for bank in &listed {
        let code = bank["code"].as_str().expect("code");
        assert!(
            page.body.contains(&format!("data-bank-code=\"{code}\"")),
            "{code}: {}",
            page.body
        );
    }
    for id in ["bank-code", "bank-name", "bank-login-url"] {
        assert!(page.body.contains(&format!("<label for=\"{id}\">")), "{id}");
    }

    // Added: POST/redirect/GET, the notice, the bank in the list and in the API.
    let added = b
        .post_form(
            "/app/settings/banks",
            &[
                ("csrf", &csrf),
                ("code", "mybank"),
                ("name", "My Bank"),
                ("login_url", "https://bank.example/login"),
            ],
        )
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    assert_eq!(added.header("location"), "/app/settings?done=bank");
    let after = b.get("/app/settings?done=bank").await;
    assert!(after.body.contains("Bank added."), "{}", after.body);
    assert!(after.body.contains("data-bank-code=\"mybank\""));
    assert!(after.body.contains("https://bank.example/login"));
    let api = banks(&app, &token).await;
    assert_eq!(api.len(), listed.len() + 1);
    let mine = api.iter().find(|b| b["code"] == "mybank").expect("in the API");
    assert_eq!(mine["name"], "My Bank");
    assert_eq!(mine["loginUrl"], "https://bank.example/login");
    // Without a login URL (blank is none).
    let r = b
        .post_form(
            "/app/settings/banks",
            &[
                ("csrf", &csrf),
                ("code", "nourl"),
                ("name", "No URL"),
                ("login_url", " "),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let nourl = banks(&app, &token).await;
    let nourl = nourl.iter().find(|b| b["code"] == "nourl").expect("added");
    assert!(nourl["loginUrl"].is_null());

    // Refused: the API's message at the field, what was typed kept, nothing added.
    let count = banks(&app, &token).await.len();
    for (code, name, url, status, at) in [
        ("UPPER", "Bad", "", StatusCode::BAD_REQUEST, Some("bank-code")),
        (
            "okcode",
            "Bad",
            "ftp://x",
            StatusCode::BAD_REQUEST,
            Some("bank-login-url"),
        ),
        (
            "okcode",
            &"n".repeat(101) as &str,
            "",
            StatusCode::BAD_REQUEST,
            Some("bank-name"),
        ),
        ("mybank", "Again", "", StatusCode::CONFLICT, Some("bank-code")),
        ("", "", "", StatusCode::BAD_REQUEST, None),
    ] {
        let r = b
            .post_form(
                "/app/settings/banks",
                &[("csrf", &csrf), ("code", code), ("name", name), ("login_url", url)],
            )
            .await;
        assert_eq!(r.status, status, "{code} {url}: {}", r.body);
        match at {
            Some(id) => {
                assert!(tag(&r, id).contains("aria-invalid=\"true\""), "{id}: {}", tag(&r, id));
                assert!(tag(&r, id).contains(&format!("{id}-err\"")), "{}", tag(&r, id));
                assert!(r.body.contains(&format!("id=\"{id}-err\"")));
            }
            None => assert!(r.body.contains("id=\"bank-error\""), "{}", r.body),
        }
        if !code.is_empty() {
            assert!(
                tag(&r, "bank-code").contains(&format!("value=\"{code}\"")),
                "typed kept"
            );
        }
    }
    assert_eq!(banks(&app, &token).await.len(), count, "nothing added");

    // CSRF: no token, or another origin, is refused.
    let r = b
        .post_form("/app/settings/banks", &[("code", "csrf1"), ("name", "X")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    b.origin = "http://127.0.0.1:1".into();
    let r = b
        .post_form(
            "/app/settings/banks",
            &[("csrf", &csrf), ("code", "csrf2"), ("name", "X")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(banks(&app, &token).await.len(), count);
}

#[tokio::test]
async fn an_api_key_is_restricted_to_the_accounts_ticked() {
    let app = TestApp::spawn().await;
    let token = app.user("op@example.com").await;
    let first = app.account(&token, "First").await;
    let second = app.account(&token, "Second").await;
    let other = app.user("other@example.com").await;
    let foreign = app.account(&other, "Theirs").await;
    let mut b = Browser::new(&app);
    let csrf = b.sign_in("op@example.com").await.csrf();

    // The form offers the user's own accounts only.
    let page = b.get("/app/keys").await;
    for (id, shown) in [(&first, true), (&second, true), (&foreign, false)] {
        assert_eq!(
            page.body.contains(&format!("name=\"account\" value=\"{id}\"")),
            shown,
            "{id}"
        );
    }
    assert!(page.body.contains("<legend>Accounts</legend>"));

    let created = b
        .post_form(
            "/app/keys",
            &[
                ("csrf", &csrf),
                ("name", "First only"),
                ("scope", "status:read"),
                ("account", &first),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let created = b.get("/app/keys?done=created").await;
    let marker = "id=\"new-key\" type=\"text\" readonly value=\"";
    let i = created.body.find(marker).expect("the key is shown") + marker.len();
    let key = created.body[i..i + created.body[i..].find('"').expect("end")].to_owned();
    // The restriction holds on /v1 and is what the JSON API reports.
    let ok = app
        .v1(Method::GET, &format!("/v1/accounts/{first}/status"), &key, None)
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let refused = app
        .v1(Method::GET, &format!("/v1/accounts/{second}/status"), &key, None)
        .await;
    assert_ne!(refused.status, StatusCode::OK);
    let keys = app.get("/me/api-keys", &token).await;
    let listed = keys.body["keys"].as_array().expect("list")[0].clone();
    assert_eq!(listed["account_ids"], serde_json::json!([first]));
    let list = b.get("/app/keys").await;
    assert!(
        list.body
            .contains("Accounts: <span class=\"key-accounts\">First</span>"),
        "{}",
        list.body
    );

    // None ticked: every account.
    let all = b
        .post_form(
            "/app/keys",
            &[("csrf", &csrf), ("name", "Every account"), ("scope", "status:read")],
        )
        .await;
    assert_eq!(all.status, StatusCode::SEE_OTHER);
    assert!(b
        .get("/app/keys")
        .await
        .body
        .contains("Accounts: <span class=\"key-accounts\">all</span>"));

    // Another user's account (a forged form): the API's refusal on the page, no key made.
    let before = app.get("/me/api-keys", &token).await.body["keys"]
        .as_array()
        .expect("list")
        .len();
    let forged = b
        .post_form(
            "/app/keys",
            &[
                ("csrf", &csrf),
                ("name", "Forged"),
                ("scope", "status:read"),
                ("account", &foreign),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST, "{}", forged.body);
    assert!(forged.body.contains("account_ids"), "{}", forged.body);
    assert_eq!(
        app.get("/me/api-keys", &token).await.body["keys"]
            .as_array()
            .expect("list")
            .len(),
        before
    );
}
