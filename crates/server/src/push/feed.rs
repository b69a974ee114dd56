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
use std::pin::Pin;

use tokio::sync::watch;
use tokio::time::{interval_at, sleep_until, Instant, Interval, MissedTickBehavior, Sleep};
use tokio_util::sync::CancellationToken;

use super::events::{Event, EventBus, EventKind, RecvError, Subscriber};
use crate::support::time::instant_at_ms;

/// How often an open stream re-checks its credential besides the moments [`Recheck`] knows of
/// (a signal from another instance that was missed).
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

/// The credential a stream was opened with, re-checked whenever [`Recheck`] says: a revoked
/// API key or an ended dashboard login ends the stream.
#[async_trait]
pub trait Credential: Send + Sync {
    /// `false` ends the stream. A transient failure to check should answer `true` (the next
    /// check decides), so a database hiccup does not drop every client at once.
    async fn still_valid(&self) -> bool;
    /// When the credential stops working by itself (milliseconds since the epoch), if it does.
    fn expires_at_ms(&self) -> Option<i64>;
}

/// When a stream re-checks its credential: at once when a revocation is announced (`revoked`
/// changes: `auth::revocations`), the moment the credential expires, and every minute besides.
pub struct Recheck {
    timer: Interval,
    revoked: watch::Receiver<u64>,
    expiry: Option<Pin<Box<Sleep>>>,
}

impl Recheck {
    pub fn new(revoked: watch::Receiver<u64>, expires_at_ms: Option<i64>) -> Self {
        let mut timer = interval_at(Instant::now() + REVALIDATE, REVALIDATE);
        timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let expiry = expires_at_ms.map(|at| Box::pin(sleep_until(instant_at_ms(at))));
        Self { timer, revoked, expiry }
    }

    /// Completes when the credential should be checked again.
    pub async fn due(&mut self) {
        let expiry = async {
            match self.expiry.as_mut() {
                Some(at) => at.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.timer.tick() => {}
            // Without a sender (the app is going away) this branch just never fires.
            Ok(()) = self.revoked.changed() => {}
            () = expiry => self.expiry = None,
        }
    }
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
    recheck: Recheck,
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
        recheck: Recheck,
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
            recheck,
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
                () = self.recheck.due() => {
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
