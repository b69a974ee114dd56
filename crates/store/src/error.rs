//! Store errors. A unique-constraint violation is its own variant so callers can answer 409;
//! everything else is an internal error (never "not found").

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint was violated; the payload names the constraint when the backend says.
    #[error("conflict on {0}")]
    Conflict(String),
    /// A stored value could not be decoded (corrupt JSON, unknown enum value).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Turns a unique violation into `Conflict` (named by constraint on PostgreSQL, by the
/// message's `table.column` on SQLite); every other error stays a database error.
pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.kind() == sqlx::error::ErrorKind::UniqueViolation {
            let name = db
                .constraint()
                .map(str::to_owned)
                .unwrap_or_else(|| db.message().to_owned());
            return StoreError::Conflict(name);
        }
    }
    StoreError::Database(e)
}
