//! The cleaner: removes finished jobs and workflows older than the retention.
//!
//! A job of a workflow that is still running is never removed; a finished workflow is
//! removed together with all its jobs, so no workflow is ever seen half-deleted.

use std::sync::Arc;

use crate::runtime::notifier::sleep_or_stop;
use crate::runtime::shared::Shared;

const BATCH: usize = 1000;

pub(crate) async fn run(shared: Arc<Shared>) {
    let Some(retention) = shared.config.retention else {
        return;
    };
    loop {
        match shared.client.store().clean(retention, BATCH).await {
            Ok(report) if report.jobs > 0 || report.workflows > 0 => {
                tracing::info!(
                    jobs = report.jobs,
                    workflows = report.workflows,
                    "cleaned finished jobs"
                );
                // More may be left: go again at once, unless stopping.
                if shared.finished.is_cancelled() {
                    return;
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cleaning failed"),
        }
        if !sleep_or_stop(shared.config.clean_interval, &shared.finished).await {
            return;
        }
    }
}
