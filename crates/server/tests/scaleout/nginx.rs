//! Issue 11: the nginx configuration of `docs/operations.md` ("Behind nginx"), taken from the
//! document itself, in front of two instances: `/v1` requests, an SSE stream (`/v1/events`) and
//! the WebSocket (`/realtime`) work through it. Only the parts a test cannot use as written are
//! changed (the upstream addresses, and `listen 443 ssl` → a local port without TLS), and the
//! test fails if the document no longer has them. Skipped with a notice when nginx is not
//! installed, unless `REQUIRE_NGINX=1` (CI), where that fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{self, Database, Sse, SseEvent, WAIT};

/// nginx's binary: `RECONBANKER_NGINX`, `nginx` on `PATH`, or Debian's `/usr/sbin/nginx`.
fn nginx_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RECONBANKER_NGINX") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("nginx"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let found = on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/nginx")])
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var("REQUIRE_NGINX").as_deref() != Ok("1"),
            "REQUIRE_NGINX=1 but no nginx was found (apt-get install nginx)"
        );
        eprintln!("NOTICE: no nginx found (install Debian's `nginx`); the nginx test is SKIPPED");
    }
    found
}

/// The ```nginx block of the "Behind nginx" section of docs/operations.md.
fn documented_snippet() -> String {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/operations.md");
    let text = std::fs::read_to_string(&doc).unwrap_or_else(|e| panic!("{}: {e}", doc.display()));
    let section = text
        .split("\n## Behind nginx")
        .nth(1)
        .expect("docs/operations.md has a \"## Behind nginx\" section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let block = section
        .split("```nginx\n")
        .nth(1)
        .expect("the section has a ```nginx block");
    block.split("\n```").next().expect("the block ends").to_owned()
}

/// The snippet with the instances' addresses as its upstream servers and a local plain-HTTP
/// `listen`; panics if the snippet no longer has what is replaced.
fn adapt(snippet: &str, upstreams: &[&str], listen: &str) -> String {
    let mut out = Vec::new();
    let (mut in_upstream, mut servers, mut listens) = (false, 0, 0);
    for line in snippet.lines() {
        let t = line.trim();
        if t.starts_with("upstream reconbanker") {
            in_upstream = true;
        } else if in_upstream && t == "}" {
            in_upstream = false;
        }
        if in_upstream && t.starts_with("server ") {
            if servers == 0 {
                for u in upstreams {
                    out.push(format!("    server {u};"));
                }
            }
            servers += 1;
            continue;
        }
        if t == "listen 443 ssl;" {
            listens += 1;
            out.push(format!("    listen {listen};"));
            continue;
        }
        out.push(line.to_owned());
    }
    assert!(
        servers > 0,
        "the snippet's `upstream reconbanker` lists no server:\n{snippet}"
    );
    assert_eq!(listens, 1, "the snippet has one `listen 443 ssl;`:\n{snippet}");
    out.join("\n")
}

/// A running nginx, stopped (`-s stop`) when dropped.
struct Nginx {
    bin: PathBuf,
    dir: tempfile::TempDir,
    child: Child,
    log: Arc<Mutex<String>>,
    base: String,
}

impl Nginx {
    /// Starts nginx with `site` (the adapted snippet) on `port`; returns once its master logged
    /// that it started its worker (the listening socket is open by then).
    async fn start(bin: PathBuf, site: &str, port: u16) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display().to_string();
        let conf = format!(
            "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log stderr notice;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n    access_log off;\n    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n    \
             fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n\n{site}\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), &conf).expect("write nginx.conf");
        let mut child = Command::new(&bin)
            .args(["-p", &d, "-c", "nginx.conf", "-e", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nginx");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, ready) = tokio::sync::oneshot::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let started = line.contains("start worker process ");
                {
                    let mut l = lines.lock().unwrap_or_else(|p| p.into_inner());
                    l.push_str(&line);
                    l.push('\n');
                }
                if started {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(true);
                    }
                }
            }
            if let Some(tx) = tx.take() {
                let _ = tx.send(false);
            }
        });
        let started = tokio::time::timeout(harness::START_WITHIN, ready).await;
        let log_text = || log.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert!(
            matches!(started, Ok(Ok(true))),
            "nginx did not start with the documented configuration:\n{}\n--- nginx.conf ---\n{conf}",
            log_text()
        );
        Self {
            bin,
            dir,
            child,
            log,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let d = self.dir.path().display().to_string();
        let _ = Command::new(&self.bin)
            .args(["-p", &d, "-c", "nginx.conf", "-e", "stderr", "-s", "stop"])
            .stderr(Stdio::null())
            .status();
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            // `-s stop` lets the master end its worker; wait for it (the worker is its child).
            let waited = std::thread::scope(|s| {
                let h = s.spawn(|| self.child.wait());
                h.join()
            });
            if waited.is_err() {
                let _ = self.child.kill();
            }
        }
    }
}

/// A port nobody listens on right now (for nginx, which cannot report a port 0 it bound).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

async fn until(stream: &mut Sse, kind: &str, account: &str) -> SseEvent {
    loop {
        let e = stream.next().await;
        if e.event == kind && e.data["account_id"] == account {
            return e;
        }
    }
}

#[tokio::test]
async fn the_documented_nginx_config_carries_v1_sse_and_the_websocket_to_two_instances() {
    let Some(server) = harness::postgres_server() else {
        return;
    };
    let Some(bin) = nginx_binary() else {
        return;
    };
    let db = Database::create(&server).await;
    let instances = harness::start_many(&db.url, 2, &[]).await;
    let (a, b) = (&instances[0], &instances[1]);
    let port = free_port();
    let site = adapt(
        &documented_snippet(),
        &[a.addr.as_str(), b.addr.as_str()],
        &format!("127.0.0.1:{port}"),
    );
    let nginx = Nginx::start(bin, &site, port).await;
    let http = reqwest::Client::new();
    let base = nginx.base.clone();

    // Set up through the proxy: the dashboard API.
    let send = |method: Method, path: &str, headers: Vec<(&'static str, String)>, body: Option<Value>| {
        let mut req = http.request(method, format!("{base}{path}"));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let res = tokio::time::timeout(WAIT, req.send())
                .await
                .expect("answer in time")
                .expect("request through nginx");
            let status = res.status();
            let text = res.text().await.expect("body");
            (status, text)
        }
    };
    let json = |text: &str| -> Value { serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}")) };
    let creds = serde_json::json!({"email": "owner@example.com", "password": "correct horse battery"});
    let (s, t) = send(Method::POST, "/auth/register", vec![], Some(creds.clone())).await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let (s, t) = send(Method::POST, "/auth/login", vec![], Some(creds)).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let token = json(&t)["token"].as_str().expect("token").to_owned();
    let bearer = || vec![("authorization", format!("Bearer {token}"))];
    let (s, t) = send(Method::GET, "/banks", bearer(), None).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let banks = json(&t);
    let bank = banks
        .as_array()
        .and_then(|b| b.iter().find(|b| b["code"] == "sandbox"))
        .expect("sandbox bank seeded")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (s, t) = send(
        Method::POST,
        "/accounts",
        bearer(),
        Some(serde_json::json!({"bankId": bank, "name": "Main"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let account = json(&t)["id"].as_str().expect("account id").to_owned();
    let (s, t) = send(
        Method::POST,
        "/me/api-keys",
        bearer(),
        Some(serde_json::json!({"name": "proxy", "scopes": ["status:read"]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let key = json(&t)["key"].as_str().expect("key").to_owned();

    // /v1 through the proxy, spread over both instances by its round robin.
    let status = format!("/v1/accounts/{account}/status");
    for _ in 0..4 {
        let (s, t) = send(Method::GET, &status, vec![("x-api-key", key.clone())], None).await;
        assert_eq!(s, StatusCode::OK, "{t}");
        assert_eq!(json(&t)["account_id"], account.as_str(), "{t}");
    }
    let (s, t) = send(Method::GET, &status, vec![("x-api-key", "rbk_nope".into())], None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{t}");
    assert!(json(&t)["error"]["code"].is_string(), "the /v1 error shape: {t}");

    // An SSE stream and the WebSocket, both opened through the proxy.
    let mut stream = Sse::open_url(&http, &format!("{base}/v1/events"), &[("x-api-key", &key)]).await;
    let (s, t) = send(Method::POST, "/realtime/ticket", bearer(), None).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let ticket = json(&t)["ticket"].as_str().expect("ticket").to_owned();
    let mut req = format!("ws://127.0.0.1:{port}/realtime")
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "sec-websocket-protocol",
        format!("realtime.v1, {ticket}").parse().expect("header"),
    );
    let (mut ws, res) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("handshake in time")
        .unwrap_or_else(|e| panic!("the WebSocket through nginx: {e}\n{}", nginx.log()));
    assert_eq!(
        res.headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("realtime.v1")
    );

    // Something happens (a session started through the proxy, on whichever instance): both
    // streams show it as it happens, not when the proxy's buffers fill or the stream ends.
    let (s, t) = send(Method::POST, &format!("/accounts/{account}/reactivate"), bearer(), None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{t}");
    let started = until(&mut stream, "session.started", &account).await;
    until(&mut stream, "session.stopped", &account).await;
    let read = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let e = json(text.as_str());
                    if e["type"] == "session.started" && e["accountId"] == account.as_str() {
                        return e;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("the WebSocket ended: {other:?}\n{}", nginx.log()),
            }
        }
    };
    let on_ws = tokio::time::timeout(WAIT, read)
        .await
        .expect("an event on the WebSocket in time");
    assert_eq!(
        on_ws["occurredAt"], started.data["occurred_at"],
        "{on_ws} / {:?}",
        started.data
    );
}
