//! Issue 11 (metrics): what an instance's `/metrics` reads from the store.

use chrono::Duration;
use reconbanker_store::*;

use crate::fixtures::*;

pub async fn check_instance_gauges(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let (a, other) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let t = now();
    let sec = Duration::seconds;

    let pool = s.pool_usage();
    assert!(pool.max >= 1, "{pool:?}");
    assert!(
        pool.open >= 1 && pool.open <= pool.max,
        "the fixtures used a connection: {pool:?}"
    );
    assert!(pool.idle <= pool.open, "{pool:?}");
    assert_eq!(pool.in_use(), pool.open - pool.idle);

    assert_eq!(
        s.instance_gauges("me", t).await.unwrap(),
        InstanceGauges::default(),
        "nothing queued, nothing held"
    );

    // The outbox: pending deliveries of every account, then one dead-lettered.
    let (d1, d2) = (
        delivery("scrape_failed", t - ms(10)),
        delivery("login_failed", t - ms(5)),
    );
    let e = delivering(event(owner.id, a.id, "session.scrape_failed", t - ms(20)), &[&d1, &d2]);
    s.record_events(&[e]).await.unwrap();
    let g = s.instance_gauges("me", t).await.unwrap();
    assert_eq!((g.outbox_pending, g.outbox_dead), (2, 0));
    let mut claimed = s.claim_due_deliveries(t, t + sec(60), 1, "me").await.unwrap();
    let mut dead = claimed.pop().expect("one claimed");
    dead.status = "dead".into();
    dead.attempts = 8;
    dead.next_attempt_at = None;
    dead.last_attempt_at = Some(t);
    assert!(s.finish_delivery_attempt(&dead).await.unwrap());
    let g = s.instance_gauges("me", t).await.unwrap();
    assert_eq!((g.outbox_pending, g.outbox_dead), (1, 1));

    // Leases: only `owner`'s unexpired ones count.
    assert!(s.acquire_lease(a.id, "me", t + sec(30), t).await.unwrap());
    assert!(s.acquire_lease(other.id, "someone-else", t + sec(30), t).await.unwrap());
    assert!(s.begin_poll(a.id, "me", t, t + sec(20)).await.unwrap().is_some());
    let g = s.instance_gauges("me", t).await.unwrap();
    assert_eq!((g.session_leases, g.poll_leases), (1, 1));
    let g = s.instance_gauges("someone-else", t).await.unwrap();
    assert_eq!((g.session_leases, g.poll_leases), (1, 0));
    let g = s.instance_gauges("me", t + sec(25)).await.unwrap();
    assert_eq!((g.session_leases, g.poll_leases), (1, 0), "the poll lease ran out");
    let g = s.instance_gauges("me", t + sec(31)).await.unwrap();
    assert_eq!((g.session_leases, g.poll_leases), (0, 0), "expired leases are not held");
    assert!(s.release_lease(a.id, "me").await.unwrap());
    assert_eq!(s.instance_gauges("me", t).await.unwrap().session_leases, 0);
}
