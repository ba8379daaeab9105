//! `jobchain bench`: the workloads of BENCHMARKS.md, through the public API with
//! default settings, as a user would run them.
//!
//! Each workload runs on a fresh store: a temp SQLite file by default, or a schema of its
//! own in the PostgreSQL database given with `--database`, dropped afterwards. Results are
//! printed as a table at the end, or with `--json` one object per line.

mod floors;
mod limit;
mod target;
mod w1;
mod w10;
mod w2;
mod w3;
mod w4;
mod w7;
mod w8;
mod w9;
pub mod worker;

use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use jobchain::{Client, WorkerHandle, WorkflowFilter, WorkflowInfo};
use serde_json::{json, Map, Value};

pub use target::Target;

use crate::CliError;

/// Options of `jobchain bench`.
#[derive(Clone, Debug, Args)]
pub struct BenchArgs {
    /// Workloads to run, comma-separated: LIMIT (the storage limit: a no-op job's life
    /// with the fewest statements, the baseline of the floors), W1 drain, W2 latency,
    /// W3 orders, W4 fan-in, W5 backlog, W6 memory, W7 single enqueue, W8 three-step
    /// flows, W9 flow control (keys and a rate limit beside plain W1; not in the default
    /// set: it runs W1 nine times), W10 maps and signals (not in the default set).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "LIMIT,W1,W2,W3,W4,W5,W6,W7,W8"
    )]
    pub workload: Vec<String>,
    /// Rounds: every selected workload runs this many times, interleaved (round-robin),
    /// and each figure is reported as the median with its min and max.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=99))]
    pub runs: u64,
    /// PostgreSQL URL to measure on (a schema of its own is created and dropped);
    /// default: a new temp SQLite file per workload.
    #[arg(long)]
    pub database: Option<String>,
    /// Jobs for W1 (and the small backlog of W5 is 10,000).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub jobs: u64,
    /// Jobs waiting in W5's large backlog and W6.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub backlog: u64,
    /// Workflows for W3 (default 20,000), W4, W8's throughput and W10 (default 2,000
    /// each).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub workflows: Option<u64>,
    /// Jobs per second that W2's producer enqueues.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub rate: u64,
    /// Seconds W2's producer runs.
    #[arg(long, default_value_t = 10.0, value_parser = positive_seconds)]
    pub duration: f64,
    /// Worker processes for W1 and W3 (0: a worker inside the bench process; at most 64).
    #[arg(long, default_value_t = 0, value_parser = at_most_64)]
    pub workers: usize,
    /// Print one JSON object per result instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A count of worker processes, at most 64 (this is a benchmark, not a fork bomb).
fn at_most_64(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n <= 64 => Ok(n),
        _ => Err(format!(
            "`{text}`: give a number of worker processes from 0 to 64"
        )),
    }
}

/// A number of seconds above zero and at most a day.
fn positive_seconds(text: &str) -> Result<f64, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0 {
        Ok(seconds)
    } else {
        Err(format!(
            "`{text}`: give a number of seconds above 0 and at most 86400"
        ))
    }
}

/// One workload's figures.
#[derive(Debug)]
pub struct BenchResult {
    /// "W1" ...
    pub workload: &'static str,
    /// Sizes and settings of the run.
    pub settings: Value,
    /// The figures, named with their unit.
    pub figures: Map<String, Value>,
}

/// The workloads `--workload` takes.
const KNOWN: [&str; 11] = [
    "LIMIT", "W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9", "W10",
];

/// Runs the selected workloads `--runs` times, interleaved, and prints their figures
/// (medians), then how each measured figure stands against its floor.
pub async fn run(args: BenchArgs) -> Result<(), CliError> {
    if let Some(bad) = args
        .workload
        .iter()
        .find(|w| !KNOWN.contains(&w.trim().to_ascii_uppercase().as_str()))
    {
        return Err(CliError::usage(format!(
            "unknown workload `{bad}`: choose from {}",
            KNOWN.join(", ")
        )));
    }
    // Rows of every round, grouped by what they measured (workload, store, settings).
    let mut groups: Vec<(String, Vec<Value>)> = Vec::new();
    for round in 1..=args.runs {
        for name in &args.workload {
            let workload = name.trim().to_ascii_uppercase();
            let target = Target::create(args.database.as_deref(), &workload).await?;
            // W5 measures two backlogs, each on a store of its own (see w1.rs). Ctrl-C
            // stops the workload and still removes its temp folder or schema.
            let results = tokio::select! {
                results = run_one(&workload, &args, &target) => results,
                _ = tokio::signal::ctrl_c() => Err(CliError::failed(format!(
                    "{workload} interrupted; its temp store was removed"
                ))),
            };
            target.destroy().await;
            for result in results? {
                let row = json_row(&result, &target);
                if !args.json {
                    eprintln!(
                        "{} on {}: done (round {round} of {})",
                        result.workload, target.store, args.runs
                    );
                }
                let key = format!("{}|{}|{}", row["workload"], row["store"], row["settings"]);
                match groups.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, rows)) => rows.push(row),
                    None => groups.push((key, vec![row])),
                }
            }
        }
    }
    let rows: Vec<Value> = groups.iter().map(|(_, rows)| summarize(rows)).collect();
    let checks = floors::check(&rows);
    if args.json {
        for row in rows.iter().chain(&checks) {
            crate::common::out(row.to_string());
        }
    } else {
        print_table(&rows);
        floors::print(&checks);
    }
    Ok(())
}

/// One row from a workload's rounds: each numeric figure the median, with its min and
/// max under `spread` when there was more than one round.
fn summarize(rounds: &[Value]) -> Value {
    let mut row = rounds[0].clone();
    if rounds.len() < 2 {
        return row;
    }
    let mut spread = Map::new();
    if let Some(object) = row.as_object_mut() {
        for (name, value) in object.iter_mut() {
            if ["workload", "store", "settings", "versions"].contains(&name.as_str()) {
                continue;
            }
            let mut values: Vec<f64> = rounds.iter().filter_map(|r| r[name].as_f64()).collect();
            if values.len() != rounds.len() || value.as_f64().is_none() {
                continue;
            }
            values.sort_by(f64::total_cmp);
            *value = median(&values).into();
            spread.insert(name.clone(), json!([values[0], values[values.len() - 1]]));
        }
        object.insert("runs".into(), rounds.len().into());
        object.insert("spread".into(), Value::Object(spread));
    }
    row
}

/// The median of sorted values.
pub(crate) fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

async fn run_one(
    workload: &str,
    args: &BenchArgs,
    target: &Target,
) -> Result<Vec<BenchResult>, CliError> {
    let one = |result: BenchResult| vec![result];
    Ok(match workload {
        "LIMIT" => limit::run(target, args.jobs).await?,
        "W1" => one(w1::drain_workload(target, args.jobs, args.workers).await?),
        "W2" => one(w2::run(target, args.rate, args.duration).await?),
        "W3" => one(w3::run(target, args.workflows.unwrap_or(20_000), args.workers).await?),
        "W4" => one(w4::run(target, args.workflows.unwrap_or(2_000)).await?),
        "W5" => one(w1::backlog_workload(args.database.as_deref(), args.backlog, 10_000).await?),
        "W6" => one(w1::memory_workload(target, args.backlog).await?),
        "W7" => one(w7::run(target, args.jobs.min(20_000)).await?),
        "W8" => w8::run(args.database.as_deref(), args.workflows.unwrap_or(2_000)).await?,
        "W9" => one(w9::run(args.database.as_deref(), args.jobs.min(50_000)).await?),
        "W10" => one(w10::run(args.database.as_deref(), args.workflows.unwrap_or(2_000)).await?),
        other => {
            return Err(CliError::failed(format!(
                "unknown workload `{other}`: choose from {}",
                KNOWN.join(", ")
            )))
        }
    })
}

fn json_row(result: &BenchResult, target: &Target) -> Value {
    let mut row = Map::new();
    row.insert("workload".into(), result.workload.into());
    row.insert("store".into(), target.store.into());
    row.insert("settings".into(), result.settings.clone());
    row.insert(
        "versions".into(),
        json!({ "jobchain": env!("CARGO_PKG_VERSION"), target.store: target.version }),
    );
    row.extend(result.figures.clone());
    Value::Object(row)
}

fn print_table(rows: &[Value]) {
    crate::common::out(format!(
        "\n{:<4} {:<9} {:<40} settings",
        "", "store", "figures"
    ));
    for row in rows {
        let figures: Vec<String> = row
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| {
                !["workload", "store", "settings", "versions", "spread"].contains(&k.as_str())
            })
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        crate::common::out(format!(
            "{:<4} {:<9} {:<40} {}",
            row["workload"].as_str().unwrap_or(""),
            row["store"].as_str().unwrap_or(""),
            figures.join(" "),
            row["settings"]
        ));
    }
}

/// A progress bar on standard error.
pub(crate) fn progress(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:40}] {pos}/{len} {per_sec} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// `jobs / seconds`, rounded.
pub(crate) fn rate(jobs: u64, seconds: f64) -> f64 {
    (jobs as f64 / seconds).round()
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

/// Inserts latency samples (microseconds) into a histogram and reads p50/p95/p99 in ms.
pub(crate) fn percentiles_ms(samples_us: &[u64]) -> Result<(f64, f64, f64), CliError> {
    let mut histogram = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
        .map_err(|e| CliError::failed(format!("histogram: {e}")))?;
    for &us in samples_us {
        histogram
            .record(us.max(1))
            .map_err(|e| CliError::failed(format!("histogram: {e}")))?;
    }
    let ms = |q: f64| (histogram.value_at_quantile(q) as f64 / 1000.0 * 100.0).round() / 100.0;
    Ok((ms(0.50), ms(0.95), ms(0.99)))
}

/// The reference no-op job's payload, shared by W1 (and W5, W6) and the storage limit so
/// that both sides of their ratio write the same rows: about 100 bytes of JSON.
pub(crate) fn reference_payload(i: u64) -> Value {
    json!({
        "user_id": mix(i) % 1_000_000,
        "action": "noop",
        "seq": i,
        "tags": ["bench", "noop"],
        "meta": { "source": "jobchain-bench", "attempt": 0 },
    })
}

/// The reference job's priority: spread over 0–9 (a function of `i`), so that claims, as
/// in a real queue, do not simply walk the table in insertion order.
pub(crate) fn reference_priority(i: u64) -> i16 {
    ((mix(i) >> 32) % 10) as i16
}

/// SplitMix64: a well-spread function of `i`, so runs are repeatable.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The figures map from pairs.
pub(crate) fn figures(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Runs `start(client, i)` for every `i` in `0..count` from 4 concurrent tasks (the
/// producers of W3 and W4), returning when all have been started.
pub(crate) async fn start_from_four_tasks<F, Fut>(
    client: &Client,
    count: u64,
    start: F,
) -> Result<(), CliError>
where
    F: Fn(Client, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), jobchain::Error>> + Send,
{
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let (client, start) = (client.clone(), start.clone());
            tokio::spawn(async move {
                for i in (t..count).step_by(4) {
                    start(client.clone(), i).await?;
                }
                Ok::<_, jobchain::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await
            .map_err(|e| CliError::failed(format!("producer task failed: {e}")))??;
    }
    Ok(())
}
