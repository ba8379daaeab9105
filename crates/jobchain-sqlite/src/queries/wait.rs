//! SQL of workflows that wait: signals received, the steps waiting for them, and the
//! due instants of waiting steps. The signal's transaction is in [`super::ops`].

use jobchain_core::job::JobId;
use jobchain_core::store::SIGNAL_KIND;
use jobchain_core::{StoreError, WorkflowId};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use crate::map_err;

/// A signal as recorded: whether it was the first of its name, when the first came
/// (milliseconds), and how many came after it.
pub struct Recorded {
    pub accepted: bool,
    pub received_at: i64,
    pub repeats: i64,
}

/// Records signal `name` of a workflow: the first is kept, later ones counted.
pub fn record_signal(
    conn: &Connection,
    now: i64,
    workflow: WorkflowId,
    name: &str,
    payload: &Value,
) -> Result<Recorded, StoreError> {
    let id = workflow.to_string();
    let payload = serde_json::to_string(payload)
        .map_err(|e| StoreError::Invalid(format!("signal payload: {e}")))?;
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO jobchain_signals (workflow_id, name, payload, received_at) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut s| s.execute(params![id, name, payload, now]))
        .map_err(map_err)?;
    if inserted == 0 {
        conn.prepare_cached(
            "UPDATE jobchain_signals SET repeats = repeats + 1, last_repeat_at = ?3 \
             WHERE workflow_id = ?1 AND name = ?2",
        )
        .and_then(|mut s| s.execute(params![id, name, now]))
        .map_err(map_err)?;
    }
    let (received_at, repeats) = conn
        .prepare_cached(
            "SELECT received_at, repeats FROM jobchain_signals WHERE workflow_id = ?1 AND name = ?2",
        )
        .and_then(|mut s| s.query_row(params![id, name], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(map_err)?;
    Ok(Recorded {
        accepted: inserted == 1,
        received_at,
        repeats,
    })
}

/// The steps of a workflow waiting for signal `name` now (pending or running), with
/// their attempt numbers; pending ones are marked running under a new attempt first, so
/// that every one can be settled as a claim.
pub fn take_waiting(
    conn: &Connection,
    now: i64,
    workflow: WorkflowId,
    name: &str,
) -> Result<Vec<(JobId, u32)>, StoreError> {
    let id = workflow.to_string();
    conn.prepare_cached(
        "UPDATE jobchain_jobs SET state = 'running', attempts = attempts + 1, started_at = ?4, \
             lease_until = ?4 + 60000, worker = 'signal', debounce_key = NULL \
         WHERE workflow_id = ?1 AND kind = ?3 AND state = 'pending' \
             AND json_extract(payload, '$.signal') = ?2",
    )
    .and_then(|mut s| s.execute(params![id, name, SIGNAL_KIND, now]))
    .map_err(map_err)?;
    conn.prepare_cached(
        "SELECT id, attempts FROM jobchain_jobs WHERE workflow_id = ?1 AND kind = ?3 \
             AND state = 'running' AND json_extract(payload, '$.signal') = ?2 ORDER BY id",
    )
    .and_then(|mut s| {
        s.query_map(params![id, name, SIGNAL_KIND], |r| {
            Ok((JobId(r.get(0)?), r.get(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()
    })
    .map_err(map_err)
}

/// The payload of the first signal `name` of a workflow.
pub fn received(
    conn: &Connection,
    workflow: WorkflowId,
    name: &str,
) -> Result<Option<Value>, StoreError> {
    let text: Option<String> = conn
        .prepare_cached("SELECT payload FROM jobchain_signals WHERE workflow_id = ?1 AND name = ?2")
        .and_then(|mut s| {
            s.query_row(params![workflow.to_string(), name], |r| r.get(0))
                .optional()
        })
        .map_err(map_err)?;
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| {
            StoreError::corrupt(format!("signal `{name}` of workflow {workflow}: {e}"))
        })
    })
    .transpose()
}

/// The due instant (milliseconds) of waiting job `job`: `proposed` if it has none yet.
pub fn timer(conn: &Connection, job: JobId, proposed: i64) -> Result<i64, StoreError> {
    conn.prepare_cached(
        "INSERT INTO jobchain_timers (job_id, due_at) VALUES (?1, ?2) \
         ON CONFLICT (job_id) DO UPDATE SET due_at = due_at RETURNING due_at",
    )
    .and_then(|mut s| s.query_row(params![job.0, proposed], |r| r.get(0)))
    .map_err(map_err)
}

/// Forgets the due instant of job `job` (a retried waiting step waits anew).
pub fn forget_timer(conn: &Connection, job: JobId) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM jobchain_timers WHERE job_id = ?1")
        .and_then(|mut s| s.execute([job.0]))
        .map_err(map_err)?;
    Ok(())
}

/// Forgets signals of workflows that no longer exist and timers of jobs that ended or
/// no longer exist, up to `limit` of each.
pub fn clean(conn: &Connection, limit: usize) -> Result<(), StoreError> {
    conn.prepare_cached(
        "DELETE FROM jobchain_signals WHERE rowid IN (SELECT s.rowid FROM jobchain_signals s \
         WHERE NOT EXISTS (SELECT 1 FROM jobchain_workflows w WHERE w.id = s.workflow_id) \
         LIMIT ?1)",
    )
    .and_then(|mut s| s.execute([limit as i64]))
    .map_err(map_err)?;
    conn.prepare_cached(
        "DELETE FROM jobchain_timers WHERE job_id IN (SELECT t.job_id FROM jobchain_timers t \
         WHERE NOT EXISTS (SELECT 1 FROM jobchain_jobs j WHERE j.id = t.job_id \
             AND j.state IN ('blocked', 'pending', 'running')) LIMIT ?1)",
    )
    .and_then(|mut s| s.execute([limit as i64]))
    .map_err(map_err)?;
    Ok(())
}
