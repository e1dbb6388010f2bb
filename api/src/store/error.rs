//! What a storage call can fail with.

/// What can go wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed or refused.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database could not be reached or opened at start-up: where, and why, as a sentence.
    #[error("cannot connect to {target}: {cause}")]
    Unreachable {
        /// What was tried: `PostgreSQL at HOST:PORT (database NAME)` or `the SQLite database FILE`.
        target: String,
        /// Why: connection refused, no such database, authentication failed, no answer…
        cause: String,
    },
    /// A stored value could not be read back (a bug or a hand-edited database).
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
}

/// The result of a storage call.
pub type StoreResult<T> = Result<T, StoreError>;

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}
