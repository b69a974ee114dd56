//! Issue 10: the operator dashboard, served by the binary under `/app` (`/` redirects there).
//! Server-rendered HTML (maud, [`pages`]) with small scripts embedded at compile time
//! (`assets/`, `include_str!`): no CDN, no inline script, no Node toolchain. Browser sign-in,
//! cookies and CSRF are in [`session`]. The JSON routes under `/app/api/` serve the accounts
//! page's script with the same cookie and CSRF rules; the JWT API is untouched.

pub(crate) mod pages;
pub(crate) mod review;
pub(crate) mod session;
// issue 10: the account page
pub(crate) mod account;
// issue 10: banks in Settings (admins)
pub(crate) mod banks;
// issue 10: one-time flashes across POST/redirect/GET
pub(crate) mod flash;

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use maud::Markup;
use reconbanker_store::{now, AccountId, AccountRow, BankId};
use serde::Serialize;
use serde_json::json;

use self::pages::{AccountView, Chrome, TwoFactorView};
use self::session::{
    cookie, random_token, same_origin, set_cookie, start_session, tokens_match, with_cookies, UiUser, PRE_COOKIE,
    SECOND_FACTOR_COOKIE, SECOND_FACTOR_SECS, SESSION_COOKIE,
};
use super::error::{ApiError, Problem};
use super::extract::{body_bytes, DPath, NoBody};
use crate::app::two_factor::{self, TwoFactorError};
use crate::auth::tickets::DashboardSession;
use crate::domain::account_config::{self, ConfigPatch};
use crate::support::time::ts;
use crate::AppState;

/// The dashboard's routes, with its security headers and the same-origin check.
pub fn router() -> Router<AppState> {
    let app = Router::new()
        .route("/app", get(accounts_page))
        .route("/app/", get(|| async { Redirect::to("/app") }))
        .route("/app/login", get(login_page).post(login_submit))
        .route("/app/login/code", get(code_page).post(code_submit))
        .route("/app/register", get(register_page).post(register_submit))
        .route("/app/logout", post(logout))
        .route("/app/settings", get(settings_page))
        .route("/app/settings/mode", post(set_mode))
        .route("/app/settings/two-factor/setup", post(two_factor_setup))
        .route("/app/settings/two-factor/confirm", post(two_factor_confirm))
        .route("/app/settings/two-factor/disable", post(two_factor_disable))
        .route("/app/accounts", post(add_account))
        .route("/app/accounts/{id}/read", post(read_now_form))
        .route("/app/keys", get(keys_page).post(create_key))
        .route("/app/keys/{id}/revoke", post(revoke_key))
        .route("/app/api/accounts", get(api_accounts))
        .route("/app/api/accounts/{id}/movements", get(api_movements))
        .route("/app/api/accounts/{id}/otp", post(api_otp))
        .route("/app/api/accounts/{id}/read", post(api_read))
        .route("/app/api/ticket", post(api_ticket))
        .route(
            "/app/static/app.css",
            get(|| asset(pages::CSS, "text/css; charset=utf-8")),
        )
        .route(
            "/app/static/app.js",
            get(|| asset(pages::JS, "text/javascript; charset=utf-8")),
        )
        .route(
            "/app/static/accounts.js",
            get(|| asset(pages::ACCOUNTS_JS, "text/javascript; charset=utf-8")),
        )
        // issue 10: review
        .merge(review::routes())
        // issue 10: the account page
        .merge(account::routes())
        // issue 10: banks in Settings (admins)
        .merge(banks::routes())
        // Any other path under /app: the dashboard's own 404 (a page for a browser, below).
        .route(
            "/app/{*rest}",
            axum::routing::any(|| async { ApiError(Problem::not_found("No such page")).into_response() }),
        )
        .layer(axum::middleware::from_fn(guard));
    Router::new()
        .route("/", get(|| async { Redirect::to("/app") }))
        .merge(app)
}

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// `RECONBANKER_PUBLIC_ORIGIN`, put on the dashboard's requests by the route table.
#[derive(Clone)]
pub struct PublicOrigin(pub Option<std::sync::Arc<str>>);

/// Every state-changing request must come from the dashboard's own origin; every response gets
/// the security headers.
async fn guard(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let changes_state = !matches!(*req.method(), Method::GET | Method::HEAD);
    let public = req.extensions().get::<PublicOrigin>().and_then(|p| p.0.clone());
    // A browser finding its way (not the page's own scripts under /app/api/) is answered a
    // refusal as a page; other clients keep the JSON error.
    let browser = !req.uri().path().starts_with("/app/api/")
        && req
            .headers()
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
    let res = if changes_state && !same_origin(req.headers(), public.as_deref()) {
        refused()
    } else {
        next.run(req).await
    };
    let mut res = if browser { error_as_page(res).await } else { res };
    let h = res.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    if !h.contains_key(CACHE_CONTROL) {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// A JSON error answered to a browser, as a page with the same status: its message, its code,
/// and the way back. Any other response is returned as it is.
async fn error_as_page(res: Response) -> Response {
    let is_json = res
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if !(res.status().is_client_error() || res.status().is_server_error()) || !is_json {
        return res;
    }
    let (parts, body) = res.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return parts.status.into_response();
    };
    let error: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let message = error["error"].as_str().unwrap_or("The request could not be served.");
    let code = error["code"].as_str().unwrap_or("ERROR");
    let title = match parts.status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Refused",
        StatusCode::UNAUTHORIZED => "Signed out",
        s if s.is_server_error() => "Something went wrong",
        _ => "This request could not be served",
    };
    let page = pages::page(
        title,
        None,
        &[],
        maud::html! {
            p role="alert" { (message) }
            p.hint { "Error code: " code { (code) } }
            p { a href="/app" { "Back to your accounts" } }
        },
    );
    let mut out = (parts.status, Html(page.into_string())).into_response();
    for name in [axum::http::header::RETRY_AFTER, axum::http::header::ALLOW] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

fn refused() -> Response {
    ApiError(Problem::new(
        StatusCode::FORBIDDEN,
        "CSRF_REFUSED",
        "Refused: this request did not come from the dashboard's own page",
    ))
    .into_response()
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // The URLs carry a hash of the content (pages::versioned).
            (
                CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        body,
    )
        .into_response()
}

fn html(m: Markup) -> Response {
    Html(m.into_string()).into_response()
}

fn status_html(status: StatusCode, m: Markup) -> Response {
    (status, Html(m.into_string())).into_response()
}

/// A response that ends a handler early (boxed: a `Response` is large).
type Halt = Box<Response>;

/// The form fields of an `application/x-www-form-urlencoded` body.
fn form(body: Result<Bytes, BytesRejection>) -> Result<HashMap<String, String>, Halt> {
    let bytes = body_bytes(body).map_err(|p| Box::new(ApiError(p).into_response()))?;
    Ok(url::form_urlencoded::parse(&bytes).into_owned().collect())
}

fn field<'a>(f: &'a HashMap<String, String>, name: &str) -> &'a str {
    f.get(name).map(String::as_str).unwrap_or("")
}

/// The pre-sign-in token (cookie `rb_pre`), created when missing.
fn pre_token(headers: &HeaderMap) -> (String, Option<String>) {
    match cookie(headers, PRE_COOKIE) {
        Some(t) if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) => (t.to_owned(), None),
        _ => {
            let t = random_token();
            (t.clone(), Some(t))
        }
    }
}

fn pre_cookie(app: &AppState, new: Option<String>) -> Vec<HeaderValue> {
    new.map(|t| vec![set_cookie(app, PRE_COOKIE, &t, 3600)])
        .unwrap_or_default()
}

fn pre_ok(headers: &HeaderMap, f: &HashMap<String, String>) -> bool {
    cookie(headers, PRE_COOKIE).is_some_and(|c| tokens_match(c, field(f, "csrf")))
}

// --- sign-in ---

async fn login_page(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let (pre, new) = pre_token(&headers);
    with_cookies(html(pages::login(None, "", &pre)), pre_cookie(&app, new))
}

async fn login_submit(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let f = match form(body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    if !pre_ok(&headers, &f) {
        return refused();
    }
    let (pre, email) = (field(&f, "csrf").to_owned(), field(&f, "email").to_owned());
    let user = match super::users::check_password(&app, peer.ip(), &email, field(&f, "password")).await {
        Ok(u) => u,
        Err(p) => return status_html(p.status, pages::login(Some(&p.message), &email, &pre)),
    };
    match two_factor::check_sign_in(&app, user.id, None).await {
        Ok(()) => signed_in(&app, &user),
        Err(TwoFactorError::Required) => {
            // The password was right: remember that (sealed, five minutes) and ask for the code.
            let until = now().timestamp() + SECOND_FACTOR_SECS;
            let sealed = app
                .sealer
                .seal(format!("{}:{until}", user.id).as_bytes(), b"ui-second-factor");
            let value = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sealed);
            with_cookies(
                Redirect::to("/app/login/code"),
                vec![set_cookie(&app, SECOND_FACTOR_COOKIE, &value, SECOND_FACTOR_SECS)],
            )
        }
        Err(e) => {
            let p = Problem::from(e);
            status_html(p.status, pages::login(Some(&p.message), &email, &pre))
        }
    }
}

fn signed_in(app: &AppState, user: &reconbanker_store::UserRow) -> Response {
    match start_session(app, user) {
        Ok(c) => with_cookies(
            Redirect::to("/app"),
            vec![c, set_cookie(app, SECOND_FACTOR_COOKIE, "", 0)],
        ),
        Err(e) => ApiError(Problem::internal(e)).into_response(),
    }
}

/// The user whose password was right a moment ago (cookie `rb_2fa`).
fn second_factor_user(app: &AppState, headers: &HeaderMap) -> Option<reconbanker_store::UserId> {
    let raw = cookie(headers, SECOND_FACTOR_COOKIE)?;
    let sealed = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, raw).ok()?;
    let plain = app.sealer.open(&sealed, b"ui-second-factor").ok()?;
    let text = String::from_utf8(plain).ok()?;
    let (user, until) = text.split_once(':')?;
    let until: i64 = until.parse().ok()?;
    (now().timestamp() < until).then_some(())?;
    user.parse().ok()
}

async fn code_page(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if second_factor_user(&app, &headers).is_none() {
        return Redirect::to("/app/login").into_response();
    }
    let (pre, new) = pre_token(&headers);
    with_cookies(html(pages::code(None, &pre)), pre_cookie(&app, new))
}

async fn code_submit(State(app): State<AppState>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let f = match form(body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    if !pre_ok(&headers, &f) {
        return refused();
    }
    let Some(user_id) = second_factor_user(&app, &headers) else {
        return Redirect::to("/app/login").into_response();
    };
    let pre = field(&f, "csrf").to_owned();
    let code = field(&f, "totp_code");
    match two_factor::check_sign_in(&app, user_id, Some(code)).await {
        Ok(()) => match app.store.user_by_id(user_id).await {
            Ok(Some(user)) => signed_in(&app, &user),
            Ok(None) => Redirect::to("/app/login").into_response(),
            Err(e) => ApiError(e.into()).into_response(),
        },
        Err(e) => {
            let p = Problem::from(e);
            status_html(p.status, pages::code(Some(&p.message), &pre))
        }
    }
}

async fn register_page(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let (pre, new) = pre_token(&headers);
    with_cookies(html(pages::register(None, "", "", &pre)), pre_cookie(&app, new))
}

async fn register_submit(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let f = match form(body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    if !pre_ok(&headers, &f) {
        return refused();
    }
    let (pre, email, name) = (field(&f, "csrf"), field(&f, "email"), field(&f, "name"));
    let name_opt = (!name.trim().is_empty()).then(|| name.to_owned());
    match super::users::create_user(&app, email.to_owned(), field(&f, "password").to_owned(), name_opt).await {
        Ok(user) => signed_in(&app, &user),
        Err(p) => status_html(p.status, pages::register(Some(&p.message), email, name, pre)),
    }
}

async fn logout(State(app): State<AppState>, who: UiUser, body: Result<Bytes, BytesRejection>) -> Response {
    let f = match form(body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    if !tokens_match(field(&f, "csrf"), &who.csrf) {
        return refused();
    }
    if let Err(e) = crate::app::logins::end(&app, who.user.id, who.claims.jti, who.claims.exp).await {
        return ApiError(e.into()).into_response();
    }
    with_cookies(
        Redirect::to("/app/login"),
        vec![set_cookie(&app, SESSION_COOKIE, "", 0)],
    )
}

// --- settings: two-factor ---

/// The signed-in chrome, with the review queue's length for the navigation badge (issue 10:
/// on every signed-in page; a failure to count leaves the badge out, not the page).
async fn chrome<'a>(app: &AppState, who: &'a UiUser) -> Chrome<'a> {
    let review = match review::queue_len(app, who).await {
        Ok(n) => Some(n),
        Err(p) => {
            tracing::warn!(error = %p.message, "could not count the review queue");
            None
        }
    };
    Chrome {
        user: &who.user,
        csrf: &who.csrf,
        review,
    }
}

async fn settings_view(app: &AppState, who: &UiUser, notice: Option<&str>, error: Option<&str>) -> Response {
    settings_with(app, who, notice, error, &banks::Typed::default()).await
}

/// Settings, with the banks section (issue 10: admins) in the state `typed` says.
async fn settings_with(
    app: &AppState,
    who: &UiUser,
    notice: Option<&str>,
    error: Option<&str>,
    typed: &banks::Typed,
) -> Response {
    let banks = match banks::section(app, who, typed).await {
        Ok(m) => m,
        Err(p) => return ApiError(p).into_response(),
    };
    match two_factor::status(app, who.user.id).await {
        Ok(s) => status_html(
            typed.status.unwrap_or(StatusCode::OK),
            pages::settings(
                &chrome(app, who).await,
                &TwoFactorView {
                    enabled: s.enabled,
                    recovery_codes_left: s.recovery_codes_left,
                },
                notice,
                error,
                banks,
            ),
        ),
        Err(e) => ApiError(e.into()).into_response(),
    }
}

async fn settings_page(State(app): State<AppState>, who: UiUser, uri: axum::http::Uri) -> Response {
    // issue 10: the notice after a redirect (POST/redirect/GET).
    let done = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "done")
        .map(|(_, v)| v.into_owned());
    let notice = match done.as_deref() {
        Some("bank") => Some("Bank added."),
        _ => None,
    };
    settings_view(&app, &who, notice, None).await
}

/// The form of a signed-in user, its synchronizer token checked.
fn signed_form(who: &UiUser, body: Result<Bytes, BytesRejection>) -> Result<HashMap<String, String>, Halt> {
    let f = form(body)?;
    if tokens_match(field(&f, "csrf"), &who.csrf) {
        Ok(f)
    } else {
        Err(Box::new(refused()))
    }
}

async fn set_mode(State(app): State<AppState>, mut who: UiUser, body: Result<Bytes, BytesRejection>) -> Response {
    let f = match signed_form(&who, body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let mode = field(&f, "mode");
    if !matches!(mode, "reconcile" | "passthrough") {
        return settings_view(&app, &who, None, Some("Pick reconcile or passthrough.")).await;
    }
    match super::users::apply_operation_mode(&app, who.user.id, mode).await {
        Ok(()) => {
            who.user.operation_mode = Some(mode.to_owned());
            settings_view(&app, &who, Some("Operation mode saved."), None).await
        }
        Err(p) => ApiError(p).into_response(),
    }
}

async fn two_factor_setup(State(app): State<AppState>, who: UiUser, body: Result<Bytes, BytesRejection>) -> Response {
    if let Err(r) = signed_form(&who, body) {
        return *r;
    }
    match two_factor::begin(&app, &who.user).await {
        Ok(s) => setup_view(&app, &who, &s, None).await,
        Err(e) => {
            let p = Problem::from(e);
            settings_view(&app, &who, None, Some(&p.message)).await
        }
    }
}

async fn setup_view(app: &AppState, who: &UiUser, s: &two_factor::Setup, error: Option<&str>) -> Response {
    match super::two_factor::qr_svg(&s.uri) {
        Some(svg) => html(pages::two_factor_setup(
            &chrome(app, who).await,
            &s.uri,
            &s.secret,
            &svg,
            error,
        )),
        None => ApiError(Problem::internal("the otpauth URI does not fit a QR code")).into_response(),
    }
}

async fn two_factor_confirm(State(app): State<AppState>, who: UiUser, body: Result<Bytes, BytesRejection>) -> Response {
    let f = match signed_form(&who, body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    match two_factor::confirm(&app, who.user.id, field(&f, "code")).await {
        Ok(codes) => html(pages::recovery_codes(&chrome(&app, &who).await, &codes)),
        Err(TwoFactorError::Invalid) => match two_factor::pending_setup(&app, &who.user).await {
            Ok(Some(s)) => {
                setup_view(
                    &app,
                    &who,
                    &s,
                    Some("That code is not right. Type the code the app shows now."),
                )
                .await
            }
            Ok(None) => settings_view(&app, &who, None, None).await,
            Err(e) => ApiError(e.into()).into_response(),
        },
        Err(e) => {
            let p = Problem::from(e);
            settings_view(&app, &who, None, Some(&p.message)).await
        }
    }
}

async fn two_factor_disable(State(app): State<AppState>, who: UiUser, body: Result<Bytes, BytesRejection>) -> Response {
    let f = match signed_form(&who, body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    match two_factor::disable(&app, who.user.id, field(&f, "code")).await {
        Ok(()) => settings_view(&app, &who, Some("Two-factor sign-in is off."), None).await,
        Err(TwoFactorError::Invalid) => {
            settings_view(&app, &who, None, Some("That code is not right or was already used.")).await
        }
        Err(e) => {
            let p = Problem::from(e);
            settings_view(&app, &who, None, Some(&p.message)).await
        }
    }
}

// --- accounts ---

async fn light(app: &AppState, a: &AccountRow) -> Result<&'static str, Problem> {
    Ok(if app.assistance.pending(a.id).await?.is_some() {
        "awaiting_code"
    } else if let Some(phase) = app.sessions.phase(a.id) {
        phase.as_str()
    } else if a.scrape_blocked_at.is_some() {
        "needs_attention"
    } else {
        "off"
    })
}

async fn accounts_view(app: &AppState, who: &UiUser, error: Option<&str>) -> Result<Markup, Problem> {
    let rows = app.store.list_accounts(who.user.id, 500, 0).await?;
    let mut list = Vec::with_capacity(rows.len());
    for a in rows {
        let last_run = last_run(app, who, a.id).await?;
        list.push(AccountView {
            light: light(app, &a).await?,
            last_run,
            id: a.id.to_string(),
            name: a.name,
            bank: a.bank_code,
            blocked_reason: a.scrape_blocked_reason,
        });
    }
    let banks = app.store.list_banks().await?;
    Ok(pages::accounts(&chrome(app, who).await, &list, &banks, error))
}

async fn accounts_page(State(app): State<AppState>, who: UiUser) -> Response {
    match accounts_view(&app, &who, None).await {
        Ok(m) => html(m),
        Err(p) => ApiError(p).into_response(),
    }
}

async fn add_account(State(app): State<AppState>, who: UiUser, body: Result<Bytes, BytesRejection>) -> Response {
    let f = match signed_form(&who, body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    match create_account(&app, &who, &f).await {
        Ok(()) => Redirect::to("/app").into_response(),
        Err(p) if p.status == StatusCode::BAD_REQUEST => match accounts_view(&app, &who, Some(&p.message)).await {
            Ok(m) => status_html(StatusCode::BAD_REQUEST, m),
            Err(p) => ApiError(p).into_response(),
        },
        Err(p) => ApiError(p).into_response(),
    }
}

async fn create_account(app: &AppState, who: &UiUser, f: &HashMap<String, String>) -> Result<(), Problem> {
    let name = field(f, "name").trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Problem::field("name", "is required (at most 100 characters)"));
    }
    let unknown = || Problem::field("bank", "does not name a known bank");
    let bank: BankId = field(f, "bank").parse().map_err(|_| unknown())?;
    let mut patch = json!({ "login_mode": if field(f, "login_mode") == "simple" { "simple" } else { "assisted" } });
    for key in ["bank_username", "bank_password"] {
        let v = field(f, key);
        if !v.is_empty() {
            patch[key] = json!(v);
        }
    }
    let patch: ConfigPatch = serde_json::from_value(patch).map_err(|e| Problem::validation(e.to_string()))?;
    let account = crate::app::accounts::create(app, who.user.id, bank, name.to_owned())
        .await?
        .ok_or_else(unknown)?;
    crate::app::accounts::change_config(app, who.user.id, account.id, |settings, secrets| {
        account_config::apply(settings, secrets, patch.clone()).map_err(Problem::from)
    })
    .await?;
    Ok(())
}

async fn read_now_form(
    State(app): State<AppState>,
    who: UiUser,
    DPath(id): DPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let f = match signed_form(&who, body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    match owned(&app, &who, &id).await {
        Ok(a) => {
            crate::app::accounts::scrape_now(&app, a.id).await;
            // The account page's button comes back to it.
            if field(&f, "back") == "account" {
                Redirect::to(&format!("/app/accounts/{}", a.id)).into_response()
            } else {
                Redirect::to("/app").into_response()
            }
        }
        Err(p) => ApiError(p).into_response(),
    }
}

/// The user's account `id`; the same 404 for a malformed, unknown or foreign id.
async fn owned(app: &AppState, who: &UiUser, id: &str) -> Result<AccountRow, Problem> {
    let not_found = || Problem::not_found("Account not found");
    let id: AccountId = id.parse().map_err(|_| not_found())?;
    app.store.account_for_user(who.user.id, id).await?.ok_or_else(not_found)
}

// --- API keys ---

/// `notice` (issue 10): after a reload of the page that showed a new key.
async fn keys_view(
    app: &AppState,
    who: &UiUser,
    created: Option<(&str, &str)>,
    error: Option<&str>,
    notice: Option<&str>,
) -> Response {
    let rows = match app.store.list_api_keys(who.user.id, 500, 0).await {
        Ok(r) => r,
        Err(e) => return ApiError(e.into()).into_response(),
    };
    // issue 10: a key may be restricted to some of the user's accounts.
    let accounts = match app.store.list_accounts(who.user.id, 500, 0).await {
        Ok(a) => a,
        Err(e) => return ApiError(e.into()).into_response(),
    };
    let name_of = |id: &AccountId| {
        accounts
            .iter()
            .find(|a| a.id == *id)
            .map_or_else(|| "(deleted account)".to_owned(), |a| a.name.clone())
    };
    let list: Vec<pages::KeyView> = rows
        .iter()
        .map(|k| pages::KeyView {
            id: k.id.to_string(),
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            scopes: k.scopes.join(", "),
            last_used: app.keys.last_used(k).map(ts),
            expires: k.expires_at.map(ts),
            revoked: k.revoked_at.map(ts),
            accounts: k
                .account_ids
                .as_ref()
                .map(|ids| ids.iter().map(name_of).collect::<Vec<_>>().join(", ")),
        })
        .collect();
    let choices: Vec<(String, String)> = accounts.iter().map(|a| (a.id.to_string(), a.name.clone())).collect();
    let page = pages::keys(&chrome(app, who).await, &list, &choices, created, error, notice);
    if error.is_some() {
        status_html(StatusCode::BAD_REQUEST, page)
    } else {
        html(page)
    }
}

/// The flash purpose of a key just created (issue 10: POST/redirect/GET).
const KEY_CREATED: &str = "key-created";

async fn keys_page(State(app): State<AppState>, who: UiUser, uri: axum::http::Uri, headers: HeaderMap) -> Response {
    let done =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).any(|(k, v)| k == "done" && v == "created");
    if !done {
        return keys_view(&app, &who, None, None, None).await;
    }
    // The key just created, shown once: a reload finds the flash gone.
    let (value, clear) = flash::take(&app, &headers, who.user.id, KEY_CREATED);
    let created: Option<(String, String)> = value.and_then(|v| serde_json::from_str(&v).ok());
    let page = match &created {
        Some((name, key)) => keys_view(&app, &who, Some((name, key)), None, None).await,
        None => {
            let shown =
                "The new key was shown once, when it was made. If it was not copied, revoke it and create another.";
            keys_view(&app, &who, None, None, Some(shown)).await
        }
    };
    with_cookies(page, clear.into_iter().collect())
}

async fn create_key(State(app): State<AppState>, who: UiUser, body: Result<Bytes, BytesRejection>) -> Response {
    let bytes = match body_bytes(body) {
        Ok(b) => b,
        Err(p) => return ApiError(p).into_response(),
    };
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(&bytes).into_owned().collect();
    let one = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    if !tokens_match(one("csrf"), &who.csrf) {
        return refused();
    }
    // "Never" is the empty choice; anything else must be a whole number of days the form could
    // have offered a range of, never silently a key that does not expire.
    let expires_at = match one("expires_in_days").trim() {
        "" => None,
        text => match text.parse::<i64>() {
            Ok(days) if (1..=3650).contains(&days) => Some(ts(now() + chrono::Duration::days(days))),
            _ => {
                let why = "Expires: pick one of the choices (a whole number of days from 1 to 3650, or never).";
                return keys_view(&app, &who, None, Some(why), None).await;
            }
        },
    };
    let input = super::api_keys::CreateIn {
        name: Some(one("name").to_owned()),
        scopes: Some(
            pairs
                .iter()
                .filter(|(k, _)| k == "scope")
                .map(|(_, v)| v.clone())
                .collect(),
        ),
        // issue 10: the accounts ticked (none: every account); the API's checks apply (the
        // user's own accounts only, at most 500).
        account_ids: {
            let ids: Vec<String> = pairs
                .iter()
                .filter(|(k, _)| k == "account")
                .map(|(_, v)| v.clone())
                .collect();
            (!ids.is_empty()).then_some(ids)
        },
        expires_at,
    };
    match super::api_keys::create_key(&app, who.user.id, input).await {
        // POST/redirect/GET: the key rides a sealed one-time flash to the page, so reloading the
        // page neither shows it again nor creates another key.
        Ok((row, full)) => {
            let value = json!([row.name, full]).to_string();
            with_cookies(
                Redirect::to("/app/keys?done=created#created-h"),
                vec![flash::put(&app, who.user.id, KEY_CREATED, &value)],
            )
        }
        Err(p) if p.status == StatusCode::BAD_REQUEST => keys_view(&app, &who, None, Some(&p.message), None).await,
        Err(p) => ApiError(p).into_response(),
    }
}

async fn revoke_key(
    State(app): State<AppState>,
    who: UiUser,
    DPath(id): DPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(r) = signed_form(&who, body) {
        return *r;
    }
    match super::api_keys::revoke_key(&app, who.user.id, &id).await {
        Ok(()) => Redirect::to("/app/keys").into_response(),
        Err(p) => ApiError(p).into_response(),
    }
}

// --- the accounts page's JSON (cookie + `x-csrf-token`) ---

/// A fetch of the signed-in user's page: its token in `x-csrf-token`.
fn signed_fetch(who: &UiUser, headers: &HeaderMap) -> Result<(), Halt> {
    let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
    if tokens_match(sent, &who.csrf) {
        Ok(())
    } else {
        Err(Box::new(refused()))
    }
}

#[derive(Serialize)]
struct PromptOut {
    id: String,
    length: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    purpose: Option<String>,
    attempts: i32,
    /// Seconds left until the request expires (the page counts down from it).
    expires_in: i64,
}

#[derive(Serialize)]
struct AccountStateOut {
    id: AccountId,
    name: String,
    bank: String,
    light: &'static str,
    blocked_reason: Option<String>,
    prompt: Option<PromptOut>,
    /// The latest run (issue 10: accounts list polish).
    last_run: Option<LastRunOut>,
}

#[derive(Serialize)]
struct LastRunOut {
    outcome: String,
    /// When it ended (or started, while running), RFC 3339.
    at: String,
}

async fn last_run(app: &AppState, who: &UiUser, account: AccountId) -> Result<Option<pages::LastRun>, Problem> {
    Ok(app
        .store
        .list_runs(who.user.id, account, 1, 0)
        .await?
        .into_iter()
        .next()
        .map(|r| pages::LastRun {
            at: ts(r.ended_at.unwrap_or(r.started_at)),
            outcome: r.outcome,
        }))
}

async fn api_accounts(State(app): State<AppState>, who: UiUser) -> Result<Json<Vec<AccountStateOut>>, ApiError> {
    let rows = app.store.list_accounts(who.user.id, 500, 0).await?;
    let mut out = Vec::with_capacity(rows.len());
    for a in rows {
        let prompt = match app.assistance.pending(a.id).await? {
            None => None,
            Some(p) => {
                // The deadline is on the row (the cache holds what /v1 shows).
                let expires_in = match app.store.assistance_by_id(p.id).await? {
                    Some(r) => (r.expires_at - app.clock.now()).num_seconds().max(0),
                    None => 0,
                };
                Some(PromptOut {
                    id: p.id.to_string(),
                    length: p.descriptor.length,
                    kind: match p.descriptor.kind {
                        reconbanker_store::CodeKind::Numeric => "numeric",
                        reconbanker_store::CodeKind::Alphanumeric => "alphanumeric",
                    },
                    purpose: p.descriptor.purpose.clone(),
                    attempts: p.attempts,
                    expires_in,
                })
            }
        };
        let last_run = last_run(&app, &who, a.id).await?.map(|r| LastRunOut {
            outcome: r.outcome,
            at: r.at,
        });
        out.push(AccountStateOut {
            last_run,
            light: if prompt.is_some() {
                "awaiting_code"
            } else {
                light(&app, &a).await?
            },
            id: a.id,
            name: a.name,
            bank: a.bank_code,
            blocked_reason: a.scrape_blocked_reason,
            prompt,
        });
    }
    Ok(Json(out))
}

#[derive(Serialize)]
struct MovementOut {
    amount: String,
    currency: String,
    name: Option<String>,
    description: String,
    received_at: String,
}

async fn api_movements(
    State(app): State<AppState>,
    who: UiUser,
    DPath(id): DPath<String>,
) -> Result<Json<Vec<MovementOut>>, ApiError> {
    let a = owned(&app, &who, &id).await?;
    let rows = app.store.list_movements(who.user.id, a.id, 20, 0).await?;
    Ok(Json(
        rows.into_iter()
            .map(|m| MovementOut {
                amount: m.amount,
                currency: m.currency,
                name: m.name,
                description: m.description,
                received_at: m.received_at,
            })
            .collect(),
    ))
}

/// The code prompt's submission: the one OTP path (`http::otp::submit`), dashboard rules.
async fn api_otp(
    State(app): State<AppState>,
    who: UiUser,
    DPath(id): DPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(r) = signed_fetch(&who, &headers) {
        return *r;
    }
    let a = match owned(&app, &who, &id).await {
        Ok(a) => a,
        Err(p) => return ApiError(p).into_response(),
    };
    match super::otp::submit(&app, a.id, body, super::otp::Body::Strict).await {
        Ok(r) => r,
        Err(p) => ApiError(p).into_response(),
    }
}

async fn api_read(
    State(app): State<AppState>,
    who: UiUser,
    DPath(id): DPath<String>,
    headers: HeaderMap,
    _: NoBody,
) -> Response {
    if let Err(r) = signed_fetch(&who, &headers) {
        return *r;
    }
    match owned(&app, &who, &id).await {
        Ok(a) => {
            crate::app::accounts::scrape_now(&app, a.id).await;
            (StatusCode::ACCEPTED, Json(json!({"queued": true}))).into_response()
        }
        Err(p) => ApiError(p).into_response(),
    }
}

/// A single-use ticket for `/realtime/events` (the page's live stream).
async fn api_ticket(State(app): State<AppState>, who: UiUser, headers: HeaderMap, _: NoBody) -> Response {
    if let Err(r) = signed_fetch(&who, &headers) {
        return *r;
    }
    let session = DashboardSession {
        user: who.user.id,
        jti: who.claims.jti,
        exp: who.claims.exp,
    };
    match app.tickets.issue(session).await {
        Ok(ticket) => Json(json!({ "ticket": ticket })).into_response(),
        Err(e) => ApiError(e.into()).into_response(),
    }
}
