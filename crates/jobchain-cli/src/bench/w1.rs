//! W1 drain, W5 backlog and W6 memory: enqueue a backlog of no-op jobs with batch
//! enqueue, then drain it — with a worker in this process, or with worker processes
//! (`jobchain bench-worker`), which is also how W6 reads a worker's own peak memory.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use jobchain::{Client, EnqueueOptions, JobContext, JobSpec, Worker};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Notify;

use super::{
    drained, figures, progress, rate, reference_payload, reference_priority, BenchResult, Target,
};
use crate::CliError;

/// Enqueues `jobs` reference no-op jobs (the storage limit's) in batches of 5,000;
/// returns the seconds it took.
async fn enqueue_backlog(client: &Client, jobs: u64) -> Result<f64, CliError> {
    enqueue_backlog_of(client, jobs, |i| {
        JobSpec::new("noop", reference_payload(i))
            .options(EnqueueOptions::new().priority(jobchain::Priority(reference_priority(i))))
    })
    .await
}

/// Enqueues `jobs` jobs made by `job(i)` in batches of 5,000; returns the seconds it took.
pub(crate) async fn enqueue_backlog_of(
    client: &Client,
    jobs: u64,
    job: impl Fn(u64) -> JobSpec,
) -> Result<f64, CliError> {
    let bar = progress(jobs, "enqueue");
    let started = Instant::now();
    let mut done = 0;
    while done < jobs {
        let n = (jobs - done).min(5000);
        let batch: Vec<JobSpec> = (done..done + n).map(&job).collect();
        client.enqueue_many(batch).await?;
        done += n;
        bar.inc(n);
    }
    bar.finish_and_clear();
    Ok(started.elapsed().as_secs_f64())
}

/// Drains `jobs` with one worker in this process; returns the seconds it took.
async fn drain_here(client: &Client, jobs: u64) -> Result<f64, CliError> {
    drain_here_with(client, jobs, jobchain::KindOptions::new()).await
}

/// [`drain_here`] with the handler's options (its limits).
pub(crate) async fn drain_here_with(
    client: &Client,
    jobs: u64,
    options: jobchain::KindOptions,
) -> Result<f64, CliError> {
    let bar = progress(jobs, "drain");
    let done = Arc::new(AtomicU64::new(0));
    let all_done = Arc::new(Notify::new());
    let (d, a, b) = (done.clone(), all_done.clone(), bar.clone());
    let started = Instant::now();
    let worker = Worker::builder(client)
        .handler_with(
            "noop",
            options,
            move |_: JobContext, _: serde_json::Value| {
                let (d, a, b) = (d.clone(), a.clone(), b.clone());
                async move {
                    let n = d.fetch_add(1, Ordering::Relaxed) + 1;
                    if n % 1000 == 0 {
                        b.set_position(n);
                    }
                    if n == jobs {
                        a.notify_one();
                    }
                    Ok(())
                }
            },
        )
        .build()?
        .start();
    all_done.notified().await;
    drained(&worker).await;
    let seconds = started.elapsed().as_secs_f64();
    worker.shutdown().await;
    bar.finish_and_clear();
    Ok(seconds)
}

/// Runs `workers` worker processes until they have run `jobs` jobs between them (W3 starts
/// its orders while they run); returns the seconds it took.
pub(crate) async fn run_in_processes(
    location: &str,
    jobs: u64,
    workers: usize,
) -> Result<f64, CliError> {
    Ok(drain_in_processes(location, jobs, workers).await?.0)
}

/// Drains `jobs` with `workers` worker processes; returns the seconds it took and the
/// largest peak resident memory among them.
async fn drain_in_processes(
    location: &str,
    jobs: u64,
    workers: usize,
) -> Result<(f64, u64), CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::failed(format!("cannot find the jobchain binary: {e}")))?;
    let bar = progress(jobs, "drain");
    let started = Instant::now();
    let mut children = Vec::new();
    let counts = Arc::new(std::sync::Mutex::new(vec![0u64; workers]));
    let mut readers = Vec::new();
    for i in 0..workers {
        let mut child = tokio::process::Command::new(&exe)
            .args(["bench-worker", "--database", location])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| CliError::failed(format!("cannot start a worker process: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| CliError::failed("worker process has no stdout"))?;
        let counts = counts.clone();
        readers.push(tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let mut peak = 0u64;
            while let Ok(Some(line)) = lines.next_line().await {
                let mut words = line.split_whitespace();
                match (words.next(), words.next(), words.next()) {
                    (Some("processed"), Some(n), _) => {
                        if let (Ok(n), Ok(mut c)) = (n.parse(), counts.lock()) {
                            c[i] = n;
                        }
                    }
                    (Some("done"), Some(n), Some(rss)) => {
                        if let (Ok(n), Ok(mut c)) = (n.parse(), counts.lock()) {
                            c[i] = n;
                        }
                        peak = rss.parse().unwrap_or(0);
                    }
                    _ => {}
                }
            }
            peak
        }));
        children.push(child);
    }
    loop {
        let total: u64 = counts.lock().map(|c| c.iter().sum()).unwrap_or(0);
        bar.set_position(total);
        if total >= jobs {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Closing stdin asks each worker to shut down gracefully, writing what it holds.
    for child in &mut children {
        drop(child.stdin.take());
    }
    let mut peak = 0;
    for (child, reader) in children.iter_mut().zip(readers) {
        let _ = child.wait().await;
        peak = peak.max(reader.await.unwrap_or(0));
    }
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    Ok((seconds, peak))
}

async fn completed(client: &Client) -> Result<u64, CliError> {
    Ok(client
        .queue_stats()
        .await?
        .iter()
        .map(|s| s.counts.completed)
        .sum())
}

pub(crate) async fn check_all_completed(
    client: &Client,
    jobs: u64,
    workload: &str,
) -> Result<(), CliError> {
    let done = completed(client).await?;
    if done != jobs {
        return Err(CliError::failed(format!(
            "{workload} ended with {done} of {jobs} jobs completed"
        )));
    }
    Ok(())
}

/// W1: enqueue and drain `jobs`; with `workers > 0`, in that many worker processes.
pub(crate) async fn drain_workload(
    target: &Target,
    jobs: u64,
    workers: usize,
) -> Result<BenchResult, CliError> {
    let client = target.client().await?;
    let enqueue_s = enqueue_backlog(&client, jobs).await?;
    let drain_s = if workers == 0 {
        drain_here(&client, jobs).await?
    } else {
        drain_in_processes(&target.location, jobs, workers).await?.0
    };
    check_all_completed(&client, jobs, "W1").await?;
    client.close().await;
    Ok(BenchResult {
        workload: "W1",
        settings: json!({ "jobs": jobs, "worker_processes": workers, "batch_enqueue": 5000 }),
        figures: figures(&[
            ("enqueue_jobs_per_s", rate(jobs, enqueue_s).into()),
            ("drain_jobs_per_s", rate(jobs, drain_s).into()),
            (
                "end_to_end_jobs_per_s",
                rate(jobs, enqueue_s + drain_s).into(),
            ),
        ]),
    })
}

/// W5: the drain rate with `large` jobs waiting versus `small` jobs waiting, each on a
/// fresh store, and their ratio (1.0: the backlog costs nothing).
pub(crate) async fn backlog_workload(
    database: Option<&str>,
    large: u64,
    small: u64,
) -> Result<BenchResult, CliError> {
    let mut rates = Vec::new();
    for (jobs, name) in [(small, "w5_small"), (large, "w5_large")] {
        let target = Target::create(database, name).await?;
        let measured = async {
            let client = target.client().await?;
            enqueue_backlog(&client, jobs).await?;
            let seconds = drain_here(&client, jobs).await?;
            check_all_completed(&client, jobs, "W5").await?;
            client.close().await;
            Ok::<_, CliError>(rate(jobs, seconds))
        }
        .await;
        target.destroy().await;
        rates.push(measured?);
    }
    let ratio = (rates[1] / rates[0] * 1000.0).round() / 1000.0;
    Ok(BenchResult {
        workload: "W5",
        settings: json!({ "large_backlog": large, "small_backlog": small }),
        figures: figures(&[
            ("drain_jobs_per_s_small_backlog", rates[0].into()),
            ("drain_jobs_per_s_large_backlog", rates[1].into()),
            ("backlog_ratio", ratio.into()),
        ]),
    })
}

/// W6: the peak resident memory of a worker process draining `jobs` waiting jobs.
pub(crate) async fn memory_workload(target: &Target, jobs: u64) -> Result<BenchResult, CliError> {
    let client = target.client().await?;
    enqueue_backlog(&client, jobs).await?;
    let (drain_s, peak) = drain_in_processes(&target.location, jobs, 1).await?;
    check_all_completed(&client, jobs, "W6").await?;
    client.close().await;
    Ok(BenchResult {
        workload: "W6",
        settings: json!({ "backlog": jobs, "worker_processes": 1 }),
        figures: figures(&[
            ("peak_rss_bytes", peak.into()),
            ("drain_jobs_per_s", rate(jobs, drain_s).into()),
        ]),
    })
}
