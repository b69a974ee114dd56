//! Benchmarks of assisted login (issue: sessions and assisted login).
//!
//! `waiting N BANK_URL`: N assisted logins all waiting for a code in one instance, against a
//! sandbox bank running in another process; prints the memory per waiting login (marginal RSS)
//! and the thread count, then delivers every code and checks every login completes.
//!
//! `latency N`: N codes submitted one after another through `POST /v1/accounts/:id/otp` to N
//! waiting logins; prints the time from sending the request to the sandbox bank (in this
//! process, so the clocks compare) receiving the code, p50/p99.
//!
//! Run through `scripts/bench-assist.sh`.

use std::time::{Duration, Instant};

use reconbanker::config::Config;
use reconbanker::domain::account_config::{self as config_doc, LoginMode, SecretFields, Settings};
use reconbanker::push::events::RecvError;
use reconbanker::{App, AppState};
use reconbanker_store::{now, AccountConfigRow, AccountId, NewAccount, UserId, UserRow};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    field(&status, "VmRSS:")
}

fn threads() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    field(&status, "Threads:")
}

fn field(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn app(dir: &std::path::Path, bank: &str, sessions: usize) -> App {
    let sessions = sessions.to_string();
    let env = [
        ("RECONBANKER_DATA_DIR", dir.join("data").display().to_string()),
        ("RECONBANKER_SANDBOX_BANK", bank.to_owned()),
        ("RECONBANKER_MAX_SESSIONS", sessions),
        ("RECONBANKER_ASSISTANCE_TIMEOUT_SECS", "3600".into()),
        ("RECONBANKER_OTP_RATE_LIMIT", "1000000".into()),
        ("RECONBANKER_V1_RATE_PER_SEC", "1000000".into()),
        ("RECONBANKER_V1_BURST", "1000000".into()),
        ("RECONBANKER_PORT", "0".into()),
        ("RECONBANKER_SCRAPE_INTERVAL_SECS", "604800".into()),
    ];
    let config = Config::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())).expect("config");
    App::build(config).await.expect("app")
}

/// One user and `n` assisted accounts on the sandbox bank as `user_otp`, written to the store.
async fn accounts(state: &AppState, n: usize) -> (UserId, Vec<AccountId>) {
    let user = UserRow {
        id: UserId::new(),
        email: format!("bench-{}@example.com", uuid::Uuid::new_v4().simple()),
        name: None,
        password_hash: "x".into(),
        is_admin: false,
        operation_mode: None,
        created_at: now(),
    };
    state.store.create_user(&user).await.expect("user");
    let bank = state
        .store
        .list_banks()
        .await
        .expect("banks")
        .into_iter()
        .find(|b| b.code == "sandbox")
        .expect("bank");
    let settings = Settings {
        login_mode: LoginMode::Assisted,
        ..Settings::default()
    };
    let settings = serde_json::to_string(&settings).expect("json");
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let id = AccountId::new();
        state
            .store
            .create_account(&NewAccount {
                id,
                user_id: user.id,
                bank_id: bank.id,
                name: format!("a{i}"),
                created_at: now(),
            })
            .await
            .expect("account");
        let secrets = SecretFields {
            bank_username: Some("user_otp".into()),
            bank_password: Some("pass_otp".into()),
            ..SecretFields::default()
        };
        let sealed = state
            .sealer
            .seal(&serde_json::to_vec(&secrets).expect("json"), &config_doc::aad(id));
        let row = AccountConfigRow {
            account_id: id,
            settings: settings.clone(),
            secrets: Some(sealed),
            updated_at: now(),
        };
        state.store.put_account_config(user.id, &row).await.expect("config");
        ids.push(id);
    }
    (user.id, ids)
}

/// Starts sessions for `ids` in batches and waits until each has asked for a code.
async fn make_waiting(state: &AppState, ids: &[AccountId]) {
    let mut events = state.bus.subscribe().await.expect("subscribe");
    for batch in ids.chunks(500) {
        for id in batch {
            state.engine.scrape_now(*id);
        }
        let mut waiting = 0;
        while waiting < batch.len() {
            match events.recv().await {
                Ok(e) if e.kind == "assistance.requested" => waiting += 1,
                Ok(e) if e.kind == "login.failed" => panic!("a login failed: {}", e.data),
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => panic!("bench lost {n} events"),
                Err(RecvError::Closed) => panic!("bus closed"),
            }
        }
    }
}

async fn waiting(n: usize, bank: String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app(dir.path(), &bank, n + 100).await;
    let state = app.state.clone();
    let warm = 100.min(n);
    let (_user, ids) = accounts(&state, n).await;
    // Warm-up: the first logins pay for one-time allocations (TLS, pools, caches).
    make_waiting(&state, &ids[..warm]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (rss0, threads0) = (rss_kib(), threads());
    let started = Instant::now();
    make_waiting(&state, &ids[warm..]).await;
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (rss1, threads1) = (rss_kib(), threads());
    let measured = (n - warm) as f64;
    let per = (rss1.saturating_sub(rss0)) as f64 / measured;
    println!("waiting logins:            {n} (all waiting for a code at once)");
    println!("sessions live:             {}", state.sessions.count());
    println!("time to get {} waiting:  {:.2} s", n - warm, took.as_secs_f64());
    println!("RSS after warm-up:         {} KiB", rss0);
    println!("RSS with all waiting:      {} KiB", rss1);
    println!("memory per waiting login:  {per:.1} KiB (goal <= 12 KiB, issue 13)");
    println!("threads:                   {threads0} -> {threads1} (no thread per login)");

    // Every one of them is real: deliver all codes, all logins complete.
    let mut events = state.bus.subscribe().await.expect("subscribe");
    for id in &ids {
        state
            .assistance
            .submit(*id, "123456", None)
            .await
            .expect("code accepted for delivery");
    }
    let mut done = 0;
    while done < n {
        match events.recv().await {
            Ok(e) if e.kind == "assistance.fulfilled" => done += 1,
            Ok(_) => {}
            Err(e) => panic!("events: {e}"),
        }
    }
    println!("codes delivered:           {n}, logins fulfilled: {done}");
    state.engine.shutdown().await;
}

async fn latency(n: usize, pace: Duration) {
    let bank = sandbox_bank::SandboxBank::new(sandbox_bank::BankConfig::default());
    let bank_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let bank_url = format!("http://{}/", bank_listener.local_addr().expect("addr"));
    tokio::spawn(bank.clone().serve(bank_listener, std::future::pending()));
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app(dir.path(), &bank_url, n + 100).await;
    let state = app.state.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(app.serve(listener, std::future::pending()));
    let (user, ids) = accounts(&state, n).await;
    let key = state.keys.generate();
    state
        .store
        .create_api_key(&reconbanker_store::ApiKeyRow {
            id: reconbanker_store::ApiKeyId::new(),
            user_id: user,
            name: "bench".into(),
            prefix: key.prefix.clone(),
            secret_hash: key.secret_hash.to_vec(),
            scopes: vec!["otp:write".into()],
            account_ids: None,
            created_at: now(),
            last_used_at: None,
            expires_at: None,
            revoked_at: None,
        })
        .await
        .expect("key");
    make_waiting(&state, &ids).await;
    let client = reqwest::Client::new();
    let mut received = bank.subscribe_otp();
    let mut samples = Vec::with_capacity(n);
    // Where the time goes: the 202 at the client, and the bank's receipt after the 202.
    let mut answered = Vec::with_capacity(n);
    for id in &ids {
        let sent = Instant::now();
        let res = client
            .post(format!("{base}/v1/accounts/{id}/otp"))
            .header("x-api-key", &key.full)
            .json(&serde_json::json!({"code": "123456"}))
            .send()
            .await
            .expect("post");
        assert_eq!(res.status(), 202, "{}", res.text().await.unwrap_or_default());
        answered.push(sent.elapsed());
        let at = loop {
            match received.recv().await {
                Ok(r) if r.accepted => break r.at,
                Ok(_) => {}
                Err(e) => panic!("bank events: {e}"),
            }
        };
        samples.push(at.saturating_duration_since(sent));
        // `latency N PACE_MS`: the next code only PACE_MS after the bank took this one, so the
        // end of this login (its read, movements, events, logout) no longer runs beside the next
        // submission; codes typed by people arrive seconds apart. 0 (the default): back to back.
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
    }
    samples.sort();
    answered.sort();
    let pct_of = |v: &[Duration], p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    let pct = |p: f64| pct_of(&samples, p);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "submissions:               {n} (POST /v1/.../otp → sandbox bank receives the code), {}",
        if pace.is_zero() {
            "back to back".to_owned()
        } else {
            format!("{} ms apart", pace.as_millis())
        }
    );
    println!("p50:                       {:.3} ms (goal <= 1 ms)", ms(pct(0.50)));
    println!("p99:                       {:.3} ms (goal <= 5 ms)", ms(pct(0.99)));
    println!("max:                       {:.3} ms", ms(samples[samples.len() - 1]));
    println!(
        "202 at the client:         p50 {:.3} ms, p99 {:.3} ms",
        ms(pct_of(&answered, 0.50)),
        ms(pct_of(&answered, 0.99))
    );
    state.engine.shutdown().await;
}

#[tokio::main]
async fn main() {
    // RUST_LOG (e.g. `sqlx::query=debug` for every statement with its time), on stderr.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("waiting") => {
            let n = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(10_000);
            let bank = args.get(3).cloned().expect("waiting N BANK_URL");
            waiting(n, bank).await;
        }
        Some("latency") => {
            let n = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(1000);
            let pace = Duration::from_millis(args.get(3).and_then(|v| v.parse().ok()).unwrap_or(0));
            latency(n, pace).await
        }
        _ => eprintln!("usage: assist_bench waiting N BANK_URL | assist_bench latency N [PACE_MS]"),
    }
}
