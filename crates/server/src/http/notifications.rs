//! The notification webhook's management routes (docs/product.md §8): the delivery log, re-sending a
//! delivery, rotating the signing secret (the old one keeps signing for a grace period).

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::Json;
use reconbanker_store::{now, DeliveryId, DeliveryRow, CHANNEL_NOTIFICATION, CHANNEL_RESULT};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::OwnedAccount;
use super::dto::QueuedOut;
use super::error::{ApiError, Problem};
use super::extract::{DPath, NoBody, Page, PageParams};
use super::openapi::ApiErrorBody;
use crate::app;
use crate::domain::account_config::SigningChannel;
use crate::domain::exact_json::ExactJson;
use crate::support::time::ts;
use crate::AppState;

#[derive(Serialize, ToSchema)]
pub struct DeliveryOut {
    #[schema(value_type = String, format = Uuid)]
    id: DeliveryId,
    /// Notification channel: `assistance_required`, `login_failed`, `scrape_failed`,
    /// `poll_failed`; result channel: `matched`, `ambiguous`, `expired`, `bank_movement`.
    event_type: String,
    /// `pending`, `delivered`, `dead` (retries exhausted) or `skipped` (no longer relevant).
    status: String,
    attempts: i32,
    #[schema(required = true)]
    last_status: Option<i32>,
    #[schema(required = true)]
    last_error: Option<String>,
    #[schema(required = true)]
    next_attempt_at: Option<String>,
    #[schema(required = true)]
    last_attempt_at: Option<String>,
    created_at: String,
    #[schema(required = true)]
    delivered_at: Option<String>,
    /// The body that is POSTed, as it is sent (its amounts with every digit).
    #[schema(value_type = Value)]
    payload: ExactJson,
    /// Result channel: the request (or movement) whose deliveries go out in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    subject_id: Option<uuid::Uuid>,
}

impl From<DeliveryRow> for DeliveryOut {
    fn from(d: DeliveryRow) -> Self {
        Self {
            id: d.id,
            event_type: d.event_type,
            status: d.status,
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error,
            next_attempt_at: d.next_attempt_at.map(ts),
            last_attempt_at: d.last_attempt_at.map(ts),
            created_at: ts(d.created_at),
            delivered_at: d.delivered_at.map(ts),
            payload: ExactJson::parse(&d.payload).unwrap_or_else(ExactJson::null),
            subject_id: d.subject_id,
        }
    }
}

/// The delivery statuses a log can be filtered by.
const DELIVERY_STATUSES: [&str; 4] = ["pending", "delivered", "dead", "skipped"];

/// One channel's delivery log of an account, newest first, `?status&limit&offset` (shared by
/// the notification and the result webhook routes).
pub(crate) async fn list_channel(
    app: &AppState,
    OwnedAccount { user: who, account }: OwnedAccount,
    channel: &str,
    uri: &Uri,
) -> Result<Json<Vec<DeliveryOut>>, ApiError> {
    let query = uri.query();
    let page = Page::parse(query)?;
    let mut status = None;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k == "status" {
            let known = DELIVERY_STATUSES.iter().find(|s| **s == v);
            status = Some(
                *known.ok_or_else(|| Problem::field("status", "must be one of pending, delivered, dead, skipped"))?,
            );
        }
    }
    let rows = app
        .store
        .list_channel_deliveries(who.user.id, account.id, channel, status, page.limit, page.offset)
        .await?;
    Ok(Json(rows.into_iter().map(Into::into).collect()))
}

/// Queues one of the account's deliveries on `channel` again, now (same id, so the same
/// `webhook-id`); 404 when it is not there.
pub(crate) async fn resend_channel(
    app: &AppState,
    OwnedAccount { user: who, account }: OwnedAccount,
    channel: &str,
    delivery: &str,
) -> Result<(StatusCode, Json<QueuedOut>), ApiError> {
    let not_found = || ApiError(Problem::not_found("Delivery not found"));
    let delivery = delivery.parse::<DeliveryId>().map_err(|_| not_found())?;
    app.store
        .resend_channel_delivery(who.user.id, account.id, channel, delivery, now())
        .await?
        .ok_or_else(not_found)?;
    app.hub.wake_outbox();
    Ok((StatusCode::ACCEPTED, Json(QueuedOut::YES)))
}

/// `GET /accounts/:id/notifications?status&limit&offset`: the notification delivery log,
/// newest first.
#[utoipa::path(
    get, operation_id = "notifications_list",
    path = "/accounts/{id}/notifications",
    tag = "Webhooks",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The account's id (UUID)"), ("status" = Option<String>, Query, description = "Only deliveries in this status: `pending`, `delivered`, `dead`, `skipped`"), PageParams),
    responses(
        (status = 200, description = "The deliveries", body = Vec<DeliveryOut>),
        (status = 400, description = "`VALIDATION_ERROR`: bad `status`, `limit` or `offset`", body = ApiErrorBody),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such account of the user (or a malformed id)", body = ApiErrorBody),
    )
)]
pub async fn list(
    State(app): State<AppState>,
    owned: OwnedAccount,
    uri: Uri,
) -> Result<Json<Vec<DeliveryOut>>, ApiError> {
    list_channel(&app, owned, CHANNEL_NOTIFICATION, &uri).await
}

/// `POST /accounts/:id/notifications/:delivery_id/resend`: queue it again, now.
#[utoipa::path(
    post, operation_id = "notifications_resend",
    path = "/accounts/{id}/notifications/{delivery_id}/resend",
    tag = "Webhooks",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The account's id (UUID)"), ("delivery_id" = String, Path, description = "The delivery's id (UUID)")),
    responses(
        (status = 202, description = "Queued: `{\"queued\": true}`", body = QueuedOut),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such account or delivery of the user", body = ApiErrorBody),
    )
)]
pub async fn resend(
    State(app): State<AppState>,
    owned: OwnedAccount,
    DPath((_, delivery)): DPath<(String, String)>,
    _: NoBody,
) -> Result<(StatusCode, Json<QueuedOut>), ApiError> {
    resend_channel(&app, owned, CHANNEL_NOTIFICATION, &delivery).await
}

/// `GET /accounts/:id/webhooks/deliveries?status&limit&offset`: the result (and passthrough)
/// webhook's delivery log, newest first.
#[utoipa::path(
    get, operation_id = "notifications_list_result",
    path = "/accounts/{id}/webhooks/deliveries",
    tag = "Webhooks",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The account's id (UUID)"), ("status" = Option<String>, Query, description = "Only deliveries in this status: `pending`, `delivered`, `dead`, `skipped`"), PageParams),
    responses(
        (status = 200, description = "The deliveries", body = Vec<DeliveryOut>),
        (status = 400, description = "`VALIDATION_ERROR`: bad `status`, `limit` or `offset`", body = ApiErrorBody),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such account of the user (or a malformed id)", body = ApiErrorBody),
    )
)]
pub async fn list_result(
    State(app): State<AppState>,
    owned: OwnedAccount,
    uri: Uri,
) -> Result<Json<Vec<DeliveryOut>>, ApiError> {
    list_channel(&app, owned, CHANNEL_RESULT, &uri).await
}

/// `POST /accounts/:id/webhooks/deliveries/:delivery_id/resend`: queue it again, now.
#[utoipa::path(
    post, operation_id = "notifications_resend_result",
    path = "/accounts/{id}/webhooks/deliveries/{delivery_id}/resend",
    tag = "Webhooks",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The account's id (UUID)"), ("delivery_id" = String, Path, description = "The delivery's id (UUID)")),
    responses(
        (status = 202, description = "Queued: `{\"queued\": true}`", body = QueuedOut),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such account or delivery of the user", body = ApiErrorBody),
    )
)]
pub async fn resend_result(
    State(app): State<AppState>,
    owned: OwnedAccount,
    DPath((_, delivery)): DPath<(String, String)>,
    _: NoBody,
) -> Result<(StatusCode, Json<QueuedOut>), ApiError> {
    resend_channel(&app, owned, CHANNEL_RESULT, &delivery).await
}

#[derive(Serialize, ToSchema)]
pub struct Rotated {
    /// The new secret (`whsec_…`), on the notification route.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) notification_signing_secret: Option<String>,
    /// The new secret (`whsec_…`), on the result-webhook route.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) webhook_signing_secret: Option<String>,
    /// Until when the previous secret also signs deliveries (both signatures are sent).
    #[schema(required = true)]
    pub(crate) previous_valid_until: Option<String>,
}

/// `POST /accounts/:id/notifications/rotate-secret`: a new notification signing secret; the
/// old one keeps signing (a second `v1,` signature) for the grace period so receivers can
/// switch over.
#[utoipa::path(
    post, operation_id = "notifications_rotate",
    path = "/accounts/{id}/notifications/rotate-secret",
    tag = "Webhooks",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The account's id (UUID)")),
    responses(
        (status = 200, description = "The new secret", body = Rotated),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such account of the user (or a malformed id)", body = ApiErrorBody),
        (status = 409, description = "`CONFLICT`: the config kept changing under other writes (16 tries); send it again", body = ApiErrorBody),
    )
)]
pub async fn rotate(State(app): State<AppState>, owned: OwnedAccount, _: NoBody) -> Result<Json<Rotated>, ApiError> {
    rotate_channel(&app, owned.user.user.id, owned.account.id, SigningChannel::Notification).await
}

/// `POST /accounts/:id/webhooks/rotate-secret`: the same for the result and passthrough webhook
/// (`webhook_signing_secret`).
#[utoipa::path(
    post, operation_id = "notifications_rotate_result",
    path = "/accounts/{id}/webhooks/rotate-secret",
    tag = "Webhooks",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The account's id (UUID)")),
    responses(
        (status = 200, description = "The new secret", body = Rotated),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such account of the user (or a malformed id)", body = ApiErrorBody),
        (status = 409, description = "`CONFLICT`: the config kept changing under other writes (16 tries); send it again", body = ApiErrorBody),
    )
)]
pub async fn rotate_result(
    State(app): State<AppState>,
    owned: OwnedAccount,
    _: NoBody,
) -> Result<Json<Rotated>, ApiError> {
    rotate_channel(&app, owned.user.user.id, owned.account.id, SigningChannel::Result).await
}

pub(crate) async fn rotate_channel(
    app: &AppState,
    user: reconbanker_store::UserId,
    account: reconbanker_store::AccountId,
    channel: SigningChannel,
) -> Result<Json<Rotated>, ApiError> {
    let grace = app.config.signing_secret_grace;
    let until = crate::push::webhooks::grace_until(grace);
    let (_, secrets, fresh) = app::accounts::change_config(app, user, account, |_, secrets| {
        Ok::<_, app::AppError>(secrets.rotate(channel, (!grace.is_zero()).then(|| until.timestamp_millis())))
    })
    .await?;
    let still_signing = secrets.signing(channel).1.is_some();
    let (notification, result) = match channel {
        SigningChannel::Notification => (Some(fresh), None),
        SigningChannel::Result => (None, Some(fresh)),
    };
    Ok(Json(Rotated {
        notification_signing_secret: notification,
        webhook_signing_secret: result,
        previous_valid_until: still_signing.then(|| ts(until)),
    }))
}
