//! Issue 10: two-factor sign-in (TOTP): set-up, confirmation, the replay guard, recovery codes.

use reconbanker_store::*;

use crate::fixtures::*;

pub async fn check_totp_setup_and_confirm(s: &dyn Store) {
    let (u, other) = (user(s).await, user(s).await);
    let t = now();
    assert_eq!(s.user_totp(u.id).await.unwrap(), None);
    assert!(!s.confirm_totp(u.id, 5, &[], t).await.unwrap(), "nothing to confirm");

    assert!(s.begin_totp(u.id, b"sealed-1", t).await.unwrap());
    // A second set-up before confirming replaces the first secret.
    assert!(s.begin_totp(u.id, b"sealed-2", t).await.unwrap());
    let row = s.user_totp(u.id).await.unwrap().unwrap();
    assert_eq!(row.secret, b"sealed-2");
    assert_eq!((row.confirmed_at, row.last_step, row.recovery_left), (None, None, 0));
    assert_eq!(row.created_at, t);
    assert_eq!(s.user_totp(other.id).await.unwrap(), None, "per user");
    // Not confirmed: no code is accepted.
    assert!(!s.accept_totp_step(u.id, 10).await.unwrap());

    let hashes: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 32]).collect();
    assert!(s.confirm_totp(u.id, 100, &hashes, t).await.unwrap());
    assert!(!s.confirm_totp(u.id, 101, &hashes, t).await.unwrap(), "confirmed once");
    let row = s.user_totp(u.id).await.unwrap().unwrap();
    assert_eq!(row.confirmed_at, Some(t));
    assert_eq!(row.last_step, Some(100));
    assert_eq!(row.recovery_left, 10);

    // On: a new set-up does not replace the secret.
    assert!(!s.begin_totp(u.id, b"sealed-3", t).await.unwrap());
    assert_eq!(s.user_totp(u.id).await.unwrap().unwrap().secret, b"sealed-2");
}

pub async fn check_totp_steps_and_recovery(s: &dyn Store) {
    let (u, other) = (user(s).await, user(s).await);
    let t = now();
    s.begin_totp(u.id, b"sealed", t).await.unwrap();
    let hashes: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 32]).collect();
    s.confirm_totp(u.id, 100, &hashes, t).await.unwrap();

    // The confirming code's step and older ones are spent; newer ones are good once each.
    assert!(!s.accept_totp_step(u.id, 100).await.unwrap(), "the confirming step");
    assert!(!s.accept_totp_step(u.id, 99).await.unwrap(), "older");
    assert!(s.accept_totp_step(u.id, 101).await.unwrap());
    assert!(!s.accept_totp_step(u.id, 101).await.unwrap(), "replay");
    assert!(s.accept_totp_step(u.id, 103).await.unwrap());
    assert!(!s.accept_totp_step(u.id, 102).await.unwrap(), "behind the newest");
    assert!(!s.accept_totp_step(other.id, 200).await.unwrap(), "no set-up");
    assert_eq!(s.user_totp(u.id).await.unwrap().unwrap().last_step, Some(103));

    // Recovery codes: single use, per user.
    assert!(
        !s.use_recovery_code(other.id, &hashes[0], t).await.unwrap(),
        "another user's"
    );
    assert!(!s.use_recovery_code(u.id, &[9; 32], t).await.unwrap(), "unknown");
    assert!(s.use_recovery_code(u.id, &hashes[0], t).await.unwrap());
    assert!(!s.use_recovery_code(u.id, &hashes[0], t).await.unwrap(), "used");
    assert_eq!(s.user_totp(u.id).await.unwrap().unwrap().recovery_left, 2);

    // Disabling forgets everything; a new set-up starts with no codes.
    assert!(!s.delete_totp(other.id).await.unwrap());
    assert!(s.delete_totp(u.id).await.unwrap());
    assert_eq!(s.user_totp(u.id).await.unwrap(), None);
    assert!(!s.use_recovery_code(u.id, &hashes[1], t).await.unwrap(), "gone with it");
    assert!(s.begin_totp(u.id, b"again", t).await.unwrap());
    assert_eq!(s.user_totp(u.id).await.unwrap().unwrap().recovery_left, 0);
    // Confirming replaces any earlier codes.
    s.confirm_totp(u.id, 5, &[vec![7; 32]], t).await.unwrap();
    assert!(!s.use_recovery_code(u.id, &hashes[2], t).await.unwrap());
    assert!(s.use_recovery_code(u.id, &[7; 32], t).await.unwrap());
}
