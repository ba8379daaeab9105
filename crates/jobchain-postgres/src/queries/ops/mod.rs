//! The transactions that span tables: inserting jobs with their workflow records,
//! starting declared workflows, settling ([`settle`]), signals, retrying and cancelling,
//! and cleaning. Each runs on the caller's transaction; what both backends decide is in
//! [`jobchain_core::rules`], so what is here is the order of statements and their locks.

mod cascade;
mod settle;

use std::time::Duration;

use jobchain_core::job::{Job, JobId, JobState, NewJob};
use jobchain_core::rules::{self, WorkflowPlan};
use jobchain_core::store::{CleanReport, Enqueued, SignalReceipt};
use jobchain_core::workflow::{NewWorkflow, WorkflowInfo, WorkflowStarted};
use jobchain_core::{StoreError, WorkflowId};

use super::{dependency, job, limit, transition, wait, workflow, Sql};
use sqlx::PgConnection;

pub use settle::settle;

/// Inserts pending jobs: in bulk, except jobs with a unique key, which are checked one
/// by one. Workflow records are created for workflow ids that have none.
pub async fn insert_many(
    conn: &mut PgConnection,
    sql: &Sql,
    jobs: &[NewJob],
) -> Result<Vec<Enqueued>, StoreError> {
    insert_into(conn, sql, jobs, &[]).await
}

/// Whether [`insert_many`] writes `jobs` with one statement, atomic without a
/// transaction: none has a unique or debounce key (checked by statements of their own), a
/// workflow (whose record may have to be written) or a concurrency key (ranked first).
pub fn inserts_in_one_statement(jobs: &[NewJob]) -> bool {
    jobs.iter().all(|j| {
        j.unique_key.is_none()
            && j.debounce_key.is_none()
            && j.workflow_id.is_none()
            && j.concurrency_key.is_none()
    })
}

/// [`insert_many`], for a caller that holds the locks of the running workflows `locked`.
pub(crate) async fn insert_into(
    conn: &mut PgConnection,
    sql: &Sql,
    jobs: &[NewJob],
    locked: &[WorkflowId],
) -> Result<Vec<Enqueued>, StoreError> {
    rules::validate_jobs(jobs)?;
    workflow::ensure_exist(conn, sql, &rules::named_workflows(jobs, locked)).await?;
    let mut results: Vec<Option<Enqueued>> = vec![None; jobs.len()];
    let mut bulk = job::Columns::default();
    let mut bulk_index = Vec::new();
    for (i, new) in jobs.iter().enumerate() {
        match (&new.unique_key, &new.debounce_key) {
            (Some(key), _) => results[i] = Some(job::insert_unique(conn, sql, new, key).await?),
            (None, Some(key)) => {
                results[i] = Some(job::insert_debounced(conn, sql, new, key).await?)
            }
            (None, None) => {
                bulk.push(new, JobState::Pending, 0)?;
                bulk_index.push(i);
            }
        }
    }
    let ids = bulk.insert(conn, sql).await?;
    for (i, id) in bulk_index.into_iter().zip(ids) {
        results[i] = Some(Enqueued {
            id,
            duplicate: false,
        });
    }
    results
        .into_iter()
        .map(|r| r.ok_or_else(|| StoreError::database("an insert returned no id")))
        .collect()
}

/// Writes a workflow and all its steps in one autocommit statement (record, jobs, edges),
/// unless a step has a concurrency key (its rank is read first): `None` then, for
/// [`start_workflow`] in a transaction.
pub async fn start_workflow_at_once(
    conn: &mut PgConnection,
    sql: &Sql,
    new: &NewWorkflow,
) -> Result<Option<WorkflowStarted>, StoreError> {
    let plan = WorkflowPlan::new(new)?;
    let columns = steps_of(&plan)?;
    if columns.has_keys() {
        return Ok(None);
    }
    if let Some(ids) = columns.start_workflow(conn, sql, new, &plan.edges).await? {
        return Ok(Some(WorkflowStarted {
            id: new.id,
            duplicate: false,
            jobs: ids,
        }));
    }
    duplicate_of(conn, sql, new).await.map(Some)
}

/// The running workflow that holds `new`'s unique key, which kept `new` from being written.
async fn duplicate_of(
    conn: &mut PgConnection,
    sql: &Sql,
    new: &NewWorkflow,
) -> Result<WorkflowStarted, StoreError> {
    let key = new.unique_key.as_deref().unwrap_or_default();
    let existing = workflow::running_with_key(conn, sql, key)
        .await?
        .ok_or_else(|| StoreError::transient(format!("unique key `{key}` changed hands")))?;
    Ok(WorkflowStarted {
        id: existing,
        duplicate: true,
        jobs: Vec::new(),
    })
}

/// Writes a workflow and all its steps: the record, the jobs in one statement, the edges
/// in another.
pub async fn start_workflow(
    conn: &mut PgConnection,
    sql: &Sql,
    new: &NewWorkflow,
) -> Result<WorkflowStarted, StoreError> {
    let plan = WorkflowPlan::new(new)?;
    if !workflow::insert(conn, sql, new).await? {
        return duplicate_of(conn, sql, new).await;
    }
    let ids = insert_plan(conn, sql, &plan).await?;
    Ok(WorkflowStarted {
        id: new.id,
        duplicate: false,
        jobs: ids,
    })
}

/// Writes the steps of a plan and their edges; returns their ids in order.
pub(crate) async fn insert_plan(
    conn: &mut PgConnection,
    sql: &Sql,
    plan: &WorkflowPlan,
) -> Result<Vec<JobId>, StoreError> {
    let ids = steps_of(plan)?.insert(conn, sql).await?;
    let edges: Vec<_> = plan
        .edges
        .iter()
        .map(|&(dependent, dependency, policy)| (ids[dependent], ids[dependency], policy))
        .collect();
    dependency::insert(conn, sql, &edges).await?;
    Ok(ids)
}

/// The steps of a plan as bulk-insert rows, each in its initial state.
fn steps_of(plan: &WorkflowPlan) -> Result<job::Columns, StoreError> {
    let mut columns = job::Columns::default();
    for step in &plan.steps {
        columns.push(&step.job, step.state, step.waiting_for)?;
    }
    Ok(columns)
}

/// Retries a dead job with a fresh budget of attempts and revives its branch.
pub async fn retry(conn: &mut PgConnection, sql: &Sql, id: JobId) -> Result<Job, StoreError> {
    let dead = rules::check_retry(id, job::get(conn, sql, id).await?)?;
    transition::pend_again(conn, sql, id).await?;
    // A waiting step (a signal's timeout, a sleep) waits anew from its next run.
    wait::forget_timer(conn, sql, id).await?;
    if let Some(wf) = dead.workflow_id {
        workflow::revive(conn, sql, wf).await?;
    }
    cascade::revive_dependents(conn, sql, id).await?;
    reread(conn, sql, id).await
}

/// Cancels a live job and cascades to its dependents.
pub async fn cancel(
    conn: &mut PgConnection,
    sql: &Sql,
    id: JobId,
    reason: &str,
) -> Result<Job, StoreError> {
    let live = rules::check_cancel(id, job::get(conn, sql, id).await?)?;
    if live.state == JobState::Dead {
        if !transition::discard_dead(conn, sql, id, &rules::discard_reason(reason)).await? {
            return Err(rules::discard_raced(id));
        }
        return reread(conn, sql, id).await;
    }
    if let Some(wf) = live.workflow_id {
        workflow::lock(conn, sql, &[wf.0]).await?;
    }
    transition::mark_cancelled(conn, sql, id, reason).await?;
    if let Some(wf) = live.workflow_id {
        cascade::settle_dependents(conn, sql, vec![(id, JobState::Cancelled)]).await?;
        workflow::finish(conn, sql, &[wf.0]).await?;
    }
    reread(conn, sql, id).await
}

/// Cancels a workflow's live jobs and marks it cancelled.
pub async fn cancel_workflow(
    conn: &mut PgConnection,
    sql: &Sql,
    id: WorkflowId,
) -> Result<WorkflowInfo, StoreError> {
    rules::check_cancel_workflow(id, workflow::get(conn, sql, id).await?)?;
    workflow::request_cancel(conn, sql, id).await?;
    transition::cancel_in_workflow(conn, sql, id).await?;
    workflow::finish(conn, sql, &[id.0]).await?;
    workflow::get(conn, sql, id)
        .await?
        .ok_or_else(|| rules::workflow_not_found(id))
}

/// Removes old terminal jobs outside workflows, old finished workflows with all their
/// jobs, and concurrency keys that no longer count.
pub async fn clean(
    conn: &mut PgConnection,
    sql: &Sql,
    older_than: Duration,
    limit: usize,
) -> Result<CleanReport, StoreError> {
    let jobs = job::delete_finished(conn, sql, older_than, limit).await?;
    let (workflow_jobs, workflows) =
        workflow::delete_finished(conn, sql, older_than, limit).await?;
    limit::prune_keys(conn, sql, limit).await?;
    wait::clean(conn, sql, limit).await?;
    Ok(CleanReport {
        jobs: jobs + workflow_jobs,
        workflows,
    })
}

async fn reread(conn: &mut PgConnection, sql: &Sql, id: JobId) -> Result<Job, StoreError> {
    job::get(conn, sql, id)
        .await?
        .ok_or_else(|| rules::job_not_found(id))
}

/// Sends a signal to a workflow (see [`jobchain_core::Store::send_signal`]): recorded, and
/// if it is the first of its name, every step waiting for it completes with its payload
/// through the settle of a completion (so its dependents are released as usual). A step
/// whose handler holds it at that moment is completed here; the handler's own outcome
/// then finds its attempt already settled and changes nothing.
pub async fn send_signal(
    conn: &mut PgConnection,
    sql: &Sql,
    workflow: WorkflowId,
    name: &str,
    payload: serde_json::Value,
) -> Result<SignalReceipt, StoreError> {
    rules::check_signal(name, &payload)?;
    // The workflow first, then its jobs: the order every settle locks them in.
    if workflow::lock(conn, sql, &[workflow.0]).await? == 0 {
        return Err(rules::workflow_not_found(workflow));
    }
    let recorded = wait::record_signal(conn, sql, workflow, name, &payload).await?;
    let mut completed = Vec::new();
    if recorded.accepted {
        let waiting = wait::take_waiting(conn, sql, workflow, name).await?;
        let settlements = rules::signal_settlements(workflow, &waiting, &payload);
        let results = settle(conn, sql, &settlements).await?;
        completed = rules::signal_completed(&waiting, &results);
    }
    Ok(SignalReceipt {
        accepted: recorded.accepted,
        received_at: recorded.received_at,
        repeats: recorded.repeats.max(0) as u64,
        completed,
    })
}
