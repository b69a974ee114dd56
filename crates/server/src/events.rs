//! The in-process event bus (SPEC §6 events). A trait, so a PostgreSQL-backed bus can replace
//! it; subscribers (realtime, `/v1` events, the notification outbox) each get every event.

use std::sync::Arc;

use reconbanker_store::{now, AccountId, Timestamp, UserId};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;
use uuid::Uuid;

/// One event. `kind` is one of the SPEC §6 names (`assistance.requested`, `login.failed`, …).
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub id: Uuid,
    pub kind: &'static str,
    pub user_id: UserId,
    pub account_id: AccountId,
    pub data: Value,
    pub occurred_at: Timestamp,
}

impl Event {
    pub fn new(kind: &'static str, user_id: UserId, account_id: AccountId, data: Value) -> Self {
        Self {
            id: Uuid::now_v7(),
            kind,
            user_id,
            account_id,
            data,
            occurred_at: now(),
        }
    }
}

pub trait EventBus: Send + Sync + 'static {
    fn publish(&self, event: Event);
    /// A receiver of every event published from now on. A receiver that falls more than the
    /// channel's capacity behind loses the oldest events (and is told so by `Lagged`).
    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>>;
}

/// In-process bus over a tokio broadcast channel.
pub struct LocalBus {
    tx: broadcast::Sender<Arc<Event>>,
}

/// Events buffered per subscriber before the slowest one starts losing the oldest.
const CAPACITY: usize = 4096;

impl Default for LocalBus {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl EventBus for LocalBus {
    fn publish(&self, event: Event) {
        tracing::debug!(kind = event.kind, account = %event.account_id, "event");
        // No subscriber is not an error.
        let _ = self.tx.send(Arc::new(event));
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}
