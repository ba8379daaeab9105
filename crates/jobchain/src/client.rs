//! The client: enqueue jobs, start workflows, inspect and repair.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jobchain_core::job::{EnqueueOptions, Job, JobId, JobState, NewJob, RunAt, WorkflowId};
use jobchain_core::store::{Enqueued, JobFilter, QueueStats, Store};
use jobchain_core::workflow::tree::{self, TreeNode};
use jobchain_core::workflow::{NewStep, NewWorkflow, WorkflowFilter, WorkflowInfo};
use jobchain_core::StoreError;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::handler::HandlerOptions;
use crate::runtime::notifier::Notifier;
use crate::workflow::Workflow;

/// The handle to a job store. Cheap to clone; clones share the store and wake each
/// other's workers in-process.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    notifier: Arc<Notifier>,
    kinds: RwLock<HashMap<String, HandlerOptions>>,
}

/// One job of a batch enqueue.
#[derive(Clone, Debug)]
pub struct JobSpec {
    /// Handler name.
    pub kind: String,
    /// JSON payload.
    pub payload: serde_json::Value,
    /// Options.
    pub options: EnqueueOptions,
}

impl JobSpec {
    /// A job of `kind` with a serializable payload.
    pub fn new<P: Serialize>(kind: &str, payload: &P, options: EnqueueOptions) -> Result<Self> {
        Ok(JobSpec {
            kind: kind.to_string(),
            payload: to_json(kind, payload)?,
            options,
        })
    }
}

pub(crate) fn to_json<P: Serialize>(kind: &str, payload: &P) -> Result<serde_json::Value> {
    serde_json::to_value(payload).map_err(|e| Error::Payload {
        kind: kind.to_string(),
        reason: e.to_string(),
    })
}

impl Client {
    /// A client on any store.
    pub fn new(store: impl Store) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// A client on a shared store.
    pub fn from_arc(store: Arc<dyn Store>) -> Self {
        Client {
            inner: Arc::new(Inner {
                store,
                notifier: Arc::new(Notifier::new()),
                kinds: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// Opens the store at `location`: a PostgreSQL URL (`postgres://...`, with the
    /// `postgres` feature, schema `jobchain`), a SQLite file path, or `sqlite:PATH`.
    pub async fn open(location: &str) -> Result<Self> {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            return Self::open_postgres(location).await;
        }
        Self::open_sqlite(location).await
    }

    /// A `jobchain_schema=NAME` query parameter picks the schema (default `jobchain`).
    #[cfg(feature = "postgres")]
    async fn open_postgres(url: &str) -> Result<Self> {
        let mut options = jobchain_postgres::PgOptions::default();
        let url = match url.split_once('?') {
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&') {
                    match pair.strip_prefix("jobchain_schema=") {
                        Some(schema) => options.schema = schema.to_string(),
                        None => kept.push(pair),
                    }
                }
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => url.to_string(),
        };
        let store = jobchain_postgres::PgStore::connect(&url, options).await?;
        Ok(Client::new(store))
    }

    #[cfg(not(feature = "postgres"))]
    async fn open_postgres(url: &str) -> Result<Self> {
        Err(Error::UnsupportedDatabase(format!(
            "{url} (this build has no PostgreSQL support: enable the `postgres` feature)"
        )))
    }

    #[cfg(not(feature = "sqlite"))]
    async fn open_sqlite(location: &str) -> Result<Self> {
        Err(Error::UnsupportedDatabase(format!(
            "{location} (this build has no SQLite support: enable the `sqlite` feature)"
        )))
    }

    /// `sqlite:PATH?synchronous=full` trades commit speed for durability across power
    /// loss (the default, `normal`, survives a crash of the process).
    #[cfg(feature = "sqlite")]
    async fn open_sqlite(location: &str) -> Result<Self> {
        let path = location
            .strip_prefix("sqlite://")
            .or_else(|| location.strip_prefix("sqlite:"))
            .unwrap_or(location);
        if path.contains("://") {
            return Err(Error::UnsupportedDatabase(location.to_string()));
        }
        let mut options = jobchain_sqlite::SqliteOptions::default();
        let path = match path.split_once('?') {
            Some((path, query)) => {
                for pair in query.split('&') {
                    options.synchronous = match pair {
                        "synchronous=full" => jobchain_sqlite::Synchronous::Full,
                        "synchronous=normal" => jobchain_sqlite::Synchronous::Normal,
                        other => {
                            return Err(Error::UnsupportedDatabase(format!(
                                "{location}: unknown option `{other}` (use synchronous=normal or synchronous=full)"
                            )))
                        }
                    };
                }
                path
            }
            None => path,
        }
        .to_string();
        let store =
            tokio::task::spawn_blocking(move || jobchain_sqlite::SqliteStore::open(&path, options))
                .await
                .map_err(|e| StoreError::Database(format!("open task failed: {e}")))??;
        Ok(Client::new(store))
    }

    /// The store behind this client.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub(crate) fn notifier(&self) -> &Arc<Notifier> {
        &self.inner.notifier
    }

    /// Makes the options of a handler the defaults of its kind for enqueues through this
    /// client (queue, priority, attempt limit). Workers built on the client do this.
    pub fn register_kind(&self, kind: &str, options: HandlerOptions) {
        if let Ok(mut kinds) = self.inner.kinds.write() {
            kinds.insert(kind.to_string(), options);
        }
    }

    /// Resolves a job's options against its kind's registered defaults.
    pub(crate) fn new_job<P: Serialize>(
        &self,
        kind: &str,
        payload: &P,
        options: EnqueueOptions,
    ) -> Result<NewJob> {
        let payload = to_json(kind, payload)?;
        Ok(self.resolve_job(kind, payload, options))
    }

    pub(crate) fn resolve_job(
        &self,
        kind: &str,
        payload: serde_json::Value,
        mut options: EnqueueOptions,
    ) -> NewJob {
        if let Ok(kinds) = self.inner.kinds.read() {
            if let Some(defaults) = kinds.get(kind) {
                options.queue = options.queue.or_else(|| defaults.queue.clone());
                options.priority = options.priority.or(defaults.priority);
                options.max_attempts = options.max_attempts.or(Some(defaults.retry.max_attempts));
            }
        }
        NewJob::new(kind, payload, options)
    }

    /// Enqueues one job; durable when this returns. With a unique key that a live job
    /// holds, returns that job's id and writes nothing.
    pub async fn enqueue<P: Serialize>(
        &self,
        kind: &str,
        payload: &P,
        options: EnqueueOptions,
    ) -> Result<JobId> {
        let job = self.new_job(kind, payload, options)?;
        let enqueued = self.write_jobs(vec![job]).await?;
        enqueued
            .first()
            .map(|e| e.id)
            .ok_or_else(|| Error::Store(StoreError::Database("enqueue returned no id".into())))
    }

    /// Enqueues many jobs in one transaction.
    pub async fn enqueue_many(&self, jobs: Vec<JobSpec>) -> Result<Vec<Enqueued>> {
        let jobs = jobs
            .into_iter()
            .map(|j| self.resolve_job(&j.kind, j.payload, j.options))
            .collect();
        self.write_jobs(jobs).await
    }

    async fn write_jobs(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        let schedule: Vec<RunAt> = jobs.iter().map(|j| j.run_at).collect();
        let enqueued = self.inner.store.enqueue(jobs).await?;
        for run_at in schedule {
            self.inner.notifier.schedule(run_at);
        }
        self.inner.notifier.notify();
        Ok(enqueued)
    }

    /// Starts a workflow whose first job is `kind` (dynamic chaining): returns the new
    /// workflow's id. Its handlers hand on the next steps with
    /// [`JobContext::enqueue`](crate::JobContext::enqueue).
    pub async fn start_workflow<P: Serialize>(
        &self,
        kind: &str,
        payload: &P,
    ) -> Result<WorkflowId> {
        let mut job = self.new_job(kind, payload, EnqueueOptions::default())?;
        let id = WorkflowId::new();
        job.workflow_id = Some(id);
        let started = self
            .inner
            .store
            .start_workflow(NewWorkflow {
                id,
                name: kind.to_string(),
                unique_key: None,
                steps: vec![NewStep {
                    job,
                    depends_on: Vec::new(),
                }],
            })
            .await?;
        self.inner.notifier.notify();
        Ok(started.id)
    }

    /// Starts a declared workflow: validates it, then writes every step in one
    /// transaction. With a unique key held by a running workflow, returns that one.
    pub async fn start(&self, workflow: Workflow) -> Result<WorkflowId> {
        let new = workflow.build(self)?;
        let schedule: Vec<RunAt> = new.steps.iter().map(|s| s.job.run_at).collect();
        let started = self.inner.store.start_workflow(new).await?;
        for run_at in schedule {
            self.inner.notifier.schedule(run_at);
        }
        self.inner.notifier.notify();
        Ok(started.id)
    }

    /// One job with its history.
    pub async fn job(&self, id: JobId) -> Result<Job> {
        self.inner
            .store
            .job(id)
            .await?
            .ok_or_else(|| Error::Store(StoreError::NotFound(format!("job {id}"))))
    }

    /// Jobs matching a filter.
    pub async fn jobs(&self, filter: JobFilter) -> Result<Vec<Job>> {
        Ok(self.inner.store.list_jobs(filter).await?)
    }

    /// A workflow's jobs, in creation order.
    pub async fn workflow_jobs(&self, id: WorkflowId) -> Result<Vec<Job>> {
        let mut all = Vec::new();
        loop {
            let page = self
                .inner
                .store
                .list_jobs(JobFilter {
                    workflow_id: Some(id),
                    limit: Some(1000),
                    offset: all.len(),
                    ..JobFilter::default()
                })
                .await?;
            let done = page.len() < 1000;
            all.extend(page);
            if done {
                return Ok(all);
            }
        }
    }

    /// One workflow's record.
    pub async fn workflow(&self, id: WorkflowId) -> Result<WorkflowInfo> {
        self.inner
            .store
            .workflow(id)
            .await?
            .ok_or_else(|| Error::Store(StoreError::NotFound(format!("workflow {id}"))))
    }

    /// Workflows, newest first.
    pub async fn workflows(&self, filter: WorkflowFilter) -> Result<Vec<WorkflowInfo>> {
        Ok(self.inner.store.list_workflows(filter).await?)
    }

    /// A workflow's tree: jobs under the job that staged them or their first dependency.
    pub async fn workflow_tree(&self, id: WorkflowId) -> Result<Vec<TreeNode>> {
        let jobs = self.workflow_jobs(id).await?;
        let deps = self.inner.store.dependencies(id).await?;
        Ok(tree::build(&jobs, &deps))
    }

    /// A workflow's tree rendered as text.
    pub async fn render_workflow(&self, id: WorkflowId) -> Result<String> {
        Ok(tree::render(&self.workflow_tree(id).await?))
    }

    /// Dead jobs (the dead-letter queue), newest first.
    pub async fn dead_jobs(&self, limit: usize) -> Result<Vec<Job>> {
        self.jobs(JobFilter {
            state: Some(JobState::Dead),
            newest_first: true,
            limit: Some(limit),
            ..JobFilter::default()
        })
        .await
    }

    /// Retries a dead job with a fresh budget of attempts; dependents cancelled because
    /// of it are revived, and its workflow runs again.
    pub async fn retry(&self, id: JobId) -> Result<Job> {
        let job = self.inner.store.retry(id).await?;
        self.inner.notifier.notify();
        Ok(job)
    }

    /// Cancels a live job; a running job's handler is told through its context.
    pub async fn cancel(&self, id: JobId) -> Result<Job> {
        Ok(self.inner.store.cancel(id, "cancelled by user").await?)
    }

    /// Cancels every live job of a workflow.
    pub async fn cancel_workflow(&self, id: WorkflowId) -> Result<WorkflowInfo> {
        Ok(self.inner.store.cancel_workflow(id).await?)
    }

    /// Job counts by queue and state.
    pub async fn queue_stats(&self) -> Result<Vec<QueueStats>> {
        Ok(self.inner.store.queue_stats().await?)
    }

    /// Waits until a workflow is no longer running, checking every `poll`; gives up
    /// after `timeout` and returns the record as it is then.
    pub async fn wait_for_workflow(
        &self,
        id: WorkflowId,
        poll: Duration,
        timeout: Duration,
    ) -> Result<WorkflowInfo> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let info = self.workflow(id).await?;
            if info.state != jobchain_core::workflow::WorkflowState::Running
                || tokio::time::Instant::now() >= deadline
            {
                return Ok(info);
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Flushes and closes the store.
    pub async fn close(&self) {
        self.inner.store.close().await;
    }
}
