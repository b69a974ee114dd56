//! The store contract: every method of [`Store`], with its documented behaviour, checked against
//! both adapters — SQLite always, PostgreSQL when `TEST_DATABASE_URL` names a server where the
//! user may `CREATE DATABASE` (`scripts/test.sh` starts a throwaway one).
//!
//! Coverage is enforced three ways: `COVERED` must list exactly the methods declared in
//! `pub trait Store` (parsed from `src/lib.rs`); every driver runs the checks through a recording
//! wrapper and fails unless each `COVERED` method was actually called; and the wrapper implements
//! the trait, so a new method does not even compile here until it is handled.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::Duration;
use reconbanker_store::*;
use uuid::Uuid;

/// Every `Store` method the contract checks. Must match the trait exactly.
const COVERED: &[&str] = &[
    "backend",
    "migrate",
    "ping",
    "close",
    "create_user",
    "user_by_email",
    "user_by_id",
    "session_user",
    "set_operation_mode",
    "grant_admin",
    "revoke_token",
    "purge_revoked_tokens",
    "list_banks",
    "bank_by_id",
    "create_bank",
    "upsert_bank",
    "create_account",
    "list_accounts",
    "account_for_user",
    "owned_account_ids",
    "delete_account",
    "account_config",
    "put_account_config",
    "create_api_key",
    "list_api_keys",
    "revoke_api_key",
    "api_key_by_prefix",
    "record_api_key_use",
    "create_assistance",
    "pending_assistance",
    "assistance_by_id",
    "bump_assistance_attempts",
    "close_assistance",
    "close_all_pending_assistance",
    "engine_accounts",
    "engine_account",
    "set_scrape_block",
    "insert_movements",
    "list_movements",
    "create_run",
    "finish_run",
    "list_runs",
    "close_open_runs",
    "acquire_lease",
    "release_lease",
    "record_events",
    "list_events",
    "purge_events",
    "last_event_seq",
    "claim_due_deliveries",
    "finish_delivery_attempt",
    "list_deliveries",
    "resend_delivery",
];

// ---------------------------------------------------------------------------------------------
// Drivers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sqlite_contract() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("contract.db").display());
    let store = reconbanker_store::connect(&url, 4).await.unwrap();
    run_contract(store, "sqlite").await;
}

#[tokio::test]
async fn postgres_contract() {
    use sqlx::{Connection, Executor};

    let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
        assert_ne!(
            std::env::var("REQUIRE_POSTGRES").as_deref(),
            Ok("1"),
            "REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set"
        );
        println!("postgres_contract: skipped (TEST_DATABASE_URL is not set)");
        return;
    };
    let db = format!("rbk_contract_{}", Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&base)
        .await
        .expect("connect to TEST_DATABASE_URL");
    admin
        .execute(format!("CREATE DATABASE {db}").as_str())
        .await
        .expect("CREATE DATABASE");
    println!("postgres_contract: running on fresh database {db}");

    let url = with_database(&base, &db);
    let outcome = tokio::spawn(async move {
        let store = reconbanker_store::connect(&url, 4).await.unwrap();
        run_contract(store, "postgres").await;
    })
    .await;

    // Drop the database whatever happened, then report the outcome.
    let dropped = admin
        .execute(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)").as_str())
        .await;
    if dropped.is_err() {
        // Servers before 13 lack `WITH (FORCE)`; the pool is closed by now anyway.
        admin
            .execute(format!("DROP DATABASE IF EXISTS {db}").as_str())
            .await
            .expect("DROP DATABASE");
    }
    admin.close().await.ok();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// `base` with its database (URL path) replaced by `db`, query string kept.
fn with_database(base: &str, db: &str) -> String {
    let (main, query) = match base.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (base, None),
    };
    let authority_start = main.find("://").map_or(0, |i| i + 3);
    let root = match main[authority_start..].find('/') {
        Some(i) => &main[..authority_start + i],
        None => main,
    };
    match query {
        Some(q) => format!("{root}/{db}?{q}"),
        None => format!("{root}/{db}"),
    }
}

#[test]
fn with_database_replaces_the_path() {
    assert_eq!(with_database("postgres://u@h:1/postgres", "x"), "postgres://u@h:1/x");
    assert_eq!(with_database("postgres://u@h:1", "x"), "postgres://u@h:1/x");
    assert_eq!(
        with_database("postgresql://u:p@h/db?sslmode=disable", "x"),
        "postgresql://u:p@h/x?sslmode=disable"
    );
}

async fn run_contract(inner: Arc<dyn Store>, backend: &str) {
    // Migrations are idempotent: the second run finds nothing to do.
    inner.migrate().await.unwrap();
    let store = Recording::new(inner);
    let s: &dyn Store = &store;

    check_backend_migrate_ping(s, backend).await;
    check_users(s).await;
    check_set_operation_mode(s).await;
    check_grant_admin(s).await;
    check_session_user_and_revoke_token(s).await;
    check_purge_revoked_tokens(s).await;
    check_banks(s).await;
    check_upsert_bank(s).await;
    check_accounts(s).await;
    check_list_accounts(s).await;
    check_owned_account_ids(s).await;
    check_account_config(s).await;
    check_delete_account(s).await;
    check_api_keys(s).await;
    check_revoke_api_key(s).await;
    check_record_api_key_use(s).await;
    check_assistance(s).await;
    check_close_all_pending_assistance(s).await;
    check_engine_accounts(s).await;
    check_set_scrape_block(s).await;
    check_insert_movements(s).await;
    check_list_movements(s).await;
    check_runs(s).await;
    check_close_open_runs(s).await;
    check_leases(s).await;
    check_assistance_events(s).await;
    check_run_events(s).await;
    check_record_events(s).await;
    check_list_events(s).await;
    check_purge_events(s).await;
    check_last_event_seq(s).await;
    check_claim_due_deliveries(s).await;
    check_concurrent_claims(s).await;
    check_finish_delivery_attempt(s).await;
    check_list_deliveries(s).await;
    check_resend_delivery(s).await;
    check_close(s).await;

    let called = store.called();
    let missing: Vec<&str> = COVERED.iter().copied().filter(|m| !called.contains(m)).collect();
    assert!(
        missing.is_empty(),
        "{backend}: the contract never called these Store methods: {missing:?}"
    );
    println!("{backend}: contract passed, {} methods exercised", called.len());
}

// ---------------------------------------------------------------------------------------------
// Coverage of the trait
// ---------------------------------------------------------------------------------------------

/// The names of the methods declared in `pub trait Store { … }`.
fn trait_methods(src: &str) -> Vec<String> {
    let start = src.find("pub trait Store").expect("`pub trait Store` in lib.rs");
    let body = &src[start..];
    let open = body.find('{').expect("trait body");
    let mut depth = 0usize;
    let mut end = body.len();
    for (i, c) in body[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    end = open + i;
                    break;
                }
            }
            _ => {}
        }
    }
    let mut names = Vec::new();
    for line in body[open + 1..end].lines() {
        let line = line.trim();
        if line.starts_with("//") {
            continue;
        }
        let mut words = line.split(|c: char| c.is_whitespace() || c == '(' || c == '<');
        while let Some(w) = words.next() {
            if w == "fn" {
                if let Some(name) = words.next() {
                    names.push(name.to_owned());
                }
                break;
            }
        }
    }
    names
}

#[test]
fn every_store_method_is_covered() {
    let declared = trait_methods(include_str!("../src/lib.rs"));
    assert!(declared.len() >= 30, "parsed too few trait methods: {declared:?}");
    let declared_set: BTreeSet<&str> = declared.iter().map(String::as_str).collect();
    assert_eq!(
        declared_set.len(),
        declared.len(),
        "duplicate trait method names: {declared:?}"
    );
    let covered: BTreeSet<&str> = COVERED.iter().copied().collect();
    assert_eq!(covered.len(), COVERED.len(), "duplicate names in COVERED");
    let uncovered: Vec<&str> = declared_set.difference(&covered).copied().collect();
    let stale: Vec<&str> = covered.difference(&declared_set).copied().collect();
    assert!(
        uncovered.is_empty() && stale.is_empty(),
        "Store methods without a contract check: {uncovered:?}; \
         COVERED names that are not Store methods: {stale:?} \
         ({} declared, {} covered)",
        declared.len(),
        COVERED.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

fn uniq(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::new_v4().simple())
}

fn ms(n: i64) -> Duration {
    Duration::milliseconds(n)
}

/// Whether `r` is a conflict on `on` (the same variant on both backends).
fn conflict<T: std::fmt::Debug>(r: StoreResult<T>, on: Constraint) -> bool {
    matches!(&r, Err(e) if e.is_conflict_on(on))
}

fn user_row() -> UserRow {
    UserRow {
        id: UserId::new(),
        email: format!("{}@example.test", uniq("user")),
        name: Some("Ada Lovelace".into()),
        password_hash: "$argon2id$v=19$fake".into(),
        is_admin: false,
        operation_mode: None,
        created_at: now(),
    }
}

async fn user(s: &dyn Store) -> UserRow {
    let u = user_row();
    s.create_user(&u).await.unwrap();
    u
}

fn bank_row() -> BankRow {
    BankRow {
        id: BankId::new(),
        code: uniq("bank"),
        name: "Test Bank".into(),
        login_url: Some("https://bank.example.test/login".into()),
        status: "active".into(),
        created_at: now(),
    }
}

async fn bank(s: &dyn Store) -> BankRow {
    let b = bank_row();
    s.create_bank(&b).await.unwrap();
    b
}

async fn account_at(s: &dyn Store, owner: UserId, bank: &BankRow, id: AccountId, at: Timestamp) -> AccountRow {
    s.create_account(&NewAccount {
        id,
        user_id: owner,
        bank_id: bank.id,
        name: uniq("acct"),
        created_at: at,
    })
    .await
    .unwrap()
}

async fn account(s: &dyn Store, owner: UserId, bank: &BankRow) -> AccountRow {
    account_at(s, owner, bank, AccountId::new(), now()).await
}

fn key_row(owner: UserId, created_at: Timestamp) -> ApiKeyRow {
    ApiKeyRow {
        id: ApiKeyId::new(),
        user_id: owner,
        name: uniq("key"),
        prefix: uniq("rbk"),
        secret_hash: Uuid::new_v4().as_bytes().to_vec(),
        scopes: vec!["accounts:read".into(), "transactions:read".into()],
        account_ids: None,
        created_at,
        last_used_at: None,
        expires_at: None,
        revoked_at: None,
    }
}

fn assistance_row(account: AccountId) -> AssistanceRow {
    let t = now();
    AssistanceRow {
        id: AssistanceRequestId::new(),
        account_id: account,
        kind: "otp".into(),
        descriptor: Descriptor {
            length: 6,
            kind: CodeKind::Numeric,
            purpose: Some("login".into()),
        },
        attempts: 0,
        status: AssistanceStatus::Pending,
        reason: None,
        created_at: t,
        updated_at: t,
        expires_at: t + Duration::minutes(5),
        closed_at: None,
    }
}

fn movement(external_id: &str, received_at: &str) -> NewMovement {
    NewMovement {
        external_id: external_id.into(),
        amount: "-12.34".into(),
        currency: "EUR".into(),
        name: Some("ACME Supplies".into()),
        description: format!("card payment {external_id}"),
        received_at: received_at.into(),
    }
}

/// The row a stored movement should read back as, but for the id (the store assigns it).
fn stored(account: AccountId, m: &NewMovement, read_at: Timestamp) -> MovementRow {
    MovementRow {
        id: MovementId(Uuid::nil()),
        account_id: account,
        external_id: m.external_id.clone(),
        amount: m.amount.clone(),
        currency: m.currency.clone(),
        name: m.name.clone(),
        description: m.description.clone(),
        received_at: m.received_at.clone(),
        read_at,
    }
}

/// Read rows with their store-assigned ids blanked, to compare against [`stored`].
fn without_ids(rows: &[MovementRow]) -> Vec<MovementRow> {
    rows.iter()
        .map(|m| MovementRow {
            id: MovementId(Uuid::nil()),
            ..m.clone()
        })
        .collect()
}

fn run_row(account: AccountId, started_at: Timestamp) -> RunRow {
    RunRow {
        id: RunId::new(),
        account_id: account,
        kind: "one-shot".into(),
        started_at,
        ended_at: None,
        outcome: "running".into(),
        failure_reason: None,
        movements_read: 0,
        new_movements: 0,
    }
}

/// An [`EventsFor`] that logs nothing.
fn no_events(_: &AssistanceRow) -> Vec<NewEvent> {
    Vec::new()
}

/// An event to log, with a `data` document of its own and no deliveries.
fn event(owner: UserId, account: AccountId, kind: &str, occurred_at: Timestamp) -> NewEvent {
    let id = Uuid::now_v7();
    NewEvent {
        id,
        user_id: owner,
        account_id: account,
        kind: kind.into(),
        data: format!(r#"{{"event":"{id}","kind":"{kind}"}}"#),
        occurred_at,
        deliveries: Vec::new(),
    }
}

/// A webhook delivery to queue with an event, due at `due`.
fn delivery(event_type: &str, due: Timestamp) -> NewDelivery {
    let id = DeliveryId::new();
    NewDelivery {
        id,
        event_type: event_type.into(),
        payload: format!(r#"{{"webhook":"{id}","type":"{event_type}","data":{{"n":1}}}}"#),
        request_id: None,
        next_attempt_at: due,
    }
}

/// `e` carrying these deliveries.
fn delivering(e: NewEvent, deliveries: &[&NewDelivery]) -> NewEvent {
    NewEvent {
        deliveries: deliveries.iter().map(|d| (*d).clone()).collect(),
        ..e
    }
}

/// The row an event reads back as once logged under `seq`.
fn logged_as(e: &NewEvent, seq: i64) -> EventRow {
    EventRow {
        seq,
        id: e.id,
        user_id: e.user_id,
        account_id: e.account_id,
        kind: e.kind.clone(),
        data: e.data.clone(),
        occurred_at: e.occurred_at,
    }
}

/// Asserts that `got` is `want` as logged, in order, with strictly increasing seqs above `after`.
fn assert_logged(got: &[EventRow], want: &[NewEvent], after: i64) {
    assert_eq!(got.len(), want.len(), "logged {got:?}, expected {want:?}");
    let mut prev = after;
    for (g, w) in got.iter().zip(want) {
        assert!(g.seq > prev, "seq {} must come after {prev}: {got:?}", g.seq);
        assert_eq!(g, &logged_as(w, g.seq));
        prev = g.seq;
    }
}

/// The highest seq in `log` (0 when empty).
fn last_seq(log: &[EventRow]) -> i64 {
    log.last().map_or(0, |e| e.seq)
}

/// The whole log of a user, oldest first.
async fn events_of(s: &dyn Store, user: UserId) -> Vec<EventRow> {
    s.list_events(user, None, 0, 10_000).await.unwrap()
}

/// The row a delivery queued with `e` reads back as before any attempt.
fn queued(e: &NewEvent, d: &NewDelivery) -> DeliveryRow {
    DeliveryRow {
        id: d.id,
        account_id: e.account_id,
        event_id: e.id,
        event_type: d.event_type.clone(),
        payload: d.payload.clone(),
        request_id: d.request_id,
        status: "pending".into(),
        attempts: 0,
        next_attempt_at: Some(d.next_attempt_at),
        last_attempt_at: None,
        last_status: None,
        last_error: None,
        created_at: e.occurred_at,
        delivered_at: None,
    }
}

/// [`queued`], claimed until `until`.
fn leased(e: &NewEvent, d: &NewDelivery, until: Timestamp) -> DeliveryRow {
    DeliveryRow {
        next_attempt_at: Some(until),
        ..queued(e, d)
    }
}

/// Deliveries in id order, to compare claims whatever order they come back in.
fn by_id(mut rows: Vec<DeliveryRow>) -> Vec<DeliveryRow> {
    rows.sort_by_key(|d| d.id);
    rows
}

/// A point far beyond anything the checks schedule.
fn far_future() -> Timestamp {
    now() + Duration::days(365 * 100)
}

/// Marks every delivery that earlier checks left claimable as `skipped`, so that a check's claims
/// are exact (claims are not scoped to a user).
async fn sweep_deliveries(s: &dyn Store) {
    let far = far_future();
    loop {
        let left = s.claim_due_deliveries(far, far, 1000).await.unwrap();
        if left.is_empty() {
            break;
        }
        for d in left {
            let skipped = DeliveryRow {
                status: "skipped".into(),
                next_attempt_at: None,
                ..d
            };
            assert!(s.finish_delivery_attempt(&skipped).await.unwrap());
        }
    }
}

/// An [`EventsFor`] that records each row it is called with and the events it returned for it:
/// an `assistance.<status>` event with a prompt delivery tied to the request, then an
/// `account.status` event without one, both at the row's `updated_at`.
struct Spy {
    owner: UserId,
    calls: Mutex<Vec<(AssistanceRow, Vec<NewEvent>)>>,
}

impl Spy {
    fn new(owner: UserId) -> Self {
        Self {
            owner,
            calls: Mutex::new(Vec::new()),
        }
    }

    fn events(&self, r: &AssistanceRow) -> Vec<NewEvent> {
        let at = r.updated_at;
        let prompt = NewEvent {
            data: format!(
                r#"{{"request_id":"{}","status":"{}","attempts":{}}}"#,
                r.id,
                r.status.as_str(),
                r.attempts
            ),
            deliveries: vec![NewDelivery {
                request_id: Some(r.id),
                ..delivery("assistance_required", at)
            }],
            ..event(
                self.owner,
                r.account_id,
                &format!("assistance.{}", r.status.as_str()),
                at,
            )
        };
        let out = vec![prompt, event(self.owner, r.account_id, "account.status", at)];
        self.calls.lock().unwrap().push((r.clone(), out.clone()));
        out
    }

    fn calls(&self) -> Vec<(AssistanceRow, Vec<NewEvent>)> {
        self.calls.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

async fn check_backend_migrate_ping(s: &dyn Store, backend: &str) {
    assert_eq!(s.backend(), backend);
    s.ping().await.unwrap();
    // Migrating an up-to-date database changes nothing and keeps the data.
    let u = user(s).await;
    s.migrate().await.unwrap();
    s.migrate().await.unwrap();
    assert_eq!(s.user_by_id(u.id).await.unwrap(), Some(u));
    s.ping().await.unwrap();
}

async fn check_users(s: &dyn Store) {
    let u = user(s).await;
    assert_eq!(s.user_by_email(&u.email).await.unwrap(), Some(u.clone()));
    assert_eq!(s.user_by_id(u.id).await.unwrap(), Some(u.clone()));

    // Optional fields round-trip as NULL; flags and modes as given.
    let bare = UserRow {
        name: None,
        is_admin: true,
        operation_mode: Some("manual".into()),
        ..user_row()
    };
    s.create_user(&bare).await.unwrap();
    assert_eq!(s.user_by_id(bare.id).await.unwrap(), Some(bare.clone()));
    assert_eq!(s.user_by_email(&bare.email).await.unwrap(), Some(bare));

    // The email is unique.
    let dup = UserRow {
        email: u.email.clone(),
        ..user_row()
    };
    let r = s.create_user(&dup).await;
    assert!(
        conflict(r, Constraint::UsersEmail),
        "duplicate email must be a Conflict"
    );
    assert_eq!(s.user_by_id(dup.id).await.unwrap(), None);
    assert_eq!(s.user_by_email(&u.email).await.unwrap(), Some(u));

    assert_eq!(
        s.user_by_email(&format!("{}@example.test", uniq("nobody")))
            .await
            .unwrap(),
        None
    );
    assert_eq!(s.user_by_id(UserId::new()).await.unwrap(), None);
}

async fn check_set_operation_mode(s: &dyn Store) {
    let u = user(s).await;
    let other = user(s).await;
    assert!(s.set_operation_mode(u.id, "automatic").await.unwrap());
    let got = s.user_by_id(u.id).await.unwrap().unwrap();
    assert_eq!(got.operation_mode.as_deref(), Some("automatic"));
    assert_eq!(
        got,
        UserRow {
            operation_mode: Some("automatic".into()),
            ..u.clone()
        }
    );
    assert!(s.set_operation_mode(u.id, "manual").await.unwrap());
    assert_eq!(
        s.user_by_id(u.id).await.unwrap().unwrap().operation_mode.as_deref(),
        Some("manual")
    );
    // Nobody else is touched; an unknown user is `false`.
    assert_eq!(s.user_by_id(other.id).await.unwrap(), Some(other));
    assert!(!s.set_operation_mode(UserId::new(), "manual").await.unwrap());
}

async fn check_grant_admin(s: &dyn Store) {
    let u = user(s).await;
    let other = user(s).await;
    assert!(s.grant_admin(&u.email).await.unwrap());
    assert_eq!(
        s.user_by_id(u.id).await.unwrap(),
        Some(UserRow {
            is_admin: true,
            ..u.clone()
        })
    );
    // Granting again still finds the user.
    assert!(s.grant_admin(&u.email).await.unwrap());
    assert!(s.user_by_id(u.id).await.unwrap().unwrap().is_admin);
    assert_eq!(s.user_by_id(other.id).await.unwrap(), Some(other));
    assert!(!s
        .grant_admin(&format!("{}@example.test", uniq("nobody")))
        .await
        .unwrap());
}

async fn check_session_user_and_revoke_token(s: &dyn Store) {
    let u = user(s).await;
    let (jti, other_jti) = (TokenId::new(), TokenId::new());
    assert_eq!(s.session_user(u.id, jti).await.unwrap(), Some(u.clone()));

    let expires = now() + Duration::hours(1);
    s.revoke_token(jti, u.id, expires).await.unwrap();
    // Idempotent.
    s.revoke_token(jti, u.id, expires).await.unwrap();
    assert_eq!(s.session_user(u.id, jti).await.unwrap(), None);
    assert_eq!(s.session_user(u.id, other_jti).await.unwrap(), Some(u.clone()));
    // An unknown user has no session, revoked or not.
    assert_eq!(s.session_user(UserId::new(), other_jti).await.unwrap(), None);
    // The user row itself is untouched.
    assert_eq!(s.user_by_id(u.id).await.unwrap(), Some(u));
}

async fn check_purge_revoked_tokens(s: &dyn Store) {
    let t = now();
    // Forget whatever earlier checks left expired, so the counts below are exact.
    s.purge_revoked_tokens(t).await.unwrap();

    let u = user(s).await;
    let (expired, live) = (TokenId::new(), TokenId::new());
    s.revoke_token(expired, u.id, t - Duration::seconds(1)).await.unwrap();
    s.revoke_token(live, u.id, t + Duration::hours(1)).await.unwrap();
    assert_eq!(s.session_user(u.id, expired).await.unwrap(), None);

    assert_eq!(s.purge_revoked_tokens(t).await.unwrap(), 1);
    // The expired revocation is gone (the token itself would be rejected as expired anyway);
    // the live one still holds.
    assert_eq!(s.session_user(u.id, expired).await.unwrap(), Some(u.clone()));
    assert_eq!(s.session_user(u.id, live).await.unwrap(), None);
    assert_eq!(s.purge_revoked_tokens(t).await.unwrap(), 0);
}

async fn check_banks(s: &dyn Store) {
    let b = bank(s).await;
    let plain = BankRow {
        login_url: None,
        status: "disabled".into(),
        ..bank_row()
    };
    s.create_bank(&plain).await.unwrap();
    assert_eq!(s.bank_by_id(b.id).await.unwrap(), Some(b.clone()));
    assert_eq!(s.bank_by_id(plain.id).await.unwrap(), Some(plain.clone()));
    assert_eq!(s.bank_by_id(BankId::new()).await.unwrap(), None);

    let dup = BankRow {
        code: b.code.clone(),
        name: "Impostor".into(),
        ..bank_row()
    };
    let r = s.create_bank(&dup).await;
    assert!(
        conflict(r, Constraint::BanksCode),
        "duplicate bank code must be a Conflict"
    );
    assert_eq!(s.bank_by_id(dup.id).await.unwrap(), None);
    assert_eq!(s.bank_by_id(b.id).await.unwrap(), Some(b.clone()));

    let all = s.list_banks().await.unwrap();
    assert!(
        all.contains(&b) && all.contains(&plain),
        "list_banks lists the created banks"
    );
    assert!(!all.iter().any(|x| x.id == dup.id));
    let codes: Vec<&str> = all.iter().map(|x| x.code.as_str()).collect();
    let mut sorted = codes.clone();
    sorted.sort_unstable();
    assert_eq!(codes, sorted, "list_banks is ordered by code");
}

async fn check_upsert_bank(s: &dyn Store) {
    // A new code inserts the row as given.
    let b = bank_row();
    assert_eq!(s.upsert_bank(&b).await.unwrap(), b);
    assert_eq!(s.bank_by_id(b.id).await.unwrap(), Some(b.clone()));

    // A known code updates name and login URL only, keeping id, status and creation time.
    let again = BankRow {
        id: BankId::new(),
        code: b.code.clone(),
        name: "Renamed Bank".into(),
        login_url: Some("https://new.example.test/".into()),
        status: "disabled".into(),
        created_at: b.created_at + Duration::days(1),
    };
    let expected = BankRow {
        name: again.name.clone(),
        login_url: again.login_url.clone(),
        ..b.clone()
    };
    assert_eq!(s.upsert_bank(&again).await.unwrap(), expected);
    assert_eq!(s.bank_by_id(b.id).await.unwrap(), Some(expected.clone()));
    assert_eq!(s.bank_by_id(again.id).await.unwrap(), None);

    // … including clearing the login URL.
    let cleared = BankRow {
        login_url: None,
        ..again
    };
    let got = s.upsert_bank(&cleared).await.unwrap();
    assert_eq!(
        got,
        BankRow {
            login_url: None,
            ..expected
        }
    );
    assert_eq!(
        s.list_banks()
            .await
            .unwrap()
            .iter()
            .filter(|x| x.code == b.code)
            .count(),
        1
    );
}

async fn check_accounts(s: &dyn Store) {
    let (owner, stranger) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let new = NewAccount {
        id: AccountId::new(),
        user_id: owner.id,
        bank_id: b.id,
        name: "Checking".into(),
        created_at: now(),
    };
    let a = s.create_account(&new).await.unwrap();
    assert_eq!(
        a,
        AccountRow {
            id: new.id,
            user_id: owner.id,
            bank_id: b.id,
            bank_code: b.code.clone(),
            name: "Checking".into(),
            status: "active".into(),
            scrape_blocked_at: None,
            scrape_blocked_reason: None,
            created_at: new.created_at,
        }
    );
    assert_eq!(s.account_for_user(owner.id, a.id).await.unwrap(), Some(a.clone()));
    // Tenant scoping.
    assert_eq!(s.account_for_user(stranger.id, a.id).await.unwrap(), None);
    assert_eq!(s.account_for_user(owner.id, AccountId::new()).await.unwrap(), None);
    assert!(s.list_accounts(stranger.id, 100, 0).await.unwrap().is_empty());

    // The same id twice is a conflict; an unknown bank or owner is refused (foreign keys).
    let r = s
        .create_account(&NewAccount {
            name: "Again".into(),
            ..new.clone()
        })
        .await;
    assert!(
        conflict(r, Constraint::Other("accounts_pkey".into())),
        "duplicate account id must be a Conflict"
    );
    let r = s
        .create_account(&NewAccount {
            id: AccountId::new(),
            bank_id: BankId::new(),
            ..new.clone()
        })
        .await;
    assert!(
        matches!(r, Err(StoreError::Database(_))),
        "unknown bank must be refused: {r:?}"
    );
    let r = s
        .create_account(&NewAccount {
            id: AccountId::new(),
            user_id: UserId::new(),
            ..new.clone()
        })
        .await;
    assert!(
        matches!(r, Err(StoreError::Database(_))),
        "unknown user must be refused: {r:?}"
    );
    assert_eq!(s.list_accounts(owner.id, 100, 0).await.unwrap(), vec![a]);
}

async fn check_list_accounts(s: &dyn Store) {
    let (owner, stranger) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let t = now();
    // Inserted out of order; two share a timestamp and are ordered by id.
    let lo = AccountId::new();
    let hi = AccountId(Uuid::from_u128(lo.0.as_u128() + 1));
    let a3 = account_at(s, owner.id, &b, AccountId::new(), t + ms(30)).await;
    let a2_hi = account_at(s, owner.id, &b, hi, t + ms(20)).await;
    let a1 = account_at(s, owner.id, &b, AccountId::new(), t + ms(10)).await;
    let a2_lo = account_at(s, owner.id, &b, lo, t + ms(20)).await;
    let foreign = account_at(s, stranger.id, &b, AccountId::new(), t + ms(15)).await;

    let all = s.list_accounts(owner.id, 100, 0).await.unwrap();
    assert_eq!(all, vec![a1.clone(), a2_lo.clone(), a2_hi.clone(), a3.clone()]);
    assert_eq!(s.list_accounts(owner.id, 2, 0).await.unwrap(), vec![a1, a2_lo]);
    assert_eq!(
        s.list_accounts(owner.id, 2, 2).await.unwrap(),
        vec![a2_hi.clone(), a3.clone()]
    );
    assert_eq!(s.list_accounts(owner.id, 1, 2).await.unwrap(), vec![a2_hi]);
    assert_eq!(s.list_accounts(owner.id, 10, 3).await.unwrap(), vec![a3]);
    assert!(s.list_accounts(owner.id, 10, 4).await.unwrap().is_empty());
    assert!(s.list_accounts(owner.id, 0, 0).await.unwrap().is_empty());
    assert_eq!(s.list_accounts(stranger.id, 100, 0).await.unwrap(), vec![foreign]);
    assert!(s.list_accounts(UserId::new(), 100, 0).await.unwrap().is_empty());
}

async fn check_owned_account_ids(s: &dyn Store) {
    let (owner, stranger) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let a1 = account(s, owner.id, &b).await;
    let a2 = account(s, owner.id, &b).await;
    let a3 = account(s, owner.id, &b).await;
    let foreign = account(s, stranger.id, &b).await;

    let asked = [a2.id, foreign.id, AccountId::new(), a1.id];
    let mut got = s.owned_account_ids(owner.id, &asked).await.unwrap();
    got.sort();
    let mut want = vec![a1.id, a2.id];
    want.sort();
    assert_eq!(got, want, "only the owned subset, never a3 (not asked) nor foreign ids");
    assert!(!got.contains(&a3.id));

    assert!(s.owned_account_ids(owner.id, &[]).await.unwrap().is_empty());
    assert!(s
        .owned_account_ids(stranger.id, &[a1.id, a2.id])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.owned_account_ids(stranger.id, &asked).await.unwrap(),
        vec![foreign.id]
    );
    assert!(s.owned_account_ids(UserId::new(), &asked).await.unwrap().is_empty());
}

async fn check_account_config(s: &dyn Store) {
    let (owner, stranger) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let a = account(s, owner.id, &b).await;
    assert_eq!(s.account_config(owner.id, a.id).await.unwrap(), None);

    let first = AccountConfigRow {
        account_id: a.id,
        settings: r#"{"schedule":"hourly"}"#.into(),
        secrets: Some(vec![0, 1, 2, 255, 254]),
        updated_at: now(),
    };
    assert!(s.put_account_config(owner.id, &first).await.unwrap());
    assert_eq!(s.account_config(owner.id, a.id).await.unwrap(), Some(first.clone()));
    assert_eq!(s.account_config(stranger.id, a.id).await.unwrap(), None);

    // Replacing overwrites every field, including clearing the secrets.
    let second = AccountConfigRow {
        account_id: a.id,
        settings: r#"{"schedule":"daily"}"#.into(),
        secrets: None,
        updated_at: first.updated_at + ms(1500),
    };
    assert!(s.put_account_config(owner.id, &second).await.unwrap());
    assert_eq!(s.account_config(owner.id, a.id).await.unwrap(), Some(second.clone()));

    // A foreign or unknown account is refused and nothing changes.
    let hostile = AccountConfigRow {
        settings: r#"{"schedule":"never"}"#.into(),
        secrets: Some(vec![9]),
        ..second.clone()
    };
    assert!(!s.put_account_config(stranger.id, &hostile).await.unwrap());
    assert_eq!(s.account_config(owner.id, a.id).await.unwrap(), Some(second));
    let ghost = AccountConfigRow {
        account_id: AccountId::new(),
        ..first.clone()
    };
    assert!(!s.put_account_config(owner.id, &ghost).await.unwrap());
    assert_eq!(s.account_config(owner.id, ghost.account_id).await.unwrap(), None);

    // A stranger's own account with no config yet: still nothing for the owner of `a`.
    let theirs = account(s, stranger.id, &b).await;
    let cross = AccountConfigRow {
        account_id: theirs.id,
        ..first.clone()
    };
    assert!(!s.put_account_config(owner.id, &cross).await.unwrap());
    assert_eq!(s.account_config(stranger.id, theirs.id).await.unwrap(), None);
}

async fn check_delete_account(s: &dyn Store) {
    let (owner, stranger) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let a = account(s, owner.id, &b).await;
    let kept = account(s, owner.id, &b).await;

    let config = AccountConfigRow {
        account_id: a.id,
        settings: "{}".into(),
        secrets: Some(vec![1, 2, 3]),
        updated_at: now(),
    };
    assert!(s.put_account_config(owner.id, &config).await.unwrap());
    let open = assistance_row(a.id);
    s.create_assistance(&open, &[]).await.unwrap();
    let closed = AssistanceRow {
        status: AssistanceStatus::Cancelled,
        closed_at: Some(now()),
        ..assistance_row(a.id)
    };
    s.create_assistance(&closed, &[]).await.unwrap();
    let key = ApiKeyRow {
        account_ids: Some(vec![a.id, kept.id]),
        ..key_row(owner.id, now())
    };
    s.create_api_key(&key).await.unwrap();

    // Not the stranger's: refused, and everything is still there.
    assert!(!s.delete_account(stranger.id, a.id).await.unwrap());
    assert_eq!(s.account_for_user(owner.id, a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(s.account_config(owner.id, a.id).await.unwrap(), Some(config));
    assert_eq!(s.pending_assistance(a.id).await.unwrap(), Some(open.clone()));

    assert!(s.delete_account(owner.id, a.id).await.unwrap());
    assert_eq!(s.account_for_user(owner.id, a.id).await.unwrap(), None);
    assert!(!s.delete_account(owner.id, a.id).await.unwrap(), "already deleted");
    assert!(!s.delete_account(owner.id, AccountId::new()).await.unwrap());
    assert_eq!(s.list_accounts(owner.id, 100, 0).await.unwrap(), vec![kept.clone()]);

    // Assistance requests went with it.
    assert_eq!(s.assistance_by_id(open.id).await.unwrap(), None);
    assert_eq!(s.assistance_by_id(closed.id).await.unwrap(), None);
    assert_eq!(s.pending_assistance(a.id).await.unwrap(), None);
    // An API key's restriction list is the key's own data: untouched.
    assert_eq!(s.api_key_by_prefix(&key.prefix).await.unwrap(), Some(key));

    // The config went too: an account re-created under the same id starts without one.
    let reborn = account_at(s, owner.id, &b, a.id, now()).await;
    assert_eq!(s.account_config(owner.id, reborn.id).await.unwrap(), None);
    assert_eq!(s.pending_assistance(reborn.id).await.unwrap(), None);
}

async fn check_api_keys(s: &dyn Store) {
    let (owner, stranger) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let (a1, a2) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let t = now();

    let k1 = key_row(owner.id, t);
    let k2 = ApiKeyRow {
        account_ids: Some(vec![a1.id, a2.id]),
        expires_at: Some(t + Duration::days(30)),
        scopes: vec![],
        ..key_row(owner.id, t + ms(10))
    };
    let k3 = ApiKeyRow {
        account_ids: Some(vec![]),
        last_used_at: Some(t + ms(25)),
        revoked_at: Some(t + ms(30)),
        ..key_row(owner.id, t + ms(20))
    };
    // Same creation time as k3 with a smaller id: sorts after it (id descending).
    let mut k4 = key_row(owner.id, t + ms(20));
    k4.id = ApiKeyId(Uuid::from_u128(k3.id.0.as_u128() - 1));
    let theirs = key_row(stranger.id, t + ms(5));
    for k in [&k3, &k1, &k4, &theirs, &k2] {
        s.create_api_key(k).await.unwrap();
    }

    // Round trips, including `account_ids`: None (all accounts) vs Some(list), even empty.
    for k in [&k1, &k2, &k3, &k4, &theirs] {
        assert_eq!(s.api_key_by_prefix(&k.prefix).await.unwrap().as_ref(), Some(k));
    }
    assert_eq!(s.api_key_by_prefix(&uniq("rbk")).await.unwrap(), None);

    // Newest first, tenant-scoped, paged.
    let all = s.list_api_keys(owner.id, 100, 0).await.unwrap();
    assert_eq!(all, vec![k3.clone(), k4.clone(), k2.clone(), k1.clone()]);
    assert_eq!(
        s.list_api_keys(owner.id, 2, 0).await.unwrap(),
        vec![k3.clone(), k4.clone()]
    );
    assert_eq!(
        s.list_api_keys(owner.id, 2, 2).await.unwrap(),
        vec![k2.clone(), k1.clone()]
    );
    assert_eq!(s.list_api_keys(owner.id, 1, 3).await.unwrap(), vec![k1.clone()]);
    assert!(s.list_api_keys(owner.id, 10, 4).await.unwrap().is_empty());
    assert_eq!(s.list_api_keys(stranger.id, 100, 0).await.unwrap(), vec![theirs]);
    assert!(s.list_api_keys(UserId::new(), 100, 0).await.unwrap().is_empty());

    // The prefix is unique.
    let dup = ApiKeyRow {
        prefix: k1.prefix.clone(),
        ..key_row(owner.id, now())
    };
    let r = s.create_api_key(&dup).await;
    assert!(
        conflict(r, Constraint::ApiKeysPrefix),
        "duplicate prefix must be a Conflict"
    );
    assert_eq!(s.api_key_by_prefix(&k1.prefix).await.unwrap(), Some(k1));
    assert_eq!(s.list_api_keys(owner.id, 100, 0).await.unwrap().len(), 4);
}

async fn check_revoke_api_key(s: &dyn Store) {
    let (owner, stranger) = (user(s).await, user(s).await);
    let k = key_row(owner.id, now());
    s.create_api_key(&k).await.unwrap();
    let other = key_row(owner.id, now());
    s.create_api_key(&other).await.unwrap();
    let t = now() + ms(5);

    // A stranger cannot revoke it.
    assert_eq!(s.revoke_api_key(stranger.id, k.id, t).await.unwrap(), None);
    assert_eq!(s.api_key_by_prefix(&k.prefix).await.unwrap(), Some(k.clone()));

    let revoked = ApiKeyRow {
        revoked_at: Some(t),
        ..k.clone()
    };
    assert_eq!(
        s.revoke_api_key(owner.id, k.id, t).await.unwrap(),
        Some(revoked.clone())
    );
    // Already revoked: None, and the first revocation time stays.
    assert_eq!(s.revoke_api_key(owner.id, k.id, t + ms(1000)).await.unwrap(), None);
    assert_eq!(s.api_key_by_prefix(&k.prefix).await.unwrap(), Some(revoked));
    assert_eq!(s.revoke_api_key(owner.id, ApiKeyId::new(), t).await.unwrap(), None);
    // The other key is live still.
    assert_eq!(s.api_key_by_prefix(&other.prefix).await.unwrap(), Some(other));
}

async fn check_record_api_key_use(s: &dyn Store) {
    let owner = user(s).await;
    let (k1, k2) = (key_row(owner.id, now()), key_row(owner.id, now()));
    s.create_api_key(&k1).await.unwrap();
    s.create_api_key(&k2).await.unwrap();
    let t = now() + Duration::seconds(10);
    let last_used = |prefix: String| async move { s.api_key_by_prefix(&prefix).await.unwrap().unwrap().last_used_at };

    s.record_api_key_use(&[]).await.unwrap();
    assert_eq!(last_used(k1.prefix.clone()).await, None);

    s.record_api_key_use(&[(k1.id, t)]).await.unwrap();
    assert_eq!(last_used(k1.prefix.clone()).await, Some(t));
    assert_eq!(last_used(k2.prefix.clone()).await, None);

    // Never backwards.
    s.record_api_key_use(&[(k1.id, t - Duration::seconds(5))])
        .await
        .unwrap();
    assert_eq!(last_used(k1.prefix.clone()).await, Some(t));

    // A batch: several keys, the same key twice (the latest wins whatever the order), unknown ids
    // ignored.
    s.record_api_key_use(&[
        (k1.id, t + ms(300)),
        (k2.id, t + ms(100)),
        (ApiKeyId::new(), t),
        (k1.id, t + ms(200)),
    ])
    .await
    .unwrap();
    assert_eq!(last_used(k1.prefix.clone()).await, Some(t + ms(300)));
    assert_eq!(last_used(k2.prefix.clone()).await, Some(t + ms(100)));

    // Nothing else on the row changes.
    let got = s.api_key_by_prefix(&k1.prefix).await.unwrap().unwrap();
    assert_eq!(
        got,
        ApiKeyRow {
            last_used_at: Some(t + ms(300)),
            ..k1
        }
    );
}

async fn check_assistance(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let (a, other) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);

    assert_eq!(s.pending_assistance(a.id).await.unwrap(), None);
    let first = AssistanceRow {
        descriptor: Descriptor {
            length: 8,
            kind: CodeKind::Alphanumeric,
            purpose: None,
        },
        ..assistance_row(a.id)
    };
    assert_eq!(s.create_assistance(&first, &[]).await.unwrap(), vec![]);
    assert_eq!(s.pending_assistance(a.id).await.unwrap(), Some(first.clone()));
    assert_eq!(s.assistance_by_id(first.id).await.unwrap(), Some(first.clone()));
    assert_eq!(s.assistance_by_id(AssistanceRequestId::new()).await.unwrap(), None);

    // One pending request per account (partial unique index) …
    let second = assistance_row(a.id);
    let r = s.create_assistance(&second, &[]).await;
    assert!(
        conflict(r, Constraint::AssistancePendingPerAccount),
        "a second pending request for the account must be a Conflict"
    );
    assert_eq!(s.assistance_by_id(second.id).await.unwrap(), None);
    // … but closed ones may coexist, and other accounts are independent.
    let old = AssistanceRow {
        status: AssistanceStatus::Expired,
        reason: Some("timeout".into()),
        closed_at: Some(now()),
        ..assistance_row(a.id)
    };
    s.create_assistance(&old, &[]).await.unwrap();
    assert_eq!(s.assistance_by_id(old.id).await.unwrap(), Some(old.clone()));
    let elsewhere = assistance_row(other.id);
    s.create_assistance(&elsewhere, &[]).await.unwrap();
    assert_eq!(s.pending_assistance(a.id).await.unwrap(), Some(first.clone()));
    assert_eq!(s.pending_assistance(other.id).await.unwrap(), Some(elsewhere.clone()));

    // Attempts.
    let t1 = now() + ms(100);
    let bumped = AssistanceRow {
        attempts: 1,
        updated_at: t1,
        ..first.clone()
    };
    assert_eq!(
        s.bump_assistance_attempts(first.id, t1, &no_events).await.unwrap(),
        Some((bumped.clone(), vec![]))
    );
    let t2 = t1 + ms(100);
    let bumped2 = AssistanceRow {
        attempts: 2,
        updated_at: t2,
        ..first.clone()
    };
    assert_eq!(
        s.bump_assistance_attempts(first.id, t2, &no_events).await.unwrap(),
        Some((bumped2.clone(), vec![]))
    );
    assert_eq!(s.assistance_by_id(first.id).await.unwrap(), Some(bumped2.clone()));
    assert_eq!(
        s.bump_assistance_attempts(old.id, t2, &no_events).await.unwrap(),
        None,
        "not pending"
    );
    assert_eq!(
        s.bump_assistance_attempts(AssistanceRequestId::new(), t2, &no_events)
            .await
            .unwrap(),
        None
    );
    assert_eq!(s.pending_assistance(other.id).await.unwrap(), Some(elsewhere.clone()));

    // Closing: once.
    let t3 = t2 + ms(100);
    let closed = AssistanceRow {
        status: AssistanceStatus::Fulfilled,
        reason: Some("code accepted".into()),
        updated_at: t3,
        closed_at: Some(t3),
        ..bumped2
    };
    let got = s
        .close_assistance(
            first.id,
            AssistanceStatus::Fulfilled,
            Some("code accepted"),
            t3,
            &no_events,
        )
        .await
        .unwrap();
    assert_eq!(got, Some((closed.clone(), vec![])));
    let again = s
        .close_assistance(first.id, AssistanceStatus::Cancelled, None, t3 + ms(1), &no_events)
        .await
        .unwrap();
    assert_eq!(again, None, "closing twice");
    assert_eq!(s.assistance_by_id(first.id).await.unwrap(), Some(closed.clone()));
    assert_eq!(
        s.bump_assistance_attempts(first.id, t3 + ms(2), &no_events)
            .await
            .unwrap(),
        None,
        "closed"
    );
    assert_eq!(s.assistance_by_id(first.id).await.unwrap(), Some(closed));
    assert_eq!(s.pending_assistance(a.id).await.unwrap(), None);
    let r = s
        .close_assistance(
            AssistanceRequestId::new(),
            AssistanceStatus::Cancelled,
            None,
            t3,
            &no_events,
        )
        .await
        .unwrap();
    assert_eq!(r, None);

    // A reason may be absent.
    let t4 = t3 + ms(100);
    let (cancelled, logged) = s
        .close_assistance(elsewhere.id, AssistanceStatus::Cancelled, None, t4, &no_events)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(logged, vec![]);
    assert_eq!(
        cancelled,
        AssistanceRow {
            status: AssistanceStatus::Cancelled,
            reason: None,
            updated_at: t4,
            closed_at: Some(t4),
            ..elsewhere
        }
    );

    // After closing, the account may have a new pending request.
    let next = assistance_row(a.id);
    s.create_assistance(&next, &[]).await.unwrap();
    assert_eq!(s.pending_assistance(a.id).await.unwrap(), Some(next));
    assert_eq!(s.assistance_by_id(old.id).await.unwrap(), Some(old));
}

async fn check_close_all_pending_assistance(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let accounts = [
        account(s, owner.id, &b).await,
        account(s, owner.id, &b).await,
        account(s, owner.id, &b).await,
    ];
    let p0 = assistance_row(accounts[0].id);
    let p1 = assistance_row(accounts[1].id);
    let done = AssistanceRow {
        status: AssistanceStatus::Fulfilled,
        reason: Some("ok".into()),
        closed_at: Some(now()),
        ..assistance_row(accounts[2].id)
    };
    for r in [&p0, &p1, &done] {
        s.create_assistance(r, &[]).await.unwrap();
    }

    let t = now() + ms(50);
    let closed = s
        .close_all_pending_assistance(AssistanceStatus::Expired, "server restarted", t)
        .await
        .unwrap();
    // Earlier checks may have left pending requests; they are closed too, the same way.
    for r in &closed {
        assert_eq!(r.status, AssistanceStatus::Expired);
        assert_eq!(r.reason.as_deref(), Some("server restarted"));
        assert_eq!(r.closed_at, Some(t));
        assert_eq!(r.updated_at, t);
        assert_eq!(s.assistance_by_id(r.id).await.unwrap().as_ref(), Some(r));
        assert_eq!(s.pending_assistance(r.account_id).await.unwrap(), None);
    }
    for p in [&p0, &p1] {
        let want = AssistanceRow {
            status: AssistanceStatus::Expired,
            reason: Some("server restarted".into()),
            updated_at: t,
            closed_at: Some(t),
            ..p.clone()
        };
        assert_eq!(closed.iter().filter(|r| r.id == p.id).collect::<Vec<_>>(), vec![&want]);
        assert_eq!(s.pending_assistance(p.account_id).await.unwrap(), None);
    }
    assert!(
        !closed.iter().any(|r| r.id == done.id),
        "already-closed requests are left alone"
    );
    assert_eq!(s.assistance_by_id(done.id).await.unwrap(), Some(done));

    // Nothing pending any more.
    let none = s
        .close_all_pending_assistance(AssistanceStatus::Cancelled, "again", t + ms(1))
        .await
        .unwrap();
    assert!(none.is_empty(), "second sweep found {none:?}");
}

async fn check_engine_accounts(s: &dyn Store) {
    let (owner, other) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let t = now();
    // Created out of order, across two users; two share a timestamp and are ordered by id.
    let lo = AccountId::new();
    let hi = AccountId(Uuid::from_u128(lo.0.as_u128() + 1));
    let late = account_at(s, owner.id, &b, AccountId::new(), t + ms(30)).await;
    let tie_hi = account_at(s, other.id, &b, hi, t + ms(20)).await;
    let early = account_at(s, other.id, &b, AccountId::new(), t + ms(10)).await;
    let tie_lo = account_at(s, owner.id, &b, lo, t + ms(20)).await;

    let with_secrets = AccountConfigRow {
        account_id: late.id,
        settings: r#"{"schedule":"hourly"}"#.into(),
        secrets: Some(vec![7, 0, 255]),
        updated_at: t + ms(40),
    };
    let without_secrets = AccountConfigRow {
        account_id: tie_hi.id,
        settings: "{}".into(),
        secrets: None,
        updated_at: t + ms(50),
    };
    assert!(s.put_account_config(owner.id, &with_secrets).await.unwrap());
    assert!(s.put_account_config(other.id, &without_secrets).await.unwrap());

    let want = vec![
        EngineAccount {
            account: early.clone(),
            config: None,
        },
        EngineAccount {
            account: tie_lo.clone(),
            config: None,
        },
        EngineAccount {
            account: tie_hi.clone(),
            config: Some(without_secrets.clone()),
        },
        EngineAccount {
            account: late.clone(),
            config: Some(with_secrets.clone()),
        },
    ];
    let mine: BTreeSet<AccountId> = want.iter().map(|e| e.account.id).collect();
    let all = s.engine_accounts().await.unwrap();
    assert_eq!(
        all.iter()
            .filter(|e| mine.contains(&e.account.id))
            .cloned()
            .collect::<Vec<_>>(),
        want,
        "every user's accounts, with their configs, in creation order"
    );
    // Earlier checks' accounts are there too, each once, the whole list ordered by creation
    // time, then id.
    let keys: Vec<(Timestamp, AccountId)> = all.iter().map(|e| (e.account.created_at, e.account.id)).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        keys, sorted,
        "engine_accounts is ordered by creation, each account once"
    );
    for u in [&owner, &other] {
        for a in s.list_accounts(u.id, 100, 0).await.unwrap() {
            let config = s.account_config(u.id, a.id).await.unwrap();
            let want = EngineAccount { account: a, config };
            assert_eq!(
                all.iter()
                    .filter(|e| e.account.id == want.account.id)
                    .collect::<Vec<_>>(),
                vec![&want]
            );
        }
    }

    // One by one.
    for e in &want {
        assert_eq!(s.engine_account(e.account.id).await.unwrap().as_ref(), Some(e));
    }
    assert_eq!(s.engine_account(AccountId::new()).await.unwrap(), None);

    // A replaced config reads back replaced (secrets cleared).
    let replaced = AccountConfigRow {
        settings: r#"{"schedule":"daily"}"#.into(),
        secrets: None,
        updated_at: t + ms(60),
        ..with_secrets
    };
    assert!(s.put_account_config(owner.id, &replaced).await.unwrap());
    assert_eq!(
        s.engine_account(late.id).await.unwrap(),
        Some(EngineAccount {
            account: late,
            config: Some(replaced),
        })
    );

    // A deleted account is gone from both.
    assert!(s.delete_account(other.id, tie_hi.id).await.unwrap());
    assert_eq!(s.engine_account(tie_hi.id).await.unwrap(), None);
    let after = s.engine_accounts().await.unwrap();
    assert!(!after.iter().any(|e| e.account.id == tie_hi.id));
    assert!(after.iter().any(|e| e.account.id == early.id));
}

async fn check_set_scrape_block(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let (a, other) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let t = now() + ms(7);

    assert!(s
        .set_scrape_block(a.id, Some((t, "credentials rejected")))
        .await
        .unwrap());
    let blocked = AccountRow {
        scrape_blocked_at: Some(t),
        scrape_blocked_reason: Some("credentials rejected".into()),
        ..a.clone()
    };
    assert_eq!(s.account_for_user(owner.id, a.id).await.unwrap(), Some(blocked.clone()));
    assert_eq!(
        s.engine_account(a.id).await.unwrap().map(|e| e.account),
        Some(blocked.clone())
    );
    // Nothing else is touched.
    assert_eq!(
        s.account_for_user(owner.id, other.id).await.unwrap(),
        Some(other.clone())
    );

    // Blocking again replaces both fields.
    let t2 = t + Duration::seconds(90) + ms(1);
    assert!(s
        .set_scrape_block(a.id, Some((t2, "account locked by the bank")))
        .await
        .unwrap());
    assert_eq!(
        s.account_for_user(owner.id, a.id).await.unwrap(),
        Some(AccountRow {
            scrape_blocked_at: Some(t2),
            scrape_blocked_reason: Some("account locked by the bank".into()),
            ..a.clone()
        })
    );

    // Clearing empties both; clearing an unblocked account still finds it.
    assert!(s.set_scrape_block(a.id, None).await.unwrap());
    assert_eq!(s.account_for_user(owner.id, a.id).await.unwrap(), Some(a.clone()));
    assert!(s.set_scrape_block(a.id, None).await.unwrap());
    assert_eq!(
        s.list_accounts(owner.id, 100, 0).await.unwrap(),
        vec![a.clone(), other.clone()]
    );

    // An unknown or deleted account is `false`.
    assert!(!s.set_scrape_block(AccountId::new(), Some((t, "nobody"))).await.unwrap());
    assert!(!s.set_scrape_block(AccountId::new(), None).await.unwrap());
    assert!(s.delete_account(owner.id, other.id).await.unwrap());
    assert!(!s.set_scrape_block(other.id, Some((t, "gone"))).await.unwrap());
    assert_eq!(s.account_for_user(owner.id, a.id).await.unwrap(), Some(a));
}

async fn check_insert_movements(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let (a, other) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let t1 = now();
    let m1 = movement("tx-1", "2026-03-01T09:00:00Z");
    let m2 = movement("tx-2", "2026-03-02T08:00:00Z");

    assert_eq!(s.insert_movements(a.id, &[], t1).await.unwrap(), 0);
    assert_eq!(
        s.insert_movements(a.id, &[m1.clone(), m2.clone()], t1).await.unwrap(),
        2
    );
    let first = s.list_movements(owner.id, a.id, 100, 0).await.unwrap();
    assert_eq!(without_ids(&first), vec![stored(a.id, &m2, t1), stored(a.id, &m1, t1)]);
    assert_ne!(first[0].id, first[1].id);

    // Read again (even with other fields changed): not new, not duplicated; the first read
    // stays as it was, same ids.
    let t2 = t1 + Duration::seconds(60);
    let m1_again = NewMovement {
        amount: "-99.99".into(),
        description: "changed".into(),
        ..m1.clone()
    };
    assert_eq!(s.insert_movements(a.id, &[m1_again, m2.clone()], t2).await.unwrap(), 0);
    assert_eq!(s.list_movements(owner.id, a.id, 100, 0).await.unwrap(), first);

    // A batch mixing known and new movements counts only the new ones; a movement twice in one
    // batch counts once.
    let m3 = movement("tx-3", "2026-03-03T00:00:00Z");
    assert_eq!(
        s.insert_movements(a.id, &[m2.clone(), m3.clone(), m3.clone(), m1.clone()], t2)
            .await
            .unwrap(),
        1
    );
    let listed = s.list_movements(owner.id, a.id, 100, 0).await.unwrap();
    assert_eq!(
        without_ids(&listed),
        vec![stored(a.id, &m3, t2), stored(a.id, &m2, t1), stored(a.id, &m1, t1)]
    );
    assert_eq!(&listed[1..], &first[..]);

    // The same external id on another account is another movement.
    let bare = NewMovement {
        name: None,
        ..movement("tx-9", "2026-01-01T00:00:00Z")
    };
    assert_eq!(
        s.insert_movements(other.id, &[m1.clone(), bare.clone()], t2)
            .await
            .unwrap(),
        2
    );
    let elsewhere = s.list_movements(owner.id, other.id, 100, 0).await.unwrap();
    assert_eq!(
        without_ids(&elsewhere),
        vec![stored(other.id, &m1, t2), stored(other.id, &bare, t2)]
    );
    assert!(!listed.iter().any(|m| m.id == elsewhere[0].id));
    assert_eq!(s.list_movements(owner.id, a.id, 100, 0).await.unwrap(), listed);

    // An unknown account is refused (foreign key).
    let r = s
        .insert_movements(AccountId::new(), std::slice::from_ref(&m1), t2)
        .await;
    assert!(
        matches!(r, Err(StoreError::Database(_))),
        "unknown account must be refused: {r:?}"
    );

    // Deleting the account deletes its movements: re-created under the same id it has none, and
    // the same external ids are new again.
    assert!(s.delete_account(owner.id, a.id).await.unwrap());
    assert!(s.list_movements(owner.id, a.id, 100, 0).await.unwrap().is_empty());
    let reborn = account_at(s, owner.id, &b, a.id, now()).await;
    assert!(s.list_movements(owner.id, reborn.id, 100, 0).await.unwrap().is_empty());
    assert_eq!(
        s.insert_movements(reborn.id, &[m1.clone(), m2.clone(), m3.clone()], t2)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        without_ids(&s.list_movements(owner.id, reborn.id, 100, 0).await.unwrap()),
        vec![stored(a.id, &m3, t2), stored(a.id, &m2, t2), stored(a.id, &m1, t2)]
    );
    assert_eq!(s.list_movements(owner.id, other.id, 100, 0).await.unwrap(), elsewhere);
}

async fn check_list_movements(s: &dyn Store) {
    let (owner, stranger) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let a = account(s, owner.id, &b).await;
    let foreign = account(s, stranger.id, &b).await;
    let t1 = now();
    let t2 = t1 + Duration::seconds(30);

    // Inserted out of order over two reads: `b` and `c` share the bank's date (then external id,
    // descending); `e`, read last, is the oldest by the bank's date.
    let ma = movement("ext-a", "2026-03-01T09:00:00Z");
    let mb = movement("ext-b", "2026-03-02T08:00:00Z");
    let mc = movement("ext-c", "2026-03-02T08:00:00Z");
    let md = NewMovement {
        amount: "1500.00".into(),
        currency: "USD".into(),
        name: None,
        ..movement("ext-d", "2026-03-03T00:00:00Z")
    };
    let me = movement("ext-e", "2026-02-28T23:59:59Z");
    assert_eq!(
        s.insert_movements(a.id, &[mb.clone(), md.clone(), ma.clone()], t1)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        s.insert_movements(a.id, &[me.clone(), mc.clone()], t2).await.unwrap(),
        2
    );
    let theirs = movement("ext-z", "2026-03-04T00:00:00Z");
    assert_eq!(
        s.insert_movements(foreign.id, std::slice::from_ref(&theirs), t2)
            .await
            .unwrap(),
        1
    );

    let all = s.list_movements(owner.id, a.id, 100, 0).await.unwrap();
    assert_eq!(
        without_ids(&all),
        vec![
            stored(a.id, &md, t1),
            stored(a.id, &mc, t2),
            stored(a.id, &mb, t1),
            stored(a.id, &ma, t1),
            stored(a.id, &me, t2),
        ]
    );
    let ids: BTreeSet<MovementId> = all.iter().map(|m| m.id).collect();
    assert_eq!(ids.len(), all.len(), "each movement has its own id");

    // Paged.
    assert_eq!(
        s.list_movements(owner.id, a.id, 2, 0).await.unwrap(),
        all[0..2].to_vec()
    );
    assert_eq!(
        s.list_movements(owner.id, a.id, 2, 2).await.unwrap(),
        all[2..4].to_vec()
    );
    assert_eq!(s.list_movements(owner.id, a.id, 2, 4).await.unwrap(), all[4..].to_vec());
    assert_eq!(
        s.list_movements(owner.id, a.id, 1, 3).await.unwrap(),
        all[3..4].to_vec()
    );
    assert!(s.list_movements(owner.id, a.id, 10, 5).await.unwrap().is_empty());
    assert!(s.list_movements(owner.id, a.id, 0, 0).await.unwrap().is_empty());

    // Tenant-scoped.
    assert!(s.list_movements(stranger.id, a.id, 100, 0).await.unwrap().is_empty());
    assert!(s.list_movements(UserId::new(), a.id, 100, 0).await.unwrap().is_empty());
    assert!(s.list_movements(owner.id, foreign.id, 100, 0).await.unwrap().is_empty());
    assert!(s
        .list_movements(owner.id, AccountId::new(), 100, 0)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        without_ids(&s.list_movements(stranger.id, foreign.id, 100, 0).await.unwrap()),
        vec![stored(foreign.id, &theirs, t2)]
    );
}

async fn check_runs(s: &dyn Store) {
    let (owner, stranger) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let (a, other) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let foreign = account(s, stranger.id, &b).await;
    let t = now();

    // One created already ended, so that every field round-trips.
    let done = RunRow {
        kind: "persistent".into(),
        ended_at: Some(t + ms(5)),
        outcome: "failed".into(),
        failure_reason: Some("login refused".into()),
        movements_read: 5,
        new_movements: 2,
        ..run_row(a.id, t)
    };
    let r1 = run_row(a.id, t + ms(10));
    let r2 = RunRow {
        kind: "persistent".into(),
        ..run_row(a.id, t + ms(20))
    };
    let r3 = run_row(a.id, t + ms(30));
    // Same start as r3 with a smaller id: listed after it (id descending).
    let r4 = RunRow {
        id: RunId(Uuid::from_u128(r3.id.0.as_u128() - 1)),
        ..run_row(a.id, t + ms(30))
    };
    let theirs = run_row(foreign.id, t + ms(15));
    let elsewhere = run_row(other.id, t + ms(40));
    for r in [&r3, &done, &r1, &theirs, &r4, &elsewhere, &r2] {
        s.create_run(r).await.unwrap();
    }

    // Newest first, paged.
    let all = s.list_runs(owner.id, a.id, 100, 0).await.unwrap();
    assert_eq!(all, vec![r3.clone(), r4.clone(), r2.clone(), r1.clone(), done.clone()]);
    assert_eq!(
        s.list_runs(owner.id, a.id, 2, 0).await.unwrap(),
        vec![r3.clone(), r4.clone()]
    );
    assert_eq!(
        s.list_runs(owner.id, a.id, 2, 2).await.unwrap(),
        vec![r2.clone(), r1.clone()]
    );
    assert_eq!(s.list_runs(owner.id, a.id, 2, 4).await.unwrap(), vec![done.clone()]);
    assert_eq!(s.list_runs(owner.id, a.id, 1, 1).await.unwrap(), vec![r4.clone()]);
    assert!(s.list_runs(owner.id, a.id, 10, 5).await.unwrap().is_empty());
    assert!(s.list_runs(owner.id, a.id, 0, 0).await.unwrap().is_empty());

    // Per account, tenant-scoped.
    assert_eq!(
        s.list_runs(owner.id, other.id, 100, 0).await.unwrap(),
        vec![elsewhere.clone()]
    );
    assert!(s.list_runs(stranger.id, a.id, 100, 0).await.unwrap().is_empty());
    assert!(s.list_runs(UserId::new(), a.id, 100, 0).await.unwrap().is_empty());
    assert!(s.list_runs(owner.id, foreign.id, 100, 0).await.unwrap().is_empty());
    assert_eq!(
        s.list_runs(stranger.id, foreign.id, 100, 0).await.unwrap(),
        vec![theirs.clone()]
    );

    // The id is unique; an unknown account is refused (foreign key).
    let r = s
        .create_run(&RunRow {
            account_id: other.id,
            ..r1.clone()
        })
        .await;
    assert!(
        conflict(r, Constraint::Other("session_runs_pkey".into())),
        "duplicate run id must be a Conflict"
    );
    let r = s.create_run(&run_row(AccountId::new(), t)).await;
    assert!(
        matches!(r, Err(StoreError::Database(_))),
        "unknown account must be refused: {r:?}"
    );
    assert_eq!(
        s.list_runs(owner.id, other.id, 100, 0).await.unwrap(),
        vec![elsewhere.clone()]
    );

    // Finishing: once, and only a running run.
    let succeeded = RunRow {
        ended_at: Some(t + ms(500)),
        outcome: "succeeded".into(),
        movements_read: 12,
        new_movements: 3,
        ..r1.clone()
    };
    assert_eq!(s.finish_run(&succeeded, &[]).await.unwrap(), (true, vec![]));
    let late = RunRow {
        ended_at: Some(t + ms(900)),
        outcome: "failed".into(),
        failure_reason: Some("too late".into()),
        ..r1.clone()
    };
    assert_eq!(
        s.finish_run(&late, &[]).await.unwrap(),
        (false, vec![]),
        "no longer running"
    );
    assert!(
        !s.finish_run(
            &RunRow {
                ended_at: Some(t + ms(900)),
                outcome: "succeeded".into(),
                failure_reason: None,
                ..done.clone()
            },
            &[]
        )
        .await
        .unwrap()
        .0,
        "created ended"
    );
    assert!(
        !s.finish_run(
            &RunRow {
                ended_at: Some(t),
                outcome: "succeeded".into(),
                ..run_row(a.id, t)
            },
            &[]
        )
        .await
        .unwrap()
        .0,
        "unknown run"
    );
    let failed = RunRow {
        ended_at: Some(t + ms(600)),
        outcome: "failed".into(),
        failure_reason: Some("bank unavailable".into()),
        movements_read: 1,
        ..r2.clone()
    };
    assert!(s.finish_run(&failed, &[]).await.unwrap().0);
    assert_eq!(
        s.list_runs(owner.id, a.id, 100, 0).await.unwrap(),
        vec![r3.clone(), r4, failed, succeeded, done]
    );
    assert_eq!(s.list_runs(owner.id, other.id, 100, 0).await.unwrap(), vec![elsewhere]);
    assert_eq!(
        s.list_runs(stranger.id, foreign.id, 100, 0).await.unwrap(),
        vec![theirs]
    );

    // Deleting the account deletes its runs: re-created under the same id it has none, and the
    // old run ids are free again.
    assert!(s.delete_account(owner.id, a.id).await.unwrap());
    assert!(s.list_runs(owner.id, a.id, 100, 0).await.unwrap().is_empty());
    let reborn = account_at(s, owner.id, &b, a.id, now()).await;
    assert!(s.list_runs(owner.id, reborn.id, 100, 0).await.unwrap().is_empty());
    s.create_run(&r3).await.unwrap();
    assert_eq!(s.list_runs(owner.id, reborn.id, 100, 0).await.unwrap(), vec![r3]);
}

async fn check_close_open_runs(s: &dyn Store) {
    // Earlier checks left runs running; sweep them first so that the count below is exact.
    s.close_open_runs("sweep", now()).await.unwrap();

    let owner = user(s).await;
    let b = bank(s).await;
    let (a, other) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let t = now();
    let open_a = RunRow {
        movements_read: 4,
        new_movements: 1,
        ..run_row(a.id, t)
    };
    let open_other = RunRow {
        kind: "persistent".into(),
        ..run_row(other.id, t + ms(10))
    };
    let succeeded = RunRow {
        ended_at: Some(t - ms(50)),
        outcome: "succeeded".into(),
        movements_read: 2,
        ..run_row(a.id, t - ms(100))
    };
    let failed = RunRow {
        ended_at: Some(t - ms(20)),
        outcome: "failed".into(),
        failure_reason: Some("timeout".into()),
        ..run_row(other.id, t - ms(40))
    };
    let stopped = run_row(a.id, t + ms(20));
    for r in [&open_a, &open_other, &succeeded, &failed, &stopped] {
        s.create_run(r).await.unwrap();
    }
    // Created running, ended before the sweep.
    let stopped = RunRow {
        ended_at: Some(t + ms(30)),
        outcome: "cancelled".into(),
        failure_reason: Some("stopped by the user".into()),
        ..stopped
    };
    assert!(s.finish_run(&stopped, &[]).await.unwrap().0);

    let at = t + ms(1000);
    assert_eq!(s.close_open_runs("server restarted", at).await.unwrap(), 2);
    let swept = |r: &RunRow| RunRow {
        ended_at: Some(at),
        outcome: "cancelled".into(),
        failure_reason: Some("server restarted".into()),
        ..r.clone()
    };
    let on_a = vec![stopped, swept(&open_a), succeeded];
    let on_other = vec![swept(&open_other), failed];
    assert_eq!(s.list_runs(owner.id, a.id, 100, 0).await.unwrap(), on_a);
    assert_eq!(s.list_runs(owner.id, other.id, 100, 0).await.unwrap(), on_other);

    // A cancelled run can no longer be finished; nothing is left to sweep.
    assert!(
        !s.finish_run(
            &RunRow {
                ended_at: Some(at + ms(1)),
                outcome: "succeeded".into(),
                ..open_a
            },
            &[]
        )
        .await
        .unwrap()
        .0
    );
    assert_eq!(s.close_open_runs("again", at + ms(2)).await.unwrap(), 0);
    assert_eq!(s.list_runs(owner.id, a.id, 100, 0).await.unwrap(), on_a);
    assert_eq!(s.list_runs(owner.id, other.id, 100, 0).await.unwrap(), on_other);
}

async fn check_leases(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let (a, other) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let t = now();
    let sec = Duration::seconds;

    // Free: taken. The holder renews (to t+60s).
    assert!(s.acquire_lease(a.id, "node-1", t + sec(30), t).await.unwrap());
    assert!(s.acquire_lease(a.id, "node-1", t + sec(60), t + sec(10)).await.unwrap());
    // Another owner is refused while it runs, also past the first expiry: it was renewed.
    assert!(!s.acquire_lease(a.id, "node-2", t + sec(90), t + sec(20)).await.unwrap());
    assert!(!s.acquire_lease(a.id, "node-2", t + sec(90), t + sec(45)).await.unwrap());
    // Leases are per account.
    assert!(s
        .acquire_lease(other.id, "node-2", t + sec(90), t + sec(45))
        .await
        .unwrap());
    assert!(!s
        .acquire_lease(other.id, "node-1", t + sec(90), t + sec(46))
        .await
        .unwrap());
    // Expired: another owner takes over, and the old holder is now the one refused.
    assert!(s
        .acquire_lease(a.id, "node-2", t + sec(120), t + sec(61))
        .await
        .unwrap());
    assert!(!s
        .acquire_lease(a.id, "node-1", t + sec(130), t + sec(70))
        .await
        .unwrap());

    // Releasing: only the holder can.
    assert!(!s.release_lease(a.id, "node-1").await.unwrap());
    assert!(
        !s.acquire_lease(a.id, "node-1", t + sec(130), t + sec(71))
            .await
            .unwrap(),
        "a non-owner's release must not free the lease"
    );
    assert!(s.release_lease(a.id, "node-2").await.unwrap());
    assert!(!s.release_lease(a.id, "node-2").await.unwrap(), "already released");
    // Released: free at once, long before node-2's lease would have expired.
    assert!(s
        .acquire_lease(a.id, "node-3", t + sec(200), t + sec(72))
        .await
        .unwrap());
    assert!(!s
        .acquire_lease(a.id, "node-2", t + sec(200), t + sec(73))
        .await
        .unwrap());
    // The other account's lease was not touched by any of this.
    assert!(!s
        .acquire_lease(other.id, "node-1", t + sec(130), t + sec(73))
        .await
        .unwrap());
    assert!(s
        .acquire_lease(other.id, "node-2", t + sec(130), t + sec(73))
        .await
        .unwrap());

    // An unknown account: refused, and no lease is left behind (nothing to release, and the
    // account created later under that id is free).
    let ghost = AccountId::new();
    assert!(!s
        .acquire_lease(ghost, "node-1", t + Duration::hours(1), t)
        .await
        .unwrap());
    assert!(!s.release_lease(ghost, "node-1").await.unwrap());
    let ghost = account_at(s, owner.id, &b, ghost, now()).await;
    assert!(s
        .acquire_lease(ghost.id, "node-2", t + Duration::hours(1), t + sec(1))
        .await
        .unwrap());

    // Deleting the account deletes its lease: node-3's lease (until t+200s) is gone with it.
    assert!(s.delete_account(owner.id, a.id).await.unwrap());
    assert!(!s.release_lease(a.id, "node-3").await.unwrap());
    assert!(!s
        .acquire_lease(a.id, "node-4", t + sec(300), t + sec(80))
        .await
        .unwrap());
    let reborn = account_at(s, owner.id, &b, a.id, now()).await;
    assert!(s
        .acquire_lease(reborn.id, "node-4", t + sec(300), t + sec(80))
        .await
        .unwrap());
    assert!(!s
        .acquire_lease(reborn.id, "node-3", t + sec(300), t + sec(81))
        .await
        .unwrap());
}

async fn check_assistance_events(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let (a, other) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let t = now();

    // Created with its events: logged in order with increasing seqs, deliveries queued.
    let req = assistance_row(a.id);
    let prompt = NewDelivery {
        request_id: Some(req.id),
        ..delivery("assistance_required", t)
    };
    let requested = delivering(event(owner.id, a.id, "assistance.requested", t), &[&prompt]);
    let status = event(owner.id, a.id, "account.status", t);
    let logged = s
        .create_assistance(&req, &[requested.clone(), status.clone()])
        .await
        .unwrap();
    assert_logged(&logged, &[requested.clone(), status], 0);
    assert_eq!(s.pending_assistance(a.id).await.unwrap(), Some(req.clone()));
    let mut log = logged;
    assert_eq!(events_of(s, owner.id).await, log);
    let mut on_a = vec![queued(&requested, &prompt)];
    assert_eq!(s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap(), on_a);

    // A conflicting create (a second pending request) logs nothing and queues nothing.
    let dup = assistance_row(a.id);
    let lost = delivering(
        event(owner.id, a.id, "assistance.requested", t + ms(1)),
        &[&delivery("assistance_required", t + ms(1))],
    );
    let r = s.create_assistance(&dup, std::slice::from_ref(&lost)).await;
    assert!(
        conflict(r, Constraint::AssistancePendingPerAccount),
        "a second pending request must be a Conflict"
    );
    assert_eq!(s.assistance_by_id(dup.id).await.unwrap(), None);
    assert_eq!(events_of(s, owner.id).await, log);
    assert_eq!(s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap(), on_a);

    // Events that cannot be logged (the second reuses the first's id) undo the request and the
    // first event with its delivery: one transaction.
    let req2 = assistance_row(other.id);
    let requested2 = delivering(
        event(owner.id, other.id, "assistance.requested", t + ms(2)),
        &[&NewDelivery {
            request_id: Some(req2.id),
            ..delivery("assistance_required", t + ms(2))
        }],
    );
    let twin = NewEvent {
        kind: "account.status".into(),
        deliveries: Vec::new(),
        ..requested2.clone()
    };
    let r = s.create_assistance(&req2, &[requested2.clone(), twin]).await;
    assert!(
        matches!(r, Err(StoreError::Conflict(_))),
        "a duplicate event id must be a Conflict: {r:?}"
    );
    assert_eq!(s.assistance_by_id(req2.id).await.unwrap(), None);
    assert_eq!(s.pending_assistance(other.id).await.unwrap(), None);
    assert_eq!(events_of(s, owner.id).await, log);
    assert!(s.list_deliveries(owner.id, other.id, 100, 0).await.unwrap().is_empty());
    // … and the same request with loggable events goes through, later in the log.
    let logged = s
        .create_assistance(&req2, std::slice::from_ref(&requested2))
        .await
        .unwrap();
    assert_logged(&logged, std::slice::from_ref(&requested2), last_seq(&log));
    log.extend(logged);
    assert_eq!(events_of(s, owner.id).await, log);
    assert_eq!(s.pending_assistance(other.id).await.unwrap(), Some(req2.clone()));
    assert_eq!(
        s.list_deliveries(owner.id, other.id, 100, 0).await.unwrap(),
        vec![queued(&requested2, &requested2.deliveries[0])]
    );

    // A closed request on the same account, created without events.
    let old = AssistanceRow {
        status: AssistanceStatus::Expired,
        reason: Some("timeout".into()),
        closed_at: Some(t),
        ..assistance_row(a.id)
    };
    assert_eq!(s.create_assistance(&old, &[]).await.unwrap(), vec![]);
    assert_eq!(events_of(s, owner.id).await, log);

    // Bumping: the closure sees the row as changed, and what it returns is logged with it.
    let spy = Spy::new(owner.id);
    let t1 = t + ms(100);
    let got = s
        .bump_assistance_attempts(req.id, t1, &|r: &AssistanceRow| spy.events(r))
        .await
        .unwrap();
    let bumped = AssistanceRow {
        attempts: 1,
        updated_at: t1,
        ..req.clone()
    };
    let calls = spy.calls();
    assert_eq!(calls.len(), 1, "the closure is called once");
    assert_eq!(calls[0].0, bumped, "the closure receives the bumped row");
    let (row, logged) = got.unwrap();
    assert_eq!(row, bumped);
    assert_logged(&logged, &calls[0].1, last_seq(&log));
    log.extend(logged);
    assert_eq!(events_of(s, owner.id).await, log);
    on_a.insert(0, queued(&calls[0].1[0], &calls[0].1[0].deliveries[0]));
    assert_eq!(s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap(), on_a);

    // Not pending, or unknown: None, the closure is not called, nothing is logged.
    let none = s
        .bump_assistance_attempts(old.id, t1, &|r: &AssistanceRow| spy.events(r))
        .await
        .unwrap();
    assert_eq!(none, None);
    let none = s
        .bump_assistance_attempts(AssistanceRequestId::new(), t1, &|r: &AssistanceRow| spy.events(r))
        .await
        .unwrap();
    assert_eq!(none, None);
    assert_eq!(spy.calls().len(), 1, "no closure call without a state change");
    assert_eq!(s.assistance_by_id(old.id).await.unwrap(), Some(old.clone()));

    // Closing: the closure sees the closed row (status, reason, times).
    let t2 = t1 + ms(100);
    let got = s
        .close_assistance(
            req.id,
            AssistanceStatus::Fulfilled,
            Some("code accepted"),
            t2,
            &|r: &AssistanceRow| spy.events(r),
        )
        .await
        .unwrap();
    let closed = AssistanceRow {
        status: AssistanceStatus::Fulfilled,
        reason: Some("code accepted".into()),
        updated_at: t2,
        closed_at: Some(t2),
        ..bumped
    };
    let calls = spy.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].0, closed, "the closure receives the closed row");
    assert_eq!(calls[1].1[0].kind, "assistance.fulfilled");
    let (row, logged) = got.unwrap();
    assert_eq!(row, closed);
    assert_logged(&logged, &calls[1].1, last_seq(&log));
    log.extend(logged);
    assert_eq!(events_of(s, owner.id).await, log);
    on_a.insert(0, queued(&calls[1].1[0], &calls[1].1[0].deliveries[0]));
    assert_eq!(s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap(), on_a);

    // Closing again, closing a request closed from the start, closing or bumping an unknown one,
    // bumping a closed one: None, no closure call, nothing logged or queued.
    let spied = |r: &AssistanceRow| spy.events(r);
    for id in [req.id, old.id, AssistanceRequestId::new()] {
        let r = s
            .close_assistance(id, AssistanceStatus::Cancelled, Some("again"), t2 + ms(1), &spied)
            .await
            .unwrap();
        assert_eq!(r, None, "closing {id} must find nothing pending");
        let r = s.bump_assistance_attempts(id, t2 + ms(1), &spied).await.unwrap();
        assert_eq!(r, None, "bumping {id} must find nothing pending");
    }
    assert_eq!(spy.calls().len(), 2, "no closure call without a state change");
    assert_eq!(s.assistance_by_id(req.id).await.unwrap(), Some(closed));
    assert_eq!(s.assistance_by_id(old.id).await.unwrap(), Some(old));
    assert_eq!(events_of(s, owner.id).await, log);
    assert_eq!(s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap(), on_a);

    // A reason may be absent; the closure sees that too.
    let t3 = t2 + ms(100);
    let (row, logged) = s
        .close_assistance(req2.id, AssistanceStatus::Cancelled, None, t3, &spied)
        .await
        .unwrap()
        .unwrap();
    let cancelled = AssistanceRow {
        status: AssistanceStatus::Cancelled,
        reason: None,
        updated_at: t3,
        closed_at: Some(t3),
        ..req2
    };
    let calls = spy.calls();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[2].0, cancelled);
    assert_eq!(row, cancelled);
    assert_logged(&logged, &calls[2].1, last_seq(&log));
    log.extend(logged);
    assert_eq!(events_of(s, owner.id).await, log);
}

async fn check_run_events(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let a = account(s, owner.id, &b).await;
    let t = now();
    let run = run_row(a.id, t);
    s.create_run(&run).await.unwrap();

    // Ending a running run logs the events with it.
    let failed = RunRow {
        ended_at: Some(t + ms(500)),
        outcome: "failed".into(),
        failure_reason: Some("login refused".into()),
        movements_read: 3,
        ..run.clone()
    };
    let login_failed = delivering(
        event(owner.id, a.id, "session.login_failed", t + ms(500)),
        &[&delivery("login_failed", t + ms(500))],
    );
    let status = event(owner.id, a.id, "account.status", t + ms(500));
    let (done, logged) = s
        .finish_run(&failed, &[login_failed.clone(), status.clone()])
        .await
        .unwrap();
    assert!(done);
    assert_logged(&logged, &[login_failed.clone(), status], 0);
    let mut log = logged;
    assert_eq!(events_of(s, owner.id).await, log);
    assert_eq!(s.list_runs(owner.id, a.id, 100, 0).await.unwrap(), vec![failed.clone()]);
    let mut on_a = vec![queued(&login_failed, &login_failed.deliveries[0])];
    assert_eq!(s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap(), on_a);

    // No longer running: `false`, the run stays as it ended, but the events are logged all the
    // same (with their deliveries).
    let late = RunRow {
        ended_at: Some(t + ms(900)),
        outcome: "succeeded".into(),
        failure_reason: None,
        ..run.clone()
    };
    let scrape_failed = delivering(
        event(owner.id, a.id, "session.scrape_failed", t + ms(900)),
        &[&delivery("scrape_failed", t + ms(900))],
    );
    let (done, logged) = s.finish_run(&late, std::slice::from_ref(&scrape_failed)).await.unwrap();
    assert!(!done, "no longer running");
    assert_logged(&logged, std::slice::from_ref(&scrape_failed), last_seq(&log));
    log.extend(logged);
    assert_eq!(events_of(s, owner.id).await, log);
    assert_eq!(s.list_runs(owner.id, a.id, 100, 0).await.unwrap(), vec![failed]);
    on_a.insert(0, queued(&scrape_failed, &scrape_failed.deliveries[0]));
    assert_eq!(s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap(), on_a);

    // An unknown run: the same.
    let ghost = event(owner.id, a.id, "account.status", t + ms(950));
    let (done, logged) = s
        .finish_run(
            &RunRow {
                ended_at: Some(t + ms(950)),
                outcome: "cancelled".into(),
                ..run_row(a.id, t)
            },
            std::slice::from_ref(&ghost),
        )
        .await
        .unwrap();
    assert!(!done, "unknown run");
    assert_logged(&logged, std::slice::from_ref(&ghost), last_seq(&log));
    log.extend(logged);
    assert_eq!(events_of(s, owner.id).await, log);
}

async fn check_record_events(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let (a, other) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let t = now();

    assert_eq!(s.record_events(&[]).await.unwrap(), vec![]);
    assert!(events_of(s, owner.id).await.is_empty());

    // Several events in one call, across accounts, with none, one or two deliveries each.
    let d1 = NewDelivery {
        request_id: Some(AssistanceRequestId::new()),
        ..delivery("assistance_required", t + ms(5))
    };
    let d2 = delivery("login_failed", t + ms(60));
    let d3 = delivery("scrape_failed", t - ms(30));
    let e1 = delivering(event(owner.id, a.id, "assistance.requested", t), &[&d1]);
    let e2 = event(owner.id, other.id, "account.status", t + ms(10));
    let e3 = delivering(event(owner.id, a.id, "session.login_failed", t + ms(20)), &[&d2, &d3]);
    let batch = [e1.clone(), e2.clone(), e3.clone()];
    let logged = s.record_events(&batch).await.unwrap();
    assert_logged(&logged, &batch, 0);
    assert_eq!(events_of(s, owner.id).await, logged);
    let mut log = logged;

    // Each delivery is pending, never attempted, due as given, created when its event occurred.
    let listed = s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[2], queued(&e1, &d1));
    let mut same_time = listed[..2].to_vec();
    same_time.sort_by_key(|d| d.id);
    assert_eq!(same_time, by_id(vec![queued(&e3, &d2), queued(&e3, &d3)]));
    for d in &listed {
        assert_eq!(d.status, "pending");
        assert_eq!(d.attempts, 0);
    }
    assert_eq!(listed[2].payload, d1.payload);
    assert_eq!(listed[2].request_id, d1.request_id);
    assert_eq!(listed[2].event_id, e1.id);
    assert_eq!(listed[2].created_at, e1.occurred_at);
    assert!(s.list_deliveries(owner.id, other.id, 100, 0).await.unwrap().is_empty());

    // A second call comes later in the log.
    let e4 = event(owner.id, other.id, "account.status", t + ms(30));
    let logged = s.record_events(std::slice::from_ref(&e4)).await.unwrap();
    assert_logged(&logged, std::slice::from_ref(&e4), last_seq(&log));
    log.extend(logged);

    // One transaction: a batch that fails part-way (a delivery id used twice) logs none of it.
    let d5 = delivery("scrape_failed", t);
    let e5 = delivering(event(owner.id, other.id, "session.scrape_failed", t + ms(40)), &[&d5]);
    let e6 = delivering(event(owner.id, a.id, "session.scrape_failed", t + ms(40)), &[&d5]);
    let r = s.record_events(&[e5.clone(), e6]).await;
    assert!(
        matches!(r, Err(StoreError::Conflict(_))),
        "a duplicate delivery id must be a Conflict: {r:?}"
    );
    // … and so does one whose event id is taken.
    let r = s
        .record_events(&[
            event(owner.id, a.id, "account.status", t + ms(50)),
            NewEvent {
                data: "{}".into(),
                ..e1.clone()
            },
        ])
        .await;
    assert!(
        matches!(r, Err(StoreError::Conflict(_))),
        "a duplicate event id must be a Conflict: {r:?}"
    );
    assert_eq!(events_of(s, owner.id).await, log);
    assert_eq!(s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap(), listed);
    assert!(s.list_deliveries(owner.id, other.id, 100, 0).await.unwrap().is_empty());
    // The rolled-back ids are free.
    let logged = s.record_events(std::slice::from_ref(&e5)).await.unwrap();
    assert_logged(&logged, std::slice::from_ref(&e5), last_seq(&log));
    log.extend(logged);
    assert_eq!(events_of(s, owner.id).await, log);
    assert_eq!(
        s.list_deliveries(owner.id, other.id, 100, 0).await.unwrap(),
        vec![queued(&e5, &d5)]
    );
}

async fn check_list_events(s: &dyn Store) {
    let (owner, stranger) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let (a1, a2) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let foreign = account(s, stranger.id, &b).await;
    let t = now();

    // Interleaved across users and calls; `occurred_at` deliberately out of order (the log is
    // ordered by seq, not by time).
    let e1 = event(owner.id, a1.id, "account.status", t + ms(50));
    let e2 = event(owner.id, a2.id, "assistance.requested", t);
    let e3 = event(stranger.id, foreign.id, "account.status", t + ms(5));
    let e4 = event(owner.id, a1.id, "session.login_failed", t + ms(10));
    let e5 = event(owner.id, a2.id, "assistance.fulfilled", t + ms(20));
    let mut logged = s.record_events(&[e1.clone(), e2.clone(), e3.clone()]).await.unwrap();
    logged.extend(s.record_events(std::slice::from_ref(&e4)).await.unwrap());
    logged.extend(s.record_events(std::slice::from_ref(&e5)).await.unwrap());
    assert_logged(&logged, &[e1, e2, e3, e4, e5], 0);
    let [l1, l2, l3, l4, l5] = <[EventRow; 5]>::try_from(logged).unwrap();

    // Only the user's own, ascending by seq.
    let all = vec![l1.clone(), l2.clone(), l4.clone(), l5.clone()];
    assert_eq!(s.list_events(owner.id, None, 0, 100).await.unwrap(), all);
    assert_eq!(
        s.list_events(stranger.id, None, 0, 100).await.unwrap(),
        vec![l3.clone()]
    );
    assert!(s.list_events(UserId::new(), None, 0, 100).await.unwrap().is_empty());

    // `after` excludes seq <= after.
    assert_eq!(
        s.list_events(owner.id, None, l2.seq, 100).await.unwrap(),
        vec![l4.clone(), l5.clone()]
    );
    assert_eq!(
        s.list_events(owner.id, None, l2.seq - 1, 100).await.unwrap(),
        vec![l2.clone(), l4.clone(), l5.clone()]
    );
    assert_eq!(
        s.list_events(owner.id, None, l3.seq, 100).await.unwrap(),
        vec![l4.clone(), l5.clone()],
        "a cursor at someone else's seq"
    );
    assert!(s.list_events(owner.id, None, l5.seq, 100).await.unwrap().is_empty());

    // `limit`, alone and with `after`.
    assert_eq!(
        s.list_events(owner.id, None, 0, 2).await.unwrap(),
        vec![l1.clone(), l2.clone()]
    );
    assert_eq!(
        s.list_events(owner.id, None, l1.seq, 2).await.unwrap(),
        vec![l2.clone(), l4.clone()]
    );
    assert_eq!(
        s.list_events(owner.id, None, l4.seq, 1).await.unwrap(),
        vec![l5.clone()]
    );
    assert!(s.list_events(owner.id, None, 0, 0).await.unwrap().is_empty());

    // The account filter restricts; an empty one yields nothing; ids not the user's add nothing.
    assert_eq!(
        s.list_events(owner.id, Some(&[a1.id]), 0, 100).await.unwrap(),
        vec![l1.clone(), l4.clone()]
    );
    assert_eq!(
        s.list_events(owner.id, Some(&[a2.id, a1.id]), 0, 100).await.unwrap(),
        all
    );
    assert!(s.list_events(owner.id, Some(&[]), 0, 100).await.unwrap().is_empty());
    assert_eq!(
        s.list_events(owner.id, Some(&[a2.id, foreign.id, AccountId::new()]), 0, 100)
            .await
            .unwrap(),
        vec![l2.clone(), l5.clone()]
    );
    assert!(s
        .list_events(owner.id, Some(&[foreign.id]), 0, 100)
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .list_events(stranger.id, Some(&[a1.id, a2.id]), 0, 100)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.list_events(stranger.id, Some(&[foreign.id]), 0, 100).await.unwrap(),
        vec![l3]
    );
    // … combined with `after` and `limit`.
    assert_eq!(
        s.list_events(owner.id, Some(&[a2.id]), l2.seq, 100).await.unwrap(),
        vec![l5]
    );
    assert_eq!(
        s.list_events(owner.id, Some(&[a1.id, a2.id]), l1.seq, 2).await.unwrap(),
        vec![l2, l4]
    );
}

async fn check_purge_events(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let a = account(s, owner.id, &b).await;
    // Long ago: no other check logs events this old.
    let base = now() - Duration::days(3650);
    s.purge_events(base - Duration::days(1)).await.unwrap();

    let recent = event(owner.id, a.id, "account.status", now());
    let olds = [
        event(owner.id, a.id, "account.status", base - ms(2)),
        event(owner.id, a.id, "account.status", base - ms(1)),
        event(owner.id, a.id, "account.status", base),
        event(owner.id, a.id, "account.status", base + ms(1)),
    ];
    let mut batch = vec![recent];
    batch.extend(olds.iter().cloned());
    let logged = s.record_events(&batch).await.unwrap();
    assert_logged(&logged, &batch, 0);

    // Strictly before: the event at `base` stays.
    assert_eq!(s.purge_events(base).await.unwrap(), 2);
    let kept = vec![logged[0].clone(), logged[3].clone(), logged[4].clone()];
    assert_eq!(events_of(s, owner.id).await, kept);
    assert_eq!(s.purge_events(base).await.unwrap(), 0);
    assert_eq!(s.purge_events(base + ms(1)).await.unwrap(), 1);
    assert_eq!(events_of(s, owner.id).await, vec![logged[0].clone(), logged[4].clone()]);
    assert_eq!(s.purge_events(base + ms(1)).await.unwrap(), 0);
    assert_eq!(s.purge_events(base + ms(2)).await.unwrap(), 1);
    assert_eq!(events_of(s, owner.id).await, vec![logged[0].clone()]);
}

async fn check_claim_due_deliveries(s: &dyn Store) {
    sweep_deliveries(s).await;
    let (owner, stranger) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let (a, other) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let foreign = account(s, stranger.id, &b).await;
    let t = now();
    let lease = t + Duration::seconds(60);

    // Recorded out of due order, across accounts and users: claims are not user-scoped.
    let old = NewDelivery {
        request_id: Some(AssistanceRequestId::new()),
        ..delivery("assistance_required", t - ms(30))
    };
    let mid = delivery("scrape_failed", t - ms(20));
    let new = delivery("login_failed", t - ms(10));
    let exact = delivery("scrape_failed", t);
    let future = delivery("scrape_failed", t + Duration::hours(1));
    let e1 = delivering(
        event(owner.id, a.id, "session.scrape_failed", t - ms(40)),
        &[&mid, &future],
    );
    let e2 = delivering(
        event(stranger.id, foreign.id, "session.login_failed", t - ms(40)),
        &[&new],
    );
    let e3 = delivering(
        event(owner.id, other.id, "assistance.requested", t - ms(50)),
        &[&exact, &old],
    );
    s.record_events(&[e1.clone(), e2.clone(), e3.clone()]).await.unwrap();

    // Nothing for a limit of 0, and nothing is leased by it.
    assert!(s.claim_due_deliveries(t, lease, 0).await.unwrap().is_empty());
    // Oldest due first, at most `limit`, each leased until `lease`.
    assert_eq!(
        s.claim_due_deliveries(t, lease, 1).await.unwrap(),
        vec![leased(&e3, &old, lease)]
    );
    assert_eq!(
        s.claim_due_deliveries(t, lease, 1).await.unwrap(),
        vec![leased(&e1, &mid, lease)]
    );
    // Due exactly now counts; not yet due does not.
    assert_eq!(
        by_id(s.claim_due_deliveries(t, lease, 10).await.unwrap()),
        by_id(vec![leased(&e2, &new, lease), leased(&e3, &exact, lease)])
    );
    // Leased: a second claim at the same time takes nothing, nor one just before the lease ends.
    assert!(s.claim_due_deliveries(t, lease, 10).await.unwrap().is_empty());
    assert!(s
        .claim_due_deliveries(lease - ms(1), lease, 10)
        .await
        .unwrap()
        .is_empty());
    // The lease shows in the log.
    assert_eq!(
        s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap(),
        by_id(vec![leased(&e1, &mid, lease), queued(&e1, &future)])
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
    );
    assert_eq!(
        by_id(s.list_deliveries(owner.id, other.id, 100, 0).await.unwrap()),
        by_id(vec![leased(&e3, &exact, lease), leased(&e3, &old, lease)])
    );

    // Once the lease has passed, they are claimable again (the one due later still is not).
    let lease2 = t + Duration::hours(2);
    assert_eq!(
        by_id(s.claim_due_deliveries(lease + ms(1), lease2, 10).await.unwrap()),
        by_id(vec![
            leased(&e3, &old, lease2),
            leased(&e1, &mid, lease2),
            leased(&e2, &new, lease2),
            leased(&e3, &exact, lease2),
        ])
    );
    let lease3 = t + Duration::hours(3);
    assert_eq!(
        s.claim_due_deliveries(t + Duration::minutes(90), lease3, 10)
            .await
            .unwrap(),
        vec![leased(&e1, &future, lease3)]
    );
    assert!(s
        .claim_due_deliveries(t + Duration::minutes(90), lease3, 10)
        .await
        .unwrap()
        .is_empty());
}

async fn check_concurrent_claims(s: &dyn Store) {
    sweep_deliveries(s).await;
    let owner = user(s).await;
    let b = bank(s).await;
    let a = account(s, owner.id, &b).await;
    let t = now();
    let lease = t + Duration::seconds(60);

    // Claimers racing over the same due deliveries never take one twice.
    for round in 0..20 {
        let batch: Vec<NewDelivery> = (0..40).map(|i| delivery("scrape_failed", t - ms(i))).collect();
        let e = NewEvent {
            deliveries: batch.clone(),
            ..event(owner.id, a.id, "session.scrape_failed", t)
        };
        s.record_events(&[e]).await.unwrap();
        let (c1, c2, c3, c4) = tokio::join!(
            s.claim_due_deliveries(t, lease, 15),
            s.claim_due_deliveries(t, lease, 15),
            s.claim_due_deliveries(t, lease, 15),
            s.claim_due_deliveries(t, lease, 15),
        );
        let mut claimed: Vec<DeliveryId> = [c1, c2, c3, c4]
            .into_iter()
            .flat_map(|c| c.unwrap())
            .map(|d| d.id)
            .collect();
        let n = claimed.len();
        claimed.sort();
        claimed.dedup();
        assert_eq!(claimed.len(), n, "round {round}: a delivery was claimed twice");
        // Whatever the racers left is still there for the next claim.
        claimed.extend(
            s.claim_due_deliveries(t, lease, 100)
                .await
                .unwrap()
                .iter()
                .map(|d| d.id),
        );
        claimed.sort();
        let mut want: Vec<DeliveryId> = batch.iter().map(|d| d.id).collect();
        want.sort();
        assert_eq!(claimed, want, "round {round}: every delivery claimed exactly once");
    }
}

async fn check_finish_delivery_attempt(s: &dyn Store) {
    sweep_deliveries(s).await;
    let owner = user(s).await;
    let b = bank(s).await;
    let a = account(s, owner.id, &b).await;
    let t = now();
    let (d1, d2, d3) = (
        NewDelivery {
            request_id: Some(AssistanceRequestId::new()),
            ..delivery("assistance_required", t - ms(3))
        },
        delivery("login_failed", t - ms(2)),
        delivery("scrape_failed", t - ms(1)),
    );
    let e = delivering(
        event(owner.id, a.id, "session.login_failed", t - ms(10)),
        &[&d1, &d2, &d3],
    );
    s.record_events(std::slice::from_ref(&e)).await.unwrap();
    let read = |id: DeliveryId| async move {
        s.list_deliveries(owner.id, a.id, 100, 0)
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.id == id)
            .unwrap()
    };

    // A failed attempt to retry later: every outcome field is written as given …
    let retry = DeliveryRow {
        status: "pending".into(),
        attempts: 1,
        next_attempt_at: Some(t + Duration::seconds(30)),
        last_attempt_at: Some(t),
        last_status: Some(503),
        last_error: Some("service unavailable".into()),
        delivered_at: None,
        ..queued(&e, &d1)
    };
    assert!(s.finish_delivery_attempt(&retry).await.unwrap());
    assert_eq!(read(d1.id).await, retry);
    // … and nothing else: the delivery's identity and content are not the attempt's to change.
    let tampered = DeliveryRow {
        account_id: AccountId::new(),
        event_id: Uuid::now_v7(),
        event_type: "something_else".into(),
        payload: "{}".into(),
        request_id: None,
        created_at: t + Duration::days(1),
        ..retry.clone()
    };
    assert!(s.finish_delivery_attempt(&tampered).await.unwrap());
    assert_eq!(read(d1.id).await, retry);

    // Delivered: the retry state is cleared (NULLs written back).
    let delivered = DeliveryRow {
        status: "delivered".into(),
        attempts: 2,
        next_attempt_at: None,
        last_attempt_at: Some(t + Duration::seconds(31)),
        last_status: Some(200),
        last_error: None,
        delivered_at: Some(t + Duration::seconds(31) + ms(7)),
        ..retry.clone()
    };
    assert!(s.finish_delivery_attempt(&delivered).await.unwrap());
    assert_eq!(read(d1.id).await, delivered);

    // Dead (retries exhausted), keeping a next attempt time in the past: the status alone keeps
    // it from being claimed. A transport error has no HTTP status.
    let dead = DeliveryRow {
        status: "dead".into(),
        attempts: 8,
        next_attempt_at: Some(t - Duration::seconds(1)),
        last_attempt_at: Some(t),
        last_status: None,
        last_error: Some("connection refused".into()),
        delivered_at: None,
        ..queued(&e, &d2)
    };
    assert!(s.finish_delivery_attempt(&dead).await.unwrap());
    assert_eq!(read(d2.id).await, dead);
    // The same for a delivered one that keeps a due time.
    let delivered_due = DeliveryRow {
        status: "delivered".into(),
        attempts: 1,
        last_attempt_at: Some(t),
        last_status: Some(204),
        delivered_at: Some(t),
        ..queued(&e, &d3)
    };
    assert!(s.finish_delivery_attempt(&delivered_due).await.unwrap());
    assert_eq!(read(d3.id).await, delivered_due);
    // None of the three is pending: nothing is claimable, however late.
    assert!(s
        .claim_due_deliveries(far_future(), far_future(), 100)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(read(d1.id).await, delivered);
    assert_eq!(read(d2.id).await, dead);
    assert_eq!(read(d3.id).await, delivered_due);

    // A pending retry is claimable once due, and only then.
    let again = DeliveryRow {
        status: "pending".into(),
        next_attempt_at: Some(t + Duration::seconds(5)),
        ..dead.clone()
    };
    assert!(s.finish_delivery_attempt(&again).await.unwrap());
    assert!(s
        .claim_due_deliveries(t + Duration::seconds(4), t + Duration::seconds(60), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.claim_due_deliveries(t + Duration::seconds(5), t + Duration::seconds(60), 10)
            .await
            .unwrap(),
        vec![DeliveryRow {
            next_attempt_at: Some(t + Duration::seconds(60)),
            ..again
        }]
    );

    // An unknown delivery: `false`, nothing written.
    assert!(!s
        .finish_delivery_attempt(&DeliveryRow {
            id: DeliveryId::new(),
            ..dead
        })
        .await
        .unwrap());
    assert_eq!(s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap().len(), 3);
}

async fn check_list_deliveries(s: &dyn Store) {
    let (owner, stranger) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let (a, other) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let foreign = account(s, stranger.id, &b).await;
    let t = now();

    // Two deliveries of one event share a creation time: ordered by id, descending.
    let lo = delivery("login_failed", t);
    let hi = NewDelivery {
        id: DeliveryId(Uuid::from_u128(lo.id.0.as_u128() + 1)),
        ..delivery("scrape_failed", t)
    };
    let first = delivery("assistance_required", t);
    let last = delivery("scrape_failed", t);
    let e_first = delivering(event(owner.id, a.id, "assistance.requested", t), &[&first]);
    let e_pair = delivering(event(owner.id, a.id, "session.login_failed", t + ms(10)), &[&lo, &hi]);
    let e_last = delivering(event(owner.id, a.id, "session.scrape_failed", t + ms(20)), &[&last]);
    let e_other = delivering(
        event(owner.id, other.id, "session.scrape_failed", t + ms(5)),
        &[&delivery("scrape_failed", t)],
    );
    let e_foreign = delivering(
        event(stranger.id, foreign.id, "session.scrape_failed", t + ms(5)),
        &[&delivery("scrape_failed", t)],
    );
    // Recorded out of order.
    s.record_events(&[
        e_pair.clone(),
        e_foreign.clone(),
        e_last.clone(),
        e_first.clone(),
        e_other.clone(),
    ])
    .await
    .unwrap();

    // Newest first, paged.
    let all = vec![
        queued(&e_last, &last),
        queued(&e_pair, &hi),
        queued(&e_pair, &lo),
        queued(&e_first, &first),
    ];
    assert_eq!(s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap(), all);
    assert_eq!(
        s.list_deliveries(owner.id, a.id, 2, 0).await.unwrap(),
        all[..2].to_vec()
    );
    assert_eq!(
        s.list_deliveries(owner.id, a.id, 2, 2).await.unwrap(),
        all[2..].to_vec()
    );
    assert_eq!(
        s.list_deliveries(owner.id, a.id, 1, 2).await.unwrap(),
        all[2..3].to_vec()
    );
    assert!(s.list_deliveries(owner.id, a.id, 10, 4).await.unwrap().is_empty());
    assert!(s.list_deliveries(owner.id, a.id, 0, 0).await.unwrap().is_empty());

    // Per account, tenant-scoped.
    assert_eq!(
        s.list_deliveries(owner.id, other.id, 100, 0).await.unwrap(),
        vec![queued(&e_other, &e_other.deliveries[0])]
    );
    assert!(s.list_deliveries(stranger.id, a.id, 100, 0).await.unwrap().is_empty());
    assert!(s.list_deliveries(UserId::new(), a.id, 100, 0).await.unwrap().is_empty());
    assert!(s
        .list_deliveries(owner.id, foreign.id, 100, 0)
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .list_deliveries(owner.id, AccountId::new(), 100, 0)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.list_deliveries(stranger.id, foreign.id, 100, 0).await.unwrap(),
        vec![queued(&e_foreign, &e_foreign.deliveries[0])]
    );

    // Deleting the account deletes its deliveries: re-created under the same id it has none, and
    // they can no longer be claimed or resent.
    assert!(s.delete_account(owner.id, a.id).await.unwrap());
    assert!(s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap().is_empty());
    let reborn = account_at(s, owner.id, &b, a.id, now()).await;
    assert!(s.list_deliveries(owner.id, reborn.id, 100, 0).await.unwrap().is_empty());
    assert_eq!(s.resend_delivery(owner.id, reborn.id, last.id, t).await.unwrap(), None);
    let gone: BTreeSet<DeliveryId> = [first.id, lo.id, hi.id, last.id].into();
    let claimed = s
        .claim_due_deliveries(t, t + Duration::seconds(60), 1000)
        .await
        .unwrap();
    assert!(!claimed.iter().any(|d| gone.contains(&d.id)));
    assert_eq!(
        s.list_deliveries(owner.id, other.id, 100, 0).await.unwrap().len(),
        1,
        "other accounts keep theirs"
    );
}

async fn check_resend_delivery(s: &dyn Store) {
    sweep_deliveries(s).await;
    let (owner, stranger) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let (a, other) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let foreign = account(s, stranger.id, &b).await;
    let t = now();
    let d = delivery("login_failed", t - ms(100));
    let e = delivering(event(owner.id, a.id, "session.login_failed", t - ms(100)), &[&d]);
    let theirs = delivery("login_failed", t - ms(100));
    let e_theirs = delivering(
        event(stranger.id, foreign.id, "session.login_failed", t - ms(100)),
        &[&theirs],
    );
    s.record_events(&[e.clone(), e_theirs.clone()]).await.unwrap();
    let dead = DeliveryRow {
        status: "dead".into(),
        attempts: 8,
        next_attempt_at: None,
        last_attempt_at: Some(t - ms(50)),
        last_status: Some(500),
        last_error: Some("internal server error".into()),
        delivered_at: None,
        ..queued(&e, &d)
    };
    assert!(s.finish_delivery_attempt(&dead).await.unwrap());
    let their_dead = DeliveryRow {
        status: "dead".into(),
        attempts: 8,
        next_attempt_at: None,
        ..queued(&e_theirs, &theirs)
    };
    assert!(s.finish_delivery_attempt(&their_dead).await.unwrap());
    assert!(s
        .claim_due_deliveries(far_future(), far_future(), 100)
        .await
        .unwrap()
        .is_empty());

    // Not found: another user, another of the user's accounts, an unknown account or delivery, a
    // delivery of someone else's account named through one's own or through theirs.
    let t2 = t + ms(10);
    assert_eq!(s.resend_delivery(stranger.id, a.id, d.id, t2).await.unwrap(), None);
    assert_eq!(
        s.resend_delivery(stranger.id, foreign.id, d.id, t2).await.unwrap(),
        None
    );
    assert_eq!(s.resend_delivery(owner.id, other.id, d.id, t2).await.unwrap(), None);
    assert_eq!(
        s.resend_delivery(owner.id, AccountId::new(), d.id, t2).await.unwrap(),
        None
    );
    assert_eq!(
        s.resend_delivery(owner.id, a.id, DeliveryId::new(), t2).await.unwrap(),
        None
    );
    assert_eq!(s.resend_delivery(owner.id, a.id, theirs.id, t2).await.unwrap(), None);
    assert_eq!(
        s.resend_delivery(owner.id, foreign.id, theirs.id, t2).await.unwrap(),
        None
    );
    assert_eq!(s.resend_delivery(UserId::new(), a.id, d.id, t2).await.unwrap(), None);
    assert_eq!(
        s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap(),
        vec![dead.clone()]
    );
    assert_eq!(
        s.list_deliveries(stranger.id, foreign.id, 100, 0).await.unwrap(),
        vec![their_dead]
    );
    assert!(s
        .claim_due_deliveries(far_future(), far_future(), 100)
        .await
        .unwrap()
        .is_empty());

    // The user's own: pending again, due now, the attempt history kept.
    let resent = DeliveryRow {
        status: "pending".into(),
        next_attempt_at: Some(t2),
        ..dead.clone()
    };
    assert_eq!(
        s.resend_delivery(owner.id, a.id, d.id, t2).await.unwrap(),
        Some(resent.clone())
    );
    assert_eq!(
        s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap(),
        vec![resent.clone()]
    );
    // Claimable from `now` on, not before.
    assert!(s
        .claim_due_deliveries(t2 - ms(1), t + Duration::seconds(60), 10)
        .await
        .unwrap()
        .is_empty());
    let lease = t + Duration::seconds(60);
    assert_eq!(
        s.claim_due_deliveries(t2, lease, 10).await.unwrap(),
        vec![DeliveryRow {
            next_attempt_at: Some(lease),
            ..resent.clone()
        }]
    );
    // Resending a claimed (leased) delivery makes it due again at once.
    let t3 = t2 + ms(10);
    let again = DeliveryRow {
        next_attempt_at: Some(t3),
        ..resent
    };
    assert_eq!(
        s.resend_delivery(owner.id, a.id, d.id, t3).await.unwrap(),
        Some(again.clone())
    );
    assert_eq!(s.claim_due_deliveries(t3, lease, 10).await.unwrap().len(), 1);
    // A delivered one can be sent again too.
    let delivered = DeliveryRow {
        status: "delivered".into(),
        attempts: 9,
        next_attempt_at: None,
        last_status: Some(200),
        last_error: None,
        delivered_at: Some(t3),
        ..again
    };
    assert!(s.finish_delivery_attempt(&delivered).await.unwrap());
    let t4 = t3 + ms(10);
    assert_eq!(
        s.resend_delivery(owner.id, a.id, d.id, t4).await.unwrap(),
        Some(DeliveryRow {
            status: "pending".into(),
            next_attempt_at: Some(t4),
            ..delivered
        })
    );
}

async fn check_close(s: &dyn Store) {
    s.ping().await.unwrap();
    s.close().await;
    assert!(s.ping().await.is_err(), "a closed store must refuse work");
    assert!(s.user_by_id(UserId::new()).await.is_err());
}

// ---------------------------------------------------------------------------------------------
// A pass-through store that records which methods were called
// ---------------------------------------------------------------------------------------------

struct Recording {
    inner: Arc<dyn Store>,
    called: Mutex<BTreeSet<&'static str>>,
}

impl Recording {
    fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            called: Mutex::new(BTreeSet::new()),
        }
    }

    fn hit(&self, method: &'static str) {
        self.called.lock().unwrap().insert(method);
    }

    fn called(&self) -> BTreeSet<&'static str> {
        self.called.lock().unwrap().clone()
    }
}

#[async_trait]
impl Store for Recording {
    fn backend(&self) -> &'static str {
        self.hit("backend");
        self.inner.backend()
    }
    async fn migrate(&self) -> StoreResult<()> {
        self.hit("migrate");
        self.inner.migrate().await
    }
    async fn ping(&self) -> StoreResult<()> {
        self.hit("ping");
        self.inner.ping().await
    }
    async fn close(&self) {
        self.hit("close");
        self.inner.close().await
    }
    async fn create_user(&self, user: &UserRow) -> StoreResult<()> {
        self.hit("create_user");
        self.inner.create_user(user).await
    }
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRow>> {
        self.hit("user_by_email");
        self.inner.user_by_email(email).await
    }
    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<UserRow>> {
        self.hit("user_by_id");
        self.inner.user_by_id(id).await
    }
    async fn session_user(&self, id: UserId, jti: TokenId) -> StoreResult<Option<UserRow>> {
        self.hit("session_user");
        self.inner.session_user(id, jti).await
    }
    async fn set_operation_mode(&self, id: UserId, mode: &str) -> StoreResult<bool> {
        self.hit("set_operation_mode");
        self.inner.set_operation_mode(id, mode).await
    }
    async fn grant_admin(&self, email: &str) -> StoreResult<bool> {
        self.hit("grant_admin");
        self.inner.grant_admin(email).await
    }
    async fn revoke_token(&self, jti: TokenId, user: UserId, expires_at: Timestamp) -> StoreResult<()> {
        self.hit("revoke_token");
        self.inner.revoke_token(jti, user, expires_at).await
    }
    async fn purge_revoked_tokens(&self, now: Timestamp) -> StoreResult<u64> {
        self.hit("purge_revoked_tokens");
        self.inner.purge_revoked_tokens(now).await
    }
    async fn list_banks(&self) -> StoreResult<Vec<BankRow>> {
        self.hit("list_banks");
        self.inner.list_banks().await
    }
    async fn bank_by_id(&self, id: BankId) -> StoreResult<Option<BankRow>> {
        self.hit("bank_by_id");
        self.inner.bank_by_id(id).await
    }
    async fn create_bank(&self, bank: &BankRow) -> StoreResult<()> {
        self.hit("create_bank");
        self.inner.create_bank(bank).await
    }
    async fn upsert_bank(&self, bank: &BankRow) -> StoreResult<BankRow> {
        self.hit("upsert_bank");
        self.inner.upsert_bank(bank).await
    }
    async fn create_account(&self, account: &NewAccount) -> StoreResult<AccountRow> {
        self.hit("create_account");
        self.inner.create_account(account).await
    }
    async fn list_accounts(&self, user: UserId, limit: i64, offset: i64) -> StoreResult<Vec<AccountRow>> {
        self.hit("list_accounts");
        self.inner.list_accounts(user, limit, offset).await
    }
    async fn account_for_user(&self, user: UserId, id: AccountId) -> StoreResult<Option<AccountRow>> {
        self.hit("account_for_user");
        self.inner.account_for_user(user, id).await
    }
    async fn owned_account_ids(&self, user: UserId, ids: &[AccountId]) -> StoreResult<Vec<AccountId>> {
        self.hit("owned_account_ids");
        self.inner.owned_account_ids(user, ids).await
    }
    async fn delete_account(&self, user: UserId, id: AccountId) -> StoreResult<bool> {
        self.hit("delete_account");
        self.inner.delete_account(user, id).await
    }
    async fn account_config(&self, user: UserId, id: AccountId) -> StoreResult<Option<AccountConfigRow>> {
        self.hit("account_config");
        self.inner.account_config(user, id).await
    }
    async fn put_account_config(&self, user: UserId, config: &AccountConfigRow) -> StoreResult<bool> {
        self.hit("put_account_config");
        self.inner.put_account_config(user, config).await
    }
    async fn create_api_key(&self, key: &ApiKeyRow) -> StoreResult<()> {
        self.hit("create_api_key");
        self.inner.create_api_key(key).await
    }
    async fn list_api_keys(&self, user: UserId, limit: i64, offset: i64) -> StoreResult<Vec<ApiKeyRow>> {
        self.hit("list_api_keys");
        self.inner.list_api_keys(user, limit, offset).await
    }
    async fn revoke_api_key(&self, user: UserId, id: ApiKeyId, now: Timestamp) -> StoreResult<Option<ApiKeyRow>> {
        self.hit("revoke_api_key");
        self.inner.revoke_api_key(user, id, now).await
    }
    async fn api_key_by_prefix(&self, prefix: &str) -> StoreResult<Option<ApiKeyRow>> {
        self.hit("api_key_by_prefix");
        self.inner.api_key_by_prefix(prefix).await
    }
    async fn record_api_key_use(&self, uses: &[(ApiKeyId, Timestamp)]) -> StoreResult<()> {
        self.hit("record_api_key_use");
        self.inner.record_api_key_use(uses).await
    }
    async fn create_assistance(&self, request: &AssistanceRow, events: &[NewEvent]) -> StoreResult<Vec<EventRow>> {
        self.hit("create_assistance");
        self.inner.create_assistance(request, events).await
    }
    async fn pending_assistance(&self, account: AccountId) -> StoreResult<Option<AssistanceRow>> {
        self.hit("pending_assistance");
        self.inner.pending_assistance(account).await
    }
    async fn assistance_by_id(&self, id: AssistanceRequestId) -> StoreResult<Option<AssistanceRow>> {
        self.hit("assistance_by_id");
        self.inner.assistance_by_id(id).await
    }
    async fn bump_assistance_attempts(
        &self,
        id: AssistanceRequestId,
        now: Timestamp,
        events: &EventsFor<'_>,
    ) -> StoreResult<Option<(AssistanceRow, Vec<EventRow>)>> {
        self.hit("bump_assistance_attempts");
        self.inner.bump_assistance_attempts(id, now, events).await
    }
    async fn close_assistance(
        &self,
        id: AssistanceRequestId,
        status: AssistanceStatus,
        reason: Option<&str>,
        now: Timestamp,
        events: &EventsFor<'_>,
    ) -> StoreResult<Option<(AssistanceRow, Vec<EventRow>)>> {
        self.hit("close_assistance");
        self.inner.close_assistance(id, status, reason, now, events).await
    }
    async fn close_all_pending_assistance(
        &self,
        status: AssistanceStatus,
        reason: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<AssistanceRow>> {
        self.hit("close_all_pending_assistance");
        self.inner.close_all_pending_assistance(status, reason, now).await
    }
    async fn engine_accounts(&self) -> StoreResult<Vec<EngineAccount>> {
        self.hit("engine_accounts");
        self.inner.engine_accounts().await
    }
    async fn engine_account(&self, id: AccountId) -> StoreResult<Option<EngineAccount>> {
        self.hit("engine_account");
        self.inner.engine_account(id).await
    }
    async fn set_scrape_block(&self, id: AccountId, block: Option<(Timestamp, &str)>) -> StoreResult<bool> {
        self.hit("set_scrape_block");
        self.inner.set_scrape_block(id, block).await
    }
    async fn insert_movements(
        &self,
        account: AccountId,
        movements: &[NewMovement],
        read_at: Timestamp,
    ) -> StoreResult<u64> {
        self.hit("insert_movements");
        self.inner.insert_movements(account, movements, read_at).await
    }
    async fn list_movements(
        &self,
        user: UserId,
        account: AccountId,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<MovementRow>> {
        self.hit("list_movements");
        self.inner.list_movements(user, account, limit, offset).await
    }
    async fn create_run(&self, run: &RunRow) -> StoreResult<()> {
        self.hit("create_run");
        self.inner.create_run(run).await
    }
    async fn finish_run(&self, run: &RunRow, events: &[NewEvent]) -> StoreResult<(bool, Vec<EventRow>)> {
        self.hit("finish_run");
        self.inner.finish_run(run, events).await
    }
    async fn list_runs(&self, user: UserId, account: AccountId, limit: i64, offset: i64) -> StoreResult<Vec<RunRow>> {
        self.hit("list_runs");
        self.inner.list_runs(user, account, limit, offset).await
    }
    async fn close_open_runs(&self, reason: &str, now: Timestamp) -> StoreResult<u64> {
        self.hit("close_open_runs");
        self.inner.close_open_runs(reason, now).await
    }
    async fn acquire_lease(
        &self,
        account: AccountId,
        owner: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool> {
        self.hit("acquire_lease");
        self.inner.acquire_lease(account, owner, until, now).await
    }
    async fn release_lease(&self, account: AccountId, owner: &str) -> StoreResult<bool> {
        self.hit("release_lease");
        self.inner.release_lease(account, owner).await
    }
    async fn record_events(&self, events: &[NewEvent]) -> StoreResult<Vec<EventRow>> {
        self.hit("record_events");
        self.inner.record_events(events).await
    }
    async fn list_events(
        &self,
        user: UserId,
        accounts: Option<&[AccountId]>,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<EventRow>> {
        self.hit("list_events");
        self.inner.list_events(user, accounts, after, limit).await
    }
    async fn last_event_seq(&self) -> StoreResult<i64> {
        self.hit("last_event_seq");
        self.inner.last_event_seq().await
    }
    async fn purge_events(&self, before: Timestamp) -> StoreResult<u64> {
        self.hit("purge_events");
        self.inner.purge_events(before).await
    }
    async fn claim_due_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
    ) -> StoreResult<Vec<DeliveryRow>> {
        self.hit("claim_due_deliveries");
        self.inner.claim_due_deliveries(now, lease_until, limit).await
    }
    async fn finish_delivery_attempt(&self, delivery: &DeliveryRow) -> StoreResult<bool> {
        self.hit("finish_delivery_attempt");
        self.inner.finish_delivery_attempt(delivery).await
    }
    async fn list_deliveries(
        &self,
        user: UserId,
        account: AccountId,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<DeliveryRow>> {
        self.hit("list_deliveries");
        self.inner.list_deliveries(user, account, limit, offset).await
    }
    async fn resend_delivery(
        &self,
        user: UserId,
        account: AccountId,
        id: DeliveryId,
        now: Timestamp,
    ) -> StoreResult<Option<DeliveryRow>> {
        self.hit("resend_delivery");
        self.inner.resend_delivery(user, account, id, now).await
    }
}

async fn check_last_event_seq(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let a = account(s, owner.id, &b).await;
    let before = s.last_event_seq().await.unwrap();
    let logged = s
        .record_events(&[
            event(owner.id, a.id, "session.started", now()),
            event(owner.id, a.id, "session.stopped", now()),
        ])
        .await
        .unwrap();
    let head = s.last_event_seq().await.unwrap();
    assert_eq!(head, logged[1].seq, "the head is the highest seq logged");
    assert!(head > before);
    // A stream starting at the head sees only what comes after it.
    assert!(s.list_events(owner.id, None, head, 100).await.unwrap().is_empty());
    let next = s
        .record_events(&[event(owner.id, a.id, "session.started", now())])
        .await
        .unwrap();
    assert_eq!(s.list_events(owner.id, None, head, 100).await.unwrap(), next);
    assert_eq!(s.last_event_seq().await.unwrap(), next[0].seq);
}
