//! Issue 11 (scale-out) benchmark: how long an account's login is without a driver after
//! `kill -9` of the instance holding its lease.
//!
//! `takeover_bench RUNS DATABASE_URL BINARY LEASE_SECS`: real `reconbanker serve` processes
//! (`BINARY`) on one PostgreSQL database (`DATABASE_URL`, fresh), a sandbox bank in this
//! process, one `api`-only instance that the benchmark talks to and watches
//! (`/realtime/events`), and two full instances, one of which drives an assisted login that
//! waits for its code. Each run kills the holder with `SIGKILL` and measures, from the kill:
//! the old request cancelled `owner_lost` (another instance took the lease), and the new login
//! asking for its code (the account's work resumed there); then starts a replacement so two
//! full instances remain. Prints p50 and max of both against the lease length.
//!
//! Run through `scripts/bench-scaleout.sh` (`PARTS=takeover`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const JWT_SECRET: &str = "scaleout-bench-jwt-secret-0123456789abcdef";
const MASTER_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const READY: &str = "ready on http://";
const WAIT: Duration = Duration::from_secs(60);

struct Instance {
    child: Child,
    base: String,
    id: String,
    _dir: tempfile::TempDir,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

/// Starts an instance and waits for its ready line.
fn start(bin: &str, database: &str, bank: &str, lease: &str, roles: &str) -> Instance {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(bin)
        .arg("serve")
        .current_dir(dir.path())
        .env_clear()
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .env("RECONBANKER_HOST", "127.0.0.1")
        .env("RECONBANKER_PORT", "0")
        .env("RECONBANKER_DATA_DIR", dir.path())
        .env("DATABASE_URL", database)
        .env("JWT_SECRET", JWT_SECRET)
        .env("RECONBANKER_MASTER_KEY", MASTER_KEY)
        .env("RECONBANKER_SANDBOX_BANK", bank)
        .env("RECONBANKER_SESSION_LEASE_SECS", lease)
        .env("RECONBANKER_ROLES", roles)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn reconbanker");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains(READY) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(line);
                }
            }
        }
    });
    let line = rx.recv_timeout(WAIT).expect("the instance's ready line");
    Instance {
        child,
        base: format!("http://{}", word_after(&line, READY)),
        id: word_after(&line, "instance="),
        _dir: dir,
    }
}

/// An SSE stream's next event of one of `kinds` (type and data).
struct Events {
    res: reqwest::Response,
    buf: Vec<u8>,
}

impl Events {
    async fn next_of(&mut self, kinds: &[&str]) -> (String, Value) {
        let read = async {
            loop {
                while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                    let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                    let block = String::from_utf8_lossy(&block);
                    let (mut kind, mut data) = (String::new(), String::new());
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            kind = v.trim().to_owned();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim_start());
                        }
                    }
                    if kinds.contains(&kind.as_str()) {
                        return (kind, serde_json::from_str(&data).expect("data is JSON"));
                    }
                }
                let chunk = self.res.chunk().await.expect("stream read").expect("stream open");
                self.buf.extend_from_slice(&chunk);
            }
        };
        tokio::time::timeout(WAIT, read).await.expect("an event in time")
    }
}

fn field<'a>(data: &'a Value, name: &str) -> &'a Value {
    match &data[name] {
        Value::Null => &data["data"][name],
        v => v,
    }
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Value {
    let mut req = http.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request");
    let status = res.status();
    let text = res.text().await.expect("body");
    assert!(status.is_success(), "{url}: {status} {text}");
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("JSON")
    }
}

fn report(label: &str, samples: &mut [Duration], lease: u64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label:<44} n={} p50 {:.0} ms, max {:.0} ms (lease {} ms, renewed every third of it)",
        samples.len(),
        ms(samples[(samples.len() - 1) / 2]),
        ms(samples[samples.len() - 1]),
        lease * 1000
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(runs), Some(database), Some(bin), Some(lease)) = (
        args.get(1).and_then(|v| v.parse::<usize>().ok()),
        args.get(2),
        args.get(3),
        args.get(4),
    ) else {
        eprintln!("usage: takeover_bench RUNS DATABASE_URL BINARY LEASE_SECS");
        std::process::exit(2);
    };
    let lease_secs: u64 = lease.parse().expect("LEASE_SECS");
    // The instances run in directories of their own: the binary by its absolute path.
    let bin = std::fs::canonicalize(bin).expect("BINARY exists");
    let bin = bin.to_str().expect("a UTF-8 path");
    let bank = sandbox_bank::SandboxBank::new(sandbox_bank::BankConfig::default());
    let bank_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let bank_url = format!("http://{}/", bank_listener.local_addr().expect("addr"));
    tokio::spawn(bank.clone().serve(bank_listener, std::future::pending()));

    // The instance the benchmark talks to never drives a session, so it is never killed.
    let api = start(bin, database, &bank_url, lease, "api");
    let mut engines = vec![
        start(bin, database, &bank_url, lease, "api,engine,push"),
        start(bin, database, &bank_url, lease, "api,engine,push"),
    ];
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", api.base);
    use reqwest::Method;
    let creds = json!({"email": "bench@example.com", "password": "benchmark-password"});
    call(&http, Method::POST, &url("/auth/register"), None, Some(creds.clone())).await;
    let token = call(&http, Method::POST, &url("/auth/login"), None, Some(creds)).await["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let banks = call(&http, Method::GET, &url("/banks"), Some(&token), None).await;
    let sandbox = banks
        .as_array()
        .and_then(|b| b.iter().find(|b| b["code"] == "sandbox"))
        .expect("the sandbox bank")["id"]
        .clone();
    let account = call(
        &http,
        Method::POST,
        &url("/accounts"),
        Some(&token),
        Some(json!({"bankId": sandbox, "name": "bench"})),
    )
    .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let detail = url(&format!("/accounts/{account}"));
    call(
        &http,
        Method::PUT,
        &format!("{detail}/config"),
        Some(&token),
        Some(json!({"bank_username": "user_otp", "bank_password": "pass_otp", "login_mode": "assisted"})),
    )
    .await;
    let res = http
        .get(url("/realtime/events"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("stream");
    assert!(res.status().is_success(), "{}", res.status());
    let mut events = Events { res, buf: Vec::new() };
    // Asked of a full instance, which starts the login at once.
    let scrape = format!("{}/accounts/{account}/scrape", engines[0].base);
    call(&http, Method::POST, &scrape, Some(&token), None).await;
    let (_, first) = events.next_of(&["assistance.requested"]).await;
    let mut request = field(&first, "requestId").as_str().expect("requestId").to_owned();

    println!(
        "take-over after kill -9 of the lease holder: {runs} runs, lease {lease_secs} s, \
         1 api-only + 2 full instances on one PostgreSQL"
    );
    let (mut lost, mut resumed) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let owner = call(&http, Method::GET, &detail, Some(&token), None).await["sessionOwner"].clone();
        let holder = engines
            .iter()
            .position(|e| owner == json!(e.id))
            .unwrap_or_else(|| panic!("run {run}: the owner {owner} is not a running engine instance"));
        let mut killed = engines.remove(holder);
        let at = Instant::now();
        let _ = killed.child.kill();
        let (kind, cancelled) = events
            .next_of(&["assistance.cancelled", "assistance.fulfilled", "assistance.expired"])
            .await;
        assert_eq!(kind, "assistance.cancelled", "{cancelled}");
        assert_eq!(field(&cancelled, "requestId"), &json!(request), "{cancelled}");
        assert_eq!(field(&cancelled, "reason"), &json!("owner_lost"), "{cancelled}");
        lost.push(at.elapsed());
        let (_, requested) = events.next_of(&["assistance.requested"]).await;
        resumed.push(at.elapsed());
        let new = field(&requested, "requestId").as_str().expect("requestId").to_owned();
        assert_ne!(new, request, "a new login");
        request = new;
        drop(killed);
        engines.push(start(bin, database, &bank_url, lease, "api,engine,push"));
    }
    report("kill -9 -> old request cancelled owner_lost", &mut lost, lease_secs);
    report("kill -9 -> new login asks for its code", &mut resumed, lease_secs);
}
