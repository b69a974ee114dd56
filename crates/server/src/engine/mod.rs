//! The engine: runs bank sessions. A scheduler starts one-shot sessions every `scrape_interval`
//! and keeps persistent sessions alive (reading every `poll_interval`, logging in again when
//! the bank drops them); sessions run in a bounded pool, each holding a lease row in the
//! database so exactly one instance drives an account. Retryable failures are retried with
//! backoff; fatal ones block the account (skip-on-fatal) until `restart`.
//!
//! Assisted login (docs/product.md §6): when the bank asks for a code, the session opens an assistance
//! request and waits for the code as a suspended future (see [`codes::EngineCodes`]).

mod codes;
pub mod connector;
pub(crate) mod device;
pub mod evidence;
pub(crate) mod live;
mod run;
// Issue 11 (scale-out): take-over of a dead instance's sessions.
mod takeover;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reconbanker_store::{
    now, AccountConfigRow, AccountId, EngineAccount, MovementRow, NewMovement, RunId, RunRow, Store, StoreResult,
    UserId,
};
use serde_json::json;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::assistance::Assistance;
use crate::domain::account_config::{self, SessionType};
use crate::engine::live::{LiveGuard, LiveSessions, Phase};
use crate::push::events::{EventHub, EventKind};
use crate::support::crypto::Sealer;
use crate::support::time::after;
use codes::EngineCodes;
use connector::{BankConnector, BankSession, ConnectorError, Credentials, Fatal};
use run::{RetryPolicy, RunOutcome, StopReason};

/// Issue 9: an account keeps the failure evidence of at most one run in this time.
const EVIDENCE_SPACING: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How often a one-shot account is read (20 min).
    pub scrape_interval: Duration,
    /// How often a persistent session reads (60 s); also the pause before a persistent session
    /// that ended is started again.
    pub poll_interval: Duration,
    /// Sessions running at once (waiting logins included).
    pub max_sessions: usize,
    /// Retries of a retryable failure within one session.
    pub retry_attempts: u32,
    /// First retry delay; doubled each time, with jitter.
    pub retry_backoff: Duration,
    /// How long a session lease lasts without renewal.
    pub lease_ttl: Duration,
    /// How often the scheduler looks at the accounts.
    pub scan_interval: Duration,
    /// Issue 11: take over the sessions of instances that stopped renewing their leases (on a
    /// database other instances share).
    pub take_over: bool,
    /// Issue 9: runs in a row that end on a bank page that no longer matches its definition
    /// before `session.needs_attention {reason: "definition_broken"}` is emitted (3).
    pub broken_alert_after: u32,
    /// Issue 9: the scheduler's pause after a session that ended that way (30 min, doubling per
    /// such session, at most 6 h; see [`run::broken_pause`]). An explicit scrape, restart or
    /// reactivate does not wait for it.
    pub broken_pause: Duration,
    /// Issue 9: how long failure evidence is kept (7 days, `RECONBANKER_EVIDENCE_DAYS`).
    pub evidence_retention: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            scrape_interval: Duration::from_secs(20 * 60),
            poll_interval: Duration::from_secs(60),
            max_sessions: 1000,
            retry_attempts: 3,
            retry_backoff: Duration::from_secs(2),
            lease_ttl: Duration::from_secs(30),
            scan_interval: Duration::from_secs(5),
            take_over: false,
            broken_alert_after: 3,
            broken_pause: Duration::from_secs(30 * 60),
            evidence_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// The services the engine works with.
pub struct EngineDeps {
    pub store: Arc<dyn Store>,
    pub assistance: Arc<Assistance>,
    pub sessions: LiveSessions,
    pub hub: Arc<EventHub>,
    pub sealer: Sealer,
    /// bank code → connector.
    pub connectors: HashMap<String, Arc<dyn BankConnector>>,
    /// This instance's name on session leases.
    pub owner: String,
    /// Rung when a read stored new movements (they are reconciliation work).
    pub movements_stored: Arc<Notify>,
    /// Builds the passthrough body of a newly stored movement (docs/reconciliation.md §7); the
    /// store decides, in the transaction that stores it, whether it is forwarded.
    pub forward: Forward,
}

/// The passthrough body builder handed to `Store::insert_movements`: the movement as stored and
/// the account's config settings (JSON) as read in that transaction; `None` = not forwarded.
pub type Forward = Arc<dyn Fn(&MovementRow, Option<&str>) -> Option<String> + Send + Sync>;

#[derive(Clone)]
struct Live {
    cancel: CancellationToken,
    /// Wakes a persistent session to read now.
    poke: Arc<Notify>,
    /// Set when a session is asked for while this one is stopping, or a read while this one may
    /// not read again: a new session starts once this one has ended, so an account never has two
    /// sessions at once and an asked-for read is never dropped. A read that begins clears it.
    again: Arc<std::sync::atomic::AtomicBool>,
}

struct Inner {
    deps: EngineDeps,
    cfg: EngineConfig,
    live: Mutex<HashMap<AccountId, Live>>,
    last_started: Mutex<HashMap<AccountId, Instant>>,
    /// Accounts whose session was killed: the scheduler leaves them alone until an explicit
    /// scrape, restart or reactivate (in memory: a restarted process schedules them again).
    held: Mutex<std::collections::HashSet<AccountId>>,
    /// Issue 9: accounts whose bank page no longer matches its definition (in memory, like
    /// `held`: a restarted process tries them once more).
    broken: Mutex<HashMap<AccountId, BrokenStreak>>,
    /// Issue 9: when each account last kept failure evidence (in memory: at most one run's
    /// evidence an hour per account and instance, see [`EVIDENCE_SPACING`]).
    evidence_kept: Mutex<HashMap<AccountId, Instant>>,
    /// Issue 11: accounts taken over from a dead instance, for the scheduler to start now.
    taken_over: Mutex<std::collections::HashSet<AccountId>>,
    pool: Arc<Semaphore>,
    wake: Notify,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// What a bank page gave, without control characters: each becomes a space (a NUL cannot be
/// stored by PostgreSQL, and none can be searched for), the same way on every read so a
/// movement read again is still the same movement. A name left blank is no name.
fn plain_text(movements: Vec<NewMovement>) -> Vec<NewMovement> {
    fn plain(text: String) -> String {
        if text.chars().any(char::is_control) {
            text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
        } else {
            text
        }
    }
    movements
        .into_iter()
        .map(|m| NewMovement {
            external_id: plain(m.external_id),
            amount: plain(m.amount),
            currency: plain(m.currency),
            name: m.name.map(plain).filter(|n| !n.trim().is_empty()),
            description: plain(m.description),
            received_at: plain(m.received_at),
        })
        .collect()
}

/// An account's runs in a row that met a page no longer matching its definition.
#[derive(Clone, Copy, Debug, Default)]
struct BrokenStreak {
    /// Runs in a row.
    runs: u32,
    /// Sessions in a row that ended that way.
    sessions: u32,
    /// The scheduler leaves the account alone until then.
    paused_until: Option<Instant>,
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// Where a session failed, for the event name.
#[derive(Clone, Copy)]
enum Stage {
    Login,
    Scrape,
}

/// What a session uses of its account's configuration. The rest — the other secrets among
/// it — is dropped when it is decoded, not held for as long as a login waits for its code.
struct SessionConfig {
    persistent: bool,
    assisted: bool,
    /// The bank username and password, when both are set.
    login: Option<(String, String)>,
}

impl SessionConfig {
    fn decode(config: Option<AccountConfigRow>, sealer: &crate::support::crypto::Sealer) -> Result<Self, String> {
        let (settings, secrets) = account_config::decode(config.as_ref(), sealer)?;
        Ok(Self {
            persistent: settings.session_type == SessionType::Persistent,
            assisted: settings.login_mode == account_config::LoginMode::Assisted,
            login: secrets.bank_username.zip(secrets.bank_password),
        })
    }
}

impl Engine {
    pub fn new(deps: EngineDeps, cfg: EngineConfig) -> Self {
        let pool = Arc::new(Semaphore::new(cfg.max_sessions.max(1)));
        Self {
            inner: Arc::new(Inner {
                deps,
                cfg,
                live: Mutex::new(HashMap::new()),
                last_started: Mutex::new(HashMap::new()),
                held: Mutex::new(Default::default()),
                broken: Mutex::new(HashMap::new()),
                evidence_kept: Mutex::new(HashMap::new()),
                taken_over: Mutex::new(Default::default()),
                pool,
                wake: Notify::new(),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        }
    }

    /// Runs the scheduler until [`Engine::shutdown`].
    pub fn start(&self) {
        let inner = self.inner.clone();
        self.inner.tasks.spawn(async move { inner.scheduler().await });
        if self.inner.cfg.take_over {
            let inner = self.inner.clone();
            self.inner.tasks.spawn(async move { inner.take_over_loop().await });
        }
    }

    /// Issue 11: on an instance without the `engine` role no session ever starts here (a scrape
    /// asked of it is left to the scheduler of an engine instance).
    pub fn disable(&self) {
        self.inner.shutdown.cancel();
    }

    /// Stops every session (their pending requests are cancelled) and waits for them.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        if tokio::time::timeout(Duration::from_secs(10), self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("sessions did not stop within 10 s");
        }
    }

    /// `POST /accounts/:id/scrape`: run a session now (a live persistent session reads now).
    pub fn scrape_now(&self, account: AccountId) {
        self.release(account);
        match self.live(account) {
            Some(live) if !live.cancel.is_cancelled() => {
                // A persistent session reads when poked; a one-shot session that has already
                // read is ending, so it starts a new one when it has ended (`again`, cleared by
                // every read that begins after this).
                live.again.store(true, std::sync::atomic::Ordering::SeqCst);
                live.poke.notify_one();
            }
            _ => {
                self.inner.spawn_session(account);
            }
        }
    }

    /// `POST /accounts/:id/restart`: clear the fatal block and run a session.
    pub async fn restart(&self, account: AccountId) -> StoreResult<()> {
        self.inner.deps.store.set_scrape_block(account, None).await?;
        self.scrape_now(account);
        Ok(())
    }

    /// `POST /accounts/:id/reactivate`: (re)start the account's session if none is live.
    pub fn reactivate(&self, account: AccountId) {
        self.release(account);
        self.inner.spawn_session(account);
    }

    /// Stops the live session (if any) and cancels pending assistance with `reason`.
    /// Returns whether a session was live.
    pub async fn kill(&self, account: AccountId, user: UserId, reason: &str) -> StoreResult<bool> {
        self.inner
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(account);
        // Close the request with the caller's reason first: the waiting login then finds it
        // closed (and would otherwise close it itself as plain "killed").
        self.inner
            .deps
            .assistance
            .cancel_for_account(account, user, reason)
            .await?;
        // The entry stays until the session has really ended (see `spawn_session`).
        let live = self.live(account).filter(|l| !l.cancel.is_cancelled());
        if let Some(l) = &live {
            l.again.store(false, std::sync::atomic::Ordering::SeqCst);
            l.cancel.cancel();
        }
        Ok(live.is_some())
    }

    fn release(&self, account: AccountId) {
        self.inner
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&account);
        if let Some(streak) = self.inner.lock_broken().get_mut(&account) {
            streak.paused_until = None;
        }
    }

    fn live(&self, account: AccountId) -> Option<Live> {
        self.inner
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&account)
            .cloned()
    }
}

/// What one run of a session needs, besides the credentials.
#[derive(Clone, Copy)]
struct RunCtx<'a> {
    acc: &'a EngineAccount,
    live: &'a Live,
    guard: &'a LiveGuard,
    assisted: bool,
    persistent: bool,
}

/// What a run read, whatever its result.
#[derive(Default)]
struct SessionReport {
    reads: u32,
    movements_read: i32,
    new_movements: i32,
    /// Issue 9: the run's failure evidence (at most `codes::MAX_EVIDENCE`).
    evidence: Vec<connector::FailureEvidence>,
}

impl Inner {
    fn lock_broken(&self) -> std::sync::MutexGuard<'_, HashMap<AccountId, BrokenStreak>> {
        self.broken.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a run for the broken-definition streak; returns the runs in a row so far (0 when
    /// the run did not meet a broken page, which ends the streak).
    fn count_broken(&self, account: AccountId, broken: bool) -> u32 {
        let mut all = self.lock_broken();
        if !broken {
            all.remove(&account);
            return 0;
        }
        let streak = all.entry(account).or_default();
        streak.runs += 1;
        streak.runs
    }

    /// Whether a failed run of `account` keeps its evidence: the first one, then at most one
    /// run an hour. A bank that fails every run for a day would otherwise store thousands of
    /// screenshots and DOMs per account for the retention period; the first failure, and one
    /// an hour after it, are what an operator reads.
    fn may_keep_evidence(&self, account: AccountId) -> bool {
        let mut kept = self.evidence_kept.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match kept.get(&account) {
            Some(at) if now.duration_since(*at) < EVIDENCE_SPACING => false,
            _ => {
                kept.insert(account, now);
                true
            }
        }
    }

    /// A session ended on a broken page: the scheduler pauses the account.
    fn pause_broken(&self, account: AccountId) {
        if let Some(streak) = self.lock_broken().get_mut(&account) {
            streak.sessions += 1;
            let pause = run::broken_pause(self.cfg.broken_pause, streak.sessions);
            streak.paused_until = Some(Instant::now() + pause);
            tracing::warn!(account = %account, pause_secs = pause.as_secs(),
                "the bank's page no longer matches its definition; pausing the account");
        }
    }

    async fn publish(&self, kind: EventKind, acc: &EngineAccount, data: serde_json::Value) {
        // Boxed, so a session's future does not reserve an event's writing while it waits.
        let emit = self.deps.hub.emit(kind, acc.account.user_id, acc.account.id, data);
        if let Err(e) = Box::pin(emit).await {
            tracing::warn!(error = %e, kind = kind.as_str(), "could not record an event");
        }
    }

    /// Starts a session task unless one is live; returns whether one is live now.
    fn spawn_session(self: &Arc<Self>, account: AccountId) -> bool {
        if self.shutdown.is_cancelled() {
            return false;
        }
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(current) = live.get(&account) {
            if current.cancel.is_cancelled() {
                // Still stopping: start a new one when it has ended.
                current.again.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            return true;
        }
        let entry = Live {
            cancel: self.shutdown.child_token(),
            poke: Arc::new(Notify::new()),
            again: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        };
        live.insert(account, entry.clone());
        drop(live);
        self.last_started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(account, Instant::now());
        let inner = self.clone();
        self.tasks.spawn(async move {
            inner.run_account(account, &entry).await;
            {
                let mut live = inner.live.lock().unwrap_or_else(|p| p.into_inner());
                if live.get(&account).is_some_and(|l| Arc::ptr_eq(&l.poke, &entry.poke)) {
                    live.remove(&account);
                }
            }
            if entry.again.load(std::sync::atomic::Ordering::SeqCst) {
                inner.spawn_session(account);
            }
        });
        true
    }

    async fn scheduler(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.cfg.scan_interval) => {}
                _ = self.wake.notified() => {}
            }
            let accounts = match self.deps.store.engine_accounts().await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler could not list accounts");
                    continue;
                }
            };
            for acc in accounts {
                if let Some(persistent) = self.due(&acc) {
                    tracing::debug!(account = %acc.account.id, persistent, "scheduled session");
                    self.spawn_session(acc.account.id);
                }
            }
        }
    }

    /// Whether the scheduler should start the account now (`Some(persistent)`).
    fn due(&self, acc: &EngineAccount) -> Option<bool> {
        if acc.account.scrape_blocked_at.is_some()
            || self
                .held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&acc.account.id)
        {
            return None;
        }
        if self
            .lock_broken()
            .get(&acc.account.id)
            .and_then(|s| s.paused_until)
            .is_some_and(|until| Instant::now() < until)
        {
            return None;
        }
        let (settings, secrets) = account_config::decode(acc.config.as_ref(), &self.deps.sealer).ok()?;
        if secrets.bank_username.is_none() || secrets.bank_password.is_none() {
            return None;
        }
        let persistent = settings.session_type == SessionType::Persistent;
        let id = acc.account.id;
        // Issue 11: taken over from a dead instance: its session runs again now.
        if self.taken_over.lock().unwrap_or_else(|p| p.into_inner()).remove(&id) {
            return Some(persistent);
        }
        let mut last = self.last_started.lock().unwrap_or_else(|p| p.into_inner());
        let wait = if persistent {
            self.cfg.poll_interval
        } else {
            self.cfg.scrape_interval
        };
        match last.get(&id) {
            // First sight: persistent sessions start now; one-shot accounts wait one interval.
            None if persistent => Some(true),
            None => {
                last.insert(id, Instant::now());
                None
            }
            Some(t) if t.elapsed() >= wait => Some(persistent),
            Some(_) => None,
        }
    }

    async fn run_account(self: &Arc<Self>, id: AccountId, live: &Live) {
        // A session killed while it waits for a pool slot never starts.
        let permit = tokio::select! {
            p = self.pool.clone().acquire_owned() => p,
            _ = live.cancel.cancelled() => return,
        };
        let Ok(_permit) = permit else { return };
        let mut acc = match self.deps.store.engine_account(id).await {
            Ok(Some(acc)) => acc,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, account = %id, "could not load account for a session");
                return;
            }
        };
        match self.hold_lease(id).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(account = %id, "another instance holds the session lease");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, account = %id, "could not take the session lease");
                return;
            }
        }
        let renew = self.clone().renew_lease(id, live.cancel.clone());
        let renewer = tokio::spawn(renew);
        let guard = self.deps.sessions.enter(id);
        // The configuration is handed over to be decoded once: the session keeps what it uses.
        let config = acc.config.take();
        let reason = self.drive(&acc, config, live, &guard).await;
        drop(guard);
        renewer.abort();
        if let Err(e) = self.deps.store.release_lease(id, &self.deps.owner).await {
            tracing::warn!(error = %e, account = %id, "could not release the session lease");
        }
        self.publish(EventKind::SessionStopped, &acc, json!({ "reason": reason.as_str() }))
            .await;
    }

    /// Takes or renews this instance's lease on the account for one `lease_ttl`.
    async fn hold_lease(&self, id: AccountId) -> StoreResult<bool> {
        let at = now();
        self.deps
            .store
            .acquire_lease(id, &self.deps.owner, after(at, self.cfg.lease_ttl), at)
            .await
    }

    async fn renew_lease(self: Arc<Self>, id: AccountId, cancel: CancellationToken) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(self.cfg.lease_ttl / 3) => {}
            }
            match self.hold_lease(id).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(account = %id, "lost the session lease; stopping the session");
                    cancel.cancel();
                    return;
                }
                Err(e) => tracing::warn!(error = %e, account = %id, "could not renew the session lease"),
            }
        }
    }

    /// One session: logins, reads, retries. Returns why it stopped.
    /// `config` is the account's configuration, taken out of `acc` to be decoded once.
    async fn drive(
        self: &Arc<Self>,
        acc: &EngineAccount,
        config: Option<AccountConfigRow>,
        live: &Live,
        guard: &LiveGuard,
    ) -> StopReason {
        let SessionConfig {
            persistent,
            assisted,
            login,
        } = match SessionConfig::decode(config, &self.deps.sealer) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, account = %acc.account.id, "account config unreadable");
                return StopReason::ConfigUnreadable;
            }
        };
        let kind = if persistent { "persistent" } else { "one-shot" };
        self.publish(EventKind::SessionStarted, acc, json!({ "kind": kind }))
            .await;
        let creds = match login {
            Some((username, password)) => Some(Credentials {
                remembered: device::load(&self.deps, acc.account.id, &username).await,
                username,
                password,
            }),
            None => None,
        };
        let ctx = RunCtx {
            acc,
            live,
            guard,
            assisted,
            persistent,
        };
        let policy = RetryPolicy {
            attempts: self.cfg.retry_attempts,
            base: self.cfg.retry_backoff,
        };
        let mut failures = 0u32;
        loop {
            let mut run = RunRow {
                id: RunId::new(),
                account_id: acc.account.id,
                kind: kind.into(),
                started_at: now(),
                ended_at: None,
                outcome: "running".into(),
                failure_reason: None,
                movements_read: 0,
                new_movements: 0,
            };
            if let Err(e) = self.deps.store.create_run(&run).await {
                tracing::warn!(error = %e, "could not record the run");
            }
            guard.set_phase(Phase::Starting);
            let (mut report, result) = match &creds {
                Some(creds) => {
                    let mut report = SessionReport::default();
                    let result = self.login_and_read(&ctx, creds, &mut report).await;
                    (report, result)
                }
                None => (
                    SessionReport::default(),
                    Err((Stage::Login, ConnectorError::Fatal(Fatal::NotConfigured))),
                ),
            };
            // A session that read the bank was healthy: its failures start over.
            if report.reads > 0 {
                failures = 0;
            }
            let connector_result = result.as_ref().map(|_| ()).map_err(|(_, e)| e.clone());
            let outcome = RunOutcome::of(&connector_result, report.reads, self.shutdown.is_cancelled());
            run.outcome = outcome.as_str().into();
            run.failure_reason = outcome.reason(&connector_result);
            run.ended_at = Some(now());
            run.movements_read = report.movements_read;
            run.new_movements = report.new_movements;
            let broken = matches!(result, Err((_, ConnectorError::Broken { .. })));
            // A run cut short (kill, shutdown) says nothing about the page.
            let streak = if matches!(result, Err((_, ConnectorError::Cancelled))) {
                0
            } else {
                self.count_broken(acc.account.id, broken)
            };
            let alert = broken && streak == self.cfg.broken_alert_after.max(1);
            // Boxed, like the rare steps below: a session's future keeps room only for what is
            // live while its login waits.
            Box::pin(self.finish_run(acc, &run, &result, alert)).await;
            if !report.evidence.is_empty() && self.may_keep_evidence(acc.account.id) {
                let secrets: Vec<&str> = creds
                    .as_ref()
                    .map(|c| vec![c.password.as_str(), c.username.as_str()])
                    .unwrap_or_default();
                let taken = std::mem::take(&mut report.evidence);
                Box::pin(evidence::keep(
                    &self.deps,
                    &run,
                    taken,
                    &secrets,
                    self.cfg.evidence_retention,
                ))
                .await;
            }
            if alert {
                guard.set_phase(Phase::NeedsAttention);
            }
            match result {
                Ok(()) => return StopReason::Completed,
                Err((_, ConnectorError::Cancelled)) => return StopReason::cancelled(self.shutdown.is_cancelled()),
                Err((_, ConnectorError::SessionExpired)) if report.reads > 0 => {
                    // The bank dropped a persistent session that was working: log in again at once.
                    tracing::info!(account = %acc.account.id, "bank dropped the session; logging in again");
                    continue;
                }
                Err((_, ConnectorError::Fatal(f))) => {
                    Box::pin(self.block(acc, guard, f)).await;
                    return StopReason::Fatal(f);
                }
                // Dropped before the first read counts as a failure: a bank that ends every
                // session at once must not be logged into in a tight loop.
                // A broken page is retried like a retryable failure (a page that failed to render
                // once looks the same), then the account is paused (`pause_broken`).
                Err((
                    _,
                    ConnectorError::Retryable(_) | ConnectorError::SessionExpired | ConnectorError::Broken { .. },
                )) => {
                    failures += 1;
                    let Some(wait) = policy.delay(failures, run::jitter()) else {
                        if broken {
                            self.pause_broken(acc.account.id);
                        }
                        return StopReason::RetriesExhausted;
                    };
                    tokio::select! {
                        _ = live.cancel.cancelled() => return StopReason::cancelled(self.shutdown.is_cancelled()),
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// Records the end of a run, with its failure event and, with `alert`, the broken-definition
    /// alert (logged and queued for the webhook in the same transaction).
    async fn finish_run(
        &self,
        acc: &EngineAccount,
        run: &RunRow,
        result: &Result<(), (Stage, ConnectorError)>,
        alert: bool,
    ) {
        let (stage, err) = match result {
            Err((
                stage,
                e @ (ConnectorError::Fatal(_) | ConnectorError::Retryable(_) | ConnectorError::Broken { .. }),
            )) => (*stage, e),
            _ => {
                if let Err(e) = self.deps.store.finish_run(run, &[]).await {
                    tracing::warn!(error = %e, "could not record the end of the run");
                }
                return;
            }
        };
        let sub = match self.deps.hub.subscription(acc.account.id).await {
            Ok(sub) => sub,
            Err(e) => {
                // The events are still logged and streamed; only their webhooks are lost.
                tracing::error!(error = %e, account = %acc.account.id,
                    "could not read the notification subscription; the failure event goes without its webhook");
                Default::default()
            }
        };
        let kind = match stage {
            Stage::Login => EventKind::LoginFailed,
            Stage::Scrape => EventKind::ScrapeFailed,
        };
        let (user, account) = (acc.account.user_id, acc.account.id);
        let data = json!({ "reason": run.failure_reason });
        let mut events = vec![self.deps.hub.build(kind, user, account, data, &sub, None)];
        if let (true, ConnectorError::Broken { step, .. }) = (alert, err) {
            let data = json!({ "reason": run::BROKEN_REASON, "step": step });
            events.push(
                self.deps
                    .hub
                    .build(EventKind::SessionNeedsAttention, user, account, data, &sub, None),
            );
        }
        match self.deps.store.finish_run(run, &events).await {
            Ok((_, logged)) => self.deps.hub.publish(logged),
            Err(e) => tracing::warn!(error = %e, "could not record the end of the run"),
        }
    }

    /// Skip-on-fatal: the scheduler leaves the account alone until `restart`.
    async fn block(&self, acc: &EngineAccount, guard: &LiveGuard, fatal: Fatal) {
        let reason = fatal.as_str();
        if let Err(e) = self
            .deps
            .store
            .set_scrape_block(acc.account.id, Some((now(), reason)))
            .await
        {
            tracing::warn!(error = %e, "could not record the fatal block");
        }
        guard.set_phase(Phase::NeedsAttention);
        self.publish(EventKind::SessionNeedsAttention, acc, json!({ "reason": reason }))
            .await;
    }

    /// Logs in (asking for codes as needed), then reads once (one-shot) or keeps reading
    /// (persistent) until stopped; `report` counts what was read, whatever the result.
    async fn login_and_read(
        self: &Arc<Self>,
        ctx: &RunCtx<'_>,
        creds: &Credentials,
        report: &mut SessionReport,
    ) -> Result<(), (Stage, ConnectorError)> {
        let RunCtx {
            acc,
            live,
            guard,
            assisted,
            ..
        } = *ctx;
        let connector = self.deps.connectors.get(&acc.account.bank_code).cloned().ok_or((
            Stage::Login,
            ConnectorError::Retryable("no connector for this bank".into()),
        ))?;
        let mut codes = EngineCodes::new(
            &self.deps.assistance,
            acc,
            assisted,
            &live.cancel,
            &self.shutdown,
            guard,
        );
        let login = tokio::select! {
            r = connector.login(creds, &mut codes) => r,
            _ = live.cancel.cancelled() => Err(ConnectorError::Cancelled),
        };
        // The steps after the login are boxed: their state (closing the request, the reading
        // loop) would otherwise be reserved in every login that waits for a code.
        Box::pin(codes.finish(login.as_ref().err())).await;
        report.evidence.extend(codes.take_evidence());
        let session: Box<dyn BankSession> = login.map_err(|e| (Stage::Login, e))?;
        Box::pin(self.read_session(ctx, creds, session, report)).await
    }

    /// After a login: remembers the device, then reads once (one-shot) or keeps reading
    /// (persistent) until stopped.
    async fn read_session(
        self: &Arc<Self>,
        ctx: &RunCtx<'_>,
        creds: &Credentials,
        mut session: Box<dyn BankSession>,
        report: &mut SessionReport,
    ) -> Result<(), (Stage, ConnectorError)> {
        let RunCtx {
            acc,
            live,
            guard,
            persistent,
            ..
        } = *ctx;
        if let Some(kept) = session.remembered() {
            if creds.remembered.as_deref() != Some(kept.as_str()) {
                device::keep(&self.deps, acc.account.id, &creds.username, &kept).await;
            }
        }
        self.publish(EventKind::LoginSucceeded, acc, json!({})).await;
        guard.set_phase(Phase::Running);
        loop {
            if !live.cancel.is_cancelled() {
                // This read serves every scrape asked for so far.
                live.again.store(false, std::sync::atomic::Ordering::SeqCst);
            }
            let read = tokio::select! {
                r = session.read_movements() => r,
                _ = live.cancel.cancelled() => Err(ConnectorError::Cancelled),
            };
            let movements = match read {
                Ok(m) => m,
                Err(ConnectorError::Cancelled) => {
                    let _ = session.logout().await;
                    return Err((Stage::Scrape, ConnectorError::Cancelled));
                }
                Err(e) => {
                    if report.evidence.len() < codes::MAX_EVIDENCE {
                        report.evidence.extend(session.take_evidence());
                    }
                    return Err((Stage::Scrape, e));
                }
            };
            let movements = plain_text(movements);
            let new = self
                .deps
                .store
                .insert_movements(acc.account.id, &movements, now(), &*self.deps.forward)
                .await
                .map_err(|e| {
                    (
                        Stage::Scrape,
                        ConnectorError::Retryable(format!("storing movements: {e}")),
                    )
                })?;
            if new > 0 {
                self.deps.movements_stored.notify_one();
                // New movements may have been forwarded (passthrough deliveries).
                self.deps.hub.wake_outbox();
            }
            report.reads += 1;
            report.movements_read += movements.len() as i32;
            report.new_movements += new as i32;
            self.publish(EventKind::ScrapeSucceeded, acc, json!({ "new_movements": new }))
                .await;
            if !persistent {
                if let Err(e) = session.logout().await {
                    tracing::debug!(error = %e, "logout failed");
                }
                return Ok(());
            }
            tokio::select! {
                _ = live.cancel.cancelled() => {
                    let _ = session.logout().await;
                    return Err((Stage::Scrape, ConnectorError::Cancelled));
                }
                _ = tokio::time::sleep(self.cfg.poll_interval) => {}
                _ = live.poke.notified() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_from_a_bank_page_become_spaces() {
        let m = |name: Option<&str>, description: &str| NewMovement {
            external_id: "A\u{0}1".into(),
            amount: "10.00".into(),
            currency: "UYU".into(),
            name: name.map(str::to_owned),
            description: description.into(),
            received_at: "2026-05-13T12:00:00Z".into(),
        };
        let out = plain_text(vec![
            m(Some("JUAN\u{0}PEREZ"), "line\nbreak\u{7f}"),
            m(Some("\u{0}\t"), "ok"),
        ]);
        assert_eq!(out[0].external_id, "A 1");
        assert_eq!(out[0].name.as_deref(), Some("JUAN PEREZ"));
        assert_eq!(out[0].description, "line break ");
        assert_eq!(out[1].name, None, "a name of control characters only is no name");
        assert_eq!(out[1].description, "ok");
        assert_eq!(out[1].received_at, "2026-05-13T12:00:00Z");
    }
}
