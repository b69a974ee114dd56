//! Issue 12: the real `reconbanker serve` binary as a child process — for the crash tests
//! (`kill -9`, then a restart on the same database and data directory) and the log-secret test
//! (everything the process prints, at any `RUST_LOG`). Readiness is the ready line the server
//! prints once its listener is bound; events are read from `/v1/events` (SSE). No sleeps.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::harness::{database, TestDatabase};

const BIN: &str = env!("CARGO_BIN_EXE_reconbanker");

/// How long a start (migrations included, on a busy machine) or an awaited event may take.
pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// A database and a data directory that outlive the processes serving them.
pub(crate) struct Site {
    dir: tempfile::TempDir,
    pub database_url: String,
    _db: Option<TestDatabase>,
}

impl Site {
    /// A fresh site on the suite's backend (`RECONBANKER_TEST_BACKEND`).
    pub(crate) async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (database_url, db) = database(dir.path()).await;
        Site {
            dir,
            database_url,
            _db: db,
        }
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub(crate) fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }

    /// Starts `reconbanker serve` on this site (any free port, the embedded sandbox bank on any
    /// free port, private webhook targets allowed) with `env` on top, and waits for its ready line.
    pub(crate) async fn serve(&self, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .current_dir(self.dir.path())
            .env_clear()
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .env("RECONBANKER_PORT", "0")
            .env("RECONBANKER_SANDBOX_PORT", "0")
            .env("RECONBANKER_DATA_DIR", self.data_dir())
            .env("DATABASE_URL", &self.database_url)
            .env("RECONBANKER_ALLOW_PRIVATE_TARGETS", "true")
            .env("RECONBANKER_DB_MAX_CONNECTIONS", "4");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn reconbanker serve");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, mut lines) = mpsc::unbounded_channel::<String>();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        for pipe in [Box::new(stdout) as Box<dyn std::io::Read + Send>, Box::new(stderr)] {
            let log = log.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(mut log) = log.lock() {
                        log.push_str(&line);
                        log.push('\n');
                    }
                    let _ = tx.send(line);
                }
            });
        }
        drop(tx);
        let mut server = Server {
            child: Mutex::new(child),
            addr: String::new(),
            log,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
        };
        let ready = async {
            while let Some(line) = lines.recv().await {
                if let Some(i) = line.find("listening on http://") {
                    let rest = &line[i + "listening on http://".len()..];
                    return Some(rest.chars().take_while(|c| !c.is_whitespace()).collect::<String>());
                }
            }
            None
        };
        match tokio::time::timeout(WAIT, ready).await {
            Ok(Some(addr)) => server.addr = addr,
            Ok(None) => panic!("the server exited before its ready line:\n{}", server.log()),
            Err(_) => panic!("no ready line within {WAIT:?}:\n{}", server.log()),
        }
        // Later lines are kept in the log buffer only.
        tokio::spawn(async move { while lines.recv().await.is_some() {} });
        server
    }
}

/// A running `reconbanker serve`; killed with SIGKILL when dropped.
pub(crate) struct Server {
    child: Mutex<Child>,
    pub addr: String,
    log: Arc<Mutex<String>>,
    pub client: reqwest::Client,
}

/// An answer: status and JSON body (`Null` when the body is not JSON).
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Server {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything the process printed so far (stdout and stderr).
    pub(crate) fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// `kill -9` (SIGKILL), then waits for the process to be gone. Returns its log.
    pub(crate) fn kill9(&self) -> String {
        if let Ok(mut child) = self.child.lock() {
            let _ = child.kill();
            child.wait().expect("wait");
        }
        self.log()
    }

    /// A request with an optional `authorization`-style header and JSON body.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        auth: Option<(&str, &str)>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self.client.request(method, self.url(path));
        if let Some((name, value)) = auth {
            req = req.header(name, value);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        let text = res.text().await.expect("body");
        Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    /// A dashboard call with a bearer token.
    pub(crate) async fn dash(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Answer {
        let bearer = format!("Bearer {token}");
        self.call(method, path, Some(("authorization", &bearer)), body).await
    }

    /// Registers and logs in; returns the session token.
    pub(crate) async fn user(&self, email: &str, password: &str) -> String {
        let creds = serde_json::json!({ "email": email, "password": password });
        let r = self
            .call(Method::POST, "/auth/register", None, Some(creds.clone()))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "register: {}", r.body);
        let r = self.call(Method::POST, "/auth/login", None, Some(creds)).await;
        assert_eq!(r.status, StatusCode::OK, "login: {}", r.body);
        r.body["token"].as_str().expect("token").to_owned()
    }

    /// An account on the embedded sandbox bank with this configuration.
    pub(crate) async fn account(&self, token: &str, name: &str, config: Value) -> String {
        let banks = self.dash(Method::GET, "/banks", token, None).await;
        let bank = banks
            .body
            .as_array()
            .and_then(|b| b.iter().find(|b| b["code"] == "sandbox"))
            .and_then(|b| b["id"].as_str())
            .expect("the embedded sandbox bank")
            .to_owned();
        let r = self
            .dash(
                Method::POST,
                "/accounts",
                token,
                Some(serde_json::json!({ "bankId": bank, "name": name })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "account: {}", r.body);
        let id = r.body["id"].as_str().expect("id").to_owned();
        let r = self
            .dash(Method::PUT, &format!("/accounts/{id}/config"), token, Some(config))
            .await;
        assert_eq!(r.status, StatusCode::OK, "config: {}", r.body);
        id
    }

    /// An API key with these scopes on these accounts.
    pub(crate) async fn key(&self, token: &str, scopes: &[&str], accounts: &[&str]) -> String {
        let r = self
            .dash(
                Method::POST,
                "/me/api-keys",
                token,
                Some(serde_json::json!({ "name": "relay", "scopes": scopes, "account_ids": accounts })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "key: {}", r.body);
        r.body["key"].as_str().expect("key").to_owned()
    }

    /// The `/v1/events` stream of this key, from now (or after event `after`).
    pub(crate) async fn events(&self, key: &str, after: Option<&str>) -> Stream {
        let mut req = self.client.get(self.url("/v1/events")).header("x-api-key", key);
        if let Some(id) = after {
            req = req.header("last-event-id", id);
        }
        let res = req.send().await.expect("open /v1/events");
        assert_eq!(res.status(), StatusCode::OK);
        Stream {
            res,
            buf: String::new(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One server-sent event.
pub(crate) struct Sse {
    pub id: String,
    pub kind: String,
    pub data: Value,
}

/// An open SSE stream.
pub(crate) struct Stream {
    res: reqwest::Response,
    buf: String,
}

impl Stream {
    /// The next event of this kind (others are skipped).
    pub(crate) async fn next(&mut self, kind: &str) -> Sse {
        let wait = async {
            loop {
                while let Some(end) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..end + 2).collect();
                    let mut e = Sse {
                        id: String::new(),
                        kind: String::new(),
                        data: Value::Null,
                    };
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("id:") {
                            e.id = v.trim().to_owned();
                        } else if let Some(v) = line.strip_prefix("event:") {
                            e.kind = v.trim().to_owned();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            e.data = serde_json::from_str(v.trim()).unwrap_or(Value::Null);
                        }
                    }
                    if e.kind.is_empty() {
                        if let Some(k) = e.data["type"].as_str().or(e.data["kind"].as_str()) {
                            e.kind = k.to_owned();
                        }
                    }
                    if e.kind == kind {
                        return e;
                    }
                }
                let chunk = self.res.chunk().await.expect("stream").expect("the stream ended");
                self.buf
                    .push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
            }
        };
        tokio::time::timeout(WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("no {kind} event within {WAIT:?}"))
    }
}
