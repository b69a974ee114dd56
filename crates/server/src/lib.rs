//! Reconbanker: logs into bank websites for its users, keeps the logins alive, and pauses
//! assisted logins for one-time codes that arrive from a human or from the user's own services
//! through the External API (`/v1`).
//!
//! `main.rs` is thin; this crate exposes [`run`] (and [`App`] for tests that need the
//! in-process services) so tests start the real application on `127.0.0.1:0`.

pub mod app;
pub mod assistance;
pub mod auth;
pub mod config;
pub mod connectors;
pub mod domain;
pub mod engine;
pub mod http;
pub mod push;
pub mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use reconbanker_store::{now, BankId, BankRow, Store};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::assistance::broker::{AssistanceBroker, LocalBroker};
use crate::assistance::{Assistance, AssistanceDeps};
use crate::auth::jwt::Jwt;
use crate::auth::key_cache::{AccountDirectory, KeyDirectory};
use crate::auth::password::Passwords;
use crate::config::{Config, SandboxMode, Secrets};
use crate::engine::connector::BankConnector;
use crate::engine::live::LiveSessions;
use crate::engine::{Engine, EngineConfig, EngineDeps};
use crate::push::events::{EventBus, EventHub, LocalBus};
use crate::support::clock::{Clock, SystemClock};
use crate::support::crypto::Sealer;
use crate::support::ratelimit::{MemoryRateLimiter, RateLimiter};

pub use crate::config::ConfigError;

/// Everything a request handler can reach.
pub struct AppInner {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub jwt: Jwt,
    pub passwords: Passwords,
    pub sealer: Sealer,
    pub keys: KeyDirectory,
    pub accounts: AccountDirectory,
    pub assistance: Arc<Assistance>,
    pub sessions: LiveSessions,
    pub limiter: Arc<dyn RateLimiter>,
    pub broker: Arc<dyn AssistanceBroker>,
    pub bus: Arc<dyn EventBus>,
    pub hub: Arc<EventHub>,
    pub engine: Engine,
    pub webhooks: Arc<push::webhooks::Webhooks>,
    /// Single-use tickets for the realtime streams.
    pub tickets: auth::tickets::Tickets,
    /// Cancelled when shutdown begins: every open stream and socket ends.
    pub streams_closing: CancellationToken,
}

#[derive(Clone)]
pub struct AppState(pub Arc<AppInner>);

impl Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("database: {0}")]
    Store(#[from] reconbanker_store::StoreError),
    #[error("{0}")]
    Other(String),
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// The code of the built-in sandbox bank (SPEC §4, §10).
pub const SANDBOX_BANK_CODE: &str = "sandbox";

/// Opens the store named by the config (creating the data directory for SQLite) and migrates it.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    if config.database_url.starts_with("sqlite:") {
        config::create_data_dir(&config.data_dir)?;
    }
    let store = reconbanker_store::connect(&config.database_url, config.db_max_connections).await?;
    store.migrate().await?;
    Ok(store)
}

/// The assembled application: state plus the background work it owns.
pub struct App {
    pub state: AppState,
    cancel: CancellationToken,
    /// The embedded sandbox bank's listener, bound at build time (its URL is known then).
    sandbox: Option<TcpListener>,
}

/// What tests (and embedders) may swap in.
#[derive(Default)]
pub struct AppOptions {
    /// The clock of assistance deadlines (default: the system clock).
    pub clock: Option<Arc<dyn Clock>>,
    /// Connectors by bank code, added to (or replacing) the built-in ones.
    pub connectors: Vec<(String, Arc<dyn BankConnector>)>,
}

/// This instance's name on session leases, kept in the data directory so a restarted process
/// takes its own leases back at once.
fn instance_id(config: &Config) -> String {
    let path = config.data_dir.join("instance_id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        if !id.trim().is_empty() {
            return id.trim().to_owned();
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    if config::create_data_dir(&config.data_dir).is_ok() {
        if let Err(e) = std::fs::write(&path, &id) {
            tracing::warn!(error = %e, "could not persist the instance id");
        }
    }
    id
}

/// Binds the embedded sandbox bank (when configured) and returns its listener and the URL the
/// connector uses.
async fn sandbox_endpoint(config: &Config) -> Result<(Option<TcpListener>, Option<url::Url>), StartError> {
    match &config.sandbox {
        SandboxMode::Off => Ok((None, None)),
        SandboxMode::External(url) => Ok((None, Some(url.clone()))),
        SandboxMode::Embedded { port } => {
            let addr = SocketAddr::new(config.listen.ip(), *port);
            let listener = TcpListener::bind(addr).await.map_err(|e| {
                StartError::Other(format!(
                    "cannot start the embedded sandbox bank on {addr}: {e} \
                     (set RECONBANKER_SANDBOX_PORT, or RECONBANKER_SANDBOX_BANK=off)"
                ))
            })?;
            let mut bound = listener.local_addr()?;
            if bound.ip().is_unspecified() {
                bound.set_ip(std::net::IpAddr::from([127, 0, 0, 1]));
            }
            let url = url::Url::parse(&format!("http://{bound}/")).map_err(|e| StartError::Other(e.to_string()))?;
            Ok((Some(listener), Some(url)))
        }
    }
}

/// How often idle rate-limiter state is swept and expired revocations purged.
const SWEEP_INTERVAL: Duration = Duration::from_secs(300);

impl App {
    /// Loads secrets, opens and migrates the store, seeds the sandbox bank, closes assistance
    /// requests a previous process left pending, and builds the services.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        Self::build_with(config, AppOptions::default()).await
    }

    pub async fn build_with(config: Config, options: AppOptions) -> Result<Self, StartError> {
        let secrets = Secrets::load_or_create(&config)?;
        let store = open_store(&config).await?;
        let (sandbox_listener, sandbox) = sandbox_endpoint(&config).await?;
        store
            .upsert_bank(&BankRow {
                id: BankId::new(),
                code: SANDBOX_BANK_CODE.into(),
                name: "Sandbox Bank".into(),
                login_url: sandbox
                    .as_ref()
                    .and_then(|u| u.join("/login").ok())
                    .map(|u| u.to_string()),
                status: "active".into(),
                created_at: now(),
            })
            .await?;
        let passwords = Passwords::new(2 * std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2))
            .await
            .map_err(|e| StartError::Other(e.to_string()))?;
        let limiter: Arc<dyn RateLimiter> = Arc::new(MemoryRateLimiter::default());
        let broker: Arc<dyn AssistanceBroker> = Arc::new(LocalBroker::default());
        let bus: Arc<dyn EventBus> = Arc::new(LocalBus::default());
        let outbox = Arc::new(tokio::sync::Notify::new());
        let hub = Arc::new(EventHub::new(store.clone(), bus.clone(), outbox.clone()));
        let clock = options.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let assistance = Arc::new(Assistance::new(
            AssistanceDeps {
                store: store.clone(),
                broker: broker.clone(),
                limiter: limiter.clone(),
                hub: hub.clone(),
                clock,
            },
            config.otp_rate_limit,
            config.otp_rate_window,
            config.assistance_timeout,
        ));
        let orphans = assistance.close_orphans_at_boot().await?;
        if !orphans.is_empty() {
            tracing::info!(
                count = orphans.len(),
                "cancelled assistance requests left pending by a previous process"
            );
        }
        // Announced like any other cancellation, so stream clients resuming after the restart
        // learn that the prompt was withdrawn.
        for row in &orphans {
            if let Some(acc) = store.engine_account(row.account_id).await? {
                let data = serde_json::json!({ "requestId": row.id, "reason": row.reason });
                hub.emit(
                    push::events::EventKind::AssistanceCancelled,
                    acc.account.user_id,
                    row.account_id,
                    data,
                )
                .await?;
            }
        }
        let runs = store.close_open_runs("process_restart", now()).await?;
        if runs > 0 {
            tracing::info!(count = runs, "closed session runs left open by a previous process");
        }
        let sealer = Sealer::new(&secrets.master_key);
        let sessions = LiveSessions::default();
        let mut connectors: std::collections::HashMap<String, Arc<dyn BankConnector>> = Default::default();
        if let Some(url) = sandbox {
            connectors.insert(
                SANDBOX_BANK_CODE.into(),
                Arc::new(connectors::sandbox::SandboxConnector::new(url, config.bank_timeout)),
            );
        }
        connectors.extend(options.connectors);
        let engine = Engine::new(
            EngineDeps {
                store: store.clone(),
                assistance: assistance.clone(),
                sessions: sessions.clone(),
                hub: hub.clone(),
                sealer: sealer.clone(),
                connectors,
                owner: instance_id(&config),
            },
            EngineConfig {
                scrape_interval: config.scrape_interval,
                poll_interval: config.poll_interval,
                max_sessions: config.max_sessions,
                retry_attempts: config.retry_attempts,
                retry_backoff: config.retry_backoff,
                scan_interval: config.scan_interval,
                ..EngineConfig::default()
            },
        );
        let webhooks = Arc::new(push::webhooks::Webhooks::new(
            store.clone(),
            sealer.clone(),
            push::webhooks::WebhookSettings {
                timeout: config.webhook_timeout,
                backoff: config.webhook_backoff,
                max_attempts: config.webhook_max_attempts,
                allow_private: config.allow_private_targets,
            },
            outbox,
        ));
        let inner = AppInner {
            webhooks,
            tickets: Default::default(),
            streams_closing: CancellationToken::new(),
            jwt: Jwt::new(&secrets.jwt_secret, config.jwt_ttl),
            sealer,
            keys: KeyDirectory::new(store.clone()),
            accounts: AccountDirectory::new(store.clone()),
            sessions,
            bus,
            hub,
            engine,
            passwords,
            assistance,
            limiter,
            broker,
            store,
            config,
        };
        Ok(Self {
            state: AppState(Arc::new(inner)),
            cancel: CancellationToken::new(),
            sandbox: sandbox_listener,
        })
    }

    /// Serves until `shutdown` resolves, then stops background work, writes back what is
    /// buffered (API-key usage) and closes the database.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let state = self.state.clone();
        let background = tokio::spawn(background_loop(state.clone(), self.cancel.clone()));
        if let Some(listener) = self.sandbox {
            let addr = listener.local_addr()?;
            tracing::info!(%addr, "embedded sandbox bank listening on http://{addr}");
            let cancel = self.cancel.clone();
            tokio::spawn(async move {
                let bank = sandbox_bank::SandboxBank::new(sandbox_bank::BankConfig::default());
                if let Err(e) = bank.serve(listener, async move { cancel.cancelled().await }).await {
                    tracing::error!(error = %e, "the embedded sandbox bank stopped");
                }
            });
        }
        state.engine.start();
        let webhook_worker = tokio::spawn(state.webhooks.clone().run(self.cancel.clone()));
        let router = http::router(state.clone());
        let served = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown({
                // Open event streams and sockets end when shutdown begins, or they would hold it.
                let closing = state.streams_closing.clone();
                async move {
                    shutdown.await;
                    closing.cancel();
                }
            })
            .await;
        self.cancel.cancel();
        let _ = background.await;
        let _ = webhook_worker.await;
        state.engine.shutdown().await;
        if let Err(e) = state.keys.flush_usage().await {
            tracing::warn!(error = %e, "could not write back API-key usage at shutdown");
        }
        state.store.close().await;
        served.map_err(StartError::Io)
    }
}

/// Periodic upkeep: API-key `last_used_at` write-back, rate-limiter sweep, purge of expired
/// token revocations.
async fn background_loop(state: AppState, cancel: CancellationToken) {
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
            _ = sweep.tick() => {
                if let Err(e) = state.limiter.sweep().await {
                    tracing::warn!(error = %e, "could not sweep idle rate-limit state");
                }
                if let Err(e) = state.store.purge_revoked_tokens(now()).await {
                    tracing::warn!(error = %e, "could not purge expired token revocations");
                }
                // The event log is bounded: streams can resume within the retention window.
                let horizon = support::time::before(now(), state.config.event_retention);
                if let Err(e) = state.store.purge_events(horizon).await {
                    tracing::warn!(error = %e, "could not purge old events");
                }
            }
        }
    }
}

/// Builds the application and serves it on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    App::build(config).await?.serve(listener, shutdown).await
}
