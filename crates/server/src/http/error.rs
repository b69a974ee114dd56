//! Errors of the two surfaces. A [`Problem`] carries status, stable machine code, message and
//! optional details; [`ApiError`] renders it in the dashboard shape `{error, code}` and
//! [`V1Error`] in the External API shape `{error: {code, message, details?}}`.

use std::borrow::Cow;

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use reconbanker_store::StoreError;
use serde_json::{json, Value};

use crate::app::AppError;
use crate::assistance::SubmitError;
use crate::domain::FieldError;
use crate::support::ratelimit::{Decision, LimiterError};

#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: Cow<'static, str>,
    pub details: Option<Value>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            headers: Vec::new(),
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn validation(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
    }

    /// A validation error about one field, with `details: [{field, message}]`.
    pub fn field(field: &str, message: &str) -> Self {
        Self::validation(format!("{field} {message}")).with_details(json!([{ "field": field, "message": message }]))
    }

    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    pub fn unauthorized(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }

    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    pub fn conflict(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "Request body is larger than 64 KiB",
        )
    }

    pub fn rate_limited(decision: &Decision, message: impl Into<Cow<'static, str>>) -> Self {
        let mut p = Self::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", message);
        p.headers
            .push((header::RETRY_AFTER, HeaderValue::from(decision.reset_secs.max(1))));
        p.headers.extend(rate_limit_headers(decision));
        p
    }

    /// Logs the cause with context and renders a bare 500: nothing internal reaches the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "Internal server error",
        )
    }
}

/// `RateLimit-Policy` and `RateLimit` header fields (IETF httpapi rate-limit headers draft).
pub fn rate_limit_headers(d: &Decision) -> [(HeaderName, HeaderValue); 2] {
    let policy = format!("\"default\";q={};w={}", d.limit, d.window_secs);
    let state = format!("\"default\";r={};t={}", d.remaining, d.reset_secs);
    [
        (
            HeaderName::from_static("ratelimit-policy"),
            HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("")),
        ),
        (
            HeaderName::from_static("ratelimit"),
            HeaderValue::from_str(&state).unwrap_or(HeaderValue::from_static("")),
        ),
    ]
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => {
                tracing::debug!(constraint = %what, "unexpected conflict");
                Self::conflict("CONFLICT", "The request conflicts with existing data")
            }
            other => Self::internal(other),
        }
    }
}

fn finish(p: Problem, body: Value) -> Response {
    let mut res = (p.status, Json(body)).into_response();
    for (k, v) in p.headers {
        res.headers_mut().insert(k, v);
    }
    res
}

/// The dashboard API's error: `{"error": "<message>", "code": "<CODE>"}` (+ `details`).
#[derive(Debug)]
pub struct ApiError(pub Problem);

impl<T: Into<Problem>> From<T> for ApiError {
    fn from(p: T) -> Self {
        ApiError(p.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let p = self.0;
        let mut body = json!({ "error": p.message, "code": p.code });
        if let Some(d) = &p.details {
            body["details"] = d.clone();
        }
        finish(p, body)
    }
}

/// The External API's error: `{"error": {"code": "<CODE>", "message": "<text>"}}` (+ `details`).
#[derive(Debug)]
pub struct V1Error(pub Problem);

impl<T: Into<Problem>> From<T> for V1Error {
    fn from(p: T) -> Self {
        V1Error(p.into())
    }
}

impl IntoResponse for V1Error {
    fn into_response(self) -> Response {
        let p = self.0;
        let mut error = json!({ "code": p.code, "message": p.message });
        if let Some(d) = &p.details {
            error["details"] = d.clone();
        }
        finish(p, json!({ "error": error }))
    }
}

/// One mapping of OTP-submission outcomes for both surfaces.
impl From<SubmitError> for Problem {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Invalid { field, message } => Problem::field(field, &message),
            SubmitError::RateLimited(d) => {
                Problem::rate_limited(&d, "Too many OTP submissions for this account; try again later")
            }
            SubmitError::NoPending => Problem::conflict(
                "NO_PENDING_ASSISTANCE",
                "No assistance request is pending for this account",
            ),
            SubmitError::Stale { pending } => Problem::conflict(
                "STALE_REQUEST",
                "The request_id does not name the pending assistance request",
            )
            .with_details(json!({ "pending_request_id": pending.to_string() })),
            SubmitError::Busy => Problem::conflict(
                "CODE_IN_FLIGHT",
                "A code for this request is being checked by the bank; wait for the outcome before sending another",
            ),
            SubmitError::Store(e) => e.into(),
            SubmitError::Limiter(e) => e.into(),
            SubmitError::Broker(e) => Problem::internal(e),
        }
    }
}

impl From<FieldError> for Problem {
    fn from(e: FieldError) -> Self {
        Problem::field(e.field, &e.message)
    }
}

impl From<AppError> for Problem {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Store(e) => e.into(),
            AppError::NotFound => Problem::not_found("Account not found"),
            AppError::Corrupt(message) => Problem::internal(message),
            AppError::Contended => Problem::conflict(
                "CONFLICT",
                "The account's config kept changing while this change was applied; send it again",
            ),
        }
    }
}

impl From<LimiterError> for Problem {
    fn from(e: LimiterError) -> Self {
        Problem::internal(e)
    }
}
