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
//! use jobchain::{Client, EnqueueOptions, JobContext, JobError, Worker};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Order { id: u64 }
//!
//! async fn process_order(ctx: JobContext, order: Order) -> Result<(), JobError> {
//!     // ... charge the payment, then hand on the next step:
//!     ctx.enqueue("send_order_confirmation", &order, EnqueueOptions::new())?;
//!     Ok(())
//! }
//!
//! async fn send_confirmation(_ctx: JobContext, order: Order) -> Result<String, JobError> {
//!     Ok(format!("mailed order {}", order.id))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), jobchain::Error> {
//! # let dir = tempfile::tempdir().map_err(|e| jobchain::Error::Config(e.to_string()))?;
//! # let path = dir.path().join("jobs.db");
//! # let path = path.to_str().unwrap_or("jobs.db");
//! let client = Client::open(path).await?;           // a SQLite file, created if missing
//! let worker = Worker::builder(&client)
//!     .handler("process_order", process_order)
//!     .handler("send_order_confirmation", send_confirmation)
//!     .build()?
//!     .start();
//!
//! let workflow = client.start_workflow("process_order", &Order { id: 7 }).await?;
//! let done = client
//!     .wait_for_workflow(workflow, Duration::from_millis(10), Duration::from_secs(10))
//!     .await?;
//! println!("{}", client.render_workflow(workflow).await?);
//! assert_eq!(done.counts.completed, 2);
//! worker.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod client;
pub mod context;
pub mod error;
pub mod handler;
mod maintenance;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod runtime;
pub mod workflow;

pub use client::{Client, JobSpec};
pub use context::JobContext;
pub use error::{Error, Result};
pub use handler::{HandlerOptions, JobError};
pub use jobchain_core::job::{
    AttemptError, EnqueueOptions, Job, JobId, JobState, Priority, RunAt, WorkflowId,
};
pub use jobchain_core::retry::RetryPolicy;
pub use jobchain_core::store::{Enqueued, JobFilter, Store};
pub use jobchain_core::workflow::tree::TreeNode;
pub use jobchain_core::workflow::{
    EdgePolicy, JobCounts, StepResult, WorkflowFilter, WorkflowInfo, WorkflowState,
};
pub use jobchain_core::{self as core, StoreError};
pub use runtime::{ShutdownReport, Worker, WorkerBuilder, WorkerConfig, WorkerHandle};
pub use workflow::{Step, Workflow};

#[cfg(feature = "sqlite")]
pub use jobchain_sqlite as sqlite;
