//! The one SQL implementation of [`crate::Store`], written once and mounted by each backend module
//! (`sqlite.rs`, `postgres.rs`) with `#[path = "sql/mod.rs"] mod sql;`. The mounting module
//! provides `Db` (the sqlx database type), `BACKEND`, `EVENT_LOCK`, `ACCOUNT_LOCK_BEGIN`, `FOR_UPDATE`,
//! `SNAPSHOT_BEGIN` and `MIGRATIONS`.
//!
//! The statements are portable (numbered `$n` placeholders, `ON CONFLICT`, `RETURNING`, partial
//! unique indexes), so the two adapters cannot drift apart; only the migrations (column types)
//! differ per backend.

// Mounted with its parent once per backend, like the parent.
#[allow(clippy::duplicate_mod)]
mod bulk;
#[allow(clippy::duplicate_mod)]
mod expiry;
#[allow(clippy::duplicate_mod)]
mod failures;
#[allow(clippy::duplicate_mod)]
mod incremental;
#[allow(clippy::duplicate_mod)]
mod pass;
#[allow(clippy::duplicate_mod)]
mod passthrough;
#[allow(clippy::duplicate_mod)]
mod reconcile;
#[allow(clippy::duplicate_mod)]
mod review;
#[allow(clippy::duplicate_mod)]
mod rows;
// Issue 10: two-factor sign-in.
#[allow(clippy::duplicate_mod)]
mod two_factor;
// Issue 11: master-key rotation.
#[allow(clippy::duplicate_mod)]
mod rotation;
// Issue 11 (scale-out): codes handed between instances, take-over.
#[allow(clippy::duplicate_mod)]
mod handoff;
// Issue 11 (scale-out): the /v1 per-key budget shared by every instance.
#[allow(clippy::duplicate_mod)]
mod rate_slices;

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use async_trait::async_trait;
use sqlx::Row;
use uuid::Uuid;

use self::reconcile::*;
use self::rows::*;
use super::{Db, ACCOUNT_LOCK_BEGIN, BACKEND, EVENT_LOCK, FOR_UPDATE, MIGRATIONS, SNAPSHOT_BEGIN};
use crate::error::{map_err, StoreResult};
use crate::model::to_ms;
use crate::*;

type DbRow = <Db as sqlx::Database>::Row;

/// The store on one backend's connection pool.
pub struct SqlStore {
    pub(super) pool: sqlx::Pool<Db>,
}

const USER_COLS: &str = "id, email, name, password_hash, is_admin, operation_mode, created_at";
const BANK_COLS: &str = "id, code, name, login_url, status, created_at";
const ACCOUNT_SELECT: &str = "SELECT a.id, a.user_id, a.bank_id, b.code AS bank_code, a.name, a.status, \
     a.scrape_blocked_at, a.scrape_blocked_reason, a.created_at FROM accounts a JOIN banks b ON b.id = a.bank_id";
const KEY_COLS: &str = "id, user_id, name, prefix, secret_hash, scopes, account_ids, created_at, \
     last_used_at, expires_at, revoked_at";
const MOVEMENT_COLS: &str = "id, account_id, external_id, amount, currency, name, description, received_at, read_at";
const RUN_COLS: &str =
    "id, account_id, kind, started_at, ended_at, outcome, failure_reason, movements_read, new_movements";
const EVENT_COLS: &str = "seq, id, user_id, account_id, kind, data, occurred_at";
const DELIVERY_COLS: &str = "id, account_id, event_id, event_type, payload, request_id, status, attempts, \
     next_attempt_at, last_attempt_at, last_status, last_error, created_at, delivered_at, channel, subject_id";
const ASSIST_COLS: &str = "id, account_id, kind, descriptor, attempts, status, reason, created_at, \
     updated_at, expires_at, closed_at";

/// An account (as [`ACCOUNT_SELECT`] reads it, aliased `acc`) with its config, if any, for the
/// engine.
static ENGINE_SELECT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT acc.*, c.settings, c.secrets, c.updated_at AS config_updated_at FROM ({ACCOUNT_SELECT}) acc \
         LEFT JOIN account_configs c ON c.account_id = acc.id"
    )
});

/// A config's insert for the owner's account only (`$1`–`$5` as [`config_write`] binds them),
/// up to what it does on a conflict.
const CONFIG_INSERT: &str = "INSERT INTO account_configs (account_id, settings, secrets, updated_at) \
     SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1 AND user_id = $5) \
     ON CONFLICT (account_id) DO";

/// A config write's statement with its shared parameters bound: `$1` the account, `$2` the
/// settings, `$3` the sealed secrets, `$4` the time, `$5` the owner.
fn config_write<'q>(
    sql: &'q str,
    user: UserId,
    c: &'q AccountConfigRow,
) -> sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments<'q>> {
    sqlx::query(sql)
        .bind(c.account_id.0)
        .bind(&c.settings)
        .bind(&c.secrets)
        .bind(to_ms(c.updated_at))
        .bind(user.0)
}

/// A request with its account's bank code and name, for the dashboard (scoped by `a.user_id`).
static CONCILIATION_SELECT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, b.code AS bank_code, a.name AS account_name FROM conciliation_requests r \
         JOIN accounts a ON a.id = r.account_id JOIN banks b ON b.id = a.bank_id",
        *REQ_COLS_R
    )
});

/// A per-account log the dashboard lists: its table, columns and newest-first order.
struct AccountLog {
    table: &'static str,
    cols: &'static str,
    order: &'static str,
}

const MOVEMENTS_LOG: AccountLog = AccountLog {
    table: "movements",
    cols: MOVEMENT_COLS,
    order: "received_at DESC, external_id DESC",
};
const RUNS_LOG: AccountLog = AccountLog {
    table: "session_runs",
    cols: RUN_COLS,
    order: "started_at DESC, id DESC",
};
const DELIVERIES_LOG: AccountLog = AccountLog {
    table: "deliveries",
    cols: DELIVERY_COLS,
    order: "created_at DESC, id DESC",
};
const POLLS_LOG: AccountLog = AccountLog {
    table: "conciliation_polls",
    cols: POLL_COLS,
    order: "finished_at DESC, id DESC",
};

/// `$start, $start+1, …` for `n` values, for `IN (…)` lists.
fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Appends events and their deliveries inside the caller's transaction, many rows per statement
/// (one JSON parameter each, see `bulk`); returns them in the given order, with `seq`s
/// increasing in that order.
async fn insert_events(
    conn: &mut <Db as sqlx::Database>::Connection,
    events: &[NewEvent],
) -> StoreResult<Vec<EventRow>> {
    insert_events_owned(conn, events.to_vec()).await
}

/// [`insert_events`], moving each event's text into the row it returns (a poll and its pass log
/// 100,000 events: a copy of each would be tens of megabytes more at the peak).
async fn insert_events_owned(
    conn: &mut <Db as sqlx::Database>::Connection,
    events: Vec<NewEvent>,
) -> StoreResult<Vec<EventRow>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    // Readers page the log by `seq`; a `seq` must never become visible after a higher
    // one, so writers of the log take turns where the backend runs them concurrently. The
    // insert takes the turn itself, in a materialized `WITH` (evaluated once) that it joins:
    // every row it numbers comes out of that join, and no join yields a row before it has read
    // one from each side, so the lock is held before the first `seq` is drawn — one round trip
    // where a statement of its own took two, and the turn held that much shorter.
    let (with_lock, from_lock) = match EVENT_LOCK {
        Some(lock) => (
            format!("WITH event_turn AS MATERIALIZED (SELECT {lock}) "),
            "event_turn, ",
        ),
        None => (String::new(), ""),
    };
    // The `seq` of each event, in order. Rows are built from what was inserted: reading them
    // back (`RETURNING` every column) cost more than the inserts on SQLite, where each row
    // returned crosses a thread.
    let mut seqs_all: Vec<i64> = Vec::with_capacity(events.len());
    let returning = if BACKEND == "sqlite" { "" } else { " RETURNING seq, id" };
    let insert = format!(
        "{with_lock}INSERT INTO events (id, user_id, account_id, kind, data, occurred_at) \
         SELECT {}, {}, {}, {}, {}, {} FROM {from_lock}{} ORDER BY j.key{returning}",
        bulk::uuid(0),
        bulk::uuid(1),
        bulk::uuid(2),
        bulk::text(3),
        bulk::big_text(4, 2),
        bulk::int(6),
        bulk::source(1),
    );
    // The usual chunk: every event of one user's account (a poll's, a pass's), which are bound
    // once instead of read from each row (two ids decoded per row less).
    let insert_one_account = format!(
        "{with_lock}INSERT INTO events (id, user_id, account_id, kind, data, occurred_at) \
         SELECT {}, $3, $4, {}, {}, {} FROM {from_lock}{} ORDER BY j.key{returning}",
        bulk::uuid(0),
        bulk::text(1),
        bulk::big_text(2, 2),
        bulk::int(4),
        bulk::source(1),
    );
    let mut chunks = bulk::Chunks::new(&events, BULK_ROWS, |chunk: &[NewEvent]| {
        let owner = (chunk[0].user_id, chunk[0].account_id);
        let one_account = chunk.iter().all(|e| (e.user_id, e.account_id) == owner);
        let mut rows = bulk::JsonRows::with_capacity(chunk.iter().map(|e| e.data.len() + 160).sum());
        for e in chunk {
            rows.row().uuid(e.id);
            if !one_account {
                rows.uuid(e.user_id.0).uuid(e.account_id.0);
            }
            rows.text(&e.kind).big_text(&e.data).int(to_ms(e.occurred_at));
        }
        (rows.finish_with_texts(), chunk, one_account.then_some(owner))
    });
    while let Some(((rows, texts), chunk, owner)) = chunks.next() {
        let q = match owner {
            Some((user, account)) => sqlx::query(&insert_one_account)
                .bind(rows)
                .bind(texts)
                .bind(user.0)
                .bind(account.0),
            None => sqlx::query(&insert).bind(rows).bind(texts),
        };
        let seqs: Vec<i64> = if BACKEND == "sqlite" {
            // One writer at a time, and `seq` is AUTOINCREMENT: one statement numbers its rows
            // consecutively, in order; the two ends say where.
            chunks.write(q.execute(&mut *conn)).await.map_err(map_err)?;
            let (first, last) = (chunk[0].id, chunk[chunk.len() - 1].id);
            let ends = sqlx::query("SELECT seq, id FROM events WHERE id IN ($1, $2)")
                .bind(first)
                .bind(last)
                .fetch_all(&mut *conn)
                .await
                .map_err(map_err)?;
            let mut first_seq = None;
            let mut last_seq = None;
            for r in &ends {
                let id: Uuid = r.try_get("id")?;
                let seq: i64 = r.try_get("seq")?;
                if id == first {
                    first_seq = Some(seq);
                }
                if id == last {
                    last_seq = Some(seq);
                }
            }
            let n = i64::try_from(chunk.len()).unwrap_or(i64::MAX);
            match (first_seq, last_seq) {
                (Some(f), Some(l)) if l - f == n - 1 => (f..=l).collect(),
                _ => return Err(corrupt("events", "seq not in insertion order")),
            }
        } else {
            let rows = chunks.write(q.fetch_all(&mut *conn)).await.map_err(map_err)?;
            let mut by_id = HashMap::with_capacity(rows.len());
            for r in &rows {
                by_id.insert(r.try_get::<Uuid, _>("id")?, r.try_get::<i64, _>("seq")?);
            }
            let seqs = chunk
                .iter()
                .map(|e| by_id.get(&e.id).copied())
                .collect::<Option<Vec<i64>>>()
                .ok_or_else(|| corrupt("events", "row missing after insert"))?;
            // One statement numbers its rows in order; a reader must see them so.
            if seqs.windows(2).any(|w| w[0] >= w[1]) {
                return Err(corrupt("events", "seq not in insertion order"));
            }
            seqs
        };
        seqs_all.extend(seqs);
    }
    drop(chunks);
    let deliveries: Vec<(&NewEvent, &NewDelivery)> = events
        .iter()
        .flat_map(|e| e.deliveries.iter().map(move |d| (e, d)))
        .collect();
    let insert = format!(
        "INSERT INTO deliveries (id, account_id, event_id, event_type, payload, request_id, status, \
         attempts, next_attempt_at, created_at, channel, subject_id) \
         SELECT {}, {}, {}, {}, {}, {}, 'pending', 0, {}, {}, {}, {} FROM {} ORDER BY j.key",
        bulk::uuid(0),
        bulk::uuid(1),
        bulk::uuid(2),
        bulk::text(3),
        bulk::big_text(4, 2),
        bulk::uuid(6),
        bulk::int(7),
        bulk::int(8),
        bulk::text(9),
        bulk::uuid(10),
        bulk::source(1)
    );
    let mut chunks = bulk::Chunks::new(&deliveries, BULK_ROWS, |chunk: &[(&NewEvent, &NewDelivery)]| {
        let mut rows = bulk::JsonRows::with_capacity(chunk.iter().map(|(_, d)| d.payload.len() + 200).sum());
        for (e, d) in chunk {
            rows.row()
                .uuid(d.id.0)
                .uuid(e.account_id.0)
                .uuid(e.id)
                .text(&d.event_type)
                .big_text(&d.payload);
            match d.request_id {
                Some(r) => rows.uuid(r.0),
                None => rows.null(),
            };
            rows.int(to_ms(d.next_attempt_at))
                .int(to_ms(e.occurred_at))
                .text(&d.channel);
            match d.subject_id {
                Some(s) => rows.uuid(s),
                None => rows.null(),
            };
        }
        rows.finish_with_texts()
    });
    while let Some((rows, texts)) = chunks.next() {
        let q = sqlx::query(&insert).bind(rows).bind(texts);
        chunks.write(q.execute(&mut *conn)).await.map_err(map_err)?;
    }
    drop(chunks);
    events
        .into_iter()
        .zip(seqs_all)
        .map(|(e, seq)| {
            Ok(EventRow {
                seq,
                id: e.id,
                user_id: e.user_id,
                account_id: e.account_id,
                kind: e.kind,
                data: e.data,
                occurred_at: crate::model::try_from_ms(to_ms(e.occurred_at))
                    .ok_or_else(|| corrupt("events.occurred_at", "out of range"))?,
            })
        })
        .collect()
}

/// Rows one write adds or changes in a table from which the store refreshes the table's
/// statistics itself (PostgreSQL).
const REFRESH_STATISTICS_AFTER: i64 = 1_000;

/// On PostgreSQL, `ANALYZE`s `tables` (a list) after a bulk write has committed. The planner
/// plans from statistics that autovacuum refreshes only some time later (a minute or more); a
/// statement planned in between takes a table that just grew by thousands of rows for the few
/// rows it had, and picks nested loops that scan it whole per row: after a 50,000-order poll,
/// a webhook claim took 8–15 ms scanning 5,000 pending deliveries per candidate. Statistics are
/// an optimisation: a refresh that cannot take its lock at once (autovacuum is at it) or fails
/// is logged and left to autovacuum.
async fn refresh_statistics(pool: &sqlx::Pool<Db>, tables: &str) {
    if BACKEND != "postgres" {
        return;
    }
    let run = async {
        let mut tx = pool.begin().await?;
        sqlx::query("SET LOCAL lock_timeout = '200ms'")
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("ANALYZE {tables}")).execute(&mut *tx).await?;
        tx.commit().await
    };
    let started = std::time::Instant::now();
    match run.await {
        Ok(()) => tracing::debug!(
            tables,
            ms = started.elapsed().as_millis() as u64,
            "statistics refreshed"
        ),
        Err(e) => tracing::info!(tables, error = %e, "statistics not refreshed after a bulk write; autovacuum will"),
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    // Serialising plain data (strings, ids, small structs) cannot fail.
    serde_json::to_string(v).unwrap_or_default()
}

impl SqlStore {
    /// One account's rows of a log, newest first, only when `user` owns the account, paginated.
    async fn account_page(
        &self,
        log: &AccountLog,
        user: UserId,
        account: AccountId,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<DbRow>> {
        let AccountLog { table, cols, order } = log;
        let sql = format!(
            "SELECT {cols} FROM {table} WHERE account_id = $1 \
             AND EXISTS (SELECT 1 FROM accounts WHERE id = $1 AND user_id = $2) \
             ORDER BY {order} LIMIT $3 OFFSET $4"
        );
        sqlx::query(&sql)
            .bind(account.0)
            .bind(user.0)
            .bind(limit.max(0))
            .bind(offset.max(0))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)
    }

    /// A run's evidence that has not expired at `now`, oldest first.
    async fn evidence_of_run(&self, run: RunId, now: Timestamp) -> StoreResult<Vec<EvidenceRow>> {
        let rows = sqlx::query(
            "SELECT id, run_id, step, sealed, taken_at, expires_at FROM run_evidence \
             WHERE run_id = $1 AND expires_at > $2 ORDER BY taken_at, id",
        )
        .bind(run.0)
        .bind(to_ms(now))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter().map(evidence_from).collect()
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn migrate(&self) -> StoreResult<()> {
        let mut migrator = sqlx::migrate::Migrator::new(MIGRATIONS).await?;
        // Issue 11: on PostgreSQL the migrator holds a session advisory lock (keyed on the
        // database name) from before it reads the migrations table until it is done, so
        // instances starting together migrate once: the others wait, then find nothing to do.
        // (On SQLite the database's own write lock serialises them.) It is sqlx's default; it
        // is set here so that no upgrade of it can turn it off unnoticed.
        migrator.set_locking(true);
        migrator.run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(map_err)?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn create_user(&self, u: &UserRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO users (id, email, name, password_hash, is_admin, operation_mode, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(u.id.0)
        .bind(&u.email)
        .bind(&u.name)
        .bind(&u.password_hash)
        .bind(u.is_admin)
        .bind(&u.operation_mode)
        .bind(to_ms(u.created_at))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLS} FROM users WHERE email = $1");
        let row = sqlx::query(&sql)
            .bind(email)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<UserRow>> {
        let sql = format!("SELECT {USER_COLS} FROM users WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn session_user(&self, id: UserId, jti: TokenId) -> StoreResult<Option<UserRow>> {
        let sql = format!(
            "SELECT {USER_COLS} FROM users WHERE id = $1 \
             AND NOT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = $2)"
        );
        let row = sqlx::query(&sql)
            .bind(id.0)
            .bind(jti.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn set_operation_mode(&self, id: UserId, mode: &str) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE users SET operation_mode = $2 WHERE id = $1")
            .bind(id.0)
            .bind(mode)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn grant_admin(&self, email: &str) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE users SET is_admin = $2 WHERE email = $1")
            .bind(email)
            .bind(true)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn revoke_token(&self, jti: TokenId, user: UserId, expires_at: Timestamp) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO revoked_tokens (jti, user_id, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti.0)
        .bind(user.0)
        .bind(to_ms(expires_at))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn purge_revoked_tokens(&self, now: Timestamp) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < $1")
            .bind(to_ms(now))
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected())
    }

    async fn list_banks(&self) -> StoreResult<Vec<BankRow>> {
        let sql = format!("SELECT {BANK_COLS} FROM banks ORDER BY code");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await.map_err(map_err)?;
        rows.iter().map(bank_from).collect()
    }

    async fn bank_by_id(&self, id: BankId) -> StoreResult<Option<BankRow>> {
        let sql = format!("SELECT {BANK_COLS} FROM banks WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(bank_from).transpose()
    }

    async fn create_bank(&self, b: &BankRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO banks (id, code, name, login_url, status, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(b.id.0)
        .bind(&b.code)
        .bind(&b.name)
        .bind(&b.login_url)
        .bind(&b.status)
        .bind(to_ms(b.created_at))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn upsert_bank(&self, b: &BankRow) -> StoreResult<BankRow> {
        let sql = format!(
            "INSERT INTO banks (id, code, name, login_url, status, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (code) DO UPDATE SET name = excluded.name, login_url = excluded.login_url \
             RETURNING {BANK_COLS}"
        );
        let row = sqlx::query(&sql)
            .bind(b.id.0)
            .bind(&b.code)
            .bind(&b.name)
            .bind(&b.login_url)
            .bind(&b.status)
            .bind(to_ms(b.created_at))
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        bank_from(&row)
    }

    async fn create_account(&self, a: &NewAccount) -> StoreResult<AccountRow> {
        sqlx::query(
            "INSERT INTO accounts (id, user_id, bank_id, name, status, created_at) \
             VALUES ($1, $2, $3, $4, 'active', $5)",
        )
        .bind(a.id.0)
        .bind(a.user_id.0)
        .bind(a.bank_id.0)
        .bind(&a.name)
        .bind(to_ms(a.created_at))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        self.account_for_user(a.user_id, a.id)
            .await?
            .ok_or_else(|| corrupt("accounts", "row vanished after insert"))
    }

    async fn list_accounts(&self, user: UserId, limit: i64, offset: i64) -> StoreResult<Vec<AccountRow>> {
        let sql = format!("{ACCOUNT_SELECT} WHERE a.user_id = $1 ORDER BY a.created_at, a.id LIMIT $2 OFFSET $3");
        let rows = sqlx::query(&sql)
            .bind(user.0)
            .bind(limit.max(0))
            .bind(offset.max(0))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(account_from).collect()
    }

    async fn account_for_user(&self, user: UserId, id: AccountId) -> StoreResult<Option<AccountRow>> {
        let sql = format!("{ACCOUNT_SELECT} WHERE a.id = $1 AND a.user_id = $2");
        let row = sqlx::query(&sql)
            .bind(id.0)
            .bind(user.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(account_from).transpose()
    }

    async fn owned_account_ids(&self, user: UserId, ids: &[AccountId]) -> StoreResult<Vec<AccountId>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT id FROM accounts WHERE user_id = $1 AND id IN ({})",
            placeholders(2, ids.len())
        );
        let mut q = sqlx::query(&sql).bind(user.0);
        for id in ids {
            q = q.bind(id.0);
        }
        let rows = q.fetch_all(&self.pool).await.map_err(map_err)?;
        rows.iter()
            .map(|r| Ok(AccountId(r.try_get::<Uuid, _>("id")?)))
            .collect()
    }

    async fn delete_account(&self, user: UserId, id: AccountId, history_through: i64) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let done = sqlx::query("DELETE FROM accounts WHERE id = $1 AND user_id = $2")
            .bind(id.0)
            .bind(user.0)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if done.rows_affected() > 0 {
            // The log has no foreign key (it outlives rows it mentions); a deleted
            // account's history goes with it, not the events announcing its end.
            sqlx::query("DELETE FROM events WHERE account_id = $1 AND user_id = $2 AND seq <= $3")
                .bind(id.0)
                .bind(user.0)
                .bind(history_through)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn account_config(&self, user: UserId, id: AccountId) -> StoreResult<Option<AccountConfigRow>> {
        let row = sqlx::query(
            "SELECT c.account_id, c.settings, c.secrets, c.updated_at FROM account_configs c \
             JOIN accounts a ON a.id = c.account_id WHERE a.id = $1 AND a.user_id = $2",
        )
        .bind(id.0)
        .bind(user.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.as_ref().map(config_from).transpose()
    }

    async fn put_account_config(&self, user: UserId, c: &AccountConfigRow) -> StoreResult<bool> {
        let sql = format!(
            "{CONFIG_INSERT} UPDATE SET settings = excluded.settings, \
             secrets = excluded.secrets, updated_at = excluded.updated_at"
        );
        let done = config_write(&sql, user, c).execute(&self.pool).await.map_err(map_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn replace_account_config(
        &self,
        user: UserId,
        c: &AccountConfigRow,
        previous: Option<&AccountConfigRow>,
    ) -> StoreResult<ConfigWrite> {
        let done = match previous {
            None => {
                let sql = format!("{CONFIG_INSERT} NOTHING");
                config_write(&sql, user, c).execute(&self.pool).await
            }
            Some(p) => {
                let sql = "UPDATE account_configs SET settings = $2, secrets = $3, updated_at = $4 \
                     WHERE account_id = $1 AND EXISTS (SELECT 1 FROM accounts WHERE id = $1 AND user_id = $5) \
                     AND settings = $6 AND secrets IS NOT DISTINCT FROM $7";
                config_write(sql, user, c)
                    .bind(&p.settings)
                    .bind(&p.secrets)
                    .execute(&self.pool)
                    .await
            }
        }
        .map_err(map_err)?;
        if done.rows_affected() > 0 {
            return Ok(ConfigWrite::Written);
        }
        let owner = sqlx::query("SELECT 1 FROM accounts WHERE id = $1 AND user_id = $2")
            .bind(c.account_id.0)
            .bind(user.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(if owner.is_some() {
            ConfigWrite::Changed
        } else {
            ConfigWrite::NotFound
        })
    }

    async fn create_api_key(&self, k: &ApiKeyRow) -> StoreResult<()> {
        let sql = format!("INSERT INTO api_keys ({KEY_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)");
        sqlx::query(&sql)
            .bind(k.id.0)
            .bind(k.user_id.0)
            .bind(&k.name)
            .bind(&k.prefix)
            .bind(&k.secret_hash)
            .bind(json(&k.scopes))
            .bind(k.account_ids.as_ref().map(json))
            .bind(to_ms(k.created_at))
            .bind(k.last_used_at.map(to_ms))
            .bind(k.expires_at.map(to_ms))
            .bind(k.revoked_at.map(to_ms))
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn list_api_keys(&self, user: UserId, limit: i64, offset: i64) -> StoreResult<Vec<ApiKeyRow>> {
        let sql = format!(
            "SELECT {KEY_COLS} FROM api_keys WHERE user_id = $1 \
             ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
        );
        let rows = sqlx::query(&sql)
            .bind(user.0)
            .bind(limit.max(0))
            .bind(offset.max(0))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(key_from).collect()
    }

    async fn revoke_api_key(&self, user: UserId, id: ApiKeyId, now: Timestamp) -> StoreResult<Option<ApiKeyRow>> {
        let sql = format!(
            "UPDATE api_keys SET revoked_at = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL \
             RETURNING {KEY_COLS}"
        );
        let row = sqlx::query(&sql)
            .bind(id.0)
            .bind(user.0)
            .bind(to_ms(now))
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(key_from).transpose()
    }

    async fn api_key_by_prefix(&self, prefix: &str) -> StoreResult<Option<ApiKeyRow>> {
        let sql = format!("SELECT {KEY_COLS} FROM api_keys WHERE prefix = $1");
        let row = sqlx::query(&sql)
            .bind(prefix)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(key_from).transpose()
    }

    async fn api_key_prefixes(&self) -> StoreResult<Vec<String>> {
        sqlx::query_scalar("SELECT prefix FROM api_keys ORDER BY prefix")
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)
    }

    async fn record_api_key_use(&self, uses: &[(ApiKeyId, Timestamp)]) -> StoreResult<()> {
        if uses.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        for (id, at) in uses {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = $2 WHERE id = $1 \
                 AND (last_used_at IS NULL OR last_used_at < $2)",
            )
            .bind(id.0)
            .bind(to_ms(*at))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(())
    }

    async fn create_assistance(&self, a: &AssistanceRow, events: &[NewEvent]) -> StoreResult<Vec<EventRow>> {
        let sql = format!(
            "INSERT INTO assistance_requests ({ASSIST_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        );
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query(&sql)
            .bind(a.id.0)
            .bind(a.account_id.0)
            .bind(&a.kind)
            .bind(json(&a.descriptor))
            .bind(a.attempts)
            .bind(a.status.as_str())
            .bind(&a.reason)
            .bind(to_ms(a.created_at))
            .bind(to_ms(a.updated_at))
            .bind(to_ms(a.expires_at))
            .bind(a.closed_at.map(to_ms))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let logged = insert_events(&mut tx, events).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(logged)
    }

    async fn pending_assistance(&self, account: AccountId) -> StoreResult<Option<AssistanceRow>> {
        let sql = format!("SELECT {ASSIST_COLS} FROM assistance_requests WHERE account_id = $1 AND status = 'pending'");
        let row = sqlx::query(&sql)
            .bind(account.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(assist_from).transpose()
    }

    async fn assistance_by_id(&self, id: AssistanceRequestId) -> StoreResult<Option<AssistanceRow>> {
        let sql = format!("SELECT {ASSIST_COLS} FROM assistance_requests WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(assist_from).transpose()
    }

    async fn bump_assistance_attempts(
        &self,
        id: AssistanceRequestId,
        now: Timestamp,
        events: &EventsFor<'_>,
    ) -> StoreResult<Option<(AssistanceRow, Vec<EventRow>)>> {
        let sql = format!(
            "UPDATE assistance_requests SET attempts = attempts + 1, updated_at = $2 \
             WHERE id = $1 AND status = 'pending' RETURNING {ASSIST_COLS}"
        );
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let row = sqlx::query(&sql)
            .bind(id.0)
            .bind(to_ms(now))
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        let Some(row) = row.as_ref().map(assist_from).transpose()? else {
            return Ok(None);
        };
        let logged = insert_events(&mut tx, &events(&row)).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(Some((row, logged)))
    }

    async fn close_assistance(
        &self,
        id: AssistanceRequestId,
        status: AssistanceStatus,
        reason: Option<&str>,
        now: Timestamp,
        events: &EventsFor<'_>,
    ) -> StoreResult<Option<(AssistanceRow, Vec<EventRow>)>> {
        let sql = format!(
            "UPDATE assistance_requests SET status = $2, reason = $3, updated_at = $4, closed_at = $4 \
             WHERE id = $1 AND status = 'pending' RETURNING {ASSIST_COLS}"
        );
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let row = sqlx::query(&sql)
            .bind(id.0)
            .bind(status.as_str())
            .bind(reason)
            .bind(to_ms(now))
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        let Some(row) = row.as_ref().map(assist_from).transpose()? else {
            return Ok(None);
        };
        let logged = insert_events(&mut tx, &events(&row)).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(Some((row, logged)))
    }

    async fn close_all_pending_assistance(
        &self,
        status: AssistanceStatus,
        reason: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<AssistanceRow>> {
        let sql = format!(
            "UPDATE assistance_requests SET status = $1, reason = $2, updated_at = $3, closed_at = $3 \
             WHERE status = 'pending' RETURNING {ASSIST_COLS}"
        );
        let rows = sqlx::query(&sql)
            .bind(status.as_str())
            .bind(reason)
            .bind(to_ms(now))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(assist_from).collect()
    }

    async fn engine_accounts(&self) -> StoreResult<Vec<EngineAccount>> {
        let sql = format!("{} ORDER BY acc.created_at, acc.id", *ENGINE_SELECT);
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await.map_err(map_err)?;
        rows.iter().map(engine_from).collect()
    }

    async fn engine_account(&self, id: AccountId) -> StoreResult<Option<EngineAccount>> {
        let sql = format!("{} WHERE acc.id = $1", *ENGINE_SELECT);
        let row = sqlx::query(&sql)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(engine_from).transpose()
    }

    async fn set_scrape_block(&self, id: AccountId, block: Option<(Timestamp, &str)>) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE accounts SET scrape_blocked_at = $2, scrape_blocked_reason = $3 WHERE id = $1")
            .bind(id.0)
            .bind(block.map(|(at, _)| to_ms(at)))
            .bind(block.map(|(_, reason)| reason))
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn insert_movements(
        &self,
        account: AccountId,
        movements: &[NewMovement],
        read_at: Timestamp,
        forward: &ForwardFor<'_>,
    ) -> StoreResult<u64> {
        // The account lock's begin: the insert ends by marking the account's reconciliation dirty.
        let mut tx = self.pool.begin_with(ACCOUNT_LOCK_BEGIN).await.map_err(map_err)?;
        // The first read's movements are the baseline: stored, never forwarded.
        let baseline = passthrough::take_first_read(&mut tx, account, read_at).await?;
        let mut stored: HashMap<String, MovementRow> = HashMap::new();
        for chunk in movements.chunks((MAX_PARAMS - 2) / 8) {
            let tuples: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let p = 3 + i * 8;
                    format!(
                        "(${}, $1, ${}, ${}, ${}, ${}, ${}, ${}, $2, ${})",
                        p,
                        p + 1,
                        p + 2,
                        p + 3,
                        p + 4,
                        p + 5,
                        p + 6,
                        p + 7
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO movements (id, account_id, external_id, amount, currency, name, description, \
                 received_at, read_at, received_at_ms) VALUES {} ON CONFLICT (account_id, external_id) DO NOTHING \
                 RETURNING {MOVEMENT_COLS}",
                tuples.join(", ")
            );
            let mut q = sqlx::query(&sql).bind(account.0).bind(to_ms(read_at));
            for m in chunk {
                q = q
                    .bind(MovementId::new().0)
                    .bind(&m.external_id)
                    .bind(&m.amount)
                    .bind(&m.currency)
                    .bind(&m.name)
                    .bind(&m.description)
                    .bind(&m.received_at)
                    .bind(pass::received_ms(&m.received_at));
            }
            for row in q.fetch_all(&mut *tx).await.map_err(map_err)? {
                let m = movement_from(&row)?;
                stored.insert(m.external_id.clone(), m);
            }
        }
        let new = stored.len() as u64;
        if new > 0 {
            sqlx::query(
                "INSERT INTO reconcile_state (account_id, version, dirty_seq) SELECT $1, 1, 1 \
                 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1) ON CONFLICT (account_id) DO UPDATE \
                 SET version = reconcile_state.version + 1, dirty_seq = reconcile_state.dirty_seq + 1",
            )
            .bind(account.0)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
            if !baseline {
                // In the order read (a movement listed twice counts at its first place).
                let in_order: Vec<MovementRow> =
                    movements.iter().filter_map(|m| stored.remove(&m.external_id)).collect();
                passthrough::forward_new(&mut tx, account, &in_order, read_at, forward).await?;
            }
        }
        tx.commit().await.map_err(map_err)?;
        if new >= REFRESH_STATISTICS_AFTER as u64 {
            refresh_statistics(&self.pool, "movements, deliveries").await;
        }
        Ok(new)
    }

    async fn list_movements(
        &self,
        user: UserId,
        account: AccountId,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<MovementRow>> {
        let rows = self.account_page(&MOVEMENTS_LOG, user, account, limit, offset).await?;
        rows.iter().map(movement_from).collect()
    }

    async fn create_run(&self, run: &RunRow) -> StoreResult<()> {
        let sql = format!("INSERT INTO session_runs ({RUN_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)");
        sqlx::query(&sql)
            .bind(run.id.0)
            .bind(run.account_id.0)
            .bind(&run.kind)
            .bind(to_ms(run.started_at))
            .bind(run.ended_at.map(to_ms))
            .bind(&run.outcome)
            .bind(&run.failure_reason)
            .bind(run.movements_read)
            .bind(run.new_movements)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn finish_run(&self, run: &RunRow, events: &[NewEvent]) -> StoreResult<(bool, Vec<EventRow>)> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let done = sqlx::query(
            "UPDATE session_runs SET ended_at = $2, outcome = $3, failure_reason = $4, movements_read = $5, \
             new_movements = $6 WHERE id = $1 AND outcome = 'running'",
        )
        .bind(run.id.0)
        .bind(run.ended_at.map(to_ms))
        .bind(&run.outcome)
        .bind(&run.failure_reason)
        .bind(run.movements_read)
        .bind(run.new_movements)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        let logged = insert_events(&mut tx, events).await?;
        tx.commit().await.map_err(map_err)?;
        Ok((done.rows_affected() > 0, logged))
    }

    async fn list_runs(&self, user: UserId, account: AccountId, limit: i64, offset: i64) -> StoreResult<Vec<RunRow>> {
        let rows = self.account_page(&RUNS_LOG, user, account, limit, offset).await?;
        rows.iter().map(run_from).collect()
    }

    async fn close_open_runs(&self, reason: &str, now: Timestamp) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE session_runs SET outcome = 'cancelled', failure_reason = $1, ended_at = $2 \
             WHERE outcome = 'running'",
        )
        .bind(reason)
        .bind(to_ms(now))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected())
    }

    async fn acquire_lease(
        &self,
        account: AccountId,
        owner: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO session_leases (account_id, owner, expires_at) \
             SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1) \
             ON CONFLICT (account_id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
             WHERE session_leases.owner = excluded.owner OR session_leases.expires_at < $4",
        )
        .bind(account.0)
        .bind(owner)
        .bind(to_ms(until))
        .bind(to_ms(now))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn release_lease(&self, account: AccountId, owner: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM session_leases WHERE account_id = $1 AND owner = $2")
            .bind(account.0)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn record_events(&self, events: &[NewEvent]) -> StoreResult<Vec<EventRow>> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let logged = insert_events(&mut tx, events).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(logged)
    }

    async fn list_events(
        &self,
        user: UserId,
        accounts: Option<&[AccountId]>,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<EventRow>> {
        let filter = match accounts {
            Some([]) => return Ok(Vec::new()),
            Some(ids) => format!(" AND account_id IN ({})", placeholders(4, ids.len())),
            None => String::new(),
        };
        let sql =
            format!("SELECT {EVENT_COLS} FROM events WHERE user_id = $1 AND seq > $2{filter} ORDER BY seq LIMIT $3");
        let mut q = sqlx::query(&sql).bind(user.0).bind(after).bind(limit.max(0));
        for id in accounts.unwrap_or_default() {
            q = q.bind(id.0);
        }
        let rows = q.fetch_all(&self.pool).await.map_err(map_err)?;
        rows.iter().map(event_from).collect()
    }

    async fn last_event_seq(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS head FROM events")
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(row.try_get::<i64, _>("head")?)
    }

    // Issue 11 (scale-out).
    async fn events_after(&self, after: i64, limit: i64) -> StoreResult<Vec<EventRow>> {
        let sql = format!("SELECT {EVENT_COLS} FROM events WHERE seq > $1 ORDER BY seq LIMIT $2");
        let rows = sqlx::query(&sql)
            .bind(after)
            .bind(limit.max(0))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(event_from).collect()
    }

    // Issue 11 (scale-out).
    async fn session_owner(&self, account: AccountId, now: Timestamp) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT owner FROM session_leases WHERE account_id = $1 AND expires_at >= $2")
            .bind(account.0)
            .bind(to_ms(now))
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(row.map(|r| r.try_get::<String, _>("owner")).transpose()?)
    }

    // Issue 11 (scale-out).
    async fn close_unowned_pending_assistance(
        &self,
        owner: &str,
        status: AssistanceStatus,
        reason: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<AssistanceRow>> {
        let sql = format!(
            "UPDATE assistance_requests SET status = $1, reason = $2, updated_at = $3, closed_at = $3 \
             WHERE status = 'pending' AND NOT EXISTS (SELECT 1 FROM session_leases l \
             WHERE l.account_id = assistance_requests.account_id AND l.owner <> $4 AND l.expires_at >= $3) \
             RETURNING {ASSIST_COLS}"
        );
        let rows = sqlx::query(&sql)
            .bind(status.as_str())
            .bind(reason)
            .bind(to_ms(now))
            .bind(owner)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(assist_from).collect()
    }

    // Issue 11 (scale-out).
    async fn close_unowned_open_runs(&self, owner: &str, reason: &str, now: Timestamp) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE session_runs SET outcome = 'cancelled', failure_reason = $1, ended_at = $2 \
             WHERE outcome = 'running' AND NOT EXISTS (SELECT 1 FROM session_leases l \
             WHERE l.account_id = session_runs.account_id AND l.owner <> $3 AND l.expires_at >= $2)",
        )
        .bind(reason)
        .bind(to_ms(now))
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected())
    }

    // Issue 11 (scale-out).
    async fn issue_ticket(&self, t: &TicketRow, now: Timestamp, per_user: i64) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query("DELETE FROM realtime_tickets WHERE expires_at <= $1")
            .bind(to_ms(now))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        sqlx::query(
            "DELETE FROM realtime_tickets WHERE hash IN (SELECT hash FROM realtime_tickets \
             WHERE user_id = $1 ORDER BY expires_at DESC, hash LIMIT 1000000 OFFSET $2)",
        )
        .bind(t.user_id.0)
        .bind((per_user - 1).max(0))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        sqlx::query(
            "INSERT INTO realtime_tickets (hash, user_id, jti, token_exp, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&t.hash)
        .bind(t.user_id.0)
        .bind(t.jti.0)
        .bind(t.token_exp)
        .bind(to_ms(t.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(())
    }

    // Issue 11 (scale-out).
    async fn redeem_ticket(&self, hash: &[u8], now: Timestamp) -> StoreResult<Option<TicketRow>> {
        // Deleted whether or not it expired: a ticket is good once at most.
        let row =
            sqlx::query("DELETE FROM realtime_tickets WHERE hash = $1 RETURNING user_id, jti, token_exp, expires_at")
                .bind(hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
        let Some(r) = row else { return Ok(None) };
        let expires_ms: i64 = r.try_get("expires_at")?;
        if expires_ms <= to_ms(now) {
            return Ok(None);
        }
        Ok(Some(TicketRow {
            hash: hash.to_vec(),
            user_id: UserId(r.try_get("user_id")?),
            jti: TokenId(r.try_get("jti")?),
            token_exp: r.try_get("token_exp")?,
            expires_at: crate::model::try_from_ms(expires_ms)
                .ok_or_else(|| StoreError::Corrupt("realtime_tickets.expires_at out of range".into()))?,
        }))
    }

    async fn purge_events(&self, before: Timestamp) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM events WHERE occurred_at < $1")
            .bind(to_ms(before))
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected())
    }

    async fn claim_due_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
        owner: &str,
    ) -> StoreResult<Vec<DeliveryRow>> {
        // The outer repeat of the due condition matters on PostgreSQL: a claimer that waited
        // on a row another claimer just leased re-checks it on the new version and skips it
        // (the subquery alone was read from the old snapshot and would claim it twice).
        // Per-subject order: a delivery waits while an older one of its subject (created
        // earlier, or at the same time with a smaller id) is still pending.
        let sql = format!(
            "UPDATE deliveries SET next_attempt_at = $2, claimed_by = $4 WHERE id IN (SELECT d.id FROM deliveries d \
             WHERE d.status = 'pending' AND d.next_attempt_at <= $1 \
             AND NOT EXISTS (SELECT 1 FROM deliveries o WHERE o.subject_id = d.subject_id \
             AND o.status = 'pending' AND (o.created_at < d.created_at \
             OR (o.created_at = d.created_at AND o.id < d.id))) \
             ORDER BY d.next_attempt_at LIMIT $3) \
             AND status = 'pending' AND next_attempt_at <= $1 RETURNING {DELIVERY_COLS}"
        );
        let rows = sqlx::query(&sql)
            .bind(to_ms(now))
            .bind(to_ms(lease_until))
            .bind(limit.max(0))
            .bind(owner)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(delivery_from).collect()
    }

    async fn finish_delivery_attempt(&self, d: &DeliveryRow) -> StoreResult<bool> {
        // Not over a resend: a delivery queued again by hand (`claimed_by = 'requeued'`, which
        // a new claim replaces) while this attempt was under way stays queued.
        let done = sqlx::query(
            "UPDATE deliveries SET status = $2, attempts = $3, next_attempt_at = $4, last_attempt_at = $5, \
             last_status = $6, last_error = $7, delivered_at = $8, claimed_by = NULL \
             WHERE id = $1 AND claimed_by IS DISTINCT FROM 'requeued'",
        )
        .bind(d.id.0)
        .bind(&d.status)
        .bind(d.attempts)
        .bind(d.next_attempt_at.map(to_ms))
        .bind(d.last_attempt_at.map(to_ms))
        .bind(d.last_status)
        .bind(&d.last_error)
        .bind(d.delivered_at.map(to_ms))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_deliveries(
        &self,
        user: UserId,
        account: AccountId,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<DeliveryRow>> {
        let rows = self.account_page(&DELIVERIES_LOG, user, account, limit, offset).await?;
        rows.iter().map(delivery_from).collect()
    }

    async fn resend_delivery(
        &self,
        user: UserId,
        account: AccountId,
        id: DeliveryId,
        now: Timestamp,
    ) -> StoreResult<Option<DeliveryRow>> {
        let sql = format!(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = $4, claimed_by = 'requeued' \
             WHERE id = $1 AND account_id = $2 \
             AND EXISTS (SELECT 1 FROM accounts WHERE id = $2 AND user_id = $3) RETURNING {DELIVERY_COLS}"
        );
        let row = sqlx::query(&sql)
            .bind(id.0)
            .bind(account.0)
            .bind(user.0)
            .bind(to_ms(now))
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(delivery_from).transpose()
    }
    async fn request_poll(&self, account: AccountId, now: Timestamp) -> StoreResult<()> {
        // An earlier due time stays: the poll is already due, and keeps its place in the queue.
        // Asked while a poll runs (its lease is held), one more poll is queued for after it
        // (`poll_again`, which `finish_poll` honours).
        sqlx::query(
            "INSERT INTO reconcile_state (account_id, next_poll_at) \
             SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1) \
             ON CONFLICT (account_id) DO UPDATE SET next_poll_at = CASE \
             WHEN reconcile_state.next_poll_at IS NOT NULL AND reconcile_state.next_poll_at < excluded.next_poll_at \
             THEN reconcile_state.next_poll_at ELSE excluded.next_poll_at END, \
             poll_again = CASE WHEN reconcile_state.poll_lease_until IS NOT NULL \
             AND reconcile_state.poll_lease_until > excluded.next_poll_at THEN 1 ELSE reconcile_state.poll_again END",
        )
        .bind(account.0)
        .bind(to_ms(now))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn due_polls(&self, now: Timestamp, limit: i64) -> StoreResult<Vec<AccountId>> {
        // A missing state row, or one never scheduled (a poll begun and never finished), is due.
        let rows = sqlx::query(
            "SELECT a.id FROM accounts a JOIN users u ON u.id = a.user_id \
             LEFT JOIN reconcile_state r ON r.account_id = a.id \
             WHERE u.operation_mode = 'reconcile' \
             AND (r.next_poll_at IS NULL OR r.next_poll_at <= $1) \
             AND (r.poll_lease_until IS NULL OR r.poll_lease_until < $1) \
             ORDER BY CASE WHEN r.next_poll_at IS NULL THEN 0 ELSE 1 END, r.next_poll_at, a.id LIMIT $2",
        )
        .bind(to_ms(now))
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|r| Ok(AccountId(r.try_get::<Uuid, _>("id")?)))
            .collect()
    }

    async fn begin_poll(
        &self,
        account: AccountId,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<Option<i64>> {
        // One statement: the lease is taken and the sequence issued atomically, or neither. A
        // "poll now" asked before this poll began is answered by it (`poll_again` cleared).
        let row = sqlx::query(
            "INSERT INTO reconcile_state (account_id, poll_seq_issued, poll_lease_owner, poll_lease_until) \
             SELECT $1, 1, $2, $3 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1) \
             ON CONFLICT (account_id) DO UPDATE SET poll_seq_issued = reconcile_state.poll_seq_issued + 1, \
             poll_lease_owner = excluded.poll_lease_owner, poll_lease_until = excluded.poll_lease_until, \
             poll_again = 0 \
             WHERE reconcile_state.poll_lease_owner IS NULL OR reconcile_state.poll_lease_until IS NULL \
             OR reconcile_state.poll_lease_until < $4 OR reconcile_state.poll_lease_owner = $2 \
             RETURNING poll_seq_issued",
        )
        .bind(account.0)
        .bind(owner)
        .bind(to_ms(lease_until))
        .bind(to_ms(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.map(|r| Ok(r.try_get::<i64, _>("poll_seq_issued")?)).transpose()
    }

    async fn finish_poll(
        &self,
        account: AccountId,
        owner: &str,
        seq: i64,
        report: &PollReport,
        now: Timestamp,
        expires_after_ms: i64,
        next_poll: &(dyn Fn(i64) -> Timestamp + Send + Sync),
        events: &ConciliationEventsFor<'_>,
        pass: Option<&PollPass<'_>>,
    ) -> StoreResult<(PollRow, Vec<EventRow>)> {
        // What the database stores (whole milliseconds): the rows a pass decides are the stored ones.
        let now = crate::model::try_from_ms(to_ms(now)).unwrap_or(now);
        // The account lock first: every reconciliation change of an account takes it, in the
        // same order, so they serialise across connections and instances.
        let mut tx = self.pool.begin_with(ACCOUNT_LOCK_BEGIN).await.map_err(map_err)?;
        // The account is gone (with its polls).
        let state = pass::lock_state_row(&mut tx, account)
            .await?
            .ok_or(StoreError::Database(sqlx::Error::RowNotFound))?;

        let reconciles = passthrough::owner_reconciles(&mut tx, account).await?;
        let mut counts = PollCounts::default();
        let mut new_events = Vec::new();
        // Events logged before the in-poll pass's (see below).
        let mut early_logged = Vec::new();
        // The in-poll pass: whether it ran, and the movements it leaves to a follow-up pass.
        let mut passed = false;
        let mut recheck: Vec<MovementId> = Vec::new();
        let (outcome, failures, applied, next_poll_at, dirty, changed) = match &report.result {
            None => {
                let failures = state.poll_failures + 1;
                if failures == 3 {
                    new_events.push(events(ConciliationEvent::PollFailed {
                        error: report.error.as_deref().unwrap_or("unknown"),
                        failures,
                    }));
                }
                (
                    "failed",
                    failures,
                    state.poll_seq_applied,
                    Some(next_poll(failures)),
                    false,
                    false,
                )
            }
            // Stale, or its owner left reconcile mode while it ran: requests stay as they are
            // in passthrough (docs/reconciliation.md §7); the poll is due again on a switch back.
            Some(_) if seq <= state.poll_seq_applied || !reconciles => (
                "superseded",
                state.poll_failures,
                state.poll_seq_applied,
                state.next_poll_at,
                false,
                false,
            ),
            Some(ok) => {
                let mut applied = apply_poll(&mut tx, account, ok, now, expires_after_ms, events).await?;
                counts = applied.counts;
                new_events.append(&mut applied.events);
                if state.poll_failures >= 3 {
                    new_events.push(events(ConciliationEvent::PollRecovered));
                }
                let fresh = std::mem::take(&mut applied.fresh);
                match pass {
                    Some(p) if applied.dirty => {
                        let ids: HashSet<Uuid> = fresh.iter().map(|r| r.id.0).collect();
                        let input = incremental::load(&mut tx, account, p.horizon, now, fresh).await?;
                        // While the decisions are made, the poll's own events are written (the
                        // pass's follow them in the log).
                        let deciding = (p.decide)(input);
                        early_logged = insert_events_owned(&mut tx, std::mem::take(&mut new_events)).await?;
                        let (input, commit) = deciding
                            .await
                            .ok_or(StoreError::Interrupted("the poll's match pass decisions"))?;
                        // The snapshot's movements are not needed by the writes (they read
                        // the matched ones again, under the lock): gone before the pass's peak.
                        let PassInput {
                            requests, movements, ..
                        } = input;
                        drop(movements);
                        let fresh: Vec<ConciliationRow> =
                            requests.into_iter().filter(|r| ids.contains(&r.id.0)).collect();
                        drop(ids);
                        // Under the lock, in the snapshot's own transaction, a race cannot be
                        // lost; if it is, nothing is written.
                        let (_, mut logged) = pass::apply(&mut tx, account, &commit, now, p.events, fresh)
                            .await?
                            .ok_or(StoreError::Conflict(Constraint::MatchMovement))?;
                        new_events.append(&mut logged);
                        recheck = commit.recheck;
                        passed = true;
                    }
                    _ => insert_requests(&mut tx, account, &fresh.iter().collect::<Vec<_>>()).await?,
                }
                (
                    "succeeded",
                    0,
                    seq,
                    Some(next_poll(0)),
                    applied.dirty,
                    applied.changed || passed,
                )
            }
        };

        sqlx::query(
            "UPDATE reconcile_state SET version = version + $2, dirty_seq = dirty_seq + $3, \
             done_seq = CASE WHEN $8 = 1 THEN dirty_seq + $3 ELSE done_seq END, \
             poll_seq_applied = $4, poll_failures = $5, \
             next_poll_at = CASE WHEN poll_again = 1 AND poll_lease_owner = $7 THEN next_poll_at ELSE $6 END, \
             poll_again = CASE WHEN poll_lease_owner = $7 THEN 0 ELSE poll_again END, \
             poll_lease_until = CASE WHEN poll_lease_owner = $7 THEN NULL ELSE poll_lease_until END, \
             poll_lease_owner = CASE WHEN poll_lease_owner = $7 THEN NULL ELSE poll_lease_owner END \
             WHERE account_id = $1",
        )
        .bind(account.0)
        .bind(i64::from(changed))
        .bind(i64::from(dirty))
        .bind(applied)
        .bind(failures)
        .bind(next_poll_at.map(to_ms))
        .bind(owner)
        .bind(i64::from(passed))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if passed {
            incremental::mark_seen(&mut tx, account).await?;
            incremental::recheck(&mut tx, account, &recheck).await?;
        }

        let poll = PollRow {
            id: PollId::new(),
            account_id: account,
            seq,
            started_at: report.started_at,
            finished_at: report.finished_at,
            outcome: outcome.to_owned(),
            error: if report.result.is_none() {
                report.error.clone()
            } else {
                None
            },
            http_status: report.http_status,
            bytes: report.bytes,
            pages: report.pages,
            counts,
            issues: report.issues.clone(),
        };
        let sql = format!(
            "INSERT INTO conciliation_polls ({POLL_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        );
        sqlx::query(&sql)
            .bind(poll.id.0)
            .bind(account.0)
            .bind(seq)
            .bind(to_ms(poll.started_at))
            .bind(to_ms(poll.finished_at))
            .bind(&poll.outcome)
            .bind(&poll.error)
            .bind(poll.http_status)
            .bind(poll.bytes)
            .bind(poll.pages)
            .bind(json(&poll.counts))
            .bind(&poll.issues)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let sql = format!(
            "DELETE FROM conciliation_polls WHERE account_id = $1 AND id NOT IN \
             (SELECT id FROM conciliation_polls WHERE account_id = $1 ORDER BY {} LIMIT $2)",
            POLLS_LOG.order
        );
        sqlx::query(&sql)
            .bind(account.0)
            .bind(POLL_LOG_KEEP)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let mut logged = insert_events_owned(&mut tx, new_events).await?;
        if !early_logged.is_empty() {
            early_logged.append(&mut logged);
            logged = early_logged;
        }
        tx.commit().await.map_err(map_err)?;
        if counts.registered + counts.reopened + counts.updated + counts.cancelled >= REFRESH_STATISTICS_AFTER {
            refresh_statistics(
                &self.pool,
                "conciliation_requests, conciliation_attempts, conciliation_matches, deliveries, movements",
            )
            .await;
        }
        Ok((poll, logged))
    }

    async fn list_polls(&self, user: UserId, account: AccountId, limit: i64, offset: i64) -> StoreResult<Vec<PollRow>> {
        let rows = self.account_page(&POLLS_LOG, user, account, limit, offset).await?;
        rows.iter().map(poll_from).collect()
    }

    async fn list_conciliation(
        &self,
        user: UserId,
        filter: &ConciliationFilter,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<ConciliationListRow>> {
        let mut conds = String::new();
        let mut n = 1;
        let mut next = |col: &str| {
            n += 1;
            conds.push_str(&format!(" AND {col} = ${n}"));
        };
        if filter.account.is_some() {
            next("r.account_id");
        }
        if filter.status.is_some() {
            next("r.status");
        }
        if filter.external_id.is_some() {
            next("r.external_id");
        }
        let sql = format!(
            "{} WHERE a.user_id = $1{conds} ORDER BY r.registered_at DESC, r.id DESC LIMIT ${} OFFSET ${}",
            *CONCILIATION_SELECT,
            n + 1,
            n + 2
        );
        let mut q = sqlx::query(&sql).bind(user.0);
        if let Some(a) = filter.account {
            q = q.bind(a.0);
        }
        if let Some(st) = filter.status {
            q = q.bind(st.as_str());
        }
        if let Some(ext) = &filter.external_id {
            q = q.bind(ext);
        }
        let rows = q
            .bind(limit.max(0))
            .bind(offset.max(0))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(conciliation_list_from).collect()
    }

    async fn conciliation_for_user(
        &self,
        user: UserId,
        id: ConciliationRequestId,
    ) -> StoreResult<Option<ConciliationListRow>> {
        let sql = format!("{} WHERE r.id = $1 AND a.user_id = $2", *CONCILIATION_SELECT);
        let row = sqlx::query(&sql)
            .bind(id.0)
            .bind(user.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(conciliation_list_from).transpose()
    }

    async fn reconcile_state(&self, account: AccountId) -> StoreResult<Option<ReconcileStateRow>> {
        let sql = format!("SELECT {STATE_COLS} FROM reconcile_state WHERE account_id = $1");
        let row = sqlx::query(&sql)
            .bind(account.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(state_from).transpose()
    }

    async fn dirty_accounts(&self, limit: i64) -> StoreResult<Vec<(AccountId, i64)>> {
        let rows = sqlx::query(
            "SELECT s.account_id, s.dirty_seq FROM reconcile_state s JOIN accounts a ON a.id = s.account_id \
             JOIN users u ON u.id = a.user_id WHERE u.operation_mode = 'reconcile' AND s.dirty_seq > s.done_seq \
             ORDER BY s.account_id LIMIT $1",
        )
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|r| Ok((AccountId(r.try_get("account_id")?), r.try_get("dirty_seq")?)))
            .collect()
    }

    async fn load_pass(&self, account: AccountId, horizon: Timestamp) -> StoreResult<PassInput> {
        let mut tx = self.pool.begin_with(SNAPSHOT_BEGIN).await.map_err(map_err)?;
        let input = pass::load(&mut tx, account, horizon).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(input)
    }

    async fn load_pass_changes(
        &self,
        account: AccountId,
        horizon: Timestamp,
        now: Timestamp,
    ) -> StoreResult<PassInput> {
        let mut tx = self.pool.begin_with(SNAPSHOT_BEGIN).await.map_err(map_err)?;
        let input = incremental::load(&mut tx, account, horizon, now, Vec::new()).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(input)
    }

    async fn commit_pass(
        &self,
        account: AccountId,
        expected_version: i64,
        done_seq: i64,
        commit: &PassCommit,
        now: Timestamp,
        events: &PassEventsFor<'_>,
    ) -> StoreResult<Option<Vec<EventRow>>> {
        let mut tx = self.pool.begin_with(ACCOUNT_LOCK_BEGIN).await.map_err(map_err)?;
        // The account is gone (with its requests).
        let version = pass::lock_state(&mut tx, account)
            .await?
            .ok_or(StoreError::Database(sqlx::Error::RowNotFound))?;
        if version != expected_version {
            return Ok(None);
        }
        // A pass read before its owner switched to passthrough commits nothing: no result
        // webhook is written outside reconcile mode (the account stays dirty for a switch back).
        if !passthrough::owner_reconciles(&mut tx, account).await? {
            return Ok(None);
        }
        let Some((changed, new_events)) = pass::apply(&mut tx, account, commit, now, events, Vec::new()).await? else {
            // Dropping the transaction rolls it back.
            return Ok(None);
        };
        sqlx::query(
            "UPDATE reconcile_state SET done_seq = CASE WHEN done_seq < $2 THEN $2 ELSE done_seq END, \
             version = version + $3 WHERE account_id = $1",
        )
        .bind(account.0)
        .bind(done_seq)
        .bind(i64::from(changed))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        incremental::mark_seen(&mut tx, account).await?;
        incremental::recheck(&mut tx, account, &commit.recheck).await?;
        let logged = insert_events_owned(&mut tx, new_events).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(Some(logged))
    }

    async fn movement_matches(
        &self,
        user: UserId,
        account: AccountId,
        movements: &[MovementId],
    ) -> StoreResult<Vec<MovementMatch>> {
        let mut found: HashMap<Uuid, MovementMatch> = HashMap::with_capacity(movements.len());
        for chunk in movements.chunks(MAX_PARAMS - 2) {
            let sql = format!(
                "SELECT m.id, c.request_id, r.external_id, m.ignored_at FROM movements m \
                 JOIN accounts a ON a.id = m.account_id \
                 LEFT JOIN conciliation_matches c ON c.movement_id = m.id \
                 LEFT JOIN conciliation_requests r ON r.id = c.request_id \
                 WHERE m.account_id = $1 AND a.user_id = $2 AND m.id IN ({})",
                placeholders(3, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(account.0).bind(user.0);
            for id in chunk {
                q = q.bind(id.0);
            }
            for r in q.fetch_all(&self.pool).await.map_err(map_err)? {
                let id: Uuid = r.try_get("id")?;
                let request: Option<Uuid> = r.try_get("request_id")?;
                let external_id: Option<String> = r.try_get("external_id")?;
                let ignored_at: Option<i64> = r.try_get("ignored_at")?;
                let ignored_at = ignored_at
                    .map(|ms| crate::model::try_from_ms(ms).ok_or_else(|| corrupt("movements.ignored_at", ms)))
                    .transpose()?;
                let matched = request.zip(external_id).map(|(r, e)| (ConciliationRequestId(r), e));
                found.insert(id, (MovementId(id), matched, ignored_at));
            }
        }
        Ok(movements.iter().filter_map(|m| found.remove(&m.0)).collect())
    }

    // --- reconciliation: review (resolve, reject, ignore, run, notify, detail, summary, result deliveries) ---
    // (this area's methods go below this line)
    async fn conciliation_detail(
        &self,
        user: UserId,
        id: ConciliationRequestId,
    ) -> StoreResult<Option<ConciliationDetail>> {
        self.review_detail(user, id).await
    }

    async fn movement_for_user(&self, user: UserId, id: MovementId) -> StoreResult<Option<OwnedMovement>> {
        self.review_movement(user, id).await
    }

    async fn resolve_conciliation(
        &self,
        user: UserId,
        resolve: &ManualMatch,
        now: Timestamp,
        events: &PassEventsFor<'_>,
    ) -> StoreResult<ResolveOutcome> {
        self.review_resolve(user, resolve, now, events).await
    }

    async fn reject_candidates(
        &self,
        user: UserId,
        id: ConciliationRequestId,
        movements: &[MovementId],
        candidates: &str,
        now: Timestamp,
        events: &RequestEventsFor<'_>,
    ) -> StoreResult<RequestChange> {
        self.review_reject(user, id, movements, candidates, now, events).await
    }

    async fn run_conciliation(
        &self,
        user: UserId,
        id: ConciliationRequestId,
        now: Timestamp,
        events: &RequestEventsFor<'_>,
    ) -> StoreResult<RequestChange> {
        self.review_run(user, id, now, events).await
    }

    async fn notify_conciliation(
        &self,
        user: UserId,
        id: ConciliationRequestId,
        now: Timestamp,
        build: &NotifyEventFor<'_>,
    ) -> StoreResult<NotifyOutcome> {
        self.review_notify(user, id, now, build).await
    }

    async fn conciliation_summary(
        &self,
        user: UserId,
        account: Option<AccountId>,
    ) -> StoreResult<Vec<ConciliationSummaryRow>> {
        self.review_summary(user, account).await
    }

    async fn set_movement_ignored(
        &self,
        user: UserId,
        account: AccountId,
        movement: MovementId,
        ignored_at: Option<Timestamp>,
        events: &MovementEventsFor<'_>,
    ) -> StoreResult<IgnoreOutcome> {
        self.review_ignore(user, account, movement, ignored_at, events).await
    }

    async fn list_channel_deliveries(
        &self,
        user: UserId,
        account: AccountId,
        channel: &str,
        status: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<DeliveryRow>> {
        self.channel_deliveries(user, account, channel, status, limit, offset)
            .await
    }

    async fn resend_channel_delivery(
        &self,
        user: UserId,
        account: AccountId,
        channel: &str,
        id: DeliveryId,
        now: Timestamp,
    ) -> StoreResult<Option<DeliveryRow>> {
        self.channel_resend(user, account, channel, id, now).await
    }

    // --- reconciliation: passthrough (movements forwarded as they are stored) ---
    // (this area's methods go below this line)
    async fn notify_movement(
        &self,
        user: UserId,
        account: AccountId,
        movement: MovementId,
        now: Timestamp,
        build: &ForwardFor<'_>,
    ) -> StoreResult<Option<MovementNotify>> {
        let mut tx = self.pool.begin_with(ACCOUNT_LOCK_BEGIN).await.map_err(map_err)?;
        let done = passthrough::notify(&mut tx, user, account, movement, now, build).await?;
        if matches!(done, Some(MovementNotify::Queued(_))) {
            tx.commit().await.map_err(map_err)?;
        }
        Ok(done)
    }

    // --- reconciliation: expiry (the sweep of overdue requests) ---
    // (this area's methods go below this line)

    async fn mark_overdue_dirty(&self, now: Timestamp) -> StoreResult<Vec<AccountId>> {
        expiry::mark_overdue_dirty(&self.pool, now).await
    }

    // --- reconciliation: failures (a match pass's evaluation errors, `failed`) ---
    // (this area's methods go below this line)

    async fn record_pass_failure(
        &self,
        account: AccountId,
        requests: Option<&[ConciliationRequestId]>,
        retry_limit: i64,
        trigger: &str,
        now: Timestamp,
        events: &RequestEventsFor<'_>,
    ) -> StoreResult<Vec<EventRow>> {
        let mut tx = self.pool.begin_with(ACCOUNT_LOCK_BEGIN).await.map_err(map_err)?;
        if pass::lock_state(&mut tx, account).await?.is_none() {
            return Ok(Vec::new());
        }
        let (failed, new_events) =
            failures::record(&mut tx, account, requests, retry_limit, trigger, now, events).await?;
        if !failed.is_empty() {
            sqlx::query("UPDATE reconcile_state SET version = version + 1 WHERE account_id = $1")
                .bind(account.0)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        let logged = insert_events(&mut tx, &new_events).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(logged)
    }

    // --- issue 12: hardening ---

    async fn release_delivery_claims(&self, owner: &str, now: Timestamp) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE deliveries SET next_attempt_at = $2, claimed_by = NULL \
             WHERE status = 'pending' AND claimed_by = $1",
        )
        .bind(owner)
        .bind(to_ms(now))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected())
    }

    // --- issue 10: two-factor sign-in (TOTP) ---
    async fn begin_totp(&self, user: UserId, sealed_secret: &[u8], now: Timestamp) -> StoreResult<bool> {
        two_factor::begin(&self.pool, user, sealed_secret, now).await
    }

    async fn user_totp(&self, user: UserId) -> StoreResult<Option<TotpRow>> {
        two_factor::get(&self.pool, user).await
    }

    async fn confirm_totp(
        &self,
        user: UserId,
        step: i64,
        recovery_hashes: &[Vec<u8>],
        now: Timestamp,
    ) -> StoreResult<bool> {
        two_factor::confirm(&self.pool, user, step, recovery_hashes, now).await
    }

    async fn accept_totp_step(&self, user: UserId, step: i64) -> StoreResult<bool> {
        two_factor::accept_step(&self.pool, user, step).await
    }

    async fn use_recovery_code(&self, user: UserId, hash: &[u8], now: Timestamp) -> StoreResult<bool> {
        two_factor::use_recovery(&self.pool, user, hash, now).await
    }

    async fn delete_totp(&self, user: UserId) -> StoreResult<bool> {
        two_factor::delete(&self.pool, user).await
    }

    // --- issue 9 (real banks): failure evidence of browser runs ---

    async fn insert_evidence(&self, e: &EvidenceRow) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO run_evidence (id, run_id, step, sealed, taken_at, expires_at) \
             SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM session_runs WHERE id = $2)",
        )
        .bind(e.id.0)
        .bind(e.run_id.0)
        .bind(&e.step)
        .bind(&e.sealed)
        .bind(to_ms(e.taken_at))
        .bind(to_ms(e.expires_at))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_evidence(
        &self,
        user: UserId,
        account: AccountId,
        run: RunId,
        now: Timestamp,
    ) -> StoreResult<Option<Vec<EvidenceRow>>> {
        let owned = sqlx::query(
            "SELECT 1 FROM session_runs r JOIN accounts a ON a.id = r.account_id \
             WHERE r.id = $1 AND r.account_id = $2 AND a.user_id = $3",
        )
        .bind(run.0)
        .bind(account.0)
        .bind(user.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        if owned.is_none() {
            return Ok(None);
        }
        self.evidence_of_run(run, now).await.map(Some)
    }

    async fn device_state(&self, account: AccountId) -> StoreResult<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT sealed FROM account_devices WHERE account_id = $1")
            .bind(account.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(row.map(|r| r.try_get::<Vec<u8>, _>("sealed")).transpose()?)
    }

    async fn set_device_state(&self, account: AccountId, sealed: Option<&[u8]>, now: Timestamp) -> StoreResult<bool> {
        let Some(sealed) = sealed else {
            sqlx::query("DELETE FROM account_devices WHERE account_id = $1")
                .bind(account.0)
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
            let exists = sqlx::query("SELECT 1 FROM accounts WHERE id = $1")
                .bind(account.0)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
            return Ok(exists.is_some());
        };
        let done = sqlx::query(
            "INSERT INTO account_devices (account_id, sealed, saved_at) \
             SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1) \
             ON CONFLICT (account_id) DO UPDATE SET sealed = excluded.sealed, saved_at = excluded.saved_at",
        )
        .bind(account.0)
        .bind(sealed)
        .bind(to_ms(now))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn run_evidence(&self, run: RunId, now: Timestamp) -> StoreResult<Option<(AccountId, Vec<EvidenceRow>)>> {
        let Some(row) = sqlx::query("SELECT account_id FROM session_runs WHERE id = $1")
            .bind(run.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
        else {
            return Ok(None);
        };
        let account = AccountId(row.try_get::<Uuid, _>("account_id")?);
        Ok(Some((account, self.evidence_of_run(run, now).await?)))
    }

    async fn purge_evidence(&self, now: Timestamp) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM run_evidence WHERE expires_at <= $1")
            .bind(to_ms(now))
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected())
    }

    // --- issue 11: master-key rotation ---
    async fn carried_keys(&self) -> StoreResult<Vec<CarriedKeyRow>> {
        rotation::carried_keys(&self.pool).await
    }

    async fn reseal_all(
        &self,
        reseal: &Reseal<'_>,
        add: &[CarriedKeyRow],
    ) -> StoreResult<Result<ResealCounts, ResealRefused>> {
        rotation::reseal_all(&self.pool, reseal, add).await
    }

    // --- issue 11 (scale-out): codes handed between instances, take-over ---
    async fn offer_code(&self, offer: &CodeOffer, forget_before: Timestamp) -> StoreResult<()> {
        handoff::offer(&self.pool, offer, forget_before).await
    }

    async fn take_code_offer(
        &self,
        request: AssistanceRequestId,
        not_before: Timestamp,
    ) -> StoreResult<Option<CodeOffer>> {
        handoff::take(&self.pool, request, not_before).await
    }

    async fn refuse_code_offers(&self, request: AssistanceRequestId) -> StoreResult<Vec<Uuid>> {
        handoff::refuse(&self.pool, request).await
    }

    async fn close_code_offer(&self, id: Uuid) -> StoreResult<Option<CodeOfferState>> {
        handoff::close(&self.pool, id).await
    }

    async fn expired_session_leases(&self, now: Timestamp) -> StoreResult<Vec<ExpiredLease>> {
        handoff::expired_leases(&self.pool, now).await
    }

    async fn close_account_open_runs(&self, account: AccountId, reason: &str, now: Timestamp) -> StoreResult<u64> {
        handoff::close_account_runs(&self.pool, account, reason, now).await
    }

    async fn hit_window(
        &self,
        bucket: &str,
        limit: i64,
        now: Timestamp,
        expires_at: Timestamp,
        count: bool,
    ) -> StoreResult<WindowState> {
        handoff::hit_window(&self.pool, bucket, limit, now, expires_at, count).await
    }

    async fn undo_window_hit(&self, bucket: &str) -> StoreResult<bool> {
        handoff::undo_window_hit(&self.pool, bucket).await
    }

    async fn sweep_window_hits(&self, now: Timestamp) -> StoreResult<u64> {
        handoff::sweep_window_hits(&self.pool, now).await
    }

    // --- issue 11 (metrics) ---
    fn pool_usage(&self) -> PoolUsage {
        PoolUsage {
            open: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        }
    }

    async fn instance_gauges(&self, owner: &str, now: Timestamp) -> StoreResult<InstanceGauges> {
        let row = sqlx::query(
            "SELECT \
             (SELECT COUNT(*) FROM deliveries WHERE status = 'pending') AS outbox_pending, \
             (SELECT COUNT(*) FROM deliveries WHERE status = 'dead') AS outbox_dead, \
             (SELECT COUNT(*) FROM session_leases WHERE owner = $1 AND expires_at > $2) AS session_leases, \
             (SELECT COUNT(*) FROM reconcile_state WHERE poll_lease_owner = $1 AND poll_lease_until > $2) AS poll_leases",
        )
        .bind(owner)
        .bind(crate::model::to_ms(now))
        .fetch_one(&self.pool)
        .await
        .map_err(crate::error::map_err)?;
        Ok(InstanceGauges {
            outbox_pending: row.try_get("outbox_pending")?,
            outbox_dead: row.try_get("outbox_dead")?,
            session_leases: row.try_get("session_leases")?,
            poll_leases: row.try_get("poll_leases")?,
        })
    }

    // --- issue 11 (scale-out): the /v1 per-key budget shared by every instance ---
    async fn take_rate_slice(
        &self,
        bucket: &str,
        now_ns: i64,
        interval_ns: i64,
        tolerance_ns: i64,
        want: i64,
    ) -> StoreResult<RateSlice> {
        rate_slices::take(&self.pool, bucket, now_ns, interval_ns, tolerance_ns, want).await
    }

    async fn sweep_rate_tats(&self, now_ns: i64) -> StoreResult<u64> {
        rate_slices::sweep(&self.pool, now_ns).await
    }

    // --- issue 8 (performance): WAL checkpoints off the commit path ---
    async fn checkpoint(&self) -> StoreResult<WalCheckpoint> {
        if BACKEND != "sqlite" {
            return Ok(WalCheckpoint::default());
        }
        // One row: busy (0/1), frames in the log, frames checkpointed (-1 and -1 when the
        // database is not in WAL mode).
        let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        let (busy, frames, copied): (i64, i64, i64) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        Ok(WalCheckpoint {
            busy: busy != 0,
            frames: frames.max(0),
            copied: copied.max(0),
        })
    }
}
