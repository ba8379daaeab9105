//! The completer: writes settlements in batches.
//!
//! Executors hand their settlement over a channel; the completer takes everything that
//! is waiting (up to `completer_batch`) and writes it in one store call, so under load
//! many completions, their staged follow-ups and their workflow updates share one
//! transaction, while at low load a lone settlement is written at once. A failed write
//! is retried with back-off, for as long as the store is unreachable: settlements are
//! fenced, so a repeat is harmless. After each
//! write, the jobs leave the running set (their heartbeats stop), their tickets for
//! unwritten outcomes free, and producers are woken.
//!
//! Claims on settle: when a queue's producer has caught up (its last claim came back short),
//! a write that completes workflow steps or stages follow-ups offers that queue's free
//! slots, and the store claims the jobs the write made pending for this worker in the same
//! call ([`Store::settle_and_claim`]); they start here at once, without a wake-up and a
//! claim of their own.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use jobchain_core::store::{ClaimRequest, ClaimedJob, Outcome, SettleResult, Settlement};
use jobchain_core::{Store, StoreError};
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::executor;
use super::notifier::Notifier;
use super::shared::{Pending, RunningJobs, Shared};

/// What the completer uses.
pub(crate) struct Completer {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) notifier: Arc<Notifier>,
    /// The worker's running jobs, which leave it once their outcome is written.
    pub(crate) running: Arc<RunningJobs>,
    /// At most this many settlements per write.
    pub(crate) max_batch: usize,
    /// The worker: its queues' slots for claims on settle, and where the jobs it claims run.
    pub(crate) shared: Arc<Shared>,
}

/// Writes the settlements that arrive on `rx` until every sender is gone.
pub(crate) async fn run(completer: Completer, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let max = completer.max_batch;
    let mut pending = Vec::with_capacity(max);
    let mut batch = Vec::with_capacity(max);
    while rx.recv_many(&mut pending, max).await > 0 {
        // Outcomes arrive one by one as executors finish: let the ones about to arrive do
        // so, so that one write takes them all.
        while pending.len() < max {
            tokio::task::yield_now().await;
            let before = pending.len();
            while pending.len() < max {
                match rx.try_recv() {
                    Ok(p) => pending.push(p),
                    Err(_) => break,
                }
            }
            if pending.len() == before {
                break;
            }
        }
        // The tickets for unwritten outcomes free when this batch is written.
        let tickets: Vec<_> = pending
            .drain(..)
            .map(|p| {
                batch.push(p.settlement);
                p.ticket
            })
            .collect();
        let all_claimed = match claim_on_settle(&completer, &batch).await {
            Some(all_claimed) => all_claimed,
            None => {
                write(completer.store.as_ref(), &batch).await;
                false
            }
        };
        completer.running.remove_settled(&batch);
        for s in &batch {
            if let Outcome::Retry { delay, .. } | Outcome::Snooze { delay } = s.outcome {
                completer.notifier.schedule_in(delay);
            }
        }
        // Jobs the write made available wake the producers, unless it claimed them all
        // for this worker.
        if !all_claimed {
            completer.notifier.notify();
        }
        drop(tickets);
        batch.clear();
    }
}

/// Writes the batch with an offer of free slots, if one is worth offering: returns, if it was
/// written, whether every job it made available was claimed on settle. A failed write is left
/// to [`write`], which retries it without an offer.
async fn claim_on_settle(completer: &Completer, batch: &[Settlement]) -> Option<bool> {
    let (offer, permits) = offer(&completer.shared, batch)?;
    let results = completer
        .store
        .settle_and_claim(batch.to_vec(), offer)
        .await;
    let (results, settled) = match results {
        Ok(written) => written,
        Err(e) => {
            tracing::debug!(
                error = %e,
                "writing settlements with an offer of free slots failed; writing them again"
            );
            return None;
        }
    };
    report_stale(batch, &results);
    let all_claimed = settled.all_claimed;
    start(completer, settled.claimed, permits).await;
    Some(all_claimed)
}

/// The offer for a write: the first queue whose producer has caught up, with its free
/// slots (taken until the write returns). None when no queue takes offers (the store
/// cannot claim on settle, or every queue has limits), shutdown has begun, or the batch
/// makes no job pending (only completions outside workflows without follow-ups).
fn offer(
    shared: &Shared,
    batch: &[Settlement],
) -> Option<(ClaimRequest, Vec<OwnedSemaphorePermit>)> {
    if shared.stop_claiming.is_cancelled() {
        return None;
    }
    let makes_pending = batch.iter().any(|s| match &s.outcome {
        Outcome::Completed { follow_ups, .. } => s.workflow_id.is_some() || !follow_ups.is_empty(),
        _ => false,
    });
    if !makes_pending {
        return None;
    }
    shared.queues.values().find_map(|q| {
        let offer = q.offer.as_ref()?;
        if !q.caught_up.load(Ordering::Relaxed) {
            return None;
        }
        let mut permits = Vec::new();
        while let Ok(p) = q.slots.clone().try_acquire_owned() {
            permits.push(p);
        }
        if permits.is_empty() {
            return None;
        }
        let mut offer = offer.clone();
        offer.limit = permits.len();
        Some((offer, permits))
    })
}

/// Starts the jobs a settle claimed, each in one of the offered slots; if shutdown
/// began meanwhile, releases them instead (their attempt not counted).
async fn start(
    completer: &Completer,
    claimed: Vec<ClaimedJob>,
    mut permits: Vec<OwnedSemaphorePermit>,
) {
    let shared = &completer.shared;
    let mut release = Vec::new();
    for job in claimed {
        match permits.pop() {
            Some(permit) if !shared.stop_claiming.is_cancelled() => {
                shared
                    .executors
                    .spawn(executor::run(shared.clone(), job, permit));
            }
            _ => release.push(Settlement {
                lease: job.lease(),
                outcome: Outcome::Released,
                only_if_expired: false,
                workflow_id: job.workflow_id,
            }),
        }
    }
    if !release.is_empty() {
        write(completer.store.as_ref(), &release).await;
    }
}

async fn write(store: &dyn Store, batch: &[Settlement]) {
    if try_write(store, batch, 3).await || batch.len() == 1 {
        return;
    }
    // One settlement may be what fails the batch: write them one by one, so the others
    // are not held back by it.
    tracing::warn!(
        jobs = batch.len(),
        "writing a batch of settlements failed; writing them one by one"
    );
    for settlement in batch {
        try_write(store, std::slice::from_ref(settlement), 12).await;
    }
}

/// Writes a batch, retrying with back-off: up to `tries` times when the store rejects
/// it, for as long as it takes when the store is unreachable or busy (shutdown bounds
/// that). Returns whether it was written (or the store is closed, which retrying cannot
/// mend).
async fn try_write(store: &dyn Store, batch: &[Settlement], tries: u32) -> bool {
    let mut backoff = Duration::from_millis(20);
    for attempt in 1.. {
        match store.settle(batch.to_vec()).await {
            Ok(results) => {
                report_stale(batch, &results);
                return true;
            }
            Err(StoreError::Closed) => {
                tracing::error!(jobs = batch.len(), "store closed before settlements were written; the jobs will be rescued when their leases expire");
                return true;
            }
            // A store that is unreachable or busy is waited for as long as the worker
            // runs: the outcomes are fenced, so writing them late is harmless, and
            // giving up would throw away results this process holds.
            Err(e) if attempt < tries || e.is_retryable() => {
                tracing::warn!(error = %e, retry_in = ?backoff, "writing settlements failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = batch.len(), "giving up writing settlements; the jobs will be rescued when their leases expire");
                return false;
            }
        }
    }
    false
}

/// Logs the settlements that their fence rejected.
fn report_stale(batch: &[Settlement], results: &[SettleResult]) {
    for (s, r) in batch.iter().zip(results) {
        if *r == SettleResult::Stale {
            tracing::info!(
                job.id = %s.lease.id,
                job.attempt = s.lease.attempt,
                "settlement rejected: the job's lease was lost (rescued, cancelled or claimed again)"
            );
        }
    }
}
