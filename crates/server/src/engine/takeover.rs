//! Issue 11 (scale-out): taking over the sessions of an instance that died.
//!
//! A session's lease is renewed every third of its length while the session lives and released
//! when it ends, so a lease that *expired* without being released belongs to an instance that
//! stopped (killed, crashed, or cut off from the database — which then stops its own session
//! when its renewal fails). Every [`SWEEPS_PER_LEASE`]th of the lease length, each instance
//! looks for such leases. For each, it first takes the lease (a compare-and-set: one instance
//! wins, and a live new owner's lease is never taken), then cancels the dead owner's pending
//! request with reason [`OWNER_LOST`] (announced like every cancellation, in the same
//! transaction), closes its open run, gives the lease back and asks its scheduler to start the
//! account now — the session then takes the lease again (or another instance's scheduler does).

use std::sync::Arc;
use std::time::Duration;

use reconbanker_store::{now, StoreResult};
use serde_json::json;

use super::Inner;
use crate::push::events::EventKind;
use crate::support::time::after;

/// The reason a dead instance's pending request and open run are closed with.
pub(crate) const OWNER_LOST: &str = "owner_lost";

/// How many times per lease length the sweep runs (a dead owner's account is taken over at most
/// a lease length plus this fraction of it after its last renewal).
const SWEEPS_PER_LEASE: u32 = 10;

impl Inner {
    /// Sweeps for expired leases until shutdown.
    pub(super) async fn take_over_loop(self: Arc<Self>) {
        let every = (self.cfg.lease_ttl / SWEEPS_PER_LEASE).max(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            match self.take_over_expired().await {
                Ok(0) => {}
                Ok(_) => self.wake.notify_one(),
                Err(e) => tracing::warn!(error = %e, "could not look for sessions to take over"),
            }
        }
    }

    /// One sweep; returns how many accounts were taken over.
    async fn take_over_expired(self: &Arc<Self>) -> StoreResult<usize> {
        let at = now();
        let mut taken = 0;
        for lease in self.deps.store.expired_session_leases(at).await? {
            let account = lease.account_id;
            let mine_live = lease.owner == self.deps.owner
                && self
                    .live
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains_key(&account);
            if mine_live {
                // This process's own session, renewing late: it renews or stops by itself.
                continue;
            }
            let store = &self.deps.store;
            if !store
                .acquire_lease(account, &self.deps.owner, after(at, self.cfg.lease_ttl), at)
                .await?
            {
                continue; // another instance took it first
            }
            tracing::info!(account = %account, previous = %lease.owner,
                "taking over the session of an instance that stopped renewing its lease");
            if let Some(acc) = store.engine_account(account).await? {
                self.deps
                    .assistance
                    .cancel_for_account(account, acc.account.user_id, OWNER_LOST)
                    .await?;
                if store.close_account_open_runs(account, OWNER_LOST, now()).await? > 0 {
                    self.publish(EventKind::SessionStopped, &acc, json!({ "reason": OWNER_LOST }))
                        .await;
                }
                self.taken_over
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(account);
                taken += 1;
            }
            store.release_lease(account, &self.deps.owner).await?;
        }
        Ok(taken)
    }
}
