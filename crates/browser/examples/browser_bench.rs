//! The browser connector's numbers (issue 9), run by `scripts/bench-browser.sh`:
//!
//! 1. memory per login parked on the OTP screen: the PSS of the Chromium process tree
//!    (`/proc/<pid>/smaps_rollup`, children included) with N logins of `user_otp+…` waiting for a
//!    code, minus the tree with none, divided by N — for each N given (default 16 and 48);
//! 2. login time p50/p90 of `user_good` on `sandbox-js` through the browser, and the same login
//!    over plain HTTP against the HTML `sandbox` bank (GET /login, POST /login with the CSRF
//!    token, GET /api/movements — what the HTTP connector does);
//! 3. code handed to the parked login → typed into the bank's page (the page's clock when its
//!    code field changed, sent with the code), and → the bank judged it (typed, submitted,
//!    received by the bank), p50/p90: the part of "OTP at /v1 → code typed" that the browser
//!    adds (the /v1 handler wakes the login through an in-process oneshot).
//!
//! Usage: `browser_bench [N ...]` (env `BENCH_LOGINS` = sequential logins, default 15).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reconbanker_browser::def;
use reconbanker_browser::interp::{self, CodeAsk, Creds, NoCode, OtpRequest};
use reconbanker_browser::{BrowserRuntime, RuntimeConfig};
use sandbox_bank::{BankConfig, SandboxBank};
use tokio::sync::{mpsc, oneshot};

/// Signals when parked, then waits for the code the bench hands it (and when).
struct Handed {
    parked: Option<oneshot::Sender<()>>,
    code: Option<oneshot::Receiver<String>>,
    handed_at: Arc<std::sync::Mutex<Option<(Instant, std::time::SystemTime)>>>,
}

#[async_trait::async_trait]
impl CodeAsk for Handed {
    async fn code(&mut self, _: &OtpRequest) -> Result<String, NoCode> {
        if let Some(p) = self.parked.take() {
            let _ = p.send(());
        }
        let rx = self.code.take().ok_or(NoCode::Cancelled)?;
        let code = rx.await.map_err(|_| NoCode::Cancelled)?;
        *self.handed_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((Instant::now(), std::time::SystemTime::now()));
        Ok(code)
    }

    async fn rejected(&mut self) {}
}

struct NoCodes;

#[async_trait::async_trait]
impl CodeAsk for NoCodes {
    async fn code(&mut self, _: &OtpRequest) -> Result<String, NoCode> {
        Err(NoCode::NotAssisted)
    }
    async fn rejected(&mut self) {}
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![16, 48] } else { sizes };
    let logins: usize = std::env::var("BENCH_LOGINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let max = sizes.iter().copied().max().unwrap_or(16);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = url::Url::parse(&format!("http://{}/", listener.local_addr().expect("addr"))).expect("url");
    let bank = SandboxBank::new(BankConfig::default());
    tokio::spawn(bank.clone().serve(listener, std::future::pending()));
    let (_, text) = def::BUILTIN[0];
    let mut d = def::parse("sandbox-js.toml", text).expect("definition");
    d.base_url = base.clone();
    let d = Arc::new(d);
    let scratch = std::env::temp_dir().join(format!("rbk-bench-{}", std::process::id()));
    let mut cfg = RuntimeConfig::from_env(&scratch).expect("config");
    cfg.contexts = max + 2;
    cfg.waiting = max + 2;
    let rt = BrowserRuntime::new(cfg);
    let extra = BTreeMap::new();

    // Login time, sequential (the first one launches Chromium and is not counted).
    let login = |user: String| {
        let (rt, d, extra) = (Arc::clone(&rt), Arc::clone(&d), extra.clone());
        async move {
            let creds = Creds {
                username: &user,
                password: "pass_good",
                extra: &extra,
                remembered: None,
            };
            let t = Instant::now();
            let mut s = interp::login(&rt, &d, &creds, &mut NoCodes, false)
                .await
                .expect("login");
            let took = t.elapsed();
            s.read_movements().await.expect("read");
            took
        }
    };
    login("user_good+warm".into()).await;
    let mut browser_times = Vec::new();
    for i in 0..logins {
        browser_times.push(login(format!("user_good+b{i}")).await);
    }
    let mut http_times = Vec::new();
    for i in 0..logins {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let t = Instant::now();
        let page = client
            .get(base.join("login").expect("url"))
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("text");
        let csrf = page
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default()
            .to_owned();
        let user = format!("user_good+h{i}");
        let r = client
            .post(base.join("login").expect("url"))
            .form(&[
                ("username", user.as_str()),
                ("password", "pass_good"),
                ("csrf", csrf.as_str()),
            ])
            .send()
            .await
            .expect("post");
        assert!(r.status().is_redirection());
        http_times.push(t.elapsed());
        client
            .get(base.join("api/movements").expect("url"))
            .send()
            .await
            .expect("read");
    }
    let (bp50, bp90) = (pct(&mut browser_times, 0.5), pct(&mut browser_times, 0.9));
    let (hp50, hp90) = (pct(&mut http_times, 0.5), pct(&mut http_times, 0.9));
    println!(
        "login user_good: browser (sandbox-js) p50 {bp50:?} p90 {bp90:?}; HTTP (sandbox) p50 {hp50:?} p90 {hp90:?}"
    );

    // Memory per parked login, and the code → judged latency when they are released.
    let pid = rt.pid().await.expect("chromium runs");
    let mut judged = bank.subscribe_otp();
    let mut code_times = Vec::new();
    let mut typed_times = Vec::new();
    for &n in &sizes {
        // Settle: nothing leased (the sequential logins above are dropped).
        rt.wait_disposed(rt.disposed()).await;
        let baseline = reconbanker_browser::runtime::tree_pss_kb(pid);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let mut senders = Vec::new();
        let mut parked_rx = Vec::new();
        let mut stamps = Vec::new();
        for i in 0..n {
            let (ptx, prx) = oneshot::channel();
            let (ctx, crx) = oneshot::channel();
            let stamp = Arc::new(std::sync::Mutex::new(None));
            let mut ask = Handed {
                parked: Some(ptx),
                code: Some(crx),
                handed_at: Arc::clone(&stamp),
            };
            let (rt, d, extra, done) = (Arc::clone(&rt), Arc::clone(&d), extra.clone(), done_tx.clone());
            let user = format!("user_otp+n{n}i{i}");
            tokio::spawn(async move {
                let creds = Creds {
                    username: &user,
                    password: "pass_otp",
                    extra: &extra,
                    remembered: None,
                };
                let r = interp::login(&rt, &d, &creds, &mut ask, false).await;
                if let Err(e) = &r {
                    eprintln!("{user}: {e:?}");
                }
                let _ = done.send(r.is_ok());
                // Keep the session until the bench ends this round.
                tokio::time::sleep(Duration::from_secs(2)).await;
            });
            senders.push(ctx);
            parked_rx.push(prx);
            stamps.push(stamp);
        }
        let mut failed = 0;
        for p in parked_rx {
            if p.await.is_err() {
                failed += 1;
            }
        }
        if failed > 0 {
            println!("{failed} of {n} logins failed before the OTP screen (machine too busy?)");
        }
        let parked = reconbanker_browser::runtime::tree_pss_kb(pid);
        let per = (parked.saturating_sub(baseline)) as f64 / n as f64 / 1024.0;
        println!(
            "{n} logins parked on the OTP screen: Chromium tree PSS {:.0} MB -> {:.0} MB, marginal {per:.1} MB per login",
            baseline as f64 / 1024.0,
            parked as f64 / 1024.0
        );
        // Release them one at a time: code handed → the bank judged it.
        for (tx, stamp) in senders.into_iter().zip(stamps) {
            if tx.send("123456".into()).is_err() {
                continue;
            }
            let verdict = judged.recv().await.expect("judged");
            let (handed, handed_wall) = stamp
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .expect("handed");
            code_times.push(verdict.at.saturating_duration_since(handed));
            // Typed: the page's clock when its code field changed (the same machine's clock).
            let handed_ms = handed_wall
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64() * 1000.0)
                .unwrap_or(0.0);
            if let Some(typed) = verdict.typed_at_ms {
                typed_times.push(Duration::from_secs_f64((typed as f64 - handed_ms).max(0.0) / 1000.0));
            }
        }
        for _ in 0..n - failed {
            let _ = done_rx.recv().await;
        }
    }
    if typed_times.is_empty() {
        println!("code handed to a parked login -> typed: the page reported no typing time");
    } else {
        let (tp50, tp90) = (pct(&mut typed_times, 0.5), pct(&mut typed_times, 0.9));
        println!(
            "code handed to a parked login -> typed into the bank's page: p50 {tp50:?} p90 {tp90:?} ({} codes; goal p50 <= 50 ms)",
            typed_times.len()
        );
    }
    let (cp50, cp90) = (pct(&mut code_times, 0.5), pct(&mut code_times, 0.9));
    println!(
        "code handed to a parked login -> judged by the bank: p50 {cp50:?} p90 {cp90:?} ({} codes)",
        code_times.len()
    );
    rt.shutdown().await;
    let _ = std::fs::remove_dir_all(&scratch);
}
