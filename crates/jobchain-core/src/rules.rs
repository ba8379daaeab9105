//! What every backend decides the same way, decided once: the preconditions of retry and
//! cancel (with one wording of their errors), how a follow-up inherits from the job that
//! staged it, which workflow records a batch of new jobs needs, a declared workflow's
//! validation and initial states, and which settlements take a store's cheap path.
//!
//! A backend's transactions call these and keep only the SQL of their dialect.

use crate::error::{StoreError, StoreResult};
use crate::job::{Job, JobId, JobState, NewJob, WorkflowId};
use crate::store::Settlement;
use crate::workflow::condition::SkipIf;
use crate::workflow::{EdgePolicy, NewWorkflow, StepResult, WorkflowInfo, WorkflowState};

/// The error for a job id that names no job.
pub fn job_not_found(id: JobId) -> StoreError {
    StoreError::NotFound(format!("job {id}"))
}

/// The error for a workflow id that names no workflow.
pub fn workflow_not_found(id: WorkflowId) -> StoreError {
    StoreError::NotFound(format!("workflow {id}"))
}

/// A job that is to be retried, as read inside the retry's transaction: it must exist and
/// be dead.
pub fn check_retry(id: JobId, job: Option<Job>) -> StoreResult<Job> {
    let job = job.ok_or_else(|| job_not_found(id))?;
    if job.state != JobState::Dead {
        return Err(StoreError::Conflict(format!(
            "job {id} is {}, not dead: only dead jobs can be retried",
            job.state
        )));
    }
    Ok(job)
}

/// A job that is to be cancelled, as read inside the cancel's transaction: it must exist
/// and be live, or dead (cancelling a dead job discards it from the dead-letter queue:
/// it becomes cancelled, and nothing else changes, for its dependents were settled when it
/// died).
pub fn check_cancel(id: JobId, job: Option<Job>) -> StoreResult<Job> {
    let job = job.ok_or_else(|| job_not_found(id))?;
    if job.state.is_terminal() && job.state != JobState::Dead {
        return Err(StoreError::Conflict(format!(
            "job {id} is already {}: only blocked, pending, running or dead jobs can be cancelled",
            job.state
        )));
    }
    Ok(job)
}

/// The cancel reason recorded on a job discarded from the dead-letter queue.
pub fn discard_reason(reason: &str) -> String {
    format!("{reason} (discarded from the dead-letter queue)")
}

/// The error of a discard whose dead job changed state under it.
pub fn discard_raced(id: JobId) -> StoreError {
    StoreError::Conflict(format!(
        "job {id} left the dead-letter queue while it was being cancelled (retried by someone else?): look at it again"
    ))
}

/// A workflow that is to be cancelled: it must exist and be running.
pub fn check_cancel_workflow(
    id: WorkflowId,
    info: Option<WorkflowInfo>,
) -> StoreResult<WorkflowInfo> {
    let info = info.ok_or_else(|| workflow_not_found(id))?;
    if info.state != WorkflowState::Running {
        return Err(StoreError::Conflict(format!(
            "workflow {id} is already {}: only running workflows can be cancelled",
            info.state
        )));
    }
    Ok(info)
}

/// A follow-up as it is written: it records the job that staged it as its parent and,
/// unless it names a workflow of its own, joins that job's workflow.
pub fn follow_up(parent: JobId, parent_workflow: Option<WorkflowId>, job: &NewJob) -> NewJob {
    let mut job = job.clone();
    job.parent_id = Some(parent);
    if job.workflow_id.is_none() {
        job.workflow_id = parent_workflow;
    }
    job
}

/// The workflow records that new jobs need, each once, in the order the jobs name them,
/// with the name a record gets if it has to be created: the kind of its first job
/// (dynamic chaining). Workflows in `skip` (held by the caller) are left out.
pub fn named_workflows<'a>(jobs: &'a [NewJob], skip: &[WorkflowId]) -> Vec<(WorkflowId, &'a str)> {
    let mut named: Vec<(WorkflowId, &str)> = Vec::new();
    for job in jobs {
        if let Some(w) = job.workflow_id {
            if !skip.contains(&w) && !named.iter().any(|(n, _)| *n == w) {
                named.push((w, job.kind.as_str()));
            }
        }
    }
    named
}

/// Validates every job of a batch before anything is written.
pub fn validate_jobs(jobs: &[NewJob]) -> StoreResult<()> {
    for job in jobs {
        job.validate().map_err(StoreError::Invalid)?;
    }
    Ok(())
}

/// One step of a declared workflow, ready to write.
#[derive(Clone, Debug, PartialEq)]
pub struct StepRow {
    /// The job: in the workflow, without a unique key of its own.
    pub job: NewJob,
    /// `pending` without dependencies, `blocked` with.
    pub state: JobState,
    /// How many dependencies it waits for.
    pub waiting_for: usize,
}

/// A declared workflow checked and laid out for writing.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowPlan {
    /// The steps, in the given order.
    pub steps: Vec<StepRow>,
    /// The edges as `(dependent, dependency, policy)`, by index into `steps`, in order of
    /// the dependent.
    pub edges: Vec<(usize, usize, EdgePolicy)>,
}

impl WorkflowPlan {
    /// Checks a workflow (it has steps, each step is a valid job, each dependency comes
    /// before its dependent) and gives each step its initial state.
    pub fn new(workflow: &NewWorkflow) -> StoreResult<Self> {
        if workflow.steps.is_empty() {
            return Err(StoreError::Invalid(format!(
                "workflow `{}` has no steps",
                workflow.name
            )));
        }
        crate::job::check_name("workflow name", &workflow.name).map_err(StoreError::Invalid)?;
        if let Some(key) = &workflow.unique_key {
            crate::job::check_name("workflow unique key", key).map_err(StoreError::Invalid)?;
        }
        let mut steps = Vec::with_capacity(workflow.steps.len());
        let mut edges = Vec::new();
        for (i, step) in workflow.steps.iter().enumerate() {
            step.job.validate().map_err(StoreError::Invalid)?;
            for &(dependency, policy) in &step.depends_on {
                if dependency >= i {
                    return Err(StoreError::Invalid(format!(
                        "step {i} of workflow `{}` depends on step {dependency}, which does not come before it",
                        workflow.name
                    )));
                }
                edges.push((i, dependency, policy));
            }
            let mut job = step.job.clone();
            job.workflow_id = Some(workflow.id);
            job.unique_key = None;
            steps.push(StepRow {
                job,
                state: if step.depends_on.is_empty() {
                    JobState::Pending
                } else {
                    JobState::Blocked
                },
                waiting_for: step.depends_on.len(),
            });
        }
        Ok(WorkflowPlan { steps, edges })
    }
}

/// The new steps of a job that awaits them ([`crate::store::Outcome::Await`]), laid out
/// as a workflow's: in the job's workflow, each with the job as its parent. Fails, naming
/// the job, when the job is outside any workflow or a step is invalid.
pub fn await_plan(
    parent: JobId,
    workflow: Option<WorkflowId>,
    steps: &[crate::workflow::NewStep],
    join: &[(usize, EdgePolicy)],
) -> StoreResult<WorkflowPlan> {
    let Some(workflow) = workflow else {
        return Err(StoreError::Invalid(format!(
            "job {parent} awaits new steps but belongs to no workflow: start it as a workflow step"
        )));
    };
    if let Some(&(i, _)) = join.iter().find(|(i, _)| *i >= steps.len()) {
        return Err(StoreError::Invalid(format!(
            "job {parent} awaits step {i} of {}, which does not exist",
            steps.len()
        )));
    }
    let mut plan = WorkflowPlan::new(&NewWorkflow {
        id: workflow,
        name: format!("steps of job {parent}"),
        unique_key: None,
        steps: steps.to_vec(),
        result_step: None,
    })?;
    for step in &mut plan.steps {
        step.job.parent_id = Some(parent);
    }
    Ok(plan)
}

/// Splits a settle batch into the plain completions ([`Settlement::is_plain_completion`]),
/// which a store may write by its cheap path, and the rest, by index.
pub fn split_settle_batch(settlements: &[Settlement]) -> (Vec<usize>, Vec<usize>) {
    (0..settlements.len()).partition(|&i| settlements[i].is_plain_completion())
}

/// Checks a signal before anything is written: a name that can be stored, and a payload
/// that can (nesting, no NUL).
pub fn check_signal(name: &str, payload: &serde_json::Value) -> StoreResult<()> {
    if name.trim().is_empty() {
        return Err(StoreError::Invalid(
            "a signal needs a name: the one its step waits for".into(),
        ));
    }
    crate::job::check_name("signal name", name).map_err(StoreError::Invalid)?;
    crate::job::check_payload(payload)
        .map_err(|e| StoreError::Invalid(format!("the payload of signal `{name}` {e}")))
}

/// The settlements of a signal: each waiting step (by its current attempt) completes
/// with the signal's payload as its output.
pub fn signal_settlements(
    workflow: WorkflowId,
    waiting: &[(JobId, u32)],
    payload: &serde_json::Value,
) -> Vec<crate::store::Settlement> {
    waiting
        .iter()
        .map(|&(id, attempt)| crate::store::Settlement {
            lease: crate::store::Lease { id, attempt },
            outcome: crate::store::Outcome::Completed {
                output: Some(payload.clone()),
                follow_ups: Vec::new(),
            },
            only_if_expired: false,
            workflow_id: Some(workflow),
        })
        .collect()
}

/// The waiting steps a signal's settlements completed.
pub fn signal_completed(
    waiting: &[(JobId, u32)],
    results: &[crate::store::SettleResult],
) -> Vec<JobId> {
    waiting
        .iter()
        .zip(results)
        .filter(|(_, r)| matches!(r, crate::store::SettleResult::Applied { .. }))
        .map(|((id, _), _)| *id)
        .collect()
}

/// Why a step with condition `skip` is skipped over its dependencies' results, or `None`
/// when it runs.
pub fn skip_reason(skip: &SkipIf, deps: &[StepResult]) -> Option<String> {
    skip.when
        .holds(deps)
        .then(|| format!("skipped: {}", skip.when.describe()))
}

/// The reason recorded on a step skipped because a required dependency was skipped with a
/// cascade.
pub fn skipped_by_dependency(name: &str, dependency: JobId) -> String {
    format!("skipped: required dependency `{name}` (job {dependency}) was skipped")
}

/// The reason recorded on a dependent cancelled because a required dependency failed.
pub fn cancelled_by_dependency(name: &str, dependency: JobId, state: JobState) -> String {
    format!("required dependency `{name}` (job {dependency}) ended {state}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::NewStep;

    fn job(kind: &str) -> NewJob {
        NewJob::new(kind, serde_json::json!({}), Default::default())
    }

    #[test]
    fn a_follow_up_joins_its_parents_workflow_unless_it_names_one() {
        let parent = WorkflowId::new();
        let other = WorkflowId::new();
        let inherited = follow_up(JobId(7), Some(parent), &job("b"));
        assert_eq!(inherited.parent_id, Some(JobId(7)));
        assert_eq!(inherited.workflow_id, Some(parent));
        let mut own = job("c");
        own.workflow_id = Some(other);
        assert_eq!(
            follow_up(JobId(7), Some(parent), &own).workflow_id,
            Some(other)
        );
        assert_eq!(follow_up(JobId(7), None, &job("d")).workflow_id, None);
    }

    #[test]
    fn named_workflows_are_listed_once_by_their_first_jobs_kind() {
        let (a, b) = (WorkflowId::new(), WorkflowId::new());
        let mut jobs = vec![job("first"), job("second"), job("third"), job("plain")];
        jobs[0].workflow_id = Some(a);
        jobs[1].workflow_id = Some(b);
        jobs[2].workflow_id = Some(a);
        assert_eq!(
            named_workflows(&jobs, &[]),
            vec![(a, "first"), (b, "second")]
        );
        assert_eq!(named_workflows(&jobs, &[a]), vec![(b, "second")]);
    }

    #[test]
    fn a_workflow_plan_rejects_forward_edges_and_sets_initial_states() {
        let wf = NewWorkflow {
            id: WorkflowId::new(),
            name: "order".into(),
            unique_key: None,
            steps: vec![
                NewStep {
                    job: job("charge"),
                    depends_on: vec![],
                },
                NewStep {
                    job: job("email"),
                    depends_on: vec![(0, EdgePolicy::Required)],
                },
            ],
            result_step: None,
        };
        let plan = WorkflowPlan::new(&wf).unwrap();
        assert_eq!(plan.steps[0].state, JobState::Pending);
        assert_eq!(plan.steps[1].state, JobState::Blocked);
        assert_eq!(plan.steps[1].waiting_for, 1);
        assert_eq!(plan.steps[1].job.workflow_id, Some(wf.id));
        assert_eq!(plan.edges, vec![(1, 0, EdgePolicy::Required)]);

        let mut bad = wf.clone();
        bad.steps[0].depends_on = vec![(1, EdgePolicy::Optional)];
        let err = WorkflowPlan::new(&bad).unwrap_err().to_string();
        assert!(err.contains("does not come before it"), "{err}");
        bad.steps.clear();
        let err = WorkflowPlan::new(&bad).unwrap_err().to_string();
        assert!(err.contains("has no steps"), "{err}");
    }
}
