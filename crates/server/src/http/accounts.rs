//! Accounts and their config (SPEC §5). Another user's account is always 404, and every store
//! call here is scoped by the caller's user id.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use reconbanker_store::{now, AccountConfigRow, AccountId, AccountRow, BankId, NewAccount, UserId};
use serde::{Deserialize, Serialize};

use super::auth::DashboardUser;
use super::config_doc::{self, ConfigOut, ConfigPatch, SecretFields, Settings};
use super::error::{rate_limit_headers, ApiError, Problem};
use super::extract::{body_bytes, parse_json, DJson, Page};
use super::{submit_error, ts, PendingOut};
use crate::guard;
use crate::AppState;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountOut {
    id: AccountId,
    bank: String,
    name: String,
    status: String,
    session_status: &'static str,
    scrape_blocked_at: Option<String>,
    scrape_blocked_reason: Option<String>,
}

async fn account_out(app: &AppState, a: AccountRow) -> Result<AccountOut, Problem> {
    let session_status = if app.assistance.pending(a.id).await?.is_some() {
        "awaiting_code"
    } else if app.sessions.is_running(a.id) {
        "running"
    } else if a.scrape_blocked_at.is_some() {
        "needs_attention"
    } else {
        "off"
    };
    Ok(AccountOut {
        id: a.id,
        bank: a.bank_code,
        name: a.name,
        status: a.status,
        session_status,
        scrape_blocked_at: a.scrape_blocked_at.map(ts),
        scrape_blocked_reason: a.scrape_blocked_reason,
    })
}

/// The caller's account, or 404 for a missing, foreign or malformed id.
pub async fn owned(app: &AppState, user: UserId, id: &str) -> Result<AccountRow, ApiError> {
    let not_found = || ApiError(Problem::not_found("Account not found"));
    let id = id.parse::<AccountId>().map_err(|_| not_found())?;
    app.store
        .account_for_user(user, id)
        .await?
        .ok_or_else(not_found)
}

pub async fn list(
    State(app): State<AppState>,
    who: DashboardUser,
    page: Page,
) -> Result<Json<Vec<AccountOut>>, ApiError> {
    let rows = app
        .store
        .list_accounts(who.user.id, page.limit, page.offset)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for a in rows {
        out.push(account_out(&app, a).await?);
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateIn {
    bank_id: Option<String>,
    name: Option<String>,
}

pub async fn create(
    State(app): State<AppState>,
    who: DashboardUser,
    DJson(body): DJson<CreateIn>,
) -> Result<impl IntoResponse, ApiError> {
    let bank_id = body
        .bank_id
        .map(|b| b.trim().to_owned())
        .unwrap_or_default();
    let name = body.name.map(|n| n.trim().to_owned()).unwrap_or_default();
    if bank_id.is_empty() || name.is_empty() {
        return Err(Problem::validation("bankId and name are required").into());
    }
    if name.chars().count() > 100 {
        return Err(Problem::field("name", "must be at most 100 characters").into());
    }
    let unknown = || ApiError(Problem::field("bankId", "does not name a known bank"));
    let bank_id = bank_id.parse::<BankId>().map_err(|_| unknown())?;
    app.store.bank_by_id(bank_id).await?.ok_or_else(unknown)?;
    let at = now();
    let account = app
        .store
        .create_account(&NewAccount {
            id: AccountId::new(),
            user_id: who.user.id,
            bank_id,
            name,
            created_at: at,
        })
        .await?;
    // Every account starts with a stored default config and its own signing secret.
    let secrets = SecretFields {
        notification_signing_secret: Some(config_doc::new_signing_secret()),
        ..Default::default()
    };
    save_config(
        &app,
        who.user.id,
        account.id,
        &Settings::default(),
        &secrets,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(account_out(&app, account).await?)))
}

pub async fn get(
    State(app): State<AppState>,
    who: DashboardUser,
    Path(id): Path<String>,
) -> Result<Json<AccountOut>, ApiError> {
    let a = owned(&app, who.user.id, &id).await?;
    Ok(Json(account_out(&app, a).await?))
}

#[derive(Deserialize)]
pub struct DeleteIn {
    confirmation_name: Option<String>,
}

pub async fn delete(
    State(app): State<AppState>,
    who: DashboardUser,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let account = owned(&app, who.user.id, &id).await?;
    let bytes = body_bytes(body)?;
    let confirm: DeleteIn = parse_json(&bytes)?;
    match confirm.confirmation_name {
        None => {
            return Err(Problem::field(
                "confirmation_name",
                "is required: send the account's current name",
            )
            .into())
        }
        Some(n) if n.trim() != account.name => {
            return Err(
                Problem::field("confirmation_name", "does not match the account's name").into(),
            )
        }
        Some(_) => {}
    }
    app.assistance
        .cancel_for_account(account.id, "account_deleted")
        .await?;
    app.store.delete_account(who.user.id, account.id).await?;
    app.accounts.forget(account.id);
    app.assistance.forget(account.id);
    app.keys.forget_account(account.id);
    Ok(StatusCode::NO_CONTENT)
}

fn aad(account: AccountId) -> Vec<u8> {
    format!("account-config:{account}").into_bytes()
}

async fn load_config(
    app: &AppState,
    user: UserId,
    account: AccountId,
) -> Result<(Settings, SecretFields), Problem> {
    let Some(row) = app.store.account_config(user, account).await? else {
        return Ok((Settings::default(), SecretFields::default()));
    };
    let settings: Settings = serde_json::from_str(&row.settings).map_err(Problem::internal)?;
    let secrets = match &row.secrets {
        None => SecretFields::default(),
        Some(sealed) => {
            let plain = app
                .sealer
                .open(sealed, &aad(account))
                .map_err(Problem::internal)?;
            serde_json::from_slice(&plain).map_err(Problem::internal)?
        }
    };
    Ok((settings, secrets))
}

async fn save_config(
    app: &AppState,
    user: UserId,
    account: AccountId,
    settings: &Settings,
    secrets: &SecretFields,
) -> Result<(), Problem> {
    let plain = serde_json::to_vec(secrets).map_err(Problem::internal)?;
    let row = AccountConfigRow {
        account_id: account,
        settings: serde_json::to_string(settings).map_err(Problem::internal)?,
        secrets: Some(app.sealer.seal(&plain, &aad(account))),
        updated_at: now(),
    };
    if !app.store.put_account_config(user, &row).await? {
        return Err(Problem::not_found("Account not found"));
    }
    Ok(())
}

pub async fn get_config(
    State(app): State<AppState>,
    who: DashboardUser,
    Path(id): Path<String>,
) -> Result<Json<ConfigOut>, ApiError> {
    let account = owned(&app, who.user.id, &id).await?;
    let (settings, secrets) = load_config(&app, who.user.id, account.id).await?;
    Ok(Json(ConfigOut::new(settings, &secrets)))
}

pub async fn put_config(
    State(app): State<AppState>,
    who: DashboardUser,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ConfigOut>, ApiError> {
    let account = owned(&app, who.user.id, &id).await?;
    let patch: ConfigPatch = parse_json(&body_bytes(body)?)?;
    for (field, url) in patch.urls() {
        guard::check_url(url, app.config.allow_private_targets)
            .await
            .map_err(|m| Problem::field(field, &m))?;
    }
    let (mut settings, mut secrets) = load_config(&app, who.user.id, account.id).await?;
    config_doc::apply(&mut settings, &mut secrets, patch)?;
    if secrets.notification_signing_secret.is_none() {
        secrets.notification_signing_secret = Some(config_doc::new_signing_secret());
    }
    save_config(&app, who.user.id, account.id, &settings, &secrets).await?;
    Ok(Json(ConfigOut::new(settings, &secrets)))
}

/// `GET /accounts/:id/otp`: what is pending, or `null`.
pub async fn get_otp(
    State(app): State<AppState>,
    who: DashboardUser,
    Path(id): Path<String>,
) -> Result<Json<Option<PendingOut>>, ApiError> {
    let account = owned(&app, who.user.id, &id).await?;
    let pending = app.assistance.pending(account.id).await?;
    Ok(Json(pending.as_deref().map(PendingOut::from)))
}

#[derive(Deserialize)]
pub struct OtpIn {
    pub code: String,
    #[serde(default)]
    pub request_id: Option<String>,
}

#[derive(Serialize)]
pub struct OtpAccepted {
    pub submitted: bool,
    pub request_id: String,
}

/// `POST /accounts/:id/otp`: the same rules and budget as `/v1`, in the dashboard shape.
pub async fn post_otp(
    State(app): State<AppState>,
    who: DashboardUser,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let account = owned(&app, who.user.id, &id).await?;
    let input: OtpIn = parse_json(&body_bytes(body)?)?;
    let assistance: &Arc<_> = &app.assistance;
    let done = assistance
        .submit(account.id, &input.code, input.request_id.as_deref())
        .await
        .map_err(submit_error)?;
    let mut res = (
        StatusCode::ACCEPTED,
        Json(OtpAccepted {
            submitted: true,
            request_id: done.request_id.to_string(),
        }),
    )
        .into_response();
    res.headers_mut().extend(rate_limit_headers(&done.rate));
    Ok(res)
}
