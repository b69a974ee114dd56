//! The expiry sweep (docs/reconciliation.md §5.8): every `RECONBANKER_EXPIRE_SWEEP_SECS` of the
//! app's clock, the accounts of reconciling users that hold an open request past its
//! `expires_at` are marked dirty and the match worker is woken; its pass expires them first
//! (with the `conciliation.expired` event, and the `expired` webhook when the account has
//! `notify_on_expired`), in one transaction under the account's lock. The sweep itself closes
//! nothing, so a pass is still the one writer of a request's decisions.

use std::sync::Arc;
use std::time::Duration;

use reconbanker_store::{AccountId, Store, StoreResult};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::support::clock::Clock;
use crate::support::time::after;

pub struct ExpirySweep {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    every: Duration,
    /// Wakes the match worker when accounts were marked.
    matcher: Arc<Notify>,
    /// Sweeps now (a user switched back to reconcile mode: what expired meanwhile is due).
    wake: Notify,
}

impl ExpirySweep {
    pub(crate) fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, every: Duration, matcher: Arc<Notify>) -> Self {
        Self {
            store,
            clock,
            every,
            matcher,
            wake: Notify::new(),
        }
    }

    /// Sweeps now rather than at the next interval.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// One sweep now: the accounts marked dirty.
    pub async fn sweep(&self) -> StoreResult<Vec<AccountId>> {
        let marked = self.store.mark_overdue_dirty(self.clock.now()).await?;
        if !marked.is_empty() {
            tracing::info!(accounts = marked.len(), "overdue reconciliation requests found");
            self.matcher.notify_one();
        }
        Ok(marked)
    }

    /// Sweeps at boot, then once per interval of the clock or when woken, until `cancel` fires.
    pub(crate) async fn run(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = %e, "could not look for overdue reconciliation requests");
            }
            let next = after(self.clock.now(), self.every);
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.clock.sleep_until(next) => {}
                _ = self.wake.notified() => {}
            }
        }
    }
}
