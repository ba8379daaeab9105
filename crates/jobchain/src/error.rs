//! The error type of the `jobchain` crate.

use jobchain_core::workflow::graph::GraphError;
use jobchain_core::StoreError;

/// What a client or worker operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed or refused the operation.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A payload or output could not be turned into JSON.
    #[error("the payload of job kind `{kind}` cannot be serialized to JSON: {reason}")]
    Payload {
        /// The job kind.
        kind: String,
        /// What serde said.
        reason: String,
    },
    /// A declared workflow is invalid; nothing was written.
    #[error("invalid workflow: {0}")]
    Workflow(#[from] GraphError),
    /// A database location could not be understood.
    #[error("unsupported database `{0}`: give a SQLite file path or a postgres:// URL")]
    UnsupportedDatabase(String),
    /// A worker was configured without handlers or with a bad setting.
    #[error("invalid worker configuration: {0}")]
    Config(String),
}

/// Result of a `jobchain` operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;
