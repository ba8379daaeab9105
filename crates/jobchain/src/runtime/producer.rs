//! The producer of one queue: claims as many jobs as the queue has free slots, in one
//! store call, and hands each to an executor.
//!
//! When a claim returns fewer jobs than asked for, the queue is drained: the producer
//! waits for a wake-up from the notifier (a job was enqueued or released in-process, a
//! timer fired, another process committed) or, at the latest, the poll interval.

use std::sync::Arc;
use std::time::Duration;

use jobchain_core::store::ClaimRequest;
use tokio::sync::Semaphore;

use super::executor;
use super::notifier::sleep_or_stop;
use super::shared::Shared;

pub(crate) async fn run(shared: Arc<Shared>, queue: String, slots: usize) {
    let semaphore = Arc::new(Semaphore::new(slots));
    let mut wakeups = shared.client.notifier().subscribe();
    let stop = shared.stop_claiming.clone();
    let mut backoff = Duration::from_millis(50);
    loop {
        let first = tokio::select! {
            permit = semaphore.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = stop.cancelled() => return,
        };
        let mut permits = vec![first];
        // Slots free one by one as executors hand their outcomes over: let the ones that
        // are about to free do so, so that one claim takes them all.
        loop {
            while let Ok(p) = semaphore.clone().try_acquire_owned() {
                permits.push(p);
            }
            if permits.len() >= slots {
                break;
            }
            tokio::task::yield_now().await;
            if semaphore.available_permits() == 0 {
                break;
            }
        }
        // Mark wake-ups seen before claiming, so one that arrives during the claim is
        // not lost.
        wakeups.borrow_and_update();
        let requested = permits.len();
        let claimed = shared
            .client
            .store()
            .claim(ClaimRequest {
                queue: queue.clone(),
                kinds: shared.kinds.clone(),
                limit: requested,
                worker: shared.config.id.clone(),
                lease: shared.config.lease,
            })
            .await;
        let jobs = match claimed {
            Ok(jobs) => {
                backoff = Duration::from_millis(50);
                jobs
            }
            Err(e) => {
                tracing::warn!(queue = %queue, error = %e, retry_in = ?backoff, "claiming jobs failed");
                drop(permits);
                if !sleep_or_stop(backoff, &stop).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let got = jobs.len();
        for job in jobs {
            let Some(permit) = permits.pop() else {
                break;
            };
            shared
                .executors
                .spawn(executor::run(shared.clone(), job, permit));
        }
        if got < requested {
            drop(permits);
            tokio::select! {
                _ = wakeups.changed() => {}
                _ = tokio::time::sleep(shared.config.poll_interval) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}
