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
    } else if let Some(phase) = app.sessions.phase(a.id) {
        phase.as_str()
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
    app.store.account_for_user(user, id).await?.ok_or_else(not_found)
}

pub async fn list(
    State(app): State<AppState>,
    who: DashboardUser,
    page: Page,
) -> Result<Json<Vec<AccountOut>>, ApiError> {
    let rows = app.store.list_accounts(who.user.id, page.limit, page.offset).await?;
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
    let bank_id = body.bank_id.map(|b| b.trim().to_owned()).unwrap_or_default();
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
    save_config(&app, who.user.id, account.id, &Settings::default(), &secrets).await?;
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
        None => return Err(Problem::field("confirmation_name", "is required: send the account's current name").into()),
        Some(n) if n.trim() != account.name => {
            return Err(Problem::field("confirmation_name", "does not match the account's name").into())
        }
        Some(_) => {}
    }
    // Stops its session and cancels pending assistance (the waiting login is released).
    app.engine.kill(account.id, who.user.id, "account_deleted").await?;
    app.store.delete_account(who.user.id, account.id).await?;
    app.accounts.forget(account.id);
    app.assistance.forget(account.id);
    app.keys.forget_account(account.id);
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn load_config(
    app: &AppState,
    user: UserId,
    account: AccountId,
) -> Result<(Settings, SecretFields), Problem> {
    let row = app.store.account_config(user, account).await?;
    config_doc::decode(row.as_ref(), &app.sealer).map_err(Problem::internal)
}

pub(crate) async fn save_config(
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
        secrets: Some(app.sealer.seal(&plain, &config_doc::aad(account))),
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

#[derive(Serialize)]
pub struct Queued {
    queued: bool,
}

/// `POST /accounts/:id/scrape`: run a session now (not gated by a fatal block).
pub async fn scrape(
    State(app): State<AppState>,
    who: DashboardUser,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    let account = owned(&app, who.user.id, &id).await?;
    app.engine.scrape_now(account.id);
    Ok((StatusCode::ACCEPTED, Json(Queued { queued: true })))
}

/// `POST /accounts/:id/restart`: clear the fatal block and run a session.
pub async fn restart(
    State(app): State<AppState>,
    who: DashboardUser,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    let account = owned(&app, who.user.id, &id).await?;
    app.engine.restart(account.id).await?;
    Ok((StatusCode::ACCEPTED, Json(Queued { queued: true })))
}

#[derive(Serialize)]
pub struct Killed {
    killed: bool,
}

/// `POST /accounts/:id/kill`: stop the live session; pending assistance → `cancelled`.
pub async fn kill(
    State(app): State<AppState>,
    who: DashboardUser,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Killed>), ApiError> {
    let account = owned(&app, who.user.id, &id).await?;
    let killed = app.engine.kill(account.id, who.user.id, "killed").await?;
    Ok((StatusCode::ACCEPTED, Json(Killed { killed })))
}

#[derive(Serialize)]
pub struct Started {
    started: bool,
}

/// `POST /accounts/:id/reactivate`: (re)start the session.
pub async fn reactivate(
    State(app): State<AppState>,
    who: DashboardUser,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Started>), ApiError> {
    let account = owned(&app, who.user.id, &id).await?;
    app.engine.reactivate(account.id);
    Ok((StatusCode::ACCEPTED, Json(Started { started: true })))
}

#[derive(Serialize)]
pub struct MovementOut {
    id: reconbanker_store::MovementId,
    amount: String,
    currency: String,
    name: Option<String>,
    description: String,
    received_at: String,
    read_at: String,
}

/// `GET /accounts/:id/movements`: newest first, paginated.
pub async fn movements(
    State(app): State<AppState>,
    who: DashboardUser,
    Path(id): Path<String>,
    page: Page,
) -> Result<Json<Vec<MovementOut>>, ApiError> {
    let account = owned(&app, who.user.id, &id).await?;
    let rows = app
        .store
        .list_movements(who.user.id, account.id, page.limit, page.offset)
        .await?;
    Ok(Json(
        rows.into_iter()
            .map(|m| MovementOut {
                id: m.id,
                amount: m.amount,
                currency: m.currency,
                name: m.name,
                description: m.description,
                received_at: m.received_at,
                read_at: ts(m.read_at),
            })
            .collect(),
    ))
}

#[derive(Serialize)]
pub struct RunOut {
    id: reconbanker_store::RunId,
    kind: String,
    started_at: String,
    ended_at: Option<String>,
    outcome: String,
    failure_reason: Option<String>,
    movements_read: i32,
    new_movements: i32,
}

/// `GET /accounts/:id/runs`: each session run, newest first, paginated.
pub async fn runs(
    State(app): State<AppState>,
    who: DashboardUser,
    Path(id): Path<String>,
    page: Page,
) -> Result<Json<Vec<RunOut>>, ApiError> {
    let account = owned(&app, who.user.id, &id).await?;
    let rows = app
        .store
        .list_runs(who.user.id, account.id, page.limit, page.offset)
        .await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| RunOut {
                id: r.id,
                kind: r.kind,
                started_at: ts(r.started_at),
                ended_at: r.ended_at.map(ts),
                outcome: r.outcome,
                failure_reason: r.failure_reason,
                movements_read: r.movements_read,
                new_movements: r.new_movements,
            })
            .collect(),
    ))
}
