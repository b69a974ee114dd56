//! Passthrough (docs/reconciliation.md §7), inside the caller's transaction: the account's
//! first-read marker (the baseline), the forwarding decision for newly stored movements, and the
//! re-queue of one movement's `bank_movement` delivery.

use sqlx::Row;
use uuid::Uuid;

use super::reconcile::{values, MAX_PARAMS};
use super::rows::*;
use super::{Db, DELIVERY_COLS};
use crate::error::{map_err, StoreResult};
use crate::model::to_ms;
use crate::*;

type Conn = <Db as sqlx::Database>::Connection;

/// The operation mode in which new movements are forwarded.
const PASSTHROUGH: &str = "passthrough";
/// The operation mode in which requests are matched and results reported.
const RECONCILE: &str = "reconcile";

/// The columns of a movement, qualified by `m`.
const MOVEMENT_COLS_M: &str = "m.id, m.account_id, m.external_id, m.amount, m.currency, m.name, m.description, \
     m.received_at, m.read_at";

/// Whether a movement has a sender name worth forwarding.
fn has_name(m: &MovementRow) -> bool {
    m.name.as_deref().is_some_and(|n| !n.trim().is_empty())
}

/// Marks the account's first read: `true` when this is it (the account had no `first_read_at`;
/// it is set to `read_at`). Atomic on both backends: a concurrent first read waits on the row
/// and then sees it set.
pub(super) async fn take_first_read(conn: &mut Conn, account: AccountId, read_at: Timestamp) -> StoreResult<bool> {
    let row =
        sqlx::query("UPDATE accounts SET first_read_at = $2 WHERE id = $1 AND first_read_at IS NULL RETURNING id")
            .bind(account.0)
            .bind(to_ms(read_at))
            .fetch_optional(&mut *conn)
            .await
            .map_err(map_err)?;
    Ok(row.is_some())
}

/// The account owner's operation mode and the account's config settings, as of this
/// transaction; `None` when the account is gone.
async fn mode_and_settings(
    conn: &mut Conn,
    account: AccountId,
) -> StoreResult<Option<(Option<String>, Option<String>)>> {
    let row = sqlx::query(
        "SELECT u.operation_mode, c.settings FROM accounts a JOIN users u ON u.id = a.user_id \
         LEFT JOIN account_configs c ON c.account_id = a.id WHERE a.id = $1",
    )
    .bind(account.0)
    .fetch_optional(&mut *conn)
    .await
    .map_err(map_err)?;
    row.map(|r| Ok((r.try_get("operation_mode")?, r.try_get("settings")?)))
        .transpose()
}

/// Whether the account's owner is in `reconcile` mode, as of this transaction (`false` when the
/// account is gone): result webhooks are written in that mode only (§6, §7).
pub(super) async fn owner_reconciles(conn: &mut Conn, account: AccountId) -> StoreResult<bool> {
    let mode = mode_and_settings(conn, account).await?.and_then(|(mode, _)| mode);
    Ok(mode.as_deref() == Some(RECONCILE))
}

/// Writes the `bank_movement` deliveries of newly stored movements (not the first read's) when
/// the owner is in passthrough mode, in the order given; returns how many were written.
pub(super) async fn forward_new(
    conn: &mut Conn,
    account: AccountId,
    new: &[MovementRow],
    read_at: Timestamp,
    forward: &ForwardFor<'_>,
) -> StoreResult<u64> {
    if !new.iter().any(has_name) {
        return Ok(0);
    }
    let Some((mode, settings)) = mode_and_settings(conn, account).await? else {
        return Ok(0);
    };
    if mode.as_deref() != Some(PASSTHROUGH) {
        return Ok(0);
    }
    let deliveries: Vec<(Uuid, String)> = new
        .iter()
        .filter(|m| has_name(m))
        .filter_map(|m| forward(m, settings.as_deref()).map(|body| (m.id.0, body)))
        .collect();
    insert_deliveries(conn, account, &deliveries, read_at).await?;
    Ok(deliveries.len() as u64)
}

/// Inserts pending `bank_movement` deliveries `(movement, body)` due at `at`, many per
/// statement. A forwarded movement logs no event: the delivery's `event_id` is the movement id
/// (its cause).
async fn insert_deliveries(
    conn: &mut Conn,
    account: AccountId,
    deliveries: &[(Uuid, String)],
    at: Timestamp,
) -> StoreResult<Vec<DeliveryRow>> {
    let mut out = Vec::with_capacity(deliveries.len());
    for chunk in deliveries.chunks((MAX_PARAMS - 4) / 4) {
        let sql = format!(
            "INSERT INTO deliveries (id, event_id, payload, subject_id, account_id, event_type, status, \
             attempts, next_attempt_at, created_at, channel) \
             SELECT v.column1, v.column2, v.column3, v.column4, $1, $2, 'pending', 0, $3, $3, $4 \
             FROM (VALUES {}) AS v RETURNING {DELIVERY_COLS}",
            values(5, 4, chunk.len())
        );
        let mut q = sqlx::query(&sql)
            .bind(account.0)
            .bind(BANK_MOVEMENT)
            .bind(to_ms(at))
            .bind(CHANNEL_RESULT);
        for (movement, body) in chunk {
            q = q.bind(DeliveryId::new().0).bind(*movement).bind(body).bind(*movement);
        }
        for r in q.fetch_all(&mut *conn).await.map_err(map_err)? {
            out.push(delivery_from(&r)?);
        }
    }
    Ok(out)
}

/// `Store::notify_movement` inside the caller's transaction.
pub(super) async fn notify(
    conn: &mut Conn,
    user: UserId,
    account: AccountId,
    movement: MovementId,
    now: Timestamp,
    build: &ForwardFor<'_>,
) -> StoreResult<Option<MovementNotify>> {
    let sql = format!(
        "SELECT {MOVEMENT_COLS_M}, u.operation_mode, c.settings FROM movements m \
         JOIN accounts a ON a.id = m.account_id JOIN users u ON u.id = a.user_id \
         LEFT JOIN account_configs c ON c.account_id = a.id \
         WHERE m.id = $1 AND m.account_id = $2 AND a.user_id = $3"
    );
    let Some(row) = sqlx::query(&sql)
        .bind(movement.0)
        .bind(account.0)
        .bind(user.0)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_err)?
    else {
        return Ok(None);
    };
    let m = movement_from(&row)?;
    let mode: Option<String> = row.try_get("operation_mode")?;
    let settings: Option<String> = row.try_get("settings")?;
    if mode.as_deref() != Some(PASSTHROUGH) {
        return Ok(Some(MovementNotify::NotPassthrough));
    }
    if !has_name(&m) {
        return Ok(Some(MovementNotify::NoSenderName));
    }
    let sql = format!(
        "UPDATE deliveries SET status = 'pending', next_attempt_at = $4, claimed_by = 'requeued' WHERE id = \
         (SELECT id FROM deliveries WHERE subject_id = $1 AND account_id = $2 AND event_type = $3 \
         ORDER BY created_at DESC, id DESC LIMIT 1) RETURNING {DELIVERY_COLS}"
    );
    let again = sqlx::query(&sql)
        .bind(movement.0)
        .bind(account.0)
        .bind(BANK_MOVEMENT)
        .bind(to_ms(now))
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_err)?;
    if let Some(r) = again {
        return Ok(Some(MovementNotify::Queued(Box::new(delivery_from(&r)?))));
    }
    let Some(body) = build(&m, settings.as_deref()) else {
        return Ok(Some(MovementNotify::NothingToSend));
    };
    let mut written = insert_deliveries(conn, account, &[(m.id.0, body)], now).await?;
    match written.pop() {
        Some(d) => Ok(Some(MovementNotify::Queued(Box::new(d)))),
        None => Err(corrupt("deliveries", "row missing after insert")),
    }
}
