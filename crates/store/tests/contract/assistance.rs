//! Assistance requests, and the events logged with their state changes.

use reconbanker_store::*;

use crate::fixtures::*;

pub async fn check_assistance(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let (a, other) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);

    assert_eq!(s.pending_assistance(a.id).await.unwrap(), None);
    let first = AssistanceRow {
        descriptor: Descriptor {
            length: 8,
            kind: CodeKind::Alphanumeric,
            purpose: None,
        },
        ..assistance_row(a.id)
    };
    assert_eq!(s.create_assistance(&first, &[]).await.unwrap(), vec![]);
    assert_eq!(s.pending_assistance(a.id).await.unwrap(), Some(first.clone()));
    assert_eq!(s.assistance_by_id(first.id).await.unwrap(), Some(first.clone()));
    assert_eq!(s.assistance_by_id(AssistanceRequestId::new()).await.unwrap(), None);

    // One pending request per account (partial unique index) …
    let second = assistance_row(a.id);
    let r = s.create_assistance(&second, &[]).await;
    assert!(
        conflict(r, Constraint::AssistancePendingPerAccount),
        "a second pending request for the account must be a Conflict"
    );
    assert_eq!(s.assistance_by_id(second.id).await.unwrap(), None);
    // … but closed ones may coexist, and other accounts are independent.
    let old = AssistanceRow {
        status: AssistanceStatus::Expired,
        reason: Some("timeout".into()),
        closed_at: Some(now()),
        ..assistance_row(a.id)
    };
    s.create_assistance(&old, &[]).await.unwrap();
    assert_eq!(s.assistance_by_id(old.id).await.unwrap(), Some(old.clone()));
    let elsewhere = assistance_row(other.id);
    s.create_assistance(&elsewhere, &[]).await.unwrap();
    assert_eq!(s.pending_assistance(a.id).await.unwrap(), Some(first.clone()));
    assert_eq!(s.pending_assistance(other.id).await.unwrap(), Some(elsewhere.clone()));

    // Attempts.
    let t1 = now() + ms(100);
    let bumped = AssistanceRow {
        attempts: 1,
        updated_at: t1,
        ..first.clone()
    };
    assert_eq!(
        s.bump_assistance_attempts(first.id, t1, &no_events).await.unwrap(),
        Some((bumped.clone(), vec![]))
    );
    let t2 = t1 + ms(100);
    let bumped2 = AssistanceRow {
        attempts: 2,
        updated_at: t2,
        ..first.clone()
    };
    assert_eq!(
        s.bump_assistance_attempts(first.id, t2, &no_events).await.unwrap(),
        Some((bumped2.clone(), vec![]))
    );
    assert_eq!(s.assistance_by_id(first.id).await.unwrap(), Some(bumped2.clone()));
    assert_eq!(
        s.bump_assistance_attempts(old.id, t2, &no_events).await.unwrap(),
        None,
        "not pending"
    );
    assert_eq!(
        s.bump_assistance_attempts(AssistanceRequestId::new(), t2, &no_events)
            .await
            .unwrap(),
        None
    );
    assert_eq!(s.pending_assistance(other.id).await.unwrap(), Some(elsewhere.clone()));

    // Closing: once.
    let t3 = t2 + ms(100);
    let closed = AssistanceRow {
        status: AssistanceStatus::Fulfilled,
        reason: Some("code accepted".into()),
        updated_at: t3,
        closed_at: Some(t3),
        ..bumped2
    };
    let got = s
        .close_assistance(
            first.id,
            AssistanceStatus::Fulfilled,
            Some("code accepted"),
            t3,
            &no_events,
        )
        .await
        .unwrap();
    assert_eq!(got, Some((closed.clone(), vec![])));
    let again = s
        .close_assistance(first.id, AssistanceStatus::Cancelled, None, t3 + ms(1), &no_events)
        .await
        .unwrap();
    assert_eq!(again, None, "closing twice");
    assert_eq!(s.assistance_by_id(first.id).await.unwrap(), Some(closed.clone()));
    assert_eq!(
        s.bump_assistance_attempts(first.id, t3 + ms(2), &no_events)
            .await
            .unwrap(),
        None,
        "closed"
    );
    assert_eq!(s.assistance_by_id(first.id).await.unwrap(), Some(closed));
    assert_eq!(s.pending_assistance(a.id).await.unwrap(), None);
    let r = s
        .close_assistance(
            AssistanceRequestId::new(),
            AssistanceStatus::Cancelled,
            None,
            t3,
            &no_events,
        )
        .await
        .unwrap();
    assert_eq!(r, None);

    // A reason may be absent.
    let t4 = t3 + ms(100);
    let (cancelled, logged) = s
        .close_assistance(elsewhere.id, AssistanceStatus::Cancelled, None, t4, &no_events)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(logged, vec![]);
    assert_eq!(
        cancelled,
        AssistanceRow {
            status: AssistanceStatus::Cancelled,
            reason: None,
            updated_at: t4,
            closed_at: Some(t4),
            ..elsewhere
        }
    );

    // After closing, the account may have a new pending request.
    let next = assistance_row(a.id);
    s.create_assistance(&next, &[]).await.unwrap();
    assert_eq!(s.pending_assistance(a.id).await.unwrap(), Some(next));
    assert_eq!(s.assistance_by_id(old.id).await.unwrap(), Some(old));
}

pub async fn check_close_all_pending_assistance(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let accounts = [
        account(s, owner.id, &b).await,
        account(s, owner.id, &b).await,
        account(s, owner.id, &b).await,
    ];
    let p0 = assistance_row(accounts[0].id);
    let p1 = assistance_row(accounts[1].id);
    let done = AssistanceRow {
        status: AssistanceStatus::Fulfilled,
        reason: Some("ok".into()),
        closed_at: Some(now()),
        ..assistance_row(accounts[2].id)
    };
    for r in [&p0, &p1, &done] {
        s.create_assistance(r, &[]).await.unwrap();
    }

    let t = now() + ms(50);
    let closed = s
        .close_all_pending_assistance(AssistanceStatus::Expired, "server restarted", t)
        .await
        .unwrap();
    // Exactly the two pending requests, each closed the same way.
    assert_eq!(closed.len(), 2, "closed {closed:?}");
    for r in &closed {
        assert_eq!(r.status, AssistanceStatus::Expired);
        assert_eq!(r.reason.as_deref(), Some("server restarted"));
        assert_eq!(r.closed_at, Some(t));
        assert_eq!(r.updated_at, t);
        assert_eq!(s.assistance_by_id(r.id).await.unwrap().as_ref(), Some(r));
        assert_eq!(s.pending_assistance(r.account_id).await.unwrap(), None);
    }
    for p in [&p0, &p1] {
        let want = AssistanceRow {
            status: AssistanceStatus::Expired,
            reason: Some("server restarted".into()),
            updated_at: t,
            closed_at: Some(t),
            ..p.clone()
        };
        assert_eq!(closed.iter().filter(|r| r.id == p.id).collect::<Vec<_>>(), vec![&want]);
        assert_eq!(s.pending_assistance(p.account_id).await.unwrap(), None);
    }
    assert!(
        !closed.iter().any(|r| r.id == done.id),
        "already-closed requests are left alone"
    );
    assert_eq!(s.assistance_by_id(done.id).await.unwrap(), Some(done));

    // Nothing pending any more.
    let none = s
        .close_all_pending_assistance(AssistanceStatus::Cancelled, "again", t + ms(1))
        .await
        .unwrap();
    assert!(none.is_empty(), "second sweep found {none:?}");
}

pub async fn check_assistance_events(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let (a, other) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let t = now();

    // Created with its events: logged in order with increasing seqs, deliveries queued.
    let req = assistance_row(a.id);
    let prompt = NewDelivery {
        request_id: Some(req.id),
        ..delivery("assistance_required", t)
    };
    let requested = delivering(event(owner.id, a.id, "assistance.requested", t), &[&prompt]);
    let status = event(owner.id, a.id, "account.status", t);
    let logged = s
        .create_assistance(&req, &[requested.clone(), status.clone()])
        .await
        .unwrap();
    assert_logged(&logged, &[requested.clone(), status], 0);
    assert_eq!(s.pending_assistance(a.id).await.unwrap(), Some(req.clone()));
    let mut log = logged;
    assert_eq!(events_of(s, owner.id).await, log);
    let mut on_a = vec![queued(&requested, &prompt)];
    assert_eq!(s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap(), on_a);

    // A conflicting create (a second pending request) logs nothing and queues nothing.
    let dup = assistance_row(a.id);
    let lost = delivering(
        event(owner.id, a.id, "assistance.requested", t + ms(1)),
        &[&delivery("assistance_required", t + ms(1))],
    );
    let r = s.create_assistance(&dup, std::slice::from_ref(&lost)).await;
    assert!(
        conflict(r, Constraint::AssistancePendingPerAccount),
        "a second pending request must be a Conflict"
    );
    assert_eq!(s.assistance_by_id(dup.id).await.unwrap(), None);
    assert_eq!(events_of(s, owner.id).await, log);
    assert_eq!(s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap(), on_a);

    // Events that cannot be logged (the second reuses the first's id) undo the request and the
    // first event with its delivery: one transaction.
    let req2 = assistance_row(other.id);
    let requested2 = delivering(
        event(owner.id, other.id, "assistance.requested", t + ms(2)),
        &[&NewDelivery {
            request_id: Some(req2.id),
            ..delivery("assistance_required", t + ms(2))
        }],
    );
    let twin = NewEvent {
        kind: "account.status".into(),
        deliveries: Vec::new(),
        ..requested2.clone()
    };
    let r = s.create_assistance(&req2, &[requested2.clone(), twin]).await;
    assert!(
        conflict(r, Constraint::EventsId),
        "a duplicate event id must be a Conflict"
    );
    assert_eq!(s.assistance_by_id(req2.id).await.unwrap(), None);
    assert_eq!(s.pending_assistance(other.id).await.unwrap(), None);
    assert_eq!(events_of(s, owner.id).await, log);
    assert!(s.list_deliveries(owner.id, other.id, 100, 0).await.unwrap().is_empty());
    // … and the same request with loggable events goes through, later in the log.
    let logged = s
        .create_assistance(&req2, std::slice::from_ref(&requested2))
        .await
        .unwrap();
    assert_logged(&logged, std::slice::from_ref(&requested2), last_seq(&log));
    log.extend(logged);
    assert_eq!(events_of(s, owner.id).await, log);
    assert_eq!(s.pending_assistance(other.id).await.unwrap(), Some(req2.clone()));
    assert_eq!(
        s.list_deliveries(owner.id, other.id, 100, 0).await.unwrap(),
        vec![queued(&requested2, &requested2.deliveries[0])]
    );

    // A closed request on the same account, created without events.
    let old = AssistanceRow {
        status: AssistanceStatus::Expired,
        reason: Some("timeout".into()),
        closed_at: Some(t),
        ..assistance_row(a.id)
    };
    assert_eq!(s.create_assistance(&old, &[]).await.unwrap(), vec![]);
    assert_eq!(events_of(s, owner.id).await, log);

    // Bumping: the closure sees the row as changed, and what it returns is logged with it.
    let spy = Spy::new(owner.id);
    let t1 = t + ms(100);
    let got = s
        .bump_assistance_attempts(req.id, t1, &|r: &AssistanceRow| spy.events(r))
        .await
        .unwrap();
    let bumped = AssistanceRow {
        attempts: 1,
        updated_at: t1,
        ..req.clone()
    };
    let calls = spy.calls();
    assert_eq!(calls.len(), 1, "the closure is called once");
    assert_eq!(calls[0].0, bumped, "the closure receives the bumped row");
    let (row, logged) = got.unwrap();
    assert_eq!(row, bumped);
    assert_logged(&logged, &calls[0].1, last_seq(&log));
    log.extend(logged);
    assert_eq!(events_of(s, owner.id).await, log);
    on_a.insert(0, queued(&calls[0].1[0], &calls[0].1[0].deliveries[0]));
    assert_eq!(s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap(), on_a);

    // Not pending, or unknown: None, the closure is not called, nothing is logged.
    let none = s
        .bump_assistance_attempts(old.id, t1, &|r: &AssistanceRow| spy.events(r))
        .await
        .unwrap();
    assert_eq!(none, None);
    let none = s
        .bump_assistance_attempts(AssistanceRequestId::new(), t1, &|r: &AssistanceRow| spy.events(r))
        .await
        .unwrap();
    assert_eq!(none, None);
    assert_eq!(spy.calls().len(), 1, "no closure call without a state change");
    assert_eq!(s.assistance_by_id(old.id).await.unwrap(), Some(old.clone()));

    // Closing: the closure sees the closed row (status, reason, times).
    let t2 = t1 + ms(100);
    let got = s
        .close_assistance(
            req.id,
            AssistanceStatus::Fulfilled,
            Some("code accepted"),
            t2,
            &|r: &AssistanceRow| spy.events(r),
        )
        .await
        .unwrap();
    let closed = AssistanceRow {
        status: AssistanceStatus::Fulfilled,
        reason: Some("code accepted".into()),
        updated_at: t2,
        closed_at: Some(t2),
        ..bumped
    };
    let calls = spy.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].0, closed, "the closure receives the closed row");
    assert_eq!(calls[1].1[0].kind, "assistance.fulfilled");
    let (row, logged) = got.unwrap();
    assert_eq!(row, closed);
    assert_logged(&logged, &calls[1].1, last_seq(&log));
    log.extend(logged);
    assert_eq!(events_of(s, owner.id).await, log);
    on_a.insert(0, queued(&calls[1].1[0], &calls[1].1[0].deliveries[0]));
    assert_eq!(s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap(), on_a);

    // Closing again, closing a request closed from the start, closing or bumping an unknown one,
    // bumping a closed one: None, no closure call, nothing logged or queued.
    let spied = |r: &AssistanceRow| spy.events(r);
    for id in [req.id, old.id, AssistanceRequestId::new()] {
        let r = s
            .close_assistance(id, AssistanceStatus::Cancelled, Some("again"), t2 + ms(1), &spied)
            .await
            .unwrap();
        assert_eq!(r, None, "closing {id} must find nothing pending");
        let r = s.bump_assistance_attempts(id, t2 + ms(1), &spied).await.unwrap();
        assert_eq!(r, None, "bumping {id} must find nothing pending");
    }
    assert_eq!(spy.calls().len(), 2, "no closure call without a state change");
    assert_eq!(s.assistance_by_id(req.id).await.unwrap(), Some(closed));
    assert_eq!(s.assistance_by_id(old.id).await.unwrap(), Some(old));
    assert_eq!(events_of(s, owner.id).await, log);
    assert_eq!(s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap(), on_a);

    // A reason may be absent; the closure sees that too.
    let t3 = t2 + ms(100);
    let (row, logged) = s
        .close_assistance(req2.id, AssistanceStatus::Cancelled, None, t3, &spied)
        .await
        .unwrap()
        .unwrap();
    let cancelled = AssistanceRow {
        status: AssistanceStatus::Cancelled,
        reason: None,
        updated_at: t3,
        closed_at: Some(t3),
        ..req2
    };
    let calls = spy.calls();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[2].0, cancelled);
    assert_eq!(row, cancelled);
    assert_logged(&logged, &calls[2].1, last_seq(&log));
    log.extend(logged);
    assert_eq!(events_of(s, owner.id).await, log);
}
