//! Issue 11 (scale-out): codes handed between instances (`code_offers`), and the leases a dead
//! instance left behind.

use sqlx::Row;
use uuid::Uuid;

use super::{Db, BACKEND};
use crate::error::{map_err, StoreResult};
use crate::model::{to_ms, try_from_ms};
use crate::*;

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} out of range"))
}

pub(super) async fn offer(pool: &sqlx::Pool<Db>, o: &CodeOffer, forget_before: Timestamp) -> StoreResult<()> {
    if BACKEND == "postgres" {
        // One statement, one round trip; `code_offers` is unlogged and has no foreign key on
        // PostgreSQL (migration 0018), so this commit writes no WAL and waits for no flush. The
        // request must exist (read, not locked: a lock would be a WAL record).
        let done = sqlx::query(
            "WITH gone AS (DELETE FROM code_offers WHERE created_at < $5) \
             INSERT INTO code_offers (id, request_id, sealed, state, created_at) \
             SELECT $1, $2, $3, 'offered', $4 WHERE EXISTS (SELECT 1 FROM assistance_requests WHERE id = $2)",
        )
        .bind(o.id)
        .bind(o.request_id.0)
        .bind(o.sealed.as_deref())
        .bind(to_ms(o.created_at))
        .bind(to_ms(forget_before))
        .execute(pool)
        .await
        .map_err(map_err)?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Database(sqlx::Error::RowNotFound));
        }
        return Ok(());
    }
    let mut tx = pool.begin().await.map_err(map_err)?;
    sqlx::query("DELETE FROM code_offers WHERE created_at < $1")
        .bind(to_ms(forget_before))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    sqlx::query(
        "INSERT INTO code_offers (id, request_id, sealed, state, created_at) VALUES ($1, $2, $3, 'offered', $4)",
    )
    .bind(o.id)
    .bind(o.request_id.0)
    .bind(o.sealed.as_deref())
    .bind(to_ms(o.created_at))
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    Ok(())
}

pub(super) async fn take(
    pool: &sqlx::Pool<Db>,
    request: AssistanceRequestId,
    not_before: Timestamp,
) -> StoreResult<Option<CodeOffer>> {
    if BACKEND == "postgres" {
        // The read and the compare-and-set in one statement (one round trip): `pick` reads the
        // oldest offer with the code still in it, the update claims it only if it is still
        // `offered` (a sender that deleted it first wins), and returns the code it cleared.
        let row = sqlx::query(
            "WITH pick AS (SELECT id, sealed, created_at FROM code_offers WHERE request_id = $1 \
             AND state = 'offered' AND created_at >= $2 ORDER BY created_at, id LIMIT 1) \
             UPDATE code_offers SET state = 'taken', sealed = NULL FROM pick \
             WHERE code_offers.id = pick.id AND code_offers.state = 'offered' \
             RETURNING pick.id AS id, pick.sealed AS sealed, pick.created_at AS created_at",
        )
        .bind(request.0)
        .bind(to_ms(not_before))
        .fetch_optional(pool)
        .await
        .map_err(map_err)?;
        let Some(r) = row else { return Ok(None) };
        return Ok(Some(CodeOffer {
            id: r.try_get("id")?,
            request_id: request,
            sealed: r.try_get("sealed")?,
            created_at: try_from_ms(r.try_get("created_at")?).ok_or_else(|| corrupt("code_offers.created_at"))?,
        }));
    }
    // Read, then claim with a compare-and-set on the state: a sender that deleted its offer in
    // between wins (nothing is taken), and the sealed code is cleared by the claim itself.
    let row = sqlx::query(
        "SELECT id, sealed, created_at FROM code_offers WHERE request_id = $1 AND state = 'offered' \
         AND created_at >= $2 ORDER BY created_at, id LIMIT 1",
    )
    .bind(request.0)
    .bind(to_ms(not_before))
    .fetch_optional(pool)
    .await
    .map_err(map_err)?;
    let Some(r) = row else { return Ok(None) };
    let id: Uuid = r.try_get("id")?;
    let claimed =
        sqlx::query("UPDATE code_offers SET state = 'taken', sealed = NULL WHERE id = $1 AND state = 'offered'")
            .bind(id)
            .execute(pool)
            .await
            .map_err(map_err)?;
    if claimed.rows_affected() != 1 {
        return Ok(None);
    }
    Ok(Some(CodeOffer {
        id,
        request_id: request,
        sealed: r.try_get("sealed")?,
        created_at: try_from_ms(r.try_get("created_at")?).ok_or_else(|| corrupt("code_offers.created_at"))?,
    }))
}

pub(super) async fn refuse(pool: &sqlx::Pool<Db>, request: AssistanceRequestId) -> StoreResult<Vec<Uuid>> {
    let rows = sqlx::query(
        "UPDATE code_offers SET state = 'refused', sealed = NULL WHERE request_id = $1 AND state = 'offered' RETURNING id",
    )
    .bind(request.0)
    .fetch_all(pool)
    .await
    .map_err(map_err)?;
    rows.iter().map(|r| Ok(r.try_get::<Uuid, _>("id")?)).collect()
}

pub(super) async fn close(pool: &sqlx::Pool<Db>, id: Uuid) -> StoreResult<Option<CodeOfferState>> {
    let row = sqlx::query("DELETE FROM code_offers WHERE id = $1 RETURNING state")
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(map_err)?;
    let Some(r) = row else { return Ok(None) };
    let state: String = r.try_get("state")?;
    CodeOfferState::parse(&state)
        .map(Some)
        .ok_or_else(|| StoreError::Corrupt(format!("code_offers.state {state:?}")))
}

pub(super) async fn expired_leases(pool: &sqlx::Pool<Db>, now: Timestamp) -> StoreResult<Vec<ExpiredLease>> {
    let rows = sqlx::query(
        "SELECT account_id, owner, expires_at FROM session_leases WHERE expires_at < $1 ORDER BY expires_at, account_id",
    )
    .bind(to_ms(now))
    .fetch_all(pool)
    .await
    .map_err(map_err)?;
    rows.iter()
        .map(|r| {
            Ok(ExpiredLease {
                account_id: AccountId(r.try_get("account_id")?),
                owner: r.try_get("owner")?,
                expires_at: try_from_ms(r.try_get("expires_at")?)
                    .ok_or_else(|| corrupt("session_leases.expires_at"))?,
            })
        })
        .collect()
}

pub(super) async fn close_account_runs(
    pool: &sqlx::Pool<Db>,
    account: AccountId,
    reason: &str,
    now: Timestamp,
) -> StoreResult<u64> {
    let done = sqlx::query(
        "UPDATE session_runs SET outcome = 'cancelled', failure_reason = $1, ended_at = $2 \
         WHERE account_id = $3 AND outcome = 'running'",
    )
    .bind(reason)
    .bind(to_ms(now))
    .bind(account.0)
    .execute(pool)
    .await
    .map_err(map_err)?;
    Ok(done.rows_affected())
}

pub(super) async fn hit_window(
    pool: &sqlx::Pool<Db>,
    bucket: &str,
    limit: i64,
    now: Timestamp,
    expires_at: Timestamp,
    count: bool,
) -> StoreResult<WindowState> {
    if BACKEND == "postgres" && count {
        // One round trip (migration 0019): the statements below, run by the database, and a
        // commit that does not wait for the WAL flush (a hit is a count that lives minutes).
        let row = sqlx::query("SELECT allowed, used, oldest FROM rate_window_hit($1, $2, $3, $4, $5)")
            .bind(bucket)
            .bind(to_ms(now))
            .bind(to_ms(expires_at))
            .bind(limit)
            .bind(Uuid::new_v4())
            .fetch_one(pool)
            .await
            .map_err(map_err)?;
        let oldest: Option<i64> = row.try_get("oldest")?;
        return Ok(WindowState {
            allowed: row.try_get("allowed")?,
            used: row.try_get("used")?,
            oldest_expires_at: oldest
                .map(|ms| try_from_ms(ms).ok_or_else(|| corrupt("rate_hits.expires_at")))
                .transpose()?,
        });
    }
    let mut tx = pool.begin().await.map_err(map_err)?;
    if count {
        // A write first: takes the bucket row's lock (PostgreSQL) or the write lock (SQLite),
        // so the hits of one bucket are counted one at a time across instances.
        sqlx::query(
            "INSERT INTO rate_buckets (bucket, touched_at) VALUES ($1, $2) \
             ON CONFLICT (bucket) DO UPDATE SET touched_at = excluded.touched_at",
        )
        .bind(bucket)
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    }
    let window = |r: &<Db as sqlx::Database>::Row| -> StoreResult<(i64, Option<i64>)> {
        Ok((r.try_get("used")?, r.try_get("oldest")?))
    };
    let read =
        "SELECT COUNT(*) AS used, MIN(expires_at) AS oldest FROM rate_hits WHERE bucket = $1 AND expires_at > $2";
    let row = sqlx::query(read)
        .bind(bucket)
        .bind(to_ms(now))
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
    let (mut used, mut oldest) = window(&row)?;
    let allowed = used < limit;
    if allowed && count {
        sqlx::query("INSERT INTO rate_hits (id, bucket, at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(Uuid::new_v4())
            .bind(bucket)
            .bind(to_ms(now))
            .bind(to_ms(expires_at))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        used += 1;
        oldest = Some(oldest.map_or(to_ms(expires_at), |o| o.min(to_ms(expires_at))));
    }
    tx.commit().await.map_err(map_err)?;
    Ok(WindowState {
        allowed,
        used,
        oldest_expires_at: oldest
            .map(|ms| try_from_ms(ms).ok_or_else(|| corrupt("rate_hits.expires_at")))
            .transpose()?,
    })
}

pub(super) async fn undo_window_hit(pool: &sqlx::Pool<Db>, bucket: &str) -> StoreResult<bool> {
    let done = sqlx::query(
        "DELETE FROM rate_hits WHERE id = (SELECT id FROM rate_hits WHERE bucket = $1 ORDER BY at DESC, expires_at DESC LIMIT 1)",
    )
    .bind(bucket)
    .execute(pool)
    .await
    .map_err(map_err)?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn sweep_window_hits(pool: &sqlx::Pool<Db>, now: Timestamp) -> StoreResult<u64> {
    let mut tx = pool.begin().await.map_err(map_err)?;
    let done = sqlx::query("DELETE FROM rate_hits WHERE expires_at <= $1")
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    sqlx::query(
        "DELETE FROM rate_buckets WHERE NOT EXISTS (SELECT 1 FROM rate_hits h WHERE h.bucket = rate_buckets.bucket)",
    )
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    Ok(done.rows_affected())
}
