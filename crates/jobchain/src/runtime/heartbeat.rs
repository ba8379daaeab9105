//! Heartbeats: extend the leases of running jobs, and tell handlers whose lease was lost
//! (rescued after a stall, or cancelled) to stop.

use std::sync::Arc;
use std::time::Duration;

use jobchain_core::Store;
use tokio_util::sync::CancellationToken;

use super::notifier::sleep_or_stop;
use super::shared::RunningJobs;

/// Every `interval` until `finished`, extends the leases of `running` by `lease`.
pub(crate) async fn run(
    store: Arc<dyn Store>,
    running: Arc<RunningJobs>,
    lease: Duration,
    interval: Duration,
    finished: CancellationToken,
) {
    loop {
        if !sleep_or_stop(interval, &finished).await {
            return;
        }
        let leases = running.leases();
        if leases.is_empty() {
            continue;
        }
        match store.heartbeat(leases, lease).await {
            Ok(lost) => running.stop(&lost),
            Err(e) => tracing::warn!(error = %e, "heartbeat failed; leases may expire"),
        }
    }
}
