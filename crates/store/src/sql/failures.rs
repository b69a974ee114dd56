//! Reconciliation: the match pass's evaluation errors (docs/reconciliation.md §2 `failed`, §5.7
//! `evaluation_error`). A pass that errors counts one more consecutive error (`eval_errors`) on
//! each open request it was evaluating; a request reaching the account's `retry_limit` becomes
//! `failed`. A committed pass resets the counters of the requests it decided ([`reset`]).

use uuid::Uuid;

use super::reconcile::{params, OPEN_STATUSES, REQ_COLS};
use super::rows::*;
use super::Db;
use crate::error::{map_err, StoreResult};
use crate::model::to_ms;
use crate::*;

type Conn = <Db as sqlx::Database>::Connection;

/// The reason of a `failed` request (and of its attempt).
pub(super) const FAILED_REASON: &str = "evaluation_error";

/// Values per `IN (…)` list (see [`super::reconcile::MAX_PARAMS`]).
const CHUNK: usize = super::reconcile::MAX_PARAMS - 4;

/// Counts a failed evaluation of `requests` of `account` (when `None`: the account's requests
/// awaiting one, `pending` and `failed`) in the caller's transaction, which holds the account
/// lock. Only open requests of the account count. Those reaching `retry_limit` and not `failed`
/// yet become `failed` (compare-and-set on the other open statuses), each with an attempt
/// (`failed`, `evaluation_error`, `trigger`) and the events `events` builds. Returns the rows
/// that became `failed` and their events.
pub(super) async fn record(
    conn: &mut Conn,
    account: AccountId,
    requests: Option<&[ConciliationRequestId]>,
    retry_limit: i64,
    trigger: &str,
    now: Timestamp,
    events: &RequestEventsFor<'_>,
) -> StoreResult<(Vec<ConciliationRow>, Vec<NewEvent>)> {
    let now_ms = to_ms(now);
    // `retry_limit` 0 fails a request at its first error, like 1.
    let limit = retry_limit.max(1);
    let ids: Vec<Uuid> = requests.unwrap_or_default().iter().map(|r| r.0).collect();
    // The chunks of the condition naming the requests: their ids, or the awaiting statuses.
    let chunks: Vec<&[Uuid]> = match requests {
        Some(_) => ids.chunks(CHUNK).collect(),
        None => vec![&[]],
    };
    let mut failed: Vec<ConciliationRow> = Vec::new();
    for chunk in chunks {
        // The condition, its ids numbered from `first`.
        let which = |first: usize| match requests {
            Some(_) => format!("id IN ({})", params(first, chunk.len())),
            None => "status IN ('pending', 'failed')".to_owned(),
        };
        let sql = format!(
            "UPDATE conciliation_requests SET eval_errors = eval_errors + 1 \
             WHERE account_id = $1 AND status IN {} AND {}",
            *OPEN_STATUSES,
            which(2)
        );
        let mut q = sqlx::query(&sql).bind(account.0);
        for id in chunk {
            q = q.bind(*id);
        }
        q.execute(&mut *conn).await.map_err(map_err)?;
        let sql = format!(
            "UPDATE conciliation_requests SET status = 'failed', reason = '{FAILED_REASON}', \
             last_candidates = NULL, updated_at = $2, attempt_count = attempt_count + 1 \
             WHERE account_id = $1 AND status IN ('pending', 'not_found', 'ambiguous') \
             AND eval_errors >= $3 AND {} RETURNING {REQ_COLS}",
            which(4)
        );
        let mut q = sqlx::query(&sql).bind(account.0).bind(now_ms).bind(limit);
        for id in chunk {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&mut *conn).await.map_err(map_err)? {
            failed.push(conciliation_from(&r)?);
        }
    }
    // One order on both backends: the events follow the requests' registration.
    failed.sort_by(|a, b| (a.registered_at, &a.external_id, a.id.0).cmp(&(b.registered_at, &b.external_id, b.id.0)));

    // The attempts, numbered from each request's counter (moved above).
    for chunk in failed.chunks((CHUNK - 3) / 3) {
        let sql = format!(
            "INSERT INTO conciliation_attempts (id, request_id, attempt_number, result, reason, trigger, \
             candidates, created_at) VALUES {}",
            (0..chunk.len())
                .map(|i| {
                    let p = 4 + i * 3;
                    format!("(${}, ${}, ${}, 'failed', $1, $2, '[]', $3)", p, p + 1, p + 2)
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut q = sqlx::query(&sql).bind(FAILED_REASON).bind(trigger).bind(now_ms);
        for row in chunk {
            q = q.bind(AttemptId::new().0).bind(row.id.0).bind(row.attempt_count);
        }
        q.execute(&mut *conn).await.map_err(map_err)?;
    }
    let out = failed.iter().flat_map(events).collect();
    Ok((failed, out))
}

/// Resets the consecutive errors of `requests` (a committed pass evaluated them), in the
/// caller's transaction. The caller names only requests with errors, so a pass without any
/// writes nothing.
pub(super) async fn reset(conn: &mut Conn, requests: &[Uuid]) -> StoreResult<()> {
    for chunk in requests.chunks(CHUNK) {
        let sql = format!(
            "UPDATE conciliation_requests SET eval_errors = 0 WHERE eval_errors > 0 AND id IN ({})",
            params(1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        q.execute(&mut *conn).await.map_err(map_err)?;
    }
    Ok(())
}
