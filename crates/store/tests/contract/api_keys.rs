//! API keys.

use chrono::Duration;
use reconbanker_store::*;
use uuid::Uuid;

use crate::fixtures::*;

pub async fn check_api_keys(s: &dyn Store) {
    let (owner, stranger) = (user(s).await, user(s).await);
    let b = bank(s).await;
    let (a1, a2) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let t = now();

    let k1 = key_row(owner.id, t);
    let k2 = ApiKeyRow {
        account_ids: Some(vec![a1.id, a2.id]),
        expires_at: Some(t + Duration::days(30)),
        scopes: vec![],
        ..key_row(owner.id, t + ms(10))
    };
    let k3 = ApiKeyRow {
        account_ids: Some(vec![]),
        last_used_at: Some(t + ms(25)),
        revoked_at: Some(t + ms(30)),
        ..key_row(owner.id, t + ms(20))
    };
    // Same creation time as k3 with a smaller id: sorts after it (id descending).
    let mut k4 = key_row(owner.id, t + ms(20));
    k4.id = ApiKeyId(Uuid::from_u128(k3.id.0.as_u128() - 1));
    let theirs = key_row(stranger.id, t + ms(5));
    for k in [&k3, &k1, &k4, &theirs, &k2] {
        s.create_api_key(k).await.unwrap();
    }

    // Round trips, including `account_ids`: None (all accounts) vs Some(list), even empty.
    for k in [&k1, &k2, &k3, &k4, &theirs] {
        assert_eq!(s.api_key_by_prefix(&k.prefix).await.unwrap().as_ref(), Some(k));
    }
    assert_eq!(s.api_key_by_prefix(&uniq("rbk")).await.unwrap(), None);
    // Every prefix, revoked included (the database is shared by other checks: a superset).
    let prefixes = s.api_key_prefixes().await.unwrap();
    for k in [&k1, &k2, &k3, &k4, &theirs] {
        assert!(prefixes.contains(&k.prefix), "{}", k.prefix);
    }

    // Newest first, tenant-scoped, paged.
    let all = s.list_api_keys(owner.id, 100, 0).await.unwrap();
    assert_eq!(all, vec![k3.clone(), k4.clone(), k2.clone(), k1.clone()]);
    assert_eq!(
        s.list_api_keys(owner.id, 2, 0).await.unwrap(),
        vec![k3.clone(), k4.clone()]
    );
    assert_eq!(
        s.list_api_keys(owner.id, 2, 2).await.unwrap(),
        vec![k2.clone(), k1.clone()]
    );
    assert_eq!(s.list_api_keys(owner.id, 1, 3).await.unwrap(), vec![k1.clone()]);
    assert!(s.list_api_keys(owner.id, 10, 4).await.unwrap().is_empty());
    assert_eq!(s.list_api_keys(stranger.id, 100, 0).await.unwrap(), vec![theirs]);
    assert!(s.list_api_keys(UserId::new(), 100, 0).await.unwrap().is_empty());

    // The prefix is unique.
    let dup = ApiKeyRow {
        prefix: k1.prefix.clone(),
        ..key_row(owner.id, now())
    };
    let r = s.create_api_key(&dup).await;
    assert!(
        conflict(r, Constraint::ApiKeysPrefix),
        "duplicate prefix must be a Conflict"
    );
    assert_eq!(s.api_key_by_prefix(&k1.prefix).await.unwrap(), Some(k1));
    assert_eq!(s.list_api_keys(owner.id, 100, 0).await.unwrap().len(), 4);
}

pub async fn check_revoke_api_key(s: &dyn Store) {
    let (owner, stranger) = (user(s).await, user(s).await);
    let k = key_row(owner.id, now());
    s.create_api_key(&k).await.unwrap();
    let other = key_row(owner.id, now());
    s.create_api_key(&other).await.unwrap();
    let t = now() + ms(5);

    // A stranger cannot revoke it.
    assert_eq!(s.revoke_api_key(stranger.id, k.id, t).await.unwrap(), None);
    assert_eq!(s.api_key_by_prefix(&k.prefix).await.unwrap(), Some(k.clone()));

    let revoked = ApiKeyRow {
        revoked_at: Some(t),
        ..k.clone()
    };
    assert_eq!(
        s.revoke_api_key(owner.id, k.id, t).await.unwrap(),
        Some(revoked.clone())
    );
    // Already revoked: None, and the first revocation time stays.
    assert_eq!(s.revoke_api_key(owner.id, k.id, t + ms(1000)).await.unwrap(), None);
    assert_eq!(s.api_key_by_prefix(&k.prefix).await.unwrap(), Some(revoked));
    assert_eq!(s.revoke_api_key(owner.id, ApiKeyId::new(), t).await.unwrap(), None);
    // The other key is live still.
    assert_eq!(s.api_key_by_prefix(&other.prefix).await.unwrap(), Some(other));
}

pub async fn check_record_api_key_use(s: &dyn Store) {
    let owner = user(s).await;
    let (k1, k2) = (key_row(owner.id, now()), key_row(owner.id, now()));
    s.create_api_key(&k1).await.unwrap();
    s.create_api_key(&k2).await.unwrap();
    let t = now() + Duration::seconds(10);
    let last_used = |prefix: String| async move { s.api_key_by_prefix(&prefix).await.unwrap().unwrap().last_used_at };

    s.record_api_key_use(&[]).await.unwrap();
    assert_eq!(last_used(k1.prefix.clone()).await, None);

    s.record_api_key_use(&[(k1.id, t)]).await.unwrap();
    assert_eq!(last_used(k1.prefix.clone()).await, Some(t));
    assert_eq!(last_used(k2.prefix.clone()).await, None);

    // Never backwards.
    s.record_api_key_use(&[(k1.id, t - Duration::seconds(5))])
        .await
        .unwrap();
    assert_eq!(last_used(k1.prefix.clone()).await, Some(t));

    // A batch: several keys, the same key twice (the latest wins whatever the order), unknown ids
    // ignored.
    s.record_api_key_use(&[
        (k1.id, t + ms(300)),
        (k2.id, t + ms(100)),
        (ApiKeyId::new(), t),
        (k1.id, t + ms(200)),
    ])
    .await
    .unwrap();
    assert_eq!(last_used(k1.prefix.clone()).await, Some(t + ms(300)));
    assert_eq!(last_used(k2.prefix.clone()).await, Some(t + ms(100)));

    // Nothing else on the row changes.
    let got = s.api_key_by_prefix(&k1.prefix).await.unwrap().unwrap();
    assert_eq!(
        got,
        ApiKeyRow {
            last_used_at: Some(t + ms(300)),
            ..k1
        }
    );
}
