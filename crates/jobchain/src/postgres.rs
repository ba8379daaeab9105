//! PostgreSQL-only API: enqueue inside your own transaction.
//!
//! A business row and the jobs that act on it should commit or roll back together — the
//! main reason to use a database-backed queue. With a [`Client`] on PostgreSQL, pass your
//! open transaction (or any connection) to these methods:
//!
//! ```no_run
//! # async fn example(client: jobchain::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use jobchain::EnqueueOptions;
//! let pool = client.postgres_pool()?;
//! let mut tx = pool.begin().await?;
//! jobchain::postgres::sqlx::query("INSERT INTO orders (id, cents) VALUES (42, 2599)")
//!     .execute(&mut *tx)
//!     .await?;
//! client.enqueue_in(&mut tx, "process_order", &serde_json::json!({ "id": 42 }), EnqueueOptions::new()).await?;
//! tx.commit().await?;   // the order and its job, or neither
//! # Ok(()) }
//! ```
//!
//! Workers hear of the new jobs when the transaction commits (`NOTIFY` is transactional).

use jobchain_core::store::Enqueued;
use jobchain_core::{JobId, StoreError, WorkflowId};
use jobchain_postgres::sqlx::{PgConnection, PgPool};
use serde::Serialize;

pub use jobchain_postgres::queries::migration::drop_schema;
pub use jobchain_postgres::{sqlx, PgOptions, PgStore};

use crate::client::{Client, JobSpec};
use crate::error::{Error, Result};
use crate::workflow::Workflow;

impl Client {
    /// Connects to PostgreSQL with explicit options (schema, pool size).
    pub async fn connect_postgres(url: &str, options: PgOptions) -> Result<Self> {
        Ok(Client::new(PgStore::connect(url, options).await?))
    }

    fn pg(&self) -> Result<&PgStore> {
        self.store()
            .as_any()
            .downcast_ref::<PgStore>()
            .ok_or_else(|| {
                Error::Store(StoreError::Invalid(format!(
                    "this client's store is {}, not PostgreSQL: transactional enqueue needs a postgres:// database",
                    self.store().backend()
                )))
            })
    }

    /// The PostgreSQL pool behind this client, to begin transactions on.
    pub fn postgres_pool(&self) -> Result<&PgPool> {
        Ok(self.pg()?.pool())
    }

    /// Enqueues a job on `conn` (typically your open transaction): it commits or rolls
    /// back with it.
    pub async fn enqueue_in<P: Serialize>(
        &self,
        conn: &mut PgConnection,
        kind: &str,
        payload: &P,
        options: crate::EnqueueOptions,
    ) -> Result<JobId> {
        let job = self.new_job(kind, payload, options)?;
        let enqueued = self.pg()?.enqueue_in(conn, vec![job]).await?;
        enqueued
            .first()
            .map(|e| e.id)
            .ok_or_else(|| Error::Store(StoreError::Database("enqueue returned no id".into())))
    }

    /// Enqueues many jobs on `conn`.
    pub async fn enqueue_many_in(
        &self,
        conn: &mut PgConnection,
        jobs: Vec<JobSpec>,
    ) -> Result<Vec<Enqueued>> {
        let jobs = jobs
            .into_iter()
            .map(|j| self.resolve_job(&j.kind, j.payload, j.options))
            .collect();
        Ok(self.pg()?.enqueue_in(conn, jobs).await?)
    }

    /// Starts a declared workflow on `conn`.
    pub async fn start_in(
        &self,
        conn: &mut PgConnection,
        workflow: Workflow,
    ) -> Result<WorkflowId> {
        let new = workflow.build(self)?;
        Ok(self.pg()?.start_workflow_in(conn, new).await?.id)
    }
}
