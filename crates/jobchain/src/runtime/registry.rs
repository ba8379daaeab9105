//! The worker's entry in the store's registry of live workers.
//!
//! At start the worker records its id, host, process id, queues and kinds; every
//! `registry_ttl / 3` it refreshes the record (so a record lives while its process
//! does, and expires `registry_ttl` after a kill) and deletes records that expired.
//! Every `unhandled_check` it asks which pending jobs no live worker handles and logs
//! one warning per queue and kind the first time it sees one — the job that would
//! otherwise wait for ever in silence. At shutdown it removes its record.

use std::collections::HashSet;
use std::time::Duration;

use jobchain_core::registry::WorkerRegistration;
use tokio_util::sync::CancellationToken;

use crate::client::Client;

/// How long deregistering may take at shutdown before the record is left to expire.
const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs until `finished` fires, then removes the record.
pub(crate) async fn run(
    client: Client,
    registration: WorkerRegistration,
    unhandled_check: Duration,
    finished: CancellationToken,
) {
    let store = client.store().clone();
    let refresh = (registration.ttl / 3).max(Duration::from_millis(10));
    let mut warned: HashSet<(String, String)> = HashSet::new();
    let mut next_check = tokio::time::Instant::now() + unhandled_check;
    loop {
        if let Err(e) = store.register_worker(registration.clone()).await {
            tracing::warn!(error = %e, "cannot refresh this worker's registry entry");
        }
        if let Err(e) = store.expire_workers().await {
            tracing::debug!(error = %e, "cannot delete expired worker records");
        }
        if tokio::time::Instant::now() >= next_check {
            next_check = tokio::time::Instant::now() + unhandled_check;
            warn_unhandled(&client, &mut warned).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(refresh) => {}
            _ = finished.cancelled() => break,
        }
    }
    match tokio::time::timeout(
        DEREGISTER_TIMEOUT,
        store.deregister_worker(&registration.id),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot remove this worker's registry entry; it expires by itself")
        }
        Err(_) => {
            tracing::warn!("removing this worker's registry entry timed out; it expires by itself")
        }
    }
}

async fn warn_unhandled(client: &Client, warned: &mut HashSet<(String, String)>) {
    let unhandled = match client.unhandled().await {
        Ok(unhandled) => unhandled,
        Err(e) => {
            tracing::debug!(error = %e, "cannot check for unhandled kinds");
            return;
        }
    };
    for u in unhandled {
        if warned.insert((u.queue.clone(), u.kind.clone())) {
            let hint = if u.handled_on.is_empty() {
                "no live worker has a handler for this kind: register one, or check the kind's spelling".to_string()
            } else {
                format!(
                    "live workers handle this kind on queue(s) {}: enqueue it there, or subscribe a worker to this queue",
                    u.handled_on.join(", ")
                )
            };
            tracing::warn!(
                queue = %u.queue,
                kind = %u.kind,
                pending = u.count,
                oldest_age = ?u.oldest_age,
                "pending jobs that no live worker handles: {hint}"
            );
        }
    }
}

/// This process's host name: `HOSTNAME`, else `/etc/hostname`, else `unknown`.
pub(crate) fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_string())
}
