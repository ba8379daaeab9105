//! The error type of the storage seam.

/// What a [`Store`](crate::Store) operation can fail with.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database file or server could not be opened or reached.
    #[error("cannot open the job store at {location}: {reason}")]
    Open {
        /// The path or URL that was given.
        location: String,
        /// Why it failed, and what to do about it.
        reason: String,
    },
    /// The database is busy or locked by another process for longer than the busy timeout.
    #[error("the job store is locked by another process: {0}; retry, or raise the busy timeout")]
    Locked(String),
    /// The database file is not a jobchain database, is corrupt or has a newer schema.
    #[error("the job store is not usable: {0}")]
    Corrupt(String),
    /// The connection to the database was lost; the operation may be retried.
    #[error("the connection to the job store was lost: {0}; the operation can be retried")]
    Connection(String),
    /// A transient conflict with a concurrent transaction (a deadlock or serialization
    /// failure); nothing was written and the operation can be retried.
    #[error("a concurrent transaction conflicted: {0}; nothing was written, the operation can be retried")]
    Transient(String),
    /// An input was rejected before anything was written.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The named job or workflow does not exist.
    #[error("{0} was not found")]
    NotFound(String),
    /// The operation is not allowed in the record's current state.
    #[error("{0}")]
    Conflict(String),
    /// The store has been closed and takes no more operations.
    #[error("the job store is closed")]
    Closed,
    /// Any other database error.
    #[error("database error: {0}")]
    Database(String),
}

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;
