//! Users and dashboard tokens.

use chrono::Duration;
use reconbanker_store::*;

use crate::fixtures::*;

pub async fn check_users(s: &dyn Store) {
    let u = user(s).await;
    assert_eq!(s.user_by_email(&u.email).await.unwrap(), Some(u.clone()));
    assert_eq!(s.user_by_id(u.id).await.unwrap(), Some(u.clone()));

    // Optional fields round-trip as NULL; flags and modes as given.
    let bare = UserRow {
        name: None,
        is_admin: true,
        operation_mode: Some("manual".into()),
        ..user_row()
    };
    s.create_user(&bare).await.unwrap();
    assert_eq!(s.user_by_id(bare.id).await.unwrap(), Some(bare.clone()));
    assert_eq!(s.user_by_email(&bare.email).await.unwrap(), Some(bare));

    // The email is unique.
    let dup = UserRow {
        email: u.email.clone(),
        ..user_row()
    };
    let r = s.create_user(&dup).await;
    assert!(
        conflict(r, Constraint::UsersEmail),
        "duplicate email must be a Conflict"
    );
    assert_eq!(s.user_by_id(dup.id).await.unwrap(), None);
    assert_eq!(s.user_by_email(&u.email).await.unwrap(), Some(u));

    assert_eq!(
        s.user_by_email(&format!("{}@example.test", uniq("nobody")))
            .await
            .unwrap(),
        None
    );
    assert_eq!(s.user_by_id(UserId::new()).await.unwrap(), None);
}

pub async fn check_set_operation_mode(s: &dyn Store) {
    let u = user(s).await;
    let other = user(s).await;
    assert!(s.set_operation_mode(u.id, "automatic").await.unwrap());
    let got = s.user_by_id(u.id).await.unwrap().unwrap();
    assert_eq!(got.operation_mode.as_deref(), Some("automatic"));
    assert_eq!(
        got,
        UserRow {
            operation_mode: Some("automatic".into()),
            ..u.clone()
        }
    );
    assert!(s.set_operation_mode(u.id, "manual").await.unwrap());
    assert_eq!(
        s.user_by_id(u.id).await.unwrap().unwrap().operation_mode.as_deref(),
        Some("manual")
    );
    // Nobody else is touched; an unknown user is `false`.
    assert_eq!(s.user_by_id(other.id).await.unwrap(), Some(other));
    assert!(!s.set_operation_mode(UserId::new(), "manual").await.unwrap());
}

pub async fn check_grant_admin(s: &dyn Store) {
    let u = user(s).await;
    let other = user(s).await;
    assert!(s.grant_admin(&u.email).await.unwrap());
    assert_eq!(
        s.user_by_id(u.id).await.unwrap(),
        Some(UserRow {
            is_admin: true,
            ..u.clone()
        })
    );
    // Granting again still finds the user.
    assert!(s.grant_admin(&u.email).await.unwrap());
    assert!(s.user_by_id(u.id).await.unwrap().unwrap().is_admin);
    assert_eq!(s.user_by_id(other.id).await.unwrap(), Some(other));
    assert!(!s
        .grant_admin(&format!("{}@example.test", uniq("nobody")))
        .await
        .unwrap());
}

pub async fn check_session_user_and_revoke_token(s: &dyn Store) {
    let u = user(s).await;
    let (jti, other_jti) = (TokenId::new(), TokenId::new());
    assert_eq!(s.session_user(u.id, jti).await.unwrap(), Some(u.clone()));

    let expires = now() + Duration::hours(1);
    s.revoke_token(jti, u.id, expires).await.unwrap();
    // Idempotent.
    s.revoke_token(jti, u.id, expires).await.unwrap();
    assert_eq!(s.session_user(u.id, jti).await.unwrap(), None);
    assert_eq!(s.session_user(u.id, other_jti).await.unwrap(), Some(u.clone()));
    // An unknown user has no session, revoked or not.
    assert_eq!(s.session_user(UserId::new(), other_jti).await.unwrap(), None);
    // The user row itself is untouched.
    assert_eq!(s.user_by_id(u.id).await.unwrap(), Some(u));
}

pub async fn check_purge_revoked_tokens(s: &dyn Store) {
    let t = now();
    // A fresh database has nothing to forget.
    assert_eq!(s.purge_revoked_tokens(t).await.unwrap(), 0);

    let u = user(s).await;
    let (expired, live) = (TokenId::new(), TokenId::new());
    s.revoke_token(expired, u.id, t - Duration::seconds(1)).await.unwrap();
    s.revoke_token(live, u.id, t + Duration::hours(1)).await.unwrap();
    assert_eq!(s.session_user(u.id, expired).await.unwrap(), None);

    assert_eq!(s.purge_revoked_tokens(t).await.unwrap(), 1);
    // The expired revocation is gone (the token itself would be rejected as expired anyway);
    // the live one still holds.
    assert_eq!(s.session_user(u.id, expired).await.unwrap(), Some(u.clone()));
    assert_eq!(s.session_user(u.id, live).await.unwrap(), None);
    assert_eq!(s.purge_revoked_tokens(t).await.unwrap(), 0);
}
