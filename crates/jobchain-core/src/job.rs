//! What a job is: its identity, options, states and recorded history.
//!
//! The state machine is drawn in `docs/job-lifecycle.md`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// The store-assigned identity of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for JobId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(JobId)
    }
}

/// The identity of a workflow: a UUID v7, so ids sort by creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkflowId(pub Uuid);

impl WorkflowId {
    /// A new, time-ordered workflow id.
    pub fn new() -> Self {
        WorkflowId(Uuid::now_v7())
    }
}

impl Default for WorkflowId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for WorkflowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for WorkflowId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(WorkflowId)
    }
}

/// Scheduling priority: higher runs first. Any `i16` is allowed; the named levels are
/// `LOW < NORMAL < HIGH < CRITICAL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Priority(pub i16);

impl Priority {
    /// Background work that may wait.
    pub const LOW: Priority = Priority(-10);
    /// The default.
    pub const NORMAL: Priority = Priority(0);
    /// Runs before normal work.
    pub const HIGH: Priority = Priority(10);
    /// Runs before everything else.
    pub const CRITICAL: Priority = Priority(20);
}

impl Default for Priority {
    fn default() -> Self {
        Priority::NORMAL
    }
}

impl FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "low" => Ok(Priority::LOW),
            "normal" => Ok(Priority::NORMAL),
            "high" => Ok(Priority::HIGH),
            "critical" => Ok(Priority::CRITICAL),
            other => other.parse::<i16>().map(Priority).map_err(|_| {
                format!(
                    "unknown priority `{s}`: use low, normal, high, critical or a number from {} to {}",
                    i16::MIN,
                    i16::MAX
                )
            }),
        }
    }
}

/// The state of a job. See `docs/job-lifecycle.md` for the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waits for declared dependencies to settle.
    Blocked,
    /// Ready to be claimed once `run_at` has come.
    Pending,
    /// Claimed by a worker whose lease has not expired.
    Running,
    /// Finished successfully (terminal).
    Completed,
    /// Failed permanently or ran out of attempts: the dead-letter queue (terminal).
    Dead,
    /// Cancelled by a user or because a required dependency failed (terminal).
    Cancelled,
    /// Not run: its condition held, or a required dependency was skipped with a cascade
    /// (terminal; never a failure, and its dependents run as after a completion).
    Skipped,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 7] = [
        JobState::Blocked,
        JobState::Pending,
        JobState::Running,
        JobState::Completed,
        JobState::Dead,
        JobState::Cancelled,
        JobState::Skipped,
    ];

    /// The name used in storage, the API and the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Blocked => "blocked",
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
            JobState::Skipped => "skipped",
        }
    }

    /// Completed, dead, cancelled or skipped: the job will not change again (unless a
    /// dead or cancelled job is retried by hand).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Dead | JobState::Cancelled | JobState::Skipped
        )
    }

    /// Dead or cancelled.
    pub fn is_failure(self) -> bool {
        matches!(self, JobState::Dead | JobState::Cancelled)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown job state `{s}`: use one of blocked, pending, running, completed, dead, cancelled, skipped"
                )
            })
    }
}

/// One failed attempt, as recorded on the job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttemptError {
    /// The attempt number (1-based).
    pub attempt: u32,
    /// When the failure was recorded.
    pub at: DateTime<Utc>,
    /// The error message, including panic text.
    pub message: String,
}

/// A job as stored, with its whole history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Store-assigned id.
    pub id: JobId,
    /// The handler's name.
    pub kind: String,
    /// The named queue.
    pub queue: String,
    /// The JSON payload.
    pub payload: Value,
    /// Higher runs first.
    pub priority: Priority,
    /// Current state.
    pub state: JobState,
    /// Not before this instant.
    pub run_at: DateTime<Utc>,
    /// Attempts started so far; also the fencing token of the current claim.
    pub attempts: u32,
    /// The attempt limit.
    pub max_attempts: u32,
    /// Every failed attempt.
    pub errors: Vec<AttemptError>,
    /// What the handler returned, if anything.
    pub output: Option<Value>,
    /// The workflow this job belongs to.
    pub workflow_id: Option<WorkflowId>,
    /// The step name within a declared workflow.
    pub step: Option<String>,
    /// The job whose handler enqueued this one.
    pub parent_id: Option<JobId>,
    /// Idempotency key.
    pub unique_key: Option<String>,
    /// A failure of this job is tolerated by its workflow.
    pub optional: bool,
    /// The worker holding the current lease.
    pub worker: Option<String>,
    /// Until when the current claim holds.
    pub lease_until: Option<DateTime<Utc>>,
    /// When the job was written.
    pub created_at: DateTime<Utc>,
    /// When the latest attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When the job reached a terminal state.
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it was cancelled, when it was.
    pub cancel_reason: Option<String>,
    /// Its concurrency key.
    #[serde(default)]
    pub concurrency_key: Option<String>,
}

impl Job {
    /// Duration of the latest attempt, or of the wait so far while running.
    pub fn duration(&self) -> Option<chrono::Duration> {
        let start = self.started_at?;
        self.finished_at.map(|end| end - start)
    }

    /// A human name: the step name for declared steps, else the kind.
    pub fn name(&self) -> &str {
        self.step.as_deref().unwrap_or(&self.kind)
    }
}

/// When a new job may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RunAt {
    /// As soon as a worker is free.
    #[default]
    Now,
    /// After this delay, measured by the store's clock at insert.
    After(Duration),
    /// Not before this instant.
    At(DateTime<Utc>),
}

/// Options for a new job; every field has a default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EnqueueOptions {
    /// Queue name (default: the handler's queue, else `default`).
    pub queue: Option<String>,
    /// Priority (default: the handler's, else `NORMAL`).
    pub priority: Option<Priority>,
    /// When it may run.
    pub run_at: RunAt,
    /// Attempt limit (default: the handler's, else 5).
    pub max_attempts: Option<u32>,
    /// Idempotency key: while a job with this key is live, enqueueing again returns it.
    pub unique_key: Option<String>,
    /// Workflow to join.
    pub workflow_id: Option<WorkflowId>,
    /// Its failure is tolerated by its workflow (nice-to-have).
    pub optional: bool,
    /// Collapse enqueues: see [`EnqueueOptions::debounce`].
    #[serde(default)]
    pub debounce: Option<Debounce>,
    /// The job's concurrency key: a kind's `max_running_per_key` limits how many jobs of
    /// one key run at once, and claims are fair across keys.
    #[serde(default)]
    pub concurrency_key: Option<String>,
}

/// Collapses enqueues of one key: while a job with `key` waits pending (not yet started),
/// enqueueing again replaces its payload and moves its start to `window` from now, so one
/// job runs, with the latest payload, once enqueues stop for `window`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Debounce {
    /// What identifies the enqueues to collapse.
    pub key: String,
    /// The quiet time after the last enqueue before the job runs.
    pub window: Duration,
}

impl EnqueueOptions {
    /// Options with every default.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }
    /// Sets the priority.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }
    /// Runs not before `delay` from now.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.run_at = RunAt::After(delay);
        self
    }
    /// Runs not before `at`.
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = RunAt::At(at);
        self
    }
    /// Sets the attempt limit (at least 1).
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = Some(max_attempts);
        self
    }
    /// Sets the idempotency key.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }
    /// Joins a workflow.
    pub fn workflow(mut self, id: WorkflowId) -> Self {
        self.workflow_id = Some(id);
        self
    }
    /// Marks the job nice-to-have: its failure does not fail its workflow.
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }
    /// Debounces on `key` with a quiet time of `window` (see [`Debounce`]); the job runs
    /// `window` after the last enqueue of the key.
    pub fn debounce(mut self, key: impl Into<String>, window: Duration) -> Self {
        self.debounce = Some(Debounce {
            key: key.into(),
            window,
        });
        self
    }
    /// Sets the concurrency key.
    pub fn concurrency_key(mut self, key: impl Into<String>) -> Self {
        self.concurrency_key = Some(key.into());
        self
    }
}

/// Default attempt limit when neither the enqueue nor the handler sets one.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Default queue name.
pub const DEFAULT_QUEUE: &str = "default";

/// A job ready to be written: every option resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// Handler name.
    pub kind: String,
    /// Queue name.
    pub queue: String,
    /// JSON payload.
    pub payload: Value,
    /// Priority.
    pub priority: Priority,
    /// When it may run.
    pub run_at: RunAt,
    /// Attempt limit, at least 1.
    pub max_attempts: u32,
    /// Idempotency key.
    pub unique_key: Option<String>,
    /// Workflow it belongs to.
    pub workflow_id: Option<WorkflowId>,
    /// The job that staged it.
    pub parent_id: Option<JobId>,
    /// Step name in a declared workflow.
    pub step: Option<String>,
    /// Its failure is tolerated by its workflow.
    pub optional: bool,
    /// Collapses with the pending job of the same key (see [`Debounce`]); `run_at` holds
    /// the window.
    #[serde(default)]
    pub debounce_key: Option<String>,
    /// Its concurrency key.
    #[serde(default)]
    pub concurrency_key: Option<String>,
    /// Its condition (workflow steps with dependencies): skipped when it holds.
    #[serde(default)]
    pub skip_if: Option<crate::workflow::condition::SkipIf>,
}

impl NewJob {
    /// A job of `kind` with `payload`, resolving `options` against the defaults.
    pub fn new(kind: impl Into<String>, payload: Value, options: EnqueueOptions) -> Self {
        NewJob {
            kind: kind.into(),
            queue: options.queue.unwrap_or_else(|| DEFAULT_QUEUE.to_string()),
            payload,
            priority: options.priority.unwrap_or_default(),
            run_at: match &options.debounce {
                Some(d) => RunAt::After(d.window),
                None => options.run_at,
            },
            max_attempts: options.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
            unique_key: options.unique_key,
            workflow_id: options.workflow_id,
            parent_id: None,
            step: None,
            optional: options.optional,
            debounce_key: options.debounce.map(|d| d.key),
            concurrency_key: options.concurrency_key,
            skip_if: None,
        }
    }

    /// Checks what a store would otherwise reject, naming the field and the fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.kind.trim().is_empty() {
            return Err("a job's kind must not be empty: name the handler that runs it".into());
        }
        if self.queue.trim().is_empty() {
            return Err(format!(
                "job kind `{}`: the queue name must not be empty (the default queue is `{DEFAULT_QUEUE}`)",
                self.kind
            ));
        }
        if self.max_attempts == 0 {
            return Err(format!(
                "job kind `{}`: max_attempts must be at least 1",
                self.kind
            ));
        }
        check_name("kind", &self.kind)?;
        check_name("queue", &self.queue)?;
        if let Some(key) = &self.unique_key {
            check_key("unique key", &self.kind, key)?;
        }
        if let Some(step) = &self.step {
            check_name("step name", step)?;
        }
        if let Some(key) = &self.concurrency_key {
            check_key("concurrency key", &self.kind, key)?;
        }
        if let Some(key) = &self.debounce_key {
            check_key("debounce key", &self.kind, key)?;
            if self.unique_key.is_some() {
                return Err(format!(
                    "job kind `{}`: a job is either debounced or unique, not both: drop one of the keys",
                    self.kind
                ));
            }
            if self.workflow_id.is_some() || self.step.is_some() || self.parent_id.is_some() {
                return Err(format!(
                    "job kind `{}`: debounce applies to jobs enqueued on their own, not to workflow steps or follow-ups",
                    self.kind
                ));
            }
        }
        check_payload(&self.payload)
            .map_err(|e| format!("the payload of job kind `{}` {e}", shorten(&self.kind)))
    }
}

/// The longest kind, queue, unique key, step or workflow name, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;

/// The deepest nesting of arrays and objects a payload may have: what jobchain can read
/// back (`serde_json`'s own limit), so no stored job is unreadable.
pub const MAX_PAYLOAD_DEPTH: usize = 128;

/// Checks a key of a job (unique, concurrency, debounce): a name that can be stored, and
/// not empty (an empty key is most often an unset variable, and would join every other
/// job given one).
fn check_key(what: &str, kind: &str, key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err(format!(
            "job kind `{kind}`: the {what} is empty: give it a value, or leave the option out for a job without one"
        ));
    }
    check_name(what, key)
}

/// Checks a name: at most [`MAX_NAME_BYTES`], no NUL (PostgreSQL cannot store it).
/// Quotes, `%`, `_` and right-to-left marks are plain characters and stay.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "the {what} `{}` is {} bytes long: at most {MAX_NAME_BYTES}",
            shorten(name),
            name.len()
        ));
    }
    if name.contains('\0') {
        return Err(format!(
            "the {what} `{}` contains a NUL character, which cannot be stored: remove it",
            shorten(name.replace('\0', "\\0").as_str())
        ));
    }
    Ok(())
}

/// Checks a payload's shape without recursion: nesting at most [`MAX_PAYLOAD_DEPTH`],
/// and no NUL character in a string or key (PostgreSQL's `jsonb` cannot store it).
pub fn check_payload(payload: &Value) -> Result<(), String> {
    let mut stack: Vec<(&Value, usize)> = vec![(payload, 0)];
    while let Some((value, depth)) = stack.pop() {
        match value {
            Value::Array(_) | Value::Object(_) if depth >= MAX_PAYLOAD_DEPTH => {
                return Err(format!(
                    "is nested more than {MAX_PAYLOAD_DEPTH} levels deep: flatten it"
                ));
            }
            Value::Array(items) => stack.extend(items.iter().map(|v| (v, depth + 1))),
            Value::Object(map) => {
                for (key, v) in map {
                    if key.contains('\0') {
                        return Err("has a NUL character in a key: remove it".into());
                    }
                    stack.push((v, depth + 1));
                }
            }
            Value::String(text) if text.contains('\0') => {
                return Err(
                    "has a NUL character in a string, which cannot be stored: remove it or encode the data (e.g. base64)"
                        .into(),
                );
            }
            _ => {}
        }
    }
    Ok(())
}

/// At most 60 characters of `text`, for error messages.
fn shorten(text: &str) -> String {
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text.to_string()
    }
}
