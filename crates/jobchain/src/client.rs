//! The client: enqueue jobs, start workflows, inspect and repair.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jobchain_core::job::{EnqueueOptions, Job, JobId, JobState, NewJob, RunAt, WorkflowId};
use jobchain_core::registry::{self, WorkerRecord};
use jobchain_core::store::{Enqueued, JobFilter, QueueInfo, QueueStats, SignalReceipt, Store};
use jobchain_core::workflow::tree::{self, TreeNode};
use jobchain_core::workflow::{WorkflowFilter, WorkflowInfo, WorkflowStarted, WorkflowState};
use jobchain_core::StoreError;
use serde_json::Value;

use crate::args::{IntoJob, JobSpec};
use crate::error::{Error, Result};
use crate::handler::KindOptions;
use crate::runtime::notifier::Notifier;
use crate::workflow::IntoWorkflow;

/// Opens the store at `location` and returns a client on it: a PostgreSQL URL
/// (`postgres://...`, with the `postgres` feature; see
/// [`PgOptions::from_url`](crate::postgres::PgOptions::from_url) for its options), or
/// a SQLite file (`PATH`, `sqlite:PATH`; see
/// [`SqliteOptions::from_location`](crate::sqlite::SqliteOptions::from_location)),
/// created when missing.
pub async fn open(location: &str) -> Result<Client> {
    if location.starts_with("postgres://") || location.starts_with("postgresql://") {
        return open_postgres(location).await;
    }
    open_sqlite(location).await
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str) -> Result<Client> {
    Ok(crate::postgres::connect_url(url).await?.into_client())
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(url: &str) -> Result<Client> {
    Err(Error::UnsupportedDatabase(format!(
        "{url} (this build has no PostgreSQL support: enable the `postgres` feature)"
    )))
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(location: &str) -> Result<Client> {
    let (path, options) = jobchain_sqlite::SqliteOptions::from_location(location)?;
    Client::sqlite_with(path, options).await
}

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite(location: &str) -> Result<Client> {
    Err(Error::UnsupportedDatabase(format!(
        "{location} (this build has no SQLite support: enable the `sqlite` feature)"
    )))
}

/// The handle to a job store. Cheap to clone; clones share the store and wake each
/// other's workers in-process.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    notifier: Arc<Notifier>,
    kinds: RwLock<HashMap<String, KindOptions>>,
    /// The largest payload accepted, in bytes of JSON.
    max_payload_bytes: AtomicUsize,
}

/// The default limit of a payload's size: 16 MiB of JSON.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 16 << 20;

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("store", &self.inner.store.backend())
            .finish_non_exhaustive()
    }
}

/// How many dead jobs one purge statement deletes.
const PURGE_BATCH: usize = 10_000;

/// Counts the bytes written to it.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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
                max_payload_bytes: AtomicUsize::new(DEFAULT_MAX_PAYLOAD_BYTES),
            }),
        }
    }

    /// Opens (creating if missing) the SQLite database file at `path`, with default
    /// options.
    #[cfg(feature = "sqlite")]
    pub async fn sqlite(path: impl AsRef<Path>) -> Result<Self> {
        Self::sqlite_with(path, jobchain_sqlite::SqliteOptions::default()).await
    }

    /// Opens (creating if missing) the SQLite database file at `path`.
    #[cfg(feature = "sqlite")]
    pub async fn sqlite_with(
        path: impl AsRef<Path>,
        options: jobchain_sqlite::SqliteOptions,
    ) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let store =
            tokio::task::spawn_blocking(move || jobchain_sqlite::SqliteStore::open(&path, options))
                .await
                .map_err(|e| {
                    StoreError::database(format!("open task failed: {e}")).caused_by(e)
                })??;
        Ok(Client::new(store))
    }

    /// The store behind this client.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub(crate) fn notifier(&self) -> &Arc<Notifier> {
        &self.inner.notifier
    }

    /// Makes `options` the defaults of string-kind `kind` for enqueues through this
    /// client. Workers built on the client do this for their handlers.
    pub(crate) fn register_kind(&self, kind: &str, options: KindOptions) {
        if let Ok(mut kinds) = self.inner.kinds.write() {
            kinds.insert(kind.to_string(), options);
        }
    }

    /// Sets the largest payload this client enqueues, in bytes of JSON (default
    /// [`DEFAULT_MAX_PAYLOAD_BYTES`], 16 MiB); a larger one is refused before anything is
    /// written. Applies to enqueues, workflow starts and follow-ups through this client
    /// and the workers built on it.
    pub fn set_max_payload_bytes(&self, bytes: usize) {
        self.inner.max_payload_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Refuses a payload over the size limit, or of a shape no store can keep (see
    /// [`NewJob::validate`]).
    fn check_payload(&self, job: &NewJob) -> Result<()> {
        job.validate().map_err(StoreError::Invalid)?;
        let limit = self.inner.max_payload_bytes.load(Ordering::Relaxed);
        let mut size = ByteCount(0);
        serde_json::to_writer(&mut size, &job.payload).map_err(|e| Error::Payload {
            kind: job.kind.clone(),
            reason: e.to_string(),
        })?;
        if size.0 > limit {
            return Err(StoreError::Invalid(format!(
                "the payload of job kind `{}` is {} bytes of JSON, over the limit of {limit}: keep large data elsewhere (a file, an object store) and pass a reference, or raise the limit with Client::set_max_payload_bytes",
                job.kind, size.0
            ))
            .into());
        }
        Ok(())
    }

    /// Resolves a job's options: what the caller set, else the type's defaults (typed
    /// jobs), else the defaults of a handler registered in this process (string kinds),
    /// else the global defaults; then checks its payload.
    pub(crate) fn resolve_job(&self, spec: JobSpec) -> Result<NewJob> {
        let JobSpec {
            kind,
            payload,
            mut options,
            defaults,
        } = spec;
        let defaults = defaults.or_else(|| {
            let kinds = self.inner.kinds.read().ok()?;
            kinds.get(&kind).cloned()
        });
        if let Some(defaults) = defaults {
            options.queue = options.queue.or(defaults.queue);
            options.priority = options.priority.or(defaults.priority);
            options.max_attempts = options.max_attempts.or(Some(defaults.retry.max_attempts));
        }
        let job = NewJob::new(kind, payload, options);
        self.check_payload(&job)?;
        Ok(job)
    }

    /// Enqueues one job — `&args` of a typed payload, or a [`JobSpec`] — with its kind's
    /// defaults; durable when this returns. With a unique key that a live job holds,
    /// writes nothing and returns that job (`duplicate: true`).
    pub async fn enqueue(&self, job: impl IntoJob) -> Result<Enqueued> {
        self.enqueue_spec(job.into_job()?).await
    }

    /// Enqueues one job with options that override its kind's defaults.
    pub async fn enqueue_with(
        &self,
        job: impl IntoJob,
        options: EnqueueOptions,
    ) -> Result<Enqueued> {
        self.enqueue_spec(job.into_job()?.options(options)).await
    }

    async fn enqueue_spec(&self, spec: JobSpec) -> Result<Enqueued> {
        let enqueued = self.write_jobs(vec![self.resolve_job(spec)?]).await?;
        enqueued
            .first()
            .copied()
            .ok_or_else(|| Error::Store(StoreError::database("enqueue returned no id")))
    }

    /// Enqueues many jobs in one transaction: all are written or none.
    pub async fn enqueue_many<J: IntoJob>(
        &self,
        jobs: impl IntoIterator<Item = J>,
    ) -> Result<Vec<Enqueued>> {
        let jobs = jobs
            .into_iter()
            .map(|j| self.resolve_job(j.into_job()?))
            .collect::<Result<Vec<_>>>()?;
        self.write_jobs(jobs).await
    }

    async fn write_jobs(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        let schedule: Vec<RunAt> = jobs.iter().map(|j| j.run_at).collect();
        let enqueued = self.inner.store.enqueue(jobs).await?;
        self.woke(schedule);
        Ok(enqueued)
    }

    /// Tells this process's workers of new jobs and when scheduled ones fall due.
    pub(crate) fn woke(&self, schedule: Vec<RunAt>) {
        for run_at in schedule {
            self.inner.notifier.schedule(run_at);
        }
        self.inner.notifier.notify();
    }

    /// Starts a workflow: a declared [`Workflow`](crate::Workflow) (validated, then every
    /// step written in one transaction), or one first job (`&args` or a [`JobSpec`])
    /// whose handlers hand on the next steps with
    /// [`JobContext::enqueue`](crate::JobContext::enqueue). With a unique key held by a
    /// running workflow, writes nothing and returns that one (`duplicate: true`).
    pub async fn start_workflow(&self, workflow: impl IntoWorkflow) -> Result<WorkflowStarted> {
        let new = workflow.into_workflow(self)?;
        let schedule: Vec<RunAt> = new.steps.iter().map(|s| s.job.run_at).collect();
        let started = self.inner.store.start_workflow(new).await?;
        self.woke(schedule);
        Ok(started)
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

    /// Empties the dead-letter queue of jobs outside workflows that died more than
    /// `older_than` ago (only of `kind` when given); returns how many were deleted.
    /// Dead jobs of workflows leave with their workflow, by retention.
    pub async fn purge_dead(&self, older_than: Duration, kind: Option<&str>) -> Result<u64> {
        let mut total = 0;
        loop {
            let deleted = self
                .inner
                .store
                .purge_dead(older_than, kind, PURGE_BATCH)
                .await?;
            total += deleted;
            if deleted < PURGE_BATCH as u64 {
                return Ok(total);
            }
        }
    }

    /// Retries a dead job with a fresh budget of attempts; dependents cancelled because
    /// of it are revived, and its workflow runs again.
    pub async fn retry(&self, id: JobId) -> Result<Job> {
        let job = self.inner.store.retry(id).await?;
        self.inner.notifier.notify();
        Ok(job)
    }

    /// Cancels a live job (a running job's handler is told through its context), or
    /// discards a dead one from the dead-letter queue (it becomes cancelled; its
    /// dependents were settled when it died and stay as they are).
    pub async fn cancel(&self, id: JobId) -> Result<Job> {
        let job = self.inner.store.cancel(id, "cancelled by user").await?;
        // A dependent that tolerates the cancellation may have become due.
        self.inner.notifier.notify();
        Ok(job)
    }

    /// Cancels every live job of a workflow.
    pub async fn cancel_workflow(&self, id: WorkflowId) -> Result<WorkflowInfo> {
        Ok(self.inner.store.cancel_workflow(id).await?)
    }

    /// Job counts by queue and state, with the pending jobs of each queue that no live
    /// worker handles (by kind, with the age of the oldest), and whether it is paused
    /// (a paused queue without jobs is listed too).
    pub async fn queue_stats(&self) -> Result<Vec<QueueStats>> {
        let store = &self.inner.store;
        let mut stats = store.queue_stats().await?;
        let pending = store.pending_kinds().await?;
        let now = chrono::Utc::now();
        for p in &pending {
            let age = (now - p.oldest).to_std().unwrap_or_default();
            if let Some(entry) = stats.iter_mut().find(|s| s.queue == p.queue) {
                entry.oldest_pending_age = entry.oldest_pending_age.max(Some(age));
            }
        }
        let workers = if pending.is_empty() {
            Vec::new()
        } else {
            store.workers().await?
        };
        for unhandled in registry::unhandled(&pending, &workers, now) {
            queue_entry(&mut stats, &unhandled.queue)
                .unhandled
                .push(unhandled);
        }
        for record in store.queue_records().await? {
            if record.paused {
                queue_entry(&mut stats, &record.name).paused = true;
            }
        }
        Ok(stats)
    }

    /// Pauses a queue for every worker of the store: none starts its jobs (within one
    /// poll interval) until it is resumed; running jobs finish.
    pub async fn pause_queue(&self, queue: &str) -> Result<QueueInfo> {
        valid_queue(queue)?;
        Ok(self.inner.store.set_queue_paused(queue, true).await?)
    }

    /// Resumes a paused queue.
    pub async fn resume_queue(&self, queue: &str) -> Result<QueueInfo> {
        valid_queue(queue)?;
        let info = self.inner.store.set_queue_paused(queue, false).await?;
        self.inner.notifier.notify();
        Ok(info)
    }

    /// Pending jobs that no live worker handles, by queue and kind.
    pub async fn unhandled(&self) -> Result<Vec<registry::UnhandledKind>> {
        let pending = self.inner.store.pending_kinds().await?;
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let workers = self.inner.store.workers().await?;
        Ok(registry::unhandled(&pending, &workers, chrono::Utc::now()))
    }

    /// The live workers, with their queues, kinds and last heartbeat.
    pub async fn workers(&self) -> Result<Vec<WorkerRecord>> {
        Ok(self.inner.store.workers().await?)
    }

    /// Waits until a job is terminal (completed, dead, cancelled or skipped) and returns it; fails
    /// with [`Error::Timeout`] when it is still live after `timeout`.
    pub async fn wait_for_job(&self, id: JobId, timeout: Duration) -> Result<Job> {
        self.wait(&format!("job {id}"), timeout, || async {
            let job = self.job(id).await?;
            Ok(job.state.is_terminal().then_some(job))
        })
        .await
    }

    /// Waits until a workflow is no longer running and returns its record; fails with
    /// [`Error::Timeout`] when it still runs after `timeout`.
    pub async fn wait_for_workflow(
        &self,
        id: WorkflowId,
        timeout: Duration,
    ) -> Result<WorkflowInfo> {
        self.wait(&format!("workflow {id}"), timeout, || async {
            let info = self.workflow(id).await?;
            Ok((info.state != WorkflowState::Running).then_some(info))
        })
        .await
    }

    /// Sends signal `name` with `payload` to a workflow: every step waiting for it (see
    /// [`Step::wait_for_signal`](crate::Step::wait_for_signal)) completes with `payload`
    /// as its output; a step that waits for it later consumes it when reached. The first
    /// signal of a name wins: a later one changes nothing and the receipt says so
    /// (`accepted: false`).
    pub async fn signal(
        &self,
        workflow: WorkflowId,
        name: &str,
        payload: impl serde::Serialize,
    ) -> Result<SignalReceipt> {
        let payload = serde_json::to_value(payload).map_err(|e| Error::Payload {
            kind: format!("signal `{name}`"),
            reason: e.to_string(),
        })?;
        let receipt = self
            .inner
            .store
            .send_signal(workflow, name, payload)
            .await?;
        // The steps after the waiting one may have become due: this process's workers
        // look at once (other processes are told by the store).
        self.inner.notifier.notify();
        Ok(receipt)
    }

    /// A finished workflow's result as JSON: the output of its result step
    /// ([`Workflow::result`](crate::Workflow::result)), or of its single sink step (the
    /// one no other step depends on and that enqueued nothing). `None` when that step
    /// completed without an output. Fails with [`Error::NoResult`] while it runs, when it
    /// failed or was cancelled, or when it has no single sink and names no result step.
    pub async fn workflow_result_value(&self, id: WorkflowId) -> Result<Option<Value>> {
        let info = self.workflow(id).await?;
        let no_result = |reason: String| Error::NoResult {
            workflow: id,
            reason,
        };
        match info.state {
            WorkflowState::Completed => {}
            WorkflowState::Running => {
                return Err(no_result(
                    "it is still running: wait for it (wait_for_result)".into(),
                ))
            }
            state => {
                return Err(no_result(format!(
                    "it {state}; inspect it with `jobchain workflow show {id}`"
                )))
            }
        }
        let jobs = self.workflow_jobs(id).await?;
        let step = match &info.result_step {
            Some(name) => jobs
                .iter()
                .rev()
                .find(|j| j.step.as_deref() == Some(name.as_str()))
                .ok_or_else(|| no_result(format!("its result step `{name}` has no job")))?,
            None => {
                // A sink: no job depends on it, and it enqueued no job that it does not
                // await itself (as map and sub-workflow steps do).
                let edges = self.inner.store.dependencies(id).await?;
                let awaits = |parent: JobId, child: JobId| {
                    edges
                        .iter()
                        .any(|e| e.job == parent && e.depends_on == child)
                };
                let mut sinks = jobs.iter().filter(|j| {
                    !edges.iter().any(|e| e.depends_on == j.id)
                        && !jobs
                            .iter()
                            .any(|c| c.parent_id == Some(j.id) && !awaits(j.id, c.id))
                });
                match (sinks.next(), sinks.next()) {
                    (Some(sink), None) => sink,
                    _ => {
                        return Err(no_result(
                            "it has no single last step: name its result step \
                             (Workflow::result, or \"result\" in a workflow document)"
                                .into(),
                        ))
                    }
                }
            }
        };
        if step.state != JobState::Completed {
            return Err(no_result(format!(
                "its result step `{}` ended {} (a tolerated failure)",
                step.step.as_deref().unwrap_or(&step.kind),
                step.state
            )));
        }
        Ok(step.output.clone())
    }

    /// A finished workflow's result, decoded (see
    /// [`workflow_result_value`](Self::workflow_result_value); a step without output
    /// decodes from JSON `null`).
    pub async fn workflow_result<T: serde::de::DeserializeOwned>(
        &self,
        id: WorkflowId,
    ) -> Result<T> {
        let value = self.workflow_result_value(id).await?.unwrap_or(Value::Null);
        serde_json::from_value(value).map_err(|e| Error::NoResult {
            workflow: id,
            reason: format!("its result does not decode into the type asked for: {e}"),
        })
    }

    /// Waits until a workflow finishes (see [`wait_for_workflow`](Self::wait_for_workflow))
    /// and returns its result (see [`workflow_result`](Self::workflow_result)).
    pub async fn wait_for_result<T: serde::de::DeserializeOwned>(
        &self,
        id: WorkflowId,
        timeout: Duration,
    ) -> Result<T> {
        self.wait_for_workflow(id, timeout).await?;
        self.workflow_result(id).await
    }

    /// Polls `check` (every 5 ms at first, backing off to 200 ms) until it returns a value.
    async fn wait<T, F, Fut>(&self, what: &str, timeout: Duration, mut check: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut poll = Duration::from_millis(5);
        loop {
            if let Some(value) = check().await? {
                return Ok(value);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(Error::Timeout {
                    what: what.to_string(),
                    waited: timeout,
                });
            }
            tokio::time::sleep(poll.min(deadline - now)).await;
            poll = (poll * 2).min(Duration::from_millis(200));
        }
    }

    /// Flushes and closes the store.
    pub async fn close(&self) {
        self.inner.store.close().await;
    }
}

/// A queue name that can be stored.
fn valid_queue(queue: &str) -> Result<()> {
    if queue.is_empty() {
        return Err(StoreError::Invalid("the queue name is empty: name a queue".into()).into());
    }
    jobchain_core::job::check_name("queue", queue).map_err(|e| Error::Store(StoreError::Invalid(e)))
}

/// The stats entry of `queue`, added (empty) if it has none yet.
fn queue_entry<'a>(stats: &'a mut Vec<QueueStats>, queue: &str) -> &'a mut QueueStats {
    match stats.iter().position(|s| s.queue == queue) {
        Some(i) => &mut stats[i],
        None => {
            stats.push(QueueStats {
                queue: queue.to_string(),
                counts: Default::default(),
                oldest_pending_age: None,
                unhandled: Vec::new(),
                paused: false,
            });
            stats.last_mut().expect("just pushed")
        }
    }
}
