//! The cleaner: removes finished jobs and workflows older than the retention.
//!
//! A job of a workflow that is still running is never removed; a finished workflow is
//! removed together with all its jobs, so no workflow is ever seen half-deleted.

use std::sync::Arc;
use std::time::Duration;

use jobchain_core::Store;
use tokio_util::sync::CancellationToken;

use crate::runtime::notifier::sleep_or_stop;

const BATCH: usize = 1000;

/// Every `interval` until `finished`, removes what finished longer than `retention` ago.
pub(crate) async fn run(
    store: Arc<dyn Store>,
    retention: Duration,
    interval: Duration,
    finished: CancellationToken,
) {
    loop {
        match store.clean(retention, BATCH).await {
            Ok(report) if report.jobs > 0 || report.workflows > 0 => {
                tracing::info!(
                    jobs = report.jobs,
                    workflows = report.workflows,
                    "cleaned finished jobs"
                );
                // More may be left: go again at once, unless stopping.
                if finished.is_cancelled() {
                    return;
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cleaning failed"),
        }
        if !sleep_or_stop(interval, &finished).await {
            return;
        }
    }
}
