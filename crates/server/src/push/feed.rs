//! The cursor every event stream reads with: the log is the source, the bus the doorbell.
//!
//! A stream subscribes to the bus, takes its position (the client's `Last-Event-ID`, or the
//! log's head), and from then on reads the log after its position whenever an event of its
//! audience is announced or it lags. Events are logged before they are announced, so the read
//! finds them; two events announced out of log order (two tasks racing between their commit and
//! their announcement) are still sent in log order, with none skipped. Memory per stream is
//! bounded: the bus subscription and one page of log.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reconbanker_store::{AccountId, Store, StoreResult, UserId};
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::events::{Event, EventBus, EventKind, RecvError, Subscriber};

/// How often an open stream re-checks that its credential is still good.
const REVALIDATE: Duration = Duration::from_secs(60);
/// Events read from the log at a time when catching up.
const PAGE: i64 = 500;

/// Whose events a stream carries: one user's, optionally only some of their accounts.
#[derive(Clone, Debug)]
pub struct Audience {
    pub user: UserId,
    pub accounts: Option<Vec<AccountId>>,
    /// Only the kinds `/v1/events` carries ([`EventKind::on_v1`]); else every kind.
    pub v1_kinds_only: bool,
}

impl Audience {
    pub fn admits(&self, e: &Event) -> bool {
        e.user_id == self.user
            && self.accounts.as_ref().is_none_or(|ids| ids.contains(&e.account_id))
            && (!self.v1_kinds_only || EventKind::parse(&e.kind).is_some_and(EventKind::on_v1))
    }
}

/// The credential a stream was opened with, re-checked every minute: a revoked API key or a
/// logged-out dashboard token ends the stream.
#[async_trait]
pub trait Credential: Send + Sync {
    /// `false` ends the stream. A transient failure to check should answer `true` (the next
    /// check decides), so a database hiccup does not drop every client at once.
    async fn still_valid(&self) -> bool;
}

/// A timer that first fires one [`REVALIDATE`] from now.
pub fn revalidation_timer() -> Interval {
    let mut t = interval_at(Instant::now() + REVALIDATE, REVALIDATE);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

/// One stream's position in the log.
pub struct Feed {
    store: Arc<dyn Store>,
    audience: Audience,
    credential: Box<dyn Credential>,
    live: Box<dyn Subscriber>,
    closing: CancellationToken,
    /// The last `seq` sent (or resumed from).
    cursor: i64,
    /// Whether the log may hold events after `cursor` that were not sent yet.
    behind: bool,
    page: VecDeque<Event>,
    revalidate: Interval,
}

/// Why a feed could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] reconbanker_store::StoreError),
    #[error(transparent)]
    Bus(#[from] super::events::BusError),
}

impl Feed {
    /// Subscribes first, then takes the position: an event committed after the position is
    /// read is also announced. Call it before the response goes out, so an event the client
    /// causes after seeing the response headers is after the position.
    pub async fn open(
        store: Arc<dyn Store>,
        bus: &dyn EventBus,
        audience: Audience,
        credential: Box<dyn Credential>,
        resume: Option<i64>,
        closing: CancellationToken,
    ) -> Result<Self, OpenError> {
        let live = bus.subscribe().await?;
        let cursor = match resume {
            Some(seq) => seq,
            None => head(&*store).await?,
        };
        Ok(Self {
            store,
            audience,
            credential,
            live,
            closing,
            cursor,
            behind: resume.is_some(),
            page: VecDeque::new(),
            revalidate: revalidation_timer(),
        })
    }

    /// The next event to send; `None` ends the stream (shutdown, credential gone, bus closed,
    /// or the log unreadable — the client reconnects with `Last-Event-ID` and loses nothing).
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.page.pop_front() {
                self.cursor = e.seq;
                return Some(e);
            }
            if self.behind {
                let rows = match self
                    .store
                    .list_events(self.audience.user, self.audience.accounts.as_deref(), self.cursor, PAGE)
                    .await
                {
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::warn!(error = %e, "event stream could not read the event log; closing it");
                        return None;
                    }
                };
                self.behind = rows.len() as i64 == PAGE;
                let read_to = rows.last().map(|r| r.seq);
                let audience = &self.audience;
                self.page
                    .extend(rows.into_iter().map(Event::from).filter(|e| audience.admits(e)));
                // A page of kinds this stream leaves out still moves it on.
                if let (true, Some(seq)) = (self.page.is_empty(), read_to) {
                    self.cursor = self.cursor.max(seq);
                }
                continue;
            }
            tokio::select! {
                _ = self.closing.cancelled() => return None,
                _ = self.revalidate.tick() => {
                    if !self.credential.still_valid().await {
                        return None;
                    }
                }
                received = self.live.recv() => match received {
                    Ok(e) if self.audience.admits(&e) && e.seq > self.cursor => self.behind = true,
                    Ok(_) => {}
                    // Missed announcements are in the log after the cursor.
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "event stream lagged behind the bus; catching up from the log");
                        self.behind = true;
                    }
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    }
}

async fn head(store: &dyn Store) -> StoreResult<i64> {
    store.last_event_seq().await
}
