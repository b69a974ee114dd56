//! Assistance requests: opening a prompt for a code, routing a submitted code to the waiting
//! login (through the broker), counting wrong codes, closing requests. The one place that
//! changes assistance state, so it also keeps the per-account cache of what is pending that
//! `/v1/.../status` reads without a database round trip.

pub mod broker;
// Issue 11 (scale-out): the broker across instances.
pub mod pg_broker;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use reconbanker_store::{
    now, AccountId, AssistanceRequestId, AssistanceRow, AssistanceStatus, CodeKind, Constraint, Descriptor, EventRow,
    NewEvent, Store, StoreError, StoreResult, UserId,
};
use serde_json::json;

use crate::assistance::broker::{AssistanceBroker, BrokerError, CodeWait, DeliverError, OtpCode};
use crate::auth::key_cache::AccountDirectory;
use crate::push::events::{EventHub, EventKind, Subscription};
use crate::support::clock::Clock;
use crate::support::metrics::{Metrics, OtpOutcome};
use crate::support::ratelimit::{Bucket, Decision, LimiterError, RateLimiter};
use crate::support::time::after;

/// Codes are 1 to 32 characters after trimming (docs/product.md §7).
pub const MAX_CODE_CHARS: usize = 32;

/// What is pending for an account, as `/v1` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingView {
    pub id: AssistanceRequestId,
    pub kind: String,
    pub descriptor: Descriptor,
    pub attempts: i32,
}

impl From<&AssistanceRow> for PendingView {
    fn from(r: &AssistanceRow) -> Self {
        Self {
            id: r.id,
            kind: r.kind.clone(),
            descriptor: r.descriptor.clone(),
            attempts: r.attempts,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("{field} {message}")]
    Invalid { field: &'static str, message: String },
    #[error("rate limited")]
    RateLimited(Decision),
    #[error("no assistance request is pending for this account")]
    NoPending,
    #[error("the request named is not the pending one")]
    Stale { pending: AssistanceRequestId },
    #[error("a code for this request is already being checked by the bank")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Limiter(#[from] LimiterError),
    /// The broker could not be reached; the code was not delivered.
    #[error("assistance broker unavailable: {0}")]
    Broker(String),
}

#[derive(Debug)]
pub struct Submitted {
    pub request_id: AssistanceRequestId,
    pub rate: Decision,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the account already has a pending assistance request")]
    AlreadyPending,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

pub struct Assistance {
    store: Arc<dyn Store>,
    owners: Arc<AccountDirectory>,
    broker: Arc<dyn AssistanceBroker>,
    limiter: Arc<dyn RateLimiter>,
    hub: Arc<EventHub>,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    /// account → what is pending (`None` = known: nothing). Missing = not loaded yet.
    cache: RwLock<HashMap<AccountId, Option<Arc<PendingView>>>>,
    otp_limit: u32,
    otp_window: Duration,
    timeout: Duration,
}

/// Checks a trimmed code against the bank's descriptor (spares a bank attempt on a code that
/// cannot be right).
pub fn check_code(descriptor: &Descriptor, code: &str) -> Result<(), String> {
    let len = code.chars().count();
    let (ok_chars, what) = match descriptor.kind {
        CodeKind::Numeric => (code.bytes().all(|b| b.is_ascii_digit()), "digits"),
        CodeKind::Alphanumeric => (code.bytes().all(|b| b.is_ascii_alphanumeric()), "letters or digits"),
    };
    if !ok_chars || len != descriptor.length as usize {
        return Err(format!("must be exactly {} {what}", descriptor.length));
    }
    Ok(())
}

/// The services the assistance service works with.
pub struct AssistanceDeps {
    pub store: Arc<dyn Store>,
    /// Who owns which account (`/v1`'s authorization): a request raised teaches it the
    /// account's owner, so the code that answers it is authorized without a database read.
    pub owners: Arc<AccountDirectory>,
    pub broker: Arc<dyn AssistanceBroker>,
    pub limiter: Arc<dyn RateLimiter>,
    pub hub: Arc<EventHub>,
    pub clock: Arc<dyn Clock>,
    /// Issue 11: counts the submitted codes by outcome.
    pub metrics: Metrics,
}

impl Assistance {
    pub fn new(deps: AssistanceDeps, otp_limit: u32, otp_window: Duration, timeout: Duration) -> Self {
        let AssistanceDeps {
            store,
            owners,
            broker,
            limiter,
            hub,
            clock,
            metrics,
        } = deps;
        Self {
            store,
            owners,
            broker,
            limiter,
            hub,
            clock,
            metrics,
            cache: RwLock::new(HashMap::new()),
            otp_limit,
            otp_window,
            timeout,
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The event announcing a request (first time and after each rejected code).
    fn requested_event(&self, user: UserId, r: &AssistanceRow, sub: &Subscription) -> NewEvent {
        let data = json!({ "requestId": r.id, "descriptor": r.descriptor, "attempts": r.attempts });
        self.hub.build(
            EventKind::AssistanceRequested,
            user,
            r.account_id,
            data,
            sub,
            Some(r.id),
        )
    }

    /// The event of a closed request.
    fn closed_event(&self, user: UserId, r: &AssistanceRow, sub: &Subscription) -> NewEvent {
        let (kind, data) = match r.status {
            AssistanceStatus::Fulfilled => (EventKind::AssistanceFulfilled, json!({ "requestId": r.id })),
            AssistanceStatus::Expired => (EventKind::AssistanceExpired, json!({ "requestId": r.id })),
            _ => (
                EventKind::AssistanceCancelled,
                json!({ "requestId": r.id, "reason": r.reason }),
            ),
        };
        self.hub.build(kind, user, r.account_id, data, sub, Some(r.id))
    }

    /// What is pending for the account (from memory once loaded).
    pub async fn pending(&self, account: AccountId) -> StoreResult<Option<Arc<PendingView>>> {
        if let Some(entry) = self.cache.read().unwrap_or_else(|p| p.into_inner()).get(&account) {
            return Ok(entry.clone());
        }
        let loaded = self
            .store
            .pending_assistance(account)
            .await?
            .map(|r| Arc::new(PendingView::from(&r)));
        // `or_insert`: a concurrent open/close that already wrote the entry is newer than our read.
        Ok(self
            .cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(account)
            .or_insert(loaded)
            .clone())
    }

    /// Shows a request that was pending when written, then announces it (`logged`). A `close`
    /// that commits between that write and this call has already cleared the entry; re-reading
    /// the row after installing it catches that case, so a closed request is never shown as
    /// pending. The announcement goes out before that read: the cache already shows the
    /// request, and its prompt (webhook, streams) need not wait for a round trip.
    async fn install(&self, row: &AssistanceRow, logged: Vec<EventRow>) -> StoreResult<()> {
        self.set_cached(row.account_id, Some(Arc::new(PendingView::from(row))));
        self.hub.publish(logged);
        let still = self.store.assistance_by_id(row.id).await?;
        if still.as_ref().is_none_or(|r| r.status != AssistanceStatus::Pending) {
            let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
            if cache
                .get(&row.account_id)
                .is_some_and(|e| e.as_ref().is_some_and(|p| p.id == row.id))
            {
                cache.insert(row.account_id, None);
            }
        }
        Ok(())
    }

    fn set_cached(&self, account: AccountId, view: Option<Arc<PendingView>>) {
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(account, view);
    }

    /// Opens a request for a login that needs a code and announces it (logged, and queued for
    /// the webhook, in the same transaction). The login is registered as the waiter *before*
    /// the request becomes visible, so a code never finds nobody waiting.
    pub async fn open(
        &self,
        account: AccountId,
        user: UserId,
        descriptor: Descriptor,
    ) -> Result<(AssistanceRow, Box<dyn CodeWait>), OpenError> {
        let at = self.clock.now();
        let row = AssistanceRow {
            id: AssistanceRequestId::new(),
            account_id: account,
            kind: "otp".into(),
            descriptor,
            attempts: 0,
            status: AssistanceStatus::Pending,
            reason: None,
            created_at: at,
            updated_at: at,
            expires_at: after(at, self.timeout),
            closed_at: None,
        };
        let waiter = self.broker.register(row.id).await?;
        let sub = self.hub.subscription(account).await?;
        let event = self.requested_event(user, &row, &sub);
        let seen = self.owners.generation();
        let logged = match self.store.create_assistance(&row, &[event]).await {
            Ok(logged) => logged,
            Err(e) => {
                // Issue 11: the request never existed; a broker that remembers which requests
                // it holds forgets this one.
                let _ = self.broker.withdraw(row.id).await;
                if e.is_conflict_on(Constraint::AssistancePendingPerAccount) {
                    return Err(OpenError::AlreadyPending);
                }
                return Err(e.into());
            }
        };
        // The request exists, so the account does, and it is `user`'s.
        self.owners.learn(user, account, seen);
        self.install(&row, logged).await?;
        Ok((row, waiter))
    }

    /// Waits again for the same request (after a wrong code).
    pub async fn rearm(&self, request: AssistanceRequestId) -> Result<Box<dyn CodeWait>, BrokerError> {
        self.broker.register(request).await
    }

    /// The bank refused a code but allows another try: same request, `attempts` + 1, announced
    /// again.
    pub async fn code_rejected(
        &self,
        request: AssistanceRequestId,
        user: UserId,
    ) -> StoreResult<Option<AssistanceRow>> {
        let Some(current) = self.store.assistance_by_id(request).await? else {
            return Ok(None);
        };
        let sub = self.hub.subscription(current.account_id).await?;
        let build = |r: &AssistanceRow| vec![self.requested_event(user, r, &sub)];
        let Some((row, logged)) = self.store.bump_assistance_attempts(request, now(), &build).await? else {
            return Ok(None);
        };
        self.install(&row, logged).await?;
        Ok(Some(row))
    }

    /// Closes a pending request (fulfilled, cancelled or expired), ends any wait for it and
    /// announces it. `None` when it was no longer pending (closed once, announced once).
    pub async fn close(
        &self,
        request: AssistanceRequestId,
        user: UserId,
        status: AssistanceStatus,
        reason: Option<&str>,
    ) -> StoreResult<Option<AssistanceRow>> {
        let Some(current) = self.store.assistance_by_id(request).await? else {
            return Ok(None);
        };
        let sub = self.hub.subscription(current.account_id).await?;
        let build = |r: &AssistanceRow| vec![self.closed_event(user, r, &sub)];
        let closed = self
            .store
            .close_assistance(request, status, reason, now(), &build)
            .await?;
        // Released after the row is closed: the woken login then finds it closed with *this*
        // status and reason, instead of racing to close it with its own.
        if let Err(e) = self.broker.withdraw(request).await {
            // The login still wakes at its deadline or when its session ends.
            tracing::warn!(error = %e, request = %request, "could not end the wait for a closed request");
        }
        let Some((row, logged)) = closed else { return Ok(None) };
        {
            let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
            let stale = match cache.get(&row.account_id) {
                Some(Some(p)) => p.id == row.id,
                _ => true,
            };
            if stale {
                cache.insert(row.account_id, None);
            }
        }
        self.hub.publish(logged);
        Ok(Some(row))
    }

    /// Cancels whatever is pending for the account (kill, deletion).
    pub async fn cancel_for_account(
        &self,
        account: AccountId,
        user: UserId,
        reason: &str,
    ) -> StoreResult<Option<AssistanceRow>> {
        match self.store.pending_assistance(account).await? {
            Some(p) => self.close(p.id, user, AssistanceStatus::Cancelled, Some(reason)).await,
            None => {
                self.set_cached(account, None);
                Ok(None)
            }
        }
    }

    /// Forgets an account entirely (after deletion).
    pub fn forget(&self, account: AccountId) {
        self.cache.write().unwrap_or_else(|p| p.into_inner()).remove(&account);
    }

    /// At boot no login of a previous process is alive: close what it left pending.
    /// With `beside_others_as` (this instance's id, on a database other live instances may
    /// share: issue 11), only requests of accounts whose session lease no other instance holds.
    pub async fn close_orphans_at_boot(&self, beside_others_as: Option<&str>) -> StoreResult<Vec<AssistanceRow>> {
        let (status, reason) = (AssistanceStatus::Cancelled, "process_restart");
        let closed = match beside_others_as {
            Some(me) => {
                self.store
                    .close_unowned_pending_assistance(me, status, reason, now())
                    .await?
            }
            None => self.store.close_all_pending_assistance(status, reason, now()).await?,
        };
        self.cache.write().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(closed)
    }

    /// A code submitted by the account's owner (from `/v1` or the dashboard), checked in the
    /// order of docs/product.md §7 steps 5–7: shape and descriptor, rate limit, something pending and
    /// the right request; then handed to the waiting login.
    pub async fn submit(
        &self,
        account: AccountId,
        code: &str,
        request_id: Option<&str>,
    ) -> Result<Submitted, SubmitError> {
        let submitted = self.submit_code(account, code, request_id).await;
        // Issue 11: every submission counted by what became of it.
        self.metrics.otp(match &submitted {
            Ok(_) => OtpOutcome::Accepted,
            Err(SubmitError::Invalid { .. }) => OtpOutcome::Invalid,
            Err(SubmitError::RateLimited(_)) => OtpOutcome::RateLimited,
            Err(SubmitError::NoPending) => OtpOutcome::NoPending,
            Err(SubmitError::Stale { .. }) => OtpOutcome::Stale,
            Err(SubmitError::Busy) => OtpOutcome::InFlight,
            Err(SubmitError::Store(_) | SubmitError::Limiter(_) | SubmitError::Broker(_)) => OtpOutcome::Error,
        });
        submitted
    }

    async fn submit_code(
        &self,
        account: AccountId,
        code: &str,
        request_id: Option<&str>,
    ) -> Result<Submitted, SubmitError> {
        let code = code.trim();
        let chars = code.chars().count();
        if chars == 0 || chars > MAX_CODE_CHARS {
            return Err(SubmitError::Invalid {
                field: "code",
                message: format!("must be 1 to {MAX_CODE_CHARS} characters"),
            });
        }
        let mut pending = self.pending(account).await?;
        // Issue 11: a login this process does not hold is another instance's; what this
        // process cached about its request may be stale, so the database says what is pending.
        // (The login held here, or a single instance: no round trip.)
        let fresh = match &pending {
            Some(p) => !self.broker.holds(p.id),
            None => self.broker.spans_instances(),
        };
        if fresh {
            let seen = pending.as_ref().map(|p| p.id);
            pending = self
                .store
                .pending_assistance(account)
                .await?
                .map(|r| Arc::new(PendingView::from(&r)));
            // Unless a local open or close rewrote the entry meanwhile (newer than this read).
            let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
            if cache.get(&account).is_none_or(|e| e.as_ref().map(|p| p.id) == seen) {
                cache.insert(account, pending.clone());
            }
        }
        if let Some(p) = &pending {
            check_code(&p.descriptor, code).map_err(|message| SubmitError::Invalid { field: "code", message })?;
        }
        let rate = self
            .limiter
            .hit_window(Bucket::Otp(account), self.otp_limit, self.otp_window)
            .await?;
        if !rate.allowed {
            return Err(SubmitError::RateLimited(rate));
        }
        let Some(p) = pending else {
            return Err(SubmitError::NoPending);
        };
        if let Some(named) = request_id {
            if named.trim().parse::<AssistanceRequestId>().ok() != Some(p.id) {
                return Err(SubmitError::Stale { pending: p.id });
            }
        }
        match self.broker.deliver(p.id, OtpCode::new(code.to_owned())).await {
            Ok(()) => {}
            Err(DeliverError::NoWaiter) => return Err(SubmitError::Busy),
            // The login is gone with its process: nothing can take this code.
            Err(DeliverError::OwnerGone) => return Err(SubmitError::NoPending),
            Err(DeliverError::Unavailable(e)) => return Err(SubmitError::Broker(e)),
        }
        Ok(Submitted { request_id: p.id, rate })
    }

    /// The current OTP budget of an account (tests check that refusals do not spend it).
    #[cfg(any(test, feature = "test-support"))]
    pub async fn otp_budget(&self, account: AccountId) -> Result<Decision, LimiterError> {
        self.limiter
            .peek_window(Bucket::Otp(account), self.otp_limit, self.otp_window)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(length: u32, kind: CodeKind) -> Descriptor {
        Descriptor {
            length,
            kind,
            purpose: None,
        }
    }

    #[test]
    fn descriptor_checks() {
        assert!(check_code(&d(6, CodeKind::Numeric), "123456").is_ok());
        assert!(check_code(&d(6, CodeKind::Numeric), "12345").is_err());
        assert!(check_code(&d(6, CodeKind::Numeric), "12345a").is_err());
        assert!(
            check_code(&d(6, CodeKind::Numeric), "１２３４５６").is_err(),
            "fullwidth digits are not ASCII digits"
        );
        assert!(check_code(&d(8, CodeKind::Alphanumeric), "AB12CD34").is_ok());
        assert!(check_code(&d(8, CodeKind::Alphanumeric), "AB12-D34").is_err());
        assert!(check_code(&d(8, CodeKind::Alphanumeric), "AB12CD345").is_err());
    }
}
