//! Reconciliation: applying a poll of an account's pending orders (docs/reconciliation.md §3.6) inside
//! the caller's transaction, which holds the account lock. Everything is batched: the account's
//! requests are read once, and rows are inserted and updated many per statement.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use sqlx::Row;
use uuid::Uuid;

use super::rows::*;
use super::{bulk, Db};
use crate::error::{map_err, StoreResult};
use crate::model::to_ms;
use crate::*;

type Conn = <Db as sqlx::Database>::Connection;

/// The most bound parameters one batched statement carries. Both backends allow far more
/// (SQLite 32766, PostgreSQL 65535), but SQLite looks a numbered parameter's name up by a scan
/// of the statement's parameters, so binding costs time quadratic in their number per statement
/// (measured: 55 s for 50,000 registrations at 32766; at 999 it was still the first hot spot of
/// a 50,000-order poll and pass). A round trip per ~250 values is negligible.
pub(super) const MAX_PARAMS: usize = 250;

/// Rows per bulk statement (one JSON parameter, see [`bulk`]): bounds the text held at once.
pub(super) const BULK_ROWS: usize = 2_500;

pub(super) const REQ_COLS: &str = "id, account_id, external_id, generation, amount, currency, sender_name, \
     reference, status, reason, registered_at, expires_at, last_seen_at, absent_since_close, eval_errors, \
     attempt_count, last_candidates, closed_at, updated_at";
pub(super) const POLL_COLS: &str =
    "id, account_id, seq, started_at, finished_at, outcome, error, http_status, bytes, pages, counts, issues";
pub(super) const STATE_COLS: &str = "account_id, version, dirty_seq, done_seq, next_poll_at, poll_seq_issued, \
     poll_seq_applied, poll_failures, poll_lease_owner, poll_lease_until";

/// [`REQ_COLS`] of the table aliased `r`.
pub(super) static REQ_COLS_R: LazyLock<String> = LazyLock::new(|| {
    REQ_COLS
        .split(", ")
        .map(|c| format!("r.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
});

/// `('pending', 'not_found', …)`: the open statuses, for `status IN …`.
pub(super) static OPEN_STATUSES: LazyLock<String> = LazyLock::new(|| {
    let open: Vec<String> = ConciliationStatus::ALL
        .into_iter()
        .filter(|s| s.is_open())
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    format!("({})", open.join(", "))
});

/// `$first, $first+1, …`, `n` of them.
pub(super) fn params(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `(…), (…)`: `rows` tuples of `width` numbered parameters from `$first`.
pub(super) fn values(first: usize, width: usize, rows: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", params(first + r * width, width)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rows read per page of a large read: a page is held in memory at once (as JSON text, then as
/// rows).
pub(super) const PAGE: i64 = 10_000;

/// [`REQ_COLS`] as one JSON row out of the table aliased `alias` (see [`bulk::row_out`]).
pub(super) fn req_out(alias: &str) -> String {
    let cols: Vec<String> = REQ_COLS
        .split(", ")
        .map(|c| match c {
            "id" | "account_id" => format!("uuid:{alias}{c}"),
            "absent_since_close" => format!("flag:{alias}{c}"),
            _ => format!("{alias}{c}"),
        })
        .collect();
    bulk::row_out(&cols.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A request as [`req_out`] writes it.
#[derive(serde::Deserialize)]
pub(super) struct ReqOut(
    Uuid,
    Uuid,
    String,
    i64,
    String,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    i64,
    i64,
    i64,
    bool,
    i64,
    i64,
    Option<String>,
    Option<i64>,
    i64,
);

fn at(col: &str, ms: i64) -> StoreResult<Timestamp> {
    crate::model::try_from_ms(ms).ok_or_else(|| corrupt(col, format_args!("timestamp out of range: {ms}")))
}

/// Decodes the requests of an aggregate read of [`req_out`] rows.
pub(super) fn parse_requests(text: &str) -> StoreResult<Vec<ConciliationRow>> {
    let rows: Vec<ReqOut> = bulk::parse("conciliation_requests", text)?;
    rows.into_iter().map(ReqOut::into_row).collect()
}

impl ReqOut {
    pub(super) fn into_row(self) -> StoreResult<ConciliationRow> {
        let r = self;
        Ok(ConciliationRow {
            id: ConciliationRequestId(r.0),
            account_id: AccountId(r.1),
            external_id: r.2,
            generation: r.3,
            amount: r.4,
            currency: r.5,
            sender_name: r.6,
            reference: r.7,
            status: ConciliationStatus::parse(&r.8).ok_or_else(|| corrupt("conciliation_requests.status", &r.8))?,
            reason: r.9,
            registered_at: at("registered_at", r.10)?,
            expires_at: at("expires_at", r.11)?,
            last_seen_at: at("last_seen_at", r.12)?,
            absent_since_close: r.13,
            eval_errors: r.14,
            attempt_count: r.15,
            last_candidates: r.16,
            closed_at: r.17.map(|ms| at("closed_at", ms)).transpose()?,
            updated_at: at("updated_at", r.18)?,
        })
    }
}

/// The account's requests matching `filter` (SQL on the table's columns), read a page at a
/// time (keyset on `id`), each page as one JSON text.
pub(super) async fn requests_where(
    conn: &mut Conn,
    account: AccountId,
    filter: &str,
) -> StoreResult<Vec<ConciliationRow>> {
    let sql = bulk::agg_out(
        &req_out("p."),
        &format!(
            "FROM (SELECT {REQ_COLS} FROM conciliation_requests WHERE account_id = $1 AND {filter} AND id > $2 \
             ORDER BY id LIMIT $3) AS p"
        ),
    );
    let mut out = Vec::new();
    let mut after = Uuid::nil();
    loop {
        let text: String = sqlx::query_scalar(&sql)
            .bind(account.0)
            .bind(after)
            .bind(PAGE)
            .fetch_one(&mut *conn)
            .await
            .map_err(map_err)?;
        let page = parse_requests(&text)?;
        drop(text);
        let full = page.len() as i64 == PAGE;
        let last = page.iter().map(|r| r.id.0).max();
        out.extend(page);
        match last {
            Some(last) if full => after = last,
            _ => return Ok(out),
        }
    }
}

/// The latest closed registration of an order.
struct Closed {
    generation: i64,
    status: ConciliationStatus,
    absent_since_close: bool,
}

/// What a poll does to one listed order.
enum Change {
    New { row: ConciliationRow, reopened: bool },
    Updated(ConciliationRow),
}

/// The effect of applying a poll.
pub(super) struct Applied {
    pub counts: PollCounts,
    /// Whether any request row changed (a new row, a status, a field, `last_seen_at`).
    pub changed: bool,
    /// Whether the matching work changed (registered, updated, cancelled, reopened).
    pub dirty: bool,
    pub events: Vec<NewEvent>,
    /// The orders registered (new and reopened), in the order of the list, NOT stored yet: the
    /// caller inserts them with [`insert_requests`], as they are or as a pass run in the same
    /// transaction decides them.
    pub fresh: Vec<ConciliationRow>,
}

/// Applies a successful, newer poll (docs/reconciliation.md §3.6) in the caller's transaction,
/// but for the insert of the orders it registers (see [`Applied::fresh`]).
pub(super) async fn apply_poll(
    conn: &mut Conn,
    account: AccountId,
    ok: &PollSuccess,
    now: Timestamp,
    expires_after_ms: i64,
    events: &ConciliationEventsFor<'_>,
) -> StoreResult<Applied> {
    let now_ms = to_ms(now);
    // What the database stores (whole milliseconds): the rows built here are the stored ones.
    let now = crate::model::try_from_ms(now_ms).unwrap_or(now);
    let expires_at = now + chrono::Duration::milliseconds(expires_after_ms);

    // The account's live (open or matched) requests, and the latest closed registration of the
    // other orders, read once.
    let mut live: HashMap<String, ConciliationRow> = HashMap::new();
    for row in requests_where(conn, account, "status NOT IN ('cancelled', 'expired')").await? {
        live.insert(row.external_id.clone(), row);
    }
    let closed_rows = sqlx::query(
        "SELECT id, external_id, generation, status, absent_since_close FROM conciliation_requests \
         WHERE account_id = $1 AND status IN ('cancelled', 'expired')",
    )
    .bind(account.0)
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err)?;
    let mut latest: HashMap<String, Closed> = HashMap::new();
    // Expired rows not yet marked absent: (id, external_id).
    let mut expired_unmarked: Vec<(Uuid, String)> = Vec::new();
    for r in &closed_rows {
        let external_id: String = r.try_get("external_id")?;
        let status: String = r.try_get("status")?;
        let status =
            ConciliationStatus::parse(&status).ok_or_else(|| corrupt("conciliation_requests.status", &status))?;
        let c = Closed {
            generation: r.try_get("generation")?,
            status,
            absent_since_close: r.try_get("absent_since_close")?,
        };
        if c.status == ConciliationStatus::Expired && !c.absent_since_close {
            expired_unmarked.push((r.try_get("id")?, external_id.clone()));
        }
        match latest.get(&external_id) {
            Some(prev) if prev.generation >= c.generation => {}
            _ => {
                latest.insert(external_id, c);
            }
        }
    }
    drop(closed_rows);

    let present: HashSet<&str> = (ok.orders.iter().map(|o| o.external_id.as_str()))
        .chain(ok.also_present.iter().map(String::as_str))
        .collect();
    let mut counts = PollCounts {
        orders_seen: i64::try_from(present.len()).unwrap_or(i64::MAX),
        invalid: ok.invalid,
        ..PollCounts::default()
    };

    // 1. Each valid order, first occurrence only.
    let mut listed: HashSet<&str> = HashSet::with_capacity(ok.orders.len());
    let mut changes: Vec<Change> = Vec::with_capacity(ok.orders.len());
    let mut seen: Vec<Uuid> = Vec::new();
    for o in &ok.orders {
        if !listed.insert(o.external_id.as_str()) {
            continue;
        }
        if let Some(row) = live.get(&o.external_id) {
            if row.status == ConciliationStatus::Matched {
                counts.already_matched += 1;
            } else if row.amount != o.amount
                || row.currency != o.currency
                || row.sender_name != o.sender_name
                || row.reference != o.reference
            {
                changes.push(Change::Updated(ConciliationRow {
                    amount: o.amount.clone(),
                    currency: o.currency.clone(),
                    sender_name: o.sender_name.clone(),
                    reference: o.reference.clone(),
                    status: ConciliationStatus::Pending,
                    reason: None,
                    last_seen_at: now,
                    updated_at: now,
                    ..row.clone()
                }));
            } else {
                seen.push(row.id.0);
            }
            continue;
        }
        let (generation, reopened) = match latest.get(&o.external_id) {
            None => (1, false),
            Some(c) if c.status == ConciliationStatus::Cancelled || c.absent_since_close => (c.generation + 1, true),
            Some(_) => {
                counts.still_listed_after_expiry += 1;
                continue;
            }
        };
        changes.push(Change::New {
            row: ConciliationRow {
                id: ConciliationRequestId::new(),
                account_id: account,
                external_id: o.external_id.clone(),
                generation,
                amount: o.amount.clone(),
                currency: o.currency.clone(),
                sender_name: o.sender_name.clone(),
                reference: o.reference.clone(),
                status: ConciliationStatus::Pending,
                reason: None,
                registered_at: now,
                expires_at,
                last_seen_at: now,
                absent_since_close: false,
                eval_errors: 0,
                attempt_count: 0,
                last_candidates: None,
                closed_at: None,
                updated_at: now,
            },
            reopened,
        });
    }

    // Listed and unchanged: seen now (compare-and-set on the open statuses).
    for chunk in seen.chunks(BULK_ROWS) {
        let sql = format!(
            "UPDATE conciliation_requests SET last_seen_at = $1 WHERE status IN {} AND id {}",
            *OPEN_STATUSES,
            bulk::in_ids(2)
        );
        sqlx::query(&sql)
            .bind(now_ms)
            .bind(bulk::ids(chunk.iter().copied()).finish())
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
    }

    // Changed orders: new values, back to pending (compare-and-set).
    let updates: Vec<&ConciliationRow> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Updated(row) => Some(row),
            Change::New { .. } => None,
        })
        .collect();
    let mut updated: HashSet<Uuid> = HashSet::with_capacity(updates.len());
    for chunk in updates.chunks((MAX_PARAMS - 1) / 5) {
        let sql = format!(
            "UPDATE conciliation_requests SET amount = v.column2, currency = v.column3, sender_name = v.column4, \
             reference = v.column5, status = 'pending', reason = NULL, last_seen_at = $1, updated_at = $1 \
             FROM (VALUES {}) AS v WHERE conciliation_requests.id = v.column1 \
             AND conciliation_requests.status IN {} RETURNING id",
            values(2, 5, chunk.len()),
            *OPEN_STATUSES
        );
        let mut q = sqlx::query(&sql).bind(now_ms);
        for row in chunk {
            q = q
                .bind(row.id.0)
                .bind(&row.amount)
                .bind(&row.currency)
                .bind(&row.sender_name)
                .bind(&row.reference);
        }
        for r in q.fetch_all(&mut *conn).await.map_err(map_err)? {
            updated.insert(r.try_get("id")?);
        }
    }

    // 2. Open requests no longer listed: cancelled (compare-and-set), by external id.
    let mut absent: Vec<&ConciliationRow> = live
        .values()
        .filter(|r| r.status.is_open() && !present.contains(r.external_id.as_str()))
        .collect();
    absent.sort_by(|a, b| a.external_id.cmp(&b.external_id));
    let mut cancelled: HashSet<Uuid> = HashSet::with_capacity(absent.len());
    for chunk in absent.chunks(MAX_PARAMS - 2) {
        let sql = format!(
            "UPDATE conciliation_requests SET status = 'cancelled', reason = $1, closed_at = $2, updated_at = $2 \
             WHERE status IN {} AND id IN ({}) RETURNING id",
            *OPEN_STATUSES,
            params(3, chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(CANCEL_REASON).bind(now_ms);
        for row in chunk {
            q = q.bind(row.id.0);
        }
        for r in q.fetch_all(&mut *conn).await.map_err(map_err)? {
            cancelled.insert(r.try_get("id")?);
        }
    }

    // Expired requests no longer listed: a later listing registers the order again.
    let unlisted: Vec<Uuid> = expired_unmarked
        .into_iter()
        .filter(|(_, ext)| !present.contains(ext.as_str()))
        .map(|(id, _)| id)
        .collect();
    for chunk in unlisted.chunks(MAX_PARAMS - 2) {
        let sql = format!(
            "UPDATE conciliation_requests SET absent_since_close = $1, updated_at = $2 \
             WHERE status = 'expired' AND id IN ({})",
            params(3, chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(true).bind(now_ms);
        for id in chunk {
            q = q.bind(*id);
        }
        q.execute(&mut *conn).await.map_err(map_err)?;
    }

    // 3. The events, in the order of the list, then the cancellations.
    let mut out = Vec::with_capacity(changes.len() + cancelled.len());
    for c in &changes {
        match c {
            Change::New { row, reopened: false } => {
                counts.registered += 1;
                out.push(events(ConciliationEvent::Registered(row)));
            }
            Change::New { row, reopened: true } => {
                counts.reopened += 1;
                out.push(events(ConciliationEvent::Reopened(row)));
            }
            Change::Updated(row) if updated.contains(&row.id.0) => {
                counts.updated += 1;
                out.push(events(ConciliationEvent::Updated(row)));
            }
            Change::Updated(_) => {}
        }
    }
    for row in absent.into_iter().filter(|r| cancelled.contains(&r.id.0)) {
        counts.cancelled += 1;
        let row = ConciliationRow {
            status: ConciliationStatus::Cancelled,
            reason: Some(CANCEL_REASON.to_owned()),
            closed_at: Some(now),
            updated_at: now,
            ..row.clone()
        };
        out.push(events(ConciliationEvent::Cancelled(&row)));
    }
    let dirty = counts.registered + counts.updated + counts.cancelled + counts.reopened > 0;
    let fresh = changes
        .into_iter()
        .filter_map(|c| match c {
            Change::New { row, .. } => Some(row),
            Change::Updated(_) => None,
        })
        .collect();
    Ok(Applied {
        counts,
        changed: dirty || !seen.is_empty() || !unlisted.is_empty(),
        dirty,
        events: out,
        fresh,
    })
}

/// Inserts requests (of `account`) as they are: the orders a poll registers, `pending` or as
/// the pass run in the poll's transaction left them.
pub(super) async fn insert_requests(conn: &mut Conn, account: AccountId, rows: &[&ConciliationRow]) -> StoreResult<()> {
    let sql = format!(
        "INSERT INTO conciliation_requests (id, account_id, external_id, generation, amount, currency, \
         sender_name, reference, status, reason, registered_at, expires_at, last_seen_at, attempt_count, \
         last_candidates, closed_at, updated_at) \
         SELECT {}, $1, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {} FROM {} ORDER BY j.key",
        bulk::uuid(0),
        bulk::text(1),
        bulk::int(2),
        bulk::text(3),
        bulk::text(4),
        bulk::text(5),
        bulk::text(6),
        bulk::text(7),
        bulk::text(8),
        bulk::int(9),
        bulk::int(10),
        bulk::int(11),
        bulk::int(12),
        bulk::text(13),
        bulk::int(14),
        bulk::int(15),
        bulk::source(2)
    );
    let mut chunks = bulk::Chunks::new(rows, BULK_ROWS, |chunk: &[&ConciliationRow]| {
        let mut json = bulk::JsonRows::with_capacity(chunk.len() * 180);
        for row in chunk {
            json.row()
                .uuid(row.id.0)
                .text(&row.external_id)
                .int(row.generation)
                .text(&row.amount)
                .text(&row.currency)
                .text(&row.sender_name)
                .opt_text(row.reference.as_deref())
                .text(row.status.as_str())
                .opt_text(row.reason.as_deref())
                .int(to_ms(row.registered_at))
                .int(to_ms(row.expires_at))
                .int(to_ms(row.last_seen_at))
                .int(row.attempt_count)
                .opt_text(row.last_candidates.as_deref())
                .opt_int(row.closed_at.map(to_ms))
                .int(to_ms(row.updated_at));
        }
        json.finish()
    });
    while let Some(json) = chunks.next() {
        let q = sqlx::query(&sql).bind(account.0).bind(json);
        chunks.write(q.execute(&mut *conn)).await.map_err(map_err)?;
    }
    Ok(())
}

/// The reason of a request cancelled because the list no longer has it.
pub(super) const CANCEL_REASON: &str = "absent_from_pending_list";
