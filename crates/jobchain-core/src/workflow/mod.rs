//! Workflows: the record that groups jobs, declared graphs and their tracking.
//!
//! [`graph`] holds the pure dependency logic; [`tree`] builds and renders a workflow's
//! tree from its jobs and edges.

pub mod condition;
pub mod graph;
pub mod tree;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::job::{AttemptError, JobId, JobState, NewJob, WorkflowId};

/// The state of a workflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowState {
    /// Some job is blocked, pending or running.
    Running,
    /// No live job, and every dead or cancelled job is a tolerated failure.
    Completed,
    /// No live job, and some dead or cancelled job is not tolerated.
    Failed,
    /// A user cancelled it.
    Cancelled,
}

impl WorkflowState {
    /// Storage and display name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowState::Running => "running",
            WorkflowState::Completed => "completed",
            WorkflowState::Failed => "failed",
            WorkflowState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for WorkflowState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WorkflowState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            WorkflowState::Running,
            WorkflowState::Completed,
            WorkflowState::Failed,
            WorkflowState::Cancelled,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
        .ok_or_else(|| {
            format!("unknown workflow state `{s}`: use running, completed, failed or cancelled")
        })
    }
}

/// Jobs by state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCounts {
    /// Waiting for dependencies.
    pub blocked: u64,
    /// Ready or scheduled.
    pub pending: u64,
    /// Claimed by a worker.
    pub running: u64,
    /// Finished successfully.
    pub completed: u64,
    /// In the dead-letter queue.
    pub dead: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// Skipped: their condition held (never a failure).
    #[serde(default)]
    pub skipped: u64,
}

impl JobCounts {
    /// Blocked, pending or running.
    pub fn live(&self) -> u64 {
        self.blocked + self.pending + self.running
    }
    /// All jobs.
    pub fn total(&self) -> u64 {
        self.live() + self.completed + self.dead + self.cancelled + self.skipped
    }
    /// Adds one job in `state`.
    pub fn add(&mut self, state: JobState) {
        self.add_n(state, 1);
    }
    /// Adds `n` jobs in `state`.
    pub fn add_n(&mut self, state: JobState, n: u64) {
        *self.slot(state) += n;
    }
    /// The counter of `state`.
    pub fn get(&self, state: JobState) -> u64 {
        match state {
            JobState::Blocked => self.blocked,
            JobState::Pending => self.pending,
            JobState::Running => self.running,
            JobState::Completed => self.completed,
            JobState::Dead => self.dead,
            JobState::Cancelled => self.cancelled,
            JobState::Skipped => self.skipped,
        }
    }
    fn slot(&mut self, state: JobState) -> &mut u64 {
        match state {
            JobState::Blocked => &mut self.blocked,
            JobState::Pending => &mut self.pending,
            JobState::Running => &mut self.running,
            JobState::Completed => &mut self.completed,
            JobState::Dead => &mut self.dead,
            JobState::Cancelled => &mut self.cancelled,
            JobState::Skipped => &mut self.skipped,
        }
    }
}

/// A workflow record, with the counts of its jobs read in the same snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowInfo {
    /// Id.
    pub id: WorkflowId,
    /// Name (the declared name, or the first job's kind).
    pub name: String,
    /// State.
    pub state: WorkflowState,
    /// Idempotency key.
    pub unique_key: Option<String>,
    /// When it was started.
    pub created_at: DateTime<Utc>,
    /// When its last live job settled.
    pub finished_at: Option<DateTime<Utc>>,
    /// Its jobs by state.
    pub counts: JobCounts,
    /// Dead or cancelled jobs whose failure is tolerated.
    pub tolerated_failures: u64,
    /// The step whose output is the workflow's result, when one was named; else the
    /// result is the output of its single sink step, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_step: Option<String>,
}

/// Which workflows to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkflowFilter {
    /// Only this state.
    pub state: Option<WorkflowState>,
    /// Only this name.
    pub name: Option<String>,
    /// At most this many (default 50).
    pub limit: Option<usize>,
    /// Skip this many. Prefer `before`, which costs the same on every page.
    pub offset: usize,
    /// Keyset pagination: only workflows listed after this one (newest first: created
    /// earlier, or at the same instant with a lower id). Pass the last of a page to get
    /// the next one.
    pub before: Option<WorkflowCursor>,
}

/// A position in the workflow listing (see [`WorkflowFilter::before`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkflowCursor {
    /// The workflow's start.
    pub created_at: DateTime<Utc>,
    /// Its id.
    pub id: WorkflowId,
}

impl WorkflowCursor {
    /// The position of a listed workflow.
    pub fn of(info: &WorkflowInfo) -> Self {
        Self {
            created_at: info.created_at,
            id: info.id,
        }
    }
}

/// How a dependent reacts to the outcome of one of its dependencies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgePolicy {
    /// The dependency must complete; if it ends dead or cancelled, the dependent is
    /// cancelled.
    #[default]
    Required,
    /// The dependent runs once the dependency is terminal, whatever the outcome.
    Optional,
}

impl EdgePolicy {
    /// Storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            EdgePolicy::Required => "required",
            EdgePolicy::Optional => "optional",
        }
    }
}

impl FromStr for EdgePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "required" => Ok(EdgePolicy::Required),
            "optional" => Ok(EdgePolicy::Optional),
            _ => Err(format!(
                "unknown edge policy `{s}`: use required or optional"
            )),
        }
    }
}

/// A declared edge: `job` waits for `depends_on`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    /// The dependent job.
    pub job: JobId,
    /// The job it waits for.
    pub depends_on: JobId,
    /// What happens when `depends_on` fails.
    pub policy: EdgePolicy,
}

/// One step of a workflow to write.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewStep {
    /// The job; `job.step` holds the step name and `job.optional` whether a failure is
    /// tolerated (see [`graph::tolerated`]).
    pub job: NewJob,
    /// Dependencies as indexes of earlier entries of [`NewWorkflow::steps`].
    pub depends_on: Vec<(usize, EdgePolicy)>,
}

/// A workflow to write; steps are in topological order (dependencies first).
#[derive(Clone, Debug, PartialEq)]
pub struct NewWorkflow {
    /// Id of the new workflow.
    pub id: WorkflowId,
    /// Name.
    pub name: String,
    /// Idempotency key.
    pub unique_key: Option<String>,
    /// Steps, dependencies before dependents.
    pub steps: Vec<NewStep>,
    /// The step whose output is the workflow's result (`None`: its single sink step).
    pub result_step: Option<String>,
}

/// The result of starting a workflow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkflowStarted {
    /// The workflow's id (the existing one's for a duplicate unique key).
    pub id: WorkflowId,
    /// True when a running workflow held the unique key and nothing was written.
    pub duplicate: bool,
    /// The ids of the steps, in the order given (empty for a duplicate).
    pub jobs: Vec<JobId>,
}

impl StepResult {
    /// A dependency's result from its stored fields: the last error is reported only
    /// while the dependency has not completed (a retried-then-completed step has none).
    pub fn new(
        job: JobId,
        name: String,
        state: JobState,
        output: Option<Value>,
        errors: Vec<AttemptError>,
        policy: EdgePolicy,
    ) -> Self {
        let last_error = if state == JobState::Completed {
            None
        } else {
            errors.into_iter().last()
        };
        StepResult {
            job,
            name,
            state,
            output,
            last_error,
            policy,
        }
    }
}

/// A dependency of a job as its handler sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    /// The dependency's job id.
    pub job: JobId,
    /// Its step name, or its kind when it has none.
    pub name: String,
    /// Its state.
    pub state: JobState,
    /// Its output, when it completed with one.
    pub output: Option<Value>,
    /// Its last error, when it failed.
    pub last_error: Option<AttemptError>,
    /// The edge's policy.
    pub policy: EdgePolicy,
}
