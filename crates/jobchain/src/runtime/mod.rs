//! The worker runtime: one role per file.
//!
//! - [`worker`] is the public API: [`WorkerConfig`], [`WorkerBuilder`], [`Worker`] and
//!   [`WorkerHandle`]; the state the roles share is internal ([`shared`]);
//! - [`producer`] claims jobs in batches of as many as its queue has free slots;
//! - [`executor`] runs one job: timeout, panic capture, tracing span, outcome;
//! - [`completer`] batches settlements (completions with their staged follow-ups,
//!   failures, releases) into few store calls;
//! - [`heartbeat`] extends the leases of running jobs and stops handlers whose lease
//!   was lost;
//! - [`registry`] records the worker in the store's registry of live workers and warns
//!   of pending kinds that no live worker handles;
//! - [`notifier`] wakes idle producers.
//!
//! The maintenance services (rescuer, scheduler, cleaner) live in
//! [`crate::maintenance`].

pub(crate) mod completer;
pub(crate) mod executor;
pub(crate) mod heartbeat;
pub(crate) mod notifier;
pub(crate) mod producer;
pub(crate) mod registry;
pub(crate) mod shared;
pub mod worker;

pub use worker::{QueueLimits, ShutdownReport, Worker, WorkerBuilder, WorkerConfig, WorkerHandle};
