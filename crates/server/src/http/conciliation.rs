//! Reconciliation routes of the dashboard API (docs/reconciliation.md §8): polling the pending-orders
//! endpoint now, the poll log, and reading requests. Another user's request or account is
//! always 404.

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::Json;
use reconbanker_store::{AccountId, ConciliationFilter, ConciliationListRow, ConciliationStatus, PollRow};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::auth::{DashboardUser, OwnedAccount};
use super::dto::QueuedOut;
use super::error::{ApiError, Problem};
use super::extract::{NoBody, Page, PageParams};
use super::openapi::ApiErrorBody;
use crate::app;
use crate::support::time::ts;
use crate::AppState;

/// `limit` of the request list when absent (docs/reconciliation.md §8).
const LIST_DEFAULT_LIMIT: i64 = 50;

/// `POST /conciliation/poll/:accountId`: fetch the account's pending orders now (one poll runs,
/// at most one more is queued).
#[utoipa::path(
    post, operation_id = "conciliation_poll_now",
    path = "/conciliation/poll/{id}",
    tag = "Reconciliation",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The account's id (UUID)")),
    responses(
        (status = 202, description = "Queued: `{\"queued\": true}`", body = QueuedOut),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such account of the user (or a malformed id)", body = ApiErrorBody),
        (status = 409, description = "`NOT_RECONCILE_MODE` or `NO_PENDING_ORDERS_ENDPOINT`", body = ApiErrorBody),
    )
)]
pub async fn poll_now(
    State(app): State<AppState>,
    OwnedAccount { user: who, account }: OwnedAccount,
    _: NoBody,
) -> Result<(StatusCode, Json<QueuedOut>), ApiError> {
    poll_now_as(&app, &who.user, account.id).await?;
    Ok((StatusCode::ACCEPTED, Json(QueuedOut::YES)))
}

/// Queues a poll of the account's pending-orders endpoint now (the JSON route and the
/// dashboard's account page).
pub(crate) async fn poll_now_as(
    app: &AppState,
    user: &reconbanker_store::UserRow,
    account: reconbanker_store::AccountId,
) -> Result<(), ApiError> {
    if user.operation_mode.as_deref() != Some("reconcile") {
        return Err(Problem::conflict(
            "NOT_RECONCILE_MODE",
            "Polling pending orders needs the reconcile operation mode (PUT /me/operation-mode)",
        )
        .into());
    }
    let (settings, _) = app::accounts::load_config(app, user.id, account).await?;
    if settings.pending_orders_endpoint.is_none() {
        return Err(Problem::conflict(
            "NO_PENDING_ORDERS_ENDPOINT",
            "The account has no pending_orders_endpoint in its config",
        )
        .into());
    }
    app.store.request_poll(account, app.clock.now()).await?;
    app.poller.wake();
    Ok(())
}

#[derive(Serialize, ToSchema)]
pub struct PollCountsOut {
    orders_seen: i64,
    registered: i64,
    updated: i64,
    cancelled: i64,
    reopened: i64,
    already_matched: i64,
    invalid: i64,
}

#[derive(Serialize, ToSchema)]
pub struct PollOut {
    id: String,
    seq: i64,
    started_at: String,
    finished_at: String,
    outcome: String,
    #[schema(required = true)]
    error: Option<String>,
    #[schema(required = true)]
    http_status: Option<i64>,
    bytes: i64,
    pages: i64,
    counts: PollCountsOut,
    /// What the poll found wrong with orders (as recorded).
    issues: Value,
}

impl From<PollRow> for PollOut {
    fn from(p: PollRow) -> Self {
        Self {
            id: p.id.to_string(),
            seq: p.seq,
            started_at: ts(p.started_at),
            finished_at: ts(p.finished_at),
            outcome: p.outcome,
            error: p.error,
            http_status: p.http_status,
            bytes: p.bytes,
            pages: p.pages,
            counts: PollCountsOut {
                orders_seen: p.counts.orders_seen,
                registered: p.counts.registered,
                updated: p.counts.updated,
                cancelled: p.counts.cancelled,
                reopened: p.counts.reopened,
                already_matched: p.counts.already_matched,
                invalid: p.counts.invalid,
            },
            // Stored as the JSON the poller wrote; an unreadable one shows as no issues.
            issues: serde_json::from_str(&p.issues).unwrap_or_else(|_| Value::Array(Vec::new())),
        }
    }
}

/// `GET /accounts/:accountId/polls?limit&offset`: the poll log, newest first.
#[utoipa::path(
    get, operation_id = "conciliation_polls",
    path = "/accounts/{id}/polls",
    tag = "Reconciliation",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The account's id (UUID)"), PageParams),
    responses(
        (status = 200, description = "The polls", body = Vec<PollOut>),
        (status = 400, description = "`VALIDATION_ERROR`: bad `limit` or `offset`", body = ApiErrorBody),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such account of the user (or a malformed id)", body = ApiErrorBody),
    )
)]
pub async fn polls(
    State(app): State<AppState>,
    OwnedAccount { user: who, account }: OwnedAccount,
    page: Page,
) -> Result<Json<Vec<PollOut>>, ApiError> {
    let rows = app
        .store
        .list_polls(who.user.id, account.id, page.limit, page.offset)
        .await?;
    Ok(Json(rows.into_iter().map(PollOut::from).collect()))
}

/// A request as listed (docs/reconciliation.md §8: the documented fields, then ours).
#[derive(Serialize, ToSchema)]
pub struct RequestOut {
    id: String,
    account_id: String,
    external_id: String,
    /// `pending`, `matched`, `not_found`, `ambiguous`, `failed`, `cancelled`, `expired`.
    #[schema(value_type = String)]
    status: &'static str,
    amount: String,
    currency: String,
    sender_name: String,
    created_at: String,
    bank: String,
    account_name: String,
    #[schema(required = true)]
    reference: Option<String>,
    #[schema(required = true)]
    reason: Option<String>,
    expires_at: String,
    updated_at: String,
    generation: i64,
}

impl From<ConciliationListRow> for RequestOut {
    fn from(row: ConciliationListRow) -> Self {
        let r = row.request;
        Self {
            id: r.id.to_string(),
            account_id: r.account_id.to_string(),
            external_id: r.external_id,
            status: r.status.as_str(),
            amount: r.amount,
            currency: r.currency,
            sender_name: r.sender_name,
            created_at: ts(r.registered_at),
            bank: row.bank_code,
            account_name: row.account_name,
            reference: r.reference,
            reason: r.reason,
            expires_at: ts(r.expires_at),
            updated_at: ts(r.updated_at),
            generation: r.generation,
        }
    }
}

/// The list's query: the filters, then paging (default 50, at most 500), and whether it asked
/// for `status=processing`, which is accepted for compatibility and never stored: it lists
/// nothing.
fn list_query(uri: &Uri) -> Result<(ConciliationFilter, i64, i64, bool), Problem> {
    let mut processing = false;
    let mut filter = ConciliationFilter::default();
    let mut limit = LIST_DEFAULT_LIMIT;
    let mut offset = 0;
    let query = uri.query().unwrap_or("");
    let paging = Page::parse(Some(query))?;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "limit" => limit = paging.limit,
            "offset" => offset = paging.offset,
            "status" if v == "processing" => processing = true,
            "status" => {
                filter.status = Some(ConciliationStatus::parse(&v).ok_or_else(|| {
                    Problem::field(
                        "status",
                        "must be one of pending, processing, matched, not_found, ambiguous, failed, cancelled, expired",
                    )
                })?)
            }
            "account_id" => {
                filter.account = Some(
                    v.parse::<AccountId>()
                        .map_err(|_| Problem::field("account_id", "must be a UUID"))?,
                )
            }
            // Control characters are refused here as in every body (PostgreSQL text cannot
            // hold a NUL: it was a 500 there).
            "external_id" if v.chars().any(char::is_control) => {
                return Err(Problem::field("external_id", "must not contain control characters"))
            }
            "external_id" => filter.external_id = Some(v.into_owned()),
            _ => {}
        }
    }
    Ok((filter, limit, offset, processing))
}

/// `GET /conciliation?limit&offset&status&account_id&external_id`: the user's requests, newest
/// first (a bare array). A filter naming another user's account (or none) is 404, as the
/// account is everywhere else.
#[utoipa::path(
    get, operation_id = "conciliation_list",
    path = "/conciliation",
    tag = "Reconciliation",
    security(("DashboardJwt" = [])),
    params(("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "Page size, 1 to 500 (default 50)"), ("offset" = Option<i64>, Query, minimum = 0, description = "Rows to skip (default 0)"), ("status" = Option<String>, Query, description = "`pending`, `processing` (lists nothing), `matched`, `not_found`, `ambiguous`, `failed`, `cancelled`, `expired`"), ("account_id" = Option<String>, Query, description = "Only this account's requests (UUID)"), ("external_id" = Option<String>, Query, description = "Only requests with this external id")),
    responses(
        (status = 200, description = "The requests", body = Vec<RequestOut>),
        (status = 400, description = "`VALIDATION_ERROR`: bad `status`, `account_id`, `limit` or `offset`", body = ApiErrorBody),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: `account_id` names no account of the user", body = ApiErrorBody),
    )
)]
pub async fn list(
    State(app): State<AppState>,
    who: DashboardUser,
    uri: Uri,
) -> Result<Json<Vec<RequestOut>>, ApiError> {
    let (filter, limit, offset, processing) = list_query(&uri)?;
    if let Some(account) = filter.account {
        app.store
            .account_for_user(who.user.id, account)
            .await?
            .ok_or_else(|| ApiError(Problem::not_found("Account not found")))?;
    }
    if processing {
        return Ok(Json(Vec::new()));
    }
    let rows = app.store.list_conciliation(who.user.id, &filter, limit, offset).await?;
    Ok(Json(rows.into_iter().map(RequestOut::from).collect()))
}
