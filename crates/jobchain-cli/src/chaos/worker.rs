//! `jobchain chaos-worker`: a worker process of a chaos run. Its handlers make the mixed
//! load (plain and slow jobs, dynamic chains, declared fan-ins, retries, permanent
//! failures, panics and timeouts); every handler start is appended to a history file
//! (one JSON line, written in one `write` so that a SIGKILL loses no whole line). It runs
//! until its standard input closes or it gets SIGTERM.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobchain::{JobContext, JobError, JobSpec, KindOptions, RetryPolicy, Worker, WorkerConfig};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use super::check::Start;
use crate::CliError;

/// The lease of chaos workers: short, so that a stopped worker's jobs are rescued fast.
pub const LEASE: Duration = Duration::from_secs(2);

type History = Arc<Mutex<std::fs::File>>;

fn record(history: &History, ctx: &JobContext) {
    write_event(history, ctx, None);
}

/// Records that the handler returns success having staged `follow_ups`.
fn succeeded(history: &History, ctx: &JobContext, follow_ups: usize) -> Value {
    write_event(history, ctx, Some(follow_ups));
    json!({ "attempt": ctx.attempt() })
}

fn write_event(history: &History, ctx: &JobContext, completed: Option<usize>) {
    let start = Start {
        job: ctx.job_id().0,
        attempt: ctx.attempt(),
        pid: std::process::id(),
        completed,
    };
    if let (Ok(mut line), Ok(mut file)) = (serde_json::to_vec(&start), history.lock()) {
        line.push(b'\n');
        let _ = file.write_all(&line);
    }
}

/// The kinds of the chaos load.
const KINDS: &[&str] = &[
    "plain", "slow", "chain", "flaky", "panicky", "sleepy", "doomed",
];

/// What one attempt of each kind does; returns how many follow-ups it staged.
async fn behave(ctx: &JobContext, payload: &Value) -> Result<usize, JobError> {
    let first = ctx.attempt() == 1;
    match ctx.kind() {
        "slow" => {
            let ms = 200 + (ctx.job_id().0 as u64 * 37) % 600;
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        "chain" => {
            let left = payload["left"].as_u64().unwrap_or(0);
            if left > 0 {
                ctx.enqueue(JobSpec::new("chain", json!({ "left": left - 1 })))?;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            return Ok(usize::from(left > 0));
        }
        "flaky" if first => return Err(JobError::retryable("flaky: the first attempt fails")),
        "panicky" if first => panic!("panicky: the first attempt panics"),
        // Past its 300 ms timeout: the attempt is dropped and fails.
        "sleepy" if first => tokio::time::sleep(Duration::from_secs(5)).await,
        "doomed" => return Err(JobError::permanent("doomed: never succeeds")),
        _ => {}
    }
    Ok(0)
}

/// Runs the worker until standard input closes or SIGTERM.
pub async fn run(database: &str, history: &Path) -> Result<(), CliError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(history)
        .map_err(|e| CliError::failed(format!("cannot open {}: {e}", history.display())))?;
    let history: History = Arc::new(Mutex::new(file));
    let client = jobchain::open(database).await?;
    let retry = RetryPolicy {
        max_attempts: 25,
        base: Duration::from_millis(20),
        cap: Duration::from_millis(500),
        jitter: 0.2,
    };
    let mut builder = Worker::builder(&client).config(WorkerConfig {
        concurrency: 8,
        lease: LEASE,
        rescue_interval: Duration::from_millis(300),
        shutdown_timeout: Duration::from_secs(2),
        ..WorkerConfig::default()
    });
    for kind in KINDS {
        let mut options = KindOptions::new().retry(retry);
        if *kind == "sleepy" {
            options = options.timeout(Duration::from_millis(300));
        }
        let history = history.clone();
        builder = builder.handler_with(kind, options, move |ctx: JobContext, payload: Value| {
            record(&history, &ctx);
            let history = history.clone();
            async move {
                let staged = behave(&ctx, &payload).await?;
                Ok(succeeded(&history, &ctx, staged))
            }
        });
    }
    let worker = builder.build()?.start();
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    tokio::select! {
        _ = async { while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {} } => {}
        _ = worker.shutdown_on_signal() => {}
    }
    worker.shutdown().await;
    client.close().await;
    Ok(())
}
