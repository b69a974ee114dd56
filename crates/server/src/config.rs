//! Typed configuration, loaded once at start from the environment over built-in defaults and
//! validated with a precise message. No globals: the `Config` is passed in explicitly.
//!
//! Every environment variable is declared once, as a [`Setting`] below: its name, default, range
//! and meaning drive the parsing, `--help` ([`ENV_VARS`]) and the README table (a test keeps the
//! README in step with [`SETTINGS`]).
//!
//! With no environment at all, `serve` listens on 127.0.0.1:3000, keeps everything under
//! `./data`, and generates its secrets there on first run (see [`Secrets::load_or_create`]).

use std::fmt;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use rand::RngCore;

/// One environment variable the server reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    pub env: &'static str,
    /// Used when the variable is unset or empty, parsed like a set value. The few defaults that
    /// are computed (the database URL, generated secrets) are described here instead.
    pub default: &'static str,
    pub doc: &'static str,
    /// Inclusive bounds of a numeric setting.
    pub range: Option<(u64, u64)>,
}

impl Setting {
    const fn new(env: &'static str, default: &'static str, doc: &'static str) -> Self {
        Self {
            env,
            default,
            doc,
            range: None,
        }
    }

    const fn range(self, min: u64, max: u64) -> Self {
        Self {
            range: Some((min, max)),
            ..self
        }
    }
}

const DAY: u64 = 86_400;

pub const HOST: Setting = Setting::new("RECONBANKER_HOST", "127.0.0.1", "address to listen on");
pub const PORT: Setting = Setting::new("RECONBANKER_PORT", "3000", "port to listen on (0 = any free port)");
pub const DATA_DIR: Setting = Setting::new(
    "RECONBANKER_DATA_DIR",
    "./data",
    "where the SQLite database and generated secrets live",
);
pub const DATABASE_URL: Setting = Setting::new(
    "DATABASE_URL",
    "sqlite://<data dir>/reconbanker.db",
    "sqlite:… or postgres://…",
);
pub const DB_MAX_CONNECTIONS: Setting =
    Setting::new("RECONBANKER_DB_MAX_CONNECTIONS", "8", "database pool size").range(1, 1000);
pub const JWT_SECRET: Setting = Setting::new(
    "JWT_SECRET",
    "generated into <data dir>/jwt_secret",
    "HS256 secret for dashboard tokens, at least 32 bytes",
);
pub const MASTER_KEY: Setting = Setting::new(
    "RECONBANKER_MASTER_KEY",
    "generated into <data dir>/master.key",
    "AES-256-GCM key for secrets at rest, 64 hex characters",
);
pub const JWT_TTL: Setting = Setting::new(
    "RECONBANKER_JWT_TTL_SECS",
    "604800",
    "dashboard token lifetime (7 days)",
)
.range(60, 365 * DAY);
pub const OTP_RATE_LIMIT: Setting = Setting::new(
    "RECONBANKER_OTP_RATE_LIMIT",
    "5",
    "OTP submissions allowed per account per window",
)
.range(1, 1_000_000);
pub const OTP_RATE_WINDOW: Setting = Setting::new(
    "RECONBANKER_OTP_RATE_WINDOW_SECS",
    "600",
    "the OTP rate-limit window (10 minutes)",
)
.range(1, DAY);
pub const V1_RATE_PER_SEC: Setting = Setting::new(
    "RECONBANKER_V1_RATE_PER_SEC",
    "50",
    "sustained /v1 requests per second per API key",
)
.range(1, 10_000_000);
pub const V1_BURST: Setting =
    Setting::new("RECONBANKER_V1_BURST", "100", "/v1 burst allowance per API key").range(1, 10_000_000);
pub const AUTH_FAILURES_PER_MIN: Setting = Setting::new(
    "RECONBANKER_AUTH_FAILURES_PER_MIN",
    "30",
    "failed /v1 authentications per client IP per minute before 429",
)
.range(1, 1_000_000);
pub const LOGIN_FAILURES: Setting = Setting::new(
    "RECONBANKER_LOGIN_FAILURES",
    "10",
    "failed dashboard logins per client IP per 15 minutes before 429",
)
.range(1, 1_000_000);
pub const ASSISTANCE_TIMEOUT: Setting = Setting::new(
    "RECONBANKER_ASSISTANCE_TIMEOUT_SECS",
    "300",
    "how long a login waits for a code",
)
.range(10, 3600);
pub const ALLOW_PRIVATE_TARGETS: Setting = Setting::new(
    "RECONBANKER_ALLOW_PRIVATE_TARGETS",
    "false",
    "allow outbound URLs that resolve to private/loopback addresses",
);
pub const SCRAPE_INTERVAL: Setting = Setting::new(
    "RECONBANKER_SCRAPE_INTERVAL_SECS",
    "1200",
    "how often one-shot accounts are read (20 minutes)",
)
.range(1, 7 * DAY);
pub const POLL_INTERVAL: Setting = Setting::new(
    "RECONBANKER_POLL_INTERVAL_SECS",
    "60",
    "how often persistent sessions read",
)
.range(1, DAY);
pub const SCAN_INTERVAL: Setting = Setting::new(
    "RECONBANKER_SCAN_INTERVAL_MS",
    "5000",
    "how often the scheduler looks for accounts that are due",
)
.range(10, 3_600_000);
pub const MAX_SESSIONS: Setting = Setting::new(
    "RECONBANKER_MAX_SESSIONS",
    "1000",
    "bank sessions running at once (waiting logins included)",
)
.range(1, 1_000_000);
pub const RETRY_ATTEMPTS: Setting = Setting::new(
    "RECONBANKER_RETRY_ATTEMPTS",
    "3",
    "retries of a retryable bank failure within a session",
)
.range(0, 100);
pub const RETRY_BACKOFF: Setting = Setting::new(
    "RECONBANKER_RETRY_BACKOFF_MS",
    "2000",
    "first retry delay (doubles, with jitter)",
)
.range(1, 3_600_000);
pub const BANK_TIMEOUT: Setting = Setting::new(
    "RECONBANKER_BANK_TIMEOUT_SECS",
    "15",
    "timeout of one request to a bank",
)
.range(1, 600);
pub const SANDBOX_BANK: Setting = Setting::new(
    "RECONBANKER_SANDBOX_BANK",
    "embedded",
    "embedded (serve starts it), off, or the URL of a sandbox bank",
);
pub const SANDBOX_PORT: Setting = Setting::new(
    "RECONBANKER_SANDBOX_PORT",
    "3100",
    "port of the embedded sandbox bank (on the same host)",
);
pub const CLIENT_TIMEOUT: Setting = Setting::new(
    "RECONBANKER_CLIENT_TIMEOUT_MS",
    "30000",
    "how long a client has to send a request's head, and then its body (or the connection closes)",
)
.range(100, 600_000);
pub const WEBHOOK_TIMEOUT: Setting = Setting::new(
    "RECONBANKER_WEBHOOK_TIMEOUT_MS",
    "10000",
    "timeout of one notification webhook POST",
)
.range(10, 600_000);
pub const WEBHOOK_BACKOFF: Setting = Setting::new(
    "RECONBANKER_WEBHOOK_BACKOFF_MS",
    "5000",
    "first webhook retry delay (x4 each try, with jitter, at most 12 h)",
)
.range(1, 3_600_000);
pub const WEBHOOK_MAX_ATTEMPTS: Setting = Setting::new(
    "RECONBANKER_WEBHOOK_MAX_ATTEMPTS",
    "8",
    "webhook tries before a delivery is dead-lettered",
)
.range(1, 50);
pub const SIGNING_SECRET_GRACE: Setting = Setting::new(
    "RECONBANKER_SIGNING_SECRET_GRACE_SECS",
    "86400",
    "how long a rotated-out signing secret still signs",
)
.range(0, 30 * DAY);
pub const EVENT_RETENTION: Setting = Setting::new(
    "RECONBANKER_EVENT_RETENTION_SECS",
    "604800",
    "how long events stay in the log (stream resume window), 7 days",
)
.range(60, 365 * DAY);
pub const ORDERS_POLL_INTERVAL: Setting = Setting::new(
    "RECONBANKER_ORDERS_POLL_INTERVAL_SECS",
    "600",
    "how often each reconciling account's pending orders are fetched (10 minutes)",
)
.range(5, DAY);
pub const ORDERS_TIMEOUT: Setting = Setting::new(
    "RECONBANKER_ORDERS_TIMEOUT_SECS",
    "15",
    "the whole pending-orders exchange, every page included",
)
.range(1, 300);
pub const ORDERS_MAX_BYTES: Setting = Setting::new(
    "RECONBANKER_ORDERS_MAX_BYTES",
    "5242880",
    "largest pending-orders page (5 MiB); reading stops there",
)
.range(1024, 1 << 30);
pub const ORDERS_MAX_ITEMS: Setting = Setting::new(
    "RECONBANKER_ORDERS_MAX_ITEMS",
    "50000",
    "most orders in one poll, all pages together",
)
.range(1, 1_000_000);
pub const EXPIRE_SWEEP: Setting = Setting::new(
    "RECONBANKER_EXPIRE_SWEEP_SECS",
    "60",
    "how often overdue reconciliation requests are looked for",
)
.range(1, DAY);
// Issue 11 (scale-out).
pub const SESSION_LEASE: Setting = Setting::new(
    "RECONBANKER_SESSION_LEASE_SECS",
    "30",
    "how long an instance's claim on an account's session lasts unrenewed (renewed every third of it); another instance takes a dead one's accounts over after it",
)
.range(3, 3600);
// Issue 10: the dashboard in the browser.
pub const SECURE_COOKIES: Setting = Setting::new(
    "RECONBANKER_SECURE_COOKIES",
    "false",
    "mark the dashboard's cookies Secure (set it when browsers reach the dashboard over HTTPS, e.g. behind a TLS proxy)",
);
/// Issue 10: the dashboard's origin as browsers see it, when a proxy in front of the server
/// rewrites `Host` (scheme, host and port, e.g. `https://dash.example.com`).
pub const PUBLIC_ORIGIN: Setting = Setting::new(
    "RECONBANKER_PUBLIC_ORIGIN",
    "unset",
    "the dashboard's origin as browsers reach it (e.g. https://dash.example.com), when a proxy in front rewrites Host: form posts must come from it; unset, from the Host the request names",
);
// Issue 9 (real banks).
pub const EVIDENCE_DAYS: Setting = Setting::new(
    "RECONBANKER_EVIDENCE_DAYS",
    "7",
    "how long the failure evidence of a browser bank run is kept",
)
.range(1, 365);
// Issue 11: roles by configuration.
pub const ROLES: Setting = Setting::new(
    "RECONBANKER_ROLES",
    "api,engine,push",
    "what this instance does, a comma list of api (the HTTP routes; without it only /health and /ready), engine (bank sessions, order polls, matching, expiry) and push (webhook delivery)",
);
// Issue 11: the operator's metrics.
pub const METRICS_ADDR: Setting = Setting::new(
    "RECONBANKER_METRICS_ADDR",
    "unset",
    "address and port of the Prometheus endpoint GET /metrics (e.g. 127.0.0.1:9100), a listener of its own, never the main one; unset, no metrics are kept",
);
// Issue 11: `/metrics` authentication.
pub const METRICS_TOKEN: Setting = Setting::new(
    "RECONBANKER_METRICS_TOKEN",
    "unset",
    "a bearer token GET /metrics requires (Authorization: Bearer <token>; 16 to 256 visible ASCII characters); unset, /metrics answers whoever reaches its address",
);
/// Read by `tracing-subscriber` in `main`, not by [`Config`].
pub const LOG: Setting = Setting::new("RUST_LOG", "info", "log filter (tracing-subscriber syntax)");

/// Every environment variable the server reads, in the order `--help` and the README list them.
/// A test checks that [`Config::from_lookup`] reads exactly these (but `RUST_LOG`).
pub const SETTINGS: &[Setting] = &[
    HOST,
    PORT,
    DATA_DIR,
    DATABASE_URL,
    DB_MAX_CONNECTIONS,
    JWT_SECRET,
    MASTER_KEY,
    JWT_TTL,
    OTP_RATE_LIMIT,
    OTP_RATE_WINDOW,
    V1_RATE_PER_SEC,
    V1_BURST,
    AUTH_FAILURES_PER_MIN,
    LOGIN_FAILURES,
    ASSISTANCE_TIMEOUT,
    ALLOW_PRIVATE_TARGETS,
    SCRAPE_INTERVAL,
    POLL_INTERVAL,
    SCAN_INTERVAL,
    MAX_SESSIONS,
    RETRY_ATTEMPTS,
    RETRY_BACKOFF,
    BANK_TIMEOUT,
    SANDBOX_BANK,
    SANDBOX_PORT,
    CLIENT_TIMEOUT,
    WEBHOOK_TIMEOUT,
    WEBHOOK_BACKOFF,
    WEBHOOK_MAX_ATTEMPTS,
    SIGNING_SECRET_GRACE,
    EVENT_RETENTION,
    ORDERS_POLL_INTERVAL,
    ORDERS_TIMEOUT,
    ORDERS_MAX_BYTES,
    ORDERS_MAX_ITEMS,
    EXPIRE_SWEEP,
    // Issue 11 (scale-out).
    SESSION_LEASE,
    // Issue 10.
    SECURE_COOKIES,
    PUBLIC_ORIGIN,
    // Issue 9 (real banks).
    EVIDENCE_DAYS,
    // Issue 11: roles.
    ROLES,
    // Issue 11: metrics.
    METRICS_ADDR,
    METRICS_TOKEN,
    LOG,
];

/// [`SETTINGS`] as `(name, default, meaning)`, for `--help`.
pub const ENV_VARS: &[(&str, &str, &str)] = &env_vars();

const fn env_vars() -> [(&'static str, &'static str, &'static str); SETTINGS.len()] {
    let mut out = [("", "", ""); SETTINGS.len()];
    let mut i = 0;
    while i < SETTINGS.len() {
        out[i] = (SETTINGS[i].env, SETTINGS[i].default, SETTINGS[i].doc);
        i += 1;
    }
    out
}

/// How often `last_used_at` of API keys is written back (not configurable).
const KEY_USAGE_FLUSH: Duration = Duration::from_secs(60);

/// Request bodies over this size are refused with 413 (docs/product.md §1).
pub const BODY_LIMIT: usize = 64 * 1024;

/// A value that must not reach logs: `Debug` prints `Secret(<redacted>)`, and reading it takes an
/// explicit [`Secret::expose`].
#[derive(Clone)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// May carry a password: shown through [`redact_url`] only.
    pub database_url: String,
    pub db_max_connections: u32,
    /// `None` = read or generate `<data_dir>/jwt_secret`.
    pub jwt_secret: Option<Secret<Vec<u8>>>,
    /// `None` = read or generate `<data_dir>/master.key`.
    pub master_key: Option<Secret<[u8; 32]>>,
    pub jwt_ttl: Duration,
    pub otp_rate_limit: u32,
    pub otp_rate_window: Duration,
    pub v1_rate_per_sec: u32,
    pub v1_burst: u32,
    pub auth_failures_per_min: u32,
    pub login_failures: u32,
    pub assistance_timeout: Duration,
    pub allow_private_targets: bool,
    /// How often `last_used_at` of API keys is written back (about once a minute).
    pub key_usage_flush: Duration,
    pub scrape_interval: Duration,
    pub poll_interval: Duration,
    pub max_sessions: usize,
    pub scan_interval: Duration,
    pub retry_attempts: u32,
    pub retry_backoff: Duration,
    pub bank_timeout: Duration,
    pub sandbox: SandboxMode,
    /// A request's head, then its body, must arrive within this (slow clients).
    pub client_timeout: Duration,
    pub webhook_timeout: Duration,
    pub webhook_backoff: Duration,
    pub webhook_max_attempts: u32,
    pub signing_secret_grace: Duration,
    pub event_retention: Duration,
    pub orders_poll_interval: Duration,
    pub orders_timeout: Duration,
    pub orders_max_bytes: usize,
    pub orders_max_items: usize,
    pub expire_sweep: Duration,
    // Issue 11 (scale-out).
    pub session_lease: Duration,
    // Issue 10: the dashboard's cookies carry `Secure`.
    pub secure_cookies: bool,
    /// Issue 10: `RECONBANKER_PUBLIC_ORIGIN`, without a trailing `/`.
    pub public_origin: Option<String>,
    // Issue 9 (real banks).
    pub evidence_retention: Duration,
    // Issue 11: what this instance does.
    pub roles: Roles,
    /// Issue 11: where `/metrics` listens (`RECONBANKER_METRICS_ADDR`); `None` = no metrics.
    pub metrics_addr: Option<SocketAddr>,
    /// Issue 11: the bearer token `/metrics` requires (`RECONBANKER_METRICS_TOKEN`); `None` = none.
    pub metrics_token: Option<Secret<String>>,
}

/// Issue 11: the parts of the service an instance runs (`RECONBANKER_ROLES`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    /// The HTTP routes (dashboard, `/v1`, realtime); without it only `/health` and `/ready`.
    pub api: bool,
    /// Bank sessions and the reconciliation workers (order poller, matcher, expiry).
    pub engine: bool,
    /// Webhook delivery.
    pub push: bool,
}

impl Roles {
    pub const ALL: Roles = Roles {
        api: true,
        engine: true,
        push: true,
    };

    /// A comma list of `api`, `engine`, `push` (spaces ignored, at least one, no repeats).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let bad = |why: String| {
            ConfigError(format!(
                "{} must be a comma list of api, engine and push ({why})",
                ROLES.env
            ))
        };
        let mut roles = Roles {
            api: false,
            engine: false,
            push: false,
        };
        for part in text.split(',').map(str::trim) {
            let slot = match part {
                "api" => &mut roles.api,
                "engine" => &mut roles.engine,
                "push" => &mut roles.push,
                "" => return Err(bad("an empty item".into())),
                other => return Err(bad(format!("unknown role {other:?}"))),
            };
            if *slot {
                return Err(bad(format!("{part} given twice")));
            }
            *slot = true;
        }
        Ok(roles)
    }
}

/// Where the sandbox bank is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SandboxMode {
    /// `serve` starts it on this port of the listen host.
    Embedded { port: u16 },
    /// Not used: the `sandbox` bank has no connector.
    Off,
    /// A sandbox bank already running at this URL.
    External(url::Url),
}

// Not derived only because `database_url` may carry a password and stays a `String` for its
// callers; the secrets print as `Secret(<redacted>)`. The destructuring names every field (no
// `..`), so a new field does not compile until it is shown here.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Config {
            listen,
            data_dir,
            database_url,
            db_max_connections,
            jwt_secret,
            master_key,
            jwt_ttl,
            otp_rate_limit,
            otp_rate_window,
            v1_rate_per_sec,
            v1_burst,
            auth_failures_per_min,
            login_failures,
            assistance_timeout,
            allow_private_targets,
            key_usage_flush,
            scrape_interval,
            poll_interval,
            max_sessions,
            scan_interval,
            retry_attempts,
            retry_backoff,
            bank_timeout,
            sandbox,
            client_timeout,
            webhook_timeout,
            webhook_backoff,
            webhook_max_attempts,
            signing_secret_grace,
            event_retention,
            orders_poll_interval,
            orders_timeout,
            orders_max_bytes,
            orders_max_items,
            expire_sweep,
            session_lease,
            secure_cookies,
            public_origin,
            evidence_retention,
            roles,
            metrics_addr,
            metrics_token,
        } = self;
        f.debug_struct("Config")
            .field("listen", listen)
            .field("data_dir", data_dir)
            .field("database_url", &redact_url(database_url))
            .field("db_max_connections", db_max_connections)
            .field("jwt_secret", jwt_secret)
            .field("master_key", master_key)
            .field("jwt_ttl", jwt_ttl)
            .field("otp_rate_limit", otp_rate_limit)
            .field("otp_rate_window", otp_rate_window)
            .field("v1_rate_per_sec", v1_rate_per_sec)
            .field("v1_burst", v1_burst)
            .field("auth_failures_per_min", auth_failures_per_min)
            .field("login_failures", login_failures)
            .field("assistance_timeout", assistance_timeout)
            .field("allow_private_targets", allow_private_targets)
            .field("key_usage_flush", key_usage_flush)
            .field("scrape_interval", scrape_interval)
            .field("poll_interval", poll_interval)
            .field("max_sessions", max_sessions)
            .field("scan_interval", scan_interval)
            .field("retry_attempts", retry_attempts)
            .field("retry_backoff", retry_backoff)
            .field("bank_timeout", bank_timeout)
            .field("sandbox", sandbox)
            .field("client_timeout", client_timeout)
            .field("webhook_timeout", webhook_timeout)
            .field("webhook_backoff", webhook_backoff)
            .field("webhook_max_attempts", webhook_max_attempts)
            .field("signing_secret_grace", signing_secret_grace)
            .field("event_retention", event_retention)
            .field("orders_poll_interval", orders_poll_interval)
            .field("orders_timeout", orders_timeout)
            .field("orders_max_bytes", orders_max_bytes)
            .field("orders_max_items", orders_max_items)
            .field("expire_sweep", expire_sweep)
            .field("session_lease", session_lease)
            .field("secure_cookies", secure_cookies)
            .field("public_origin", public_origin)
            .field("evidence_retention", evidence_retention)
            .field("roles", roles)
            .field("metrics_addr", metrics_addr)
            .field("metrics_token", metrics_token)
            .finish()
    }
}

/// A database URL with any password replaced, for logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("redacted"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Loads from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Loads from any key → value lookup (tests pass a map; nothing touches the real environment).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(get);
        let data_dir = PathBuf::from(env.value(&DATA_DIR));
        let database_url = match env.set(&DATABASE_URL) {
            Some(url) => {
                if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(ConfigError(
                        "DATABASE_URL must start with sqlite:, postgres:// or postgresql://".into(),
                    ));
                }
                url
            }
            None => format!("sqlite://{}", data_dir.join("reconbanker.db").display()),
        };
        let jwt_secret = match env.set(&JWT_SECRET) {
            Some(s) if s.len() < 32 => {
                return Err(ConfigError(format!(
                    "JWT_SECRET must be at least 32 bytes (got {})",
                    s.len()
                )))
            }
            Some(s) => Some(Secret::new(s.into_bytes())),
            None => None,
        };
        let master_key = match env.set(&MASTER_KEY) {
            Some(s) => Some(Secret::new(parse_master_key(&s).ok_or_else(|| {
                ConfigError("RECONBANKER_MASTER_KEY must be 64 hexadecimal characters (32 bytes)".into())
            })?)),
            None => None,
        };
        let sandbox_port: u16 = env.parse(&SANDBOX_PORT, "a port number 0-65535")?;
        let sandbox = match env.value(&SANDBOX_BANK).as_str() {
            "embedded" => SandboxMode::Embedded { port: sandbox_port },
            "off" => SandboxMode::Off,
            url => SandboxMode::External(
                url::Url::parse(url)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .ok_or_else(|| {
                        ConfigError(format!(
                            "RECONBANKER_SANDBOX_BANK must be embedded, off or an http(s) URL (got {url:?})"
                        ))
                    })?,
            ),
        };
        Ok(Config {
            listen: SocketAddr::new(
                env.parse::<IpAddr>(&HOST, "an IP address such as 127.0.0.1 or 0.0.0.0")?,
                env.parse(&PORT, "a port number 0-65535")?,
            ),
            data_dir,
            database_url,
            db_max_connections: env.count(&DB_MAX_CONNECTIONS)?,
            jwt_secret,
            master_key,
            jwt_ttl: env.secs(&JWT_TTL)?,
            otp_rate_limit: env.count(&OTP_RATE_LIMIT)?,
            otp_rate_window: env.secs(&OTP_RATE_WINDOW)?,
            v1_rate_per_sec: env.count(&V1_RATE_PER_SEC)?,
            v1_burst: env.count(&V1_BURST)?,
            auth_failures_per_min: env.count(&AUTH_FAILURES_PER_MIN)?,
            login_failures: env.count(&LOGIN_FAILURES)?,
            assistance_timeout: env.secs(&ASSISTANCE_TIMEOUT)?,
            allow_private_targets: env.flag(&ALLOW_PRIVATE_TARGETS)?,
            key_usage_flush: KEY_USAGE_FLUSH,
            scrape_interval: env.secs(&SCRAPE_INTERVAL)?,
            poll_interval: env.secs(&POLL_INTERVAL)?,
            max_sessions: env.count(&MAX_SESSIONS)? as usize,
            scan_interval: env.millis(&SCAN_INTERVAL)?,
            retry_attempts: env.count(&RETRY_ATTEMPTS)?,
            retry_backoff: env.millis(&RETRY_BACKOFF)?,
            bank_timeout: env.secs(&BANK_TIMEOUT)?,
            sandbox,
            client_timeout: env.millis(&CLIENT_TIMEOUT)?,
            webhook_timeout: env.millis(&WEBHOOK_TIMEOUT)?,
            webhook_backoff: env.millis(&WEBHOOK_BACKOFF)?,
            webhook_max_attempts: env.count(&WEBHOOK_MAX_ATTEMPTS)?,
            signing_secret_grace: env.secs(&SIGNING_SECRET_GRACE)?,
            event_retention: env.secs(&EVENT_RETENTION)?,
            orders_poll_interval: env.secs(&ORDERS_POLL_INTERVAL)?,
            orders_timeout: env.secs(&ORDERS_TIMEOUT)?,
            orders_max_bytes: env.count(&ORDERS_MAX_BYTES)? as usize,
            orders_max_items: env.count(&ORDERS_MAX_ITEMS)? as usize,
            expire_sweep: env.secs(&EXPIRE_SWEEP)?,
            session_lease: env.secs(&SESSION_LEASE)?,
            secure_cookies: env.flag(&SECURE_COOKIES)?,
            public_origin: env.origin(&PUBLIC_ORIGIN)?,
            evidence_retention: Duration::from_secs(u64::from(env.count(&EVIDENCE_DAYS)?) * 24 * 3600),
            roles: Roles::parse(&env.value(&ROLES))?,
            metrics_addr: match env.set(&METRICS_ADDR) {
                None => None,
                Some(v) => Some(v.parse::<SocketAddr>().map_err(|_| {
                    ConfigError(format!(
                        "RECONBANKER_METRICS_ADDR must be an address and port such as 127.0.0.1:9100 (got {v:?})"
                    ))
                })?),
            },
            metrics_token: metrics_token(env.set(&METRICS_TOKEN))?,
        })
    }
}

/// Issue 11: `RECONBANKER_METRICS_TOKEN`, checked (the value is never quoted in the error).
fn metrics_token(value: Option<String>) -> Result<Option<Secret<String>>, ConfigError> {
    match value {
        None => Ok(None),
        Some(v) if (16..=256).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(Secret::new(v))),
        Some(_) => Err(ConfigError(
            "RECONBANKER_METRICS_TOKEN must be 16 to 256 visible ASCII characters (no spaces)".into(),
        )),
    }
}

/// The lookup `from_lookup` was given, read through the [`Setting`]s: a value is trimmed, and an
/// empty one counts as unset.
struct Env<F>(F);

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// The value set for `s`, if any.
    fn set(&self, s: &Setting) -> Option<String> {
        (self.0)(s.env).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    /// The value set for `s`, else its default.
    fn value(&self, s: &Setting) -> String {
        self.set(s).unwrap_or_else(|| s.default.to_owned())
    }

    fn parse<T: FromStr>(&self, s: &Setting, expected: &str) -> Result<T, ConfigError> {
        let v = self.value(s);
        v.parse()
            .map_err(|_| ConfigError(format!("{} must be {expected} (got {v:?})", s.env)))
    }

    /// A whole number within the setting's range; `unit` completes "a whole number…".
    fn whole<T: FromStr + Into<u64> + Copy>(&self, s: &Setting, unit: &str) -> Result<T, ConfigError> {
        let (min, max) = s.range.unwrap_or((0, u64::MAX));
        let v: T = self.parse(s, &format!("a whole number{unit} from {min} to {max}"))?;
        let n: u64 = v.into();
        if n < min || n > max {
            return Err(ConfigError(format!("{} must be from {min} to {max} (got {n})", s.env)));
        }
        Ok(v)
    }

    fn count(&self, s: &Setting) -> Result<u32, ConfigError> {
        self.whole(s, "")
    }

    fn secs(&self, s: &Setting) -> Result<Duration, ConfigError> {
        self.whole(s, " of seconds").map(Duration::from_secs)
    }

    fn millis(&self, s: &Setting) -> Result<Duration, ConfigError> {
        self.whole(s, " of milliseconds").map(Duration::from_millis)
    }

    /// An optional origin: `http(s)://host[:port]`, nothing after it but an optional `/`.
    fn origin(&self, s: &Setting) -> Result<Option<String>, ConfigError> {
        let Some(v) = self.set(s) else { return Ok(None) };
        let o = v.trim_end_matches('/');
        let host = o.strip_prefix("https://").or_else(|| o.strip_prefix("http://"));
        match host {
            Some(h) if !h.is_empty() && !h.contains(['/', '?', '#', '@', ' ']) => Ok(Some(o.to_owned())),
            _ => Err(ConfigError(format!(
                "{} must be an origin like https://dash.example.com (scheme, host and port only; got {v:?})",
                s.env
            ))),
        }
    }

    fn flag(&self, s: &Setting) -> Result<bool, ConfigError> {
        match self.value(s).as_str() {
            "false" | "0" | "no" => Ok(false),
            "true" | "1" | "yes" => Ok(true),
            _ => Err(ConfigError(format!("{} must be true or false", s.env))),
        }
    }
}

fn parse_master_key(s: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(s).ok()?;
    bytes.try_into().ok()
}

/// The secrets the server runs with, after env overrides and generated files are resolved.
#[derive(Debug)]
pub struct Secrets {
    pub jwt_secret: Secret<Vec<u8>>,
    pub master_key: Secret<[u8; 32]>,
}

impl Secrets {
    /// Takes the configured secrets, or reads them from the data directory, generating and
    /// persisting them (mode 0600) on first run.
    pub fn load_or_create(config: &Config) -> Result<Self, ConfigError> {
        let need_files = config.jwt_secret.is_none() || config.master_key.is_none();
        if need_files {
            create_data_dir(&config.data_dir)?;
        }
        let jwt_secret = match &config.jwt_secret {
            Some(s) => s.expose().clone(),
            None => read_or_generate(&config.data_dir.join("jwt_secret"))?.into_bytes(),
        };
        let master_key = match &config.master_key {
            Some(k) => *k.expose(),
            None => {
                let path = config.data_dir.join("master.key");
                let text = read_or_generate(&path)?;
                parse_master_key(&text)
                    .ok_or_else(|| ConfigError(format!("{} must hold 64 hexadecimal characters", path.display())))?
            }
        };
        Ok(Self {
            jwt_secret: Secret::from(jwt_secret),
            master_key: Secret::from(master_key),
        })
    }
}

/// Creates the data directory (mode 0700 on Unix) if it does not exist.
pub fn create_data_dir(dir: &Path) -> Result<(), ConfigError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| ConfigError(format!("cannot create data directory {}: {e}", dir.display())))
}

/// Reads a one-line secret file, or writes a fresh 32-byte hex secret to it with mode 0600.
fn read_or_generate(path: &Path) -> Result<String, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(s) => return Ok(s.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ConfigError(format!("cannot read {}: {e}", path.display()))),
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let text = hex::encode(bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| ConfigError(format!("cannot create {}: {e}", path.display())))?;
    file.write_all(format!("{text}\n").as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| ConfigError(format!("cannot write {}: {e}", path.display())))?;
    tracing::info!(path = %path.display(), "generated a new secret");
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_need_no_environment() {
        let c = load(&[]).expect("defaults load");
        assert_eq!(c.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(c.database_url, "sqlite://./data/reconbanker.db");
        assert_eq!(c.otp_rate_limit, 5);
        assert_eq!(c.otp_rate_window, Duration::from_secs(600));
        assert!(!c.allow_private_targets);
    }

    #[test]
    fn bad_values_are_refused_with_the_variable_named() {
        for (k, v, needle) in [
            ("RECONBANKER_PORT", "70000", "RECONBANKER_PORT"),
            ("RECONBANKER_HOST", "localhost:1", "RECONBANKER_HOST"),
            ("DATABASE_URL", "mysql://x", "DATABASE_URL"),
            ("JWT_SECRET", "short", "at least 32 bytes"),
            ("RECONBANKER_MASTER_KEY", "abcd", "64 hexadecimal"),
            ("RECONBANKER_OTP_RATE_LIMIT", "0", "from 1"),
            ("RECONBANKER_ALLOW_PRIVATE_TARGETS", "maybe", "true or false"),
        ] {
            let err = load(&[(k, v)]).expect_err(k).0;
            assert!(err.contains(needle), "{k}={v}: {err}");
        }
    }

    #[test]
    fn roles_are_a_comma_list_of_api_engine_and_push() {
        assert_eq!(load(&[]).expect("defaults").roles, Roles::ALL);
        let only = |api, engine, push| Roles { api, engine, push };
        for (text, want) in [
            ("api", only(true, false, false)),
            ("engine, push", only(false, true, true)),
            ("push,api", only(true, false, true)),
            (" api , engine , push ", Roles::ALL),
        ] {
            assert_eq!(load(&[("RECONBANKER_ROLES", text)]).expect(text).roles, want, "{text}");
        }
        for (text, needle) in [
            ("web", "unknown role \"web\""),
            ("api,,push", "an empty item"),
            ("api,api", "api given twice"),
            ("API", "unknown role"),
        ] {
            let err = load(&[("RECONBANKER_ROLES", text)]).expect_err(text).0;
            assert!(
                err.contains("RECONBANKER_ROLES") && err.contains(needle),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = load(&[
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef-secret"),
            ("DATABASE_URL", "postgres://u:hunter2@db/x"),
        ])
        .expect("loads");
        let shown = format!("{c:?}");
        assert!(!shown.contains("secret\""), "{shown}");
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn secrets_are_generated_once_with_mode_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = load(&[("RECONBANKER_DATA_DIR", dir.path().join("d").to_str().expect("utf8"))]).expect("loads");
        let first = Secrets::load_or_create(&c).expect("created");
        let again = Secrets::load_or_create(&c).expect("read back");
        assert_eq!(first.master_key.expose(), again.master_key.expose());
        assert_eq!(first.jwt_secret.expose(), again.jwt_secret.expose());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in ["jwt_secret", "master.key"] {
                let mode = std::fs::metadata(c.data_dir.join(f))
                    .expect("exists")
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{f}");
            }
        }
    }

    #[test]
    fn debug_shows_every_setting_but_no_secret() {
        let jwt = "jwt-0123456789-0123456789-0123456789";
        let key_hex = "a1".repeat(32);
        let c = load(&[
            ("JWT_SECRET", jwt),
            ("RECONBANKER_MASTER_KEY", &key_hex),
            ("DATABASE_URL", "postgres://reconbanker:pa55word@db/x"),
        ])
        .expect("loads");
        let key = c.master_key.as_ref().expect("set").expose();
        let shown = format!("{c:?}");
        for secret in [
            jwt,
            &key_hex,
            &format!("{key:?}"),
            &format!("{:?}", jwt.as_bytes()),
            "pa55word",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("jwt_secret: Some(Secret(<redacted>))"), "{shown}");
        assert!(shown.contains("postgres://reconbanker:redacted@db/x"), "{shown}");
        // The fields the hand-written Debug once forgot.
        for field in [
            "key_usage_flush",
            "retry_backoff",
            "webhook_max_attempts",
            "event_retention",
        ] {
            assert!(shown.contains(field), "{field} in {shown}");
        }
    }

    #[test]
    fn from_lookup_reads_exactly_the_declared_settings() {
        let read = std::cell::RefCell::new(std::collections::BTreeSet::new());
        Config::from_lookup(|k| {
            read.borrow_mut().insert(k.to_owned());
            None
        })
        .expect("defaults load");
        let declared: std::collections::BTreeSet<String> = SETTINGS
            .iter()
            .filter(|s| s.env != LOG.env)
            .map(|s| s.env.to_owned())
            .collect();
        assert_eq!(read.into_inner(), declared);
    }

    #[test]
    fn help_lists_every_setting_with_its_default() {
        let listed: Vec<_> = SETTINGS.iter().map(|s| (s.env, s.default, s.doc)).collect();
        assert_eq!(ENV_VARS, listed.as_slice());
    }
}
