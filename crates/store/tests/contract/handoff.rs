//! Issue 11 (scale-out): codes handed between instances, and the take-over of a dead
//! instance's leases.

use reconbanker_store::*;
use uuid::Uuid;

use crate::fixtures::*;

fn offer(request: AssistanceRequestId, sealed: &[u8], created_at: Timestamp) -> CodeOffer {
    CodeOffer {
        id: Uuid::new_v4(),
        request_id: request,
        sealed: Some(sealed.to_vec()),
        created_at,
    }
}

pub async fn check_code_offers(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let acc = account(s, owner.id, &b).await;
    let req = assistance_row(acc.id);
    s.create_assistance(&req, &[]).await.unwrap();
    let t = now();
    let sec = |n| chrono::Duration::seconds(n);

    // Nothing offered: nothing to take, refuse or close.
    assert_eq!(s.take_code_offer(req.id, t - sec(5)).await.unwrap(), None);
    assert!(s.refuse_code_offers(req.id).await.unwrap().is_empty());
    assert_eq!(s.close_code_offer(Uuid::new_v4()).await.unwrap(), None);

    // Taken: the oldest offer, its sealed code returned once and cleared; the sender then
    // learns `Taken` and the row is gone.
    let first = offer(req.id, b"sealed-1", t);
    let second = offer(req.id, b"sealed-2", t + sec(1));
    s.offer_code(&first, t - sec(60)).await.unwrap();
    s.offer_code(&second, t - sec(60)).await.unwrap();
    let taken = s.take_code_offer(req.id, t - sec(5)).await.unwrap().expect("taken");
    assert_eq!(taken, first, "the oldest, with its sealed code as offered");
    assert!(
        !format!("{taken:?}").contains("sealed-1"),
        "Debug hides the sealed code"
    );
    assert_eq!(s.close_code_offer(first.id).await.unwrap(), Some(CodeOfferState::Taken));
    assert_eq!(s.close_code_offer(first.id).await.unwrap(), None, "closed once");

    // Refused: every unanswered offer of the request; a refused one is never taken.
    assert_eq!(s.refuse_code_offers(req.id).await.unwrap(), vec![second.id]);
    assert_eq!(s.take_code_offer(req.id, t - sec(5)).await.unwrap(), None);
    assert_eq!(
        s.close_code_offer(second.id).await.unwrap(),
        Some(CodeOfferState::Refused)
    );

    // Withdrawn by its sender before anyone took it: `Offered`, and never taken after.
    let third = offer(req.id, b"sealed-3", t);
    s.offer_code(&third, t - sec(60)).await.unwrap();
    assert_eq!(
        s.close_code_offer(third.id).await.unwrap(),
        Some(CodeOfferState::Offered)
    );
    assert_eq!(s.take_code_offer(req.id, t - sec(5)).await.unwrap(), None);

    // Too old to take (its sender gave up waiting), and forgotten by the next offer.
    let stale = offer(req.id, b"sealed-4", t - sec(30));
    s.offer_code(&stale, t - sec(60)).await.unwrap();
    assert_eq!(
        s.take_code_offer(req.id, t - sec(5)).await.unwrap(),
        None,
        "older than not_before"
    );
    let fresh = offer(req.id, b"sealed-5", t);
    s.offer_code(&fresh, t - sec(10)).await.unwrap();
    assert_eq!(s.close_code_offer(stale.id).await.unwrap(), None, "forgotten");

    // Per request: another request's offers are not taken or refused.
    let other_acc = account(s, owner.id, &b).await;
    let other = assistance_row(other_acc.id);
    s.create_assistance(&other, &[]).await.unwrap();
    assert_eq!(s.take_code_offer(other.id, t - sec(5)).await.unwrap(), None);
    assert!(s.refuse_code_offers(other.id).await.unwrap().is_empty());
    assert_eq!(
        s.take_code_offer(req.id, t - sec(5)).await.unwrap().map(|o| o.id),
        Some(fresh.id)
    );

    // An offer for an unknown request is refused by the database.
    assert!(s
        .offer_code(&offer(AssistanceRequestId::new(), b"x", t), t - sec(60))
        .await
        .is_err());
}

pub async fn check_expired_leases_and_take_over_runs(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let [dead, live, released] = [
        account(s, owner.id, &b).await,
        account(s, owner.id, &b).await,
        account(s, owner.id, &b).await,
    ];
    let t = now();
    let sec = |n| chrono::Duration::seconds(n);
    assert!(s
        .acquire_lease(dead.id, "node-1", t - sec(1), t - sec(31))
        .await
        .unwrap());
    assert!(s.acquire_lease(live.id, "node-2", t + sec(30), t).await.unwrap());
    assert!(s
        .acquire_lease(released.id, "node-1", t - sec(2), t - sec(32))
        .await
        .unwrap());
    assert!(s.release_lease(released.id, "node-1").await.unwrap());
    let mine = |all: Vec<ExpiredLease>| -> Vec<ExpiredLease> {
        all.into_iter()
            .filter(|l| [dead.id, live.id, released.id].contains(&l.account_id))
            .collect()
    };
    assert_eq!(
        mine(s.expired_session_leases(t).await.unwrap()),
        vec![ExpiredLease {
            account_id: dead.id,
            owner: "node-1".into(),
            expires_at: t - sec(1),
        }],
        "expired and never released; not the live one, not the released one"
    );
    assert_eq!(
        mine(s.expired_session_leases(t - sec(1)).await.unwrap()),
        vec![],
        "a lease is good until its expiry"
    );
    // Taken over: the lease changes hands and is no longer expired.
    assert!(s.acquire_lease(dead.id, "node-3", t + sec(30), t).await.unwrap());
    assert_eq!(mine(s.expired_session_leases(t).await.unwrap()), vec![]);

    // The dead owner's open run is closed; other accounts' runs are not.
    s.create_run(&run_row(dead.id, t - sec(5))).await.unwrap();
    s.create_run(&run_row(live.id, t - sec(5))).await.unwrap();
    assert_eq!(s.close_account_open_runs(dead.id, "owner_lost", t).await.unwrap(), 1);
    assert_eq!(s.close_account_open_runs(dead.id, "owner_lost", t).await.unwrap(), 0);
    let run = &s.list_runs(owner.id, dead.id, 10, 0).await.unwrap()[0];
    assert_eq!(run.outcome, "cancelled");
    assert_eq!(run.failure_reason.as_deref(), Some("owner_lost"));
    assert_eq!(run.ended_at, Some(t));
    let other = &s.list_runs(owner.id, live.id, 10, 0).await.unwrap()[0];
    assert_eq!(other.outcome, "running");
}

pub async fn check_rate_windows(s: &dyn Store) {
    let t = now();
    let sec = |n| chrono::Duration::seconds(n);
    let bucket = format!("otp:{}", Uuid::new_v4());
    let other = format!("otp:{}", Uuid::new_v4());

    // Looking counts nothing.
    let empty = s.hit_window(&bucket, 2, t, t + sec(60), false).await.unwrap();
    assert_eq!(
        empty,
        WindowState {
            allowed: true,
            used: 0,
            oldest_expires_at: None
        }
    );
    // Two allowed, the third refused and not counted.
    let first = s.hit_window(&bucket, 2, t, t + sec(60), true).await.unwrap();
    assert_eq!(
        (first.allowed, first.used, first.oldest_expires_at),
        (true, 1, Some(t + sec(60)))
    );
    let second = s.hit_window(&bucket, 2, t + sec(1), t + sec(61), true).await.unwrap();
    assert_eq!(
        (second.allowed, second.used, second.oldest_expires_at),
        (true, 2, Some(t + sec(60)))
    );
    let third = s.hit_window(&bucket, 2, t + sec(2), t + sec(62), true).await.unwrap();
    assert_eq!((third.allowed, third.used), (false, 2), "refused, not counted");
    assert_eq!(s.hit_window(&bucket, 2, t + sec(2), t, false).await.unwrap().used, 2);
    // Per bucket.
    assert!(s.hit_window(&other, 2, t, t + sec(60), true).await.unwrap().allowed);

    // Undo takes back the newest.
    assert!(s.undo_window_hit(&bucket).await.unwrap());
    let after_undo = s.hit_window(&bucket, 2, t + sec(2), t, false).await.unwrap();
    assert_eq!((after_undo.used, after_undo.oldest_expires_at), (1, Some(t + sec(60))));
    assert!(
        s.hit_window(&bucket, 2, t + sec(3), t + sec(63), true)
            .await
            .unwrap()
            .allowed
    );

    // An event leaves the window at its expiry.
    let later = s
        .hit_window(&bucket, 2, t + sec(60), t + sec(120), false)
        .await
        .unwrap();
    assert_eq!(
        (later.allowed, later.used, later.oldest_expires_at),
        (true, 1, Some(t + sec(63)))
    );

    // Sweeping forgets the expired events only.
    assert_eq!(s.sweep_window_hits(t + sec(60)).await.unwrap(), 2, "one of each bucket");
    assert_eq!(s.hit_window(&bucket, 2, t, t, false).await.unwrap().used, 1);
    assert_eq!(s.sweep_window_hits(t + sec(100)).await.unwrap(), 1);
    assert_eq!(s.hit_window(&bucket, 2, t, t, false).await.unwrap().used, 0);
    assert!(!s.undo_window_hit(&bucket).await.unwrap(), "nothing to take back");

    // Concurrent hits never pass the limit.
    let busy = format!("otp:{}", Uuid::new_v4());
    let hit = || s.hit_window(&busy, 3, t, t + sec(60), true);
    let all = tokio::join!(hit(), hit(), hit(), hit(), hit(), hit(), hit(), hit());
    let allowed = [all.0, all.1, all.2, all.3, all.4, all.5, all.6, all.7]
        .into_iter()
        .filter(|r| r.as_ref().unwrap().allowed)
        .count();
    assert_eq!(allowed, 3);
}
