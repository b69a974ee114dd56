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
//! **Tagged usernames.** `<user>+<tag>` (a scripted `<user>`, a tag of 1–32 characters from
//! `[A-Za-z0-9_-]`; anything else is an unknown user), e.g. `user_good+shop1`, logs in with
//! `<user>`'s password and behaves exactly like `<user>` (second factor and code, lock, flaky and
//! slow patterns) but is a user of its own: its own sessions (and [`SandboxBank::drop_sessions`]
//! matches the full name), its own flaky counters, its own injected movements, and its own
//! deterministic movements — seeded with the full username, so `user_good+shop1` has ids
//! `user_good+shop1-0`, … and amounts, names and descriptions different from `user_good`'s. So
//! parallel tests and accounts never see each other's movements. Pages, [`OtpReceived`] and the
//! statement show the full username.
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
//! - `GET /movements` (logged in) → `<table id="movements">`, newest first (by date; see
//!   [`movements::statement`] for ties), at most [`movements::MAX_LISTED`] rows, one
//!   `<tr data-id="ID">` per movement with cells `td.date` (RFC 3339, UTC, whole seconds, e.g.
//!   `2025-01-01T08:00:00Z`), `td.amount` (an exact decimal text: `-12.34` for the deterministic
//!   movements, as given for injected ones), `td.currency` (`EUR` for the deterministic movements),
//!   `td.name` (empty when there is no counterparty), `td.description`. Text is HTML-escaped
//!   (names include `&`, `'`, `<`, and non-ASCII). Not logged in, idle-expired or dropped →
//!   **303** `/login`.
//! - `GET /api/movements` (logged in) → `{"movements":[{"id","date","amount","currency","name",
//!   "description"}]}` newest first (`name` is `null` when there is none); not logged in →
//!   **401** `{"error":"not_logged_in"}`.
//! - `POST /logout` → destroys the session, clears the cookie, **303** `/login` (no csrf needed).
//! - `/js/…` — the same bank as a JavaScript single-page app (`sandbox-js`): the shells
//!   `/js/login`, `/js/otp`, `/js/movements`, the script `/js/app.js` and its JSON API
//!   `/js/api/…`, described in [`js`].
//! - Anything else → **404**, `data-error="not_found"`.
//!
//! # Sandbox controls (`/_sandbox/…`, JSON; this bank only, a real bank has none)
//!
//! Every refusal below is a JSON body `{"error": "<field>: <what is wrong>"}` (`body: …` when the
//! body as a whole is unreadable).
//!
//! - `POST /_sandbox/movements` with a JSON object body
//!   `{"username": "user_good+shop1", "amount": "1500.00", "currency": "UYU", "name": "JUAN PEREZ",
//!   "description": "Transfer REF A1B2C3", "received_at": "2025-03-01T10:00:00-03:00"}` → **201**
//!   `{"id": "<username>-i<n>"}` (n = 1, 2, … per username). The movement is listed in that
//!   username's statement (HTML and `/api/movements`) from the next read on, whatever its date,
//!   sorted in by date. Fields:
//!   - `username` (string, required): a scripted user or `<user>+<tag>`;
//!   - `amount` (string, required): an exact decimal — optional `-`, digits, optionally `.` and
//!     1–4 digits (`1500`, `1500.5`, `-0.0001`); listed exactly as given (never through a float);
//!   - `currency` (string, required): 3 upper-case letters (any, not only `EUR`);
//!   - `name` (string or `null`, optional → `null`);
//!   - `description` (string, required, may be empty);
//!   - `received_at` (RFC 3339 string or `null`, optional → the bank's clock now): listed in UTC,
//!     whole seconds (fractions dropped).
//!
//!   Unknown fields are ignored. Malformed JSON, a non-object, a missing field, a wrong type, a bad
//!   amount, currency or date, or an unknown user → **400**; a body over 64 KiB → **413**
//!   `{"error": "body: too large"}`. In process: [`SandboxBank::add_movement`] (same checks). A
//!   username keeps only its [`movements::MAX_LISTED`] newest injected movements (older ones could
//!   never be listed anyway).
//! - The sandbox shop, a pending-orders endpoint for the reconciliation demo. Both routes need
//!   `Authorization: Bearer sandbox` ([`SHOP_TOKEN`]); without it or with another token →
//!   **401** `{"error":"unauthorized"}` (checked first). `?shop=<name>` (1–64 characters from
//!   `[A-Za-z0-9_-]`, else **400**) selects one of several independent lists, so parallel tests
//!   do not collide; absent = [`DEFAULT_SHOP`].
//!   - `GET /_sandbox/shop/orders` → **200** `Content-Type: application/json`, exactly the bytes
//!     last stored for that shop, `[]` before any.
//!   - `PUT /_sandbox/shop/orders` with a body that is UTF-8 JSON whose top level is an array (of
//!     anything; a leading BOM tolerated) → **204**, the body stored verbatim (numbers such as
//!     `1.5e3` or many decimals come back as written). Anything else (an object, even one with a
//!     `data` array, or malformed JSON) → **400**; a body over 16 MiB → **413**. At most 1024 shops
//!     hold a list (a new one beyond that → **400**). In process: [`SandboxBank::set_shop_orders`]
//!     and [`SandboxBank::shop_orders`].
//!
//! # Failure patterns (deterministic, counted per bank instance and per username)
//!
//! Each `user_flaky+<tag>` has its own counters, and `user_slow+<tag>` waits like `user_slow`.
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
//! The bank's clock starts at the real UTC time of [`SandboxBank::new`] (whole seconds,
//! [`SandboxBank::started_at`]) and is that + real elapsed time since then + everything added by
//! [`SandboxBank::advance`] ([`SandboxBank::now`]). Movements follow it (see [`movements`]): every
//! username starts with 5, dated `movement_interval` apart before the start (the newest one
//! `movement_interval` before it; one minute apart when the interval is zero), and one more
//! appears per `movement_interval` of bank time, dated when it appears. So a fresh bank's
//! movements are dated within `5 × movement_interval` (25 min by default) before now. Session
//! idle expiry is measured on tokio's clock instead, so `advance` never logs anyone out; use
//! [`SandboxBank::drop_sessions`] for that.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

mod controls;
mod flow;
mod html;
mod idle;
// issue 9: the JavaScript sandbox bank (`sandbox-js`).
pub mod js;
pub mod movements;
mod routes;
mod sessions;
pub mod users;

/// How long `sandbox-js` remembers a device (bank clock).
pub const DEVICE_TTL: Duration = Duration::from_secs(90 * 86_400);

pub use controls::{AddMovement, InvalidMovement, InvalidOrders, DEFAULT_SHOP, SHOP_TOKEN};
pub use movements::Movement;
pub use routes::SESSION_COOKIE;
// Issue 9 (keep_alive): sandbox-js's idle timeout.
pub use idle::{JsIdle, JsIdleEvent};

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
    /// One new movement per user appears every interval of bank time; the initial movements are
    /// this far apart. Default 5 min; zero means none ever appear (and the initial ones are one
    /// minute apart).
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
    /// Whose login the code was for (the full username, tag included).
    pub username: String,
    /// Whether the code was right.
    pub accepted: bool,
    /// When the bank judged it.
    pub at: std::time::Instant,
    /// `sandbox-js`: when the code was typed into the page (ms since the Unix epoch, the page's
    /// clock), as its form reported it.
    pub typed_at_ms: Option<i64>,
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
}

/// Per-username state that is not a session: the flaky counters and the injected movements.
#[derive(Debug, Default)]
struct UserState {
    flaky_login_posts: u64,
    flaky_movement_reads: u64,
    /// Injected movements, in the order added (trimmed, see `movements::trim_injected`).
    injected: Vec<Movement>,
    /// How many movements were ever injected for this username (the `n` of `<username>-i<n>`).
    injected_total: u64,
}

#[derive(Debug)]
struct Inner {
    config: BankConfig,
    /// The bank's clock at `started` (real UTC time, whole seconds).
    start: DateTime<Utc>,
    started: std::time::Instant,
    advanced: Mutex<Duration>,
    sessions: Mutex<Sessions>,
    users: Mutex<HashMap<String, UserState>>,
    shops: Mutex<HashMap<String, String>>,
    otp_events: broadcast::Sender<OtpReceived>,
    /// When the bank served its code challenge (see [`SandboxBank::subscribe_otp_asked`]).
    asked_events: broadcast::Sender<std::time::Instant>,
    counters: Counters,
    /// `sandbox-js` renders its redesigned pages (see [`SandboxBank::set_js_redesign`]).
    js_redesigned: std::sync::atomic::AtomicBool,
    /// `sandbox-js` lists these users' movements in pages of this many (see
    /// [`SandboxBank::set_js_page_size`]).
    js_page_sizes: Mutex<HashMap<String, usize>>,
    /// Remembered devices of `sandbox-js`: token → (username, valid until, bank clock).
    devices: Mutex<HashMap<String, (String, DateTime<Utc>)>>,
    /// Users whose `sandbox-js` movements page asks "are you still there?" first.
    js_interruptions: Mutex<std::collections::HashSet<String>>,
    /// `sandbox-js`'s idle timeouts (issue 9, keep_alive).
    js_idle: idle::IdleState,
}

// A panic elsewhere cannot leave these maps half-updated in a way that matters more than refusing
// every later request would, so a poisoned lock is simply taken over.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    fn lock_sessions(&self) -> MutexGuard<'_, Sessions> {
        lock(&self.sessions)
    }

    fn lock_advanced(&self) -> MutexGuard<'_, Duration> {
        lock(&self.advanced)
    }

    fn lock_users(&self) -> MutexGuard<'_, HashMap<String, UserState>> {
        lock(&self.users)
    }

    fn lock_shops(&self) -> MutexGuard<'_, HashMap<String, String>> {
        lock(&self.shops)
    }
}

/// The sandbox bank: a cheap `Clone` handle on shared state.
#[derive(Debug, Clone)]
pub struct SandboxBank {
    inner: Arc<Inner>,
}

impl SandboxBank {
    /// A bank with no sessions whose clock starts now, at the real UTC time (whole seconds).
    pub fn new(config: BankConfig) -> Self {
        let (otp_events, _) = broadcast::channel(OTP_EVENT_BUFFER);
        let (asked_events, _) = broadcast::channel(OTP_EVENT_BUFFER);
        SandboxBank {
            inner: Arc::new(Inner {
                sessions: Mutex::new(Sessions::new(config.session_idle_timeout)),
                config,
                start: Utc::now().trunc_subsecs(0),
                started: std::time::Instant::now(),
                advanced: Mutex::new(Duration::ZERO),
                users: Mutex::new(HashMap::new()),
                shops: Mutex::new(HashMap::new()),
                otp_events,
                asked_events,
                counters: Counters::default(),
                js_redesigned: std::sync::atomic::AtomicBool::new(false),
                js_page_sizes: Mutex::default(),
                devices: Mutex::default(),
                js_interruptions: Mutex::default(),
                js_idle: idle::IdleState::default(),
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

    /// Where the bank's clock started: the real UTC time of [`SandboxBank::new`], whole seconds.
    pub fn started_at(&self) -> DateTime<Utc> {
        self.inner.start
    }

    /// How far the bank's clock is past [`SandboxBank::started_at`].
    pub fn clock_offset(&self) -> Duration {
        self.inner.started.elapsed().saturating_add(*self.inner.lock_advanced())
    }

    /// The bank's clock.
    pub fn now(&self) -> DateTime<Utc> {
        let offset = chrono::Duration::from_std(self.clock_offset()).unwrap_or(chrono::Duration::MAX);
        self.inner
            .start
            .checked_add_signed(offset)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// What `username`'s statement shows right now (newest first) — the expected result of a read.
    /// `username` is the full login name (`user_good+a` has its own statement).
    pub fn movements_of(&self, username: &str) -> Vec<Movement> {
        let offset = self.clock_offset();
        let users = self.inner.lock_users();
        let injected = users.get(username).map(|u| u.injected.as_slice()).unwrap_or(&[]);
        movements::statement(
            username,
            self.inner.start,
            offset,
            self.inner.config.movement_interval,
            injected,
        )
    }

    /// Adds a movement to `movement.username`'s statement (as `POST /_sandbox/movements` does,
    /// with the same checks); it is listed from the next read on. Returns its id.
    pub fn add_movement(&self, movement: AddMovement) -> Result<String, InvalidMovement> {
        controls::check(&movement)?;
        let date = movement.received_at.unwrap_or_else(|| self.now()).trunc_subsecs(0);
        let mut users = self.inner.lock_users();
        let user = users.entry(movement.username.clone()).or_default();
        user.injected_total += 1;
        let id = format!("{}-i{}", movement.username, user.injected_total);
        user.injected.push(Movement {
            id: id.clone(),
            date,
            amount: movement.amount,
            currency: movement.currency,
            name: movement.name,
            description: movement.description,
        });
        movements::trim_injected(&mut user.injected);
        Ok(id)
    }

    /// The pending-orders list of the sandbox shop `shop` ([`DEFAULT_SHOP`] for the default one):
    /// the JSON text last stored, `[]` before any.
    pub fn shop_orders(&self, shop: &str) -> String {
        self.inner
            .lock_shops()
            .get(shop)
            .cloned()
            .unwrap_or_else(|| "[]".to_owned())
    }

    /// Replaces the pending-orders list of the sandbox shop `shop` (as `PUT /_sandbox/shop/orders`
    /// does, with the same checks): `orders` must be a JSON array and is kept verbatim.
    pub fn set_shop_orders(&self, shop: &str, orders: &str) -> Result<(), InvalidOrders> {
        controls::check_shop_name(shop)?;
        controls::check_orders(orders.as_bytes())?;
        let mut shops = self.inner.lock_shops();
        if !shops.contains_key(shop) && shops.len() >= controls::MAX_SHOPS {
            return Err(InvalidOrders::TooManyShops);
        }
        shops.insert(shop.to_owned(), orders.to_owned());
        Ok(())
    }

    /// Destroys every session of `username` (logged in or waiting for a code), as a bank that
    /// drops sessions would; returns how many. Their next request is sent to `/login`.
    /// `username` is matched exactly: `user_good` does not touch `user_good+a`'s sessions.
    pub fn drop_sessions(&self, username: &str) -> usize {
        self.inner.lock_sessions().remove_user(username)
    }

    /// Issue 9: `sandbox-js` as a bank that changed its site. While on, its login form submits
    /// with an `<input type="submit" class="redesigned-submit">` instead of a `<button>`
    /// (everything else the same), so a definition written for the old page no longer matches.
    pub fn set_js_redesign(&self, on: bool) {
        self.inner.js_redesigned.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Issue 9: `sandbox-js` lists `username`'s movements (exactly that username) in pages of
    /// `size`, newest first, each page with an "Older movements" button (`button#next-page`)
    /// while older ones remain; `None` (the default) lists them all on one page.
    pub fn set_js_page_size(&self, username: &str, size: Option<usize>) {
        let mut sizes = lock(&self.inner.js_page_sizes);
        match size.filter(|n| *n > 0) {
            Some(n) => sizes.insert(username.to_owned(), n),
            None => sizes.remove(username),
        };
    }

    /// A new remembered-device token for `username` (`sandbox-js`, after a code was accepted).
    pub(crate) fn remember_device(&self, username: &str) -> String {
        use rand::Rng;
        let token: String = (0..32)
            .map(|_| char::from(b"0123456789abcdef"[rand::thread_rng().gen_range(0..16)]))
            .collect();
        let until = self.now() + chrono::Duration::from_std(DEVICE_TTL).unwrap_or(chrono::Duration::zero());
        lock(&self.inner.devices).insert(token.clone(), (username.to_owned(), until));
        token
    }

    /// Whose remembered device `token` is, while it is valid (bank clock).
    pub(crate) fn device_user(&self, token: &str) -> Option<String> {
        let now = self.now();
        lock(&self.inner.devices)
            .get(token)
            .filter(|(_, until)| *until > now)
            .map(|(user, _)| user.clone())
    }

    /// Issue 9: the bank forgets every device remembered for `username` (exactly), as a bank
    /// does when its customer revokes them; the next login asks for a code again.
    pub fn forget_devices(&self, username: &str) -> usize {
        let mut devices = lock(&self.inner.devices);
        let before = devices.len();
        devices.retain(|_, (user, _)| user != username);
        before - devices.len()
    }

    /// Issue 9: while on, `sandbox-js` interrupts `username` (exactly) on every visit of the
    /// movements page with an "are you still there?" dialog (`#session-timeout`) that must be
    /// answered (`button#stay`) before the movements load — the kind of modal a definition's
    /// `[session] watch` rules deal with.
    pub fn set_js_interruption(&self, username: &str, on: bool) {
        let mut set = lock(&self.inner.js_interruptions);
        if on {
            set.insert(username.to_owned());
        } else {
            set.remove(username);
        }
    }

    pub(crate) fn js_interrupts(&self, username: &str) -> bool {
        lock(&self.inner.js_interruptions).contains(username)
    }

    pub(crate) fn js_page_size(&self, username: &str) -> Option<usize> {
        lock(&self.inner.js_page_sizes).get(username).copied()
    }

    pub(crate) fn js_redesigned(&self) -> bool {
        self.inner.js_redesigned.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every code the bank judges from now on (see [`OtpReceived`]).
    pub fn subscribe_otp(&self) -> broadcast::Receiver<OtpReceived> {
        self.inner.otp_events.subscribe()
    }

    /// When the bank asks for a code from now on: the instant each `GET /otp` challenge page is
    /// served (benchmarks time what follows from the bank's own clock, to the microsecond).
    pub fn subscribe_otp_asked(&self) -> broadcast::Receiver<std::time::Instant> {
        self.inner.asked_events.subscribe()
    }

    /// Announces a challenge page served (no receiver is fine).
    pub(crate) fn otp_asked(&self) {
        let _ = self.inner.asked_events.send(std::time::Instant::now());
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
