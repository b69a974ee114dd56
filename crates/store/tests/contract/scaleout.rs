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
