//! SQL on `jobchain_workflows` and `jobchain_dependencies`: starting declared workflows,
//! releasing and cancelling dependents, revival, tracking queries and cleaning.
//!
//! The per-edge rule is [`jobchain_core::workflow::graph::effect`]; this module applies
//! it inside the transaction that settles a job. A workflow's counts are read from its
//! jobs; its state changes only when its last live job settles ([`finish`]) or when a job
//! makes it live again ([`ensure_exists`], [`revive`]).

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use jobchain_core::job::{AttemptError, JobId, JobState};
use jobchain_core::store::CleanReport;
use jobchain_core::workflow::graph::{effect, unsatisfied, Effect};
use jobchain_core::workflow::{
    Dependency, EdgePolicy, JobCounts, NewWorkflow, StepResult, WorkflowFilter, WorkflowInfo,
    WorkflowStarted, WorkflowState,
};
use jobchain_core::{StoreError, WorkflowId};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{duration_ms, job, to_time};
use crate::map_err;

/// The columns [`workflow_from_row`] reads; the counts come from the `jobchain_jobs_workflow`
/// index, in the same statement (one snapshot) as the record.
const WORKFLOW_COLUMNS: &str = "w.id, w.name, w.state, w.unique_key, w.created_at, w.finished_at, \
    (SELECT count(*) FROM jobchain_jobs j WHERE j.workflow_id = w.id AND j.state = 'blocked'), \
    (SELECT count(*) FROM jobchain_jobs j WHERE j.workflow_id = w.id AND j.state = 'pending'), \
    (SELECT count(*) FROM jobchain_jobs j WHERE j.workflow_id = w.id AND j.state = 'running'), \
    (SELECT count(*) FROM jobchain_jobs j WHERE j.workflow_id = w.id AND j.state = 'completed'), \
    (SELECT count(*) FROM jobchain_jobs j WHERE j.workflow_id = w.id AND j.state = 'dead'), \
    (SELECT count(*) FROM jobchain_jobs j WHERE j.workflow_id = w.id AND j.state = 'cancelled'), \
    (SELECT count(*) FROM jobchain_jobs j WHERE j.workflow_id = w.id \
        AND j.state IN ('dead', 'cancelled') AND j.optional = 1)";

/// Marks a running workflow finished if it has no live job left: `cancelled` when a user
/// cancelled it, `failed` when a job whose failure is not tolerated ended dead or
/// cancelled, `completed` otherwise. Called after every change that ends one of its jobs.
const FINISH: &str = "UPDATE jobchain_workflows SET \
        state = CASE WHEN cancel_requested = 1 THEN 'cancelled' \
            WHEN EXISTS (SELECT 1 FROM jobchain_jobs j WHERE j.workflow_id = ?1 \
                AND j.state IN ('dead', 'cancelled') AND j.optional = 0) THEN 'failed' \
            ELSE 'completed' END, \
        finished_at = ?2 \
    WHERE id = ?1 AND state = 'running' AND NOT EXISTS (SELECT 1 FROM jobchain_jobs j \
        WHERE j.workflow_id = ?1 AND j.state IN ('blocked', 'pending', 'running'))";

/// Creates the workflow record if it does not exist (dynamic chaining names it after
/// its first job's kind); a finished workflow that gets a new job runs again.
pub fn ensure_exists(
    conn: &Connection,
    now: i64,
    id: WorkflowId,
    name: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO jobchain_workflows (id, name, created_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (id) DO UPDATE SET state = 'running', finished_at = NULL \
         WHERE jobchain_workflows.state <> 'running'",
    )
    .and_then(|mut s| s.execute(params![id.to_string(), name, now]))
    .map_err(map_err)?;
    Ok(())
}

/// Writes a workflow and all its steps.
pub fn start(
    conn: &Connection,
    now: i64,
    workflow: &NewWorkflow,
) -> Result<WorkflowStarted, StoreError> {
    if workflow.steps.is_empty() {
        return Err(StoreError::Invalid(format!(
            "workflow `{}` has no steps",
            workflow.name
        )));
    }
    if let Some(key) = &workflow.unique_key {
        let existing: Option<String> = conn
            .prepare_cached(
                "SELECT id FROM jobchain_workflows WHERE unique_key = ?1 AND state = 'running'",
            )
            .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
            .map_err(map_err)?;
        if let Some(id) = existing {
            return Ok(WorkflowStarted {
                id: id.parse().map_err(|e| {
                    StoreError::corrupt(format!("workflow id `{id}`: {e}")).caused_by(e)
                })?,
                duplicate: true,
                jobs: Vec::new(),
            });
        }
    }
    conn.prepare_cached(
        "INSERT INTO jobchain_workflows (id, name, unique_key, created_at) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut s| {
        s.execute(params![
            workflow.id.to_string(),
            workflow.name,
            workflow.unique_key,
            now
        ])
    })
    .map_err(map_err)?;
    let mut ids: Vec<JobId> = Vec::with_capacity(workflow.steps.len());
    for (i, step) in workflow.steps.iter().enumerate() {
        if let Some((bad, _)) = step.depends_on.iter().find(|(d, _)| *d >= i) {
            return Err(StoreError::Invalid(format!(
                "step {i} of workflow `{}` depends on step {bad}, which does not come before it",
                workflow.name
            )));
        }
        let mut new_job = step.job.clone();
        new_job.workflow_id = Some(workflow.id);
        new_job.unique_key = None;
        let state = if step.depends_on.is_empty() {
            JobState::Pending
        } else {
            JobState::Blocked
        };
        let id = job::insert(conn, now, &new_job, state, step.depends_on.len())?.id;
        let mut stmt = conn
            .prepare_cached(
                "INSERT INTO jobchain_dependencies (job_id, depends_on, policy) VALUES (?1, ?2, ?3)",
            )
            .map_err(map_err)?;
        for (dep, policy) in &step.depends_on {
            stmt.execute(params![id.0, ids[*dep].0, policy.as_str()])
                .map_err(map_err)?;
        }
        ids.push(id);
    }
    Ok(WorkflowStarted {
        id: workflow.id,
        duplicate: false,
        jobs: ids,
    })
}

/// Applies a settled job's outcome to its blocked dependents, transitively: a satisfied
/// edge lowers the dependent's count of unsettled dependencies (at zero it becomes
/// pending); a failed required dependency cancels the dependent, which cascades.
/// Returns whether a dependent is still live (blocked or pending), which keeps the
/// workflow running.
pub fn settle_dependents(
    conn: &Connection,
    now: i64,
    settled: JobId,
    state: JobState,
) -> Result<bool, StoreError> {
    // Dependents left blocked or made pending; a later cancel in the cascade can still
    // end one of them.
    let mut live: HashSet<JobId> = HashSet::new();
    let mut queue = VecDeque::from([(settled, state)]);
    let mut dependents_of = conn
        .prepare_cached(
            "SELECT d.job_id, d.policy FROM jobchain_dependencies d \
             JOIN jobchain_jobs j ON j.id = d.job_id \
             WHERE d.depends_on = ?1 AND j.state = 'blocked'",
        )
        .map_err(map_err)?;
    let mut satisfy = conn
        .prepare_cached(
            "UPDATE jobchain_jobs SET waiting_for = waiting_for - 1, \
             state = CASE WHEN waiting_for <= 1 THEN 'pending' ELSE state END, \
             run_at = CASE WHEN waiting_for <= 1 AND run_at < ?2 THEN ?2 ELSE run_at END \
             WHERE id = ?1 AND state = 'blocked'",
        )
        .map_err(map_err)?;
    while let Some((job_id, job_state)) = queue.pop_front() {
        let edges = dependents_of
            .query_map([job_id.0], |r| {
                Ok((JobId(r.get(0)?), r.get::<_, String>(1)?))
            })
            .map_err(map_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err)?;
        // The settled job's name, read only if a cancel reason needs it.
        let mut name: Option<String> = None;
        for (dependent, policy) in edges {
            let policy: EdgePolicy = policy.parse().map_err(StoreError::corrupt)?;
            match effect(policy, job_state) {
                Effect::Satisfied => {
                    live.insert(dependent);
                    satisfy
                        .execute(params![dependent.0, now])
                        .map_err(map_err)?;
                }
                Effect::Cancel => {
                    let name = match &name {
                        Some(n) => n.clone(),
                        None => name.insert(job_name(conn, job_id)?).clone(),
                    };
                    let reason =
                        format!("required dependency `{name}` (job {job_id}) ended {job_state}");
                    if job::cancel_live(conn, now, dependent, &reason, Some(job_id))? {
                        live.remove(&dependent);
                        queue.push_back((dependent, JobState::Cancelled));
                    }
                }
                Effect::Wait => {
                    live.insert(dependent);
                }
            }
        }
    }
    Ok(!live.is_empty())
}

fn job_name(conn: &Connection, id: JobId) -> Result<String, StoreError> {
    conn.prepare_cached("SELECT coalesce(step, kind) FROM jobchain_jobs WHERE id = ?1")
        .and_then(|mut s| s.query_row([id.0], |r| r.get(0)))
        .map_err(map_err)
}

/// After a dead job was retried: every job cancelled because of it goes back to
/// `blocked`, with its count of unsettled dependencies recomputed, transitively.
pub fn revive_dependents(conn: &Connection, revived: JobId) -> Result<(), StoreError> {
    let mut queue = VecDeque::from([revived]);
    let mut cancelled_by = conn
        .prepare_cached(
            "SELECT id FROM jobchain_jobs WHERE cancelled_by = ?1 AND state = 'cancelled'",
        )
        .map_err(map_err)?;
    let mut deps_of = conn
        .prepare_cached(
            "SELECT d.policy, j.state FROM jobchain_dependencies d \
             JOIN jobchain_jobs j ON j.id = d.depends_on WHERE d.job_id = ?1",
        )
        .map_err(map_err)?;
    let mut block = conn
        .prepare_cached(
            "UPDATE jobchain_jobs SET state = 'blocked', waiting_for = ?2, cancel_reason = NULL, \
             cancelled_by = NULL, finished_at = NULL WHERE id = ?1",
        )
        .map_err(map_err)?;
    while let Some(id) = queue.pop_front() {
        let dependents = cancelled_by
            .query_map([id.0], |r| Ok(JobId(r.get(0)?)))
            .map_err(map_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err)?;
        for dependent in dependents {
            let edges = deps_of
                .query_map([dependent.0], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(map_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(map_err)?;
            let mut parsed = Vec::with_capacity(edges.len());
            for (policy, state) in edges {
                let policy: EdgePolicy = policy.parse().map_err(StoreError::corrupt)?;
                let state: JobState = state.parse().map_err(StoreError::corrupt)?;
                parsed.push((policy, state));
            }
            let waiting = unsatisfied(parsed) as i64;
            block
                .execute(params![dependent.0, waiting])
                .map_err(map_err)?;
            queue.push_back(dependent);
        }
    }
    Ok(())
}

/// Marks the workflow finished if none of its jobs is live any more.
pub fn finish(conn: &Connection, now: i64, id: WorkflowId) -> Result<(), StoreError> {
    conn.prepare_cached(FINISH)
        .and_then(|mut s| s.execute(params![id.to_string(), now]))
        .map_err(map_err)?;
    Ok(())
}

/// A retried job makes its workflow run again, no longer cancelled.
pub fn revive(conn: &Connection, id: WorkflowId) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE jobchain_workflows SET cancel_requested = 0, state = 'running', \
         finished_at = NULL WHERE id = ?1",
    )
    .and_then(|mut s| s.execute([id.to_string()]))
    .map_err(map_err)?;
    Ok(())
}

fn workflow_from_row(r: &Row<'_>) -> rusqlite::Result<WorkflowInfo> {
    let conversion = |i: usize, e: Box<dyn std::error::Error + Send + Sync>| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e)
    };
    let id: String = r.get(0)?;
    let state: String = r.get(2)?;
    let count = |i: usize| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
    Ok(WorkflowInfo {
        id: id
            .parse()
            .map_err(|e: uuid::Error| conversion(0, e.into()))?,
        name: r.get(1)?,
        state: state
            .parse::<WorkflowState>()
            .map_err(|e| conversion(2, e.into()))?,
        unique_key: r.get(3)?,
        created_at: to_time(r.get(4)?),
        finished_at: r.get::<_, Option<i64>>(5)?.map(to_time),
        counts: JobCounts {
            blocked: count(6)?,
            pending: count(7)?,
            running: count(8)?,
            completed: count(9)?,
            dead: count(10)?,
            cancelled: count(11)?,
        },
        tolerated_failures: count(12)?,
    })
}

/// One workflow.
pub fn get(conn: &Connection, id: WorkflowId) -> Result<Option<WorkflowInfo>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {WORKFLOW_COLUMNS} FROM jobchain_workflows w WHERE w.id = ?1"
    ))
    .and_then(|mut s| s.query_row([id.to_string()], workflow_from_row).optional())
    .map_err(map_err)
}

/// Workflows, newest first.
pub fn list(conn: &Connection, filter: &WorkflowFilter) -> Result<Vec<WorkflowInfo>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {WORKFLOW_COLUMNS} FROM jobchain_workflows w \
             WHERE (?1 IS NULL OR w.state = ?1) AND (?2 IS NULL OR w.name = ?2) \
             ORDER BY w.created_at DESC, w.id DESC LIMIT ?3 OFFSET ?4"
        ))
        .map_err(map_err)?;
    let rows = stmt
        .query_map(
            params![
                filter.state.map(WorkflowState::as_str),
                filter.name,
                filter.limit.unwrap_or(50) as i64,
                filter.offset as i64
            ],
            workflow_from_row,
        )
        .map_err(map_err)?;
    rows.collect::<Result<_, _>>().map_err(map_err)
}

/// The declared edges among a workflow's jobs.
pub fn dependencies(conn: &Connection, id: WorkflowId) -> Result<Vec<Dependency>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT d.job_id, d.depends_on, d.policy FROM jobchain_dependencies d \
             JOIN jobchain_jobs j ON j.id = d.job_id WHERE j.workflow_id = ?1 \
             ORDER BY d.job_id, d.depends_on",
        )
        .map_err(map_err)?;
    let rows = stmt
        .query_map([id.to_string()], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(map_err)?;
    let mut out = Vec::new();
    for row in rows {
        let (job, depends_on, policy) = row.map_err(map_err)?;
        out.push(Dependency {
            job: JobId(job),
            depends_on: JobId(depends_on),
            policy: policy.parse().map_err(StoreError::corrupt)?,
        });
    }
    Ok(out)
}

/// A job's dependencies with their outcomes.
pub fn step_results(conn: &Connection, id: JobId) -> Result<Vec<StepResult>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT j.id, coalesce(j.step, j.kind), j.state, j.output, j.errors, d.policy \
             FROM jobchain_dependencies d JOIN jobchain_jobs j ON j.id = d.depends_on \
             WHERE d.job_id = ?1 ORDER BY j.id",
        )
        .map_err(map_err)?;
    let rows = stmt
        .query_map([id.0], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
            ))
        })
        .map_err(map_err)?;
    let mut out = Vec::new();
    for row in rows {
        let (job, name, state, output, errors, policy) = row.map_err(map_err)?;
        let errors: Vec<AttemptError> = serde_json::from_str(&errors)
            .map_err(|e| StoreError::corrupt(format!("errors of job {job}: {e}")).caused_by(e))?;
        let state: JobState = state.parse().map_err(StoreError::corrupt)?;
        out.push(StepResult::new(
            JobId(job),
            name,
            state,
            output
                .map(|o| serde_json::from_str(&o))
                .transpose()
                .map_err(|e| {
                    StoreError::corrupt(format!("output of job {job}: {e}")).caused_by(e)
                })?,
            errors,
            policy.parse().map_err(StoreError::corrupt)?,
        ));
    }
    Ok(out)
}

/// Cancels a workflow's live jobs and marks it cancelled.
pub fn cancel(conn: &Connection, now: i64, id: WorkflowId) -> Result<WorkflowInfo, StoreError> {
    let info = get(conn, id)?.ok_or_else(|| StoreError::NotFound(format!("workflow {id}")))?;
    if info.state != WorkflowState::Running {
        return Err(StoreError::Conflict(format!(
            "workflow {id} is already {}: only running workflows can be cancelled",
            info.state
        )));
    }
    conn.prepare_cached("UPDATE jobchain_workflows SET cancel_requested = 1 WHERE id = ?1")
        .and_then(|mut s| s.execute([id.to_string()]))
        .map_err(map_err)?;
    conn.prepare_cached(
        "UPDATE jobchain_jobs SET state = 'cancelled', cancel_reason = 'workflow cancelled', \
         finished_at = ?2, lease_until = NULL \
         WHERE workflow_id = ?1 AND state IN ('blocked', 'pending', 'running')",
    )
    .and_then(|mut s| s.execute(params![id.to_string(), now]))
    .map_err(map_err)?;
    finish(conn, now, id)?;
    get(conn, id)?.ok_or_else(|| StoreError::NotFound(format!("workflow {id}")))
}

/// Removes old terminal jobs outside running workflows, and old finished workflows
/// with all their jobs.
pub fn clean(
    conn: &Connection,
    now: i64,
    older_than: Duration,
    limit: usize,
) -> Result<CleanReport, StoreError> {
    let cutoff = now.saturating_sub(duration_ms(older_than));
    let jobs = conn
        .prepare_cached(
            "DELETE FROM jobchain_jobs WHERE id IN (SELECT id FROM jobchain_jobs \
             WHERE workflow_id IS NULL AND state IN ('completed', 'dead', 'cancelled') \
             AND finished_at <= ?1 LIMIT ?2)",
        )
        .and_then(|mut s| s.execute(params![cutoff, limit as i64]))
        .map_err(map_err)?;
    let workflows: Vec<String> = conn
        .prepare_cached(
            "SELECT id FROM jobchain_workflows WHERE state <> 'running' AND finished_at <= ?1 LIMIT ?2",
        )
        .and_then(|mut s| {
            s.query_map(params![cutoff, limit as i64], |r| r.get(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(map_err)?;
    let mut workflow_jobs = 0;
    for id in &workflows {
        workflow_jobs += conn
            .prepare_cached("DELETE FROM jobchain_jobs WHERE workflow_id = ?1")
            .and_then(|mut s| s.execute([id]))
            .map_err(map_err)?;
        conn.prepare_cached("DELETE FROM jobchain_workflows WHERE id = ?1")
            .and_then(|mut s| s.execute([id]))
            .map_err(map_err)?;
    }
    Ok(CleanReport {
        jobs: (jobs + workflow_jobs) as u64,
        workflows: workflows.len() as u64,
    })
}
