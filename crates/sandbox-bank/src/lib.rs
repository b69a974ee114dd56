//! The sandbox bank (docs/product.md §10): a real HTTP bank website with scripted users, used for the demo,
//! the end-to-end tests and the benchmarks, so every flow runs on one machine with no real bank.
//! The sandbox connector drives it like a scraper: a cookie jar, GET a form, parse it, POST it back.
//!
//! Start it in tests on `127.0.0.1:0` with the listener bound first, so it is ready by
//! construction:
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use sandbox_bank::{BankConfig, SandboxBank};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let base = format!("http://{}", listener.local_addr()?);
//! let bank = SandboxBank::new(BankConfig::default());
//! tokio::spawn(bank.clone().serve(listener, std::future::pending()));
//! // drive `base` over HTTP; control time and sessions through `bank`.
//! # Ok(()) }
//! ```
//!
//! # Scripted users
//!
//! | username | password | behaviour |
//! |---|---|---|
//! | `user_good` | `pass_good` | no second factor |
//! | `user_otp` | `pass_otp` | 6-digit numeric code, right code `123456` |
//! | `user_alnum` | `pass_alnum` | 8-character alphanumeric code, right code `AB12CD34` |
//! | `user_locked` | `pass_locked` | the login page reports the account locked |
//! | `user_flaky` | `pass_flaky` | no second factor; some requests fail with 5xx (below) |
//! | `user_slow` | `pass_slow` | no second factor; every request waits `slow_delay` (below) |
//!
//! Anyone else, or a wrong password, gets `bad_credentials`. Codes are compared exactly (case
//! matters) after trimming surrounding whitespace.
//!
//! # Pages and the markers to scrape
//!
//! Every page's `<body>` carries `data-page` = `home` | `login` | `otp` | `movements` | `error`.
//! Every error is a `<p class="error" data-error="CODE">`.
//!
//! - `GET /` — home page with `<a id="login-link" href="/login">`.
//! - `GET /login` — `<form id="login-form" method="post" action="/login">` with inputs `csrf`
//!   (hidden), `username`, `password`. Sets the `sandbox_session` cookie (HttpOnly, `Path=/`) when
//!   the visitor has no live session; the CSRF token belongs to that session and stays valid until
//!   the login steps past the password.
//! - `POST /login` (form-urlencoded `username`, `password`, `csrf`):
//!   - no session cookie or a wrong/missing `csrf` → **400**, `data-error="csrf"`;
//!   - an unreadable form → **400**, `data-error="bad_request"`;
//!   - wrong password / unknown user → **200** login page, `data-error="bad_credentials"`;
//!   - `user_locked` → **200** login page, `data-error="account_locked"`;
//!   - a user with a second factor → **303** `Location: /otp` with a new session cookie;
//!   - otherwise → **303** `Location: /movements` with a new session cookie.
//! - `GET /otp` (session waiting for a code) → `<form id="otp-form" method="post" action="/otp"
//!   data-length="6" data-type="numeric" data-purpose="login" data-attempts-left="3">` with inputs
//!   `csrf` (hidden) and `code`. (`user_alnum`: `data-length="8" data-type="alphanumeric"`.)
//!   Any other session → **303** `/login`.
//! - `POST /otp` (`code`, `csrf`):
//!   - right code → **303** `/movements`, new session cookie, logged in;
//!   - wrong code with attempts left → **200** OTP page with
//!     `<p class="error" data-error="wrong_code" data-attempts-left="N">` (and the form's
//!     `data-attempts-left="N"`);
//!   - the last wrong code (`otp_attempts`, default 3) → **200** page with
//!     `data-error="otp_locked"`; the session is destroyed (cookie cleared). A fresh login starts
//!     over with all attempts.
//!   - no session waiting for a code → **303** `/login`; wrong `csrf` → **400** `data-error="csrf"`.
//!
//!   Every judged code (a POST /otp that reached a session waiting for a code, with a valid csrf)
//!   publishes an [`OtpReceived`] before the answer is sent.
//! - `GET /movements` (logged in) → `<table id="movements">`, newest first, one
//!   `<tr data-id="ID">` per movement with cells `td.date` (RFC 3339, UTC, e.g.
//!   `2025-01-01T08:00:00Z`), `td.amount` (`-12.34`), `td.currency` (`EUR`), `td.name` (empty when
//!   there is no counterparty), `td.description`. Text is HTML-escaped (names include `&`, `'`,
//!   `<`, and non-ASCII). Not logged in, idle-expired or dropped → **303** `/login`.
//! - `GET /api/movements` (logged in) → `{"movements":[{"id","date","amount","currency","name",
//!   "description"}]}` newest first (`name` is `null` when there is none); not logged in →
//!   **401** `{"error":"not_logged_in"}`.
//! - `POST /logout` → destroys the session, clears the cookie, **303** `/login` (no csrf needed).
//! - Anything else → **404**, `data-error="not_found"`.
//!
//! # Failure patterns (deterministic, counted per bank instance)
//!
//! - `user_flaky`, login: the bank counts every `POST /login` whose form names `user_flaky`
//!   (before the csrf or the password are looked at); the 1st, 3rd, 5th, … answer **503**
//!   (`data-error="unavailable"`, `Retry-After: 1`), the 2nd, 4th, … are processed normally. So
//!   a connector that retries a 503 once always gets in.
//! - `user_flaky`, movements: the bank counts every logged-in read of `GET /movements` and
//!   `GET /api/movements` by `user_flaky` (one shared counter); the 3rd, 6th, 9th, … answer **502**
//!   (HTML `data-error="bad_gateway"`, or JSON `{"error":"bad_gateway"}`). The session stays
//!   valid.
//! - `user_slow`: a `POST /login` naming `user_slow`, and every request carrying a `user_slow`
//!   session (`GET /login`, `/movements`, `/api/movements`, `POST /logout`, `POST /login`), waits
//!   [`BankConfig::slow_delay`] (a `tokio::time::sleep`, so paused-clock tests skip it) before
//!   answering. The request is processed first and the answer held back, so a client that times
//!   out may leave a login done on the bank's side (as with a real slow bank); the session's idle
//!   timer restarts when the answer leaves, so a delay longer than the idle timeout does not
//!   expire it.
//!
//! # Time
//!
//! The bank's clock is [`movements::base_time`] + real elapsed time since [`SandboxBank::new`] +
//! everything added by [`SandboxBank::advance`]. Movements follow it (see [`movements`]): every
//! user starts with 5, and one more appears per `movement_interval`. Session idle expiry is
//! measured on tokio's clock instead, so `advance` never logs anyone out; use
//! [`SandboxBank::drop_sessions`] for that.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

mod html;
pub mod movements;
mod routes;
mod sessions;
pub mod users;

pub use movements::Movement;
pub use routes::SESSION_COOKIE;

use sessions::Sessions;

/// How many [`OtpReceived`] events a slow subscriber may fall behind before it sees `Lagged`.
const OTP_EVENT_BUFFER: usize = 4096;

/// Tunables of the sandbox bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankConfig {
    /// Wrong codes a login may submit before it is locked (at least 1). Default 3.
    pub otp_attempts: u32,
    /// How long every request of `user_slow` waits. Default 3 s.
    pub slow_delay: Duration,
    /// Sessions unused this long are gone. Default 10 min.
    pub session_idle_timeout: Duration,
    /// One new movement per user appears every interval of bank time. Default 5 min; zero means
    /// none ever appear.
    pub movement_interval: Duration,
}

impl Default for BankConfig {
    fn default() -> Self {
        BankConfig {
            otp_attempts: 3,
            slow_delay: Duration::from_secs(3),
            session_idle_timeout: Duration::from_secs(10 * 60),
            movement_interval: Duration::from_secs(5 * 60),
        }
    }
}

/// One `POST /otp` the bank judged. Deliberately without the code itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtpReceived {
    /// Whose login the code was for.
    pub username: String,
    /// Whether the code was right.
    pub accepted: bool,
    /// When the bank judged it.
    pub at: std::time::Instant,
}

/// Counters since the bank started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BankStats {
    /// Every `POST /login` with a readable form (including ones answered 503 or refused).
    pub logins_attempted: u64,
    /// Logins that reached the movements (directly or after a right code).
    pub logins_succeeded: u64,
    /// Codes judged by `POST /otp`.
    pub otp_submissions: u64,
    /// Codes accepted.
    pub otp_accepted: u64,
    /// Responses with a 5xx status the bank chose to send (flaky pattern).
    pub server_errors: u64,
    /// Logged-in sessions that have not idled out.
    pub live_sessions: u64,
}

#[derive(Debug, Default)]
struct Counters {
    logins_attempted: AtomicU64,
    logins_succeeded: AtomicU64,
    otp_submissions: AtomicU64,
    otp_accepted: AtomicU64,
    server_errors: AtomicU64,
    flaky_login_posts: AtomicU64,
    flaky_movement_reads: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    config: BankConfig,
    started: std::time::Instant,
    advanced: Mutex<Duration>,
    sessions: Mutex<Sessions>,
    otp_events: broadcast::Sender<OtpReceived>,
    counters: Counters,
}

impl Inner {
    // A panic elsewhere cannot leave the session map half-updated in a way that matters more
    // than refusing every later request would, so a poisoned lock is simply taken over.
    fn lock_sessions(&self) -> MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_advanced(&self) -> MutexGuard<'_, Duration> {
        self.advanced.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sandbox bank: a cheap `Clone` handle on shared state.
#[derive(Debug, Clone)]
pub struct SandboxBank {
    inner: Arc<Inner>,
}

impl SandboxBank {
    /// A bank with no sessions whose clock starts now at [`movements::base_time`].
    pub fn new(config: BankConfig) -> Self {
        let (otp_events, _) = broadcast::channel(OTP_EVENT_BUFFER);
        SandboxBank {
            inner: Arc::new(Inner {
                sessions: Mutex::new(Sessions::new(config.session_idle_timeout)),
                config,
                started: std::time::Instant::now(),
                advanced: Mutex::new(Duration::ZERO),
                otp_events,
                counters: Counters::default(),
            }),
        }
    }

    /// The configuration the bank runs with.
    pub fn config(&self) -> &BankConfig {
        &self.inner.config
    }

    /// The website.
    pub fn router(&self) -> axum::Router {
        routes::router(self.clone())
    }

    /// Serves the website on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Moves the bank's clock forward: movements due by then appear.
    pub fn advance(&self, by: Duration) {
        let mut advanced = self.inner.lock_advanced();
        *advanced = advanced.saturating_add(by);
    }

    /// How far the bank's clock is past [`movements::base_time`].
    pub fn clock_offset(&self) -> Duration {
        self.inner.started.elapsed().saturating_add(*self.inner.lock_advanced())
    }

    /// The bank's clock.
    pub fn now(&self) -> DateTime<Utc> {
        let offset = chrono::Duration::from_std(self.clock_offset()).unwrap_or(chrono::Duration::MAX);
        movements::base_time()
            .checked_add_signed(offset)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// What `username`'s statement shows right now (newest first) — the expected result of a read.
    pub fn movements_of(&self, username: &str) -> Vec<Movement> {
        movements::statement(username, self.clock_offset(), self.inner.config.movement_interval)
    }

    /// Destroys every session of `username` (logged in or waiting for a code), as a bank that
    /// drops sessions would; returns how many. Their next request is sent to `/login`.
    pub fn drop_sessions(&self, username: &str) -> usize {
        self.inner.lock_sessions().remove_user(username)
    }

    /// Every code the bank judges from now on (see [`OtpReceived`]).
    pub fn subscribe_otp(&self) -> broadcast::Receiver<OtpReceived> {
        self.inner.otp_events.subscribe()
    }

    /// Counters since the bank started.
    pub fn stats(&self) -> BankStats {
        let c = &self.inner.counters;
        let live = self.inner.lock_sessions().live_authenticated();
        BankStats {
            logins_attempted: c.logins_attempted.load(Relaxed),
            logins_succeeded: c.logins_succeeded.load(Relaxed),
            otp_submissions: c.otp_submissions.load(Relaxed),
            otp_accepted: c.otp_accepted.load(Relaxed),
            server_errors: c.server_errors.load(Relaxed),
            live_sessions: u64::try_from(live).unwrap_or(u64::MAX),
        }
    }
}
