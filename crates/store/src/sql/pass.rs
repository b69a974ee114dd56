//! Reconciliation: the match pass's reads and its one-transaction commit (RECONCILIATION §5.6,
//! §5.9), inside the caller's transaction. Every write is batched (at most [`BATCH`]
//! parameters per statement), so a pass over tens of thousands of requests is a few hundred
//! statements.

use std::collections::HashMap;
use std::sync::LazyLock;

use sqlx::Row;
use uuid::Uuid;

use super::reconcile::{params, values, OPEN_STATUSES, REQ_COLS, STATE_COLS};
use super::rows::*;
use super::{Db, FOR_UPDATE};
use crate::error::{map_err, StoreResult};
use crate::model::to_ms;
use crate::*;

type Conn = <Db as sqlx::Database>::Connection;

/// The most bound parameters per statement of a pass (see [`super::reconcile::MAX_PARAMS`]).
const BATCH: usize = super::reconcile::MAX_PARAMS;

/// The reason of a request the pass found ambiguous.
pub(super) const AMBIGUOUS_REASON: &str = "several_equally_plausible";
/// The reason of a request that expired.
pub(super) const EXPIRED_REASON: &str = "expired_after_5_days";
/// The attempt trigger of an expiry.
const EXPIRY_TRIGGER: &str = "expiry";

/// The columns of an [`EligibleMovement`].
pub(super) const ELIGIBLE_COLS: &str = "id, amount, currency, name, description, received_at, received_at_ms";

/// [`REQ_COLS`] qualified by the table name, for `UPDATE … FROM (VALUES …) RETURNING`.
static REQ_COLS_T: LazyLock<String> = LazyLock::new(|| {
    REQ_COLS
        .split(", ")
        .map(|c| format!("conciliation_requests.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
});

/// Parses a bank's `received_at` (RFC 3339 with an offset) to ms since the epoch.
pub(super) fn received_ms(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Reads a match pass's input (the caller's transaction is the snapshot).
pub(super) async fn load(conn: &mut Conn, account: AccountId, horizon: Timestamp) -> StoreResult<PassInput> {
    let state = sqlx::query("SELECT version, dirty_seq FROM reconcile_state WHERE account_id = $1")
        .bind(account.0)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_err)?;
    let (version, dirty_seq) = match state {
        Some(r) => (r.try_get("version")?, r.try_get("dirty_seq")?),
        None => (0, 0),
    };
    let sql = format!(
        "SELECT {REQ_COLS} FROM conciliation_requests WHERE account_id = $1 AND status IN {} \
         ORDER BY registered_at, external_id, id",
        *OPEN_STATUSES
    );
    let rows = sqlx::query(&sql)
        .bind(account.0)
        .fetch_all(&mut *conn)
        .await
        .map_err(map_err)?;
    let requests = rows.iter().map(conciliation_from).collect::<StoreResult<Vec<_>>>()?;
    drop(rows);
    let sql = format!(
        "SELECT {ELIGIBLE_COLS} FROM movements m WHERE account_id = $1 AND ignored_at IS NULL \
         AND (received_at_ms IS NULL OR received_at_ms >= $2) \
         AND NOT EXISTS (SELECT 1 FROM conciliation_matches c WHERE c.movement_id = m.id) \
         ORDER BY received_at_ms, id"
    );
    let rows = sqlx::query(&sql)
        .bind(account.0)
        .bind(to_ms(horizon))
        .fetch_all(&mut *conn)
        .await
        .map_err(map_err)?;
    let mut movements = rows.iter().map(eligible_from).collect::<StoreResult<Vec<_>>>()?;
    // NULLs sort first on SQLite and last on PostgreSQL: one order on both.
    movements.sort_by_key(|m| (m.received_at_ms, m.id));
    drop(rows);
    let sql = format!(
        "SELECT j.request_id, j.movement_id FROM conciliation_rejections j \
         JOIN conciliation_requests r ON r.id = j.request_id \
         WHERE r.account_id = $1 AND r.status IN {} ORDER BY j.request_id, j.movement_id",
        *OPEN_STATUSES
    );
    let rows = sqlx::query(&sql)
        .bind(account.0)
        .fetch_all(&mut *conn)
        .await
        .map_err(map_err)?;
    let rejections = rows
        .iter()
        .map(|r| {
            Ok((
                ConciliationRequestId(r.try_get("request_id")?),
                MovementId(r.try_get("movement_id")?),
            ))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(PassInput {
        version,
        dirty_seq,
        requests,
        movements,
        rejections,
    })
}

/// Locks the account's state row (creating it if missing) and returns its version; `None` when
/// the account is gone.
pub(super) async fn lock_state(conn: &mut Conn, account: AccountId) -> StoreResult<Option<i64>> {
    sqlx::query(
        "INSERT INTO reconcile_state (account_id) SELECT $1 \
         WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1) ON CONFLICT (account_id) DO NOTHING",
    )
    .bind(account.0)
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    let sql = format!("SELECT {STATE_COLS} FROM reconcile_state WHERE account_id = $1{FOR_UPDATE}");
    let state = sqlx::query(&sql)
        .bind(account.0)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_err)?;
    Ok(state.as_ref().map(state_from).transpose()?.map(|s| s.version))
}

/// A request named by a pass's decisions, as it is when the commit begins: what the decisions
/// are compared with, and its last attempt's `(result, reason, candidates)`.
struct Before {
    id: Uuid,
    status: ConciliationStatus,
    reason: Option<String>,
    attempt_count: i64,
    last_candidates: Option<String>,
    last: Option<(String, Option<String>, String)>,
    /// The trigger a human asked this evaluation to record (`run`): an attempt is then written
    /// whatever the decision, with that trigger.
    pending_trigger: Option<String>,
    /// Consecutive evaluation errors (reset by this commit).
    eval_errors: i64,
}

/// A column of the last attempt of the request `r`, as a subquery on the attempts' unique key
/// (a join lets PostgreSQL scan every attempt when the table has no statistics yet).
fn last_attempt(col: &str) -> String {
    format!(
        "(SELECT a.{col} FROM conciliation_attempts a \
         WHERE a.request_id = r.id AND a.attempt_number = r.attempt_count)"
    )
}

/// An attempt to record.
struct Attempt<'a> {
    request: Uuid,
    number: i64,
    result: &'static str,
    reason: Option<&'a str>,
    trigger: &'a str,
    candidates: &'a str,
}

/// The outcome of applying a pass: whether anything changed, and the events to log. `None`: a
/// lost race (a matched movement is no longer eligible, or a match conflicted); the caller
/// rolls back.
pub(super) type Applied = Option<(bool, Vec<NewEvent>)>;

/// Applies a pass's decisions in the caller's transaction (which holds the account lock and has
/// checked the version).
pub(super) async fn apply(
    conn: &mut Conn,
    account: AccountId,
    commit: &PassCommit,
    now: Timestamp,
    events: &PassEventsFor<'_>,
) -> StoreResult<Applied> {
    let now_ms = to_ms(now);

    // The open requests the decisions name, as they are now, with their last attempts (an
    // attempt is written only when the result, the reason or the candidates change).
    let mut ids: Vec<Uuid> = commit.expired.iter().map(|r| r.0).collect();
    ids.extend(commit.matched.iter().map(|d| d.request.0));
    ids.extend(commit.ambiguous.iter().map(|d| d.request.0));
    ids.extend(commit.not_found.iter().map(|d| d.request.0));
    ids.sort_unstable();
    ids.dedup();
    let mut before: HashMap<Uuid, Before> = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(BATCH) {
        let sql = format!(
            "SELECT r.id, r.account_id, r.status, r.reason, r.attempt_count, r.last_candidates, \
             r.pending_trigger, r.eval_errors, {} AS last_result, {} AS last_reason, {} AS last_attempt_candidates \
             FROM conciliation_requests r WHERE r.id IN ({})",
            last_attempt("result"),
            last_attempt("reason"),
            last_attempt("candidates"),
            params(1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&mut *conn).await.map_err(map_err)? {
            let status: String = r.try_get("status")?;
            let status =
                ConciliationStatus::parse(&status).ok_or_else(|| corrupt("conciliation_requests.status", &status))?;
            if AccountId(r.try_get("account_id")?) != account || !status.is_open() {
                continue;
            }
            let last_result: Option<String> = r.try_get("last_result")?;
            let last = match last_result {
                Some(result) => Some((result, r.try_get("last_reason")?, r.try_get("last_attempt_candidates")?)),
                None => None,
            };
            let row = Before {
                id: r.try_get("id")?,
                status,
                reason: r.try_get("reason")?,
                attempt_count: r.try_get("attempt_count")?,
                last_candidates: r.try_get("last_candidates")?,
                last,
                pending_trigger: r.try_get("pending_trigger")?,
                eval_errors: r.try_get("eval_errors")?,
            };
            before.insert(row.id, row);
        }
    }

    // The matched movements: still the account's, unmatched and not ignored, or the race is lost.
    let movement_ids: Vec<Uuid> = commit.matched.iter().map(|d| d.movement.0).collect();
    let mut movements: HashMap<Uuid, EligibleMovement> = HashMap::with_capacity(movement_ids.len());
    for chunk in movement_ids.chunks(BATCH - 1) {
        let sql = format!(
            "SELECT {ELIGIBLE_COLS}, account_id FROM movements m WHERE ignored_at IS NULL \
             AND NOT EXISTS (SELECT 1 FROM conciliation_matches c WHERE c.movement_id = m.id) AND id IN ({})",
            params(1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&mut *conn).await.map_err(map_err)? {
            if AccountId(r.try_get("account_id")?) == account {
                let m = eligible_from(&r)?;
                movements.insert(m.id.0, m);
            }
        }
    }
    if movement_ids.iter().any(|id| !movements.contains_key(id)) {
        return Ok(None);
    }

    let mut attempts: Vec<Attempt<'_>> = Vec::new();
    let mut changed = false;
    // A request's own pending trigger (a human's `run`) wins over the pass's.
    let trigger_of = |id: &Uuid| -> &str {
        before
            .get(id)
            .and_then(|r| r.pending_trigger.as_deref())
            .unwrap_or(&commit.trigger)
    };

    // 1. Expiries.
    let expired: Vec<Uuid> = commit
        .expired
        .iter()
        .map(|r| r.0)
        .filter(|id| before.contains_key(id))
        .collect();
    let mut expired_rows: HashMap<Uuid, ConciliationRow> = HashMap::with_capacity(expired.len());
    for chunk in expired.chunks(BATCH - 2) {
        let sql = format!(
            "UPDATE conciliation_requests SET status = 'expired', reason = $1, closed_at = $2, updated_at = $2, \
             pending_trigger = NULL, attempt_count = attempt_count + 1 WHERE status IN {} AND id IN ({}) RETURNING {REQ_COLS}",
            *OPEN_STATUSES,
            params(3, chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(EXPIRED_REASON).bind(now_ms);
        for id in chunk {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&mut *conn).await.map_err(map_err)? {
            let row = conciliation_from(&r)?;
            expired_rows.insert(row.id.0, row);
        }
    }
    for row in expired.iter().filter_map(|id| expired_rows.get(id)) {
        changed = true;
        attempts.push(Attempt {
            request: row.id.0,
            number: row.attempt_count,
            result: "expired",
            reason: Some(EXPIRED_REASON),
            trigger: EXPIRY_TRIGGER,
            candidates: "[]",
        });
    }

    // 2. Matches: the request first (compare-and-set), then the match row of each that moved.
    // (The updates name requests by id only: `before` holds only the account's, and an extra
    // `account_id` condition leads both planners to scan the account's requests per batch.)
    let matched: Vec<&MatchDecision> = commit
        .matched
        .iter()
        .filter(|d| before.contains_key(&d.request.0) && !expired_rows.contains_key(&d.request.0))
        .collect();
    let mut matched_rows: HashMap<Uuid, ConciliationRow> = HashMap::with_capacity(matched.len());
    for chunk in matched.chunks((BATCH - 2) / 2) {
        let sql = format!(
            "UPDATE conciliation_requests SET status = 'matched', reason = v.column2, closed_at = $1, \
             updated_at = $1, pending_trigger = NULL, attempt_count = conciliation_requests.attempt_count + 1 \
             FROM (VALUES {}) AS v WHERE conciliation_requests.id = v.column1 \
             AND conciliation_requests.status IN {} RETURNING {}",
            values(2, 2, chunk.len()),
            *OPEN_STATUSES,
            *REQ_COLS_T
        );
        let mut q = sqlx::query(&sql).bind(now_ms);
        for d in chunk {
            q = q.bind(d.request.0).bind(&d.reason);
        }
        for r in q.fetch_all(&mut *conn).await.map_err(map_err)? {
            let row = conciliation_from(&r)?;
            matched_rows.insert(row.id.0, row);
        }
    }
    let matched: Vec<(&MatchDecision, &ConciliationRow)> = matched
        .into_iter()
        .filter_map(|d| matched_rows.get(&d.request.0).map(|row| (d, row)))
        .collect();
    for chunk in matched.chunks((BATCH - 2) / 5) {
        let tuples: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p = 3 + i * 5;
                format!(
                    "(${}, $1, ${}, ${}, 'engine', NULL, ${}, ${}, $2)",
                    p,
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO conciliation_matches (id, account_id, request_id, movement_id, matched_by, \
             matched_by_user, score, explanation, matched_at) VALUES {}",
            tuples.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(account.0).bind(now_ms);
        for (d, _) in chunk {
            q = q
                .bind(ConciliationMatchId::new().0)
                .bind(d.request.0)
                .bind(d.movement.0)
                .bind(d.score)
                .bind(&d.explanation);
        }
        if let Err(e) = q.execute(&mut *conn).await.map_err(map_err) {
            if e.is_conflict_on(Constraint::MatchMovement) || e.is_conflict_on(Constraint::MatchRequest) {
                return Ok(None);
            }
            return Err(e);
        }
    }
    for (d, row) in &matched {
        changed = true;
        attempts.push(Attempt {
            request: row.id.0,
            number: row.attempt_count,
            result: "matched",
            reason: d.reason.as_deref(),
            trigger: trigger_of(&row.id.0),
            candidates: &d.candidates,
        });
    }

    // 3. Ambiguous: unless already so with the same candidate set.
    let ambiguous: Vec<&AmbiguousDecision> = commit
        .ambiguous
        .iter()
        .filter(|d| {
            before.get(&d.request.0).is_some_and(|r| {
                let same_entry = r.status == ConciliationStatus::Ambiguous
                    && r.last_candidates.as_deref() == Some(d.candidate_set.as_str());
                let decided = expired_rows.contains_key(&r.id) || matched_rows.contains_key(&r.id);
                !same_entry && !decided
            })
        })
        .collect();
    let mut ambiguous_rows: HashMap<Uuid, ConciliationRow> = HashMap::with_capacity(ambiguous.len());
    for chunk in ambiguous.chunks((BATCH - 3) / 2) {
        let sql = format!(
            "UPDATE conciliation_requests SET status = 'ambiguous', reason = $1, last_candidates = v.column2, \
             updated_at = $2, pending_trigger = NULL, attempt_count = conciliation_requests.attempt_count + 1 \
             FROM (VALUES {}) AS v WHERE conciliation_requests.id = v.column1 \
             AND conciliation_requests.status IN {} RETURNING {}",
            values(3, 2, chunk.len()),
            *OPEN_STATUSES,
            *REQ_COLS_T
        );
        let mut q = sqlx::query(&sql).bind(AMBIGUOUS_REASON).bind(now_ms);
        for d in chunk {
            q = q.bind(d.request.0).bind(&d.candidate_set);
        }
        for r in q.fetch_all(&mut *conn).await.map_err(map_err)? {
            let row = conciliation_from(&r)?;
            ambiguous_rows.insert(row.id.0, row);
        }
    }
    for d in &ambiguous {
        if let Some(row) = ambiguous_rows.get(&d.request.0) {
            changed = true;
            attempts.push(Attempt {
                request: row.id.0,
                number: row.attempt_count,
                result: "ambiguous",
                reason: Some(AMBIGUOUS_REASON),
                trigger: trigger_of(&row.id.0),
                candidates: &d.candidates,
            });
        }
    }

    // 4. Not found: written only when something changed; an attempt only when the result, the
    // reason or the candidates differ from the last attempt's.
    let mut not_found: Vec<(&NotFoundDecision, bool)> = Vec::new();
    for d in &commit.not_found {
        let Some(r) = before.get(&d.request.0) else {
            continue;
        };
        if expired_rows.contains_key(&r.id) || matched_rows.contains_key(&r.id) || ambiguous_rows.contains_key(&r.id) {
            continue;
        }
        // The request's last attempt is the one its counter names (read with it above).
        let new_attempt = r.pending_trigger.is_some()
            || match &r.last {
                Some((result, reason, candidates)) => {
                    result != "not_found" || reason.as_deref() != Some(d.reason.as_str()) || candidates != &d.candidates
                }
                None => true,
            };
        let new_state = r.pending_trigger.is_some()
            || r.status != ConciliationStatus::NotFound
            || r.reason.as_deref() != Some(d.reason.as_str())
            || r.last_candidates.is_some();
        if new_attempt || new_state {
            not_found.push((d, new_attempt));
        }
    }
    let mut not_found_rows: HashMap<Uuid, ConciliationRow> = HashMap::with_capacity(not_found.len());
    for chunk in not_found.chunks((BATCH - 2) / 3) {
        let sql = format!(
            "UPDATE conciliation_requests SET status = 'not_found', reason = v.column2, last_candidates = NULL, \
             updated_at = $1, pending_trigger = NULL, attempt_count = conciliation_requests.attempt_count + v.column3 \
             FROM (VALUES {}) AS v WHERE conciliation_requests.id = v.column1 \
             AND conciliation_requests.status IN {} RETURNING {}",
            values(2, 3, chunk.len()),
            *OPEN_STATUSES,
            *REQ_COLS_T
        );
        let mut q = sqlx::query(&sql).bind(now_ms);
        for (d, new_attempt) in chunk {
            q = q.bind(d.request.0).bind(&d.reason).bind(i64::from(*new_attempt));
        }
        for r in q.fetch_all(&mut *conn).await.map_err(map_err)? {
            let row = conciliation_from(&r)?;
            not_found_rows.insert(row.id.0, row);
        }
    }
    for (d, new_attempt) in &not_found {
        if let Some(row) = not_found_rows.get(&d.request.0) {
            changed = true;
            if *new_attempt {
                attempts.push(Attempt {
                    request: row.id.0,
                    number: row.attempt_count,
                    result: "not_found",
                    reason: Some(&d.reason),
                    trigger: trigger_of(&row.id.0),
                    candidates: &d.candidates,
                });
            }
        }
    }

    // The attempts, numbered from each request's counter (moved by the updates above).
    for chunk in attempts.chunks((BATCH - 1) / 7) {
        let sql = format!(
            "INSERT INTO conciliation_attempts (id, request_id, attempt_number, result, reason, trigger, \
             candidates, created_at) VALUES {}",
            (0..chunk.len())
                .map(|i| {
                    let p = 2 + i * 7;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, ${}, ${}, $1)",
                        p,
                        p + 1,
                        p + 2,
                        p + 3,
                        p + 4,
                        p + 5,
                        p + 6
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut q = sqlx::query(&sql).bind(now_ms);
        for a in chunk {
            q = q
                .bind(AttemptId::new().0)
                .bind(a.request)
                .bind(a.number)
                .bind(a.result)
                .bind(a.reason)
                .bind(a.trigger)
                .bind(a.candidates);
        }
        q.execute(&mut *conn).await.map_err(map_err)?;
    }

    // A successful evaluation ends the requests' error streaks.
    let mut erred: Vec<Uuid> = before.values().filter(|r| r.eval_errors > 0).map(|r| r.id).collect();
    erred.sort_unstable();
    super::failures::reset(conn, &erred).await?;

    // The events, in the order of the decisions.
    let mut out = Vec::new();
    for row in expired.iter().filter_map(|id| expired_rows.get(id)) {
        out.extend(events(PassEvent::Expired(row)));
    }
    for (d, row) in &matched {
        if let Some(m) = movements.get(&d.movement.0) {
            out.extend(events(PassEvent::Matched {
                request: row,
                movement: m,
            }));
        }
    }
    for d in &ambiguous {
        if let Some(row) = ambiguous_rows.get(&d.request.0) {
            out.extend(events(PassEvent::Ambiguous(row)));
        }
    }
    for (d, _) in &not_found {
        let first = before
            .get(&d.request.0)
            .is_some_and(|r| r.status == ConciliationStatus::Pending && r.attempt_count == 0);
        if let (true, Some(row)) = (first, not_found_rows.get(&d.request.0)) {
            out.extend(events(PassEvent::NotFound(row)));
        }
    }
    Ok(Some((changed, out)))
}
