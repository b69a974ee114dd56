//! Benchmarks of reconciliation (issue: reconciliation performance), one scenario per process so
//! each peak RSS (VmHWM) is the scenario's own.
//!
//! - `a`: one account, 10,000 new movements stored (5,000 of them match an order), then one poll
//!   of 50,000 open orders through the real poller from a local orders server, then the real
//!   match worker's first pass. Goal: poll applied + full match pass ≤ 2 s, peak RSS ≤ 150 MB.
//! - `b N`: the same account after that, served with every worker running; N times, one new
//!   matching movement stored (as the engine stores it: `insert_movements`, then the match
//!   worker's wake-up) → the signed result webhook at a local receiver (signature verified).
//!   Goal: p50 ≤ 10 ms, p99 ≤ 50 ms.
//! - `c`: the same as `a`, with the pass replaced by a naive matcher (for each movement, a scan
//!   of every open order; the same store reads and commit): the baseline the index must beat.
//!
//! The database is SQLite in a temporary directory, or a fresh database on the PostgreSQL server
//! named by `BENCH_POSTGRES_URL`. Run through `scripts/bench-reconcile.sh`.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use reconbanker::AppState;
use reconbanker_store::{
    AccountId, MatchDecision, NewDelivery, NewEvent, NewMovement, NotFoundDecision, PassCommit, PassEvent,
    CHANNEL_RESULT,
};
use reqwest::Client;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::mpsc;

const ORDERS: usize = 50_000;
const MOVEMENTS: usize = 10_000;
const MATCHING: usize = 5_000;

const FIRST: [&str; 50] = [
    "Juan", "Maria", "Jose", "Ana", "Luis", "Carmen", "Carlos", "Laura", "Pedro", "Sofia", "Miguel", "Lucia", "Jorge",
    "Elena", "Diego", "Paula", "Pablo", "Marta", "Andres", "Julia", "Raul", "Sara", "Sergio", "Clara", "Mario",
    "Irene", "Ruben", "Alba", "Hugo", "Noelia", "Oscar", "Rosa", "Ivan", "Celia", "Adrian", "Eva", "Ramon", "Silvia",
    "Alvaro", "Nuria", "Tomas", "Lidia", "Victor", "Olga", "Emilio", "Ines", "Felipe", "Rocio", "Gabriel", "Beatriz",
];
const LAST: [&str; 60] = [
    "Perez",
    "Gomez",
    "Rodriguez",
    "Fernandez",
    "Lopez",
    "Martinez",
    "Sanchez",
    "Diaz",
    "Alvarez",
    "Romero",
    "Torres",
    "Ruiz",
    "Ramirez",
    "Flores",
    "Acosta",
    "Benitez",
    "Medina",
    "Herrera",
    "Suarez",
    "Aguirre",
    "Gimenez",
    "Gutierrez",
    "Pereyra",
    "Rojas",
    "Molina",
    "Castro",
    "Ortiz",
    "Silva",
    "Nunez",
    "Luna",
    "Juarez",
    "Cabrera",
    "Rios",
    "Ferreyra",
    "Godoy",
    "Morales",
    "Dominguez",
    "Moreno",
    "Peralta",
    "Vega",
    "Carrizo",
    "Quiroga",
    "Ponce",
    "Vazquez",
    "Villalba",
    "Cardozo",
    "Navarro",
    "Correa",
    "Figueroa",
    "Ledesma",
    "Ramos",
    "Vera",
    "Ojeda",
    "Mendez",
    "Cruz",
    "Arias",
    "Sosa",
    "Blanco",
    "Franco",
    "Paz",
];

/// Order `i`: orders `i`, `i + 20000`, `i + 40000` share an amount, and their names share the
/// first name only (a weak pair), so exactly one of them is strong for a movement.
fn order_amount(i: usize) -> String {
    let cents = 10_000 + (i % 20_000) * 13;
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn order_name(i: usize) -> (&'static str, &'static str) {
    (FIRST[i % 50], LAST[(i / 50) % 60])
}

fn external_id(i: usize) -> String {
    format!("ORD-{i:06}")
}

/// The bank's view of a transfer paying order `i`: surname first, upper case.
fn paying(i: usize, tag: &str, at: &str) -> NewMovement {
    let (first, last) = order_name(i);
    NewMovement {
        external_id: format!("MOV-{tag}-{i:06}"),
        amount: order_amount(i),
        currency: "UYU".into(),
        name: Some(format!("{} {}", last.to_uppercase(), first.to_uppercase())),
        description: "TRANSFERENCIA RECIBIDA".into(),
        received_at: at.into(),
    }
}

/// 10,000 movements: 5,000 pay orders 0, 10, 20, …; 2,500 have amounts no order has; 2,500 have
/// an order's amount and a company's name.
fn movements(at: &str) -> Vec<NewMovement> {
    let mut out: Vec<NewMovement> = (0..MATCHING).map(|k| paying(k * 10, "a", at)).collect();
    for k in 0..(MOVEMENTS - MATCHING) / 2 {
        let cents = 1 + k * 3;
        out.push(NewMovement {
            external_id: format!("MOV-x-{k:06}"),
            amount: format!("{}.{:02}", cents / 100, cents % 100),
            currency: "UYU".into(),
            name: Some("PROVEEDORA DEL SUR SA".into()),
            description: "TRANSFERENCIA RECIBIDA".into(),
            received_at: at.into(),
        });
        out.push(NewMovement {
            external_id: format!("MOV-y-{k:06}"),
            amount: order_amount(k * 10 + 3),
            currency: "UYU".into(),
            name: Some("COMERCIAL DEL ESTE SRL".into()),
            description: "PAGO PROVEEDORES".into(),
            received_at: at.into(),
        });
    }
    out
}

/// The orders list, written directly (a `Value` per order would weigh on the bench's own RSS).
fn orders_body() -> axum::body::Bytes {
    let mut out = String::with_capacity(ORDERS * 90);
    out.push('[');
    for i in 0..ORDERS {
        let (first, last) = order_name(i);
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            r#"{{"external_id":"{}","amount":"{}","currency":"UYU","name":"{first} {last}"}}"#,
            external_id(i),
            order_amount(i)
        ));
    }
    out.push(']');
    out.into()
}

fn kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time of the whole process (every thread), user + system.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// CPU time per thread name (user + system): which thread a phase kept busy.
fn thread_cpu() -> std::collections::BTreeMap<String, Duration> {
    let mut by_name = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return by_name;
    };
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let name = stat
            .split_once('(')
            .and_then(|(_, r)| r.rsplit_once(')'))
            .map(|(n, _)| n.to_owned());
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
        let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
            + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
        *by_name.entry(name.unwrap_or_default()).or_insert(Duration::ZERO) += Duration::from_millis(ticks * 10);
    }
    by_name
}

/// The CPU each thread name spent between two [`thread_cpu`] readings, largest first.
fn thread_cpu_since(before: &std::collections::BTreeMap<String, Duration>) -> String {
    let mut spent: Vec<(String, Duration)> = thread_cpu()
        .into_iter()
        .map(|(name, t)| {
            let was = before.get(&name).copied().unwrap_or_default();
            (name, t.saturating_sub(was))
        })
        .filter(|(_, t)| !t.is_zero())
        .collect();
    spent.sort_by_key(|s| std::cmp::Reverse(s.1));
    spent
        .iter()
        .map(|(n, t)| format!("{n} {:.0} ms", ms(*t)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn pct(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1]
}

/// A received result webhook: its `external_id`, `status`, and whether its signature verified.
struct Hook {
    external_id: String,
    status: String,
    verified: bool,
    at: Instant,
}

struct Bench {
    state: AppState,
    app: Option<reconbanker::App>,
    account: AccountId,
    hooks: mpsc::UnboundedReceiver<Hook>,
    db: String,
    _dir: tempfile::TempDir,
}

async fn api(
    client: &Client,
    base: &str,
    token: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut req = client.request(method, format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request");
    let status = res.status();
    let v: Value = res.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

/// The PostgreSQL database this run created (the server's URL and the name), dropped at the end.
static CREATED: OnceLock<(String, String)> = OnceLock::new();

/// Drops the database this run created on `BENCH_POSTGRES_URL`, if any (the app's connections
/// with it).
async fn drop_created() {
    use sqlx::Connection;
    if let Some((server, name)) = CREATED.get() {
        let mut conn = sqlx::PgConnection::connect(server).await.expect("postgres");
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .expect("drop database");
    }
}

/// The database URL of this run: SQLite under `dir`, or a fresh database on `BENCH_POSTGRES_URL`.
async fn database_url(dir: &std::path::Path) -> (String, &'static str) {
    match std::env::var("BENCH_POSTGRES_URL") {
        Ok(server) if !server.is_empty() => {
            use sqlx::Connection;
            let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(&server).await.expect("postgres");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create database");
            let (head, _) = server.rsplit_once('/').expect("postgres://…/db");
            let _ = CREATED.set((server.clone(), name.clone()));
            (format!("{head}/{name}"), "postgres")
        }
        _ => (format!("sqlite://{}/bench.db", dir.join("data").display()), "sqlite"),
    }
}

/// The app with an account polling the local orders server and sending results to the local
/// receiver. `serve`: every worker runs (scenario b); otherwise only the HTTP routes, and the
/// bench calls the poller and the match worker itself.
async fn setup(serve: bool) -> (Bench, &'static str) {
    let body = orders_body();
    let orders = axum::Router::new().route(
        "/orders",
        axum::routing::get(move || {
            let body = body.clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    let orders_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let orders_url = format!("http://{}/orders", orders_listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(orders_listener, orders).await });

    let secret: Arc<OnceLock<Vec<u8>>> = Arc::new(OnceLock::new());
    let (hook_tx, hooks) = mpsc::unbounded_channel::<Hook>();
    let key = secret.clone();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let tx = hook_tx.clone();
            let key = key.clone();
            async move {
                let at = Instant::now();
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                let verified = key.get().is_some_and(|k| {
                    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(k) else {
                        return false;
                    };
                    mac.update(h("webhook-id").as_bytes());
                    mac.update(b".");
                    mac.update(h("webhook-timestamp").as_bytes());
                    mac.update(b".");
                    mac.update(&body);
                    let expected = format!(
                        "v1,{}",
                        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
                    );
                    h("webhook-signature").split(' ').any(|s| s == expected)
                });
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let _ = tx.send(Hook {
                    external_id: v["external_id"].as_str().unwrap_or_default().to_owned(),
                    status: v["status"].as_str().unwrap_or_default().to_owned(),
                    verified,
                    at,
                });
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let hook_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hook_url = format!("http://{}/hook", hook_listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(hook_listener, receiver).await });

    let dir = tempfile::tempdir().expect("tempdir");
    let (db, backend) = database_url(dir.path()).await;
    let env = [
        ("RECONBANKER_DATA_DIR", dir.path().join("data").display().to_string()),
        ("DATABASE_URL", db.clone()),
        ("RECONBANKER_ALLOW_PRIVATE_TARGETS", "true".into()),
        ("RECONBANKER_ORDERS_POLL_INTERVAL_SECS", "86400".into()),
        ("RECONBANKER_WEBHOOK_BACKOFF_MS", "10".into()),
        // No bank is read here: the embedded sandbox bank's fixed port may be another process's.
        ("RECONBANKER_SANDBOX_BANK", "off".into()),
    ];
    let config =
        reconbanker::config::Config::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .expect("config");
    let app = reconbanker::App::build(config).await.expect("app");
    let state = app.state.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = if serve {
        tokio::spawn(app.serve(listener, std::future::pending()));
        None
    } else {
        // What `serve` runs beside the workers and that a commit no longer does: without it
        // the log would only grow, and the bench would leave the copying out.
        tokio::spawn(reconbanker::checkpoint::run(
            state.store.clone(),
            reconbanker::checkpoint::CHECKPOINT_INTERVAL,
            tokio_util::sync::CancellationToken::new(),
        ));
        let router = reconbanker::http::router(state.clone());
        tokio::spawn(
            async move { axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await },
        );
        Some(app)
    };

    let client = Client::new();
    let creds = json!({"email": "bench@example.com", "password": "benchmark-password"});
    api(
        &client,
        &base,
        None,
        reqwest::Method::POST,
        "/auth/register",
        Some(creds.clone()),
    )
    .await;
    let login = api(&client, &base, None, reqwest::Method::POST, "/auth/login", Some(creds)).await;
    let token = login["token"].as_str().expect("token").to_owned();
    let t = Some(token.as_str());
    api(
        &client,
        &base,
        t,
        reqwest::Method::PUT,
        "/me/operation-mode",
        Some(json!({"mode": "reconcile"})),
    )
    .await;
    let banks = api(&client, &base, t, reqwest::Method::GET, "/banks", None).await;
    let bank = banks
        .as_array()
        .expect("banks")
        .iter()
        .find(|b| b["code"] == "sandbox")
        .expect("sandbox")["id"]
        .clone();
    let acc = api(
        &client,
        &base,
        t,
        reqwest::Method::POST,
        "/accounts",
        Some(json!({"bankId": bank, "name": "bench"})),
    )
    .await;
    let account_id = acc["id"].as_str().expect("id").to_owned();
    let config = api(
        &client,
        &base,
        t,
        reqwest::Method::PUT,
        &format!("/accounts/{account_id}/config"),
        Some(json!({"bank_username": "user_good", "bank_password": "pass_good",
                    "pending_orders_endpoint": orders_url, "webhook_url": hook_url})),
    )
    .await;
    let secret_text = config["webhook_signing_secret"].as_str().expect("secret").to_owned();
    let _ = secret.set(
        base64::engine::general_purpose::STANDARD
            .decode(secret_text.trim_start_matches("whsec_"))
            .expect("secret"),
    );
    let account = AccountId(account_id.parse().expect("uuid"));
    (
        Bench {
            state,
            app,
            account,
            hooks,
            db,
            _dir: dir,
        },
        backend,
    )
}

impl Bench {
    /// The account's requests per status, read from the database directly (the dashboard's
    /// paginated list is not what is measured).
    async fn count(&self, status: &str) -> usize {
        let sql = "SELECT COUNT(*) FROM conciliation_requests WHERE status = $1";
        let n: i64 = if self.db.starts_with("postgres") {
            let pool = sqlx::PgPool::connect(&self.db).await.expect("db");
            sqlx::query_scalar(sql)
                .bind(status)
                .fetch_one(&pool)
                .await
                .expect("count")
        } else {
            let pool = sqlx::SqlitePool::connect(&self.db).await.expect("db");
            sqlx::query_scalar(sql)
                .bind(status)
                .fetch_one(&pool)
                .await
                .expect("count")
        };
        usize::try_from(n).unwrap_or(0)
    }
}

fn received_at() -> String {
    (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Scenarios a and c: the poll, then the pass (`naive`: the baseline matcher).
async fn first_pass(naive: bool) {
    let rss_start = kib("VmRSS:");
    let (b, backend) = setup(false).await;
    let store = b.state.store.clone();
    let at = received_at();
    let movements = movements(&at);
    let started = Instant::now();
    let stored = store
        .insert_movements(
            b.account,
            &movements,
            chrono::Utc::now(),
            &reconbanker_store::never_forward,
        )
        .await
        .expect("movements");
    let store_took = started.elapsed();
    assert_eq!(stored as usize, MOVEMENTS);
    drop(movements);
    let rss_setup = kib("VmHWM:");

    let (started, cpu0, threads0) = (Instant::now(), cpu(), thread_cpu());
    // The baseline (c) polls without the first pass inside the poll: its naive matcher decides.
    let row = b
        .state
        .poller
        .poll_with(b.account, !naive)
        .await
        .expect("poll")
        .expect("polled");
    let poll_took = started.elapsed();
    let (poll_cpu, rss_poll, poll_threads) = (cpu() - cpu0, kib("VmHWM:"), thread_cpu_since(&threads0));
    assert_eq!(row.outcome, "succeeded", "{row:?}");
    assert_eq!(row.counts.registered as usize, ORDERS);

    let (started, cpu0) = (Instant::now(), cpu());
    let phases = if naive {
        naive_pass(&b).await
    } else {
        assert!(
            b.state.matcher.pass(b.account).await.expect("pass"),
            "the pass committed"
        );
        None
    };
    let pass_took = started.elapsed();
    let pass_cpu = cpu() - cpu0;
    let total = poll_took + pass_took;
    let peak = kib("VmHWM:");

    let matched = b.count("matched").await;
    let not_found = b.count("not_found").await;
    let name = if naive { "c (naive baseline)" } else { "a" };
    println!("== scenario {name}, {backend}: {ORDERS} orders, {MOVEMENTS} new movements ({MATCHING} match)");
    println!("store {MOVEMENTS} movements:   {:8.1} ms (not counted)", ms(store_took));
    println!(
        "poll (fetch+apply{}): {:8.1} ms (process CPU {:.0} ms; peak RSS then {:.1} MB)",
        if naive { "" } else { ", first pass inside" },
        ms(poll_took),
        ms(poll_cpu),
        rss_poll as f64 / 1024.0
    );
    println!("  poll CPU by thread:   {poll_threads}");
    if let Some((load, scan, commit)) = phases {
        println!("  naive load_pass:      {:8.1} ms", ms(load));
        println!("  naive scan:           {:8.1} ms", ms(scan));
        println!("  naive commit_pass:    {:8.1} ms", ms(commit));
    }
    println!(
        "first match pass:       {:8.1} ms (process CPU {:.0} ms)",
        ms(pass_took),
        ms(pass_cpu)
    );
    println!(
        "poll + pass:            {:8.1} ms (goal <= 2000 ms){}",
        ms(total),
        if naive {
            ""
        } else if total <= Duration::from_secs(2) {
            " ok"
        } else {
            " MISSED"
        }
    );
    println!(
        "peak RSS (VmHWM):       {:8.1} MB (goal <= 150 MB); {:.1} MB at start, {:.1} MB after setup",
        peak as f64 / 1024.0,
        rss_start as f64 / 1024.0,
        rss_setup as f64 / 1024.0
    );
    println!("outcome:                {matched} matched, {not_found} not found");
    println!(
        "RESULT {} {:.1} {:.1} {:.1} {:.1}",
        if naive { "c" } else { "a" },
        ms(poll_took),
        ms(pass_took),
        ms(total),
        peak as f64 / 1024.0
    );
    assert_eq!(matched, MATCHING, "every paying movement matched its order");
    drop(b.app);
}

/// The baseline: the same store reads and commit as the match worker, with the decisions of a
/// naive matcher (for each movement in date order, a scan of every open order, taking the first
/// free one with the same amount and currency and a strong name).
async fn naive_pass(b: &Bench) -> Option<(Duration, Duration, Duration)> {
    let store = b.state.store.clone();
    let user = store
        .engine_account(b.account)
        .await
        .expect("account")
        .expect("account")
        .account
        .user_id;
    let t0 = Instant::now();
    let now = chrono::Utc::now();
    let input = store
        .load_pass(b.account, now - chrono::Duration::hours(241))
        .await
        .expect("load");
    let t1 = Instant::now();
    let amounts: Vec<Option<Decimal>> = input.requests.iter().map(|r| r.amount.parse().ok()).collect();
    let mut taken = vec![false; input.requests.len()];
    let mut matched = Vec::new();
    for m in &input.movements {
        let Ok(amount) = m.amount.trim().parse::<Decimal>() else {
            continue;
        };
        let currency = m.currency.trim().to_uppercase();
        for (i, r) in input.requests.iter().enumerate() {
            if taken[i] || amounts[i] != Some(amount) || r.currency != currency {
                continue;
            }
            let score = reconbanker::name_score(&r.sender_name, m.name.as_deref()).score;
            if score >= reconbanker::STRONG_BAND {
                taken[i] = true;
                matched.push(MatchDecision {
                    request: r.id,
                    movement: m.id,
                    score: i64::from(score),
                    reason: None,
                    explanation: "{}".into(),
                    candidates: "[]".into(),
                });
                break;
            }
        }
    }
    let commit = PassCommit {
        trigger: "movements".into(),
        recheck: Vec::new(),
        expired: Vec::new(),
        matched,
        ambiguous: Vec::new(),
        not_found: input
            .requests
            .iter()
            .zip(&taken)
            .filter(|(_, t)| !**t)
            .map(|(r, _)| NotFoundDecision {
                request: r.id,
                reason: "no_movement_with_amount".into(),
                candidates: "[]".into(),
            })
            .collect(),
    };
    let t2 = Instant::now();
    let account = b.account;
    let events = move |e: PassEvent<'_>| -> Vec<NewEvent> {
        let (kind, r, delivery) = match e {
            PassEvent::Matched { request, movement } => (
                "conciliation.matched",
                request,
                Some(json!({"external_id": request.external_id, "status": "matched", "movement": movement.id})),
            ),
            PassEvent::Ambiguous(r) => ("conciliation.ambiguous", r, None),
            PassEvent::NotFound(r) => ("conciliation.not_found", r, None),
            PassEvent::Expired(r) => ("conciliation.expired", r, None),
        };
        vec![NewEvent {
            id: uuid::Uuid::now_v7(),
            user_id: user,
            account_id: account,
            kind: kind.into(),
            data: json!({"request_id": r.id, "external_id": r.external_id}).to_string(),
            occurred_at: now,
            deliveries: delivery
                .map(|body| NewDelivery {
                    id: reconbanker_store::DeliveryId::new(),
                    event_type: "matched".into(),
                    payload: body.to_string(),
                    request_id: None,
                    next_attempt_at: now,
                    channel: CHANNEL_RESULT.into(),
                    subject_id: Some(r.id.0),
                })
                .into_iter()
                .collect(),
        }]
    };
    let logged = store
        .commit_pass(b.account, input.version, input.dirty_seq, &commit, now, &events)
        .await
        .expect("commit");
    assert!(logged.is_some(), "no race");
    let t3 = Instant::now();
    Some((t1 - t0, t2 - t1, t3 - t2))
}

/// Scenario b: one new matching movement at a time → its signed result webhook.
async fn latency(n: usize) {
    let (mut b, backend) = setup(true).await;
    let store = b.state.store.clone();
    let at = received_at();
    store
        .insert_movements(
            b.account,
            &movements(&at),
            chrono::Utc::now(),
            &reconbanker_store::never_forward,
        )
        .await
        .expect("movements");
    b.state.matcher_wake.notify_one();
    // The workers poll (the account was never polled), match, and send the first pass's
    // results; every one of them arrives before the measurement starts.
    let started = Instant::now();
    let mut first = 0;
    while first < MATCHING {
        let hook = tokio::time::timeout(Duration::from_secs(300), b.hooks.recv())
            .await
            .expect("the first pass's webhooks")
            .expect("open");
        assert!(hook.verified, "signature");
        if hook.status == "matched" {
            first += 1;
        }
    }
    let warm = started.elapsed();
    let mut samples = Vec::with_capacity(n);
    let mut unverified = 0;
    for k in 0..n {
        let order = k * 10 + 5;
        let m = paying(order, "b", &received_at());
        let sent = Instant::now();
        assert_eq!(
            store
                .insert_movements(b.account, &[m], chrono::Utc::now(), &reconbanker_store::never_forward)
                .await
                .expect("movement"),
            1
        );
        b.state.matcher_wake.notify_one();
        let want = external_id(order);
        let hook = loop {
            let hook = tokio::time::timeout(Duration::from_secs(30), b.hooks.recv())
                .await
                .expect("the result webhook")
                .expect("open");
            if hook.external_id == want {
                break hook;
            }
        };
        assert_eq!(hook.status, "matched");
        if !hook.verified {
            unverified += 1;
        }
        samples.push(ms(hook.at - sent));
    }
    let (p50, p99) = (pct(&mut samples, 0.5), pct(&mut samples, 0.99));
    println!("== scenario b, {backend}: {ORDERS} open orders, {n} matching movements one at a time");
    println!(
        "setup (poll, first pass, {MATCHING} webhooks): {:.1} s",
        warm.as_secs_f64()
    );
    println!(
        "movement stored -> signed result webhook: p50 {p50:.2} ms, p99 {p99:.2} ms, max {:.2} ms (goal p50 <= 10, p99 <= 50){}",
        samples.last().copied().unwrap_or(0.0),
        if p50 <= 10.0 && p99 <= 50.0 { " ok" } else { " MISSED" }
    );
    println!("signatures verified:    {}/{n}", n - unverified);
    println!("peak RSS (VmHWM):       {:.1} MB", kib("VmHWM:") as f64 / 1024.0);
    println!("RESULT b {p50:.2} {p99:.2}");
    assert_eq!(unverified, 0);
}

fn main() {
    // The allocator settings of the server binary, applied as its `main` does: before any thread.
    reconbanker::support::memory::tune();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
    // The app's tasks and connections end with their runtime, then the database goes.
    runtime.shutdown_timeout(Duration::from_secs(5));
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(drop_created());
}

async fn run() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("a") => first_pass(false).await,
        Some("c") => first_pass(true).await,
        Some("b") => latency(args.get(2).and_then(|v| v.parse().ok()).unwrap_or(200)).await,
        _ => eprintln!("usage: reconcile_bench a | b N | c"),
    }
}
