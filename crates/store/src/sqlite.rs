//! The SQLite adapter: the embedded default. WAL journal, foreign keys on, a busy timeout so
//! concurrent writers wait instead of failing.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::embedded::Embedded;

const MIGRATIONS: Embedded = Embedded(&[
    (
        1,
        "foundation",
        include_str!("../migrations/sqlite/0001_foundation.sql"),
    ),
    (2, "sessions", include_str!("../migrations/sqlite/0002_sessions.sql")),
    (3, "events", include_str!("../migrations/sqlite/0003_events.sql")),
    (
        4,
        "reconciliation",
        include_str!("../migrations/sqlite/0004_reconciliation.sql"),
    ),
    (5, "review", include_str!("../migrations/sqlite/0005_review.sql")),
    (
        6,
        "passthrough",
        include_str!("../migrations/sqlite/0006_passthrough.sql"),
    ),
    (7, "perf", include_str!("../migrations/sqlite/0007_perf.sql")),
    (8, "expiry", include_str!("../migrations/sqlite/0008_expiry.sql")),
    // issue 12: hardening
    (
        9,
        "delivery_claims",
        include_str!("../migrations/sqlite/0009_delivery_claims.sql"),
    ),
    // Issue 11 (scale-out).
    (10, "scaleout", include_str!("../migrations/sqlite/0010_scaleout.sql")),
    // Issue 10: two-factor sign-in.
    (
        11,
        "two_factor",
        include_str!("../migrations/sqlite/0011_two_factor.sql"),
    ),
    // Issue 9 (real banks): failure evidence.
    (12, "evidence", include_str!("../migrations/sqlite/0012_evidence.sql")),
    (13, "devices", include_str!("../migrations/sqlite/0013_devices.sql")),
    // Issue 11: master-key rotation.
    (
        14,
        "carried_keys",
        include_str!("../migrations/sqlite/0014_carried_keys.sql"),
    ),
    // Issue 11 (scale-out): codes handed between instances.
    (
        15,
        "code_offers",
        include_str!("../migrations/sqlite/0015_code_offers.sql"),
    ),
    // Issue 11 (scale-out): rate limits shared by every instance.
    (16, "rate_hits", include_str!("../migrations/sqlite/0016_rate_hits.sql")),
    // Issue 11 (scale-out): the /v1 per-key budget shared by every instance.
    (17, "rate_tats", include_str!("../migrations/sqlite/0017_rate_tats.sql")),
    // Issue 11 (scale-out): the code hand-over without a WAL flush.
    (
        18,
        "code_offers_unlogged",
        include_str!("../migrations/sqlite/0018_code_offers_unlogged.sql"),
    ),
    // Issue 11 (scale-out): a rate-window hit in one round trip.
    (
        19,
        "rate_window_hit",
        include_str!("../migrations/sqlite/0019_rate_window_hit.sql"),
    ),
    // Issue 8 (reconciliation performance): match triggers that skip unseen movements.
    (
        20,
        "match_triggers",
        include_str!("../migrations/sqlite/0020_match_triggers.sql"),
    ),
    // Issue 8: "poll now" while a poll runs queues one more.
    (
        21,
        "poll_again",
        include_str!("../migrations/sqlite/0021_poll_again.sql"),
    ),
]);

/// How long a connection waits on a locked database before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

type Db = sqlx::Sqlite;
const BACKEND: &str = "sqlite";
/// SQLite runs one writer at a time: event-log writers need no extra lock.
const EVENT_LOCK: Option<&str> = None;
/// An account's reconciliation changes take the database's write lock up front (a deferred
/// transaction that reads first could not upgrade its lock when another writer went ahead).
const ACCOUNT_LOCK_BEGIN: &str = "BEGIN IMMEDIATE";
/// The write lock taken at `BEGIN` already serialises the account's state row.
const FOR_UPDATE: &str = "";
/// A read transaction sees one snapshot of the database (WAL) from its first read on.
const SNAPSHOT_BEGIN: &str = "BEGIN";

// The one SQL implementation, mounted again by `postgres.rs`: that is the point.
#[allow(clippy::duplicate_mod)]
#[path = "sql/mod.rs"]
mod sql;

pub use sql::SqlStore as SqliteStore;

impl SqliteStore {
    /// Opens (creating if missing) the database at a `sqlite:` URL.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            // A busy handler that retries in steps of 50 µs, not SQLite's 1, 2, 5, 10… ms (see
            // the `reconbanker-sqlite-busy` crate): writers here hold the lock for far less.
            .after_connect(|conn, _| {
                Box::pin(async move {
                    let mut handle = conn.lock_handle().await?;
                    let rc = reconbanker_sqlite_busy::install(&mut handle, BUSY_TIMEOUT);
                    if rc != 0 {
                        return Err(sqlx::Error::Configuration(
                            format!("sqlite3_busy_handler returned {rc}").into(),
                        ));
                    }
                    drop(handle);
                    // No checkpoint on commit: by default the commit that takes the log past
                    // 1,000 pages copies it into the database itself (a quarter of a second
                    // after a 50,000-order poll; tens of milliseconds on some unlucky request).
                    // `Store::checkpoint`, called by the server's background loop, does it instead.
                    sqlx::query("PRAGMA wal_autocheckpoint = 0").execute(&mut *conn).await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }
}
