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
    /// A wait ended before what it waited for happened; nothing was changed.
    #[error("{what} did not finish within {waited:?}; it goes on, wait again or inspect it")]
    Timeout {
        /// What was waited for (`job 7`, `workflow …`).
        what: String,
        /// How long.
        waited: std::time::Duration,
    },
    /// A workflow has no result to give: it has not finished, it failed or was
    /// cancelled, or its result step did not complete or is not clear.
    #[error("workflow {workflow} has no result: {reason}")]
    NoResult {
        /// The workflow.
        workflow: jobchain_core::WorkflowId,
        /// Why, and what to do.
        reason: String,
    },
    /// An I/O error of the process (a signal handler could not be installed).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Result of a `jobchain` operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;
