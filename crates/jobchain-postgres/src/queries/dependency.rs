//! SQL on `dependencies`: the declared edges of workflows. A leaf: the cascades that
//! walk edges and change jobs are in [`super::ops`].

use jobchain_core::job::{AttemptError, JobId, JobState};
use jobchain_core::workflow::{Dependency, EdgePolicy, StepResult};
use jobchain_core::{StoreError, WorkflowId};
use serde_json::Value;
use sqlx::{PgConnection, Row};

use super::{map_err, Sql};

/// Inserts edges as `(dependent, dependency, policy)`.
pub async fn insert(
    conn: &mut PgConnection,
    sql: &Sql,
    edges: &[(JobId, JobId, EdgePolicy)],
) -> Result<(), StoreError> {
    if edges.is_empty() {
        return Ok(());
    }
    let dependent: Vec<i64> = edges.iter().map(|e| e.0 .0).collect();
    let dependency: Vec<i64> = edges.iter().map(|e| e.1 .0).collect();
    let policy: Vec<&str> = edges.iter().map(|e| e.2.as_str()).collect();
    let statement = sql.get(
        "INSERT INTO __schema__.dependencies (job_id, depends_on, policy) \
         SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[])",
    );
    sqlx::query(statement)
        .bind(dependent)
        .bind(dependency)
        .bind(policy)
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// An edge into a blocked dependent from a job that just settled.
pub struct BlockedEdge {
    /// The blocked job.
    pub dependent: i64,
    /// The settled job.
    pub dependency: i64,
    /// The edge's policy.
    pub policy: EdgePolicy,
    /// The settled job's step name, or its kind.
    pub name: String,
}

/// The edges from `settled` jobs into dependents that are still blocked, by dependent.
pub async fn into_blocked(
    conn: &mut PgConnection,
    sql: &Sql,
    settled: &[i64],
) -> Result<Vec<BlockedEdge>, StoreError> {
    // The dependents' states and the dependencies' names are scalar subqueries, so they
    // stay primary-key probes under any plan: as joins, a generic plan made while the
    // tables were small hashed a sequential scan of all jobs.
    let statement = sql.get(
        "SELECT d.job_id, d.depends_on, d.policy, \
             (SELECT coalesce(p.step, p.kind) FROM __schema__.jobs p WHERE p.id = d.depends_on) \
         FROM __schema__.dependencies d \
         WHERE d.depends_on = ANY($1) \
             AND (SELECT j.state FROM __schema__.jobs j WHERE j.id = d.job_id) = 'blocked' \
         ORDER BY d.job_id",
    );
    let rows = sqlx::query(statement)
        .bind(settled)
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    let mut edges = Vec::with_capacity(rows.len());
    for row in &rows {
        let policy: String = row.try_get(2).map_err(map_err)?;
        edges.push(BlockedEdge {
            dependent: row.try_get(0).map_err(map_err)?,
            dependency: row.try_get(1).map_err(map_err)?,
            policy: policy.parse().map_err(StoreError::corrupt)?,
            name: row.try_get(3).map_err(map_err)?,
        });
    }
    Ok(edges)
}

/// The edges into one job, each with its dependency's state.
pub async fn into_job(
    conn: &mut PgConnection,
    sql: &Sql,
    dependent: i64,
) -> Result<Vec<(EdgePolicy, JobState)>, StoreError> {
    let statement = sql.get(
        "SELECT d.policy, j.state FROM __schema__.dependencies d \
         JOIN __schema__.jobs j ON j.id = d.depends_on WHERE d.job_id = $1",
    );
    let rows: Vec<(String, String)> = sqlx::query_as(statement)
        .bind(dependent)
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    rows.into_iter()
        .map(|(policy, state)| {
            Ok((
                policy.parse().map_err(StoreError::corrupt)?,
                state.parse().map_err(StoreError::corrupt)?,
            ))
        })
        .collect()
}

/// The declared edges among a workflow's jobs.
pub async fn of_workflow(
    conn: &mut PgConnection,
    sql: &Sql,
    id: WorkflowId,
) -> Result<Vec<Dependency>, StoreError> {
    let statement = sql.get(
        "SELECT d.job_id, d.depends_on, d.policy FROM __schema__.dependencies d \
         JOIN __schema__.jobs j ON j.id = d.job_id WHERE j.workflow_id = $1 \
         ORDER BY d.job_id, d.depends_on",
    );
    let rows: Vec<(i64, i64, String)> = sqlx::query_as(statement)
        .bind(id.0)
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    rows.into_iter()
        .map(|(job, depends_on, policy)| {
            Ok(Dependency {
                job: JobId(job),
                depends_on: JobId(depends_on),
                policy: policy.parse().map_err(StoreError::corrupt)?,
            })
        })
        .collect()
}

/// A job's dependencies with their outcomes.
pub async fn step_results(
    conn: &mut PgConnection,
    sql: &Sql,
    id: JobId,
) -> Result<Vec<StepResult>, StoreError> {
    let statement = sql.get(
        "SELECT j.id, coalesce(j.step, j.kind), j.state, j.output, j.errors, d.policy \
         FROM __schema__.dependencies d JOIN __schema__.jobs j ON j.id = d.depends_on \
         WHERE d.job_id = $1 ORDER BY j.id",
    );
    // Planned at every call (an unnamed statement): a plan cached while the jobs table
    // was small joins it by a sequential scan, which a growing table then pays for on
    // every read (W10 read map steps' dependencies in up to 58 ms instead of 0.05).
    let rows = sqlx::query(statement)
        .persistent(false)
        .bind(id.0)
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let job: i64 = r.try_get(0).map_err(map_err)?;
        let state: String = r.try_get(2).map_err(map_err)?;
        let state: JobState = state.parse().map_err(StoreError::corrupt)?;
        let errors: Value = r.try_get(4).map_err(map_err)?;
        let errors: Vec<AttemptError> = serde_json::from_value(errors)
            .map_err(|e| StoreError::corrupt(format!("errors of job {job}: {e}")).caused_by(e))?;
        let policy: String = r.try_get(5).map_err(map_err)?;
        out.push(StepResult::new(
            JobId(job),
            r.try_get(1).map_err(map_err)?,
            state,
            r.try_get(3).map_err(map_err)?,
            errors,
            policy.parse().map_err(StoreError::corrupt)?,
        ));
    }
    Ok(out)
}
