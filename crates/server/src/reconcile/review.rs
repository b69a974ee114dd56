//! The review of one request by a human (docs/reconciliation.md §8): the candidate movements
//! with their checks and verdicts, the checks of a manual resolve, and the events (with the
//! frozen result deliveries) of the human actions. The checks are the pass's own pure functions
//! ([`super::matching`]); the store applies each action in one transaction under the account lock.

use reconbanker_store::{
    AccountId, ConciliationDetail, ConciliationRequestId, ConciliationRow, ConciliationStatus, EligibleMovement,
    ManualMatch, MovementRow, NewEvent, PassEvent, ReviewMovement, UserId,
};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use super::matcher::result_delivery;
use super::matching::{
    name_score, reference_matches, Checks, MAX_EXPLAINED_CANDIDATES, NAME_RULES, REFERENCE_SCORE, STRONG_BAND,
    WEAK_BAND, WINDOW_BEFORE_REGISTRATION_MS,
};
use super::orders::parse_signed_decimal;
use crate::domain::account_config::Settings;
use crate::push::events::{EventHub, EventKind};

/// One (request, movement) pair as a human sees it.
#[derive(Debug, Clone)]
pub(crate) struct Reviewed {
    pub movement: EligibleMovement,
    pub checks: Checks,
    /// Thousandths: [`REFERENCE_SCORE`] for a reference match, else the name score.
    pub score: u16,
    /// `chosen`, `alternative`, `weak`, `no_sender_name`, `taken`, `ignored`, `rejected`,
    /// `name_too_different`, `outside_window`, `received_at_unparseable`, `not_a_credit`.
    pub verdict: &'static str,
    pub taken_by: Option<(ConciliationRequestId, String)>,
    pub ignored_at: Option<reconbanker_store::Timestamp>,
}

fn currency(c: &str) -> String {
    c.trim().to_uppercase()
}

/// Whether the movement has the request's amount (exact decimals) and currency.
pub(crate) fn same_money(r: &ConciliationRow, m: &EligibleMovement) -> (bool, bool) {
    let amount = match (
        parse_signed_decimal(r.amount.trim()),
        parse_signed_decimal(m.amount.trim()),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    };
    (amount, currency(&r.currency) == currency(&m.currency))
}

/// The per-check results of a pair (docs/reconciliation.md §5.2–§5.5) and its score.
pub(crate) fn checks(r: &ConciliationRow, m: &EligibleMovement) -> (Checks, u16) {
    let (amount, currency) = same_money(r, m);
    let registered = r.registered_at.timestamp_millis();
    let expires = r.expires_at.timestamp_millis();
    let window = m
        .received_at_ms
        .is_some_and(|t| registered - WINDOW_BEFORE_REGISTRATION_MS <= t && t <= expires);
    let reference = r
        .reference
        .as_deref()
        .is_some_and(|code| reference_matches(code, &m.description, m.name.as_deref()));
    let name = name_score(&r.sender_name, m.name.as_deref());
    let score = if reference { REFERENCE_SCORE } else { name.score };
    (
        Checks {
            amount,
            currency,
            window,
            name,
            reference,
        },
        score,
    )
}

fn is_credit(m: &EligibleMovement) -> bool {
    parse_signed_decimal(m.amount.trim()).is_some_and(|d| d > Decimal::ZERO)
}

fn verdict_rank(v: &str) -> u8 {
    match v {
        "chosen" => 0,
        "alternative" => 1,
        "weak" => 2,
        "no_sender_name" => 3,
        "taken" => 4,
        "rejected" => 5,
        "ignored" => 6,
        "name_too_different" => 7,
        "outside_window" => 8,
        "received_at_unparseable" => 9,
        _ => 10,
    }
}

fn review_one(r: &ConciliationRow, chosen: Option<&EligibleMovement>, rm: &ReviewMovement) -> Reviewed {
    let m = &rm.movement;
    let (checks, score) = checks(r, m);
    let has_name = m.name.as_deref().is_some_and(|n| n.chars().any(char::is_alphanumeric));
    let verdict = if chosen.is_some_and(|c| c.id == m.id) {
        "chosen"
    } else if rm.taken_by.is_some() {
        "taken"
    } else if rm.ignored_at.is_some() {
        "ignored"
    } else if rm.rejected {
        "rejected"
    } else if !is_credit(m) {
        "not_a_credit"
    } else if m.received_at_ms.is_none() {
        "received_at_unparseable"
    } else if !checks.window {
        "outside_window"
    } else if checks.reference || score >= STRONG_BAND {
        "alternative"
    } else if !has_name {
        "no_sender_name"
    } else if score >= WEAK_BAND {
        "weak"
    } else {
        "name_too_different"
    };
    Reviewed {
        movement: m.clone(),
        checks,
        score,
        verdict,
        taken_by: rm.taken_by.clone(),
        ignored_at: rm.ignored_at,
    }
}

/// The review view of a request: its account's movements of the same amount and currency in
/// the detail's window (and its match, wherever it is), the most relevant first, at most
/// [`MAX_EXPLAINED_CANDIDATES`].
pub(crate) fn candidates(d: &ConciliationDetail) -> Vec<Reviewed> {
    let r = &d.request.request;
    let chosen = d.matched.as_ref().map(|m| &m.movement);
    let mut out: Vec<Reviewed> = d
        .movements
        .iter()
        .filter(|rm| same_money(r, &rm.movement) == (true, true))
        .map(|rm| review_one(r, chosen, rm))
        .collect();
    if let Some(m) = &d.matched {
        if !out.iter().any(|c| c.movement.id == m.movement.id) {
            let rm = ReviewMovement {
                movement: m.movement.clone(),
                taken_by: Some((r.id, r.external_id.clone())),
                ignored_at: None,
                rejected: false,
            };
            out.push(review_one(r, chosen, &rm));
        }
    }
    out.sort_by(|a, b| {
        let key = |c: &Reviewed| {
            (
                verdict_rank(c.verdict),
                std::cmp::Reverse(c.score),
                c.movement.received_at_ms,
                c.movement.id,
            )
        };
        key(a).cmp(&key(b))
    });
    out.truncate(MAX_EXPLAINED_CANDIDATES);
    out
}

/// The candidates a human rules out with `resolve {movement_id: null}`: those the pass could
/// still propose (strong, weak or nameless), plus the recorded ambiguous set.
pub(crate) fn to_reject(r: &ConciliationRow, view: &[Reviewed]) -> Vec<reconbanker_store::MovementId> {
    let recorded: Vec<uuid::Uuid> = r
        .last_candidates
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    let mut ids: Vec<_> = view
        .iter()
        .filter(|c| {
            matches!(c.verdict, "alternative" | "weak" | "no_sender_name")
                || (recorded.contains(&c.movement.id.0) && c.verdict != "taken")
        })
        .map(|c| c.movement.id)
        .collect();
    for id in recorded {
        let id = reconbanker_store::MovementId(id);
        if !ids.contains(&id) && !view.iter().any(|c| c.movement.id == id && c.verdict == "taken") {
            ids.push(id);
        }
    }
    ids
}

/// The JSON of reviewed candidates as an attempt records them (like the pass's).
pub(crate) fn candidates_json(view: &[Reviewed]) -> String {
    let list: Vec<Value> = view
        .iter()
        .map(|c| {
            let mut v = json!({
                "movement": c.movement.id,
                "checks": c.checks,
                "score": c.score,
                "verdict": c.verdict,
            });
            if let Some((request, _)) = &c.taken_by {
                v["taken_by"] = json!(request);
            }
            v
        })
        .collect();
    Value::Array(list).to_string()
}

/// Why a movement cannot settle a request by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Another account's, a debit, or ignored.
    NotEligible(&'static str),
    Taken,
    AmountMismatch,
}

/// Checks a manual resolve (the window is ignored, never the amount and currency) and builds it.
pub(crate) fn manual_match(
    r: &ConciliationRow,
    movement_account: AccountId,
    m: &EligibleMovement,
    taken: bool,
    ignored: bool,
    user: UserId,
) -> Result<ManualMatch, Refusal> {
    if movement_account != r.account_id {
        return Err(Refusal::NotEligible("The movement belongs to another account"));
    }
    if !is_credit(m) {
        return Err(Refusal::NotEligible("The movement is not a credit"));
    }
    if ignored {
        return Err(Refusal::NotEligible("The movement is ignored; un-ignore it first"));
    }
    if taken {
        return Err(Refusal::Taken);
    }
    let (checks, score) = checks(r, m);
    if !(checks.amount && checks.currency) {
        return Err(Refusal::AmountMismatch);
    }
    let window_ignored = !checks.window;
    let candidate = json!({
        "movement": m.id,
        "checks": checks,
        "score": score,
        "verdict": "chosen",
    });
    Ok(ManualMatch {
        request: r.id,
        movement: m.id,
        user,
        amount: r.amount.clone(),
        currency: r.currency.clone(),
        score: i64::from(score),
        explanation: json!({
            "name_rules": NAME_RULES,
            "candidate": candidate,
            "manual": true,
            "window_ignored": window_ignored,
        })
        .to_string(),
        candidates: Value::Array(vec![candidate]).to_string(),
    })
}

/// Builds the events of the human actions of one user on one account.
pub(crate) struct ReviewEvents<'a> {
    pub hub: &'a EventHub,
    pub user: UserId,
    pub account: AccountId,
    pub settings: &'a Settings,
}

impl ReviewEvents<'_> {
    fn event(&self, kind: EventKind, data: Value) -> NewEvent {
        self.hub
            .build(kind, self.user, self.account, data, &Default::default(), None)
    }

    /// `conciliation.matched` (manual) with the frozen `matched` result delivery.
    pub(crate) fn resolved(&self, e: PassEvent<'_>) -> Vec<NewEvent> {
        let PassEvent::Matched { request, movement } = e else {
            return Vec::new();
        };
        let mut event = self.event(
            EventKind::ConciliationMatched,
            json!({
                "request_id": request.id, "external_id": request.external_id, "movement_id": movement.id,
                "matched_by": "manual", "reason": request.reason, "user_id": self.user,
            }),
        );
        if let Some(d) = result_delivery(
            request,
            "matched",
            Some(movement),
            &self.settings.webhook_extra_fields,
            event.occurred_at,
        ) {
            event.deliveries.push(d);
        }
        vec![event]
    }

    /// `conciliation.rejected`: a human ruled out the request's candidates.
    pub(crate) fn rejected(&self, r: &ConciliationRow, movements: &[reconbanker_store::MovementId]) -> Vec<NewEvent> {
        vec![self.event(
            EventKind::ConciliationRejected,
            json!({
                "request_id": r.id, "external_id": r.external_id, "movement_ids": movements,
                "status": r.status.as_str(), "reason": r.reason, "user_id": self.user,
            }),
        )]
    }

    /// `conciliation.run_requested`: back to `pending` for the next pass.
    pub(crate) fn run(&self, r: &ConciliationRow) -> Vec<NewEvent> {
        vec![self.event(
            EventKind::ConciliationRunRequested,
            json!({ "request_id": r.id, "external_id": r.external_id, "user_id": self.user }),
        )]
    }

    /// `conciliation.notified` with the result delivery the request's status calls for:
    /// `matched` (with its movement), `ambiguous`, `expired` when the account has
    /// `notify_on_expired`; `None` for every other status.
    pub(crate) fn notified(&self, r: &ConciliationRow, movement: Option<&EligibleMovement>) -> Option<NewEvent> {
        let status = match r.status {
            ConciliationStatus::Matched if movement.is_some() => "matched",
            ConciliationStatus::Ambiguous => "ambiguous",
            ConciliationStatus::Expired if self.settings.notify_on_expired => "expired",
            _ => return None,
        };
        let mut event = self.event(
            EventKind::ConciliationNotified,
            json!({ "request_id": r.id, "external_id": r.external_id, "status": status, "user_id": self.user }),
        );
        let movement = if status == "matched" { movement } else { None };
        let d = result_delivery(
            r,
            status,
            movement,
            &self.settings.webhook_extra_fields,
            event.occurred_at,
        )?;
        event.deliveries.push(d);
        Some(event)
    }

    /// `movement.ignored` / `movement.unignored`.
    pub(crate) fn movement(&self, m: &MovementRow, ignored: bool) -> Vec<NewEvent> {
        let kind = if ignored {
            EventKind::MovementIgnored
        } else {
            EventKind::MovementUnignored
        };
        vec![self.event(
            kind,
            json!({ "movement_id": m.id, "external_id": m.external_id, "user_id": self.user }),
        )]
    }
}

/// Whether a request waits for a human (the review queue of docs/reconciliation.md §8, the
/// `review` count of the summary): `ambiguous`, or `not_found` with only a weak name match
/// (`weak_name_only`) or a nameless movement (`no_sender_name`).
pub(crate) fn needs_review(r: &ConciliationRow) -> bool {
    r.status == ConciliationStatus::Ambiguous
        || (r.status == ConciliationStatus::NotFound
            && matches!(r.reason.as_deref(), Some("weak_name_only" | "no_sender_name")))
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};
    use reconbanker_store::{ConciliationListRow, MatchRow, MovementId};

    use super::*;

    fn request() -> ConciliationRow {
        let at = Utc.timestamp_millis_opt(1_800_000_000_000).single().unwrap_or_default();
        ConciliationRow {
            id: ConciliationRequestId::new(),
            account_id: AccountId::new(),
            external_id: "O-1".into(),
            generation: 1,
            amount: "1500.00".into(),
            currency: "UYU".into(),
            sender_name: "Juan Perez".into(),
            reference: None,
            status: ConciliationStatus::Ambiguous,
            reason: None,
            registered_at: at,
            expires_at: at + Duration::hours(120),
            last_seen_at: at,
            absent_since_close: false,
            eval_errors: 0,
            attempt_count: 1,
            last_candidates: None,
            closed_at: None,
            updated_at: at,
        }
    }

    fn movement(amount: &str, name: &str, hours_after: i64, r: &ConciliationRow) -> EligibleMovement {
        let t = r.registered_at + Duration::hours(hours_after);
        EligibleMovement {
            id: MovementId::new(),
            amount: amount.into(),
            currency: " uyu ".into(),
            name: Some(name.into()),
            description: String::new(),
            received_at: t.to_rfc3339(),
            received_at_ms: Some(t.timestamp_millis()),
        }
    }

    fn free(m: &EligibleMovement) -> ReviewMovement {
        ReviewMovement {
            movement: m.clone(),
            taken_by: None,
            ignored_at: None,
            rejected: false,
        }
    }

    #[test]
    fn a_manual_match_ignores_the_window_and_the_name_never_the_money() {
        let r = request();
        let user = UserId::new();
        let late = movement("1500", "SOMEONE ELSE", 200, &r);
        let m = manual_match(&r, r.account_id, &late, false, false, user).expect("allowed");
        assert_eq!((m.request, m.movement, m.amount.as_str()), (r.id, late.id, "1500.00"));
        assert!(m.explanation.contains(r#""window_ignored":true"#), "{}", m.explanation);
        let refused = |m: &EligibleMovement, account: AccountId, taken: bool, ignored: bool| {
            manual_match(&r, account, m, taken, ignored, user).err()
        };
        let debit = movement("-1500.00", "JUAN PEREZ", 1, &r);
        assert!(matches!(
            refused(&debit, r.account_id, false, false),
            Some(Refusal::NotEligible(_))
        ));
        let ok = movement("1500.00", "JUAN PEREZ", 1, &r);
        assert!(matches!(
            refused(&ok, AccountId::new(), false, false),
            Some(Refusal::NotEligible(_))
        ));
        assert!(matches!(
            refused(&ok, r.account_id, false, true),
            Some(Refusal::NotEligible(_))
        ));
        assert_eq!(refused(&ok, r.account_id, true, false), Some(Refusal::Taken));
        let cent = movement("1500.01", "JUAN PEREZ", 1, &r);
        assert_eq!(
            refused(&cent, r.account_id, false, false),
            Some(Refusal::AmountMismatch)
        );
        let dollars = EligibleMovement {
            currency: "USD".into(),
            ..ok.clone()
        };
        assert_eq!(
            refused(&dollars, r.account_id, false, false),
            Some(Refusal::AmountMismatch)
        );
    }

    #[test]
    fn the_review_view_keeps_the_same_money_most_relevant_first() {
        let r = request();
        let strong = movement("1500", "JUAN PEREZ", 1, &r);
        let weak = movement("1500.0", "MARIA PEREZ", 2, &r);
        let late = movement("1500.00", "JUAN PEREZ", 130, &r);
        let other_amount = movement("1499.99", "JUAN PEREZ", 1, &r);
        let taken = movement("1500.00", "JUAN PEREZ", 3, &r);
        let mut rejected = free(&movement("1500.00", "JUAN PEREZ", 4, &r));
        rejected.rejected = true;
        let detail = ConciliationDetail {
            request: ConciliationListRow {
                request: r.clone(),
                bank_code: "sandbox".into(),
                account_name: "Shop".into(),
            },
            attempts: Vec::new(),
            matched: None,
            movements: vec![
                free(&late),
                free(&other_amount),
                free(&weak),
                ReviewMovement {
                    taken_by: Some((ConciliationRequestId::new(), "O-2".into())),
                    ..free(&taken)
                },
                rejected.clone(),
                free(&strong),
            ],
            deliveries: Vec::new(),
        };
        let view = candidates(&detail);
        let got: Vec<(MovementId, &str)> = view.iter().map(|c| (c.movement.id, c.verdict)).collect();
        assert_eq!(
            got,
            [
                (strong.id, "alternative"),
                (weak.id, "weak"),
                (taken.id, "taken"),
                (rejected.movement.id, "rejected"),
                (late.id, "outside_window"),
            ]
        );
        assert_eq!(to_reject(&r, &view), vec![strong.id, weak.id]);

        // Matched: its movement is `chosen`, even outside the window.
        let d = ConciliationDetail {
            matched: Some(MatchRow {
                id: reconbanker_store::ConciliationMatchId::new(),
                request_id: r.id,
                movement: late.clone(),
                matched_by: "manual".into(),
                matched_by_user: None,
                score: 1000,
                explanation: "{}".into(),
                matched_at: r.registered_at,
            }),
            movements: Vec::new(),
            ..detail
        };
        let view = candidates(&d);
        assert_eq!(view.len(), 1);
        assert_eq!((view[0].movement.id, view[0].verdict), (late.id, "chosen"));
        assert!(!view[0].checks.window);
    }

    #[test]
    fn the_review_queue_is_ambiguous_and_not_found_for_a_weak_or_missing_name() {
        use ConciliationStatus::*;
        let cases = [
            (Ambiguous, None, true),
            (NotFound, Some("weak_name_only"), true),
            (NotFound, Some("no_sender_name"), true),
            (NotFound, Some("no_movement_with_amount"), false),
            (NotFound, Some("candidates_rejected"), false),
            (Pending, None, false),
            (Matched, Some("weak_name_only"), false),
        ];
        for (status, reason, expected) in cases {
            let r = ConciliationRow {
                status,
                reason: reason.map(str::to_owned),
                ..request()
            };
            assert_eq!(needs_review(&r), expected, "{status:?} {reason:?}");
        }
    }
}
