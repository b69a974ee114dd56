//! Passthrough routes of the dashboard API (docs/reconciliation.md §7): sending one movement's
//! `bank_movement` webhook by hand (the docs' "Resend bank movement webhook"). Another user's
//! account or movement is always 404.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use reconbanker_store::{now, MovementId, MovementNotify};

use super::auth::OwnedAccount;
use super::dto::QueuedOut;
use super::error::{ApiError, Problem};
use super::extract::{DPath, NoBody};
use super::openapi::ApiErrorBody;
use crate::reconcile::passthrough;
use crate::AppState;

/// `POST /accounts/:accountId/movements/:movementId/notify`: queues the movement's
/// `bank_movement` delivery again (same delivery id, so the same `webhook-id`), or creates it
/// when the movement has none (a baseline movement, or one stored in reconcile mode).
#[utoipa::path(
    post, operation_id = "passthrough_notify",
    path = "/accounts/{id}/movements/{movement_id}/notify",
    tag = "Webhooks",
    security(("DashboardJwt" = [])),
    params(("id" = String, Path, description = "The account's id (UUID)"), ("movement_id" = String, Path, description = "The movement's id (UUID)")),
    responses(
        (status = 202, description = "Queued: `{\"queued\": true}`", body = QueuedOut),
        (status = 401, description = "`UNAUTHORIZED`", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such account or movement of the user", body = ApiErrorBody),
        (status = 409, description = "`NOT_PASSTHROUGH_MODE`, `NO_SENDER_NAME` or `NOTHING_TO_SEND`", body = ApiErrorBody),
    )
)]
pub async fn notify(
    State(app): State<AppState>,
    OwnedAccount { user: who, account }: OwnedAccount,
    DPath((_, movement)): DPath<(String, String)>,
    _: NoBody,
) -> Result<(StatusCode, Json<QueuedOut>), ApiError> {
    notify_as(&app, who.user.id, account.id, &movement).await?;
    Ok((StatusCode::ACCEPTED, Json(QueuedOut::YES)))
}

/// Queues a movement's `bank_movement` delivery for its owner (the JSON route and the
/// dashboard's account page).
pub(crate) async fn notify_as(
    app: &AppState,
    user: reconbanker_store::UserId,
    account: reconbanker_store::AccountId,
    movement: &str,
) -> Result<(), ApiError> {
    let not_found = || ApiError(Problem::not_found("Movement not found"));
    let movement = movement.parse::<MovementId>().map_err(|_| not_found())?;
    let done = app
        .store
        .notify_movement(user, account, movement, now(), &passthrough::on_request)
        .await?
        .ok_or_else(not_found)?;
    match done {
        MovementNotify::Queued(_) => {
            app.hub.wake_outbox();
            Ok(())
        }
        MovementNotify::NotPassthrough => Err(Problem::conflict(
            "NOT_PASSTHROUGH_MODE",
            "Forwarding movements needs the passthrough operation mode (PUT /me/operation-mode)",
        )
        .into()),
        MovementNotify::NoSenderName => {
            Err(Problem::conflict("NO_SENDER_NAME", "The movement has no sender name to forward").into())
        }
        MovementNotify::NothingToSend => Err(Problem::conflict(
            "NOTHING_TO_SEND",
            "The movement's amount is not a decimal number; there is nothing to forward",
        )
        .into()),
    }
}
