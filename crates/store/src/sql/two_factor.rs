//! Issue 10: two-factor sign-in (TOTP) — the set-up row, the replay guard and the recovery codes.

use sqlx::Row;

use super::Db;
use crate::error::{map_err, StoreResult};
use crate::model::{to_ms, try_from_ms};
use crate::*;

fn corrupt(col: &str) -> StoreError {
    StoreError::Corrupt(format!("user_totp.{col} out of range"))
}

pub(super) async fn begin(pool: &sqlx::Pool<Db>, user: UserId, sealed: &[u8], now: Timestamp) -> StoreResult<bool> {
    // An upsert that leaves a confirmed set-up alone: enabling again needs disabling first.
    let done = sqlx::query(
        "INSERT INTO user_totp (user_id, secret, confirmed_at, last_step, created_at) VALUES ($1, $2, NULL, NULL, $3) \
         ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, last_step = NULL, created_at = excluded.created_at \
         WHERE user_totp.confirmed_at IS NULL",
    )
    .bind(user.0)
    .bind(sealed)
    .bind(to_ms(now))
    .execute(pool)
    .await
    .map_err(map_err)?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn get(pool: &sqlx::Pool<Db>, user: UserId) -> StoreResult<Option<TotpRow>> {
    let row = sqlx::query(
        "SELECT secret, confirmed_at, last_step, created_at, \
         (SELECT COUNT(*) FROM user_recovery_codes c WHERE c.user_id = t.user_id AND c.used_at IS NULL) AS recovery_left \
         FROM user_totp t WHERE t.user_id = $1",
    )
    .bind(user.0)
    .fetch_optional(pool)
    .await
    .map_err(map_err)?;
    let Some(r) = row else { return Ok(None) };
    let confirmed_at = match r.try_get::<Option<i64>, _>("confirmed_at")? {
        None => None,
        Some(ms) => Some(try_from_ms(ms).ok_or_else(|| corrupt("confirmed_at"))?),
    };
    let created: i64 = r.try_get("created_at")?;
    Ok(Some(TotpRow {
        user_id: user,
        secret: r.try_get("secret")?,
        confirmed_at,
        last_step: r.try_get("last_step")?,
        created_at: try_from_ms(created).ok_or_else(|| corrupt("created_at"))?,
        recovery_left: r.try_get("recovery_left")?,
    }))
}

pub(super) async fn confirm(
    pool: &sqlx::Pool<Db>,
    user: UserId,
    step: i64,
    hashes: &[Vec<u8>],
    now: Timestamp,
) -> StoreResult<bool> {
    let mut tx = pool.begin().await.map_err(map_err)?;
    let done = sqlx::query(
        "UPDATE user_totp SET confirmed_at = $2, last_step = $3 WHERE user_id = $1 AND confirmed_at IS NULL",
    )
    .bind(user.0)
    .bind(to_ms(now))
    .bind(step)
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    sqlx::query("DELETE FROM user_recovery_codes WHERE user_id = $1")
        .bind(user.0)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    for h in hashes {
        sqlx::query("INSERT INTO user_recovery_codes (user_id, code_hash, used_at) VALUES ($1, $2, NULL)")
            .bind(user.0)
            .bind(h)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
    }
    tx.commit().await.map_err(map_err)?;
    Ok(true)
}

pub(super) async fn accept_step(pool: &sqlx::Pool<Db>, user: UserId, step: i64) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE user_totp SET last_step = $2 WHERE user_id = $1 AND confirmed_at IS NOT NULL \
         AND (last_step IS NULL OR last_step < $2)",
    )
    .bind(user.0)
    .bind(step)
    .execute(pool)
    .await
    .map_err(map_err)?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn use_recovery(
    pool: &sqlx::Pool<Db>,
    user: UserId,
    hash: &[u8],
    now: Timestamp,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE user_recovery_codes SET used_at = $3 WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
    )
    .bind(user.0)
    .bind(hash)
    .bind(to_ms(now))
    .execute(pool)
    .await
    .map_err(map_err)?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn delete(pool: &sqlx::Pool<Db>, user: UserId) -> StoreResult<bool> {
    let mut tx = pool.begin().await.map_err(map_err)?;
    sqlx::query("DELETE FROM user_recovery_codes WHERE user_id = $1")
        .bind(user.0)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    let done = sqlx::query("DELETE FROM user_totp WHERE user_id = $1")
        .bind(user.0)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    Ok(done.rows_affected() == 1)
}
