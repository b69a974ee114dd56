//! Issue 11 (scale-out): the `/v1` per-key budget shared by every instance — a GCRA whose
//! theoretical arrival time lives in `rate_tats`, taken from a slice of requests at a time.

use sqlx::Row;

use super::Db;
use crate::error::{map_err, StoreResult};
use crate::*;

pub(super) async fn take(
    pool: &sqlx::Pool<Db>,
    bucket: &str,
    now_ns: i64,
    interval_ns: i64,
    tolerance_ns: i64,
    want: i64,
) -> StoreResult<RateSlice> {
    let interval = interval_ns.max(1);
    let mut tx = pool.begin().await.map_err(map_err)?;
    // A write first: takes the row's lock (PostgreSQL) or the write lock (SQLite), so slices
    // of one key are taken one at a time across instances. A new key starts full (at `now`).
    let row = sqlx::query(
        "INSERT INTO rate_tats (bucket, tat_ns) VALUES ($1, $2) \
         ON CONFLICT (bucket) DO UPDATE SET tat_ns = rate_tats.tat_ns RETURNING tat_ns",
    )
    .bind(bucket)
    .bind(now_ns)
    .fetch_one(&mut *tx)
    .await
    .map_err(map_err)?;
    let tat: i64 = row.try_get("tat_ns")?;
    let base = tat.max(now_ns);
    // Requests that fit: each moves the arrival time one interval on, which may run at most
    // `tolerance` ahead of now (the burst).
    let room = now_ns.saturating_add(tolerance_ns).saturating_sub(base);
    let granted = if room < interval {
        0
    } else {
        (room / interval).min(want.max(0))
    };
    let tat_ns = if granted > 0 {
        let next = base.saturating_add(granted.saturating_mul(interval));
        sqlx::query("UPDATE rate_tats SET tat_ns = $2 WHERE bucket = $1")
            .bind(bucket)
            .bind(next)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        next
    } else {
        tat
    };
    tx.commit().await.map_err(map_err)?;
    Ok(RateSlice { granted, tat_ns })
}

pub(super) async fn sweep(pool: &sqlx::Pool<Db>, now_ns: i64) -> StoreResult<u64> {
    // A key whose arrival time has passed has its whole burst: its row says nothing.
    let done = sqlx::query("DELETE FROM rate_tats WHERE tat_ns < $1")
        .bind(now_ns)
        .execute(pool)
        .await
        .map_err(map_err)?;
    Ok(done.rows_affected())
}
