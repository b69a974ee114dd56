//! Users and dashboard auth (docs/product.md §2): register, login, logout, `/me`, operation mode.

use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use reconbanker_store::{now, Constraint, UserId, UserRow};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::DashboardUser;
use super::error::{ApiError, Problem};
use super::extract::{DJson, NoBody};
use super::openapi::ApiErrorBody;
use crate::domain::email::normalize_email;
use crate::support::ratelimit::Bucket;
use crate::AppState;

const MIN_PASSWORD_CHARS: usize = 12;
/// Argon2 takes any length, but hashing megabytes per request is an easy denial of service.
const MAX_PASSWORD_BYTES: usize = 1024;
const MAX_NAME_CHARS: usize = 100;
const LOGIN_FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterIn {
    /// An email address (stored lower-cased; unique).
    #[schema(value_type = String, example = "ana@example.com")]
    email: Option<String>,
    /// At least 12 characters, at most 1024 bytes.
    #[schema(value_type = String, min_length = 12)]
    password: Option<String>,
    /// Optional display name, at most 100 characters.
    #[schema(max_length = 100)]
    name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RegisterOut {
    #[schema(value_type = String, format = Uuid)]
    id: UserId,
    email: String,
}

/// Register a user.
///
/// Unauthenticated. The password is hashed with Argon2 (hashes are queued, never refused).
#[utoipa::path(
    post, operation_id = "users_register",
    path = "/auth/register",
    tag = "Auth",
    security(()),
    request_body(content = RegisterIn, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered", body = RegisterOut),
        (status = 400, description = "`VALIDATION_ERROR`: malformed body, unknown field, missing email or password, invalid email, weak or too long password, long name, control characters", body = ApiErrorBody),
        (status = 409, description = "`EMAIL_EXISTS`", body = ApiErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`: body over 64 KiB", body = ApiErrorBody),
    )
)]

pub async fn register(
    State(app): State<AppState>,
    DJson(body): DJson<RegisterIn>,
) -> Result<impl IntoResponse, ApiError> {
    let (Some(email), Some(password)) = (body.email, body.password) else {
        return Err(Problem::validation("email and password required").into());
    };
    let user = create_user(&app, email, password, body.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(RegisterOut {
            id: user.id,
            email: user.email,
        }),
    ))
}

/// Registration's rules, shared by `POST /auth/register` and the dashboard's form (issue 10).
pub(crate) async fn create_user(
    app: &AppState,
    email: String,
    password: String,
    name: Option<String>,
) -> Result<UserRow, Problem> {
    if email.trim().is_empty() || password.is_empty() {
        return Err(Problem::validation("email and password required"));
    }
    let email = normalize_email(&email).ok_or_else(|| Problem::field("email", "is not a valid email address"))?;
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Problem::field("password", "is too weak: use at least 12 characters"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Problem::field("password", "must be at most 1024 bytes"));
    }
    let name = name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.chars().count() > MAX_NAME_CHARS) {
        return Err(Problem::field("name", "must be at most 100 characters"));
    }
    let password_hash = app.passwords.hash(password).await.map_err(Problem::internal)?;
    let user = UserRow {
        id: UserId::new(),
        email,
        name,
        password_hash,
        is_admin: false,
        operation_mode: None,
        created_at: now(),
    };
    match app.store.create_user(&user).await {
        Ok(()) => Ok(user),
        Err(e) if e.is_conflict_on(Constraint::UsersEmail) => {
            Err(Problem::conflict("EMAIL_EXISTS", "Email already exists"))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginIn {
    #[schema(value_type = String, example = "ana@example.com")]
    email: Option<String>,
    #[schema(value_type = String)]
    password: Option<String>,
    // Issue 10: the second factor (a TOTP code or a recovery code) when two-factor is on.
    /// With two-factor sign-in on: the authenticator's current code, or an unused recovery code.
    #[schema(value_type = Option<String>, example = "123456")]
    totp_code: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LoginUser {
    #[schema(value_type = String, format = Uuid)]
    id: UserId,
    email: String,
    #[schema(required = true)]
    name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LoginOut {
    /// The dashboard JWT: send it as `Authorization: Bearer <token>`.
    token: String,
    user: LoginUser,
}

/// Log in.
///
/// Unauthenticated. Failed logins are limited per client address (429 with `Retry-After`).
#[utoipa::path(
    post, operation_id = "users_login",
    path = "/auth/login",
    tag = "Auth",
    security(()),
    request_body(content = LoginIn, content_type = "application/json"),
    responses(
        (status = 200, description = "Logged in", body = LoginOut),
        (status = 400, description = "`VALIDATION_ERROR`: malformed body, unknown field, missing email or password", body = ApiErrorBody),
        (status = 401, description = "`UNAUTHORIZED`: invalid credentials; with two-factor sign-in on and the right password, `TOTP_REQUIRED` (no `totp_code`) or `INVALID_TOTP` (wrong, expired or used code) — never a token", body = ApiErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ApiErrorBody),
        (status = 429, description = "`RATE_LIMITED`: too many failed logins from this address, or too many two-factor codes tried for the user, with `Retry-After`", body = ApiErrorBody,
            headers(("Retry-After" = u64))),
    )
)]

pub async fn login(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    DJson(body): DJson<LoginIn>,
) -> Result<Json<LoginOut>, ApiError> {
    let (Some(email), Some(password)) = (body.email, body.password) else {
        return Err(Problem::validation("email and password required").into());
    };
    let user = check_password(&app, peer.ip(), &email, &password).await?;
    // Issue 10: with two-factor on, no token without a good code (docs/product.md §2).
    crate::app::two_factor::check_sign_in(&app, user.id, body.totp_code.as_deref())
        .await
        .map_err(Problem::from)?;
    let (token, _) = app.jwt.issue(user.id, now()).map_err(Problem::internal)?;
    Ok(Json(LoginOut {
        token,
        user: LoginUser {
            id: user.id,
            email: user.email,
            name: user.name,
        },
    }))
}

/// The password half of a sign-in, shared by `POST /auth/login` and the dashboard's form
/// (issue 10): the per-address failure window, one Argon2 verification whether or not the email
/// is known, the same answer for both.
pub(crate) async fn check_password(
    app: &AppState,
    ip: std::net::IpAddr,
    email: &str,
    password: &str,
) -> Result<UserRow, Problem> {
    if email.trim().is_empty() || password.is_empty() {
        return Err(Problem::validation("email and password required"));
    }
    let bucket = Bucket::LoginFailure(ip);
    let limit = app.config.login_failures;
    // The attempt is counted when it starts, before the slow hash: concurrent attempts each take
    // a place in the window, so no more than the limit are ever checked. A success gives its
    // place back below.
    let budget = app
        .limiter
        .hit_window(bucket, limit, LOGIN_FAILURE_WINDOW)
        .await
        .map_err(Problem::from)?;
    if !budget.allowed {
        return Err(Problem::rate_limited(
            &budget,
            "Too many failed logins; try again later",
        ));
    }
    // Unknown email and wrong password take the same path: one Argon2 verification each.
    let user = match normalize_email(email) {
        Some(e) if password.len() <= MAX_PASSWORD_BYTES => app.store.user_by_email(&e).await?,
        _ => None,
    };
    let password = if password.len() > MAX_PASSWORD_BYTES {
        String::new()
    } else {
        password.to_owned()
    };
    let ok = app
        .passwords
        .verify(password, user.as_ref().map(|u| u.password_hash.clone()))
        .await
        .map_err(Problem::internal)?;
    let Some(user) = user.filter(|_| ok) else {
        return Err(Problem::unauthorized("Invalid credentials"));
    };
    // Giving the place back is a courtesy: failing to must not fail a correct login.
    if let Err(e) = app.limiter.undo_window(bucket).await {
        tracing::warn!(error = %e, "could not give a successful login's place back");
    }
    Ok(user)
}

/// Log out: the token is revoked.
#[utoipa::path(
    post, operation_id = "users_logout",
    path = "/auth/logout",
    tag = "Auth",
    security(("DashboardJwt" = [])),
    responses(
        (status = 204, description = "Logged out: the token no longer works"),
        (status = 401, description = "`UNAUTHORIZED`: missing, invalid, expired or revoked token", body = ApiErrorBody),
    )
)]
pub async fn logout(State(app): State<AppState>, who: DashboardUser, _: NoBody) -> Result<StatusCode, ApiError> {
    crate::app::logins::end(&app, who.user.id, who.claims.jti, who.claims.exp).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct MeOut {
    #[schema(value_type = String, format = Uuid)]
    id: UserId,
    email: String,
    #[schema(required = true)]
    name: Option<String>,
    /// `reconcile`, `passthrough`, or `null` before one is chosen.
    #[schema(required = true)]
    operation_mode: Option<String>,
}

/// The current user.
#[utoipa::path(
    get, operation_id = "users_me",
    path = "/me",
    tag = "Auth",
    security(("DashboardJwt" = [])),
    responses(
        (status = 200, description = "The user the token belongs to", body = MeOut),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
    )
)]

pub async fn me(who: DashboardUser) -> Json<MeOut> {
    let u = who.user;
    Json(MeOut {
        id: u.id,
        email: u.email,
        name: u.name,
        operation_mode: u.operation_mode,
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModeIn {
    #[schema(value_type = OperationMode)]
    mode: String,
}

/// An operation mode (only for the document: the handler reads a string and names the field
/// when it is neither).
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum OperationMode {
    /// Requests are polled and matched to movements.
    #[schema(rename = "reconcile")]
    Reconcile,
    /// Movements are forwarded as `bank_movement` webhooks.
    #[schema(rename = "passthrough")]
    Passthrough,
}

#[derive(Serialize, ToSchema)]
pub struct ModeOut {
    operation_mode: String,
}

/// Set the operation mode.
///
/// `reconcile` (requests are polled and matched) or `passthrough` (movements are forwarded).
#[utoipa::path(
    put, operation_id = "users_set_operation_mode",
    path = "/me/operation-mode",
    tag = "Auth",
    security(("DashboardJwt" = [])),
    request_body(content = ModeIn, content_type = "application/json"),
    responses(
        (status = 200, description = "The mode now in force", body = ModeOut),
        (status = 400, description = "`VALIDATION_ERROR`: malformed body, unknown field, unknown mode", body = ApiErrorBody),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ApiErrorBody),
    )
)]

pub async fn set_operation_mode(
    State(app): State<AppState>,
    who: DashboardUser,
    DJson(body): DJson<ModeIn>,
) -> Result<Json<ModeOut>, ApiError> {
    if !matches!(body.mode.as_str(), "reconcile" | "passthrough") {
        return Err(Problem::field("mode", "must be \"reconcile\" or \"passthrough\"").into());
    }
    apply_operation_mode(&app, who.user.id, &body.mode).await?;
    Ok(Json(ModeOut {
        operation_mode: body.mode,
    }))
}

/// Stores a (validated) mode and wakes the reconciliation workers; shared with the dashboard's
/// settings page (issue 10).
pub(crate) async fn apply_operation_mode(app: &AppState, user: UserId, mode: &str) -> Result<(), Problem> {
    // Only the mode changes: requests, matches, movements and deliveries all stay
    // (docs/reconciliation.md §7). Back in reconcile mode, the work held back resumes now,
    // including the expiry of what came due meanwhile.
    app.store.set_operation_mode(user, mode).await?;
    if mode == "reconcile" {
        app.poller.wake();
        app.expiry.wake();
        app.matcher_wake.notify_one();
    }
    Ok(())
}
