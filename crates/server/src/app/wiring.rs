//! The composition root: builds every service once, in dependency order, and hands them to
//! [`AppState`]. The in-process implementations of the seams (broker, limiter, bus) are chosen
//! here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use reconbanker_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::cluster::PgPeers;
use super::{boot, AppInner, AppState};
use crate::assistance::broker::{AssistanceBroker, LocalBroker};
use crate::assistance::pg_broker::PgBroker;
use crate::assistance::{Assistance, AssistanceDeps};
use crate::auth::jwt::Jwt;
use crate::auth::key_cache::{AccountDirectory, KeyDirectory};
use crate::auth::password::Passwords;
use crate::auth::tickets::Tickets;
use crate::config::{self, Config, SandboxMode, Secrets};
use crate::connectors;
use crate::engine::connector::BankConnector;
use crate::engine::live::LiveSessions;
use crate::engine::{Engine, EngineConfig, EngineDeps};
use crate::push::events::{EventBus, EventHub, LocalBus};
use crate::push::pg_bus::PgBus;
use crate::push::webhooks::{WebhookSettings, Webhooks};
use crate::reconcile::expiry::ExpirySweep;
use crate::reconcile::fetch::Limits;
use crate::reconcile::matcher::Matcher;
use crate::reconcile::poller::{Poller, PollerSettings};
use crate::support::clock::{Clock, SystemClock};
use crate::support::crypto::Sealer;
use crate::support::metrics::Metrics;
use crate::support::peers::{Alone, Peers};
use crate::support::ratelimit::{MemoryRateLimiter, RateLimiter};
use crate::support::ratelimit_pg::SharedWindows;
use crate::{AppOptions, StartError};
use reconbanker_store::signals::PgSignals;

/// Opens the store named by the config (creating the data directory for SQLite) and migrates it.
pub(crate) async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    if config.database_url.starts_with("sqlite:") {
        config::create_data_dir(&config.data_dir)?;
    }
    let store = reconbanker_store::connect(&config.database_url, config.db_max_connections).await?;
    store.migrate().await?;
    Ok(store)
}

/// What [`build`] makes: the state, the embedded sandbox bank's listener (bound now, so its URL
/// is known) and the browser the browser banks share (shut down when serving ends).
pub(crate) struct Built {
    pub state: AppState,
    pub sandbox: Option<TcpListener>,
    pub browser: Arc<reconbanker_browser::BrowserRuntime>,
}

pub(crate) async fn build(config: Config, options: AppOptions) -> Result<Built, StartError> {
    let secrets = Secrets::load_or_create(&config)?;
    let store = open_store(&config).await?;
    let (sandbox_listener, sandbox) = sandbox_endpoint(&config).await?;
    let mut builtin = connectors::builtin(&config, sandbox.as_ref())
        .map_err(|e| StartError::Other(format!("cannot build the bank connectors' HTTP client: {e}")))?;
    // issue 9: the browser banks (bank definitions), after the built-in HTTP ones.
    let (browser_banks, browser) = connectors::browser::banks(&config, sandbox.as_ref()).map_err(StartError::Other)?;
    builtin.extend(browser_banks);
    boot::seed_banks(&*store, &builtin).await?;

    let passwords = Passwords::new(2 * std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2))
        .await
        .map_err(|e| StartError::Other(e.to_string()))?;
    // Issue 11: on PostgreSQL the guessing budgets (sliding windows) are one across instances.
    let limiter: Arc<dyn RateLimiter> = if store.backend() == "postgres" {
        Arc::new(SharedWindows::new(store.clone()))
    } else {
        Arc::new(MemoryRateLimiter::default())
    };
    // Issue 11: on PostgreSQL the bus, the cache invalidations and the broker cross instances.
    let (bus, peers, cluster): (Arc<dyn EventBus>, Arc<dyn Peers>, _) = if store.backend() == "postgres" {
        let signals = PgSignals::connect(&config.database_url).await?;
        // Listening before the bus takes its position in the log: no event falls in between.
        let listener = signals.listen().await?;
        let pg_bus = PgBus::start(store.clone(), signals.clone()).await?;
        let pg_broker = PgBroker::new(store.clone(), Sealer::new(secrets.master_key.expose()), signals.clone());
        (
            pg_bus.clone(),
            Arc::new(PgPeers(signals)),
            Some((pg_bus, pg_broker, listener)),
        )
    } else {
        (Arc::new(LocalBus::default()), Arc::new(Alone), None)
    };
    let broker: Arc<dyn AssistanceBroker> = match &cluster {
        Some((_, pg_broker, _)) => pg_broker.clone(),
        None => Arc::new(LocalBroker::default()),
    };
    // Issue 11: the operator's metrics — this application's own recorder (not the process-global
    // one: several applications in one process each count their own), only with a metrics
    // address; without one nothing is recorded.
    let (metrics, metrics_export) = match config.metrics_addr {
        Some(_) => {
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(crate::support::metrics::DURATION_BUCKETS)
                .map_err(|e| StartError::Other(format!("metrics: {e}")))?
                .build_recorder();
            let handle = recorder.handle();
            (Metrics::on(Arc::new(recorder)), Some(handle))
        }
        None => (Metrics::off(), None),
    };
    let outbox = Arc::new(tokio::sync::Notify::new());
    let hub = Arc::new(EventHub::new(store.clone(), bus.clone(), outbox.clone()));
    let clock: Arc<dyn Clock> = options.clock.unwrap_or_else(|| Arc::new(SystemClock));
    let accounts = Arc::new(AccountDirectory::new(store.clone()));
    let assistance = Arc::new(Assistance::new(
        AssistanceDeps {
            store: store.clone(),
            owners: accounts.clone(),
            broker: broker.clone(),
            limiter: limiter.clone(),
            hub: hub.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
        },
        config.otp_rate_limit,
        config.otp_rate_window,
        config.assistance_timeout,
    ));
    let owner = instance_id(&config);
    let instance = owner.clone();
    // Issue 11: beside other live instances (PostgreSQL), only what no live lease covers.
    let beside_others_as = (store.backend() == "postgres").then_some(owner.as_str());
    boot::clean_up_after_previous_process(&store, &assistance, &hub, beside_others_as).await?;
    // issue 12: the deliveries this instance had claimed before it died are due again now.
    let released = store.release_delivery_claims(&owner, reconbanker_store::now()).await?;
    // Issue 11: the derived keys a master-key rotation carried over, else derived from the key.
    let derived = super::master_key::derived_keys(&*store, secrets.master_key.expose()).await?;
    let revocations = Arc::new(crate::auth::revocations::Revocations::default());
    let keys = KeyDirectory::new(
        store.clone(),
        crate::auth::api_key::Checksum::from_key(&derived.api_key_checksum),
        revocations.clone(),
    );
    // Keys of the old checksum that exist now are the only ones that can ever be real.
    keys.load_legacy().await?;
    if released > 0 {
        tracing::info!(released, "took back the webhook deliveries this instance had claimed");
    }

    let sealer = Sealer::new(secrets.master_key.expose());
    let matcher_wake = Arc::new(tokio::sync::Notify::new());
    let sessions = LiveSessions::default();
    let mut by_code: HashMap<String, Arc<dyn BankConnector>> = builtin
        .into_iter()
        .filter_map(|b| b.connector.map(|c| (b.bank.code, c)))
        .collect();
    by_code.extend(options.connectors);
    let engine = Engine::new(
        EngineDeps {
            store: store.clone(),
            assistance: assistance.clone(),
            sessions: sessions.clone(),
            hub: hub.clone(),
            sealer: sealer.clone(),
            connectors: by_code,
            owner: owner.clone(),
            movements_stored: matcher_wake.clone(),
            forward: Arc::new(crate::reconcile::passthrough::on_store),
        },
        EngineConfig {
            scrape_interval: config.scrape_interval,
            poll_interval: config.poll_interval,
            max_sessions: config.max_sessions,
            retry_attempts: config.retry_attempts,
            retry_backoff: config.retry_backoff,
            scan_interval: config.scan_interval,
            lease_ttl: config.session_lease,
            // Issue 11: other instances may share a PostgreSQL database.
            take_over: store.backend() == "postgres",
            evidence_retention: config.evidence_retention,
            ..EngineConfig::default()
        },
    );
    let webhooks = Webhooks::new(
        store.clone(),
        sealer.clone(),
        WebhookSettings {
            timeout: config.webhook_timeout,
            backoff: config.webhook_backoff,
            max_attempts: config.webhook_max_attempts,
            allow_private: config.allow_private_targets,
            instance: owner.clone(),
        },
        outbox,
    )
    .map_err(|e| StartError::Other(format!("cannot build the webhook HTTP client: {e}")))?
    .with_metrics(metrics.clone());
    let poller = Poller::new(
        store.clone(),
        hub.clone(),
        sealer.clone(),
        PollerSettings {
            interval: config.orders_poll_interval,
            limits: Limits {
                timeout: config.orders_timeout,
                max_bytes: config.orders_max_bytes,
                max_items: config.orders_max_items,
            },
            allow_private: config.allow_private_targets,
        },
        owner.clone(),
        matcher_wake.clone(),
        clock.clone(),
    )
    .map_err(|e| StartError::Other(format!("cannot build the pending-orders HTTP client: {e}")))?
    .with_metrics(metrics.clone());
    let matcher = Matcher::new(
        store.clone(),
        hub.clone(),
        sealer.clone(),
        matcher_wake.clone(),
        clock.clone(),
    )
    .with_metrics(metrics.clone());
    let expiry = ExpirySweep::new(store.clone(), clock.clone(), config.expire_sweep, matcher_wake.clone());
    let inner = AppInner {
        webhooks: Arc::new(webhooks),
        expiry: Arc::new(expiry),
        clock,
        poller: Arc::new(poller),
        matcher: Arc::new(matcher),
        matcher_wake,
        // Issue 11: in the database when other instances may redeem them.
        tickets: if store.backend() == "postgres" {
            Tickets::shared(store.clone())
        } else {
            Tickets::default()
        },
        streams_closing: CancellationToken::new(),
        jwt: Jwt::new(secrets.jwt_secret.expose(), config.jwt_ttl),
        sealer,
        keys,
        revocations,
        accounts,
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
        peers,
        instance_id: instance,
        recovery_codes: crate::auth::totp::KeyedHash::from_key(derived.recovery_codes),
        csrf_keys: crate::auth::totp::KeyedHash::derive(secrets.master_key.expose(), crate::auth::totp::CSRF_LABEL),
        metrics,
        metrics_export,
    };
    let state = AppState(Arc::new(inner));
    if let Some((pg_bus, pg_broker, listener)) = cluster {
        super::cluster::listen(Arc::downgrade(&state.0), pg_bus, pg_broker, listener);
    }
    Ok(Built {
        state,
        sandbox: sandbox_listener,
        browser,
    })
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
