//! jobchain: a durable background-job queue in which chains and workflows are
//! first-class.
//!
//! A handler does its work and hands the next steps on with
//! [`JobContext::enqueue`]; the follow-ups are written in the same transaction that
//! marks the job completed, so a failed attempt leaks nothing and a retry duplicates
//! nothing. Workflows can also be declared up front ([`Workflow`]) with fan-in,
//! per-edge failure policies and step outputs.
//!
//! # Quick start
//!
//! ```
//! use std::time::Duration;
//! use jobchain::{JobArgs, JobContext, JobError, KindOptions, Worker};
//! use serde::{Deserialize, Serialize};
//!
//! // A typed job: the payload type carries its kind and its defaults.
//! #[derive(Serialize, Deserialize)]
//! struct ProcessOrder { id: u64 }
//! impl JobArgs for ProcessOrder {
//!     const KIND: &'static str = "process_order";
//! }
//!
//! #[derive(Serialize, Deserialize)]
//! struct SendConfirmation { order_id: u64 }
//! impl JobArgs for SendConfirmation {
//!     const KIND: &'static str = "send_confirmation";
//!     fn options() -> KindOptions { KindOptions::new().queue("emails").max_attempts(3) }
//! }
//!
//! async fn process_order(ctx: JobContext, order: ProcessOrder) -> Result<(), JobError> {
//!     // ... charge the payment, then hand on the next step; it is written only if
//!     // this attempt completes, in the same transaction:
//!     ctx.enqueue(&SendConfirmation { order_id: order.id })?;
//!     Ok(())
//! }
//!
//! async fn send_confirmation(_ctx: JobContext, mail: SendConfirmation) -> Result<String, JobError> {
//!     Ok(format!("mailed order {}", mail.order_id))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("jobs.db");
//! let client = jobchain::open(path.to_str().unwrap()).await?;  // a SQLite file, created if missing
//! let worker = Worker::builder(&client)
//!     .register(process_order)
//!     .register(send_confirmation)   // claims from queue `emails`, as the type says
//!     .build()?
//!     .start();
//!
//! let order = client.start_workflow(&ProcessOrder { id: 7 }).await?;
//! let done = client.wait_for_workflow(order.id, Duration::from_secs(10)).await?;
//! println!("{}", client.render_workflow(order.id).await?);
//! assert_eq!(done.counts.completed, 2);
//! worker.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Kinds can also be plain strings with JSON payloads ([`JobSpec::new`],
//! [`WorkerBuilder::handler`]): the documented path for handlers in other languages and
//! kinds chosen at run time.

pub mod args;
pub mod client;
pub mod context;
pub mod document;
pub mod error;
pub mod handler;
mod maintenance;
pub mod metrics;
pub mod periodic;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod runtime;
pub mod steps;
pub mod waits;
pub mod workflow;

pub use args::{IntoJob, JobArgs, JobSpec};
pub use client::{open, Client};
pub use context::JobContext;
pub use document::{JobOptions, WorkflowDocument};
pub use error::{Error, Result};
pub use handler::{Handler, JobError, KindOptions, ResultExt};
pub use jobchain_core::job::{
    AttemptError, EnqueueOptions, Job, JobId, JobState, Priority, RunAt, WorkflowId,
};
pub use jobchain_core::registry::{UnhandledKind, WorkerRecord};
pub use jobchain_core::retry::RetryPolicy;
pub use jobchain_core::store::{Enqueued, JobFilter, QueueStats, RateLimit, Store};
pub use jobchain_core::workflow::condition::{Op, Predicate};
pub use jobchain_core::workflow::tree::TreeNode;
pub use jobchain_core::workflow::{
    EdgePolicy, JobCounts, StepResult, WorkflowFilter, WorkflowInfo, WorkflowStarted, WorkflowState,
};
pub use jobchain_core::{self as core, StoreError};
pub use metrics::Metrics;
pub use runtime::{QueueLimits, ShutdownReport, Worker, WorkerBuilder, WorkerConfig, WorkerHandle};
pub use waits::SignalReceipt;
pub use workflow::{IntoWorkflow, Step, Workflow};

#[cfg(feature = "sqlite")]
pub use jobchain_sqlite as sqlite;
