//! Accounts and their configs.

use reconbanker_store::*;
use uuid::Uuid;

use crate::fixtures::*;

pub async fn check_accounts(s: &dyn Store) {
    let (owner, stranger) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let new = NewAccount {
        id: AccountId::new(),
        user_id: owner.id,
        bank_id: b.id,
        name: "Checking".into(),
        created_at: now(),
    };
    let a = s.create_account(&new).await.unwrap();
    assert_eq!(
        a,
        AccountRow {
            id: new.id,
            user_id: owner.id,
            bank_id: b.id,
            bank_code: b.code.clone(),
            name: "Checking".into(),
            status: "active".into(),
            scrape_blocked_at: None,
            scrape_blocked_reason: None,
            created_at: new.created_at,
        }
    );
    assert_eq!(s.account_for_user(owner.id, a.id).await.unwrap(), Some(a.clone()));
    // Tenant scoping.
    assert_eq!(s.account_for_user(stranger.id, a.id).await.unwrap(), None);
    assert_eq!(s.account_for_user(owner.id, AccountId::new()).await.unwrap(), None);
    assert!(s.list_accounts(stranger.id, 100, 0).await.unwrap().is_empty());

    // The same id twice is a conflict; an unknown bank or owner is refused (foreign keys).
    let r = s
        .create_account(&NewAccount {
            name: "Again".into(),
            ..new.clone()
        })
        .await;
    assert!(
        conflict(r, Constraint::Other("accounts_pkey".into())),
        "duplicate account id must be a Conflict"
    );
    let r = s
        .create_account(&NewAccount {
            id: AccountId::new(),
            bank_id: BankId::new(),
            ..new.clone()
        })
        .await;
    assert!(
        matches!(r, Err(StoreError::Database(_))),
        "unknown bank must be refused: {r:?}"
    );
    let r = s
        .create_account(&NewAccount {
            id: AccountId::new(),
            user_id: UserId::new(),
            ..new.clone()
        })
        .await;
    assert!(
        matches!(r, Err(StoreError::Database(_))),
        "unknown user must be refused: {r:?}"
    );
    assert_eq!(s.list_accounts(owner.id, 100, 0).await.unwrap(), vec![a]);
}

pub async fn check_list_accounts(s: &dyn Store) {
    let (owner, stranger) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let t = now();
    // Inserted out of order; two share a timestamp and are ordered by id.
    let lo = AccountId::new();
    let hi = AccountId(Uuid::from_u128(lo.0.as_u128() + 1));
    let a3 = account_at(s, owner.id, &b, AccountId::new(), t + ms(30)).await;
    let a2_hi = account_at(s, owner.id, &b, hi, t + ms(20)).await;
    let a1 = account_at(s, owner.id, &b, AccountId::new(), t + ms(10)).await;
    let a2_lo = account_at(s, owner.id, &b, lo, t + ms(20)).await;
    let foreign = account_at(s, stranger.id, &b, AccountId::new(), t + ms(15)).await;

    let all = s.list_accounts(owner.id, 100, 0).await.unwrap();
    assert_eq!(all, vec![a1.clone(), a2_lo.clone(), a2_hi.clone(), a3.clone()]);
    assert_eq!(s.list_accounts(owner.id, 2, 0).await.unwrap(), vec![a1, a2_lo]);
    assert_eq!(
        s.list_accounts(owner.id, 2, 2).await.unwrap(),
        vec![a2_hi.clone(), a3.clone()]
    );
    assert_eq!(s.list_accounts(owner.id, 1, 2).await.unwrap(), vec![a2_hi]);
    assert_eq!(s.list_accounts(owner.id, 10, 3).await.unwrap(), vec![a3]);
    assert!(s.list_accounts(owner.id, 10, 4).await.unwrap().is_empty());
    assert!(s.list_accounts(owner.id, 0, 0).await.unwrap().is_empty());
    assert_eq!(s.list_accounts(stranger.id, 100, 0).await.unwrap(), vec![foreign]);
    assert!(s.list_accounts(UserId::new(), 100, 0).await.unwrap().is_empty());
}

pub async fn check_owned_account_ids(s: &dyn Store) {
    let (owner, stranger) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let a1 = account(s, owner.id, &b).await;
    let a2 = account(s, owner.id, &b).await;
    let a3 = account(s, owner.id, &b).await;
    let foreign = account(s, stranger.id, &b).await;

    let asked = [a2.id, foreign.id, AccountId::new(), a1.id];
    let mut got = s.owned_account_ids(owner.id, &asked).await.unwrap();
    got.sort();
    let mut want = vec![a1.id, a2.id];
    want.sort();
    assert_eq!(got, want, "only the owned subset, never a3 (not asked) nor foreign ids");
    assert!(!got.contains(&a3.id));

    assert!(s.owned_account_ids(owner.id, &[]).await.unwrap().is_empty());
    assert!(s
        .owned_account_ids(stranger.id, &[a1.id, a2.id])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.owned_account_ids(stranger.id, &asked).await.unwrap(),
        vec![foreign.id]
    );
    assert!(s.owned_account_ids(UserId::new(), &asked).await.unwrap().is_empty());
}

pub async fn check_account_config(s: &dyn Store) {
    let (owner, stranger) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let a = account(s, owner.id, &b).await;
    assert_eq!(s.account_config(owner.id, a.id).await.unwrap(), None);

    let first = AccountConfigRow {
        account_id: a.id,
        settings: r#"{"schedule":"hourly"}"#.into(),
        secrets: Some(vec![0, 1, 2, 255, 254]),
        updated_at: now(),
    };
    assert!(s.put_account_config(owner.id, &first).await.unwrap());
    assert_eq!(s.account_config(owner.id, a.id).await.unwrap(), Some(first.clone()));
    assert_eq!(s.account_config(stranger.id, a.id).await.unwrap(), None);

    // Replacing overwrites every field, including clearing the secrets.
    let second = AccountConfigRow {
        account_id: a.id,
        settings: r#"{"schedule":"daily"}"#.into(),
        secrets: None,
        updated_at: first.updated_at + ms(1500),
    };
    assert!(s.put_account_config(owner.id, &second).await.unwrap());
    assert_eq!(s.account_config(owner.id, a.id).await.unwrap(), Some(second.clone()));

    // A foreign or unknown account is refused and nothing changes.
    let hostile = AccountConfigRow {
        settings: r#"{"schedule":"never"}"#.into(),
        secrets: Some(vec![9]),
        ..second.clone()
    };
    assert!(!s.put_account_config(stranger.id, &hostile).await.unwrap());
    assert_eq!(s.account_config(owner.id, a.id).await.unwrap(), Some(second));
    let ghost = AccountConfigRow {
        account_id: AccountId::new(),
        ..first.clone()
    };
    assert!(!s.put_account_config(owner.id, &ghost).await.unwrap());
    assert_eq!(s.account_config(owner.id, ghost.account_id).await.unwrap(), None);

    // A stranger's own account with no config yet: still nothing for the owner of `a`.
    let theirs = account(s, stranger.id, &b).await;
    let cross = AccountConfigRow {
        account_id: theirs.id,
        ..first.clone()
    };
    assert!(!s.put_account_config(owner.id, &cross).await.unwrap());
    assert_eq!(s.account_config(stranger.id, theirs.id).await.unwrap(), None);
}

/// The compare-and-set write of a config: it lands only on the config it was made from.
pub async fn check_replace_account_config(s: &dyn Store) {
    let (owner, stranger) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let a = account(s, owner.id, &b).await;
    let row = |settings: &str, secrets: Option<Vec<u8>>| AccountConfigRow {
        account_id: a.id,
        settings: settings.into(),
        secrets,
        updated_at: now(),
    };

    // None stored yet: the first write expects none; a second first write finds one.
    let first = row(r#"{"retry_limit":3}"#, Some(vec![1, 2, 3]));
    assert_eq!(
        s.replace_account_config(owner.id, &first, None).await.unwrap(),
        ConfigWrite::Written
    );
    let racer = row(r#"{"retry_limit":4}"#, Some(vec![4]));
    assert_eq!(
        s.replace_account_config(owner.id, &racer, None).await.unwrap(),
        ConfigWrite::Changed
    );
    assert_eq!(s.account_config(owner.id, a.id).await.unwrap(), Some(first.clone()));

    // Made from the stored config: written. Made from the old one: refused, nothing changes.
    let second = row(r#"{"retry_limit":7}"#, Some(vec![7, 7]));
    assert_eq!(
        s.replace_account_config(owner.id, &second, Some(&first)).await.unwrap(),
        ConfigWrite::Written
    );
    let stale = row(r#"{"notify_on_expired":true}"#, Some(vec![8]));
    assert_eq!(
        s.replace_account_config(owner.id, &stale, Some(&first)).await.unwrap(),
        ConfigWrite::Changed
    );
    assert_eq!(s.account_config(owner.id, a.id).await.unwrap(), Some(second.clone()));

    // The same settings with other secrets (a rotation) is another config.
    let rotated = row(&second.settings, Some(vec![9, 9]));
    assert_eq!(
        s.replace_account_config(owner.id, &rotated, Some(&second))
            .await
            .unwrap(),
        ConfigWrite::Written
    );
    let other_secrets = row(r#"{"retry_limit":1}"#, Some(vec![1]));
    assert_eq!(
        s.replace_account_config(owner.id, &other_secrets, Some(&second))
            .await
            .unwrap(),
        ConfigWrite::Changed
    );
    // Secrets cleared and compared as "none".
    let cleared = row(r#"{"retry_limit":2}"#, None);
    assert_eq!(
        s.replace_account_config(owner.id, &cleared, Some(&rotated))
            .await
            .unwrap(),
        ConfigWrite::Written
    );
    let after_cleared = row(r#"{"retry_limit":5}"#, Some(vec![5]));
    assert_eq!(
        s.replace_account_config(owner.id, &after_cleared, Some(&cleared))
            .await
            .unwrap(),
        ConfigWrite::Written
    );
    assert_eq!(
        s.account_config(owner.id, a.id).await.unwrap(),
        Some(after_cleared.clone())
    );

    // Another user's account, or none: not found, nothing written.
    assert_eq!(
        s.replace_account_config(stranger.id, &first, Some(&after_cleared))
            .await
            .unwrap(),
        ConfigWrite::NotFound
    );
    assert_eq!(
        s.replace_account_config(stranger.id, &first, None).await.unwrap(),
        ConfigWrite::NotFound
    );
    let ghost = AccountConfigRow {
        account_id: AccountId::new(),
        ..first.clone()
    };
    assert_eq!(
        s.replace_account_config(owner.id, &ghost, None).await.unwrap(),
        ConfigWrite::NotFound
    );
    assert_eq!(s.account_config(owner.id, a.id).await.unwrap(), Some(after_cleared));
    assert_eq!(s.account_config(owner.id, ghost.account_id).await.unwrap(), None);
}

pub async fn check_delete_account(s: &dyn Store) {
    let (owner, stranger) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let a = account(s, owner.id, &b).await;
    let kept = account(s, owner.id, &b).await;

    let config = AccountConfigRow {
        account_id: a.id,
        settings: "{}".into(),
        secrets: Some(vec![1, 2, 3]),
        updated_at: now(),
    };
    assert!(s.put_account_config(owner.id, &config).await.unwrap());
    let open = assistance_row(a.id);
    s.create_assistance(&open, &[]).await.unwrap();
    let closed = AssistanceRow {
        status: AssistanceStatus::Cancelled,
        closed_at: Some(now()),
        ..assistance_row(a.id)
    };
    s.create_assistance(&closed, &[]).await.unwrap();
    let key = ApiKeyRow {
        account_ids: Some(vec![a.id, kept.id]),
        ..key_row(owner.id, now())
    };
    s.create_api_key(&key).await.unwrap();

    // The account's history in the log, then the events announcing its end (after `history`).
    let t = now();
    s.record_events(&[
        event(owner.id, a.id, "session.started", t),
        event(owner.id, kept.id, "session.started", t),
    ])
    .await
    .unwrap();
    let history = s.last_event_seq().await.unwrap();
    s.record_events(&[event(owner.id, a.id, "assistance.cancelled", t + ms(1))])
        .await
        .unwrap();

    // Not the stranger's: refused, and everything is still there.
    assert!(!s.delete_account(stranger.id, a.id, history).await.unwrap());
    assert_eq!(s.list_events(owner.id, None, 0, 100).await.unwrap().len(), 3);
    assert_eq!(s.account_for_user(owner.id, a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(s.account_config(owner.id, a.id).await.unwrap(), Some(config));
    assert_eq!(s.pending_assistance(a.id).await.unwrap(), Some(open.clone()));

    assert!(s.delete_account(owner.id, a.id, history).await.unwrap());
    assert_eq!(s.account_for_user(owner.id, a.id).await.unwrap(), None);
    // Its history went with it; the farewell stays for the streams, and the other account's
    // events are untouched.
    let left = s.list_events(owner.id, None, 0, 100).await.unwrap();
    let left: Vec<(AccountId, &str)> = left.iter().map(|e| (e.account_id, e.kind.as_str())).collect();
    assert_eq!(left, [(kept.id, "session.started"), (a.id, "assistance.cancelled")]);
    assert!(
        !s.delete_account(owner.id, a.id, i64::MAX).await.unwrap(),
        "already deleted"
    );
    assert!(!s.delete_account(owner.id, AccountId::new(), i64::MAX).await.unwrap());
    assert_eq!(s.list_accounts(owner.id, 100, 0).await.unwrap(), vec![kept.clone()]);

    // Assistance requests went with it.
    assert_eq!(s.assistance_by_id(open.id).await.unwrap(), None);
    assert_eq!(s.assistance_by_id(closed.id).await.unwrap(), None);
    assert_eq!(s.pending_assistance(a.id).await.unwrap(), None);
    // An API key's restriction list is the key's own data: untouched.
    assert_eq!(s.api_key_by_prefix(&key.prefix).await.unwrap(), Some(key));

    // The config went too: an account re-created under the same id starts without one.
    let reborn = account_at(s, owner.id, &b, a.id, now()).await;
    assert_eq!(s.account_config(owner.id, reborn.id).await.unwrap(), None);
    assert_eq!(s.pending_assistance(reborn.id).await.unwrap(), None);
}
