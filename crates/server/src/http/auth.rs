//! The two principals, as typed extractors: [`DashboardUser`] (Bearer JWT, dashboard routes)
//! and [`ApiKeyPrincipal`] (API key, `/v1`). A handler cannot compile without naming one, and
//! neither accepts the other's credential.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName};
use reconbanker_store::{AccountId, AccountRow, UserRow};

use super::error::{ApiError, Problem, V1Error};
use super::extract::client_ip;
use crate::auth::jwt::Claims;
use crate::auth::key_cache::{AuthError, CachedKey, Scope};
use crate::support::ratelimit::Bucket;
use crate::AppState;

const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// The `Authorization` header split into scheme and credentials (compare the scheme with
/// `eq_ignore_ascii_case`).
fn authorization(headers: &HeaderMap) -> Option<Result<(&str, &str), ()>> {
    let value = headers.get(AUTHORIZATION)?;
    let Ok(text) = value.to_str() else {
        return Some(Err(()));
    };
    let text = text.trim();
    let (scheme, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    Some(Ok((scheme, rest.trim())))
}

/// A user authenticated by a dashboard JWT (signature, expiry, scope, not revoked, user exists).
pub struct DashboardUser {
    pub user: UserRow,
    pub claims: Claims,
}

impl FromRequestParts<AppState> for DashboardUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let api_key_msg = "API keys are not accepted here; this route needs a dashboard Bearer token";
        let token = match authorization(&parts.headers) {
            Some(Ok((scheme, token))) if scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() => token,
            Some(Ok((scheme, _))) if scheme.eq_ignore_ascii_case("api-key") => {
                return Err(Problem::unauthorized(api_key_msg).into())
            }
            None if parts.headers.contains_key(X_API_KEY) => return Err(Problem::unauthorized(api_key_msg).into()),
            None => return Err(Problem::unauthorized("Missing Bearer token").into()),
            _ => return Err(Problem::unauthorized("Invalid or expired token").into()),
        };
        let claims = app
            .jwt
            .verify(token)
            .ok_or_else(|| Problem::unauthorized("Invalid or expired token"))?;
        let user = app
            .store
            .session_user(claims.sub, claims.jti)
            .await?
            .ok_or_else(|| Problem::unauthorized("Invalid or expired token"))?;
        Ok(DashboardUser { user, claims })
    }
}

/// The account named by the route's `{id}`, owned by the authenticated dashboard user. A
/// missing, malformed or foreign id is the same 404, so ids of other users' accounts cannot be
/// probed. Authentication comes first: without a valid token the answer is 401, never 404.
pub struct OwnedAccount {
    pub user: DashboardUser,
    pub account: AccountRow,
}

impl FromRequestParts<AppState> for OwnedAccount {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let user = DashboardUser::from_request_parts(parts, app).await?;
        let not_found = || ApiError(Problem::not_found("Account not found"));
        let params = RawPathParams::from_request_parts(parts, app)
            .await
            .map_err(|_| not_found())?;
        let id = params
            .iter()
            .find_map(|(name, value)| (name == "id").then_some(value))
            .and_then(|v| v.parse::<AccountId>().ok())
            .ok_or_else(not_found)?;
        let account = app
            .store
            .account_for_user(user.user.id, id)
            .await?
            .ok_or_else(not_found)?;
        Ok(Self { user, account })
    }
}

/// A request authenticated by an API key (docs/product.md §7 step 1; scope and account are checked by
/// the handler with [`ApiKeyPrincipal::authorize`]).
pub struct ApiKeyPrincipal {
    pub key: Arc<CachedKey>,
    pub ip: IpAddr,
}

/// Where the key came from: `Authorization: Api-Key <key>` wins over `x-api-key`.
pub(crate) fn presented_key(headers: &HeaderMap) -> Result<&str, Problem> {
    let bearer =
        "Bearer tokens are not accepted on /v1; send an API key (Authorization: Api-Key <key> or x-api-key: <key>)";
    let missing = "No API key was sent (Authorization: Api-Key <key> or x-api-key: <key>)";
    // A header sent twice names two keys, and which one a proxy checked is anyone's guess.
    if headers.get_all(AUTHORIZATION).iter().nth(1).is_some() || headers.get_all(X_API_KEY).iter().nth(1).is_some() {
        return Err(Problem::unauthorized("Send the API key once, in one header"));
    }
    match authorization(headers) {
        Some(Ok((scheme, key))) if scheme.eq_ignore_ascii_case("api-key") => {
            if key.is_empty() {
                Err(Problem::unauthorized(missing))
            } else {
                Ok(key)
            }
        }
        Some(Ok((scheme, _))) if scheme.eq_ignore_ascii_case("bearer") => Err(Problem::unauthorized(bearer)),
        // Another scheme (a proxy's `Basic`, say) carries no API key: x-api-key may
        // (docs/product.md §7).
        _ => match headers.get(X_API_KEY) {
            None => Err(Problem::unauthorized(missing)),
            Some(v) => match v.to_str().map(str::trim) {
                Ok("") => Err(Problem::unauthorized(missing)),
                Ok(k) => Ok(k),
                Err(_) => Err(invalid_key()),
            },
        },
    }
}

pub(crate) fn invalid_key() -> Problem {
    Problem::new(
        axum::http::StatusCode::UNAUTHORIZED,
        "INVALID_API_KEY",
        "The API key is unknown, malformed, revoked or expired",
    )
}

const AUTH_FAILURE_WINDOW: Duration = Duration::from_secs(60);

impl FromRequestParts<AppState> for ApiKeyPrincipal {
    type Rejection = V1Error;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        Self::authenticate(parts, app, client_ip(parts)).await
    }
}

impl ApiKeyPrincipal {
    /// The extractor's work, for a request from `ip`.
    pub(crate) async fn authenticate(parts: &Parts, app: &AppState, ip: IpAddr) -> Result<Self, V1Error> {
        let max_failures = app.config.auth_failures_per_min;
        let text = presented_key(&parts.headers)?;
        // The key is judged first: a valid key is never refused for what other clients behind the
        // same address did. Failures cost only the failing client: once its address has too many,
        // its invalid keys get 429 instead of 401 (a refusal that is no more expensive).
        let key = match app.keys.authenticate(text).await? {
            Ok(key) => key,
            Err(AuthError::Invalid) => {
                let failures = app
                    .limiter
                    .hit_window(Bucket::AuthFailure(ip), max_failures, AUTH_FAILURE_WINDOW)
                    .await
                    .map_err(Problem::from)?;
                if !failures.allowed {
                    return Err(
                        Problem::rate_limited(&failures, "Too many failed authentications from this address").into(),
                    );
                }
                return Err(invalid_key().into());
            }
        };
        let rate = app
            .limiter
            .hit_rate(Bucket::Key(key.id), app.config.v1_rate_per_sec, app.config.v1_burst)
            .await
            .map_err(Problem::from)?;
        if !rate.allowed {
            return Err(Problem::rate_limited(&rate, "Too many requests with this API key").into());
        }
        Ok(ApiKeyPrincipal { key, ip })
    }
}

impl ApiKeyPrincipal {
    /// Whether the key still works, with `scope`, now: what a request held open re-checks
    /// before it answers.
    pub async fn still_current(&self, app: &AppState, scope: Scope) -> Result<bool, V1Error> {
        Ok(app.keys.current(&self.key).await?.is_some_and(|k| k.has_scope(scope)))
    }

    /// docs/product.md §7 steps 2–4: the route's scope, the key's account restriction, then the account
    /// exists and is the key's user's (otherwise 404, indistinguishable from a missing one).
    pub async fn authorize(&self, app: &AppState, scope: Scope, account: &str) -> Result<AccountId, V1Error> {
        if !self.key.has_scope(scope) {
            return Err(Problem::forbidden(format!("The API key lacks the {} scope", scope.as_str())).into());
        }
        let parsed = account.parse::<AccountId>().ok();
        if !self.key.allows_account(parsed) {
            return Err(Problem::forbidden("The API key is not allowed for this account").into());
        }
        let not_found = || V1Error(Problem::not_found("Account not found"));
        let id = parsed.ok_or_else(not_found)?;
        if !app.accounts.is_owned_by(self.key.user_id, id).await? {
            return Err(not_found());
        }
        Ok(id)
    }
}
