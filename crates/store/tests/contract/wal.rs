//! Issue 8 (performance): SQLite's write-ahead log is checkpointed by `Store::checkpoint` (a
//! background loop in the server), never by a commit.

use reconbanker_store::*;

use crate::fixtures::*;

pub async fn check_checkpoint(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let a = account(s, owner.id, &b).await;
    // More than the 1,000 pages after which a commit would checkpoint by default, then a small
    // write: had that commit checkpointed, the small write would have started the log over.
    let big: Vec<NewEvent> = (0..1_200)
        .map(|i| {
            let mut e = event(owner.id, a.id, "session.scrape_failed", now());
            e.data = format!(r#"{{"i":{i},"pad":"{}"}}"#, "x".repeat(4_000));
            e
        })
        .collect();
    s.record_events(&big).await.unwrap();
    s.record_events(&[event(owner.id, a.id, "session.scrape_failed", now())])
        .await
        .unwrap();

    let c = s.checkpoint().await.unwrap();
    if s.backend() == "sqlite" {
        assert!(!c.busy, "{c:?}");
        assert!(c.frames > 1_000, "no commit checkpointed the log: {c:?}");
        assert_eq!(c.copied, c.frames, "no reader holds the log: all of it copied, {c:?}");
        // Copied already: the next checkpoint has nothing new to copy.
        let again = s.checkpoint().await.unwrap();
        assert_eq!((again.frames, again.copied), (c.frames, c.frames), "{again:?}");
        // The next write starts the log over.
        s.record_events(&[event(owner.id, a.id, "session.scrape_failed", now())])
            .await
            .unwrap();
        let after = s.checkpoint().await.unwrap();
        assert!(after.frames < 100, "the log started over: {after:?}");
        assert_eq!(events_of(s, owner.id).await.len(), 1_202, "nothing lost");
    } else {
        assert_eq!(c, WalCheckpoint::default(), "PostgreSQL checkpoints by itself");
        assert_eq!(events_of(s, owner.id).await.len(), 1_201, "nothing lost");
    }
}
