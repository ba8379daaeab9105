//! Prometheus metrics of a worker process and of the store it shares.
//!
//! A [`Metrics`] handle given to a worker ([`WorkerBuilder::metrics`]) counts what its
//! handlers do: attempts completed, failed, retried and moved to the dead-letter queue,
//! by kind, with histograms of handler durations and of how long a due job waited for
//! a worker. [`Metrics::render`] writes those in the Prometheus text format, with gauges
//! read from the store at that moment (jobs by queue and state, the oldest pending job's
//! age, live workers), so one scrape shows both. Counters are per process, as Prometheus
//! expects: sum them over the worker processes.
//!
//! [`WorkerBuilder::metrics`]: crate::WorkerBuilder::metrics

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jobchain_core::job::JobState;
use jobchain_core::store::Outcome;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::client::Client;
use crate::error::Result;

/// The media type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueStateLabels {
    queue: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

type Histograms = Family<KindLabels, Histogram, fn() -> Histogram>;

struct Inner {
    registry: Registry,
    completed: Family<KindLabels, Counter>,
    failed: Family<KindLabels, Counter>,
    retried: Family<KindLabels, Counter>,
    dead: Family<KindLabels, Counter>,
    snoozed: Family<KindLabels, Counter>,
    duration: Histograms,
    wait: Histograms,
}

/// Counters and histograms of one process's handlers; cheap to clone (one shared set).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn seconds_histogram() -> Histogram {
    // 1 ms to ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Metrics {
    /// An empty set.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("jobchain");
        let completed = Family::default();
        let failed = Family::default();
        let retried = Family::default();
        let dead = Family::default();
        let snoozed = Family::default();
        let duration: Histograms = Family::new_with_constructor(seconds_histogram);
        let wait: Histograms = Family::new_with_constructor(seconds_histogram);
        registry.register(
            "jobs_completed",
            "Attempts that completed, by kind",
            completed.clone(),
        );
        registry.register(
            "jobs_failed",
            "Attempts that failed (retried or dead), by kind",
            failed.clone(),
        );
        registry.register(
            "jobs_retried",
            "Failed attempts scheduled to run again, by kind",
            retried.clone(),
        );
        registry.register(
            "jobs_dead",
            "Jobs moved to the dead-letter queue, by kind",
            dead.clone(),
        );
        registry.register(
            "jobs_snoozed",
            "Attempts that snoozed (run again later without spending an attempt), by kind",
            snoozed.clone(),
        );
        registry.register(
            "handler_duration_seconds",
            "How long handlers ran, by kind",
            duration.clone(),
        );
        registry.register(
            "start_latency_seconds",
            "How long a due job waited for a worker (from run_at to start), by kind",
            wait.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                completed,
                failed,
                retried,
                dead,
                snoozed,
                duration,
                wait,
            }),
        }
    }

    /// A job started `waited` after it became due.
    pub(crate) fn started(&self, kind: &str, waited: Duration) {
        self.inner
            .wait
            .get_or_create(&labels(kind))
            .observe(waited.as_secs_f64());
    }

    /// An attempt ended with `outcome` after its handler ran for `ran`. Attempts
    /// interrupted by shutdown are not counted: they did not end, they run again.
    pub(crate) fn ended(&self, kind: &str, outcome: &Outcome, ran: Duration) {
        let labels = labels(kind);
        let i = &self.inner;
        match outcome {
            Outcome::Completed { .. } => {
                i.completed.get_or_create(&labels).inc();
            }
            Outcome::Retry { .. } => {
                i.failed.get_or_create(&labels).inc();
                i.retried.get_or_create(&labels).inc();
            }
            Outcome::Dead { .. } => {
                i.failed.get_or_create(&labels).inc();
                i.dead.get_or_create(&labels).inc();
            }
            Outcome::Snooze { .. } => {
                i.snoozed.get_or_create(&labels).inc();
            }
            // Neither ended: a step that awaits new steps runs again when they have.
            Outcome::Released | Outcome::Await { .. } => return,
        }
        i.duration.get_or_create(&labels).observe(ran.as_secs_f64());
    }

    /// This process's counters and histograms, and the store's gauges read now through
    /// `client`, in the Prometheus (OpenMetrics) text format.
    pub async fn render(&self, client: &Client) -> Result<String> {
        render_with(Some(&self.inner.registry), client).await
    }
}

/// The store's gauges alone (a process without handlers: the dashboard), in the same
/// format as [`Metrics::render`].
pub async fn render_store(client: &Client) -> Result<String> {
    render_with(None, client).await
}

/// `own` (a process's counters, if any), then the store's gauges, then the end marker.
async fn render_with(own: Option<&Registry>, client: &Client) -> Result<String> {
    let store = store_gauges(client).await?;
    let mut text = String::new();
    for registry in own.into_iter().chain([&store]) {
        encode_registry(&mut text, registry).map_err(fmt_error)?;
    }
    encode_eof(&mut text).map_err(fmt_error)?;
    Ok(text)
}

fn labels(kind: &str) -> KindLabels {
    KindLabels {
        kind: kind.to_string(),
    }
}

fn fmt_error(_: fmt::Error) -> crate::Error {
    crate::Error::Io {
        context: "writing metrics as text".into(),
        source: std::io::Error::other("formatter error"),
    }
}

/// Gauges read from the store: one aggregate of the jobs table and the registry.
async fn store_gauges(client: &Client) -> Result<Registry> {
    let stats = client.queue_stats().await?;
    let workers = client.workers().await?;
    let mut registry = Registry::with_prefix("jobchain");
    let jobs: Family<QueueStateLabels, Gauge> = Family::default();
    let oldest: Family<QueueLabels, Gauge<f64, std::sync::atomic::AtomicU64>> = Family::default();
    for queue in &stats {
        for state in JobState::ALL {
            jobs.get_or_create(&QueueStateLabels {
                queue: queue.queue.clone(),
                state: state.to_string(),
            })
            .set(queue.counts.get(state) as i64);
        }
        oldest
            .get_or_create(&QueueLabels {
                queue: queue.queue.clone(),
            })
            .set(queue.oldest_pending_age.map_or(0.0, |a| a.as_secs_f64()));
    }
    let live: Gauge = Gauge::default();
    live.set(workers.len() as i64);
    registry.register("jobs", "Jobs in the store by queue and state", jobs);
    registry.register(
        "oldest_pending_age_seconds",
        "Age of the oldest pending job, by queue (0 when none waits)",
        oldest,
    );
    registry.register("workers", "Live workers in the registry", live);
    Ok(registry)
}
