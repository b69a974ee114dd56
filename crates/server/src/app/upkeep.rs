//! Periodic upkeep: API-key `last_used_at` write-back, rate-limiter sweep, purge of expired
//! token revocations, of events past the retention window and of expired failure evidence.

use std::time::Duration;

use reconbanker_store::now;
use tokio_util::sync::CancellationToken;

use super::AppState;
use crate::support::time::before;

/// How often idle rate-limiter state is swept and expired rows purged.
const SWEEP_INTERVAL: Duration = Duration::from_secs(300);

pub(crate) async fn run(state: AppState, cancel: CancellationToken) {
    let mut flush = tokio::time::interval(state.config.key_usage_flush);
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = flush.tick() => {
                if let Err(e) = state.keys.flush_usage().await {
                    tracing::warn!(error = %e, "could not write back API-key usage");
                }
            }
            _ = sweep.tick() => sweep_once(&state).await,
        }
    }
}

async fn sweep_once(state: &AppState) {
    if let Err(e) = state.limiter.sweep().await {
        tracing::warn!(error = %e, "could not sweep idle rate-limit state");
    }
    if let Err(e) = state.store.purge_revoked_tokens(now()).await {
        tracing::warn!(error = %e, "could not purge expired token revocations");
    }
    // The event log is bounded: streams can resume within the retention window.
    if let Err(e) = state
        .store
        .purge_events(before(now(), state.config.event_retention))
        .await
    {
        tracing::warn!(error = %e, "could not purge old events");
    }
    // Issue 9: failure evidence is kept 7 days (its rows carry their expiry).
    if let Err(e) = state.store.purge_evidence(now()).await {
        tracing::warn!(error = %e, "could not purge expired failure evidence");
    }
}
