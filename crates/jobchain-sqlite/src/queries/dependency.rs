//! SQL on `jobchain_dependencies`: the declared edges of workflows. A leaf: the cascades
//! that walk edges and change jobs are in [`super::ops`].

use jobchain_core::job::{AttemptError, JobId, JobState};
use jobchain_core::workflow::{Dependency, EdgePolicy, StepResult};
use jobchain_core::{StoreError, WorkflowId};
use rusqlite::{params, Connection};

use crate::map_err;

/// Inserts the edges of one dependent.
pub fn insert(
    conn: &Connection,
    dependent: JobId,
    dependencies: impl IntoIterator<Item = (JobId, EdgePolicy)>,
) -> Result<(), StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO jobchain_dependencies (job_id, depends_on, policy) VALUES (?1, ?2, ?3)",
        )
        .map_err(map_err)?;
    for (dependency, policy) in dependencies {
        stmt.execute(params![dependent.0, dependency.0, policy.as_str()])
            .map_err(map_err)?;
    }
    Ok(())
}

/// The edges from `settled` into dependents that are still blocked.
pub fn into_blocked(
    conn: &Connection,
    settled: JobId,
) -> Result<Vec<(JobId, EdgePolicy)>, StoreError> {
    let edges = conn
        .prepare_cached(
            "SELECT d.job_id, d.policy FROM jobchain_dependencies d \
             JOIN jobchain_jobs j ON j.id = d.job_id \
             WHERE d.depends_on = ?1 AND j.state = 'blocked'",
        )
        .and_then(|mut s| {
            s.query_map([settled.0], |r| {
                Ok((JobId(r.get(0)?), r.get::<_, String>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(map_err)?;
    edges
        .into_iter()
        .map(|(dependent, policy)| Ok((dependent, policy.parse().map_err(StoreError::corrupt)?)))
        .collect()
}

/// The edges into one job, each with its dependency's state.
pub fn into_job(
    conn: &Connection,
    dependent: JobId,
) -> Result<Vec<(EdgePolicy, JobState)>, StoreError> {
    let edges = conn
        .prepare_cached(
            "SELECT d.policy, j.state FROM jobchain_dependencies d \
             JOIN jobchain_jobs j ON j.id = d.depends_on WHERE d.job_id = ?1",
        )
        .and_then(|mut s| {
            s.query_map([dependent.0], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(map_err)?;
    edges
        .into_iter()
        .map(|(policy, state)| {
            Ok((
                policy.parse().map_err(StoreError::corrupt)?,
                state.parse().map_err(StoreError::corrupt)?,
            ))
        })
        .collect()
}

/// The declared edges among a workflow's jobs.
pub fn of_workflow(conn: &Connection, id: WorkflowId) -> Result<Vec<Dependency>, StoreError> {
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
