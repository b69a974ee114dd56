//! The webhook outbox: claiming, finishing, listing and resending deliveries.

use std::collections::BTreeSet;

use chrono::Duration;
use reconbanker_store::*;
use uuid::Uuid;

use crate::fixtures::*;

pub async fn check_claim_due_deliveries(s: &dyn Store) {
    let (owner, stranger) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let (a, other) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let foreign = account(s, stranger.id, &b).await;
    let t = now();
    let lease = t + Duration::seconds(60);

    // Recorded out of due order, across accounts and users: claims are not user-scoped.
    let old = NewDelivery {
        request_id: Some(AssistanceRequestId::new()),
        ..delivery("assistance_required", t - ms(30))
    };
    let mid = delivery("scrape_failed", t - ms(20));
    let new = delivery("login_failed", t - ms(10));
    let exact = delivery("scrape_failed", t);
    let future = delivery("scrape_failed", t + Duration::hours(1));
    let e1 = delivering(
        event(owner.id, a.id, "session.scrape_failed", t - ms(40)),
        &[&mid, &future],
    );
    let e2 = delivering(
        event(stranger.id, foreign.id, "session.login_failed", t - ms(40)),
        &[&new],
    );
    let e3 = delivering(
        event(owner.id, other.id, "assistance.requested", t - ms(50)),
        &[&exact, &old],
    );
    s.record_events(&[e1.clone(), e2.clone(), e3.clone()]).await.unwrap();

    // Nothing for a limit of 0, and nothing is leased by it.
    assert!(s
        .claim_due_deliveries(t, lease, 0, "instance-a")
        .await
        .unwrap()
        .is_empty());
    // Oldest due first, at most `limit`, each leased until `lease`.
    assert_eq!(
        s.claim_due_deliveries(t, lease, 1, "instance-a").await.unwrap(),
        vec![leased(&e3, &old, lease)]
    );
    assert_eq!(
        s.claim_due_deliveries(t, lease, 1, "instance-a").await.unwrap(),
        vec![leased(&e1, &mid, lease)]
    );
    // Due exactly now counts; not yet due does not.
    assert_eq!(
        by_id(s.claim_due_deliveries(t, lease, 10, "instance-a").await.unwrap()),
        by_id(vec![leased(&e2, &new, lease), leased(&e3, &exact, lease)])
    );
    // Leased: a second claim at the same time takes nothing, nor one just before the lease ends.
    assert!(s
        .claim_due_deliveries(t, lease, 10, "instance-a")
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .claim_due_deliveries(lease - ms(1), lease, 10, "instance-a")
        .await
        .unwrap()
        .is_empty());
    // The lease shows in the log.
    assert_eq!(
        s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap(),
        by_id(vec![leased(&e1, &mid, lease), queued(&e1, &future)])
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
    );
    assert_eq!(
        by_id(s.list_deliveries(owner.id, other.id, 100, 0).await.unwrap()),
        by_id(vec![leased(&e3, &exact, lease), leased(&e3, &old, lease)])
    );

    // Once the lease has passed, they are claimable again (the one due later still is not).
    let lease2 = t + Duration::hours(2);
    assert_eq!(
        by_id(
            s.claim_due_deliveries(lease + ms(1), lease2, 10, "instance-a")
                .await
                .unwrap()
        ),
        by_id(vec![
            leased(&e3, &old, lease2),
            leased(&e1, &mid, lease2),
            leased(&e2, &new, lease2),
            leased(&e3, &exact, lease2),
        ])
    );
    let lease3 = t + Duration::hours(3);
    assert_eq!(
        s.claim_due_deliveries(t + Duration::minutes(90), lease3, 10, "instance-a")
            .await
            .unwrap(),
        vec![leased(&e1, &future, lease3)]
    );
    assert!(s
        .claim_due_deliveries(t + Duration::minutes(90), lease3, 10, "instance-a")
        .await
        .unwrap()
        .is_empty());
}

pub async fn check_concurrent_claims(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let a = account(s, owner.id, &b).await;
    let t = now();
    let lease = t + Duration::seconds(60);

    // Claimers racing over the same due deliveries never take one twice.
    for round in 0..20 {
        let batch: Vec<NewDelivery> = (0..40).map(|i| delivery("scrape_failed", t - ms(i))).collect();
        let e = NewEvent {
            deliveries: batch.clone(),
            ..event(owner.id, a.id, "session.scrape_failed", t)
        };
        s.record_events(&[e]).await.unwrap();
        let (c1, c2, c3, c4) = tokio::join!(
            s.claim_due_deliveries(t, lease, 15, "instance-a"),
            s.claim_due_deliveries(t, lease, 15, "instance-a"),
            s.claim_due_deliveries(t, lease, 15, "instance-a"),
            s.claim_due_deliveries(t, lease, 15, "instance-a"),
        );
        let mut claimed: Vec<DeliveryId> = [c1, c2, c3, c4]
            .into_iter()
            .flat_map(|c| c.unwrap())
            .map(|d| d.id)
            .collect();
        let n = claimed.len();
        claimed.sort();
        claimed.dedup();
        assert_eq!(claimed.len(), n, "round {round}: a delivery was claimed twice");
        // Whatever the racers left is still there for the next claim.
        claimed.extend(
            s.claim_due_deliveries(t, lease, 100, "instance-a")
                .await
                .unwrap()
                .iter()
                .map(|d| d.id),
        );
        claimed.sort();
        let mut want: Vec<DeliveryId> = batch.iter().map(|d| d.id).collect();
        want.sort();
        assert_eq!(claimed, want, "round {round}: every delivery claimed exactly once");
    }
}

pub async fn check_finish_delivery_attempt(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let a = account(s, owner.id, &b).await;
    let t = now();
    let (d1, d2, d3) = (
        NewDelivery {
            request_id: Some(AssistanceRequestId::new()),
            ..delivery("assistance_required", t - ms(3))
        },
        delivery("login_failed", t - ms(2)),
        delivery("scrape_failed", t - ms(1)),
    );
    let e = delivering(
        event(owner.id, a.id, "session.login_failed", t - ms(10)),
        &[&d1, &d2, &d3],
    );
    s.record_events(std::slice::from_ref(&e)).await.unwrap();
    let read = |id: DeliveryId| async move {
        s.list_deliveries(owner.id, a.id, 100, 0)
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.id == id)
            .unwrap()
    };

    // A failed attempt to retry later: every outcome field is written as given …
    let retry = DeliveryRow {
        status: "pending".into(),
        attempts: 1,
        next_attempt_at: Some(t + Duration::seconds(30)),
        last_attempt_at: Some(t),
        last_status: Some(503),
        last_error: Some("service unavailable".into()),
        delivered_at: None,
        ..queued(&e, &d1)
    };
    assert!(s.finish_delivery_attempt(&retry).await.unwrap());
    assert_eq!(read(d1.id).await, retry);
    // … and nothing else: the delivery's identity and content are not the attempt's to change.
    let tampered = DeliveryRow {
        account_id: AccountId::new(),
        event_id: Uuid::now_v7(),
        event_type: "something_else".into(),
        payload: "{}".into(),
        request_id: None,
        created_at: t + Duration::days(1),
        ..retry.clone()
    };
    assert!(s.finish_delivery_attempt(&tampered).await.unwrap());
    assert_eq!(read(d1.id).await, retry);

    // Delivered: the retry state is cleared (NULLs written back).
    let delivered = DeliveryRow {
        status: "delivered".into(),
        attempts: 2,
        next_attempt_at: None,
        last_attempt_at: Some(t + Duration::seconds(31)),
        last_status: Some(200),
        last_error: None,
        delivered_at: Some(t + Duration::seconds(31) + ms(7)),
        ..retry.clone()
    };
    assert!(s.finish_delivery_attempt(&delivered).await.unwrap());
    assert_eq!(read(d1.id).await, delivered);

    // Dead (retries exhausted), keeping a next attempt time in the past: the status alone keeps
    // it from being claimed. A transport error has no HTTP status.
    let dead = DeliveryRow {
        status: "dead".into(),
        attempts: 8,
        next_attempt_at: Some(t - Duration::seconds(1)),
        last_attempt_at: Some(t),
        last_status: None,
        last_error: Some("connection refused".into()),
        delivered_at: None,
        ..queued(&e, &d2)
    };
    assert!(s.finish_delivery_attempt(&dead).await.unwrap());
    assert_eq!(read(d2.id).await, dead);
    // The same for a delivered one that keeps a due time.
    let delivered_due = DeliveryRow {
        status: "delivered".into(),
        attempts: 1,
        last_attempt_at: Some(t),
        last_status: Some(204),
        delivered_at: Some(t),
        ..queued(&e, &d3)
    };
    assert!(s.finish_delivery_attempt(&delivered_due).await.unwrap());
    assert_eq!(read(d3.id).await, delivered_due);
    // None of the three is pending: nothing is claimable, however late.
    assert!(s
        .claim_due_deliveries(far_future(), far_future(), 100, "instance-a")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(read(d1.id).await, delivered);
    assert_eq!(read(d2.id).await, dead);
    assert_eq!(read(d3.id).await, delivered_due);

    // A pending retry is claimable once due, and only then.
    let again = DeliveryRow {
        status: "pending".into(),
        next_attempt_at: Some(t + Duration::seconds(5)),
        ..dead.clone()
    };
    assert!(s.finish_delivery_attempt(&again).await.unwrap());
    assert!(s
        .claim_due_deliveries(t + Duration::seconds(4), t + Duration::seconds(60), 10, "instance-a")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.claim_due_deliveries(t + Duration::seconds(5), t + Duration::seconds(60), 10, "instance-a")
            .await
            .unwrap(),
        vec![DeliveryRow {
            next_attempt_at: Some(t + Duration::seconds(60)),
            ..again.clone()
        }]
    );

    // Queued again by hand while the attempt of that claim was under way: the attempt's
    // outcome does not overwrite the resend, which stays due and is claimed (sent) again.
    let resent = s
        .resend_delivery(owner.id, a.id, d2.id, t + Duration::seconds(6))
        .await
        .unwrap()
        .expect("resent");
    assert_eq!(resent.status, "pending");
    let outcome = DeliveryRow {
        status: "delivered".into(),
        attempts: 9,
        next_attempt_at: None,
        last_status: Some(200),
        delivered_at: Some(t + Duration::seconds(6)),
        ..again.clone()
    };
    assert!(!s.finish_delivery_attempt(&outcome).await.unwrap());
    assert_eq!(read(d2.id).await, resent);
    let claimed = s
        .claim_due_deliveries(t + Duration::seconds(6), t + Duration::seconds(60), 10, "instance-a")
        .await
        .unwrap();
    assert_eq!(claimed.iter().map(|d| d.id).collect::<Vec<_>>(), vec![d2.id]);
    // That claim's attempt is recorded.
    assert!(s.finish_delivery_attempt(&outcome).await.unwrap());
    assert_eq!(read(d2.id).await, outcome);

    // An unknown delivery: `false`, nothing written.
    assert!(!s
        .finish_delivery_attempt(&DeliveryRow {
            id: DeliveryId::new(),
            ..dead
        })
        .await
        .unwrap());
    assert_eq!(s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap().len(), 3);
}

pub async fn check_list_deliveries(s: &dyn Store) {
    let (owner, stranger) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let (a, other) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let foreign = account(s, stranger.id, &b).await;
    let t = now();

    // Two deliveries of one event share a creation time: ordered by id, descending.
    let lo = delivery("login_failed", t);
    let hi = NewDelivery {
        id: DeliveryId(Uuid::from_u128(lo.id.0.as_u128() + 1)),
        ..delivery("scrape_failed", t)
    };
    let first = delivery("assistance_required", t);
    let last = delivery("scrape_failed", t);
    let e_first = delivering(event(owner.id, a.id, "assistance.requested", t), &[&first]);
    let e_pair = delivering(event(owner.id, a.id, "session.login_failed", t + ms(10)), &[&lo, &hi]);
    let e_last = delivering(event(owner.id, a.id, "session.scrape_failed", t + ms(20)), &[&last]);
    let e_other = delivering(
        event(owner.id, other.id, "session.scrape_failed", t + ms(5)),
        &[&delivery("scrape_failed", t)],
    );
    let e_foreign = delivering(
        event(stranger.id, foreign.id, "session.scrape_failed", t + ms(5)),
        &[&delivery("scrape_failed", t)],
    );
    // Recorded out of order.
    s.record_events(&[
        e_pair.clone(),
        e_foreign.clone(),
        e_last.clone(),
        e_first.clone(),
        e_other.clone(),
    ])
    .await
    .unwrap();

    // Newest first, paged.
    let all = vec![
        queued(&e_last, &last),
        queued(&e_pair, &hi),
        queued(&e_pair, &lo),
        queued(&e_first, &first),
    ];
    assert_eq!(s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap(), all);
    assert_eq!(
        s.list_deliveries(owner.id, a.id, 2, 0).await.unwrap(),
        all[..2].to_vec()
    );
    assert_eq!(
        s.list_deliveries(owner.id, a.id, 2, 2).await.unwrap(),
        all[2..].to_vec()
    );
    assert_eq!(
        s.list_deliveries(owner.id, a.id, 1, 2).await.unwrap(),
        all[2..3].to_vec()
    );
    assert!(s.list_deliveries(owner.id, a.id, 10, 4).await.unwrap().is_empty());
    assert!(s.list_deliveries(owner.id, a.id, 0, 0).await.unwrap().is_empty());

    // Per account, tenant-scoped.
    assert_eq!(
        s.list_deliveries(owner.id, other.id, 100, 0).await.unwrap(),
        vec![queued(&e_other, &e_other.deliveries[0])]
    );
    assert!(s.list_deliveries(stranger.id, a.id, 100, 0).await.unwrap().is_empty());
    assert!(s.list_deliveries(UserId::new(), a.id, 100, 0).await.unwrap().is_empty());
    assert!(s
        .list_deliveries(owner.id, foreign.id, 100, 0)
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .list_deliveries(owner.id, AccountId::new(), 100, 0)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.list_deliveries(stranger.id, foreign.id, 100, 0).await.unwrap(),
        vec![queued(&e_foreign, &e_foreign.deliveries[0])]
    );

    // Deleting the account deletes its deliveries: re-created under the same id it has none, and
    // they can no longer be claimed or resent.
    assert!(s.delete_account(owner.id, a.id, i64::MAX).await.unwrap());
    assert!(s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap().is_empty());
    let reborn = account_at(s, owner.id, &b, a.id, now()).await;
    assert!(s.list_deliveries(owner.id, reborn.id, 100, 0).await.unwrap().is_empty());
    assert_eq!(s.resend_delivery(owner.id, reborn.id, last.id, t).await.unwrap(), None);
    let gone: BTreeSet<DeliveryId> = [first.id, lo.id, hi.id, last.id].into();
    let claimed = s
        .claim_due_deliveries(t, t + Duration::seconds(60), 1000, "instance-a")
        .await
        .unwrap();
    assert!(!claimed.iter().any(|d| gone.contains(&d.id)));
    assert_eq!(
        s.list_deliveries(owner.id, other.id, 100, 0).await.unwrap().len(),
        1,
        "other accounts keep theirs"
    );
}

pub async fn check_resend_delivery(s: &dyn Store) {
    let (owner, stranger) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let (a, other) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let foreign = account(s, stranger.id, &b).await;
    let t = now();
    let d = delivery("login_failed", t - ms(100));
    let e = delivering(event(owner.id, a.id, "session.login_failed", t - ms(100)), &[&d]);
    let theirs = delivery("login_failed", t - ms(100));
    let e_theirs = delivering(
        event(stranger.id, foreign.id, "session.login_failed", t - ms(100)),
        &[&theirs],
    );
    s.record_events(&[e.clone(), e_theirs.clone()]).await.unwrap();
    let dead = DeliveryRow {
        status: "dead".into(),
        attempts: 8,
        next_attempt_at: None,
        last_attempt_at: Some(t - ms(50)),
        last_status: Some(500),
        last_error: Some("internal server error".into()),
        delivered_at: None,
        ..queued(&e, &d)
    };
    assert!(s.finish_delivery_attempt(&dead).await.unwrap());
    let their_dead = DeliveryRow {
        status: "dead".into(),
        attempts: 8,
        next_attempt_at: None,
        ..queued(&e_theirs, &theirs)
    };
    assert!(s.finish_delivery_attempt(&their_dead).await.unwrap());
    assert!(s
        .claim_due_deliveries(far_future(), far_future(), 100, "instance-a")
        .await
        .unwrap()
        .is_empty());

    // Not found: another user, another of the user's accounts, an unknown account or delivery, a
    // delivery of someone else's account named through one's own or through theirs.
    let t2 = t + ms(10);
    assert_eq!(s.resend_delivery(stranger.id, a.id, d.id, t2).await.unwrap(), None);
    assert_eq!(
        s.resend_delivery(stranger.id, foreign.id, d.id, t2).await.unwrap(),
        None
    );
    assert_eq!(s.resend_delivery(owner.id, other.id, d.id, t2).await.unwrap(), None);
    assert_eq!(
        s.resend_delivery(owner.id, AccountId::new(), d.id, t2).await.unwrap(),
        None
    );
    assert_eq!(
        s.resend_delivery(owner.id, a.id, DeliveryId::new(), t2).await.unwrap(),
        None
    );
    assert_eq!(s.resend_delivery(owner.id, a.id, theirs.id, t2).await.unwrap(), None);
    assert_eq!(
        s.resend_delivery(owner.id, foreign.id, theirs.id, t2).await.unwrap(),
        None
    );
    assert_eq!(s.resend_delivery(UserId::new(), a.id, d.id, t2).await.unwrap(), None);
    assert_eq!(
        s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap(),
        vec![dead.clone()]
    );
    assert_eq!(
        s.list_deliveries(stranger.id, foreign.id, 100, 0).await.unwrap(),
        vec![their_dead]
    );
    assert!(s
        .claim_due_deliveries(far_future(), far_future(), 100, "instance-a")
        .await
        .unwrap()
        .is_empty());

    // The user's own: pending again, due now, the attempt history kept.
    let resent = DeliveryRow {
        status: "pending".into(),
        next_attempt_at: Some(t2),
        ..dead.clone()
    };
    assert_eq!(
        s.resend_delivery(owner.id, a.id, d.id, t2).await.unwrap(),
        Some(resent.clone())
    );
    assert_eq!(
        s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap(),
        vec![resent.clone()]
    );
    // Claimable from `now` on, not before.
    assert!(s
        .claim_due_deliveries(t2 - ms(1), t + Duration::seconds(60), 10, "instance-a")
        .await
        .unwrap()
        .is_empty());
    let lease = t + Duration::seconds(60);
    assert_eq!(
        s.claim_due_deliveries(t2, lease, 10, "instance-a").await.unwrap(),
        vec![DeliveryRow {
            next_attempt_at: Some(lease),
            ..resent.clone()
        }]
    );
    // Resending a claimed (leased) delivery makes it due again at once.
    let t3 = t2 + ms(10);
    let again = DeliveryRow {
        next_attempt_at: Some(t3),
        ..resent
    };
    assert_eq!(
        s.resend_delivery(owner.id, a.id, d.id, t3).await.unwrap(),
        Some(again.clone())
    );
    assert_eq!(
        s.claim_due_deliveries(t3, lease, 10, "instance-a").await.unwrap().len(),
        1
    );
    // A delivered one can be sent again too.
    let delivered = DeliveryRow {
        status: "delivered".into(),
        attempts: 9,
        next_attempt_at: None,
        last_status: Some(200),
        last_error: None,
        delivered_at: Some(t3),
        ..again
    };
    assert!(s.finish_delivery_attempt(&delivered).await.unwrap());
    let t4 = t3 + ms(10);
    assert_eq!(
        s.resend_delivery(owner.id, a.id, d.id, t4).await.unwrap(),
        Some(DeliveryRow {
            status: "pending".into(),
            next_attempt_at: Some(t4),
            ..delivered
        })
    );
}
