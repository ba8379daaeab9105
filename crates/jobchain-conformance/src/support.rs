//! Test support: the harness, fast worker settings and condition polling.

use std::any::Any;
use std::future::Future;
use std::time::Duration;

use jobchain::{Client, Job, JobId, JobState, WorkerBuilder, WorkerConfig};

/// A fresh store for one case, with whatever keeps it alive (a temp dir, a schema).
pub struct Harness {
    /// The client on the store.
    pub client: Client,
    /// Where the store is, for [`Client::open`] in another process.
    pub location: String,
    _guard: Box<dyn Any + Send + Sync>,
}

impl Harness {
    /// Wraps a client; `guard` is dropped after the case.
    pub fn new(client: Client, location: String, guard: impl Any + Send + Sync) -> Self {
        Harness {
            client,
            location,
            _guard: Box::new(guard),
        }
    }

    /// A worker builder with settings for tests: short poll, fast rescue.
    pub fn worker(&self) -> WorkerBuilder {
        jobchain::Worker::builder(&self.client).config(fast_config())
    }

    /// Closes the store.
    pub async fn close(self) {
        self.client.close().await;
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
