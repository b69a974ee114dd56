//! Issue 10: the dashboard in the browser, over HTTP: redirects, security headers, the session
//! cookie, sign-out that revokes, CSRF (origin and synchronizer token), two-factor sign-in, and
//! the accounts page's JSON. The flows in a real Chromium are in `crates/ui-e2e`.

use std::collections::HashMap;
use std::sync::Arc;

use reconbanker::support::clock::{Clock, ManualClock};
use reconbanker::AppOptions;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::*;
use crate::two_factor::{base32_decode, totp};

const PASSWORD: &str = "correct horse battery";

/// A browser in miniature: a cookie jar and the page's origin on every request.
pub struct Browser<'a> {
    app: &'a TestApp,
    pub cookies: HashMap<String, String>,
    pub origin: String,
}

pub struct Page {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    }
    /// The value of the hidden `csrf` field (or the `csrf-token` meta tag).
    pub fn csrf(&self) -> String {
        for marker in ["name=\"csrf\" value=\"", "name=\"csrf-token\" content=\""] {
            if let Some(i) = self.body.find(marker) {
                let rest = &self.body[i + marker.len()..];
                return rest[..rest.find('"').expect("closing quote")].to_owned();
            }
        }
        panic!("no csrf token in page: {}", self.body)
    }
}

impl<'a> Browser<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            cookies: HashMap::new(),
            origin: format!("http://{}", app.addr),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let req = if self.cookies.is_empty() {
            req
        } else {
            req.header("cookie", self.cookie_header())
        };
        let res = req.send().await.expect("request");
        let status = res.status();
        let headers = res.headers().clone();
        for c in headers.get_all("set-cookie") {
            let text = c.to_str().expect("ascii");
            let (pair, attrs) = text.split_once(';').unwrap_or((text, ""));
            let (k, v) = pair.split_once('=').expect("name=value");
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        let body = res.text().await.expect("body");
        Page { status, headers, body }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let req = self.app.client.get(self.app.url(path));
        self.send(req).await
    }

    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let req = self
            .app
            .client
            .post(self.app.url(path))
            .header("origin", &self.origin)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(req).await
    }

    pub async fn fetch(
        &mut self,
        method: Method,
        path: &str,
        csrf: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Page {
        let mut req = self
            .app
            .client
            .request(method, self.app.url(path))
            .header("origin", &self.origin)
            .header("sec-fetch-site", "same-origin");
        if let Some(t) = csrf {
            req = req.header("x-csrf-token", t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        self.send(req).await
    }

    /// Signs in through the form; returns the accounts page.
    pub async fn sign_in(&mut self, email: &str) -> Page {
        let csrf = self.get("/app/login").await.csrf();
        let res = self
            .post_form(
                "/app/login",
                &[("csrf", &csrf), ("email", email), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
        assert_eq!(res.header("location"), "/app");
        let page = self.get("/app").await;
        assert_eq!(page.status, StatusCode::OK);
        page
    }
}

async fn registered(app: &TestApp, email: &str) -> String {
    app.user(email).await
}

#[tokio::test]
async fn the_root_and_the_dashboard_redirect_to_sign_in() {
    let app = TestApp::spawn().await;
    let mut b = Browser::new(&app);
    let root = b.get("/").await;
    assert_eq!(root.status, StatusCode::SEE_OTHER);
    assert_eq!(root.header("location"), "/app");
    let app_page = b.get("/app").await;
    assert_eq!(app_page.status, StatusCode::SEE_OTHER);
    assert_eq!(app_page.header("location"), "/app/login");
    // The JSON API is where it was.
    let api = app.json(Method::GET, "/me", None, None).await;
    api.assert_api_error(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn pages_carry_the_security_headers_and_no_inline_script() {
    let app = TestApp::spawn().await;
    let mut b = Browser::new(&app);
    let page = b.get("/app/login").await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page.header("content-security-policy");
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
    assert_eq!(page.header("x-frame-options"), "DENY");
    // Not `no-referrer`: with it, browsers send `Origin: null` on the dashboard's own form posts.
    assert_eq!(page.header("referrer-policy"), "same-origin");
    assert_eq!(page.header("x-content-type-options"), "nosniff");
    assert!(page.body.contains("name=\"viewport\" content=\"width=device-width"));
    // Every script has a src on this origin; none is inline.
    let scripts: Vec<&str> = page
        .body
        .match_indices("<script")
        .map(|(i, _)| &page.body[i..])
        .collect();
    assert!(!scripts.is_empty());
    for s in scripts {
        let tag = &s[..s.find('>').expect("tag end")];
        assert!(tag.contains("src=\"/app/static/"), "{tag}");
        assert!(s[tag.len() + 1..].starts_with("</script>"), "no inline body");
    }
    let pre = page
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("rb_pre="))
        .expect("pre-sign-in token cookie");
    assert!(
        pre.contains("HttpOnly") && pre.contains("SameSite=Strict") && pre.contains("Path=/app"),
        "{pre}"
    );
    assert!(!pre.contains("Secure"), "not configured for TLS: {pre}");
    // Assets are served from the binary.
    let css = b.get("/app/static/app.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.header("content-type").starts_with("text/css"));
    assert!(css.body.contains("prefers-color-scheme: dark"));
    let js = b.get("/app/static/accounts.js").await;
    assert!(js.header("content-type").starts_with("text/javascript"));
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_cookie_and_sign_out_revokes_it() {
    let app = TestApp::spawn().await;
    registered(&app, "op@example.com").await;
    let mut b = Browser::new(&app);
    // A wrong password is answered on the page.
    let csrf = b.get("/app/login").await.csrf();
    let wrong = b
        .post_form(
            "/app/login",
            &[
                ("csrf", &csrf),
                ("email", "op@example.com"),
                ("password", "not the password"),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("Invalid credentials"));
    assert!(!b.cookies.contains_key("rb_session"));

    let login_csrf = b.get("/app/login").await.csrf();
    let res = b
        .post_form(
            "/app/login",
            &[
                ("csrf", &login_csrf),
                ("email", "op@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let session = res
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("rb_session="))
        .expect("session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/app"] {
        assert!(session.contains(attr), "{session}");
    }
    let page = b.get("/app").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Sign out"), "a sign-out control");
    assert!(
        page.body.contains("No bank accounts yet"),
        "the empty state says what to do"
    );
    let settings = b.get("/app/settings").await;
    assert!(settings.body.contains("Sign out"));
    let stolen = b.cookies.clone();

    let csrf = page.csrf();
    let out = b.post_form("/app/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.header("location"), "/app/login");
    assert!(!b.cookies.contains_key("rb_session"), "cookie cleared");
    // The old cookie is revoked on the server, not only forgotten by the browser.
    b.cookies = stolen;
    let after = b.get("/app").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert_eq!(after.header("location"), "/app/login");

    // The JWT API is unchanged.
    let token = app
        .json(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({"email": "op@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(token.status, StatusCode::OK);
}

#[tokio::test]
async fn behind_a_proxy_that_rewrites_host_the_public_origin_signs_in() {
    // The proxy sends Host: 127.0.0.1:<port>; browsers send the public origin.
    let app = TestApp::spawn_with(&[("RECONBANKER_PUBLIC_ORIGIN", "https://dash.example.com/")]).await;
    registered(&app, "op@example.com").await;
    let mut b = Browser::new(&app);
    b.origin = "https://dash.example.com".to_owned();
    b.sign_in("op@example.com").await;
    // The server's own address is not the dashboard's origin any more.
    b.origin = format!("http://{}", app.addr);
    let res = b.post_form("/app/logout", &[]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(res.body.contains("CSRF_REFUSED"), "{}", res.body);
}

#[tokio::test]
async fn cross_origin_requests_are_refused() {
    let app = TestApp::spawn().await;
    registered(&app, "op@example.com").await;
    let mut b = Browser::new(&app);
    let page = b.sign_in("op@example.com").await;
    let csrf = page.csrf();
    let bank = app.sandbox_bank(&app.user("other@example.com").await).await;
    let form = [
        ("csrf", csrf.as_str()),
        ("bank", bank.as_str()),
        ("name", "Evil"),
        ("login_mode", "simple"),
    ];

    // Another port on the same host is another origin.
    let same_host_other_port = format!("http://127.0.0.1:{}", app.addr.port().wrapping_add(1));
    for origin in [same_host_other_port.as_str(), "http://evil.example", "null"] {
        b.origin = origin.to_owned();
        let res = b.post_form("/app/accounts", &form).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "origin {origin}");
        assert!(res.body.contains("CSRF_REFUSED"), "{}", res.body);
    }
    // A browser that says the request is cross-site, whatever the Origin.
    b.origin = format!("http://{}", app.addr);
    let req = app
        .client
        .post(app.url("/app/accounts"))
        .header("origin", &b.origin)
        .header("sec-fetch-site", "same-site")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&bank={bank}&name=Evil"));
    let res = b.send(req).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    // The right origin without the synchronizer token.
    let res = b
        .post_form("/app/accounts", &[("bank", &bank), ("name", "No token")])
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = b
        .post_form(
            "/app/accounts",
            &[
                ("csrf", "0".repeat(64).as_str()),
                ("bank", &bank),
                ("name", "Bad token"),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = b.fetch(Method::POST, "/app/api/ticket", None, None).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    // Sign-in itself: a cross-origin form cannot sign the browser in (login CSRF).
    let login_csrf = b.get("/app/login").await.csrf();
    b.origin = same_host_other_port;
    let res = b
        .post_form(
            "/app/login",
            &[
                ("csrf", &login_csrf),
                ("email", "op@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    // Nothing was created.
    b.origin = format!("http://{}", app.addr);
    let list = b.get("/app").await;
    assert!(!list.body.contains("Evil") && !list.body.contains("token</h2>"));
    // With both checks passing, the same form works.
    let ok = b
        .post_form(
            "/app/accounts",
            &[
                ("csrf", &csrf),
                ("bank", &bank),
                ("name", "Main"),
                ("login_mode", "simple"),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    assert!(b.get("/app").await.body.contains("Main"));
}

#[tokio::test]
async fn browser_sign_in_asks_for_the_code_when_two_factor_is_on() {
    let clock = ManualClock::default();
    let app = TestApp::spawn_full(
        &[],
        AppOptions {
            clock: Some(Arc::new(clock.clone())),
            ..AppOptions::default()
        },
    )
    .await;
    let mut b = Browser::new(&app);
    // Register in the browser; that signs in.
    let csrf = b.get("/app/register").await.csrf();
    let res = b
        .post_form(
            "/app/register",
            &[
                ("csrf", &csrf),
                ("email", "tf@example.com"),
                ("password", PASSWORD),
                ("name", ""),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let settings = b.get("/app/settings").await;
    assert!(settings.body.contains("Set up two-factor sign-in"));
    let setup = b
        .post_form("/app/settings/two-factor/setup", &[("csrf", &settings.csrf())])
        .await;
    assert_eq!(setup.status, StatusCode::OK);
    assert!(setup.body.contains("<svg"), "QR code inline");
    let marker = "id=\"totp-secret\">";
    let i = setup.body.find(marker).expect("secret shown") + marker.len();
    let secret = base32_decode(&setup.body[i..i + setup.body[i..].find('<').expect("end")]);
    let step = clock.now().timestamp().div_euclid(30);
    // A wrong code shows the set-up again with an error.
    let wrong = if totp(&secret, step) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let again = b
        .post_form(
            "/app/settings/two-factor/confirm",
            &[("csrf", &setup.csrf()), ("code", wrong)],
        )
        .await;
    assert!(again.body.contains("not right") && again.body.contains("<svg"));
    let done = b
        .post_form(
            "/app/settings/two-factor/confirm",
            &[("csrf", &setup.csrf()), ("code", &totp(&secret, step))],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK);
    assert_eq!(done.body.matches("<li><code>").count(), 10, "ten recovery codes");
    assert!(b.get("/app/settings").await.body.contains("Recovery codes left"));

    // Sign out, then in again: password, then the code.
    let csrf = b.get("/app").await.csrf();
    b.post_form("/app/logout", &[("csrf", &csrf)]).await;
    let login_csrf = b.get("/app/login").await.csrf();
    let res = b
        .post_form(
            "/app/login",
            &[
                ("csrf", &login_csrf),
                ("email", "tf@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.header("location"), "/app/login/code");
    assert!(!b.cookies.contains_key("rb_session"), "no session before the code");
    let code_page = b.get("/app/login/code").await;
    assert!(code_page.body.contains("inputmode=\"numeric\""));
    let bad = b
        .post_form(
            "/app/login/code",
            &[("csrf", &code_page.csrf()), ("totp_code", totp(&secret, step).as_str())],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED, "the confirming code is spent");
    assert!(!b.cookies.contains_key("rb_session"));
    clock.advance(std::time::Duration::from_secs(30));
    let ok = b
        .post_form(
            "/app/login/code",
            &[
                ("csrf", &code_page.csrf()),
                ("totp_code", totp(&secret, step + 1).as_str()),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    assert_eq!(ok.header("location"), "/app");
    assert!(b.cookies.contains_key("rb_session"));
    assert_eq!(b.get("/app").await.status, StatusCode::OK);
    // Without the password step, the code page sends the browser back.
    let mut fresh = Browser::new(&app);
    let res = fresh.get("/app/login/code").await;
    assert_eq!(res.header("location"), "/app/login");
}

#[tokio::test]
async fn secure_cookies_when_configured() {
    let app = TestApp::spawn_with(&[("RECONBANKER_SECURE_COOKIES", "true")]).await;
    let mut b = Browser::new(&app);
    let page = b.get("/app/login").await;
    assert!(
        page.set_cookies().iter().all(|c| c.contains("; Secure")),
        "{:?}",
        page.set_cookies()
    );
}

#[tokio::test]
async fn the_page_json_is_scoped_to_the_signed_in_user() {
    let app = TestApp::spawn().await;
    let other = app.user("other@example.com").await;
    let foreign = app.account(&other, "Theirs").await;
    registered(&app, "op@example.com").await;
    let mut b = Browser::new(&app);
    let page = b.sign_in("op@example.com").await;
    let csrf = page.csrf();
    let list = b.fetch(Method::GET, "/app/api/accounts", None, None).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body, "[]");
    for path in [
        format!("/app/api/accounts/{foreign}/movements"),
        "/app/api/accounts/not-a-uuid/movements".to_owned(),
        // Not UTF-8 once decoded: the dashboard's JSON 404, not axum's plain-text 400.
        "/app/api/accounts/%FF/movements".to_owned(),
    ] {
        let res = b.fetch(Method::GET, &path, None, None).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{path}");
        assert!(res.body.contains("\"code\""), "{path}: {}", res.body);
    }
    let res = b
        .fetch(
            Method::POST,
            &format!("/app/api/accounts/{foreign}/otp"),
            Some(&csrf),
            Some(json!({"code": "123456"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let res = b
        .fetch(
            Method::POST,
            &format!("/app/api/accounts/{foreign}/read"),
            Some(&csrf),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    // The page's calls that take no body refuse one, like the JSON API's.
    let res = b
        .fetch(Method::POST, "/app/api/ticket", Some(&csrf), Some(json!({"x": 1})))
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    let ticket = b.fetch(Method::POST, "/app/api/ticket", Some(&csrf), None).await;
    assert_eq!(ticket.status, StatusCode::OK, "{}", ticket.body);
}

#[tokio::test]
async fn api_keys_page_shows_a_new_key_once_and_revokes() {
    let app = TestApp::spawn().await;
    registered(&app, "op@example.com").await;
    let mut b = Browser::new(&app);
    let csrf = b.sign_in("op@example.com").await.csrf();
    let empty = b.get("/app/keys").await;
    assert!(empty.body.contains("No API keys yet"));
    let bad = b.post_form("/app/keys", &[("csrf", &csrf), ("name", "No scope")]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("at least one scope"));
    // An expiry the form never offers is refused, not turned into a key that never expires.
    for days in ["-1", "0", "abc", "1.5", "3651", "99999999999999999999999"] {
        let bad = b
            .post_form(
                "/app/keys",
                &[
                    ("csrf", &csrf),
                    ("name", "Odd"),
                    ("scope", "otp:write"),
                    ("expires_in_days", days),
                ],
            )
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{days}");
        assert!(bad.body.contains("pick one of the choices"), "{days}");
    }
    assert!(
        b.get("/app/keys").await.body.contains("No API keys yet"),
        "none was created"
    );
    let created = b
        .post_form(
            "/app/keys",
            &[
                ("csrf", &csrf),
                ("name", "SMS relay"),
                ("scope", "otp:write"),
                ("expires_in_days", "30"),
            ],
        )
        .await;
    // POST/redirect/GET: the key rides a sealed one-time cookie to the page that shows it once;
    // reloading that page neither shows it again nor creates another key.
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    assert_eq!(created.header("location"), "/app/keys?done=created#created-h");
    let created = b.get("/app/keys?done=created").await;
    assert_eq!(created.status, StatusCode::OK);
    assert_eq!(created.header("cache-control"), "no-store");
    let marker = "id=\"new-key\" type=\"text\" readonly value=\"";
    let i = created.body.find(marker).expect("the key is shown") + marker.len();
    let key = &created.body[i..i + created.body[i..].find('"').expect("end")];
    assert!(key.starts_with("rbk_") && key.len() == 77, "{key}");
    let reload = b.get("/app/keys?done=created").await;
    assert_eq!(reload.status, StatusCode::OK);
    assert!(!reload.body.contains(key) && !reload.body.contains("id=\"new-key\""));
    assert!(reload.body.contains("was shown once"), "{}", reload.body);
    assert_eq!(reload.body.matches("data-key-id=").count(), 1, "one key");
    // The key works on /v1, and is never shown again.
    let status = app
        .v1(
            Method::GET,
            "/v1/accounts/00000000-0000-0000-0000-000000000000/status",
            key,
            None,
        )
        .await;
    status.assert_v1_error(403, "FORBIDDEN");
    let list = b.get("/app/keys").await;
    assert!(!list.body.contains(key));
    assert!(list.body.contains("SMS relay") && list.body.contains("otp:write") && list.body.contains("Active"));
    let marker = "action=\"/app/keys/";
    let i = list.body.find(marker).expect("revoke form") + marker.len();
    let id = &list.body[i..i + 36];
    let revoked = b.post_form(&format!("/app/keys/{id}/revoke"), &[("csrf", &csrf)]).await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER);
    assert!(b.get("/app/keys").await.body.contains("Revoked"));
    app.v1(
        Method::GET,
        "/v1/accounts/00000000-0000-0000-0000-000000000000/status",
        key,
        None,
    )
    .await
    .assert_v1_error(401, "INVALID_API_KEY");
    // Revoking again, or without the token, is refused.
    let again = b.post_form(&format!("/app/keys/{id}/revoke"), &[("csrf", &csrf)]).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let no_token = b.post_form(&format!("/app/keys/{id}/revoke"), &[]).await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn settings_choose_the_operation_mode() {
    let app = TestApp::spawn().await;
    let token = registered(&app, "op@example.com").await;
    let mut b = Browser::new(&app);
    b.sign_in("op@example.com").await;
    let settings = b.get("/app/settings").await;
    assert!(settings.body.contains("Not chosen yet"));
    let saved = b
        .post_form(
            "/app/settings/mode",
            &[("csrf", &settings.csrf()), ("mode", "passthrough")],
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK);
    assert!(saved.body.contains("Operation mode saved"));
    assert_eq!(app.get("/me", &token).await.body["operation_mode"], "passthrough");
    let bad = b
        .post_form("/app/settings/mode", &[("csrf", &settings.csrf()), ("mode", "chaos")])
        .await;
    assert!(bad.body.contains("Pick reconcile or passthrough"));
    assert_eq!(app.get("/me", &token).await.body["operation_mode"], "passthrough");
}

/// A browser that lands on a path the dashboard refuses is shown a page (with the message, the
/// code and the way back); the page's own scripts and other clients keep the JSON error.
#[tokio::test]
async fn a_browser_is_shown_a_page_for_a_refusal_and_scripts_keep_the_json() {
    let app = TestApp::spawn().await;
    registered(&app, "op@example.com").await;
    let mut b = Browser::new(&app);
    b.sign_in("op@example.com").await;
    let foreign = format!("/app/accounts/{}", uuid::Uuid::now_v7());
    for path in ["/app/accounts/not-a-uuid", "/app/nope/deeper", foreign.as_str()] {
        let req = app
            .client
            .get(app.url(path))
            .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8");
        let page = b.send(req).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert!(page.header("content-type").starts_with("text/html"), "{path}");
        assert!(
            page.body.contains("<h1>Not found</h1>") && page.body.contains("NOT_FOUND"),
            "{path}: {}",
            page.body
        );
        assert!(page.body.contains(r#"href="/app""#), "the way back");
        let plain = b.get(path).await;
        assert_eq!(plain.status, StatusCode::NOT_FOUND, "{path}");
        assert!(plain.header("content-type").starts_with("application/json"), "{path}");
    }
    let req = app.client.get(app.url("/app/api/nope")).header("accept", "text/html");
    let r = b.send(req).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        r.header("content-type").starts_with("application/json"),
        "scripts get JSON"
    );
}
