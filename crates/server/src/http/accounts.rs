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
use utoipa::ToSchema;

use super::auth::{DashboardUser, OwnedAccount};
use super::dto::{ConfigOut, OtpAcceptedOut, PendingOut, QueuedOut};
use super::error::{ApiError, Problem};
use super::extract::{body_bytes, parse_json, DJson, NoBody, Page, PageParams};
use super::openapi::ApiErrorBody;
use super::otp::{self, StrictOtpSubmission};
use crate::app;
use crate::domain::account_config::{self, ConfigPatch};
use crate::support::guard;
use crate::support::time::ts;
use crate::AppState;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountOut {
    #[schema(value_type = String, format = Uuid)]
    id: AccountId,
    /// The bank's code.
    bank: String,
    name: String,
    status: String,
    /// `off`, `starting`, `running`, `awaiting_code`, `needs_attention`.
    #[schema(value_type = String)]
    session_status: &'static str,
    /// When a fatal failure blocked scheduled sessions (RFC 3339), `null` when not blocked.
    #[schema(required = true)]
    scrape_blocked_at: Option<String>,
    #[schema(required = true)]
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

/// List the user's accounts.
#[utoipa::path(
    get, operation_id = "accounts_list",
    path = "/accounts",
    tag = "Accounts",
    security(("DashboardJwt" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "The accounts", body = Vec<AccountOut>),
        (status = 400, description = "`VALIDATION_ERROR`: bad `limit` or `offset`", body = ApiErrorBody),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
    )
)]
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = CreateAccountIn)]
pub struct CreateIn {
    /// The bank's id (UUID, from `GET /banks`).
    #[schema(value_type = String, format = Uuid)]
    bank_id: Option<String>,
    /// 1 to 100 characters.
    #[schema(value_type = String, min_length = 1, max_length = 100, example = "Main account")]
    name: Option<String>,
}

/// Add an account.
#[utoipa::path(
    post, operation_id = "accounts_create",
    path = "/accounts",
    tag = "Accounts",
    security(("DashboardJwt" = [])),
    request_body(content = CreateIn, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = AccountOut),
        (status = 400, description = "`VALIDATION_ERROR`: malformed body, unknown field, missing bankId or name, unknown bank, long name", body = ApiErrorBody),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ApiErrorBody),
    )
)]
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
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountDetailOut {
    #[serde(flatten)]
    account: AccountOut,
    /// The instance id holding the account's session lease, `null` when none holds it.
    #[schema(required = true)]
    session_owner: Option<String>,
}

/// One account, with the instance driving its session.
#[utoipa::path(
    get, operation_id = "accounts_get",
    path = "/accounts/{id}",
    tag = "Accounts",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The account's id (UUID)")),
    responses(
        (status = 200, description = "The account", body = AccountDetailOut),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such account of the user (or a malformed id)", body = ApiErrorBody),
    )
)]
pub async fn get(
    State(app): State<AppState>,
    OwnedAccount { account, .. }: OwnedAccount,
) -> Result<Json<AccountDetailOut>, ApiError> {
    let session_owner = app.store.session_owner(account.id, now()).await?;
    let account = account_out(&app, account).await?;
    Ok(Json(AccountDetailOut { account, session_owner }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DeleteAccountIn)]
pub struct DeleteIn {
    /// The account's current name, as a confirmation.
    #[schema(value_type = String)]
    confirmation_name: Option<String>,
}

/// Delete an account and everything it holds (its session is stopped first).
#[utoipa::path(
    delete, operation_id = "accounts_delete",
    path = "/accounts/{id}",
    tag = "Accounts",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The account's id (UUID)")),
    request_body(content = DeleteIn, content_type = "application/json"),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "`VALIDATION_ERROR`: malformed body, unknown field, missing or wrong confirmation_name", body = ApiErrorBody),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such account of the user (or a malformed id)", body = ApiErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ApiErrorBody),
    )
)]
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

/// The account's config.
#[utoipa::path(
    get, operation_id = "accounts_get_config",
    path = "/accounts/{id}/config",
    tag = "Accounts",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The account's id (UUID)")),
    responses(
        (status = 200, description = "The config, secrets masked (`has_bank_password`, `********` for tokens)", body = ConfigOut),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such account of the user (or a malformed id)", body = ApiErrorBody),
    )
)]
pub async fn get_config(
    State(app): State<AppState>,
    OwnedAccount { user: who, account }: OwnedAccount,
) -> Result<Json<ConfigOut>, ApiError> {
    let (settings, secrets) = app::accounts::load_config(&app, who.user.id, account.id).await?;
    Ok(Json(ConfigOut::new(settings, &secrets)))
}

/// Change the account's config: the fields sent change (`null` clears), the rest stay.
#[utoipa::path(
    put, operation_id = "accounts_put_config",
    path = "/accounts/{id}/config",
    tag = "Accounts",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The account's id (UUID)")),
    request_body(content = ConfigPatch, content_type = "application/json"),
    responses(
        (status = 200, description = "The config, secrets masked (`has_bank_password`, `********` for tokens)", body = ConfigOut),
        (status = 400, description = "`VALIDATION_ERROR`: malformed body, unknown field, a bad value (named in `details`), a URL refused by the outbound-network guard", body = ApiErrorBody),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such account of the user (or a malformed id)", body = ApiErrorBody),
        (status = 409, description = "`CONFLICT`: the config kept changing under other writes (16 tries); send it again", body = ApiErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ApiErrorBody),
    )
)]
pub async fn put_config(
    State(app): State<AppState>,
    OwnedAccount { user: who, account }: OwnedAccount,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ConfigOut>, ApiError> {
    let patch: ConfigPatch = parse_json(&body_bytes(body)?)?;
    Ok(Json(update_config(&app, who.user.id, account.id, patch).await?))
}

/// Applies a config patch (the outbound-URL check, the field rules, the signing secrets) and
/// stores it; shared by the JSON route and the dashboard's account page.
pub(crate) async fn update_config(
    app: &AppState,
    user: reconbanker_store::UserId,
    account: AccountId,
    patch: ConfigPatch,
) -> Result<ConfigOut, Problem> {
    for (field, url) in patch.urls() {
        guard::check_url(url, app.config.allow_private_targets)
            .await
            .map_err(|m| Problem::field(field, &m))?;
    }
    let (settings, secrets, ()) = app::accounts::change_config(app, user, account, |settings, secrets| {
        account_config::apply(settings, secrets, patch.clone())?;
        secrets.ensure_signing_secrets();
        Ok::<_, Problem>(())
    })
    .await?;
    Ok(ConfigOut::new(settings, &secrets))
}

/// `GET /accounts/:id/otp`: what is pending, or `null`.
#[utoipa::path(
    get, operation_id = "accounts_get_otp",
    path = "/accounts/{id}/otp",
    tag = "Accounts",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The account's id (UUID)")),
    responses(
        (status = 200, description = "The pending assistance request, or `null`", body = Option<PendingOut>),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such account of the user (or a malformed id)", body = ApiErrorBody),
    )
)]
pub async fn get_otp(
    State(app): State<AppState>,
    OwnedAccount { account, .. }: OwnedAccount,
) -> Result<Json<Option<PendingOut>>, ApiError> {
    let pending = app.assistance.pending(account.id).await?;
    Ok(Json(pending.as_deref().map(PendingOut::from)))
}

/// `POST /accounts/:id/otp`: the same rules and budget as `/v1`, in the dashboard shape.
#[utoipa::path(
    post, operation_id = "accounts_post_otp",
    path = "/accounts/{id}/otp",
    tag = "Accounts",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The account's id (UUID)")),
    request_body(content = StrictOtpSubmission, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted for delivery", body = OtpAcceptedOut, headers(("RateLimit" = String), ("RateLimit-Policy" = String))),
        (status = 400, description = "`VALIDATION_ERROR`: malformed body, unknown field, missing or bad code", body = ApiErrorBody),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such account of the user (or a malformed id)", body = ApiErrorBody),
        (status = 409, description = "`NO_PENDING_ASSISTANCE`, `STALE_REQUEST` (details: `{pending_request_id}`) or `CODE_IN_FLIGHT`", body = ApiErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ApiErrorBody),
        (status = 429, description = "`RATE_LIMITED`: 5 submissions per 10 minutes per account (shared with /v1), with `Retry-After`", body = ApiErrorBody, headers(("Retry-After" = u64))),
    )
)]
pub async fn post_otp(
    State(app): State<AppState>,
    OwnedAccount { account, .. }: OwnedAccount,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    Ok(otp::submit(&app, account.id, body, otp::Body::Strict).await?)
}

/// `POST /accounts/:id/scrape`: run a session now (not gated by a fatal block).
#[utoipa::path(
    post, operation_id = "accounts_scrape",
    path = "/accounts/{id}/scrape",
    tag = "Accounts",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The account's id (UUID)")),
    responses(
        (status = 202, description = "Queued: `{\"queued\": true}`", body = QueuedOut),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such account of the user (or a malformed id)", body = ApiErrorBody),
    )
)]
pub async fn scrape(
    State(app): State<AppState>,
    OwnedAccount { account, .. }: OwnedAccount,
    _: NoBody,
) -> Result<(StatusCode, Json<QueuedOut>), ApiError> {
    crate::app::accounts::scrape_now(&app, account.id).await;
    Ok((StatusCode::ACCEPTED, Json(QueuedOut::YES)))
}

/// `POST /accounts/:id/restart`: clear the fatal block and run a session.
#[utoipa::path(
    post, operation_id = "accounts_restart",
    path = "/accounts/{id}/restart",
    tag = "Accounts",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The account's id (UUID)")),
    responses(
        (status = 202, description = "Queued: `{\"queued\": true}`", body = QueuedOut),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such account of the user (or a malformed id)", body = ApiErrorBody),
    )
)]
pub async fn restart(
    State(app): State<AppState>,
    OwnedAccount { account, .. }: OwnedAccount,
    _: NoBody,
) -> Result<(StatusCode, Json<QueuedOut>), ApiError> {
    app.engine.restart(account.id).await?;
    Ok((StatusCode::ACCEPTED, Json(QueuedOut::YES)))
}

#[derive(Serialize, ToSchema)]
pub struct Killed {
    /// Whether a live session was stopped.
    killed: bool,
}

/// `POST /accounts/:id/kill`: stop the live session; pending assistance → `cancelled`.
#[utoipa::path(
    post, operation_id = "accounts_kill",
    path = "/accounts/{id}/kill",
    tag = "Accounts",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The account's id (UUID)")),
    responses(
        (status = 202, description = "Stopped (or nothing was running)", body = Killed),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such account of the user (or a malformed id)", body = ApiErrorBody),
    )
)]
pub async fn kill(
    State(app): State<AppState>,
    OwnedAccount { user: who, account }: OwnedAccount,
    _: NoBody,
) -> Result<(StatusCode, Json<Killed>), ApiError> {
    let killed = app.engine.kill(account.id, who.user.id, "killed").await?;
    Ok((StatusCode::ACCEPTED, Json(Killed { killed })))
}

#[derive(Serialize, ToSchema)]
pub struct Started {
    started: bool,
}

/// `POST /accounts/:id/reactivate`: (re)start the session.
#[utoipa::path(
    post, operation_id = "accounts_reactivate",
    path = "/accounts/{id}/reactivate",
    tag = "Accounts",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The account's id (UUID)")),
    responses(
        (status = 202, description = "Starting", body = Started),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such account of the user (or a malformed id)", body = ApiErrorBody),
    )
)]
pub async fn reactivate(
    State(app): State<AppState>,
    OwnedAccount { account, .. }: OwnedAccount,
    _: NoBody,
) -> Result<(StatusCode, Json<Started>), ApiError> {
    app.engine.reactivate(account.id);
    Ok((StatusCode::ACCEPTED, Json(Started { started: true })))
}

#[derive(Serialize, ToSchema)]
pub struct MovementOut {
    #[schema(value_type = String, format = Uuid)]
    id: reconbanker_store::MovementId,
    /// Decimal text as the bank reported it (money is never a float).
    amount: String,
    currency: String,
    #[schema(required = true)]
    name: Option<String>,
    description: String,
    received_at: String,
    read_at: String,
    /// The reconciliation request it settled, if any.
    #[serde(rename = "match")]
    #[schema(required = true)]
    matched: Option<MovementMatchOut>,
    #[schema(required = true)]
    ignored_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
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
#[utoipa::path(
    get, operation_id = "accounts_movements",
    path = "/accounts/{id}/movements",
    tag = "Accounts",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The account's id (UUID)"), PageParams),
    responses(
        (status = 200, description = "The movements", body = Vec<MovementOut>),
        (status = 400, description = "`VALIDATION_ERROR`: bad `limit` or `offset`", body = ApiErrorBody),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such account of the user (or a malformed id)", body = ApiErrorBody),
    )
)]
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

#[derive(Serialize, ToSchema)]
pub struct RunOut {
    #[schema(value_type = String, format = Uuid)]
    id: reconbanker_store::RunId,
    kind: String,
    started_at: String,
    #[schema(required = true)]
    ended_at: Option<String>,
    outcome: String,
    #[schema(required = true)]
    failure_reason: Option<String>,
    movements_read: i32,
    new_movements: i32,
}

/// `GET /accounts/:id/runs`: each session run, newest first, paginated.
#[utoipa::path(
    get, operation_id = "accounts_runs",
    path = "/accounts/{id}/runs",
    tag = "Accounts",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The account's id (UUID)"), PageParams),
    responses(
        (status = 200, description = "The runs", body = Vec<RunOut>),
        (status = 400, description = "`VALIDATION_ERROR`: bad `limit` or `offset`", body = ApiErrorBody),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such account of the user (or a malformed id)", body = ApiErrorBody),
    )
)]
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
