//! Contract checks of the store's reconciliation failure methods (see the section markers in
//! `Store`): a match pass's evaluation errors and the `failed` status.

use chrono::Duration;
use reconbanker_store::*;

use crate::fixtures::*;
use crate::matching::{ambiguous, commit, commit_of, credit, matched, not_found, rfc3339};
use crate::reconcile::{order, poll, reconcile_user, requests, success};

fn failed_event(owner: UserId, account: AccountId, at: Timestamp, r: &ConciliationRow) -> Vec<NewEvent> {
    vec![NewEvent {
        data: format!(
            r#"{{"external_id":"{}","status":"{}","reason":"{}"}}"#,
            r.external_id,
            r.status.as_str(),
            r.reason.clone().unwrap_or_default()
        ),
        ..event(owner, account, "conciliation.failed", at)
    }]
}

/// `(status, reason, eval_errors, attempt_count)` of each request, by `external_id`.
async fn states(s: &dyn Store, owner: UserId, a: AccountId) -> Vec<(String, &'static str, Option<String>, i64, i64)> {
    let mut rows: Vec<_> = requests(s, owner, a)
        .await
        .into_iter()
        .map(|r| {
            (
                r.external_id,
                r.status.as_str(),
                r.reason,
                r.eval_errors,
                r.attempt_count,
            )
        })
        .collect();
    rows.sort();
    rows
}

fn row<'a>(
    rows: &'a [(String, &'static str, Option<String>, i64, i64)],
    id: &str,
) -> &'a (String, &'static str, Option<String>, i64, i64) {
    rows.iter().find(|r| r.0 == id).unwrap()
}

pub async fn check_record_pass_failure(s: &dyn Store) {
    let t = now();
    // `a`: P pending, N not_found, A ambiguous, X matched (closed).
    let (u, a) = reconcile_user(s).await;
    poll(
        s,
        u.id,
        a.id,
        &success(
            vec![
                order("P", "10.00"),
                order("N", "20.00"),
                order("A", "30.00"),
                order("X", "40.00"),
            ],
            &[],
            t,
        ),
    )
    .await;
    let at = rfc3339(t + Duration::minutes(1));
    let news = [
        credit("a1", "30.00", &at),
        credit("a2", "30.00", &at),
        credit("x", "40.00", &at),
    ];
    assert_eq!(s.insert_movements(a.id, &news, t, &never_forward).await.unwrap(), 3);
    let input = s.load_pass(a.id, t - Duration::days(11)).await.unwrap();
    let by = |e: &str| input.requests.iter().find(|r| r.external_id == e).unwrap().clone();
    let mov = |e: &str| {
        let amount = if e == "x" { "40.00" } else { "30.00" };
        input
            .movements
            .iter()
            .filter(|m| m.amount == amount)
            .collect::<Vec<_>>()
    };
    let c = PassCommit {
        not_found: vec![not_found(&by("N"), "no_movement_with_amount", "[]")],
        ambiguous: vec![ambiguous(&by("A"), &mov("a"))],
        matched: vec![matched(&by("X"), mov("x")[0])],
        ..commit_of("movements")
    };
    assert!(commit(s, u.id, a.id, &input, &c, t).await.is_some());
    let ids: Vec<ConciliationRequestId> = ["P", "N", "A", "X"].iter().map(|e| by(e).id).collect();
    // `b`: another account (another user) with a pending request Q.
    let (v, b) = reconcile_user(s).await;
    poll(s, v.id, b.id, &success(vec![order("Q", "10.00")], &[], t)).await;
    let q = requests(s, v.id, b.id).await[0].clone();
    let b_before = states(s, v.id, b.id).await;
    let version = |acc: AccountId| async move { s.reconcile_state(acc).await.unwrap().unwrap().version };
    let v0 = version(a.id).await;
    let ev = |at: Timestamp| move |r: &ConciliationRow| failed_event(u.id, a.id, at, r);

    // Before a snapshot (`None`): the requests awaiting an evaluation, P only, count one error.
    let t1 = t + ms(10);
    let logged = s
        .record_pass_failure(a.id, None, 3, "movements", t1, &ev(t1))
        .await
        .unwrap();
    assert!(logged.is_empty());
    let st = states(s, u.id, a.id).await;
    assert_eq!(
        st.iter().map(|r| (r.0.as_str(), r.3)).collect::<Vec<_>>(),
        [("A", 0), ("N", 0), ("P", 1), ("X", 0)]
    );

    // The snapshot's requests (and another account's, which is left out): open ones count.
    let mut named = ids.clone();
    named.push(q.id);
    for _ in 0..2 {
        let logged = s
            .record_pass_failure(a.id, Some(&named), 3, "movements", t1, &ev(t1))
            .await
            .unwrap();
        if logged.is_empty() {
            continue;
        }
        // The second time P reaches 3: failed, with its attempt and event.
        assert_eq!(logged.len(), 1);
        assert_eq!(logged[0].kind, "conciliation.failed");
        assert_eq!(
            logged[0].data,
            r#"{"external_id":"P","status":"failed","reason":"evaluation_error"}"#
        );
    }
    let st = states(s, u.id, a.id).await;
    assert_eq!(
        *row(&st, "P"),
        ("P".into(), "failed", Some("evaluation_error".into()), 3, 1)
    );
    assert_eq!(row(&st, "N").1, "not_found");
    assert_eq!(row(&st, "N").3, 2);
    assert_eq!(row(&st, "A").1, "ambiguous");
    assert_eq!(row(&st, "A").3, 2);
    // The closed request and the other account are untouched.
    assert_eq!(row(&st, "X").1, "matched");
    assert_eq!(row(&st, "X").3, 0);
    assert_eq!(states(s, v.id, b.id).await, b_before);
    assert_eq!(version(a.id).await, v0 + 1);
    let d = s.conciliation_detail(u.id, by("P").id).await.unwrap().unwrap();
    let last = d.attempts.last().unwrap();
    assert_eq!(
        (
            last.attempt_number,
            last.result.as_str(),
            last.reason.as_deref(),
            last.trigger.as_str()
        ),
        (1, "failed", Some("evaluation_error"), "movements")
    );
    assert_eq!(last.candidates, "[]");
    assert!(d.deliveries.is_empty(), "no result webhook for failed");

    // N and A reach 3 (A's candidates are cleared); P counts on, failed once only.
    let t2 = t + ms(20);
    let logged = s
        .record_pass_failure(a.id, Some(&ids), 3, "poll", t2, &ev(t2))
        .await
        .unwrap();
    let mut kinds: Vec<&str> = logged.iter().map(|e| e.data.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            r#"{"external_id":"A","status":"failed","reason":"evaluation_error"}"#,
            r#"{"external_id":"N","status":"failed","reason":"evaluation_error"}"#,
        ]
    );
    let st = states(s, u.id, a.id).await;
    assert_eq!(
        st.iter().map(|r| (r.0.as_str(), r.1, r.3, r.4)).collect::<Vec<_>>(),
        [
            ("A", "failed", 3, 2),
            ("N", "failed", 3, 2),
            ("P", "failed", 4, 1),
            ("X", "matched", 0, 1)
        ]
    );
    let rows = requests(s, u.id, a.id).await;
    assert!(rows
        .iter()
        .find(|r| r.external_id == "A")
        .unwrap()
        .last_candidates
        .is_none());
    let d = s.conciliation_detail(u.id, by("N").id).await.unwrap().unwrap();
    assert_eq!(d.attempts.len(), 2);
    assert_eq!(d.attempts[1].trigger, "poll");
    assert_eq!(version(a.id).await, v0 + 2);

    // Failed requests are awaiting an evaluation: the incremental snapshot reads them.
    let changes = s.load_pass_changes(a.id, t - Duration::days(11), t2).await.unwrap();
    let mut read: Vec<&str> = changes.requests.iter().map(|r| r.external_id.as_str()).collect();
    read.sort_unstable();
    assert_eq!(read, ["A", "N", "P"]);

    // A committed pass resets the errors of the requests it decides and moves them on.
    let t3 = t + ms(30);
    let input = s.load_pass(a.id, t - Duration::days(11)).await.unwrap();
    let by = |e: &str| input.requests.iter().find(|r| r.external_id == e).unwrap().clone();
    let c = PassCommit {
        not_found: vec![
            not_found(&by("P"), "no_movement_with_amount", "[]"),
            not_found(&by("N"), "no_movement_with_amount", "[]"),
        ],
        ..commit_of("movements")
    };
    assert!(commit(s, u.id, a.id, &input, &c, t3).await.is_some());
    let st = states(s, u.id, a.id).await;
    assert_eq!(
        st.iter().map(|r| (r.0.as_str(), r.1, r.3)).collect::<Vec<_>>(),
        [
            ("A", "failed", 3),
            ("N", "not_found", 0),
            ("P", "not_found", 0),
            ("X", "matched", 0)
        ]
    );

    // `retry_limit` 0 fails at the first error, like 1; an unknown account records nothing.
    let logged = s
        .record_pass_failure(b.id, None, 0, "movements", t3, &|r: &ConciliationRow| {
            failed_event(v.id, b.id, t3, r)
        })
        .await
        .unwrap();
    assert_eq!(logged.len(), 1);
    assert_eq!(states(s, v.id, b.id).await[0].1, "failed");
    let gone = AccountId::new();
    assert!(s
        .record_pass_failure(gone, Some(&ids), 3, "movements", t3, &ev(t3))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(states(s, u.id, a.id).await, st);
}
