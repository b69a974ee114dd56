//! API keys (docs/product.md §3), managed with the dashboard JWT: create (the key is shown once), list
//! (never the secret), revoke.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use reconbanker_store::{now, AccountId, ApiKeyId, ApiKeyRow, Constraint, UserId};
use serde::{Deserialize, Serialize};

use super::auth::DashboardUser;
use super::error::{ApiError, Problem};
use super::extract::{DJson, DPath, Page};
use crate::auth::key_cache::{Scope, ALL_SCOPES};
use crate::support::time::ts;
use crate::AppState;

const MAX_KEY_NAME_CHARS: usize = 100;
const MAX_KEY_ACCOUNTS: usize = 500;

#[derive(Serialize)]
pub struct KeyOut {
    id: ApiKeyId,
    name: String,
    prefix: String,
    scopes: Vec<String>,
    account_ids: Option<Vec<AccountId>>,
    created_at: String,
    last_used_at: Option<String>,
    expires_at: Option<String>,
    revoked_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
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

#[derive(Serialize)]
pub struct KeyList {
    keys: Vec<KeyOut>,
    available_scopes: [&'static str; 2],
}

pub async fn list(State(app): State<AppState>, who: DashboardUser, page: Page) -> Result<Json<KeyList>, ApiError> {
    let rows = app.store.list_api_keys(who.user.id, page.limit, page.offset).await?;
    let keys = rows.into_iter().map(|r| key_out(&app, r, None)).collect();
    Ok(Json(KeyList {
        keys,
        available_scopes: ALL_SCOPES,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateIn {
    pub(crate) name: Option<String>,
    pub(crate) scopes: Option<Vec<String>>,
    pub(crate) account_ids: Option<Vec<String>>,
    pub(crate) expires_at: Option<String>,
}

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
    for s in body.scopes.unwrap_or_default() {
        let scope = Scope::parse(&s).ok_or_else(|| {
            Problem::field(
                "scopes",
                &format!("contains unknown scope {s:?} (known: otp:write, status:read)"),
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
            for raw in &list {
                let id = raw.parse::<AccountId>().map_err(|_| {
                    Problem::field(
                        "account_ids",
                        &format!("contains {raw:?}, which is not one of your accounts"),
                    )
                })?;
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            let owned = app.store.owned_account_ids(user, &ids).await?;
            if let Some(foreign) = ids.iter().find(|id| !owned.contains(id)) {
                return Err(Problem::field(
                    "account_ids",
                    &format!("contains {foreign}, which is not one of your accounts"),
                ));
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
            Some(chrono::SubsecRound::trunc_subsecs(at, 3))
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

pub async fn revoke(
    State(app): State<AppState>,
    who: DashboardUser,
    DPath(id): DPath<String>,
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
