//! Multi-process harness: real `reconbanker serve` processes (the built binary) on one
//! throwaway database. Each test makes its own PostgreSQL database on the suite's server
//! (`TEST_DATABASE_URL`), starts its instances on random ports and waits on each one's ready
//! line — never on a sleep.

// Each test module uses a part of the harness.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, Executor};

pub const BIN: &str = env!("CARGO_BIN_EXE_reconbanker");
/// How long a start (migrations included) or an expected exit may take.
pub const START_WITHIN: Duration = Duration::from_secs(60);
/// How long a test waits for something that should happen at once.
pub const WAIT: Duration = Duration::from_secs(20);
const READY: &str = "ready on http://";
/// Shared by every instance of a test, as a deployment shares them (tokens and sealed secrets
/// must be readable by any instance). Test values, not secrets.
const JWT_SECRET: &str = "scaleout-test-jwt-secret-0123456789abcdef";
const MASTER_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// The PostgreSQL server of the suite, or `None` (with a notice) when `TEST_DATABASE_URL` is
/// not set. `REQUIRE_POSTGRES=1` turns the skip into a failure.
pub fn postgres_server() -> Option<String> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set"
            );
            eprintln!("NOTICE: TEST_DATABASE_URL is not set; this multi-instance PostgreSQL test is SKIPPED");
            None
        }
    }
}

/// A database of its own on the suite's server, dropped (with its connections) at the end.
pub struct Database {
    admin_url: String,
    name: String,
    pub url: String,
}

impl Database {
    pub async fn create(server: &str) -> Self {
        let name = format!("rbk_scale_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(server)
            .await
            .expect("connect to TEST_DATABASE_URL");
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create database");
        let _ = conn.close().await;
        let mut url = url::Url::parse(server).expect("TEST_DATABASE_URL is a URL");
        url.set_path(&name);
        Self {
            admin_url: server.to_owned(),
            name,
            url: url.to_string(),
        }
    }

    pub async fn connect(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.url).await.expect("connect")
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // On a thread with its own runtime: the test's runtime cannot block on a future.
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&url).await.map_err(std::io::Error::other)?;
                conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await
                    .map_err(std::io::Error::other)?;
                conn.close().await.map_err(std::io::Error::other)
            })
        })
        .join();
    }
}

/// The command line of one instance: a clean environment, port 0, its own data directory, the
/// shared secrets, no embedded sandbox bank unless `env` says otherwise.
pub fn command(database_url: &str, data_dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("serve")
        .current_dir(data_dir)
        .env_clear()
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .env("RECONBANKER_HOST", "127.0.0.1")
        .env("RECONBANKER_PORT", "0")
        .env("RECONBANKER_DATA_DIR", data_dir)
        .env("DATABASE_URL", database_url)
        .env("JWT_SECRET", JWT_SECRET)
        .env("RECONBANKER_MASTER_KEY", MASTER_KEY)
        .env("RECONBANKER_SANDBOX_BANK", "off");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// A running `reconbanker serve`. Dropping it kills the process (`SIGKILL`).
pub struct Instance {
    child: Child,
    pub addr: String,
    /// Its name on session leases (`sessionOwner`), from its ready line.
    pub id: String,
    log: Arc<Mutex<String>>,
    http: reqwest::Client,
    _dir: Option<tempfile::TempDir>,
}

/// How a start ended: ready, or the process exited first (with its output).
pub enum Started {
    Ready(Instance),
    Exited {
        status: std::process::ExitStatus,
        log: String,
    },
}

impl Started {
    pub fn ready(self) -> Instance {
        match self {
            Started::Ready(i) => i,
            Started::Exited { status, log } => panic!("the instance exited ({status}) before it was ready:\n{log}"),
        }
    }
}

/// A sandbox bank on a random port, for instances to log into; returns its URL.
pub async fn sandbox_bank() -> (sandbox_bank::SandboxBank, String) {
    let bank = sandbox_bank::SandboxBank::new(sandbox_bank::BankConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    let served = bank.clone();
    tokio::spawn(async move {
        let _ = served.serve(listener, std::future::pending()).await;
    });
    (bank, url)
}

/// Starts an instance on `database_url` with its own temporary data directory.
pub async fn start(database_url: &str, env: &[(&str, &str)]) -> Instance {
    let dir = tempfile::tempdir().expect("tempdir");
    let cmd = command(database_url, dir.path(), env);
    let mut i = spawn(cmd).await.ready();
    i._dir = Some(dir);
    i
}

/// Starts `n` instances at the same moment (all spawned before any is waited on).
pub async fn start_many(database_url: &str, n: usize, env: &[(&str, &str)]) -> Vec<Instance> {
    let mut dirs = Vec::new();
    let mut pending = Vec::new();
    for _ in 0..n {
        let dir = tempfile::tempdir().expect("tempdir");
        pending.push(launch(command(database_url, dir.path(), env)));
        dirs.push(dir);
    }
    let mut out = Vec::new();
    for (p, dir) in pending.into_iter().zip(dirs) {
        let mut i = p.wait().await.ready();
        i._dir = Some(dir);
        out.push(i);
    }
    out
}

/// Spawns `cmd` and waits for its ready line or its exit.
pub async fn spawn(cmd: Command) -> Started {
    launch(cmd).wait().await
}

/// A spawned process whose ready line has not been seen yet.
pub struct Launch {
    child: Child,
    log: Arc<Mutex<String>>,
    ready: tokio::sync::oneshot::Receiver<Option<String>>,
    stderr: Option<std::thread::JoinHandle<()>>,
}

fn launch(mut cmd: Command) -> Launch {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn reconbanker");
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, ready) = tokio::sync::oneshot::channel();
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let out_log = log.clone();
    std::thread::spawn(move || {
        // The address from the ready line; `None` when the output ends without it.
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            push(&out_log, &line);
            if line.contains(READY) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(Some(line));
                }
            }
        }
        if let Some(tx) = tx.take() {
            let _ = tx.send(None);
        }
    });
    let err_log = log.clone();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let mut r = BufReader::new(stderr);
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            s.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        push(&err_log, &s);
    });
    Launch {
        child,
        log,
        ready,
        stderr: Some(stderr),
    }
}

/// The word that follows `marker` in `line` (empty when it is missing).
fn word_after(line: &str, marker: &str) -> String {
    line.find(marker)
        .map(|i| {
            line[i + marker.len()..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect()
        })
        .unwrap_or_default()
}

fn push(log: &Mutex<String>, line: &str) {
    let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
    l.push_str(line);
    l.push('\n');
}

impl Launch {
    async fn wait(mut self) -> Started {
        let line = match tokio::time::timeout(START_WITHIN, &mut self.ready).await {
            Ok(Ok(Some(line))) => line,
            Ok(_) => {
                // The output ended: the process is exiting.
                let status = wait_exit(&mut self.child);
                // stderr is read by its own thread: its last words are in once it ends.
                if let Some(t) = self.stderr.take() {
                    let _ = t.join();
                }
                let log = self.log.lock().unwrap_or_else(|p| p.into_inner()).clone();
                return Started::Exited { status, log };
            }
            Err(_) => {
                let _ = self.child.kill();
                let log = self.log.lock().unwrap_or_else(|p| p.into_inner()).clone();
                panic!("no ready line within {START_WITHIN:?}:\n{log}");
            }
        };
        Started::Ready(Instance {
            child: self.child,
            addr: word_after(&line, READY),
            id: word_after(&line, "instance="),
            log: self.log,
            http: reqwest::Client::new(),
            _dir: None,
        })
    }
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    child.wait().expect("wait for the process")
}

/// One response, read whole.
pub struct Res {
    pub status: StatusCode,
    pub text: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Res {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    #[track_caller]
    pub fn expect(&self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        if self.text.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }
}

impl Instance {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything the process printed so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub async fn call(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Option<Value>) -> Res {
        let mut req = self.http.request(method, self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = tokio::time::timeout(WAIT, req.send())
            .await
            .expect("answer in time")
            .expect("request");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body");
        Res { status, text, headers }
    }

    /// A dashboard call with a bearer token.
    pub async fn dash(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Res {
        let auth = format!("Bearer {token}");
        self.call(method, path, &[("authorization", &auth)], body).await
    }

    /// A `/v1` call with an API key.
    pub async fn v1(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> Res {
        self.call(method, path, &[("x-api-key", key)], body).await
    }

    /// Registers and logs in a user; returns the token.
    pub async fn user(&self, email: &str) -> String {
        let creds = json!({"email": email, "password": "correct horse battery"});
        self.call(Method::POST, "/auth/register", &[], Some(creds.clone()))
            .await
            .expect(StatusCode::CREATED);
        let login = self
            .call(Method::POST, "/auth/login", &[], Some(creds))
            .await
            .expect(StatusCode::OK);
        login["token"].as_str().expect("token").to_owned()
    }

    /// Creates an account on the sandbox bank; returns its id.
    pub async fn account(&self, token: &str, name: &str) -> String {
        let banks = self
            .dash(Method::GET, "/banks", token, None)
            .await
            .expect(StatusCode::OK);
        let bank = banks
            .as_array()
            .and_then(|b| b.iter().find(|b| b["code"] == "sandbox"))
            .expect("sandbox bank seeded")["id"]
            .clone();
        let created = self
            .dash(
                Method::POST,
                "/accounts",
                token,
                Some(json!({"bankId": bank, "name": name})),
            )
            .await
            .expect(StatusCode::CREATED);
        created["id"].as_str().expect("id").to_owned()
    }

    /// Creates an API key with `scopes`; returns the full key.
    pub async fn key(&self, token: &str, scopes: &[&str]) -> (String, String) {
        let created = self
            .dash(
                Method::POST,
                "/me/api-keys",
                token,
                Some(json!({"name": "scale-out", "scopes": scopes})),
            )
            .await
            .expect(StatusCode::CREATED);
        (
            created["id"].as_str().expect("id").to_owned(),
            created["key"].as_str().expect("key").to_owned(),
        )
    }

    /// `SIGTERM`, then waits for a graceful exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        wait_exit(&mut self.child)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An open SSE stream.
pub struct Sse {
    res: reqwest::Response,
    buf: Vec<u8>,
}

/// One SSE event: its `id:` (the log `seq`), `event:` and parsed `data:`.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: i64,
    pub event: String,
    pub data: Value,
}

impl Sse {
    /// Opens `path` with `headers`; panics unless it answers 200 `text/event-stream`.
    pub async fn open(instance: &Instance, path: &str, headers: &[(&str, &str)]) -> Self {
        Self::open_url(&instance.http, &instance.url(path), headers).await
    }

    /// Opens `url` (an instance or a proxy in front of instances) with `headers`.
    pub async fn open_url(http: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> Self {
        let mut req = http.get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = tokio::time::timeout(WAIT, req.send())
            .await
            .expect("stream opened in time")
            .expect("request");
        assert_eq!(res.status(), StatusCode::OK, "{url}");
        let ct = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Self { res, buf: Vec::new() }
    }

    /// The next event (comments and keep-alives skipped); fails after [`WAIT`].
    pub async fn next(&mut self) -> SseEvent {
        let read = async {
            loop {
                if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                    let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                    if let Some(e) = parse_block(std::str::from_utf8(&block).expect("utf-8")) {
                        return e;
                    }
                    continue;
                }
                let chunk = self.res.chunk().await.expect("stream read").expect("stream ended");
                self.buf.extend_from_slice(&chunk);
            }
        };
        tokio::time::timeout(WAIT, read).await.expect("an event in time")
    }
}

fn parse_block(block: &str) -> Option<SseEvent> {
    let (mut id, mut event, mut data) = (None, None, Vec::new());
    for line in block.lines() {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => id = Some(value.to_owned()),
            "event" => event = Some(value.to_owned()),
            "data" => data.push(value.to_owned()),
            _ => {}
        }
    }
    if data.is_empty() {
        return None;
    }
    Some(SseEvent {
        id: id.and_then(|i| i.parse().ok()).expect("every event has a numeric id"),
        event: event.unwrap_or_default(),
        data: serde_json::from_str(&data.join("\n")).expect("data is JSON"),
    })
}
