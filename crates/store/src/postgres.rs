//! The PostgreSQL adapter, for deployments of several instances on one database.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;

use crate::embedded::Embedded;

const MIGRATIONS: Embedded = Embedded(&[
    (
        1,
        "foundation",
        include_str!("../migrations/postgres/0001_foundation.sql"),
    ),
    (2, "sessions", include_str!("../migrations/postgres/0002_sessions.sql")),
    (3, "events", include_str!("../migrations/postgres/0003_events.sql")),
    (
        4,
        "reconciliation",
        include_str!("../migrations/postgres/0004_reconciliation.sql"),
    ),
    (5, "review", include_str!("../migrations/postgres/0005_review.sql")),
    (
        6,
        "passthrough",
        include_str!("../migrations/postgres/0006_passthrough.sql"),
    ),
    (7, "perf", include_str!("../migrations/postgres/0007_perf.sql")),
    (8, "expiry", include_str!("../migrations/postgres/0008_expiry.sql")),
    // issue 12: hardening
    (
        9,
        "delivery_claims",
        include_str!("../migrations/postgres/0009_delivery_claims.sql"),
    ),
    // Issue 11 (scale-out).
    (10, "scaleout", include_str!("../migrations/postgres/0010_scaleout.sql")),
    // Issue 10: two-factor sign-in.
    (
        11,
        "two_factor",
        include_str!("../migrations/postgres/0011_two_factor.sql"),
    ),
    // Issue 9 (real banks): failure evidence.
    (12, "evidence", include_str!("../migrations/postgres/0012_evidence.sql")),
    (13, "devices", include_str!("../migrations/postgres/0013_devices.sql")),
    // Issue 11: master-key rotation.
    (
        14,
        "carried_keys",
        include_str!("../migrations/postgres/0014_carried_keys.sql"),
    ),
    // Issue 11 (scale-out): codes handed between instances.
    (
        15,
        "code_offers",
        include_str!("../migrations/postgres/0015_code_offers.sql"),
    ),
    // Issue 11 (scale-out): rate limits shared by every instance.
    (
        16,
        "rate_hits",
        include_str!("../migrations/postgres/0016_rate_hits.sql"),
    ),
    // Issue 11 (scale-out): the /v1 per-key budget shared by every instance.
    (
        17,
        "rate_tats",
        include_str!("../migrations/postgres/0017_rate_tats.sql"),
    ),
    // Issue 11 (scale-out): the code hand-over without a WAL flush.
    (
        18,
        "code_offers_unlogged",
        include_str!("../migrations/postgres/0018_code_offers_unlogged.sql"),
    ),
    // Issue 11 (scale-out): a rate-window hit in one round trip.
    (
        19,
        "rate_window_hit",
        include_str!("../migrations/postgres/0019_rate_window_hit.sql"),
    ),
    // Issue 8 (reconciliation performance): match triggers that skip unseen movements.
    (
        20,
        "match_triggers",
        include_str!("../migrations/postgres/0020_match_triggers.sql"),
    ),
    // Issue 8: "poll now" while a poll runs queues one more.
    (
        21,
        "poll_again",
        include_str!("../migrations/postgres/0021_poll_again.sql"),
    ),
]);

type Db = sqlx::Postgres;
const BACKEND: &str = "postgres";
/// Event-log writers take turns (see `insert_events`): a transaction-scoped advisory lock, taken
/// by the insert itself (a call in a materialized `WITH`).
const EVENT_LOCK: Option<&str> = Some("pg_advisory_xact_lock(7304411920)");
/// An account's reconciliation changes begin an ordinary transaction …
const ACCOUNT_LOCK_BEGIN: &str = "BEGIN";
/// … and lock the account's `reconcile_state` row before anything else.
const FOR_UPDATE: &str = " FOR UPDATE";
/// Reads that must agree with each other (a match pass's input) share one snapshot.
const SNAPSHOT_BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";

// The one SQL implementation, mounted again by `sqlite.rs`: that is the point.
#[allow(clippy::duplicate_mod)]
#[path = "sql/mod.rs"]
mod sql;

pub use sql::SqlStore as PgStore;

impl PgStore {
    /// Connects to the database at a `postgres://` URL (which must exist).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, sqlx::Error> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        Ok(Self { pool })
    }
}
