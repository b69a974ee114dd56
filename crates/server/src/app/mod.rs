//! The application: its state (every service a request handler can reach), how it is wired
//! and booted, its periodic upkeep, and the use cases that span services — one home each,
//! above the services and below `http`.

pub(crate) mod accounts;
pub(crate) mod boot;
// Issue 8 (performance): SQLite's log checkpointed off the commit path.
pub mod checkpoint;
// Issue 11 (scale-out).
pub(crate) mod cluster;
pub(crate) mod instance_lock;
pub(crate) mod logins;
pub(crate) mod upkeep;
pub(crate) mod wiring;
// Issue 10: two-factor sign-in.
pub(crate) mod two_factor;
// Issue 11: master-key rotation.
pub mod master_key;

use std::ops::Deref;
use std::sync::Arc;

use reconbanker_store::{Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::assistance::broker::AssistanceBroker;
use crate::assistance::Assistance;
use crate::auth::jwt::Jwt;
use crate::auth::key_cache::{AccountDirectory, KeyDirectory};
use crate::auth::password::Passwords;
use crate::auth::tickets::Tickets;
use crate::config::Config;
use crate::engine::live::LiveSessions;
use crate::engine::Engine;
use crate::push::events::{EventBus, EventHub};
use crate::push::webhooks::Webhooks;
use crate::reconcile::expiry::ExpirySweep;
use crate::reconcile::matcher::Matcher;
use crate::reconcile::poller::Poller;
use crate::support::clock::Clock;
use crate::support::crypto::Sealer;
use crate::support::ratelimit::RateLimiter;

/// Everything a request handler can reach.
pub struct AppInner {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub jwt: Jwt,
    pub passwords: Passwords,
    pub sealer: Sealer,
    pub keys: KeyDirectory,
    /// Announces revoked keys and ended logins to the streams and held requests they opened.
    pub revocations: Arc<crate::auth::revocations::Revocations>,
    pub accounts: Arc<AccountDirectory>,
    pub assistance: Arc<Assistance>,
    pub sessions: LiveSessions,
    pub limiter: Arc<dyn RateLimiter>,
    pub broker: Arc<dyn AssistanceBroker>,
    pub bus: Arc<dyn EventBus>,
    pub hub: Arc<EventHub>,
    pub engine: Engine,
    pub webhooks: Arc<Webhooks>,
    /// Fetches the pending orders of reconciling accounts.
    pub poller: Arc<Poller>,
    /// Rung when reconciliation work is waiting (a poll changed requests, movements arrived).
    pub matcher_wake: Arc<tokio::sync::Notify>,
    /// Runs match passes on accounts with pending reconciliation work.
    pub matcher: Arc<Matcher>,
    /// Marks accounts with overdue reconciliation requests for a pass.
    pub expiry: Arc<ExpirySweep>,
    /// The clock of deadlines tests drive (assistance timeouts, reconciliation polls and
    /// expiry): the system clock unless `AppOptions.clock` says otherwise.
    pub clock: Arc<dyn Clock>,
    /// Single-use tickets for the realtime streams.
    pub tickets: Tickets,
    /// Cancelled when shutdown begins: every open stream and socket ends.
    pub streams_closing: CancellationToken,
    // Issue 11 (scale-out).
    /// The other instances on the database, told when a cached view goes stale.
    pub peers: Arc<dyn crate::support::peers::Peers>,
    /// This instance's name on session leases (`sessionOwner`).
    pub instance_id: String,
    // Issue 10: two-factor sign-in.
    /// Hashes recovery codes under a key derived from the master key.
    pub recovery_codes: crate::auth::totp::KeyedHash,
    /// Makes the dashboard's CSRF tokens (a key of its own, derived from the master key).
    pub csrf_keys: crate::auth::totp::KeyedHash,
    // Issue 11: the operator's metrics.
    /// Where this application records its metrics (records nothing without
    /// `RECONBANKER_METRICS_ADDR`).
    pub metrics: crate::support::metrics::Metrics,
    /// Renders them for `/metrics`; `None` when metrics are off.
    pub metrics_export: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

#[derive(Clone)]
pub struct AppState(pub Arc<AppInner>);

impl Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

/// Why a use case failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored value could not be read back (a config document that does not decode).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// The row vanished between the ownership check and the write (deleted concurrently).
    #[error("not found")]
    NotFound,
    /// Other writes to the same row kept landing first (see `accounts::change_config`).
    #[error("the row kept changing")]
    Contended,
}
