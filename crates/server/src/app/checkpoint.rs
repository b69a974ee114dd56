//! Issue 8 (performance): the loop that copies SQLite's write-ahead log back into the database.
//!
//! SQLite's default is that the commit which takes the log past 1,000 pages does the copy
//! itself, inside the request or pass that committed: a quarter of a second after a
//! 50,000-order poll, tens of milliseconds on an unlucky `/v1` call. The store's connections
//! never checkpoint (`PRAGMA wal_autocheckpoint = 0`); this loop does it a few times a second,
//! passively (it waits on no reader or writer), on its own connection and thread. On PostgreSQL
//! the call does nothing.

use std::sync::Arc;
use std::time::Duration;

use reconbanker_store::Store;
use tokio_util::sync::CancellationToken;

/// How often the log is checkpointed: it holds at most this long of writes.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);

/// Checkpoints every `every` until `cancel`.
pub async fn run(store: Arc<dyn Store>, every: Duration, cancel: CancellationToken) {
    if store.backend() != "sqlite" {
        return;
    }
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = store.checkpoint().await {
                    tracing::warn!(error = %e, "could not checkpoint the database's write-ahead log");
                }
            }
        }
    }
}
