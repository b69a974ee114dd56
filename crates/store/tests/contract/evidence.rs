//! Issue 9 (real banks): the failure evidence of browser runs.

use reconbanker_store::*;
use uuid::Uuid;

use crate::fixtures::*;

fn evidence(run: RunId, step: &str, taken_at: Timestamp, expires_at: Timestamp) -> EvidenceRow {
    EvidenceRow {
        id: EvidenceId::new(),
        run_id: run,
        step: step.into(),
        sealed: vec![0, 1, 2, 255, step.len() as u8],
        taken_at,
        expires_at,
    }
}

pub async fn check_evidence(s: &dyn Store) {
    let (owner, stranger) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let (a, other) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let t = now();
    let run = run_row(a.id, t);
    let second = run_row(a.id, t + ms(1));
    s.create_run(&run).await.unwrap();
    s.create_run(&second).await.unwrap();
    let week = chrono::Duration::days(7);

    // Kept (bytes exactly), listed oldest first, per run.
    let e1 = evidence(run.id, "login[1]", t + ms(5), t + week);
    let e2 = evidence(run.id, "login[1]", t + ms(9), t + week + ms(10));
    let e3 = evidence(second.id, "movements", t + ms(7), t + week);
    for e in [&e2, &e1, &e3] {
        assert!(s.insert_evidence(e).await.unwrap());
    }
    let listed = s.list_evidence(owner.id, a.id, run.id, t).await.unwrap();
    assert_eq!(listed, Some(vec![e1.clone(), e2.clone()]));
    assert_eq!(
        s.list_evidence(owner.id, a.id, second.id, t).await.unwrap(),
        Some(vec![e3.clone()])
    );

    // The operator's view: by run alone, with its account, whoever owns it.
    assert_eq!(
        s.run_evidence(run.id, t).await.unwrap(),
        Some((a.id, vec![e1.clone(), e2.clone()]))
    );
    assert_eq!(
        s.run_evidence(second.id, t + week).await.unwrap(),
        Some((a.id, vec![])),
        "expired"
    );

    // A run that does not exist keeps nothing.
    let ghost = evidence(RunId(Uuid::new_v4()), "otp", t, t + week);
    assert!(!s.insert_evidence(&ghost).await.unwrap());

    // Scoped: another user, another account of the owner, an unknown run → None (not empty).
    assert_eq!(s.list_evidence(stranger.id, a.id, run.id, t).await.unwrap(), None);
    assert_eq!(s.list_evidence(owner.id, other.id, run.id, t).await.unwrap(), None);
    assert_eq!(s.list_evidence(owner.id, a.id, ghost.run_id, t).await.unwrap(), None);
    assert_eq!(s.run_evidence(ghost.run_id, t).await.unwrap(), None);
    // A run of the owner's with no evidence → empty.
    let bare = run_row(other.id, t);
    s.create_run(&bare).await.unwrap();
    assert_eq!(s.run_evidence(bare.id, t).await.unwrap(), Some((other.id, vec![])));
    assert_eq!(
        s.list_evidence(owner.id, other.id, bare.id, t).await.unwrap(),
        Some(vec![])
    );

    // Expired evidence is not listed, then purged; the rest stays.
    assert_eq!(
        s.list_evidence(owner.id, a.id, run.id, t + week).await.unwrap(),
        Some(vec![e2.clone()]),
        "expired at its expires_at"
    );
    assert_eq!(s.purge_evidence(t + week).await.unwrap(), 2);
    assert_eq!(
        s.list_evidence(owner.id, a.id, run.id, t).await.unwrap(),
        Some(vec![e2.clone()])
    );
    assert_eq!(s.purge_evidence(t + week).await.unwrap(), 0);

    // Gone with the account (and its runs).
    assert!(s.delete_account(owner.id, a.id, i64::MAX).await.unwrap());
    assert_eq!(
        s.purge_evidence(t + week + week).await.unwrap(),
        0,
        "nothing left to purge"
    );
}

pub async fn check_device_state(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let (a, other) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let t = now();
    assert_eq!(s.device_state(a.id).await.unwrap(), None);
    // Kept (bytes exactly), per account, replaced by the next.
    assert!(s.set_device_state(a.id, Some(&[1, 2, 0, 255]), t).await.unwrap());
    assert_eq!(s.device_state(a.id).await.unwrap(), Some(vec![1, 2, 0, 255]));
    assert_eq!(s.device_state(other.id).await.unwrap(), None);
    assert!(s.set_device_state(a.id, Some(&[9]), t + ms(1)).await.unwrap());
    assert_eq!(s.device_state(a.id).await.unwrap(), Some(vec![9]));
    // Forgotten on request; an unknown account keeps nothing.
    assert!(s.set_device_state(a.id, None, t).await.unwrap());
    assert_eq!(s.device_state(a.id).await.unwrap(), None);
    let ghost = AccountId(Uuid::new_v4());
    assert!(!s.set_device_state(ghost, Some(&[1]), t).await.unwrap());
    assert!(!s.set_device_state(ghost, None, t).await.unwrap());
    assert_eq!(s.device_state(ghost).await.unwrap(), None);
    // Gone with the account.
    assert!(s.set_device_state(other.id, Some(&[7]), t).await.unwrap());
    assert!(s.delete_account(owner.id, other.id, i64::MAX).await.unwrap());
    assert_eq!(s.device_state(other.id).await.unwrap(), None);
}
