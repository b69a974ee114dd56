//! Issue 11: master-key rotation — every sealed value rewritten in one transaction.

use sqlx::Row;
use uuid::Uuid;

use super::{Db, DbRow, ACCOUNT_LOCK_BEGIN, FOR_UPDATE};
use crate::error::{map_err, StoreResult};
use crate::model::{to_ms, try_from_ms};
use crate::*;

pub(super) async fn carried_keys(pool: &sqlx::Pool<Db>) -> StoreResult<Vec<CarriedKeyRow>> {
    let rows = sqlx::query("SELECT label, sealed, created_at FROM carried_keys ORDER BY label")
        .fetch_all(pool)
        .await
        .map_err(map_err)?;
    rows.iter()
        .map(|r| {
            let created: i64 = r.try_get("created_at")?;
            Ok(CarriedKeyRow {
                label: r.try_get("label")?,
                sealed: r.try_get("sealed")?,
                created_at: try_from_ms(created)
                    .ok_or_else(|| StoreError::Corrupt("carried_keys.created_at out of range".into()))?,
            })
        })
        .collect()
}

/// Where each kind of sealed value lives: its table, key column and sealed column.
fn place(owner: &SealedOwner) -> (&'static str, &'static str, &'static str) {
    match owner {
        SealedOwner::AccountConfig(_) => ("account_configs", "account_id", "secrets"),
        SealedOwner::Totp(_) => ("user_totp", "user_id", "secret"),
        SealedOwner::Evidence(_) => ("run_evidence", "id", "sealed"),
        SealedOwner::CarriedKey(_) => ("carried_keys", "label", "sealed"),
        SealedOwner::Device(_) => ("account_devices", "account_id", "sealed"),
    }
}

/// Names the owner of a sealed value from its row.
type OwnerOf = fn(&DbRow) -> StoreResult<SealedOwner>;

pub(super) async fn reseal_all(
    pool: &sqlx::Pool<Db>,
    reseal: &Reseal<'_>,
    add: &[CarriedKeyRow],
) -> StoreResult<Result<ResealCounts, ResealRefused>> {
    // SQLite: the write lock from the start; PostgreSQL: every sealed row locked as it is read,
    // so nothing sealed changes between the read and the rewrite.
    let mut tx = pool.begin_with(ACCOUNT_LOCK_BEGIN).await.map_err(map_err)?;
    let mut values: Vec<(SealedOwner, Vec<u8>)> = Vec::new();
    let reads: [(&str, OwnerOf); 5] = [
        (
            "SELECT account_id AS k, secrets AS v FROM account_configs WHERE secrets IS NOT NULL",
            |r| Ok(SealedOwner::AccountConfig(AccountId(r.try_get::<Uuid, _>("k")?))),
        ),
        ("SELECT user_id AS k, secret AS v FROM user_totp", |r| {
            Ok(SealedOwner::Totp(UserId(r.try_get::<Uuid, _>("k")?)))
        }),
        ("SELECT id AS k, sealed AS v FROM run_evidence", |r| {
            Ok(SealedOwner::Evidence(EvidenceId(r.try_get::<Uuid, _>("k")?)))
        }),
        ("SELECT label AS k, sealed AS v FROM carried_keys", |r| {
            Ok(SealedOwner::CarriedKey(r.try_get::<String, _>("k")?))
        }),
        ("SELECT account_id AS k, sealed AS v FROM account_devices", |r| {
            Ok(SealedOwner::Device(AccountId(r.try_get::<Uuid, _>("k")?)))
        }),
    ];
    for (select, owner) in reads {
        let rows = sqlx::query(&format!("{select}{FOR_UPDATE}"))
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        for r in &rows {
            values.push((owner(r)?, r.try_get("v")?));
        }
    }
    // Every value is rewritten in memory first: one that does not open changes nothing.
    let mut rewritten = Vec::with_capacity(values.len());
    for (owner, sealed) in values {
        match reseal(&owner, &sealed) {
            Ok(new) => rewritten.push((owner, new)),
            Err(reason) => return Ok(Err(ResealRefused { owner, reason })),
        }
    }
    let mut counts = ResealCounts::default();
    for (owner, sealed) in &rewritten {
        let (table, key, col) = place(owner);
        let sql = format!("UPDATE {table} SET {col} = $1 WHERE {key} = $2");
        let q = sqlx::query(&sql).bind(sealed);
        let q = match owner {
            SealedOwner::AccountConfig(id) => q.bind(id.0),
            SealedOwner::Totp(id) => q.bind(id.0),
            SealedOwner::Evidence(id) => q.bind(id.0),
            SealedOwner::CarriedKey(label) => q.bind(label.clone()),
            SealedOwner::Device(id) => q.bind(id.0),
        };
        q.execute(&mut *tx).await.map_err(map_err)?;
        match owner {
            SealedOwner::AccountConfig(_) => counts.account_configs += 1,
            SealedOwner::Totp(_) => counts.totp_secrets += 1,
            SealedOwner::Evidence(_) => counts.evidence += 1,
            SealedOwner::CarriedKey(_) => counts.carried_keys += 1,
            SealedOwner::Device(_) => counts.devices += 1,
        }
    }
    for k in add {
        sqlx::query("INSERT INTO carried_keys (label, sealed, created_at) VALUES ($1, $2, $3)")
            .bind(&k.label)
            .bind(&k.sealed)
            .bind(to_ms(k.created_at))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        counts.carried_keys += 1;
    }
    tx.commit().await.map_err(map_err)?;
    Ok(Ok(counts))
}
