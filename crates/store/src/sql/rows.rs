//! Row → struct mappers for the SQL store. A value that cannot be decoded (corrupt JSON, an
//! unknown enum value, a timestamp out of range) is `StoreError::Corrupt`, never a default.

use sqlx::Row;
use uuid::Uuid;

use super::DbRow;
use crate::error::StoreResult;
use crate::model::try_from_ms;
use crate::*;

pub(super) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn from_ms(col: &str, ms: i64) -> StoreResult<Timestamp> {
    try_from_ms(ms).ok_or_else(|| corrupt(col, format_args!("timestamp out of range: {ms}")))
}

fn ts(row: &DbRow, col: &str) -> StoreResult<Timestamp> {
    from_ms(col, row.try_get::<i64, _>(col)?)
}

fn ts_opt(row: &DbRow, col: &str) -> StoreResult<Option<Timestamp>> {
    row.try_get::<Option<i64>, _>(col)?
        .map(|ms| from_ms(col, ms))
        .transpose()
}

pub(super) fn user_from(r: &DbRow) -> StoreResult<UserRow> {
    Ok(UserRow {
        id: UserId(r.try_get("id")?),
        email: r.try_get("email")?,
        name: r.try_get("name")?,
        password_hash: r.try_get("password_hash")?,
        is_admin: r.try_get("is_admin")?,
        operation_mode: r.try_get("operation_mode")?,
        created_at: ts(r, "created_at")?,
    })
}

pub(super) fn bank_from(r: &DbRow) -> StoreResult<BankRow> {
    Ok(BankRow {
        id: BankId(r.try_get("id")?),
        code: r.try_get("code")?,
        name: r.try_get("name")?,
        login_url: r.try_get("login_url")?,
        status: r.try_get("status")?,
        created_at: ts(r, "created_at")?,
    })
}

pub(super) fn account_from(r: &DbRow) -> StoreResult<AccountRow> {
    Ok(AccountRow {
        id: AccountId(r.try_get("id")?),
        user_id: UserId(r.try_get("user_id")?),
        bank_id: BankId(r.try_get("bank_id")?),
        bank_code: r.try_get("bank_code")?,
        name: r.try_get("name")?,
        status: r.try_get("status")?,
        scrape_blocked_at: ts_opt(r, "scrape_blocked_at")?,
        scrape_blocked_reason: r.try_get("scrape_blocked_reason")?,
        created_at: ts(r, "created_at")?,
    })
}

pub(super) fn config_from(r: &DbRow) -> StoreResult<AccountConfigRow> {
    Ok(AccountConfigRow {
        account_id: AccountId(r.try_get("account_id")?),
        settings: r.try_get("settings")?,
        secrets: r.try_get("secrets")?,
        updated_at: ts(r, "updated_at")?,
    })
}

pub(super) fn key_from(r: &DbRow) -> StoreResult<ApiKeyRow> {
    let scopes: String = r.try_get("scopes")?;
    let account_ids: Option<String> = r.try_get("account_ids")?;
    Ok(ApiKeyRow {
        id: ApiKeyId(r.try_get("id")?),
        user_id: UserId(r.try_get("user_id")?),
        name: r.try_get("name")?,
        prefix: r.try_get("prefix")?,
        secret_hash: r.try_get("secret_hash")?,
        scopes: serde_json::from_str(&scopes).map_err(|e| corrupt("api_keys.scopes", e))?,
        account_ids: account_ids
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|e| corrupt("api_keys.account_ids", e))?,
        created_at: ts(r, "created_at")?,
        last_used_at: ts_opt(r, "last_used_at")?,
        expires_at: ts_opt(r, "expires_at")?,
        revoked_at: ts_opt(r, "revoked_at")?,
    })
}

pub(super) fn assist_from(r: &DbRow) -> StoreResult<AssistanceRow> {
    let descriptor: String = r.try_get("descriptor")?;
    let status: String = r.try_get("status")?;
    Ok(AssistanceRow {
        id: AssistanceRequestId(r.try_get("id")?),
        account_id: AccountId(r.try_get("account_id")?),
        kind: r.try_get("kind")?,
        descriptor: serde_json::from_str(&descriptor).map_err(|e| corrupt("assistance_requests.descriptor", e))?,
        attempts: r.try_get("attempts")?,
        status: AssistanceStatus::parse(&status).ok_or_else(|| corrupt("assistance_requests.status", &status))?,
        reason: r.try_get("reason")?,
        created_at: ts(r, "created_at")?,
        updated_at: ts(r, "updated_at")?,
        expires_at: ts(r, "expires_at")?,
        closed_at: ts_opt(r, "closed_at")?,
    })
}

pub(super) fn movement_from(r: &DbRow) -> StoreResult<MovementRow> {
    Ok(MovementRow {
        id: MovementId(r.try_get("id")?),
        account_id: AccountId(r.try_get("account_id")?),
        external_id: r.try_get("external_id")?,
        amount: r.try_get("amount")?,
        currency: r.try_get("currency")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        received_at: r.try_get("received_at")?,
        read_at: ts(r, "read_at")?,
    })
}

pub(super) fn run_from(r: &DbRow) -> StoreResult<RunRow> {
    Ok(RunRow {
        id: RunId(r.try_get("id")?),
        account_id: AccountId(r.try_get("account_id")?),
        kind: r.try_get("kind")?,
        started_at: ts(r, "started_at")?,
        ended_at: ts_opt(r, "ended_at")?,
        outcome: r.try_get("outcome")?,
        failure_reason: r.try_get("failure_reason")?,
        movements_read: r.try_get("movements_read")?,
        new_movements: r.try_get("new_movements")?,
    })
}

pub(super) fn engine_from(r: &DbRow) -> StoreResult<EngineAccount> {
    let account = account_from(r)?;
    let settings: Option<String> = r.try_get("settings")?;
    let config = match settings {
        Some(settings) => Some(AccountConfigRow {
            account_id: account.id,
            settings,
            secrets: r.try_get("secrets")?,
            updated_at: ts(r, "config_updated_at")?,
        }),
        None => None,
    };
    Ok(EngineAccount { account, config })
}

pub(super) fn event_from(r: &DbRow) -> StoreResult<EventRow> {
    Ok(EventRow {
        seq: r.try_get("seq")?,
        id: r.try_get("id")?,
        user_id: UserId(r.try_get("user_id")?),
        account_id: AccountId(r.try_get("account_id")?),
        kind: r.try_get("kind")?,
        data: r.try_get("data")?,
        occurred_at: ts(r, "occurred_at")?,
    })
}

pub(super) fn delivery_from(r: &DbRow) -> StoreResult<DeliveryRow> {
    Ok(DeliveryRow {
        id: DeliveryId(r.try_get("id")?),
        account_id: AccountId(r.try_get("account_id")?),
        event_id: r.try_get("event_id")?,
        event_type: r.try_get("event_type")?,
        payload: r.try_get("payload")?,
        request_id: r.try_get::<Option<Uuid>, _>("request_id")?.map(AssistanceRequestId),
        status: r.try_get("status")?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: ts_opt(r, "next_attempt_at")?,
        last_attempt_at: ts_opt(r, "last_attempt_at")?,
        last_status: r.try_get("last_status")?,
        last_error: r.try_get("last_error")?,
        created_at: ts(r, "created_at")?,
        delivered_at: ts_opt(r, "delivered_at")?,
        channel: r.try_get("channel")?,
        subject_id: r.try_get("subject_id")?,
    })
}

pub(super) fn conciliation_from(r: &DbRow) -> StoreResult<ConciliationRow> {
    let status: String = r.try_get("status")?;
    Ok(ConciliationRow {
        id: ConciliationRequestId(r.try_get("id")?),
        account_id: AccountId(r.try_get("account_id")?),
        external_id: r.try_get("external_id")?,
        generation: r.try_get("generation")?,
        amount: r.try_get("amount")?,
        currency: r.try_get("currency")?,
        sender_name: r.try_get("sender_name")?,
        reference: r.try_get("reference")?,
        status: ConciliationStatus::parse(&status).ok_or_else(|| corrupt("conciliation_requests.status", &status))?,
        reason: r.try_get("reason")?,
        registered_at: ts(r, "registered_at")?,
        expires_at: ts(r, "expires_at")?,
        last_seen_at: ts(r, "last_seen_at")?,
        absent_since_close: r.try_get("absent_since_close")?,
        eval_errors: r.try_get("eval_errors")?,
        attempt_count: r.try_get("attempt_count")?,
        last_candidates: r.try_get("last_candidates")?,
        closed_at: ts_opt(r, "closed_at")?,
        updated_at: ts(r, "updated_at")?,
    })
}

pub(super) fn conciliation_list_from(r: &DbRow) -> StoreResult<ConciliationListRow> {
    Ok(ConciliationListRow {
        request: conciliation_from(r)?,
        bank_code: r.try_get("bank_code")?,
        account_name: r.try_get("account_name")?,
    })
}

pub(super) fn poll_from(r: &DbRow) -> StoreResult<PollRow> {
    let counts: String = r.try_get("counts")?;
    Ok(PollRow {
        id: PollId(r.try_get("id")?),
        account_id: AccountId(r.try_get("account_id")?),
        seq: r.try_get("seq")?,
        started_at: ts(r, "started_at")?,
        finished_at: ts(r, "finished_at")?,
        outcome: r.try_get("outcome")?,
        error: r.try_get("error")?,
        http_status: r.try_get("http_status")?,
        bytes: r.try_get("bytes")?,
        pages: r.try_get("pages")?,
        counts: serde_json::from_str(&counts).map_err(|e| corrupt("conciliation_polls.counts", e))?,
        issues: r.try_get("issues")?,
    })
}

pub(super) fn state_from(r: &DbRow) -> StoreResult<ReconcileStateRow> {
    Ok(ReconcileStateRow {
        account_id: AccountId(r.try_get("account_id")?),
        version: r.try_get("version")?,
        dirty_seq: r.try_get("dirty_seq")?,
        done_seq: r.try_get("done_seq")?,
        next_poll_at: ts_opt(r, "next_poll_at")?,
        poll_seq_issued: r.try_get("poll_seq_issued")?,
        poll_seq_applied: r.try_get("poll_seq_applied")?,
        poll_failures: r.try_get("poll_failures")?,
        poll_lease_owner: r.try_get("poll_lease_owner")?,
        poll_lease_until: ts_opt(r, "poll_lease_until")?,
    })
}

pub(super) fn eligible_from(r: &DbRow) -> StoreResult<EligibleMovement> {
    Ok(EligibleMovement {
        id: MovementId(r.try_get("id")?),
        amount: r.try_get("amount")?,
        currency: r.try_get("currency")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        received_at: r.try_get("received_at")?,
        received_at_ms: r.try_get("received_at_ms")?,
    })
}

// Issue 9 (real banks).
pub(super) fn evidence_from(r: &DbRow) -> StoreResult<EvidenceRow> {
    Ok(EvidenceRow {
        id: EvidenceId(r.try_get("id")?),
        run_id: RunId(r.try_get("run_id")?),
        step: r.try_get("step")?,
        sealed: r.try_get("sealed")?,
        taken_at: ts(r, "taken_at")?,
        expires_at: ts(r, "expires_at")?,
    })
}
