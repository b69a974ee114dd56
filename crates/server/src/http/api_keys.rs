//! API keys (docs/product.md §3), managed with the dashboard JWT: create (the key is shown once), list
//! (never the secret), revoke.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use reconbanker_store::{now, AccountId, ApiKeyId, ApiKeyRow, Constraint, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::DashboardUser;
use super::error::{ApiError, Problem};
use super::extract::{DJson, DPath, NoBody, Page, PageParams};
use super::openapi::ApiErrorBody;
use crate::auth::key_cache::{Scope, ALL_SCOPES};
use crate::support::time::ts;
use crate::AppState;

const MAX_KEY_NAME_CHARS: usize = 100;
const MAX_KEY_ACCOUNTS: usize = 500;

/// An API key as listed (never its secret); on creation, with `key` (shown once).
#[derive(Serialize, ToSchema)]
pub struct KeyOut {
    #[schema(value_type = String, format = Uuid)]
    id: ApiKeyId,
    name: String,
    /// The key's public part: `rbk_<prefix>_…`.
    prefix: String,
    /// `otp:write`, `status:read`.
    scopes: Vec<String>,
    /// The accounts the key is restricted to; `null` for every account of the user.
    #[schema(required = true, value_type = Option<Vec<String>>)]
    account_ids: Option<Vec<AccountId>>,
    /// RFC 3339, UTC.
    created_at: String,
    #[schema(required = true)]
    last_used_at: Option<String>,
    #[schema(required = true)]
    expires_at: Option<String>,
    #[schema(required = true)]
    revoked_at: Option<String>,
    /// Only in the `201` of creation: the whole key, `rbk_<8 hex>_<64 hex>`. It is never shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    key: Option<String>,
}

fn key_out(app: &AppState, row: ApiKeyRow, full: Option<String>) -> KeyOut {
    KeyOut {
        last_used_at: app.keys.last_used(&row).map(ts),
        id: row.id,
        name: row.name,
        prefix: row.prefix,
        scopes: row.scopes,
        account_ids: row.account_ids,
        created_at: ts(row.created_at),
        expires_at: row.expires_at.map(ts),
        revoked_at: row.revoked_at.map(ts),
        key: full,
    }
}

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    keys: Vec<KeyOut>,
    /// Every scope a key can have.
    #[schema(value_type = Vec<String>)]
    available_scopes: [&'static str; 2],
}

/// List the user's API keys (revoked ones too), newest first.
#[utoipa::path(
    get, operation_id = "api_keys_list",
    path = "/me/api-keys",
    tag = "API keys",
    security(("DashboardJwt" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "The keys", body = KeyList),
        (status = 400, description = "`VALIDATION_ERROR`: bad `limit` or `offset`", body = ApiErrorBody),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
    )
)]

pub async fn list(State(app): State<AppState>, who: DashboardUser, page: Page) -> Result<Json<KeyList>, ApiError> {
    let rows = app.store.list_api_keys(who.user.id, page.limit, page.offset).await?;
    let keys = rows.into_iter().map(|r| key_out(&app, r, None)).collect();
    Ok(Json(KeyList {
        keys,
        available_scopes: ALL_SCOPES,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateApiKeyIn)]
pub struct CreateIn {
    /// 1 to 100 characters.
    #[schema(value_type = String, min_length = 1, max_length = 100, example = "checkout service")]
    pub(crate) name: Option<String>,
    /// At least one scope.
    #[schema(value_type = Vec<ScopeName>, min_items = 1, example = json!(["status:read", "otp:write"]))]
    pub(crate) scopes: Option<Vec<String>>,
    /// Restrict the key to these accounts of the user (1 to 500); absent or `null` for every account.
    pub(crate) account_ids: Option<Vec<String>>,
    /// RFC 3339, in the future; absent or `null` for a key that does not expire.
    pub(crate) expires_at: Option<String>,
}

/// A scope of an API key (only for the document: the handler parses strings and names the
/// unknown one).
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum ScopeName {
    /// `POST /v1/accounts/{accountId}/otp`.
    #[schema(rename = "otp:write")]
    OtpWrite,
    /// `GET /v1/accounts/{accountId}/status`, `GET /v1/events`.
    #[schema(rename = "status:read")]
    StatusRead,
}

/// Create an API key.
///
/// The answer carries the whole key (`key`) once; only its prefix is kept in the clear.
#[utoipa::path(
    post, operation_id = "api_keys_create",
    path = "/me/api-keys",
    tag = "API keys",
    security(("DashboardJwt" = [])),
    request_body(content = CreateIn, content_type = "application/json"),
    responses(
        (status = 201, description = "Created; `key` is shown only now", body = KeyOut),
        (status = 400, description = "`VALIDATION_ERROR`: malformed body, unknown field, name, scopes, account_ids (not the user's) or expires_at", body = ApiErrorBody),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ApiErrorBody),
    )
)]

pub async fn create(
    State(app): State<AppState>,
    who: DashboardUser,
    DJson(body): DJson<CreateIn>,
) -> Result<impl IntoResponse, ApiError> {
    let (row, full) = create_key(&app, who.user.id, body).await?;
    Ok((StatusCode::CREATED, Json(key_out(&app, row, Some(full)))))
}

/// The rules of a new key, shared with the dashboard's API keys page (issue 10): the stored row
/// and the full key (shown once).
pub(crate) async fn create_key(app: &AppState, user: UserId, body: CreateIn) -> Result<(ApiKeyRow, String), Problem> {
    let name = body.name.map(|n| n.trim().to_owned()).unwrap_or_default();
    if name.is_empty() {
        return Err(Problem::field("name", "is required"));
    }
    if name.chars().count() > MAX_KEY_NAME_CHARS {
        return Err(Problem::field("name", "must be at most 100 characters"));
    }
    let mut scopes: Vec<String> = Vec::new();
    // Messages name an item by its position, never by its value (README, "Error messages
    // never quote a value").
    for (i, s) in body.scopes.unwrap_or_default().into_iter().enumerate() {
        let scope = Scope::parse(&s).ok_or_else(|| {
            Problem::field(
                "scopes",
                &format!("item {} is not a known scope (known: otp:write, status:read)", i + 1),
            )
        })?;
        if !scopes.iter().any(|x| x == scope.as_str()) {
            scopes.push(scope.as_str().to_owned());
        }
    }
    if scopes.is_empty() {
        return Err(Problem::field("scopes", "must name at least one scope"));
    }
    let account_ids = match body.account_ids {
        None => None,
        Some(list) => {
            if list.is_empty() {
                return Err(Problem::field(
                    "account_ids",
                    "must not be empty (use null for every account)",
                ));
            }
            if list.len() > MAX_KEY_ACCOUNTS {
                return Err(Problem::field("account_ids", "may name at most 500 accounts"));
            }
            let mut ids: Vec<AccountId> = Vec::with_capacity(list.len());
            let not_yours =
                |i: usize| Problem::field("account_ids", &format!("item {} is not one of your accounts", i + 1));
            for (i, raw) in list.iter().enumerate() {
                let id = raw.parse::<AccountId>().map_err(|_| not_yours(i))?;
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            let owned = app.store.owned_account_ids(user, &ids).await?;
            if let Some(i) = list
                .iter()
                .position(|raw| raw.parse::<AccountId>().is_ok_and(|id| !owned.contains(&id)))
            {
                return Err(not_yours(i));
            }
            Some(ids)
        }
    };
    let created_at = now();
    let expires_at = match body.expires_at {
        None => None,
        Some(raw) => {
            let at = chrono::DateTime::parse_from_rfc3339(raw.trim())
                .map_err(|_| Problem::field("expires_at", "must be an RFC 3339 timestamp"))?
                .with_timezone(&chrono::Utc);
            if at <= created_at {
                return Err(Problem::field("expires_at", "must be in the future"));
            }
            // Whole milliseconds, as stored; a leap second (`23:59:60`) is the instant after
            // `23:59:59.999`, so the answer shows what is stored.
            Some(
                chrono::DateTime::from_timestamp_millis(at.timestamp_millis())
                    .ok_or_else(|| Problem::field("expires_at", "must be an RFC 3339 timestamp"))?,
            )
        }
    };
    // A prefix collision (1 in 4 billion per pair) is retried with a fresh key.
    for _ in 0..3 {
        let new_key = app.keys.generate();
        let row = ApiKeyRow {
            id: ApiKeyId::new(),
            user_id: user,
            name: name.clone(),
            prefix: new_key.prefix,
            secret_hash: new_key.secret_hash.to_vec(),
            scopes: scopes.clone(),
            account_ids: account_ids.clone(),
            created_at,
            last_used_at: None,
            expires_at,
            revoked_at: None,
        };
        match app.store.create_api_key(&row).await {
            Ok(()) => return Ok((row, new_key.full)),
            Err(e) if e.is_conflict_on(Constraint::ApiKeysPrefix) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Problem::internal("could not allocate a unique API key prefix"))
}

/// Revoke an API key (it stops working at once, on every instance).
#[utoipa::path(
    delete, operation_id = "api_keys_revoke",
    path = "/me/api-keys/{id}",
    tag = "API keys",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The key's id (UUID)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such key of the user (or a malformed id)", body = ApiErrorBody),
    )
)]
pub async fn revoke(
    State(app): State<AppState>,
    who: DashboardUser,
    DPath(id): DPath<String>,
    _: NoBody,
) -> Result<StatusCode, ApiError> {
    revoke_key(&app, who.user.id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes one of `user`'s live keys and drops it from every cache (shared with the dashboard's
/// page, issue 10); the same 404 for a malformed, unknown, foreign or already revoked id.
pub(crate) async fn revoke_key(app: &AppState, user: UserId, id: &str) -> Result<(), Problem> {
    let not_found = || Problem::not_found("API key not found");
    let id = id.parse::<ApiKeyId>().map_err(|_| not_found())?;
    let row = app.store.revoke_api_key(user, id, now()).await?.ok_or_else(not_found)?;
    app.keys.forget(&row.prefix);
    // Other instances on the database drop it too (issue 11).
    let what = crate::support::peers::Invalidation::Key(row.prefix);
    if let Err(e) = app.peers.announce(&what).await {
        tracing::warn!(error = %e, "could not tell the other instances that an API key was revoked");
    }
    Ok(())
}
