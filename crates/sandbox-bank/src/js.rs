//! The JavaScript sandbox bank (`sandbox-js`, issue 9): the same bank — the same scripted users,
//! codes, sessions, failure patterns and movements — behind a single-page application under
//! `/js/`. Its pages are one shell with no form in it (no password field in the initial HTML);
//! `app.js` renders the login and OTP forms and fetches the movements as JSON with an
//! `XMLHttpRequest`, so only a real browser can use it. The browser connector drives it through
//! `banks/sandbox-js.toml`.
//!
//! # Pages (all the same shell: `<main id="app">` and `<script src="/js/app.js">`)
//!
//! `GET /js/login`, `GET /js/otp`, `GET /js/movements`. While the bank is redesigned
//! ([`SandboxBank::set_js_redesign`]) `<body>` carries `data-design="2"` and the login form
//! submits with `<input type="submit" class="redesigned-submit">` instead of its `<button>`. Once `app.js` has rendered, `<body>`
//! carries `data-page` = `loading` | `login` | `otp` | `movements` | `error`, and:
//! - login: `<form id="login-form">` with `input[name=username]`, `input[name=password]`,
//!   `button[type=submit]`; errors as `<p class="error" data-error="CODE">` (`bad_credentials`,
//!   `account_locked`, `unavailable`, `csrf`);
//! - otp: `<form id="otp-form" data-length data-type data-purpose data-attempts-left>` with
//!   `input[name=code]` and `button[type=submit]`; a rejected code re-renders the form with
//!   `<p class="error" data-error="wrong_code" data-attempts-left="N">`; the last wrong code shows
//!   `data-error="otp_locked"`; a session that is gone sends the browser to `/js/login`;
//! - movements: `<p id="account" data-username>`, `<table id="movements">` with one
//!   `<tr data-id>` per movement (cells as on the HTML bank), `<button id="logout">`; a flaky
//!   read shows `data-error="bad_gateway"`; not logged in → `/js/login`.
//!
//! # The JSON API the app calls (`/js/api/…`)
//!
//! - `GET /js/api/session` → `{"csrf", "stage": "anonymous"|"otp"|"authenticated", "interrupt"}`
//!   (+ `"token"` once authenticated: the session's bearer token for `/js/api/movements`),
//!   creating an anonymous session (cookie `sandbox_session`) when the visitor has none.
//!   `interrupt` is true for a user [`SandboxBank::set_js_interruption`] was set for: the
//!   movements page then first shows `<div id="session-timeout" role="dialog">` ("Are you still
//!   there?") and loads the movements only once `button#stay` is clicked.
//! - `POST /js/api/login` `{"username","password","csrf"[,"device"]}` → 200 `{"next":"otp"|"movements"}`
//!   with a new session cookie; 401 `{"error":"bad_credentials"}`; 403
//!   `{"error":"account_locked"}`; 400 `{"error":"csrf"|"bad_request"}`; 503
//!   `{"error":"unavailable"}` (the flaky pattern, counted with the HTML bank's).
//! - `GET /js/api/otp` → `{"length","type","purpose","attemptsLeft","csrf"}`; 401
//!   `{"error":"not_logged_in"}` when the session is not waiting for a code.
//! - `POST /js/api/otp` `{"code","csrf"}` → 200 `{"next":"movements","device":TOKEN}` with a new
//!   session cookie and a remembered-device cookie `sandbox_device` (90 days) holding the same
//!   token, which the app also keeps in `localStorage` as `sandbox_device_token` and sends as
//!   `"device"` in the body of its next `POST /js/api/login`: a later login of the same username
//!   that sends it back either way is logged in without a code (issue 9's remember-device); 422
//!   `{"error":"wrong_code","attemptsLeft":N}`; 403 `{"error":"otp_locked"}` (session destroyed);
//!   401 `{"error":"not_logged_in"}`; 400 `{"error":"csrf"}`. Judged codes are published like the
//!   HTML bank's.
//! - `GET /js/api/movements[?page=N]` → `{"account": USERNAME, "movements": [...], "page": N,
//!   "nextPage": N+1 | null}`, only with `Authorization: Bearer <token>` (the session's token
//!   from `/js/api/session`; without it, or with another, 401 `{"error":"not_logged_in"}`, as a
//!   bank whose API is bound to its own app answers) (the objects of `/api/movements`, newest first; one page holds
//!   them all unless [`SandboxBank::set_js_page_size`] set a size for the user, and then the
//!   page renders `<button id="next-page">` while older ones remain); 400
//!   `{"error":"bad_request"}` for a `page` that is not a number from 1; 401
//!   `{"error":"not_logged_in"}`; 502 `{"error":"bad_gateway"}` (flaky).
//! - `POST /js/api/logout[?idle=1]` → 204, session destroyed (`idle`: the app's idle timeout,
//!   published as [`crate::JsIdleEvent::LoggedOut`]).
//! - Idle timeout ([`SandboxBank::set_js_idle`], issue 9's `keep_alive`): for such a user
//!   `/js/api/session` also returns `"idle": {"warnMs", "logoutMs"}`; once the movements are
//!   shown the app waits `warnMs`, then shows `<div id="session-timeout" role="dialog">` with
//!   `button#stay`; answered, the app calls `GET /js/api/session?stay=1` (published as
//!   [`crate::JsIdleEvent::Stayed`]) and starts over; unanswered for `logoutMs`, it calls
//!   `POST /js/api/logout?idle=1` and goes to `/js/login`.
//!
//! `user_slow` is held back exactly as on the HTML bank.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::flow::{self, LoginFields, LoginOutcome, OtpFields, OtpOutcome, Read};
use crate::routes::{clear_cookie, cookie, set_cookie, with_cookie, MovementOut};
use crate::sessions::Stage;
use crate::SandboxBank;

/// Where the JavaScript bank lives on the sandbox bank's server.
pub const JS_PREFIX: &str = "/js";

/// The remembered-device cookie `sandbox-js` sets when a code is accepted.
pub const DEVICE_COOKIE: &str = "sandbox_device";

const APP_JS: &str = include_str!("js/app.js");

pub(crate) fn router() -> Router<SandboxBank> {
    Router::new()
        .route("/js/login", get(shell))
        .route("/js/otp", get(shell))
        .route("/js/movements", get(shell))
        .route("/js/app.js", get(app_js))
        .route("/js/api/session", get(session))
        .route("/js/api/login", post(login))
        .route("/js/api/otp", get(otp_get).post(otp_post))
        .route("/js/api/movements", get(movements))
        .route("/js/api/logout", post(logout))
}

async fn shell(State(bank): State<SandboxBank>) -> Html<String> {
    // `data-design="2"`: the redesigned site (`SandboxBank::set_js_redesign`).
    let design = if bank.js_redesigned() { " data-design=\"2\"" } else { "" };
    Html(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Sandbox Bank (JavaScript)</title>\n</head>\n<body data-page=\"loading\"{design}>\n\
         <header><h1>Sandbox Bank</h1></header>\n<main id=\"app\"><p>Loading…</p></main>\n\
         <noscript>This bank needs JavaScript.</noscript>\n\
         <script src=\"/js/app.js\"></script>\n</body>\n</html>\n"
    ))
}

async fn app_js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], APP_JS).into_response()
}

fn error(status: StatusCode, code: &str) -> Response {
    (status, Json(json!({ "error": code }))).into_response()
}

fn not_logged_in() -> Response {
    error(StatusCode::UNAUTHORIZED, "not_logged_in")
}

#[derive(serde::Deserialize)]
struct SessionQuery {
    /// `?stay=1`: the app's answer to its idle dialog.
    stay: Option<String>,
}

async fn session(State(bank): State<SandboxBank>, headers: HeaderMap, Query(q): Query<SessionQuery>) -> Response {
    let asks = bank.clone();
    let token = api_token(&bank, &headers);
    if q.stay.is_some() {
        if let Some(username) = bank.authenticated_user(&headers) {
            bank.publish_js_idle(crate::JsIdleEvent::Stayed { username });
        }
    }
    flow::greet(&bank, &headers, |v| {
        let (stage, interrupt) = match &v.stage {
            Stage::Anonymous => ("anonymous", false),
            Stage::Otp { .. } => ("otp", false),
            Stage::Authenticated { username } => ("authenticated", asks.js_interrupts(username)),
        };
        let mut body = json!({ "csrf": v.csrf, "stage": stage, "interrupt": interrupt });
        if let Stage::Authenticated { username } = &v.stage {
            // The app's bearer token for `/js/api/movements`.
            body["token"] = json!(token);
            if let Some(idle) = asks.js_idle(username) {
                body["idle"] = json!({
                    "warnMs": idle.warn_after.as_millis() as u64,
                    "logoutMs": idle.logout_after.as_millis() as u64,
                });
            }
        }
        Json(body)
    })
    .await
}

/// The bearer token of the visitor's session (`Session::api_token`).
fn api_token(bank: &SandboxBank, headers: &HeaderMap) -> Option<String> {
    let id = crate::routes::session_id(headers)?;
    bank.inner.lock_sessions().get(&id).map(|s| s.api_token.clone())
}

/// Whether the request carries `Authorization: Bearer <its session's token>`.
fn bearer_ok(bank: &SandboxBank, headers: &HeaderMap) -> bool {
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    matches!((api_token(bank, headers), sent), (Some(want), Some(got)) if want == got)
}

fn next(session: &str, page: &str) -> Response {
    with_cookie(set_cookie(session), Json(json!({ "next": page })))
}

async fn login(
    State(bank): State<SandboxBank>,
    headers: HeaderMap,
    body: Result<Json<LoginFields>, JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "bad_request");
    };
    // The device token from the app's localStorage (sent in the body), else the cookie.
    let device = body
        .device
        .clone()
        .filter(|d| !d.is_empty())
        .or_else(|| cookie(&headers, DEVICE_COOKIE));
    flow::login(&bank, &headers, &body, device.as_deref(), |outcome| match outcome {
        LoginOutcome::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            Json(json!({ "error": "unavailable" })),
        )
            .into_response(),
        LoginOutcome::Csrf => error(StatusCode::BAD_REQUEST, "csrf"),
        LoginOutcome::BadCredentials { .. } => error(StatusCode::UNAUTHORIZED, "bad_credentials"),
        LoginOutcome::Locked { .. } => error(StatusCode::FORBIDDEN, "account_locked"),
        LoginOutcome::Otp { session } => next(&session, "otp"),
        LoginOutcome::LoggedIn { session } => next(&session, "movements"),
    })
    .await
}

async fn otp_get(State(bank): State<SandboxBank>, headers: HeaderMap) -> Response {
    match flow::challenge(&bank, &headers) {
        Some(c) => Json(json!({
            "length": c.challenge.length,
            "type": c.challenge.kind.as_str(),
            "purpose": "login",
            "attemptsLeft": c.attempts_left,
            "csrf": c.csrf,
        }))
        .into_response(),
        None => not_logged_in(),
    }
}

async fn otp_post(
    State(bank): State<SandboxBank>,
    headers: HeaderMap,
    body: Result<Json<OtpFields>, JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "bad_request");
    };
    match flow::judge_otp(&bank, &headers, &body) {
        OtpOutcome::NotLoggedIn => not_logged_in(),
        OtpOutcome::Csrf => error(StatusCode::BAD_REQUEST, "csrf"),
        OtpOutcome::Accepted { session, username } => {
            // "Remember this device": the next login of this username from this browser
            // needs no code (CONNECTORS §4's remember-device, for the browser connector to keep).
            let token = bank.remember_device(&username);
            let device = format!(
                "{DEVICE_COOKIE}={token}; Path=/js/; Max-Age={}; HttpOnly; SameSite=Lax",
                crate::DEVICE_TTL.as_secs()
            );
            // The same token in the body: the app keeps it in localStorage
            // (`sandbox_device_token`) and sends it with its next login.
            let body = Json(json!({ "next": "movements", "device": token }));
            with_cookie(device, with_cookie(set_cookie(&session), body))
        }
        OtpOutcome::Locked => with_cookie(clear_cookie(), error(StatusCode::FORBIDDEN, "otp_locked")),
        OtpOutcome::Wrong(c) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": "wrong_code", "attemptsLeft": c.attempts_left })),
        )
            .into_response(),
    }
}

#[derive(serde::Deserialize)]
struct PageQuery {
    page: Option<String>,
}

async fn movements(State(bank): State<SandboxBank>, headers: HeaderMap, Query(q): Query<PageQuery>) -> Response {
    let page = match q.page.as_deref().map(str::parse::<usize>) {
        None => 1,
        Some(Ok(n)) if n >= 1 => n,
        Some(_) => return error(StatusCode::BAD_REQUEST, "bad_request"),
    };
    if !bearer_ok(&bank, &headers) {
        return not_logged_in();
    }
    let sizes = bank.clone();
    flow::movements(&bank, &headers, |read| match read {
        Read::NotLoggedIn => not_logged_in(),
        Read::Failed => error(StatusCode::BAD_GATEWAY, "bad_gateway"),
        Read::Movements { username, movements } => {
            let size = sizes.js_page_size(&username).unwrap_or(usize::MAX);
            let skip = (page - 1).saturating_mul(size);
            let more = movements.len() > skip.saturating_add(size);
            let movements: Vec<MovementOut> = movements
                .into_iter()
                .skip(skip)
                .take(size)
                .map(MovementOut::from)
                .collect();
            let next = more.then_some(page + 1);
            Json(json!({ "account": username, "movements": movements, "page": page, "nextPage": next })).into_response()
        }
    })
    .await
}

#[derive(serde::Deserialize)]
struct LogoutQuery {
    /// `?idle=1`: the app logs out because its idle dialog went unanswered.
    idle: Option<String>,
}

async fn logout(State(bank): State<SandboxBank>, headers: HeaderMap, Query(q): Query<LogoutQuery>) -> Response {
    if q.idle.is_some() {
        if let Some(username) = bank.authenticated_user(&headers) {
            bank.publish_js_idle(crate::JsIdleEvent::LoggedOut { username });
        }
    }
    flow::logout(&bank, &headers, with_cookie(clear_cookie(), StatusCode::NO_CONTENT)).await
}
