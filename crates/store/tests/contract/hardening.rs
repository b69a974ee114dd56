//! Issue 12: a restarted instance takes back the deliveries it had claimed.

use chrono::Duration;
use reconbanker_store::*;

use crate::fixtures::*;

pub async fn check_release_delivery_claims(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let a = account(s, owner.id, &b).await;
    let t = now();
    let lease = t + Duration::minutes(2);
    let (mine, retried, theirs, unclaimed) = (
        delivery("scrape_failed", t - ms(40)),
        delivery("login_failed", t - ms(30)),
        delivery("scrape_failed", t - ms(20)),
        delivery("scrape_failed", t + Duration::hours(1)),
    );
    let e = delivering(
        event(owner.id, a.id, "session.scrape_failed", t - ms(50)),
        &[&mine, &retried, &theirs, &unclaimed],
    );
    s.record_events(std::slice::from_ref(&e)).await.unwrap();
    // Two claims by this instance, one by another.
    assert_eq!(
        s.claim_due_deliveries(t, lease, 2, "instance-a").await.unwrap().len(),
        2
    );
    assert_eq!(
        s.claim_due_deliveries(t, lease, 10, "instance-b").await.unwrap(),
        vec![leased(&e, &theirs, lease)]
    );
    // One of ours was attempted and rescheduled by its backoff: no longer a claim.
    let backoff = t + Duration::minutes(10);
    let mut row = leased(&e, &retried, lease);
    row.attempts = 1;
    row.last_attempt_at = Some(t);
    row.last_status = Some(500);
    row.next_attempt_at = Some(backoff);
    assert!(s.finish_delivery_attempt(&row).await.unwrap());

    // Nothing to release for an instance with no claims.
    assert_eq!(s.release_delivery_claims("instance-c", t).await.unwrap(), 0);
    // Our restart at t + 1 s: only our unfinished claim is due again, now.
    let restart = t + Duration::seconds(1);
    assert_eq!(s.release_delivery_claims("instance-a", restart).await.unwrap(), 1);
    assert_eq!(
        s.claim_due_deliveries(restart, restart + Duration::minutes(2), 10, "instance-a")
            .await
            .unwrap(),
        vec![leased(&e, &mine, restart + Duration::minutes(2))]
    );
    // The other instance's claim and the rescheduled retry keep their times.
    let log = s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap();
    let due = |id: DeliveryId| log.iter().find(|d| d.id == id).and_then(|d| d.next_attempt_at);
    assert_eq!(due(theirs.id), Some(lease));
    assert_eq!(due(retried.id), Some(backoff));
    assert_eq!(due(unclaimed.id), Some(unclaimed.next_attempt_at));
    // The new claim is ours again: another restart would take it back too.
    assert_eq!(s.release_delivery_claims("instance-a", restart).await.unwrap(), 1);
}
