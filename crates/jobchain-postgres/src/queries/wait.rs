//! SQL of workflows that wait: signals received, the steps waiting for them, and the
//! due instants of waiting steps. The signal's transaction is in [`super::ops`].

use chrono::{DateTime, Utc};
use jobchain_core::job::JobId;
use jobchain_core::store::SIGNAL_KIND;
use jobchain_core::{StoreError, WorkflowId};
use serde_json::Value;

use sqlx::PgConnection;

use super::{map_err, Sql};

/// A signal as recorded: whether it was the first of its name, when the first came, and
/// how many came after it.
pub struct Recorded {
    pub accepted: bool,
    pub received_at: DateTime<Utc>,
    pub repeats: i32,
}

/// Records signal `name` of a workflow: the first is kept, later ones counted.
pub async fn record_signal(
    conn: &mut PgConnection,
    sql: &Sql,
    workflow: WorkflowId,
    name: &str,
    payload: &Value,
) -> Result<Recorded, StoreError> {
    let (accepted, received_at, repeats): (bool, DateTime<Utc>, i32) = sqlx::query_as(sql.get(
        "INSERT INTO __schema__.signals AS s (workflow_id, name, payload) VALUES ($1, $2, $3) \
         ON CONFLICT (workflow_id, name) DO UPDATE \
             SET repeats = s.repeats + 1, last_repeat_at = now() \
         RETURNING (xmax = 0), received_at, repeats",
    ))
    .bind(workflow.0)
    .bind(name)
    .bind(sqlx::types::Json(payload))
    .fetch_one(conn)
    .await
    .map_err(map_err)?;
    Ok(Recorded {
        accepted,
        received_at,
        repeats,
    })
}

/// The steps of a workflow waiting for signal `name` now (pending or running), locked,
/// with their attempt numbers; pending ones are marked running under a new attempt
/// first, so that every one can be settled as a claim. Two statements: the lock returns
/// the rows as they are once locked (a claim or snooze that committed meanwhile is seen),
/// and the update, a statement of its own, sees them so too.
pub async fn take_waiting(
    conn: &mut PgConnection,
    sql: &Sql,
    workflow: WorkflowId,
    name: &str,
) -> Result<Vec<(JobId, u32)>, StoreError> {
    let locked: Vec<(i64, String, i32)> = sqlx::query_as(sql.get(
        "SELECT id, state, attempts FROM __schema__.jobs \
         WHERE workflow_id = $1 AND kind = $3 AND state IN ('pending', 'running') \
             AND payload->>'signal' = $2 ORDER BY id FOR UPDATE",
    ))
    .bind(workflow.0)
    .bind(name)
    .bind(SIGNAL_KIND)
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err)?;
    let pending: Vec<i64> = locked
        .iter()
        .filter(|(_, state, _)| state == "pending")
        .map(|(id, _, _)| *id)
        .collect();
    let mut attempts: std::collections::HashMap<i64, i32> =
        locked.iter().map(|(id, _, a)| (*id, *a)).collect();
    if !pending.is_empty() {
        let taken: Vec<(i64, i32)> = sqlx::query_as(sql.get(
            "UPDATE __schema__.jobs SET state = 'running', attempts = attempts + 1, \
                 started_at = now(), lease_until = now() + interval '1 minute', \
                 worker = 'signal', debounce_key = NULL \
             WHERE id = ANY($1) AND state = 'pending' RETURNING id, attempts",
        ))
        .bind(&pending)
        .fetch_all(&mut *conn)
        .await
        .map_err(map_err)?;
        attempts.extend(taken);
    }
    Ok(locked
        .iter()
        .map(|(id, _, _)| {
            (
                JobId(*id),
                attempts.get(id).copied().unwrap_or(0).max(0) as u32,
            )
        })
        .collect())
}

/// The payload of the first signal `name` of a workflow.
pub async fn received(
    conn: &mut PgConnection,
    sql: &Sql,
    workflow: WorkflowId,
    name: &str,
) -> Result<Option<Value>, StoreError> {
    let payload: Option<sqlx::types::Json<Value>> = sqlx::query_scalar(
        sql.get("SELECT payload FROM __schema__.signals WHERE workflow_id = $1 AND name = $2"),
    )
    .bind(workflow.0)
    .bind(name)
    .fetch_optional(conn)
    .await
    .map_err(map_err)?;
    Ok(payload.map(|p| p.0))
}

/// The due instant of waiting job `job`: `proposed` if it has none yet.
pub async fn timer(
    conn: &mut PgConnection,
    sql: &Sql,
    job: JobId,
    proposed: DateTime<Utc>,
) -> Result<DateTime<Utc>, StoreError> {
    sqlx::query_scalar(sql.get(
        "INSERT INTO __schema__.timers AS t (job_id, due_at) VALUES ($1, $2) \
         ON CONFLICT (job_id) DO UPDATE SET due_at = t.due_at RETURNING due_at",
    ))
    .bind(job.0)
    .bind(proposed)
    .fetch_one(conn)
    .await
    .map_err(map_err)
}

/// Forgets the due instant of job `job` (a retried waiting step waits anew).
pub async fn forget_timer(
    conn: &mut PgConnection,
    sql: &Sql,
    job: JobId,
) -> Result<(), StoreError> {
    sqlx::query(sql.get("DELETE FROM __schema__.timers WHERE job_id = $1"))
        .bind(job.0)
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// Forgets signals of workflows that no longer exist and timers of jobs that ended or
/// no longer exist, up to `limit` of each.
pub async fn clean(conn: &mut PgConnection, sql: &Sql, limit: usize) -> Result<(), StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    sqlx::query(sql.get(
        "DELETE FROM __schema__.signals WHERE (workflow_id, name) IN (SELECT s.workflow_id, s.name \
         FROM __schema__.signals s WHERE NOT EXISTS (SELECT 1 FROM __schema__.workflows w \
             WHERE w.id = s.workflow_id) LIMIT $1)",
    ))
    .bind(limit)
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    sqlx::query(sql.get(
        "DELETE FROM __schema__.timers WHERE job_id IN (SELECT t.job_id FROM __schema__.timers t \
         WHERE NOT EXISTS (SELECT 1 FROM __schema__.jobs j WHERE j.id = t.job_id \
             AND j.state IN ('blocked', 'pending', 'running')) LIMIT $1)",
    ))
    .bind(limit)
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(())
}
