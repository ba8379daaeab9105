//! The public API of the worker: settings, the builder, and the handle of a running
//! worker.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobchain_core::job::DEFAULT_QUEUE;
use jobchain_core::store::{ClaimRequest, SignalWait, SleepFor, SIGNAL_KIND, SLEEP_KIND};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::shared::{QueueSlots, Registered, RetryPolicies, Shared};
use super::{completer, heartbeat, notifier, producer, registry};
use crate::args::JobArgs;
use crate::client::Client;
use crate::context::Data;
use crate::error::{Error, Result};
use crate::handler::{erase, ErasedHandler, Handler, KindOptions};
use crate::maintenance;
use crate::metrics::Metrics;
use crate::periodic::Periodic;
use crate::steps::{self, MapSpec, SubWorkflow, MAP_KIND, WORKFLOW_KIND};
use crate::waits;

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
    /// How long this worker's registry entry counts as live without a refresh; it is
    /// refreshed every third of this, so a killed worker drops out of
    /// [`Client::workers`](crate::Client::workers) after at most this long.
    pub registry_ttl: Duration,
    /// How often the worker looks for pending jobs that no live worker handles, and
    /// warns once per queue and kind.
    pub unhandled_check: Duration,
    /// Where this worker counts its attempts for Prometheus (see [`Metrics`]); none by
    /// default.
    pub metrics: Option<Metrics>,
    /// Limits on whole queues (every kind), enforced in the store across every worker.
    pub queue_limits: BTreeMap<String, QueueLimits>,
    /// Periodic jobs this worker enqueues at their ticks (one job per tick however many
    /// workers declare them).
    pub periodic: Vec<Periodic>,
}

/// Limits on one queue, across every worker of the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueLimits {
    /// At most this many starts from the queue in any window.
    pub rate_limit: Option<jobchain_core::store::RateLimit>,
    /// At most this many of its jobs running at once.
    pub max_running: Option<u32>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let host = registry::host_name();
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
            registry_ttl: Duration::from_secs(30),
            unhandled_check: Duration::from_secs(60),
            metrics: None,
            queue_limits: BTreeMap::new(),
            periodic: Vec::new(),
        }
    }
}

/// Builds a [`Worker`]: handlers, application state, queues and settings.
pub struct WorkerBuilder {
    client: Client,
    config: WorkerConfig,
    handlers: HashMap<String, Registered>,
    data: Data,
}

impl fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kinds: Vec<&String> = self.handlers.keys().collect();
        kinds.sort();
        f.debug_struct("WorkerBuilder")
            .field("config", &self.config)
            .field("kinds", &kinds)
            .field("data", &self.data.len())
            .finish_non_exhaustive()
    }
}

impl WorkerBuilder {
    /// Registers the handler of the typed job `A`: its kind, queue, retry policy and
    /// timeout come from `A` ([`JobArgs`]), the same ones every enqueue of `A` uses.
    ///
    /// `register(handler)` infers `A` from a function's signature; name it for closures:
    /// `register::<SendConfirmation, _>(|ctx, args| async move { .. })`.
    pub fn register<A, H>(self, handler: H) -> Self
    where
        A: JobArgs,
        H: Handler<A>,
    {
        self.insert(A::KIND, A::options(), erase::<A, H>(A::KIND, handler))
    }

    /// Registers a handler for the string kind `kind` with default options (the string
    /// path, for kinds named at run time; typed jobs use [`register`](Self::register)).
    pub fn handler<P, H>(self, kind: &str, handler: H) -> Self
    where
        P: DeserializeOwned + Send + 'static,
        H: Handler<P>,
    {
        self.handler_with(kind, KindOptions::default(), handler)
    }

    /// Registers a handler for the string kind `kind` with its queue, retry policy,
    /// timeout and priority.
    pub fn handler_with<P, H>(self, kind: &str, options: KindOptions, handler: H) -> Self
    where
        P: DeserializeOwned + Send + 'static,
        H: Handler<P>,
    {
        self.insert(kind, options, erase::<P, H>(kind, handler))
    }

    fn insert(mut self, kind: &str, options: KindOptions, handler: ErasedHandler) -> Self {
        self.handlers
            .insert(kind.to_string(), Registered { handler, options });
        self
    }

    /// Gives handlers a value of application state, read with
    /// [`JobContext::data`](crate::JobContext::data); one value per type (a later value
    /// of the same type replaces an earlier one). Share what is expensive to make:
    ///
    /// ```no_run
    /// # use jobchain::{Client, JobContext, JobError, Worker};
    /// # #[derive(Clone)] struct Pool;
    /// # impl Pool { async fn execute(&self, _: &str) -> Result<(), std::io::Error> { Ok(()) } }
    /// # async fn example(client: Client, pool: Pool) -> Result<(), jobchain::Error> {
    /// async fn archive(ctx: JobContext, order_id: u64) -> Result<(), JobError> {
    ///     let pool = ctx.data::<Pool>()?;
    ///     pool.execute("UPDATE orders SET archived = true").await?;
    ///     Ok(())
    /// }
    /// let worker = Worker::builder(&client)
    ///     .data(pool)
    ///     .handler("archive_order", archive)
    ///     .build()?
    ///     .start();
    /// # Ok(()) }
    /// ```
    pub fn data<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.data.insert(value);
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

    /// Enqueues `periodic`'s job at every tick of its schedule.
    pub fn periodic(mut self, periodic: Periodic) -> Self {
        self.config.periodic.push(periodic);
        self
    }

    /// Limits a whole queue (every kind of it), across every worker of the store.
    pub fn queue_limits(mut self, queue: &str, limits: QueueLimits) -> Self {
        self.config.queue_limits.insert(queue.to_string(), limits);
        self
    }

    /// Counts this worker's attempts in `metrics` (serve them with
    /// [`Metrics::render`], or `jobchain_web`'s metrics router).
    pub fn metrics(mut self, metrics: &Metrics) -> Self {
        self.config.metrics = Some(metrics.clone());
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
                "a worker needs at least one handler: call .register(fn) or .handler(kind, fn)"
                    .into(),
            ));
        }
        let mut config = self.config;
        let mut handlers = self.handlers;
        // Steps that wait (signals, timers) and steps made of steps (maps, sub-workflows)
        // are run by every worker.
        let builtin = [
            (SLEEP_KIND, erase::<SleepFor, _>(SLEEP_KIND, waits::sleep)),
            (
                SIGNAL_KIND,
                erase::<SignalWait, _>(SIGNAL_KIND, waits::signal),
            ),
            (MAP_KIND, erase::<MapSpec, _>(MAP_KIND, steps::map)),
            (
                WORKFLOW_KIND,
                erase::<SubWorkflow, _>(WORKFLOW_KIND, steps::workflow),
            ),
        ];
        for (kind, handler) in builtin {
            handlers.entry(kind.to_string()).or_insert(Registered {
                handler,
                options: KindOptions::default(),
            });
        }
        for (kind, registered) in &handlers {
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
        let mut names: Vec<&str> = config.periodic.iter().map(|p| p.name()).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::Config(format!(
                "two periodic jobs are named `{}`: give each its own name",
                pair[0]
            )));
        }
        if let Some((queue, _)) = config.queues.iter().find(|(_, slots)| **slots == 0) {
            return Err(Error::Config(format!(
                "queue `{queue}` has 0 slots: give it at least 1"
            )));
        }
        if config.lease < Duration::from_millis(10) {
            return Err(Error::Config("the lease must be at least 10 ms".into()));
        }
        if config.registry_ttl < Duration::from_millis(30) {
            return Err(Error::Config(
                "the registry_ttl must be at least 30 ms".into(),
            ));
        }
        let slots: usize = config.queues.values().sum();
        let mut kinds: Vec<String> = handlers.keys().cloned().collect();
        kinds.sort();
        let retry = Arc::new(RetryPolicies::new(&handlers));
        // A settle claims for the worker what a claim of the kinds without limits would, on
        // a store that can.
        let claims_on_settle = self.client.store().capabilities().claim_on_settle;
        let free: Vec<String> = kinds
            .iter()
            .filter(|k| !handlers[*k].options.is_limited())
            .cloned()
            .collect();
        let queues = config
            .queues
            .iter()
            .map(|(queue, &n)| {
                let limited = config
                    .queue_limits
                    .get(queue)
                    .is_some_and(|l| *l != QueueLimits::default());
                let offer = (claims_on_settle && !limited && !free.is_empty())
                    .then(|| ClaimRequest::new(queue, free.clone(), 0, &config.id, config.lease));
                let slots = QueueSlots {
                    slots: Arc::new(Semaphore::new(n)),
                    offer,
                    caught_up: AtomicBool::new(false),
                };
                (queue.clone(), slots)
            })
            .collect();
        Ok(Worker {
            shared: Arc::new(Shared {
                client: self.client,
                config,
                retry,
                queues,
                handlers,
                kinds,
                data: self.data,
                running: Arc::default(),
                stop_claiming: CancellationToken::new(),
                hard_stop: CancellationToken::new(),
                finished: CancellationToken::new(),
                settlements: Mutex::new(None),
                executors: TaskTracker::new(),
                unwritten: Arc::new(Semaphore::new(2 * slots.max(1))),
                unwritten_capacity: 2 * slots.max(1),
            }),
        })
    }
}

/// A configured worker; [`start`](Worker::start) runs it.
pub struct Worker {
    shared: Arc<Shared>,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("config", &self.shared.config)
            .field("kinds", &self.shared.kinds)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Starts building a worker on `client`.
    pub fn builder(client: &Client) -> WorkerBuilder {
        WorkerBuilder {
            client: client.clone(),
            config: WorkerConfig::default(),
            handlers: HashMap::new(),
            data: Data::default(),
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
        let store = shared.client.store().clone();
        let notifier = shared.client.notifier().clone();
        let config = &shared.config;
        let completer = tokio::spawn(completer::run(
            completer::Completer {
                store: store.clone(),
                notifier: notifier.clone(),
                running: shared.running.clone(),
                max_batch: config.completer_batch.max(1),
                shared: shared.clone(),
            },
            rx,
        ));
        let mut producers = Vec::new();
        for (queue, slots) in &shared.config.queues {
            producers.push(tokio::spawn(producer::run(
                shared.clone(),
                queue.clone(),
                *slots,
            )));
        }
        let finished = &shared.finished;
        let mut services = vec![
            tokio::spawn(heartbeat::run(
                store.clone(),
                shared.running.clone(),
                config.lease,
                config.heartbeat.unwrap_or(config.lease / 3),
                finished.clone(),
            )),
            tokio::spawn(maintenance::rescuer::run(
                store.clone(),
                notifier.clone(),
                shared.retry.clone(),
                shared.running.clone(),
                config.rescue_interval,
                finished.clone(),
            )),
            tokio::spawn(maintenance::scheduler::run(
                store.clone(),
                notifier.clone(),
                finished.clone(),
            )),
            tokio::spawn(notifier::watch_store(
                store.clone(),
                notifier,
                config.change_poll,
                finished.clone(),
            )),
        ];
        if let Some(retention) = config.retention {
            services.push(tokio::spawn(maintenance::cleaner::run(
                store,
                retention,
                config.clean_interval,
                finished.clone(),
            )));
        }
        if !config.periodic.is_empty() {
            services.push(tokio::spawn(maintenance::periodic::run(
                shared.client.clone(),
                config.periodic.clone(),
                config.poll_interval,
                finished.clone(),
            )));
        }
        services.push(tokio::spawn(registry::run(
            shared.client.clone(),
            shared.registration(),
            shared.config.unhandled_check,
            shared.finished.clone(),
        )));
        tracing::info!(worker = %shared.config.id, kinds = ?shared.kinds, "worker started");
        WorkerHandle {
            shared,
            tasks: Mutex::new(Some(Tasks {
                producers,
                completer,
                services,
            })),
            stopped: Arc::new(tokio::sync::watch::channel(None).0),
        }
    }
}

/// Waits for SIGTERM or SIGINT; returns the signal's name.
async fn wait_for_signal() -> Result<&'static str> {
    let installing = |source| Error::Io {
        context: "cannot install a signal handler".into(),
        source,
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(installing)?;
        let mut int = signal(SignalKind::interrupt()).map_err(installing)?;
        tokio::select! {
            _ = term.recv() => Ok("SIGTERM"),
            _ = int.recv() => Ok("SIGINT"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map_err(installing)?;
        Ok("Ctrl-C")
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
    /// Outcomes that could not be written in time (the store was unreachable): their
    /// jobs stay `running` until their leases expire, then another worker's rescuer
    /// retries them. Nothing is lost; the work may run again.
    pub unwritten: usize,
}

/// A running worker. Dropping it does not stop the worker; call
/// [`shutdown`](WorkerHandle::shutdown), or let
/// [`shutdown_on_signal`](WorkerHandle::shutdown_on_signal) do it on SIGTERM or Ctrl-C.
pub struct WorkerHandle {
    shared: Arc<Shared>,
    tasks: Mutex<Option<Tasks>>,
    /// The report of the shutdown, once it has finished.
    stopped: Arc<tokio::sync::watch::Sender<Option<ShutdownReport>>>,
}

impl fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerHandle")
            .field("id", &self.shared.config.id)
            .field("kinds", &self.shared.kinds)
            .field("running", &self.running())
            .finish_non_exhaustive()
    }
}

impl WorkerHandle {
    /// The worker's id.
    pub fn id(&self) -> &str {
        &self.shared.config.id
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        self.shared.running.len()
    }

    /// Runs until the process receives SIGTERM or SIGINT (Ctrl-C), then shuts down
    /// gracefully with the configured deadline (see [`shutdown`](Self::shutdown)): what
    /// a worker process's `main` ends with. A second signal during the shutdown is left
    /// to its default action, so an operator can still force the exit.
    pub async fn shutdown_on_signal(&self) -> Result<ShutdownReport> {
        let signal = wait_for_signal().await?;
        tracing::info!(signal, worker = %self.shared.config.id, "shutting down gracefully");
        Ok(self.shutdown().await)
    }

    /// Graceful shutdown with the configured deadline; see
    /// [`shutdown_within`](Self::shutdown_within).
    pub async fn shutdown(&self) -> ShutdownReport {
        self.shutdown_within(self.shared.config.shutdown_timeout)
            .await
    }

    /// Stops claiming, lets running jobs finish within `deadline`, then interrupts the
    /// rest and releases them so that another worker takes them at once; writes every
    /// settlement and stops the background services. Calling it again (or after a call
    /// whose future was dropped) waits for the same shutdown and returns its report.
    pub async fn shutdown_within(&self, deadline: Duration) -> ShutdownReport {
        let mut stopped = self.stopped.subscribe();
        // The shutdown runs in a task of its own, so that it completes even when the
        // caller's future is dropped half-way (a `select!` on another event); every
        // call, the first or a later one, waits for the same report.
        let tasks = self.tasks.lock().ok().and_then(|mut t| t.take());
        if let Some(tasks) = tasks {
            let shared = self.shared.clone();
            let report_to = self.stopped.clone();
            tokio::spawn(async move {
                let report = stop(&shared, tasks, deadline).await;
                report_to.send_replace(Some(report));
            });
        }
        loop {
            if let Some(report) = *stopped.borrow_and_update() {
                return report;
            }
            if stopped.changed().await.is_err() {
                return ShutdownReport::default();
            }
        }
    }
}

/// Stops claiming, waits for running jobs up to `deadline`, releases the rest, then
/// writes every outcome and stops the background services within as long again (at
/// least [`MIN_FLUSH`]): however unreachable the store, shutdown ends in about twice its
/// deadline.
async fn stop(shared: &Shared, tasks: Tasks, deadline: Duration) -> ShutdownReport {
    shared.stop_claiming.cancel();
    let handlers_until = tokio::time::Instant::now() + deadline;
    let mut flush_until = handlers_until + deadline.max(MIN_FLUSH);
    for mut producer in tasks.producers {
        // A producer stops between claims. One whose claim hangs on an unreachable store
        // is abandoned at the deadline; if that claim did commit, its jobs are rescued
        // when their leases expire.
        if tokio::time::timeout_at(handlers_until, &mut producer)
            .await
            .is_err()
        {
            producer.abort();
        }
    }
    shared.executors.close();
    let mut report = ShutdownReport::default();
    if tokio::time::timeout_at(handlers_until, shared.executors.wait())
        .await
        .is_err()
    {
        report.released = shared.running.len();
        tracing::warn!(
            running = report.released,
            "shutdown deadline reached: interrupting and releasing running jobs"
        );
        shared.hard_stop.cancel();
        // Interrupted handlers end at once; their outcomes may wait for tickets while
        // the store is unreachable, until `finished` below lets them go.
        let _ = tokio::time::timeout_at(flush_until, shared.executors.wait()).await;
    } else {
        flush_until = tokio::time::Instant::now() + deadline.max(MIN_FLUSH);
    }
    if let Ok(mut s) = shared.settlements.lock() {
        s.take();
    }
    let mut completer = tasks.completer;
    if tokio::time::timeout_at(flush_until, &mut completer)
        .await
        .is_err()
    {
        // Outcomes with the completer, and those of executors still waiting to hand theirs.
        report.unwritten = shared.unwritten_outcomes() + shared.executors.len();
        completer.abort();
        tracing::error!(
            unwritten = report.unwritten,
            "shutdown: the store did not take every outcome in time; those jobs will be rescued when their leases expire"
        );
    }
    shared.finished.cancel();
    for mut service in tasks.services {
        if tokio::time::timeout_at(flush_until, &mut service)
            .await
            .is_err()
        {
            service.abort();
        }
    }
    tracing::info!(worker = %shared.config.id, "worker stopped");
    report
}

/// The least time shutdown gives the completer to write the last outcomes.
const MIN_FLUSH: Duration = Duration::from_secs(1);
