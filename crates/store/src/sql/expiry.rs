//! Reconciliation: the expiry sweep (RECONCILIATION §5.8). It changes no request itself: it
//! marks the accounts with overdue open requests dirty, and their next match pass (which
//! expires first, under the account lock) closes them and writes the events and webhooks.

use sqlx::Row;
use uuid::Uuid;

use super::reconcile::OPEN_STATUSES;
use super::Db;
use crate::error::{map_err, StoreResult};
use crate::model::to_ms;
use crate::*;

/// Marks dirty each account of a user in `reconcile` mode with an open request whose
/// `expires_at <= now`; returns them, by id.
///
/// The accounts are read first and each is then marked by its own statement, so an instance's
/// sweep holds one account's state row at a time (two sweeps, or a sweep and a pass, cannot
/// deadlock). `version` does not move: the sweep changes nothing a pass reads, so a pass running
/// meanwhile still commits, and the new `dirty_seq` runs another one.
pub(super) async fn mark_overdue_dirty(pool: &sqlx::Pool<Db>, now: Timestamp) -> StoreResult<Vec<AccountId>> {
    // The status condition is the partial index's predicate, word for word (0008_expiry.sql).
    let sql = format!(
        "SELECT DISTINCT r.account_id FROM conciliation_requests r \
         JOIN accounts a ON a.id = r.account_id JOIN users u ON u.id = a.user_id \
         WHERE r.status IN {} AND r.expires_at <= $1 AND u.operation_mode = 'reconcile' \
         ORDER BY r.account_id",
        *OPEN_STATUSES
    );
    let rows = sqlx::query(&sql)
        .bind(to_ms(now))
        .fetch_all(pool)
        .await
        .map_err(map_err)?;
    let overdue = rows
        .iter()
        .map(|r| Ok(r.try_get::<Uuid, _>("account_id")?))
        .collect::<StoreResult<Vec<_>>>()?;
    let mut marked = Vec::with_capacity(overdue.len());
    for account in overdue {
        // An account deleted meanwhile is left out (no state row is created for it).
        let row = sqlx::query(
            "INSERT INTO reconcile_state (account_id, dirty_seq) SELECT $1, 1 \
             WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1) ON CONFLICT (account_id) DO UPDATE \
             SET dirty_seq = reconcile_state.dirty_seq + 1 RETURNING account_id",
        )
        .bind(account)
        .fetch_optional(pool)
        .await
        .map_err(map_err)?;
        if row.is_some() {
            marked.push(AccountId(account));
        }
    }
    Ok(marked)
}
