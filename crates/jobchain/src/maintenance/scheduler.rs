//! The scheduler: makes due delayed and retrying jobs available at once.
//!
//! A pending job whose `run_at` lies in the future is claimable from that instant; the
//! scheduler's part is to wake the producers then. Enqueues and back-offs made through
//! this process register timers with the notifier; at start the scheduler also asks the
//! store for the earliest scheduled job, covering jobs written before it started. Jobs
//! scheduled by other processes are found by the producers' poll.

use std::sync::Arc;
use std::time::Duration;

use jobchain_core::Store;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::runtime::notifier::Notifier;

/// Until `finished`, wakes the producers through `notifier` when a scheduled job is due.
pub(crate) async fn run(
    store: Arc<dyn Store>,
    notifier: Arc<Notifier>,
    finished: CancellationToken,
) {
    match store.next_scheduled().await {
        Ok(Some(delay)) => notifier.schedule_in(delay.max(Duration::from_millis(1))),
        Ok(None) => {}
        Err(e) => tracing::debug!(error = %e, "cannot read the next scheduled job"),
    }
    let mut timers = notifier.subscribe_timers();
    loop {
        timers.borrow_and_update();
        let next = notifier
            .next_timer()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {
                if notifier.pop_due(Instant::now()) {
                    notifier.notify();
                }
            }
            _ = timers.changed() => {}
            _ = finished.cancelled() => return,
        }
    }
}
