//! The dashboard API's OpenAPI document (issue 12): every route outside `/v1`, served at
//! `GET /openapi.json`, printed by `reconbanker openapi --dashboard`, committed as
//! `docs/openapi-dashboard.json`. The `#[utoipa::path]` of each operation sits on its handler;
//! this file only gathers them, and holds the shapes no handler type carries (the error body,
//! `/health`, `/ready`) and the security schemes.

use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{
    accounts, api_keys, banks, conciliation, dto, evidence, notifications, passthrough, realtime, review, two_factor,
    users,
};

/// The dashboard API's error shape (what `ApiError` renders), for every error status.
#[derive(Serialize, ToSchema)]
pub struct ApiErrorBody {
    /// A human-readable message; never echoes a sent value.
    pub error: String,
    /// A stable machine code: `VALIDATION_ERROR`, `UNAUTHORIZED`, `FORBIDDEN`, `NOT_FOUND`,
    /// `METHOD_NOT_ALLOWED`, `PAYLOAD_TOO_LARGE`, `RATE_LIMITED`, `CONFLICT`, `EMAIL_EXISTS`,
    /// `BANK_EXISTS`, `NO_PENDING_ASSISTANCE`, `STALE_REQUEST`, `CODE_IN_FLIGHT`,
    /// `NOT_RECONCILE_MODE`, `NO_PENDING_ORDERS_ENDPOINT`, `NOT_PASSTHROUGH_MODE`,
    /// `NO_SENDER_NAME`, `NOTHING_TO_SEND`, `REQUEST_CLOSED`, `MOVEMENT_TAKEN`,
    /// `MOVEMENT_NOT_ELIGIBLE`, `AMOUNT_MISMATCH`, `UPGRADE_REQUIRED`, `BAD_REQUEST`,
    /// `INTERNAL_ERROR`.
    pub code: String,
    /// For validation errors, `[{field, message}]` (`field` is `null` for the body as a whole);
    /// for `STALE_REQUEST`, `{pending_request_id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// `GET /health`.
#[derive(Serialize, ToSchema)]
pub struct HealthOut {
    /// Always `true`: the process answers.
    pub ok: bool,
}

/// `GET /ready`.
#[derive(Serialize, ToSchema)]
pub struct ReadyOut {
    /// `true` when the database answered within 2 s.
    pub ok: bool,
    /// `sqlite` or `postgres` (only when ready).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub database: Option<String>,
    /// Issue 11: the roles this instance runs (`RECONBANKER_ROLES`); a role it does not run is
    /// `null`.
    pub roles: ReadyRoles,
}

/// Issue 11: `GET /ready`'s `roles`.
#[derive(Serialize, ToSchema)]
pub struct ReadyRoles {
    /// The HTTP routes.
    pub api: Option<RoleHealth>,
    /// Bank sessions, order polls, matching, expiry.
    pub engine: Option<RoleHealth>,
    /// Webhook delivery.
    pub push: Option<RoleHealth>,
}

/// Issue 11: one role's health.
#[derive(Serialize, ToSchema)]
pub struct RoleHealth {
    /// `true` when the database its work goes through answered within 2 s.
    pub healthy: bool,
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.bearer_format = Some("JWT".into());
        bearer.description = Some(
            "`Authorization: Bearer <token>`: the token `POST /auth/login` returns (HS256, 24 h, \
             revoked by `POST /auth/logout`). API keys are refused on these routes."
                .into(),
        );
        components.add_security_scheme("DashboardJwt", SecurityScheme::Http(bearer));
        components.add_security_scheme(
            "RealtimeTicket",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "ticket",
                "A single-use ticket from `POST /realtime/ticket` (valid 30 s), for `GET /realtime/events` \
                 from an `EventSource`, which cannot send headers. Ignored when an `Authorization` header is sent.",
            ))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Reconbanker dashboard API",
        version = "1",
        description = "The routes the dashboard (and its operators) use, authenticated by a Bearer JWT from `POST /auth/login`. \
Every error is `{\"error\": \"<message>\", \"code\": \"<CODE>\"}` (with `details` for validation errors). \
Every JSON body is a strict object: an unknown field is a 400 naming it; a body over 64 KiB is a 413. \
An unknown route is a JSON 404 `NOT_FOUND`, a known route with another method a JSON 405 `METHOD_NOT_ALLOWED`. \
Another user's resource is always 404. The External API (`/v1`, API keys) has its own document at `/v1/openapi.json`."
    ),
    paths(
        users::register, users::login, users::logout, users::me, users::set_operation_mode,
        api_keys::list, api_keys::create, api_keys::revoke,
        banks::list, banks::create, banks::get,
        accounts::list, accounts::create, accounts::get, accounts::delete,
        accounts::get_config, accounts::put_config, accounts::get_otp, accounts::post_otp,
        accounts::scrape, accounts::restart, accounts::kill, accounts::reactivate,
        accounts::movements, accounts::runs,
        passthrough::notify,
        notifications::list, notifications::rotate, notifications::rotate_result,
        notifications::list_result, notifications::resend_result, notifications::resend,
        conciliation::polls, conciliation::list, conciliation::poll_now,
        review::detail, review::summary, review::resolve, review::run, review::notify,
        review::ignore, review::unignore,
        realtime::issue_ticket, realtime::realtime_ws, realtime::realtime_events,
        super::health, super::ready,
        // Issue 10: two-factor sign-in.
        two_factor::status, two_factor::setup, two_factor::confirm, two_factor::disable,
        // Issue 9: failure evidence.
        evidence::list,
    ),
    components(schemas(ApiErrorBody, HealthOut, ReadyOut, ReadyRoles, RoleHealth, dto::PendingOut, dto::DescriptorOut, dto::OtpAcceptedOut)),
    modifiers(&Security),
    tags(
        (name = "Auth", description = "Registration, login, logout and the current user"),
        (name = "API keys", description = "Keys for the External API (/v1)"),
        (name = "Banks", description = "Supported banks"),
        (name = "Accounts", description = "Bank accounts, their config, sessions, movements and runs"),
        (name = "Webhooks", description = "Delivery logs, re-sends and signing-secret rotation"),
        (name = "Reconciliation", description = "Pending-order polls, requests, review"),
        (name = "Realtime", description = "Live events: WebSocket and Server-Sent Events"),
        (name = "Operations", description = "Liveness and readiness"),
    )
)]
pub struct DashboardDoc;

/// The dashboard OpenAPI document as pretty JSON (served, printed by
/// `reconbanker openapi --dashboard`, committed as `docs/openapi-dashboard.json`).
pub fn openapi_json() -> String {
    DashboardDoc::openapi().to_pretty_json().unwrap_or_else(|_| "{}".into())
}

/// `GET /openapi.json`.
pub async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json())
}
