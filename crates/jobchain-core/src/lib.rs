//! Types, the storage seam and the pure state logic of jobchain.
//!
//! This crate does no I/O. It defines what a job is ([`job`]), every operation the
//! engine needs from a database ([`store::Store`]), the retry back-off ([`retry`]) and
//! the dependency logic of declared workflows ([`workflow::graph`]). The backends
//! (`jobchain-sqlite`, `jobchain-postgres`) implement [`store::Store`]; the `jobchain`
//! crate builds the client and the worker runtime on top of it.

pub mod error;
pub mod job;
pub mod registry;
pub mod retry;
pub mod rules;
pub mod store;
pub mod workflow;

pub use error::StoreError;
pub use job::{
    AttemptError, EnqueueOptions, Job, JobId, JobState, NewJob, Priority, RunAt, WorkflowId,
};
pub use store::Store;
