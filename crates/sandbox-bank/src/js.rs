//! The JavaScript sandbox bank (`sandbox-js`, issue 9): the same bank — the same scripted users,
//! codes, sessions, failure patterns and movements — behind a single-page application under
//! `/js/`. Its pages are one shell with no form in it (no password field in the initial HTML);
//! `app.js` renders the login and OTP forms and fetches the movements as JSON with an
//! `XMLHttpRequest`, so only a real browser can use it. The browser connector drives it through
//! `banks/sandbox-js.toml`.
//!
//! # Pages (all the same shell: `<main id="app">` and `<script src="/js/app.js">`)
//!
//! `GET /js/login`, `GET /js/otp`, `GET /js/movements`. Once `app.js` has rendered, `<body>`
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
//! - `GET /js/api/session` → `{"csrf", "stage": "anonymous"|"otp"|"authenticated"}`, creating
//!   an anonymous session (cookie `sandbox_session`) when the visitor has none.
//! - `POST /js/api/login` `{"username","password","csrf"}` → 200 `{"next":"otp"|"movements"}`
//!   with a new session cookie; 401 `{"error":"bad_credentials"}`; 403
//!   `{"error":"account_locked"}`; 400 `{"error":"csrf"|"bad_request"}`; 503
//!   `{"error":"unavailable"}` (the flaky pattern, counted with the HTML bank's).
//! - `GET /js/api/otp` → `{"length","type","purpose","attemptsLeft","csrf"}`; 401
//!   `{"error":"not_logged_in"}` when the session is not waiting for a code.
//! - `POST /js/api/otp` `{"code","csrf"}` → 200 `{"next":"movements"}` with a new cookie; 422
//!   `{"error":"wrong_code","attemptsLeft":N}`; 403 `{"error":"otp_locked"}` (session destroyed);
//!   401 `{"error":"not_logged_in"}`; 400 `{"error":"csrf"}`. Judged codes are published like the
//!   HTML bank's.
//! - `GET /js/api/movements` → `{"account": USERNAME, "movements": [...]}` (the objects of
//!   `/api/movements`); 401 `{"error":"not_logged_in"}`; 502 `{"error":"bad_gateway"}` (flaky).
//! - `POST /js/api/logout` → 204, session destroyed.
//!
//! `user_slow` is held back exactly as on the HTML bank.

use std::sync::atomic::Ordering::Relaxed;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::routes::{clear_cookie, is_a, session_id, set_cookie, with_cookie, MovementOut};
use crate::sessions::Stage;
use crate::users::{self, Behaviour, USER_SLOW};
use crate::{OtpReceived, SandboxBank};

/// Where the JavaScript bank lives on the sandbox bank's server.
pub const JS_PREFIX: &str = "/js";

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

async fn shell() -> Html<&'static str> {
    Html(concat!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        "<title>Sandbox Bank (JavaScript)</title>\n</head>\n<body data-page=\"loading\">\n",
        "<header><h1>Sandbox Bank</h1></header>\n<main id=\"app\"><p>Loading…</p></main>\n",
        "<noscript>This bank needs JavaScript.</noscript>\n",
        "<script src=\"/js/app.js\"></script>\n</body>\n</html>\n"
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

async fn session(State(bank): State<SandboxBank>, headers: HeaderMap) -> Response {
    let response = {
        let mut sessions = bank.inner.lock_sessions();
        match session_id(&headers).and_then(|id| sessions.get(&id).map(|s| (s.csrf.clone(), s.stage.clone()))) {
            Some((csrf, stage)) => {
                let stage = match stage {
                    Stage::Anonymous => "anonymous",
                    Stage::Otp { .. } => "otp",
                    Stage::Authenticated { .. } => "authenticated",
                };
                Json(json!({ "csrf": csrf, "stage": stage })).into_response()
            }
            None => {
                let id = sessions.create(Stage::Anonymous);
                let csrf = sessions.get(&id).map(|s| s.csrf.clone()).unwrap_or_default();
                with_cookie(set_cookie(&id), Json(json!({ "csrf": csrf, "stage": "anonymous" })))
            }
        }
    };
    bank.hold_answer(bank.session_user(&headers).as_deref(), &headers, response)
        .await
}

#[derive(Debug, Deserialize)]
struct LoginBody {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

async fn login(
    State(bank): State<SandboxBank>,
    headers: HeaderMap,
    body: Result<Json<LoginBody>, JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "bad_request");
    };
    bank.inner.counters.logins_attempted.fetch_add(1, Relaxed);
    if bank.flaky_login_refused(&body.username) {
        bank.count_server_error();
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            Json(json!({ "error": "unavailable" })),
        )
            .into_response();
    }
    let session_user = bank.session_user(&headers);
    let response = login_now(&bank, &headers, &body);
    let waits_for = if is_a(&body.username, USER_SLOW) {
        Some(body.username.as_str())
    } else {
        session_user.as_deref()
    };
    bank.hold_answer(waits_for, &headers, response).await
}

fn login_now(bank: &SandboxBank, headers: &HeaderMap, body: &LoginBody) -> Response {
    let cookie = session_id(headers);
    let mut sessions = bank.inner.lock_sessions();
    let csrf = cookie
        .as_deref()
        .and_then(|id| sessions.get(id))
        .map(|s| s.csrf.clone());
    let (Some(old_id), Some(csrf)) = (cookie, csrf) else {
        return error(StatusCode::BAD_REQUEST, "csrf");
    };
    if csrf != body.csrf {
        return error(StatusCode::BAD_REQUEST, "csrf");
    }
    let Some(user) = users::authenticate(&body.username, &body.password) else {
        return error(StatusCode::UNAUTHORIZED, "bad_credentials");
    };
    let username = body.username.clone();
    match user.behaviour {
        Behaviour::Locked => error(StatusCode::FORBIDDEN, "account_locked"),
        Behaviour::Otp(challenge) => {
            sessions.remove(&old_id);
            let attempts_left = bank.inner.config.otp_attempts.max(1);
            let id = sessions.create(Stage::Otp {
                username,
                challenge,
                attempts_left,
            });
            with_cookie(set_cookie(&id), Json(json!({ "next": "otp" })))
        }
        Behaviour::Plain | Behaviour::Flaky | Behaviour::Slow => {
            sessions.remove(&old_id);
            let id = sessions.create(Stage::Authenticated { username });
            bank.inner.counters.logins_succeeded.fetch_add(1, Relaxed);
            with_cookie(set_cookie(&id), Json(json!({ "next": "movements" })))
        }
    }
}

async fn otp_get(State(bank): State<SandboxBank>, headers: HeaderMap) -> Response {
    let Some(id) = session_id(&headers) else {
        return not_logged_in();
    };
    let mut sessions = bank.inner.lock_sessions();
    let Some(session) = sessions.get(&id) else {
        return not_logged_in();
    };
    match &session.stage {
        Stage::Otp {
            challenge,
            attempts_left,
            ..
        } => Json(json!({
            "length": challenge.length,
            "type": challenge.kind.as_str(),
            "purpose": "login",
            "attemptsLeft": attempts_left,
            "csrf": session.csrf,
        }))
        .into_response(),
        _ => not_logged_in(),
    }
}

#[derive(Debug, Deserialize)]
struct OtpBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf: String,
}

async fn otp_post(
    State(bank): State<SandboxBank>,
    headers: HeaderMap,
    body: Result<Json<OtpBody>, JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "bad_request");
    };
    let Some(id) = session_id(&headers) else {
        return not_logged_in();
    };
    let mut sessions = bank.inner.lock_sessions();
    let Some(session) = sessions.get(&id) else {
        return not_logged_in();
    };
    let Stage::Otp {
        username,
        challenge,
        attempts_left,
    } = session.stage.clone()
    else {
        return not_logged_in();
    };
    if session.csrf != body.csrf {
        return error(StatusCode::BAD_REQUEST, "csrf");
    }
    let counters = &bank.inner.counters;
    counters.otp_submissions.fetch_add(1, Relaxed);
    let accepted = body.code.trim() == challenge.code;
    let response = if accepted {
        sessions.remove(&id);
        let new_id = sessions.create(Stage::Authenticated {
            username: username.clone(),
        });
        counters.otp_accepted.fetch_add(1, Relaxed);
        counters.logins_succeeded.fetch_add(1, Relaxed);
        with_cookie(set_cookie(&new_id), Json(json!({ "next": "movements" })))
    } else if attempts_left <= 1 {
        sessions.remove(&id);
        with_cookie(clear_cookie(), error(StatusCode::FORBIDDEN, "otp_locked"))
    } else {
        let left = attempts_left - 1;
        session.stage = Stage::Otp {
            username: username.clone(),
            challenge,
            attempts_left: left,
        };
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": "wrong_code", "attemptsLeft": left })),
        )
            .into_response()
    };
    tracing::debug!(%username, accepted, "sandbox bank (js): one-time code judged");
    let _ = bank.inner.otp_events.send(OtpReceived {
        username,
        accepted,
        at: std::time::Instant::now(),
    });
    response
}

async fn movements(State(bank): State<SandboxBank>, headers: HeaderMap) -> Response {
    let Some(username) = bank.authenticated_user(&headers) else {
        return not_logged_in();
    };
    let response = if bank.movement_read_fails(&username) {
        error(StatusCode::BAD_GATEWAY, "bad_gateway")
    } else {
        let movements: Vec<MovementOut> = bank
            .movements_of(&username)
            .into_iter()
            .map(MovementOut::from)
            .collect();
        Json(json!({ "account": username, "movements": movements })).into_response()
    };
    bank.hold_answer(Some(&username), &headers, response).await
}

async fn logout(State(bank): State<SandboxBank>, headers: HeaderMap) -> Response {
    let username = bank.session_user(&headers);
    if let Some(id) = session_id(&headers) {
        bank.inner.lock_sessions().remove(&id);
    }
    let response = with_cookie(clear_cookie(), StatusCode::NO_CONTENT);
    bank.hold_answer(username.as_deref(), &headers, response).await
}
