//! The state that the claim, run and settle path of one worker shares, and the parts
//! of it that background services are given. Internal: users see only
//! [`Worker`](super::Worker) and [`WorkerHandle`](super::WorkerHandle).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use jobchain_core::job::JobId;
use jobchain_core::registry::WorkerRegistration;
use jobchain_core::retry::RetryPolicy;
use jobchain_core::store::{ClaimRequest, Lease, Settlement};
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

/// The slots of one queue, shared by its producer (each claimed job takes one) and the
/// completer (which offers the free ones to the settles it writes).
pub(crate) struct QueueSlots {
    pub(crate) slots: Arc<Semaphore>,
    /// What a settle may claim here: the queue's kinds without limits, with its worker
    /// and lease (the limit is set per offer). None when the store cannot claim on settle
    /// or the queue has limits of its own, which only a claim enforces.
    pub(crate) offer: Option<ClaimRequest>,
    /// Whether the producer's last claim came back short: the queue has no backlog, so
    /// a settle's check that no earlier job waits is cheap, and a job claimed on settle is
    /// one the producer would have claimed next.
    pub(crate) caught_up: AtomicBool,
}

/// A registered handler.
pub(crate) struct Registered {
    pub(crate) handler: ErasedHandler,
    pub(crate) options: KindOptions,
}

/// A job running on this worker.
struct Running {
    attempt: u32,
    cancel: CancellationToken,
    /// Its handler has ended; the outcome waits for the completer.
    ended: bool,
}

/// The jobs running on this worker: what the heartbeat extends, the completer removes
/// once their outcome is written, and shutdown counts.
#[derive(Default)]
pub(crate) struct RunningJobs(Mutex<HashMap<JobId, Running>>);

impl RunningJobs {
    /// Records a claimed job; `cancel` stops its handler.
    pub(crate) fn insert(&self, id: JobId, attempt: u32, cancel: CancellationToken) {
        if let Ok(mut running) = self.0.lock() {
            running.insert(
                id,
                Running {
                    attempt,
                    cancel,
                    ended: false,
                },
            );
        }
    }

    /// Notes that a job's handler has ended: its outcome is on its way to the store, so
    /// a lost lease has nobody left to stop.
    pub(crate) fn ended(&self, lease: Lease) {
        if let Ok(mut running) = self.0.lock() {
            // Only this attempt's entry: the job may run here again under a later one.
            if let Some(r) = running
                .get_mut(&lease.id)
                .filter(|r| r.attempt == lease.attempt)
            {
                r.ended = true;
            }
        }
    }

    /// Whether this worker holds `lease`: the job runs here, or its outcome is not
    /// written yet. The worker's own rescuer leaves such jobs alone, however long an
    /// outage kept their heartbeats and outcomes from the store: the process still has
    /// the result, and the completer writes it.
    pub(crate) fn holds(&self, lease: &Lease) -> bool {
        self.0.lock().is_ok_and(|running| {
            running
                .get(&lease.id)
                .is_some_and(|r| r.attempt == lease.attempt)
        })
    }

    /// The leases this worker holds.
    pub(crate) fn leases(&self) -> Vec<Lease> {
        self.0
            .lock()
            .map(|running| {
                running
                    .iter()
                    .map(|(id, r)| Lease {
                        id: *id,
                        attempt: r.attempt,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Tells the handlers of jobs whose lease was lost to stop.
    pub(crate) fn stop(&self, lost: &[JobId]) {
        if let Ok(running) = self.0.lock() {
            for id in lost {
                if let Some(r) = running.get(id).filter(|r| !r.ended) {
                    tracing::info!(job.id = %id, "lease lost; signalling the handler to stop");
                    r.cancel.cancel();
                }
            }
        }
    }

    /// Forgets the jobs whose settlements were written (a job claimed again since, under
    /// a later attempt, stays).
    pub(crate) fn remove_settled(&self, written: &[Settlement]) {
        if let Ok(mut running) = self.0.lock() {
            for s in written {
                if running
                    .get(&s.lease.id)
                    .is_some_and(|r| r.attempt == s.lease.attempt)
                {
                    running.remove(&s.lease.id);
                }
            }
        }
    }

    /// How many.
    pub(crate) fn len(&self) -> usize {
        self.0.lock().map(|r| r.len()).unwrap_or(0)
    }
}

/// The retry policy of each kind this worker handles.
pub(crate) struct RetryPolicies(HashMap<String, RetryPolicy>);

impl RetryPolicies {
    pub(crate) fn new(handlers: &HashMap<String, Registered>) -> Self {
        RetryPolicies(
            handlers
                .iter()
                .map(|(kind, h)| (kind.clone(), h.options.retry))
                .collect(),
        )
    }

    /// The retry policy of a kind (the default policy for kinds without a handler here).
    pub(crate) fn of(&self, kind: &str) -> RetryPolicy {
        self.0.get(kind).copied().unwrap_or_default()
    }
}

/// What the producers and executors of one worker (the claim, run and settle path)
/// share. The background services (completer, heartbeat, rescuer, scheduler, cleaner,
/// registry) are given only the parts they use when the worker starts.
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) config: WorkerConfig,
    pub(crate) handlers: HashMap<String, Registered>,
    pub(crate) kinds: Vec<String>,
    /// Application state for handlers (`ctx.data::<T>()`).
    pub(crate) data: Data,
    pub(crate) running: Arc<RunningJobs>,
    pub(crate) retry: Arc<RetryPolicies>,
    /// Each queue's slots.
    pub(crate) queues: BTreeMap<String, QueueSlots>,
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
    /// How many tickets `unwritten` has in all.
    pub(crate) unwritten_capacity: usize,
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

    /// Outcomes handed to the completer and not written yet.
    pub(crate) fn unwritten_outcomes(&self) -> usize {
        self.unwritten_capacity
            .saturating_sub(self.unwritten.available_permits())
    }

    /// Hands a settlement to the completer. It first takes a ticket for an unwritten
    /// outcome (there are twice as many as the worker has slots, so that a full claim's
    /// outcomes fit beside the batch being written), holding the job's slot while it
    /// waits, and frees the slot once it has one: claiming goes on while the completer
    /// writes, but a slow store slows claiming instead of letting unwritten outcomes
    /// (and their leases) pile up.
    pub(crate) async fn settle(&self, settlement: Settlement, slot: OwnedSemaphorePermit) {
        let ticket = tokio::select! {
            ticket = self.unwritten.clone().acquire_owned() => ticket,
            // Shutdown gave up on the store: the lease expires and the job is rescued.
            _ = self.finished.cancelled() => {
                tracing::error!(
                    job.id = %settlement.lease.id,
                    "shutdown ended before this outcome could be written; the job will be rescued when its lease expires"
                );
                return;
            }
        };
        let Ok(ticket) = ticket else {
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
