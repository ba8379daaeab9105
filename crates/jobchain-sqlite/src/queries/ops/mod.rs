//! The transactions that span tables: inserting jobs with their workflow records,
//! starting declared workflows, claiming under limits, settling ([`settle`]), signals,
//! retrying and cancelling, and cleaning. Each runs inside the writer's transaction; what both backends decide is in
//! [`jobchain_core::rules`], so what is here is the order of statements.

mod cascade;
mod settle;

use std::time::Duration;

use jobchain_core::job::{Job, JobId, JobState, NewJob};
use jobchain_core::rules::{self, WorkflowPlan};
use jobchain_core::store::{
    ClaimRequest, ClaimedJob, CleanReport, Enqueued, LimitScope, SignalReceipt,
};
use jobchain_core::workflow::{NewWorkflow, WorkflowInfo, WorkflowStarted};
use jobchain_core::{StoreError, WorkflowId};
use rusqlite::Connection;

use super::{dependency, duration_ms, job, limit, to_time, transition, wait, workflow};

pub use settle::settle;

/// Inserts pending jobs; workflow records are created for workflow ids that have none.
/// An invalid job rolls back the whole call.
pub fn insert_many(
    conn: &Connection,
    now: i64,
    jobs: &[NewJob],
) -> Result<Vec<Enqueued>, StoreError> {
    rules::validate_jobs(jobs)?;
    for (wf, name) in rules::named_workflows(jobs, &[]) {
        workflow::ensure_exists(conn, now, wf, name)?;
    }
    jobs.iter()
        .map(|new| job::insert(conn, now, new, JobState::Pending, 0))
        .collect()
}

/// Writes a workflow and all its steps.
pub fn start_workflow(
    conn: &Connection,
    now: i64,
    new: &NewWorkflow,
) -> Result<WorkflowStarted, StoreError> {
    let plan = WorkflowPlan::new(new)?;
    if let Some(key) = &new.unique_key {
        if let Some(existing) = workflow::running_with_key(conn, key)? {
            return Ok(WorkflowStarted {
                id: existing,
                duplicate: true,
                jobs: Vec::new(),
            });
        }
    }
    workflow::insert(conn, now, new)?;
    let ids = insert_plan(conn, now, &plan)?;
    Ok(WorkflowStarted {
        id: new.id,
        duplicate: false,
        jobs: ids,
    })
}

/// Writes the steps of a plan and their edges; returns their ids in order.
pub(crate) fn insert_plan(
    conn: &Connection,
    now: i64,
    plan: &WorkflowPlan,
) -> Result<Vec<JobId>, StoreError> {
    let mut ids: Vec<JobId> = Vec::with_capacity(plan.steps.len());
    for (i, step) in plan.steps.iter().enumerate() {
        let id = job::insert(conn, now, &step.job, step.state, step.waiting_for)?.id;
        let edges = plan
            .edges
            .iter()
            .filter(|(dependent, _, _)| *dependent == i)
            .map(|&(_, dependency, policy)| (ids[dependency], policy));
        dependency::insert(conn, id, edges)?;
        ids.push(id);
    }
    Ok(ids)
}

/// Retries a dead job with a fresh budget of attempts and revives its branch.
pub fn retry(conn: &Connection, now: i64, id: JobId) -> Result<Job, StoreError> {
    let dead = rules::check_retry(id, job::get(conn, id)?)?;
    transition::pend_again(conn, now, id)?;
    // A waiting step (a signal's timeout, a sleep) waits anew from its next run.
    wait::forget_timer(conn, id)?;
    if let Some(wf) = dead.workflow_id {
        workflow::revive(conn, wf)?;
    }
    cascade::revive_dependents(conn, id)?;
    reread(conn, id)
}

/// Cancels a live job and cascades to its dependents.
pub fn cancel(conn: &Connection, now: i64, id: JobId, reason: &str) -> Result<Job, StoreError> {
    let live = rules::check_cancel(id, job::get(conn, id)?)?;
    if live.state == JobState::Dead {
        if !transition::discard_dead(conn, id, &rules::discard_reason(reason))? {
            return Err(rules::discard_raced(id));
        }
        return reread(conn, id);
    }
    transition::cancel_live(conn, now, id, reason, None)?;
    cascade::settle_dependents(conn, now, id, JobState::Cancelled)?;
    if let Some(wf) = live.workflow_id {
        workflow::finish(conn, now, wf)?;
    }
    reread(conn, id)
}

/// Cancels a workflow's live jobs and marks it cancelled.
pub fn cancel_workflow(
    conn: &Connection,
    now: i64,
    id: WorkflowId,
) -> Result<WorkflowInfo, StoreError> {
    rules::check_cancel_workflow(id, workflow::get(conn, id)?)?;
    workflow::request_cancel(conn, id)?;
    transition::cancel_in_workflow(conn, now, id)?;
    workflow::finish(conn, now, id)?;
    workflow::get(conn, id)?.ok_or_else(|| rules::workflow_not_found(id))
}

/// Removes old terminal jobs outside running workflows, old finished workflows with all
/// their jobs (their edges go with the jobs, by foreign key), and concurrency keys that
/// no longer count.
pub fn clean(
    conn: &Connection,
    now: i64,
    older_than: Duration,
    limit: usize,
) -> Result<CleanReport, StoreError> {
    let cutoff = now.saturating_sub(duration_ms(older_than));
    let mut jobs = job::delete_finished(conn, cutoff, limit)?;
    let workflows = workflow::finished_before(conn, cutoff, limit)?;
    for id in &workflows {
        jobs += job::delete_of_workflow(conn, id)?;
        workflow::delete(conn, id)?;
    }
    limit::prune_keys(conn, limit)?;
    wait::clean(conn, limit)?;
    Ok(CleanReport {
        jobs,
        workflows: workflows.len() as u64,
    })
}

fn reread(conn: &Connection, id: JobId) -> Result<Job, StoreError> {
    job::get(conn, id)?.ok_or_else(|| rules::job_not_found(id))
}

/// A claim under limits, inside the writer's transaction (the writer serializes every
/// claim of the store, so the counts read here hold until the commit): how many the
/// scopes allow, then the jobs (fair across keys under a per-key limit, then unkeyed
/// ones), then the starts are recorded.
pub fn claim_limited(
    conn: &Connection,
    now: i64,
    request: &ClaimRequest,
) -> Result<Vec<ClaimedJob>, StoreError> {
    let mut allowance = request.limit as u64;
    for l in &request.limits {
        if let Some(max) = l.max_running {
            let running = job::running_in(conn, &l.scope)?;
            allowance = allowance.min(u64::from(max).saturating_sub(running));
        }
        if let Some(rate) = l.rate {
            let since = now - duration_ms(rate.period);
            let started = limit::starts_since(conn, &l.scope.key(), since)?;
            allowance = allowance.min(u64::from(rate.count).saturating_sub(started));
        }
    }
    if allowance == 0 {
        return Ok(Vec::new());
    }
    let allowance = allowance as usize;
    let limited = ClaimRequest {
        limit: allowance,
        ..request.clone()
    };
    let claimed = match (request.per_key, request.kinds.first()) {
        (Some(per_key), Some(kind)) => {
            let (keyed, top) = job::claim_keyed(conn, now, request, per_key, allowance)?;
            match top {
                Some(top) => {
                    limit::raise_floor(conn, &LimitScope::Kind(kind.clone()).key(), top)?;
                    keyed
                }
                // No keyed job may start: jobs of the kind without a key may. (Only
                // then: finding them means stepping over every waiting keyed job.)
                None => job::claim(conn, now, &limited, job::Pick::Unkeyed)?,
            }
        }
        _ => job::claim(conn, now, &limited, job::Pick::Due)?,
    };
    for l in &request.limits {
        if let Some(rate) = l.rate {
            limit::record_starts(conn, &l.scope.key(), now, claimed.len(), rate.period)?;
        }
    }
    Ok(jobchain_core::store::in_claim_order(claimed))
}

/// Sends a signal to a workflow (see [`jobchain_core::Store::send_signal`]): recorded, and
/// if it is the first of its name, every step waiting for it completes with its payload
/// through the settle of a completion (so its dependents are released as usual). A step
/// whose handler holds it at that moment is completed here; the handler's own outcome
/// then finds its attempt already settled and changes nothing.
pub fn send_signal(
    conn: &Connection,
    now: i64,
    workflow: WorkflowId,
    name: &str,
    payload: serde_json::Value,
) -> Result<SignalReceipt, StoreError> {
    rules::check_signal(name, &payload)?;
    if !workflow::exists(conn, workflow)? {
        return Err(rules::workflow_not_found(workflow));
    }
    let recorded = wait::record_signal(conn, now, workflow, name, &payload)?;
    let mut completed = Vec::new();
    if recorded.accepted {
        let waiting = wait::take_waiting(conn, now, workflow, name)?;
        let settlements = rules::signal_settlements(workflow, &waiting, &payload);
        let results = settle(conn, now, &settlements)?;
        completed = rules::signal_completed(&waiting, &results);
    }
    Ok(SignalReceipt {
        accepted: recorded.accepted,
        received_at: to_time(recorded.received_at),
        repeats: recorded.repeats.max(0) as u64,
        completed,
    })
}
