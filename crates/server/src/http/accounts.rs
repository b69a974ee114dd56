//! Accounts and their config (docs/product.md §5). Another user's account is always 404, and every store
//! call here is scoped by the caller's user id.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use reconbanker_store::{now, AccountId, AccountRow, BankId};
use serde::{Deserialize, Serialize};

use super::auth::{DashboardUser, OwnedAccount};
use super::dto::{ConfigOut, PendingOut, QueuedOut};
use super::error::{ApiError, Problem};
use super::extract::{body_bytes, parse_json, DJson, Page};
use super::otp;
use crate::app;
use crate::domain::account_config::{self, ConfigPatch};
use crate::support::guard;
use crate::support::time::ts;
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
#[serde(deny_unknown_fields, rename_all = "camelCase")]
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
    let account = app::accounts::create(&app, who.user.id, bank_id, name)
        .await?
        .ok_or_else(unknown)?;
    Ok((StatusCode::CREATED, Json(account_out(&app, account).await?)))
}

/// `GET /accounts/:id`: the account, with the instance driving its session (issue 11).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountDetailOut {
    #[serde(flatten)]
    account: AccountOut,
    /// The instance id holding the account's session lease, `null` when none holds it.
    session_owner: Option<String>,
}

pub async fn get(
    State(app): State<AppState>,
    OwnedAccount { account, .. }: OwnedAccount,
) -> Result<Json<AccountDetailOut>, ApiError> {
    let session_owner = app.store.session_owner(account.id, now()).await?;
    let account = account_out(&app, account).await?;
    Ok(Json(AccountDetailOut { account, session_owner }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteIn {
    confirmation_name: Option<String>,
}

pub async fn delete(
    State(app): State<AppState>,
    OwnedAccount { user: who, account }: OwnedAccount,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let bytes = body_bytes(body)?;
    let confirm: DeleteIn = parse_json(&bytes)?;
    match confirm.confirmation_name {
        None => return Err(Problem::field("confirmation_name", "is required: send the account's current name").into()),
        Some(n) if n.trim() != account.name => {
            return Err(Problem::field("confirmation_name", "does not match the account's name").into())
        }
        Some(_) => {}
    }
    app::accounts::delete(&app, who.user.id, account.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn get_config(
    State(app): State<AppState>,
    OwnedAccount { user: who, account }: OwnedAccount,
) -> Result<Json<ConfigOut>, ApiError> {
    let (settings, secrets) = app::accounts::load_config(&app, who.user.id, account.id).await?;
    Ok(Json(ConfigOut::new(settings, &secrets)))
}

pub async fn put_config(
    State(app): State<AppState>,
    OwnedAccount { user: who, account }: OwnedAccount,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ConfigOut>, ApiError> {
    let patch: ConfigPatch = parse_json(&body_bytes(body)?)?;
    for (field, url) in patch.urls() {
        guard::check_url(url, app.config.allow_private_targets)
            .await
            .map_err(|m| Problem::field(field, &m))?;
    }
    let (mut settings, mut secrets) = app::accounts::load_config(&app, who.user.id, account.id).await?;
    account_config::apply(&mut settings, &mut secrets, patch)?;
    secrets.ensure_signing_secrets();
    app::accounts::save_config(&app, who.user.id, account.id, &settings, &secrets).await?;
    Ok(Json(ConfigOut::new(settings, &secrets)))
}

/// `GET /accounts/:id/otp`: what is pending, or `null`.
pub async fn get_otp(
    State(app): State<AppState>,
    OwnedAccount { account, .. }: OwnedAccount,
) -> Result<Json<Option<PendingOut>>, ApiError> {
    let pending = app.assistance.pending(account.id).await?;
    Ok(Json(pending.as_deref().map(PendingOut::from)))
}

/// `POST /accounts/:id/otp`: the same rules and budget as `/v1`, in the dashboard shape.
pub async fn post_otp(
    State(app): State<AppState>,
    OwnedAccount { account, .. }: OwnedAccount,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    Ok(otp::submit(&app, account.id, body, otp::Body::Strict).await?)
}

/// `POST /accounts/:id/scrape`: run a session now (not gated by a fatal block).
pub async fn scrape(
    State(app): State<AppState>,
    OwnedAccount { account, .. }: OwnedAccount,
) -> Result<(StatusCode, Json<QueuedOut>), ApiError> {
    app.engine.scrape_now(account.id);
    Ok((StatusCode::ACCEPTED, Json(QueuedOut::YES)))
}

/// `POST /accounts/:id/restart`: clear the fatal block and run a session.
pub async fn restart(
    State(app): State<AppState>,
    OwnedAccount { account, .. }: OwnedAccount,
) -> Result<(StatusCode, Json<QueuedOut>), ApiError> {
    app.engine.restart(account.id).await?;
    Ok((StatusCode::ACCEPTED, Json(QueuedOut::YES)))
}

#[derive(Serialize)]
pub struct Killed {
    killed: bool,
}

/// `POST /accounts/:id/kill`: stop the live session; pending assistance → `cancelled`.
pub async fn kill(
    State(app): State<AppState>,
    OwnedAccount { user: who, account }: OwnedAccount,
) -> Result<(StatusCode, Json<Killed>), ApiError> {
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
    OwnedAccount { account, .. }: OwnedAccount,
) -> Result<(StatusCode, Json<Started>), ApiError> {
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
    /// The reconciliation request it settled, if any.
    #[serde(rename = "match")]
    matched: Option<MovementMatchOut>,
    ignored_at: Option<String>,
}

#[derive(Serialize)]
pub struct MovementMatchOut {
    request_id: String,
    external_id: String,
}

impl MovementOut {
    /// A movement with its reconciliation side (the request it settled, its ignore mark).
    pub(crate) fn of(
        m: reconbanker_store::MovementRow,
        matched: Option<(reconbanker_store::ConciliationRequestId, String)>,
        ignored_at: Option<reconbanker_store::Timestamp>,
    ) -> Self {
        Self {
            id: m.id,
            amount: m.amount,
            currency: m.currency,
            name: m.name,
            description: m.description,
            received_at: m.received_at,
            read_at: ts(m.read_at),
            matched: matched.map(|(request, external_id)| MovementMatchOut {
                request_id: request.to_string(),
                external_id,
            }),
            ignored_at: ignored_at.map(ts),
        }
    }
}

/// `GET /accounts/:id/movements`: newest first, paginated.
pub async fn movements(
    State(app): State<AppState>,
    OwnedAccount { user: who, account }: OwnedAccount,
    page: Page,
) -> Result<Json<Vec<MovementOut>>, ApiError> {
    let rows = app
        .store
        .list_movements(who.user.id, account.id, page.limit, page.offset)
        .await?;
    let ids: Vec<_> = rows.iter().map(|m| m.id).collect();
    let reconciled: std::collections::HashMap<_, _> = app
        .store
        .movement_matches(who.user.id, account.id, &ids)
        .await?
        .into_iter()
        .map(|(id, matched, ignored)| (id, (matched, ignored)))
        .collect();
    Ok(Json(
        rows.into_iter()
            .map(|m| {
                let (matched, ignored) = reconciled.get(&m.id).cloned().unwrap_or_default();
                MovementOut::of(m, matched, ignored)
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
    OwnedAccount { user: who, account }: OwnedAccount,
    page: Page,
) -> Result<Json<Vec<RunOut>>, ApiError> {
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
