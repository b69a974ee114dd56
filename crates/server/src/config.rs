//! Typed configuration, loaded once at start from the environment over built-in defaults and
//! validated with a precise message. No globals: the `Config` is passed in explicitly.
//!
//! With no environment at all, `serve` listens on 127.0.0.1:3000, keeps everything under
//! `./data`, and generates its secrets there on first run (see [`Secrets::load_or_create`]).

use std::fmt;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::RngCore;

/// Every environment variable the server reads, with its default, for the README and `--help`.
pub const ENV_VARS: &[(&str, &str, &str)] = &[
    ("RECONBANKER_HOST", "127.0.0.1", "address to listen on"),
    ("RECONBANKER_PORT", "3000", "port to listen on (0 = any free port)"),
    (
        "RECONBANKER_DATA_DIR",
        "./data",
        "where the SQLite database and generated secrets live",
    ),
    (
        "DATABASE_URL",
        "sqlite://<data dir>/reconbanker.db",
        "sqlite:… or postgres://…",
    ),
    ("RECONBANKER_DB_MAX_CONNECTIONS", "8", "database pool size"),
    (
        "JWT_SECRET",
        "generated into <data dir>/jwt_secret",
        "HS256 secret for dashboard tokens, at least 32 bytes",
    ),
    (
        "RECONBANKER_MASTER_KEY",
        "generated into <data dir>/master.key",
        "AES-256-GCM key for secrets at rest, 64 hex characters",
    ),
    (
        "RECONBANKER_JWT_TTL_SECS",
        "604800",
        "dashboard token lifetime (7 days)",
    ),
    (
        "RECONBANKER_OTP_RATE_LIMIT",
        "5",
        "OTP submissions allowed per account per window",
    ),
    (
        "RECONBANKER_OTP_RATE_WINDOW_SECS",
        "600",
        "the OTP rate-limit window (10 minutes)",
    ),
    (
        "RECONBANKER_V1_RATE_PER_SEC",
        "50",
        "sustained /v1 requests per second per API key",
    ),
    ("RECONBANKER_V1_BURST", "100", "/v1 burst allowance per API key"),
    (
        "RECONBANKER_AUTH_FAILURES_PER_MIN",
        "30",
        "failed /v1 authentications per client IP per minute before 429",
    ),
    (
        "RECONBANKER_LOGIN_FAILURES",
        "10",
        "failed dashboard logins per client IP per 15 minutes before 429",
    ),
    (
        "RECONBANKER_ASSISTANCE_TIMEOUT_SECS",
        "300",
        "how long a login waits for a code",
    ),
    (
        "RECONBANKER_ALLOW_PRIVATE_TARGETS",
        "false",
        "allow outbound URLs that resolve to private/loopback addresses",
    ),
    (
        "RECONBANKER_SCRAPE_INTERVAL_SECS",
        "1200",
        "how often one-shot accounts are read (20 minutes)",
    ),
    (
        "RECONBANKER_POLL_INTERVAL_SECS",
        "60",
        "how often persistent sessions read",
    ),
    (
        "RECONBANKER_SCAN_INTERVAL_MS",
        "5000",
        "how often the scheduler looks for accounts that are due",
    ),
    (
        "RECONBANKER_MAX_SESSIONS",
        "1000",
        "bank sessions running at once (waiting logins included)",
    ),
    (
        "RECONBANKER_RETRY_ATTEMPTS",
        "3",
        "retries of a retryable bank failure within a session",
    ),
    (
        "RECONBANKER_RETRY_BACKOFF_MS",
        "2000",
        "first retry delay (doubles, with jitter)",
    ),
    (
        "RECONBANKER_BANK_TIMEOUT_SECS",
        "15",
        "timeout of one request to a bank",
    ),
    (
        "RECONBANKER_SANDBOX_BANK",
        "embedded",
        "embedded (serve starts it), off, or the URL of a sandbox bank",
    ),
    (
        "RECONBANKER_SANDBOX_PORT",
        "3100",
        "port of the embedded sandbox bank (on the same host)",
    ),
    (
        "RECONBANKER_WEBHOOK_TIMEOUT_MS",
        "10000",
        "timeout of one notification webhook POST",
    ),
    (
        "RECONBANKER_WEBHOOK_BACKOFF_MS",
        "5000",
        "first webhook retry delay (x4 each try, with jitter, at most 12 h)",
    ),
    (
        "RECONBANKER_WEBHOOK_MAX_ATTEMPTS",
        "8",
        "webhook tries before a delivery is dead-lettered",
    ),
    (
        "RECONBANKER_SIGNING_SECRET_GRACE_SECS",
        "86400",
        "how long a rotated-out signing secret still signs",
    ),
    (
        "RECONBANKER_EVENT_RETENTION_SECS",
        "604800",
        "how long events stay in the log (stream resume window), 7 days",
    ),
    ("RUST_LOG", "info", "log filter (tracing-subscriber syntax)"),
];

/// Request bodies over this size are refused with 413 (docs/product.md §1).
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub db_max_connections: u32,
    /// `None` = read or generate `<data_dir>/jwt_secret`.
    pub jwt_secret: Option<Vec<u8>>,
    /// `None` = read or generate `<data_dir>/master.key`.
    pub master_key: Option<[u8; 32]>,
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
    pub webhook_timeout: Duration,
    pub webhook_backoff: Duration,
    pub webhook_max_attempts: u32,
    pub signing_secret_grace: Duration,
    pub event_retention: Duration,
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

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database_url", &redact_url(&self.database_url))
            .field("db_max_connections", &self.db_max_connections)
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "<redacted>"))
            .field("master_key", &self.master_key.as_ref().map(|_| "<redacted>"))
            .field("jwt_ttl", &self.jwt_ttl)
            .field("otp_rate_limit", &self.otp_rate_limit)
            .field("otp_rate_window", &self.otp_rate_window)
            .field("v1_rate_per_sec", &self.v1_rate_per_sec)
            .field("v1_burst", &self.v1_burst)
            .field("auth_failures_per_min", &self.auth_failures_per_min)
            .field("login_failures", &self.login_failures)
            .field("assistance_timeout", &self.assistance_timeout)
            .field("allow_private_targets", &self.allow_private_targets)
            .field("scrape_interval", &self.scrape_interval)
            .field("poll_interval", &self.poll_interval)
            .field("max_sessions", &self.max_sessions)
            .field("sandbox", &self.sandbox)
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
        let get = |k: &str| get(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let host: IpAddr = parse(&get, "RECONBANKER_HOST", "an IP address such as 127.0.0.1 or 0.0.0.0")?
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let port: u16 = parse(&get, "RECONBANKER_PORT", "a port number 0-65535")?.unwrap_or(3000);
        let data_dir = PathBuf::from(get("RECONBANKER_DATA_DIR").unwrap_or_else(|| "./data".into()));
        let database_url = match get("DATABASE_URL") {
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
        let jwt_secret = match get("JWT_SECRET") {
            Some(s) if s.len() < 32 => {
                return Err(ConfigError(format!(
                    "JWT_SECRET must be at least 32 bytes (got {})",
                    s.len()
                )))
            }
            Some(s) => Some(s.into_bytes()),
            None => None,
        };
        let master_key = match get("RECONBANKER_MASTER_KEY") {
            Some(s) => Some(parse_master_key(&s).ok_or_else(|| {
                ConfigError("RECONBANKER_MASTER_KEY must be 64 hexadecimal characters (32 bytes)".into())
            })?),
            None => None,
        };
        let secs = |name: &str, default: u64, min: u64, max: u64| -> Result<Duration, ConfigError> {
            let v =
                parse::<u64>(&get, name, &format!("a whole number of seconds from {min} to {max}"))?.unwrap_or(default);
            in_range(name, v, min, max)?;
            Ok(Duration::from_secs(v))
        };
        let count = |name: &str, default: u32, min: u32, max: u32| -> Result<u32, ConfigError> {
            let v = parse::<u32>(&get, name, &format!("a whole number from {min} to {max}"))?.unwrap_or(default);
            in_range(name, v, min, max)?;
            Ok(v)
        };
        let allow_private_targets = match get("RECONBANKER_ALLOW_PRIVATE_TARGETS").as_deref() {
            None | Some("false") | Some("0") | Some("no") => false,
            Some("true") | Some("1") | Some("yes") => true,
            Some(_) => {
                return Err(ConfigError(
                    "RECONBANKER_ALLOW_PRIVATE_TARGETS must be true or false".into(),
                ))
            }
        };
        let sandbox_port: u16 = parse(&get, "RECONBANKER_SANDBOX_PORT", "a port number 0-65535")?.unwrap_or(3100);
        let sandbox = match get("RECONBANKER_SANDBOX_BANK").as_deref() {
            None | Some("embedded") => SandboxMode::Embedded { port: sandbox_port },
            Some("off") => SandboxMode::Off,
            Some(url) => SandboxMode::External(
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
        let millis = |name: &str, default: u64, min: u64, max: u64| -> Result<Duration, ConfigError> {
            let v = parse::<u64>(
                &get,
                name,
                &format!("a whole number of milliseconds from {min} to {max}"),
            )?
            .unwrap_or(default);
            in_range(name, v, min, max)?;
            Ok(Duration::from_millis(v))
        };
        Ok(Config {
            scrape_interval: secs("RECONBANKER_SCRAPE_INTERVAL_SECS", 1200, 1, 7 * 86_400)?,
            poll_interval: secs("RECONBANKER_POLL_INTERVAL_SECS", 60, 1, 86_400)?,
            max_sessions: count("RECONBANKER_MAX_SESSIONS", 1000, 1, 1_000_000)? as usize,
            scan_interval: millis("RECONBANKER_SCAN_INTERVAL_MS", 5000, 10, 3_600_000)?,
            retry_attempts: count("RECONBANKER_RETRY_ATTEMPTS", 3, 0, 100)?,
            retry_backoff: millis("RECONBANKER_RETRY_BACKOFF_MS", 2000, 1, 3_600_000)?,
            bank_timeout: secs("RECONBANKER_BANK_TIMEOUT_SECS", 15, 1, 600)?,
            sandbox,
            webhook_timeout: millis("RECONBANKER_WEBHOOK_TIMEOUT_MS", 10_000, 10, 600_000)?,
            webhook_backoff: millis("RECONBANKER_WEBHOOK_BACKOFF_MS", 5_000, 1, 3_600_000)?,
            webhook_max_attempts: count("RECONBANKER_WEBHOOK_MAX_ATTEMPTS", 8, 1, 50)?,
            signing_secret_grace: secs("RECONBANKER_SIGNING_SECRET_GRACE_SECS", 86_400, 0, 30 * 86_400)?,
            event_retention: secs("RECONBANKER_EVENT_RETENTION_SECS", 604_800, 60, 365 * 86_400)?,
            listen: SocketAddr::new(host, port),
            data_dir,
            database_url,
            db_max_connections: count("RECONBANKER_DB_MAX_CONNECTIONS", 8, 1, 1000)?,
            jwt_secret,
            master_key,
            jwt_ttl: secs("RECONBANKER_JWT_TTL_SECS", 7 * 24 * 3600, 60, 365 * 24 * 3600)?,
            otp_rate_limit: count("RECONBANKER_OTP_RATE_LIMIT", 5, 1, 1_000_000)?,
            otp_rate_window: secs("RECONBANKER_OTP_RATE_WINDOW_SECS", 600, 1, 86_400)?,
            v1_rate_per_sec: count("RECONBANKER_V1_RATE_PER_SEC", 50, 1, 10_000_000)?,
            v1_burst: count("RECONBANKER_V1_BURST", 100, 1, 10_000_000)?,
            auth_failures_per_min: count("RECONBANKER_AUTH_FAILURES_PER_MIN", 30, 1, 1_000_000)?,
            login_failures: count("RECONBANKER_LOGIN_FAILURES", 10, 1, 1_000_000)?,
            assistance_timeout: secs("RECONBANKER_ASSISTANCE_TIMEOUT_SECS", 300, 10, 3600)?,
            allow_private_targets,
            key_usage_flush: Duration::from_secs(60),
        })
    }
}

fn parse<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    expected: &str,
) -> Result<Option<T>, ConfigError> {
    match get(name) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ConfigError(format!("{name} must be {expected} (got {v:?})"))),
    }
}

fn in_range<T: PartialOrd + fmt::Display>(name: &str, v: T, min: T, max: T) -> Result<(), ConfigError> {
    if v < min || v > max {
        return Err(ConfigError(format!("{name} must be from {min} to {max} (got {v})")));
    }
    Ok(())
}

fn parse_master_key(s: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(s).ok()?;
    bytes.try_into().ok()
}

/// The secrets the server runs with, after env overrides and generated files are resolved.
pub struct Secrets {
    pub jwt_secret: Vec<u8>,
    pub master_key: [u8; 32],
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
            Some(s) => s.clone(),
            None => read_or_generate(&config.data_dir.join("jwt_secret"))?.into_bytes(),
        };
        let master_key = match config.master_key {
            Some(k) => k,
            None => {
                let path = config.data_dir.join("master.key");
                let text = read_or_generate(&path)?;
                parse_master_key(&text)
                    .ok_or_else(|| ConfigError(format!("{} must hold 64 hexadecimal characters", path.display())))?
            }
        };
        Ok(Self { jwt_secret, master_key })
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
        assert_eq!(first.master_key, again.master_key);
        assert_eq!(first.jwt_secret, again.jwt_secret);
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
}
