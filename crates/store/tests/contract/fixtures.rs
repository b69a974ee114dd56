//! Row builders and helpers shared by the checks.

use std::sync::Mutex;

use chrono::Duration;
use reconbanker_store::*;
use uuid::Uuid;

pub fn uniq(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::new_v4().simple())
}

pub fn ms(n: i64) -> Duration {
    Duration::milliseconds(n)
}

/// Whether `r` is a conflict on `on` (the same variant on both backends).
pub fn conflict<T: std::fmt::Debug>(r: StoreResult<T>, on: Constraint) -> bool {
    matches!(&r, Err(e) if e.is_conflict_on(on))
}

pub fn user_row() -> UserRow {
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

pub async fn user(s: &dyn Store) -> UserRow {
    let u = user_row();
    s.create_user(&u).await.unwrap();
    u
}

pub fn bank_row() -> BankRow {
    BankRow {
        id: BankId::new(),
        code: uniq("bank"),
        name: "Test Bank".into(),
        login_url: Some("https://bank.example.test/login".into()),
        status: "active".into(),
        created_at: now(),
    }
}

pub async fn bank(s: &dyn Store) -> BankRow {
    let b = bank_row();
    s.create_bank(&b).await.unwrap();
    b
}

pub async fn account_at(s: &dyn Store, owner: UserId, bank: &BankRow, id: AccountId, at: Timestamp) -> AccountRow {
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

pub async fn account(s: &dyn Store, owner: UserId, bank: &BankRow) -> AccountRow {
    account_at(s, owner, bank, AccountId::new(), now()).await
}

pub fn key_row(owner: UserId, created_at: Timestamp) -> ApiKeyRow {
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

pub fn assistance_row(account: AccountId) -> AssistanceRow {
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

pub fn movement(external_id: &str, received_at: &str) -> NewMovement {
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
pub fn stored(account: AccountId, m: &NewMovement, read_at: Timestamp) -> MovementRow {
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
pub fn without_ids(rows: &[MovementRow]) -> Vec<MovementRow> {
    rows.iter()
        .map(|m| MovementRow {
            id: MovementId(Uuid::nil()),
            ..m.clone()
        })
        .collect()
}

pub fn run_row(account: AccountId, started_at: Timestamp) -> RunRow {
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
pub fn no_events(_: &AssistanceRow) -> Vec<NewEvent> {
    Vec::new()
}

/// An event to log, with a `data` document of its own and no deliveries.
pub fn event(owner: UserId, account: AccountId, kind: &str, occurred_at: Timestamp) -> NewEvent {
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
pub fn delivery(event_type: &str, due: Timestamp) -> NewDelivery {
    let id = DeliveryId::new();
    NewDelivery {
        id,
        event_type: event_type.into(),
        payload: format!(r#"{{"webhook":"{id}","type":"{event_type}","data":{{"n":1}}}}"#),
        request_id: None,
        next_attempt_at: due,
        channel: CHANNEL_NOTIFICATION.into(),
        subject_id: None,
    }
}

/// `e` carrying these deliveries.
pub fn delivering(e: NewEvent, deliveries: &[&NewDelivery]) -> NewEvent {
    NewEvent {
        deliveries: deliveries.iter().map(|d| (*d).clone()).collect(),
        ..e
    }
}

/// The row an event reads back as once logged under `seq`.
pub fn logged_as(e: &NewEvent, seq: i64) -> EventRow {
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
pub fn assert_logged(got: &[EventRow], want: &[NewEvent], after: i64) {
    assert_eq!(got.len(), want.len(), "logged {got:?}, expected {want:?}");
    let mut prev = after;
    for (g, w) in got.iter().zip(want) {
        assert!(g.seq > prev, "seq {} must come after {prev}: {got:?}", g.seq);
        assert_eq!(g, &logged_as(w, g.seq));
        prev = g.seq;
    }
}

/// The highest seq in `log` (0 when empty).
pub fn last_seq(log: &[EventRow]) -> i64 {
    log.last().map_or(0, |e| e.seq)
}

/// The whole log of a user, oldest first.
pub async fn events_of(s: &dyn Store, user: UserId) -> Vec<EventRow> {
    s.list_events(user, None, 0, 10_000).await.unwrap()
}

/// The row a delivery queued with `e` reads back as before any attempt.
pub fn queued(e: &NewEvent, d: &NewDelivery) -> DeliveryRow {
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
        channel: d.channel.clone(),
        subject_id: d.subject_id,
    }
}

/// [`queued`], claimed until `until`.
pub fn leased(e: &NewEvent, d: &NewDelivery, until: Timestamp) -> DeliveryRow {
    DeliveryRow {
        next_attempt_at: Some(until),
        ..queued(e, d)
    }
}

/// Deliveries in id order, to compare claims whatever order they come back in.
pub fn by_id(mut rows: Vec<DeliveryRow>) -> Vec<DeliveryRow> {
    rows.sort_by_key(|d| d.id);
    rows
}

/// A point far beyond anything the checks schedule.
pub fn far_future() -> Timestamp {
    now() + Duration::days(365 * 100)
}

/// An [`EventsFor`] that records each row it is called with and the events it returned for it:
/// an `assistance.<status>` event with a prompt delivery tied to the request, then an
/// `account.status` event without one, both at the row's `updated_at`.
pub struct Spy {
    owner: UserId,
    calls: Mutex<Vec<(AssistanceRow, Vec<NewEvent>)>>,
}

impl Spy {
    pub fn new(owner: UserId) -> Self {
        Self {
            owner,
            calls: Mutex::new(Vec::new()),
        }
    }

    pub fn events(&self, r: &AssistanceRow) -> Vec<NewEvent> {
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

    pub fn calls(&self) -> Vec<(AssistanceRow, Vec<NewEvent>)> {
        self.calls.lock().unwrap().clone()
    }
}
