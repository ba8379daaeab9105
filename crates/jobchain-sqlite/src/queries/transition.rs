//! SQL on `jobchain_jobs` that moves jobs between states once they have been claimed or
//! have ended: the statements of a settle, the cascades' updates, retry and cancel. A
//! leaf beside [`super::job`]: transactions that span tables are in [`super::ops`].

use jobchain_core::job::{AttemptError, JobId};
use jobchain_core::store::{Lease, Outcome, Settlement};
use jobchain_core::{StoreError, WorkflowId};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use super::{duration_ms, to_time};
use crate::map_err;

const COMPLETE: &str =
    "UPDATE jobchain_jobs SET state = 'completed', output = ?3, finished_at = ?4, \
    lease_until = NULL WHERE id = ?1 AND attempts = ?2 AND state = 'running' \
    AND (?5 = 0 OR lease_until <= ?4) RETURNING workflow_id, \
    EXISTS (SELECT 1 FROM jobchain_dependencies d WHERE d.depends_on = jobchain_jobs.id)";

// A plain completion ([`Settlement::is_plain_completion`]): one prepared statement run
// per job inside the batch's transaction. (An `UPDATE … FROM json_each(?)` over the whole
// batch was measured at half again the cost per job: the JSON is parsed and joined.)
const COMPLETE_PLAIN: &str = "UPDATE jobchain_jobs SET state = 'completed', output = ?3, \
        finished_at = ?4, lease_until = NULL \
    WHERE id = ?1 AND attempts = ?2 AND state = 'running' AND workflow_id IS NULL";

const RETRY: &str = "UPDATE jobchain_jobs SET state = 'pending', run_at = ?4 + ?5, \
    errors = json_insert(errors, '$[#]', json(?3)), lease_until = NULL \
    WHERE id = ?1 AND attempts = ?2 AND state = 'running' AND (?6 = 0 OR lease_until <= ?4)";

const SNOOZE: &str = "UPDATE jobchain_jobs SET state = 'pending', run_at = ?3 + ?4, \
    attempts = attempts - 1, lease_until = NULL, worker = NULL \
    WHERE id = ?1 AND attempts = ?2 AND state = 'running' AND (?5 = 0 OR lease_until <= ?3)";

const DEAD: &str = "UPDATE jobchain_jobs SET state = 'dead', finished_at = ?4, \
    errors = json_insert(errors, '$[#]', json(?3)), lease_until = NULL \
    WHERE id = ?1 AND attempts = ?2 AND state = 'running' AND (?5 = 0 OR lease_until <= ?4) \
    RETURNING workflow_id, \
    EXISTS (SELECT 1 FROM jobchain_dependencies d WHERE d.depends_on = jobchain_jobs.id)";

const RELEASE: &str = "UPDATE jobchain_jobs SET state = 'pending', run_at = ?3, \
    max_attempts = max_attempts + 1, lease_until = NULL, worker = NULL \
    WHERE id = ?1 AND attempts = ?2 AND state = 'running' AND (?4 = 0 OR lease_until <= ?3)";

/// A held job waits again, for `?3` new steps (see `Outcome::Await`); the attempt does not
/// count against `max_attempts`. Returns its workflow.
const BLOCK_FOR_STEPS: &str = "UPDATE jobchain_jobs SET state = 'blocked', waiting_for = ?3, \
    max_attempts = max_attempts + 1, lease_until = NULL, worker = NULL \
    WHERE id = ?1 AND attempts = ?2 AND state = 'running' AND (?5 = 0 OR lease_until <= ?4) \
    RETURNING workflow_id";

/// The JSON of one recorded failure.
fn error_json(attempt: u32, now: i64, message: &str) -> String {
    serde_json::to_string(&AttemptError {
        attempt,
        at: to_time(now),
        message: message.to_string(),
    })
    .unwrap_or_else(|_| "{}".to_string())
}

/// Writes plain completions ([`Settlement::is_plain_completion`]); returns which of
/// them were applied. The others, stale or in a workflow after all, need [`settle`].
pub fn complete_plain(
    conn: &Connection,
    now: i64,
    settlements: &[&Settlement],
) -> Result<Vec<bool>, StoreError> {
    let mut stmt = conn.prepare_cached(COMPLETE_PLAIN).map_err(map_err)?;
    settlements
        .iter()
        .map(|s| {
            let output = match &s.outcome {
                Outcome::Completed {
                    output: Some(output),
                    ..
                } => Some(output.to_string()),
                _ => None,
            };
            let changed = stmt
                .execute(params![s.lease.id.0, s.lease.attempt, output, now])
                .map_err(map_err)?;
            Ok(changed == 1)
        })
        .collect()
}

/// A job that a settle statement ended (completed or dead).
#[derive(Clone, Copy, Debug)]
pub struct Ended {
    /// Its workflow.
    pub workflow: Option<WorkflowId>,
    /// Whether some job depends on it.
    pub has_dependents: bool,
}

fn ended(id: JobId, row: Option<(Option<String>, bool)>) -> Result<Option<Ended>, StoreError> {
    let Some((workflow, has_dependents)) = row else {
        return Ok(None);
    };
    let workflow = workflow
        .map(|w| w.parse::<WorkflowId>())
        .transpose()
        .map_err(|e| StoreError::corrupt(format!("workflow id of job {id}: {e}")).caused_by(e))?;
    Ok(Some(Ended {
        workflow,
        has_dependents,
    }))
}

/// Completes a job if it is still held under `lease`.
pub fn complete(
    conn: &Connection,
    now: i64,
    lease: Lease,
    output: Option<&Value>,
    expired_only: bool,
) -> Result<Option<Ended>, StoreError> {
    let Lease { id, attempt } = lease;
    let output = output
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Invalid(format!("output of job {id}: {e}")))?;
    let row = conn
        .prepare_cached(COMPLETE)
        .and_then(|mut s| {
            s.query_row(params![id.0, attempt, output, now, expired_only], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
        })
        .map_err(map_err)?;
    ended(id, row)
}

/// Puts a job still held under `lease` back to pending after `delay`, recording the
/// error; returns whether it was held.
pub fn retry_later(
    conn: &Connection,
    now: i64,
    lease: Lease,
    error: &str,
    delay: std::time::Duration,
    expired_only: bool,
) -> Result<bool, StoreError> {
    let Lease { id, attempt } = lease;
    let changed = conn
        .prepare_cached(RETRY)
        .and_then(|mut s| {
            s.execute(params![
                id.0,
                attempt,
                error_json(attempt, now, error),
                now,
                duration_ms(delay),
                expired_only
            ])
        })
        .map_err(map_err)?;
    Ok(changed > 0)
}

/// Puts a job still held under `lease` back to pending after `delay`, giving its attempt
/// back.
pub fn snooze(
    conn: &Connection,
    now: i64,
    lease: Lease,
    delay: std::time::Duration,
    expired_only: bool,
) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached(SNOOZE)
        .and_then(|mut s| {
            s.execute(params![
                lease.id.0,
                lease.attempt,
                now,
                duration_ms(delay),
                expired_only
            ])
        })
        .map_err(map_err)?;
    Ok(changed > 0)
}

/// Moves a job still held under `lease` to the dead-letter queue, recording the error.
pub fn kill(
    conn: &Connection,
    now: i64,
    lease: Lease,
    error: &str,
    expired_only: bool,
) -> Result<Option<Ended>, StoreError> {
    let Lease { id, attempt } = lease;
    let row = conn
        .prepare_cached(DEAD)
        .and_then(|mut s| {
            s.query_row(
                params![
                    id.0,
                    attempt,
                    error_json(attempt, now, error),
                    now,
                    expired_only
                ],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })
        .map_err(map_err)?;
    ended(id, row)
}

/// Gives a job still held under `lease` back, pending at once and without spending an
/// attempt; returns whether it was held.
pub fn release(
    conn: &Connection,
    now: i64,
    lease: Lease,
    expired_only: bool,
) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached(RELEASE)
        .and_then(|mut s| s.execute(params![lease.id.0, lease.attempt, now, expired_only]))
        .map_err(map_err)?;
    Ok(changed > 0)
}

/// Makes a held job wait for `steps` new steps (see `Outcome::Await`); returns its
/// workflow (outer `None` when the lease no longer holds).
pub fn block_for_steps(
    conn: &Connection,
    now: i64,
    lease: Lease,
    steps: usize,
    expired_only: bool,
) -> Result<Option<Option<String>>, StoreError> {
    conn.prepare_cached(BLOCK_FOR_STEPS)
        .and_then(|mut s| {
            s.query_row(
                params![lease.id.0, lease.attempt, steps as i64, now, expired_only],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
        })
        .map_err(map_err)
}

/// Marks a live job cancelled; returns whether it was live.
pub fn cancel_live(
    conn: &Connection,
    now: i64,
    id: JobId,
    reason: &str,
    cancelled_by: Option<JobId>,
) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE jobchain_jobs SET state = 'cancelled', cancel_reason = ?2, cancelled_by = ?3, \
             finished_at = ?4, lease_until = NULL, debounce_key = NULL \
             WHERE id = ?1 AND state IN ('blocked', 'pending', 'running')",
        )
        .and_then(|mut s| s.execute(params![id.0, reason, cancelled_by.map(|c| c.0), now]))
        .map_err(map_err)?;
    Ok(changed > 0)
}

/// Marks a dead job cancelled (discarded from the dead-letter queue); returns whether it
/// was dead.
pub fn discard_dead(conn: &Connection, id: JobId, reason: &str) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE jobchain_jobs SET state = 'cancelled', cancel_reason = ?2 \
             WHERE id = ?1 AND state = 'dead'",
        )
        .and_then(|mut s| s.execute(params![id.0, reason]))
        .map_err(map_err)?;
    Ok(changed > 0)
}

/// What a job that just became ready may be: skipped by its own condition, or because a
/// required dependency was skipped with a cascade.
pub struct Ready {
    /// The job.
    pub id: JobId,
    /// Its condition (JSON), if it has one.
    pub condition: Option<String>,
    /// A required dependency skipped with a cascade (the first, by id), if any.
    pub cascaded_from: Option<JobId>,
}

/// Lowers a blocked job's count of unsettled dependencies by one; at zero it becomes
/// pending. Returns it when it became pending and may have to be skipped: it has a
/// condition, or a required dependency that was skipped with a cascade (skipped because
/// of another, or by a condition that cascades).
pub fn satisfy(conn: &Connection, now: i64, id: JobId) -> Result<Option<Ready>, StoreError> {
    let row: Option<(String, Option<String>, Option<i64>)> = conn
        .prepare_cached(
            "UPDATE jobchain_jobs SET waiting_for = waiting_for - 1, \
             state = CASE WHEN waiting_for <= 1 THEN 'pending' ELSE state END, \
             run_at = CASE WHEN waiting_for <= 1 AND run_at < ?2 THEN ?2 ELSE run_at END \
             WHERE id = ?1 AND state = 'blocked' \
             RETURNING state, skip_if, CASE WHEN state = 'pending' THEN \
                 (SELECT p.id FROM jobchain_dependencies d \
                  JOIN jobchain_jobs p ON p.id = d.depends_on \
                  WHERE d.job_id = ?1 AND d.policy = 'required' AND p.state = 'skipped' \
                      AND (p.cancelled_by IS NOT NULL \
                          OR json_extract(p.skip_if, '$.cascade') = 1) \
                  ORDER BY p.id LIMIT 1) END",
        )
        .and_then(|mut s| {
            s.query_row(params![id.0, now], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
        })
        .map_err(map_err)?;
    Ok(match row {
        Some((state, condition, cascaded_from))
            if state == "pending" && (condition.is_some() || cascaded_from.is_some()) =>
        {
            Some(Ready {
                id,
                condition,
                cascaded_from: cascaded_from.map(JobId),
            })
        }
        _ => None,
    })
}

/// Marks a job skipped with `reason` (and the dependency whose skip cascaded to it);
/// returns whether it was pending or blocked.
pub fn skip(
    conn: &Connection,
    now: i64,
    id: JobId,
    reason: &str,
    because_of: Option<JobId>,
) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE jobchain_jobs SET state = 'skipped', cancel_reason = ?2, cancelled_by = ?3, \
             finished_at = ?4, lease_until = NULL \
             WHERE id = ?1 AND state IN ('blocked', 'pending')",
        )
        .and_then(|mut s| s.execute(params![id.0, reason, because_of.map(|j| j.0), now]))
        .map_err(map_err)?;
    Ok(changed > 0)
}

/// The jobs still cancelled because `cause` failed.
pub fn cancelled_because_of(conn: &Connection, cause: JobId) -> Result<Vec<JobId>, StoreError> {
    conn.prepare_cached(
        "SELECT id FROM jobchain_jobs WHERE cancelled_by = ?1 AND state = 'cancelled'",
    )
    .and_then(|mut s| {
        s.query_map([cause.0], |r| Ok(JobId(r.get(0)?)))?
            .collect::<Result<Vec<_>, _>>()
    })
    .map_err(map_err)
}

/// Makes a cancelled job blocked again, waiting for `waiting` dependencies.
pub fn block_again(conn: &Connection, id: JobId, waiting: usize) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE jobchain_jobs SET state = 'blocked', waiting_for = ?2, cancel_reason = NULL, \
         cancelled_by = NULL, finished_at = NULL WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![id.0, waiting as i64]))
    .map_err(map_err)?;
    Ok(())
}

/// Makes a dead job pending at once with a fresh budget of attempts.
pub fn pend_again(conn: &Connection, now: i64, id: JobId) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE jobchain_jobs SET state = 'pending', run_at = ?2, finished_at = NULL, \
         max_attempts = attempts + attempt_budget, worker = NULL WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![id.0, now]))
    .map_err(map_err)?;
    Ok(())
}

/// Marks every live job of a workflow cancelled with it.
pub fn cancel_in_workflow(conn: &Connection, now: i64, id: WorkflowId) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE jobchain_jobs SET state = 'cancelled', cancel_reason = 'workflow cancelled', \
         finished_at = ?2, lease_until = NULL \
         WHERE workflow_id = ?1 AND state IN ('blocked', 'pending', 'running')",
    )
    .and_then(|mut s| s.execute(params![id.to_string(), now]))
    .map_err(map_err)?;
    Ok(())
}
