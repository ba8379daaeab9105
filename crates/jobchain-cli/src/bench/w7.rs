//! W7 single enqueue: 8 tasks each enqueue jobs one call at a time, every call durable
//! when it returns; concurrent calls share commits (group commit).

use std::time::Instant;

use serde_json::json;

use super::{figures, progress, rate, BenchResult, Target};
use crate::CliError;

const TASKS: u64 = 8;

/// Enqueues `jobs` jobs from 8 tasks, one call per job.
pub(crate) async fn run(target: &Target, jobs: u64) -> Result<BenchResult, CliError> {
    let client = target.client().await?;
    let bar = progress(jobs, "enqueue");
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (client, bar) = (client.clone(), bar.clone());
            tokio::spawn(async move {
                for i in (t..jobs).step_by(TASKS as usize) {
                    client
                        .enqueue(jobchain::JobSpec::new("noop", json!({ "i": i })))
                        .await?;
                    bar.inc(1);
                }
                Ok::<_, jobchain::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await
            .map_err(|e| CliError::failed(format!("enqueue task failed: {e}")))??;
    }
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let stored: u64 = client
        .queue_stats()
        .await?
        .iter()
        .map(|s| s.counts.pending)
        .sum();
    client.close().await;
    if stored != jobs {
        return Err(CliError::failed(format!(
            "W7 stored {stored} of {jobs} jobs"
        )));
    }
    Ok(BenchResult {
        workload: "W7",
        settings: json!({ "jobs": jobs, "tasks": TASKS }),
        figures: figures(&[("enqueue_jobs_per_s", rate(jobs, seconds).into())]),
    })
}
