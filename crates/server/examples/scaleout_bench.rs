//! Issue 11 (scale-out) benchmark: a code submitted to instance B for a login instance A holds.
//!
//! `otp N DATABASE_URL`: two instances (A and B: two complete apps, each with its own pools,
//! `LISTEN` connection and instance id, in one process so the clocks compare) on one fresh
//! PostgreSQL database; N assisted logins wait on A; N codes are submitted one after another
//! through B's `POST /v1/accounts/:id/otp`; prints the time from sending the request to the
//! sandbox bank (in this process) receiving the code, p50/p99, and, for comparison, the same
//! with the codes submitted to A itself.
//!
//! Diagnostics: `POOL` sets each instance's database pool size (default 8, the server's);
//! `RUST_LOG=sqlx::query=debug` logs every statement with its time on stderr.
//!
//! Run through `scripts/bench-scaleout.sh`.

use std::time::{Duration, Instant};

use reconbanker::config::Config;
use reconbanker::domain::account_config::{self as config_doc, LoginMode, SecretFields, Settings};
use reconbanker::push::events::RecvError;
use reconbanker::{App, AppState};
use reconbanker_store::{now, AccountConfigRow, AccountId, NewAccount, UserId, UserRow};

const JWT_SECRET: &str = "scaleout-bench-jwt-secret-0123456789abcdef";
const MASTER_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

async fn app(dir: &std::path::Path, bank: &str, database: &str, sessions: usize) -> (AppState, String) {
    let sessions = sessions.to_string();
    let env = [
        ("RECONBANKER_DATA_DIR", dir.display().to_string()),
        ("DATABASE_URL", database.to_owned()),
        ("JWT_SECRET", JWT_SECRET.to_owned()),
        ("RECONBANKER_MASTER_KEY", MASTER_KEY.to_owned()),
        ("RECONBANKER_SANDBOX_BANK", bank.to_owned()),
        ("RECONBANKER_MAX_SESSIONS", sessions),
        ("RECONBANKER_ASSISTANCE_TIMEOUT_SECS", "3600".into()),
        ("RECONBANKER_OTP_RATE_LIMIT", "1000000".into()),
        ("RECONBANKER_V1_RATE_PER_SEC", "1000000".into()),
        ("RECONBANKER_V1_BURST", "1000000".into()),
        ("RECONBANKER_PORT", "0".into()),
        ("RECONBANKER_SCRAPE_INTERVAL_SECS", "604800".into()),
        (
            "RECONBANKER_DB_MAX_CONNECTIONS",
            std::env::var("POOL").unwrap_or_else(|_| "8".into()),
        ),
    ];
    let config = Config::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())).expect("config");
    let app = App::build(config).await.expect("app");
    let state = app.state.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(app.serve(listener, std::future::pending()));
    (state, base)
}

/// One user and `n` assisted accounts on the sandbox bank as `user_otp`.
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
    let settings = serde_json::to_string(&Settings {
        login_mode: LoginMode::Assisted,
        ..Settings::default()
    })
    .expect("json");
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

/// Starts sessions for `ids` on `state`'s instance and waits until each has asked for a code.
async fn make_waiting(state: &AppState, ids: &[AccountId]) {
    let mut events = state.bus.subscribe().await.expect("subscribe");
    for id in ids {
        state.engine.scrape_now(*id);
    }
    let mut waiting = 0;
    while waiting < ids.len() {
        match events.recv().await {
            Ok(e) if e.kind == "assistance.requested" => waiting += 1,
            Ok(e) if e.kind == "login.failed" => panic!("a login failed: {}", e.data),
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => panic!("bench lost {n} events"),
            Err(RecvError::Closed) => panic!("bus closed"),
        }
    }
}

async fn measure(
    bank: &sandbox_bank::SandboxBank,
    base: &str,
    key: &str,
    ids: &[AccountId],
    pace: Duration,
) -> Vec<Duration> {
    let client = reqwest::Client::new();
    let mut received = bank.subscribe_otp();
    let mut samples = Vec::with_capacity(ids.len());
    for id in ids {
        let sent = Instant::now();
        let res = client
            .post(format!("{base}/v1/accounts/{id}/otp"))
            .header("x-api-key", key)
            .json(&serde_json::json!({"code": "123456"}))
            .send()
            .await
            .expect("post");
        assert_eq!(res.status(), 202, "{}", res.text().await.unwrap_or_default());
        let at = loop {
            match received.recv().await {
                Ok(r) if r.accepted => break r.at,
                Ok(_) => {}
                Err(e) => panic!("bank events: {e}"),
            }
        };
        samples.push(at.saturating_duration_since(sent));
        // With a pace, the next code waits until the end of this login (its read, movements,
        // events, lease) no longer shares the cores with it, as with codes typed by people.
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
    }
    samples.sort();
    samples
}

/// The machine's CPU time so far, all processes (the two instances, PostgreSQL, the bank, this
/// client): (busy, total) in clock ticks from `/proc/stat`'s first line; `None` off Linux.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …: idle and iowait are not busy.
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((total - idle, total))
}

/// Measures a series and says how busy the machine's cores were meanwhile, and the CPU time
/// (all processes) each code's cycle cost: a series whose cores are saturated measures their
/// queue as much as the path.
async fn measure_loaded(
    bank: &sandbox_bank::SandboxBank,
    base: &str,
    key: &str,
    ids: &[AccountId],
    pace: Duration,
) -> (Vec<Duration>, String) {
    let (before, started) = (machine_ticks(), Instant::now());
    let samples = measure(bank, base, key, ids, pace).await;
    let wall = started.elapsed();
    let load = match (before, machine_ticks()) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            let busy = (b1 - b0) as f64 / (t1 - t0) as f64;
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            format!(
                "machine busy {:.0} % of {cores} cores over {:.1} s, {:.1} ms of CPU per code (all processes)",
                busy * 100.0,
                wall.as_secs_f64(),
                busy * cores * wall.as_secs_f64() * 1000.0 / ids.len().max(1) as f64
            )
        }
        _ => "machine load not measured (no /proc/stat)".to_owned(),
    };
    (samples, load)
}

fn report(label: &str, samples: &[Duration], goals: &str) {
    let pct = |p: f64| samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label:<28} n={} p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms {goals}",
        samples.len(),
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(samples[samples.len() - 1])
    );
}

async fn otp(n: usize, database: String, pace: Duration) {
    let bank = sandbox_bank::SandboxBank::new(sandbox_bank::BankConfig::default());
    let bank_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let bank_url = format!("http://{}/", bank_listener.local_addr().expect("addr"));
    tokio::spawn(bank.clone().serve(bank_listener, std::future::pending()));
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let (a, base_a) = app(dir_a.path(), &bank_url, &database, 2 * n + 100).await;
    let (b, base_b) = app(dir_b.path(), &bank_url, &database, 2 * n + 100).await;
    let (user, ids) = accounts(&a, 2 * n).await;
    let key = a.keys.generate();
    a.store
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
    make_waiting(&a, &ids).await;
    let (via_b, via_a) = ids.split_at(n);
    println!(
        "PostgreSQL: two instances, {n} logins waiting on A per series, codes {}",
        if pace.is_zero() {
            "back to back".to_owned()
        } else {
            format!("{} ms apart", pace.as_millis())
        }
    );
    let (cross, load) = measure_loaded(&bank, &base_b, &key.full, via_b, pace).await;
    report(
        "code on B -> A's login -> bank",
        &cross,
        "(goal p50 <= 5 ms, p99 <= 20 ms)",
    );
    println!("  {load}");
    let (local, load) = measure_loaded(&bank, &base_a, &key.full, via_a, pace).await;
    report("code on A (holder) -> bank", &local, "(same instance, for comparison)");
    println!("  {load}");
    b.engine.shutdown().await;
    a.engine.shutdown().await;
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
        Some("otp") => {
            let n = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(500);
            let db = args.get(3).cloned().expect("otp N DATABASE_URL [PACE_MS]");
            let pace = Duration::from_millis(args.get(4).and_then(|v| v.parse().ok()).unwrap_or(0));
            otp(n, db, pace).await;
        }
        _ => eprintln!("usage: scaleout_bench otp N DATABASE_URL [PACE_MS]"),
    }
}
