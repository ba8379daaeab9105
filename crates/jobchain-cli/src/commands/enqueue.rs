//! `jobchain enqueue`: one job, by string kind, from the command line.

use std::time::Duration;

use clap::Args;
use jobchain::{EnqueueOptions, JobSpec, Priority, WorkflowId};

use crate::common::{
    out, out_json, parse_duration, parse_json_arg, parse_time, DbArgs, OutputArgs,
};
use crate::CliError;

/// Options of `jobchain enqueue`.
#[derive(Clone, Debug, Args)]
pub struct EnqueueArgs {
    /// The job's kind: the name its handler is registered under.
    pub kind: String,
    /// The payload as JSON; `-` reads it from standard input.
    pub payload: String,
    /// Queue (default: `default`).
    #[arg(long)]
    pub queue: Option<String>,
    /// Priority: low, normal, high, critical, or a number (higher runs first).
    #[arg(long)]
    pub priority: Option<Priority>,
    /// Run no earlier than this long from now (500ms, 10s, 5m, 2h, 7d).
    #[arg(long, value_parser = parse_duration, conflicts_with = "run_at")]
    pub delay: Option<Duration>,
    /// Run no earlier than this time (RFC 3339, e.g. 2026-11-27T10:00:00Z).
    #[arg(long, value_parser = parse_time)]
    pub run_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Attempts before the job goes to the dead-letter queue.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: Option<u32>,
    /// Idempotency key: while a live job holds it, this enqueue names that job instead.
    #[arg(long)]
    pub unique_key: Option<String>,
    /// Concurrency key: a kind's `max_running_per_key` bounds how many jobs of one key run
    /// at once.
    #[arg(long)]
    pub concurrency_key: Option<String>,
    /// Debounce key: while a job with this key waits to start, this enqueue replaces its
    /// payload and moves its start to --debounce-window from now (one job runs).
    #[arg(long, requires = "debounce_window", conflicts_with_all = ["unique_key", "delay", "run_at"])]
    pub debounce: Option<String>,
    /// With --debounce: the quiet time after the last enqueue before the job runs.
    #[arg(long, value_parser = parse_duration, requires = "debounce")]
    pub debounce_window: Option<Duration>,
    /// Adds the job to this workflow.
    #[arg(long)]
    #[arg(value_parser = crate::common::parse_workflow_id)]
    pub workflow: Option<WorkflowId>,
    /// Where the jobs are.
    #[command(flatten)]
    db: DbArgs,
    /// How results are printed.
    #[command(flatten)]
    output: OutputArgs,
}

/// Enqueues the job; prints its id (`--json`: the stored job, with `duplicate`).
pub async fn run(args: EnqueueArgs) -> Result<(), CliError> {
    let payload = parse_json_arg(&args.payload, "the payload")?;
    let mut options = EnqueueOptions::new();
    options.queue = args.queue;
    options.priority = args.priority;
    if let Some(delay) = args.delay {
        options = options.delay(delay);
    }
    if let Some(at) = args.run_at {
        options = options.run_at(at);
    }
    options.max_attempts = args.max_attempts;
    options.unique_key = args.unique_key;
    options.workflow_id = args.workflow;
    options.concurrency_key = args.concurrency_key;
    if let (Some(key), Some(window)) = (args.debounce, args.debounce_window) {
        options = options.debounce(key, window);
    }
    let client = args.db.open().await?;
    let result = async {
        let enqueued = client
            .enqueue(JobSpec::new(&args.kind, payload).options(options))
            .await?;
        if args.output.json {
            // The stored job, with whether a live job already held the unique key.
            let mut job = serde_json::to_value(client.job(enqueued.id).await?)
                .map_err(|e| CliError::failed(format!("cannot print JSON: {e}")))?;
            job["duplicate"] = enqueued.duplicate.into();
            out_json(&job)?;
        } else if enqueued.duplicate {
            out(format!(
                "{} (a live job already holds this unique key)",
                enqueued.id
            ));
        } else {
            out(enqueued.id.to_string());
        }
        Ok(())
    }
    .await;
    client.close().await;
    result
}
