//! Issue 8 (performance): the match pass a poll runs in its own transaction
//! (`finish_poll(…, Some(pass))`, docs/reconciliation.md "Performance"). The orders the poll
//! registers reach the pass as `pending` requests and are stored once, as decided; stored
//! requests are updated as `commit_pass` would; the account's match work is done; and a pass
//! that cannot commit writes nothing, the poll included.

use std::collections::HashSet;
use std::sync::Mutex;

use chrono::Duration;
use reconbanker_store::*;

use crate::fixtures::*;
use crate::matching::{credit, matched, not_found, pass_events, rfc3339};
use crate::reconcile::{
    event_for, order, poll, poll_at, reconcile_user, requests, schedule, success, FIVE_DAYS_MS, OWNER,
};

/// One poll of `report` at `at`, applied with the match pass `decide` in its transaction (the
/// pass's events as [`pass_events`] builds them).
async fn poll_with_pass(
    s: &dyn Store,
    owner: UserId,
    account: AccountId,
    report: &PollReport,
    at: Timestamp,
    horizon: Timestamp,
    decide: &(dyn Fn(&PassInput) -> PassCommit + Send + Sync),
) -> (PollRow, Vec<EventRow>) {
    let events = |e: PassEvent<'_>| pass_events(owner, account, at, e);
    let decide = at_once(decide);
    let pass = PollPass {
        horizon,
        decide: &decide,
        events: &events,
    };
    poll_at(s, owner, account, report, at, Some(&pass)).await
}

/// `decide` as [`PollPass::decide`] takes it: the decisions made at once, on the caller's thread.
fn at_once<'a>(
    decide: &'a (dyn Fn(&PassInput) -> PassCommit + Send + Sync),
) -> impl Fn(PassInput) -> Deciding + Send + Sync + 'a {
    move |input| {
        let commit = decide(&input);
        Box::pin(std::future::ready(Some((input, commit))))
    }
}

pub async fn check_finish_poll_with_pass(s: &dyn Store) {
    let t = now();
    let (u, a) = reconcile_user(s).await;
    // A request stored by an earlier poll, and two movements.
    poll(s, u.id, a.id, &success(vec![order("OLD", "5.00")], &[], t)).await;
    let at = rfc3339(t + ms(60_000));
    s.insert_movements(
        a.id,
        &[credit("m10", "10.00", &at), credit("m5", "5.00", &at)],
        t,
        &never_forward,
    )
    .await
    .unwrap();
    let dirty = s.reconcile_state(a.id).await.unwrap().unwrap().dirty_seq;
    assert!(dirty > 0);

    // The second poll keeps OLD and registers A (10.00) and B (20.00); its pass matches A and
    // OLD and finds nothing for B.
    let t2 = t + ms(120_000);
    let report = success(
        vec![order("OLD", "5.00"), order("A", "10.00"), order("B", "20.00")],
        &[],
        t2,
    );
    let seen: Mutex<Option<PassInput>> = Mutex::new(None);
    let decide = |input: &PassInput| -> PassCommit {
        *seen.lock().unwrap() = Some(input.clone());
        let r = |ext: &str| input.requests.iter().find(|r| r.external_id == ext).unwrap();
        let m = |amount: &str| input.movements.iter().find(|m| m.amount == amount).unwrap();
        PassCommit {
            trigger: "poll".into(),
            matched: vec![matched(r("A"), m("10.00")), matched(r("OLD"), m("5.00"))],
            not_found: vec![not_found(r("B"), "no_movement_with_amount", "[]")],
            ..PassCommit::default()
        }
    };
    let events = |e: PassEvent<'_>| pass_events(u.id, a.id, t2, e);
    let (row, logged) = poll_with_pass(s, u.id, a.id, &report, t2, t - Duration::days(5), &decide).await;
    assert_eq!(row.outcome, "succeeded");
    assert_eq!(row.counts.registered, 2);

    // The pass saw the new orders as pending requests, with the stored one and the movements.
    let input = seen.lock().unwrap().take().expect("the pass ran");
    let mut saw: Vec<(String, ConciliationStatus, i64)> = input
        .requests
        .iter()
        .map(|r| (r.external_id.clone(), r.status, r.attempt_count))
        .collect();
    saw.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        saw,
        vec![
            ("A".into(), ConciliationStatus::Pending, 0),
            ("B".into(), ConciliationStatus::Pending, 0),
            ("OLD".into(), ConciliationStatus::Pending, 0),
        ]
    );
    let mut amounts: Vec<&str> = input.movements.iter().map(|m| m.amount.as_str()).collect();
    amounts.sort();
    assert_eq!(amounts, ["10.00", "5.00"]);

    // Stored as decided, with one attempt each, on the poll's trigger.
    let rows = requests(s, u.id, a.id).await;
    let state = |ext: &str| {
        let r = rows.iter().find(|r| r.external_id == ext).unwrap();
        (r.status, r.reason.clone(), r.attempt_count, r.closed_at, r.updated_at)
    };
    assert_eq!(state("A"), (ConciliationStatus::Matched, None, 1, Some(t2), t2));
    assert_eq!(state("OLD"), (ConciliationStatus::Matched, None, 1, Some(t2), t2));
    assert_eq!(
        state("B"),
        (
            ConciliationStatus::NotFound,
            Some("no_movement_with_amount".into()),
            1,
            None,
            t2
        )
    );
    for r in &rows {
        let d = s.conciliation_detail(u.id, r.id).await.unwrap().unwrap();
        let attempts: Vec<(i64, &str, &str)> = d
            .attempts
            .iter()
            .map(|x| (x.attempt_number, x.result.as_str(), x.trigger.as_str()))
            .collect();
        let result = if r.external_id == "B" { "not_found" } else { "matched" };
        assert_eq!(attempts, vec![(1, result, "poll")], "{}", r.external_id);
    }

    // The poll's events, then the pass's; the result deliveries of the two matches.
    let got: Vec<&str> = logged.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        got,
        [
            "conciliation.registered",
            "conciliation.registered",
            "conciliation.matched",
            "conciliation.matched",
            "conciliation.not_found"
        ]
    );
    let ds = s.list_deliveries(u.id, a.id, 10, 0).await.unwrap();
    assert_eq!(ds.iter().filter(|d| d.channel == CHANNEL_RESULT).count(), 2);

    // The match work is done: nothing left for the worker.
    let st = s.reconcile_state(a.id).await.unwrap().unwrap();
    assert_eq!(st.done_seq, st.dirty_seq);
    assert!(st.dirty_seq > dirty);
    let left = s.load_pass_changes(a.id, t - Duration::days(5), t2).await.unwrap();
    assert!(left.requests.is_empty() && left.movements.is_empty(), "{left:?}");

    // A pass that cannot commit (it matches a movement already matched) writes nothing, the
    // poll included; the same poll without the pass is then applied.
    let t3 = t2 + ms(60_000);
    let report = success(
        vec![
            order("OLD", "5.00"),
            order("A", "10.00"),
            order("B", "20.00"),
            order("C", "30.00"),
        ],
        &[],
        t3,
    );
    let taken = input.movements.iter().find(|m| m.amount == "10.00").unwrap().clone();
    let decide = |input: &PassInput| -> PassCommit {
        let c = input.requests.iter().find(|r| r.external_id == "C").unwrap();
        PassCommit {
            trigger: "poll".into(),
            matched: vec![matched(c, &taken)],
            ..PassCommit::default()
        }
    };
    let decide = at_once(&decide);
    let pass = PollPass {
        horizon: t - Duration::days(5),
        decide: &decide,
        events: &events,
    };
    let seq = s
        .begin_poll(a.id, OWNER, t3 - ms(30), t3 + Duration::seconds(45))
        .await
        .unwrap()
        .expect("lease free");
    let next = schedule(t3);
    let ev = |e: ConciliationEvent<'_>| event_for(u.id, a.id, t3, e);
    let st = s.reconcile_state(a.id).await.unwrap().unwrap();
    let log_head = || async { s.events_after(0, 1_000_000).await.unwrap().last().map_or(0, |e| e.seq) };
    let head = log_head().await;
    let failed = s
        .finish_poll(a.id, OWNER, seq, &report, t3, FIVE_DAYS_MS, &next, &ev, Some(&pass))
        .await;
    assert!(failed.is_err());
    assert_eq!(requests(s, u.id, a.id).await.len(), 3, "nothing written");
    assert_eq!(s.reconcile_state(a.id).await.unwrap().unwrap(), st);
    assert_eq!(log_head().await, head, "not even the poll's own events");

    // Decisions lost on their way (the thread making them panicked): the same, as an error of
    // its own.
    let lost = |_: PassInput| -> Deciding { Box::pin(std::future::ready(None)) };
    let pass = PollPass {
        horizon: t - Duration::days(5),
        decide: &lost,
        events: &events,
    };
    let failed = s
        .finish_poll(a.id, OWNER, seq, &report, t3, FIVE_DAYS_MS, &next, &ev, Some(&pass))
        .await;
    assert!(matches!(failed, Err(StoreError::Interrupted(_))), "{failed:?}");
    assert_eq!(requests(s, u.id, a.id).await.len(), 3, "nothing written");
    assert_eq!(s.reconcile_state(a.id).await.unwrap().unwrap(), st);
    assert_eq!(log_head().await, head, "not even the poll's own events");
    let (row, _) = s
        .finish_poll(a.id, OWNER, seq, &report, t3, FIVE_DAYS_MS, &next, &ev, None)
        .await
        .unwrap();
    assert_eq!(row.counts.registered, 1);
    let rows = requests(s, u.id, a.id).await;
    let c = rows.iter().find(|r| r.external_id == "C").unwrap();
    assert_eq!((c.status, c.attempt_count), (ConciliationStatus::Pending, 0));
    let st = s.reconcile_state(a.id).await.unwrap().unwrap();
    assert!(st.done_seq < st.dirty_seq, "C is the worker's to evaluate");
}

/// A poll and its pass large enough that every bulk write spans several statements (the store
/// writes 2,500 rows a statement): 5,001 orders registered, 2,501 of them matched and 2,500 not
/// found, so the requests, the attempts, the events and the result deliveries each take two
/// chunks or more. Every row is written once, and
/// the events are numbered in the order they were logged.
pub async fn check_finish_poll_with_pass_in_chunks(s: &dyn Store) {
    const ORDERS: usize = 5_001;
    const MATCHED: usize = 2_501;
    let t = now();
    let (u, a) = reconcile_user(s).await;
    let amount = |i: usize| format!("{}.00", i + 1);
    let at = rfc3339(t + ms(60_000));
    let movements: Vec<NewMovement> = (0..MATCHED)
        .map(|i| credit(&format!("m{i}"), &amount(i), &at))
        .collect();
    s.insert_movements(a.id, &movements, t, &never_forward).await.unwrap();
    let before = s.events_after(0, 1_000_000).await.unwrap().last().map_or(0, |e| e.seq);

    let t2 = t + ms(120_000);
    let orders = (0..ORDERS).map(|i| order(&format!("ORD-{i:05}"), &amount(i))).collect();
    let report = success(orders, &[], t2);
    let decide = |input: &PassInput| -> PassCommit {
        let by_amount: std::collections::HashMap<&str, &EligibleMovement> =
            input.movements.iter().map(|m| (m.amount.as_str(), m)).collect();
        let mut commit = PassCommit {
            trigger: "poll".into(),
            ..PassCommit::default()
        };
        let mut rows: Vec<&ConciliationRow> = input.requests.iter().collect();
        rows.sort_by(|x, y| x.external_id.cmp(&y.external_id));
        for r in rows {
            match by_amount.get(r.amount.as_str()) {
                Some(m) => commit.matched.push(matched(r, m)),
                None => commit.not_found.push(not_found(r, "no_movement_with_amount", "[]")),
            }
        }
        commit
    };
    let (row, logged) = poll_with_pass(s, u.id, a.id, &report, t2, t - Duration::days(5), &decide).await;
    assert_eq!(
        (row.outcome.as_str(), row.counts.registered),
        ("succeeded", ORDERS as i64)
    );

    // Every order stored once, as decided.
    let rows = requests(s, u.id, a.id).await;
    assert_eq!(rows.len(), ORDERS);
    let mut ids: Vec<&str> = rows.iter().map(|r| r.external_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), ORDERS);
    let count = |st: ConciliationStatus| rows.iter().filter(|r| r.status == st).count();
    assert_eq!(count(ConciliationStatus::Matched), MATCHED);
    assert_eq!(count(ConciliationStatus::NotFound), ORDERS - MATCHED);
    assert!(rows.iter().all(|r| r.attempt_count == 1));

    // One attempt each, the chunks' first and last rows included.
    for i in [0, 2_499, 2_500, 2_501, 4_999, 5_000] {
        let ext = format!("ORD-{i:05}");
        let r = rows.iter().find(|r| r.external_id == ext).unwrap();
        let d = s.conciliation_detail(u.id, r.id).await.unwrap().unwrap();
        let result = if i < MATCHED { "matched" } else { "not_found" };
        let got: Vec<(i64, &str)> = d
            .attempts
            .iter()
            .map(|x| (x.attempt_number, x.result.as_str()))
            .collect();
        assert_eq!(got, vec![(1, result)], "{ext}");
    }

    // The events: the registrations, then the pass's in the order of its decisions, numbered
    // consecutively in that order, and read back from the log in the same order.
    assert_eq!(logged.len(), ORDERS + ORDERS);
    let kinds = |from: usize, to: usize| logged[from..to].iter().map(|e| e.kind.as_str()).collect::<HashSet<_>>();
    assert_eq!(kinds(0, ORDERS), HashSet::from(["conciliation.registered"]));
    assert_eq!(kinds(ORDERS, ORDERS + MATCHED), HashSet::from(["conciliation.matched"]));
    assert_eq!(
        kinds(ORDERS + MATCHED, 2 * ORDERS),
        HashSet::from(["conciliation.not_found"])
    );
    let pass_order: Vec<String> = logged[ORDERS..]
        .iter()
        .map(|e| e.data.split('"').nth(3).unwrap_or_default().to_owned())
        .collect();
    let mut want: Vec<String> = (0..ORDERS).map(|i| format!("ORD-{i:05}")).collect();
    want.sort();
    assert_eq!(pass_order, want, "the pass's events in the order of its decisions");
    assert!(logged.windows(2).all(|w| w[1].seq == w[0].seq + 1), "consecutive seqs");
    let read: Vec<(i64, uuid::Uuid)> = s
        .events_after(before, 1_000_000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.account_id == a.id)
        .map(|e| (e.seq, e.id))
        .collect();
    let wrote: Vec<(i64, uuid::Uuid)> = logged.iter().map(|e| (e.seq, e.id)).collect();
    assert_eq!(read, wrote);

    // One result delivery per match.
    let ds = s.list_deliveries(u.id, a.id, 100_000, 0).await.unwrap();
    let results: HashSet<uuid::Uuid> = ds
        .iter()
        .filter(|d| d.channel == CHANNEL_RESULT)
        .filter_map(|d| d.subject_id)
        .collect();
    assert_eq!(results.len(), MATCHED);
    assert_eq!(ds.iter().filter(|d| d.channel == CHANNEL_RESULT).count(), MATCHED);
}
