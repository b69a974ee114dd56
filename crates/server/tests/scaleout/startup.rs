//! Starting several instances: migrations run once under PostgreSQL's advisory lock; a second
//! instance on one SQLite database is refused with a message that says why.

use reqwest::{Method, StatusCode};
use sqlx::Row;

use crate::harness::{self, Database, Started};

#[tokio::test]
async fn three_instances_starting_together_migrate_once_and_all_serve() {
    let Some(server) = harness::postgres_server() else {
        return;
    };
    let db = Database::create(&server).await;
    let instances = harness::start_many(&db.url, 3, &[]).await;
    for i in &instances {
        let health = i.call(Method::GET, "/health", &[], None).await;
        assert_eq!(health.status, StatusCode::OK, "{}", i.log());
        let ready = i.call(Method::GET, "/ready", &[], None).await;
        assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    }
    // A user registered through one instance logs in through another: one database.
    let token = instances[0].user("first@example.com").await;
    let me = instances[2]
        .dash(Method::GET, "/me", &token, None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(me["email"], "first@example.com");

    let mut conn = db.connect().await;
    let rows = sqlx::query("SELECT version, count(*) AS n, bool_and(success) AS ok FROM _sqlx_migrations GROUP BY version ORDER BY version")
        .fetch_all(&mut conn)
        .await
        .expect("migrations table");
    assert!(!rows.is_empty());
    for (i, row) in rows.iter().enumerate() {
        let version: i64 = row.get("version");
        assert_eq!(version, i as i64 + 1, "versions are 1..n with none missing");
        assert_eq!(row.get::<i64, _>("n"), 1, "version {version} applied once");
        assert!(row.get::<bool, _>("ok"), "version {version} succeeded");
    }
}

#[tokio::test]
async fn a_second_instance_on_one_sqlite_database_refuses_to_start_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}", dir.path().join("shared.db").display());
    let first = harness::spawn(harness::command(&db, dir.path(), &[])).await.ready();

    // Another data directory, the same database file.
    let other = tempfile::tempdir().expect("tempdir");
    match harness::spawn(harness::command(&db, other.path(), &[])).await {
        Started::Ready(_) => panic!("a second instance served the same SQLite database"),
        Started::Exited { status, log } => {
            assert!(!status.success(), "{log}");
            assert!(
                log.contains("another reconbanker instance is already serving the SQLite database"),
                "{log}"
            );
            assert!(log.contains("shared.db.instance.lock"), "names the lock: {log}");
            assert!(log.contains("PostgreSQL"), "points to the way to run several: {log}");
        }
    }
    // The first one is unaffected.
    let health = first.call(Method::GET, "/health", &[], None).await;
    assert_eq!(health.status, StatusCode::OK);

    // The lock dies with its process, however it ends: after a `kill -9` a new instance starts.
    drop(first);
    let again = harness::spawn(harness::command(&db, other.path(), &[])).await.ready();
    let health = again.call(Method::GET, "/health", &[], None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert!(again.stop().success(), "graceful stop");
}
