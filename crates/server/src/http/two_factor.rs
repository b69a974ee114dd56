//! Issue 10: two-factor sign-in (TOTP) on the dashboard API (docs/product.md §2.1):
//! `GET /me/two-factor`, `POST /me/two-factor/setup`, `…/confirm`, `…/disable`. The rules live
//! in `app::two_factor`; this file parses, renders and draws the QR code.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::DashboardUser;
use super::error::{ApiError, Problem};
use super::extract::{DJson, NoBody};
use super::openapi::ApiErrorBody;
use crate::app::two_factor::{self, TwoFactorError};
use crate::AppState;

impl From<TwoFactorError> for Problem {
    fn from(e: TwoFactorError) -> Self {
        match e {
            TwoFactorError::Store(e) => e.into(),
            TwoFactorError::Limiter(e) => e.into(),
            TwoFactorError::Corrupt => Problem::internal("a two-factor secret does not open under the master key"),
            TwoFactorError::AlreadyOn => Problem::conflict(
                "TWO_FACTOR_ON",
                "Two-factor sign-in is already on; disable it first to set it up again",
            ),
            TwoFactorError::NotOn => Problem::conflict("TWO_FACTOR_OFF", "Two-factor sign-in is not on"),
            TwoFactorError::NoPendingSetup => Problem::conflict(
                "NO_PENDING_SETUP",
                "No two-factor set-up is waiting for confirmation; start one with POST /me/two-factor/setup",
            ),
            TwoFactorError::Required => Problem::new(
                StatusCode::UNAUTHORIZED,
                "TOTP_REQUIRED",
                "Two-factor sign-in is on: send totp_code (the authenticator's code or a recovery code)",
            ),
            TwoFactorError::Invalid => Problem::new(
                StatusCode::UNAUTHORIZED,
                "INVALID_TOTP",
                "The two-factor code is wrong, expired or already used",
            ),
            TwoFactorError::RateLimited(d) => {
                Problem::rate_limited(&d, "Too many two-factor codes tried; try again later")
            }
        }
    }
}

/// On the routes of a signed-in user a wrong code is a bad request, not a failed sign-in (a
/// 401 would read as "your token is no good").
fn in_session(e: TwoFactorError) -> Problem {
    match e {
        TwoFactorError::Invalid => Problem::new(
            StatusCode::BAD_REQUEST,
            "INVALID_TOTP",
            "The two-factor code is wrong, expired or already used",
        ),
        e => e.into(),
    }
}

/// The QR code of `text` as an SVG document fragment (no XML declaration, so it can sit inside
/// an HTML page), or `None` if the text is too long for a QR code.
pub(crate) fn qr_svg(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    let start = svg.find("<svg")?;
    Some(svg[start..].to_owned())
}

/// Whether two-factor sign-in is on for the user.
#[derive(Serialize, ToSchema)]
#[schema(as = TwoFactorStatusOut)]
pub struct StatusOut {
    enabled: bool,
    pending: bool,
    recovery_codes_left: i64,
}

/// Two-factor sign-in: its state.
#[utoipa::path(
    get, operation_id = "two_factor_status",
    path = "/me/two-factor",
    tag = "Auth",
    security(("DashboardJwt" = [])),
    responses(
        (status = 200, description = "On, a set-up waiting for confirmation, and the unused recovery codes left", body = StatusOut),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
    )
)]
pub async fn status(State(app): State<AppState>, who: DashboardUser) -> Result<Json<StatusOut>, ApiError> {
    let s = two_factor::status(&app, who.user.id).await.map_err(Problem::from)?;
    Ok(Json(StatusOut {
        enabled: s.enabled,
        pending: s.pending,
        recovery_codes_left: s.recovery_codes_left,
    }))
}

/// A new TOTP secret, waiting for its first code.
#[derive(Serialize, ToSchema)]
#[schema(as = TwoFactorSetupOut)]
pub struct SetupOut {
    secret: String,
    otpauth_uri: String,
    qr_svg: String,
}

/// Two-factor sign-in: start a set-up.
///
/// Returns the secret (base32), its `otpauth://` URI and the URI as a QR code (SVG). Nothing
/// changes at sign-in until `POST /me/two-factor/confirm` with a first code.
#[utoipa::path(
    post, operation_id = "two_factor_setup",
    path = "/me/two-factor/setup",
    tag = "Auth",
    security(("DashboardJwt" = [])),
    responses(
        (status = 200, description = "The secret, its URI and QR code", body = SetupOut),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 409, description = "`TWO_FACTOR_ON`: already on; disable it first", body = ApiErrorBody),
    )
)]
pub async fn setup(State(app): State<AppState>, who: DashboardUser, _: NoBody) -> Result<impl IntoResponse, ApiError> {
    let s = two_factor::begin(&app, &who.user).await.map_err(Problem::from)?;
    let qr_svg = qr_svg(&s.uri).ok_or_else(|| Problem::internal("the otpauth URI does not fit a QR code"))?;
    // The secret: never kept by a cache.
    Ok((
        NO_STORE,
        Json(SetupOut {
            secret: s.secret,
            otpauth_uri: s.uri,
            qr_svg,
        }),
    ))
}

/// `Cache-Control: no-store` for answers that carry a secret.
const NO_STORE: [(header::HeaderName, &str); 1] = [(header::CACHE_CONTROL, "no-store")];

/// A current code of the authenticator (or, to disable, a recovery code).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TwoFactorCodeIn)]
pub struct CodeIn {
    #[schema(value_type = String, min_length = 1, max_length = 64, example = "123456")]
    code: Option<String>,
}

fn required_code(body: CodeIn) -> Result<String, Problem> {
    match body.code {
        Some(c) if !c.trim().is_empty() && c.len() <= 64 => Ok(c),
        Some(c) if c.len() > 64 => Err(Problem::field("code", "must be at most 64 characters")),
        _ => Err(Problem::field("code", "is required")),
    }
}

/// Ten single-use recovery codes, shown only now.
#[derive(Serialize, ToSchema)]
#[schema(as = TwoFactorConfirmOut)]
pub struct ConfirmOut {
    recovery_codes: Vec<String>,
}

/// Two-factor sign-in: confirm the set-up with a first code (turns it on).
#[utoipa::path(
    post, operation_id = "two_factor_confirm",
    path = "/me/two-factor/confirm",
    tag = "Auth",
    security(("DashboardJwt" = [])),
    request_body(content = CodeIn, content_type = "application/json"),
    responses(
        (status = 200, description = "On; the recovery codes, shown once", body = ConfirmOut),
        (status = 400, description = "`VALIDATION_ERROR` (missing or long code, malformed body) or `INVALID_TOTP`", body = ApiErrorBody),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 409, description = "`TWO_FACTOR_ON` or `NO_PENDING_SETUP`", body = ApiErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ApiErrorBody),
        (status = 429, description = "`RATE_LIMITED`: too many codes tried, with `Retry-After`", body = ApiErrorBody,
            headers(("Retry-After" = u64))),
    )
)]
pub async fn confirm(
    State(app): State<AppState>,
    who: DashboardUser,
    DJson(body): DJson<CodeIn>,
) -> Result<impl IntoResponse, ApiError> {
    let code = required_code(body)?;
    let recovery_codes = two_factor::confirm(&app, who.user.id, &code)
        .await
        .map_err(in_session)?;
    Ok((NO_STORE, Json(ConfirmOut { recovery_codes })))
}

/// Two-factor sign-in: turn it off with a current code.
#[utoipa::path(
    post, operation_id = "two_factor_disable",
    path = "/me/two-factor/disable",
    tag = "Auth",
    security(("DashboardJwt" = [])),
    request_body(content = CodeIn, content_type = "application/json"),
    responses(
        (status = 204, description = "Off; the secret and the recovery codes are deleted"),
        (status = 400, description = "`VALIDATION_ERROR` (missing or long code, malformed body) or `INVALID_TOTP`", body = ApiErrorBody),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 409, description = "`TWO_FACTOR_OFF`: not on", body = ApiErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ApiErrorBody),
        (status = 429, description = "`RATE_LIMITED`: too many codes tried, with `Retry-After`", body = ApiErrorBody,
            headers(("Retry-After" = u64))),
    )
)]
pub async fn disable(
    State(app): State<AppState>,
    who: DashboardUser,
    DJson(body): DJson<CodeIn>,
) -> Result<StatusCode, ApiError> {
    let code = required_code(body)?;
    two_factor::disable(&app, who.user.id, &code)
        .await
        .map_err(in_session)?;
    Ok(StatusCode::NO_CONTENT)
}
