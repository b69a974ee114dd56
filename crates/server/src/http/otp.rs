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
    /// descriptor (length and type).
    #[schema(min_length = 1, max_length = 32, example = "123456")]
    pub code: String,
    /// Optional: the id of the request this code answers. If it is not the pending request,
    /// the code is refused with `STALE_REQUEST` instead of reaching a newer prompt.
    #[serde(default)]
    pub request_id: Option<String>,
}

/// Steps 5–7 of the order of checks: the body, the shared rate budget, the pending request;
/// then the code goes to the waiting login. `202` with the `RateLimit` headers.
pub(crate) async fn submit(
    app: &AppState,
    account: AccountId,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let input: OtpSubmission = parse_json(&body_bytes(body)?)?;
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
