//! Issue 11 (scale-out): what several instances on one database share.

use reconbanker_store::*;

use crate::fixtures::*;

pub async fn check_events_after(s: &dyn Store) {
    let (owner, stranger) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let (a, foreign) = (account(s, owner.id, &b).await, account(s, stranger.id, &b).await);
    let t = now();
    assert!(s.events_after(0, 100).await.unwrap().is_empty());

    let mut logged = s
        .record_events(&[
            event(owner.id, a.id, "session.started", t),
            event(stranger.id, foreign.id, "session.started", t),
        ])
        .await
        .unwrap();
    logged.extend(
        s.record_events(&[event(owner.id, a.id, "session.stopped", t)])
            .await
            .unwrap(),
    );
    let [l1, l2, l3] = <[EventRow; 3]>::try_from(logged).unwrap();

    // Every user's events, ascending by seq; `after` excludes seq <= after; `limit` pages.
    assert_eq!(
        s.events_after(0, 100).await.unwrap(),
        vec![l1.clone(), l2.clone(), l3.clone()]
    );
    assert_eq!(s.events_after(l1.seq, 100).await.unwrap(), vec![l2.clone(), l3.clone()]);
    assert_eq!(s.events_after(0, 2).await.unwrap(), vec![l1.clone(), l2.clone()]);
    assert_eq!(s.events_after(l2.seq, 1).await.unwrap(), vec![l3.clone()]);
    assert!(s.events_after(l3.seq, 100).await.unwrap().is_empty());
    assert!(s.events_after(0, 0).await.unwrap().is_empty());
    assert!(
        s.events_after(0, -1).await.unwrap().is_empty(),
        "a negative limit reads nothing"
    );
}

pub async fn check_session_owner(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let (a, other) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let t = now();
    let sec = |n| chrono::Duration::seconds(n);
    assert_eq!(s.session_owner(a.id, t).await.unwrap(), None, "never taken");
    assert!(s.acquire_lease(a.id, "node-1", t + sec(30), t).await.unwrap());
    assert_eq!(s.session_owner(a.id, t).await.unwrap().as_deref(), Some("node-1"));
    assert_eq!(
        s.session_owner(a.id, t + sec(30)).await.unwrap().as_deref(),
        Some("node-1"),
        "until it expires"
    );
    assert_eq!(s.session_owner(a.id, t + sec(31)).await.unwrap(), None, "expired");
    assert_eq!(s.session_owner(other.id, t).await.unwrap(), None, "per account");
    assert!(s.release_lease(a.id, "node-1").await.unwrap());
    assert_eq!(s.session_owner(a.id, t).await.unwrap(), None, "released");
    assert_eq!(
        s.session_owner(AccountId::new(), t).await.unwrap(),
        None,
        "unknown account"
    );
}

pub async fn check_close_unowned_at_boot(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    // live: another instance's unexpired lease; mine: this instance's own (a previous
    // process's); expired: another's, expired; free: no lease.
    let [live, mine, expired, free] = [
        account(s, owner.id, &b).await,
        account(s, owner.id, &b).await,
        account(s, owner.id, &b).await,
        account(s, owner.id, &b).await,
    ];
    let t = now();
    let sec = |n| chrono::Duration::seconds(n);
    assert!(s.acquire_lease(live.id, "node-2", t + sec(30), t).await.unwrap());
    assert!(s.acquire_lease(mine.id, "node-1", t + sec(30), t).await.unwrap());
    assert!(s
        .acquire_lease(expired.id, "node-3", t - sec(1), t - sec(31))
        .await
        .unwrap());
    let requests: Vec<AssistanceRow> = [&live, &mine, &expired, &free]
        .iter()
        .map(|acc| assistance_row(acc.id))
        .collect();
    for r in &requests {
        s.create_assistance(r, &[]).await.unwrap();
        s.create_run(&run_row(r.account_id, t - sec(5))).await.unwrap();
    }

    let closed = s
        .close_unowned_pending_assistance("node-1", AssistanceStatus::Cancelled, "process_restart", t)
        .await
        .unwrap();
    let mut got: Vec<AccountId> = closed.iter().map(|r| r.account_id).collect();
    got.sort();
    let mut want = vec![mine.id, expired.id, free.id];
    want.sort();
    assert_eq!(got, want, "all but the live instance's");
    for r in &closed {
        assert_eq!(r.status, AssistanceStatus::Cancelled);
        assert_eq!(r.reason.as_deref(), Some("process_restart"));
        assert_eq!(r.closed_at, Some(t));
        assert_eq!(s.pending_assistance(r.account_id).await.unwrap(), None);
    }
    let kept = s.pending_assistance(live.id).await.unwrap().expect("still pending");
    assert_eq!(kept.id, requests[0].id);

    assert_eq!(
        s.close_unowned_open_runs("node-1", "process_restart", t).await.unwrap(),
        3
    );
    let running = |acc: AccountId| async move {
        s.list_runs(owner.id, acc, 10, 0)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.outcome == "running")
            .count()
    };
    assert_eq!(running(live.id).await, 1, "the live instance's run stays open");
    for acc in [&mine, &expired, &free] {
        assert_eq!(running(acc.id).await, 0);
        let run = &s.list_runs(owner.id, acc.id, 10, 0).await.unwrap()[0];
        assert_eq!(run.outcome, "cancelled");
        assert_eq!(run.failure_reason.as_deref(), Some("process_restart"));
    }
    // Once the live lease expires, the next boot closes what it left.
    let later = t + sec(31);
    let closed = s
        .close_unowned_pending_assistance("node-1", AssistanceStatus::Cancelled, "process_restart", later)
        .await
        .unwrap();
    assert_eq!(closed.iter().map(|r| r.account_id).collect::<Vec<_>>(), vec![live.id]);
    assert_eq!(
        s.close_unowned_open_runs("node-1", "process_restart", later)
            .await
            .unwrap(),
        1
    );
}

pub async fn check_tickets(s: &dyn Store) {
    let (u, other) = (user(s).await, user(s).await);
    let t = now();
    let sec = |n| chrono::Duration::seconds(n);
    let ticket = |user: UserId, n: u8, expires_at| TicketRow {
        hash: vec![n; 32],
        user_id: user,
        jti: TokenId::new(),
        token_exp: 4_000_000_000,
        expires_at,
    };
    let a = ticket(u.id, 1, t + sec(30));
    s.issue_ticket(&a, t, 3).await.unwrap();
    assert_eq!(s.redeem_ticket(&[9; 32], t).await.unwrap(), None, "unknown");
    assert_eq!(s.redeem_ticket(&a.hash, t).await.unwrap(), Some(a.clone()));
    assert_eq!(s.redeem_ticket(&a.hash, t).await.unwrap(), None, "single use");

    // Good until just before `expires_at`.
    let b = ticket(u.id, 2, t + sec(30));
    s.issue_ticket(&b, t, 3).await.unwrap();
    assert_eq!(s.redeem_ticket(&b.hash, t + sec(30)).await.unwrap(), None, "expired");
    assert_eq!(
        s.redeem_ticket(&b.hash, t).await.unwrap(),
        None,
        "an expired try spends it"
    );

    // At most `per_user` per user: the oldest go; other users' are untouched; issuing forgets
    // the expired ones.
    let theirs = ticket(other.id, 3, t + sec(30));
    s.issue_ticket(&theirs, t, 3).await.unwrap();
    let mine: Vec<TicketRow> = (0..4u8)
        .map(|n| ticket(u.id, 10 + n, t + sec(30 + i64::from(n))))
        .collect();
    for m in &mine {
        s.issue_ticket(m, t, 3).await.unwrap();
    }
    assert_eq!(
        s.redeem_ticket(&mine[0].hash, t).await.unwrap(),
        None,
        "the oldest was forgotten"
    );
    for m in &mine[1..] {
        assert_eq!(s.redeem_ticket(&m.hash, t).await.unwrap().as_ref(), Some(m));
    }
    assert_eq!(s.redeem_ticket(&theirs.hash, t).await.unwrap(), Some(theirs.clone()));

    let stale = ticket(u.id, 20, t + sec(1));
    s.issue_ticket(&stale, t, 3).await.unwrap();
    s.issue_ticket(&ticket(other.id, 21, t + sec(60)), t + sec(2), 3)
        .await
        .unwrap();
    assert_eq!(
        s.redeem_ticket(&stale.hash, t).await.unwrap(),
        None,
        "swept when it expired"
    );
}
