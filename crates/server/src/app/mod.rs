//! Use cases that span services, one home each, above the services and below `http`.

pub(crate) mod accounts;

use reconbanker_store::StoreError;

/// Why a use case failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored value could not be read back (a config document that does not decode).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// The row vanished between the ownership check and the write (deleted concurrently).
    #[error("not found")]
    NotFound,
}
