//! Reconciliation: polls of the customer's pending-orders endpoint, the requests they register,
//! update and cancel, the poll log, the per-account poll state and lease, and reading requests.

use chrono::Duration;
use reconbanker_store::*;

use crate::fixtures::*;

pub const OWNER: &str = "instance-a";
pub const FIVE_DAYS_MS: i64 = 5 * 24 * 3600 * 1000;

pub fn order(external_id: &str, amount: &str) -> PollOrder {
    PollOrder {
        external_id: external_id.into(),
        amount: amount.into(),
        currency: "EUR".into(),
        sender_name: "Juan Perez".into(),
        reference: None,
    }
}

/// A successful report listing `orders` (all present) and `also_present` (invalid items).
pub fn success(orders: Vec<PollOrder>, also_present: &[&str], at: Timestamp) -> PollReport {
    PollReport {
        started_at: at - ms(20),
        finished_at: at,
        error: None,
        http_status: Some(200),
        bytes: 1234,
        pages: 1,
        issues: if also_present.is_empty() {
            "[]".into()
        } else {
            r#"[{"index":9,"code":"bad_amount"}]"#.into()
        },
        result: Some(PollSuccess {
            orders,
            also_present: also_present.iter().map(|s| s.to_string()).collect(),
            invalid: i64::try_from(also_present.len()).unwrap(),
        }),
    }
}

pub fn failure(code: &str, at: Timestamp) -> PollReport {
    PollReport {
        started_at: at - ms(20),
        finished_at: at,
        error: Some(code.into()),
        http_status: if code == "http_status" { Some(503) } else { None },
        bytes: 0,
        pages: 0,
        issues: "[]".into(),
        result: None,
    }
}

/// The next poll: 30 s per failure, else 10 minutes, after `at`.
pub fn schedule(at: Timestamp) -> impl Fn(i64) -> Timestamp + Send + Sync {
    move |failures| {
        if failures == 0 {
            at + Duration::minutes(10)
        } else {
            at + Duration::seconds(30 * failures)
        }
    }
}

/// The event the server would log: `conciliation.<what>` / `poll.<what>`, its data naming the
/// request (external id, generation, status) or the failure.
pub fn event_for(owner: UserId, account: AccountId, at: Timestamp, e: ConciliationEvent<'_>) -> NewEvent {
    let (kind, data) = match e {
        ConciliationEvent::Registered(r) => ("conciliation.registered", describe(r)),
        ConciliationEvent::Reopened(r) => ("conciliation.reopened", describe(r)),
        ConciliationEvent::Updated(r) => ("conciliation.updated", describe(r)),
        ConciliationEvent::Cancelled(r) => ("conciliation.cancelled", describe(r)),
        ConciliationEvent::PollFailed { error, failures } => {
            ("poll.failed", format!(r#"{{"error":"{error}","failures":{failures}}}"#))
        }
        ConciliationEvent::PollRecovered => ("poll.recovered", "{}".to_string()),
    };
    NewEvent {
        data,
        ..event(owner, account, kind, at)
    }
}

fn describe(r: &ConciliationRow) -> String {
    format!(
        r#"{{"external_id":"{}","generation":{},"status":"{}","amount":"{}","reason":{}}}"#,
        r.external_id,
        r.generation,
        r.status.as_str(),
        r.amount,
        r.reason.as_deref().map_or("null".to_string(), |x| format!(r#""{x}""#))
    )
}

/// `(kind, data)` of logged events.
pub fn kinds(logged: &[EventRow]) -> Vec<(String, String)> {
    logged.iter().map(|e| (e.kind.clone(), e.data.clone())).collect()
}

/// Takes the lease and finishes a poll with `report` at its `finished_at`.
pub async fn poll(s: &dyn Store, owner: UserId, account: AccountId, report: &PollReport) -> (PollRow, Vec<EventRow>) {
    poll_at(s, owner, account, report, report.finished_at, None).await
}

/// Takes the lease and finishes a poll with `report` at `at`, with `pass` in its transaction
/// when given.
pub async fn poll_at(
    s: &dyn Store,
    owner: UserId,
    account: AccountId,
    report: &PollReport,
    at: Timestamp,
    pass: Option<&PollPass<'_>>,
) -> (PollRow, Vec<EventRow>) {
    let seq = s
        .begin_poll(account, OWNER, at - ms(30), at + Duration::seconds(45))
        .await
        .unwrap()
        .expect("lease free");
    s.finish_poll(
        account,
        OWNER,
        seq,
        report,
        at,
        FIVE_DAYS_MS,
        &schedule(at),
        &|e| event_for(owner, account, at, e),
        pass,
    )
    .await
    .unwrap()
}

/// The account's requests (as the owner lists them), oldest registration first.
pub async fn requests(s: &dyn Store, owner: UserId, account: AccountId) -> Vec<ConciliationRow> {
    let filter = ConciliationFilter {
        account: Some(account),
        ..ConciliationFilter::default()
    };
    let mut rows: Vec<_> = s
        .list_conciliation(owner, &filter, 100_000, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.request)
        .collect();
    rows.reverse();
    rows
}

pub fn live<'a>(rows: &'a [ConciliationRow], external_id: &str) -> &'a ConciliationRow {
    let live: Vec<_> = rows
        .iter()
        .filter(|r| {
            r.external_id == external_id
                && !matches!(r.status, ConciliationStatus::Cancelled | ConciliationStatus::Expired)
        })
        .collect();
    assert_eq!(live.len(), 1, "one live row for {external_id}: {rows:?}");
    live[0]
}

pub async fn reconcile_user(s: &dyn Store) -> (UserRow, AccountRow) {
    let u = user(s).await;
    assert!(s.set_operation_mode(u.id, "reconcile").await.unwrap());
    let b = bank(s).await;
    let a = account(s, u.id, &b).await;
    (u, a)
}

pub async fn check_poll_registers_updates_and_cancels(s: &dyn Store) {
    let (u, a) = reconcile_user(s).await;
    assert_eq!(s.reconcile_state(a.id).await.unwrap(), None);

    // Registration: a new order is pending, registered now, expiring in five days.
    let t1 = now();
    let report = success(
        vec![
            order("A-1", "1500.00"),
            order("A-2", "20.50"),
            PollOrder {
                reference: Some("INV-3".into()),
                ..order("A-3", "7.00")
            },
        ],
        &["BROKEN"],
        t1,
    );
    let (row, logged) = poll(s, u.id, a.id, &report).await;
    assert_eq!(row.outcome, "succeeded");
    assert_eq!(row.seq, 1);
    assert_eq!(row.error, None);
    assert_eq!(row.http_status, Some(200));
    assert_eq!((row.bytes, row.pages), (1234, 1));
    assert_eq!(row.issues, report.issues);
    assert_eq!((row.started_at, row.finished_at), (report.started_at, t1));
    assert_eq!(
        row.counts,
        PollCounts {
            orders_seen: 4,
            registered: 3,
            invalid: 1,
            ..PollCounts::default()
        }
    );
    assert_eq!(s.list_polls(u.id, a.id, 10, 0).await.unwrap(), vec![row.clone()]);
    let rows = requests(s, u.id, a.id).await;
    assert_eq!(rows.len(), 3);
    let a1 = live(&rows, "A-1").clone();
    assert_eq!(
        a1,
        ConciliationRow {
            id: a1.id,
            account_id: a.id,
            external_id: "A-1".into(),
            generation: 1,
            amount: "1500.00".into(),
            currency: "EUR".into(),
            sender_name: "Juan Perez".into(),
            reference: None,
            status: ConciliationStatus::Pending,
            reason: None,
            registered_at: t1,
            expires_at: t1 + ms(FIVE_DAYS_MS),
            last_seen_at: t1,
            absent_since_close: false,
            eval_errors: 0,
            attempt_count: 0,
            last_candidates: None,
            closed_at: None,
            updated_at: t1,
        }
    );
    assert_eq!(live(&rows, "A-3").reference.as_deref(), Some("INV-3"));
    let k = kinds(&logged);
    assert_eq!(k.len(), 3);
    assert!(k.iter().all(|(kind, _)| kind == "conciliation.registered"), "{k:?}");
    assert!(k[0]
        .1
        .contains(r#""external_id":"A-1","generation":1,"status":"pending""#));
    assert_eq!(events_of(s, u.id).await, logged);
    let st = s.reconcile_state(a.id).await.unwrap().unwrap();
    assert_eq!((st.poll_seq_issued, st.poll_seq_applied, st.poll_failures), (1, 1, 0));
    assert_eq!((st.dirty_seq, st.version), (1, 1));
    assert_eq!(st.next_poll_at, Some(t1 + Duration::minutes(10)));
    assert_eq!(
        (st.poll_lease_owner, st.poll_lease_until),
        (None, None),
        "lease released"
    );

    // The same list again: only seen again.
    let t2 = t1 + Duration::minutes(10);
    let (row, logged) = poll(
        s,
        u.id,
        a.id,
        &success(report.result.clone().unwrap().orders, &["BROKEN"], t2),
    )
    .await;
    assert_eq!(
        row.counts,
        PollCounts {
            orders_seen: 4,
            invalid: 1,
            ..PollCounts::default()
        }
    );
    assert_eq!(logged, vec![]);
    let rows = requests(s, u.id, a.id).await;
    assert_eq!(
        live(&rows, "A-1"),
        &ConciliationRow {
            last_seen_at: t2,
            ..a1.clone()
        }
    );
    let st = s.reconcile_state(a.id).await.unwrap().unwrap();
    assert_eq!((st.dirty_seq, st.poll_seq_applied), (1, 2), "nothing to match again");

    // Amount, name and reference changes: updated back to pending; A-2 is absent (cancelled),
    // BROKEN is still present only as an invalid item (never cancelled by that).
    let t3 = t2 + Duration::minutes(10);
    let orders = vec![
        order("A-1", "1600.00"),
        PollOrder {
            sender_name: "Maria Perez".into(),
            ..order("A-3", "7.00")
        },
        order("A-4", "1.00"),
        order("A-4", "2.00"),
    ];
    // The duplicate A-4 is present once.
    let report = success(orders, &["BROKEN"], t3);
    let (row, logged) = poll(s, u.id, a.id, &report).await;
    assert_eq!(
        row.counts,
        PollCounts {
            orders_seen: 4,
            registered: 1,
            updated: 2,
            cancelled: 1,
            invalid: 1,
            ..PollCounts::default()
        }
    );
    let k = kinds(&logged);
    let names: Vec<&str> = k.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(
        names,
        [
            "conciliation.updated",
            "conciliation.updated",
            "conciliation.registered",
            "conciliation.cancelled"
        ]
    );
    assert!(k[0]
        .1
        .contains(r#""external_id":"A-1","generation":1,"status":"pending","amount":"1600.00""#));
    assert!(k[3]
        .1
        .contains(r#""external_id":"A-2","generation":1,"status":"cancelled""#));
    assert!(k[3].1.contains(r#""reason":"absent_from_pending_list""#));
    let rows = requests(s, u.id, a.id).await;
    assert_eq!(
        live(&rows, "A-1"),
        &ConciliationRow {
            amount: "1600.00".into(),
            last_seen_at: t3,
            updated_at: t3,
            ..a1.clone()
        }
    );
    assert_eq!(live(&rows, "A-3").sender_name, "Maria Perez");
    assert_eq!(live(&rows, "A-4").amount, "1.00", "the first occurrence counts");
    let a2: Vec<_> = rows.iter().filter(|r| r.external_id == "A-2").collect();
    assert_eq!(a2.len(), 1);
    assert_eq!(a2[0].status, ConciliationStatus::Cancelled);
    assert_eq!(a2[0].reason.as_deref(), Some("absent_from_pending_list"));
    assert_eq!(a2[0].closed_at, Some(t3));
    assert_eq!(a2[0].last_seen_at, t2);
    let st = s.reconcile_state(a.id).await.unwrap().unwrap();
    assert_eq!(st.dirty_seq, 2);

    // A cancelled order listed again: generation 2 (reopened), the old row stays as history.
    let t4 = t3 + Duration::minutes(10);
    let orders = vec![
        order("A-1", "1600.00"),
        PollOrder {
            sender_name: "Maria Perez".into(),
            ..order("A-3", "7.00")
        },
        order("A-4", "1.00"),
        order("A-2", "20.50"),
    ];
    let (row, logged) = poll(s, u.id, a.id, &success(orders, &[], t4)).await;
    assert_eq!(
        row.counts,
        PollCounts {
            orders_seen: 4,
            reopened: 1,
            ..PollCounts::default()
        }
    );
    let k = kinds(&logged);
    assert_eq!(k.len(), 1);
    assert_eq!(k[0].0, "conciliation.reopened");
    assert!(k[0]
        .1
        .contains(r#""external_id":"A-2","generation":2,"status":"pending""#));
    let rows = requests(s, u.id, a.id).await;
    let again = live(&rows, "A-2");
    assert_eq!(
        (again.generation, again.registered_at, again.expires_at),
        (2, t4, t4 + ms(FIVE_DAYS_MS))
    );
    assert_ne!(again.id, a2[0].id);
    assert_eq!(rows.iter().filter(|r| r.external_id == "A-2").count(), 2);

    // An empty list cancels every open request.
    let t5 = t4 + Duration::minutes(10);
    let (row, logged) = poll(s, u.id, a.id, &success(vec![], &[], t5)).await;
    assert_eq!(row.counts.cancelled, 4);
    assert_eq!(row.counts.orders_seen, 0);
    assert_eq!(logged.len(), 4);
    let rows = requests(s, u.id, a.id).await;
    assert!(
        rows.iter().all(|r| r.status == ConciliationStatus::Cancelled),
        "{rows:?}"
    );
    let polls = s.list_polls(u.id, a.id, 100, 0).await.unwrap();
    assert_eq!(
        polls.iter().map(|p| p.seq).collect::<Vec<_>>(),
        [5, 4, 3, 2, 1],
        "newest first"
    );
    assert_eq!(s.list_polls(u.id, a.id, 2, 1).await.unwrap(), polls[1..3].to_vec());
    let st = s.reconcile_state(a.id).await.unwrap().unwrap();
    assert_eq!((st.dirty_seq, st.version, st.poll_seq_applied), (4, 5, 5));
}

pub async fn check_poll_stale_is_superseded(s: &dyn Store) {
    let (u, a) = reconcile_user(s).await;
    let t = now();
    let old = s
        .begin_poll(a.id, OWNER, t, t + Duration::seconds(45))
        .await
        .unwrap()
        .unwrap();
    let new = s
        .begin_poll(a.id, OWNER, t, t + Duration::seconds(45))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((old, new), (1, 2), "the same owner renews and gets the next seq");
    let ev = |e: ConciliationEvent<'_>| event_for(u.id, a.id, t, e);
    let (applied, logged) = s
        .finish_poll(
            a.id,
            OWNER,
            new,
            &success(vec![order("X", "5.00")], &[], t),
            t,
            FIVE_DAYS_MS,
            &schedule(t),
            &ev,
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        (applied.outcome.as_str(), applied.counts.registered, logged.len()),
        ("succeeded", 1, 1)
    );
    let before = s.reconcile_state(a.id).await.unwrap().unwrap();
    let rows_before = requests(s, u.id, a.id).await;

    // The older response arrives late: logged as superseded, nothing else changes (it would
    // have cancelled X and registered Y).
    let late = t + ms(500);
    let (stale, logged) = s
        .finish_poll(
            a.id,
            OWNER,
            old,
            &success(vec![order("Y", "6.00")], &[], late),
            late,
            FIVE_DAYS_MS,
            &schedule(late),
            &ev,
            None,
        )
        .await
        .unwrap();
    assert_eq!(stale.outcome, "superseded");
    assert_eq!(stale.seq, 1);
    assert_eq!(stale.counts, PollCounts::default());
    assert_eq!(logged, vec![]);
    assert_eq!(requests(s, u.id, a.id).await, rows_before);
    assert_eq!(s.reconcile_state(a.id).await.unwrap().unwrap(), before);
    // The same seq twice is stale too.
    let (dup, _) = s
        .finish_poll(
            a.id,
            OWNER,
            new,
            &success(vec![], &[], late),
            late,
            FIVE_DAYS_MS,
            &schedule(late),
            &ev,
            None,
        )
        .await
        .unwrap();
    assert_eq!(dup.outcome, "superseded");
    assert_eq!(requests(s, u.id, a.id).await, rows_before);
    let outcomes: Vec<_> = s
        .list_polls(u.id, a.id, 10, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.outcome)
        .collect();
    assert_eq!(outcomes, ["superseded", "superseded", "succeeded"]);
}

pub async fn check_poll_failures_and_recovery(s: &dyn Store) {
    let (u, a) = reconcile_user(s).await;
    let t0 = now();
    poll(s, u.id, a.id, &success(vec![order("K", "1.00")], &[], t0)).await;
    let rows_before = requests(s, u.id, a.id).await;
    let mut t = t0;
    let mut failed_events = Vec::new();
    for n in 1..=5 {
        t += Duration::seconds(30);
        let code = if n == 3 { "http_status" } else { "timeout" };
        let (row, logged) = poll(s, u.id, a.id, &failure(code, t)).await;
        assert_eq!(row.outcome, "failed");
        assert_eq!(row.error.as_deref(), Some(code));
        assert_eq!(row.counts, PollCounts::default());
        let st = s.reconcile_state(a.id).await.unwrap().unwrap();
        assert_eq!(st.poll_failures, n);
        assert_eq!(
            st.next_poll_at,
            Some(t + Duration::seconds(30 * n)),
            "next_poll(failures)"
        );
        assert_eq!(
            (st.poll_seq_applied, st.dirty_seq, st.version),
            (1, 1, 1),
            "a failure changes nothing"
        );
        assert_eq!(st.poll_lease_owner, None);
        failed_events.extend(kinds(&logged));
    }
    assert_eq!(
        failed_events,
        vec![(
            "poll.failed".to_string(),
            r#"{"error":"http_status","failures":3}"#.to_string()
        )],
        "once per streak, at the third"
    );
    let polls = s.list_polls(u.id, a.id, 10, 0).await.unwrap();
    assert_eq!(polls[2].http_status, Some(503), "the third failure, recorded");
    assert_eq!(polls[0].http_status, None);
    assert_eq!(
        requests(s, u.id, a.id).await,
        rows_before,
        "a failed poll cancels nothing"
    );

    // The first success after the streak: recovered, the streak reset.
    t += Duration::seconds(30);
    let (row, logged) = poll(s, u.id, a.id, &success(vec![order("K", "1.00")], &[], t)).await;
    assert_eq!(row.outcome, "succeeded");
    assert_eq!(kinds(&logged), vec![("poll.recovered".to_string(), "{}".to_string())]);
    let st = s.reconcile_state(a.id).await.unwrap().unwrap();
    assert_eq!(
        (st.poll_failures, st.next_poll_at),
        (0, Some(t + Duration::minutes(10)))
    );
    // A short streak neither fails nor recovers.
    for _ in 0..2 {
        t += Duration::seconds(30);
        let (_, logged) = poll(s, u.id, a.id, &failure("timeout", t)).await;
        assert_eq!(logged, vec![]);
    }
    t += Duration::seconds(30);
    let (_, logged) = poll(s, u.id, a.id, &success(vec![order("K", "1.00")], &[], t)).await;
    assert_eq!(logged, vec![]);
}

pub async fn check_poll_lease(s: &dyn Store) {
    let (u, a) = reconcile_user(s).await;
    let t = now();
    let until = t + Duration::seconds(45);
    assert_eq!(s.begin_poll(a.id, "a", t, until).await.unwrap(), Some(1));
    assert_eq!(
        s.begin_poll(a.id, "b", t + ms(10), until).await.unwrap(),
        None,
        "held by a"
    );
    let st = s.reconcile_state(a.id).await.unwrap().unwrap();
    assert_eq!(
        (st.poll_lease_owner.as_deref(), st.poll_lease_until),
        (Some("a"), Some(until))
    );
    assert_eq!(st.poll_seq_issued, 1);
    // Expired: b takes it over, with the next seq.
    let later = until + ms(1);
    assert_eq!(
        s.begin_poll(a.id, "b", later, later + Duration::seconds(45))
            .await
            .unwrap(),
        Some(2)
    );
    assert_eq!(
        s.begin_poll(a.id, "a", later, later + Duration::seconds(45))
            .await
            .unwrap(),
        None
    );
    // a's late finish (seq 1) is recorded but does not release b's lease.
    let ev = |e: ConciliationEvent<'_>| event_for(u.id, a.id, later, e);
    let (row, _) = s
        .finish_poll(
            a.id,
            "a",
            1,
            &failure("timeout", later),
            later,
            FIVE_DAYS_MS,
            &schedule(later),
            &ev,
            None,
        )
        .await
        .unwrap();
    assert_eq!(row.outcome, "failed");
    assert_eq!(
        s.reconcile_state(a.id)
            .await
            .unwrap()
            .unwrap()
            .poll_lease_owner
            .as_deref(),
        Some("b")
    );
    let (row, _) = s
        .finish_poll(
            a.id,
            "b",
            2,
            &success(vec![], &[], later),
            later,
            FIVE_DAYS_MS,
            &schedule(later),
            &ev,
            None,
        )
        .await
        .unwrap();
    assert_eq!(row.outcome, "succeeded");
    let st = s.reconcile_state(a.id).await.unwrap().unwrap();
    assert_eq!(
        (st.poll_lease_owner, st.poll_lease_until, st.poll_seq_applied),
        (None, None, 2)
    );
    // Free again: anyone.
    assert_eq!(
        s.begin_poll(a.id, "a", later, later + Duration::seconds(45))
            .await
            .unwrap(),
        Some(3)
    );
    // An unknown account: no lease, no state row.
    let gone = AccountId::new();
    assert_eq!(s.begin_poll(gone, "a", t, until).await.unwrap(), None);
    assert_eq!(s.reconcile_state(gone).await.unwrap(), None);
    assert!(s
        .finish_poll(
            gone,
            "a",
            1,
            &failure("timeout", t),
            t,
            FIVE_DAYS_MS,
            &schedule(t),
            &ev,
            None
        )
        .await
        .is_err());
}

pub async fn check_request_poll_and_due_polls(s: &dyn Store) {
    let (u, a) = reconcile_user(s).await;
    let b2 = bank(s).await;
    let a2 = account(s, u.id, &b2).await;
    let other = user(s).await;
    let off = account(s, other.id, &b2).await;
    let t = now();

    // Never polled: due at once (missing state rows first), only in reconcile mode.
    let mut due = s.due_polls(t, 10).await.unwrap();
    due.sort();
    let mut want = vec![a.id, a2.id];
    want.sort();
    assert_eq!(due, want);
    assert!(!due.contains(&off.id));
    assert!(s.set_operation_mode(other.id, "passthrough").await.unwrap());
    assert!(!s.due_polls(t, 10).await.unwrap().contains(&off.id));
    assert_eq!(s.due_polls(t, 1).await.unwrap().len(), 1, "limited");

    // Polled: due again at next_poll_at.
    poll(s, u.id, a.id, &success(vec![], &[], t)).await;
    assert_eq!(s.due_polls(t, 10).await.unwrap(), vec![a2.id]);
    let next = t + Duration::minutes(10);
    assert_eq!(s.due_polls(next - ms(1), 10).await.unwrap(), vec![a2.id]);
    assert_eq!(
        s.due_polls(next, 10).await.unwrap(),
        vec![a2.id, a.id],
        "missing state rows first"
    );

    // request_poll: due now, coalesced.
    let r = t + ms(5);
    s.request_poll(a.id, r).await.unwrap();
    s.request_poll(a.id, r + ms(5)).await.unwrap();
    let st = s.reconcile_state(a.id).await.unwrap().unwrap();
    assert_eq!(st.next_poll_at, Some(r), "one due poll, at the first request");
    assert_eq!(s.due_polls(r, 10).await.unwrap(), vec![a2.id, a.id]);
    s.request_poll(a2.id, r).await.unwrap();
    assert_eq!(s.reconcile_state(a2.id).await.unwrap().unwrap().next_poll_at, Some(r));
    s.request_poll(AccountId::new(), r).await.unwrap();

    // A held lease hides the account until it expires.
    let until = r + Duration::seconds(45);
    s.begin_poll(a.id, OWNER, r, until).await.unwrap().unwrap();
    assert_eq!(s.due_polls(r + ms(1), 10).await.unwrap(), vec![a2.id]);
    let due = s.due_polls(until + ms(1), 10).await.unwrap();
    assert!(
        due.contains(&a.id),
        "an abandoned poll is due again once its lease expires: {due:?}"
    );

    // Out of reconcile mode: no polls.
    assert!(s.set_operation_mode(u.id, "passthrough").await.unwrap());
    assert_eq!(s.due_polls(far_future(), 10).await.unwrap(), vec![]);
}

/// "Poll now" while a poll runs queues one more poll (RECONCILIATION §3.1: one runs, another is
/// queued at most): the running poll's schedule does not overwrite the request.
pub async fn check_poll_now_during_a_poll_is_kept(s: &dyn Store) {
    let (u, a) = reconcile_user(s).await;
    let t = now();
    let lease = Duration::seconds(45);
    let finish = |seq: i64, at: Timestamp| async move {
        s.finish_poll(
            a.id,
            OWNER,
            seq,
            &success(vec![], &[], at),
            at,
            FIVE_DAYS_MS,
            &schedule(at),
            &|e| event_for(u.id, a.id, at, e),
            None,
        )
        .await
        .unwrap();
    };
    let next_poll_at = || async { s.reconcile_state(a.id).await.unwrap().unwrap().next_poll_at };

    // A request before the poll begins is answered by it: the next one is an interval later.
    s.request_poll(a.id, t).await.unwrap();
    let seq = s.begin_poll(a.id, OWNER, t + ms(1), t + lease).await.unwrap().unwrap();
    finish(seq, t + ms(10)).await;
    assert_eq!(next_poll_at().await, Some(t + ms(10) + Duration::minutes(10)));
    assert!(s.due_polls(t + ms(11), 10).await.unwrap().is_empty());

    // A request while it runs: due again at the request, as soon as the lease is given up.
    let seq = s.begin_poll(a.id, OWNER, t + ms(20), t + lease).await.unwrap().unwrap();
    s.request_poll(a.id, t + ms(25)).await.unwrap();
    s.request_poll(a.id, t + ms(26)).await.unwrap();
    assert!(s.due_polls(t + ms(27), 10).await.unwrap().is_empty(), "leased");
    finish(seq, t + ms(30)).await;
    assert_eq!(next_poll_at().await, Some(t + ms(25)), "the first request, coalesced");
    assert_eq!(s.due_polls(t + ms(30), 10).await.unwrap(), vec![a.id]);

    // That poll runs, and nothing more is queued.
    let seq = s.begin_poll(a.id, OWNER, t + ms(40), t + lease).await.unwrap().unwrap();
    finish(seq, t + ms(50)).await;
    assert_eq!(next_poll_at().await, Some(t + ms(50) + Duration::minutes(10)));
    assert!(s.due_polls(t + ms(60), 10).await.unwrap().is_empty());
}

pub async fn check_poll_log_is_pruned(s: &dyn Store) {
    let (u, a) = reconcile_user(s).await;
    let t0 = now();
    let ev = |e: ConciliationEvent<'_>| event_for(u.id, a.id, t0, e);
    let total = POLL_LOG_KEEP + 5;
    for i in 0..total {
        let at = t0 + ms(i);
        s.finish_poll(
            a.id,
            OWNER,
            i + 1,
            &failure("timeout", at),
            at,
            FIVE_DAYS_MS,
            &schedule(at),
            &ev,
            None,
        )
        .await
        .unwrap();
    }
    let polls = s.list_polls(u.id, a.id, 10_000, 0).await.unwrap();
    assert_eq!(i64::try_from(polls.len()).unwrap(), POLL_LOG_KEEP);
    assert_eq!(polls.first().unwrap().seq, total, "the newest kept");
    assert_eq!(polls.last().unwrap().seq, 6, "the five oldest deleted");
}

pub async fn check_conciliation_listing_is_scoped(s: &dyn Store) {
    let (u, a) = reconcile_user(s).await;
    let b = bank(s).await;
    let a2 = account(s, u.id, &b).await;
    let (stranger, foreign) = reconcile_user(s).await;
    let t = now();
    poll(
        s,
        u.id,
        a.id,
        &success(vec![order("S-1", "1.00"), order("S-2", "2.00")], &[], t),
    )
    .await;
    poll(s, u.id, a2.id, &success(vec![order("S-1", "3.00")], &[], t + ms(10))).await;
    poll(s, stranger.id, foreign.id, &success(vec![order("S-1", "4.00")], &[], t)).await;
    poll(s, u.id, a.id, &success(vec![order("S-2", "2.00")], &[], t + ms(20))).await;

    let all = s
        .list_conciliation(u.id, &ConciliationFilter::default(), 100, 0)
        .await
        .unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(all.iter().all(|r| r.request.account_id != foreign.id));
    // Newest first: registered_at desc, then id desc.
    assert_eq!(all[0].request.account_id, a2.id);
    assert_eq!(
        (all[0].bank_code.as_str(), all[0].account_name.as_str()),
        (b.code.as_str(), a2.name.as_str())
    );
    assert_eq!(all[0].account_name, a2.name);
    assert!(all[1].request.id > all[2].request.id);
    assert_eq!(
        s.list_conciliation(u.id, &ConciliationFilter::default(), 1, 1)
            .await
            .unwrap(),
        all[1..2].to_vec()
    );

    let by = |account: Option<AccountId>, status: Option<ConciliationStatus>, ext: Option<&str>| ConciliationFilter {
        account,
        status,
        external_id: ext.map(str::to_owned),
    };
    let f = by(Some(a.id), Some(ConciliationStatus::Cancelled), None);
    let cancelled = s.list_conciliation(u.id, &f, 100, 0).await.unwrap();
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0].request.external_id, "S-1");
    let f = by(None, Some(ConciliationStatus::Pending), Some("S-1"));
    let pending = s.list_conciliation(u.id, &f, 100, 0).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].request.account_id, a2.id);
    let f = by(Some(foreign.id), None, None);
    assert_eq!(
        s.list_conciliation(u.id, &f, 100, 0).await.unwrap(),
        vec![],
        "another user's account"
    );
    let f = by(None, Some(ConciliationStatus::Matched), None);
    assert_eq!(s.list_conciliation(u.id, &f, 100, 0).await.unwrap(), vec![]);

    // Detail.
    let one = &all[2];
    assert_eq!(
        s.conciliation_for_user(u.id, one.request.id).await.unwrap().as_ref(),
        Some(one)
    );
    assert_eq!(
        s.conciliation_for_user(stranger.id, one.request.id).await.unwrap(),
        None
    );
    assert_eq!(
        s.conciliation_for_user(u.id, ConciliationRequestId::new())
            .await
            .unwrap(),
        None
    );
    // Polls are scoped too.
    assert_eq!(s.list_polls(stranger.id, a.id, 100, 0).await.unwrap(), vec![]);
    assert_eq!(s.list_polls(u.id, a.id, 100, 0).await.unwrap().len(), 2);
}

/// Two polls of one account finishing at once (different seqs, overlapping order ids): the
/// account lock serialises them — both succeed, no unique violation, one live row per order.
pub async fn check_concurrent_finish_poll(s: &dyn Store) {
    let (u, a) = reconcile_user(s).await;
    let t = now();
    let s1 = s
        .begin_poll(a.id, OWNER, t, t + Duration::seconds(45))
        .await
        .unwrap()
        .unwrap();
    let s2 = s
        .begin_poll(a.id, OWNER, t, t + Duration::seconds(45))
        .await
        .unwrap()
        .unwrap();
    let ids: Vec<String> = (0..300).map(|i| format!("C-{i}")).collect();
    let orders = |amount: &str| ids.iter().map(|id| order(id, amount)).collect::<Vec<_>>();
    let (r1, r2) = (success(orders("1.00"), &[], t), success(orders("2.00"), &[], t));
    let ev = move |e: ConciliationEvent<'_>| event_for(u.id, a.id, t, e);
    let next = schedule(t);
    let (o1, o2) = tokio::join!(
        s.finish_poll(a.id, OWNER, s1, &r1, t, FIVE_DAYS_MS, &next, &ev, None),
        s.finish_poll(a.id, OWNER, s2, &r2, t, FIVE_DAYS_MS, &next, &ev, None),
    );
    let ((p1, _), (p2, _)) = (o1.unwrap(), o2.unwrap());
    assert_eq!(p2.outcome, "succeeded");
    // Either the older applied first (and the newer updated every amount) or it came late.
    let rows = requests(s, u.id, a.id).await;
    assert_eq!(rows.len(), 300, "one row per order");
    for id in &ids {
        assert_eq!(live(&rows, id).amount, "2.00");
    }
    match p1.outcome.as_str() {
        "superseded" => assert_eq!(p2.counts.registered, 300),
        "succeeded" => assert_eq!((p1.counts.registered, p2.counts.updated), (300, 300)),
        other => panic!("unexpected outcome {other}"),
    }
    assert_eq!(s.reconcile_state(a.id).await.unwrap().unwrap().poll_seq_applied, 2);
}
