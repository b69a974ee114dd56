//! Contract checks of the store's reconciliation review methods (see the section markers in
//! `Store`): a request's detail, manual resolve and reject, run, notify, the summary, movement
//! ignore, and the result channel's delivery log.

use chrono::Duration;
use reconbanker_store::*;

use crate::fixtures::*;
use crate::matching::{commit, commit_of, credit, matched, not_found, pass_events, rfc3339};
use crate::reconcile::{order, poll, reconcile_user, requests, success};

/// A reconcile-mode account with orders `A` (10.00) and `B` (20.00) registered at `t`, and
/// credits `m10` (10.00), `m10b` (10, the same amount written differently) and `m20` (20.00)
/// received a minute later, and a debit `d10` (-10.00).
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
    let news = [
        credit("m10", "10.00", &at),
        credit("m10b", "10", &at),
        credit("m20", "20.00", &at),
        credit("d10", "-10.00", &at),
    ];
    assert_eq!(s.insert_movements(a.id, &news, t, &never_forward).await.unwrap(), 4);
    (u, a)
}

fn req<'a>(rows: &'a [ConciliationRow], ext: &str) -> &'a ConciliationRow {
    rows.iter().find(|r| r.external_id == ext).unwrap()
}

async fn movement(s: &dyn Store, u: UserId, a: AccountId, ext: &str) -> MovementRow {
    s.list_movements(u, a, 100, 0)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.external_id == ext)
        .unwrap()
}

fn manual(r: &ConciliationRow, m: MovementId, user: UserId) -> ManualMatch {
    ManualMatch {
        request: r.id,
        movement: m,
        user,
        amount: r.amount.clone(),
        currency: r.currency.clone(),
        score: 1000,
        explanation: r#"{"manual":true}"#.into(),
        candidates: format!(r#"[{{"movement":"{m}","verdict":"chosen"}}]"#),
    }
}

fn request_event(owner: UserId, account: AccountId, at: Timestamp, kind: &str, r: &ConciliationRow) -> Vec<NewEvent> {
    vec![NewEvent {
        data: format!(
            r#"{{"external_id":"{}","status":"{}"}}"#,
            r.external_id,
            r.status.as_str()
        ),
        ..event(owner, account, kind, at)
    }]
}

async fn state(s: &dyn Store, a: AccountId) -> ReconcileStateRow {
    s.reconcile_state(a).await.unwrap().unwrap()
}

pub async fn check_conciliation_detail(s: &dyn Store) {
    let t = now();
    let (u, a) = scene(s, t).await;
    let rows = requests(s, u.id, a.id).await;
    let ra = req(&rows, "A").clone();

    // Before any decision: no attempts, no match, every movement of the window, no deliveries.
    let d = s.conciliation_detail(u.id, ra.id).await.unwrap().unwrap();
    assert_eq!(d.request.request, ra);
    assert_eq!(d.request.account_name, a.name);
    assert!(d.attempts.is_empty() && d.matched.is_none() && d.deliveries.is_empty());
    let mut exts: Vec<String> = d.movements.iter().map(|m| m.movement.description.clone()).collect();
    exts.sort();
    assert_eq!(exts, ["transfer d10", "transfer m10", "transfer m10b", "transfer m20"]);
    assert!(d
        .movements
        .iter()
        .all(|m| m.taken_by.is_none() && m.ignored_at.is_none() && !m.rejected));

    // A movement far outside the window is left out.
    let old = rfc3339(t - Duration::days(11));
    s.insert_movements(a.id, &[credit("old", "10.00", &old)], t, &never_forward)
        .await
        .unwrap();

    // The engine matches A to m10: attempt, match, delivery.
    let input = s.load_pass(a.id, t - Duration::days(30)).await.unwrap();
    let m10 = input
        .movements
        .iter()
        .find(|m| m.description == "transfer m10")
        .unwrap()
        .clone();
    let mut c = commit_of("movements");
    c.matched.push(matched(&ra, &m10));
    commit(s, u.id, a.id, &input, &c, t + ms(5)).await.unwrap();
    let d = s.conciliation_detail(u.id, ra.id).await.unwrap().unwrap();
    assert_eq!(d.request.request.status, ConciliationStatus::Matched);
    assert_eq!(d.attempts.len(), 1);
    let at = &d.attempts[0];
    assert_eq!(
        (at.attempt_number, at.result.as_str(), at.trigger.as_str(), at.user_id),
        (1, "matched", "movements", None)
    );
    let m = d.matched.unwrap();
    assert_eq!(
        (m.movement.id, m.matched_by.as_str(), m.score),
        (m10.id, "engine", 1000)
    );
    assert_eq!(m.movement, m10);
    // Keyed by the pass: the amount group (m10, m10b); the old 10.00 is outside the window.
    assert_eq!(d.movements.len(), 2, "{:?}", d.movements);
    let taken = d.movements.iter().find(|x| x.movement.id == m10.id).unwrap();
    assert_eq!(taken.taken_by, Some((ra.id, "A".to_string())));
    assert_eq!(d.deliveries.len(), 1);
    assert_eq!(
        (d.deliveries[0].channel.as_str(), d.deliveries[0].subject_id),
        (CHANNEL_RESULT, Some(ra.id.0))
    );

    // Another user's request is unknown.
    let other = user(s).await;
    assert_eq!(s.conciliation_detail(other.id, ra.id).await.unwrap(), None);
    assert_eq!(
        s.conciliation_detail(u.id, ConciliationRequestId::new()).await.unwrap(),
        None
    );
}

pub async fn check_movement_for_user(s: &dyn Store) {
    let t = now();
    let (u, a) = scene(s, t).await;
    let m = movement(s, u.id, a.id, "m10").await;
    let got = s.movement_for_user(u.id, m.id).await.unwrap().unwrap();
    assert_eq!(got.account_id, a.id);
    assert_eq!(
        (
            got.movement.id,
            got.movement.amount.as_str(),
            got.taken_by,
            got.ignored_at
        ),
        (m.id, "10.00", None, None)
    );
    assert_eq!(
        got.movement.received_at_ms,
        Some((t + Duration::minutes(1)).timestamp_millis())
    );
    let other = user(s).await;
    assert_eq!(s.movement_for_user(other.id, m.id).await.unwrap(), None);
    assert_eq!(s.movement_for_user(u.id, MovementId::new()).await.unwrap(), None);
}

pub async fn check_resolve_conciliation(s: &dyn Store) {
    let t = now();
    let (u, a) = scene(s, t).await;
    let rows = requests(s, u.id, a.id).await;
    let (ra, rb) = (req(&rows, "A").clone(), req(&rows, "B").clone());
    let m10 = movement(s, u.id, a.id, "m10").await;
    let m10b = movement(s, u.id, a.id, "m10b").await;
    let events = |e: PassEvent<'_>| pass_events(u.id, a.id, t, e);

    // Another user, an unknown movement, another account's movement, a changed amount.
    let other = user(s).await;
    assert_eq!(
        s.resolve_conciliation(other.id, &manual(&ra, m10.id, other.id), t, &events)
            .await
            .unwrap(),
        ResolveOutcome::NotFound
    );
    assert_eq!(
        s.resolve_conciliation(u.id, &manual(&ra, MovementId::new(), u.id), t, &events)
            .await
            .unwrap(),
        ResolveOutcome::MovementNotFound
    );
    let b = bank(s).await;
    let a2 = account(s, u.id, &b).await;
    s.insert_movements(a2.id, &[credit("x10", "10.00", &rfc3339(t))], t, &never_forward)
        .await
        .unwrap();
    let x10 = movement(s, u.id, a2.id, "x10").await;
    assert_eq!(
        s.resolve_conciliation(u.id, &manual(&ra, x10.id, u.id), t, &events)
            .await
            .unwrap(),
        ResolveOutcome::OtherAccount
    );
    let stale = ManualMatch {
        amount: "11.00".into(),
        ..manual(&ra, m10.id, u.id)
    };
    assert_eq!(
        s.resolve_conciliation(u.id, &stale, t, &events).await.unwrap(),
        ResolveOutcome::Changed
    );
    // An ignored movement is refused.
    let none = |_: &MovementRow| Vec::new();
    s.set_movement_ignored(u.id, a.id, m10b.id, Some(t), &none)
        .await
        .unwrap();
    assert_eq!(
        s.resolve_conciliation(u.id, &manual(&ra, m10b.id, u.id), t, &events)
            .await
            .unwrap(),
        ResolveOutcome::Ignored
    );
    assert!(s
        .conciliation_detail(u.id, ra.id)
        .await
        .unwrap()
        .unwrap()
        .attempts
        .is_empty());

    // Resolved: matched by hand, an attempt with the user, the event and its delivery, the
    // account dirty with a new version.
    let before = state(s, a.id).await;
    let at = t + ms(10);
    let ResolveOutcome::Resolved(row, logged) = s
        .resolve_conciliation(u.id, &manual(&ra, m10.id, u.id), at, &events)
        .await
        .unwrap()
    else {
        panic!("resolved")
    };
    assert_eq!(row.status, ConciliationStatus::Matched);
    assert_eq!(row.reason.as_deref(), Some("resolved_manually"));
    assert_eq!((row.closed_at, row.attempt_count), (Some(at), 1));
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].kind, "conciliation.matched");
    let after = state(s, a.id).await;
    assert_eq!(after.version, before.version + 1);
    assert_eq!(after.dirty_seq, before.dirty_seq + 1);
    let d = s.conciliation_detail(u.id, ra.id).await.unwrap().unwrap();
    let m = d.matched.unwrap();
    assert_eq!(
        (
            m.movement.id,
            m.matched_by.as_str(),
            m.matched_by_user,
            m.score,
            m.matched_at
        ),
        (m10.id, "manual", Some(u.id), 1000, at)
    );
    assert_eq!(m.explanation, r#"{"manual":true}"#);
    let att = &d.attempts[0];
    assert_eq!(
        (
            att.attempt_number,
            att.result.as_str(),
            att.reason.as_deref(),
            att.trigger.as_str(),
            att.user_id
        ),
        (1, "matched", Some("resolved_manually"), "resolve", Some(u.id))
    );
    assert_eq!(d.deliveries.len(), 1);
    assert_eq!(d.deliveries[0].event_type, "matched");
    // The movement is no longer eligible; the request is closed; B cannot take the movement.
    let input = s.load_pass(a.id, t - Duration::days(30)).await.unwrap();
    assert!(input.movements.iter().all(|x| x.id != m10.id));
    assert_eq!(
        s.resolve_conciliation(u.id, &manual(&ra, m10.id, u.id), at, &events)
            .await
            .unwrap(),
        ResolveOutcome::Closed(ConciliationStatus::Matched)
    );
    assert_eq!(
        s.resolve_conciliation(u.id, &manual(&rb, m10.id, u.id), at, &events)
            .await
            .unwrap(),
        ResolveOutcome::Taken
    );
}

pub async fn check_reject_candidates(s: &dyn Store) {
    let t = now();
    let (u, a) = scene(s, t).await;
    let rows = requests(s, u.id, a.id).await;
    let ra = req(&rows, "A").clone();
    let m10 = movement(s, u.id, a.id, "m10").await;
    let m10b = movement(s, u.id, a.id, "m10b").await;
    let events = |r: &ConciliationRow| request_event(u.id, a.id, t, "conciliation.rejected", r);
    let other = user(s).await;
    assert_eq!(
        s.reject_candidates(other.id, ra.id, &[m10.id], "[]", t, &events)
            .await
            .unwrap(),
        RequestChange::NotFound
    );
    // Another account's movement is not recorded as a rejection.
    let b = bank(s).await;
    let a2 = account(s, u.id, &b).await;
    s.insert_movements(a2.id, &[credit("x10", "10.00", &rfc3339(t))], t, &never_forward)
        .await
        .unwrap();
    let x10 = movement(s, u.id, a2.id, "x10").await;
    let before = state(s, a.id).await;
    let RequestChange::Done(row, logged) = s
        .reject_candidates(
            u.id,
            ra.id,
            &[m10.id, m10b.id, x10.id],
            r#"[{"n":2}]"#,
            t + ms(1),
            &events,
        )
        .await
        .unwrap()
    else {
        panic!("done")
    };
    assert_eq!(row.status, ConciliationStatus::NotFound);
    assert_eq!(row.reason.as_deref(), Some("candidates_rejected"));
    assert_eq!(row.attempt_count, 1);
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].kind, "conciliation.rejected");
    assert_eq!(state(s, a.id).await.dirty_seq, before.dirty_seq + 1);
    let input = s.load_pass(a.id, t - Duration::days(30)).await.unwrap();
    let mut pairs = input.rejections.clone();
    pairs.sort();
    let mut want = vec![(ra.id, m10.id), (ra.id, m10b.id)];
    want.sort();
    assert_eq!(pairs, want);
    let d = s.conciliation_detail(u.id, ra.id).await.unwrap().unwrap();
    assert!(d.movements.iter().filter(|m| m.rejected).count() == 2);
    let att = &d.attempts[0];
    assert_eq!(
        (
            att.result.as_str(),
            att.reason.as_deref(),
            att.trigger.as_str(),
            att.user_id
        ),
        ("not_found", Some("candidates_rejected"), "resolve", Some(u.id))
    );
    assert_eq!(att.candidates, r#"[{"n":2}]"#);
    // Rejecting again is idempotent for the pairs; a closed request refuses.
    s.reject_candidates(u.id, ra.id, &[m10.id], "[]", t + ms(2), &events)
        .await
        .unwrap();
    assert_eq!(
        s.load_pass(a.id, t - Duration::days(30))
            .await
            .unwrap()
            .rejections
            .len(),
        2
    );
    let mut c = commit_of("movements");
    c.expired.push(ra.id);
    let input = s.load_pass(a.id, t - Duration::days(30)).await.unwrap();
    commit(s, u.id, a.id, &input, &c, t + ms(3)).await.unwrap();
    assert_eq!(
        s.reject_candidates(u.id, ra.id, &[], "[]", t + ms(4), &events)
            .await
            .unwrap(),
        RequestChange::Closed(ConciliationStatus::Expired)
    );
}

pub async fn check_run_conciliation(s: &dyn Store) {
    let t = now();
    let (u, a) = scene(s, t).await;
    let rows = requests(s, u.id, a.id).await;
    let rb = req(&rows, "B").clone();
    let events = |r: &ConciliationRow| request_event(u.id, a.id, t, "conciliation.run_requested", r);

    // B is evaluated: not found.
    let input = s.load_pass(a.id, t - Duration::days(30)).await.unwrap();
    let mut c = commit_of("movements");
    c.not_found.push(not_found(&rb, "name_too_different", "[]"));
    commit(s, u.id, a.id, &input, &c, t + ms(1)).await.unwrap();
    // The same decision again records nothing new.
    let input = s.load_pass(a.id, t - Duration::days(30)).await.unwrap();
    commit(s, u.id, a.id, &input, &c, t + ms(2)).await.unwrap();
    assert_eq!(
        s.conciliation_detail(u.id, rb.id)
            .await
            .unwrap()
            .unwrap()
            .attempts
            .len(),
        1
    );

    let other = user(s).await;
    assert_eq!(
        s.run_conciliation(other.id, rb.id, t, &events).await.unwrap(),
        RequestChange::NotFound
    );
    let before = state(s, a.id).await;
    let RequestChange::Done(row, logged) = s.run_conciliation(u.id, rb.id, t + ms(3), &events).await.unwrap() else {
        panic!("done")
    };
    assert_eq!(row.status, ConciliationStatus::Pending);
    assert_eq!(logged[0].kind, "conciliation.run_requested");
    let after = state(s, a.id).await;
    assert_eq!(
        (after.version, after.dirty_seq),
        (before.version + 1, before.dirty_seq + 1)
    );
    // The next pass records its decision with trigger `run`, even an unchanged one …
    let input = s.load_pass(a.id, t - Duration::days(30)).await.unwrap();
    let pending = input.requests.iter().find(|r| r.id == rb.id).unwrap();
    assert_eq!(pending.status, ConciliationStatus::Pending);
    commit(s, u.id, a.id, &input, &c, t + ms(4)).await.unwrap();
    let d = s.conciliation_detail(u.id, rb.id).await.unwrap().unwrap();
    assert_eq!(d.request.request.status, ConciliationStatus::NotFound);
    let triggers: Vec<&str> = d.attempts.iter().map(|x| x.trigger.as_str()).collect();
    assert_eq!(triggers, ["movements", "run"]);
    // … once: the pass after that is the usual one.
    let input = s.load_pass(a.id, t - Duration::days(30)).await.unwrap();
    commit(s, u.id, a.id, &input, &c, t + ms(5)).await.unwrap();
    assert_eq!(
        s.conciliation_detail(u.id, rb.id)
            .await
            .unwrap()
            .unwrap()
            .attempts
            .len(),
        2
    );

    // A closed request cannot run.
    let m20 = input
        .movements
        .iter()
        .find(|m| m.description == "transfer m20")
        .unwrap();
    let mut c = commit_of("movements");
    c.matched.push(matched(&d.request.request, m20));
    commit(s, u.id, a.id, &input, &c, t + ms(6)).await.unwrap();
    assert_eq!(
        s.run_conciliation(u.id, rb.id, t + ms(7), &events).await.unwrap(),
        RequestChange::Closed(ConciliationStatus::Matched)
    );
}

pub async fn check_notify_conciliation(s: &dyn Store) {
    let t = now();
    let (u, a) = scene(s, t).await;
    let rows = requests(s, u.id, a.id).await;
    let (ra, rb) = (req(&rows, "A").clone(), req(&rows, "B").clone());
    // The server's rule: a matched request is sent with its movement; B (pending) has nothing.
    let build = |r: &ConciliationRow, m: Option<&EligibleMovement>| -> Option<NewEvent> {
        let m = m?;
        let d = NewDelivery {
            payload: format!(r#"{{"external_id":"{}","movement":"{}"}}"#, r.external_id, m.id),
            channel: CHANNEL_RESULT.into(),
            subject_id: Some(r.id.0),
            ..delivery(r.status.as_str(), t)
        };
        Some(delivering(event(u.id, a.id, "conciliation.notified", t), &[&d]))
    };
    assert_eq!(
        s.notify_conciliation(u.id, rb.id, t, &build).await.unwrap(),
        NotifyOutcome::NothingToSend(ConciliationStatus::Pending)
    );
    let other = user(s).await;
    assert_eq!(
        s.notify_conciliation(other.id, ra.id, t, &build).await.unwrap(),
        NotifyOutcome::NotFound
    );

    // A matched by the engine without a delivery (as if its webhook had been switched off):
    // notify creates one from the current state.
    let input = s.load_pass(a.id, t - Duration::days(30)).await.unwrap();
    let m10 = input
        .movements
        .iter()
        .find(|m| m.description == "transfer m10")
        .unwrap();
    let mut c = commit_of("movements");
    c.matched.push(matched(&ra, m10));
    s.commit_pass(a.id, input.version, input.dirty_seq, &c, t, &|_| Vec::new())
        .await
        .unwrap()
        .unwrap();
    let NotifyOutcome::Created(created, logged) = s.notify_conciliation(u.id, ra.id, t + ms(1), &build).await.unwrap()
    else {
        panic!("created")
    };
    assert_eq!(
        (created.status.as_str(), created.channel.as_str(), created.subject_id),
        ("pending", CHANNEL_RESULT, Some(ra.id.0))
    );
    assert_eq!(created.event_type, "matched");
    assert!(created.payload.contains(&m10.id.to_string()));
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].kind, "conciliation.notified");

    // Delivered, then notified again: the same delivery is queued again.
    let delivered = DeliveryRow {
        status: "delivered".into(),
        attempts: 1,
        next_attempt_at: None,
        delivered_at: Some(t + ms(2)),
        ..created.clone()
    };
    assert!(s.finish_delivery_attempt(&delivered).await.unwrap());
    let NotifyOutcome::Requeued(again, logged) = s.notify_conciliation(u.id, ra.id, t + ms(3), &build).await.unwrap()
    else {
        panic!("requeued")
    };
    assert_eq!(again.id, created.id);
    assert_eq!(
        (again.status.as_str(), again.next_attempt_at),
        ("pending", Some(t + ms(3)))
    );
    assert_eq!(logged.len(), 1);
    let d = s.conciliation_detail(u.id, ra.id).await.unwrap().unwrap();
    assert_eq!(d.deliveries.len(), 1, "no second delivery");
}

pub async fn check_conciliation_summary(s: &dyn Store) {
    let t = now();
    let (u, a) = scene(s, t).await;
    let b = bank(s).await;
    let empty = account(s, u.id, &b).await;
    let rows = requests(s, u.id, a.id).await;
    let (ra, rb) = (req(&rows, "A").clone(), req(&rows, "B").clone());
    let input = s.load_pass(a.id, t - Duration::days(30)).await.unwrap();
    let mut c = commit_of("movements");
    c.not_found.push(not_found(&ra, "weak_name_only", "[]"));
    c.not_found.push(not_found(&rb, "name_too_different", "[]"));
    commit(s, u.id, a.id, &input, &c, t + ms(1)).await.unwrap();

    let count = |row: &ConciliationSummaryRow, st: ConciliationStatus| {
        row.counts.iter().find(|(s, _)| *s == st).map(|(_, n)| *n).unwrap()
    };
    let all = s.conciliation_summary(u.id, None).await.unwrap();
    assert_eq!(all.len(), 2);
    let mine = all.iter().find(|r| r.account_id == a.id).unwrap();
    assert_eq!(mine.counts.len(), ConciliationStatus::ALL.len());
    assert_eq!(count(mine, ConciliationStatus::NotFound), 2);
    assert_eq!(count(mine, ConciliationStatus::Pending), 0);
    assert_eq!(mine.review, 1, "the weak one waits for review");
    let zero = all.iter().find(|r| r.account_id == empty.id).unwrap();
    assert!(zero.counts.iter().all(|(_, n)| *n == 0) && zero.review == 0);
    let one = s.conciliation_summary(u.id, Some(a.id)).await.unwrap();
    assert_eq!(one, vec![mine.clone()]);
    let other = user(s).await;
    assert!(s.conciliation_summary(other.id, None).await.unwrap().is_empty());
    assert!(s.conciliation_summary(other.id, Some(a.id)).await.unwrap().is_empty());
}

pub async fn check_set_movement_ignored(s: &dyn Store) {
    let t = now();
    let (u, a) = scene(s, t).await;
    let m10 = movement(s, u.id, a.id, "m10").await;
    let m20 = movement(s, u.id, a.id, "m20").await;
    let events = |m: &MovementRow| {
        vec![NewEvent {
            data: format!(r#"{{"movement":"{}"}}"#, m.external_id),
            ..event(u.id, a.id, "movement.ignored", t)
        }]
    };
    let other = user(s).await;
    assert_eq!(
        s.set_movement_ignored(other.id, a.id, m10.id, Some(t), &events)
            .await
            .unwrap(),
        IgnoreOutcome::NotFound
    );
    assert_eq!(
        s.set_movement_ignored(u.id, a.id, MovementId::new(), Some(t), &events)
            .await
            .unwrap(),
        IgnoreOutcome::NotFound
    );
    // A is ambiguous between m10 and m10b.
    let input = s.load_pass(a.id, t - Duration::days(30)).await.unwrap();
    let ra = req(&input.requests, "A").clone();
    let (e10, e10b) = (
        input.movements.iter().find(|m| m.id == m10.id).unwrap().clone(),
        input
            .movements
            .iter()
            .find(|m| m.description == "transfer m10b")
            .unwrap()
            .clone(),
    );
    let mut c = commit_of("movements");
    c.ambiguous.push(crate::matching::ambiguous(&ra, &[&e10, &e10b]));
    commit(s, u.id, a.id, &input, &c, t).await.unwrap();
    let before = state(s, a.id).await;
    let IgnoreOutcome::Done(row, at, logged) = s
        .set_movement_ignored(u.id, a.id, m10.id, Some(t), &events)
        .await
        .unwrap()
    else {
        panic!("done")
    };
    assert_eq!((row, at, logged.len()), (m10.clone(), Some(t), 1));
    assert_eq!(state(s, a.id).await.dirty_seq, before.dirty_seq + 1);
    assert_eq!(
        s.movement_matches(u.id, a.id, &[m10.id]).await.unwrap(),
        vec![(m10.id, None, Some(t))]
    );
    let input = s.load_pass(a.id, t - Duration::days(30)).await.unwrap();
    assert!(input.movements.iter().all(|m| m.id != m10.id));
    // The next pass decides A again, recorded as caused by the ignore.
    let mut c = commit_of("movements");
    c.matched.push(matched(&ra, &e10b));
    commit(s, u.id, a.id, &input, &c, t + ms(1)).await.unwrap();
    let d = s.conciliation_detail(u.id, ra.id).await.unwrap().unwrap();
    let triggers: Vec<&str> = d.attempts.iter().map(|x| x.trigger.as_str()).collect();
    assert_eq!(triggers, ["movements", "ignore"]);
    // Again: nothing changes, the first mark stays.
    let IgnoreOutcome::Done(_, at, logged) = s
        .set_movement_ignored(u.id, a.id, m10.id, Some(t + ms(5)), &events)
        .await
        .unwrap()
    else {
        panic!("done")
    };
    assert_eq!((at, logged.len()), (Some(t), 0));
    // Un-ignored: back in the pass's input.
    let IgnoreOutcome::Done(_, at, logged) = s.set_movement_ignored(u.id, a.id, m10.id, None, &events).await.unwrap()
    else {
        panic!("done")
    };
    assert_eq!((at, logged.len()), (None, 1));
    let input = s.load_pass(a.id, t - Duration::days(30)).await.unwrap();
    assert!(input.movements.iter().any(|m| m.id == m10.id));
    // A matched movement cannot be ignored (nor un-ignored).
    let rb = req(&input.requests, "B").clone();
    let em20 = input.movements.iter().find(|m| m.id == m20.id).unwrap();
    let mut c = commit_of("movements");
    c.matched.push(matched(&rb, em20));
    commit(s, u.id, a.id, &input, &c, t).await.unwrap();
    assert_eq!(
        s.set_movement_ignored(u.id, a.id, m20.id, Some(t), &events)
            .await
            .unwrap(),
        IgnoreOutcome::Taken
    );
    assert_eq!(
        s.set_movement_ignored(u.id, a.id, m20.id, None, &events).await.unwrap(),
        IgnoreOutcome::Taken
    );
}

pub async fn check_channel_deliveries(s: &dyn Store) {
    let t = now();
    let u = user(s).await;
    let b = bank(s).await;
    let a = account(s, u.id, &b).await;
    let note = delivery("login_failed", t);
    let result = NewDelivery {
        channel: CHANNEL_RESULT.into(),
        subject_id: Some(uuid::Uuid::now_v7()),
        ..delivery("matched", t + ms(1))
    };
    let result2 = NewDelivery {
        channel: CHANNEL_RESULT.into(),
        ..delivery("ambiguous", t + ms(2))
    };
    let e1 = delivering(event(u.id, a.id, "login.failed", t), &[&note]);
    let e2 = delivering(event(u.id, a.id, "conciliation.matched", t + ms(1)), &[&result]);
    let e3 = delivering(event(u.id, a.id, "conciliation.ambiguous", t + ms(2)), &[&result2]);
    s.record_events(&[e1.clone(), e2.clone(), e3.clone()]).await.unwrap();

    let ids = |rows: Vec<DeliveryRow>| rows.into_iter().map(|d| d.id).collect::<Vec<_>>();
    let results = s
        .list_channel_deliveries(u.id, a.id, CHANNEL_RESULT, None, 10, 0)
        .await
        .unwrap();
    assert_eq!(
        results,
        vec![queued(&e3, &result2), queued(&e2, &result)],
        "newest first"
    );
    assert_eq!(
        ids(s
            .list_channel_deliveries(u.id, a.id, CHANNEL_NOTIFICATION, None, 10, 0)
            .await
            .unwrap()),
        vec![note.id]
    );
    assert_eq!(
        ids(s
            .list_channel_deliveries(u.id, a.id, CHANNEL_RESULT, None, 1, 1)
            .await
            .unwrap()),
        vec![result.id]
    );
    // By status.
    let done = DeliveryRow {
        status: "dead".into(),
        attempts: 8,
        next_attempt_at: None,
        ..queued(&e2, &result)
    };
    assert!(s.finish_delivery_attempt(&done).await.unwrap());
    assert_eq!(
        ids(s
            .list_channel_deliveries(u.id, a.id, CHANNEL_RESULT, Some("dead"), 10, 0)
            .await
            .unwrap()),
        vec![result.id]
    );
    assert_eq!(
        ids(s
            .list_channel_deliveries(u.id, a.id, CHANNEL_RESULT, Some("pending"), 10, 0)
            .await
            .unwrap()),
        vec![result2.id]
    );
    let other = user(s).await;
    assert!(s
        .list_channel_deliveries(other.id, a.id, CHANNEL_RESULT, None, 10, 0)
        .await
        .unwrap()
        .is_empty());

    // Resend: only on its channel, only the owner's; same id, pending again, due now.
    let at = t + ms(100);
    assert_eq!(
        s.resend_channel_delivery(u.id, a.id, CHANNEL_NOTIFICATION, result.id, at)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.resend_channel_delivery(other.id, a.id, CHANNEL_RESULT, result.id, at)
            .await
            .unwrap(),
        None
    );
    let again = s
        .resend_channel_delivery(u.id, a.id, CHANNEL_RESULT, result.id, at)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (again.id, again.status.as_str(), again.next_attempt_at, again.attempts),
        (result.id, "pending", Some(at), 8)
    );
}

/// The review view reads the request's amount group, so movements of other amounts never crowd
/// its candidates out; a human action on a request past its `expires_at` finds it expired.
pub async fn check_review_reads_the_amount_group_and_respects_expiry(s: &dyn Store) {
    let t = now();
    let (u, a) = scene(s, t).await;
    let ra = req(&requests(s, u.id, a.id).await, "A").clone();
    // Busy account: more movements of other amounts in the window than the scan limit, older
    // than the request's candidates (the scan reads oldest first).
    let early = rfc3339(t - Duration::days(1));
    let noise: Vec<NewMovement> = (0..REVIEW_SCAN_LIMIT + 100)
        .map(|i| credit(&format!("n{i}"), "99.00", &early))
        .collect();
    s.insert_movements(a.id, &noise, t, &never_forward).await.unwrap();
    // A pass keys every movement by its amount.
    let input = s.load_pass_changes(a.id, t - Duration::days(11), t).await.unwrap();
    assert!(commit(s, u.id, a.id, &input, &commit_of("movements"), t)
        .await
        .is_some());
    let d = s.conciliation_detail(u.id, ra.id).await.unwrap().unwrap();
    let mut exts: Vec<String> = d.movements.iter().map(|m| m.movement.description.clone()).collect();
    exts.sort();
    assert_eq!(exts, ["transfer m10", "transfer m10b"]);

    // Past its life (the sweep has not closed it yet): no resolve, reject or run revives it.
    let m10 = movement(s, u.id, a.id, "m10").await;
    let late = ra.expires_at;
    let events = |e: PassEvent<'_>| pass_events(u.id, a.id, late, e);
    assert_eq!(
        s.resolve_conciliation(u.id, &manual(&ra, m10.id, u.id), late, &events)
            .await
            .unwrap(),
        ResolveOutcome::Closed(ConciliationStatus::Expired)
    );
    let just_before = late - Duration::milliseconds(1);
    let events = |e: PassEvent<'_>| pass_events(u.id, a.id, just_before, e);
    assert!(matches!(
        s.resolve_conciliation(u.id, &manual(&ra, m10.id, u.id), just_before, &events)
            .await
            .unwrap(),
        ResolveOutcome::Resolved(..)
    ));
}

/// A movement matched by hand leaves its amount group (the match trigger of migration 0020
/// marks it unseen): the next incremental snapshot holds the group's other open requests and
/// its still eligible movements, so a request that counted on the taken movement is decided
/// again. The other groups stay quiet.
pub async fn check_a_match_by_hand_changes_the_group(s: &dyn Store) {
    let t = now();
    let (u, a) = reconcile_user(s).await;
    let orders = vec![order("A", "10.00"), order("A2", "10.00"), order("B", "20.00")];
    poll(s, u.id, a.id, &success(orders, &[], t)).await;
    let at = rfc3339(t + Duration::minutes(1));
    let news = [
        credit("m10", "10.00", &at),
        credit("m10b", "10.00", &at),
        credit("m20", "20.00", &at),
    ];
    assert_eq!(s.insert_movements(a.id, &news, t, &never_forward).await.unwrap(), 3);
    let horizon = t - Duration::days(5);
    // A pass sees everything and decides every request not found.
    let first = s.load_pass_changes(a.id, horizon, t).await.unwrap();
    let c = PassCommit {
        not_found: first
            .requests
            .iter()
            .map(|r| not_found(r, "weak_name_only", "[]"))
            .collect(),
        ..commit_of("movements")
    };
    assert!(commit(s, u.id, a.id, &first, &c, t).await.is_some());
    let quiet = s.load_pass_changes(a.id, horizon, t).await.unwrap();
    assert!(quiet.requests.is_empty() && quiet.movements.is_empty(), "{quiet:?}");

    let ra = req(&requests(s, u.id, a.id).await, "A").clone();
    let m10 = movement(s, u.id, a.id, "m10").await;
    let events = |e: PassEvent<'_>| pass_events(u.id, a.id, t, e);
    assert!(matches!(
        s.resolve_conciliation(u.id, &manual(&ra, m10.id, u.id), t, &events)
            .await
            .unwrap(),
        ResolveOutcome::Resolved(..)
    ));
    let next = s.load_pass_changes(a.id, horizon, t).await.unwrap();
    let exts: Vec<&str> = next.requests.iter().map(|r| r.external_id.as_str()).collect();
    assert_eq!(exts, ["A2"], "the taken movement's group, without the matched request");
    let movements: Vec<&str> = next.movements.iter().map(|m| m.description.as_str()).collect();
    assert_eq!(movements, ["transfer m10b"], "m10 is taken; m20's group did not change");
}

/// Resolve, reject, run and notify check the owner's mode under the account's lock: after a
/// switch to passthrough they change nothing (no result webhook outside reconcile mode).
pub async fn check_review_actions_need_reconcile_mode_under_the_lock(s: &dyn Store) {
    let t = now();
    let (u, a) = scene(s, t).await;
    let ra = req(&requests(s, u.id, a.id).await, "A").clone();
    let m10 = movement(s, u.id, a.id, "m10").await;
    assert!(s.set_operation_mode(u.id, "passthrough").await.unwrap());
    let pass_ev = |e: PassEvent<'_>| pass_events(u.id, a.id, t, e);
    let req_ev = |r: &ConciliationRow| request_event(u.id, a.id, t, "conciliation.run_requested", r);
    let never = |_: &ConciliationRow, _: Option<&EligibleMovement>| -> Option<NewEvent> { None };
    assert_eq!(
        s.resolve_conciliation(u.id, &manual(&ra, m10.id, u.id), t, &pass_ev)
            .await
            .unwrap(),
        ResolveOutcome::NotReconciling
    );
    assert_eq!(
        s.reject_candidates(u.id, ra.id, &[m10.id], "[]", t, &req_ev)
            .await
            .unwrap(),
        RequestChange::NotReconciling
    );
    assert_eq!(
        s.run_conciliation(u.id, ra.id, t, &req_ev).await.unwrap(),
        RequestChange::NotReconciling
    );
    assert_eq!(
        s.notify_conciliation(u.id, ra.id, t, &never).await.unwrap(),
        NotifyOutcome::NotReconciling
    );
    let d = s.conciliation_detail(u.id, ra.id).await.unwrap().unwrap();
    assert_eq!(d.request.request, ra, "unchanged");
    assert!(d.attempts.is_empty() && d.deliveries.is_empty() && d.matched.is_none());
    // Back in reconcile mode the same resolve goes through.
    assert!(s.set_operation_mode(u.id, "reconcile").await.unwrap());
    assert!(matches!(
        s.resolve_conciliation(u.id, &manual(&ra, m10.id, u.id), t, &pass_ev)
            .await
            .unwrap(),
        ResolveOutcome::Resolved(..)
    ));
}
