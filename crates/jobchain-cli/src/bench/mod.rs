//! `jobchain bench`: the workloads of BENCHMARKS.md, through the public API with
//! default settings, as a user would run them.

use std::time::Duration;

use clap::Args;
use jobchain::{Client, WorkerHandle, WorkflowFilter, WorkflowInfo};
use serde::Serialize;

use crate::CliError;

mod w1;
mod w3;
mod w4;

/// Options of `jobchain bench`.
#[derive(Clone, Debug, Args)]
pub struct BenchArgs {
    /// Workloads to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "W1")]
    pub workload: Vec<String>,
    /// Jobs for W1.
    #[arg(long, default_value_t = 100_000)]
    pub jobs: u64,
    /// Workflows for W3 (default 20,000) and W4 (default 2,000).
    #[arg(long)]
    pub workflows: Option<u64>,
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
            "W1" => w1::run(&location, args.jobs).await?,
            "W3" => w3::run(&location, args.workflows.unwrap_or(20_000)).await?,
            "W4" => w4::run(&location, args.workflows.unwrap_or(2_000)).await?,
            other => {
                return Err(CliError(format!(
                    "unknown workload `{other}`: choose from W1, W3, W4"
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

/// `jobs / seconds`, rounded.
pub(crate) fn rate(jobs: u64, seconds: f64) -> f64 {
    (jobs as f64 / seconds).round()
}

/// The `p`-th percentile (0..=100) of sorted values (nearest rank).
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Waits until the worker has written every settlement (its running set is empty).
pub(crate) async fn drained(worker: &WorkerHandle) {
    while worker.running() > 0 {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// Every workflow of the store (paged).
pub(crate) async fn all_workflows(client: &Client) -> Result<Vec<WorkflowInfo>, CliError> {
    let mut all = Vec::new();
    loop {
        let page = client
            .workflows(WorkflowFilter {
                limit: Some(1000),
                offset: all.len(),
                ..WorkflowFilter::default()
            })
            .await?;
        let done = page.len() < 1000;
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
}

/// Milliseconds from each workflow's start to its finish, sorted.
pub(crate) fn completion_ms(workflows: &[WorkflowInfo]) -> Vec<f64> {
    let mut ms: Vec<f64> = workflows
        .iter()
        .filter_map(|w| {
            w.finished_at
                .map(|f| (f - w.created_at).num_microseconds().unwrap_or(0) as f64 / 1000.0)
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    ms
}
