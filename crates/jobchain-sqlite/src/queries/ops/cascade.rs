//! Walking the edges of declared workflows: releasing and cancelling dependents when a
//! job settles, and reviving them when a dead job is retried. The per-edge rule is
//! [`jobchain_core::workflow::graph::effect`].

use std::collections::{HashSet, VecDeque};

use jobchain_core::job::{JobId, JobState};
use jobchain_core::rules;
use jobchain_core::workflow::condition::SkipIf;
use jobchain_core::workflow::graph::{effect, unsatisfied, Effect};
use jobchain_core::workflow::EdgePolicy;
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
                    if let Some(condition) = transition::satisfy(conn, now, dependent)? {
                        for skipped in skip_if_held(conn, now, dependent, &condition)? {
                            live.remove(&skipped);
                            queue.push_back((skipped, JobState::Skipped));
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

/// A step that just became ready with a condition: if the condition holds over its
/// dependencies' results, it is skipped, and with a cascade its blocked required
/// dependents too, transitively. Returns the jobs skipped (their dependents are the
/// caller's to settle).
fn skip_if_held(
    conn: &Connection,
    now: i64,
    id: JobId,
    condition: &str,
) -> Result<Vec<JobId>, StoreError> {
    let skip: SkipIf = serde_json::from_str(condition)
        .map_err(|e| StoreError::corrupt(format!("the condition of job {id}: {e}")))?;
    let deps = dependency::step_results(conn, id)?;
    let Some(reason) = rules::skip_reason(&skip, &deps) else {
        return Ok(Vec::new());
    };
    let mut skipped = Vec::new();
    if transition::skip(conn, now, id, &reason, None)? {
        skipped.push(id);
    }
    if skip.cascade {
        let mut queue = VecDeque::from([id]);
        while let Some(cause) = queue.pop_front() {
            let name = job::name(conn, cause)?;
            for (dependent, policy) in dependency::into_blocked(conn, cause)? {
                if policy != EdgePolicy::Required {
                    continue;
                }
                let reason = rules::skipped_by_dependency(&name, cause);
                if transition::skip(conn, now, dependent, &reason, Some(cause))? {
                    skipped.push(dependent);
                    queue.push_back(dependent);
                }
            }
        }
    }
    Ok(skipped)
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
