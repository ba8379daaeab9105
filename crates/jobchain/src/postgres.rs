//! PostgreSQL-only API: enqueue inside your own transaction.
//!
//! A business row and the jobs that act on it should commit or roll back together — the
//! main reason to use a database-backed queue. [`connect`] returns a [`PgClient`]: a
//! [`Client`] (it derefs to one) that also takes your open transaction:
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use jobchain::postgres::{self, PgOptions};
//! # #[derive(serde::Serialize, serde::Deserialize)] struct ProcessOrder { id: u64 }
//! # impl jobchain::JobArgs for ProcessOrder { const KIND: &'static str = "process_order"; }
//! let client = postgres::connect("postgres://postgres@127.0.0.1/app", PgOptions::default()).await?;
//! let mut tx = client.pool().begin().await?;
//! postgres::sqlx::query("INSERT INTO orders (id, cents) VALUES (42, 2599)")
//!     .execute(&mut *tx)
//!     .await?;
//! client.enqueue_in(&mut tx, &ProcessOrder { id: 42 }).await?;
//! tx.commit().await?;   // the order and its job, or neither
//! # Ok(()) }
//! ```
//!
//! Workers hear of the new jobs when the transaction commits (`NOTIFY` is transactional).

use std::ops::Deref;

use jobchain_core::store::Enqueued;
use jobchain_core::workflow::WorkflowStarted;
use jobchain_core::StoreError;
use jobchain_postgres::sqlx::{PgConnection, PgPool};

pub use jobchain_postgres::{drop_schema, redact, sqlx, PgOptions, PgStore};

use crate::args::IntoJob;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::workflow::IntoWorkflow;
use crate::EnqueueOptions;

/// Connects to PostgreSQL (creating and migrating the schema) and returns a client with
/// the PostgreSQL-only calls.
pub async fn connect(url: &str, options: PgOptions) -> Result<PgClient> {
    let store = PgStore::connect(url, options).await?;
    Ok(PgClient {
        client: Client::new(store.clone()),
        store,
    })
}

/// Connects to a `postgres://` URL that may carry jobchain's own parameters
/// (`jobchain_schema=NAME`, see [`PgOptions::from_url`]).
pub async fn connect_url(url: &str) -> Result<PgClient> {
    let (url, options) = PgOptions::from_url(url)?;
    connect(&url, options).await
}

/// A [`Client`] on PostgreSQL, with enqueue and workflow start inside the caller's own
/// transaction. Derefs to the [`Client`] for everything else.
#[derive(Clone)]
pub struct PgClient {
    client: Client,
    store: PgStore,
}

impl std::fmt::Debug for PgClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgClient")
            .field("schema", &self.store.schema())
            .finish_non_exhaustive()
    }
}

impl Deref for PgClient {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl PgClient {
    /// The plain client (for APIs that take a [`Client`]).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Gives up the PostgreSQL-only calls.
    pub fn into_client(self) -> Client {
        self.client
    }

    /// The schema holding jobchain's tables.
    pub fn schema(&self) -> &str {
        self.store.schema()
    }

    /// The connection pool, to begin transactions on.
    pub fn pool(&self) -> &PgPool {
        self.store.pool()
    }

    /// Enqueues a job on `conn` (typically your open transaction): it commits or rolls
    /// back with it.
    pub async fn enqueue_in(&self, conn: &mut PgConnection, job: impl IntoJob) -> Result<Enqueued> {
        self.enqueue_many_in(conn, [job.into_job()?])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Store(StoreError::database("enqueue returned no id")))
    }

    /// Enqueues a job on `conn` with options that override its kind's defaults.
    pub async fn enqueue_with_in(
        &self,
        conn: &mut PgConnection,
        job: impl IntoJob,
        options: EnqueueOptions,
    ) -> Result<Enqueued> {
        self.enqueue_in(conn, job.into_job()?.options(options))
            .await
    }

    /// Enqueues many jobs on `conn`.
    pub async fn enqueue_many_in<J: IntoJob>(
        &self,
        conn: &mut PgConnection,
        jobs: impl IntoIterator<Item = J>,
    ) -> Result<Vec<Enqueued>> {
        let jobs = jobs
            .into_iter()
            .map(|j| self.client.resolve_job(j.into_job()?))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.store.enqueue_in(conn, jobs).await?)
    }

    /// Starts a workflow on `conn` (see [`Client::start_workflow`]).
    pub async fn start_workflow_in(
        &self,
        conn: &mut PgConnection,
        workflow: impl IntoWorkflow,
    ) -> Result<WorkflowStarted> {
        let new = workflow.into_workflow(&self.client)?;
        Ok(self.store.start_workflow_in(conn, new).await?)
    }
}
