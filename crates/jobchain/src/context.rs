//! What a handler knows about the attempt it runs, and how it hands on the next steps.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobchain_core::job::{EnqueueOptions, JobId, NewJob, WorkflowId};
use jobchain_core::store::{ClaimedJob, SignalWait, SleepFor, SIGNAL_KIND, SLEEP_KIND};
use jobchain_core::workflow::{EdgePolicy, NewStep, StepResult};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::args::{IntoJob, JobSpec};
use crate::client::Client;
use crate::handler::JobError;
use crate::workflow::wait_job;

/// Application state given to a worker with
/// [`WorkerBuilder::data`](crate::WorkerBuilder::data), one value per type.
#[derive(Clone, Default)]
pub(crate) struct Data(Arc<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>);

impl Data {
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        Arc::make_mut(&mut self.0).insert(TypeId::of::<T>(), Arc::new(value));
    }

    fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.0.get(&TypeId::of::<T>())?.downcast_ref()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// The context of one attempt. Cheap to clone.
///
/// [`enqueue`](JobContext::enqueue) *stages* follow-up jobs: they are written in the same
/// transaction that marks this job completed, and never if the attempt fails.
#[derive(Clone)]
pub struct JobContext {
    inner: Arc<Inner>,
}

struct Inner {
    job: ClaimedJob,
    client: Client,
    cancel: CancellationToken,
    staged: Mutex<Vec<NewJob>>,
    awaiting: Mutex<Option<Awaited>>,
    data: Data,
}

/// New steps a job waits for (see [`Outcome::Await`](jobchain_core::store::Outcome::Await)).
pub(crate) type Awaited = (Vec<NewStep>, Vec<(usize, EdgePolicy)>);

impl fmt::Debug for JobContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobContext")
            .field("job_id", &self.inner.job.id)
            .field("kind", &self.inner.job.kind)
            .field("attempt", &self.inner.job.attempt)
            .field("workflow_id", &self.inner.job.workflow_id)
            .field("cancelled", &self.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl JobContext {
    pub(crate) fn new(
        job: ClaimedJob,
        client: Client,
        cancel: CancellationToken,
        data: Data,
    ) -> Self {
        JobContext {
            inner: Arc::new(Inner {
                job,
                client,
                cancel,
                staged: Mutex::new(Vec::new()),
                awaiting: Mutex::new(None),
                data,
            }),
        }
    }

    /// The application state of type `T` given to the worker with
    /// [`WorkerBuilder::data`](crate::WorkerBuilder::data) (a connection pool, an HTTP
    /// client, settings). Missing state is a permanent error naming the type: it is a
    /// bug in how the worker was built, which no retry fixes.
    pub fn data<T: Send + Sync + 'static>(&self) -> Result<&T, JobError> {
        self.inner.data.get::<T>().ok_or_else(|| {
            JobError::permanent(format!(
                "job kind `{}` asked for state of type `{}`, which its worker was not given: \
                 add `.data(value)` to the worker builder",
                self.inner.job.kind,
                std::any::type_name::<T>()
            ))
        })
    }

    /// The client of the store this job runs on, to read jobs or enqueue outside this
    /// attempt's transaction. Follow-ups belong in [`enqueue`](Self::enqueue).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// This job's id.
    pub fn job_id(&self) -> JobId {
        self.inner.job.id
    }

    /// This job's kind.
    pub fn kind(&self) -> &str {
        &self.inner.job.kind
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> u32 {
        self.inner.job.attempt
    }

    /// The attempt limit.
    pub fn max_attempts(&self) -> u32 {
        self.inner.job.max_attempts
    }

    /// The workflow this job belongs to.
    pub fn workflow_id(&self) -> Option<WorkflowId> {
        self.inner.job.workflow_id
    }

    /// The job that staged this one.
    pub fn parent_id(&self) -> Option<JobId> {
        self.inner.job.parent_id
    }

    /// The step name, for a step of a declared workflow.
    pub fn step(&self) -> Option<&str> {
        self.inner.job.step.as_deref()
    }

    /// Whether this attempt should stop: the worker is shutting down past its deadline,
    /// the job was cancelled, or its lease was lost.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Completes when this attempt should stop (see [`is_cancelled`](Self::is_cancelled)).
    pub async fn cancelled(&self) {
        self.inner.cancel.cancelled().await
    }

    /// Stages a follow-up job (`&args` of a typed payload, or a [`JobSpec`](crate::JobSpec)).
    /// It inherits this job's workflow and records this job as its parent; it is written
    /// only when this attempt completes successfully, in the same transaction.
    pub fn enqueue(&self, job: impl IntoJob) -> Result<(), JobError> {
        let spec = job
            .into_job()
            .map_err(|e| JobError::permanent(e.to_string()))?;
        self.stage(spec)
    }

    /// Stages a follow-up job with options that override its kind's defaults.
    pub fn enqueue_with(&self, job: impl IntoJob, options: EnqueueOptions) -> Result<(), JobError> {
        let spec = job
            .into_job()
            .map_err(|e| JobError::permanent(e.to_string()))?;
        self.stage(spec.options(options))
    }

    /// Stages a follow-up that waits for this workflow's signal `name`
    /// ([`Client::signal`](crate::Client::signal)): the dynamic form of
    /// [`Step::wait_for_signal`](crate::Step::wait_for_signal). The workflow runs until
    /// the signal completes it (its payload the output) or `timeout` passes (it ends
    /// dead). Waiting holds no worker slot.
    pub fn wait_for_signal(&self, name: &str, timeout: Duration) -> Result<(), JobError> {
        let wait = SignalWait {
            signal: name.to_string(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        };
        self.stage(wait_job(SIGNAL_KIND, &wait).map_err(|e| JobError::permanent(e.to_string()))?)
    }

    /// Stages a follow-up that completes `delay` after this attempt completes: the
    /// dynamic form of [`Step::sleep`](crate::Step::sleep).
    pub fn sleep(&self, delay: Duration) -> Result<(), JobError> {
        let wait = SleepFor::Delay {
            sleep_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        };
        self.stage(wait_job(SLEEP_KIND, &wait).map_err(|e| JobError::permanent(e.to_string()))?)
    }

    fn stage(&self, spec: JobSpec) -> Result<(), JobError> {
        let mut job = self
            .inner
            .client
            .resolve_job(spec)
            .map_err(|e| JobError::permanent(e.to_string()))?;
        if job.debounce_key.is_some() {
            return Err(JobError::permanent(format!(
                "job kind `{}`: debounce applies to jobs enqueued by a client, not to follow-ups",
                job.kind
            )));
        }
        job.parent_id = Some(self.inner.job.id);
        if job.workflow_id.is_none() {
            job.workflow_id = self.inner.job.workflow_id;
        }
        self.inner
            .staged
            .lock()
            .map_err(|_| JobError::retryable("staged follow-ups are unavailable"))?
            .push(job);
        Ok(())
    }

    /// The outcomes of this step's declared dependencies.
    pub async fn dependencies(&self) -> Result<Vec<StepResult>, JobError> {
        Ok(self
            .inner
            .client
            .store()
            .step_results(self.inner.job.id)
            .await?)
    }

    /// The output of the dependency named `step`, decoded; `None` when it has no output
    /// (it failed, was cancelled, or returned nothing).
    pub async fn output_of<T: DeserializeOwned>(&self, step: &str) -> Result<Option<T>, JobError> {
        let deps = self.dependencies().await?;
        let dep = deps.into_iter().find(|d| d.name == step).ok_or_else(|| {
            JobError::permanent(format!(
                "step `{step}` is not a dependency of job {} ({})",
                self.inner.job.id, self.inner.job.kind
            ))
        })?;
        dep.output
            .map(|o| crate::handler::decode(&format!("the output of step `{step}`"), o))
            .transpose()
    }

    /// Makes this attempt, if it succeeds, wait for new steps of the workflow instead of
    /// completing: the job runs once more when the steps of `join` have ended.
    pub(crate) fn await_steps(&self, steps: Vec<NewStep>, join: Vec<(usize, EdgePolicy)>) {
        if let Ok(mut awaiting) = self.inner.awaiting.lock() {
            *awaiting = Some((steps, join));
        }
    }

    pub(crate) fn take_awaited(&self) -> Option<Awaited> {
        self.inner.awaiting.lock().ok().and_then(|mut a| a.take())
    }

    pub(crate) fn take_staged(&self) -> Vec<NewJob> {
        self.inner
            .staged
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }
}
