//! The match worker (docs/reconciliation.md §5.1, §5.6, §6): drains accounts whose
//! reconciliation state is dirty, runs the deterministic pass on a snapshot, and commits its
//! decisions — matches, attempts, events and the frozen result-webhook deliveries — in one
//! transaction under the account's lock. The commit is refused when the account changed since
//! the snapshot (its `version`); the worker then takes a new snapshot, so two passes racing on
//! one account (two tasks or two instances) never match a movement twice. A crash only delays
//! the work: the account stays dirty until a pass commits.

use crate::domain::exact_json::ExactObject;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use reconbanker_store::{
    AccountId, AmbiguousDecision, ConciliationRequestId, ConciliationRow, ConciliationStatus, DeliveryId,
    EligibleMovement, MatchDecision, MovementId, NewDelivery, NewEvent, NotFoundDecision, PassCommit, PassEvent,
    PassInput, Store, StoreError, StoreResult, CHANNEL_RESULT,
};
use serde::Serialize;
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::matching::{self, Mov, Req, ReqStatus};
use super::orders::parse_signed_decimal;
use super::results::{self, amount_number, MovementBody, ResultBody};
use crate::domain::account_config::{self, Settings};
use crate::push::events::{EventHub, EventKind};
use crate::support::clock::Clock;
use crate::support::crypto::Sealer;
use crate::support::metrics::{Metrics, WorkOutcome};
use crate::support::time::{before, ts};
use crate::support::worker::drain;

/// Accounts worked on at once by one instance.
const CONCURRENCY: usize = 4;
/// How often the worker looks for dirty accounts when nothing wakes it.
const SCAN: Duration = Duration::from_secs(2);
/// Snapshots taken for one account before giving up until the next wake-up (each refusal means
/// someone else changed the account meanwhile, which also made it dirty again).
const MAX_TRIES: usize = 5;
/// How far back movements can matter: a request lives 120 h and accepts movements from 120 h
/// before its registration.
pub(crate) const HORIZON: Duration = Duration::from_secs(241 * 3600);

pub struct Matcher {
    store: Arc<dyn Store>,
    hub: Arc<EventHub>,
    sealer: Sealer,
    wake: Arc<Notify>,
    /// The pass's "now" (expiry, the movement horizon): the app's clock, so tests drive expiry.
    clock: Arc<dyn Clock>,
    /// Issue 11: counts and times the passes.
    metrics: Metrics,
}

impl Matcher {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        hub: Arc<EventHub>,
        sealer: Sealer,
        wake: Arc<Notify>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            hub,
            sealer,
            wake,
            clock,
            metrics: Metrics::off(),
        }
    }

    /// Issue 11: records each pass's outcome and duration in `metrics`.
    pub(crate) fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub(crate) async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let me = self.clone();
        drain(
            CONCURRENCY,
            SCAN,
            &self.wake,
            cancel,
            |room| {
                let me = me.clone();
                async move {
                    me.store.dirty_accounts(room as i64).await.unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "could not look for accounts to match");
                        Vec::new()
                    })
                }
            },
            |(account, _)| {
                let me = me.clone();
                async move {
                    if let Err(e) = me.pass(account).await {
                        tracing::warn!(error = %e, account = %account, "match pass failed; it runs again");
                    }
                }
            },
        )
        .await;
    }

    /// Runs one pass for the account and commits it. `true` when a pass committed.
    pub async fn pass(&self, account: AccountId) -> StoreResult<bool> {
        // Issue 11: the pass's wall time and outcome.
        let timer = std::time::Instant::now();
        let passed = self.pass_once(account).await;
        let outcome = match &passed {
            Ok(true) => WorkOutcome::Done,
            Ok(false) => WorkOutcome::Failed,
            Err(_) => WorkOutcome::Error,
        };
        self.metrics.match_pass(outcome, timer.elapsed());
        passed
    }

    async fn pass_once(&self, account: AccountId) -> StoreResult<bool> {
        let Some(acc) = self.store.engine_account(account).await? else {
            return Ok(false);
        };
        let settings = match account_config::decode(acc.config.as_ref(), &self.sealer) {
            Ok((settings, _)) => settings,
            Err(e) => {
                tracing::error!(error = %e, account = %account, "account config unreadable; not matching");
                return Ok(false);
            }
        };
        let user = acc.account.user_id;
        for _ in 0..MAX_TRIES {
            let at = self.clock.now();
            // Only what changed since the last committed pass: the pass decomposes by amount.
            let input = match self.store.load_pass_changes(account, before(at, HORIZON), at).await {
                Ok(input) => input,
                Err(e) => return Err(self.failed(user, account, &settings, None, at, e).await),
            };
            // The requests this pass evaluates: an error counts against them.
            let evaluated: Vec<ConciliationRequestId> = input.requests.iter().map(|r| r.id).collect();
            let commit = decide(&input, at, "movements");
            // The snapshot is not needed while the commit writes (tens of thousands of rows on a
            // first pass).
            let (version, dirty_seq) = (input.version, input.dirty_seq);
            drop(input);
            let events = |e: PassEvent<'_>| -> Vec<NewEvent> { pass_events(&self.hub, user, account, &settings, e) };
            match self
                .store
                .commit_pass(account, version, dirty_seq, &commit, at, &events)
                .await
            {
                Ok(Some(logged)) => {
                    self.hub.publish(logged);
                    return Ok(true);
                }
                // A lost race is not an error: a new snapshot.
                Ok(None) => continue,
                Err(e) => return Err(self.failed(user, account, &settings, Some(&evaluated), at, e).await),
            }
        }
        Ok(false)
    }

    /// Records that a pass errored (docs/reconciliation.md §2 `failed`): one more consecutive
    /// error on each request it was evaluating (`None`: it errored before its snapshot), and
    /// `failed` with a `conciliation.failed` event (no result webhook, §6) for those reaching the
    /// account's `retry_limit`. Gives the pass's error back; the account stays dirty, so a pass
    /// runs again.
    async fn failed(
        &self,
        user: reconbanker_store::UserId,
        account: AccountId,
        settings: &Settings,
        evaluated: Option<&[ConciliationRequestId]>,
        at: reconbanker_store::Timestamp,
        error: StoreError,
    ) -> StoreError {
        let none = Default::default();
        let events = |r: &ConciliationRow| -> Vec<NewEvent> {
            vec![self.hub.build(
                EventKind::ConciliationFailed,
                user,
                account,
                json!({ "request_id": r.id, "external_id": r.external_id, "reason": r.reason }),
                &none,
                None,
            )]
        };
        let limit = i64::from(settings.retry_limit);
        match self
            .store
            .record_pass_failure(account, evaluated, limit, "movements", at, &events)
            .await
        {
            Ok(logged) => self.hub.publish(logged),
            Err(e) => tracing::warn!(error = %e, account = %account, "could not record a failed match pass"),
        }
        error
    }
}

/// The data of a pass's event, written straight from its row (a first pass builds tens of
/// thousands): `conciliation.matched` has `matched_by`, `movement_id` and `reason`;
/// `….ambiguous` `candidate_ids`; `….not_found` `reason`; `….expired` neither. The fields are
/// in the order a JSON map sorts them, so the text is the one a `json!` value gave.
#[derive(Serialize)]
struct PassData<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_ids: Option<Vec<Uuid>>,
    external_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    matched_by: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    movement_id: Option<MovementId>,
    /// `Some(None)`: the key, with `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<Option<&'a str>>,
    request_id: ConciliationRequestId,
}

/// See [`PassData`].
fn pass_data(e: PassEvent<'_>) -> PassData<'_> {
    let r = match e {
        PassEvent::Matched { request, .. }
        | PassEvent::Ambiguous(request)
        | PassEvent::NotFound(request)
        | PassEvent::Expired(request) => request,
    };
    PassData {
        candidate_ids: match e {
            PassEvent::Ambiguous(request) => Some(
                request
                    .last_candidates
                    .as_deref()
                    .and_then(|t| serde_json::from_str(t).ok())
                    .unwrap_or_default(),
            ),
            _ => None,
        },
        external_id: &r.external_id,
        matched_by: matches!(e, PassEvent::Matched { .. }).then_some("engine"),
        movement_id: match e {
            PassEvent::Matched { movement, .. } => Some(movement.id),
            _ => None,
        },
        reason: matches!(e, PassEvent::Matched { .. } | PassEvent::NotFound(_)).then_some(r.reason.as_deref()),
        request_id: r.id,
    }
}

/// The events of one decision, with the result-webhook delivery it causes (its body frozen
/// now). Result webhooks go out in reconcile mode only: the pass runs only then.
pub(crate) fn pass_events(
    hub: &EventHub,
    user: reconbanker_store::UserId,
    account: AccountId,
    settings: &Settings,
    e: PassEvent<'_>,
) -> Vec<NewEvent> {
    let none = Default::default();
    let (kind, r, webhook) = match e {
        PassEvent::Matched { request, movement } => (
            EventKind::ConciliationMatched,
            request,
            Some(("matched", Some(movement))),
        ),
        PassEvent::Ambiguous(request) => (EventKind::ConciliationAmbiguous, request, Some(("ambiguous", None))),
        PassEvent::NotFound(request) => (EventKind::ConciliationNotFound, request, None),
        PassEvent::Expired(request) => (
            EventKind::ConciliationExpired,
            request,
            settings.notify_on_expired.then_some(("expired", None)),
        ),
    };
    let data = pass_data(e);
    let mut event = hub.build(kind, user, account, data, &none, None);
    if let Some((status, movement)) = webhook {
        if let Some(delivery) = result_delivery(r, status, movement, &settings.webhook_extra_fields, event.occurred_at)
        {
            event.deliveries.push(delivery);
        }
    }
    vec![event]
}

/// A pass's decisions over its snapshot at `at`, with `trigger` on its attempts (deterministic,
/// docs/reconciliation.md §5.6): what the match worker commits, and what a poll that changed the
/// requests commits in its own transaction.
pub(crate) fn decide(input: &PassInput, at: reconbanker_store::Timestamp, trigger: &str) -> PassCommit {
    let mut rejected: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for (r, m) in &input.rejections {
        rejected.entry(r.0).or_default().push(m.0);
    }
    let reqs: Vec<Req<'_>> = input.requests.iter().filter_map(|r| req(r, &rejected)).collect();
    let movs: Vec<Mov> = (input.movements.iter().filter_map(|m| mov(m, false)))
        .chain(input.taken.iter().filter_map(|m| mov(m, true)))
        .collect();
    let decided = matching::run_pass(at.timestamp_millis(), &reqs, &movs);
    // A movement matched here that a request left ambiguous here also counted on: that
    // request may have one candidate left, which a follow-up pass settles.
    let held: std::collections::HashSet<Uuid> = decided
        .ambiguous
        .iter()
        .flat_map(|a| a.candidate_set.iter().copied())
        .collect();
    let recheck = decided
        .matched
        .iter()
        .filter(|m| held.contains(&m.movement))
        .map(|m| m.movement.into())
        .collect();
    PassCommit {
        trigger: trigger.into(),
        recheck,
        expired: decided.expired.iter().map(|id| (*id).into()).collect(),
        matched: decided
            .matched
            .iter()
            .map(|m| MatchDecision {
                request: m.request.into(),
                movement: m.movement.into(),
                score: i64::from(m.score),
                reason: m.reason.map(str::to_owned),
                explanation: serde_json::to_string(&json!({
                    "name_rules": matching::NAME_RULES,
                    "candidate": m.explanation,
                }))
                .unwrap_or_else(|_| "{}".into()),
                candidates: serde_json::to_string(&[&m.explanation]).unwrap_or_else(|_| "[]".into()),
            })
            .collect(),
        ambiguous: decided
            .ambiguous
            .iter()
            .map(|a| AmbiguousDecision {
                request: a.request.into(),
                candidate_set: serde_json::to_string(&a.candidate_set).unwrap_or_else(|_| "[]".into()),
                candidates: serde_json::to_string(&a.candidates).unwrap_or_else(|_| "[]".into()),
            })
            .collect(),
        not_found: decided
            .not_found
            .iter()
            .map(|n| NotFoundDecision {
                request: n.request.into(),
                reason: n.reason.to_owned(),
                candidates: serde_json::to_string(&n.candidates).unwrap_or_else(|_| "[]".into()),
            })
            .collect(),
    }
}

/// The frozen result delivery of a request entering `status`.
pub(crate) fn result_delivery(
    r: &ConciliationRow,
    status: &str,
    movement: Option<&EligibleMovement>,
    extra: &ExactObject,
    occurred_at: reconbanker_store::Timestamp,
) -> Option<NewDelivery> {
    let id = DeliveryId::new();
    let body = ResultBody {
        external_id: &r.external_id,
        status,
        amount: amount_number(&r.amount)?,
        currency: &r.currency,
        name: &r.sender_name,
        request_id: r.id.to_string(),
        occurred_at: ts(occurred_at),
        movement: match movement {
            Some(m) => Some(MovementBody {
                id: m.id.to_string(),
                amount: amount_number(&m.amount)?,
                currency: &m.currency,
                name: m.name.as_deref(),
                received_at: m
                    .received_at_ms
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .map(ts)
                    .unwrap_or_else(|| m.received_at.clone()),
            }),
            None => None,
        },
        extra,
    };
    Some(NewDelivery {
        id,
        event_type: status.to_owned(),
        payload: results::to_json(&body),
        request_id: None,
        next_attempt_at: occurred_at,
        channel: CHANNEL_RESULT.into(),
        subject_id: Some(r.id.0),
    })
}

fn req<'a>(r: &'a ConciliationRow, rejected: &HashMap<Uuid, Vec<Uuid>>) -> Option<Req<'a>> {
    let status = match r.status {
        ConciliationStatus::Pending => ReqStatus::Pending,
        ConciliationStatus::NotFound => ReqStatus::NotFound,
        ConciliationStatus::Ambiguous => ReqStatus::Ambiguous,
        ConciliationStatus::Failed => ReqStatus::Failed,
        _ => return None,
    };
    Some(Req {
        id: r.id.0,
        external_id: Cow::Borrowed(&r.external_id),
        amount: parse_signed_decimal(&r.amount)?,
        currency: Cow::Borrowed(&r.currency),
        sender_name: Cow::Borrowed(&r.sender_name),
        reference: r.reference.as_deref().map(Cow::Borrowed),
        registered_at_ms: r.registered_at.timestamp_millis(),
        expires_at_ms: r.expires_at.timestamp_millis(),
        status,
        last_candidates: r
            .last_candidates
            .as_deref()
            .and_then(|t| serde_json::from_str::<Vec<Uuid>>(t).ok()),
        rejected: rejected.get(&r.id.0).cloned().unwrap_or_default(),
    })
}

/// A movement of the snapshot; `taken`: already matched to a request (explains, never assigned).
fn mov(m: &EligibleMovement, taken: bool) -> Option<Mov> {
    Some(Mov {
        id: m.id.0,
        amount: parse_signed_decimal(m.amount.trim())?,
        currency: m.currency.trim().to_ascii_uppercase(),
        name: m.name.clone(),
        description: m.description.clone(),
        received_at_ms: m.received_at_ms,
        taken,
    })
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use reconbanker_store::{AccountId, ConciliationRequestId, MovementId};

    use super::*;

    fn request(reason: Option<&str>, candidates: Option<&str>) -> ConciliationRow {
        let at = Utc.timestamp_millis_opt(1_800_000_000_000).single().unwrap_or_default();
        ConciliationRow {
            id: ConciliationRequestId::new(),
            account_id: AccountId::new(),
            external_id: "O-\"1\"".into(),
            generation: 2,
            amount: "1500.00".into(),
            currency: "UYU".into(),
            sender_name: "Juan Perez".into(),
            reference: None,
            status: ConciliationStatus::NotFound,
            reason: reason.map(str::to_owned),
            registered_at: at,
            expires_at: at,
            last_seen_at: at,
            absent_since_close: false,
            eval_errors: 0,
            attempt_count: 1,
            last_candidates: candidates.map(str::to_owned),
            closed_at: None,
            updated_at: at,
        }
    }

    /// The event data written from the row is, byte for byte, what the `json!` values it
    /// replaced gave (a map's keys sorted, `null` where the row has none).
    #[test]
    fn pass_data_is_the_json_it_replaced() {
        let m = EligibleMovement {
            id: MovementId::new(),
            amount: "1500.00".into(),
            currency: "UYU".into(),
            name: None,
            description: String::new(),
            received_at: String::new(),
            received_at_ms: None,
        };
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let cands = format!("[\"{a}\",\"{b}\"]");
        for reason in [None, Some("exact_name")] {
            let r = request(reason, Some(&cands));
            let cases = [
                (
                    PassEvent::Matched {
                        request: &r,
                        movement: &m,
                    },
                    json!({
                        "request_id": r.id, "external_id": r.external_id, "movement_id": m.id,
                        "matched_by": "engine", "reason": r.reason,
                    }),
                ),
                (
                    PassEvent::Ambiguous(&r),
                    json!({ "request_id": r.id, "external_id": r.external_id, "candidate_ids": [a, b] }),
                ),
                (
                    PassEvent::NotFound(&r),
                    json!({ "request_id": r.id, "external_id": r.external_id, "reason": r.reason }),
                ),
                (
                    PassEvent::Expired(&r),
                    json!({ "request_id": r.id, "external_id": r.external_id }),
                ),
            ];
            for (e, want) in cases {
                assert_eq!(
                    serde_json::to_string(&pass_data(e)).expect("serializes"),
                    want.to_string(),
                    "{e:?}"
                );
            }
        }
        // Unreadable candidates: an empty list, as before.
        let r = request(None, Some("not json"));
        assert_eq!(
            serde_json::to_string(&pass_data(PassEvent::Ambiguous(&r))).expect("serializes"),
            json!({ "request_id": r.id, "external_id": r.external_id, "candidate_ids": [] }).to_string()
        );
    }
}
