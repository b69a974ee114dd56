//! Store errors. A unique-constraint violation is its own variant, naming the constraint the same
//! way on both backends, so callers can answer 409; everything else is an internal error (never
//! "not found").

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint was violated.
    #[error("conflict on {0}")]
    Conflict(Constraint),
    /// A stored value could not be decoded (corrupt JSON, unknown enum value, timestamp out of
    /// range).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Work a store call waited for was lost before it finished (the thread doing it panicked
    /// or was stopped); nothing was written.
    #[error("interrupted: {0}")]
    Interrupted(&'static str),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Whether this is a violation of `constraint`.
    pub fn is_conflict_on(&self, constraint: Constraint) -> bool {
        matches!(self, Self::Conflict(c) if *c == constraint)
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A unique constraint of the schema, named the same on both backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Constraint {
    /// `users.email`.
    UsersEmail,
    /// `banks.code`.
    BanksCode,
    /// `api_keys.prefix`.
    ApiKeysPrefix,
    /// At most one pending assistance request per account (a partial unique index).
    AssistancePendingPerAccount,
    /// `movements (account_id, external_id)`.
    MovementsAccountExternal,
    /// `events.id`.
    EventsId,
    /// At most one live (or matched) reconciliation request per `(account, external_id)`.
    ConciliationLive,
    /// `conciliation_requests (account_id, external_id, generation)`.
    ConciliationGeneration,
    /// A request is matched at most once.
    MatchRequest,
    /// A movement is matched at most once.
    MatchMovement,
    /// `conciliation_attempts (request_id, attempt_number)`.
    AttemptNumber,
    /// A rejected pair is recorded once.
    Rejection,
    /// Any other, by its PostgreSQL name: a primary key is `<table>_pkey` on both backends;
    /// an unrecognised violation carries what the backend said.
    Other(String),
}

/// `(PostgreSQL constraint name, SQLite's "table.column, table.column" list, variant)`.
const NAMED: &[(&str, &str, Constraint)] = &[
    ("users_email_key", "users.email", Constraint::UsersEmail),
    ("banks_code_key", "banks.code", Constraint::BanksCode),
    ("api_keys_prefix_key", "api_keys.prefix", Constraint::ApiKeysPrefix),
    (
        "assistance_one_pending_per_account",
        "assistance_requests.account_id",
        Constraint::AssistancePendingPerAccount,
    ),
    (
        "movements_account_external_key",
        "movements.account_id, movements.external_id",
        Constraint::MovementsAccountExternal,
    ),
    ("events_id_key", "events.id", Constraint::EventsId),
    (
        "conciliation_requests_live_key",
        "conciliation_requests.account_id, conciliation_requests.external_id",
        Constraint::ConciliationLive,
    ),
    (
        "conciliation_requests_generation_key",
        "conciliation_requests.account_id, conciliation_requests.external_id, conciliation_requests.generation",
        Constraint::ConciliationGeneration,
    ),
    (
        "conciliation_matches_request_key",
        "conciliation_matches.request_id",
        Constraint::MatchRequest,
    ),
    (
        "conciliation_matches_movement_key",
        "conciliation_matches.movement_id",
        Constraint::MatchMovement,
    ),
    (
        "conciliation_attempts_number_key",
        "conciliation_attempts.request_id, conciliation_attempts.attempt_number",
        Constraint::AttemptNumber,
    ),
    (
        "conciliation_rejections_pkey",
        "conciliation_rejections.request_id, conciliation_rejections.movement_id",
        Constraint::Rejection,
    ),
];

/// Every table's primary key column, so SQLite's `table.column` maps to PostgreSQL's `table_pkey`.
const PRIMARY_KEYS: &[(&str, &str)] = &[
    ("users", "id"),
    ("revoked_tokens", "jti"),
    ("banks", "id"),
    ("accounts", "id"),
    ("account_configs", "account_id"),
    ("api_keys", "id"),
    ("assistance_requests", "id"),
    ("movements", "id"),
    ("session_runs", "id"),
    ("session_leases", "account_id"),
    ("events", "seq"),
    ("deliveries", "id"),
    ("conciliation_requests", "id"),
    ("conciliation_matches", "id"),
    ("conciliation_attempts", "id"),
    ("conciliation_polls", "id"),
    ("reconcile_state", "account_id"),
    // Issue 11: master-key rotation.
    ("carried_keys", "label"),
];

impl Constraint {
    /// From a PostgreSQL constraint (or unique index) name.
    pub(crate) fn from_pg_name(name: &str) -> Self {
        NAMED
            .iter()
            .find(|(pg, _, _)| *pg == name)
            .map_or_else(|| Self::Other(name.to_owned()), |(_, _, c)| c.clone())
    }

    /// From SQLite's message, `UNIQUE constraint failed: table.column[, table.column…]`.
    pub(crate) fn from_sqlite_message(message: &str) -> Self {
        let Some(columns) = message.strip_prefix("UNIQUE constraint failed: ") else {
            return Self::Other(message.to_owned());
        };
        if let Some((_, _, c)) = NAMED.iter().find(|(_, cols, _)| *cols == columns) {
            return c.clone();
        }
        match columns.split_once('.') {
            Some((table, column)) if PRIMARY_KEYS.contains(&(table, column)) => Self::Other(format!("{table}_pkey")),
            _ => Self::Other(message.to_owned()),
        }
    }

    /// The PostgreSQL name (for logs).
    pub fn name(&self) -> &str {
        match self {
            Self::Other(name) => name,
            named => NAMED
                .iter()
                .find(|(_, _, c)| c == named)
                .map_or("unknown", |(pg, _, _)| pg),
        }
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Turns a unique violation into `Conflict` (PostgreSQL names the constraint; SQLite's message
/// names the columns); every other error stays a database error.
pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.kind() == sqlx::error::ErrorKind::UniqueViolation {
            return StoreError::Conflict(match db.constraint() {
                Some(name) => Constraint::from_pg_name(name),
                None => Constraint::from_sqlite_message(db.message()),
            });
        }
    }
    StoreError::Database(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_name_the_same_constraint() {
        for (pg, cols, c) in NAMED {
            assert_eq!(&Constraint::from_pg_name(pg), c);
            assert_eq!(
                &Constraint::from_sqlite_message(&format!("UNIQUE constraint failed: {cols}")),
                c
            );
            assert_eq!(c.name(), *pg);
        }
        assert_eq!(
            Constraint::from_sqlite_message("UNIQUE constraint failed: users.id"),
            Constraint::from_pg_name("users_pkey")
        );
        assert_eq!(
            Constraint::from_sqlite_message("something else"),
            Constraint::Other("something else".into())
        );
        let e = StoreError::Conflict(Constraint::BanksCode);
        assert!(e.is_conflict_on(Constraint::BanksCode));
        assert!(!e.is_conflict_on(Constraint::UsersEmail));
        assert_eq!(e.to_string(), "conflict on banks_code_key");
    }
}
