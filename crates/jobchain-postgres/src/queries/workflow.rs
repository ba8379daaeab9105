//! SQL on `workflows`: creating records, finishing, locking and reviving them, tracking
//! and cleaning. A leaf: transactions that span tables are in [`super::ops`].
//!
//! A workflow's counts are read from its jobs; its state changes only when its last live
//! job settles ([`finish`], under the workflow's row lock, which every change that ends a
//! workflow job takes first) or when a job makes it live again ([`ensure_exist`],
//! [`revive`]).

use std::time::Duration;

use jobchain_core::workflow::{
    JobCounts, NewWorkflow, WorkflowFilter, WorkflowInfo, WorkflowState,
};
use jobchain_core::{StoreError, WorkflowId};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{count, map_err, ms, Sql};

/// Creates the named workflow records that do not exist yet; a finished workflow that
/// gets a new job runs again.
pub async fn ensure_exist(
    conn: &mut PgConnection,
    sql: &Sql,
    named: &[(WorkflowId, &str)],
) -> Result<(), StoreError> {
    if named.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = named.iter().map(|(w, _)| w.0).collect();
    let names: Vec<&str> = named.iter().map(|(_, n)| *n).collect();
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

/// Inserts a declared workflow's record; returns false, writing nothing, when a running
/// workflow holds its unique key.
pub async fn insert(
    conn: &mut PgConnection,
    sql: &Sql,
    workflow: &NewWorkflow,
) -> Result<bool, StoreError> {
    let statement = sql.get(
        "INSERT INTO __schema__.workflows (id, name, unique_key, result_step) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state = 'running' DO NOTHING \
         RETURNING id",
    );
    let inserted: Option<Uuid> = sqlx::query_scalar(statement)
        .bind(workflow.id.0)
        .bind(&workflow.name)
        .bind(&workflow.unique_key)
        .bind(&workflow.result_step)
        .fetch_optional(conn)
        .await
        .map_err(map_err)?;
    Ok(inserted.is_some())
}

/// The running workflow that holds a unique key.
pub async fn running_with_key(
    conn: &mut PgConnection,
    sql: &Sql,
    key: &str,
) -> Result<Option<WorkflowId>, StoreError> {
    let statement =
        sql.get("SELECT id FROM __schema__.workflows WHERE unique_key = $1 AND state = 'running'");
    let id: Option<Uuid> = sqlx::query_scalar(statement)
        .bind(key)
        .fetch_optional(conn)
        .await
        .map_err(map_err)?;
    Ok(id.map(WorkflowId))
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
/// Returns how many exist.
pub async fn lock(conn: &mut PgConnection, sql: &Sql, ids: &[Uuid]) -> Result<usize, StoreError> {
    let statement =
        sql.get("SELECT id FROM __schema__.workflows WHERE id = ANY($1) ORDER BY id FOR UPDATE");
    let locked: Vec<Uuid> = sqlx::query_scalar(statement)
        .bind(ids)
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    Ok(locked.len())
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
                skipped: count(r.try_get(14)?),
            },
            tolerated_failures: count(r.try_get(12)?),
            result_step: r.try_get(13)?,
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
            "AND j.state IN ('dead', 'cancelled') AND j.optional), w.result_step, ",
            "(SELECT count(*) FROM __schema__.jobs j WHERE j.workflow_id = w.id AND j.state = 'skipped') ",
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
         AND ($5::timestamptz IS NULL OR (w.created_at, w.id) < ($5, $6)) \
         ORDER BY w.created_at DESC, w.id DESC LIMIT $3 OFFSET $4"
    ));
    let rows = sqlx::query(statement)
        .bind(filter.state.map(WorkflowState::as_str))
        .bind(&filter.name)
        .bind(filter.limit.unwrap_or(50) as i64)
        .bind(filter.offset as i64)
        .bind(filter.before.map(|c| c.created_at))
        .bind(filter.before.map(|c| c.id.0))
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    rows.iter().map(workflow_from_row).collect()
}

/// Records that a user cancelled the workflow ([`finish`] then marks it cancelled).
pub async fn request_cancel(
    conn: &mut PgConnection,
    sql: &Sql,
    id: WorkflowId,
) -> Result<(), StoreError> {
    let statement =
        sql.get("UPDATE __schema__.workflows SET cancel_requested = true WHERE id = $1");
    sqlx::query(statement)
        .bind(id.0)
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// Deletes up to `limit` workflows that finished `older_than` ago, with their jobs and
/// edges, in one statement; returns how many jobs and workflows.
pub async fn delete_finished(
    conn: &mut PgConnection,
    sql: &Sql,
    older_than: Duration,
    limit: usize,
) -> Result<(u64, u64), StoreError> {
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
    let (jobs, workflows): (i64, i64) = sqlx::query_as(statement)
        .bind(ms(older_than))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_one(conn)
        .await
        .map_err(map_err)?;
    Ok((count(jobs), count(workflows)))
}
