//! The event log.

use chrono::Duration;
use reconbanker_store::*;

use crate::fixtures::*;

pub async fn check_record_events(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let (a, other) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let t = now();

    assert_eq!(s.record_events(&[]).await.unwrap(), vec![]);
    assert!(events_of(s, owner.id).await.is_empty());

    // Several events in one call, across accounts, with none, one or two deliveries each.
    let d1 = NewDelivery {
        request_id: Some(AssistanceRequestId::new()),
        ..delivery("assistance_required", t + ms(5))
    };
    let d2 = delivery("login_failed", t + ms(60));
    let d3 = delivery("scrape_failed", t - ms(30));
    let e1 = delivering(event(owner.id, a.id, "assistance.requested", t), &[&d1]);
    let e2 = event(owner.id, other.id, "account.status", t + ms(10));
    let e3 = delivering(event(owner.id, a.id, "session.login_failed", t + ms(20)), &[&d2, &d3]);
    let batch = [e1.clone(), e2.clone(), e3.clone()];
    let logged = s.record_events(&batch).await.unwrap();
    assert_logged(&logged, &batch, 0);
    assert_eq!(events_of(s, owner.id).await, logged);
    let mut log = logged;

    // Each delivery is pending, never attempted, due as given, created when its event occurred.
    let listed = s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[2], queued(&e1, &d1));
    let mut same_time = listed[..2].to_vec();
    same_time.sort_by_key(|d| d.id);
    assert_eq!(same_time, by_id(vec![queued(&e3, &d2), queued(&e3, &d3)]));
    for d in &listed {
        assert_eq!(d.status, "pending");
        assert_eq!(d.attempts, 0);
    }
    assert_eq!(listed[2].payload, d1.payload);
    assert_eq!(listed[2].request_id, d1.request_id);
    assert_eq!(listed[2].event_id, e1.id);
    assert_eq!(listed[2].created_at, e1.occurred_at);
    assert!(s.list_deliveries(owner.id, other.id, 100, 0).await.unwrap().is_empty());

    // A second call comes later in the log.
    let e4 = event(owner.id, other.id, "account.status", t + ms(30));
    let logged = s.record_events(std::slice::from_ref(&e4)).await.unwrap();
    assert_logged(&logged, std::slice::from_ref(&e4), last_seq(&log));
    log.extend(logged);

    // One transaction: a batch that fails part-way (a delivery id used twice) logs none of it.
    let d5 = delivery("scrape_failed", t);
    let e5 = delivering(event(owner.id, other.id, "session.scrape_failed", t + ms(40)), &[&d5]);
    let e6 = delivering(event(owner.id, a.id, "session.scrape_failed", t + ms(40)), &[&d5]);
    let r = s.record_events(&[e5.clone(), e6]).await;
    assert!(
        conflict(r, Constraint::Other("deliveries_pkey".into())),
        "a duplicate delivery id must be a Conflict"
    );
    // … and so does one whose event id is taken.
    let r = s
        .record_events(&[
            event(owner.id, a.id, "account.status", t + ms(50)),
            NewEvent {
                data: "{}".into(),
                ..e1.clone()
            },
        ])
        .await;
    assert!(
        conflict(r, Constraint::EventsId),
        "a duplicate event id must be a Conflict"
    );
    assert_eq!(events_of(s, owner.id).await, log);
    assert_eq!(s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap(), listed);
    assert!(s.list_deliveries(owner.id, other.id, 100, 0).await.unwrap().is_empty());
    // The rolled-back ids are free.
    let logged = s.record_events(std::slice::from_ref(&e5)).await.unwrap();
    assert_logged(&logged, std::slice::from_ref(&e5), last_seq(&log));
    log.extend(logged);
    assert_eq!(events_of(s, owner.id).await, log);
    assert_eq!(
        s.list_deliveries(owner.id, other.id, 100, 0).await.unwrap(),
        vec![queued(&e5, &d5)]
    );
}

pub async fn check_list_events(s: &dyn Store) {
    let (owner, stranger) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let (a1, a2) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let foreign = account(s, stranger.id, &b).await;
    let t = now();

    // Interleaved across users and calls; `occurred_at` deliberately out of order (the log is
    // ordered by seq, not by time).
    let e1 = event(owner.id, a1.id, "account.status", t + ms(50));
    let e2 = event(owner.id, a2.id, "assistance.requested", t);
    let e3 = event(stranger.id, foreign.id, "account.status", t + ms(5));
    let e4 = event(owner.id, a1.id, "session.login_failed", t + ms(10));
    let e5 = event(owner.id, a2.id, "assistance.fulfilled", t + ms(20));
    let mut logged = s.record_events(&[e1.clone(), e2.clone(), e3.clone()]).await.unwrap();
    logged.extend(s.record_events(std::slice::from_ref(&e4)).await.unwrap());
    logged.extend(s.record_events(std::slice::from_ref(&e5)).await.unwrap());
    assert_logged(&logged, &[e1, e2, e3, e4, e5], 0);
    let [l1, l2, l3, l4, l5] = <[EventRow; 5]>::try_from(logged).unwrap();

    // Only the user's own, ascending by seq.
    let all = vec![l1.clone(), l2.clone(), l4.clone(), l5.clone()];
    assert_eq!(s.list_events(owner.id, None, 0, 100).await.unwrap(), all);
    assert_eq!(
        s.list_events(stranger.id, None, 0, 100).await.unwrap(),
        vec![l3.clone()]
    );
    assert!(s.list_events(UserId::new(), None, 0, 100).await.unwrap().is_empty());

    // `after` excludes seq <= after.
    assert_eq!(
        s.list_events(owner.id, None, l2.seq, 100).await.unwrap(),
        vec![l4.clone(), l5.clone()]
    );
    assert_eq!(
        s.list_events(owner.id, None, l2.seq - 1, 100).await.unwrap(),
        vec![l2.clone(), l4.clone(), l5.clone()]
    );
    assert_eq!(
        s.list_events(owner.id, None, l3.seq, 100).await.unwrap(),
        vec![l4.clone(), l5.clone()],
        "a cursor at someone else's seq"
    );
    assert!(s.list_events(owner.id, None, l5.seq, 100).await.unwrap().is_empty());

    // `limit`, alone and with `after`.
    assert_eq!(
        s.list_events(owner.id, None, 0, 2).await.unwrap(),
        vec![l1.clone(), l2.clone()]
    );
    assert_eq!(
        s.list_events(owner.id, None, l1.seq, 2).await.unwrap(),
        vec![l2.clone(), l4.clone()]
    );
    assert_eq!(
        s.list_events(owner.id, None, l4.seq, 1).await.unwrap(),
        vec![l5.clone()]
    );
    assert!(s.list_events(owner.id, None, 0, 0).await.unwrap().is_empty());

    // The account filter restricts; an empty one yields nothing; ids not the user's add nothing.
    assert_eq!(
        s.list_events(owner.id, Some(&[a1.id]), 0, 100).await.unwrap(),
        vec![l1.clone(), l4.clone()]
    );
    assert_eq!(
        s.list_events(owner.id, Some(&[a2.id, a1.id]), 0, 100).await.unwrap(),
        all
    );
    assert!(s.list_events(owner.id, Some(&[]), 0, 100).await.unwrap().is_empty());
    assert_eq!(
        s.list_events(owner.id, Some(&[a2.id, foreign.id, AccountId::new()]), 0, 100)
            .await
            .unwrap(),
        vec![l2.clone(), l5.clone()]
    );
    assert!(s
        .list_events(owner.id, Some(&[foreign.id]), 0, 100)
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .list_events(stranger.id, Some(&[a1.id, a2.id]), 0, 100)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.list_events(stranger.id, Some(&[foreign.id]), 0, 100).await.unwrap(),
        vec![l3]
    );
    // … combined with `after` and `limit`.
    assert_eq!(
        s.list_events(owner.id, Some(&[a2.id]), l2.seq, 100).await.unwrap(),
        vec![l5]
    );
    assert_eq!(
        s.list_events(owner.id, Some(&[a1.id, a2.id]), l1.seq, 2).await.unwrap(),
        vec![l2, l4]
    );
}

pub async fn check_purge_events(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let a = account(s, owner.id, &b).await;
    let base = now() - Duration::days(3650);
    // Nothing to purge on a fresh database.
    assert_eq!(s.purge_events(base - Duration::days(1)).await.unwrap(), 0);

    let recent = event(owner.id, a.id, "account.status", now());
    let olds = [
        event(owner.id, a.id, "account.status", base - ms(2)),
        event(owner.id, a.id, "account.status", base - ms(1)),
        event(owner.id, a.id, "account.status", base),
        event(owner.id, a.id, "account.status", base + ms(1)),
    ];
    let mut batch = vec![recent];
    batch.extend(olds.iter().cloned());
    let logged = s.record_events(&batch).await.unwrap();
    assert_logged(&logged, &batch, 0);

    // Strictly before: the event at `base` stays.
    assert_eq!(s.purge_events(base).await.unwrap(), 2);
    let kept = vec![logged[0].clone(), logged[3].clone(), logged[4].clone()];
    assert_eq!(events_of(s, owner.id).await, kept);
    assert_eq!(s.purge_events(base).await.unwrap(), 0);
    assert_eq!(s.purge_events(base + ms(1)).await.unwrap(), 1);
    assert_eq!(events_of(s, owner.id).await, vec![logged[0].clone(), logged[4].clone()]);
    assert_eq!(s.purge_events(base + ms(1)).await.unwrap(), 0);
    assert_eq!(s.purge_events(base + ms(2)).await.unwrap(), 1);
    assert_eq!(events_of(s, owner.id).await, vec![logged[0].clone()]);
}

pub async fn check_last_event_seq(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let a = account(s, owner.id, &b).await;
    let before = s.last_event_seq().await.unwrap();
    assert_eq!(before, 0, "an empty log's head is 0");
    let logged = s
        .record_events(&[
            event(owner.id, a.id, "session.started", now()),
            event(owner.id, a.id, "session.stopped", now()),
        ])
        .await
        .unwrap();
    let head = s.last_event_seq().await.unwrap();
    assert_eq!(head, logged[1].seq, "the head is the highest seq logged");
    assert!(head > before);
    // A stream starting at the head sees only what comes after it.
    assert!(s.list_events(owner.id, None, head, 100).await.unwrap().is_empty());
    let next = s
        .record_events(&[event(owner.id, a.id, "session.started", now())])
        .await
        .unwrap();
    assert_eq!(s.list_events(owner.id, None, head, 100).await.unwrap(), next);
    assert_eq!(s.last_event_seq().await.unwrap(), next[0].seq);
}
