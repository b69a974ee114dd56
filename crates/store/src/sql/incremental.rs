//! Reconciliation: the match pass's incremental snapshot (docs/reconciliation.md §5.6,
//! "Performance"). The pass decomposes exactly by amount: an edge, a candidate, a verdict, a
//! reason and a rival all join a request and a movement of the same amount, so a group of equal
//! amounts (its open requests and eligible movements) decides alone. A group whose content did
//! not change since the last committed pass would be decided the same way, and the stored state
//! already is that decision; only the changed groups are read:
//!
//! - movements the pass has not seen (`match_key IS NULL`: new, or their eligibility changed —
//!   ignored, un-ignored, matched or unmatched, which the triggers of migration 0007 record);
//! - open requests that need an evaluation (`pending`, `failed`) — new, updated or run;
//! - with, for each of their amounts, the group's other open requests and eligible movements;
//! - plus the open requests due to expire (they leave their group without changing it: an open
//!   request holds no movement).
//!
//! A committed pass records each movement it has seen with its amount key (the canonical text
//! requests store), under the version check, so a movement stored meanwhile stays unseen.

use std::collections::HashSet;

use sqlx::Row;
use uuid::Uuid;

use super::pass::{eligible_out, parse_eligible_value, ELIGIBLE_COLS};
use super::reconcile::{params, parse_requests, req_out, requests_where, PAGE, REQ_COLS};
use super::rows::*;
use super::{bulk, Db, BACKEND};
use crate::error::{map_err, StoreResult};
use crate::model::to_ms;
use crate::*;

type Conn = <Db as sqlx::Database>::Connection;

/// Values per `IN (…)` list (see [`super::reconcile::MAX_PARAMS`]).
const CHUNK: usize = super::reconcile::MAX_PARAMS - 4;

/// The key of an amount no request can have (the text is not a decimal).
const NO_KEY: &str = "~";

/// The canonical text of a decimal amount as requests store it (trailing zeros stripped, at
/// least 2 decimals: `1500` → `"1500.00"`, `-12.3` → `"-12.30"`, `1.5e3` → `"1500.00"`): the
/// key of the amount's group. It reads what the pass reads (`[-]digits[.digits][e[±]digits]`,
/// trimmed); `None` for anything else, which the pass cannot match either.
pub(super) fn amount_key(text: &str) -> Option<String> {
    let s = text.trim();
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => {
            let exp = &s[i + 1..];
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Beyond this, no decimal the pass reads has these digits (28 at most).
            let value: i64 = digits.parse().unwrap_or(i64::MAX).min(1_000);
            (&s[..i], if exp.starts_with('-') { -value } else { value })
        }
        None => (s, 0),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((int, frac)) if !frac.is_empty() => (int, frac),
        Some(_) => return None,
        None => (mantissa, ""),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = format!("{int}{frac}");
    if digits.bytes().all(|b| b == b'0') {
        return Some("0.00".into());
    }
    // value = digits × 10^(point − len): `point` digits before the decimal point.
    let point = i64::try_from(int.len()).ok()? + exponent;
    let len = i64::try_from(digits.len()).ok()?;
    let (int_part, frac_part) = if point <= 0 {
        (
            String::from("0"),
            format!("{}{digits}", "0".repeat(usize::try_from(-point).ok()?)),
        )
    } else if point >= len {
        (
            format!("{digits}{}", "0".repeat(usize::try_from(point - len).ok()?)),
            String::new(),
        )
    } else {
        let p = usize::try_from(point).ok()?;
        (digits[..p].to_owned(), digits[p..].to_owned())
    };
    let int_part = int_part.trim_start_matches('0');
    let int_part = if int_part.is_empty() { "0" } else { int_part };
    let mut frac_part = frac_part.trim_end_matches('0').to_owned();
    while frac_part.len() < 2 {
        frac_part.push('0');
    }
    Some(format!("{}{int_part}.{frac_part}", if negative { "-" } else { "" }))
}

/// The incremental snapshot of a pass at `now` (see the module doc). `fresh`: `pending`
/// requests of the caller's transaction not stored yet (a poll's new registrations), read as if
/// they were.
pub(super) async fn load(
    conn: &mut Conn,
    account: AccountId,
    horizon: Timestamp,
    now: Timestamp,
    fresh: Vec<ConciliationRow>,
) -> StoreResult<PassInput> {
    let state = sqlx::query("SELECT version, dirty_seq FROM reconcile_state WHERE account_id = $1")
        .bind(account.0)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_err)?;
    let (version, dirty_seq) = match state {
        Some(r) => (r.try_get("version")?, r.try_get("dirty_seq")?),
        None => (0, 0),
    };
    let horizon_ms = to_ms(horizon);

    // Movements not seen yet, whatever their eligibility: their groups changed. Read a page at a
    // time (keyset on `id`), each page as one JSON text.
    let sql = bulk::agg_out(
        &format!(
            "json_{}({}, p.free, p.taken)",
            if BACKEND == "sqlite" { "array" } else { "build_array" },
            eligible_out("p.")
        ),
        &format!(
            "FROM (SELECT {ELIGIBLE_COLS}, CASE WHEN m.ignored_at IS NULL AND NOT EXISTS \
             (SELECT 1 FROM conciliation_matches c WHERE c.movement_id = m.id) THEN 1 ELSE 0 END AS free, \
             CASE WHEN EXISTS (SELECT 1 FROM conciliation_matches c WHERE c.movement_id = m.id) \
             THEN 1 ELSE 0 END AS taken \
             FROM movements m WHERE m.account_id = $1 AND m.match_key IS NULL AND m.id > $2 \
             ORDER BY m.id LIMIT $3) AS p"
        ),
    );
    let mut keys: HashSet<String> = HashSet::new();
    let mut movements: Vec<EligibleMovement> = Vec::new();
    // Matched movements of the groups read: they explain a request left without a candidate.
    let mut taken: Vec<EligibleMovement> = Vec::new();
    let mut after = Uuid::nil();
    loop {
        let text: String = sqlx::query_scalar(&sql)
            .bind(account.0)
            .bind(after)
            .bind(PAGE)
            .fetch_one(&mut *conn)
            .await
            .map_err(map_err)?;
        let unseen: Vec<(serde_json::Value, i64, i64)> = bulk::parse("movements", &text)?;
        drop(text);
        let full = unseen.len() as i64 == PAGE;
        for (m, free, matched) in unseen {
            let m = parse_eligible_value(m)?;
            after = after.max(m.id.0);
            if let Some(key) = amount_key(&m.amount) {
                keys.insert(key);
            }
            if m.received_at_ms.is_none_or(|t| t >= horizon_ms) {
                if free == 1 {
                    movements.push(m);
                } else if matched == 1 {
                    taken.push(m);
                }
            }
        }
        if !full {
            break;
        }
    }

    // Requests to evaluate: their groups changed too.
    let mut requests = requests_where(conn, account, "status IN ('pending', 'failed')").await?;
    // Only the stored ones can have rejected pairs.
    let mut stored: Vec<Uuid> = requests.iter().map(|r| r.id.0).collect();
    requests.extend(fresh);
    // What else a changed group can hold: requests evaluated before (`not_found`, `ambiguous`)
    // and movements seen before. An account's first poll has neither, and the groups of its
    // new orders (50,000 in the benchmark: 400 statements) need no read.
    let (evaluated_before, seen_before) = stored_kinds(conn, account).await?;
    if evaluated_before {
        for row in &requests {
            keys.insert(row.amount.clone());
        }
    }
    let mut loaded: HashSet<Uuid> = if evaluated_before {
        requests.iter().map(|r| r.id.0).collect()
    } else {
        HashSet::new()
    };

    // The other open requests of the changed groups. The amounts are bound as a list of
    // parameters, not a JSON table: the planner then probes the (account, amount) index per
    // amount, where a JSON table of unknown size made it scan every open request.
    let mut keys: Vec<String> = if evaluated_before {
        keys.into_iter().collect()
    } else {
        Vec::new()
    };
    keys.sort_unstable();
    for chunk in keys.chunks(CHUNK) {
        let sql = bulk::agg_out(
            &req_out("r."),
            &format!(
                "FROM conciliation_requests r WHERE r.account_id = $1 \
                 AND r.status IN ('not_found', 'ambiguous') AND r.amount IN ({})",
                params(2, chunk.len())
            ),
        );
        let mut q = sqlx::query_scalar(&sql).bind(account.0);
        for k in chunk {
            q = q.bind(k);
        }
        let text: String = q.fetch_one(&mut *conn).await.map_err(map_err)?;
        for row in parse_requests(&text)? {
            if loaded.insert(row.id.0) {
                stored.push(row.id.0);
                requests.push(row);
            }
        }
    }

    // The seen eligible movements of the changed groups that have requests (the same).
    let with_requests: HashSet<&str> = if seen_before {
        requests.iter().map(|r| r.amount.as_str()).collect()
    } else {
        HashSet::new()
    };
    let mut group_keys: Vec<&str> = with_requests.into_iter().collect();
    group_keys.sort_unstable();
    for chunk in group_keys.chunks(CHUNK) {
        let (row, from) = movements_of_keys(chunk.len());
        let sql = bulk::agg_out(&row, &from);
        let mut q = sqlx::query_scalar(&sql).bind(account.0).bind(horizon_ms);
        for k in chunk {
            q = q.bind(*k);
        }
        let text: String = q.fetch_one(&mut *conn).await.map_err(map_err)?;
        for (m, matched) in bulk::parse::<(serde_json::Value, i64)>("movements", &text)? {
            let m = parse_eligible_value(m)?;
            if matched == 1 {
                taken.push(m);
            } else {
                movements.push(m);
            }
        }
    }

    // The requests due to expire (an open request holds no movement: its group does not change
    // when it leaves).
    let sql = format!(
        "SELECT {REQ_COLS} FROM conciliation_requests WHERE account_id = $1 AND expires_at <= $2 \
         AND status IN ('not_found', 'ambiguous')"
    );
    let expiring = if evaluated_before {
        sqlx::query(&sql)
            .bind(account.0)
            .bind(to_ms(now))
            .fetch_all(&mut *conn)
            .await
            .map_err(map_err)?
    } else {
        Vec::new()
    };
    for r in expiring {
        let row = conciliation_from(&r)?;
        if loaded.insert(row.id.0) {
            stored.push(row.id.0);
            requests.push(row);
        }
    }

    // The rejected pairs of the requests read.
    let mut rejections = Vec::new();
    drop(loaded);
    stored.sort_unstable();
    for chunk in stored.chunks(CHUNK) {
        let sql = format!(
            "SELECT request_id, movement_id FROM conciliation_rejections WHERE request_id IN ({})",
            params(1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&mut *conn).await.map_err(map_err)? {
            rejections.push((
                ConciliationRequestId(r.try_get("request_id")?),
                MovementId(r.try_get("movement_id")?),
            ));
        }
    }
    rejections.sort_by_key(|(r, m)| (r.0, m.0));

    requests.sort_by(|a, b| (a.registered_at, &a.external_id, a.id.0).cmp(&(b.registered_at, &b.external_id, b.id.0)));
    movements.sort_by_key(|m| (m.received_at_ms, m.id));
    taken.sort_by_key(|m| (m.received_at_ms, m.id));
    Ok(PassInput {
        version,
        dirty_seq,
        requests,
        movements,
        taken,
        rejections,
    })
}

/// Whether the account has requests evaluated before (`not_found` or `ambiguous`: the open
/// requests a changed group can hold besides those to evaluate) and movements seen before (a
/// group's members the snapshot does not read as unseen); two index probes.
async fn stored_kinds(conn: &mut Conn, account: AccountId) -> StoreResult<(bool, bool)> {
    let row = sqlx::query(
        "SELECT CAST(CASE WHEN EXISTS (SELECT 1 FROM conciliation_requests WHERE account_id = $1 \
         AND status IN ('not_found', 'ambiguous')) THEN 1 ELSE 0 END AS BIGINT) AS evaluated, \
         CAST(CASE WHEN EXISTS (SELECT 1 FROM movements WHERE account_id = $1 AND match_key IS NOT NULL) \
         THEN 1 ELSE 0 END AS BIGINT) AS seen",
    )
    .bind(account.0)
    .fetch_one(&mut *conn)
    .await
    .map_err(map_err)?;
    Ok((
        row.try_get::<i64, _>("evaluated")? == 1,
        row.try_get::<i64, _>("seen")? == 1,
    ))
}

/// The row (`[movement, taken]`, taken 1 when the movement is matched already) and the
/// `FROM … WHERE` of the seen movements of `$1`'s account whose key is one of the `n` parameters
/// from `$3`, received at or after `$2` (or at an unknown time), not ignored.
///
/// On PostgreSQL each key drives its own probe of the (account, key) index (a lateral join):
/// with the `IN` list, the planner weighs one index descent per key against a scan of the
/// account's movements, and when the statistics predate a bulk insert it takes the scan and
/// tests every key on every movement (82 statements of 64 ms each in a 50,000-order poll).
fn movements_of_keys(n: usize) -> (String, String) {
    let eligible = "m.ignored_at IS NULL AND (m.received_at_ms IS NULL OR m.received_at_ms >= $2)";
    let taken = "CASE WHEN EXISTS (SELECT 1 FROM conciliation_matches c WHERE c.movement_id = m.id) \
                 THEN 1 ELSE 0 END";
    if BACKEND == "sqlite" {
        (
            format!("json_array({}, {taken})", eligible_out("m.")),
            format!(
                "FROM movements m WHERE m.account_id = $1 AND m.match_key IN ({}) AND {eligible}",
                params(3, n)
            ),
        )
    } else {
        let keys = (3..3 + n).map(|i| format!("(${i})")).collect::<Vec<_>>().join(", ");
        (
            format!("json_build_array({}, m.taken)", eligible_out("m.")),
            format!(
                "FROM (VALUES {keys}) AS k(key) CROSS JOIN LATERAL (SELECT {ELIGIBLE_COLS}, {taken} AS taken \
                 FROM movements m WHERE m.account_id = $1 AND m.match_key = k.key AND {eligible}) AS m"
            ),
        )
    }
}

/// Records every movement of the account not seen yet as seen, with its amount key, in a
/// committing pass's transaction (the version check guarantees they are the snapshot's).
pub(super) async fn mark_seen(conn: &mut Conn, account: AccountId) -> StoreResult<()> {
    let read = bulk::agg_out(
        &bulk::row_out(&["uuid:p.id", "p.amount"]),
        "FROM (SELECT id, amount FROM movements WHERE account_id = $1 AND match_key IS NULL AND id > $2 \
         ORDER BY id LIMIT $3) AS p",
    );
    let write = format!(
        "UPDATE movements SET match_key = v.k FROM (SELECT {} AS id, {} AS k FROM {}) AS v WHERE movements.id = v.id",
        bulk::uuid(0),
        bulk::text(1),
        bulk::source(1)
    );
    let mut after = Uuid::nil();
    loop {
        let text: String = sqlx::query_scalar(&read)
            .bind(account.0)
            .bind(after)
            .bind(PAGE)
            .fetch_one(&mut *conn)
            .await
            .map_err(map_err)?;
        let unseen: Vec<(Uuid, String)> = bulk::parse("movements", &text)?;
        drop(text);
        let full = unseen.len() as i64 == PAGE;
        let mut rows = bulk::JsonRows::with_capacity(unseen.len() * 60);
        for (id, amount) in &unseen {
            after = after.max(*id);
            rows.row()
                .uuid(*id)
                .text(&amount_key(amount).unwrap_or_else(|| NO_KEY.into()));
        }
        if !unseen.is_empty() {
            sqlx::query(&write)
                .bind(rows.finish())
                .execute(&mut *conn)
                .await
                .map_err(map_err)?;
        }
        if !full {
            return Ok(());
        }
    }
}

/// Leaves `movements` unseen again and the account dirty, so the next pass evaluates their
/// groups (a committing pass's transaction, after [`mark_seen`]).
pub(super) async fn recheck(conn: &mut Conn, account: AccountId, movements: &[MovementId]) -> StoreResult<()> {
    if movements.is_empty() {
        return Ok(());
    }
    for chunk in movements.chunks(CHUNK) {
        let sql = format!(
            "UPDATE movements SET match_key = NULL WHERE account_id = $1 AND id IN ({})",
            super::reconcile::params(2, chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(account.0);
        for id in chunk {
            q = q.bind(id.0);
        }
        q.execute(&mut *conn).await.map_err(map_err)?;
    }
    sqlx::query("UPDATE reconcile_state SET dirty_seq = dirty_seq + 1 WHERE account_id = $1")
        .bind(account.0)
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::amount_key;

    #[test]
    fn amount_keys_are_the_canonical_text() {
        let cases = [
            ("1500", Some("1500.00")),
            ("1500.00", Some("1500.00")),
            (" 1500.5 ", Some("1500.50")),
            ("12.3450", Some("12.345")),
            ("0.0001", Some("0.0001")),
            ("-12.3", Some("-12.30")),
            ("-0.00", Some("0.00")),
            ("0e999", Some("0.00")),
            ("1.5e3", Some("1500.00")),
            ("15E-1", Some("1.50")),
            ("1500e-5", Some("0.015")),
            ("007.10", Some("7.10")),
            ("1,500.00", None),
            ("+5", None),
            ("1.", None),
            (".5", None),
            ("1e", None),
            ("", None),
            ("abc", None),
        ];
        for (text, want) in cases {
            assert_eq!(amount_key(text).as_deref(), want, "{text:?}");
        }
    }
}
