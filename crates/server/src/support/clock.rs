//! Time for deadlines that tests must drive without waiting (the assistance timeout): the
//! system clock in production, a manual clock in tests.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use reconbanker_store::{now, Timestamp};
use tokio::sync::watch;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
    /// Resolves once the clock reaches `at`.
    fn sleep_until(&self, at: Timestamp) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

#[derive(Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        now()
    }

    fn sleep_until(&self, at: Timestamp) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let wait = (at - now()).to_std().unwrap_or_default();
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that only moves when told to (tests).
#[derive(Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<Timestamp>>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self {
            now: Arc::new(watch::channel(now()).0),
        }
    }
}

impl ManualClock {
    pub fn advance(&self, by: std::time::Duration) {
        self.now.send_modify(|t| *t = super::time::after(*t, by));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.borrow()
    }

    fn sleep_until(&self, at: Timestamp) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|t| *t >= at).await;
        })
    }
}
