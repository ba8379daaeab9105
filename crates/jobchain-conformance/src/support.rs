//! Test support: the harness, fast worker settings and condition polling.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use jobchain::{Client, Job, JobId, JobState, WorkerBuilder, WorkerConfig};

/// Runs after a case to remove what the harness created (a PostgreSQL schema).
pub type Cleanup = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A fresh store for one case, with whatever keeps it alive (a temp dir, a schema).
pub struct Harness {
    /// The client on the store.
    pub client: Client,
    /// The same store's PostgreSQL client, for the PostgreSQL-only calls.
    pub pg: Option<jobchain::postgres::PgClient>,
    /// Where the store is, for [`Client::open`] in another process.
    pub location: String,
    _guard: Box<dyn Any + Send + Sync>,
    cleanup: Option<Cleanup>,
}

impl Harness {
    /// Wraps a client; `guard` is dropped after the case. Warnings of the engine go to
    /// the test's captured output, so a failing case shows what the worker saw.
    pub fn new(client: Client, location: String, guard: impl Any + Send + Sync) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_test_writer()
            .try_init();
        Harness {
            client,
            pg: None,
            location,
            _guard: Box::new(guard),
            cleanup: None,
        }
    }

    /// The PostgreSQL client of a PostgreSQL harness.
    pub fn pg(&self) -> &jobchain::postgres::PgClient {
        self.pg.as_ref().expect("a PostgreSQL harness")
    }

    /// Adds a clean-up that runs after the store is closed.
    pub fn with_cleanup(mut self, cleanup: Cleanup) -> Self {
        self.cleanup = Some(cleanup);
        self
    }

    /// A worker builder with settings for tests: short poll, fast rescue.
    pub fn worker(&self) -> WorkerBuilder {
        jobchain::Worker::builder(&self.client).config(fast_config())
    }

    /// Closes the store and runs the clean-up.
    pub async fn close(self) {
        self.client.close().await;
        if let Some(cleanup) = self.cleanup {
            cleanup().await;
        }
    }
}

/// Worker settings that make tests quick without changing semantics.
pub fn fast_config() -> WorkerConfig {
    WorkerConfig {
        concurrency: 8,
        lease: Duration::from_secs(10),
        poll_interval: Duration::from_millis(100),
        change_poll: Duration::from_millis(20),
        rescue_interval: Duration::from_millis(100),
        shutdown_timeout: Duration::from_secs(5),
        ..WorkerConfig::default()
    }
}

/// How long a condition may take before a case fails: generous, because CI machines
/// are shared; conditions are polled, never assumed after a sleep.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Polls `check` every 10 ms until it returns `Some`, or panics after [`PATIENCE`]
/// naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {PATIENCE:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until job `id` is in a terminal state and returns it.
pub async fn terminal(client: &Client, id: JobId) -> Job {
    eventually(&format!("job {id} to finish"), || async {
        let job = client.job(id).await.expect("read job");
        job.state.is_terminal().then_some(job)
    })
    .await
}

/// Waits until job `id` is in `state`.
pub async fn in_state(client: &Client, id: JobId, state: JobState) -> Job {
    eventually(&format!("job {id} to be {state}"), || async {
        let job = client.job(id).await.expect("read job");
        (job.state == state).then_some(job)
    })
    .await
}

/// The PostgreSQL of the tests: `JOBCHAIN_TEST_POSTGRES_URL`, by default the local server.
pub fn postgres_url() -> String {
    std::env::var("JOBCHAIN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// Whether PostgreSQL tests must run (`JOBCHAIN_REQUIRE_POSTGRES=1`, set in CI).
pub fn postgres_required() -> bool {
    std::env::var("JOBCHAIN_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// A fresh PostgreSQL store in a schema of its own, dropped after the case. Without
/// PostgreSQL, says why the case is skipped and returns `None` — unless PostgreSQL is
/// required, then it panics.
pub async fn postgres_harness() -> Option<Harness> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let url = postgres_url();
    let schema = format!(
        "jc_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let options = jobchain::postgres::PgOptions {
        schema: schema.clone(),
        max_connections: 6,
        acquire_timeout: Duration::from_secs(30),
        ..jobchain::postgres::PgOptions::default()
    };
    let pg = match jobchain::postgres::connect(&url, options).await {
        Ok(pg) => pg,
        Err(e) if !postgres_required() => {
            skipped(&format!(
                "PostgreSQL is not reachable at {url} ({e}); set JOBCHAIN_REQUIRE_POSTGRES=1 to make this a failure"
            ));
            return None;
        }
        Err(e) => {
            panic!("PostgreSQL is required (JOBCHAIN_REQUIRE_POSTGRES=1) but {url} failed: {e}")
        }
    };
    let location = format!("{url}?jobchain_schema={schema}");
    let mut harness = Harness::new(pg.client().clone(), location, ());
    harness.pg = Some(pg);
    Some(harness.with_cleanup(Box::new(move || {
        Box::pin(async move {
            // The client's pool is closed by now: drop the schema on a connection of its own.
            match jobchain::postgres::sqlx::PgPool::connect(&url).await {
                Ok(pool) => {
                    if let Err(e) = jobchain::postgres::drop_schema(&pool, &schema).await {
                        eprintln!("could not drop test schema {schema}: {e}");
                    }
                    pool.close().await;
                }
                Err(e) => eprintln!("could not drop test schema {schema}: {e}"),
            }
        })
    })))
}

/// Says on the terminal that a test was skipped and why. Written to the process's standard
/// error directly, so the test harness's output capture does not hide it.
pub fn skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped: {why}");
}

/// A job of string kind `kind` with a serializable payload: the string path the cases
/// use, since each case invents its own kinds.
pub fn job<P: serde::Serialize>(kind: &str, payload: &P) -> jobchain::JobSpec {
    jobchain::JobSpec::new(
        kind,
        serde_json::to_value(payload).expect("test payloads serialize"),
    )
}

/// What handlers saw, in the order they saw it: cloned into handlers, read by the case.
#[derive(Debug)]
pub struct Recorder<T>(std::sync::Arc<std::sync::Mutex<Vec<T>>>);

impl<T> Default for Recorder<T> {
    fn default() -> Self {
        Recorder(Default::default())
    }
}

impl<T> Clone for Recorder<T> {
    fn clone(&self) -> Self {
        Recorder(self.0.clone())
    }
}

impl<T: Clone> Recorder<T> {
    /// Records one entry.
    pub fn record(&self, entry: impl Into<T>) {
        self.0.lock().expect("recorder").push(entry.into());
    }

    /// Everything recorded so far.
    pub fn entries(&self) -> Vec<T> {
        self.0.lock().expect("recorder").clone()
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.0.lock().expect("recorder").len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Starts a worker from a builder whose settings a case got right (it panics otherwise).
pub trait StartWorker {
    /// Builds and starts the worker.
    fn started(self) -> jobchain::WorkerHandle;
}

impl StartWorker for WorkerBuilder {
    fn started(self) -> jobchain::WorkerHandle {
        self.build()
            .expect("the case's worker settings are valid")
            .start()
    }
}

/// Handler options with a quick retry policy: `max_attempts`, 10 ms growing to 50 ms, no
/// jitter.
pub fn quick_retry(max_attempts: u32) -> jobchain::KindOptions {
    jobchain::KindOptions::new().retry(jobchain::RetryPolicy {
        max_attempts,
        base: Duration::from_millis(10),
        cap: Duration::from_millis(50),
        jitter: 0.0,
    })
}

/// A claim of up to ten jobs of `kind` on queue `default`, for store-level cases.
pub fn claim_request(
    worker: &str,
    kind: &str,
    lease: Duration,
) -> jobchain::core::store::ClaimRequest {
    jobchain::core::store::ClaimRequest::new("default", vec![kind.into()], 10, worker, lease)
}
