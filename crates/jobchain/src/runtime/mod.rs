//! The worker runtime: one role per file.
//!
//! - [`producer`] claims jobs in batches of as many as its queue has free slots;
//! - [`executor`] runs one job: timeout, panic capture, tracing span, outcome;
//! - [`completer`] batches settlements (completions with their staged follow-ups,
//!   failures, releases) into few store calls;
//! - [`heartbeat`] extends the leases of running jobs and stops handlers whose lease
//!   was lost;
//! - [`notifier`] wakes idle producers.
//!
//! The maintenance services (rescuer, scheduler, cleaner) live in
//! [`crate::maintenance`]. [`Worker`] wires them together; [`WorkerHandle`] stops them.

pub(crate) mod completer;
pub(crate) mod executor;
pub(crate) mod heartbeat;
pub(crate) mod notifier;
pub(crate) mod producer;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobchain_core::job::{JobId, DEFAULT_QUEUE};
use jobchain_core::retry::RetryPolicy;
use jobchain_core::store::Settlement;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::Client;
use crate::context::JobContext;
use crate::error::{Error, Result};
use crate::handler::{erase, ErasedHandler, HandlerOptions, JobError};
use crate::maintenance;

/// Settings of a worker; every field has a default.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Recorded on claimed jobs (default: host, process id and a counter).
    pub id: String,
    /// Slots of each queue that no `queue()` call named.
    pub concurrency: usize,
    /// Queues with their own slot counts.
    pub queues: BTreeMap<String, usize>,
    /// How long a claim holds without a heartbeat.
    pub lease: Duration,
    /// How often running jobs' leases are extended (default: a third of the lease).
    pub heartbeat: Option<Duration>,
    /// How long an idle producer waits before claiming again when nothing woke it.
    pub poll_interval: Duration,
    /// How often an idle worker checks for commits by other processes (stores without
    /// push notifications).
    pub change_poll: Duration,
    /// How often expired leases are looked for.
    pub rescue_interval: Duration,
    /// How long shutdown waits for running jobs before releasing them.
    pub shutdown_timeout: Duration,
    /// Most settlements written in one store call.
    pub completer_batch: usize,
    /// Removes finished jobs and workflows older than this (default: never).
    pub retention: Option<Duration>,
    /// How often the cleaner runs when `retention` is set.
    pub clean_interval: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_string());
        WorkerConfig {
            id: format!(
                "{host}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
            concurrency: 100,
            queues: BTreeMap::new(),
            lease: Duration::from_secs(30),
            heartbeat: None,
            poll_interval: Duration::from_secs(1),
            change_poll: Duration::from_millis(50),
            rescue_interval: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
            completer_batch: 512,
            retention: None,
            clean_interval: Duration::from_secs(60),
        }
    }
}

/// A settlement waiting for the completer, holding a ticket of `Shared::unwritten`.
pub(crate) struct Pending {
    pub(crate) settlement: Settlement,
    pub(crate) ticket: OwnedSemaphorePermit,
}

/// A registered handler.
pub(crate) struct Registered {
    pub(crate) handler: ErasedHandler,
    pub(crate) options: HandlerOptions,
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

/// Builds a [`Worker`]: handlers, queues and settings.
pub struct WorkerBuilder {
    client: Client,
    config: WorkerConfig,
    handlers: HashMap<String, Registered>,
}

impl WorkerBuilder {
    /// Registers a handler for `kind` with default options.
    pub fn handler<P, O, F, Fut>(self, kind: &str, handler: F) -> Self
    where
        P: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        F: Fn(JobContext, P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<O, JobError>> + Send + 'static,
    {
        self.handler_with(kind, HandlerOptions::default(), handler)
    }

    /// Registers a handler for `kind` with its retry policy, timeout, queue and priority.
    pub fn handler_with<P, O, F, Fut>(
        mut self,
        kind: &str,
        options: HandlerOptions,
        handler: F,
    ) -> Self
    where
        P: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        F: Fn(JobContext, P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<O, JobError>> + Send + 'static,
    {
        self.handlers.insert(
            kind.to_string(),
            Registered {
                handler: erase(kind, handler),
                options,
            },
        );
        self
    }

    /// Slots of every queue not configured with [`queue`](Self::queue).
    pub fn concurrency(mut self, slots: usize) -> Self {
        self.config.concurrency = slots;
        self
    }

    /// Subscribes to `queue` with `slots` concurrent jobs.
    pub fn queue(mut self, queue: &str, slots: usize) -> Self {
        self.config.queues.insert(queue.to_string(), slots);
        self
    }

    /// Replaces all settings.
    pub fn config(mut self, config: WorkerConfig) -> Self {
        self.config = config;
        self
    }

    /// Changes settings in place.
    pub fn configure(mut self, f: impl FnOnce(&mut WorkerConfig)) -> Self {
        f(&mut self.config);
        self
    }

    /// Checks the configuration and registers the handlers' options as their kinds'
    /// defaults on the client.
    pub fn build(self) -> Result<Worker> {
        if self.handlers.is_empty() {
            return Err(Error::Config(
                "a worker needs at least one handler: call .handler(kind, fn)".into(),
            ));
        }
        let mut config = self.config;
        for (kind, registered) in &self.handlers {
            if registered.options.retry.max_attempts == 0 {
                return Err(Error::Config(format!(
                    "handler `{kind}`: max_attempts must be at least 1"
                )));
            }
            let queue = registered
                .options
                .queue
                .clone()
                .unwrap_or_else(|| DEFAULT_QUEUE.to_string());
            config.queues.entry(queue).or_insert(config.concurrency);
            self.client.register_kind(kind, registered.options.clone());
        }
        if let Some((queue, _)) = config.queues.iter().find(|(_, slots)| **slots == 0) {
            return Err(Error::Config(format!(
                "queue `{queue}` has 0 slots: give it at least 1"
            )));
        }
        if config.lease < Duration::from_millis(10) {
            return Err(Error::Config("the lease must be at least 10 ms".into()));
        }
        let slots: usize = config.queues.values().sum();
        let mut kinds: Vec<String> = self.handlers.keys().cloned().collect();
        kinds.sort();
        Ok(Worker {
            shared: Arc::new(Shared {
                client: self.client,
                config,
                handlers: self.handlers,
                kinds,
                running: Mutex::new(HashMap::new()),
                stop_claiming: CancellationToken::new(),
                hard_stop: CancellationToken::new(),
                finished: CancellationToken::new(),
                settlements: Mutex::new(None),
                executors: TaskTracker::new(),
                unwritten: Arc::new(Semaphore::new(2 * slots.max(1))),
            }),
        })
    }
}

/// A configured worker; [`start`](Worker::start) runs it.
pub struct Worker {
    shared: Arc<Shared>,
}

impl Worker {
    /// Starts building a worker on `client`.
    pub fn builder(client: &Client) -> WorkerBuilder {
        WorkerBuilder {
            client: client.clone(),
            config: WorkerConfig::default(),
            handlers: HashMap::new(),
        }
    }

    /// The worker's settings.
    pub fn config(&self) -> &WorkerConfig {
        &self.shared.config
    }

    /// Spawns the producers, the completer and the background services on the current
    /// tokio runtime.
    pub fn start(self) -> WorkerHandle {
        let shared = self.shared;
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut s) = shared.settlements.lock() {
            *s = Some(tx);
        }
        let completer = tokio::spawn(completer::run(shared.clone(), rx));
        let mut producers = Vec::new();
        for (queue, slots) in &shared.config.queues {
            producers.push(tokio::spawn(producer::run(
                shared.clone(),
                queue.clone(),
                *slots,
            )));
        }
        let store = shared.client.store().clone();
        let notifier = shared.client.notifier().clone();
        let mut services = vec![
            tokio::spawn(heartbeat::run(shared.clone())),
            tokio::spawn(maintenance::rescuer::run(shared.clone())),
            tokio::spawn(maintenance::scheduler::run(shared.clone())),
            tokio::spawn(notifier::watch_store(
                store,
                notifier,
                shared.config.change_poll,
                shared.finished.clone(),
            )),
        ];
        if shared.config.retention.is_some() {
            services.push(tokio::spawn(maintenance::cleaner::run(shared.clone())));
        }
        tracing::info!(worker = %shared.config.id, kinds = ?shared.kinds, "worker started");
        WorkerHandle {
            shared,
            tasks: tokio::sync::Mutex::new(Some(Tasks {
                producers,
                completer,
                services,
            })),
        }
    }
}

struct Tasks {
    producers: Vec<JoinHandle<()>>,
    completer: JoinHandle<()>,
    services: Vec<JoinHandle<()>>,
}

/// What a shutdown did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Jobs that were still running at the deadline and were released for another worker.
    pub released: usize,
}

/// A running worker. Dropping it does not stop the worker; call
/// [`shutdown`](WorkerHandle::shutdown).
pub struct WorkerHandle {
    shared: Arc<Shared>,
    tasks: tokio::sync::Mutex<Option<Tasks>>,
}

impl WorkerHandle {
    /// The worker's id.
    pub fn id(&self) -> &str {
        &self.shared.config.id
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        self.shared.running.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// Graceful shutdown with the configured deadline; see
    /// [`shutdown_within`](Self::shutdown_within).
    pub async fn shutdown(&self) -> ShutdownReport {
        self.shutdown_within(self.shared.config.shutdown_timeout)
            .await
    }

    /// Stops claiming, lets running jobs finish within `deadline`, then interrupts the
    /// rest and releases them so that another worker takes them at once; writes every
    /// settlement and stops the background services. Calling it again is harmless.
    pub async fn shutdown_within(&self, deadline: Duration) -> ShutdownReport {
        let Some(tasks) = self.tasks.lock().await.take() else {
            return ShutdownReport::default();
        };
        let shared = &self.shared;
        shared.stop_claiming.cancel();
        for producer in tasks.producers {
            let _ = producer.await;
        }
        shared.executors.close();
        let mut report = ShutdownReport::default();
        if tokio::time::timeout(deadline, shared.executors.wait())
            .await
            .is_err()
        {
            report.released = self.running();
            tracing::warn!(
                running = report.released,
                "shutdown deadline reached: interrupting and releasing running jobs"
            );
            shared.hard_stop.cancel();
            shared.executors.wait().await;
        }
        if let Ok(mut s) = shared.settlements.lock() {
            s.take();
        }
        let _ = tasks.completer.await;
        shared.finished.cancel();
        for service in tasks.services {
            let _ = service.await;
        }
        tracing::info!(worker = %shared.config.id, "worker stopped");
        report
    }
}
