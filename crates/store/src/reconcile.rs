//! Reconciliation rows: the orders a customer's system expects (conciliation requests), the poll
//! log of its pending-orders endpoint, and the per-account state that schedules and serialises
//! the work (docs: docs/reconciliation.md §2, §3).

use serde::{Deserialize, Serialize};

use crate::ids::*;
use crate::model::{NewEvent, Timestamp};

/// How many poll rows the store keeps per account (the newest; older ones are deleted when a
/// poll is recorded).
pub const POLL_LOG_KEEP: i64 = 500;

/// A conciliation request's status. `pending`, `not_found`, `ambiguous` and `failed` are open;
/// `matched`, `cancelled` and `expired` are final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConciliationStatus {
    Pending,
    NotFound,
    Ambiguous,
    Failed,
    Matched,
    Cancelled,
    Expired,
}

impl ConciliationStatus {
    /// Every status, open ones first.
    pub const ALL: [Self; 7] = [
        Self::Pending,
        Self::NotFound,
        Self::Ambiguous,
        Self::Failed,
        Self::Matched,
        Self::Cancelled,
        Self::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::NotFound => "not_found",
            Self::Ambiguous => "ambiguous",
            Self::Failed => "failed",
            Self::Matched => "matched",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Open requests can still be matched, updated, cancelled or expire.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::NotFound | Self::Ambiguous | Self::Failed)
    }
}

/// One registration of an order (`conciliation_requests`).
#[derive(Clone, Debug, PartialEq)]
pub struct ConciliationRow {
    pub id: ConciliationRequestId,
    pub account_id: AccountId,
    pub external_id: String,
    /// 1, 2, … per `(account_id, external_id)`.
    pub generation: i64,
    /// Canonical decimal text (`"1500.00"`).
    pub amount: String,
    pub currency: String,
    pub sender_name: String,
    pub reference: Option<String>,
    pub status: ConciliationStatus,
    pub reason: Option<String>,
    pub registered_at: Timestamp,
    pub expires_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub absent_since_close: bool,
    pub eval_errors: i64,
    pub attempt_count: i64,
    /// JSON.
    pub last_candidates: Option<String>,
    pub closed_at: Option<Timestamp>,
    pub updated_at: Timestamp,
}

/// A request as the dashboard lists it: with its account's bank code and name.
#[derive(Clone, Debug, PartialEq)]
pub struct ConciliationListRow {
    pub request: ConciliationRow,
    pub bank_code: String,
    pub account_name: String,
}

/// Which requests to list (all given conditions hold).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConciliationFilter {
    pub account: Option<AccountId>,
    pub status: Option<ConciliationStatus>,
    pub external_id: Option<String>,
}

/// A valid order of a successful poll.
#[derive(Clone, Debug, PartialEq)]
pub struct PollOrder {
    pub external_id: String,
    /// Canonical decimal text.
    pub amount: String,
    pub currency: String,
    pub sender_name: String,
    pub reference: Option<String>,
}

/// What a poll did (stored as JSON in `conciliation_polls.counts`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollCounts {
    pub orders_seen: i64,
    pub registered: i64,
    pub updated: i64,
    pub cancelled: i64,
    pub reopened: i64,
    pub already_matched: i64,
    pub invalid: i64,
    pub still_listed_after_expiry: i64,
}

/// One poll, as logged (`conciliation_polls`).
#[derive(Clone, Debug, PartialEq)]
pub struct PollRow {
    pub id: PollId,
    pub account_id: AccountId,
    pub seq: i64,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    /// `succeeded`, `failed` or `superseded`.
    pub outcome: String,
    /// The failure code (docs/reconciliation.md §3.4).
    pub error: Option<String>,
    pub http_status: Option<i64>,
    pub bytes: i64,
    pub pages: i64,
    pub counts: PollCounts,
    /// JSON array text, stored as given.
    pub issues: String,
}

/// The outcome of fetching an account's pending orders, for [`crate::Store::finish_poll`].
#[derive(Clone, Debug, PartialEq)]
pub struct PollReport {
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    /// The failure code when the poll failed.
    pub error: Option<String>,
    pub http_status: Option<i64>,
    pub bytes: i64,
    pub pages: i64,
    /// JSON array text.
    pub issues: String,
    /// `None` = the poll failed (nothing is applied).
    pub result: Option<PollSuccess>,
}

/// A complete, valid response.
#[derive(Clone, Debug, PartialEq)]
pub struct PollSuccess {
    /// The valid orders, first occurrence of each `external_id`.
    pub orders: Vec<PollOrder>,
    /// The other readable `external_id`s of the list (its invalid items'): with the orders',
    /// the ids present, which are never cancelled.
    pub also_present: Vec<String>,
    /// How many items were invalid.
    pub invalid: i64,
}

/// An account's reconciliation state (`reconcile_state`).
#[derive(Clone, Debug, PartialEq)]
pub struct ReconcileStateRow {
    pub account_id: AccountId,
    /// Bumped by every change of the account's requests.
    pub version: i64,
    pub dirty_seq: i64,
    pub done_seq: i64,
    pub next_poll_at: Option<Timestamp>,
    pub poll_seq_issued: i64,
    pub poll_seq_applied: i64,
    pub poll_failures: i64,
    pub poll_lease_owner: Option<String>,
    pub poll_lease_until: Option<Timestamp>,
}

/// A reconciliation state change the caller turns into an event (logged in the same
/// transaction).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ConciliationEvent<'a> {
    Registered(&'a ConciliationRow),
    Reopened(&'a ConciliationRow),
    Updated(&'a ConciliationRow),
    Cancelled(&'a ConciliationRow),
    /// The third consecutive failure (once per streak).
    PollFailed {
        error: &'a str,
        failures: i64,
    },
    /// The first success after [`ConciliationEvent::PollFailed`].
    PollRecovered,
}

/// Builds the event of a reconciliation state change (run by the store inside the transaction).
pub type ConciliationEventsFor<'a> = dyn Fn(ConciliationEvent<'_>) -> NewEvent + Send + Sync + 'a;

/// A movement a match pass may consider (RECONCILIATION §2): of the account, not matched, not
/// ignored, received within the horizon or at an unparseable date. The amount's sign is the
/// caller's to check.
#[derive(Clone, Debug, PartialEq)]
pub struct EligibleMovement {
    pub id: MovementId,
    /// Decimal text as the bank reported it (signed).
    pub amount: String,
    pub currency: String,
    pub name: Option<String>,
    pub description: String,
    /// As the bank reported it.
    pub received_at: String,
    /// `received_at` parsed (RFC 3339 with an offset), ms since the epoch; `None` when it did not
    /// parse.
    pub received_at_ms: Option<i64>,
}

/// What a match pass reads (one consistent snapshot), for [`crate::Store::load_pass`].
#[derive(Clone, Debug, PartialEq)]
pub struct PassInput {
    /// `reconcile_state.version` (0 when the account has no state row): pass it back to
    /// [`crate::Store::commit_pass`].
    pub version: i64,
    /// `reconcile_state.dirty_seq` as read: the pass's `done_seq`.
    pub dirty_seq: i64,
    /// The account's open requests (`pending`, `not_found`, `ambiguous`, `failed`), by
    /// `registered_at`, then `external_id`.
    pub requests: Vec<ConciliationRow>,
    /// By `received_at_ms` (unparseable first), then id.
    pub movements: Vec<EligibleMovement>,
    /// Movements already matched to a request, of the same amounts and in the same horizon as
    /// [`Self::movements`] (the full snapshot: all of them; the incremental one: those of its
    /// amount groups). Never assigned again: they explain a request left without a candidate
    /// (`candidates_taken`). The same order.
    pub taken: Vec<EligibleMovement>,
    /// Pairs a human ruled out, for the open requests.
    pub rejections: Vec<(ConciliationRequestId, MovementId)>,
}

/// A request the pass matches to a movement.
#[derive(Clone, Debug, PartialEq)]
pub struct MatchDecision {
    pub request: ConciliationRequestId,
    pub movement: MovementId,
    pub score: i64,
    /// `None`, `paired_by_age`, `reference_match`.
    pub reason: Option<String>,
    /// JSON: the winning candidate's checks (`conciliation_matches.explanation`).
    pub explanation: String,
    /// JSON: the attempt's candidates.
    pub candidates: String,
}

/// A request the pass finds ambiguous.
#[derive(Clone, Debug, PartialEq)]
pub struct AmbiguousDecision {
    pub request: ConciliationRequestId,
    /// JSON array of the candidate movement ids (`last_candidates`), compared as text.
    pub candidate_set: String,
    /// JSON: the attempt's candidates.
    pub candidates: String,
}

/// A request the pass finds no movement for.
#[derive(Clone, Debug, PartialEq)]
pub struct NotFoundDecision {
    pub request: ConciliationRequestId,
    /// The most specific reason code (§5.7).
    pub reason: String,
    /// JSON: the attempt's candidates.
    pub candidates: String,
}

/// The decisions of one match pass, applied by [`crate::Store::commit_pass`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassCommit {
    /// The trigger of every attempt of this pass but expiries (`movements`, `poll`, `run`, …).
    pub trigger: String,
    pub expired: Vec<ConciliationRequestId>,
    pub matched: Vec<MatchDecision>,
    pub ambiguous: Vec<AmbiguousDecision>,
    pub not_found: Vec<NotFoundDecision>,
    /// Movements this pass matches that a request it leaves ambiguous also counted as a
    /// candidate: the commit leaves them unseen and the account dirty, so a follow-up pass
    /// evaluates their amount group again (that request may have one candidate left, §5.6).
    pub recheck: Vec<MovementId>,
}

/// A state change of a match pass the caller turns into events (and result-webhook deliveries),
/// logged in the same transaction. Rows are as changed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PassEvent<'a> {
    Matched {
        request: &'a ConciliationRow,
        movement: &'a EligibleMovement,
    },
    /// Entering `ambiguous` (a new candidate set of a request already ambiguous writes its
    /// attempt, and no event: RECONCILIATION §5.6, once per entry).
    Ambiguous(&'a ConciliationRow),
    /// The first evaluation found nothing.
    NotFound(&'a ConciliationRow),
    Expired(&'a ConciliationRow),
}

/// Builds the events of a pass's state change (run by the store inside the transaction).
pub type PassEventsFor<'a> = dyn Fn(PassEvent<'_>) -> Vec<NewEvent> + Send + Sync + 'a;

/// The match pass a poll runs in its own transaction when it changes the account's requests
/// (docs/reconciliation.md §5.6, "Performance"): the orders it registers are stored once, as the
/// pass decides them, not stored `pending` and then read back and updated by a later pass.
pub struct PollPass<'a> {
    /// How far back movements can matter (as for [`crate::Store::load_pass_changes`]).
    pub horizon: Timestamp,
    /// Starts the pass's decisions over its snapshot ([`crate::Store::load_pass_changes`]'s,
    /// with the orders the poll registers as `pending` requests). The store writes what does not
    /// depend on them (the poll's own events, the movements seen) before it awaits them: a
    /// caller that makes them on a thread of their own (`spawn_blocking`) has them made on one
    /// core while the database writes on another.
    pub decide: &'a (dyn Fn(PassInput) -> Deciding + Send + Sync),
    /// The events of the pass's state changes, as for [`crate::Store::commit_pass`].
    pub events: &'a PassEventsFor<'a>,
}

/// A poll's pass decisions being made (see [`PollPass::decide`]): the snapshot back with its
/// decisions, or `None` when they were lost (the thread making them panicked or was stopped) —
/// the poll then fails with [`crate::StoreError::Interrupted`] and writes nothing.
pub type Deciding = std::pin::Pin<Box<dyn std::future::Future<Output = Option<(PassInput, PassCommit)>> + Send>>;

/// One movement's reconciliation side, for the movements list:
/// `(movement, Some((request, request's external_id)) when matched, ignored_at)`.
pub type MovementMatch = (MovementId, Option<(ConciliationRequestId, String)>, Option<Timestamp>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_open_ones_are_the_four() {
        for st in ConciliationStatus::ALL {
            assert_eq!(ConciliationStatus::parse(st.as_str()), Some(st));
        }
        let open: Vec<_> = ConciliationStatus::ALL.into_iter().filter(|s| s.is_open()).collect();
        assert_eq!(
            open,
            [
                ConciliationStatus::Pending,
                ConciliationStatus::NotFound,
                ConciliationStatus::Ambiguous,
                ConciliationStatus::Failed
            ]
        );
        assert_eq!(ConciliationStatus::parse("processing"), None);
        assert_eq!(ConciliationStatus::parse("Pending"), None);
    }

    #[test]
    fn counts_are_json() {
        let c = PollCounts {
            registered: 2,
            ..PollCounts::default()
        };
        let text = serde_json::to_string(&c).unwrap_or_default();
        assert!(text.contains(r#""registered":2"#), "{text}");
        assert_eq!(serde_json::from_str::<PollCounts>(&text).ok(), Some(c));
    }
}
