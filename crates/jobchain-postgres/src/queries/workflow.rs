//! SQL on `workflows` and `dependencies`: starting declared workflows, releasing and
//! cancelling dependents (set-based, level by level), revival, tracking and cleaning.
//!
//! The per-edge rule is [`jobchain_core::workflow::graph::effect`]. A workflow's counts
//! are read from its jobs; its state changes only when its last live job settles
//! ([`finish`], under the workflow's row lock, which every change that ends a workflow job
//! takes first) or when a job makes it live again ([`ensure_exist`], [`revive`]).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jobchain_core::job::{AttemptError, JobId, JobState, NewJob};
use jobchain_core::store::CleanReport;
use jobchain_core::workflow::graph::{effect, unsatisfied, Effect};
use jobchain_core::workflow::{
    Dependency, EdgePolicy, JobCounts, NewWorkflow, StepResult, WorkflowFilter, WorkflowInfo,
    WorkflowStarted, WorkflowState,
};
use jobchain_core::{StoreError, WorkflowId};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::job::Columns;
use super::{count, map_err, Sql};

/// Creates the workflow records that the jobs name and that do not exist yet (dynamic
/// chaining names a workflow after its first job's kind); a finished workflow that gets
/// a new job runs again. Workflows in `locked` are running and locked by the caller.
pub async fn ensure_exist(
    conn: &mut PgConnection,
    sql: &Sql,
    jobs: &[NewJob],
    locked: &[Uuid],
) -> Result<(), StoreError> {
    let mut ids = Vec::new();
    let mut names = Vec::new();
    for job in jobs {
        if let Some(w) = job.workflow_id {
            if !ids.contains(&w.0) && !locked.contains(&w.0) {
                ids.push(w.0);
                names.push(job.kind.clone());
            }
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    let statement = sql.get(
        "INSERT INTO __schema__.workflows AS w (id, name) \
         SELECT * FROM unnest($1::uuid[], $2::text[]) ORDER BY 1 \
         ON CONFLICT (id) DO UPDATE SET state = 'running', finished_at = NULL \
         WHERE w.state <> 'running'",
    );
    sqlx::query(statement)
        .bind(ids)
        .bind(names)
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// Writes a workflow and all its steps: the jobs in one statement, the edges in another.
pub async fn start(
    conn: &mut PgConnection,
    sql: &Sql,
    workflow: &NewWorkflow,
) -> Result<WorkflowStarted, StoreError> {
    if workflow.steps.is_empty() {
        return Err(StoreError::Invalid(format!(
            "workflow `{}` has no steps",
            workflow.name
        )));
    }
    for (i, step) in workflow.steps.iter().enumerate() {
        step.job.validate().map_err(StoreError::Invalid)?;
        if let Some((bad, _)) = step.depends_on.iter().find(|(d, _)| *d >= i) {
            return Err(StoreError::Invalid(format!(
                "step {i} of workflow `{}` depends on step {bad}, which does not come before it",
                workflow.name
            )));
        }
    }
    let statement = sql.get(
        "INSERT INTO __schema__.workflows (id, name, unique_key) VALUES ($1, $2, $3) \
         ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state = 'running' DO NOTHING \
         RETURNING id",
    );
    let inserted: Option<Uuid> = sqlx::query_scalar(statement)
        .bind(workflow.id.0)
        .bind(&workflow.name)
        .bind(&workflow.unique_key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_err)?;
    if inserted.is_none() {
        let statement = sql
            .get("SELECT id FROM __schema__.workflows WHERE unique_key = $1 AND state = 'running'");
        let existing: Uuid = sqlx::query_scalar(statement)
            .bind(&workflow.unique_key)
            .fetch_one(&mut *conn)
            .await
            .map_err(map_err)?;
        return Ok(WorkflowStarted {
            id: WorkflowId(existing),
            duplicate: true,
            jobs: Vec::new(),
        });
    }
    let mut columns = Columns::default();
    for step in &workflow.steps {
        let mut job = step.job.clone();
        job.workflow_id = Some(workflow.id);
        job.unique_key = None;
        let state = if step.depends_on.is_empty() {
            JobState::Pending
        } else {
            JobState::Blocked
        };
        columns.push(&job, state, step.depends_on.len())?;
    }
    let ids = columns.insert(&mut *conn, sql).await?;
    let (mut dependent, mut dependency, mut policy) = (Vec::new(), Vec::new(), Vec::new());
    for (i, step) in workflow.steps.iter().enumerate() {
        for (d, p) in &step.depends_on {
            dependent.push(ids[i].0);
            dependency.push(ids[*d].0);
            policy.push(p.as_str().to_string());
        }
    }
    if !dependent.is_empty() {
        let statement = sql.get(
            "INSERT INTO __schema__.dependencies (job_id, depends_on, policy) \
             SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[])",
        );
        sqlx::query(statement)
            .bind(dependent)
            .bind(dependency)
            .bind(policy)
            .execute(&mut *conn)
            .await
            .map_err(map_err)?;
    }
    Ok(WorkflowStarted {
        id: workflow.id,
        duplicate: false,
        jobs: ids,
    })
}

/// Applies settled jobs' outcomes to their blocked dependents, level by level: satisfied
/// edges lower each dependent's count of unsettled dependencies (at zero it becomes
/// pending); a failed required dependency cancels the dependent, which cascades.
pub async fn settle_dependents(
    conn: &mut PgConnection,
    sql: &Sql,
    mut settled: Vec<(JobId, JobState)>,
) -> Result<(), StoreError> {
    while !settled.is_empty() {
        let states: HashMap<i64, JobState> = settled.iter().map(|(id, s)| (id.0, *s)).collect();
        let ids: Vec<i64> = states.keys().copied().collect();
        // The dependents' states and the dependencies' names are scalar subqueries, so
        // they stay primary-key probes under any plan: as joins, a generic plan made
        // while the tables were small hashed a sequential scan of all jobs.
        let statement = sql.get(
            "SELECT d.job_id, d.depends_on, d.policy, \
                 (SELECT coalesce(p.step, p.kind) FROM __schema__.jobs p WHERE p.id = d.depends_on) \
             FROM __schema__.dependencies d \
             WHERE d.depends_on = ANY($1) \
                 AND (SELECT j.state FROM __schema__.jobs j WHERE j.id = d.job_id) = 'blocked' \
             ORDER BY d.job_id",
        );
        let rows = sqlx::query(statement)
            .bind(ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(map_err)?;
        let mut satisfied: BTreeMap<i64, i32> = BTreeMap::new();
        let mut cancels: BTreeMap<i64, (String, i64)> = BTreeMap::new();
        for row in &rows {
            let dependent: i64 = row.try_get(0).map_err(map_err)?;
            let dependency: i64 = row.try_get(1).map_err(map_err)?;
            let policy: String = row.try_get(2).map_err(map_err)?;
            let name: String = row.try_get(3).map_err(map_err)?;
            let policy: EdgePolicy = policy.parse().map_err(StoreError::corrupt)?;
            let state = states
                .get(&dependency)
                .copied()
                .unwrap_or(JobState::Pending);
            match effect(policy, state) {
                Effect::Satisfied => *satisfied.entry(dependent).or_default() += 1,
                Effect::Cancel => {
                    cancels.entry(dependent).or_insert_with(|| {
                        (
                            format!(
                                "required dependency `{name}` (job {dependency}) ended {state}"
                            ),
                            dependency,
                        )
                    });
                }
                Effect::Wait => {}
            }
        }
        settled = Vec::new();
        if !cancels.is_empty() {
            let ids: Vec<i64> = cancels.keys().copied().collect();
            let reasons: Vec<String> = cancels.values().map(|(r, _)| r.clone()).collect();
            let by: Vec<i64> = cancels.values().map(|(_, b)| *b).collect();
            let statement = sql.get(
                "UPDATE __schema__.jobs j SET state = 'cancelled', cancel_reason = t.reason, \
                 cancelled_by = t.by, finished_at = now(), lease_until = NULL \
                 FROM unnest($1::int8[], $2::text[], $3::int8[]) AS t(id, reason, by) \
                 WHERE j.id = t.id AND j.state IN ('blocked', 'pending', 'running') \
                 RETURNING j.id",
            );
            let cancelled: Vec<i64> = sqlx::query_scalar(statement)
                .bind(ids)
                .bind(reasons)
                .bind(by)
                .fetch_all(&mut *conn)
                .await
                .map_err(map_err)?;
            settled = cancelled
                .into_iter()
                .map(|id| (JobId(id), JobState::Cancelled))
                .collect();
        }
        if !satisfied.is_empty() {
            let ids: Vec<i64> = satisfied.keys().copied().collect();
            let counts: Vec<i32> = satisfied.values().copied().collect();
            let statement = sql.get(
                "UPDATE __schema__.jobs j SET waiting_for = j.waiting_for - t.n, \
                 state = CASE WHEN j.waiting_for - t.n <= 0 THEN 'pending' ELSE j.state END, \
                 run_at = CASE WHEN j.waiting_for - t.n <= 0 THEN greatest(j.run_at, now()) \
                     ELSE j.run_at END \
                 FROM unnest($1::int8[], $2::int4[]) AS t(id, n) \
                 WHERE j.id = t.id AND j.state = 'blocked'",
            );
            sqlx::query(statement)
                .bind(ids)
                .bind(counts)
                .execute(&mut *conn)
                .await
                .map_err(map_err)?;
        }
    }
    Ok(())
}

/// After a dead job was retried: every job cancelled because of it goes back to
/// `blocked`, with its count of unsettled dependencies recomputed, transitively.
pub async fn revive_dependents(
    conn: &mut PgConnection,
    sql: &Sql,
    revived: JobId,
) -> Result<(), StoreError> {
    let mut level = vec![revived.0];
    while !level.is_empty() {
        let statement = sql.get(
            "SELECT id FROM __schema__.jobs WHERE cancelled_by = ANY($1) AND state = 'cancelled'",
        );
        let dependents: Vec<i64> = sqlx::query_scalar(statement)
            .bind(&level)
            .fetch_all(&mut *conn)
            .await
            .map_err(map_err)?;
        for dependent in &dependents {
            let statement = sql.get(
                "SELECT d.policy, j.state FROM __schema__.dependencies d \
                 JOIN __schema__.jobs j ON j.id = d.depends_on WHERE d.job_id = $1",
            );
            let rows = sqlx::query(statement)
                .bind(dependent)
                .fetch_all(&mut *conn)
                .await
                .map_err(map_err)?;
            let mut edges = Vec::with_capacity(rows.len());
            for row in &rows {
                let policy: String = row.try_get(0).map_err(map_err)?;
                let state: String = row.try_get(1).map_err(map_err)?;
                let policy: EdgePolicy = policy.parse().map_err(StoreError::corrupt)?;
                let state: JobState = state.parse().map_err(StoreError::corrupt)?;
                edges.push((policy, state));
            }
            let waiting = i32::try_from(unsatisfied(edges)).unwrap_or(i32::MAX);
            let statement = sql.get(
                "UPDATE __schema__.jobs SET state = 'blocked', waiting_for = $2, \
                 cancel_reason = NULL, cancelled_by = NULL, finished_at = NULL WHERE id = $1",
            );
            sqlx::query(statement)
                .bind(dependent)
                .bind(waiting)
                .execute(&mut *conn)
                .await
                .map_err(map_err)?;
        }
        level = dependents;
    }
    Ok(())
}

/// Marks running workflows finished if none of their jobs is live any more: `cancelled`
/// when a user cancelled it, `failed` when a job whose failure is not tolerated ended dead
/// or cancelled, `completed` otherwise. The caller holds the workflows' row locks, taken
/// before it ended their jobs, so concurrent settles of a workflow's last jobs see each
/// other's commits and exactly one of them finishes it.
///
/// The live-job test is a scalar subquery, not `NOT EXISTS`: PostgreSQL never turns it into
/// a join, so it stays an index probe per workflow under any (generic) plan.
pub async fn finish(conn: &mut PgConnection, sql: &Sql, ids: &[Uuid]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let statement = sql.get(
        "UPDATE __schema__.workflows w SET \
             state = CASE WHEN w.cancel_requested THEN 'cancelled' \
                 WHEN EXISTS (SELECT 1 FROM __schema__.jobs j WHERE j.workflow_id = w.id \
                     AND j.state IN ('dead', 'cancelled') AND NOT j.optional) THEN 'failed' \
                 ELSE 'completed' END, \
             finished_at = now() \
         WHERE w.id = ANY($1) AND w.state = 'running' \
             AND (SELECT 1 FROM __schema__.jobs j WHERE j.workflow_id = w.id \
                 AND j.state IN ('blocked', 'pending', 'running') LIMIT 1) IS NULL",
    );
    sqlx::query(statement)
        .bind(ids)
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// Locks workflow rows, in id order (the order every statement takes them in).
pub async fn lock(conn: &mut PgConnection, sql: &Sql, ids: &[Uuid]) -> Result<(), StoreError> {
    let statement =
        sql.get("SELECT 1 FROM __schema__.workflows WHERE id = ANY($1) ORDER BY id FOR UPDATE");
    sqlx::query(statement)
        .bind(ids)
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// A retried job makes its workflow run again, no longer cancelled.
pub async fn revive(conn: &mut PgConnection, sql: &Sql, id: WorkflowId) -> Result<(), StoreError> {
    let statement = sql.get(
        "UPDATE __schema__.workflows SET cancel_requested = false, state = 'running', \
         finished_at = NULL WHERE id = $1",
    );
    sqlx::query(statement)
        .bind(id.0)
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

fn workflow_from_row(r: &PgRow) -> Result<WorkflowInfo, StoreError> {
    let read = || -> Result<WorkflowInfo, sqlx::Error> {
        let state: String = r.try_get(2)?;
        Ok(WorkflowInfo {
            id: WorkflowId(r.try_get(0)?),
            name: r.try_get(1)?,
            state: state
                .parse::<WorkflowState>()
                .map_err(|e| sqlx::Error::Decode(e.into()))?,
            unique_key: r.try_get(3)?,
            created_at: r.try_get(4)?,
            finished_at: r.try_get(5)?,
            counts: JobCounts {
                blocked: count(r.try_get(6)?),
                pending: count(r.try_get(7)?),
                running: count(r.try_get(8)?),
                completed: count(r.try_get(9)?),
                dead: count(r.try_get(10)?),
                cancelled: count(r.try_get(11)?),
            },
            tolerated_failures: count(r.try_get(12)?),
        })
    };
    read().map_err(|e| {
        StoreError::corrupt(format!("a workflow row does not decode: {e}")).caused_by(e)
    })
}

/// One workflow.
pub async fn get(
    conn: &mut PgConnection,
    sql: &Sql,
    id: WorkflowId,
) -> Result<Option<WorkflowInfo>, StoreError> {
    let statement = sql.get(GET);
    let row = sqlx::query(statement)
        .bind(id.0)
        .fetch_optional(conn)
        .await
        .map_err(map_err)?;
    row.map(|r| workflow_from_row(&r)).transpose()
}

/// A workflow record with its counts, read from the `jobs_workflow` index in the same
/// statement (one snapshot).
macro_rules! workflow_select {
    ($rest:literal) => {
        concat!(
            "SELECT w.id, w.name, w.state, w.unique_key, w.created_at, w.finished_at, ",
            "(SELECT count(*) FROM __schema__.jobs j WHERE j.workflow_id = w.id AND j.state = 'blocked'), ",
            "(SELECT count(*) FROM __schema__.jobs j WHERE j.workflow_id = w.id AND j.state = 'pending'), ",
            "(SELECT count(*) FROM __schema__.jobs j WHERE j.workflow_id = w.id AND j.state = 'running'), ",
            "(SELECT count(*) FROM __schema__.jobs j WHERE j.workflow_id = w.id AND j.state = 'completed'), ",
            "(SELECT count(*) FROM __schema__.jobs j WHERE j.workflow_id = w.id AND j.state = 'dead'), ",
            "(SELECT count(*) FROM __schema__.jobs j WHERE j.workflow_id = w.id AND j.state = 'cancelled'), ",
            "(SELECT count(*) FROM __schema__.jobs j WHERE j.workflow_id = w.id ",
            "AND j.state IN ('dead', 'cancelled') AND j.optional) ",
            "FROM __schema__.workflows w ",
            $rest
        )
    };
}

const GET: &str = workflow_select!("WHERE w.id = $1");

/// Workflows, newest first.
pub async fn list(
    conn: &mut PgConnection,
    sql: &Sql,
    filter: &WorkflowFilter,
) -> Result<Vec<WorkflowInfo>, StoreError> {
    let statement = sql.get(workflow_select!(
        "WHERE ($1::text IS NULL OR w.state = $1) AND ($2::text IS NULL OR w.name = $2) \
         ORDER BY w.created_at DESC, w.id DESC LIMIT $3 OFFSET $4"
    ));
    let rows = sqlx::query(statement)
        .bind(filter.state.map(WorkflowState::as_str))
        .bind(&filter.name)
        .bind(filter.limit.unwrap_or(50) as i64)
        .bind(filter.offset as i64)
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    rows.iter().map(workflow_from_row).collect()
}

/// The declared edges among a workflow's jobs.
pub async fn dependencies(
    conn: &mut PgConnection,
    sql: &Sql,
    id: WorkflowId,
) -> Result<Vec<Dependency>, StoreError> {
    let statement = sql.get(
        "SELECT d.job_id, d.depends_on, d.policy FROM __schema__.dependencies d \
         JOIN __schema__.jobs j ON j.id = d.job_id WHERE j.workflow_id = $1 \
         ORDER BY d.job_id, d.depends_on",
    );
    let rows = sqlx::query(statement)
        .bind(id.0)
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    rows.iter()
        .map(|r| {
            let policy: String = r.try_get(2).map_err(map_err)?;
            Ok(Dependency {
                job: JobId(r.try_get(0).map_err(map_err)?),
                depends_on: JobId(r.try_get(1).map_err(map_err)?),
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
    let rows = sqlx::query(statement)
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

/// Cancels a workflow's live jobs and marks it cancelled.
pub async fn cancel(
    conn: &mut PgConnection,
    sql: &Sql,
    id: WorkflowId,
) -> Result<WorkflowInfo, StoreError> {
    let info = get(&mut *conn, sql, id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("workflow {id}")))?;
    if info.state != WorkflowState::Running {
        return Err(StoreError::Conflict(format!(
            "workflow {id} is already {}: only running workflows can be cancelled",
            info.state
        )));
    }
    let statement =
        sql.get("UPDATE __schema__.workflows SET cancel_requested = true WHERE id = $1");
    sqlx::query(statement)
        .bind(id.0)
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    let statement = sql.get(
        "UPDATE __schema__.jobs SET state = 'cancelled', cancel_reason = 'workflow cancelled', \
         finished_at = now(), lease_until = NULL \
         WHERE workflow_id = $1 AND state IN ('blocked', 'pending', 'running')",
    );
    sqlx::query(statement)
        .bind(id.0)
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    finish(&mut *conn, sql, &[id.0]).await?;
    get(conn, sql, id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("workflow {id}")))
}

/// Removes old terminal jobs outside workflows, and old finished workflows with all
/// their jobs.
pub async fn clean(
    conn: &mut PgConnection,
    sql: &Sql,
    older_than: Duration,
    limit: usize,
) -> Result<CleanReport, StoreError> {
    let age = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
    let statement = sql.get(
        "DELETE FROM __schema__.jobs WHERE id IN (SELECT id FROM __schema__.jobs \
         WHERE workflow_id IS NULL AND state IN ('completed', 'dead', 'cancelled') \
         AND finished_at <= now() - $1 * interval '1 millisecond' LIMIT $2)",
    );
    let jobs = sqlx::query(statement)
        .bind(age)
        .bind(limit as i64)
        .execute(&mut *conn)
        .await
        .map_err(map_err)?
        .rows_affected();
    let statement = sql.get(
        "WITH wf AS (SELECT id FROM __schema__.workflows WHERE state <> 'running' \
             AND finished_at <= now() - $1 * interval '1 millisecond' LIMIT $2 FOR UPDATE), \
         gone_edges AS (DELETE FROM __schema__.dependencies d USING __schema__.jobs j \
             WHERE d.job_id = j.id AND j.workflow_id IN (SELECT id FROM wf)), \
         gone_jobs AS (DELETE FROM __schema__.jobs WHERE workflow_id IN (SELECT id FROM wf) \
             RETURNING 1), \
         gone AS (DELETE FROM __schema__.workflows WHERE id IN (SELECT id FROM wf) RETURNING 1) \
         SELECT (SELECT count(*) FROM gone_jobs), (SELECT count(*) FROM gone)",
    );
    let (workflow_jobs, workflows): (i64, i64) = sqlx::query_as(statement)
        .bind(age)
        .bind(limit as i64)
        .fetch_one(&mut *conn)
        .await
        .map_err(map_err)?;
    Ok(CleanReport {
        jobs: jobs + count(workflow_jobs),
        workflows: count(workflows),
    })
}
