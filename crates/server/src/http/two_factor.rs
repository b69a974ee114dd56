//! Issue 10: two-factor sign-in (TOTP) on the dashboard API (docs/product.md §2.1):
//! `GET /me/two-factor`, `POST /me/two-factor/setup`, `…/confirm`, `…/disable`. The rules live
//! in `app::two_factor`; this file parses, renders and draws the QR code.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::DashboardUser;
use super::error::{ApiError, Problem};
use super::extract::DJson;
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

#[derive(Serialize)]
pub struct StatusOut {
    enabled: bool,
    pending: bool,
    recovery_codes_left: i64,
}

pub async fn status(State(app): State<AppState>, who: DashboardUser) -> Result<Json<StatusOut>, ApiError> {
    let s = two_factor::status(&app, who.user.id).await.map_err(Problem::from)?;
    Ok(Json(StatusOut {
        enabled: s.enabled,
        pending: s.pending,
        recovery_codes_left: s.recovery_codes_left,
    }))
}

#[derive(Serialize)]
pub struct SetupOut {
    secret: String,
    otpauth_uri: String,
    qr_svg: String,
}

pub async fn setup(State(app): State<AppState>, who: DashboardUser) -> Result<Json<SetupOut>, ApiError> {
    let s = two_factor::begin(&app, &who.user).await.map_err(Problem::from)?;
    let qr_svg = qr_svg(&s.uri).ok_or_else(|| Problem::internal("the otpauth URI does not fit a QR code"))?;
    Ok(Json(SetupOut {
        secret: s.secret,
        otpauth_uri: s.uri,
        qr_svg,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeIn {
    code: Option<String>,
}

fn required_code(body: CodeIn) -> Result<String, Problem> {
    match body.code {
        Some(c) if !c.trim().is_empty() && c.len() <= 64 => Ok(c),
        Some(c) if c.len() > 64 => Err(Problem::field("code", "must be at most 64 characters")),
        _ => Err(Problem::field("code", "is required")),
    }
}

#[derive(Serialize)]
pub struct ConfirmOut {
    recovery_codes: Vec<String>,
}

pub async fn confirm(
    State(app): State<AppState>,
    who: DashboardUser,
    DJson(body): DJson<CodeIn>,
) -> Result<Json<ConfirmOut>, ApiError> {
    let code = required_code(body)?;
    let recovery_codes = two_factor::confirm(&app, who.user.id, &code)
        .await
        .map_err(in_session)?;
    Ok(Json(ConfirmOut { recovery_codes }))
}

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
