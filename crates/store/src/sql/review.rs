//! Reconciliation review: the detail of a request and the human actions on it (resolve,
//! reject, run, notify) or on a movement (ignore), each one transaction under the account lock
//! (docs/reconciliation.md §8, §5.9). Called by the `Store` impl in `mod.rs`.

use sqlx::Row;
use uuid::Uuid;

use super::pass::{lock_state, ELIGIBLE_COLS};
use super::reconcile::{OPEN_STATUSES, REQ_COLS};
use super::rows::*;
use super::{insert_events, Db, DbRow, SqlStore, ACCOUNT_LOCK_BEGIN, DELIVERY_COLS, MOVEMENT_COLS, SNAPSHOT_BEGIN};
use crate::error::{map_err, StoreResult};
use crate::model::{to_ms, try_from_ms};
use crate::*;

type Conn = <Db as sqlx::Database>::Connection;

/// The reason of a request matched by hand.
const RESOLVED_REASON: &str = "resolved_manually";
/// The reason of a request whose candidates a human ruled out.
const REJECTED_REASON: &str = "candidates_rejected";
/// The attempt trigger of a human resolve (or reject).
const RESOLVE_TRIGGER: &str = "resolve";
/// What a `run` asks the next pass to record as its trigger.
const RUN_TRIGGER: &str = "run";
/// What ignoring a candidate of an ambiguous request asks the next pass to record.
const IGNORE_TRIGGER: &str = "ignore";

const ATTEMPT_COLS: &str = "id, request_id, attempt_number, result, reason, trigger, user_id, candidates, created_at";

fn ms_col(r: &DbRow, col: &str) -> StoreResult<Timestamp> {
    let ms: i64 = r.try_get(col)?;
    try_from_ms(ms).ok_or_else(|| corrupt(col, ms))
}

fn ms_opt(r: &DbRow, col: &str) -> StoreResult<Option<Timestamp>> {
    let ms: Option<i64> = r.try_get(col)?;
    ms.map(|ms| try_from_ms(ms).ok_or_else(|| corrupt(col, ms))).transpose()
}

fn attempt_from(r: &DbRow) -> StoreResult<AttemptRow> {
    let user: Option<Uuid> = r.try_get("user_id")?;
    Ok(AttemptRow {
        id: AttemptId(r.try_get("id")?),
        request_id: ConciliationRequestId(r.try_get("request_id")?),
        attempt_number: r.try_get("attempt_number")?,
        result: r.try_get("result")?,
        reason: r.try_get("reason")?,
        trigger: r.try_get("trigger")?,
        user_id: user.map(UserId),
        candidates: r.try_get("candidates")?,
        created_at: ms_col(r, "created_at")?,
    })
}

/// `taken_request` / `taken_external_id` columns (a LEFT JOIN on the match and its request).
fn taken_from(r: &DbRow) -> StoreResult<Option<(ConciliationRequestId, String)>> {
    let request: Option<Uuid> = r.try_get("taken_request")?;
    let external_id: Option<String> = r.try_get("taken_external_id")?;
    Ok(request.zip(external_id).map(|(r, e)| (ConciliationRequestId(r), e)))
}

/// The movement columns (aliased `m`) with its match's request (`taken_*`) and `ignored_at`.
fn movement_select(cols: &str) -> String {
    let cols: Vec<String> = cols.split(", ").map(|c| format!("m.{c}")).collect();
    format!(
        "SELECT {}, m.account_id AS owner_account, m.ignored_at AS ignored_ms, c.request_id AS taken_request, \
         t.external_id AS taken_external_id FROM movements m \
         LEFT JOIN conciliation_matches c ON c.movement_id = m.id \
         LEFT JOIN conciliation_requests t ON t.id = c.request_id",
        cols.join(", ")
    )
}

/// The user's request's account, or `None` (read before taking the account lock: it never
/// changes).
async fn request_account(conn: &mut Conn, user: UserId, id: ConciliationRequestId) -> StoreResult<Option<AccountId>> {
    let row = sqlx::query(
        "SELECT r.account_id FROM conciliation_requests r JOIN accounts a ON a.id = r.account_id \
         WHERE r.id = $1 AND a.user_id = $2",
    )
    .bind(id.0)
    .bind(user.0)
    .fetch_optional(&mut *conn)
    .await
    .map_err(map_err)?;
    Ok(row.map(|r| r.try_get("account_id")).transpose()?.map(AccountId))
}

async fn request_row(conn: &mut Conn, id: ConciliationRequestId) -> StoreResult<Option<ConciliationRow>> {
    let sql = format!("SELECT {REQ_COLS} FROM conciliation_requests WHERE id = $1");
    let row = sqlx::query(&sql)
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_err)?;
    row.as_ref().map(conciliation_from).transpose()
}

/// Marks the account's reconciliation dirty and moves its version (the lock is held).
async fn mark_dirty(conn: &mut Conn, account: AccountId) -> StoreResult<()> {
    sqlx::query("UPDATE reconcile_state SET version = version + 1, dirty_seq = dirty_seq + 1 WHERE account_id = $1")
        .bind(account.0)
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn insert_attempt(
    conn: &mut Conn,
    request: &ConciliationRow,
    result: &str,
    reason: &str,
    trigger: &str,
    user: UserId,
    candidates: &str,
    now: Timestamp,
) -> StoreResult<()> {
    let sql = format!("INSERT INTO conciliation_attempts ({ATTEMPT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)");
    sqlx::query(&sql)
        .bind(AttemptId::new().0)
        .bind(request.id.0)
        .bind(request.attempt_count)
        .bind(result)
        .bind(reason)
        .bind(trigger)
        .bind(user.0)
        .bind(candidates)
        .bind(to_ms(now))
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// Takes the lock of the user's request's account and reads the request; `Err(change)` when it
/// is unknown or closed — a request past its `expires_at` counts as expired (the next pass
/// closes it; docs/reconciliation.md §5.8), so no human action revives it meanwhile.
async fn open_request(
    conn: &mut Conn,
    user: UserId,
    id: ConciliationRequestId,
    now: Timestamp,
) -> StoreResult<Result<ConciliationRow, RequestChange>> {
    let Some(account) = request_account(conn, user, id).await? else {
        return Ok(Err(RequestChange::NotFound));
    };
    if lock_state(conn, account).await?.is_none() {
        return Ok(Err(RequestChange::NotFound));
    }
    let Some(row) = request_row(conn, id).await? else {
        return Ok(Err(RequestChange::NotFound));
    };
    // Under the lock: a switch to passthrough since the caller looked freezes the request.
    if !super::passthrough::owner_reconciles(conn, account).await? {
        return Ok(Err(RequestChange::NotReconciling));
    }
    if !row.status.is_open() {
        return Ok(Err(RequestChange::Closed(row.status)));
    }
    if row.expires_at <= now {
        return Ok(Err(RequestChange::Closed(ConciliationStatus::Expired)));
    }
    Ok(Ok(row))
}

impl SqlStore {
    pub(super) async fn review_detail(
        &self,
        user: UserId,
        id: ConciliationRequestId,
    ) -> StoreResult<Option<ConciliationDetail>> {
        let mut tx = self.pool.begin_with(SNAPSHOT_BEGIN).await.map_err(map_err)?;
        let sql = format!("{} WHERE r.id = $1 AND a.user_id = $2", *super::CONCILIATION_SELECT);
        let row = sqlx::query(&sql)
            .bind(id.0)
            .bind(user.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        let Some(request) = row.as_ref().map(conciliation_list_from).transpose()? else {
            return Ok(None);
        };
        let r = &request.request;

        let sql =
            format!("SELECT {ATTEMPT_COLS} FROM conciliation_attempts WHERE request_id = $1 ORDER BY attempt_number");
        let attempts = sqlx::query(&sql)
            .bind(id.0)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?
            .iter()
            .map(attempt_from)
            .collect::<StoreResult<Vec<_>>>()?;

        let cols: Vec<String> = ELIGIBLE_COLS.split(", ").map(|c| format!("m.{c}")).collect();
        let sql = format!(
            "SELECT c.id AS match_id, c.matched_by, c.matched_by_user, c.score, c.explanation, c.matched_at, {} \
             FROM conciliation_matches c JOIN movements m ON m.id = c.movement_id WHERE c.request_id = $1",
            cols.join(", ")
        );
        let matched = match sqlx::query(&sql)
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?
        {
            Some(m) => {
                let by: Option<Uuid> = m.try_get("matched_by_user")?;
                Some(MatchRow {
                    id: ConciliationMatchId(m.try_get("match_id")?),
                    request_id: id,
                    movement: eligible_from(&m)?,
                    matched_by: m.try_get("matched_by")?,
                    matched_by_user: by.map(UserId),
                    score: m.try_get("score")?,
                    explanation: m.try_get("explanation")?,
                    matched_at: ms_col(&m, "matched_at")?,
                })
            }
            None => None,
        };

        let rejected: Vec<Uuid> = sqlx::query("SELECT movement_id FROM conciliation_rejections WHERE request_id = $1")
            .bind(id.0)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?
            .iter()
            .map(|r| r.try_get("movement_id"))
            .collect::<Result<_, _>>()?;
        let sql = format!(
            "{} WHERE m.account_id = $1 AND m.received_at_ms >= $2 AND m.received_at_ms <= $3 \
             AND (m.match_key = $5 OR m.match_key IS NULL) ORDER BY m.received_at_ms, m.id LIMIT $4",
            movement_select(ELIGIBLE_COLS)
        );
        let movements = sqlx::query(&sql)
            .bind(r.account_id.0)
            .bind(to_ms(r.registered_at) - REVIEW_BEFORE_MS)
            .bind(to_ms(r.expires_at) + REVIEW_AFTER_MS)
            .bind(REVIEW_SCAN_LIMIT)
            // The request's amount group (the exact comparison is the caller's).
            .bind(super::incremental::amount_key(&r.amount).unwrap_or_default())
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?
            .iter()
            .map(|m| {
                let movement = eligible_from(m)?;
                Ok(ReviewMovement {
                    rejected: rejected.contains(&movement.id.0),
                    taken_by: taken_from(m)?,
                    ignored_at: ms_opt(m, "ignored_ms")?,
                    movement,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;

        let sql = format!(
            "SELECT {DELIVERY_COLS} FROM deliveries WHERE subject_id = $1 AND channel = $2 AND account_id = $3 \
             ORDER BY created_at, id"
        );
        let deliveries = sqlx::query(&sql)
            .bind(id.0)
            .bind(CHANNEL_RESULT)
            .bind(r.account_id.0)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?
            .iter()
            .map(delivery_from)
            .collect::<StoreResult<Vec<_>>>()?;
        tx.commit().await.map_err(map_err)?;
        Ok(Some(ConciliationDetail {
            request,
            attempts,
            matched,
            movements,
            deliveries,
        }))
    }

    pub(super) async fn review_movement(&self, user: UserId, id: MovementId) -> StoreResult<Option<OwnedMovement>> {
        let sql = format!(
            "{} JOIN accounts a ON a.id = m.account_id WHERE m.id = $1 AND a.user_id = $2",
            movement_select(ELIGIBLE_COLS)
        );
        let row = sqlx::query(&sql)
            .bind(id.0)
            .bind(user.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.map(|m| {
            Ok(OwnedMovement {
                account_id: AccountId(m.try_get("owner_account")?),
                movement: eligible_from(&m)?,
                taken_by: taken_from(&m)?,
                ignored_at: ms_opt(&m, "ignored_ms")?,
            })
        })
        .transpose()
    }

    pub(super) async fn review_resolve(
        &self,
        user: UserId,
        d: &ManualMatch,
        now: Timestamp,
        events: &PassEventsFor<'_>,
    ) -> StoreResult<ResolveOutcome> {
        let mut tx = self.pool.begin_with(ACCOUNT_LOCK_BEGIN).await.map_err(map_err)?;
        let request = match open_request(&mut tx, user, d.request, now).await? {
            Ok(r) => r,
            Err(RequestChange::Closed(st)) => return Ok(ResolveOutcome::Closed(st)),
            Err(RequestChange::NotReconciling) => return Ok(ResolveOutcome::NotReconciling),
            Err(_) => return Ok(ResolveOutcome::NotFound),
        };
        if request.amount != d.amount || request.currency != d.currency {
            return Ok(ResolveOutcome::Changed);
        }
        let sql = format!(
            "{} JOIN accounts a ON a.id = m.account_id WHERE m.id = $1 AND a.user_id = $2",
            movement_select(ELIGIBLE_COLS)
        );
        let Some(m) = sqlx::query(&sql)
            .bind(d.movement.0)
            .bind(user.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?
        else {
            return Ok(ResolveOutcome::MovementNotFound);
        };
        if AccountId(m.try_get("owner_account")?) != request.account_id {
            return Ok(ResolveOutcome::OtherAccount);
        }
        if taken_from(&m)?.is_some() {
            return Ok(ResolveOutcome::Taken);
        }
        if ms_opt(&m, "ignored_ms")?.is_some() {
            return Ok(ResolveOutcome::Ignored);
        }
        let movement = eligible_from(&m)?;
        let sql = format!(
            "UPDATE conciliation_requests SET status = 'matched', reason = $2, closed_at = $3, updated_at = $3, \
             last_candidates = NULL, pending_trigger = NULL, attempt_count = attempt_count + 1 \
             WHERE id = $1 AND status IN {} RETURNING {REQ_COLS}",
            *OPEN_STATUSES
        );
        let Some(row) = sqlx::query(&sql)
            .bind(d.request.0)
            .bind(RESOLVED_REASON)
            .bind(to_ms(now))
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?
        else {
            return Ok(ResolveOutcome::Closed(request.status));
        };
        let row = conciliation_from(&row)?;
        let inserted = sqlx::query(
            "INSERT INTO conciliation_matches (id, account_id, request_id, movement_id, matched_by, \
             matched_by_user, score, explanation, matched_at) VALUES ($1, $2, $3, $4, 'manual', $5, $6, $7, $8)",
        )
        .bind(ConciliationMatchId::new().0)
        .bind(row.account_id.0)
        .bind(row.id.0)
        .bind(movement.id.0)
        .bind(user.0)
        .bind(d.score)
        .bind(&d.explanation)
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await
        .map_err(map_err);
        match inserted {
            Ok(_) => {}
            // Dropping the transaction rolls the request back.
            Err(e) if e.is_conflict_on(Constraint::MatchMovement) => return Ok(ResolveOutcome::Taken),
            Err(e) => return Err(e),
        }
        insert_attempt(
            &mut tx,
            &row,
            "matched",
            RESOLVED_REASON,
            RESOLVE_TRIGGER,
            user,
            &d.candidates,
            now,
        )
        .await?;
        mark_dirty(&mut tx, row.account_id).await?;
        let new_events = events(PassEvent::Matched {
            request: &row,
            movement: &movement,
        });
        let logged = insert_events(&mut tx, &new_events).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(ResolveOutcome::Resolved(row, logged))
    }

    pub(super) async fn review_reject(
        &self,
        user: UserId,
        id: ConciliationRequestId,
        movements: &[MovementId],
        candidates: &str,
        now: Timestamp,
        events: &RequestEventsFor<'_>,
    ) -> StoreResult<RequestChange> {
        let mut tx = self.pool.begin_with(ACCOUNT_LOCK_BEGIN).await.map_err(map_err)?;
        let request = match open_request(&mut tx, user, id, now).await? {
            Ok(r) => r,
            Err(change) => return Ok(change),
        };
        // Only the account's movements can be ruled out for its request.
        for m in movements {
            sqlx::query(
                "INSERT INTO conciliation_rejections (request_id, movement_id, user_id, created_at) \
                 SELECT $1, id, $3, $4 FROM movements WHERE id = $2 AND account_id = $5 \
                 ON CONFLICT (request_id, movement_id) DO NOTHING",
            )
            .bind(id.0)
            .bind(m.0)
            .bind(user.0)
            .bind(to_ms(now))
            .bind(request.account_id.0)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        let sql = format!(
            "UPDATE conciliation_requests SET status = 'not_found', reason = $2, updated_at = $3, \
             last_candidates = NULL, pending_trigger = NULL, attempt_count = attempt_count + 1 \
             WHERE id = $1 AND status IN {} RETURNING {REQ_COLS}",
            *OPEN_STATUSES
        );
        let row = sqlx::query(&sql)
            .bind(id.0)
            .bind(REJECTED_REASON)
            .bind(to_ms(now))
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        let row = conciliation_from(&row)?;
        insert_attempt(
            &mut tx,
            &row,
            "not_found",
            REJECTED_REASON,
            RESOLVE_TRIGGER,
            user,
            candidates,
            now,
        )
        .await?;
        mark_dirty(&mut tx, row.account_id).await?;
        let logged = insert_events(&mut tx, &events(&row)).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(RequestChange::Done(row, logged))
    }

    pub(super) async fn review_run(
        &self,
        user: UserId,
        id: ConciliationRequestId,
        now: Timestamp,
        events: &RequestEventsFor<'_>,
    ) -> StoreResult<RequestChange> {
        let mut tx = self.pool.begin_with(ACCOUNT_LOCK_BEGIN).await.map_err(map_err)?;
        if let Err(change) = open_request(&mut tx, user, id, now).await? {
            return Ok(change);
        }
        let sql = format!(
            "UPDATE conciliation_requests SET status = 'pending', eval_errors = 0, last_candidates = NULL, \
             pending_trigger = $2, updated_at = $3 WHERE id = $1 AND status IN {} RETURNING {REQ_COLS}",
            *OPEN_STATUSES
        );
        let row = sqlx::query(&sql)
            .bind(id.0)
            .bind(RUN_TRIGGER)
            .bind(to_ms(now))
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        let row = conciliation_from(&row)?;
        mark_dirty(&mut tx, row.account_id).await?;
        let logged = insert_events(&mut tx, &events(&row)).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(RequestChange::Done(row, logged))
    }

    pub(super) async fn review_notify(
        &self,
        user: UserId,
        id: ConciliationRequestId,
        now: Timestamp,
        build: &NotifyEventFor<'_>,
    ) -> StoreResult<NotifyOutcome> {
        let mut tx = self.pool.begin_with(ACCOUNT_LOCK_BEGIN).await.map_err(map_err)?;
        let Some(account) = request_account(&mut tx, user, id).await? else {
            return Ok(NotifyOutcome::NotFound);
        };
        if lock_state(&mut tx, account).await?.is_none() {
            return Ok(NotifyOutcome::NotFound);
        }
        let Some(request) = request_row(&mut tx, id).await? else {
            return Ok(NotifyOutcome::NotFound);
        };
        if !super::passthrough::owner_reconciles(&mut tx, account).await? {
            return Ok(NotifyOutcome::NotReconciling);
        }
        let sql = format!(
            "SELECT {ELIGIBLE_COLS} FROM movements WHERE id = (SELECT movement_id FROM conciliation_matches \
             WHERE request_id = $1)"
        );
        let movement = sqlx::query(&sql)
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?
            .as_ref()
            .map(eligible_from)
            .transpose()?;
        let Some(mut event) = build(&request, movement.as_ref()) else {
            return Ok(NotifyOutcome::NothingToSend(request.status));
        };
        let Some(fresh) = event.deliveries.first().cloned() else {
            return Ok(NotifyOutcome::NothingToSend(request.status));
        };
        let latest: Option<Uuid> = sqlx::query(
            "SELECT id FROM deliveries WHERE subject_id = $1 AND channel = $2 AND event_type = $3 \
             AND account_id = $4 ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(id.0)
        .bind(CHANNEL_RESULT)
        .bind(&fresh.event_type)
        .bind(account.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?
        .map(|r| r.try_get("id"))
        .transpose()?;
        let outcome = match latest {
            Some(delivery) => {
                event.deliveries.clear();
                let sql = format!(
                    "UPDATE deliveries SET status = 'pending', next_attempt_at = $2 WHERE id = $1 \
                     RETURNING {DELIVERY_COLS}"
                );
                let row = sqlx::query(&sql)
                    .bind(delivery)
                    .bind(to_ms(now))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(map_err)?;
                let row = delivery_from(&row)?;
                let logged = insert_events(&mut tx, std::slice::from_ref(&event)).await?;
                NotifyOutcome::Requeued(row, logged)
            }
            None => {
                let logged = insert_events(&mut tx, std::slice::from_ref(&event)).await?;
                let sql = format!("SELECT {DELIVERY_COLS} FROM deliveries WHERE id = $1");
                let row = sqlx::query(&sql)
                    .bind(fresh.id.0)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(map_err)?;
                NotifyOutcome::Created(delivery_from(&row)?, logged)
            }
        };
        tx.commit().await.map_err(map_err)?;
        Ok(outcome)
    }

    pub(super) async fn review_summary(
        &self,
        user: UserId,
        account: Option<AccountId>,
    ) -> StoreResult<Vec<ConciliationSummaryRow>> {
        let filter = if account.is_some() { " AND a.id = $2" } else { "" };
        let sql = format!(
            "SELECT a.id AS account_id, r.status, r.reason, COUNT(r.id) AS n FROM accounts a \
             LEFT JOIN conciliation_requests r ON r.account_id = a.id WHERE a.user_id = $1{filter} \
             GROUP BY a.id, r.status, r.reason ORDER BY a.id"
        );
        let mut q = sqlx::query(&sql).bind(user.0);
        if let Some(a) = account {
            q = q.bind(a.0);
        }
        let mut out: Vec<ConciliationSummaryRow> = Vec::new();
        for r in q.fetch_all(&self.pool).await.map_err(map_err)? {
            let account = AccountId(r.try_get("account_id")?);
            if out.last().map(|s| s.account_id) != Some(account) {
                out.push(ConciliationSummaryRow {
                    account_id: account,
                    counts: ConciliationStatus::ALL.iter().map(|s| (*s, 0)).collect(),
                    review: 0,
                });
            }
            let Some(summary) = out.last_mut() else { continue };
            let status: Option<String> = r.try_get("status")?;
            let Some(status) = status else { continue };
            let status =
                ConciliationStatus::parse(&status).ok_or_else(|| corrupt("conciliation_requests.status", &status))?;
            let reason: Option<String> = r.try_get("reason")?;
            let n: i64 = r.try_get("n")?;
            if let Some(c) = summary.counts.iter_mut().find(|(s, _)| *s == status) {
                c.1 += n;
            }
            let review = status == ConciliationStatus::Ambiguous
                || (status == ConciliationStatus::NotFound
                    && matches!(reason.as_deref(), Some("weak_name_only" | "no_sender_name")));
            if review {
                summary.review += n;
            }
        }
        Ok(out)
    }

    pub(super) async fn review_ignore(
        &self,
        user: UserId,
        account: AccountId,
        movement: MovementId,
        ignored_at: Option<Timestamp>,
        events: &MovementEventsFor<'_>,
    ) -> StoreResult<IgnoreOutcome> {
        let mut tx = self.pool.begin_with(ACCOUNT_LOCK_BEGIN).await.map_err(map_err)?;
        let owned = sqlx::query("SELECT 1 AS one FROM accounts WHERE id = $1 AND user_id = $2")
            .bind(account.0)
            .bind(user.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?
            .is_some();
        if !owned || lock_state(&mut tx, account).await?.is_none() {
            return Ok(IgnoreOutcome::NotFound);
        }
        let sql = format!(
            "{} WHERE m.id = $1 AND m.account_id = $2",
            movement_select(MOVEMENT_COLS)
        );
        let Some(m) = sqlx::query(&sql)
            .bind(movement.0)
            .bind(account.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?
        else {
            return Ok(IgnoreOutcome::NotFound);
        };
        if taken_from(&m)?.is_some() {
            return Ok(IgnoreOutcome::Taken);
        }
        let row = movement_from(&m)?;
        let was = ms_opt(&m, "ignored_ms")?;
        if was.is_some() == ignored_at.is_some() {
            return Ok(IgnoreOutcome::Done(row, was, Vec::new()));
        }
        sqlx::query("UPDATE movements SET ignored_at = $2, ignored_by = $3 WHERE id = $1")
            .bind(movement.0)
            .bind(ignored_at.map(to_ms))
            .bind(ignored_at.map(|_| user.0))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if ignored_at.is_some() {
            // The ambiguous requests this movement was a candidate of are decided again by the
            // next pass: their attempt records the trigger `ignore`.
            sqlx::query(
                "UPDATE conciliation_requests SET pending_trigger = $3 WHERE account_id = $1 \
                 AND status = 'ambiguous' AND pending_trigger IS NULL AND last_candidates LIKE $2",
            )
            .bind(account.0)
            .bind(format!("%{}%", movement.0))
            .bind(IGNORE_TRIGGER)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        mark_dirty(&mut tx, account).await?;
        let logged = insert_events(&mut tx, &events(&row)).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(IgnoreOutcome::Done(row, ignored_at, logged))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn channel_deliveries(
        &self,
        user: UserId,
        account: AccountId,
        channel: &str,
        status: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<DeliveryRow>> {
        let sql = format!(
            "SELECT {DELIVERY_COLS} FROM deliveries WHERE account_id = $1 AND channel = $3 \
             AND ($4 = '' OR status = $4) \
             AND EXISTS (SELECT 1 FROM accounts WHERE id = $1 AND user_id = $2) \
             ORDER BY created_at DESC, id DESC LIMIT $5 OFFSET $6"
        );
        sqlx::query(&sql)
            .bind(account.0)
            .bind(user.0)
            .bind(channel)
            .bind(status.unwrap_or(""))
            .bind(limit.max(0))
            .bind(offset.max(0))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?
            .iter()
            .map(delivery_from)
            .collect()
    }

    pub(super) async fn channel_resend(
        &self,
        user: UserId,
        account: AccountId,
        channel: &str,
        id: DeliveryId,
        now: Timestamp,
    ) -> StoreResult<Option<DeliveryRow>> {
        let sql = format!(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = $4, claimed_by = 'requeued' \
             WHERE id = $1 AND account_id = $2 AND channel = $5 AND EXISTS (SELECT 1 FROM accounts WHERE id = $2 AND user_id = $3) \
             RETURNING {DELIVERY_COLS}"
        );
        let row = sqlx::query(&sql)
            .bind(id.0)
            .bind(account.0)
            .bind(user.0)
            .bind(to_ms(now))
            .bind(channel)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(delivery_from).transpose()
    }
}
