//! Walking the edges of declared workflows: releasing and cancelling dependents when a
//! job settles, and reviving them when a dead job is retried. The per-edge rule is
//! [`jobchain_core::workflow::graph::effect`].

use std::collections::{HashSet, VecDeque};

use jobchain_core::job::{JobId, JobState};
use jobchain_core::rules;
use jobchain_core::workflow::condition::SkipIf;
use jobchain_core::workflow::graph::{effect, unsatisfied, Effect};
use jobchain_core::StoreError;
use rusqlite::Connection;

use crate::queries::{dependency, job, transition};

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
    while let Some((job_id, job_state)) = queue.pop_front() {
        // The settled job's name, read only if a cancel reason needs it.
        let mut name: Option<String> = None;
        for (dependent, policy) in dependency::into_blocked(conn, job_id)? {
            match effect(policy, job_state) {
                Effect::Satisfied => {
                    live.insert(dependent);
                    if let Some(ready) = transition::satisfy(conn, now, dependent)? {
                        if skip_if_due(conn, now, &ready)? {
                            live.remove(&dependent);
                            queue.push_back((dependent, JobState::Skipped));
                        }
                    }
                }
                Effect::Cancel => {
                    let name = match &name {
                        Some(n) => n.clone(),
                        None => name.insert(job::name(conn, job_id)?).clone(),
                    };
                    let reason = rules::cancelled_by_dependency(&name, job_id, job_state);
                    if transition::cancel_live(conn, now, dependent, &reason, Some(job_id))? {
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

/// A step that just became ready: skipped if a required dependency was skipped with a
/// cascade, or if its condition holds over its dependencies' results. Returns whether it
/// was skipped (its dependents are the caller's to settle). Deciding at readiness keeps
/// the outcome independent of the order dependencies end in: a failed required
/// dependency has already cancelled the step by then.
fn skip_if_due(conn: &Connection, now: i64, ready: &transition::Ready) -> Result<bool, StoreError> {
    if let Some(cause) = ready.cascaded_from {
        let reason = rules::skipped_by_dependency(&job::name(conn, cause)?, cause);
        return transition::skip(conn, now, ready.id, &reason, Some(cause));
    }
    let Some(condition) = &ready.condition else {
        return Ok(false);
    };
    let skip: SkipIf = serde_json::from_str(condition)
        .map_err(|e| StoreError::corrupt(format!("the condition of job {}: {e}", ready.id)))?;
    let deps = dependency::step_results(conn, ready.id)?;
    match rules::skip_reason(&skip, &deps) {
        Some(reason) => transition::skip(conn, now, ready.id, &reason, None),
        None => Ok(false),
    }
}

/// After a dead job was retried: every job cancelled because of it goes back to
/// `blocked`, with its count of unsettled dependencies recomputed, transitively.
pub fn revive_dependents(conn: &Connection, revived: JobId) -> Result<(), StoreError> {
    let mut queue = VecDeque::from([revived]);
    while let Some(id) = queue.pop_front() {
        for dependent in transition::cancelled_because_of(conn, id)? {
            let edges = dependency::into_job(conn, dependent)?;
            transition::block_again(conn, dependent, unsatisfied(edges))?;
            queue.push_back(dependent);
        }
    }
    Ok(())
}
