//! Reconciliation review rows: what the dashboard shows of one request (its attempts, its match,
//! the movements a human may pick from, its result deliveries), the per-account summary, and the
//! outcomes of the human actions — resolve, reject, run, notify, ignore (docs/reconciliation.md §8).

use crate::ids::*;
use crate::model::{DeliveryRow, EventRow, MovementRow, NewEvent, Timestamp};
use crate::reconcile::{ConciliationListRow, ConciliationRow, ConciliationStatus, EligibleMovement};

/// How far before a request's `registered_at` the review view looks for movements (10 days).
pub const REVIEW_BEFORE_MS: i64 = 10 * 24 * 3_600_000;
/// How far after a request's `expires_at` the review view looks for movements (1 day).
pub const REVIEW_AFTER_MS: i64 = 24 * 3_600_000;
/// The most movements [`crate::Store::conciliation_detail`] returns for the review view (the
/// caller keeps those of the request's amount and currency, at most 20).
pub const REVIEW_SCAN_LIMIT: i64 = 2000;

/// One recorded decision about a request (`conciliation_attempts`).
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptRow {
    pub id: AttemptId,
    pub request_id: ConciliationRequestId,
    pub attempt_number: i64,
    /// `matched`, `not_found`, `ambiguous`, `failed` (or `expired`).
    pub result: String,
    pub reason: Option<String>,
    /// `poll`, `movements`, `run`, `resolve`, `ignore`, `expiry`.
    pub trigger: String,
    /// The human behind a `resolve`.
    pub user_id: Option<UserId>,
    /// JSON.
    pub candidates: String,
    pub created_at: Timestamp,
}

/// A request's match (`conciliation_matches`) with the movement it settled on.
#[derive(Clone, Debug, PartialEq)]
pub struct MatchRow {
    pub id: ConciliationMatchId,
    pub request_id: ConciliationRequestId,
    pub movement: EligibleMovement,
    /// `engine` or `manual`.
    pub matched_by: String,
    pub matched_by_user: Option<UserId>,
    /// Thousandths.
    pub score: i64,
    /// JSON.
    pub explanation: String,
    pub matched_at: Timestamp,
}

/// A movement of the request's account, with what stands between it and the request.
#[derive(Clone, Debug, PartialEq)]
pub struct ReviewMovement {
    pub movement: EligibleMovement,
    /// The request it is matched to, with its `external_id`.
    pub taken_by: Option<(ConciliationRequestId, String)>,
    pub ignored_at: Option<Timestamp>,
    /// A human ruled it out for this request.
    pub rejected: bool,
}

/// Everything the dashboard shows of one request, read in one snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct ConciliationDetail {
    pub request: ConciliationListRow,
    /// By `attempt_number`.
    pub attempts: Vec<AttemptRow>,
    pub matched: Option<MatchRow>,
    /// The account's movements received from `registered_at −` [`REVIEW_BEFORE_MS`] to
    /// `expires_at +` [`REVIEW_AFTER_MS`] (parsed dates only), by `received_at_ms` then id, at
    /// most [`REVIEW_SCAN_LIMIT`]; those of the request's amount group (`match_key`) or not
    /// keyed by a pass yet, every currency (the caller compares decimals).
    pub movements: Vec<ReviewMovement>,
    /// The request's result-webhook deliveries, oldest first.
    pub deliveries: Vec<DeliveryRow>,
}

/// A movement looked up by a human action, with its account and reconciliation side.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnedMovement {
    pub account_id: AccountId,
    pub movement: EligibleMovement,
    pub taken_by: Option<(ConciliationRequestId, String)>,
    pub ignored_at: Option<Timestamp>,
}

/// A manual match, for [`crate::Store::resolve_conciliation`].
#[derive(Clone, Debug, PartialEq)]
pub struct ManualMatch {
    pub request: ConciliationRequestId,
    pub movement: MovementId,
    pub user: UserId,
    /// The request's amount and currency the caller checked the movement against: the resolve
    /// is refused ([`ResolveOutcome::Changed`]) when they changed meanwhile.
    pub amount: String,
    pub currency: String,
    /// Thousandths.
    pub score: i64,
    /// JSON (`conciliation_matches.explanation`).
    pub explanation: String,
    /// JSON (the attempt's candidates).
    pub candidates: String,
}

/// What [`crate::Store::resolve_conciliation`] did.
// A return value, consumed at once: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum ResolveOutcome {
    /// Not the user's request.
    NotFound,
    /// The request is no longer open.
    Closed(ConciliationStatus),
    /// The owner is not in reconcile mode (checked under the account lock).
    NotReconciling,
    /// The request's amount or currency changed since the caller read it.
    Changed,
    /// The movement is not the user's.
    MovementNotFound,
    /// The movement belongs to another account.
    OtherAccount,
    Ignored,
    /// Another request has the movement.
    Taken,
    /// Matched; the request as changed and the events logged.
    Resolved(ConciliationRow, Vec<EventRow>),
}

/// What a change of one request by a human (reject, run) did.
// A return value, consumed at once: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum RequestChange {
    NotFound,
    Closed(ConciliationStatus),
    /// The owner is not in reconcile mode (checked under the account lock).
    NotReconciling,
    Done(ConciliationRow, Vec<EventRow>),
}

/// What [`crate::Store::notify_conciliation`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum NotifyOutcome {
    NotFound,
    /// The owner is not in reconcile mode (checked under the account lock).
    NotReconciling,
    /// The request's status has no result webhook now.
    NothingToSend(ConciliationStatus),
    /// The latest delivery of the current status was queued again (same id).
    Requeued(DeliveryRow, Vec<EventRow>),
    /// None existed: a new one was created from the current state.
    Created(DeliveryRow, Vec<EventRow>),
}

/// What [`crate::Store::set_movement_ignored`] did.
// A return value, consumed at once: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum IgnoreOutcome {
    NotFound,
    /// The movement is matched to a request.
    Taken,
    /// The movement as it is now (`ignored_at`), with the events logged (none when it already
    /// was in the asked state).
    Done(MovementRow, Option<Timestamp>, Vec<EventRow>),
}

/// Builds the events of a human change of a request (run by the store inside the transaction).
pub type RequestEventsFor<'a> = dyn Fn(&ConciliationRow) -> Vec<NewEvent> + Send + Sync + 'a;
/// Builds the `conciliation.notified` event of a request, carrying the delivery its current
/// status calls for (`None` when it calls for none).
pub type NotifyEventFor<'a> =
    dyn Fn(&ConciliationRow, Option<&EligibleMovement>) -> Option<NewEvent> + Send + Sync + 'a;
/// Builds the events of a movement's ignore mark changing.
pub type MovementEventsFor<'a> = dyn Fn(&MovementRow) -> Vec<NewEvent> + Send + Sync + 'a;

/// One account's requests per status, for the review badge.
#[derive(Clone, Debug, PartialEq)]
pub struct ConciliationSummaryRow {
    pub account_id: AccountId,
    /// Every status, in [`ConciliationStatus::ALL`] order, with its count (0 included).
    pub counts: Vec<(ConciliationStatus, i64)>,
    /// The review queue: `ambiguous` plus `not_found` with reason `weak_name_only` or
    /// `no_sender_name`.
    pub review: i64,
}
