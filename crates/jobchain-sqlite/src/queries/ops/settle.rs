//! Settling a batch inside the writer's transaction: plain completions in one
//! statement, every other settlement by its outcome, then its dependents and workflow.

use jobchain_core::job::{JobState, NewJob};
use jobchain_core::rules;
use jobchain_core::store::{Outcome, SettleResult, Settlement};
use jobchain_core::{StoreError, WorkflowId};
use rusqlite::Connection;
use serde_json::Value;

use super::cascade;
use crate::queries::{dependency, job, transition, workflow};

/// Applies a batch of settlements. Atomicity comes from the writer: the whole call runs
/// in one savepoint, so a failure anywhere leaves nothing of it.
pub fn settle(
    conn: &Connection,
    now: i64,
    settlements: &[Settlement],
) -> Result<Vec<SettleResult>, StoreError> {
    let mut results = vec![SettleResult::Stale; settlements.len()];
    let (plain, mut rest) = rules::split_settle_batch(settlements);
    if !plain.is_empty() {
        let batch: Vec<&Settlement> = plain.iter().map(|&i| &settlements[i]).collect();
        let applied = transition::complete_plain(conn, now, &batch)?;
        for (i, applied) in plain.into_iter().zip(applied) {
            if applied {
                results[i] = applied_result(Vec::new());
            } else {
                // Stale, or in a workflow after all: the full path tells which.
                rest.push(i);
            }
        }
    }
    for i in rest {
        results[i] = settle_one(conn, now, &settlements[i])?;
    }
    Ok(results)
}

fn settle_one(conn: &Connection, now: i64, s: &Settlement) -> Result<SettleResult, StoreError> {
    let expired_only = s.only_if_expired;
    match &s.outcome {
        Outcome::Completed { output, follow_ups } => complete(conn, now, s, output, follow_ups),
        Outcome::Retry { error, delay } => Ok(stale_unless(transition::retry_later(
            conn,
            now,
            s.lease,
            error,
            *delay,
            expired_only,
        )?)),
        Outcome::Snooze { delay } => Ok(stale_unless(transition::snooze(
            conn,
            now,
            s.lease,
            *delay,
            expired_only,
        )?)),
        Outcome::Dead { error } => {
            let Some(dead) = transition::kill(conn, now, s.lease, error, expired_only)? else {
                return Ok(SettleResult::Stale);
            };
            if let Some(wf) = dead.workflow {
                let live_dependents = dead.has_dependents
                    && cascade::settle_dependents(conn, now, s.lease.id, JobState::Dead)?;
                if !live_dependents {
                    workflow::finish(conn, now, wf)?;
                }
            }
            Ok(applied_result(Vec::new()))
        }
        Outcome::Released => Ok(stale_unless(transition::release(
            conn,
            now,
            s.lease,
            expired_only,
        )?)),
        Outcome::Await { steps, join } => {
            let Some(workflow) =
                transition::block_for_steps(conn, now, s.lease, join.len(), expired_only)?
            else {
                return Ok(SettleResult::Stale);
            };
            let workflow = workflow
                .map(|w| w.parse().map(WorkflowId))
                .transpose()
                .map_err(|e| StoreError::corrupt(format!("job {}: {e}", s.lease.id)))?;
            let plan = rules::await_plan(s.lease.id, workflow, steps, join)?;
            let ids = super::insert_plan(conn, now, &plan)?;
            dependency::insert(
                conn,
                s.lease.id,
                join.iter().map(|&(i, policy)| (ids[i], policy)),
            )?;
            Ok(applied_result(ids))
        }
    }
}

/// A completion, its follow-ups, then its dependents and its workflow.
fn complete(
    conn: &Connection,
    now: i64,
    s: &Settlement,
    output: &Option<Value>,
    follow_ups: &[NewJob],
) -> Result<SettleResult, StoreError> {
    let id = s.lease.id;
    let Some(done) = transition::complete(conn, now, s.lease, output.as_ref(), s.only_if_expired)?
    else {
        return Ok(SettleResult::Stale);
    };
    let mut created = Vec::with_capacity(follow_ups.len());
    // A follow-up in the job's own workflow keeps that workflow running.
    let mut continues = false;
    for staged in follow_ups {
        let new = rules::follow_up(id, done.workflow, staged);
        new.validate().map_err(StoreError::Invalid)?;
        if new.workflow_id != done.workflow {
            if let Some(wf) = new.workflow_id {
                workflow::ensure_exists(conn, now, wf, &new.kind)?;
            }
        }
        continues |= done.workflow.is_some() && new.workflow_id == done.workflow;
        created.push(job::insert(conn, now, &new, JobState::Pending, 0)?.id);
    }
    if let Some(wf) = done.workflow {
        // A live dependent keeps the workflow running too.
        let live_dependents =
            done.has_dependents && cascade::settle_dependents(conn, now, id, JobState::Completed)?;
        if !continues && !live_dependents {
            workflow::finish(conn, now, wf)?;
        }
    }
    Ok(applied_result(created))
}

fn applied_result(follow_ups: Vec<jobchain_core::job::JobId>) -> SettleResult {
    SettleResult::Applied { follow_ups }
}

fn stale_unless(applied: bool) -> SettleResult {
    if applied {
        applied_result(Vec::new())
    } else {
        SettleResult::Stale
    }
}
