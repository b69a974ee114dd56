//! What the engine reads and writes: its account view, scrape blocks, movements, runs, leases.

use std::collections::BTreeSet;

use chrono::Duration;
use reconbanker_store::*;
use uuid::Uuid;

use crate::fixtures::*;

pub async fn check_engine_accounts(s: &dyn Store) {
    let (owner, other) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let t = now();
    // Created out of order, across two users; two share a timestamp and are ordered by id.
    let lo = AccountId::new();
    let hi = AccountId(Uuid::from_u128(lo.0.as_u128() + 1));
    let late = account_at(s, owner.id, &b, AccountId::new(), t + ms(30)).await;
    let tie_hi = account_at(s, other.id, &b, hi, t + ms(20)).await;
    let early = account_at(s, other.id, &b, AccountId::new(), t + ms(10)).await;
    let tie_lo = account_at(s, owner.id, &b, lo, t + ms(20)).await;

    let with_secrets = AccountConfigRow {
        account_id: late.id,
        settings: r#"{"schedule":"hourly"}"#.into(),
        secrets: Some(vec![7, 0, 255]),
        updated_at: t + ms(40),
    };
    let without_secrets = AccountConfigRow {
        account_id: tie_hi.id,
        settings: "{}".into(),
        secrets: None,
        updated_at: t + ms(50),
    };
    assert!(s.put_account_config(owner.id, &with_secrets).await.unwrap());
    assert!(s.put_account_config(other.id, &without_secrets).await.unwrap());

    let want = vec![
        EngineAccount {
            account: early.clone(),
            config: None,
        },
        EngineAccount {
            account: tie_lo.clone(),
            config: None,
        },
        EngineAccount {
            account: tie_hi.clone(),
            config: Some(without_secrets.clone()),
        },
        EngineAccount {
            account: late.clone(),
            config: Some(with_secrets.clone()),
        },
    ];
    let mine: BTreeSet<AccountId> = want.iter().map(|e| e.account.id).collect();
    let all = s.engine_accounts().await.unwrap();
    assert_eq!(
        all.iter()
            .filter(|e| mine.contains(&e.account.id))
            .cloned()
            .collect::<Vec<_>>(),
        want,
        "every user's accounts, with their configs, in creation order"
    );
    // Nothing else is there: the whole list is these accounts, each once, ordered by creation
    // time, then id.
    assert_eq!(all, want);
    let keys: Vec<(Timestamp, AccountId)> = all.iter().map(|e| (e.account.created_at, e.account.id)).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        keys, sorted,
        "engine_accounts is ordered by creation, each account once"
    );
    for u in [&owner, &other] {
        for a in s.list_accounts(u.id, 100, 0).await.unwrap() {
            let config = s.account_config(u.id, a.id).await.unwrap();
            let want = EngineAccount { account: a, config };
            assert_eq!(
                all.iter()
                    .filter(|e| e.account.id == want.account.id)
                    .collect::<Vec<_>>(),
                vec![&want]
            );
        }
    }

    // One by one.
    for e in &want {
        assert_eq!(s.engine_account(e.account.id).await.unwrap().as_ref(), Some(e));
    }
    assert_eq!(s.engine_account(AccountId::new()).await.unwrap(), None);

    // A replaced config reads back replaced (secrets cleared).
    let replaced = AccountConfigRow {
        settings: r#"{"schedule":"daily"}"#.into(),
        secrets: None,
        updated_at: t + ms(60),
        ..with_secrets
    };
    assert!(s.put_account_config(owner.id, &replaced).await.unwrap());
    assert_eq!(
        s.engine_account(late.id).await.unwrap(),
        Some(EngineAccount {
            account: late,
            config: Some(replaced),
        })
    );

    // A deleted account is gone from both.
    assert!(s.delete_account(other.id, tie_hi.id, i64::MAX).await.unwrap());
    assert_eq!(s.engine_account(tie_hi.id).await.unwrap(), None);
    let after = s.engine_accounts().await.unwrap();
    assert!(!after.iter().any(|e| e.account.id == tie_hi.id));
    assert!(after.iter().any(|e| e.account.id == early.id));
}

pub async fn check_set_scrape_block(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let (a, other) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let t = now() + ms(7);

    assert!(s
        .set_scrape_block(a.id, Some((t, "credentials rejected")))
        .await
        .unwrap());
    let blocked = AccountRow {
        scrape_blocked_at: Some(t),
        scrape_blocked_reason: Some("credentials rejected".into()),
        ..a.clone()
    };
    assert_eq!(s.account_for_user(owner.id, a.id).await.unwrap(), Some(blocked.clone()));
    assert_eq!(
        s.engine_account(a.id).await.unwrap().map(|e| e.account),
        Some(blocked.clone())
    );
    // Nothing else is touched.
    assert_eq!(
        s.account_for_user(owner.id, other.id).await.unwrap(),
        Some(other.clone())
    );

    // Blocking again replaces both fields.
    let t2 = t + Duration::seconds(90) + ms(1);
    assert!(s
        .set_scrape_block(a.id, Some((t2, "account locked by the bank")))
        .await
        .unwrap());
    assert_eq!(
        s.account_for_user(owner.id, a.id).await.unwrap(),
        Some(AccountRow {
            scrape_blocked_at: Some(t2),
            scrape_blocked_reason: Some("account locked by the bank".into()),
            ..a.clone()
        })
    );

    // Clearing empties both; clearing an unblocked account still finds it.
    assert!(s.set_scrape_block(a.id, None).await.unwrap());
    assert_eq!(s.account_for_user(owner.id, a.id).await.unwrap(), Some(a.clone()));
    assert!(s.set_scrape_block(a.id, None).await.unwrap());
    assert_eq!(
        s.list_accounts(owner.id, 100, 0).await.unwrap(),
        vec![a.clone(), other.clone()]
    );

    // An unknown or deleted account is `false`.
    assert!(!s.set_scrape_block(AccountId::new(), Some((t, "nobody"))).await.unwrap());
    assert!(!s.set_scrape_block(AccountId::new(), None).await.unwrap());
    assert!(s.delete_account(owner.id, other.id, i64::MAX).await.unwrap());
    assert!(!s.set_scrape_block(other.id, Some((t, "gone"))).await.unwrap());
    assert_eq!(s.account_for_user(owner.id, a.id).await.unwrap(), Some(a));
}

pub async fn check_insert_movements(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let (a, other) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let t1 = now();
    let m1 = movement("tx-1", "2026-03-01T09:00:00Z");
    let m2 = movement("tx-2", "2026-03-02T08:00:00Z");

    assert_eq!(s.insert_movements(a.id, &[], t1, &never_forward).await.unwrap(), 0);
    assert_eq!(
        s.insert_movements(a.id, &[m1.clone(), m2.clone()], t1, &never_forward)
            .await
            .unwrap(),
        2
    );
    let first = s.list_movements(owner.id, a.id, 100, 0).await.unwrap();
    assert_eq!(without_ids(&first), vec![stored(a.id, &m2, t1), stored(a.id, &m1, t1)]);
    assert_ne!(first[0].id, first[1].id);

    // Read again (even with other fields changed): not new, not duplicated; the first read
    // stays as it was, same ids.
    let t2 = t1 + Duration::seconds(60);
    let m1_again = NewMovement {
        amount: "-99.99".into(),
        description: "changed".into(),
        ..m1.clone()
    };
    assert_eq!(
        s.insert_movements(a.id, &[m1_again, m2.clone()], t2, &never_forward)
            .await
            .unwrap(),
        0
    );
    assert_eq!(s.list_movements(owner.id, a.id, 100, 0).await.unwrap(), first);

    // A batch mixing known and new movements counts only the new ones; a movement twice in one
    // batch counts once.
    let m3 = movement("tx-3", "2026-03-03T00:00:00Z");
    assert_eq!(
        s.insert_movements(
            a.id,
            &[m2.clone(), m3.clone(), m3.clone(), m1.clone()],
            t2,
            &never_forward
        )
        .await
        .unwrap(),
        1
    );
    let listed = s.list_movements(owner.id, a.id, 100, 0).await.unwrap();
    assert_eq!(
        without_ids(&listed),
        vec![stored(a.id, &m3, t2), stored(a.id, &m2, t1), stored(a.id, &m1, t1)]
    );
    assert_eq!(&listed[1..], &first[..]);

    // The same external id on another account is another movement.
    let bare = NewMovement {
        name: None,
        ..movement("tx-9", "2026-01-01T00:00:00Z")
    };
    assert_eq!(
        s.insert_movements(other.id, &[m1.clone(), bare.clone()], t2, &never_forward)
            .await
            .unwrap(),
        2
    );
    let elsewhere = s.list_movements(owner.id, other.id, 100, 0).await.unwrap();
    assert_eq!(
        without_ids(&elsewhere),
        vec![stored(other.id, &m1, t2), stored(other.id, &bare, t2)]
    );
    assert!(!listed.iter().any(|m| m.id == elsewhere[0].id));
    assert_eq!(s.list_movements(owner.id, a.id, 100, 0).await.unwrap(), listed);

    // An unknown account is refused (foreign key).
    let r = s
        .insert_movements(AccountId::new(), std::slice::from_ref(&m1), t2, &never_forward)
        .await;
    assert!(
        matches!(r, Err(StoreError::Database(_))),
        "unknown account must be refused: {r:?}"
    );

    // Deleting the account deletes its movements: re-created under the same id it has none, and
    // the same external ids are new again.
    assert!(s.delete_account(owner.id, a.id, i64::MAX).await.unwrap());
    assert!(s.list_movements(owner.id, a.id, 100, 0).await.unwrap().is_empty());
    let reborn = account_at(s, owner.id, &b, a.id, now()).await;
    assert!(s.list_movements(owner.id, reborn.id, 100, 0).await.unwrap().is_empty());
    assert_eq!(
        s.insert_movements(reborn.id, &[m1.clone(), m2.clone(), m3.clone()], t2, &never_forward)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        without_ids(&s.list_movements(owner.id, reborn.id, 100, 0).await.unwrap()),
        vec![stored(a.id, &m3, t2), stored(a.id, &m2, t2), stored(a.id, &m1, t2)]
    );
    assert_eq!(s.list_movements(owner.id, other.id, 100, 0).await.unwrap(), elsewhere);
}

pub async fn check_list_movements(s: &dyn Store) {
    let (owner, stranger) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let a = account(s, owner.id, &b).await;
    let foreign = account(s, stranger.id, &b).await;
    let t1 = now();
    let t2 = t1 + Duration::seconds(30);

    // Inserted out of order over two reads: `b` and `c` share the bank's date (then external id,
    // descending); `e`, read last, is the oldest by the bank's date.
    let ma = movement("ext-a", "2026-03-01T09:00:00Z");
    let mb = movement("ext-b", "2026-03-02T08:00:00Z");
    let mc = movement("ext-c", "2026-03-02T08:00:00Z");
    let md = NewMovement {
        amount: "1500.00".into(),
        currency: "USD".into(),
        name: None,
        ..movement("ext-d", "2026-03-03T00:00:00Z")
    };
    let me = movement("ext-e", "2026-02-28T23:59:59Z");
    assert_eq!(
        s.insert_movements(a.id, &[mb.clone(), md.clone(), ma.clone()], t1, &never_forward)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        s.insert_movements(a.id, &[me.clone(), mc.clone()], t2, &never_forward)
            .await
            .unwrap(),
        2
    );
    let theirs = movement("ext-z", "2026-03-04T00:00:00Z");
    assert_eq!(
        s.insert_movements(foreign.id, std::slice::from_ref(&theirs), t2, &never_forward)
            .await
            .unwrap(),
        1
    );

    let all = s.list_movements(owner.id, a.id, 100, 0).await.unwrap();
    assert_eq!(
        without_ids(&all),
        vec![
            stored(a.id, &md, t1),
            stored(a.id, &mc, t2),
            stored(a.id, &mb, t1),
            stored(a.id, &ma, t1),
            stored(a.id, &me, t2),
        ]
    );
    let ids: BTreeSet<MovementId> = all.iter().map(|m| m.id).collect();
    assert_eq!(ids.len(), all.len(), "each movement has its own id");

    // Paged.
    assert_eq!(
        s.list_movements(owner.id, a.id, 2, 0).await.unwrap(),
        all[0..2].to_vec()
    );
    assert_eq!(
        s.list_movements(owner.id, a.id, 2, 2).await.unwrap(),
        all[2..4].to_vec()
    );
    assert_eq!(s.list_movements(owner.id, a.id, 2, 4).await.unwrap(), all[4..].to_vec());
    assert_eq!(
        s.list_movements(owner.id, a.id, 1, 3).await.unwrap(),
        all[3..4].to_vec()
    );
    assert!(s.list_movements(owner.id, a.id, 10, 5).await.unwrap().is_empty());
    assert!(s.list_movements(owner.id, a.id, 0, 0).await.unwrap().is_empty());

    // Tenant-scoped.
    assert!(s.list_movements(stranger.id, a.id, 100, 0).await.unwrap().is_empty());
    assert!(s.list_movements(UserId::new(), a.id, 100, 0).await.unwrap().is_empty());
    assert!(s.list_movements(owner.id, foreign.id, 100, 0).await.unwrap().is_empty());
    assert!(s
        .list_movements(owner.id, AccountId::new(), 100, 0)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        without_ids(&s.list_movements(stranger.id, foreign.id, 100, 0).await.unwrap()),
        vec![stored(foreign.id, &theirs, t2)]
    );
}

pub async fn check_runs(s: &dyn Store) {
    let (owner, stranger) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let (a, other) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let foreign = account(s, stranger.id, &b).await;
    let t = now();

    // One created already ended, so that every field round-trips.
    let done = RunRow {
        kind: "persistent".into(),
        ended_at: Some(t + ms(5)),
        outcome: "failed".into(),
        failure_reason: Some("login refused".into()),
        movements_read: 5,
        new_movements: 2,
        ..run_row(a.id, t)
    };
    let r1 = run_row(a.id, t + ms(10));
    let r2 = RunRow {
        kind: "persistent".into(),
        ..run_row(a.id, t + ms(20))
    };
    let r3 = run_row(a.id, t + ms(30));
    // Same start as r3 with a smaller id: listed after it (id descending).
    let r4 = RunRow {
        id: RunId(Uuid::from_u128(r3.id.0.as_u128() - 1)),
        ..run_row(a.id, t + ms(30))
    };
    let theirs = run_row(foreign.id, t + ms(15));
    let elsewhere = run_row(other.id, t + ms(40));
    for r in [&r3, &done, &r1, &theirs, &r4, &elsewhere, &r2] {
        s.create_run(r).await.unwrap();
    }

    // Newest first, paged.
    let all = s.list_runs(owner.id, a.id, 100, 0).await.unwrap();
    assert_eq!(all, vec![r3.clone(), r4.clone(), r2.clone(), r1.clone(), done.clone()]);
    assert_eq!(
        s.list_runs(owner.id, a.id, 2, 0).await.unwrap(),
        vec![r3.clone(), r4.clone()]
    );
    assert_eq!(
        s.list_runs(owner.id, a.id, 2, 2).await.unwrap(),
        vec![r2.clone(), r1.clone()]
    );
    assert_eq!(s.list_runs(owner.id, a.id, 2, 4).await.unwrap(), vec![done.clone()]);
    assert_eq!(s.list_runs(owner.id, a.id, 1, 1).await.unwrap(), vec![r4.clone()]);
    assert!(s.list_runs(owner.id, a.id, 10, 5).await.unwrap().is_empty());
    assert!(s.list_runs(owner.id, a.id, 0, 0).await.unwrap().is_empty());

    // Per account, tenant-scoped.
    assert_eq!(
        s.list_runs(owner.id, other.id, 100, 0).await.unwrap(),
        vec![elsewhere.clone()]
    );
    assert!(s.list_runs(stranger.id, a.id, 100, 0).await.unwrap().is_empty());
    assert!(s.list_runs(UserId::new(), a.id, 100, 0).await.unwrap().is_empty());
    assert!(s.list_runs(owner.id, foreign.id, 100, 0).await.unwrap().is_empty());
    assert_eq!(
        s.list_runs(stranger.id, foreign.id, 100, 0).await.unwrap(),
        vec![theirs.clone()]
    );

    // The id is unique; an unknown account is refused (foreign key).
    let r = s
        .create_run(&RunRow {
            account_id: other.id,
            ..r1.clone()
        })
        .await;
    assert!(
        conflict(r, Constraint::Other("session_runs_pkey".into())),
        "duplicate run id must be a Conflict"
    );
    let r = s.create_run(&run_row(AccountId::new(), t)).await;
    assert!(
        matches!(r, Err(StoreError::Database(_))),
        "unknown account must be refused: {r:?}"
    );
    assert_eq!(
        s.list_runs(owner.id, other.id, 100, 0).await.unwrap(),
        vec![elsewhere.clone()]
    );

    // Finishing: once, and only a running run.
    let succeeded = RunRow {
        ended_at: Some(t + ms(500)),
        outcome: "succeeded".into(),
        movements_read: 12,
        new_movements: 3,
        ..r1.clone()
    };
    assert_eq!(s.finish_run(&succeeded, &[]).await.unwrap(), (true, vec![]));
    let late = RunRow {
        ended_at: Some(t + ms(900)),
        outcome: "failed".into(),
        failure_reason: Some("too late".into()),
        ..r1.clone()
    };
    assert_eq!(
        s.finish_run(&late, &[]).await.unwrap(),
        (false, vec![]),
        "no longer running"
    );
    assert!(
        !s.finish_run(
            &RunRow {
                ended_at: Some(t + ms(900)),
                outcome: "succeeded".into(),
                failure_reason: None,
                ..done.clone()
            },
            &[]
        )
        .await
        .unwrap()
        .0,
        "created ended"
    );
    assert!(
        !s.finish_run(
            &RunRow {
                ended_at: Some(t),
                outcome: "succeeded".into(),
                ..run_row(a.id, t)
            },
            &[]
        )
        .await
        .unwrap()
        .0,
        "unknown run"
    );
    let failed = RunRow {
        ended_at: Some(t + ms(600)),
        outcome: "failed".into(),
        failure_reason: Some("bank unavailable".into()),
        movements_read: 1,
        ..r2.clone()
    };
    assert!(s.finish_run(&failed, &[]).await.unwrap().0);
    assert_eq!(
        s.list_runs(owner.id, a.id, 100, 0).await.unwrap(),
        vec![r3.clone(), r4, failed, succeeded, done]
    );
    assert_eq!(s.list_runs(owner.id, other.id, 100, 0).await.unwrap(), vec![elsewhere]);
    assert_eq!(
        s.list_runs(stranger.id, foreign.id, 100, 0).await.unwrap(),
        vec![theirs]
    );

    // Deleting the account deletes its runs: re-created under the same id it has none, and the
    // old run ids are free again.
    assert!(s.delete_account(owner.id, a.id, i64::MAX).await.unwrap());
    assert!(s.list_runs(owner.id, a.id, 100, 0).await.unwrap().is_empty());
    let reborn = account_at(s, owner.id, &b, a.id, now()).await;
    assert!(s.list_runs(owner.id, reborn.id, 100, 0).await.unwrap().is_empty());
    s.create_run(&r3).await.unwrap();
    assert_eq!(s.list_runs(owner.id, reborn.id, 100, 0).await.unwrap(), vec![r3]);
}

pub async fn check_close_open_runs(s: &dyn Store) {
    // Nothing is running on a fresh database.
    assert_eq!(s.close_open_runs("sweep", now()).await.unwrap(), 0);

    let owner = user(s).await;
    let b = bank(s).await;
    let (a, other) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let t = now();
    let open_a = RunRow {
        movements_read: 4,
        new_movements: 1,
        ..run_row(a.id, t)
    };
    let open_other = RunRow {
        kind: "persistent".into(),
        ..run_row(other.id, t + ms(10))
    };
    let succeeded = RunRow {
        ended_at: Some(t - ms(50)),
        outcome: "succeeded".into(),
        movements_read: 2,
        ..run_row(a.id, t - ms(100))
    };
    let failed = RunRow {
        ended_at: Some(t - ms(20)),
        outcome: "failed".into(),
        failure_reason: Some("timeout".into()),
        ..run_row(other.id, t - ms(40))
    };
    let stopped = run_row(a.id, t + ms(20));
    for r in [&open_a, &open_other, &succeeded, &failed, &stopped] {
        s.create_run(r).await.unwrap();
    }
    // Created running, ended before the sweep.
    let stopped = RunRow {
        ended_at: Some(t + ms(30)),
        outcome: "cancelled".into(),
        failure_reason: Some("stopped by the user".into()),
        ..stopped
    };
    assert!(s.finish_run(&stopped, &[]).await.unwrap().0);

    let at = t + ms(1000);
    assert_eq!(s.close_open_runs("server restarted", at).await.unwrap(), 2);
    let swept = |r: &RunRow| RunRow {
        ended_at: Some(at),
        outcome: "cancelled".into(),
        failure_reason: Some("server restarted".into()),
        ..r.clone()
    };
    let on_a = vec![stopped, swept(&open_a), succeeded];
    let on_other = vec![swept(&open_other), failed];
    assert_eq!(s.list_runs(owner.id, a.id, 100, 0).await.unwrap(), on_a);
    assert_eq!(s.list_runs(owner.id, other.id, 100, 0).await.unwrap(), on_other);

    // A cancelled run can no longer be finished; nothing is left to sweep.
    assert!(
        !s.finish_run(
            &RunRow {
                ended_at: Some(at + ms(1)),
                outcome: "succeeded".into(),
                ..open_a
            },
            &[]
        )
        .await
        .unwrap()
        .0
    );
    assert_eq!(s.close_open_runs("again", at + ms(2)).await.unwrap(), 0);
    assert_eq!(s.list_runs(owner.id, a.id, 100, 0).await.unwrap(), on_a);
    assert_eq!(s.list_runs(owner.id, other.id, 100, 0).await.unwrap(), on_other);
}

pub async fn check_leases(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let (a, other) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let t = now();
    let sec = Duration::seconds;

    // Free: taken. The holder renews (to t+60s).
    assert!(s.acquire_lease(a.id, "node-1", t + sec(30), t).await.unwrap());
    assert!(s.acquire_lease(a.id, "node-1", t + sec(60), t + sec(10)).await.unwrap());
    // Another owner is refused while it runs, also past the first expiry: it was renewed.
    assert!(!s.acquire_lease(a.id, "node-2", t + sec(90), t + sec(20)).await.unwrap());
    assert!(!s.acquire_lease(a.id, "node-2", t + sec(90), t + sec(45)).await.unwrap());
    // Leases are per account.
    assert!(s
        .acquire_lease(other.id, "node-2", t + sec(90), t + sec(45))
        .await
        .unwrap());
    assert!(!s
        .acquire_lease(other.id, "node-1", t + sec(90), t + sec(46))
        .await
        .unwrap());
    // Expired: another owner takes over, and the old holder is now the one refused.
    assert!(s
        .acquire_lease(a.id, "node-2", t + sec(120), t + sec(61))
        .await
        .unwrap());
    assert!(!s
        .acquire_lease(a.id, "node-1", t + sec(130), t + sec(70))
        .await
        .unwrap());

    // Releasing: only the holder can.
    assert!(!s.release_lease(a.id, "node-1").await.unwrap());
    assert!(
        !s.acquire_lease(a.id, "node-1", t + sec(130), t + sec(71))
            .await
            .unwrap(),
        "a non-owner's release must not free the lease"
    );
    assert!(s.release_lease(a.id, "node-2").await.unwrap());
    assert!(!s.release_lease(a.id, "node-2").await.unwrap(), "already released");
    // Released: free at once, long before node-2's lease would have expired.
    assert!(s
        .acquire_lease(a.id, "node-3", t + sec(200), t + sec(72))
        .await
        .unwrap());
    assert!(!s
        .acquire_lease(a.id, "node-2", t + sec(200), t + sec(73))
        .await
        .unwrap());
    // The other account's lease was not touched by any of this.
    assert!(!s
        .acquire_lease(other.id, "node-1", t + sec(130), t + sec(73))
        .await
        .unwrap());
    assert!(s
        .acquire_lease(other.id, "node-2", t + sec(130), t + sec(73))
        .await
        .unwrap());

    // An unknown account: refused, and no lease is left behind (nothing to release, and the
    // account created later under that id is free).
    let ghost = AccountId::new();
    assert!(!s
        .acquire_lease(ghost, "node-1", t + Duration::hours(1), t)
        .await
        .unwrap());
    assert!(!s.release_lease(ghost, "node-1").await.unwrap());
    let ghost = account_at(s, owner.id, &b, ghost, now()).await;
    assert!(s
        .acquire_lease(ghost.id, "node-2", t + Duration::hours(1), t + sec(1))
        .await
        .unwrap());

    // Deleting the account deletes its lease: node-3's lease (until t+200s) is gone with it.
    assert!(s.delete_account(owner.id, a.id, i64::MAX).await.unwrap());
    assert!(!s.release_lease(a.id, "node-3").await.unwrap());
    assert!(!s
        .acquire_lease(a.id, "node-4", t + sec(300), t + sec(80))
        .await
        .unwrap());
    let reborn = account_at(s, owner.id, &b, a.id, now()).await;
    assert!(s
        .acquire_lease(reborn.id, "node-4", t + sec(300), t + sec(80))
        .await
        .unwrap());
    assert!(!s
        .acquire_lease(reborn.id, "node-3", t + sec(300), t + sec(81))
        .await
        .unwrap());
}

pub async fn check_run_events(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let a = account(s, owner.id, &b).await;
    let t = now();
    let run = run_row(a.id, t);
    s.create_run(&run).await.unwrap();

    // Ending a running run logs the events with it.
    let failed = RunRow {
        ended_at: Some(t + ms(500)),
        outcome: "failed".into(),
        failure_reason: Some("login refused".into()),
        movements_read: 3,
        ..run.clone()
    };
    let login_failed = delivering(
        event(owner.id, a.id, "session.login_failed", t + ms(500)),
        &[&delivery("login_failed", t + ms(500))],
    );
    let status = event(owner.id, a.id, "account.status", t + ms(500));
    let (done, logged) = s
        .finish_run(&failed, &[login_failed.clone(), status.clone()])
        .await
        .unwrap();
    assert!(done);
    assert_logged(&logged, &[login_failed.clone(), status], 0);
    let mut log = logged;
    assert_eq!(events_of(s, owner.id).await, log);
    assert_eq!(s.list_runs(owner.id, a.id, 100, 0).await.unwrap(), vec![failed.clone()]);
    let mut on_a = vec![queued(&login_failed, &login_failed.deliveries[0])];
    assert_eq!(s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap(), on_a);

    // No longer running: `false`, the run stays as it ended, but the events are logged all the
    // same (with their deliveries).
    let late = RunRow {
        ended_at: Some(t + ms(900)),
        outcome: "succeeded".into(),
        failure_reason: None,
        ..run.clone()
    };
    let scrape_failed = delivering(
        event(owner.id, a.id, "session.scrape_failed", t + ms(900)),
        &[&delivery("scrape_failed", t + ms(900))],
    );
    let (done, logged) = s.finish_run(&late, std::slice::from_ref(&scrape_failed)).await.unwrap();
    assert!(!done, "no longer running");
    assert_logged(&logged, std::slice::from_ref(&scrape_failed), last_seq(&log));
    log.extend(logged);
    assert_eq!(events_of(s, owner.id).await, log);
    assert_eq!(s.list_runs(owner.id, a.id, 100, 0).await.unwrap(), vec![failed]);
    on_a.insert(0, queued(&scrape_failed, &scrape_failed.deliveries[0]));
    assert_eq!(s.list_deliveries(owner.id, a.id, 100, 0).await.unwrap(), on_a);

    // An unknown run: the same.
    let ghost = event(owner.id, a.id, "account.status", t + ms(950));
    let (done, logged) = s
        .finish_run(
            &RunRow {
                ended_at: Some(t + ms(950)),
                outcome: "cancelled".into(),
                ..run_row(a.id, t)
            },
            std::slice::from_ref(&ghost),
        )
        .await
        .unwrap();
    assert!(!done, "unknown run");
    assert_logged(&logged, std::slice::from_ref(&ghost), last_seq(&log));
    log.extend(logged);
    assert_eq!(events_of(s, owner.id).await, log);
}
