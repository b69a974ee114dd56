//! The assistance broker: routes a submitted code to the login waiting for that assistance
//! request. A waiting login registers for a request id and awaits the code with a deadline —
//! a suspended future holding one oneshot receiver, no thread, no polling.
//!
//! Each registration receives at most one code. After a wrong code the login registers again
//! for the same request; a code that arrives while the previous one is still being checked
//! finds nobody waiting ([`DeliverError::NoWaiter`]). Codes are keyed by request id, so a code
//! meant for an older request can never reach a newer one.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use reconbanker_store::AssistanceRequestId;
use tokio::sync::oneshot;
use tokio::time::Instant;

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
    #[error("no login is waiting for a code for this request right now")]
    NoWaiter,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    #[error("no code arrived before the deadline")]
    TimedOut,
    #[error("the wait was withdrawn")]
    Withdrawn,
}

pub trait AssistanceBroker: Send + Sync + 'static {
    /// Registers the caller as the login waiting for `request`. A newer registration for the
    /// same request replaces an older one (whose wait ends as `Withdrawn`).
    fn register(&self, request: AssistanceRequestId) -> CodeWaiter;
    /// Hands `code` to the login waiting for `request`.
    fn deliver(&self, request: AssistanceRequestId, code: OtpCode) -> Result<(), DeliverError>;
    /// Ends the wait for `request` (its waiter sees `Withdrawn`).
    fn withdraw(&self, request: AssistanceRequestId);
    /// Whether some login currently waits for `request`.
    fn is_waiting(&self, request: AssistanceRequestId) -> bool;
}

struct Slot {
    generation: u64,
    tx: oneshot::Sender<OtpCode>,
}

#[derive(Default)]
struct Inner {
    slots: Mutex<HashMap<AssistanceRequestId, Slot>>,
    generation: AtomicU64,
}

/// In-process broker.
#[derive(Clone, Default)]
pub struct LocalBroker {
    inner: Arc<Inner>,
}

/// One registration: await it once. Dropping it unregisters.
pub struct CodeWaiter {
    request: AssistanceRequestId,
    generation: u64,
    rx: oneshot::Receiver<OtpCode>,
    inner: Arc<Inner>,
}

impl CodeWaiter {
    pub fn request(&self) -> AssistanceRequestId {
        self.request
    }

    /// Waits for a code with no deadline of its own (the caller races it against its clock).
    pub async fn recv(mut self) -> Result<OtpCode, WaitError> {
        (&mut self.rx).await.map_err(|_| WaitError::Withdrawn)
    }

    /// Waits for a code until `deadline`.
    pub async fn recv_until(mut self, deadline: Instant) -> Result<OtpCode, WaitError> {
        match tokio::time::timeout_at(deadline, &mut self.rx).await {
            Ok(Ok(code)) => Ok(code),
            Ok(Err(_)) => Err(WaitError::Withdrawn),
            Err(_) => Err(WaitError::TimedOut),
        }
    }
}

impl Drop for CodeWaiter {
    fn drop(&mut self) {
        let mut slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots
            .get(&self.request)
            .is_some_and(|s| s.generation == self.generation)
        {
            slots.remove(&self.request);
        }
    }
}

impl AssistanceBroker for LocalBroker {
    fn register(&self, request: AssistanceRequestId) -> CodeWaiter {
        let (tx, rx) = oneshot::channel();
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed);
        self.inner
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(request, Slot { generation, tx });
        CodeWaiter {
            request,
            generation,
            rx,
            inner: self.inner.clone(),
        }
    }

    fn deliver(&self, request: AssistanceRequestId, code: OtpCode) -> Result<(), DeliverError> {
        let slot = self
            .inner
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&request);
        match slot {
            Some(slot) => slot.tx.send(code).map_err(|_| DeliverError::NoWaiter),
            None => Err(DeliverError::NoWaiter),
        }
    }

    fn withdraw(&self, request: AssistanceRequestId) {
        self.inner
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&request);
    }

    fn is_waiting(&self, request: AssistanceRequestId) -> bool {
        self.inner
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&request)
            .is_some_and(|s| !s.tx.is_closed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_code_reaches_the_waiter_once() {
        let b = LocalBroker::default();
        let req = AssistanceRequestId::new();
        let w = b.register(req);
        assert!(b.is_waiting(req));
        b.deliver(req, OtpCode::new("123456".into())).expect("delivered");
        assert_eq!(
            b.deliver(req, OtpCode::new("1".into())),
            Err(DeliverError::NoWaiter),
            "one code per registration"
        );
        let got = w
            .recv_until(Instant::now() + Duration::from_secs(1))
            .await
            .expect("code");
        assert_eq!(got.expose(), "123456");
        assert_eq!(format!("{got:?}"), "OtpCode(<redacted>)");
    }

    #[tokio::test]
    async fn codes_never_cross_requests() {
        let b = LocalBroker::default();
        let (old, new) = (AssistanceRequestId::new(), AssistanceRequestId::new());
        let w = b.register(new);
        assert_eq!(b.deliver(old, OtpCode::new("1".into())), Err(DeliverError::NoWaiter));
        assert!(b.is_waiting(new));
        drop(w);
        assert!(!b.is_waiting(new), "dropping the waiter unregisters");
        assert_eq!(b.deliver(new, OtpCode::new("1".into())), Err(DeliverError::NoWaiter));
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_and_withdraw() {
        let b = LocalBroker::default();
        let req = AssistanceRequestId::new();
        let w = b.register(req);
        let r = w.recv_until(Instant::now() + Duration::from_secs(300)).await;
        assert_eq!(r, Err(WaitError::TimedOut));
        let w = b.register(req);
        b.withdraw(req);
        assert_eq!(
            w.recv_until(Instant::now() + Duration::from_secs(300)).await,
            Err(WaitError::Withdrawn)
        );
        let first = b.register(req);
        let _second = b.register(req);
        assert_eq!(
            first.recv_until(Instant::now() + Duration::from_secs(1)).await,
            Err(WaitError::Withdrawn)
        );
        assert!(b.is_waiting(req), "the newer registration stays");
    }
}
