//! The pending-orders poller (docs/reconciliation.md §3): a background loop that, for every account of a
//! user in `reconcile` mode with a `pending_orders_endpoint`, fetches the list when it is due
//! (every `RECONBANKER_ORDERS_POLL_INTERVAL_SECS`, sooner after `POST /conciliation/poll/:id`,
//! backing off after failures) and hands the outcome to the store, which applies it in one
//! transaction under the account's lock. One instance polls an account at a time (the poll
//! lease), and a response older than the last one applied changes nothing (the sequence guard).

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use reconbanker_store::{
    AccountId, ConciliationEvent, ConciliationRequestId, ConciliationRow, Deciding, PassEvent, PassInput, PollOrder,
    PollPass, PollReport, PollRow, PollSuccess, Store, StoreResult, Timestamp,
};
use serde::Serialize;
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::fetch::{self, Limits, Target};
use super::{matcher, orders};
use crate::domain::account_config;
use crate::push::events::{EventHub, EventKind, Subscription};
use crate::support::clock::Clock;
use crate::support::crypto::Sealer;
use crate::support::metrics::{Metrics, WorkOutcome};
use crate::support::time::{after, before, ts};
use crate::support::worker::drain;

/// Accounts polled at once by one instance.
const CONCURRENCY: usize = 4;
/// How often the loop looks for due polls when nothing wakes it.
const SCAN: Duration = Duration::from_secs(5);
/// A lease outlives the exchange it covers.
const LEASE_MARGIN: Duration = Duration::from_secs(30);
/// The first retry after a failure; doubled per failure, capped at the interval.
const FIRST_RETRY: Duration = Duration::from_secs(30);

pub(crate) struct PollerSettings {
    pub interval: Duration,
    pub limits: Limits,
    pub allow_private: bool,
}

pub struct Poller {
    store: Arc<dyn Store>,
    hub: Arc<EventHub>,
    sealer: Sealer,
    client: reqwest::Client,
    settings: PollerSettings,
    owner: String,
    wake: Notify,
    /// Wakes the match worker when a poll changed requests.
    matcher: Arc<Notify>,
    /// Due times, registrations and expiry deadlines: the app's clock, so tests drive them.
    clock: Arc<dyn Clock>,
    /// Issue 11: counts and times the polls.
    metrics: Metrics,
}

/// The retry delay after `failures` consecutive failures (pure, jitter given):
/// `min(interval, 30 s × 2^(failures−1))` ± 10 %.
pub(crate) fn retry_delay(interval: Duration, failures: i64, jitter: f64) -> Duration {
    let exp = u32::try_from(failures.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    let base = FIRST_RETRY.saturating_mul(1u32 << exp).min(interval);
    Duration::try_from_secs_f64(base.as_secs_f64() * jitter.clamp(0.9, 1.1)).unwrap_or(interval)
}

impl Poller {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        hub: Arc<EventHub>,
        sealer: Sealer,
        settings: PollerSettings,
        owner: String,
        matcher: Arc<Notify>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, reqwest::Error> {
        let client = crate::support::outbound::client(settings.limits.timeout, settings.allow_private)?;
        Ok(Self {
            store,
            hub,
            sealer,
            client,
            settings,
            owner,
            wake: Notify::new(),
            matcher,
            clock,
            metrics: Metrics::off(),
        })
    }

    /// Issue 11: records each poll's outcome and duration in `metrics`.
    pub(crate) fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Looks for due polls now.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
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
                    me.store
                        .due_polls(me.clock.now(), room as i64)
                        .await
                        .unwrap_or_else(|e| {
                            tracing::warn!(error = %e, "could not look for due pending-orders polls");
                            Vec::new()
                        })
                }
            },
            |account| {
                let me = me.clone();
                async move {
                    if let Err(e) = me.poll(account).await {
                        tracing::warn!(error = %e, account = %account, "pending-orders poll failed to run");
                    }
                }
            },
        )
        .await;
    }

    /// Polls one account now (if it is configured for it and nobody else is polling it).
    /// `None` when nothing was polled.
    pub async fn poll(&self, account: AccountId) -> StoreResult<Option<PollRow>> {
        self.poll_with(account, true).await
    }

    /// [`Poller::poll`]; with `first_pass` off, the poll never runs the match pass in its own
    /// transaction (the match worker does it): the baseline of `reconcile_bench`'s scenario c.
    pub async fn poll_with(&self, account: AccountId, first_pass: bool) -> StoreResult<Option<PollRow>> {
        let Some(acc) = self.store.engine_account(account).await? else {
            return Ok(None);
        };
        let (settings, secrets) = match account_config::decode(acc.config.as_ref(), &self.sealer) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, account = %account, "account config unreadable; not polling");
                self.store
                    .request_poll(account, after(self.clock.now(), self.settings.interval))
                    .await?;
                return Ok(None);
            }
        };
        let Some(url) = settings.pending_orders_endpoint.clone() else {
            // Nothing to poll: look again after an interval (a config change asks sooner).
            self.store
                .request_poll(account, after(self.clock.now(), self.settings.interval))
                .await?;
            return Ok(None);
        };
        let started = self.clock.now();
        let lease_until = after(started, self.settings.limits.timeout + LEASE_MARGIN);
        let Some(seq) = self
            .store
            .begin_poll(account, &self.owner, started, lease_until)
            .await?
        else {
            return Ok(None);
        };
        // Issue 11: the poll's wall time (not the app clock tests drive), lease to apply.
        let timer = std::time::Instant::now();
        let target = Target {
            url: &url,
            method: settings.polling_method,
            body: settings.polling_body.as_ref(),
            auth: secrets.auth_token.as_deref().map(|t| (settings.auth_type, t)),
        };
        let fetched = fetch::fetch(&self.client, &target, self.settings.limits, self.settings.allow_private).await;
        let report = match fetched {
            Ok(f) => {
                let valid = orders::validate(&f.items);
                PollReport {
                    started_at: started,
                    finished_at: self.clock.now(),
                    error: None,
                    http_status: f.http_status.map(i64::from),
                    bytes: f.bytes as i64,
                    pages: i64::from(f.pages),
                    issues: serde_json::to_string(&valid.issues).unwrap_or_else(|_| "[]".into()),
                    result: Some(PollSuccess {
                        orders: valid
                            .orders
                            .into_iter()
                            .map(|o| PollOrder {
                                external_id: o.external_id,
                                amount: o.amount_text,
                                currency: o.currency,
                                sender_name: o.name,
                                reference: o.reference,
                            })
                            .collect(),
                        also_present: valid.also_present,
                        invalid: valid.invalid as i64,
                    }),
                }
            }
            Err(failure) => PollReport {
                started_at: started,
                finished_at: self.clock.now(),
                error: Some(failure.code.to_owned()),
                http_status: failure.http_status.map(i64::from),
                bytes: failure.bytes as i64,
                pages: i64::from(failure.pages),
                issues: "[]".into(),
                result: None,
            },
        };
        let sub = Subscription {
            endpoint: settings.notification_endpoint_url.clone(),
            events: settings.notification_events.clone(),
        };
        let (user, hub) = (acc.account.user_id, &self.hub);
        let build = |e: ConciliationEvent<'_>| {
            let request = |kind, r| hub.build(kind, user, account, request_data(r), &sub, None);
            match e {
                ConciliationEvent::Registered(r) => request(EventKind::ConciliationRegistered, r),
                ConciliationEvent::Reopened(r) => request(EventKind::ConciliationReopened, r),
                ConciliationEvent::Updated(r) => request(EventKind::ConciliationUpdated, r),
                ConciliationEvent::Cancelled(r) => request(EventKind::ConciliationCancelled, r),
                ConciliationEvent::PollFailed { error, failures } => hub.build(
                    EventKind::PollFailed,
                    user,
                    account,
                    json!({ "error": error, "failures": failures }),
                    &sub,
                    None,
                ),
                ConciliationEvent::PollRecovered => {
                    hub.build(EventKind::PollRecovered, user, account, json!({}), &sub, None)
                }
            }
        };
        let interval = self.settings.interval;
        let clock = self.clock.clone();
        let next_poll = move |failures: i64| -> Timestamp {
            let wait = if failures == 0 {
                interval
            } else {
                retry_delay(interval, failures, rand::thread_rng().gen_range(0.9..1.1))
            };
            after(clock.now(), wait)
        };
        let expires_ms = super::matching::EXPIRY_MS;
        let now = self.clock.now();
        // The match pass runs in the poll's transaction when the poll changes the requests: the
        // orders registered are written once, as decided (docs/reconciliation.md "Performance").
        // The decisions are CPU work alone (a few hundred milliseconds for 50,000 new orders):
        // made on a blocking thread, they keep an async worker free and run while the store
        // writes what does not depend on them.
        let decide = move |input: PassInput| -> Deciding {
            let deciding = tokio::task::spawn_blocking(move || {
                let commit = matcher::decide(&input, now, "poll");
                (input, commit)
            });
            Box::pin(async move {
                deciding
                    .await
                    .map_err(|e| tracing::error!(error = %e, account = %account, "the poll's match pass decisions were lost"))
                    .ok()
            })
        };
        let pass_events = |e: PassEvent<'_>| matcher::pass_events(hub, user, account, &settings, e);
        let pass = PollPass {
            horizon: before(now, matcher::HORIZON),
            decide: &decide,
            events: &pass_events,
        };
        let mut with_pass = first_pass;
        let finished = loop {
            let finished = self
                .store
                .finish_poll(
                    account,
                    &self.owner,
                    seq,
                    &report,
                    now,
                    expires_ms,
                    &next_poll,
                    &build,
                    with_pass.then_some(&pass),
                )
                .await;
            match finished {
                // The pass's own failures are the match worker's to count (`failed`, §2): the
                // poll is applied without it (nothing of the attempt was kept), and the worker
                // runs the pass.
                Err(e) if with_pass => {
                    tracing::warn!(error = %e, account = %account, "the poll's match pass failed; applying the poll alone");
                    with_pass = false;
                }
                finished => break finished,
            }
        };
        let outcome = match &finished {
            Ok((row, _)) if row.error.is_none() => WorkOutcome::Done,
            Ok(_) => WorkOutcome::Failed,
            Err(_) => WorkOutcome::Error,
        };
        self.metrics.order_poll(outcome, timer.elapsed());
        let (row, logged) = finished?;
        let changed = row.counts.registered + row.counts.updated + row.counts.cancelled + row.counts.reopened > 0;
        self.hub.publish(logged);
        if changed {
            self.matcher.notify_one();
        }
        tracing::info!(account = %account, seq, outcome = %row.outcome, error = ?row.error, "pending-orders poll");
        Ok(Some(row))
    }
}

/// The data of a request's event (`conciliation.registered`, `…reopened`, `…updated`,
/// `…cancelled`), written straight from the row: a poll builds tens of thousands. The fields are
/// in the order a JSON map sorts them, so the text is the one a `json!` value gave.
#[derive(Serialize)]
struct RequestData<'a> {
    amount: &'a str,
    currency: &'a str,
    expires_at: String,
    external_id: &'a str,
    generation: i64,
    request_id: ConciliationRequestId,
    status: &'static str,
}

fn request_data(r: &ConciliationRow) -> RequestData<'_> {
    RequestData {
        amount: &r.amount,
        currency: &r.currency,
        expires_at: ts(r.expires_at),
        external_id: &r.external_id,
        generation: r.generation,
        request_id: r.id,
        status: r.status.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request's event data, written from the row, is byte for byte what the `json!` value it
    /// replaced gave.
    #[test]
    fn request_data_is_the_json_it_replaced() {
        use chrono::TimeZone;
        use reconbanker_store::ConciliationStatus;
        let at = chrono::Utc
            .timestamp_millis_opt(1_800_000_123_456)
            .single()
            .unwrap_or_default();
        let r = ConciliationRow {
            id: ConciliationRequestId::new(),
            account_id: AccountId::new(),
            external_id: "O-\\1 \"é\"".into(),
            generation: 3,
            amount: "1500.25".into(),
            currency: "USD".into(),
            sender_name: "Juan".into(),
            reference: None,
            status: ConciliationStatus::Cancelled,
            reason: None,
            registered_at: at,
            expires_at: at,
            last_seen_at: at,
            absent_since_close: false,
            eval_errors: 0,
            attempt_count: 0,
            last_candidates: None,
            closed_at: None,
            updated_at: at,
        };
        let want = json!({
            "request_id": r.id,
            "external_id": r.external_id,
            "generation": r.generation,
            "status": r.status.as_str(),
            "amount": r.amount,
            "currency": r.currency,
            "expires_at": ts(r.expires_at),
        });
        assert_eq!(
            serde_json::to_string(&request_data(&r)).expect("serializes"),
            want.to_string()
        );
    }

    #[test]
    fn retries_back_off_then_settle_at_the_interval() {
        let interval = Duration::from_secs(600);
        let at = |f| retry_delay(interval, f, 1.0).as_secs();
        assert_eq!(
            [at(1), at(2), at(3), at(4), at(5), at(6), at(50)],
            [30, 60, 120, 240, 480, 600, 600]
        );
        assert_eq!(retry_delay(interval, 1, 0.9), Duration::from_secs(27));
        assert_eq!(retry_delay(interval, 1, 1.1), Duration::from_secs(33));
        assert_eq!(
            retry_delay(interval, 1, 5.0),
            Duration::from_secs(33),
            "jitter is clamped to ±10 %"
        );
        assert_eq!(retry_delay(Duration::from_secs(10), 1, 1.0), Duration::from_secs(10));
    }
}
