//! The browser runtime (CONNECTORS §2): one shared Chromium, launched on the first lease and
//! again after it died; one incognito browser context per login, leased from a semaphore and
//! disposed when the lease is dropped (a cancelled login never leaks a context).
//!
//! This file and `page.rs` are the only code that names chromiumoxide: everything else talks to
//! [`BrowserRuntime`] and [`ContextLease`](crate::page::ContextLease).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::browser::BrowserContextId;
use chromiumoxide::cdp::browser_protocol::target::{
    CreateBrowserContextParams, CreateTargetParams, GetBrowserContextsParams,
};
use chromiumoxide::Browser;
use futures_util::StreamExt;
use tokio::sync::{mpsc, Mutex, OwnedSemaphorePermit, Semaphore};

use crate::def::BankDef;
use crate::page::ContextLease;

/// Settings of the runtime (CONNECTORS §5), read from the environment by [`RuntimeConfig::from_env`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The Chromium binary (`RECONBANKER_CHROMIUM`, else the first of `chromium`,
    /// `chromium-headless-shell` on `PATH`, else `/usr/bin/chromium`).
    pub chromium: Option<PathBuf>,
    /// Contexts alive at once (`RECONBANKER_BROWSER_CONTEXTS`, default 16). More logins queue.
    pub contexts: usize,
    /// Of those, how many may be parked on an OTP screen (`RECONBANKER_BROWSER_WAITING`, default
    /// half the contexts), so waiting logins cannot starve reads.
    pub waiting: usize,
    /// Contexts leased before the browser is recycled (`RECONBANKER_BROWSER_RECYCLE`, default 500).
    pub recycle_after: u64,
    /// Where each launched browser gets its private `--user-data-dir` (under the data dir's `tmp/`).
    pub scratch_dir: PathBuf,
    /// `false` runs headful (for `bank try --headful` under a display).
    pub headless: bool,
    /// Per CDP command.
    pub command_timeout: Duration,
}

impl RuntimeConfig {
    /// The defaults of CONNECTORS §5 with `data_dir/tmp` as scratch space, overridden by the
    /// environment. Errors name the variable.
    pub fn from_env(data_dir: &Path) -> Result<Self, String> {
        let num = |name: &str, default: u64| -> Result<u64, String> {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{name}: expected a positive integer, got {v:?}")),
                Err(_) => Ok(default),
            }
        };
        let contexts = usize::try_from(num("RECONBANKER_BROWSER_CONTEXTS", 16)?).unwrap_or(16);
        let waiting = usize::try_from(num("RECONBANKER_BROWSER_WAITING", (contexts as u64 / 2).max(1))?)
            .unwrap_or(8)
            .min(contexts);
        Ok(RuntimeConfig {
            chromium: find_chromium(),
            contexts,
            waiting,
            recycle_after: num("RECONBANKER_BROWSER_RECYCLE", 500)?,
            scratch_dir: data_dir.join("tmp"),
            headless: true,
            command_timeout: Duration::from_secs(15),
        })
    }
}

/// The Chromium binary to use: `RECONBANKER_CHROMIUM`, else `chromium` or
/// `chromium-headless-shell` on `PATH`, else `/usr/bin/chromium` if it exists.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RECONBANKER_CHROMIUM").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-headless-shell"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    let debian = PathBuf::from("/usr/bin/chromium");
    debian.is_file().then_some(debian)
}

/// How to install Chromium, for messages shown when none is found.
pub const INSTALL_HINT: &str =
    "no Chromium found: install Debian's package (`apt-get install chromium`) or set RECONBANKER_CHROMIUM to the binary";

/// Why a lease could not be had. Always worth another try later (the engine retries).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    #[error("{INSTALL_HINT}")]
    NoChromium,
    #[error("chromium could not be started: {0}")]
    Launch(String),
    #[error("browser: {0}")]
    Cdp(String),
    #[error("the browser runtime is shut down")]
    Closed,
}

/// One launched Chromium.
pub(crate) struct Live {
    pub(crate) browser: Browser,
    /// Set when the CDP connection ended or a health check failed.
    pub(crate) dead: AtomicBool,
    /// Contexts leased from this process (for recycling).
    leased: AtomicU64,
    pid: Option<u32>,
    /// Fires when the process is found dead.
    pub(crate) died: tokio::sync::Notify,
    /// Dropping or firing it kills the process (its watcher task owns the `Child`).
    kill: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// Turns `true` once the process has exited and its files are removed.
    gone: tokio::sync::watch::Receiver<bool>,
}

impl Live {
    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// Has the process watcher kill the browser (once; later calls do nothing).
    fn kill(&self) {
        let kill = self
            .kill
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(kill) = kill {
            let _ = kill.send(());
        }
    }

    fn mark_dead(&self) {
        if !self.dead.swap(true, Ordering::SeqCst) {
            tracing::warn!(pid = ?self.pid, "chromium died; the next lease relaunches it");
        }
        self.died.notify_waiters();
    }
}

/// The shared browser of a process. Cheap to clone through `Arc`.
pub struct BrowserRuntime {
    cfg: RuntimeConfig,
    contexts: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
    live: Mutex<Option<Arc<Live>>>,
    launches: AtomicU64,
    /// Contexts to dispose (sent by `ContextLease::drop`, which cannot await).
    dispose_tx: mpsc::UnboundedSender<Disposal>,
    dispose_rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Disposal>>>,
    /// Contexts disposed (or found gone with their browser), and its doorbell.
    disposed: Arc<(AtomicU64, tokio::sync::Notify)>,
}

impl std::fmt::Debug for BrowserRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserRuntime")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl BrowserRuntime {
    /// A runtime; nothing is launched until the first lease.
    pub fn new(cfg: RuntimeConfig) -> Arc<Self> {
        let (dispose_tx, dispose_rx) = mpsc::unbounded_channel();
        Arc::new(BrowserRuntime {
            contexts: Arc::new(Semaphore::new(cfg.contexts.max(1))),
            waiting: Arc::new(Semaphore::new(cfg.waiting.max(1))),
            cfg,
            live: Mutex::new(None),
            launches: AtomicU64::new(0),
            dispose_tx,
            dispose_rx: std::sync::Mutex::new(Some(dispose_rx)),
            disposed: Arc::new((AtomicU64::new(0), tokio::sync::Notify::new())),
        })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.cfg
    }

    /// Whether a Chromium binary was found.
    pub fn available(&self) -> bool {
        self.cfg.chromium.is_some()
    }

    /// How many times Chromium was launched (a relaunch after a crash counts).
    pub fn launches(&self) -> u64 {
        self.launches.load(Ordering::SeqCst)
    }

    /// How many leased contexts were disposed since start.
    pub fn disposed(&self) -> u64 {
        self.disposed.0.load(Ordering::SeqCst)
    }

    /// Resolves once at least `n` contexts were disposed since start.
    pub async fn wait_disposed(&self, n: u64) {
        loop {
            let notified = self.disposed.1.notified();
            if self.disposed() >= n {
                return;
            }
            notified.await;
        }
    }

    /// The process id of the running Chromium, if one runs.
    pub async fn pid(&self) -> Option<u32> {
        let live = self.live.lock().await;
        live.as_ref().filter(|l| !l.is_dead()).and_then(|l| l.pid)
    }

    /// The browser contexts Chromium has open now (`Target.getBrowserContexts`), or `None` when
    /// no browser runs.
    pub async fn open_contexts(&self) -> Option<usize> {
        let live = self.live.lock().await.clone()?;
        let res = live.browser.execute(GetBrowserContextsParams::default()).await.ok()?;
        Some(res.result.browser_context_ids.len())
    }

    /// Leases a fresh incognito context with one page, set up for `def` (locale, time zone,
    /// allowed hosts, blocked resource types). Queues while every context is taken.
    pub async fn lease(self: &Arc<Self>, def: &BankDef) -> Result<ContextLease, RuntimeError> {
        let permit = self
            .contexts
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| RuntimeError::Closed)?;
        let live = self.current().await?;
        // A real crash is seen by the process watcher; a hang by the health task.
        self.open_context(&live, def, permit).await
    }

    /// A permit to park a login on an OTP screen (`RECONBANKER_BROWSER_WAITING`).
    pub(crate) async fn waiting_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.waiting.clone().acquire_owned().await.ok()
    }

    async fn open_context(
        self: &Arc<Self>,
        live: &Arc<Live>,
        def: &BankDef,
        permit: OwnedSemaphorePermit,
    ) -> Result<ContextLease, RuntimeError> {
        let cdp = |e: chromiumoxide::error::CdpError| RuntimeError::Cdp(e.to_string());
        let ctx = live
            .browser
            .create_browser_context(CreateBrowserContextParams::default())
            .await
            .map_err(cdp)?;
        live.leased.fetch_add(1, Ordering::SeqCst);
        // From here on the context must be disposed if anything fails: the guard does it.
        let guard = DisposeGuard {
            tx: self.dispose_tx.clone(),
            live: Arc::downgrade(live),
            ctx: Some(ctx.clone()),
        };
        let params = CreateTargetParams::builder()
            .url("about:blank")
            .browser_context_id(ctx.clone())
            .build()
            .map_err(RuntimeError::Cdp)?;
        let page = live.browser.new_page(params).await.map_err(cdp)?;
        ContextLease::start(page, def, permit, guard, Arc::clone(live), Arc::downgrade(self)).await
    }

    /// The running browser, launched (or relaunched) if there is none, it died, or it served
    /// its `recycle_after` contexts.
    async fn current(self: &Arc<Self>) -> Result<Arc<Live>, RuntimeError> {
        let mut slot = self.live.lock().await;
        if let Some(live) = slot.as_ref() {
            let worn = live.leased.load(Ordering::SeqCst) >= self.cfg.recycle_after;
            if !live.is_dead() && !worn {
                return Ok(Arc::clone(live));
            }
            if worn && !live.is_dead() {
                tracing::info!("recycling chromium after {} contexts", self.cfg.recycle_after);
            }
            // Leases still holding the old one keep it alive; it is killed when the last goes.
        }
        let live = self.launch().await?;
        *slot = Some(Arc::clone(&live));
        Ok(live)
    }

    async fn launch(self: &Arc<Self>) -> Result<Arc<Live>, RuntimeError> {
        // Spawned from a runtime worker thread: with `--pdeathsig` the browser dies with the
        // thread that started it, and a worker lives as long as the runtime.
        let me = Arc::clone(self);
        tokio::spawn(async move { me.launch_here().await })
            .await
            .map_err(|e| RuntimeError::Launch(e.to_string()))?
    }

    async fn launch_here(self: Arc<Self>) -> Result<Arc<Live>, RuntimeError> {
        let exe = self.cfg.chromium.clone().ok_or(RuntimeError::NoChromium)?;
        let n = self.launches.fetch_add(1, Ordering::SeqCst) + 1;
        // A private profile directory per launch (chromiumoxide's default is shared between
        // processes); removed when the browser's handler ends.
        let dir = self
            .cfg
            .scratch_dir
            .join(format!("chromium-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| RuntimeError::Launch(format!("{}: {e}", dir.display())))?;
        let mut args = launch_args();
        args.push(format!("--user-data-dir={}", dir.display()));
        args.push("--remote-debugging-port=0".into());
        args.push(if self.cfg.headless {
            "--headless=new".into()
        } else {
            "--no-startup-window".into()
        });
        if running_as_root() {
            // Chromium refuses to run as root with its sandbox on (tests, CI). Production runs
            // non-root, with the sandbox.
            args.push("--no-sandbox".into());
        }
        args.push("about:blank".into());
        // Our own spawn (not chromiumoxide's launcher): ordered arguments, and util-linux's
        // `setpriv --pdeathsig KILL` (when present) so the browser never outlives this process,
        // even when it is killed without a chance to shut down.
        let setpriv = PathBuf::from("/usr/bin/setpriv");
        let mut cmd = if setpriv.is_file() {
            let mut c = tokio::process::Command::new(setpriv);
            c.arg("--pdeathsig").arg("KILL").arg("--").arg(&exe);
            c
        } else {
            tokio::process::Command::new(&exe)
        };
        cmd.args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| RuntimeError::Launch(format!("{}: {e}", exe.display())))?;
        let pid = child.id();
        let stderr = child.stderr.take();
        let ws = tokio::time::timeout(Duration::from_secs(30), devtools_url(stderr)).await;
        let ws = match ws {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => {
                let _ = child.kill().await;
                remove_profile(&dir);
                return Err(RuntimeError::Launch(e));
            }
            Err(_) => {
                let _ = child.kill().await;
                remove_profile(&dir);
                return Err(RuntimeError::Launch("chromium did not start within 30 s".into()));
            }
        };
        let handler_config = chromiumoxide::handler::HandlerConfig {
            ignore_https_errors: false,
            request_timeout: self.cfg.command_timeout,
            ..Default::default()
        };
        let (browser, mut handler) = match Browser::connect_with_config(ws, handler_config).await {
            Ok(b) => b,
            Err(e) => {
                let _ = child.kill().await;
                remove_profile(&dir);
                return Err(RuntimeError::Launch(e.to_string()));
            }
        };
        tracing::info!(?pid, exe = %exe.display(), "chromium launched");
        let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<()>();
        let (gone_tx, gone) = tokio::sync::watch::channel(false);
        let live = Arc::new(Live {
            browser,
            dead: AtomicBool::new(false),
            leased: AtomicU64::new(0),
            pid,
            died: tokio::sync::Notify::new(),
            kill: std::sync::Mutex::new(Some(kill_tx)),
            gone,
        });
        // The process watcher: the browser's exit (a crash, kill -9) is seen at once; dropping
        // the last `Live` kills it. Once it has exited, its files go.
        let watched = Arc::downgrade(&live);
        tokio::spawn(async move {
            tokio::select! {
                _ = child.wait() => {}
                _ = kill_rx => {
                    let _ = child.kill().await;
                }
            }
            if let Some(live) = watched.upgrade() {
                live.mark_dead();
            }
            remove_profile(&dir);
            let _ = gone_tx.send(true);
        });
        // The CDP handler: its end means the browser is gone.
        let watched = Arc::downgrade(&live);
        tokio::spawn(async move {
            while let Some(event) = handler.next().await {
                if let Err(e) = event {
                    tracing::debug!(error = %e, "cdp handler");
                }
            }
            if let Some(live) = watched.upgrade() {
                live.mark_dead();
            }
        });
        // Health: a version ping every 30 s; three unanswered in a row (a hung browser, not a
        // busy one) and it is killed, so the next lease relaunches it.
        let watched = Arc::downgrade(&live);
        tokio::spawn(async move {
            let mut strikes = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                let Some(live) = watched.upgrade() else { return };
                if live.is_dead() {
                    return;
                }
                let ok = tokio::time::timeout(Duration::from_secs(20), live.browser.version())
                    .await
                    .is_ok_and(|r| r.is_ok());
                strikes = if ok { 0 } else { strikes + 1 };
                if strikes >= 3 {
                    tracing::warn!("chromium stopped answering; killing it");
                    live.mark_dead();
                    live.kill();
                    return;
                }
            }
        });
        self.start_disposer();
        Ok(live)
    }

    /// The task that disposes the contexts of dropped leases (started once).
    fn start_disposer(&self) {
        let rx = self
            .dispose_rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(mut rx) = rx else { return };
        let disposed = Arc::clone(&self.disposed);
        tokio::spawn(async move {
            while let Some((live, ctx)) = rx.recv().await {
                // A context of a dead browser went with it.
                if let Some(live) = live.upgrade().filter(|l| !l.is_dead()) {
                    let done =
                        tokio::time::timeout(Duration::from_secs(10), live.browser.dispose_browser_context(ctx)).await;
                    if !matches!(done, Ok(Ok(()))) {
                        tracing::warn!("a browser context could not be disposed");
                    }
                }
                disposed.0.fetch_add(1, Ordering::SeqCst);
                disposed.1.notify_waiters();
            }
        });
    }

    /// Closes the browser (shutdown) and waits until it has exited and its files are removed:
    /// asked to close over CDP, it ends its own processes and removes what it made outside its
    /// profile; one that does not exit within 5 s is killed. Leases still alive fail on their
    /// next command.
    pub async fn shutdown(&self) {
        let live = self.live.lock().await.take();
        let Some(live) = live else { return };
        let mut gone = live.gone.clone();
        // Dead on purpose: no "died" warning.
        live.dead.store(true, Ordering::SeqCst);
        live.died.notify_waiters();
        // The answer may not come back before the connection closes: the exit is what counts.
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            live.browser
                .execute(chromiumoxide::cdp::browser_protocol::browser::CloseParams::default()),
        )
        .await;
        if tokio::time::timeout(Duration::from_secs(5), gone.wait_for(|g| *g))
            .await
            .is_ok()
        {
            return;
        }
        tracing::warn!("chromium did not exit within 5 s of being asked to close; killing it");
        live.kill();
        drop(live);
        if tokio::time::timeout(Duration::from_secs(5), gone.wait_for(|g| *g))
            .await
            .is_err()
        {
            tracing::warn!("chromium did not exit within 5 s of being killed");
        }
    }
}

/// Removes a browser's private profile directory, and the directory of its single-instance
/// socket, which Chromium makes in the system's temporary directory (`org.chromium.Chromium.*`,
/// linked from the profile as `SingletonSocket`) and removes only when it shuts down by itself:
/// a killed browser would leave one behind per launch. The socket's directory is removed only
/// when nothing but Chromium's two singleton entries is in it.
fn remove_profile(profile: &Path) {
    if let Ok(socket) = std::fs::read_link(profile.join("SingletonSocket")) {
        if let Some(dir) = socket.parent().filter(|d| d.is_absolute()) {
            for entry in ["SingletonSocket", "SingletonCookie"] {
                let _ = std::fs::remove_file(dir.join(entry));
            }
            let _ = std::fs::remove_dir(dir);
        }
    }
    let _ = std::fs::remove_dir_all(profile);
}

/// A context to dispose, and the browser it belongs to.
pub(crate) type Disposal = (Weak<Live>, BrowserContextId);

/// Disposes its context when dropped.
pub(crate) struct DisposeGuard {
    tx: mpsc::UnboundedSender<Disposal>,
    live: Weak<Live>,
    ctx: Option<BrowserContextId>,
}

impl Drop for DisposeGuard {
    fn drop(&mut self) {
        if let Some(ctx) = self.ctx.take() {
            let _ = self.tx.send((self.live.clone(), ctx));
        }
    }
}

/// The flags of CONNECTORS §2: no `--enable-automation`, no first-run UI, no shared memory in
/// `/dev/shm` (small in containers), a basic password store (no keyring prompts).
fn launch_args() -> Vec<String> {
    [
        "--hide-scrollbars",
        "--mute-audio",
        "--disable-extensions",
        "--disable-blink-features=AutomationControlled",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--password-store=basic",
        "--use-mock-keychain",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-sync",
        "--disable-breakpad",
        "--disable-crash-reporter",
        "--metrics-recording-only",
        // Back/forward cache off: a login navigates forward only, and a cached page is a page
        // kept in memory per context. The WebUI omnibox popups off: headless Chromium otherwise
        // gives every browser context (every login) a second renderer process for the address
        // bar's popup (`chrome://omnibox-popup.top-chrome`) that nobody sees — about half of a
        // parked login's memory (docs/banks.md, "Resources").
        "--disable-features=Translate,MediaRouter,OptimizationHints,BackForwardCache,\
         WebUIOmniboxPopup,WebUIOmniboxAimPopup,WebUIOmniboxFullPopup",
        "--disable-gpu",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

fn running_as_root() -> bool {
    // The effective uid, from /proc (no libc dependency): `Uid: real effective saved fs`.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|rest| rest.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Reads Chromium's stderr until it prints its DevTools address; keeps draining it afterwards
/// (a full pipe would block the browser).
async fn devtools_url(stderr: Option<tokio::process::ChildStderr>) -> Result<String, String> {
    use tokio::io::AsyncBufReadExt;
    let stderr = stderr.ok_or("no stderr")?;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let mut tail = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(i) = line.find("ws://") {
            let url = line[i..].trim().to_owned();
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok(url);
        }
        tail.push(line);
        if tail.len() > 20 {
            tail.remove(0);
        }
    }
    Err(format!("chromium exited: {}", tail.join(" | ")))
}

/// The proportional set size (kB) of `pid` and all its descendants, from
/// `/proc/<pid>/smaps_rollup` (what the tree really costs, shared pages split fairly).
pub fn tree_pss_kb(pid: u32) -> u64 {
    tree(pid)
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok())
        .map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// The renderer processes in the process tree of `pid` (Linux).
pub fn tree_renderers(pid: u32) -> usize {
    tree(pid)
        .into_iter()
        .filter_map(|p| std::fs::read(format!("/proc/{p}/cmdline")).ok())
        // Split on spaces too: Chromium's children rewrite their command line as one string.
        .filter(|cmd| {
            cmd.split(|b| *b == 0 || *b == b' ')
                .any(|arg| arg == b"--type=renderer")
        })
        .count()
}

/// `pid` and its descendants, from /proc.
fn tree(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        out.push(p);
        if let Ok(children) = std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")) {
            stack.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
    }
    out
}
