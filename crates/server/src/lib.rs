//! Reconbanker: logs into bank websites for its users, keeps the logins alive, and pauses
//! assisted logins for one-time codes that arrive from a human or from the user's own services
//! through the External API (`/v1`).
//!
//! `main.rs` is thin; this crate exposes [`run`] (and [`App`] for tests that need the
//! in-process services) so tests start the real application on `127.0.0.1:0`. The layers and
//! the module map are in `docs/architecture.md`.

// `pub` only where the binary, the integration tests or the benchmarks name a path; the rest
// of the crate is reached through `App`/`AppState`.
pub(crate) mod app;
pub(crate) mod assistance;
pub mod auth;
pub mod config;
pub(crate) mod connectors;
pub mod domain;
pub(crate) mod engine;
pub mod http;
pub mod push;
pub(crate) mod reconcile;
pub mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::engine::connector::BankConnector;
use crate::support::clock::Clock;

pub use crate::app::{AppInner, AppState};
// Issue 11: `admin rotate-master-key`.
pub use crate::app::master_key;
// The benches run the checkpoint loop next to an app they do not `serve`.
pub use crate::app::checkpoint;
pub use crate::config::ConfigError;
pub use crate::connectors::SANDBOX_BANK_CODE;
/// The connector traits, for embedders and tests that bring their own bank.
pub use crate::engine::connector;
/// The pass's name score, for the naive baseline of the reconciliation benchmark.
#[cfg(feature = "test-support")]
pub use crate::reconcile::matching::{name_score, STRONG_BAND};

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

/// Opens the store named by the config (creating the data directory for SQLite) and migrates it.
pub async fn open_store(config: &Config) -> Result<Arc<dyn reconbanker_store::Store>, StartError> {
    app::wiring::open_store(config).await
}

/// `reconbanker evidence <run>` (issue 9): the run's unexpired failure evidence, opened with
/// the master key, as one JSON document (the shape of `GET /accounts/:id/runs/:runId/evidence`
/// with the run and its account). With `out`, each screenshot (`<n>-<step>.jpg`) and blanked DOM
/// (`<n>-<step>.html`) is written there too and the document names the files instead of
/// carrying them. For the operator at the machine: whoever reads the database and the master
/// key can read the evidence anyway, so there is no owner check here.
pub async fn evidence_of_run(config: &Config, run: &str, out: Option<&std::path::Path>) -> Result<String, StartError> {
    use base64::Engine as _;
    let run: reconbanker_store::RunId = run
        .trim()
        .parse()
        .map_err(|_| StartError::Other(format!("{run:?} is not a run id (a UUID, as the dashboard shows it)")))?;
    let secrets = crate::config::Secrets::load_or_create(config)?;
    let sealer = crate::support::crypto::Sealer::new(secrets.master_key.expose());
    let store = open_store(config).await?;
    let found = store.run_evidence(run, reconbanker_store::now()).await;
    store.close().await;
    let Some((account, rows)) = found? else {
        return Err(StartError::Other(format!("no run {run}")));
    };
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).map_err(|e| StartError::Other(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut list = Vec::with_capacity(rows.len());
    for (n, row) in rows.iter().enumerate() {
        let opened = engine::evidence::open(&sealer, row).map_err(|_| {
            StartError::Other(format!(
                "evidence {} does not open with this master key (RECONBANKER_MASTER_KEY or the data directory's)",
                row.id.0
            ))
        })?;
        let mut item = serde_json::json!({
            "id": row.id.0,
            "takenAt": row.taken_at,
            "expiresAt": row.expires_at,
            "step": opened.step,
            "url": opened.url,
            "title": opened.title,
            "trail": opened.trail,
        });
        match out {
            None => {
                item["dom"] = opened.dom.into();
                item["screenshotJpeg"] = opened.screenshot_jpeg.into();
            }
            Some(dir) => {
                // The step names the files, reduced to what is safe in a file name.
                let step: String = row
                    .step
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                let stem = dir.join(format!("{}-{step}", n + 1));
                let jpg = stem.with_extension("jpg");
                let html = stem.with_extension("html");
                let jpeg = base64::engine::general_purpose::STANDARD
                    .decode(opened.screenshot_jpeg.as_bytes())
                    .map_err(|_| StartError::Other(format!("evidence {}: the screenshot is not base64", row.id.0)))?;
                std::fs::write(&jpg, jpeg)
                    .map_err(|e| StartError::Other(format!("cannot write {}: {e}", jpg.display())))?;
                std::fs::write(&html, opened.dom)
                    .map_err(|e| StartError::Other(format!("cannot write {}: {e}", html.display())))?;
                item["screenshotFile"] = jpg.display().to_string().into();
                item["domFile"] = html.display().to_string().into();
            }
        }
        list.push(item);
    }
    let doc = serde_json::json!({ "run": run.0, "account": account.0, "evidence": list });
    Ok(serde_json::to_string_pretty(&doc).unwrap_or_default())
}

/// The assembled application: state plus the background work it owns.
pub struct App {
    pub state: AppState,
    cancel: CancellationToken,
    /// The embedded sandbox bank's listener, bound at build time (its URL is known then).
    sandbox: Option<TcpListener>,
    /// On SQLite: this process's exclusive claim on the database, released when serving ends.
    instance_lock: Option<app::instance_lock::InstanceLock>,
    /// Issue 11: the `/metrics` listener (`RECONBANKER_METRICS_ADDR`), bound at build time.
    metrics: Option<TcpListener>,
    /// The browser of the browser banks: shut down (its files removed) when serving ends.
    browser: Arc<reconbanker_browser::BrowserRuntime>,
}

/// What tests (and embedders) may swap in.
#[derive(Default)]
pub struct AppOptions {
    /// The clock of deadlines: assistance timeouts, reconciliation polls and expiry (default:
    /// the system clock).
    pub clock: Option<Arc<dyn Clock>>,
    /// Connectors by bank code, added to (or replacing) the built-in ones.
    pub connectors: Vec<(String, Arc<dyn BankConnector>)>,
}

impl App {
    /// Loads secrets, opens and migrates the store, seeds the built-in banks, cleans up after a
    /// previous process, and builds the services.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        Self::build_with(config, AppOptions::default()).await
    }

    pub async fn build_with(config: Config, options: AppOptions) -> Result<Self, StartError> {
        let instance_lock = app::instance_lock::acquire(&config)?;
        let app::wiring::Built {
            state,
            sandbox,
            browser,
        } = app::wiring::build(config, options).await?;
        let metrics = match state.config.metrics_addr {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
                StartError::Other(format!(
                    "cannot listen for metrics on {addr}: {e} (set RECONBANKER_METRICS_ADDR to a free address, or unset it)"
                ))
            })?),
            None => None,
        };
        Ok(Self {
            state,
            cancel: CancellationToken::new(),
            sandbox,
            instance_lock,
            metrics,
            browser,
        })
    }

    /// Issue 11: where `GET /metrics` answers (`None` without `RECONBANKER_METRICS_ADDR`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` resolves, then stops background work, writes back what is
    /// buffered (API-key usage) and closes the database.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let state = self.state.clone();
        let background = tokio::spawn(app::upkeep::run(state.clone(), self.cancel.clone()));
        let checkpoints = tokio::spawn(app::checkpoint::run(
            state.store.clone(),
            app::checkpoint::CHECKPOINT_INTERVAL,
            self.cancel.clone(),
        ));
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
        // Issue 11: `/metrics` on its own listener, and the exporter's upkeep (it folds recorded
        // durations into their buckets, so memory stays bounded between scrapes).
        if let (Some(listener), Some(handle)) = (self.metrics, state.metrics_export.clone()) {
            let addr = listener.local_addr()?;
            tracing::info!(%addr, "metrics on http://{addr}/metrics");
            let router = http::metrics::exporter_router(state.clone(), handle.clone());
            let cancel = self.cancel.clone();
            tokio::spawn(async move {
                let stopped = cancel.clone();
                let served = axum::serve(listener, router)
                    .with_graceful_shutdown(async move { stopped.cancelled().await })
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "the metrics listener stopped");
                }
            });
            let cancel = self.cancel.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tick.tick() => handle.run_upkeep(),
                    }
                }
            });
        }
        // Issue 11: the roles this instance runs (`RECONBANKER_ROLES`).
        let roles = state.config.roles;
        let mut workers = Vec::new();
        if roles.engine {
            state.engine.start();
            workers.push(tokio::spawn(state.poller.clone().run(self.cancel.clone())));
            workers.push(tokio::spawn(state.matcher.clone().run(self.cancel.clone())));
            workers.push(tokio::spawn(state.expiry.clone().run(self.cancel.clone())));
        } else {
            state.engine.disable();
        }
        if roles.push {
            workers.push(tokio::spawn(state.webhooks.clone().run(self.cancel.clone())));
        }
        let (router, shortcut) = if roles.api {
            // Request metrics count by the router's matched route: no shortcut past it then.
            let shortcut = (!state.metrics.is_on()).then(|| state.clone());
            (http::router(state.clone()), shortcut)
        } else {
            (http::probes_router(state.clone()), None)
        };
        let service = http::service(router, shortcut, state.config.client_timeout);
        // The line process supervisors and the multi-process tests wait for: migrated, cleaned
        // up after the previous process, every worker started.
        let addr = listener.local_addr()?;
        tracing::info!(
            %addr,
            backend = state.store.backend(),
            instance = %state.instance_id,
            roles = %http::roles_text(roles),
            "reconbanker ready on http://{addr}"
        );
        let served: std::io::Result<()> = {
            // Open event streams and sockets end when shutdown begins, or they would hold it.
            let closing = state.streams_closing.clone();
            http::server::serve(listener, service, state.config.client_timeout, async move {
                shutdown.await;
                closing.cancel();
            })
            .await;
            Ok(())
        };
        self.cancel.cancel();
        let _ = background.await;
        let _ = checkpoints.await;
        for worker in workers {
            let _ = worker.await;
        }
        state.engine.shutdown().await;
        self.browser.shutdown().await;
        if let Err(e) = state.keys.flush_usage().await {
            tracing::warn!(error = %e, "could not write back API-key usage at shutdown");
        }
        state.store.close().await;
        drop(self.instance_lock);
        served.map_err(StartError::Io)
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
