//! W1 drain: enqueue N jobs with batch enqueue, then drain them with one worker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use jobchain::{Client, EnqueueOptions, JobContext, JobSpec, Worker};
use tokio::sync::Notify;

use super::{drained, rate, BenchResult};
use crate::CliError;

/// W1: enqueue N jobs with batch enqueue, then drain them with one worker.
pub(crate) async fn run(location: &str, jobs: u64) -> Result<BenchResult, CliError> {
    let client = Client::open(location).await?;
    let started = Instant::now();
    let mut left = jobs;
    while left > 0 {
        let n = left.min(1000);
        let batch: Result<Vec<JobSpec>, _> = (0..n)
            .map(|i| {
                JobSpec::new(
                    "noop",
                    &serde_json::json!({ "i": i }),
                    EnqueueOptions::new(),
                )
            })
            .collect();
        client.enqueue_many(batch?).await?;
        left -= n;
    }
    let enqueue_s = started.elapsed().as_secs_f64();

    let done = Arc::new(AtomicU64::new(0));
    let all_done = Arc::new(Notify::new());
    let (d, a) = (done.clone(), all_done.clone());
    let drain_started = Instant::now();
    let worker = Worker::builder(&client)
        .handler("noop", move |_: JobContext, _: serde_json::Value| {
            let (d, a) = (d.clone(), a.clone());
            async move {
                if d.fetch_add(1, Ordering::Relaxed) + 1 == jobs {
                    a.notify_one();
                }
                Ok(())
            }
        })
        .build()?
        .start();
    all_done.notified().await;
    drained(&worker).await;
    let drain_s = drain_started.elapsed().as_secs_f64();
    worker.shutdown().await;
    let stats = client.queue_stats().await?;
    let completed: u64 = stats.iter().map(|s| s.counts.completed).sum();
    client.close().await;
    if completed != jobs {
        return Err(CliError(format!(
            "W1 ended with {completed} of {jobs} jobs completed"
        )));
    }
    let mut figures = serde_json::Map::new();
    figures.insert("enqueue_jobs_per_s".into(), rate(jobs, enqueue_s).into());
    figures.insert("drain_jobs_per_s".into(), rate(jobs, drain_s).into());
    figures.insert(
        "end_to_end_jobs_per_s".into(),
        rate(jobs, enqueue_s + drain_s).into(),
    );
    Ok(BenchResult {
        workload: "W1".into(),
        store: "sqlite".into(),
        settings: serde_json::json!({ "jobs": jobs }),
        versions: serde_json::json!({ "jobchain": env!("CARGO_PKG_VERSION") }),
        figures,
    })
}
