//! Contract checks of the store's reconciliation passthrough methods (see the section markers in
//! `Store`): the forwarding decision `insert_movements` takes in the transaction that stores a
//! movement, `notify_movement`, and `commit_pass` writing nothing outside reconcile mode.

use std::sync::Mutex;

use chrono::Duration;
use reconbanker_store::*;

use crate::fixtures::*;
use crate::matching::{commit, commit_of, credit, matched, rfc3339};
use crate::reconcile::{order, poll, requests, success};

/// A named credit (`name` `None` = the bank showed no counterparty).
fn named(external_id: &str, amount: &str, name: Option<&str>) -> NewMovement {
    NewMovement {
        name: name.map(str::to_owned),
        ..credit(external_id, amount, "2026-05-13T15:30:00-03:00")
    }
}

/// A body builder that records what it was called with and answers `{"id":…,"settings":…}`
/// (nothing for a movement named `HOLD`).
#[derive(Default)]
struct Recorder(Mutex<Vec<(String, Option<String>)>>);

impl Recorder {
    fn build(&self, m: &MovementRow, settings: Option<&str>) -> Option<String> {
        self.0
            .lock()
            .unwrap()
            .push((m.external_id.clone(), settings.map(str::to_owned)));
        (m.name.as_deref() != Some("HOLD")).then(|| format!(r#"{{"id":"{}","amount":{}}}"#, m.id, m.amount))
    }

    fn calls(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().map(|(e, _)| e.clone()).collect()
    }
}

async fn user_in(s: &dyn Store, mode: Option<&str>) -> (UserRow, AccountRow) {
    let u = user(s).await;
    if let Some(mode) = mode {
        assert!(s.set_operation_mode(u.id, mode).await.unwrap());
    }
    let a = account(s, u.id, &bank(s).await).await;
    (u, a)
}

const SETTINGS: &str = r#"{"webhook_url":"https://hooks.example.test/r","webhook_extra_fields":{"shop":"eu-1"}}"#;

async fn configure(s: &dyn Store, u: &UserRow, a: &AccountRow) {
    let config = AccountConfigRow {
        account_id: a.id,
        settings: SETTINGS.into(),
        secrets: None,
        updated_at: now(),
    };
    assert!(s.put_account_config(u.id, &config).await.unwrap());
}

/// The account's `bank_movement` deliveries, by movement id.
async fn forwarded(s: &dyn Store, u: &UserRow, a: &AccountRow) -> Vec<DeliveryRow> {
    let mut all: Vec<DeliveryRow> = s
        .list_deliveries(u.id, a.id, 500, 0)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.event_type == BANK_MOVEMENT)
        .collect();
    all.sort_by_key(|d| d.created_at);
    all
}

async fn movement_id(s: &dyn Store, u: &UserRow, a: &AccountRow, external_id: &str) -> MovementId {
    s.list_movements(u.id, a.id, 500, 0)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.external_id == external_id)
        .unwrap()
        .id
}

pub async fn check_insert_movements_forwards_in_passthrough(s: &dyn Store) {
    let (u, a) = user_in(s, Some("passthrough")).await;
    configure(s, &u, &a).await;
    let rec = Recorder::default();
    let build = |m: &MovementRow, settings: Option<&str>| rec.build(m, settings);
    let t1 = now();

    // The first read is the baseline: stored (and reconciliation work), never forwarded.
    let history = [named("h1", "10.00", Some("ANA")), named("h2", "-5.00", None)];
    assert_eq!(s.insert_movements(a.id, &history, t1, &build).await.unwrap(), 2);
    assert!(rec.calls().is_empty());
    assert!(forwarded(s, &u, &a).await.is_empty());
    assert_eq!(s.reconcile_state(a.id).await.unwrap().unwrap().dirty_seq, 1);

    // A later read: each new movement with a non-blank name is forwarded, in the order read;
    // known ones, unnamed and blank-named ones are not; the builder may decline (`HOLD`).
    let t2 = t1 + Duration::seconds(60);
    let read = [
        history[0].clone(),
        named("n1", "1500", Some("JUAN PEREZ")),
        named("n2", "3.00", None),
        named("n3", "4.00", Some(" \t ")),
        named("n4", "-12.34", Some("ACME SA")),
        named("n5", "6.00", Some("HOLD")),
        named("n1", "1500", Some("JUAN PEREZ")),
    ];
    assert_eq!(s.insert_movements(a.id, &read, t2, &build).await.unwrap(), 5);
    assert_eq!(
        rec.calls(),
        vec!["n1", "n4", "n5"],
        "only named new movements reach the builder"
    );
    assert!(
        rec.0
            .lock()
            .unwrap()
            .iter()
            .all(|(_, st)| st.as_deref() == Some(SETTINGS)),
        "the builder gets the account's settings as stored"
    );
    let got = forwarded(s, &u, &a).await;
    let (n1, n4) = (movement_id(s, &u, &a, "n1").await, movement_id(s, &u, &a, "n4").await);
    let subjects: Vec<_> = got.iter().map(|d| d.subject_id).collect();
    assert_eq!(subjects.len(), 2, "{got:?}");
    assert!(subjects.contains(&Some(n1.0)) && subjects.contains(&Some(n4.0)));
    for d in &got {
        let m = d.subject_id.unwrap();
        assert_eq!(d.account_id, a.id);
        assert_eq!(d.channel, CHANNEL_RESULT);
        assert_eq!(d.event_type, BANK_MOVEMENT);
        assert_eq!(d.event_id, m, "no event is logged: the movement is the cause");
        assert_eq!(d.status, "pending");
        assert_eq!(d.attempts, 0);
        assert_eq!((d.created_at, d.next_attempt_at), (t2, Some(t2)));
        assert_eq!(d.request_id, None);
        let amount = if m == n1.0 { "1500" } else { "-12.34" };
        assert_eq!(d.payload, format!(r#"{{"id":"{m}","amount":{amount}}}"#));
    }
    // Due at once, and claimed like any result delivery.
    let claimed = s
        .claim_due_deliveries(t2, t2 + Duration::minutes(2), 10, "instance-a")
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);

    // Read again: nothing new, nothing forwarded twice.
    let before = rec.calls().len();
    assert_eq!(s.insert_movements(a.id, &read, t2, &build).await.unwrap(), 0);
    assert_eq!(rec.calls().len(), before);
    assert_eq!(forwarded(s, &u, &a).await.len(), 2);

    // A first read with nothing in it is still the first read.
    let (u2, b) = user_in(s, Some("passthrough")).await;
    assert_eq!(s.insert_movements(b.id, &[], t1, &build).await.unwrap(), 0);
    assert_eq!(
        s.insert_movements(b.id, &[named("x1", "1.00", Some("ANA"))], t2, &build)
            .await
            .unwrap(),
        1
    );
    let got = forwarded(s, &u2, &b).await;
    assert_eq!(got.len(), 1);
    assert_eq!(amount_of(&got[0]), Some("1.00"));

    // Reconcile mode, or no mode: stored, never forwarded (the builder is not even asked).
    for mode in [Some("reconcile"), None] {
        let (u, a) = user_in(s, mode).await;
        let calls = rec.calls().len();
        s.insert_movements(a.id, &[named("r1", "1.00", Some("ANA"))], t1, &build)
            .await
            .unwrap();
        assert_eq!(
            s.insert_movements(a.id, &[named("r2", "2.00", Some("ANA"))], t2, &build)
                .await
                .unwrap(),
            1
        );
        assert_eq!(rec.calls().len(), calls, "{mode:?}");
        assert!(forwarded(s, &u, &a).await.is_empty(), "{mode:?}");
    }

    // The mode is read when the movement is stored: read in reconcile mode, then switched.
    let (u3, c) = user_in(s, Some("reconcile")).await;
    s.insert_movements(c.id, &[named("c1", "1.00", Some("ANA"))], t1, &build)
        .await
        .unwrap();
    s.insert_movements(c.id, &[named("c2", "2.00", Some("ANA"))], t1, &build)
        .await
        .unwrap();
    assert!(s.set_operation_mode(u3.id, "passthrough").await.unwrap());
    s.insert_movements(c.id, &[named("c3", "3.00", Some("ANA"))], t2, &build)
        .await
        .unwrap();
    let got = forwarded(s, &u3, &c).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].subject_id, Some(movement_id(s, &u3, &c, "c3").await.0));
    assert_eq!(amount_of(&got[0]), Some("3.00"));

    // `never_forward` forwards nothing, first read or not.
    let (u4, d) = user_in(s, Some("passthrough")).await;
    s.insert_movements(d.id, &[], t1, &never_forward).await.unwrap();
    s.insert_movements(d.id, &[named("d1", "1.00", Some("ANA"))], t2, &never_forward)
        .await
        .unwrap();
    assert!(forwarded(s, &u4, &d).await.is_empty());

    // Nothing forwarded when the store refuses the read (unknown account).
    let r = s
        .insert_movements(AccountId::new(), &[named("z", "1.00", Some("ANA"))], t2, &build)
        .await;
    assert!(matches!(r, Err(StoreError::Database(_))), "{r:?}");
}

/// The `amount` of a recorder body.
fn amount_of(d: &DeliveryRow) -> Option<&str> {
    d.payload.split(r#""amount":"#).nth(1)?.strip_suffix('}')
}

pub async fn check_notify_movement(s: &dyn Store) {
    let (u, a) = user_in(s, Some("passthrough")).await;
    configure(s, &u, &a).await;
    let rec = Recorder::default();
    let build = |m: &MovementRow, settings: Option<&str>| rec.build(m, settings);
    let t1 = now();
    // The baseline: nothing forwarded, but each can be sent by hand.
    let history = [
        named("h1", "10.00", Some("ANA")),
        named("h2", "-5.00", None),
        named("h3", "7.00", Some("  ")),
        named("h4", "8.00", Some("HOLD")),
    ];
    s.insert_movements(a.id, &history, t1, &build).await.unwrap();
    let [h1, h2, h3, h4] = [
        movement_id(s, &u, &a, "h1").await,
        movement_id(s, &u, &a, "h2").await,
        movement_id(s, &u, &a, "h3").await,
        movement_id(s, &u, &a, "h4").await,
    ];
    assert!(forwarded(s, &u, &a).await.is_empty());

    // None yet: one is created, due now, with the builder's body.
    let t2 = t1 + Duration::seconds(30);
    let Some(MovementNotify::Queued(d)) = s.notify_movement(u.id, a.id, h1, t2, &build).await.unwrap() else {
        panic!("queued")
    };
    assert_eq!(
        rec.0.lock().unwrap().last().cloned(),
        Some(("h1".into(), Some(SETTINGS.into())))
    );
    assert_eq!(
        (
            d.account_id,
            d.subject_id,
            d.event_id,
            d.channel.as_str(),
            d.event_type.as_str()
        ),
        (a.id, Some(h1.0), h1.0, CHANNEL_RESULT, BANK_MOVEMENT)
    );
    assert_eq!(
        (d.status.as_str(), d.attempts, d.created_at, d.next_attempt_at),
        ("pending", 0, t2, Some(t2))
    );
    assert_eq!(d.payload, format!(r#"{{"id":"{h1}","amount":10.00}}"#));
    assert_eq!(forwarded(s, &u, &a).await, vec![(*d).clone()]);

    // Sent (and failed once, then delivered): queued again, same delivery, attempts kept, the
    // body as frozen (the builder is not asked again).
    let mut sent = (*d).clone();
    sent.status = "delivered".into();
    sent.attempts = 2;
    sent.next_attempt_at = None;
    sent.last_attempt_at = Some(t2);
    sent.delivered_at = Some(t2);
    assert!(s.finish_delivery_attempt(&sent).await.unwrap());
    let calls = rec.calls().len();
    let t3 = t2 + Duration::seconds(30);
    let Some(MovementNotify::Queued(again)) = s.notify_movement(u.id, a.id, h1, t3, &build).await.unwrap() else {
        panic!("queued again")
    };
    assert_eq!(rec.calls().len(), calls);
    assert_eq!(again.id, d.id);
    assert_eq!(
        (again.status.as_str(), again.next_attempt_at, again.attempts),
        ("pending", Some(t3), 2)
    );
    assert_eq!(again.payload, d.payload);
    assert_eq!(forwarded(s, &u, &a).await.len(), 1, "never a second delivery");

    // No sender name.
    for m in [h2, h3] {
        assert_eq!(
            s.notify_movement(u.id, a.id, m, t3, &build).await.unwrap(),
            Some(MovementNotify::NoSenderName)
        );
    }
    // The builder declines: nothing written.
    assert_eq!(
        s.notify_movement(u.id, a.id, h4, t3, &build).await.unwrap(),
        Some(MovementNotify::NothingToSend)
    );
    assert_eq!(forwarded(s, &u, &a).await.len(), 1);

    // A movement forwarded when stored: its delivery is the one queued again.
    s.insert_movements(a.id, &[named("n1", "2.00", Some("LUIS"))], t3, &build)
        .await
        .unwrap();
    let n1 = movement_id(s, &u, &a, "n1").await;
    let stored = forwarded(s, &u, &a).await;
    let first = stored.iter().find(|d| d.subject_id == Some(n1.0)).unwrap().clone();
    let Some(MovementNotify::Queued(again)) = s.notify_movement(u.id, a.id, n1, t3, &build).await.unwrap() else {
        panic!("queued")
    };
    assert_eq!(again.id, first.id);

    // Tenancy: another user, another account of the same user, unknown ids are all `None`.
    let stranger = user(s).await;
    assert!(s.set_operation_mode(stranger.id, "passthrough").await.unwrap());
    assert_eq!(
        s.notify_movement(stranger.id, a.id, h1, t3, &build).await.unwrap(),
        None
    );
    let other = account(s, u.id, &bank(s).await).await;
    assert_eq!(s.notify_movement(u.id, other.id, h1, t3, &build).await.unwrap(), None);
    assert_eq!(
        s.notify_movement(u.id, a.id, MovementId::new(), t3, &build)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.notify_movement(u.id, AccountId::new(), h1, t3, &build).await.unwrap(),
        None
    );

    // Not in passthrough mode: refused, nothing changes.
    let before = forwarded(s, &u, &a).await;
    assert!(s.set_operation_mode(u.id, "reconcile").await.unwrap());
    for m in [h1, h2, h4] {
        assert_eq!(
            s.notify_movement(u.id, a.id, m, t3 + Duration::seconds(1), &build)
                .await
                .unwrap(),
            Some(MovementNotify::NotPassthrough)
        );
    }
    let (nobody, na) = user_in(s, None).await;
    s.insert_movements(na.id, &[named("q", "1.00", Some("ANA"))], t1, &build)
        .await
        .unwrap();
    let q = movement_id(s, &nobody, &na, "q").await;
    assert_eq!(
        s.notify_movement(nobody.id, na.id, q, t3, &build).await.unwrap(),
        Some(MovementNotify::NotPassthrough)
    );
    assert_eq!(forwarded(s, &u, &a).await, before);
}

pub async fn check_commit_pass_outside_reconcile_mode(s: &dyn Store) {
    let u = user(s).await;
    assert!(s.set_operation_mode(u.id, "reconcile").await.unwrap());
    let a = account(s, u.id, &bank(s).await).await;
    let t = now();
    poll(s, u.id, a.id, &success(vec![order("A", "10.00")], &[], t)).await;
    let at = rfc3339(t + Duration::minutes(1));
    s.insert_movements(a.id, &[credit("m10", "10.00", &at)], t, &never_forward)
        .await
        .unwrap();
    let input = s.load_pass(a.id, t - Duration::days(5)).await.unwrap();
    let mut c = commit_of("movements");
    c.matched.push(matched(&input.requests[0], &input.movements[0]));

    // The owner switched to passthrough after the pass read: nothing is committed, no result
    // webhook is written, the account stays dirty.
    assert!(s.set_operation_mode(u.id, "passthrough").await.unwrap());
    assert_eq!(commit(s, u.id, a.id, &input, &c, t).await, None);
    let st = s.reconcile_state(a.id).await.unwrap().unwrap();
    assert_eq!((st.version, st.done_seq), (input.version, 0));
    assert!(st.dirty_seq > st.done_seq);
    assert_eq!(requests(s, u.id, a.id).await[0].status, ConciliationStatus::Pending);
    assert!(s.list_deliveries(u.id, a.id, 100, 0).await.unwrap().is_empty());
    assert!(
        s.dirty_accounts(100).await.unwrap().is_empty(),
        "held back in passthrough"
    );

    // Back in reconcile mode: listed again, and the same pass commits.
    assert!(s.set_operation_mode(u.id, "reconcile").await.unwrap());
    assert_eq!(s.dirty_accounts(100).await.unwrap(), vec![(a.id, st.dirty_seq)]);
    assert!(commit(s, u.id, a.id, &input, &c, t).await.is_some());
    assert_eq!(requests(s, u.id, a.id).await[0].status, ConciliationStatus::Matched);
    assert_eq!(s.list_deliveries(u.id, a.id, 100, 0).await.unwrap().len(), 1);
}

pub async fn check_finish_poll_outside_reconcile_mode(s: &dyn Store) {
    let u = user(s).await;
    assert!(s.set_operation_mode(u.id, "reconcile").await.unwrap());
    let a = account(s, u.id, &bank(s).await).await;
    let t = now();
    poll(
        s,
        u.id,
        a.id,
        &success(vec![order("A", "10.00"), order("B", "20.00")], &[], t),
    )
    .await;
    let before = requests(s, u.id, a.id).await;
    let state = s.reconcile_state(a.id).await.unwrap().unwrap();

    // A poll that began in reconcile mode ends after a switch to passthrough: recorded as
    // superseded, nothing applied (an empty list would cancel both), lease given up, not
    // rescheduled.
    let t2 = t + Duration::minutes(10);
    let seq = s
        .begin_poll(a.id, "me", t2, t2 + Duration::seconds(45))
        .await
        .unwrap()
        .unwrap();
    assert!(s.set_operation_mode(u.id, "passthrough").await.unwrap());
    let (row, logged) = s
        .finish_poll(
            a.id,
            "me",
            seq,
            &success(vec![], &[], t2),
            t2,
            120 * 3600 * 1000,
            &|_| t2 + Duration::minutes(10),
            &|_| unreachable!("no event outside reconcile mode"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(row.outcome, "superseded");
    assert!(logged.is_empty());
    assert_eq!(requests(s, u.id, a.id).await, before);
    let st = s.reconcile_state(a.id).await.unwrap().unwrap();
    assert_eq!(
        (st.poll_seq_applied, st.next_poll_at, st.version, st.dirty_seq),
        (
            state.poll_seq_applied,
            state.next_poll_at,
            state.version,
            state.dirty_seq
        )
    );
    assert_eq!((st.poll_lease_owner, st.poll_lease_until), (None, None));

    // Back in reconcile mode, the next poll applies.
    assert!(s.set_operation_mode(u.id, "reconcile").await.unwrap());
    let (row, _) = poll(s, u.id, a.id, &success(vec![], &[], t2 + Duration::seconds(1))).await;
    assert_eq!((row.outcome.as_str(), row.counts.cancelled), ("succeeded", 2));
}
