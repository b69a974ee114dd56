//! Reconciliation: the match pass's reads and its one-transaction commit (RECONCILIATION §5.6,
//! §5.9), inside the caller's transaction. Every write is batched (at most [`BATCH`]
//! parameters per statement), so a pass over tens of thousands of requests is a few hundred
//! statements.

use std::collections::{HashMap, HashSet};

use sqlx::Row;
use uuid::Uuid;

use super::reconcile::{req_out, ReqOut, BULK_ROWS, OPEN_STATUSES, PAGE, STATE_COLS};
use super::rows::*;
use super::{bulk, Db, BACKEND, FOR_UPDATE};
use crate::error::{map_err, StoreResult};
use crate::model::to_ms;
use crate::*;

type Conn = <Db as sqlx::Database>::Connection;

/// The reason of a request the pass found ambiguous.
pub(super) const AMBIGUOUS_REASON: &str = "several_equally_plausible";
/// The reason of a request that expired.
pub(super) const EXPIRED_REASON: &str = "expired_after_5_days";
/// The attempt trigger of an expiry.
const EXPIRY_TRIGGER: &str = "expiry";

/// The columns of an [`EligibleMovement`].
pub(super) const ELIGIBLE_COLS: &str = "id, amount, currency, name, description, received_at, received_at_ms";

/// [`ELIGIBLE_COLS`] as one JSON row out of the table aliased `alias` (see [`bulk::row_out`]).
pub(super) fn eligible_out(alias: &str) -> String {
    let cols: Vec<String> = ELIGIBLE_COLS
        .split(", ")
        .map(|c| match c {
            "id" => format!("uuid:{alias}{c}"),
            _ => format!("{alias}{c}"),
        })
        .collect();
    bulk::row_out(&cols.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A movement as [`eligible_out`] writes it.
type EligibleOut = (Uuid, String, String, Option<String>, String, String, Option<i64>);

fn eligible_of(
    (id, amount, currency, name, description, received_at, received_at_ms): EligibleOut,
) -> EligibleMovement {
    EligibleMovement {
        id: MovementId(id),
        amount,
        currency,
        name,
        description,
        received_at,
        received_at_ms,
    }
}

/// Decodes the movements of an aggregate read of [`eligible_out`] rows.
pub(super) fn parse_eligible(text: &str) -> StoreResult<Vec<EligibleMovement>> {
    let rows: Vec<EligibleOut> = bulk::parse("movements", text)?;
    Ok(rows.into_iter().map(eligible_of).collect())
}

/// Decodes one movement of [`eligible_out`] nested in a larger row.
pub(super) fn parse_eligible_value(v: serde_json::Value) -> StoreResult<EligibleMovement> {
    serde_json::from_value(v)
        .map(eligible_of)
        .map_err(|e| corrupt("movements", e))
}

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
    let mut requests =
        super::reconcile::requests_where(conn, account, &format!("status IN {}", *OPEN_STATUSES)).await?;
    requests.sort_by(|a, b| (a.registered_at, &a.external_id, a.id.0).cmp(&(b.registered_at, &b.external_id, b.id.0)));
    // The free movements, then the matched ones (read the same way).
    let mut read = Vec::with_capacity(2);
    for matched in ["NOT EXISTS", "EXISTS"] {
        let sql = bulk::agg_out(
            &eligible_out("p."),
            &format!(
                "FROM (SELECT {ELIGIBLE_COLS} FROM movements m WHERE m.account_id = $1 AND m.ignored_at IS NULL \
                 AND (m.received_at_ms IS NULL OR m.received_at_ms >= $2) \
                 AND {matched} (SELECT 1 FROM conciliation_matches c WHERE c.movement_id = m.id) \
                 AND m.id > $3 ORDER BY m.id LIMIT $4) AS p"
            ),
        );
        let mut movements = Vec::new();
        let mut after = Uuid::nil();
        loop {
            let text: String = sqlx::query_scalar(&sql)
                .bind(account.0)
                .bind(to_ms(horizon))
                .bind(after)
                .bind(PAGE)
                .fetch_one(&mut *conn)
                .await
                .map_err(map_err)?;
            let page = parse_eligible(&text)?;
            drop(text);
            let full = page.len() as i64 == PAGE;
            after = page.iter().map(|m| m.id.0).fold(after, Ord::max);
            movements.extend(page);
            if !full {
                break;
            }
        }
        // NULLs sort first on SQLite and last on PostgreSQL: one order on both.
        movements.sort_by_key(|m| (m.received_at_ms, m.id));
        read.push(movements);
    }
    let taken = read.pop().unwrap_or_default();
    let movements = read.pop().unwrap_or_default();
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
        taken,
        rejections,
    })
}

/// Locks the account's state row (creating it if missing) and returns its version; `None` when
/// the account is gone.
pub(super) async fn lock_state(conn: &mut Conn, account: AccountId) -> StoreResult<Option<i64>> {
    Ok(lock_state_row(conn, account).await?.map(|s| s.version))
}

/// Locks the account's state row (creating it if missing) and returns it; `None` when the
/// account is gone. Every reconciliation change of an account takes this lock first.
pub(super) async fn lock_state_row(conn: &mut Conn, account: AccountId) -> StoreResult<Option<ReconcileStateRow>> {
    let sql = format!("SELECT {STATE_COLS} FROM reconcile_state WHERE account_id = $1{FOR_UPDATE}");
    // The row exists but for an account's first change: one round trip then.
    let mut state = sqlx::query(&sql)
        .bind(account.0)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_err)?;
    if state.is_none() {
        sqlx::query(
            "INSERT INTO reconcile_state (account_id) SELECT $1 \
             WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1) ON CONFLICT (account_id) DO NOTHING",
        )
        .bind(account.0)
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
        state = sqlx::query(&sql)
            .bind(account.0)
            .fetch_optional(&mut *conn)
            .await
            .map_err(map_err)?;
    }
    state.as_ref().map(state_from).transpose()
}

/// A request named by a pass's decisions, as it is when the commit begins: what the decisions
/// are compared with, and its last attempt's `(result, reason, candidates)`.
struct Before {
    row: ConciliationRow,
    last: Option<(String, Option<String>, String)>,
    /// The trigger a human asked this evaluation to record (`run`): an attempt is then written
    /// whatever the decision, with that trigger.
    pending_trigger: Option<String>,
}

/// [`Before`] as its aggregate read writes it.
#[derive(serde::Deserialize)]
struct BeforeOut(ReqOut, Option<String>, Option<String>, Option<String>, Option<String>);

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
    trigger: String,
    candidates: &'a str,
}

/// The outcome of applying a pass: whether anything changed, and the events to log. `None`: a
/// lost race (a matched movement is no longer eligible, or a match conflicted); the caller
/// rolls back.
pub(super) type Applied = Option<(bool, Vec<NewEvent>)>;

/// The state a request is left in by a pass, with the attempt it records, if any.
struct Decided<'a> {
    /// The request, as decided (its `row`), boxed where it was read: no copy of 50,000 rows.
    req: Box<Before>,
    attempt: Option<Attempt<'a>>,
    /// The request's first evaluation (its `conciliation.not_found` event), or its entry into
    /// `ambiguous` (its `conciliation.ambiguous` event and result webhook: once per entry, not
    /// again when only the candidate set changes).
    first: bool,
}

/// Applies a pass's decisions in the caller's transaction (which holds the account lock and has
/// checked the version).
///
/// `fresh`: requests the same transaction's poll registers and has not stored yet (the first
/// pass run inside the poll, docs/reconciliation.md "Performance"). Each is inserted once, as
/// the decisions leave it, where a stored request is updated (compare-and-set).
pub(super) async fn apply(
    conn: &mut Conn,
    account: AccountId,
    commit: &PassCommit,
    now: Timestamp,
    events: &PassEventsFor<'_>,
    fresh: Vec<ConciliationRow>,
) -> StoreResult<Applied> {
    let now_ms = to_ms(now);
    // What the database stores (whole milliseconds), so the rows rebuilt below are the stored ones.
    let now = crate::model::try_from_ms(now_ms).unwrap_or(now);

    // The open requests the decisions name, as they are now, with their last attempts (an
    // attempt is written only when the result, the reason or the candidates change).
    let fresh_ids: Vec<Uuid> = fresh.iter().map(|r| r.id.0).collect();
    // Boxed: the decisions move rows out, and the table itself stays allocated until dropped.
    let mut before: HashMap<Uuid, Box<Before>> = HashMap::with_capacity(fresh.len());
    for row in fresh {
        before.insert(
            row.id.0,
            Box::new(Before {
                row,
                last: None,
                pending_trigger: None,
            }),
        );
    }
    let mut ids: Vec<Uuid> = commit.expired.iter().map(|r| r.0).collect();
    ids.extend(commit.matched.iter().map(|d| d.request.0));
    ids.extend(commit.ambiguous.iter().map(|d| d.request.0));
    ids.extend(commit.not_found.iter().map(|d| d.request.0));
    ids.retain(|id| !before.contains_key(id));
    ids.sort_unstable();
    ids.dedup();
    let sql = bulk::agg_out(
        &format!(
            "json_{}({}, r.pending_trigger, {}, {}, {})",
            if BACKEND == "sqlite" { "array" } else { "build_array" },
            req_out("r."),
            last_attempt("result"),
            last_attempt("reason"),
            last_attempt("candidates"),
        ),
        &format!("FROM conciliation_requests r WHERE r.id {}", bulk::in_ids(1)),
    );
    for chunk in ids.chunks(BULK_ROWS) {
        let text: String = sqlx::query_scalar(&sql)
            .bind(bulk::ids(chunk.iter().copied()).finish())
            .fetch_one(&mut *conn)
            .await
            .map_err(map_err)?;
        let rows: Vec<BeforeOut> = bulk::parse("conciliation_requests", &text)?;
        drop(text);
        for BeforeOut(row, pending_trigger, last_result, last_reason, last_attempt_candidates) in rows {
            let row = row.into_row()?;
            if row.account_id != account || !row.status.is_open() {
                continue;
            }
            let last = match (last_result, last_attempt_candidates) {
                (Some(result), Some(candidates)) => Some((result, last_reason, candidates)),
                _ => None,
            };
            let id = row.id.0;
            before.insert(
                id,
                Box::new(Before {
                    row,
                    last,
                    pending_trigger,
                }),
            );
        }
    }
    drop(ids);

    // The matched movements: still the account's, unmatched and not ignored, or the race is lost.
    let movement_ids: Vec<Uuid> = commit.matched.iter().map(|d| d.movement.0).collect();
    let mut movements: HashMap<Uuid, EligibleMovement> = HashMap::with_capacity(movement_ids.len());
    // The rows are found by id: on SQLite the account test is written `+m.account_id` so the
    // planner cannot prefer the account's index and scan every movement of the account (3 ms
    // a pass with 15,000 movements, for one id) over probing the primary key per id.
    let sql = bulk::agg_out(
        &eligible_out("m."),
        &format!(
            "FROM movements m WHERE m.ignored_at IS NULL AND {}m.account_id = $2 \
             AND NOT EXISTS (SELECT 1 FROM conciliation_matches c WHERE c.movement_id = m.id) AND m.id {}",
            if BACKEND == "sqlite" { "+" } else { "" },
            bulk::in_ids(1)
        ),
    );
    for chunk in movement_ids.chunks(BULK_ROWS) {
        let text: String = sqlx::query_scalar(&sql)
            .bind(bulk::ids(chunk.iter().copied()).finish())
            .bind(account.0)
            .fetch_one(&mut *conn)
            .await
            .map_err(map_err)?;
        for m in parse_eligible(&text)? {
            movements.insert(m.id.0, m);
        }
    }
    if movement_ids.iter().any(|id| !movements.contains_key(id)) {
        return Ok(None);
    }

    // A successful evaluation ends the requests' error streaks.
    let mut erred: Vec<Uuid> = before
        .values()
        .filter(|b| b.row.eval_errors > 0)
        .map(|b| b.row.id.0)
        .collect();
    erred.sort_unstable();

    // 1. The decisions, in memory. Each request is decided once: the first decision naming it
    // (expiry, match, ambiguity, not found, in this order) takes its row out of `before`, so an
    // update counted against the rows it names never sees a request twice, and no row is copied.
    // A request's own pending trigger (a human's `run`) wins over the pass's.
    let trigger = |b: &Before| -> String { b.pending_trigger.clone().unwrap_or_else(|| commit.trigger.clone()) };
    let take = |before: &mut HashMap<Uuid, Box<Before>>, id: &Uuid| -> Option<(Box<Before>, String)> {
        before.remove(id).map(|mut b| {
            b.row.updated_at = now;
            let t = trigger(&b);
            (b, t)
        })
    };

    let mut expired: Vec<(Uuid, Decided<'_>)> = Vec::with_capacity(commit.expired.len());
    for id in commit.expired.iter().map(|r| r.0) {
        let Some((mut b, _)) = take(&mut before, &id) else {
            continue;
        };
        let row = &mut b.row;
        row.status = ConciliationStatus::Expired;
        row.reason = Some(EXPIRED_REASON.into());
        row.closed_at = Some(now);
        row.attempt_count += 1;
        let attempt = Attempt {
            request: id,
            number: row.attempt_count,
            result: "expired",
            reason: Some(EXPIRED_REASON),
            trigger: EXPIRY_TRIGGER.into(),
            candidates: "[]",
        };
        expired.push((
            id,
            Decided {
                req: b,
                attempt: Some(attempt),
                first: false,
            },
        ));
    }

    let mut matched: Vec<(&MatchDecision, Decided<'_>)> = Vec::with_capacity(commit.matched.len());
    for d in &commit.matched {
        let Some((mut b, trigger)) = take(&mut before, &d.request.0) else {
            continue;
        };
        let row = &mut b.row;
        row.status = ConciliationStatus::Matched;
        row.reason = d.reason.clone();
        row.closed_at = Some(now);
        row.attempt_count += 1;
        let attempt = Attempt {
            request: d.request.0,
            number: row.attempt_count,
            result: "matched",
            reason: d.reason.as_deref(),
            trigger,
            candidates: &d.candidates,
        };
        matched.push((
            d,
            Decided {
                req: b,
                attempt: Some(attempt),
                first: false,
            },
        ));
    }

    // Ambiguous: unless already so with the same candidate set.
    let mut ambiguous: Vec<(&AmbiguousDecision, Decided<'_>)> = Vec::with_capacity(commit.ambiguous.len());
    for d in &commit.ambiguous {
        let same_entry = before.get(&d.request.0).is_none_or(|b| {
            b.row.status == ConciliationStatus::Ambiguous
                && b.row.last_candidates.as_deref() == Some(d.candidate_set.as_str())
        });
        if same_entry {
            continue;
        }
        let Some((mut b, trigger)) = take(&mut before, &d.request.0) else {
            continue;
        };
        let entry = b.row.status != ConciliationStatus::Ambiguous;
        let row = &mut b.row;
        row.status = ConciliationStatus::Ambiguous;
        row.reason = Some(AMBIGUOUS_REASON.into());
        row.last_candidates = Some(d.candidate_set.clone());
        row.attempt_count += 1;
        let attempt = Attempt {
            request: d.request.0,
            number: row.attempt_count,
            result: "ambiguous",
            reason: Some(AMBIGUOUS_REASON),
            trigger,
            candidates: &d.candidates,
        };
        ambiguous.push((
            d,
            Decided {
                req: b,
                attempt: Some(attempt),
                first: entry,
            },
        ));
    }

    // Not found: written only when something changed; an attempt only when the result, the
    // reason or the candidates differ from the last attempt's.
    let mut not_found: Vec<(&NotFoundDecision, Decided<'_>)> = Vec::with_capacity(commit.not_found.len());
    for d in &commit.not_found {
        let Some(b) = before.get(&d.request.0) else {
            continue;
        };
        let r = &b.row;
        // The request's last attempt is the one its counter names (read with it above).
        let new_attempt = b.pending_trigger.is_some()
            || match &b.last {
                Some((result, reason, candidates)) => {
                    result != "not_found" || reason.as_deref() != Some(d.reason.as_str()) || candidates != &d.candidates
                }
                None => true,
            };
        let new_state = b.pending_trigger.is_some()
            || r.status != ConciliationStatus::NotFound
            || r.reason.as_deref() != Some(d.reason.as_str())
            || r.last_candidates.is_some();
        if !(new_attempt || new_state) {
            continue;
        }
        let Some((mut b, trigger)) = take(&mut before, &d.request.0) else {
            continue;
        };
        // The first evaluation: a `conciliation.not_found` event.
        let first = b.row.status == ConciliationStatus::Pending && b.row.attempt_count == 0;
        let row = &mut b.row;
        row.status = ConciliationStatus::NotFound;
        row.reason = Some(d.reason.clone());
        row.last_candidates = None;
        row.attempt_count += i64::from(new_attempt);
        let attempt = new_attempt.then(|| Attempt {
            request: d.request.0,
            number: row.attempt_count,
            result: "not_found",
            reason: Some(&d.reason),
            trigger,
            candidates: &d.candidates,
        });
        not_found.push((d, Decided { req: b, attempt, first }));
    }

    // 2. The writes. Fresh requests first, as decided (the match and attempt rows refer to them).
    let decided: HashMap<Uuid, &ConciliationRow> = expired
        .iter()
        .map(|(id, x)| (*id, &x.req.row))
        .chain(matched.iter().map(|(d, x)| (d.request.0, &x.req.row)))
        .chain(ambiguous.iter().map(|(d, x)| (d.request.0, &x.req.row)))
        .chain(not_found.iter().map(|(d, x)| (d.request.0, &x.req.row)))
        .collect();
    let fresh_rows: Vec<&ConciliationRow> = fresh_ids
        .iter()
        .filter_map(|id| decided.get(id).copied().or_else(|| before.get(id).map(|b| &b.row)))
        .collect();
    super::reconcile::insert_requests(conn, account, &fresh_rows).await?;
    drop((fresh_rows, decided));
    // Every row decided was taken out; what is left is not needed any more (its memory goes to
    // the events built below: a first pass's peak).
    drop(before);
    let fresh_ids: HashSet<Uuid> = fresh_ids.into_iter().collect();
    let stored = |id: &Uuid| !fresh_ids.contains(id);
    // Stored requests: compare-and-set on the open statuses. The rows were read above in this
    // transaction, under the lock, so an update cannot miss; a miss is a lost race all the same.
    let ids: Vec<Uuid> = expired.iter().map(|(id, _)| *id).filter(|id| stored(id)).collect();
    for chunk in ids.chunks(BULK_ROWS) {
        let sql = format!(
            "UPDATE conciliation_requests SET status = 'expired', reason = $1, closed_at = $2, updated_at = $2, \
             pending_trigger = NULL, attempt_count = attempt_count + 1 WHERE status IN {} AND id {}",
            *OPEN_STATUSES,
            bulk::in_ids(3)
        );
        let done = sqlx::query(&sql)
            .bind(EXPIRED_REASON)
            .bind(now_ms)
            .bind(bulk::ids(chunk.iter().copied()).finish())
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
        if done.rows_affected() != chunk.len() as u64 {
            return Ok(None);
        }
    }

    let rows: Vec<&MatchDecision> = matched
        .iter()
        .map(|(d, _)| *d)
        .filter(|d| stored(&d.request.0))
        .collect();
    let sql = format!(
        "UPDATE conciliation_requests SET status = 'matched', reason = v.reason, closed_at = $1, \
         updated_at = $1, pending_trigger = NULL, attempt_count = conciliation_requests.attempt_count + 1 \
         FROM (SELECT {} AS id, {} AS reason FROM {}) AS v WHERE conciliation_requests.id = v.id \
         AND conciliation_requests.status IN {}",
        bulk::uuid(0),
        bulk::text(1),
        bulk::source(2),
        *OPEN_STATUSES,
    );
    let mut chunks = bulk::Chunks::new(&rows, BULK_ROWS, |chunk: &[&MatchDecision]| {
        let mut rows = bulk::JsonRows::with_capacity(chunk.len() * 60);
        for d in chunk {
            rows.row().uuid(d.request.0).opt_text(d.reason.as_deref());
        }
        (rows.finish(), chunk.len() as u64)
    });
    while let Some((rows, n)) = chunks.next() {
        let q = sqlx::query(&sql).bind(now_ms).bind(rows);
        let done = chunks.write(q.execute(&mut *conn)).await.map_err(map_err)?;
        if done.rows_affected() != n {
            return Ok(None);
        }
    }
    let sql = format!(
        "INSERT INTO conciliation_matches (id, account_id, request_id, movement_id, matched_by, \
         matched_by_user, score, explanation, matched_at) \
         SELECT {}, $1, {}, {}, 'engine', NULL, {}, {}, $2 FROM {} ORDER BY j.key",
        bulk::uuid(0),
        bulk::uuid(1),
        bulk::uuid(2),
        bulk::int(3),
        bulk::text(4),
        bulk::source(3)
    );
    let mut chunks = bulk::Chunks::new(&matched, BULK_ROWS, |chunk: &[(&MatchDecision, Decided<'_>)]| {
        let mut rows = bulk::JsonRows::with_capacity(chunk.iter().map(|(d, _)| d.explanation.len() + 140).sum());
        for (d, _) in chunk {
            rows.row()
                .uuid(ConciliationMatchId::new().0)
                .uuid(d.request.0)
                .uuid(d.movement.0)
                .int(d.score)
                .text(&d.explanation);
        }
        rows.finish()
    });
    while let Some(rows) = chunks.next() {
        let q = sqlx::query(&sql).bind(account.0).bind(now_ms).bind(rows);
        if let Err(e) = chunks.write(q.execute(&mut *conn)).await.map_err(map_err) {
            if e.is_conflict_on(Constraint::MatchMovement) || e.is_conflict_on(Constraint::MatchRequest) {
                return Ok(None);
            }
            return Err(e);
        }
    }

    let rows: Vec<&AmbiguousDecision> = ambiguous
        .iter()
        .map(|(d, _)| *d)
        .filter(|d| stored(&d.request.0))
        .collect();
    let sql = format!(
        "UPDATE conciliation_requests SET status = 'ambiguous', reason = $1, last_candidates = v.cands, \
         updated_at = $2, pending_trigger = NULL, attempt_count = conciliation_requests.attempt_count + 1 \
         FROM (SELECT {} AS id, {} AS cands FROM {}) AS v WHERE conciliation_requests.id = v.id \
         AND conciliation_requests.status IN {}",
        bulk::uuid(0),
        bulk::text(1),
        bulk::source(3),
        *OPEN_STATUSES,
    );
    let mut chunks = bulk::Chunks::new(&rows, BULK_ROWS, |chunk: &[&AmbiguousDecision]| {
        let mut rows = bulk::JsonRows::with_capacity(chunk.iter().map(|d| d.candidate_set.len() + 60).sum());
        for d in chunk {
            rows.row().uuid(d.request.0).text(&d.candidate_set);
        }
        (rows.finish(), chunk.len() as u64)
    });
    while let Some((rows, n)) = chunks.next() {
        let q = sqlx::query(&sql).bind(AMBIGUOUS_REASON).bind(now_ms).bind(rows);
        let done = chunks.write(q.execute(&mut *conn)).await.map_err(map_err)?;
        if done.rows_affected() != n {
            return Ok(None);
        }
    }

    let rows: Vec<(&NotFoundDecision, bool)> = not_found
        .iter()
        .filter(|(d, _)| stored(&d.request.0))
        .map(|(d, x)| (*d, x.attempt.is_some()))
        .collect();
    let sql = format!(
        "UPDATE conciliation_requests SET status = 'not_found', reason = v.reason, last_candidates = NULL, \
         updated_at = $1, pending_trigger = NULL, attempt_count = conciliation_requests.attempt_count + v.inc \
         FROM (SELECT {} AS id, {} AS reason, {} AS inc FROM {}) AS v WHERE conciliation_requests.id = v.id \
         AND conciliation_requests.status IN {}",
        bulk::uuid(0),
        bulk::text(1),
        bulk::int(2),
        bulk::source(2),
        *OPEN_STATUSES,
    );
    let mut chunks = bulk::Chunks::new(&rows, BULK_ROWS, |chunk: &[(&NotFoundDecision, bool)]| {
        let mut rows = bulk::JsonRows::with_capacity(chunk.len() * 80);
        for (d, new_attempt) in chunk {
            rows.row()
                .uuid(d.request.0)
                .text(&d.reason)
                .int(i64::from(*new_attempt));
        }
        (rows.finish(), chunk.len() as u64)
    });
    while let Some((rows, n)) = chunks.next() {
        let q = sqlx::query(&sql).bind(now_ms).bind(rows);
        let done = chunks.write(q.execute(&mut *conn)).await.map_err(map_err)?;
        if done.rows_affected() != n {
            return Ok(None);
        }
    }
    drop(chunks);
    drop(rows);

    // The attempts, numbered from each request's counter (moved by the decisions above).
    let attempts: Vec<&Attempt<'_>> = expired
        .iter()
        .map(|(_, x)| x)
        .chain(matched.iter().map(|(_, x)| x))
        .chain(ambiguous.iter().map(|(_, x)| x))
        .chain(not_found.iter().map(|(_, x)| x))
        .filter_map(|x| x.attempt.as_ref())
        .collect();
    let changed = !(expired.is_empty() && matched.is_empty() && ambiguous.is_empty() && not_found.is_empty());
    let sql = format!(
        "INSERT INTO conciliation_attempts (id, request_id, attempt_number, result, reason, trigger, \
         candidates, created_at) SELECT {}, {}, {}, {}, {}, {}, {}, $1 FROM {} ORDER BY j.key",
        bulk::uuid(0),
        bulk::uuid(1),
        bulk::int(2),
        bulk::text(3),
        bulk::text(4),
        bulk::text(5),
        bulk::text(6),
        bulk::source(2)
    );
    let mut chunks = bulk::Chunks::new(&attempts, BULK_ROWS, |chunk: &[&Attempt<'_>]| {
        let mut rows = bulk::JsonRows::with_capacity(chunk.iter().map(|a| a.candidates.len() + 140).sum());
        for a in chunk {
            rows.row()
                .uuid(AttemptId::new().0)
                .uuid(a.request)
                .int(a.number)
                .text(a.result)
                .opt_text(a.reason)
                .text(&a.trigger)
                .text(a.candidates);
        }
        rows.finish()
    });
    while let Some(rows) = chunks.next() {
        let q = sqlx::query(&sql).bind(now_ms).bind(rows);
        chunks.write(q.execute(&mut *conn)).await.map_err(map_err)?;
    }
    drop(chunks);
    drop(attempts);

    super::failures::reset(conn, &erred).await?;

    // The events, in the order of the decisions, each row dropped once its event is built.
    let mut out = Vec::new();
    for (_, x) in expired {
        out.extend(events(PassEvent::Expired(&x.req.row)));
    }
    for (d, x) in matched {
        if let Some(m) = movements.get(&d.movement.0) {
            out.extend(events(PassEvent::Matched {
                request: &x.req.row,
                movement: m,
            }));
        }
    }
    for (_, x) in ambiguous {
        if x.first {
            out.extend(events(PassEvent::Ambiguous(&x.req.row)));
        }
    }
    for (_, x) in not_found {
        if x.first {
            out.extend(events(PassEvent::NotFound(&x.req.row)));
        }
    }
    Ok(Some((changed, out)))
}
