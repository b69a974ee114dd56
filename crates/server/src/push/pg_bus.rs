//! The event bus of several instances on one PostgreSQL database (issue 11): `NOTIFY` is the
//! doorbell, the event log the truth.
//!
//! `publish` rings this instance's reader at once and hands the event's `seq` to the notifier
//! task, which sends `NOTIFY reconbanker, 'e:<seq>'` (coalesced: a burst of events is one or a
//! few notifications, since only "the log has grown" matters). Every instance's listener
//! (`app::cluster`) rings its reader on such a signal, and after a lost connection. The one
//! reader per instance reads the log after its cursor (`Store::events_after`, in pages) and
//! fans each event out on a local broadcast channel, so subscribers get full events, in log
//! order, with none skipped: event-log writers take turns under an advisory lock, so a `seq`
//! never becomes visible after a higher one.

use std::sync::Arc;

use async_trait::async_trait;
use reconbanker_store::signals::PgSignals;
use reconbanker_store::Store;
use tokio::sync::{broadcast, watch, Notify};

use super::events::{BusError, Event, EventBus, RecvError, Subscriber};

/// Events buffered per subscriber before the slowest one starts losing the oldest.
const CAPACITY: usize = 4096;
/// Events read from the log at a time.
const PAGE: i64 = 500;
/// How long the reader waits before it reads the log again after a failed read.
const RETRY: std::time::Duration = std::time::Duration::from_secs(1);

pub struct PgBus {
    tx: broadcast::Sender<Arc<Event>>,
    /// Rung when the log may have grown.
    wake: Arc<Notify>,
    /// The highest `seq` published here and not yet announced to the other instances.
    announce: watch::Sender<i64>,
}

impl PgBus {
    /// Starts the reader (from the log's head: like a local bus, it announces what is logged
    /// from now on) and the notifier.
    pub async fn start(store: Arc<dyn Store>, signals: PgSignals) -> reconbanker_store::StoreResult<Arc<Self>> {
        let cursor = store.last_event_seq().await?;
        let (announce, announced) = watch::channel(0);
        let bus = Arc::new(Self {
            tx: broadcast::channel(CAPACITY).0,
            wake: Arc::new(Notify::new()),
            announce,
        });
        tokio::spawn(read(Arc::downgrade(&bus), bus.wake.clone(), store, cursor));
        tokio::spawn(notify(announced, signals));
        Ok(bus)
    }

    /// The log may have grown (another instance announced an event, or signals may have been
    /// missed): the reader reads it.
    pub fn ring(&self) {
        self.wake.notify_one();
    }
}

/// The reader: one per instance. It holds the bus only while it reads, and stops at its first
/// wake-up after the bus is gone.
async fn read(bus: std::sync::Weak<PgBus>, wake: Arc<Notify>, store: Arc<dyn Store>, mut cursor: i64) {
    loop {
        let Some(b) = bus.upgrade() else { return };
        match store.events_after(cursor, PAGE).await {
            Ok(rows) => {
                let full = rows.len() as i64 == PAGE;
                for row in rows {
                    cursor = row.seq;
                    // No subscriber is not an error.
                    let _ = b.tx.send(Arc::new(row.into()));
                }
                if full {
                    continue;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "the event bus could not read the event log; retrying");
                drop(b);
                tokio::time::sleep(RETRY).await;
                continue;
            }
        }
        drop(b);
        // `Notify` keeps a permit rung meanwhile: no wake-up is lost.
        wake.notified().await;
    }
}

/// The notifier: sends the newest published `seq` to the other instances.
async fn notify(mut announced: watch::Receiver<i64>, signals: PgSignals) {
    while announced.changed().await.is_ok() {
        let seq = *announced.borrow_and_update();
        if let Err(e) = signals.notify(&format!("e:{seq}")).await {
            // Other instances' streams see the event at their next doorbell or reconnect.
            tracing::warn!(error = %e, "could not announce events to the other instances");
        }
    }
}

#[async_trait]
impl EventBus for PgBus {
    fn publish(&self, event: Event) -> Result<(), BusError> {
        tracing::debug!(kind = %event.kind, account = %event.account_id, seq = event.seq, "event");
        let seq = event.seq;
        self.announce.send_if_modified(|v| {
            let newer = seq > *v;
            if newer {
                *v = seq;
            }
            newer
        });
        self.ring();
        Ok(())
    }

    async fn subscribe(&self) -> Result<Box<dyn Subscriber>, BusError> {
        Ok(Box::new(PgSubscriber(self.tx.subscribe())))
    }

    #[cfg(any(test, feature = "test-support"))]
    fn receiver_count(&self) -> usize {
        self.tx.receiver_count()
    }
}

struct PgSubscriber(broadcast::Receiver<Arc<Event>>);

#[async_trait]
impl Subscriber for PgSubscriber {
    async fn recv(&mut self) -> Result<Arc<Event>, RecvError> {
        self.0.recv().await.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(n) => RecvError::Lagged(n),
            broadcast::error::RecvError::Closed => RecvError::Closed,
        })
    }
}
