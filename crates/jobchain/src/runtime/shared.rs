//! The state that the roles of one worker share. Internal: users see only
//! [`Worker`](super::Worker) and [`WorkerHandle`](super::WorkerHandle).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jobchain_core::job::JobId;
use jobchain_core::registry::WorkerRegistration;
use jobchain_core::retry::RetryPolicy;
use jobchain_core::store::Settlement;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::WorkerConfig;
use crate::client::Client;
use crate::context::Data;
use crate::handler::{ErasedHandler, KindOptions};

/// A settlement waiting for the completer, holding a ticket of `Shared::unwritten`.
pub(crate) struct Pending {
    pub(crate) settlement: Settlement,
    pub(crate) ticket: OwnedSemaphorePermit,
}

/// A registered handler.
pub(crate) struct Registered {
    pub(crate) handler: ErasedHandler,
    pub(crate) options: KindOptions,
}

/// A job running on this worker.
pub(crate) struct Running {
    pub(crate) attempt: u32,
    pub(crate) cancel: CancellationToken,
}

/// State shared by the tasks of one worker.
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) config: WorkerConfig,
    pub(crate) handlers: HashMap<String, Registered>,
    pub(crate) kinds: Vec<String>,
    /// Application state for handlers (`ctx.data::<T>()`).
    pub(crate) data: Data,
    pub(crate) running: Mutex<HashMap<JobId, Running>>,
    /// Fired first at shutdown: stop claiming.
    pub(crate) stop_claiming: CancellationToken,
    /// Fired at the shutdown deadline: interrupt handlers and release their jobs.
    pub(crate) hard_stop: CancellationToken,
    /// Fired last: background services end.
    pub(crate) finished: CancellationToken,
    pub(crate) settlements: Mutex<Option<mpsc::UnboundedSender<Pending>>>,
    pub(crate) executors: TaskTracker,
    /// Tickets for settlements handed to the completer and not yet written.
    pub(crate) unwritten: Arc<Semaphore>,
}

impl Shared {
    /// What this worker records in the registry of live workers.
    pub(crate) fn registration(&self) -> WorkerRegistration {
        WorkerRegistration {
            id: self.config.id.clone(),
            host: super::registry::host_name(),
            pid: std::process::id(),
            queues: self.config.queues.keys().cloned().collect(),
            kinds: self.kinds.clone(),
            ttl: self.config.registry_ttl,
        }
    }

    /// The retry policy of a kind (the default policy for kinds without a handler here).
    pub(crate) fn retry_policy(&self, kind: &str) -> RetryPolicy {
        self.handlers
            .get(kind)
            .map(|h| h.options.retry)
            .unwrap_or_default()
    }

    /// Hands a settlement to the completer. It first takes a ticket for an unwritten
    /// outcome (there are twice as many as the worker has slots, so that a full claim's
    /// outcomes fit beside the batch being written), holding the job's slot while it
    /// waits, and frees the slot once it has one: claiming goes on while the completer
    /// writes, but a slow store slows claiming instead of letting unwritten outcomes
    /// (and their leases) pile up.
    pub(crate) async fn settle(&self, settlement: Settlement, slot: OwnedSemaphorePermit) {
        let Ok(ticket) = self.unwritten.clone().acquire_owned().await else {
            return;
        };
        drop(slot);
        let slot = ticket;
        let id = settlement.lease.id;
        let sender = self.settlements.lock().ok().and_then(|s| s.clone());
        let sent = sender.is_some_and(|s| {
            s.send(Pending {
                settlement,
                ticket: slot,
            })
            .is_ok()
        });
        if !sent {
            tracing::error!(
                job.id = %id,
                "the completer has stopped; the job's lease will expire and it will be rescued"
            );
        }
    }
}
