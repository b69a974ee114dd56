//! Reconciliation: movements feeding the match work, the pass's snapshot and its
//! one-transaction commit (RECONCILIATION §5.1, §5.6–§5.9), per-subject delivery order (§6) and
//! the movements list's match column.

use chrono::Duration;
use reconbanker_store::*;
use uuid::Uuid;

use crate::fixtures::*;
use crate::reconcile::{order, poll, reconcile_user, requests, success};

/// A credit of `amount` from `name`, received at `received_at` (RFC 3339).
pub fn credit(external_id: &str, amount: &str, received_at: &str) -> NewMovement {
    NewMovement {
        external_id: external_id.into(),
        amount: amount.into(),
        currency: "EUR".into(),
        name: Some("JUAN PEREZ".into()),
        description: format!("transfer {external_id}"),
        received_at: received_at.into(),
    }
}

/// `t` as RFC 3339 (UTC, milliseconds).
pub fn rfc3339(t: Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The events the server would log for a pass's change: `conciliation.<status>` naming the
/// request (and the movement of a match); matched, ambiguous and expired carry a result-webhook
/// delivery whose subject is the request.
pub fn pass_events(owner: UserId, account: AccountId, at: Timestamp, e: PassEvent<'_>) -> Vec<NewEvent> {
    let (row, movement) = match e {
        PassEvent::Matched { request, movement } => (request, Some(movement)),
        PassEvent::Ambiguous(r) | PassEvent::NotFound(r) | PassEvent::Expired(r) => (r, None),
    };
    let status = row.status.as_str();
    let data = format!(
        r#"{{"external_id":"{}","status":"{status}","reason":{},"attempts":{},"movement":{}}}"#,
        row.external_id,
        row.reason.as_deref().map_or("null".into(), |r| format!(r#""{r}""#)),
        row.attempt_count,
        movement.map_or("null".into(), |m| format!(
            r#"{{"id":"{}","amount":"{}","name":"{}","received_at":"{}"}}"#,
            m.id,
            m.amount,
            m.name.clone().unwrap_or_default(),
            m.received_at
        )),
    );
    let deliveries = if matches!(e, PassEvent::NotFound(_)) {
        Vec::new()
    } else {
        vec![NewDelivery {
            payload: data.clone(),
            channel: CHANNEL_RESULT.into(),
            subject_id: Some(row.id.0),
            ..delivery(status, at)
        }]
    };
    vec![NewEvent {
        data,
        deliveries,
        ..event(owner, account, &format!("conciliation.{status}"), at)
    }]
}

pub fn matched(r: &ConciliationRow, m: &EligibleMovement) -> MatchDecision {
    MatchDecision {
        request: r.id,
        movement: m.id,
        score: 1000,
        reason: None,
        explanation: r#"{"name":1.0}"#.into(),
        candidates: format!(r#"[{{"movement":"{}","verdict":"taken"}}]"#, m.id),
    }
}

pub fn not_found(r: &ConciliationRow, reason: &str, candidates: &str) -> NotFoundDecision {
    NotFoundDecision {
        request: r.id,
        reason: reason.into(),
        candidates: candidates.into(),
    }
}

pub fn ambiguous(r: &ConciliationRow, ms: &[&EligibleMovement]) -> AmbiguousDecision {
    let ids: Vec<String> = ms.iter().map(|m| format!(r#""{}""#, m.id)).collect();
    AmbiguousDecision {
        request: r.id,
        candidate_set: format!("[{}]", ids.join(",")),
        candidates: format!(r#"{{"n":{}}}"#, ms.len()),
    }
}

pub fn commit_of(trigger: &str) -> PassCommit {
    PassCommit {
        trigger: trigger.into(),
        ..PassCommit::default()
    }
}

/// Commits `c` against the version and dirty_seq of `input` at `at`.
pub async fn commit(
    s: &dyn Store,
    owner: UserId,
    account: AccountId,
    input: &PassInput,
    c: &PassCommit,
    at: Timestamp,
) -> Option<Vec<EventRow>> {
    s.commit_pass(account, input.version, input.dirty_seq, c, at, &|e| {
        pass_events(owner, account, at, e)
    })
    .await
    .unwrap()
}

/// A reconcile-mode account with orders `A` (10.00) and `B` (20.00) registered at `t`, and
/// credits `m10` (10.00), `m20` (20.00) received a minute later.
async fn scene(s: &dyn Store, t: Timestamp) -> (UserRow, AccountRow) {
    let (u, a) = reconcile_user(s).await;
    poll(
        s,
        u.id,
        a.id,
        &success(vec![order("A", "10.00"), order("B", "20.00")], &[], t),
    )
    .await;
    let at = rfc3339(t + Duration::minutes(1));
    let news = [credit("m10", "10.00", &at), credit("m20", "20.00", &at)];
    assert_eq!(s.insert_movements(a.id, &news, t, &never_forward).await.unwrap(), 2);
    (u, a)
}

fn by_ext<'a>(input: &'a PassInput, ext: &str) -> &'a ConciliationRow {
    input.requests.iter().find(|r| r.external_id == ext).unwrap()
}

fn by_amount<'a>(input: &'a PassInput, amount: &str) -> &'a EligibleMovement {
    input.movements.iter().find(|m| m.amount == amount).unwrap()
}

pub async fn check_movements_mark_reconciliation_dirty(s: &dyn Store) {
    let (_, a) = reconcile_user(s).await;
    let t = now();
    assert_eq!(s.insert_movements(a.id, &[], t, &never_forward).await.unwrap(), 0);
    assert_eq!(
        s.reconcile_state(a.id).await.unwrap(),
        None,
        "nothing new: no state row"
    );

    let ms = [
        credit("p1", "1.00", "2026-05-13T15:30:00.123+02:00"),
        credit("p2", "2.00", "2026-05-13T13:30:00Z"),
        credit("p3", "3.00", "13/05/2026 15:30"),
    ];
    assert_eq!(s.insert_movements(a.id, &ms, t, &never_forward).await.unwrap(), 3);
    let st = s.reconcile_state(a.id).await.unwrap().unwrap();
    assert_eq!((st.dirty_seq, st.version, st.done_seq), (1, 1, 0));
    let input = s.load_pass(a.id, t - Duration::days(3650)).await.unwrap();
    assert_eq!((input.version, input.dirty_seq), (1, 1));
    let got: Vec<(String, Option<i64>)> = input
        .movements
        .iter()
        .map(|m| (m.amount.clone(), m.received_at_ms))
        .collect();
    let instant = chrono::DateTime::parse_from_rfc3339("2026-05-13T13:30:00.123Z")
        .unwrap()
        .timestamp_millis();
    // Unparseable first, then by instant.
    assert_eq!(
        got,
        vec![
            ("3.00".into(), None),
            ("2.00".into(), Some(instant - 123)),
            ("1.00".into(), Some(instant)),
        ]
    );

    // Read again: nothing new, not dirtier. One new among old ones: one more step.
    assert_eq!(s.insert_movements(a.id, &ms, t, &never_forward).await.unwrap(), 0);
    assert_eq!(s.reconcile_state(a.id).await.unwrap().unwrap().dirty_seq, 1);
    let more = [ms[0].clone(), credit("p4", "4.00", "2026-05-14T00:00:00Z")];
    assert_eq!(s.insert_movements(a.id, &more, t, &never_forward).await.unwrap(), 1);
    let st = s.reconcile_state(a.id).await.unwrap().unwrap();
    assert_eq!((st.dirty_seq, st.version), (2, 2));

    // Many at once (batched), duplicates within the batch stored once.
    let many: Vec<NewMovement> = (0..10_000)
        .map(|i| credit(&format!("bulk-{}", i % 9_000), "5.00", "2026-05-14T00:00:00Z"))
        .collect();
    let started = std::time::Instant::now();
    assert_eq!(s.insert_movements(a.id, &many, t, &never_forward).await.unwrap(), 9_000);
    println!("{} 10,000 movements inserted in {:?}", s.backend(), started.elapsed());
    assert_eq!(s.reconcile_state(a.id).await.unwrap().unwrap().dirty_seq, 3);
}

pub async fn check_dirty_accounts(s: &dyn Store) {
    let t = now();
    let (u, a) = scene(s, t).await;
    let (_, quiet) = reconcile_user(s).await;
    // A passthrough user's account stays dirty but is not listed.
    let p = user(s).await;
    assert!(s.set_operation_mode(p.id, "passthrough").await.unwrap());
    let pa = account(s, p.id, &bank(s).await).await;
    assert_eq!(
        s.insert_movements(pa.id, &[credit("x", "1.00", "2026-05-14T00:00:00Z")], t, &never_forward)
            .await
            .unwrap(),
        1
    );
    let dirty = s.dirty_accounts(100).await.unwrap();
    let seq = s.reconcile_state(a.id).await.unwrap().unwrap().dirty_seq;
    assert_eq!(dirty, vec![(a.id, seq)]);
    assert!(!dirty.iter().any(|(id, _)| *id == quiet.id || *id == pa.id));
    assert_eq!(s.dirty_accounts(0).await.unwrap(), vec![]);

    // A pass done at dirty_seq: clean. Work arriving later: dirty again.
    let input = s.load_pass(a.id, t - Duration::days(5)).await.unwrap();
    assert!(commit(s, u.id, a.id, &input, &commit_of("movements"), t)
        .await
        .is_some());
    assert_eq!(s.dirty_accounts(100).await.unwrap(), vec![]);
    let st = s.reconcile_state(a.id).await.unwrap().unwrap();
    assert_eq!(
        (st.done_seq, st.version),
        (seq, input.version),
        "nothing changed: same version"
    );
    assert_eq!(
        s.insert_movements(
            a.id,
            &[credit("late", "9.00", "2026-05-14T00:00:00Z")],
            t,
            &never_forward
        )
        .await
        .unwrap(),
        1
    );
    assert_eq!(s.dirty_accounts(100).await.unwrap(), vec![(a.id, seq + 1)]);
    // done_seq never moves back.
    let input = s.load_pass(a.id, t - Duration::days(5)).await.unwrap();
    assert!(s
        .commit_pass(a.id, input.version, 0, &commit_of("movements"), t, &|_| Vec::new())
        .await
        .unwrap()
        .is_some());
    assert_eq!(s.reconcile_state(a.id).await.unwrap().unwrap().done_seq, seq);
    // Back in reconcile mode, the passthrough account is listed.
    assert!(s.set_operation_mode(p.id, "reconcile").await.unwrap());
    assert_eq!(s.dirty_accounts(100).await.unwrap().len(), 2);
}

pub async fn check_load_pass(s: &dyn Store) {
    let t = now();
    let (u, a) = reconcile_user(s).await;
    // Nothing yet: version 0, empty.
    let empty = s.load_pass(a.id, t).await.unwrap();
    assert_eq!(
        empty,
        PassInput {
            version: 0,
            dirty_seq: 0,
            requests: vec![],
            movements: vec![],
            taken: vec![],
            rejections: vec![]
        }
    );
    poll(
        s,
        u.id,
        a.id,
        &success(vec![order("A", "1.00"), order("B", "2.00"), order("C", "3.00")], &[], t),
    )
    .await;
    // C cancelled (absent from the next poll): not open.
    poll(
        s,
        u.id,
        a.id,
        &success(vec![order("A", "1.00"), order("B", "2.00")], &[], t + ms(10)),
    )
    .await;
    let horizon = t - Duration::days(5);
    let old = rfc3339(horizon - ms(1));
    let edge = rfc3339(horizon);
    let news = [
        credit("old", "1.00", &old),
        credit("edge", "1.00", &edge),
        credit("bad", "1.00", "yesterday"),
        NewMovement {
            amount: "-1.00".into(),
            ..credit("debit", "1.00", &edge)
        },
    ];
    s.insert_movements(a.id, &news, t, &never_forward).await.unwrap();
    // Another account's movement is not this pass's.
    let other = account(s, u.id, &bank(s).await).await;
    s.insert_movements(other.id, &[credit("elsewhere", "1.00", &edge)], t, &never_forward)
        .await
        .unwrap();

    let input = s.load_pass(a.id, horizon).await.unwrap();
    let st = s.reconcile_state(a.id).await.unwrap().unwrap();
    assert_eq!((input.version, input.dirty_seq), (st.version, st.dirty_seq));
    let exts: Vec<&str> = input.requests.iter().map(|r| r.external_id.as_str()).collect();
    assert_eq!(exts, ["A", "B"]);
    assert!(input.requests.iter().all(|r| r.status == ConciliationStatus::Pending));
    let descr: Vec<&str> = input.movements.iter().map(|m| m.description.as_str()).collect();
    assert_eq!(descr.len(), 3, "{descr:?}");
    assert_eq!(descr[0], "transfer bad");
    assert!(descr.contains(&"transfer edge") && descr.contains(&"transfer debit"));
    assert!(input.rejections.is_empty());

    // A matched movement and request leave the snapshot.
    let (ra, m) = (by_ext(&input, "A").clone(), input.movements[1].clone());
    let c = PassCommit {
        matched: vec![matched(&ra, &m)],
        ..commit_of("movements")
    };
    assert!(commit(s, u.id, a.id, &input, &c, t + ms(20)).await.is_some());
    let after = s.load_pass(a.id, horizon).await.unwrap();
    assert_eq!(after.requests.len(), 1);
    assert_eq!(after.movements.len(), 2);
    assert!(!after.movements.iter().any(|x| x.id == m.id));
    assert!(input.taken.is_empty());
    assert_eq!(after.taken, vec![m.clone()], "the matched movement is read as taken");
    assert_eq!(after.version, input.version + 1);
}

pub async fn check_commit_pass_match(s: &dyn Store) {
    let t = now();
    let (u, a) = scene(s, t).await;
    let input = s.load_pass(a.id, t - Duration::days(5)).await.unwrap();
    let (ra, rb) = (by_ext(&input, "A").clone(), by_ext(&input, "B").clone());
    let (m10, m20) = (by_amount(&input, "10.00").clone(), by_amount(&input, "20.00").clone());
    let at = t + Duration::minutes(2);
    let c = PassCommit {
        matched: vec![
            matched(&ra, &m10),
            MatchDecision {
                reason: Some("reference_match".into()),
                ..matched(&rb, &m20)
            },
        ],
        ..commit_of("movements")
    };
    let logged = commit(s, u.id, a.id, &input, &c, at).await.expect("version unchanged");
    assert_eq!(logged.len(), 2);
    assert_eq!(logged[0].kind, "conciliation.matched");
    assert!(logged[0]
        .data
        .contains(r#""external_id":"A","status":"matched","reason":null,"attempts":1"#));
    assert!(
        logged[0].data.contains(&format!(
            r#""movement":{{"id":"{}","amount":"10.00","name":"JUAN PEREZ","received_at":"{}"}}"#,
            m10.id, m10.received_at
        )),
        "{}",
        logged[0].data
    );
    assert!(logged[1].data.contains(r#""reason":"reference_match""#));

    let rows = requests(s, u.id, a.id).await;
    let a_row = rows.iter().find(|r| r.external_id == "A").unwrap();
    assert_eq!(
        (a_row.status, a_row.closed_at, a_row.updated_at, a_row.attempt_count),
        (ConciliationStatus::Matched, Some(at), at, 1)
    );
    let st = s.reconcile_state(a.id).await.unwrap().unwrap();
    assert_eq!((st.version, st.done_seq), (input.version + 1, input.dirty_seq));

    // The result deliveries, one per request (its subject), on the result channel.
    let ds = s.list_deliveries(u.id, a.id, 10, 0).await.unwrap();
    assert_eq!(ds.len(), 2);
    assert!(ds
        .iter()
        .all(|d| d.channel == CHANNEL_RESULT && d.event_type == "matched"));
    let subjects: Vec<Option<Uuid>> = ds.iter().map(|d| d.subject_id).collect();
    assert!(subjects.contains(&Some(ra.id.0)) && subjects.contains(&Some(rb.id.0)));

    // The movements list sees the matches.
    let mm = s.movement_matches(u.id, a.id, &[m20.id, m10.id]).await.unwrap();
    assert_eq!(
        mm,
        vec![
            (m20.id, Some((rb.id, "B".to_string())), None),
            (m10.id, Some((ra.id, "A".to_string())), None),
        ]
    );

    // The same commit again, on the stale version: nothing.
    assert_eq!(commit(s, u.id, a.id, &input, &c, at).await, None);
    // On the new version, proposing a movement already matched is a lost race: nothing.
    let fresh = PassInput {
        version: st.version,
        ..input.clone()
    };
    assert_eq!(commit(s, u.id, a.id, &fresh, &c, at).await, None);
    // Decisions about requests no longer open are no-ops that log nothing.
    let late = PassCommit {
        not_found: vec![not_found(&ra, "candidates_taken", "[]")],
        expired: vec![rb.id],
        ..commit_of("movements")
    };
    assert_eq!(commit(s, u.id, a.id, &fresh, &late, at).await, Some(vec![]));
    assert_eq!(s.reconcile_state(a.id).await.unwrap().unwrap().version, st.version);
    assert_eq!(
        requests(s, u.id, a.id)
            .await
            .iter()
            .filter(|r| r.status == ConciliationStatus::Matched)
            .count(),
        2
    );
}

pub async fn check_commit_pass_races(s: &dyn Store) {
    let t = now();
    let (u, a) = scene(s, t).await;
    let input = s.load_pass(a.id, t - Duration::days(5)).await.unwrap();
    let (ra, rb) = (by_ext(&input, "A").clone(), by_ext(&input, "B").clone());
    let m10 = by_amount(&input, "10.00").clone();
    // Two passes racing on one snapshot, each matching the movement to another request: one wins.
    let c1 = PassCommit {
        matched: vec![matched(&ra, &m10)],
        ..commit_of("movements")
    };
    let c2 = PassCommit {
        matched: vec![matched(&rb, &m10)],
        ..commit_of("movements")
    };
    let (o1, o2) = tokio::join!(
        commit(s, u.id, a.id, &input, &c1, t),
        commit(s, u.id, a.id, &input, &c2, t)
    );
    assert!(o1.is_some() ^ o2.is_some(), "{o1:?} {o2:?}");
    let rows = requests(s, u.id, a.id).await;
    let matched_n = rows.iter().filter(|r| r.status == ConciliationStatus::Matched).count();
    assert_eq!(matched_n, 1);
    assert_eq!(
        s.reconcile_state(a.id).await.unwrap().unwrap().version,
        input.version + 1
    );

    // One movement twice in one commit: the database refuses the second match; a lost race,
    // rolled back whole.
    let input = s.load_pass(a.id, t - Duration::days(5)).await.unwrap();
    let open = input.requests[0].clone();
    let m20 = by_amount(&input, "20.00").clone();
    poll(
        s,
        u.id,
        a.id,
        &success(
            vec![order("A", "10.00"), order("B", "20.00"), order("C", "20.00")],
            &[],
            t + ms(5),
        ),
    )
    .await;
    let input = s.load_pass(a.id, t - Duration::days(5)).await.unwrap();
    let rc = by_ext(&input, "C").clone();
    let c = PassCommit {
        matched: vec![matched(&open, &m20), matched(&rc, &m20)],
        not_found: vec![],
        ..commit_of("movements")
    };
    let before = requests(s, u.id, a.id).await;
    assert_eq!(commit(s, u.id, a.id, &input, &c, t + ms(10)).await, None);
    assert_eq!(requests(s, u.id, a.id).await, before, "rolled back");
    assert_eq!(s.reconcile_state(a.id).await.unwrap().unwrap().version, input.version);
    assert_eq!(
        s.movement_matches(u.id, a.id, &[m20.id]).await.unwrap(),
        vec![(m20.id, None, None)]
    );
}

pub async fn check_commit_pass_ambiguous_once(s: &dyn Store) {
    let t = now();
    let (u, a) = scene(s, t).await;
    let at = rfc3339(t + Duration::minutes(1));
    s.insert_movements(
        a.id,
        &[credit("m10b", "10.00", &at), credit("m10c", "10.00", &at)],
        t,
        &never_forward,
    )
    .await
    .unwrap();
    let input = s.load_pass(a.id, t - Duration::days(5)).await.unwrap();
    let ra = by_ext(&input, "A").clone();
    let tens: Vec<&EligibleMovement> = input.movements.iter().filter(|m| m.amount == "10.00").collect();
    assert_eq!(tens.len(), 3);
    let first = ambiguous(&ra, &tens[..2]);
    let c = PassCommit {
        ambiguous: vec![first.clone()],
        ..commit_of("movements")
    };
    let logged = commit(s, u.id, a.id, &input, &c, t + ms(1)).await.unwrap();
    assert_eq!(logged.len(), 1);
    assert!(logged[0]
        .data
        .contains(r#""status":"ambiguous","reason":"several_equally_plausible","attempts":1"#));
    let row = by_ext(&s.load_pass(a.id, t).await.unwrap(), "A").clone();
    assert_eq!(row.last_candidates.as_deref(), Some(first.candidate_set.as_str()));
    assert_eq!(row.reason.as_deref(), Some("several_equally_plausible"));

    // The same set again: no attempt, no event, no change.
    let input = s.load_pass(a.id, t - Duration::days(5)).await.unwrap();
    assert_eq!(commit(s, u.id, a.id, &input, &c, t + ms(2)).await, Some(vec![]));
    let again = by_ext(&s.load_pass(a.id, t).await.unwrap(), "A").clone();
    assert_eq!(again, row);
    // Another set while still ambiguous: an attempt recording it, but not a new entry (once
    // per entry, RECONCILIATION §5.6): no event, no second delivery.
    let all = ambiguous(&ra, &tens);
    let c3 = PassCommit {
        ambiguous: vec![all.clone()],
        ..commit_of("movements")
    };
    assert_eq!(commit(s, u.id, a.id, &input, &c3, t + ms(3)).await, Some(vec![]));
    let row = by_ext(&s.load_pass(a.id, t).await.unwrap(), "A").clone();
    assert_eq!(row.attempt_count, 2);
    assert_eq!(row.last_candidates.as_deref(), Some(all.candidate_set.as_str()));
    let ds = s.list_deliveries(u.id, a.id, 10, 0).await.unwrap();
    assert_eq!(ds.len(), 1);
    assert!(ds.iter().all(|d| d.subject_id == Some(ra.id.0)));
}

pub async fn check_commit_pass_not_found(s: &dyn Store) {
    let t = now();
    let (u, a) = scene(s, t).await;
    let input = s.load_pass(a.id, t - Duration::days(5)).await.unwrap();
    let ra = by_ext(&input, "A").clone();
    let pass = |reason: &str, cands: &str| PassCommit {
        not_found: vec![not_found(&ra, reason, cands)],
        ..commit_of("movements")
    };
    let attempts = |input: &PassInput| by_ext(input, "A").attempt_count;

    // First evaluation: attempt and event (a decision named twice counts once).
    let mut twice = pass("name_too_different", "[1]");
    twice.not_found.push(not_found(&ra, "name_too_different", "[1]"));
    let logged = commit(s, u.id, a.id, &input, &twice, t + ms(1)).await.unwrap();
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].kind, "conciliation.not_found");
    assert!(
        s.list_deliveries(u.id, a.id, 10, 0).await.unwrap().is_empty(),
        "no webhook"
    );
    let input = s.load_pass(a.id, t - Duration::days(5)).await.unwrap();
    let row = by_ext(&input, "A").clone();
    assert_eq!(
        (row.status, row.reason.as_deref(), row.attempt_count, row.updated_at),
        (ConciliationStatus::NotFound, Some("name_too_different"), 1, t + ms(1))
    );

    // Unchanged: nothing written, not even the version.
    assert_eq!(
        commit(s, u.id, a.id, &input, &pass("name_too_different", "[1]"), t + ms(2)).await,
        Some(vec![])
    );
    let same = s.load_pass(a.id, t - Duration::days(5)).await.unwrap();
    assert_eq!(by_ext(&same, "A"), &row);
    assert_eq!(same.version, input.version);

    // Other candidates, then another reason: an attempt each, no event.
    assert_eq!(
        commit(s, u.id, a.id, &same, &pass("name_too_different", "[2]"), t + ms(3)).await,
        Some(vec![])
    );
    let next = s.load_pass(a.id, t - Duration::days(5)).await.unwrap();
    assert_eq!((attempts(&next), next.version), (2, same.version + 1));
    assert_eq!(
        commit(s, u.id, a.id, &next, &pass("candidates_taken", "[2]"), t + ms(4)).await,
        Some(vec![])
    );
    let last = s.load_pass(a.id, t - Duration::days(5)).await.unwrap();
    assert_eq!(attempts(&last), 3);
    assert_eq!(by_ext(&last, "A").reason.as_deref(), Some("candidates_taken"));
}

pub async fn check_commit_pass_expires(s: &dyn Store) {
    let t = now();
    let (u, a) = scene(s, t).await;
    let input = s.load_pass(a.id, t - Duration::days(5)).await.unwrap();
    let (ra, rb) = (by_ext(&input, "A").clone(), by_ext(&input, "B").clone());
    let m10 = by_amount(&input, "10.00").clone();
    let at = t + Duration::days(5);
    // Expired first: a match of the same request in the same pass loses its compare.
    let c = PassCommit {
        expired: vec![ra.id, rb.id],
        matched: vec![matched(&ra, &m10)],
        ..commit_of("movements")
    };
    let logged = commit(s, u.id, a.id, &input, &c, at).await.unwrap();
    let kinds: Vec<&str> = logged.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["conciliation.expired", "conciliation.expired"]);
    let rows = requests(s, u.id, a.id).await;
    for r in &rows {
        assert_eq!(r.status, ConciliationStatus::Expired);
        assert_eq!(r.reason.as_deref(), Some("expired_after_5_days"));
        assert_eq!((r.closed_at, r.attempt_count), (Some(at), 1));
    }
    let after = s.load_pass(a.id, t - Duration::days(5)).await.unwrap();
    assert!(after.requests.is_empty());
    assert_eq!(after.movements.len(), 2, "the movement was not matched");
}

pub async fn check_delivery_subject_order(s: &dyn Store) {
    let owner = user(s).await;
    let a = account(s, owner.id, &bank(s).await).await;
    let t = now();
    let lease = t + Duration::seconds(60);
    let (x, y) = (Uuid::now_v7(), Uuid::now_v7());
    let of = |subject: Uuid, kind: &str| NewDelivery {
        channel: CHANNEL_RESULT.into(),
        subject_id: Some(subject),
        ..delivery(kind, t - ms(1))
    };
    let (x1, x2, y1) = (of(x, "ambiguous"), of(x, "matched"), of(y, "matched"));
    // x2 is due earlier than x1 but created later: it still waits.
    let x2 = NewDelivery {
        next_attempt_at: t - ms(50),
        ..x2
    };
    let e1 = delivering(event(owner.id, a.id, "conciliation.ambiguous", t - ms(30)), &[&x1]);
    let e2 = delivering(event(owner.id, a.id, "conciliation.matched", t - ms(20)), &[&x2, &y1]);
    s.record_events(&[e1.clone(), e2.clone()]).await.unwrap();

    let claimed = s.claim_due_deliveries(t, lease, 10, "instance-a").await.unwrap();
    assert_eq!(
        by_id(claimed),
        by_id(vec![leased(&e1, &x1, lease), leased(&e2, &y1, lease)])
    );
    // x1 and y1 due again when their lease ends; x1 still pending: x2 waits.
    let again: Vec<DeliveryId> = by_id(
        s.claim_due_deliveries(lease, lease + ms(1), 10, "instance-a")
            .await
            .unwrap(),
    )
    .iter()
    .map(|d| d.id)
    .collect();
    let mut want = vec![x1.id, y1.id];
    want.sort();
    assert_eq!(again, want);
    // x1 done (and y1 retried later): x2 goes.
    let done = |d: &NewDelivery, e: &NewEvent| DeliveryRow {
        status: "delivered".into(),
        attempts: 1,
        next_attempt_at: None,
        delivered_at: Some(t),
        ..queued(e, d)
    };
    assert!(s.finish_delivery_attempt(&done(&x1, &e1)).await.unwrap());
    let later = t + Duration::hours(1);
    let claimed = s
        .claim_due_deliveries(later, later + ms(1), 10, "instance-a")
        .await
        .unwrap();
    let ids: Vec<DeliveryId> = by_id(claimed).iter().map(|d| d.id).collect();
    let mut want = vec![x2.id, y1.id];
    want.sort();
    assert_eq!(ids, want);
    // Same creation time: the smaller id first.
    let (z, w) = (Uuid::now_v7(), Uuid::now_v7());
    let lo = of(z, "ambiguous");
    let hi = NewDelivery {
        id: DeliveryId(Uuid::from_u128(lo.id.0.as_u128() + 1)),
        ..of(z, "matched")
    };
    let other = of(w, "matched");
    let e3 = delivering(event(owner.id, a.id, "conciliation.matched", t), &[&hi, &lo, &other]);
    s.record_events(std::slice::from_ref(&e3)).await.unwrap();
    let far = t + Duration::hours(3);
    let claimed = by_id(
        s.claim_due_deliveries(far, far + ms(1), 10, "instance-a")
            .await
            .unwrap(),
    );
    let ids: Vec<DeliveryId> = claimed.iter().map(|d| d.id).collect();
    assert!(
        ids.contains(&lo.id) && ids.contains(&other.id) && !ids.contains(&hi.id),
        "{ids:?}"
    );
    // Notification deliveries (no subject) are never held back.
    let plain = delivery("login_failed", t);
    let e4 = delivering(event(owner.id, a.id, "session.login_failed", t), &[&plain]);
    s.record_events(std::slice::from_ref(&e4)).await.unwrap();
    let claimed = s
        .claim_due_deliveries(far, far + ms(1), 10, "instance-a")
        .await
        .unwrap();
    assert_eq!(claimed, vec![leased(&e4, &plain, far + ms(1))]);
    assert_eq!(claimed[0].channel, CHANNEL_NOTIFICATION);
}

pub async fn check_movement_matches_is_scoped(s: &dyn Store) {
    let t = now();
    let (u, a) = scene(s, t).await;
    let stranger = user(s).await;
    let input = s.load_pass(a.id, t - Duration::days(5)).await.unwrap();
    let ids: Vec<MovementId> = input.movements.iter().map(|m| m.id).collect();
    assert_eq!(s.movement_matches(stranger.id, a.id, &ids).await.unwrap(), vec![]);
    let other = account(s, u.id, &bank(s).await).await;
    assert_eq!(s.movement_matches(u.id, other.id, &ids).await.unwrap(), vec![]);
    assert_eq!(s.movement_matches(u.id, a.id, &[]).await.unwrap(), vec![]);
    let unknown = MovementId::new();
    assert_eq!(
        s.movement_matches(u.id, a.id, &[unknown, ids[1], ids[0]])
            .await
            .unwrap(),
        vec![(ids[1], None, None), (ids[0], None, None)]
    );
}

/// Ignored movements and rejected pairs (set behind the store's back: no store method sets them
/// yet): out of the pass, the ignore shown in the movements list; a matched movement ignored
/// meanwhile makes the commit a lost race.
pub async fn ignored_and_rejected(s: &dyn Store, backend: crate::Backend, url: &str) {
    let t = now();
    let (u, a) = scene(s, t).await;
    let input = s.load_pass(a.id, t - Duration::days(5)).await.unwrap();
    let (ra, rb) = (by_ext(&input, "A").clone(), by_ext(&input, "B").clone());
    let (m10, m20) = (by_amount(&input, "10.00").clone(), by_amount(&input, "20.00").clone());
    let at = t.timestamp_millis().to_string();
    let n = crate::raw(
        backend,
        url,
        "UPDATE movements SET ignored_at = CAST($1 AS BIGINT) WHERE external_id = $2",
        &[&at, "m10"],
    )
    .await;
    assert_eq!(n, 1);
    let n = crate::raw(
        backend,
        url,
        "INSERT INTO conciliation_rejections (request_id, movement_id, user_id, created_at) \
         SELECT r.id, m.id, r.id, 0 FROM conciliation_requests r, movements m \
         WHERE r.external_id = $1 AND m.external_id = $2",
        &["B", "m20"],
    )
    .await;
    assert_eq!(n, 1);
    let after = s.load_pass(a.id, t - Duration::days(5)).await.unwrap();
    assert_eq!(after.movements, vec![m20.clone()]);
    assert_eq!(after.rejections, vec![(rb.id, m20.id)]);
    assert_eq!(
        s.movement_matches(u.id, a.id, &[m10.id]).await.unwrap(),
        vec![(m10.id, None, Some(t))]
    );
    // The old snapshot proposes the ignored movement: the commit refuses it (ignoring moved the
    // version, see `ignoring_changes_the_group`).
    let c = PassCommit {
        matched: vec![matched(&ra, &m10)],
        ..commit_of("movements")
    };
    assert_eq!(commit(s, u.id, a.id, &input, &c, t).await, None);
    assert_eq!(
        by_ext(&s.load_pass(a.id, t).await.unwrap(), "A").status,
        ConciliationStatus::Pending
    );
}

/// Counts rows behind the store's back (an UPDATE that changes nothing).
pub async fn attempts_of(backend: crate::Backend, url: &str, external_id: &str) -> u64 {
    crate::raw(
        backend,
        url,
        "UPDATE conciliation_attempts SET reason = reason WHERE request_id IN \
         (SELECT id FROM conciliation_requests WHERE external_id = $1)",
        &[external_id],
    )
    .await
}

/// The attempts of a pass: numbered from the request's counter, one per change.
pub async fn attempts_are_recorded(s: &dyn Store, backend: crate::Backend, url: &str) {
    let t = now();
    let (u, a) = scene(s, t).await;
    let input = s.load_pass(a.id, t - Duration::days(5)).await.unwrap();
    let (ra, rb) = (by_ext(&input, "A").clone(), by_ext(&input, "B").clone());
    let m10 = by_amount(&input, "10.00").clone();
    let c = PassCommit {
        not_found: vec![
            not_found(&ra, "name_too_different", "[]"),
            not_found(&rb, "outside_window", "[]"),
        ],
        ..commit_of("poll")
    };
    commit(s, u.id, a.id, &input, &c, t).await.unwrap();
    let input = s.load_pass(a.id, t - Duration::days(5)).await.unwrap();
    commit(s, u.id, a.id, &input, &c, t).await.unwrap();
    assert_eq!(attempts_of(backend, url, "A").await, 1);
    let input = s.load_pass(a.id, t - Duration::days(5)).await.unwrap();
    let c = PassCommit {
        matched: vec![matched(&ra, &m10)],
        expired: vec![rb.id],
        ..commit_of("movements")
    };
    commit(s, u.id, a.id, &input, &c, t).await.unwrap();
    assert_eq!(attempts_of(backend, url, "A").await, 2);
    assert_eq!(attempts_of(backend, url, "B").await, 2);
    let n = crate::raw(
        backend,
        url,
        "UPDATE conciliation_attempts SET reason = reason WHERE attempt_number = 2 \
         AND ((result = 'matched' AND trigger = 'movements') OR (result = 'expired' AND trigger = 'expiry'))",
        &[],
    )
    .await;
    assert_eq!(n, 2);
}

/// The incremental snapshot: only the amount groups that changed since the last committed pass
/// (movements not seen yet, `pending` requests), with every open request and eligible movement
/// of those groups, plus the requests due to expire.
pub async fn check_load_pass_changes(s: &dyn Store) {
    let t = now();
    let (u, a) = reconcile_user(s).await;
    let horizon = t - Duration::days(5);
    let exts = |i: &PassInput| -> Vec<String> { i.requests.iter().map(|r| r.external_id.clone()).collect() };
    let amounts = |i: &PassInput| -> Vec<String> { i.movements.iter().map(|m| m.amount.clone()).collect() };
    // Nothing yet.
    assert_eq!(
        s.load_pass_changes(a.id, horizon, t).await.unwrap(),
        s.load_pass(a.id, horizon).await.unwrap()
    );
    poll(
        s,
        u.id,
        a.id,
        &success(vec![order("A", "1.00"), order("B", "2.00"), order("C", "3.00")], &[], t),
    )
    .await;
    let at = rfc3339(t + ms(60_000));
    s.insert_movements(
        a.id,
        &[credit("m1", "1", &at), credit("m5", "5.0", &at)],
        t,
        &never_forward,
    )
    .await
    .unwrap();
    // Everything is new: the same snapshot as load_pass.
    let first = s.load_pass_changes(a.id, horizon, t).await.unwrap();
    assert_eq!(first, s.load_pass(a.id, horizon).await.unwrap());
    assert_eq!(exts(&first), ["A", "B", "C"]);
    let (ra, rb, rc) = (
        by_ext(&first, "A").clone(),
        by_ext(&first, "B").clone(),
        by_ext(&first, "C").clone(),
    );
    let m1 = first.movements.iter().find(|m| m.amount == "1").unwrap().clone();
    let c = PassCommit {
        matched: vec![matched(&ra, &m1)],
        not_found: vec![
            not_found(&rb, "no_movement_with_amount", "[]"),
            not_found(&rc, "no_movement_with_amount", "[]"),
        ],
        ..commit_of("movements")
    };
    assert!(commit(s, u.id, a.id, &first, &c, t + ms(10)).await.is_some());
    // Committed: nothing changed since.
    let quiet = s.load_pass_changes(a.id, horizon, t).await.unwrap();
    assert!(quiet.requests.is_empty() && quiet.movements.is_empty(), "{quiet:?}");
    assert_eq!(quiet.version, s.reconcile_state(a.id).await.unwrap().unwrap().version);

    // A new movement of B's amount (another text of it): B's group only.
    s.insert_movements(a.id, &[credit("m2", "2.000", &at)], t, &never_forward)
        .await
        .unwrap();
    let new = s.load_pass_changes(a.id, horizon, t).await.unwrap();
    assert_eq!(
        (exts(&new), amounts(&new)),
        (vec!["B".to_string()], vec!["2.000".to_string()])
    );
    let rb = by_ext(&new, "B").clone();
    let c = PassCommit {
        not_found: vec![not_found(&rb, "name_too_different", "[]")],
        ..commit_of("movements")
    };
    assert!(commit(s, u.id, a.id, &new, &c, t + ms(20)).await.is_some());
    assert!(s.load_pass_changes(a.id, horizon, t).await.unwrap().requests.is_empty());

    // C now asks for 2.00: C is evaluated with B's group and its movement, seen before.
    poll(
        s,
        u.id,
        a.id,
        &success(
            vec![order("A", "1.00"), order("B", "2.00"), order("C", "2.00")],
            &[],
            t + ms(30),
        ),
    )
    .await;
    let changed = s.load_pass_changes(a.id, horizon, t).await.unwrap();
    assert_eq!(exts(&changed), ["B", "C"]);
    assert_eq!(amounts(&changed), ["2.000"]);
    assert_eq!(
        changed.requests.iter().find(|r| r.external_id == "C").unwrap().status,
        ConciliationStatus::Pending
    );
    let c = PassCommit {
        not_found: vec![
            not_found(by_ext(&changed, "B"), "name_too_different", "[]"),
            not_found(by_ext(&changed, "C"), "name_too_different", "[]"),
        ],
        ..commit_of("movements")
    };
    assert!(commit(s, u.id, a.id, &changed, &c, t + ms(40)).await.is_some());
    // Past their expiry, the open requests are read to expire, nothing else.
    let late = t + Duration::days(6);
    assert!(s.load_pass_changes(a.id, horizon, t).await.unwrap().requests.is_empty());
    let due = s.load_pass_changes(a.id, horizon, late).await.unwrap();
    assert_eq!(exts(&due), ["B", "C"]);
    assert!(due.movements.is_empty());
    // Another account's changes are not this one's.
    let other = account(s, u.id, &bank(s).await).await;
    s.insert_movements(other.id, &[credit("elsewhere", "2.00", &at)], t, &never_forward)
        .await
        .unwrap();
    assert!(s
        .load_pass_changes(a.id, horizon, t)
        .await
        .unwrap()
        .movements
        .is_empty());
    // A new order of the matched movement's amount: the movement comes with its group as taken
    // (it explains the order's outcome), never as free.
    poll(
        s,
        u.id,
        a.id,
        &success(
            vec![
                order("A", "1.00"),
                order("B", "2.00"),
                order("C", "2.00"),
                order("D", "1.00"),
            ],
            &[],
            t + ms(50),
        ),
    )
    .await;
    let again = s.load_pass_changes(a.id, horizon, t).await.unwrap();
    assert_eq!(exts(&again), ["D"]);
    assert!(again.movements.is_empty(), "{:?}", again.movements);
    assert_eq!(again.taken, vec![m1.clone()]);
    assert!(quiet.taken.is_empty());
}

/// Ignoring or un-ignoring a movement (written behind the store's back, as the review area will)
/// puts its group back in the incremental snapshot and moves the version (migration 0007's
/// trigger), so a pass computed before cannot commit.
pub async fn ignoring_changes_the_group(s: &dyn Store, backend: crate::Backend, url: &str) {
    let t = now();
    let (u, a) = scene(s, t).await;
    let horizon = t - Duration::days(5);
    let input = s.load_pass_changes(a.id, horizon, t).await.unwrap();
    let (ra, rb) = (by_ext(&input, "A").clone(), by_ext(&input, "B").clone());
    let m10 = by_amount(&input, "10.00").clone();
    let c = PassCommit {
        not_found: vec![
            not_found(&ra, "weak_name_only", "[]"),
            not_found(&rb, "weak_name_only", "[]"),
        ],
        ..commit_of("movements")
    };
    assert!(commit(s, u.id, a.id, &input, &c, t).await.is_some());
    let quiet = s.load_pass_changes(a.id, horizon, t).await.unwrap();
    assert!(quiet.requests.is_empty() && quiet.movements.is_empty());
    let ignore = |at: Option<i64>| async move {
        let sql = match at {
            Some(_) => "UPDATE movements SET ignored_at = CAST($1 AS BIGINT) WHERE external_id = $2",
            None => "UPDATE movements SET ignored_at = NULL WHERE external_id = $2 OR $1 = ''",
        };
        let at = at.map(|v| v.to_string()).unwrap_or_default();
        // (SQLite counts the trigger's own update of the row too.)
        assert!(crate::raw(backend, url, sql, &[&at, "m10"]).await >= 1);
    };
    ignore(Some(t.timestamp_millis())).await;
    let ignored = s.load_pass_changes(a.id, horizon, t).await.unwrap();
    assert_eq!(ignored.version, quiet.version + 1);
    let exts: Vec<&str> = ignored.requests.iter().map(|r| r.external_id.as_str()).collect();
    assert_eq!(exts, ["A"]);
    assert!(ignored.movements.is_empty(), "an ignored movement is not eligible");
    // The snapshot from before the change cannot commit.
    assert_eq!(commit(s, u.id, a.id, &quiet, &commit_of("movements"), t).await, None);
    assert!(commit(s, u.id, a.id, &ignored, &commit_of("movements"), t)
        .await
        .is_some());
    assert!(s.load_pass_changes(a.id, horizon, t).await.unwrap().requests.is_empty());
    // Un-ignored: eligible again, with its group.
    ignore(None).await;
    let back = s.load_pass_changes(a.id, horizon, t).await.unwrap();
    let exts: Vec<&str> = back.requests.iter().map(|r| r.external_id.as_str()).collect();
    assert_eq!((exts, back.movements.clone()), (vec!["A"], vec![m10]));
}

/// `recheck`: movements a pass matched that an ambiguous request also counted on stay unseen,
/// and the account dirty, so the next incremental snapshot holds their amount group again.
pub async fn check_commit_pass_recheck(s: &dyn Store) {
    let t = now();
    let (u, a) = reconcile_user(s).await;
    let horizon = t - Duration::days(5);
    poll(
        s,
        u.id,
        a.id,
        &success(
            vec![order("A", "1.00"), order("A2", "1.00"), order("B", "2.00")],
            &[],
            t,
        ),
    )
    .await;
    let at = rfc3339(t + ms(60_000));
    s.insert_movements(
        a.id,
        &[credit("m1", "1.00", &at), credit("m2", "2.00", &at)],
        t,
        &never_forward,
    )
    .await
    .unwrap();
    let first = s.load_pass_changes(a.id, horizon, t).await.unwrap();
    let m1 = first.movements.iter().find(|m| m.amount == "1.00").unwrap().clone();
    let m2 = first.movements.iter().find(|m| m.amount == "2.00").unwrap().clone();
    let c = PassCommit {
        matched: vec![matched(by_ext(&first, "A"), &m1), matched(by_ext(&first, "B"), &m2)],
        not_found: vec![not_found(by_ext(&first, "A2"), "candidates_taken", "[]")],
        recheck: vec![m1.id],
        ..commit_of("movements")
    };
    assert!(commit(s, u.id, a.id, &first, &c, t).await.is_some());
    let st = s.reconcile_state(a.id).await.unwrap().unwrap();
    assert!(st.dirty_seq > st.done_seq, "a follow-up pass is due: {st:?}");
    assert_eq!(s.dirty_accounts(10).await.unwrap(), vec![(a.id, st.dirty_seq)]);
    // The follow-up snapshot: the group of m1 (A2), not the one of m2 (B is matched anyway,
    // and m2 was seen).
    let next = s.load_pass_changes(a.id, horizon, t).await.unwrap();
    let exts: Vec<&str> = next.requests.iter().map(|r| r.external_id.as_str()).collect();
    assert_eq!(exts, ["A2"]);
    assert!(next.movements.is_empty(), "m1 is taken: {:?}", next.movements);
    // Committed without a recheck, the account is clean and nothing is left to load.
    assert!(commit(s, u.id, a.id, &next, &commit_of("movements"), t).await.is_some());
    let st = s.reconcile_state(a.id).await.unwrap().unwrap();
    assert_eq!(st.dirty_seq, st.done_seq);
    assert!(s.load_pass_changes(a.id, horizon, t).await.unwrap().requests.is_empty());
}
