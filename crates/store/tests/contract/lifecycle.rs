//! The store as a whole: backend name, migrations, ping, close.

use reconbanker_store::*;

use crate::fixtures::*;

pub async fn check_backend_migrate_ping(s: &dyn Store) {
    // The driver checks the exact name against the backend it opened, before every check.
    assert!(matches!(s.backend(), "sqlite" | "postgres"), "{}", s.backend());
    s.ping().await.unwrap();
    // Migrating an up-to-date database changes nothing and keeps the data.
    let u = user(s).await;
    s.migrate().await.unwrap();
    s.migrate().await.unwrap();
    assert_eq!(s.user_by_id(u.id).await.unwrap(), Some(u));
    s.ping().await.unwrap();
}

pub async fn check_close(s: &dyn Store) {
    s.ping().await.unwrap();
    s.close().await;
    assert!(s.ping().await.is_err(), "a closed store must refuse work");
    assert!(s.user_by_id(UserId::new()).await.is_err());
}
