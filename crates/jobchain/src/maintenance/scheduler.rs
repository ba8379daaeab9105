//! The scheduler: makes due delayed and retrying jobs available at once.
//!
//! A pending job whose `run_at` lies in the future is claimable from that instant; the
//! scheduler's part is to wake the producers then. Enqueues and back-offs made through
//! this process register timers with the notifier; at start the scheduler also asks the
//! store for the earliest scheduled job, covering jobs written before it started. Jobs
//! scheduled by other processes are found by the producers' poll.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::runtime::shared::Shared;

pub(crate) async fn run(shared: Arc<Shared>) {
    let notifier = shared.client.notifier().clone();
    match shared.client.store().next_scheduled().await {
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
            _ = shared.finished.cancelled() => return,
        }
    }
}
