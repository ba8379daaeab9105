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

use std::sync::Arc;
use std::time::Duration;

use jobchain_core::store::{Outcome, SettleResult, Settlement};
use jobchain_core::{Store, StoreError};
use tokio::sync::mpsc;

use super::notifier::Notifier;
use super::shared::{Pending, RunningJobs};

/// What the completer uses.
pub(crate) struct Completer {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) notifier: Arc<Notifier>,
    /// The worker's running jobs, which leave it once their outcome is written.
    pub(crate) running: Arc<RunningJobs>,
    /// At most this many settlements per write.
    pub(crate) max_batch: usize,
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
        write(completer.store.as_ref(), &batch).await;
        completer.running.remove_settled(&batch);
        for s in &batch {
            if let Outcome::Retry { delay, .. } | Outcome::Snooze { delay } = s.outcome {
                completer.notifier.schedule_in(delay);
            }
        }
        completer.notifier.notify();
        drop(tickets);
        batch.clear();
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
                for (s, r) in batch.iter().zip(results) {
                    if r == SettleResult::Stale {
                        tracing::info!(
                            job.id = %s.lease.id,
                            job.attempt = s.lease.attempt,
                            "settlement rejected: the job's lease was lost (rescued, cancelled or claimed again)"
                        );
                    }
                }
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
