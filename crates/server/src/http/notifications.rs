//! The notification webhook's management routes (docs/product.md §8): the delivery log, re-sending a
//! delivery, rotating the signing secret (the old one keeps signing for a grace period).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use reconbanker_store::{now, DeliveryId, DeliveryRow};
use serde::Serialize;
use serde_json::Value;

use super::auth::OwnedAccount;
use super::dto::QueuedOut;
use super::error::{ApiError, Problem};
use super::extract::Page;
use crate::app;
use crate::domain::account_config::SigningChannel;
use crate::support::time::ts;
use crate::AppState;

#[derive(Serialize)]
pub struct DeliveryOut {
    id: DeliveryId,
    /// `assistance_required`, `login_failed` or `scrape_failed`.
    event_type: String,
    /// `pending`, `delivered`, `dead` (retries exhausted) or `skipped` (no longer relevant).
    status: String,
    attempts: i32,
    last_status: Option<i32>,
    last_error: Option<String>,
    next_attempt_at: Option<String>,
    last_attempt_at: Option<String>,
    created_at: String,
    delivered_at: Option<String>,
    /// The body that is POSTed.
    payload: Value,
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
            payload: serde_json::from_str(&d.payload).unwrap_or(Value::Null),
        }
    }
}

/// `GET /accounts/:id/notifications`: the delivery log, newest first.
pub async fn list(
    State(app): State<AppState>,
    OwnedAccount { user: who, account }: OwnedAccount,
    page: Page,
) -> Result<Json<Vec<DeliveryOut>>, ApiError> {
    let rows = app
        .store
        .list_deliveries(who.user.id, account.id, page.limit, page.offset)
        .await?;
    Ok(Json(rows.into_iter().map(Into::into).collect()))
}

/// `POST /accounts/:id/notifications/:delivery_id/resend`: queue it again, now.
pub async fn resend(
    State(app): State<AppState>,
    OwnedAccount { user: who, account }: OwnedAccount,
    Path((_, delivery)): Path<(String, String)>,
) -> Result<(StatusCode, Json<QueuedOut>), ApiError> {
    let not_found = || ApiError(Problem::not_found("Delivery not found"));
    let delivery = delivery.parse::<DeliveryId>().map_err(|_| not_found())?;
    app.store
        .resend_delivery(who.user.id, account.id, delivery, now())
        .await?
        .ok_or_else(not_found)?;
    app.hub.wake_outbox();
    Ok((StatusCode::ACCEPTED, Json(QueuedOut::YES)))
}

#[derive(Serialize)]
pub struct Rotated {
    #[serde(skip_serializing_if = "Option::is_none")]
    notification_signing_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_signing_secret: Option<String>,
    /// Until when the previous secret also signs deliveries (both signatures are sent).
    previous_valid_until: Option<String>,
}

/// `POST /accounts/:id/notifications/rotate-secret`: a new notification signing secret; the
/// old one keeps signing (a second `v1,` signature) for the grace period so receivers can
/// switch over.
pub async fn rotate(State(app): State<AppState>, owned: OwnedAccount) -> Result<Json<Rotated>, ApiError> {
    rotate_channel(&app, owned, SigningChannel::Notification).await
}

/// `POST /accounts/:id/webhooks/rotate-secret`: the same for the result and passthrough webhook
/// (`webhook_signing_secret`).
pub async fn rotate_result(State(app): State<AppState>, owned: OwnedAccount) -> Result<Json<Rotated>, ApiError> {
    rotate_channel(&app, owned, SigningChannel::Result).await
}

async fn rotate_channel(
    app: &AppState,
    OwnedAccount { user: who, account }: OwnedAccount,
    channel: SigningChannel,
) -> Result<Json<Rotated>, ApiError> {
    let (settings, mut secrets) = app::accounts::load_config(app, who.user.id, account.id).await?;
    let grace = app.config.signing_secret_grace;
    let until = crate::push::webhooks::grace_until(grace);
    let fresh = secrets.rotate(channel, (!grace.is_zero()).then(|| until.timestamp_millis()));
    let still_signing = secrets.signing(channel).1.is_some();
    app::accounts::save_config(app, who.user.id, account.id, &settings, &secrets).await?;
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
