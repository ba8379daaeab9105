//! The error type of the storage seam.

use std::sync::Arc;

/// The driver error behind a [`StoreError`], kept so that `source()` reaches it.
/// Shared, so that a `StoreError` stays `Clone`.
pub type Source = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// What a [`Store`](crate::Store) operation can fail with.
///
/// Variants that come from the database driver keep the driver's error as their
/// [`source`](std::error::Error::source); build them with the lower-case constructors
/// ([`StoreError::database`], …) and attach the cause with [`StoreError::caused_by`].
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database file or server could not be opened or reached.
    #[error("cannot open the job store at {location}: {reason}")]
    Open {
        /// The path or URL that was given (without a password).
        location: String,
        /// Why it failed, and what to do about it.
        reason: String,
        /// The driver's error.
        #[source]
        source: Option<Source>,
    },
    /// The database is busy or locked by another process for longer than the busy timeout.
    #[error(
        "the job store is locked by another process: {message}; retry, or raise the busy timeout"
    )]
    Locked {
        /// What was locked.
        message: String,
        /// The driver's error.
        #[source]
        source: Option<Source>,
    },
    /// The database file is not a jobchain database, is corrupt or has a newer schema.
    #[error("the job store is not usable: {message}")]
    Corrupt {
        /// What is wrong with it.
        message: String,
        /// The driver's or decoder's error.
        #[source]
        source: Option<Source>,
    },
    /// The connection to the database was lost; the operation may be retried.
    #[error("the connection to the job store was lost: {message}; the operation can be retried")]
    Connection {
        /// What failed.
        message: String,
        /// The driver's error.
        #[source]
        source: Option<Source>,
    },
    /// A transient conflict with a concurrent transaction (a deadlock or serialization
    /// failure); nothing was written and the operation can be retried.
    #[error("a concurrent transaction conflicted: {message}; nothing was written, the operation can be retried")]
    Transient {
        /// What conflicted.
        message: String,
        /// The driver's error.
        #[source]
        source: Option<Source>,
    },
    /// The disk that holds the job store is full; nothing of the failed operation was
    /// written, and what was stored before is intact.
    #[error("the disk of the job store is full: {message}; free space (nothing of this operation was written)")]
    DiskFull {
        /// Which file or server.
        message: String,
        /// The driver's error.
        #[source]
        source: Option<Source>,
    },
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
    #[error("database error: {message}")]
    Database {
        /// What failed.
        message: String,
        /// The driver's error.
        #[source]
        source: Option<Source>,
    },
}

impl StoreError {
    /// [`StoreError::Locked`] without a cause yet.
    pub fn locked(message: impl Into<String>) -> Self {
        StoreError::Locked {
            message: message.into(),
            source: None,
        }
    }

    /// [`StoreError::Corrupt`] without a cause yet.
    pub fn corrupt(message: impl Into<String>) -> Self {
        StoreError::Corrupt {
            message: message.into(),
            source: None,
        }
    }

    /// [`StoreError::Connection`] without a cause yet.
    pub fn connection(message: impl Into<String>) -> Self {
        StoreError::Connection {
            message: message.into(),
            source: None,
        }
    }

    /// [`StoreError::Transient`] without a cause yet.
    pub fn transient(message: impl Into<String>) -> Self {
        StoreError::Transient {
            message: message.into(),
            source: None,
        }
    }

    /// [`StoreError::Database`] without a cause yet.
    pub fn database(message: impl Into<String>) -> Self {
        StoreError::Database {
            message: message.into(),
            source: None,
        }
    }

    /// [`StoreError::DiskFull`] without a cause yet.
    pub fn disk_full(message: impl Into<String>) -> Self {
        StoreError::DiskFull {
            message: message.into(),
            source: None,
        }
    }

    /// [`StoreError::Open`] without a cause yet.
    pub fn open(location: impl Into<String>, reason: impl Into<String>) -> Self {
        StoreError::Open {
            location: location.into(),
            reason: reason.into(),
            source: None,
        }
    }

    /// Attaches the error that caused this one (the driver's), kept as its `source()`.
    /// Variants that carry no source are returned unchanged.
    pub fn caused_by(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        match &mut self {
            StoreError::Open { source, .. }
            | StoreError::Locked { source, .. }
            | StoreError::Corrupt { source, .. }
            | StoreError::Connection { source, .. }
            | StoreError::Transient { source, .. }
            | StoreError::DiskFull { source, .. }
            | StoreError::Database { source, .. } => *source = Some(Arc::new(cause)),
            _ => {}
        }
        self
    }

    /// Whether retrying the same operation may succeed (a lost connection, a lock held
    /// by another process, a conflicting transaction).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Connection { .. }
                | StoreError::Transient { .. }
                | StoreError::Locked { .. }
        )
    }
}

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn the_cause_is_kept_as_the_source() {
        let io = std::io::Error::other("disk on fire");
        let err = StoreError::database("insert failed").caused_by(io);
        assert_eq!(err.to_string(), "database error: insert failed");
        assert_eq!(
            err.source().map(|s| s.to_string()).as_deref(),
            Some("disk on fire")
        );
        let plain = StoreError::NotFound("job 7".into()).caused_by(std::io::Error::other("x"));
        assert!(plain.source().is_none());
    }
}
