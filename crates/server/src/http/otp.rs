//! The one OTP submission path. `POST /v1/accounts/:id/otp` and `POST /accounts/:id/otp` run it
//! after their own authentication and authorization (docs/product.md §7 steps 1–4), and render
//! its [`Problem`] in their surface's shape.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use reconbanker_store::AccountId;
use serde::Deserialize;
use utoipa::ToSchema;

use super::dto::OtpAcceptedOut;
use super::error::{rate_limit_headers, Problem};
use super::extract::{body_bytes, parse_json};
use crate::AppState;

/// `POST /v1/accounts/:accountId/otp` body.
#[derive(Deserialize, ToSchema)]
pub struct OtpSubmission {
    /// The one-time code: 1 to 32 characters after trimming, matching the pending request's
    /// descriptor (length and type). A code of only whitespace is refused (the `pattern`).
    #[schema(min_length = 1, max_length = 32, pattern = r"\S", example = "123456")]
    pub code: String,
    /// Optional: the id of the request this code answers. If it is not the pending request,
    /// the code is refused with `STALE_REQUEST` instead of reaching a newer prompt.
    #[serde(default)]
    pub request_id: Option<String>,
}

/// The dashboard's body for the same submission: strict, like every dashboard body (an
/// unknown field is a 400). `/v1` ignores unknown fields, for forward compatibility.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StrictOtpSubmission {
    /// The one-time code: 1 to 32 characters after trimming, matching the pending request's
    /// descriptor (length and type).
    #[schema(min_length = 1, max_length = 32, pattern = r"\S", example = "123456")]
    code: String,
    /// Optional: the id of the request this code answers (`STALE_REQUEST` when it is not the pending one).
    #[serde(default)]
    request_id: Option<String>,
}

/// Which surface's body rules apply.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    /// `/v1`: unknown fields are ignored.
    Lenient,
    /// The dashboard: unknown fields are a 400.
    Strict,
}

/// Steps 5–7 of the order of checks: the body, the shared rate budget, the pending request;
/// then the code goes to the waiting login. `202` with the `RateLimit` headers.
pub(crate) async fn submit(
    app: &AppState,
    account: AccountId,
    body: Result<Bytes, BytesRejection>,
    rules: Body,
) -> Result<Response, Problem> {
    let bytes = body_bytes(body)?;
    let input: OtpSubmission = match rules {
        Body::Lenient => parse_json(&bytes)?,
        Body::Strict => {
            let s: StrictOtpSubmission = parse_json(&bytes)?;
            OtpSubmission {
                code: s.code,
                request_id: s.request_id,
            }
        }
    };
    let done = app
        .assistance
        .submit(account, &input.code, input.request_id.as_deref())
        .await?;
    let mut res = (
        StatusCode::ACCEPTED,
        axum::Json(OtpAcceptedOut {
            submitted: true,
            request_id: done.request_id.to_string(),
        }),
    )
        .into_response();
    res.headers_mut().extend(rate_limit_headers(&done.rate));
    Ok(res)
}
