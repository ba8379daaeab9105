//! Settling a batch: one set-based statement per kind of outcome, then the dependents
//! and the workflows that the batch ended.

use std::collections::{HashMap, HashSet};

use jobchain_core::job::{JobId, JobState, NewJob};
use jobchain_core::rules;
use jobchain_core::store::{Outcome, SettleResult, Settlement};
use jobchain_core::{StoreError, WorkflowId};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{cascade, insert_into, insert_plan};
use crate::queries::{dependency, transition, workflow, Sql};

/// What a batch did beyond its own jobs, gathered while its outcomes are written.
struct Batch {
    results: Vec<SettleResult>,
    /// Workflow jobs that ended here and have dependents.
    settled: Vec<(JobId, JobState)>,
    /// Workflows one of whose jobs ended here: each may have finished...
    ended: Vec<WorkflowId>,
    /// ...unless it got a follow-up here too (then it has a live job).
    continuing: HashSet<WorkflowId>,
}

impl Batch {
    fn applied(&mut self, i: usize) {
        self.results[i] = SettleResult::Applied {
            follow_ups: Vec::new(),
        };
    }

    /// Records a job that ended (completed or dead) in a workflow.
    fn ended(&mut self, ended: &transition::Ended, state: JobState) {
        if let Some(w) = ended.workflow.map(WorkflowId) {
            if ended.has_dependents {
                self.settled.push((ended.id, state));
            }
            if !self.ended.contains(&w) {
                self.ended.push(w);
            }
        }
    }
}

/// Applies a batch of settlements with one statement per kind of change. The caller's
/// transaction holds everything; the batch's workflows and jobs are locked first, in id
/// order, as every statement that changes several of them does.
pub async fn settle(
    conn: &mut PgConnection,
    sql: &Sql,
    settlements: &[Settlement],
) -> Result<Vec<SettleResult>, StoreError> {
    let ids: Vec<i64> = settlements.iter().map(|s| s.lease.id.0).collect();
    // A rescue (every settlement only if its lease expired) skips rows that another
    // session holds: they stay stale, for a later pass. Anything else waits its turn.
    let skipped: HashSet<JobId> = if settlements.iter().all(|s| s.only_if_expired) {
        let locked = transition::lock_batch_skipping(conn, sql, &ids).await?;
        settlements
            .iter()
            .map(|s| s.lease.id)
            .filter(|id| !locked.contains(id))
            .collect()
    } else {
        transition::lock_batch(conn, sql, &ids).await?;
        HashSet::new()
    };
    let mut batch = Batch {
        results: vec![SettleResult::Stale; settlements.len()],
        settled: Vec::new(),
        ended: Vec::new(),
        continuing: HashSet::new(),
    };
    let of = |wanted: fn(&Outcome) -> bool| -> (Vec<usize>, Vec<&Settlement>) {
        (0..settlements.len())
            .filter(|&i| wanted(&settlements[i].outcome))
            .filter(|&i| !skipped.contains(&settlements[i].lease.id))
            .map(|i| (i, &settlements[i]))
            .unzip()
    };
    let (indexes, group) = of(|o| matches!(o, Outcome::Completed { .. }));
    complete(conn, sql, &indexes, &group, &mut batch).await?;
    let (indexes, group) = of(|o| matches!(o, Outcome::Retry { .. }));
    if !group.is_empty() {
        let applied = transition::retry_later(conn, sql, &group).await?;
        mark(&indexes, &group, &applied, &mut batch);
    }
    let (indexes, group) = of(|o| matches!(o, Outcome::Snooze { .. }));
    if !group.is_empty() {
        let applied = transition::snooze(conn, sql, &group).await?;
        mark(&indexes, &group, &applied, &mut batch);
    }
    let (indexes, group) = of(|o| matches!(o, Outcome::Dead { .. }));
    kill(conn, sql, &indexes, &group, &mut batch).await?;
    let (indexes, group) = of(|o| matches!(o, Outcome::Released));
    if !group.is_empty() {
        let applied = transition::release(conn, sql, &group).await?;
        mark(&indexes, &group, &applied, &mut batch);
    }

    let (indexes, group) = of(|o| matches!(o, Outcome::Await { .. }));
    for (&i, s) in indexes.iter().zip(&group) {
        if let Some(ids) = await_steps(conn, sql, s).await? {
            batch.results[i] = SettleResult::Applied { follow_ups: ids };
        }
    }

    cascade::settle_dependents(conn, sql, std::mem::take(&mut batch.settled)).await?;
    let finished: Vec<Uuid> = batch
        .ended
        .iter()
        .filter(|w| !batch.continuing.contains(w))
        .map(|w| w.0)
        .collect();
    workflow::finish(conn, sql, &finished).await?;
    Ok(batch.results)
}

/// Completions, then their follow-ups, written in bulk in the same transaction.
async fn complete(
    conn: &mut PgConnection,
    sql: &Sql,
    indexes: &[usize],
    group: &[&Settlement],
    batch: &mut Batch,
) -> Result<(), StoreError> {
    if group.is_empty() {
        return Ok(());
    }
    let completed: HashMap<JobId, transition::Ended> = transition::complete(conn, sql, group)
        .await?
        .into_iter()
        .map(|e| (e.id, e))
        .collect();
    let mut follow_ups: Vec<NewJob> = Vec::new();
    let mut owners = Vec::new();
    for (&i, s) in indexes.iter().zip(group) {
        let Some(done) = completed.get(&s.lease.id) else {
            continue;
        };
        batch.applied(i);
        batch.ended(done, JobState::Completed);
        if let Outcome::Completed { follow_ups: f, .. } = &s.outcome {
            for staged in f {
                let new = rules::follow_up(s.lease.id, done.workflow.map(WorkflowId), staged);
                if let Some(w) = new.workflow_id {
                    batch.continuing.insert(w);
                }
                follow_ups.push(new);
                owners.push(i);
            }
        }
    }
    if follow_ups.is_empty() {
        return Ok(());
    }
    let created = insert_into(conn, sql, &follow_ups, &batch.ended).await?;
    for (owner, enqueued) in owners.into_iter().zip(created) {
        if let SettleResult::Applied { follow_ups } = &mut batch.results[owner] {
            follow_ups.push(enqueued.id);
        }
    }
    Ok(())
}

/// A job that awaits new steps: blocked again, the steps written as a workflow's (the
/// job their parent), then the edges from the job to the steps it waits for. `None` when
/// its lease no longer holds.
async fn await_steps(
    conn: &mut PgConnection,
    sql: &Sql,
    s: &Settlement,
) -> Result<Option<Vec<JobId>>, StoreError> {
    let Outcome::Await { steps, join } = &s.outcome else {
        return Ok(None);
    };
    let Some(workflow) = transition::block_for_steps(conn, sql, s, join.len()).await? else {
        return Ok(None);
    };
    let plan = rules::await_plan(s.lease.id, workflow.map(WorkflowId), steps, join)?;
    let ids = insert_plan(conn, sql, &plan).await?;
    let joins: Vec<_> = join
        .iter()
        .map(|&(i, policy)| (s.lease.id, ids[i], policy))
        .collect();
    dependency::insert(conn, sql, &joins).await?;
    Ok(Some(ids))
}

/// Deaths: their workflows may end, their dependents react.
async fn kill(
    conn: &mut PgConnection,
    sql: &Sql,
    indexes: &[usize],
    group: &[&Settlement],
    batch: &mut Batch,
) -> Result<(), StoreError> {
    if group.is_empty() {
        return Ok(());
    }
    let dead = transition::kill(conn, sql, group).await?;
    for d in &dead {
        batch.ended(d, JobState::Dead);
    }
    let ids: Vec<JobId> = dead.iter().map(|d| d.id).collect();
    mark(indexes, group, &ids, batch);
    Ok(())
}

/// Marks the settlements whose job is in `applied` as applied.
fn mark(indexes: &[usize], group: &[&Settlement], applied: &[JobId], batch: &mut Batch) {
    for (&i, s) in indexes.iter().zip(group) {
        if applied.contains(&s.lease.id) {
            batch.applied(i);
        }
    }
}
