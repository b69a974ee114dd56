//! Benchmarks of push (issue: push delivery).
//!
//! `latency N`: N assisted logins one after another (sandbox bank, app, webhook receiver and SSE
//! client in this process). For each, the time from the bank asking for a code (the instant the
//! bank served its code page, on this process's clock) to (a) the notification receiver getting
//! the POST and (b) an SSE client on `/v1/events` getting the event; p50/p99. The same is printed
//! from the `assistance.requested` event's `occurred_at` (taken when the login has read the
//! page; millisecond precision), the measure earlier figures used.
//!
//! `fanout N BASE PID`: N SSE clients on `/v1/events` of a server running in another process
//! (PID), the server's memory before and after, and the time for one event to reach them all.
//!
//! Run through `scripts/bench-push.sh`.

use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::{json, Value};
use tokio::sync::mpsc;

fn ms_since(occurred_at: &str) -> f64 {
    let at = chrono::DateTime::parse_from_rfc3339(occurred_at).expect("timestamp");
    (chrono::Utc::now() - at.with_timezone(&chrono::Utc))
        .num_microseconds()
        .unwrap_or(0) as f64
        / 1000.0
}

fn pct(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1]
}

/// Reads an SSE body, sending each `(event, data)` to `tx`.
/// Each event of an SSE response, with the instant its last line was read.
async fn sse(mut res: reqwest::Response, tx: mpsc::UnboundedSender<(String, Value, Instant)>) {
    let mut buf = String::new();
    let (mut event, mut data) = (String::new(), String::new());
    while let Ok(Some(chunk)) = res.chunk().await {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(i) = buf.find('\n') {
            let line: String = buf.drain(..=i).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !data.is_empty() {
                    let value = serde_json::from_str(&data).unwrap_or(Value::Null);
                    if tx.send((std::mem::take(&mut event), value, Instant::now())).is_err() {
                        return;
                    }
                }
                data.clear();
            } else if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
    }
}

struct Api {
    base: String,
    client: Client,
    token: String,
}

impl Api {
    async fn new(base: &str) -> Self {
        let client = Client::new();
        let email = format!("bench-{}@example.com", uuid::Uuid::new_v4().simple());
        let creds = json!({"email": email, "password": "benchmark-password"});
        client
            .post(format!("{base}/auth/register"))
            .json(&creds)
            .send()
            .await
            .expect("register");
        let login: Value = client
            .post(format!("{base}/auth/login"))
            .json(&creds)
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("json");
        Self {
            base: base.into(),
            client,
            token: login["token"].as_str().expect("token").into(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("request").json().await.unwrap_or(Value::Null)
    }

    async fn assisted_account(&self, hook: Option<&str>) -> String {
        let banks = self.call(reqwest::Method::GET, "/banks", None).await;
        let bank = banks
            .as_array()
            .expect("banks")
            .iter()
            .find(|b| b["code"] == "sandbox")
            .expect("sandbox")["id"]
            .clone();
        let acc = self
            .call(
                reqwest::Method::POST,
                "/accounts",
                Some(json!({"bankId": bank, "name": "bench"})),
            )
            .await;
        let id = acc["id"].as_str().expect("id").to_owned();
        let mut config = json!({"login_mode": "assisted", "bank_username": "user_otp", "bank_password": "pass_otp"});
        if let Some(url) = hook {
            config["notification_endpoint_url"] = json!(url);
            config["notification_events"] = json!(["assistance_required"]);
        }
        self.call(reqwest::Method::PUT, &format!("/accounts/{id}/config"), Some(config))
            .await;
        id
    }

    async fn key(&self) -> String {
        let k = self
            .call(
                reqwest::Method::POST,
                "/me/api-keys",
                Some(json!({"name": "bench", "scopes": ["status:read", "otp:write"]})),
            )
            .await;
        k["key"].as_str().expect("key").into()
    }

    async fn events(&self, key: &str) -> reqwest::Response {
        let res = self
            .client
            .get(format!("{}/v1/events", self.base))
            .header("x-api-key", key)
            .send()
            .await
            .expect("sse");
        assert!(res.status().is_success(), "SSE status {}", res.status());
        res
    }
}

async fn latency(n: usize) {
    let bank = sandbox_bank::SandboxBank::new(sandbox_bank::BankConfig::default());
    let bank_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let bank_url = format!("http://{}/", bank_listener.local_addr().expect("addr"));
    let mut asked = bank.subscribe_otp_asked();
    tokio::spawn(bank.serve(bank_listener, std::future::pending()));

    let (hook_tx, mut hook_rx) = mpsc::unbounded_channel::<(Instant, f64)>();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let tx = hook_tx.clone();
            async move {
                let at = Instant::now();
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let _ = tx.send((at, ms_since(v["occurred_at"].as_str().unwrap_or_default())));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let hook_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hook_url = format!("http://{}/hook", hook_listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(hook_listener, receiver).await });

    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        ("RECONBANKER_DATA_DIR", dir.path().join("data").display().to_string()),
        ("RECONBANKER_SANDBOX_BANK", bank_url),
        ("RECONBANKER_ALLOW_PRIVATE_TARGETS", "true".into()),
        ("RECONBANKER_V1_RATE_PER_SEC", "1000000".into()),
        ("RECONBANKER_V1_BURST", "1000000".into()),
    ];
    let config =
        reconbanker::config::Config::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .expect("config");
    let app = reconbanker::App::build(config).await.expect("app");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(app.serve(listener, std::future::pending()));

    let api = Api::new(&base).await;
    let key = api.key().await;
    let (sse_tx, mut sse_rx) = mpsc::unbounded_channel();
    tokio::spawn(sse(api.events(&key).await, sse_tx));
    let (mut webhook, mut stream) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut webhook_ms, mut stream_ms) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let since = |asked: Instant, at: Instant| at.saturating_duration_since(asked).as_secs_f64() * 1000.0;
    for _ in 0..n {
        let id = api.assisted_account(Some(&hook_url)).await;
        // Only this login's challenge counts.
        while asked.try_recv().is_ok() {}
        api.call(reqwest::Method::POST, &format!("/accounts/{id}/scrape"), None)
            .await;
        let asked_at = tokio::time::timeout(Duration::from_secs(20), asked.recv())
            .await
            .expect("the bank asks for a code")
            .expect("bank open");
        let (stream_at, from_stream) = loop {
            let (event, data, at) = tokio::time::timeout(Duration::from_secs(20), sse_rx.recv())
                .await
                .expect("sse")
                .expect("open");
            if event == "assistance.requested" {
                break (at, ms_since(data["occurred_at"].as_str().unwrap_or_default()));
            }
        };
        let (hook_at, from_hook) = tokio::time::timeout(Duration::from_secs(20), hook_rx.recv())
            .await
            .expect("hook")
            .expect("open");
        stream.push(since(asked_at, stream_at));
        webhook.push(since(asked_at, hook_at));
        stream_ms.push(from_stream);
        webhook_ms.push(from_hook);
        api.call(reqwest::Method::POST, &format!("/accounts/{id}/kill"), None)
            .await;
    }
    println!("assisted logins:           {n} (the bank serves its code page → …, on this process's clock)");
    println!(
        "(a) webhook receiver POST: p50 {:.2} ms, p99 {:.2} ms (goal p50 <= 20 ms)",
        pct(&mut webhook, 0.5),
        pct(&mut webhook, 0.99)
    );
    println!(
        "(b) SSE client event:      p50 {:.2} ms, p99 {:.2} ms (goal p50 <= 20 ms)",
        pct(&mut stream, 0.5),
        pct(&mut stream, 0.99)
    );
    println!("from the event's occurred_at, as earlier figures were measured:");
    println!(
        "    webhook p50 {:.2} ms, p99 {:.2} ms; SSE p50 {:.2} ms, p99 {:.2} ms",
        pct(&mut webhook_ms, 0.5),
        pct(&mut webhook_ms, 0.99),
        pct(&mut stream_ms, 0.5),
        pct(&mut stream_ms, 0.99)
    );
    println!("    (millisecond timestamps: each figure may read up to 1 ms high)");
}

fn rss_of(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn fanout(n: usize, base: String, pid: String) {
    let api = Api::new(&base).await;
    let key = api.key().await;
    let account = api.assisted_account(None).await;
    let before = rss_of(&pid);
    let (tx, mut rx) = mpsc::unbounded_channel();
    for _ in 0..n {
        let res = api.events(&key).await;
        let tx = tx.clone();
        tokio::spawn(async move {
            let (etx, mut erx) = mpsc::unbounded_channel();
            tokio::spawn(sse(res, etx));
            while let Some((event, _, _)) = erx.recv().await {
                if event == "assistance.requested" {
                    let _ = tx.send(Instant::now());
                    return;
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = rss_of(&pid);
    let started = Instant::now();
    api.call(reqwest::Method::POST, &format!("/accounts/{account}/scrape"), None)
        .await;
    let mut got = 0;
    let mut last = started;
    while got < n {
        last = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("all clients get it")
            .expect("open");
        got += 1;
    }
    println!("SSE clients held:          {n} on /v1/events");
    println!("server RSS:                {before} KiB -> {held} KiB");
    println!(
        "memory per SSE client:     {:.1} KiB",
        held.saturating_sub(before) as f64 / n as f64
    );
    println!(
        "one event reached all:     {got} clients in {:.1} ms (from the scrape request)",
        (last - started).as_secs_f64() * 1000.0
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("latency") => latency(args.get(2).and_then(|v| v.parse().ok()).unwrap_or(200)).await,
        Some("fanout") => {
            let n = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(1000);
            fanout(
                n,
                args.get(3).cloned().expect("BASE"),
                args.get(4).cloned().expect("PID"),
            )
            .await
        }
        _ => eprintln!("usage: push_bench latency N | push_bench fanout N BASE PID"),
    }
}
