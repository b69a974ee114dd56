//! Contract checks of the store's reconciliation expiry methods (see the section markers in
//! `Store`).

use chrono::Duration;
use reconbanker_store::*;

use crate::fixtures::*;
use crate::matching::{ambiguous, commit, commit_of, credit, not_found, rfc3339};
use crate::reconcile::{order, poll, reconcile_user, requests, success};

/// `(dirty_seq, done_seq, version)` of the account's state.
async fn state(s: &dyn Store, a: AccountId) -> (i64, i64, i64) {
    let st = s.reconcile_state(a).await.unwrap().unwrap();
    (st.dirty_seq, st.done_seq, st.version)
}

/// Commits an empty pass at `at`: the account is clean.
async fn settle(s: &dyn Store, owner: UserId, a: AccountId, at: Timestamp) {
    let input = s.load_pass(a, at - Duration::days(11)).await.unwrap();
    assert!(commit(s, owner, a, &input, &commit_of("movements"), at).await.is_some());
    let (dirty, done, _) = state(s, a).await;
    assert_eq!(dirty, done);
}

pub async fn check_mark_overdue_dirty(s: &dyn Store) {
    let t = now();
    let five_days = Duration::days(5);
    // `a`: a pending, a not_found and an ambiguous request, all registered at t.
    let (u, a) = reconcile_user(s).await;
    poll(
        s,
        u.id,
        a.id,
        &success(
            vec![order("P", "10.00"), order("N", "20.00"), order("A", "30.00")],
            &[],
            t,
        ),
    )
    .await;
    let at = rfc3339(t + Duration::minutes(1));
    let news = [credit("x1", "30.00", &at), credit("x2", "30.00", &at)];
    assert_eq!(s.insert_movements(a.id, &news, t, &never_forward).await.unwrap(), 2);
    let input = s.load_pass(a.id, t - five_days).await.unwrap();
    let by = |e: &str| input.requests.iter().find(|r| r.external_id == e).unwrap().clone();
    let movs: Vec<&EligibleMovement> = input.movements.iter().collect();
    let c = PassCommit {
        not_found: vec![not_found(&by("N"), "no_movement_with_amount", "[]")],
        ambiguous: vec![ambiguous(&by("A"), &movs)],
        ..commit_of("movements")
    };
    assert!(commit(s, u.id, a.id, &input, &c, t).await.is_some());
    let statuses: Vec<&str> = {
        let rows = requests(s, u.id, a.id).await;
        let mut st: Vec<&str> = rows.iter().map(|r| r.status.as_str()).collect();
        st.sort_unstable();
        st
    };
    assert_eq!(statuses, ["ambiguous", "not_found", "pending"]);
    // `later`: the same user's account with a request registered a day later.
    let later = account(s, u.id, &bank(s).await).await;
    poll(
        s,
        u.id,
        later.id,
        &success(vec![order("L", "5.00")], &[], t + Duration::days(1)),
    )
    .await;
    // `closed`: only a cancelled request (closed requests never expire).
    let closed = account(s, u.id, &bank(s).await).await;
    poll(s, u.id, closed.id, &success(vec![order("C", "5.00")], &[], t)).await;
    poll(s, u.id, closed.id, &success(vec![], &[], t + ms(10))).await;
    assert_eq!(
        requests(s, u.id, closed.id).await[0].status,
        ConciliationStatus::Cancelled
    );
    // `paused`: a passthrough user's overdue request is left alone.
    let (p, paused) = reconcile_user(s).await;
    poll(s, p.id, paused.id, &success(vec![order("Z", "5.00")], &[], t)).await;
    for (owner, acc) in [(u.id, a.id), (u.id, later.id), (u.id, closed.id), (p.id, paused.id)] {
        settle(s, owner, acc, t).await;
    }
    // (Switched after its pass: no pass commits outside reconcile mode.)
    assert!(s.set_operation_mode(p.id, "passthrough").await.unwrap());
    let before = state(s, a.id).await;

    // Not yet overdue (the bound is `now >= expires_at`): nothing marked.
    assert_eq!(s.mark_overdue_dirty(t + five_days - ms(1)).await.unwrap(), vec![]);
    assert_eq!(state(s, a.id).await, before);
    assert_eq!(s.dirty_accounts(100).await.unwrap(), vec![]);

    // Overdue: `a` only, dirty one step more, its version unchanged.
    assert_eq!(s.mark_overdue_dirty(t + five_days).await.unwrap(), vec![a.id]);
    assert_eq!(state(s, a.id).await, (before.0 + 1, before.1, before.2));
    assert_eq!(s.dirty_accounts(100).await.unwrap(), vec![(a.id, before.0 + 1)]);
    // Swept again before a pass ran: marked again (still overdue).
    assert_eq!(s.mark_overdue_dirty(t + five_days).await.unwrap(), vec![a.id]);
    assert_eq!(state(s, a.id).await.0, before.0 + 2);

    // The pass expires them: nothing overdue is left in `a`.
    let input = s.load_pass(a.id, t - five_days).await.unwrap();
    let c = PassCommit {
        expired: input.requests.iter().map(|r| r.id).collect(),
        ..commit_of("expiry")
    };
    assert_eq!(c.expired.len(), 3);
    assert!(commit(s, u.id, a.id, &input, &c, t + five_days).await.is_some());
    assert_eq!(s.mark_overdue_dirty(t + five_days).await.unwrap(), vec![]);
    assert_eq!(s.dirty_accounts(100).await.unwrap(), vec![]);

    // A day later `later` is due; `paused` only once its user reconciles again.
    assert_eq!(
        s.mark_overdue_dirty(t + five_days + Duration::days(1)).await.unwrap(),
        vec![later.id]
    );
    assert!(s.set_operation_mode(p.id, "reconcile").await.unwrap());
    let mut both = vec![later.id, paused.id];
    both.sort_by_key(|id| id.0);
    assert_eq!(
        s.mark_overdue_dirty(t + five_days + Duration::days(1)).await.unwrap(),
        both
    );
    // A deleted account is gone with its requests.
    assert!(s.delete_account(p.id, paused.id, i64::MAX).await.unwrap());
    assert_eq!(
        s.mark_overdue_dirty(t + five_days + Duration::days(1)).await.unwrap(),
        vec![later.id]
    );
}
