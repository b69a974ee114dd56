//! The assistance broker: routes a submitted code to the login waiting for that assistance
//! request. A waiting login registers for a request id and awaits the code — a suspended
//! future, no thread, no polling; its deadline is the caller's (the assistance clock).
//!
//! Each registration receives at most one code. After a wrong code the login registers again
//! for the same request; a code that arrives while the previous one is still being checked
//! finds nobody waiting ([`DeliverError::NoWaiter`]). Codes are keyed by request id, so a code
//! meant for an older request can never reach a newer one.
//!
//! The broker is an async trait whose operations can fail, so an implementation that crosses
//! processes (the login held by another instance) fits behind it: such a broker answers
//! [`DeliverError::OwnerGone`] when the instance holding the login is gone, never a silent
//! success. [`LocalBroker`], in process, is the default.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use reconbanker_store::AssistanceRequestId;
use tokio::sync::oneshot;

/// A one-time code. `Debug` never shows it; it is never logged or stored.
#[derive(Clone, PartialEq, Eq)]
pub struct OtpCode(String);

impl OtpCode {
    pub fn new(code: String) -> Self {
        Self(code)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OtpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OtpCode(<redacted>)")
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeliverError {
    /// Nobody waits for this request right now (a code is being checked, or nothing is pending).
    #[error("no login is waiting for a code for this request right now")]
    NoWaiter,
    /// The process holding the login is gone; the request will be cancelled.
    #[error("the login waiting for this request is gone")]
    OwnerGone,
    /// The broker could not be reached.
    #[error("assistance broker unavailable: {0}")]
    Unavailable(String),
}

/// A registration or a withdrawal could not be made.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("assistance broker unavailable: {0}")]
pub struct BrokerError(pub String);

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    #[error("the wait was withdrawn")]
    Withdrawn,
}

#[async_trait]
pub trait AssistanceBroker: Send + Sync + 'static {
    /// Registers the caller as the login waiting for `request`. A newer registration for the
    /// same request replaces an older one (whose wait ends as `Withdrawn`).
    async fn register(&self, request: AssistanceRequestId) -> Result<Box<dyn CodeWait>, BrokerError>;
    /// Hands `code` to the login waiting for `request`. `Ok` means the login has the code.
    async fn deliver(&self, request: AssistanceRequestId, code: OtpCode) -> Result<(), DeliverError>;
    /// Ends the wait for `request` (its waiter sees `Withdrawn`).
    async fn withdraw(&self, request: AssistanceRequestId) -> Result<(), BrokerError>;
    /// Whether some login currently waits for `request` (tests prove absence with it).
    #[cfg(any(test, feature = "test-support"))]
    fn is_waiting(&self, request: AssistanceRequestId) -> bool;
    /// Issue 11: whether the login of `request` (if any) is known to live in this process. An
    /// in-process broker knows no other process, so the answer is always yes: what this
    /// process has cached about the request is the truth.
    fn holds(&self, _request: AssistanceRequestId) -> bool {
        true
    }
    /// Issue 11: whether logins may live in other processes (then what a process has cached
    /// about a request it does not hold may be stale).
    fn spans_instances(&self) -> bool {
        false
    }
}

/// One registration: await it once. Dropping it unregisters.
#[async_trait]
pub trait CodeWait: Send {
    /// Waits for a code with no deadline of its own (the caller races it against its clock and
    /// its cancellation).
    async fn recv(self: Box<Self>) -> Result<OtpCode, WaitError>;
}

struct Slot {
    generation: u64,
    tx: oneshot::Sender<OtpCode>,
}

#[derive(Default)]
struct Slots {
    by_request: Mutex<HashMap<AssistanceRequestId, Slot>>,
    generation: AtomicU64,
}

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AssistanceRequestId, Slot>> {
        self.by_request.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// In-process broker.
#[derive(Default)]
pub struct LocalBroker {
    slots: Arc<Slots>,
}

struct LocalWait {
    request: AssistanceRequestId,
    generation: u64,
    rx: Option<oneshot::Receiver<OtpCode>>,
    slots: Arc<Slots>,
}

#[async_trait]
impl CodeWait for LocalWait {
    async fn recv(mut self: Box<Self>) -> Result<OtpCode, WaitError> {
        match self.rx.take() {
            Some(rx) => rx.await.map_err(|_| WaitError::Withdrawn),
            None => Err(WaitError::Withdrawn),
        }
    }
}

impl Drop for LocalWait {
    fn drop(&mut self) {
        let mut slots = self.slots.lock();
        if slots
            .get(&self.request)
            .is_some_and(|s| s.generation == self.generation)
        {
            slots.remove(&self.request);
        }
    }
}

#[async_trait]
impl AssistanceBroker for LocalBroker {
    async fn register(&self, request: AssistanceRequestId) -> Result<Box<dyn CodeWait>, BrokerError> {
        let (tx, rx) = oneshot::channel();
        let generation = self.slots.generation.fetch_add(1, Ordering::Relaxed);
        self.slots.lock().insert(request, Slot { generation, tx });
        Ok(Box::new(LocalWait {
            request,
            generation,
            rx: Some(rx),
            slots: self.slots.clone(),
        }))
    }

    async fn deliver(&self, request: AssistanceRequestId, code: OtpCode) -> Result<(), DeliverError> {
        let slot = self.slots.lock().remove(&request);
        match slot {
            Some(slot) => slot.tx.send(code).map_err(|_| DeliverError::NoWaiter),
            None => Err(DeliverError::NoWaiter),
        }
    }

    async fn withdraw(&self, request: AssistanceRequestId) -> Result<(), BrokerError> {
        self.slots.lock().remove(&request);
        Ok(())
    }

    #[cfg(any(test, feature = "test-support"))]
    fn is_waiting(&self, request: AssistanceRequestId) -> bool {
        self.slots.lock().get(&request).is_some_and(|s| !s.tx.is_closed())
    }
}

// Issue 11 (scale-out): the cross-instance broker hands a code to a local waiter in two steps.
impl LocalBroker {
    /// Takes the waiter of `request` out of its slot (a code arriving meanwhile finds nobody
    /// waiting), to hand it a code once the code has been fetched; `None` when nobody waits.
    pub(crate) fn claim(&self, request: AssistanceRequestId) -> Option<Claim> {
        let slot = self.slots.lock().remove(&request)?;
        Some(Claim {
            request,
            slot,
            slots: self.slots.clone(),
        })
    }
}

/// A waiter taken out of its slot by [`LocalBroker::claim`].
pub(crate) struct Claim {
    request: AssistanceRequestId,
    slot: Slot,
    slots: Arc<Slots>,
}

impl Claim {
    /// Hands the code to the waiter (`Err` when it stopped waiting meanwhile).
    pub(crate) fn send(self, code: OtpCode) -> Result<(), DeliverError> {
        self.slot.tx.send(code).map_err(|_| DeliverError::NoWaiter)
    }

    /// No code came: the waiter goes back to its slot, unless a newer registration took it.
    pub(crate) fn restore(self) {
        self.slots.lock().entry(self.request).or_insert(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn within(w: Box<dyn CodeWait>, d: Duration) -> Option<Result<OtpCode, WaitError>> {
        tokio::time::timeout(d, w.recv()).await.ok()
    }

    #[tokio::test]
    async fn a_code_reaches_the_waiter_once() {
        let b = LocalBroker::default();
        let req = AssistanceRequestId::new();
        let w = b.register(req).await.expect("register");
        assert!(b.is_waiting(req));
        b.deliver(req, OtpCode::new("123456".into())).await.expect("delivered");
        assert_eq!(
            b.deliver(req, OtpCode::new("1".into())).await,
            Err(DeliverError::NoWaiter),
            "one code per registration"
        );
        let got = within(w, Duration::from_secs(1)).await.expect("in time").expect("code");
        assert_eq!(got.expose(), "123456");
        assert_eq!(format!("{got:?}"), "OtpCode(<redacted>)");
    }

    #[tokio::test]
    async fn codes_never_cross_requests() {
        let b = LocalBroker::default();
        let (old, new) = (AssistanceRequestId::new(), AssistanceRequestId::new());
        let w = b.register(new).await.expect("register");
        assert_eq!(
            b.deliver(old, OtpCode::new("1".into())).await,
            Err(DeliverError::NoWaiter)
        );
        assert!(b.is_waiting(new));
        drop(w);
        assert!(!b.is_waiting(new), "dropping the waiter unregisters");
        assert_eq!(
            b.deliver(new, OtpCode::new("1".into())).await,
            Err(DeliverError::NoWaiter)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_code_means_no_wake_up_and_withdraw_ends_the_wait() {
        let b = LocalBroker::default();
        let req = AssistanceRequestId::new();
        let w = b.register(req).await.expect("register");
        assert!(
            within(w, Duration::from_secs(300)).await.is_none(),
            "nothing arrives by itself"
        );
        let w = b.register(req).await.expect("register");
        b.withdraw(req).await.expect("withdraw");
        assert_eq!(
            within(w, Duration::from_secs(300)).await,
            Some(Err(WaitError::Withdrawn))
        );
        let first = b.register(req).await.expect("register");
        let _second = b.register(req).await.expect("register");
        assert_eq!(
            within(first, Duration::from_secs(1)).await,
            Some(Err(WaitError::Withdrawn))
        );
        assert!(b.is_waiting(req), "the newer registration stays");
    }
}
