//! The reconciliation review routes of the dashboard API (docs/reconciliation.md §8): a
//! request's detail, resolving it by hand (or ruling its candidates out), running and notifying
//! it again, the per-account summary, and ignoring movements. Another user's request, account,
//! movement or delivery is always 404 `NOT_FOUND`.

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::Json;
use reconbanker_store::{
    now, AccountId, AttemptRow, ConciliationDetail, ConciliationRequestId, DeliveryId, IgnoreOutcome, MatchRow,
    MovementId, NotifyOutcome, RequestChange, ResolveOutcome, UserId, UserRow,
};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::accounts::MovementOut;
use super::auth::{DashboardUser, OwnedAccount};
use super::conciliation::RequestOut;
use super::dto::QueuedOut;
use super::error::{ApiError, Problem};
use super::extract::{DJson, DPath, NoBody};
use super::notifications::DeliveryOut;
use super::openapi::ApiErrorBody;
use crate::app;
use crate::reconcile::matching::Checks;
use crate::reconcile::orders::{canonical_amount, parse_signed_decimal};
use crate::reconcile::review::{self, Refusal, ReviewEvents, Reviewed};
use crate::support::time::ts;
use crate::AppState;

/// How many times a resolve is tried again when the request's amount changed between the checks
/// and the commit (a poll updated the order meanwhile).
const RESOLVE_TRIES: usize = 3;

#[derive(Serialize, ToSchema)]
pub struct AttemptOut {
    id: String,
    request_id: String,
    attempt_number: i64,
    result: String,
    #[schema(required = true)]
    reason: Option<String>,
    created_at: String,
    trigger: String,
    /// The human behind a `resolve`.
    #[schema(required = true)]
    user_id: Option<String>,
    /// As recorded: for each candidate, the movement id, checks, score (thousandths) and verdict.
    candidates: Value,
}

impl From<AttemptRow> for AttemptOut {
    fn from(a: AttemptRow) -> Self {
        Self {
            id: a.id.to_string(),
            request_id: a.request_id.to_string(),
            attempt_number: a.attempt_number,
            result: a.result,
            reason: a.reason,
            created_at: ts(a.created_at),
            trigger: a.trigger,
            user_id: a.user_id.map(|u| u.to_string()),
            candidates: serde_json::from_str(&a.candidates).unwrap_or(Value::Array(Vec::new())),
        }
    }
}

/// A bank amount as canonical decimal text (`"1500.00"`), or as reported when it is not one.
pub(crate) fn amount_text(raw: &str) -> String {
    parse_signed_decimal(raw.trim())
        .map(canonical_amount)
        .unwrap_or_else(|| raw.to_owned())
}

/// The bank's instant in UTC with milliseconds, or the bank's text when it did not parse.
pub(crate) fn received_text(ms: Option<i64>, raw: &str) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(ts)
        .unwrap_or_else(|| raw.to_owned())
}

#[derive(Serialize, ToSchema)]
pub struct MatchOut {
    id: String,
    request_id: String,
    bank_transaction_id: String,
    is_primary: bool,
    amount: String,
    currency: String,
    /// The movement's (payer's) name.
    #[schema(required = true)]
    sender_name: Option<String>,
    received_at: String,
    /// `engine` or `manual`.
    matched_by: String,
    #[schema(required = true)]
    matched_by_user: Option<String>,
    matched_at: String,
    /// Thousandths (1000 for a reference match).
    score: i64,
    explanation: Value,
}

impl From<MatchRow> for MatchOut {
    fn from(m: MatchRow) -> Self {
        Self {
            id: m.id.to_string(),
            request_id: m.request_id.to_string(),
            bank_transaction_id: m.movement.id.to_string(),
            is_primary: true,
            amount: amount_text(&m.movement.amount),
            currency: m.movement.currency,
            sender_name: m.movement.name,
            received_at: received_text(m.movement.received_at_ms, &m.movement.received_at),
            matched_by: m.matched_by,
            matched_by_user: m.matched_by_user.map(|u| u.to_string()),
            matched_at: ts(m.matched_at),
            score: m.score,
            explanation: serde_json::from_str(&m.explanation).unwrap_or(Value::Null),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CandidateMovementOut {
    id: String,
    amount: String,
    currency: String,
    #[schema(required = true)]
    name: Option<String>,
    description: String,
    received_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct TakenOut {
    request_id: String,
    external_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct CandidateOut {
    movement: CandidateMovementOut,
    /// `{amount, currency, window, reference}` (booleans) and `name` (`{score, band, pairs}`).
    #[schema(value_type = Object)]
    checks: Checks,
    /// Thousandths: 1000 for a reference match, else the name score.
    score: u16,
    /// `chosen`, `alternative`, `weak`, `no_sender_name`, `name_too_different`, `taken`,
    /// `rejected`, `outside_window`, `received_at_unparseable`, `not_a_credit`, `currency_mismatch`, …
    #[schema(value_type = String)]
    verdict: &'static str,
    /// With `verdict: taken`: the request that has the movement.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    taken_by: Option<TakenOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    ignored_at: Option<String>,
}

impl From<Reviewed> for CandidateOut {
    fn from(c: Reviewed) -> Self {
        let m = c.movement;
        Self {
            movement: CandidateMovementOut {
                id: m.id.to_string(),
                amount: amount_text(&m.amount),
                currency: m.currency,
                name: m.name,
                description: m.description,
                received_at: received_text(m.received_at_ms, &m.received_at),
            },
            checks: c.checks,
            score: c.score,
            verdict: c.verdict,
            taken_by: c
                .taken_by
                .filter(|_| c.verdict == "taken")
                .map(|(request, external_id)| TakenOut {
                    request_id: request.to_string(),
                    external_id,
                }),
            ignored_at: c.ignored_at.map(ts),
        }
    }
}

/// `GET /conciliation/:requestId`: the list item, then `attempts`, `match`, `candidates` (the
/// review view) and `deliveries` (the request's result webhooks).
#[derive(Serialize, ToSchema)]
pub struct DetailOut {
    #[serde(flatten)]
    request: RequestOut,
    attempts: Vec<AttemptOut>,
    #[serde(rename = "match")]
    #[schema(required = true)]
    matched: Option<MatchOut>,
    candidates: Vec<CandidateOut>,
    deliveries: Vec<DeliveryOut>,
}

impl From<ConciliationDetail> for DetailOut {
    fn from(d: ConciliationDetail) -> Self {
        let candidates = review::candidates(&d);
        Self {
            attempts: d.attempts.into_iter().map(Into::into).collect(),
            matched: d.matched.map(Into::into),
            candidates: candidates.into_iter().map(Into::into).collect(),
            deliveries: d.deliveries.into_iter().map(Into::into).collect(),
            request: RequestOut::from(d.request),
        }
    }
}

fn request_not_found() -> ApiError {
    ApiError(Problem::not_found("Request not found"))
}

/// A request id from the path; a malformed one is as unknown as another user's (404).
pub(crate) fn request_id(raw: &str) -> Result<ConciliationRequestId, ApiError> {
    raw.parse().map_err(|_| request_not_found())
}

/// Decisions about requests are taken in the reconcile mode only: in passthrough (or no mode)
/// requests stay frozen and no result webhook is sent (docs/reconciliation.md §6, §7).
fn reconciling(user: &UserRow) -> Result<(), ApiError> {
    if user.operation_mode.as_deref() == Some("reconcile") {
        return Ok(());
    }
    Err(not_reconciling())
}

/// The store checks the mode again under the account's lock (a switch may land in between).
fn not_reconciling() -> ApiError {
    ApiError(Problem::conflict(
        "NOT_RECONCILE_MODE",
        "Requests are decided in the reconcile operation mode only (PUT /me/operation-mode)",
    ))
}

fn closed(status: reconbanker_store::ConciliationStatus) -> ApiError {
    ApiError(Problem::conflict(
        "REQUEST_CLOSED",
        format!("The request is {}: it can no longer change", status.as_str()),
    ))
}

async fn detail_of(app: &AppState, user: UserId, id: ConciliationRequestId) -> Result<ConciliationDetail, ApiError> {
    app.store
        .conciliation_detail(user, id)
        .await?
        .ok_or_else(request_not_found)
}

/// The events builder of `user`'s actions on `account` (its settings: extra fields,
/// `notify_on_expired`).
/// What every action on a request starts with: the user's request (404 otherwise), the
/// reconcile mode (409 otherwise; the store checks it again under the account's lock) and the
/// settings of the request's account (its webhook extra fields and `notify_on_expired`).
async fn acting_on(
    app: &AppState,
    who: &UserRow,
    id: ConciliationRequestId,
) -> Result<
    (
        reconbanker_store::ConciliationRow,
        crate::domain::account_config::Settings,
    ),
    ApiError,
> {
    let r = app
        .store
        .conciliation_for_user(who.id, id)
        .await?
        .ok_or_else(request_not_found)?
        .request;
    reconciling(who)?;
    let settings = app::accounts::load_config(app, who.id, r.account_id).await?.0;
    Ok((r, settings))
}

#[utoipa::path(
    get, operation_id = "review_detail",
    path = "/conciliation/{id}",
    tag = "Reconciliation",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The request's id (UUID)")),
    responses(
        (status = 200, description = "The request in detail", body = DetailOut),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such request of the user (or a malformed id)", body = ApiErrorBody),
    )
)]
/// `GET /conciliation/:requestId`.
pub async fn detail(
    State(app): State<AppState>,
    who: DashboardUser,
    DPath(id): DPath<String>,
) -> Result<Json<DetailOut>, ApiError> {
    let id = request_id(&id)?;
    Ok(Json(detail_of(&app, who.user.id, id).await?.into()))
}

/// The body of `POST /conciliation/{id}/resolve` (read as a JSON object by `resolve_target`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ResolveIn {
    /// A movement of the request's account (UUID), or `null` to rule the current candidates out.
    #[schema(required = true)]
    movement_id: Option<String>,
}

/// `movement_id` of a resolve: a movement, or `null` to rule the candidates out.
fn resolve_target(body: &Value) -> Result<Option<MovementId>, ApiError> {
    const MESSAGE: &str = "must be a movement id (UUID), or null to rule the current candidates out";
    if let Some(unknown) = body
        .as_object()
        .and_then(|o| o.keys().find(|k| k.as_str() != "movement_id"))
    {
        return Err(Problem::field(unknown, "is not a known field").into());
    }
    match body.get("movement_id") {
        None => Err(Problem::field("movement_id", "is required (a movement id, or null)").into()),
        Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s
            .parse::<MovementId>()
            .map(Some)
            .map_err(|_| Problem::field("movement_id", MESSAGE).into()),
        Some(_) => Err(Problem::field("movement_id", MESSAGE).into()),
    }
}

/// `POST /conciliation/:requestId/resolve` `{movement_id}`: match the request to that movement
/// by hand (the window is ignored, never the amount and currency), or with `null` rule its
/// current candidates out (the request becomes `not_found`). 200 with the detail.
#[utoipa::path(
    post, operation_id = "review_resolve",
    path = "/conciliation/{id}/resolve",
    tag = "Reconciliation",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The request's id (UUID)")),
    request_body(content = ResolveIn, content_type = "application/json"),
    responses(
        (status = 200, description = "The request in detail, decided", body = DetailOut),
        (status = 400, description = "`VALIDATION_ERROR` (malformed body, unknown field, bad movement_id), `MOVEMENT_NOT_ELIGIBLE` or `AMOUNT_MISMATCH`", body = ApiErrorBody),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such request or movement of the user", body = ApiErrorBody),
        (status = 409, description = "`NOT_RECONCILE_MODE`, `REQUEST_CLOSED`, `MOVEMENT_TAKEN` or `CONFLICT`", body = ApiErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ApiErrorBody),
    )
)]
pub async fn resolve(
    State(app): State<AppState>,
    who: DashboardUser,
    DPath(id): DPath<String>,
    DJson(body): DJson<Value>,
) -> Result<Json<DetailOut>, ApiError> {
    let id = request_id(&id)?;
    // The body is judged after the request (docs/reconciliation.md §8: 404, 409, then 400).
    resolve_as(&app, &who.user, id, resolve_target(&body)).await?;
    Ok(Json(detail_of(&app, who.user.id, id).await?.into()))
}

/// The resolve of `resolve` (and of the dashboard's review page): `target` a movement to match
/// by hand, or `None` to rule the current candidates out; a refused target is answered only
/// once the request is found open.
pub(crate) async fn resolve_as(
    app: &AppState,
    who: &UserRow,
    id: ConciliationRequestId,
    target: Result<Option<MovementId>, ApiError>,
) -> Result<(), ApiError> {
    let user = who.id;
    let (r, settings) = acting_on(app, who, id).await?;
    if !r.status.is_open() {
        return Err(closed(r.status));
    }
    let target = target?;
    let events = ReviewEvents {
        hub: &app.hub,
        user,
        account: r.account_id,
        settings: &settings,
    };
    match target {
        None => {
            let detail = detail_of(app, user, id).await?;
            let r = &detail.request.request;
            let view = review::candidates(&detail);
            let rejected = review::to_reject(r, &view);
            let candidates = review::candidates_json(&view);
            let build = |row: &reconbanker_store::ConciliationRow| events.rejected(row, &rejected);
            match app
                .store
                .reject_candidates(user, id, &rejected, &candidates, app.clock.now(), &build)
                .await?
            {
                RequestChange::Done(_, logged) => app.hub.publish(logged),
                RequestChange::Closed(st) => return Err(closed(st)),
                RequestChange::NotFound => return Err(request_not_found()),
                RequestChange::NotReconciling => return Err(not_reconciling()),
            }
        }
        Some(movement) => {
            let movement_not_found = || ApiError(Problem::not_found("Movement not found"));
            let mut tries = 0;
            loop {
                tries += 1;
                let Some(m) = app.store.movement_for_user(user, movement).await? else {
                    return Err(movement_not_found());
                };
                let Some(current) = app.store.conciliation_for_user(user, id).await? else {
                    return Err(request_not_found());
                };
                let r = current.request;
                if !r.status.is_open() {
                    return Err(closed(r.status));
                }
                let manual = review::manual_match(
                    &r,
                    m.account_id,
                    &m.movement,
                    m.taken_by.is_some(),
                    m.ignored_at.is_some(),
                    user,
                )
                .map_err(refusal)?;
                let build = |e: reconbanker_store::PassEvent<'_>| events.resolved(e);
                match app
                    .store
                    .resolve_conciliation(user, &manual, app.clock.now(), &build)
                    .await?
                {
                    ResolveOutcome::Resolved(_, logged) => {
                        app.hub.publish(logged);
                        break;
                    }
                    ResolveOutcome::Changed if tries < RESOLVE_TRIES => continue,
                    ResolveOutcome::Changed => {
                        return Err(ApiError(Problem::conflict(
                            "CONFLICT",
                            "The order keeps changing; try again",
                        )))
                    }
                    ResolveOutcome::NotFound => return Err(request_not_found()),
                    ResolveOutcome::NotReconciling => return Err(not_reconciling()),
                    ResolveOutcome::MovementNotFound => return Err(movement_not_found()),
                    ResolveOutcome::Closed(st) => return Err(closed(st)),
                    ResolveOutcome::OtherAccount => {
                        return Err(refusal(Refusal::NotEligible("The movement belongs to another account")))
                    }
                    ResolveOutcome::Ignored => {
                        return Err(refusal(Refusal::NotEligible(
                            "The movement is ignored; un-ignore it first",
                        )))
                    }
                    ResolveOutcome::Taken => return Err(refusal(Refusal::Taken)),
                }
            }
        }
    }
    // Other requests of the account may be decidable now.
    app.matcher_wake.notify_one();
    Ok(())
}

fn refusal(r: Refusal) -> ApiError {
    ApiError(match r {
        Refusal::NotEligible(why) => Problem::new(StatusCode::BAD_REQUEST, "MOVEMENT_NOT_ELIGIBLE", why),
        Refusal::Taken => Problem::conflict("MOVEMENT_TAKEN", "The movement already settled another request"),
        Refusal::AmountMismatch => Problem::new(
            StatusCode::BAD_REQUEST,
            "AMOUNT_MISMATCH",
            "The movement's amount or currency differs from the request's",
        ),
    })
}

/// `POST /conciliation/:requestId/run`: evaluate the open request again (back to `pending`;
/// the next pass records an attempt with trigger `run`). 202.
#[utoipa::path(
    post, operation_id = "review_run",
    path = "/conciliation/{id}/run",
    tag = "Reconciliation",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The request's id (UUID)")),
    responses(
        (status = 202, description = "Queued: `{\"queued\": true}`", body = QueuedOut),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such request of the user (or a malformed id)", body = ApiErrorBody),
        (status = 409, description = "`NOT_RECONCILE_MODE` or `REQUEST_CLOSED`", body = ApiErrorBody),
    )
)]
pub async fn run(
    State(app): State<AppState>,
    who: DashboardUser,
    DPath(id): DPath<String>,
    _: NoBody,
) -> Result<(StatusCode, Json<QueuedOut>), ApiError> {
    let id = request_id(&id)?;
    run_as(&app, &who.user, id).await?;
    Ok((StatusCode::ACCEPTED, Json(QueuedOut::YES)))
}

/// The run of `run` (and of the dashboard's review page).
pub(crate) async fn run_as(app: &AppState, who: &UserRow, id: ConciliationRequestId) -> Result<(), ApiError> {
    let user = who.id;
    let (r, settings) = acting_on(app, who, id).await?;
    let events = ReviewEvents {
        hub: &app.hub,
        user,
        account: r.account_id,
        settings: &settings,
    };
    let build = |row: &reconbanker_store::ConciliationRow| events.run(row);
    match app.store.run_conciliation(user, id, app.clock.now(), &build).await? {
        RequestChange::Done(_, logged) => app.hub.publish(logged),
        RequestChange::Closed(st) => return Err(closed(st)),
        RequestChange::NotFound => return Err(request_not_found()),
        RequestChange::NotReconciling => return Err(not_reconciling()),
    }
    app.matcher_wake.notify_one();
    Ok(())
}

#[derive(Serialize, ToSchema)]
pub struct NotifiedOut {
    queued: bool,
    /// The delivery queued: its id is the `webhook-id` the receiver sees.
    #[schema(value_type = String, format = Uuid)]
    delivery_id: DeliveryId,
}

/// `POST /conciliation/:requestId/notify`: send the request's result webhook again — its latest
/// delivery of the current status queued again (same `webhook-id`), or a new one from the
/// current state. 409 `NOTHING_TO_SEND` for a status without a result webhook.
#[utoipa::path(
    post, operation_id = "review_notify",
    path = "/conciliation/{id}/notify",
    tag = "Reconciliation",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The request's id (UUID)")),
    responses(
        (status = 202, description = "Queued", body = NotifiedOut),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such request of the user (or a malformed id)", body = ApiErrorBody),
        (status = 409, description = "`NOT_RECONCILE_MODE` or `NOTHING_TO_SEND`", body = ApiErrorBody),
    )
)]
pub async fn notify(
    State(app): State<AppState>,
    who: DashboardUser,
    DPath(id): DPath<String>,
    _: NoBody,
) -> Result<(StatusCode, Json<NotifiedOut>), ApiError> {
    let id = request_id(&id)?;
    let delivery = notify_as(&app, &who.user, id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(NotifiedOut {
            queued: true,
            delivery_id: delivery,
        }),
    ))
}

/// The re-send of `notify` (and of the dashboard's review page): the delivery queued.
pub(crate) async fn notify_as(
    app: &AppState,
    who: &UserRow,
    id: ConciliationRequestId,
) -> Result<DeliveryId, ApiError> {
    let user = who.id;
    let (r, settings) = acting_on(app, who, id).await?;
    let events = ReviewEvents {
        hub: &app.hub,
        user,
        account: r.account_id,
        settings: &settings,
    };
    let build = |row: &reconbanker_store::ConciliationRow, m: Option<&reconbanker_store::EligibleMovement>| {
        events.notified(row, m)
    };
    let delivery = match app.store.notify_conciliation(user, id, app.clock.now(), &build).await? {
        NotifyOutcome::Requeued(d, logged) | NotifyOutcome::Created(d, logged) => {
            app.hub.publish(logged);
            d
        }
        NotifyOutcome::NothingToSend(st) => {
            return Err(ApiError(Problem::conflict(
                "NOTHING_TO_SEND",
                format!("A {} request has no result webhook to send", st.as_str()),
            )))
        }
        NotifyOutcome::NotFound => return Err(request_not_found()),
        NotifyOutcome::NotReconciling => return Err(not_reconciling()),
    };
    app.hub.wake_outbox();
    Ok(delivery.id)
}

#[derive(Serialize, ToSchema)]
pub struct SummaryOut {
    account_id: String,
    /// Every status with its count: `pending`, `not_found`, `ambiguous`, `failed`, `matched`,
    /// `cancelled`, `expired`.
    #[schema(value_type = std::collections::BTreeMap<String, i64>)]
    counts: Map<String, Value>,
    /// The review queue: `ambiguous`, plus `not_found` with reason `weak_name_only` or
    /// `no_sender_name`.
    review: i64,
}

/// `GET /conciliation/summary?account_id`: the user's requests counted per status, per
/// account (every account of the user, or the one named; another user's is 404).
#[utoipa::path(
    get, operation_id = "review_summary",
    path = "/conciliation/summary",
    tag = "Reconciliation",
    security(("DashboardJwt" = [])),
    params(("account_id" = Option<String>, Query, description = "Only this account (UUID)")),
    responses(
        (status = 200, description = "Per account", body = Vec<SummaryOut>),
        (status = 400, description = "`VALIDATION_ERROR`: `account_id` is not a UUID", body = ApiErrorBody),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such account of the user (or a malformed id)", body = ApiErrorBody),
    )
)]
pub async fn summary(
    State(app): State<AppState>,
    who: DashboardUser,
    uri: Uri,
) -> Result<Json<Vec<SummaryOut>>, ApiError> {
    let mut account = None;
    for (k, v) in url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        if k == "account_id" {
            let id = v
                .parse::<AccountId>()
                .map_err(|_| Problem::field("account_id", "must be a UUID"))?;
            app.store
                .account_for_user(who.user.id, id)
                .await?
                .ok_or_else(|| ApiError(Problem::not_found("Account not found")))?;
            account = Some(id);
        }
    }
    let rows = app.store.conciliation_summary(who.user.id, account).await?;
    Ok(Json(
        rows.into_iter()
            .map(|s| SummaryOut {
                account_id: s.account_id.to_string(),
                counts: s
                    .counts
                    .into_iter()
                    .map(|(st, n)| (st.as_str().to_owned(), Value::from(n)))
                    .collect(),
                review: s.review,
            })
            .collect(),
    ))
}

/// A movement id from the path; a malformed one is 404 like an unknown one.
fn movement_id(raw: &str) -> Result<MovementId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError(Problem::not_found("Movement not found")))
}

pub(crate) async fn set_ignored(
    app: &AppState,
    user: UserId,
    account: &reconbanker_store::AccountRow,
    movement: &str,
    ignore: bool,
) -> Result<Json<MovementOut>, ApiError> {
    let movement = movement_id(movement)?;
    let settings = app::accounts::load_config(app, user, account.id).await?.0;
    let events = ReviewEvents {
        hub: &app.hub,
        user,
        account: account.id,
        settings: &settings,
    };
    let build = |m: &reconbanker_store::MovementRow| events.movement(m, ignore);
    let at = ignore.then(now);
    match app
        .store
        .set_movement_ignored(user, account.id, movement, at, &build)
        .await?
    {
        IgnoreOutcome::Done(m, ignored_at, logged) => {
            if !logged.is_empty() {
                app.hub.publish(logged);
                // Ambiguous sets may change; a movement back in play may settle a request.
                app.matcher_wake.notify_one();
            }
            Ok(Json(MovementOut::of(m, None, ignored_at)))
        }
        IgnoreOutcome::Taken => Err(ApiError(Problem::conflict(
            "MOVEMENT_TAKEN",
            "The movement settled a request; it cannot be ignored",
        ))),
        IgnoreOutcome::NotFound => Err(ApiError(Problem::not_found("Movement not found"))),
    }
}

/// `POST /accounts/:accountId/movements/:movementId/ignore`: leave the movement out of
/// matching. 200 with the movement as the movements list shows it.
#[utoipa::path(
    post, operation_id = "review_ignore",
    path = "/accounts/{id}/movements/{movement_id}/ignore",
    tag = "Reconciliation",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The account's id (UUID)"), ("movement_id" = String, Path, description = "The movement's id (UUID)")),
    responses(
        (status = 200, description = "The movement, ignored", body = MovementOut),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such account or movement of the user", body = ApiErrorBody),
        (status = 409, description = "`MOVEMENT_TAKEN`: it settled a request", body = ApiErrorBody),
    )
)]
pub async fn ignore(
    State(app): State<AppState>,
    owned: OwnedAccount,
    DPath((_, movement)): DPath<(String, String)>,
    _: NoBody,
) -> Result<Json<MovementOut>, ApiError> {
    set_ignored(&app, owned.user.user.id, &owned.account, &movement, true).await
}

/// `DELETE /accounts/:accountId/movements/:movementId/ignore`: back into matching.
#[utoipa::path(
    delete, operation_id = "review_unignore",
    path = "/accounts/{id}/movements/{movement_id}/ignore",
    tag = "Reconciliation",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The account's id (UUID)"), ("movement_id" = String, Path, description = "The movement's id (UUID)")),
    responses(
        (status = 200, description = "The movement, back in matching", body = MovementOut),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such account or movement of the user", body = ApiErrorBody),
        (status = 409, description = "`MOVEMENT_TAKEN`: it settled a request", body = ApiErrorBody),
    )
)]
pub async fn unignore(
    State(app): State<AppState>,
    owned: OwnedAccount,
    DPath((_, movement)): DPath<(String, String)>,
    _: NoBody,
) -> Result<Json<MovementOut>, ApiError> {
    set_ignored(&app, owned.user.user.id, &owned.account, &movement, false).await
}
