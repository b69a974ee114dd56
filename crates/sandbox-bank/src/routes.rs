//! The website: handlers for every page of the sandbox bank.

use std::sync::atomic::Ordering::Relaxed;

use axum::extract::rejection::FormRejection;
use axum::extract::{DefaultBodyLimit, Form, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{AppendHeaders, Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use crate::controls::{self, MOVEMENT_BODY_LIMIT, ORDERS_BODY_LIMIT};
use crate::flow::{self, LoginFields, LoginOutcome, OtpFields, OtpOutcome, Read};
use crate::html::{self, LoginError};
use crate::movements::Movement;
use crate::sessions::Stage;
use crate::users::{self, USER_FLAKY, USER_SLOW};
use crate::SandboxBank;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "sandbox_session";

pub(crate) fn router(bank: SandboxBank) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_form).post(login_submit))
        .route("/otp", get(otp_form).post(otp_submit))
        .route("/movements", get(movements_page))
        .route("/api/movements", get(movements_json))
        .route("/logout", post(logout))
        .route(
            "/_sandbox/movements",
            post(controls::post_movement).layer(DefaultBodyLimit::max(MOVEMENT_BODY_LIMIT)),
        )
        .route(
            "/_sandbox/shop/orders",
            get(controls::get_orders)
                .put(controls::put_orders)
                .layer(DefaultBodyLimit::max(ORDERS_BODY_LIMIT)),
        )
        // issue 9: the JavaScript sandbox bank (`sandbox-js`), same users, under `/js/`.
        .merge(crate::js::router())
        .fallback(not_found)
        .with_state(bank)
}

#[derive(Debug, Serialize)]
pub(crate) struct MovementOut {
    id: String,
    date: String,
    amount: String,
    currency: String,
    name: Option<String>,
    description: String,
}

impl From<Movement> for MovementOut {
    fn from(m: Movement) -> Self {
        MovementOut {
            date: m.date_rfc3339(),
            amount: m.amount,
            id: m.id,
            currency: m.currency,
            name: m.name,
            description: m.description,
        }
    }
}

#[derive(Debug, Serialize)]
struct MovementsOut {
    movements: Vec<MovementOut>,
}

#[derive(Debug, Serialize)]
struct ErrorOut {
    error: &'static str,
}

/// Whether `username` is the scripted user `scripted` or one of its `+<tag>` variants.
pub(crate) fn is_a(username: &str, scripted: &str) -> bool {
    users::resolve(username).is_some_and(|u| u.username == scripted)
}

pub(crate) fn session_id(headers: &HeaderMap) -> Option<String> {
    cookie(headers, SESSION_COOKIE)
}

/// The value of the cookie `wanted` the browser sent.
pub(crate) fn cookie(headers: &HeaderMap, wanted: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| value.to_owned())
}

pub(crate) fn set_cookie(id: &str) -> String {
    format!("{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax")
}

pub(crate) fn clear_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0")
}

pub(crate) fn with_cookie(cookie: String, response: impl IntoResponse) -> Response {
    (AppendHeaders([(header::SET_COOKIE, cookie)]), response).into_response()
}

fn page(status: StatusCode, body: String) -> Response {
    (status, Html(body)).into_response()
}

fn to_login() -> Response {
    Redirect::to("/login").into_response()
}

fn bad_request() -> Response {
    page(
        StatusCode::BAD_REQUEST,
        html::error_page("bad_request", "Bad request", "The form could not be read."),
    )
}

/// The flaky front end's 503 (counted by the caller).
fn unavailable() -> Response {
    let body = html::error_page("unavailable", "Service unavailable", "Please try again in a moment.");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        Html(body),
    )
        .into_response()
}

fn csrf_error() -> Response {
    page(
        StatusCode::BAD_REQUEST,
        html::error_page(
            "csrf",
            "Form expired",
            "The form was missing its security token or it was stale.",
        ),
    )
}

impl SandboxBank {
    pub(crate) fn count_server_error(&self) {
        self.inner.counters.server_errors.fetch_add(1, Relaxed);
    }

    /// The username behind the request's session, in any stage.
    pub(crate) fn session_user(&self, headers: &HeaderMap) -> Option<String> {
        let id = session_id(headers)?;
        self.inner.lock_sessions().get(&id)?.stage.username().map(str::to_owned)
    }

    /// The username behind the request's session if it is logged in.
    pub(crate) fn authenticated_user(&self, headers: &HeaderMap) -> Option<String> {
        let id = session_id(headers)?;
        match &self.inner.lock_sessions().get(&id)?.stage {
            Stage::Authenticated { username } => Some(username.clone()),
            _ => None,
        }
    }

    /// Holds `response` back for `slow_delay` if the request is `user_slow`'s or a
    /// `user_slow+<tag>`'s (a
    /// `tokio::time::sleep`, so paused-clock tests skip it). The work is already done; the session
    /// the answer leaves with is touched again afterwards, since a real bank's idle timer starts
    /// from its last answer — so a delay longer than the idle timeout does not cost the session.
    pub(crate) async fn hold_answer(
        &self,
        username: Option<&str>,
        headers: &HeaderMap,
        response: Response,
    ) -> Response {
        if !username.is_some_and(|u| is_a(u, USER_SLOW)) {
            return response;
        }
        tokio::time::sleep(self.inner.config.slow_delay).await;
        let set = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| {
                v.split(';')
                    .next()?
                    .trim()
                    .strip_prefix(SESSION_COOKIE)?
                    .strip_prefix('=')
            })
            .map(str::to_owned)
            .next();
        // A cleared cookie (empty value) means the session is gone: nothing to touch.
        if let Some(id) = set.or_else(|| session_id(headers)).filter(|id| !id.is_empty()) {
            self.inner.lock_sessions().touch(&id);
        }
        response
    }

    /// The flaky front end fails before the application looks at the form: 1st, 3rd, 5th, … login
    /// naming a `user_flaky` (counted per username, whichever site the login came through).
    pub(crate) fn flaky_login_refused(&self, username: &str) -> bool {
        if !is_a(username, USER_FLAKY) {
            return false;
        }
        let n = {
            let mut users = self.inner.lock_users();
            let user = users.entry(username.to_owned()).or_default();
            user.flaky_login_posts += 1;
            user.flaky_login_posts
        };
        let refused = !n.is_multiple_of(2);
        if refused {
            tracing::debug!(attempt = n, "sandbox bank: flaky login answered 503");
        }
        refused
    }

    /// Whether this read of the movements fails: every third one of each `user_flaky` or
    /// `user_flaky+<tag>` (3rd, 6th, …, counted per username).
    pub(crate) fn movement_read_fails(&self, username: &str) -> bool {
        if !is_a(username, USER_FLAKY) {
            return false;
        }
        let n = {
            let mut users = self.inner.lock_users();
            let user = users.entry(username.to_owned()).or_default();
            user.flaky_movement_reads += 1;
            user.flaky_movement_reads
        };
        let fails = n.is_multiple_of(3);
        if fails {
            self.count_server_error();
        }
        fails
    }
}

async fn home() -> Html<String> {
    Html(html::home())
}

async fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        html::error_page("not_found", "Not found", "There is no such page."),
    )
}

async fn login_form(State(bank): State<SandboxBank>, headers: HeaderMap) -> Response {
    flow::greet(&bank, &headers, |v| Html(html::login(&v.csrf, "", None))).await
}

async fn login_submit(
    State(bank): State<SandboxBank>,
    headers: HeaderMap,
    form: Result<Form<LoginFields>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return bad_request();
    };
    let shown = |csrf: &str, error| page(StatusCode::OK, html::login(csrf, &form.username, Some(error)));
    flow::login(&bank, &headers, &form, None, |outcome| match outcome {
        LoginOutcome::Unavailable => unavailable(),
        LoginOutcome::Csrf => csrf_error(),
        LoginOutcome::BadCredentials { csrf } => shown(&csrf, LoginError::BadCredentials),
        LoginOutcome::Locked { csrf } => shown(&csrf, LoginError::AccountLocked),
        LoginOutcome::Otp { session } => with_cookie(set_cookie(&session), Redirect::to("/otp")),
        LoginOutcome::LoggedIn { session } => with_cookie(set_cookie(&session), Redirect::to("/movements")),
    })
    .await
}

async fn otp_form(State(bank): State<SandboxBank>, headers: HeaderMap) -> Response {
    match flow::challenge(&bank, &headers) {
        Some(c) => {
            bank.otp_asked();
            page(StatusCode::OK, html::otp(&c.csrf, &c.challenge, c.attempts_left, None))
        }
        None => to_login(),
    }
}

async fn otp_submit(
    State(bank): State<SandboxBank>,
    headers: HeaderMap,
    form: Result<Form<OtpFields>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return bad_request();
    };
    match flow::judge_otp(&bank, &headers, &form) {
        OtpOutcome::NotLoggedIn => to_login(),
        OtpOutcome::Csrf => csrf_error(),
        OtpOutcome::Accepted { session, .. } => with_cookie(set_cookie(&session), Redirect::to("/movements")),
        OtpOutcome::Locked => with_cookie(clear_cookie(), Html(html::otp_locked())),
        OtpOutcome::Wrong(c) => page(
            StatusCode::OK,
            html::otp(&c.csrf, &c.challenge, c.attempts_left, Some(c.attempts_left)),
        ),
    }
}

async fn movements_page(State(bank): State<SandboxBank>, headers: HeaderMap) -> Response {
    flow::movements(&bank, &headers, |read| match read {
        Read::NotLoggedIn => to_login(),
        Read::Failed => page(
            StatusCode::BAD_GATEWAY,
            html::error_page("bad_gateway", "Bad gateway", "Please try again."),
        ),
        Read::Movements { username, movements } => page(StatusCode::OK, html::movements(&username, &movements)),
    })
    .await
}

async fn movements_json(State(bank): State<SandboxBank>, headers: HeaderMap) -> Response {
    flow::movements(&bank, &headers, |read| match read {
        Read::NotLoggedIn => (StatusCode::UNAUTHORIZED, Json(ErrorOut { error: "not_logged_in" })).into_response(),
        Read::Failed => (StatusCode::BAD_GATEWAY, Json(ErrorOut { error: "bad_gateway" })).into_response(),
        Read::Movements { movements, .. } => {
            let movements = movements.into_iter().map(MovementOut::from).collect();
            Json(MovementsOut { movements }).into_response()
        }
    })
    .await
}

async fn logout(State(bank): State<SandboxBank>, headers: HeaderMap) -> Response {
    flow::logout(&bank, &headers, with_cookie(clear_cookie(), Redirect::to("/login"))).await
}
