//! `jobchain bench`: the workloads of BENCHMARKS.md, through the public API with
//! default settings, as a user would run them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use jobchain::{Client, EnqueueOptions, JobContext, JobSpec, Worker};
use serde::Serialize;
use tokio::sync::Notify;

use crate::CliError;

/// Options of `jobchain bench`.
#[derive(Clone, Debug, Args)]
pub struct BenchArgs {
    /// Workloads to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "W1")]
    pub workload: Vec<String>,
    /// Jobs for W1.
    #[arg(long, default_value_t = 100_000)]
    pub jobs: u64,
    /// SQLite file to measure on (default: a new temp file, removed afterwards).
    #[arg(long)]
    pub database: Option<String>,
    /// Print one JSON object per result instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One workload's figures.
#[derive(Debug, Serialize)]
pub struct BenchResult {
    /// "W1" ...
    pub workload: String,
    /// "sqlite" or "postgres".
    pub store: String,
    /// Sizes and settings of the run.
    pub settings: serde_json::Value,
    /// Versions of jobchain and the database.
    pub versions: serde_json::Value,
    /// The figures, named with their unit.
    pub figures: serde_json::Map<String, serde_json::Value>,
}

/// Runs the selected workloads and prints their figures.
pub async fn run(args: BenchArgs) -> Result<(), CliError> {
    for workload in &args.workload {
        let (location, _dir) = match &args.database {
            Some(path) => (path.clone(), None),
            None => {
                let dir =
                    std::env::temp_dir().join(format!("jobchain-bench-{}", std::process::id()));
                std::fs::create_dir_all(&dir)
                    .map_err(|e| CliError(format!("cannot create {}: {e}", dir.display())))?;
                let path = dir.join(format!("{workload}.db"));
                let _ = std::fs::remove_file(&path);
                (path.to_string_lossy().into_owned(), Some(TempDir(dir)))
            }
        };
        let result = match workload.to_ascii_uppercase().as_str() {
            "W1" => w1_drain(&location, args.jobs).await?,
            other => {
                return Err(CliError(format!(
                    "unknown workload `{other}`: this build runs W1"
                )))
            }
        };
        print(&result, args.json);
    }
    Ok(())
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn print(result: &BenchResult, json: bool) {
    if json {
        let mut object = serde_json::Map::new();
        object.insert("workload".into(), result.workload.clone().into());
        object.insert("store".into(), result.store.clone().into());
        object.insert("settings".into(), result.settings.clone());
        object.insert("versions".into(), result.versions.clone());
        object.extend(result.figures.clone());
        println!("{}", serde_json::Value::Object(object));
    } else {
        println!(
            "{} on {} ({})",
            result.workload, result.store, result.settings
        );
        for (name, value) in &result.figures {
            println!("  {name:<24} {value}");
        }
    }
}

/// W1: enqueue N jobs with batch enqueue, then drain them with one worker.
async fn w1_drain(location: &str, jobs: u64) -> Result<BenchResult, CliError> {
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
    while worker.running() > 0 {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
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

fn rate(jobs: u64, seconds: f64) -> f64 {
    (jobs as f64 / seconds).round()
}
