//! SQL on `jobchain_workflows`: creating records, finishing and reviving them, tracking
//! and cleaning. A leaf: transactions that span tables are in [`super::ops`].
//!
//! A workflow's counts are read from its jobs; its state changes only when its last live job settles ([`finish`]) or when a job
//! makes it live again ([`ensure_exists`], [`revive`]).

use jobchain_core::workflow::{
    JobCounts, NewWorkflow, WorkflowFilter, WorkflowInfo, WorkflowState,
};
use jobchain_core::{StoreError, WorkflowId};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::to_time;
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
        AND j.state IN ('dead', 'cancelled') AND j.optional = 1), w.result_step, \
    (SELECT count(*) FROM jobchain_jobs j WHERE j.workflow_id = w.id AND j.state = 'skipped')";

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
            skipped: count(14)?,
        },
        tolerated_failures: count(12)?,
        result_step: r.get(13)?,
    })
}

/// Whether workflow `id` exists.
pub fn exists(conn: &Connection, id: WorkflowId) -> Result<bool, StoreError> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM jobchain_workflows WHERE id = ?1)")
        .and_then(|mut s| s.query_row([id.to_string()], |r| r.get(0)))
        .map_err(map_err)
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
             AND (?5 IS NULL OR (w.created_at, w.id) < (?5, ?6)) \
             ORDER BY w.created_at DESC, w.id DESC LIMIT ?3 OFFSET ?4"
        ))
        .map_err(map_err)?;
    let rows = stmt
        .query_map(
            params![
                filter.state.map(WorkflowState::as_str),
                filter.name,
                filter.limit.unwrap_or(50) as i64,
                filter.offset as i64,
                filter.before.map(|c| c.created_at.timestamp_millis()),
                filter.before.map(|c| c.id.to_string()),
            ],
            workflow_from_row,
        )
        .map_err(map_err)?;
    rows.collect::<Result<_, _>>().map_err(map_err)
}

/// Inserts a declared workflow's record.
pub fn insert(conn: &Connection, now: i64, workflow: &NewWorkflow) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO jobchain_workflows (id, name, unique_key, created_at, result_step) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| {
        s.execute(params![
            workflow.id.to_string(),
            workflow.name,
            workflow.unique_key,
            now,
            workflow.result_step
        ])
    })
    .map_err(map_err)?;
    Ok(())
}

/// The running workflow that holds a unique key.
pub fn running_with_key(conn: &Connection, key: &str) -> Result<Option<WorkflowId>, StoreError> {
    let existing: Option<String> = conn
        .prepare_cached(
            "SELECT id FROM jobchain_workflows WHERE unique_key = ?1 AND state = 'running'",
        )
        .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
        .map_err(map_err)?;
    existing
        .map(|id| {
            id.parse()
                .map_err(|e| StoreError::corrupt(format!("workflow id `{id}`: {e}")).caused_by(e))
        })
        .transpose()
}

/// Records that a user cancelled the workflow ([`finish`] then marks it cancelled).
pub fn request_cancel(conn: &Connection, id: WorkflowId) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE jobchain_workflows SET cancel_requested = 1 WHERE id = ?1")
        .and_then(|mut s| s.execute([id.to_string()]))
        .map_err(map_err)?;
    Ok(())
}

/// Up to `limit` workflows that finished before `cutoff`.
pub fn finished_before(
    conn: &Connection,
    cutoff: i64,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    conn.prepare_cached(
        "SELECT id FROM jobchain_workflows WHERE state <> 'running' AND finished_at <= ?1 LIMIT ?2",
    )
    .and_then(|mut s| {
        s.query_map(params![cutoff, limit as i64], |r| r.get(0))?
            .collect::<Result<Vec<_>, _>>()
    })
    .map_err(map_err)
}

/// Deletes a workflow's record.
pub fn delete(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM jobchain_workflows WHERE id = ?1")
        .and_then(|mut s| s.execute([id]))
        .map_err(map_err)?;
    Ok(())
}
