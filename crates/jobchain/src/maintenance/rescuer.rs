//! The rescuer: finds running jobs whose lease expired (their worker crashed, hung or
//! lost its connection) and counts the attempt as failed: retried after the kind's
//! back-off, or dead when no attempts are left.
//!
//! Each rescue is a settlement fenced by the lease *and* by the lease having expired, so
//! a worker that completes the job first wins, and a rescue never overwrites a job that
//! completed or was extended by a heartbeat in the meantime.

use std::sync::Arc;
use std::time::Duration;

use jobchain_core::store::{Outcome, SettleResult, Settlement};
use jobchain_core::{Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::runtime::notifier::{sleep_or_stop, Notifier};
use crate::runtime::shared::{RetryPolicies, RunningJobs};

const BATCH: usize = 200;

/// Every `interval` until `finished`, rescues the jobs whose lease expired, by the
/// retry policies of their kinds.
pub(crate) async fn run(
    store: Arc<dyn Store>,
    notifier: Arc<Notifier>,
    policies: Arc<RetryPolicies>,
    own: Arc<RunningJobs>,
    interval: Duration,
    finished: CancellationToken,
) {
    loop {
        if !sleep_or_stop(interval, &finished).await {
            return;
        }
        if let Err(e) = rescue_once(store.as_ref(), &notifier, &policies, &own).await {
            tracing::warn!(error = %e, "rescuing expired jobs failed");
        }
    }
}

/// One pass; returns how many jobs were rescued.
async fn rescue_once(
    store: &dyn Store,
    notifier: &Notifier,
    policies: &RetryPolicies,
    own: &RunningJobs,
) -> Result<usize, StoreError> {
    let mut expired = store.expired(BATCH).await?;
    // Jobs this worker still holds (running, or finished with the outcome unwritten after
    // an outage) are its own to settle.
    expired.retain(|e| !own.holds(&e.lease));
    if expired.is_empty() {
        return Ok(0);
    }
    let settlements: Vec<Settlement> = expired
        .iter()
        .map(|e| {
            let policy = policies.of(&e.kind);
            let error = format!(
                "lease expired during attempt {}: the worker stopped heart-beating (crashed, hung or disconnected)",
                e.lease.attempt
            );
            let outcome = if policy.should_retry(e.lease.attempt, e.max_attempts) {
                Outcome::Retry {
                    error,
                    delay: policy.backoff(e.lease.attempt, e.lease.id.0 as u64),
                }
            } else {
                Outcome::Dead { error }
            };
            Settlement {
                lease: e.lease,
                outcome,
                only_if_expired: true,
                workflow_id: e.workflow_id,
            }
        })
        .collect();
    let results = store.settle(settlements.clone()).await?;
    let mut rescued = 0;
    for (s, r) in settlements.iter().zip(results) {
        if matches!(r, SettleResult::Applied { .. }) {
            rescued += 1;
            tracing::warn!(job.id = %s.lease.id, job.attempt = s.lease.attempt, "rescued a job whose lease expired");
            if let Outcome::Retry { delay, .. } = s.outcome {
                notifier.schedule_in(delay);
            }
        }
    }
    notifier.notify();
    Ok(rescued)
}
