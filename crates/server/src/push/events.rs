//! Events (docs/product.md §6). Every event is first written to the event log in the database — in the
//! same transaction as the state change that caused it, together with the notification webhook
//! delivery it causes when the account subscribes (the durable outbox) — and only then
//! published on the in-process bus, carrying its log `seq` (the SSE `id:` for resuming).
//!
//! The bus is a trait, so a PostgreSQL-backed bus (LISTEN/NOTIFY) can replace it.

use std::sync::Arc;

use async_trait::async_trait;
use reconbanker_store::{
    now, AccountId, AssistanceRequestId, DeliveryId, EventRow, NewDelivery, NewEvent, Store, StoreError, StoreResult,
    Timestamp, UserId, CHANNEL_NOTIFICATION,
};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::domain::account_config::{NotificationEvent, Settings};

/// One logged event. `seq` orders the log; `kind` is a docs/product.md §6 name.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub seq: i64,
    pub id: Uuid,
    pub kind: String,
    pub user_id: UserId,
    pub account_id: AccountId,
    /// The logged JSON text, not parsed: most events reach no subscriber, and those that do are
    /// written out as they are.
    pub data: Box<RawValue>,
    pub occurred_at: Timestamp,
}

impl From<EventRow> for Event {
    fn from(r: EventRow) -> Self {
        Self {
            seq: r.seq,
            id: r.id,
            kind: r.kind,
            user_id: r.user_id,
            account_id: r.account_id,
            data: RawValue::from_string(r.data).unwrap_or_else(|_| null()),
            occurred_at: r.occurred_at,
        }
    }
}

fn null() -> Box<RawValue> {
    // `null` is valid JSON.
    RawValue::from_string("null".to_owned()).unwrap_or_else(|_| unreachable!())
}

/// Why a bus operation failed. The event log stays the truth: a failed publish only delays
/// streams until their next read of the log.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
}

/// What a subscriber's `recv` can report besides an event.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// The subscriber fell behind and `missed` announcements were dropped; read the log.
    #[error("lagged behind by {0} events")]
    Lagged(u64),
    /// The bus is gone (shutdown).
    #[error("the bus closed")]
    Closed,
}

/// Announces logged events to the streams and long-polls of this instance ("the log has
/// grown"). The in-process [`LocalBus`] is the default; a deployment of several instances
/// plugs in a bus whose announcements cross processes.
///
/// `publish` only enqueues (a bus that crosses processes hands the announcement to its own
/// connection task), so it is not async: the state changes that announce events — an assisted
/// login opening its request among them — keep no publishing state in their futures, which
/// stay alive, and in memory, as long as a login waits for its code.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    fn publish(&self, event: Event) -> Result<(), BusError>;
    /// A subscription to every event published from now on. A subscriber that falls too far
    /// behind loses the oldest announcements (and is told so by [`RecvError::Lagged`]);
    /// stream consumers then catch up from the log.
    async fn subscribe(&self) -> Result<Box<dyn Subscriber>, BusError>;
    /// How many subscriptions are open now (tests wait on it to know a long-poll is parked).
    #[cfg(any(test, feature = "test-support"))]
    fn receiver_count(&self) -> usize;
}

/// One subscription. `recv` is cancel-safe: dropping its future loses nothing.
#[async_trait]
pub trait Subscriber: Send {
    async fn recv(&mut self) -> Result<Arc<Event>, RecvError>;
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

#[async_trait]
impl EventBus for LocalBus {
    fn publish(&self, event: Event) -> Result<(), BusError> {
        tracing::debug!(kind = %event.kind, account = %event.account_id, seq = event.seq, "event");
        // No subscriber is not an error.
        let _ = self.tx.send(Arc::new(event));
        Ok(())
    }

    async fn subscribe(&self) -> Result<Box<dyn Subscriber>, BusError> {
        Ok(Box::new(LocalSubscriber(self.tx.subscribe())))
    }

    #[cfg(any(test, feature = "test-support"))]
    fn receiver_count(&self) -> usize {
        self.tx.receiver_count()
    }
}

struct LocalSubscriber(broadcast::Receiver<Arc<Event>>);

#[async_trait]
impl Subscriber for LocalSubscriber {
    async fn recv(&mut self) -> Result<Arc<Event>, RecvError> {
        self.0.recv().await.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(n) => RecvError::Lagged(n),
            broadcast::error::RecvError::Closed => RecvError::Closed,
        })
    }
}

/// Every kind of event the service logs (docs/product.md §6). The log stores `as_str()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    AssistanceRequested,
    AssistanceFulfilled,
    AssistanceCancelled,
    AssistanceExpired,
    LoginFailed,
    LoginSucceeded,
    ScrapeFailed,
    ScrapeSucceeded,
    SessionStarted,
    SessionStopped,
    SessionNeedsAttention,
    ConciliationRegistered,
    ConciliationReopened,
    ConciliationUpdated,
    ConciliationMatched,
    ConciliationAmbiguous,
    ConciliationNotFound,
    ConciliationExpired,
    ConciliationCancelled,
    ConciliationFailed,
    MovementIgnored,
    MovementUnignored,
    PollFailed,
    PollRecovered,
    ConciliationRejected,
    ConciliationRunRequested,
    ConciliationNotified,
}

impl EventKind {
    pub const ALL: [EventKind; 27] = [
        EventKind::AssistanceRequested,
        EventKind::AssistanceFulfilled,
        EventKind::AssistanceCancelled,
        EventKind::AssistanceExpired,
        EventKind::LoginFailed,
        EventKind::LoginSucceeded,
        EventKind::ScrapeFailed,
        EventKind::ScrapeSucceeded,
        EventKind::SessionStarted,
        EventKind::SessionStopped,
        EventKind::SessionNeedsAttention,
        EventKind::ConciliationRegistered,
        EventKind::ConciliationReopened,
        EventKind::ConciliationUpdated,
        EventKind::ConciliationMatched,
        EventKind::ConciliationAmbiguous,
        EventKind::ConciliationNotFound,
        EventKind::ConciliationExpired,
        EventKind::ConciliationCancelled,
        EventKind::ConciliationFailed,
        EventKind::MovementIgnored,
        EventKind::MovementUnignored,
        EventKind::PollFailed,
        EventKind::PollRecovered,
        EventKind::ConciliationRejected,
        EventKind::ConciliationRunRequested,
        EventKind::ConciliationNotified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::AssistanceRequested => "assistance.requested",
            EventKind::AssistanceFulfilled => "assistance.fulfilled",
            EventKind::AssistanceCancelled => "assistance.cancelled",
            EventKind::AssistanceExpired => "assistance.expired",
            EventKind::LoginFailed => "login.failed",
            EventKind::LoginSucceeded => "login.succeeded",
            EventKind::ScrapeFailed => "scrape.failed",
            EventKind::ScrapeSucceeded => "scrape.succeeded",
            EventKind::SessionStarted => "session.started",
            EventKind::SessionStopped => "session.stopped",
            EventKind::SessionNeedsAttention => "session.needs_attention",
            EventKind::ConciliationRegistered => "conciliation.registered",
            EventKind::ConciliationReopened => "conciliation.reopened",
            EventKind::ConciliationUpdated => "conciliation.updated",
            EventKind::ConciliationMatched => "conciliation.matched",
            EventKind::ConciliationAmbiguous => "conciliation.ambiguous",
            EventKind::ConciliationNotFound => "conciliation.not_found",
            EventKind::ConciliationExpired => "conciliation.expired",
            EventKind::ConciliationCancelled => "conciliation.cancelled",
            EventKind::ConciliationFailed => "conciliation.failed",
            EventKind::MovementIgnored => "movement.ignored",
            EventKind::MovementUnignored => "movement.unignored",
            EventKind::PollFailed => "poll.failed",
            EventKind::PollRecovered => "poll.recovered",
            EventKind::ConciliationRejected => "conciliation.rejected",
            EventKind::ConciliationRunRequested => "conciliation.run_requested",
            EventKind::ConciliationNotified => "conciliation.notified",
        }
    }

    /// The kind named `text`.
    pub fn parse(text: &str) -> Option<EventKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// Whether `/v1/events` carries this kind: the login engine's events (docs/product.md §6).
    /// Reconciliation's are on the dashboard's stream only (docs/reconciliation.md §9).
    pub fn on_v1(self) -> bool {
        matches!(
            self,
            EventKind::AssistanceRequested
                | EventKind::AssistanceFulfilled
                | EventKind::AssistanceCancelled
                | EventKind::AssistanceExpired
                | EventKind::LoginFailed
                | EventKind::LoginSucceeded
                | EventKind::ScrapeFailed
                | EventKind::ScrapeSucceeded
                | EventKind::SessionStarted
                | EventKind::SessionStopped
                | EventKind::SessionNeedsAttention
        )
    }

    /// The subscribable name of this event for notification webhooks, if it has one
    /// (docs/product.md §8).
    pub fn subscribable(self) -> Option<NotificationEvent> {
        match self {
            EventKind::AssistanceRequested => Some(NotificationEvent::AssistanceRequired),
            EventKind::LoginFailed => Some(NotificationEvent::LoginFailed),
            EventKind::ScrapeFailed => Some(NotificationEvent::ScrapeFailed),
            EventKind::PollFailed => Some(NotificationEvent::PollFailed),
            _ => None,
        }
    }
}

fn subscribable_name(e: NotificationEvent) -> &'static str {
    match e {
        NotificationEvent::AssistanceRequired => "assistance_required",
        NotificationEvent::LoginFailed => "login_failed",
        NotificationEvent::ScrapeFailed => "scrape_failed",
        NotificationEvent::PollFailed => "poll_failed",
    }
}

/// An account's notification subscription (from its config's settings).
#[derive(Clone, Debug, Default)]
pub struct Subscription {
    pub endpoint: Option<String>,
    pub events: Vec<NotificationEvent>,
}

/// A notification webhook's body. The fields are in the order a JSON map sorts them: the
/// bytes are those the `json!` value it replaced wrote.
#[derive(Serialize)]
struct NotificationBody<'a, D> {
    account_id: AccountId,
    data: &'a D,
    id: DeliveryId,
    occurred_at: String,
    status: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
}

/// The body of the notification webhook of an event of `kind` (subscribed as `sub`).
fn notification_body<D: Serialize>(
    id: DeliveryId,
    account: AccountId,
    kind: EventKind,
    sub: NotificationEvent,
    data: &D,
    occurred_at: Timestamp,
) -> String {
    to_json(&NotificationBody {
        account_id: account,
        data,
        id,
        occurred_at: crate::support::time::ts(occurred_at),
        status: kind.as_str(),
        kind: subscribable_name(sub),
    })
}

/// JSON text of an event's data or body. Our data types (plain structs, `Value`) always
/// serialize; were one not to, the event still goes out, with an empty object.
fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| {
        tracing::error!(error = %e, "an event's data did not serialize");
        "{}".into()
    })
}

/// Builds, logs and publishes events.
pub struct EventHub {
    store: Arc<dyn Store>,
    bus: Arc<dyn EventBus>,
    /// Wakes the webhook worker when events (and so, maybe, deliveries) were written.
    outbox: Arc<tokio::sync::Notify>,
}

impl EventHub {
    pub fn new(store: Arc<dyn Store>, bus: Arc<dyn EventBus>, outbox: Arc<tokio::sync::Notify>) -> Self {
        Self { store, bus, outbox }
    }

    /// The account's current subscription (none when it has no endpoint or no config).
    pub async fn subscription(&self, account: AccountId) -> StoreResult<Subscription> {
        let Some(acc) = self.store.engine_account(account).await? else {
            return Ok(Subscription::default());
        };
        let Some(config) = acc.config else {
            return Ok(Subscription::default());
        };
        let settings: Settings = serde_json::from_str(&config.settings)
            .map_err(|e| StoreError::Corrupt(format!("settings of account {account}: {e}")))?;
        Ok(Subscription {
            endpoint: settings.notification_endpoint_url,
            events: settings.notification_events,
        })
    }

    /// An event, with its webhook delivery when `subscription` asks for this kind. `data` is
    /// the event's JSON object: a `Value`, or (on hot paths: a poll's tens of thousands of
    /// events) a struct serialized straight from its row, with no value tree.
    pub fn build<D: Serialize>(
        &self,
        kind: EventKind,
        user: UserId,
        account: AccountId,
        data: D,
        subscription: &Subscription,
        request: Option<AssistanceRequestId>,
    ) -> NewEvent {
        let occurred_at = now();
        let mut deliveries = Vec::new();
        if let (Some(_), Some(sub)) = (&subscription.endpoint, kind.subscribable()) {
            if subscription.events.contains(&sub) {
                let id = DeliveryId::new();
                deliveries.push(NewDelivery {
                    id,
                    event_type: subscribable_name(sub).into(),
                    payload: notification_body(id, account, kind, sub, &data, occurred_at),
                    request_id: request,
                    next_attempt_at: occurred_at,
                    channel: CHANNEL_NOTIFICATION.into(),
                    subject_id: None,
                });
            }
        }
        NewEvent {
            id: Uuid::now_v7(),
            user_id: user,
            account_id: account,
            kind: kind.as_str().into(),
            data: to_json(&data),
            occurred_at,
            deliveries,
        }
    }

    /// Publishes events the store has logged (after their transaction committed). A bus
    /// failure is logged, not returned: the events are durable, and streams read them from the
    /// log on their next wake-up.
    pub fn publish(&self, logged: Vec<EventRow>) {
        if logged.is_empty() {
            return;
        }
        for row in logged {
            if let Err(e) = self.bus.publish(row.into()) {
                tracing::warn!(error = %e, "could not announce an event; streams will read it from the log");
            }
        }
        self.outbox.notify_one();
    }

    /// Wakes the webhook worker (a delivery was queued again).
    pub fn wake_outbox(&self) {
        self.outbox.notify_one();
    }

    /// Logs and publishes one event that has no state change of its own.
    pub async fn emit(&self, kind: EventKind, user: UserId, account: AccountId, data: Value) -> StoreResult<()> {
        let sub = if kind.subscribable().is_some() {
            self.subscription(account).await?
        } else {
            Subscription::default()
        };
        let event = self.build(kind, user, account, data, &sub, None);
        let logged = self.store.record_events(&[event]).await?;
        self.publish(logged);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_kind_names_are_distinct_and_dotted() {
        let names: std::collections::BTreeSet<_> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), EventKind::ALL.len());
        assert!(names.iter().all(|n| n.contains('.') && !n.contains(['\n', '\r'])));
        let subscribable: Vec<_> = EventKind::ALL.iter().filter_map(|k| k.subscribable()).collect();
        assert_eq!(
            subscribable.len(),
            4,
            "assistance_required, login_failed, scrape_failed, poll_failed"
        );
    }

    /// A notification body written from its parts is, byte for byte, what the `json!` value
    /// it replaced gave (the receivers verify the signature over these bytes).
    #[test]
    fn notification_body_is_the_json_it_replaced() {
        let (id, account, at) = (DeliveryId::new(), AccountId::new(), now());
        let data = serde_json::json!({ "reason": "otp_timeout", "detail": "a \"quoted\" é" });
        for kind in EventKind::ALL {
            let Some(sub) = kind.subscribable() else { continue };
            let want = serde_json::json!({
                "id": id,
                "account_id": account,
                "type": subscribable_name(sub),
                "status": kind.as_str(),
                "data": data,
                "occurred_at": crate::support::time::ts(at),
            });
            assert_eq!(notification_body(id, account, kind, sub, &data, at), want.to_string());
        }
    }
}
