//! Walking the edges of declared workflows: releasing and cancelling dependents when
//! jobs settle, and reviving them when a dead job is retried. Set-based, level by level;
//! the per-edge rule is [`jobchain_core::workflow::graph::effect`].

use std::collections::{BTreeMap, HashMap};

use jobchain_core::job::{JobId, JobState};
use jobchain_core::rules;
use jobchain_core::workflow::condition::SkipIf;
use jobchain_core::workflow::graph::{effect, unsatisfied, Effect};
use jobchain_core::StoreError;
use sqlx::PgConnection;

use crate::queries::{dependency, transition, Sql};

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
        let mut satisfied: BTreeMap<i64, i32> = BTreeMap::new();
        let mut cancels: transition::Reasons = BTreeMap::new();
        for edge in dependency::into_blocked(conn, sql, &ids).await? {
            let state = states
                .get(&edge.dependency)
                .copied()
                .unwrap_or(JobState::Pending);
            match effect(edge.policy, state) {
                Effect::Satisfied => *satisfied.entry(edge.dependent).or_default() += 1,
                Effect::Cancel => {
                    cancels.entry(edge.dependent).or_insert_with(|| {
                        let reason = rules::cancelled_by_dependency(
                            &edge.name,
                            JobId(edge.dependency),
                            state,
                        );
                        (reason, Some(edge.dependency))
                    });
                }
                Effect::Wait => {}
            }
        }
        settled = Vec::new();
        if !cancels.is_empty() {
            settled = transition::cancel_dependents(conn, sql, &cancels)
                .await?
                .into_iter()
                .map(|id| (id, JobState::Cancelled))
                .collect();
        }
        if !satisfied.is_empty() {
            for ready in transition::satisfy(conn, sql, &satisfied).await? {
                let id = ready.id;
                if skip_if_due(conn, sql, ready).await? {
                    settled.push((id, JobState::Skipped));
                }
            }
        }
    }
    Ok(())
}

/// A step that just became ready: skipped if a required dependency was skipped with a
/// cascade, or if its condition holds over its dependencies' results. Returns whether it
/// was skipped (its dependents are the caller's to settle). Deciding at readiness keeps
/// the outcome independent of the order dependencies end in: a failed required
/// dependency has already cancelled the step by then.
async fn skip_if_due(
    conn: &mut PgConnection,
    sql: &Sql,
    ready: transition::Ready,
) -> Result<bool, StoreError> {
    let id = ready.id;
    let reason = if let Some(cause) = ready.cascaded_from {
        let name = dependency::step_results(conn, sql, id)
            .await?
            .into_iter()
            .find(|d| d.job == cause)
            .map(|d| d.name)
            .unwrap_or_else(|| cause.to_string());
        (rules::skipped_by_dependency(&name, cause), Some(cause.0))
    } else {
        let Some(condition) = ready.condition else {
            return Ok(false);
        };
        let skip: SkipIf = serde_json::from_value(condition)
            .map_err(|e| StoreError::corrupt(format!("the condition of job {id}: {e}")))?;
        let deps = dependency::step_results(conn, sql, id).await?;
        match rules::skip_reason(&skip, &deps) {
            Some(reason) => (reason, None),
            None => return Ok(false),
        }
    };
    let skipped = transition::skip(conn, sql, &BTreeMap::from([(id.0, reason)])).await?;
    Ok(!skipped.is_empty())
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
        let dependents = transition::cancelled_because_of(conn, sql, &level).await?;
        for &dependent in &dependents {
            let edges = dependency::into_job(conn, sql, dependent).await?;
            transition::block_again(conn, sql, dependent, unsatisfied(edges)).await?;
        }
        level = dependents;
    }
    Ok(())
}
