//! The storage seam: every database operation the engine needs, in one trait.
//!
//! A backend implements [`Store`]; the runtime never speaks SQL. Every state change that
//! a worker asks for is *fenced* by a [`Lease`] (job id and attempt number): when the job
//! is no longer `running` under that attempt, the change is rejected and nothing —
//! neither the transition nor the staged follow-ups — is written.
//!
//! Times that decide leases, schedules and back-offs are taken from the store's clock
//! (SQLite: the process clock at write time; PostgreSQL: `now()`), which is why the
//! trait passes durations rather than instants.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::StoreResult;
use crate::job::{Job, JobId, JobState, NewJob, Priority, WorkflowId};
use crate::registry::{PendingKind, UnhandledKind, WorkerRecord, WorkerRegistration};
use crate::workflow::{
    Dependency, NewWorkflow, StepResult, WorkflowFilter, WorkflowInfo, WorkflowStarted,
};

/// What a backend can do beyond the trait's baseline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Commits made by other processes are pushed to [`Store::wait_for_change`] (e.g.
    /// PostgreSQL's `LISTEN/NOTIFY`); without it, the runtime polls [`Store::change_marker`].
    pub push_notifications: bool,
    /// [`Store::settle_and_claim`] claims jobs for the offering worker (otherwise it
    /// settles and claims nothing).
    pub claim_on_settle: bool,
}

/// The result of writing one new job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enqueued {
    /// The job's id: the new job's, or the live job's that holds the same unique key.
    pub id: JobId,
    /// True when a live job with the same unique key existed and nothing was written.
    pub duplicate: bool,
}

/// A worker's request for jobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimRequest {
    /// The queue to claim from.
    pub queue: String,
    /// Only jobs of these kinds are claimed (the kinds the worker has handlers for).
    pub kinds: Vec<String>,
    /// At most this many.
    pub limit: usize,
    /// The claiming worker's id, recorded on the job.
    pub worker: String,
    /// How long the claim holds unless extended by a heartbeat.
    pub lease: Duration,
    /// Limits the store enforces on this claim, exactly, across every process that shares
    /// it: no more running jobs, and no more starts in any window, than they allow.
    pub limits: Vec<ScopeLimit>,
    /// At most this many running jobs per concurrency key, with claims fair across the
    /// keys that have waiting jobs (`kinds` then names one kind). Jobs without a key are
    /// claimed, without this limit, when no keyed job may start.
    pub per_key: Option<u32>,
}

impl ClaimRequest {
    /// A claim without limits.
    pub fn new(
        queue: &str,
        kinds: Vec<String>,
        limit: usize,
        worker: &str,
        lease: Duration,
    ) -> Self {
        ClaimRequest {
            queue: queue.to_string(),
            kinds,
            limit,
            worker: worker.to_string(),
            lease,
            limits: Vec::new(),
            per_key: None,
        }
    }

    /// Whether the store must take the limited path.
    pub fn is_limited(&self) -> bool {
        !self.limits.is_empty() || self.per_key.is_some()
    }

    /// Whether the request claims only jobchain's own kinds, without limits: a claim
    /// the stores answer from their index of those jobs alone.
    pub fn is_builtin_only(&self) -> bool {
        !self.is_limited()
            && !self.kinds.is_empty()
            && self.kinds.iter().all(|k| is_builtin_kind(k))
    }
}

/// What a limit counts: the jobs of one kind, or of one queue.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LimitScope {
    /// Jobs of this kind.
    Kind(String),
    /// Jobs of this queue.
    Queue(String),
}

impl LimitScope {
    /// The scope's name in the store (`kind:NAME`, `queue:NAME`).
    pub fn key(&self) -> String {
        match self {
            LimitScope::Kind(k) => format!("kind:{k}"),
            LimitScope::Queue(q) => format!("queue:{q}"),
        }
    }
}

/// At most `count` handler starts in any window of `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Starts per window.
    pub count: u32,
    /// The window.
    pub period: Duration,
}

impl std::str::FromStr for RateLimit {
    type Err = String;
    /// `100/s`, `10/min`, `5/2s`, `1000/h`.
    fn from_str(text: &str) -> Result<Self, String> {
        let wrong = || {
            format!("`{text}` is not a rate: write COUNT/PERIOD, e.g. 100/s, 10/min, 5/2s, 1000/h")
        };
        let (count, period) = text.trim().split_once('/').ok_or_else(wrong)?;
        let count: u32 = count.trim().parse().map_err(|_| wrong())?;
        let period = match period.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            other => {
                let split = other
                    .find(|c: char| !c.is_ascii_digit())
                    .ok_or_else(wrong)?;
                let (n, unit) = other.split_at(split);
                let n: u64 = n.parse().map_err(|_| wrong())?;
                let unit = match unit {
                    "ms" => Duration::from_millis(1),
                    "s" => Duration::from_secs(1),
                    "m" | "min" => Duration::from_secs(60),
                    "h" => Duration::from_secs(3600),
                    _ => return Err(wrong()),
                };
                unit * u32::try_from(n).map_err(|_| wrong())?
            }
        };
        if count == 0 || period.is_zero() {
            return Err(format!(
                "`{text}`: a rate needs a count and a period above zero"
            ));
        }
        Ok(RateLimit { count, period })
    }
}

/// The limits of one scope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeLimit {
    /// What is counted.
    pub scope: LimitScope,
    /// At most this many running at once.
    pub max_running: Option<u32>,
    /// At most this many starts per window.
    pub rate: Option<RateLimit>,
}

/// A claimed job, with what its handler needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedJob {
    /// Job id.
    pub id: JobId,
    /// Handler name.
    pub kind: String,
    /// Queue it was claimed from.
    pub queue: String,
    /// JSON payload.
    pub payload: Value,
    /// Priority.
    pub priority: Priority,
    /// This attempt's number (1-based); the fencing token of the claim.
    pub attempt: u32,
    /// The attempt limit.
    pub max_attempts: u32,
    /// Workflow the job belongs to.
    pub workflow_id: Option<WorkflowId>,
    /// Job that staged this one.
    pub parent_id: Option<JobId>,
    /// Step name in a declared workflow.
    pub step: Option<String>,
    /// When it became due (its `run_at`): the claim's time minus this is how long a due
    /// job waited for a worker.
    pub run_at: chrono::DateTime<chrono::Utc>,
}

impl ClaimedJob {
    /// The lease this claim holds.
    pub fn lease(&self) -> Lease {
        Lease {
            id: self.id,
            attempt: self.attempt,
        }
    }
}

/// Puts claimed jobs in the order [`Store::claim`] promises: priority (highest first),
/// then `run_at`, then id. Backends whose claim statement returns rows in no particular
/// order (`UPDATE ... RETURNING`) restore it with this.
pub fn in_claim_order(mut jobs: Vec<ClaimedJob>) -> Vec<ClaimedJob> {
    jobs.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(a.run_at.cmp(&b.run_at))
            .then(a.id.cmp(&b.id))
    });
    jobs
}

/// The fencing token of a claim: a job id and the attempt number it was claimed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lease {
    /// The job.
    pub id: JobId,
    /// The attempt number of the claim.
    pub attempt: u32,
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Success: store the output and write the staged follow-ups, in one transaction.
    Completed {
        /// The handler's output.
        output: Option<Value>,
        /// Follow-up jobs staged by the handler; each inherits the workflow and records
        /// the job as its parent.
        follow_ups: Vec<NewJob>,
    },
    /// A failed attempt that will run again after `delay`.
    Retry {
        /// What went wrong.
        error: String,
        /// Back-off before the next attempt.
        delay: Duration,
    },
    /// Not now: the job waits `delay` and runs again without spending an attempt (its
    /// attempt count goes back to what it was before this claim). Records no error.
    Snooze {
        /// How long it waits.
        delay: Duration,
    },
    /// A failed attempt after which the job is dead (permanent error or no attempts left).
    Dead {
        /// What went wrong.
        error: String,
    },
    /// The worker gives the job back unfinished (graceful shutdown): it is `pending`
    /// at once and the attempt does not count against `max_attempts`.
    Released,
    /// The job waits for new steps of its workflow, written in the same transaction:
    /// it is `blocked` again, waiting for the steps of `join` (each with its edge
    /// policy), and runs once more when they have ended, under a new attempt (which does
    /// not count against `max_attempts`). The steps record the job as their parent (the
    /// tree nests them under it). How map steps and sub-workflows run.
    Await {
        /// The new steps, dependencies by index among themselves, dependencies first.
        steps: Vec<crate::workflow::NewStep>,
        /// The steps the job waits for, by index, with the policy of each edge.
        join: Vec<(usize, crate::workflow::EdgePolicy)>,
    },
}

/// One state change asked for by a worker, fenced by its lease.
#[derive(Clone, Debug, PartialEq)]
pub struct Settlement {
    /// The claim being settled.
    pub lease: Lease,
    /// What happened.
    pub outcome: Outcome,
    /// Apply only if the lease has expired (the rescuer), so a job whose worker is
    /// still heart-beating is never taken from it.
    pub only_if_expired: bool,
    /// The job's workflow, as its claim returned it. A store may write the outcomes of
    /// jobs outside workflows by a cheaper path; it checks this, so a wrong value costs
    /// time, never correctness.
    pub workflow_id: Option<WorkflowId>,
}

impl Settlement {
    /// A completion without follow-ups, by its worker, of a job its claim showed outside
    /// any workflow: the common case, which stores may write set-based by a cheaper path
    /// (checking the workflow id, which is only a hint).
    pub fn is_plain_completion(&self) -> bool {
        self.workflow_id.is_none()
            && !self.only_if_expired
            && matches!(&self.outcome, Outcome::Completed { follow_ups, .. } if follow_ups.is_empty())
    }
}

/// The result of one [`Settlement`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SettleResult {
    /// Written. For a completion, the ids of the follow-ups written with it.
    Applied {
        /// Ids of follow-up jobs written.
        follow_ups: Vec<JobId>,
    },
    /// Rejected by the fence: the job is no longer running under that attempt (its
    /// lease expired and it was rescued or claimed again, or it was cancelled).
    Stale,
}

/// A running job whose lease has expired, as found by the rescuer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiredJob {
    /// Its lease.
    pub lease: Lease,
    /// Handler name (the rescuer picks the back-off by kind).
    pub kind: String,
    /// The attempt limit.
    pub max_attempts: u32,
    /// Its workflow.
    pub workflow_id: Option<WorkflowId>,
}

/// Which jobs to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only this state.
    pub state: Option<JobState>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this workflow.
    pub workflow_id: Option<WorkflowId>,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
    /// At most this many (default 100).
    pub limit: Option<usize>,
    /// Skip this many. Prefer `after`, which costs the same on every page.
    pub offset: usize,
    /// Keyset pagination: only jobs after this id in the listing's order (ids above it
    /// oldest first, below it with `newest_first`). Pass the last id of a page to get
    /// the next one.
    pub after: Option<JobId>,
}

/// A queue's record: whether it is paused. A queue without one runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueInfo {
    /// Queue name.
    pub name: String,
    /// No claim takes its jobs while this holds; running jobs finish.
    pub paused: bool,
    /// When it was last paused or resumed.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// Jobs that ended in one minute, for throughput charts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinuteCount {
    /// The minute's start.
    pub minute: chrono::DateTime<chrono::Utc>,
    /// Jobs completed in it.
    pub completed: u64,
    /// Jobs that ended dead in it.
    pub dead: u64,
}

/// What a cleaning pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanReport {
    /// Jobs removed (including the jobs of removed workflows).
    pub jobs: u64,
    /// Workflows removed.
    pub workflows: u64,
}

/// Counts of jobs by state, for a queue or a whole store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Queue name.
    pub queue: String,
    /// Jobs per state.
    pub counts: crate::workflow::JobCounts,
    /// How long the oldest pending job of this queue has existed (filled in by the
    /// client; stores leave it empty).
    pub oldest_pending_age: Option<Duration>,
    /// Pending jobs of this queue that no live worker handles, by kind (filled in by the
    /// client from the worker registry; stores leave it empty).
    pub unhandled: Vec<UnhandledKind>,
    /// Whether the queue is paused (filled in by the client; stores leave it false).
    #[serde(default)]
    pub paused: bool,
}

impl QueueStats {
    /// Folds `(queue, state, count)` rows, grouped by queue, into one entry per queue.
    pub fn from_rows(rows: impl IntoIterator<Item = (String, JobState, u64)>) -> Vec<Self> {
        let mut stats: Vec<QueueStats> = Vec::new();
        for (queue, state, count) in rows {
            match stats.last_mut() {
                Some(last) if last.queue == queue => last.counts.add_n(state, count),
                _ => {
                    let mut entry = QueueStats {
                        queue,
                        counts: crate::workflow::JobCounts::default(),
                        oldest_pending_age: None,
                        unhandled: Vec::new(),
                        paused: false,
                    };
                    entry.counts.add_n(state, count);
                    stats.push(entry);
                }
            }
        }
        stats
    }
}

/// What [`Store::settle_and_claim`] claimed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SettleClaims {
    /// The jobs claimed for the offering worker, in claim order.
    pub claimed: Vec<ClaimedJob>,
    /// Whether these are every job the write made available (pending or due again): then
    /// no other worker of the process needs waking for it.
    pub all_claimed: bool,
}

/// Every database operation jobchain needs. See the module docs for the contract.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short backend name: `sqlite`, `postgres`.
    fn backend(&self) -> &'static str;

    /// What this backend supports beyond the baseline.
    fn capabilities(&self) -> Capabilities;

    /// Writes jobs in one transaction, durable when this returns. A job whose unique key
    /// is held by a live job (blocked, pending or running) is not written; its entry
    /// names the live job.
    async fn enqueue(&self, jobs: Vec<NewJob>) -> StoreResult<Vec<Enqueued>>;

    /// Writes a workflow record and all its steps in one transaction: steps without
    /// dependencies `pending`, the rest `blocked`. With a unique key held by a running
    /// workflow, writes nothing and returns that workflow.
    async fn start_workflow(&self, workflow: NewWorkflow) -> StoreResult<WorkflowStarted>;

    /// Claims up to `limit` due pending jobs of the given kinds from one queue, ordered by
    /// priority (highest first), then `run_at`, then id; each becomes `running` with its
    /// attempt count raised by one and a lease.
    async fn claim(&self, request: ClaimRequest) -> StoreResult<Vec<ClaimedJob>>;

    /// Applies settlements, fenced by their leases; a settlement that reaches a terminal
    /// state also releases or cancels the job's dependents, in the same transaction.
    async fn settle(&self, settlements: Vec<Settlement>) -> StoreResult<Vec<SettleResult>>;

    /// Settles as [`Store::settle`] does and claims for `offer.worker`, in the
    /// same write, up to `offer.limit` of the jobs the batch made pending (follow-ups and
    /// released dependents) that are in `offer.queue` with a kind of `offer.kinds`, as a
    /// claim would take them: due, the queue not paused, and only if no other due pending
    /// job of that queue and those kinds comes before them in claim order. The worker runs
    /// them without claiming. `offer.limits` must be empty: kinds and queues with limits are
    /// claimed through [`Store::claim`], which enforces them. A store may claim fewer, or
    /// none (the default: a settle, then nothing claimed).
    async fn settle_and_claim(
        &self,
        settlements: Vec<Settlement>,
        offer: ClaimRequest,
    ) -> StoreResult<(Vec<SettleResult>, SettleClaims)> {
        let _ = offer;
        let results = self.settle(settlements).await?;
        Ok((results, SettleClaims::default()))
    }

    /// Extends the leases that are still held by `lease` from now; returns the jobs
    /// whose lease is no longer held (rescued, cancelled), whose handlers should stop.
    async fn heartbeat(&self, leases: Vec<Lease>, lease: Duration) -> StoreResult<Vec<JobId>>;

    /// Running jobs whose lease has expired, at most `limit`.
    async fn expired(&self, limit: usize) -> StoreResult<Vec<ExpiredJob>>;

    /// Time until the earliest pending job whose `run_at` lies in the future becomes due,
    /// by the store's clock; `None` when there is none.
    async fn next_scheduled(&self) -> StoreResult<Option<Duration>>;

    /// A number that changes when another process commits; polled by idle workers on
    /// backends without push notifications.
    async fn change_marker(&self) -> StoreResult<u64>;

    /// Waits up to `timeout` for a notification that jobs became available from another
    /// process; returns whether one came. Backends without push notifications return
    /// `Ok(false)` at once.
    async fn wait_for_change(&self, _timeout: Duration) -> StoreResult<bool> {
        Ok(false)
    }

    /// One job with its whole history.
    async fn job(&self, id: JobId) -> StoreResult<Option<Job>>;

    /// Jobs matching a filter, ordered by id.
    async fn list_jobs(&self, filter: JobFilter) -> StoreResult<Vec<Job>>;

    /// Job counts by queue and state.
    async fn queue_stats(&self) -> StoreResult<Vec<QueueStats>>;

    /// Jobs completed and ended dead per minute since `since` (a range read of the
    /// finish-time index), oldest minute first; minutes without any are left out.
    async fn throughput(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<Vec<MinuteCount>>;

    /// Retries a dead job: `pending` at once with a fresh budget of attempts; its
    /// dependents that were cancelled because of it go back to `blocked`, transitively.
    async fn retry(&self, id: JobId) -> StoreResult<Job>;

    /// Cancels a live job (a running job's worker loses its lease) and cascades to its
    /// dependents by their edge policies.
    async fn cancel(&self, id: JobId, reason: &str) -> StoreResult<Job>;

    /// One workflow record with its counts.
    async fn workflow(&self, id: WorkflowId) -> StoreResult<Option<WorkflowInfo>>;

    /// Workflows matching a filter, newest first.
    async fn list_workflows(&self, filter: WorkflowFilter) -> StoreResult<Vec<WorkflowInfo>>;

    /// The declared dependency edges among a workflow's jobs.
    async fn dependencies(&self, id: WorkflowId) -> StoreResult<Vec<Dependency>>;

    /// The dependencies of a job, with their states, outputs and last errors.
    async fn step_results(&self, job: JobId) -> StoreResult<Vec<StepResult>>;

    /// Cancels every live job of a workflow and marks it cancelled.
    async fn cancel_workflow(&self, id: WorkflowId) -> StoreResult<WorkflowInfo>;

    /// Removes terminal jobs that finished more than `older_than` ago and belong to no
    /// running workflow, and finished workflows with all their jobs.
    async fn clean(&self, older_than: Duration, limit: usize) -> StoreResult<CleanReport>;

    /// Deletes up to `limit` dead jobs outside workflows that died more than
    /// `older_than` ago, only of `kind` when given; returns how many. (Dead jobs of
    /// workflows leave with their workflow, by retention: deleting one alone would
    /// rewrite the workflow's history.)
    async fn purge_dead(
        &self,
        older_than: Duration,
        kind: Option<&str>,
        limit: usize,
    ) -> StoreResult<u64>;

    /// Records a worker, or refreshes its record: `last_seen` becomes now and the record
    /// counts as live for `ttl` from now (the store's clock).
    async fn register_worker(&self, worker: WorkerRegistration) -> StoreResult<()>;

    /// Removes a worker's record (graceful shutdown). Removing an unknown id is not an
    /// error.
    async fn deregister_worker(&self, id: &str) -> StoreResult<()>;

    /// The live workers (records not yet expired), ordered by id.
    async fn workers(&self) -> StoreResult<Vec<WorkerRecord>>;

    /// Deletes expired worker records; returns how many.
    async fn expire_workers(&self) -> StoreResult<u64>;

    /// Pending jobs grouped by queue and kind, with the creation time of the oldest,
    /// ordered by queue and kind.
    async fn pending_kinds(&self) -> StoreResult<Vec<PendingKind>>;

    /// Pauses (`paused`) or resumes a queue, in the store, for every process: from the
    /// commit on, no claim takes its jobs until it is resumed; running jobs finish.
    async fn set_queue_paused(&self, queue: &str, paused: bool) -> StoreResult<QueueInfo>;

    /// Every queue that has a record (was paused or resumed once), by name.
    async fn queue_records(&self) -> StoreResult<Vec<QueueInfo>>;

    /// The last tick of the periodic job `name` that some worker took, if any.
    async fn periodic_last(&self, name: &str)
        -> StoreResult<Option<chrono::DateTime<chrono::Utc>>>;

    /// Takes tick `tick` of the periodic job `name` for this caller: if no worker took it
    /// or a later one yet, records it as the last tick and writes `job` (if given) in the
    /// same transaction, so each tick has exactly one job however many workers race;
    /// returns the written job, or `None` when the tick was already taken (or no job was
    /// given).
    async fn take_tick(
        &self,
        name: &str,
        tick: chrono::DateTime<chrono::Utc>,
        job: Option<NewJob>,
    ) -> StoreResult<Option<Enqueued>>;

    /// Sends signal `name` with `payload` to a workflow, in one transaction: the first
    /// signal of a name is kept (a step that waits for it and is reached later consumes
    /// it); every step of the workflow waiting for it now (pending or running, kind
    /// [`SIGNAL_KIND`]) completes with `payload` as its output, its dependents released as
    /// by any completion. A later signal of the same name changes nothing but is counted.
    /// An unknown workflow is `NotFound` (a typo would otherwise be kept forever); a bad
    /// name or payload is `Invalid` ([`crate::rules::check_signal`]); nothing is written
    /// then.
    async fn send_signal(
        &self,
        workflow: WorkflowId,
        name: &str,
        payload: Value,
    ) -> StoreResult<SignalReceipt>;

    /// The payload of the first signal `name` a workflow received, if any.
    async fn received_signal(&self, workflow: WorkflowId, name: &str)
        -> StoreResult<Option<Value>>;

    /// The instant the waiting job `job` is due: `proposed` the first time it is asked
    /// (kept from then on), the kept instant after.
    async fn timer(
        &self,
        job: JobId,
        proposed: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<chrono::DateTime<chrono::Utc>>;

    /// Flushes pending writes and closes connections; later calls fail with `Closed`.
    async fn close(&self);
}

/// How jobchain's own kinds begin (timers, signals, maps, sub-workflows: steps every
/// worker runs itself). The stores keep an index of their waiting jobs apart, so that a
/// claim of them alone does not step over a queue's backlog of other kinds.
pub const BUILTIN_KIND_PREFIX: &str = "jobchain.";

/// Whether `kind` is one of jobchain's own (see [`BUILTIN_KIND_PREFIX`]).
pub fn is_builtin_kind(kind: &str) -> bool {
    kind.starts_with(BUILTIN_KIND_PREFIX)
}

/// The kind of a step that completes when a signal arrives (payload [`SignalWait`]); the
/// worker runs it itself.
pub const SIGNAL_KIND: &str = "jobchain.signal";

/// The kind of a step that completes at a time or after a delay (payload [`SleepFor`]);
/// the worker runs it itself.
pub const SLEEP_KIND: &str = "jobchain.sleep";

/// The payload of a [`SIGNAL_KIND`] step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalWait {
    /// The signal's name.
    pub signal: String,
    /// How long the step waits once reached, in milliseconds; then it ends dead.
    pub timeout_ms: u64,
}

/// The payload of a [`SLEEP_KIND`] step: a delay from when the step is reached, or an
/// instant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SleepFor {
    /// This long after the step is reached.
    Delay {
        /// Milliseconds.
        sleep_ms: u64,
    },
    /// Until this instant.
    Until {
        /// The instant.
        until: chrono::DateTime<chrono::Utc>,
    },
}

/// What [`Store::send_signal`] did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignalReceipt {
    /// True for the first signal of its name in the workflow; false for a later one,
    /// which changed nothing.
    pub accepted: bool,
    /// When the first signal of the name arrived.
    pub received_at: chrono::DateTime<chrono::Utc>,
    /// How many later signals of the name arrived.
    pub repeats: u64,
    /// The waiting steps this signal completed (empty when none was waiting yet, or
    /// for a later signal).
    pub completed: Vec<JobId>,
}
