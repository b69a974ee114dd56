//! Test harness: a real app on a random port, a fresh database per test (SQLite by default;
//! PostgreSQL when `RECONBANKER_TEST_BACKEND=postgres` and `TEST_DATABASE_URL` are set), and
//! a small typed client ([`client`]).

mod client;

pub use client::*;

use std::collections::HashMap;
use std::net::SocketAddr;

use std::sync::Arc;
use std::time::Duration;

use reconbanker::config::Config;
use reconbanker::push::events::{Event, RecvError, Subscriber};
use reconbanker::support::clock::ManualClock;
use reconbanker::{App, AppOptions, AppState};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use sandbox_bank::{BankConfig, SandboxBank};
use serde_json::{json, Value};
use sqlx::{Connection, Executor};
use tokio::sync::oneshot;

pub struct TestApp {
    pub addr: SocketAddr,
    /// Issue 11: where `/metrics` answers, with `RECONBANKER_METRICS_ADDR`.
    pub metrics: Option<SocketAddr>,
    pub state: AppState,
    pub client: reqwest::Client,
    _dir: Workdir,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// What a test leaves behind: its data directory and, on PostgreSQL, its database. Both go when
/// this is dropped; a restart hands it to the next app, so they outlive one process.
pub struct Workdir {
    pub dir: tempfile::TempDir,
    _db: Option<TestDatabase>,
}

impl Workdir {
    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// A PostgreSQL database created for one test, dropped with it.
pub(crate) struct TestDatabase {
    /// The server to connect to for the `DROP` (never the test database itself).
    admin_url: String,
    name: String,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs on the test's runtime thread, which cannot block on a future of its own:
        // the `DROP` runs on a short-lived thread with its own runtime, and only this test
        // waits for it. `WITH (FORCE)` ends the connections the app's pool may still hold when
        // the test ended without a graceful shutdown.
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&url).await?;
                conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await?;
                conn.close().await
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                if !std::thread::panicking() {
                    panic!("could not drop the test database {}: {e}", self.name);
                }
            }
            Err(_) => {
                if !std::thread::panicking() {
                    panic!("dropping the test database {} panicked", self.name);
                }
            }
        }
    }
}

impl Drop for TestApp {
    /// A test that ends without [`TestApp::shutdown`]: the server is told to stop and its task
    /// aborted before the fields (and with them the test database) go.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Res {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Res {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// Asserts a `/v1` error: status, the `{error: {code, message}}` shape and the code.
    #[track_caller]
    pub fn assert_v1_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "status; body: {}", self.text);
        assert_eq!(self.body["error"]["code"], code, "code; body: {}", self.text);
        assert!(
            self.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "message: {}",
            self.text
        );
        let keys: Vec<&String> = self.body.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["error"], "only `error` at the top level: {}", self.text);
    }
    /// Asserts a dashboard error: status, `{error: "<message>", code}`.
    #[track_caller]
    pub fn assert_api_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "status; body: {}", self.text);
        assert_eq!(self.body["code"], code, "code; body: {}", self.text);
        assert!(
            self.body["error"].as_str().is_some_and(|m| !m.is_empty()),
            "message: {}",
            self.text
        );
    }
}

pub const JWT_SECRET: &str = "test-jwt-secret-test-jwt-secret-0123";
pub const MASTER_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

pub(crate) async fn database(dir: &std::path::Path) -> (String, Option<TestDatabase>) {
    if std::env::var("RECONBANKER_TEST_BACKEND").as_deref() == Ok("postgres") {
        let base =
            std::env::var("TEST_DATABASE_URL").expect("RECONBANKER_TEST_BACKEND=postgres needs TEST_DATABASE_URL");
        let name = format!("rbk_it_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&base)
            .await
            .expect("connect to TEST_DATABASE_URL");
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create database");
        let _ = conn.close().await;
        let mut url = url::Url::parse(&base).expect("url");
        url.set_path(&name);
        let db = TestDatabase { admin_url: base, name };
        (url.to_string(), Some(db))
    } else {
        (format!("sqlite://{}", dir.join("test.db").display()), None)
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// Starts the app with extra environment-style settings (no real environment is touched).
    pub async fn spawn_with(overrides: &[(&str, &str)]) -> Self {
        Self::spawn_full(overrides, AppOptions::default()).await
    }

    pub async fn spawn_full(overrides: &[(&str, &str)], options: AppOptions) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (database_url, db) = database(dir.path()).await;
        let dir = Workdir { dir, _db: db };
        let mut env: HashMap<String, String> = HashMap::from([
            (
                "RECONBANKER_DATA_DIR".into(),
                dir.path().join("data").display().to_string(),
            ),
            ("DATABASE_URL".into(), database_url),
            ("JWT_SECRET".into(), JWT_SECRET.into()),
            ("RECONBANKER_MASTER_KEY".into(), MASTER_KEY.into()),
            ("RECONBANKER_ALLOW_PRIVATE_TARGETS".into(), "true".into()),
            ("RECONBANKER_DB_MAX_CONNECTIONS".into(), "4".into()),
            ("RECONBANKER_SANDBOX_BANK".into(), "off".into()),
        ]);
        for (k, v) in overrides {
            env.insert((*k).into(), (*v).into());
        }
        let config = Config::from_lookup(|k| env.get(k).cloned()).expect("config");
        Self::start(config, dir, options).await
    }

    /// Starts a second app on the same database and data directory (a restart).
    pub async fn restart(self, options: AppOptions) -> Self {
        let config = self.state.config.clone();
        let dir = self.shutdown().await;
        Self::start(config, dir, options).await
    }

    /// A restart with another configuration (same database and data directory).
    pub async fn restart_with_config(self, config: Config) -> Self {
        let dir = self.shutdown().await;
        Self::start(config, dir, AppOptions::default()).await
    }

    /// Starts the app on `config` with what an earlier one left behind (see [`TestApp::shutdown`]).
    pub async fn start(config: Config, dir: Workdir, options: AppOptions) -> Self {
        let app = App::build_with(config, options).await.expect("app builds");
        let state = app.state.clone();
        let metrics = app.metrics_addr();
        // Bound before the server task starts: ready by construction, no sleeps.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            app.serve(listener, async move {
                let _ = stopped.await;
            })
            .await
            .expect("server runs");
        });
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        TestApp {
            addr,
            metrics,
            state,
            client,
            _dir: dir,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// Graceful shutdown (flushes buffered work), waiting for the server to finish.
    /// Returns the data directory (and database) so the test can look at what was left behind.
    pub async fn shutdown(mut self) -> Workdir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task");
        }
        let placeholder = Workdir {
            dir: tempfile::tempdir().expect("tempdir"),
            _db: None,
        };
        std::mem::replace(&mut self._dir, placeholder)
    }

    /// Every event published from now on.
    pub async fn events(&self) -> Events {
        Events(self.state.bus.subscribe().await.expect("subscribe to the bus"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends a request; `headers` are raw pairs, `body` raw bytes (JSON or garbage).
    pub async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Option<Vec<u8>>) -> Res {
        let mut req = self.client.request(method, self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let res = req.send().await.expect("request sent");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body read");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Res {
            status,
            headers,
            body,
            text,
        }
    }

    /// JSON request with an optional Bearer token.
    pub async fn json(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Res {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth.as_deref().map(|a| vec![("authorization", a)]).unwrap_or_default();
        self.send(method, path, &headers, body.map(|b| b.to_string().into_bytes()))
            .await
    }

    pub async fn get(&self, path: &str, token: &str) -> Res {
        self.json(Method::GET, path, Some(token), None).await
    }

    /// `/v1` request with the key in `x-api-key`.
    pub async fn v1(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> Res {
        self.send(
            method,
            path,
            &[("x-api-key", key)],
            body.map(|b| b.to_string().into_bytes()),
        )
        .await
    }

    /// `GET /v1/accounts/:id/status` with `key`.
    pub async fn status(&self, account: &str, key: &str) -> StatusOut {
        self.v1_as(
            Method::GET,
            &format!("/v1/accounts/{account}/status"),
            key,
            None,
            StatusCode::OK,
        )
        .await
    }

    /// Registers and logs in a user; returns its token.
    pub async fn user(&self, email: &str) -> String {
        let creds = json!({"email": email, "password": "correct horse battery"});
        let _: RegisteredOut = self
            .call(
                Method::POST,
                "/auth/register",
                None,
                Some(creds.clone()),
                StatusCode::CREATED,
            )
            .await;
        let login: LoginOut = self
            .call(Method::POST, "/auth/login", None, Some(creds), StatusCode::OK)
            .await;
        login.token
    }

    pub async fn sandbox_bank(&self, token: &str) -> String {
        let banks: Vec<BankOut> = self.get_as("/banks", token, StatusCode::OK).await;
        banks
            .into_iter()
            .find(|b| b.code == "sandbox")
            .expect("sandbox bank seeded")
            .id
    }

    /// Keeps the background order poller off `account` for one poll interval, as though it had
    /// just been polled. A new account is due at once, so without this the worker's first poll
    /// races a test's own polls for the scripted answers. Call it before the account gets its
    /// `pending_orders_endpoint`; the test's first poll reschedules it as usual, and "poll now"
    /// still queues it for the worker.
    pub async fn hold_poller(&self, account: &str) {
        let id = account.parse().expect("account id");
        let interval = chrono::Duration::from_std(self.state.config.orders_poll_interval).expect("interval");
        self.state
            .store
            .request_poll(id, self.state.clock.now() + interval)
            .await
            .expect("hold the poller");
    }

    /// Creates an account on the sandbox bank; returns its id.
    pub async fn account(&self, token: &str, name: &str) -> String {
        let bank = self.sandbox_bank(token).await;
        let created: AccountOut = self
            .post_as(
                "/accounts",
                token,
                Some(json!({"bankId": bank, "name": name})),
                StatusCode::CREATED,
            )
            .await;
        created.id
    }

    /// Creates an API key; returns the full key.
    pub async fn key(&self, token: &str, scopes: &[&str], account_ids: Option<&[&str]>) -> String {
        let created: KeyOut = self
            .post_as(
                "/me/api-keys",
                token,
                Some(json!({"name": "test key", "scopes": scopes, "account_ids": account_ids})),
                StatusCode::CREATED,
            )
            .await;
        created.key.expect("the key is shown on creation")
    }
}

/// The usual start: a user, an account and a key with both scopes for it.
pub struct Fixture {
    pub app: TestApp,
    pub token: String,
    pub account: String,
    pub key: String,
}

impl Fixture {
    pub async fn new() -> Self {
        let app = TestApp::spawn().await;
        Self::on(app).await
    }

    pub async fn on(app: TestApp) -> Self {
        let token = app.user("owner@example.com").await;
        let account = app.account(&token, "Main account").await;
        let key = app.key(&token, &["otp:write", "status:read"], None).await;
        Fixture {
            app,
            token,
            account,
            key,
        }
    }

    pub fn account_id(&self) -> reconbanker_store::AccountId {
        self.account.parse().expect("uuid")
    }

    pub async fn user_id(&self) -> reconbanker_store::UserId {
        let me: MeOut = self.app.get_as("/me", &self.token, StatusCode::OK).await;
        me.id.parse().expect("uuid")
    }
}

/// A subscription to the app's event bus.
pub struct Events(Box<dyn Subscriber>);

/// An event as a test reads it: its data parsed.
#[derive(Debug)]
#[allow(dead_code)]
pub struct Seen {
    pub seq: i64,
    pub id: uuid::Uuid,
    pub kind: String,
    pub account_id: reconbanker_store::AccountId,
    pub data: serde_json::Value,
    pub occurred_at: reconbanker_store::Timestamp,
}

impl From<Arc<Event>> for Seen {
    fn from(e: Arc<Event>) -> Self {
        Self {
            seq: e.seq,
            id: e.id,
            kind: e.kind.clone(),
            account_id: e.account_id,
            data: serde_json::from_str(e.data.get()).expect("event data is JSON"),
            occurred_at: e.occurred_at,
        }
    }
}

impl Events {
    /// The next event of any kind for `account`; fails after 30 s.
    pub async fn next_any(&mut self, account: &str) -> Seen {
        let wait = async {
            loop {
                match self.0.recv().await {
                    Ok(e) if e.account_id.to_string() == account => return e,
                    Ok(_) | Err(RecvError::Lagged(_)) => continue,
                    Err(e) => panic!("event bus closed: {e}"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .unwrap_or_else(|_| panic!("no event for {account}"))
            .into()
    }

    /// The next event of `kind` for `account` (others are skipped); fails after 30 s.
    pub async fn next(&mut self, account: &str, kind: &str) -> Seen {
        let wait = async {
            loop {
                match self.0.recv().await {
                    Ok(e) if e.kind == kind && e.account_id.to_string() == account => return e,
                    Ok(_) | Err(RecvError::Lagged(_)) => continue,
                    Err(e) => panic!("event bus closed: {e}"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .unwrap_or_else(|_| panic!("no {kind} event for {account} within 30 s"))
            .into()
    }
}

/// An app wired to a real sandbox bank on port 0, with a manual clock for assistance deadlines.
pub struct BankFixture {
    pub app: TestApp,
    pub bank: SandboxBank,
    pub clock: ManualClock,
    pub token: String,
}

pub async fn start_bank(config: BankConfig) -> (SandboxBank, String) {
    let bank = SandboxBank::new(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    let served = bank.clone();
    tokio::spawn(async move {
        let _ = served.serve(listener, std::future::pending()).await;
    });
    (bank, url)
}

impl BankFixture {
    pub async fn new() -> Self {
        Self::with(&[], BankConfig::default()).await
    }

    pub async fn with(overrides: &[(&str, &str)], bank_config: BankConfig) -> Self {
        let (bank, bank_url) = start_bank(bank_config).await;
        let clock = ManualClock::default();
        let mut env: Vec<(&str, &str)> = vec![
            ("RECONBANKER_SANDBOX_BANK", bank_url.as_str()),
            ("RECONBANKER_RETRY_BACKOFF_MS", "10"),
            ("RECONBANKER_BANK_TIMEOUT_SECS", "5"),
        ];
        env.extend_from_slice(overrides);
        let options = AppOptions {
            clock: Some(Arc::new(clock.clone())),
            ..AppOptions::default()
        };
        let app = TestApp::spawn_full(&env, options).await;
        let token = app.user("owner@example.com").await;
        BankFixture {
            app,
            bank,
            clock,
            token,
        }
    }

    /// An account on the sandbox bank with these bank credentials and config fields.
    pub async fn account(&self, username: &str, password: &str, extra: Value) -> String {
        let id = self.app.account(&self.token, username).await;
        self.app.hold_poller(&id).await;
        let mut config = json!({"bank_username": username, "bank_password": password});
        if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        let r = self
            .app
            .json(
                Method::PUT,
                &format!("/accounts/{id}/config"),
                Some(&self.token),
                Some(config),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        id
    }

    pub async fn post(&self, path: &str) -> Res {
        self.app.json(Method::POST, path, Some(&self.token), None).await
    }

    /// `POST` with the owner's token and no body, answering `status` with a `T`.
    pub async fn post_as<T: serde::de::DeserializeOwned>(&self, path: &str, status: StatusCode) -> T {
        self.app.post_as(path, &self.token, None, status).await
    }

    /// `GET /accounts/:id` as the owner.
    pub async fn account_out(&self, id: &str) -> AccountOut {
        self.app
            .get_as(&format!("/accounts/{id}"), &self.token, StatusCode::OK)
            .await
    }
}
