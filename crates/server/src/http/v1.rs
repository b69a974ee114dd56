//! The External API (`/v1`), to the letter of docs/product.md §7. Each handler runs
//! the checks in the documented order: key (extractor) → scope → key's account restriction →
//! account exists and is the key's user's → body → rate limit → pending request.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use reconbanker_store::AccountId;
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::auth::{invalid_key, ApiKeyPrincipal};
use super::dto::{DescriptorOut, OtpAcceptedOut, PendingOut};
use super::error::{Problem, V1Error};
use super::otp::{self, OtpSubmission};
use super::sse::{event_stream, resume_point, KeyCredential, StreamQuery};
use crate::auth::key_cache::Scope;
use crate::push::events::{Event, RecvError};
use crate::push::feed::Audience;
use crate::AppState;

/// `GET /v1/accounts/:accountId/status` response.
#[derive(Serialize, ToSchema)]
pub struct StatusOut {
    /// The account's id.
    #[schema(format = "uuid")]
    pub account_id: String,
    /// `true` while a bank session is active for the account, including one waiting for a code.
    pub session_running: bool,
    /// The request waiting for a code, or `null`.
    pub pending_assistance: Option<PendingOut>,
}

/// The External API error shape.
#[derive(Serialize, ToSchema)]
pub struct V1ErrorBody {
    pub error: V1ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct V1ErrorDetail {
    /// `UNAUTHORIZED`, `INVALID_API_KEY`, `FORBIDDEN`, `NOT_FOUND`, `VALIDATION_ERROR`,
    /// `PAYLOAD_TOO_LARGE`, `RATE_LIMITED`, `NO_PENDING_ASSISTANCE`, `STALE_REQUEST`,
    /// `CODE_IN_FLIGHT`, `METHOD_NOT_ALLOWED`, `INTERNAL_ERROR`.
    pub code: String,
    pub message: String,
    /// For validation errors: `[{field, message}]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

fn path_account(path: Result<Path<String>, PathRejection>) -> String {
    // A path segment that is not valid UTF-8 cannot name an account: treat it as unknown.
    path.map(|Path(p)| p).unwrap_or_default()
}

/// A weak validator over the exact response body.
fn etag(body: &[u8]) -> HeaderValue {
    // `"<crc32, 8 hex><length mod 65536, 4 hex>"`, written without a format string.
    let mut tag = [b'"'; 14];
    let crc = crc32fast::hash(body).to_be_bytes();
    let len = ((body.len() & 0xffff) as u16).to_be_bytes();
    let written = hex::encode_to_slice(crc, &mut tag[1..9]).and_then(|()| hex::encode_to_slice(len, &mut tag[9..13]));
    match written.map(|()| HeaderValue::from_bytes(&tag)) {
        Ok(Ok(v)) => v,
        _ => HeaderValue::from_static("\"0\""),
    }
}

/// Get account status.
///
/// Whether a session is running for the account and whether it is waiting for a one-time code.
/// Requires the `status:read` scope.
#[utoipa::path(
    get,
    path = "/v1/accounts/{accountId}/status",
    tag = "External API",
    params(
        ("accountId" = String, Path, description = "The account's id (UUID)"),
        ("If-None-Match" = Option<String>, Header, description = "The ETag of the status you have: 304 while it is still current"),
        ("Prefer" = Option<String>, Header, description = "`wait=N` (1-60) with If-None-Match: hold the request until the status changes (200) or N seconds pass (304)"),
    ),
    responses(
        (status = 200, description = "The account's status", body = StatusOut,
            headers(("ETag" = String, description = "Validator of this status"))),
        (status = 304, description = "Not modified: the status still matches If-None-Match (after waiting, with Prefer: wait)",
            headers(("ETag" = String))),
        (status = 401, description = "`UNAUTHORIZED` (no key) or `INVALID_API_KEY`", body = V1ErrorBody),
        (status = 403, description = "`FORBIDDEN`: missing scope, or the key is not allowed for this account", body = V1ErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such account for the key's user", body = V1ErrorBody),
        (status = 429, description = "`RATE_LIMITED`", body = V1ErrorBody),
    ),
    security(("ApiKeyAuthorization" = []), ("ApiKeyHeader" = []))
)]
pub async fn status(
    State(app): State<AppState>,
    principal: ApiKeyPrincipal,
    path: Result<Path<String>, PathRejection>,
    StatusConditions { known, wait }: StatusConditions,
) -> Result<Response, V1Error> {
    let account = principal
        .authorize(&app, Scope::StatusRead, &path_account(path))
        .await?;
    // Subscribed before the status is read: a change in between is not missed (nor a
    // revocation of the key).
    let mut revoked = wait.and(known.as_ref()).map(|_| app.revocations.subscribe());
    let mut changes = match (&known, wait) {
        (Some(_), Some(_)) => Some(app.bus.subscribe().await.map_err(Problem::internal)?),
        _ => None,
    };
    let (mut body, mut tag) = current_status(&app, account).await?;
    let mut waited = false;
    if let (Some(known), Some(wait), Some(rx), Some(revoked)) = (&known, wait, changes.as_mut(), revoked.as_mut()) {
        let deadline = tokio::time::Instant::now() + wait;
        // A key that expires while the request is held ends the wait then (refused below).
        let expires = principal.key.expires_at_ms().map(crate::support::time::instant_at_ms);
        while matches(known, &tag) {
            waited = true;
            tokio::select! {
                got = rx.recv() => match got {
                    Ok(e) if e.account_id != account => continue,
                    Ok(_) | Err(RecvError::Lagged(_)) => (body, tag) = current_status(&app, account).await?,
                    Err(RecvError::Closed) => break,
                },
                // A key revoked while its request is held gets no answer but the refusal.
                Ok(()) = revoked.changed() => {
                    if !principal.still_current(&app, Scope::StatusRead).await? {
                        return Err(invalid_key().into());
                    }
                }
                _ = tokio::time::sleep_until(deadline) => break,
                _ = async {
                    match expires {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => break,
            }
        }
    }
    // The key may have expired (or been revoked unannounced) while the request was held.
    if waited && !principal.still_current(&app, Scope::StatusRead).await? {
        return Err(invalid_key().into());
    }
    let mut res = if known.as_deref().is_some_and(|k| matches(k, &tag)) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body,
        )
            .into_response()
    };
    res.headers_mut().insert(header::ETAG, tag);
    if let (true, Some(w)) = (waited || changes.is_some(), wait) {
        if let Ok(v) = HeaderValue::from_str(&format!("wait={}", w.as_secs())) {
            res.headers_mut()
                .insert(HeaderName::from_static("preference-applied"), v);
        }
    }
    Ok(res)
}

/// The status request's `If-None-Match` and `Prefer: wait`, read from the request's headers
/// (issue 13: the `HeaderMap` extractor copied the whole map per request).
pub struct StatusConditions {
    known: Option<String>,
    wait: Option<Duration>,
}

impl<S: Send + Sync> FromRequestParts<S> for StatusConditions {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            known: parts
                .headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            wait: prefer_wait(&parts.headers),
        })
    }
}

/// The status body and its validator.
async fn current_status(app: &AppState, account: AccountId) -> Result<(Vec<u8>, HeaderValue), V1Error> {
    let pending = app.assistance.pending(account).await?;
    let out = StatusOut {
        account_id: account.to_string(),
        session_running: app.sessions.is_running(account),
        pending_assistance: pending.as_deref().map(PendingOut::from),
    };
    let body = serde_json::to_vec(&out).map_err(Problem::internal)?;
    let tag = etag(&body);
    Ok((body, tag))
}

/// `If-None-Match` (a list of entity tags, or `*`) against the current tag; weak tags compare
/// by their opaque part.
fn matches(if_none_match: &str, tag: &HeaderValue) -> bool {
    let tag = tag.to_str().unwrap_or_default();
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == tag)
}

/// `Prefer: wait=N` (RFC 7240), 1..=60 seconds; anything else is ignored (it is a preference).
fn prefer_wait(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get_all(PREFER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .filter_map(|p| p.trim().strip_prefix("wait="))
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .find(|n| (1..=MAX_WAIT_SECS).contains(n))
        .map(Duration::from_secs)
}

const MAX_WAIT_SECS: u64 = 60;

const PREFER: HeaderName = HeaderName::from_static("prefer");

/// Submit an OTP code.
///
/// Delivers a one-time code to the login waiting for one. A 202 means the code was accepted
/// for delivery, not that the bank confirmed it. Requires the `otp:write` scope. Rate-limited
/// to 5 well-formed submissions per 10 minutes per account (shared with the dashboard).
#[utoipa::path(
    post,
    path = "/v1/accounts/{accountId}/otp",
    tag = "External API",
    params(("accountId" = String, Path, description = "The account's id (UUID)")),
    request_body(content = OtpSubmission, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted for delivery", body = OtpAcceptedOut,
            headers(("RateLimit" = String), ("RateLimit-Policy" = String))),
        (status = 400, description = "`VALIDATION_ERROR`: malformed JSON, missing or non-string `code`, 0 or over 32 characters, or not matching the pending descriptor", body = V1ErrorBody),
        (status = 401, description = "`UNAUTHORIZED` (no key) or `INVALID_API_KEY`", body = V1ErrorBody),
        (status = 403, description = "`FORBIDDEN`", body = V1ErrorBody),
        (status = 404, description = "`NOT_FOUND`", body = V1ErrorBody),
        (status = 409, description = "`NO_PENDING_ASSISTANCE`, `STALE_REQUEST`, or `CODE_IN_FLIGHT` (the previous code is still being checked)", body = V1ErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`: body over 64 KiB", body = V1ErrorBody),
        (status = 429, description = "`RATE_LIMITED`, with `Retry-After`", body = V1ErrorBody,
            headers(("Retry-After" = u64), ("RateLimit" = String), ("RateLimit-Policy" = String))),
    ),
    security(("ApiKeyAuthorization" = []), ("ApiKeyHeader" = []))
)]
pub async fn submit_otp(
    State(app): State<AppState>,
    principal: ApiKeyPrincipal,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, V1Error> {
    let account = principal.authorize(&app, Scope::OtpWrite, &path_account(path)).await?;
    Ok(otp::submit(&app, account, body, otp::Body::Lenient).await?)
}

/// One event of the `/v1` stream (the SSE `data:`; `id:` is its log position, `event:` its type).
#[derive(Serialize, ToSchema)]
pub struct V1EventOut {
    /// The event's id (UUID).
    pub id: String,
    /// The event's type, e.g. `assistance.requested`.
    #[serde(rename = "type")]
    pub kind: String,
    pub account_id: String,
    /// What happened, per type (e.g. `{requestId, descriptor, attempts}`).
    #[schema(value_type = Object)]
    pub data: Box<serde_json::value::RawValue>,
    /// RFC 3339, UTC, milliseconds.
    pub occurred_at: String,
}

impl From<&Event> for V1EventOut {
    fn from(e: &Event) -> Self {
        Self {
            id: e.id.to_string(),
            kind: e.kind.clone(),
            account_id: e.account_id.to_string(),
            data: e.data.clone(),
            occurred_at: crate::support::time::ts(e.occurred_at),
        }
    }
}

/// Stream events.
///
/// Server-Sent Events of the key's accounts (all of its user's accounts when the key is not
/// restricted): the login engine's events (`assistance.*`, `login.*`, `scrape.*`, `session.*`;
/// reconciliation's are not on this stream). Ids are positions in the event log, so they
/// may skip numbers. Each event has `id: <position>`, `event: <type>` and `data:` a JSON
/// [`V1EventOut`]. Reconnect with `Last-Event-ID: <id>` (or `?last_event_id=<id>`) to receive
/// every event after that one first. A keep-alive comment is sent every 15 s. Requires the
/// `status:read` scope.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "External API",
    params(
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id"),
        ("last_event_id" = Option<String>, Query, description = "Resume after this event id (when the header cannot be set)"),
    ),
    responses(
        (status = 200, description = "An event stream (`text/event-stream`); each `data:` is a V1EventOut", content_type = "text/event-stream", body = V1EventOut),
        (status = 400, description = "`VALIDATION_ERROR`: a Last-Event-ID that is not a whole number, or is past the newest event", body = V1ErrorBody),
        (status = 401, description = "`UNAUTHORIZED` (no key) or `INVALID_API_KEY`", body = V1ErrorBody),
        (status = 403, description = "`FORBIDDEN`: the key lacks `status:read`", body = V1ErrorBody),
        (status = 429, description = "`RATE_LIMITED`", body = V1ErrorBody),
    ),
    security(("ApiKeyAuthorization" = []), ("ApiKeyHeader" = []))
)]
pub async fn v1_events(
    State(app): State<AppState>,
    principal: ApiKeyPrincipal,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Result<Response, V1Error> {
    if !principal.key.has_scope(Scope::StatusRead) {
        return Err(Problem::forbidden(format!("The API key lacks the {} scope", Scope::StatusRead.as_str())).into());
    }
    let resume = resume_point(&headers, &StreamQuery::parse(uri.query()))?;
    let audience = Audience {
        user: principal.key.user_id,
        accounts: principal.key.account_ids.clone(),
        v1_kinds_only: true,
    };
    let credential = Box::new(KeyCredential {
        app: app.clone(),
        key: principal.key.clone(),
    });
    Ok(event_stream(&app, audience, credential, resume, |e| V1EventOut::from(e)).await?)
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "ApiKeyAuthorization",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`Authorization: Api-Key rbk_<prefix>_<secret>` (scheme case-insensitive). Wins over x-api-key.",
            ))),
        );
        components.add_security_scheme(
            "ApiKeyHeader",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "`x-api-key: rbk_<prefix>_<secret>`",
            ))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Reconbanker External API",
        version = "1",
        description = "The API-key-authenticated /v1 endpoints your services use to read account status and submit OTP codes. Errors: `{\"error\": {\"code\", \"message\"}}`."
    ),
    paths(status, submit_otp, v1_events),
    components(schemas(StatusOut, PendingOut, DescriptorOut, OtpSubmission, OtpAcceptedOut, V1ErrorBody, V1ErrorDetail, V1EventOut)),
    modifiers(&Security),
    tags((name = "External API", description = "Machine-to-machine integration"))
)]
pub struct V1Doc;

/// The `/v1` OpenAPI document as pretty JSON (served, printed by `reconbanker openapi`, committed).
pub fn openapi_json() -> String {
    V1Doc::openapi().to_pretty_json().unwrap_or_else(|_| "{}".into())
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json())
}

/// Issue 13: `GET /v1/accounts/{accountId}/status`, the route clients poll, answered without
/// the router's plumbing (the route lookup, its parameters and matched path written into the
/// request's extensions, a boxed service clone and three nested futures: about a sixth of the
/// request's user-space time in `perf`). The same handler runs, with the same extractors in
/// the same order; only a plain path takes the shortcut (one segment, no percent-escapes), and
/// everything else — another method, `HEAD`, an escaped or odd path — goes to the router as
/// before. Off when request metrics are on: those count by the router's matched route.
///
/// It also gives the router the connection's peer address (`ConnectInfo`): a shortcut request
/// is handed it directly, and its extensions stay empty (nothing to allocate or drop).
#[derive(Clone)]
pub(crate) struct StatusShortcut<S> {
    app: Option<AppState>,
    peer: std::net::SocketAddr,
    inner: S,
}

impl<S> StatusShortcut<S> {
    /// `app`: `None` leaves every request to `inner`.
    pub(crate) fn new(app: Option<AppState>, inner: S) -> Self {
        let peer = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
        Self { app, peer, inner }
    }

    /// The same service for a connection from `peer`.
    pub(crate) fn set_peer(&mut self, peer: std::net::SocketAddr) {
        self.peer = peer;
    }
}

/// The account segment of a plain status path (`/v1/accounts/<segment>/status`).
fn status_path_account(path: &str) -> Option<&str> {
    let account = path.strip_prefix("/v1/accounts/")?.strip_suffix("/status")?;
    (!account.is_empty() && !account.contains(['/', '%'])).then_some(account)
}

type Answer = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, std::convert::Infallible>> + Send>>;

impl<S> tower::Service<axum::extract::Request> for StatusShortcut<S>
where
    S: tower::Service<axum::extract::Request, Response = Response, Error = std::convert::Infallible>,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures_util::future::Either<Answer, S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: axum::extract::Request) -> Self::Future {
        use futures_util::future::Either;
        let account = match &self.app {
            Some(_) if req.method() == axum::http::Method::GET => {
                status_path_account(req.uri().path()).map(str::to_owned)
            }
            _ => None,
        };
        match (account, &self.app) {
            (Some(account), Some(app)) => Either::Left(Box::pin(status_direct(app.clone(), req, account, self.peer))),
            _ => {
                req.extensions_mut().insert(axum::extract::ConnectInfo(self.peer));
                Either::Right(self.inner.call(req))
            }
        }
    }
}

/// [`status`] with its extractors run here, as axum runs them.
async fn status_direct(
    app: AppState,
    req: axum::extract::Request,
    account: String,
    peer: std::net::SocketAddr,
) -> Result<Response, std::convert::Infallible> {
    let (mut parts, _body) = req.into_parts();
    let principal = match ApiKeyPrincipal::authenticate(&parts, &app, peer.ip()).await {
        Ok(p) => p,
        Err(refused) => return Ok(refused.into_response()),
    };
    let Ok(conditions) = StatusConditions::from_request_parts(&mut parts, &app).await;
    Ok(status(State(app), principal, Ok(Path(account)), conditions)
        .await
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::status_path_account;

    #[test]
    fn only_a_plain_status_path_takes_the_shortcut() {
        let table = [
            ("/v1/accounts/abc/status", Some("abc")),
            (
                "/v1/accounts/0192a7c4-0000-7000-8000-000000000000/status",
                Some("0192a7c4-0000-7000-8000-000000000000"),
            ),
            ("/v1/accounts//status", None),
            ("/v1/accounts/a%62c/status", None),
            ("/v1/accounts/a/b/status", None),
            ("/v1/accounts/abc/status/", None),
            ("/v1/accounts/abc/statuses", None),
            ("/v1/accounts/abc/otp", None),
            ("/v1/accounts/status", None),
            ("/V1/accounts/abc/status", None),
            ("/v1/accounts/abc", None),
        ];
        for (path, want) in table {
            assert_eq!(status_path_account(path), want, "{path}");
        }
    }
}
