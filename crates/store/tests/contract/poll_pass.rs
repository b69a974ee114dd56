//! Issue 8 (performance): the match pass a poll runs in its own transaction
//! (`finish_poll(…, Some(pass))`, docs/reconciliation.md "Performance"). The orders the poll
//! registers reach the pass as `pending` requests and are stored once, as decided; stored
//! requests are updated as `commit_pass` would; the account's match work is done; and a pass
//! that cannot commit writes nothing, the poll included.

use std::sync::Mutex;

use chrono::Duration;
use reconbanker_store::*;

use crate::fixtures::*;
use crate::matching::{credit, matched, not_found, pass_events, rfc3339};
use crate::reconcile::{event_for, order, poll, reconcile_user, requests, schedule, success, FIVE_DAYS_MS, OWNER};

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
    let pass = PollPass {
        horizon: t - Duration::days(5),
        decide: &decide,
        events: &events,
    };
    let seq = s
        .begin_poll(a.id, OWNER, t2 - ms(30), t2 + Duration::seconds(45))
        .await
        .unwrap()
        .expect("lease free");
    let (row, logged) = s
        .finish_poll(
            a.id,
            OWNER,
            seq,
            &report,
            t2,
            FIVE_DAYS_MS,
            &schedule(t2),
            &|e| event_for(u.id, a.id, t2, e),
            Some(&pass),
        )
        .await
        .unwrap();
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
    let failed = s
        .finish_poll(a.id, OWNER, seq, &report, t3, FIVE_DAYS_MS, &next, &ev, Some(&pass))
        .await;
    assert!(failed.is_err());
    assert_eq!(requests(s, u.id, a.id).await.len(), 3, "nothing written");
    assert_eq!(s.reconcile_state(a.id).await.unwrap().unwrap(), st);
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
