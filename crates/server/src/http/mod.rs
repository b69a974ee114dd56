//! The HTTP surfaces: the dashboard API (JWT) and the External API under `/v1` (API keys),
//! with the JSON 404/405/413 of each surface, request ids and tracing.

pub(crate) mod accounts;
pub(crate) mod api_keys;
pub(crate) mod auth;
pub(crate) mod banks;
pub(crate) mod conciliation;
pub(crate) mod dto;
pub(crate) mod error;
pub(crate) mod extract;
pub(crate) mod notifications;
pub(crate) mod otp;
pub(crate) mod passthrough;
pub(crate) mod realtime;
pub(crate) mod review;
pub(crate) mod sse;
pub(crate) mod users;
pub mod v1;
// issue 12: hardening
pub(crate) mod connection;
pub mod openapi;
// Issue 10: two-factor sign-in.
pub(crate) mod two_factor;
// Issue 10: the dashboard in the browser (`/app`).
pub(crate) mod ui;
// issue 9: real banks (failure evidence)
pub(crate) mod evidence;
// Issue 11: the operator's metrics (the request layer, the `/metrics` listener's router).
pub(crate) mod metrics;
// Issue 13: the request's edge as one layer (request id, span, panic catcher, connection close).
pub(crate) mod edge;
// The server loop: axum's, with a deadline for a request's head (slow clients).
pub(crate) mod server;

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::json;
use tower::Layer;

use crate::config::BODY_LIMIT;
use crate::AppState;
use error::{ApiError, Problem, V1Error};

fn is_v1(uri: &Uri) -> bool {
    let p = uri.path();
    p == "/v1" || p.starts_with("/v1/")
}

async fn not_found(uri: Uri) -> Response {
    let p = Problem::not_found("No such route");
    if is_v1(&uri) {
        V1Error(p).into_response()
    } else {
        ApiError(p).into_response()
    }
}

async fn method_not_allowed(uri: Uri) -> Response {
    let p = Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "Method not allowed on this route",
    );
    if is_v1(&uri) {
        V1Error(p).into_response()
    } else {
        ApiError(p).into_response()
    }
}

/// Liveness: the process answers.
#[utoipa::path(get, operation_id = "health", path = "/health", tag = "Operations", security(()),
    responses((status = 200, description = "Alive", body = openapi::HealthOut)))]
pub(crate) async fn health() -> Json<serde_json::Value> {
    Json(json!({ "ok": true }))
}

/// Readiness: the database answers within 2 s.
#[utoipa::path(get, operation_id = "ready", path = "/ready", tag = "Operations", security(()),
    responses(
        (status = 200, description = "Ready", body = openapi::ReadyOut),
        (status = 503, description = "The database did not answer: `{\"ok\": false}`", body = openapi::ReadyOut),
    ))]
pub(crate) async fn ready(State(app): State<AppState>) -> Response {
    let healthy = match tokio::time::timeout(Duration::from_secs(2), app.store.ping()).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            false
        }
        Err(_) => false,
    };
    // Issue 11: the roles this instance runs, each healthy when the database answers (every
    // role's work goes through it); a role not run is `null`.
    let roles = app.config.roles;
    let role = |on: bool| {
        if on {
            json!({ "healthy": healthy })
        } else {
            serde_json::Value::Null
        }
    };
    let roles = json!({ "api": role(roles.api), "engine": role(roles.engine), "push": role(roles.push) });
    if healthy {
        Json(json!({ "ok": true, "database": app.store.backend(), "roles": roles })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ok": false, "roles": roles })),
        )
            .into_response()
    }
}

/// Issue 11: the roles as `RECONBANKER_ROLES` spells them, for the ready line.
pub(crate) fn roles_text(roles: crate::config::Roles) -> String {
    [("api", roles.api), ("engine", roles.engine), ("push", roles.push)]
        .iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(",")
}

/// Issue 11: the router of an instance without the `api` role: the probes only (every other
/// path is the JSON 404).
pub(crate) fn probes_router(app: AppState) -> Router {
    let probes = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .fallback(not_found);
    with_request_metrics(probes, &app).with_state(app)
}

/// Issue 11: every request counted and timed by its matched route, when metrics are on (a
/// route layer: the matched route is known there; a panic is counted as the 500 the edge
/// answers).
fn with_request_metrics(routes: Router<AppState>, app: &AppState) -> Router<AppState> {
    if app.metrics.is_on() {
        routes.layer(metrics::RequestMetrics(app.metrics.clone()))
    } else {
        routes
    }
}

/// What the server runs: a router inside the body limit and the edge (issue 13, `edge`: the
/// request id, the trace span and the per-request line, the panic catcher with its 500 in the
/// surface's shape, issue 12's `Connection: close` when a refusal left the body unread, and the
/// deadline of a request's body).
pub(crate) type HttpService = edge::Edge<v1::StatusShortcut<<DefaultBodyLimit as Layer<Router>>::Service>>;

/// Wraps `routes` once in the layers every request crosses. Issue 13: as `Router::layer`s they
/// wrapped each route instead, and every request paid a boxed service clone and a boxed future
/// per layer and an extra pass through axum's route plumbing. `status`: the app whose `/v1`
/// status requests skip the router (`v1::StatusShortcut`), when `routes` has that route.
pub(crate) fn service(routes: Router, status: Option<AppState>, body_timeout: std::time::Duration) -> HttpService {
    let limited = DefaultBodyLimit::max(BODY_LIMIT).layer(routes);
    edge::EdgeLayer { body_timeout }.layer(v1::StatusShortcut::new(status, limited))
}

pub fn router(app: AppState) -> Router {
    let v1 = Router::new()
        .route("/v1/accounts/{account_id}/status", get(v1::status))
        .route("/v1/accounts/{account_id}/otp", post(v1::submit_otp))
        .route("/v1/events", get(v1::v1_events))
        .route("/v1/openapi.json", get(v1::openapi));
    let dashboard = Router::new()
        .route("/auth/register", post(users::register))
        .route("/auth/login", post(users::login))
        .route("/auth/logout", post(users::logout))
        .route("/me", get(users::me))
        .route("/me/operation-mode", put(users::set_operation_mode))
        .route("/me/api-keys", get(api_keys::list).post(api_keys::create))
        .route("/me/api-keys/{id}", axum::routing::delete(api_keys::revoke))
        .route("/banks", get(banks::list).post(banks::create))
        .route("/banks/{id}", get(banks::get))
        .route("/accounts", get(accounts::list).post(accounts::create))
        .route("/accounts/{id}", get(accounts::get).delete(accounts::delete))
        .route(
            "/accounts/{id}/config",
            get(accounts::get_config).put(accounts::put_config),
        )
        .route("/accounts/{id}/otp", get(accounts::get_otp).post(accounts::post_otp))
        .route("/accounts/{id}/scrape", post(accounts::scrape))
        .route("/accounts/{id}/restart", post(accounts::restart))
        .route("/accounts/{id}/kill", post(accounts::kill))
        .route("/accounts/{id}/reactivate", post(accounts::reactivate))
        .route("/accounts/{id}/movements", get(accounts::movements))
        // reconciliation: passthrough routes go below this line
        .route(
            "/accounts/{id}/movements/{movement_id}/notify",
            post(passthrough::notify),
        )
        .route("/accounts/{id}/runs", get(accounts::runs))
        .route("/accounts/{id}/notifications", get(notifications::list))
        .route(
            "/accounts/{id}/notifications/rotate-secret",
            post(notifications::rotate),
        )
        .route(
            "/accounts/{id}/webhooks/rotate-secret",
            post(notifications::rotate_result),
        )
        .route("/accounts/{id}/polls", get(conciliation::polls))
        .route("/conciliation", get(conciliation::list))
        .route("/conciliation/poll/{id}", post(conciliation::poll_now))
        .route("/conciliation/{id}", get(review::detail))
        // reconciliation: review routes go below this line
        .route("/conciliation/summary", get(review::summary))
        .route("/conciliation/{id}/resolve", post(review::resolve))
        .route("/conciliation/{id}/run", post(review::run))
        .route("/conciliation/{id}/notify", post(review::notify))
        .route(
            "/accounts/{id}/movements/{movement_id}/ignore",
            post(review::ignore).delete(review::unignore),
        )
        .route("/accounts/{id}/webhooks/deliveries", get(notifications::list_result))
        .route(
            "/accounts/{id}/webhooks/deliveries/{delivery_id}/resend",
            post(notifications::resend_result),
        )
        .route(
            "/accounts/{id}/notifications/{delivery_id}/resend",
            post(notifications::resend),
        )
        .route("/realtime/ticket", post(realtime::issue_ticket))
        .route("/realtime", get(realtime::realtime_ws))
        .route("/realtime/events", get(realtime::realtime_events))
        .route("/health", get(health))
        .route("/ready", get(ready))
        // Issue 10: two-factor sign-in.
        .route("/me/two-factor", get(two_factor::status))
        .route("/me/two-factor/setup", post(two_factor::setup))
        .route("/me/two-factor/confirm", post(two_factor::confirm))
        .route("/me/two-factor/disable", post(two_factor::disable))
        // issue 12: the dashboard API's OpenAPI document (unauthenticated, like /v1's).
        .route("/openapi.json", get(openapi::serve))
        // issue 9: real banks (failure evidence)
        .route("/accounts/{id}/runs/{runId}/evidence", get(evidence::list));
    let routes = Router::new()
        .merge(v1)
        .merge(dashboard)
        // Issue 10: the dashboard in the browser (its origin check reads the public origin).
        .merge(ui::router().layer(axum::Extension(ui::PublicOrigin(
            app.config.public_origin.as_deref().map(Into::into),
        ))))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    with_request_metrics(routes, &app).with_state(app)
}

#[cfg(test)]
mod tests;
