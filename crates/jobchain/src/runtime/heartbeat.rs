//! Heartbeats: extend the leases of running jobs, and tell handlers whose lease was lost
//! (rescued after a stall, or cancelled) to stop.

use std::sync::Arc;

use jobchain_core::store::Lease;

use super::notifier::sleep_or_stop;
use super::shared::Shared;

pub(crate) async fn run(shared: Arc<Shared>) {
    let interval = shared.config.heartbeat.unwrap_or(shared.config.lease / 3);
    loop {
        if !sleep_or_stop(interval, &shared.finished).await {
            return;
        }
        let leases: Vec<Lease> = match shared.running.lock() {
            Ok(running) => running
                .iter()
                .map(|(id, r)| Lease {
                    id: *id,
                    attempt: r.attempt,
                })
                .collect(),
            Err(_) => continue,
        };
        if leases.is_empty() {
            continue;
        }
        match shared
            .client
            .store()
            .heartbeat(leases, shared.config.lease)
            .await
        {
            Ok(lost) => {
                if let Ok(running) = shared.running.lock() {
                    for id in lost {
                        if let Some(r) = running.get(&id) {
                            tracing::info!(job.id = %id, "lease lost; signalling the handler to stop");
                            r.cancel.cancel();
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "heartbeat failed; leases may expire"),
        }
    }
}
