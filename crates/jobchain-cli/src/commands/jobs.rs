//! `jobchain jobs ...` and `jobchain dlq ...`: inspecting, retrying and cancelling jobs,
//! and the dead-letter queue.

use std::time::Duration;

use clap::{Args, Subcommand};
use jobchain::{Client, Job, JobFilter, JobId, JobState, WorkflowId};

use crate::common::{
    one_line, out, out_json, out_json_lines, out_table, parse_duration, short_time, with_client,
    DbArgs, OutputArgs,
};
use crate::CliError;

/// `jobchain jobs`.
#[derive(Clone, Debug, Subcommand)]
pub enum JobsCommand {
    /// Lists jobs, oldest first.
    List {
        /// Only this state: blocked, pending, running, completed, dead, cancelled or
        /// skipped.
        #[arg(long)]
        state: Option<JobState>,
        /// Only this kind.
        #[arg(long)]
        kind: Option<String>,
        /// Only this queue.
        #[arg(long)]
        queue: Option<String>,
        /// Only the jobs of this workflow.
        #[arg(long)]
        #[arg(value_parser = crate::common::parse_workflow_id)]
        workflow: Option<WorkflowId>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Where the jobs are.
        #[command(flatten)]
        db: DbArgs,
        /// How results are printed.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Shows one job with its errors and output.
    Show {
        /// The job's id.
        #[arg(value_parser = crate::common::parse_job_id)]
        id: JobId,
        /// Where the jobs are.
        #[command(flatten)]
        db: DbArgs,
        /// How results are printed.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Cancels a live job; its dependents react by their edges.
    Cancel {
        /// The job's id.
        #[arg(value_parser = crate::common::parse_job_id)]
        id: JobId,
        /// Where the jobs are.
        #[command(flatten)]
        db: DbArgs,
        /// How results are printed.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Retries a dead job with a fresh budget of attempts.
    Retry {
        /// The job's id.
        #[arg(value_parser = crate::common::parse_job_id)]
        id: JobId,
        /// Where the jobs are.
        #[command(flatten)]
        db: DbArgs,
        /// How results are printed.
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// `jobchain dlq`.
#[derive(Clone, Debug, Subcommand)]
pub enum DlqCommand {
    /// Lists dead jobs, newest first, with their last error.
    List {
        /// Only this kind.
        #[arg(long)]
        kind: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Where the jobs are.
        #[command(flatten)]
        db: DbArgs,
        /// How results are printed.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Retries dead jobs: the ones named, or `--all` (of `--kind`).
    Retry(DlqRetryArgs),
    /// Deletes dead jobs outside workflows (those of workflows leave with their workflow).
    Purge {
        /// Only jobs that died longer ago than this (e.g. 7d).
        #[arg(long, value_parser = parse_duration, default_value = "0s")]
        older_than: Duration,
        /// Only this kind.
        #[arg(long)]
        kind: Option<String>,
        /// Where the jobs are.
        #[command(flatten)]
        db: DbArgs,
        /// How results are printed.
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// Options of `jobchain dlq retry`.
#[derive(Clone, Debug, Args)]
pub struct DlqRetryArgs {
    /// The dead jobs to retry.
    #[arg(required_unless_present = "all", conflicts_with = "all", value_parser = crate::common::parse_job_id)]
    ids: Vec<JobId>,
    /// Retry every dead job (of `--kind`, when given).
    #[arg(long)]
    all: bool,
    /// With `--all`: only this kind.
    #[arg(long, requires = "all")]
    kind: Option<String>,
    /// Where the jobs are.
    #[command(flatten)]
    db: DbArgs,
    /// How results are printed.
    #[command(flatten)]
    output: OutputArgs,
}

/// Runs a `jobs` command.
pub async fn run_jobs(command: JobsCommand) -> Result<(), CliError> {
    match command {
        JobsCommand::List {
            state,
            kind,
            queue,
            workflow,
            limit,
            db,
            output,
        } => {
            let filter = JobFilter {
                state,
                kind,
                queue,
                workflow_id: workflow,
                limit: Some(limit),
                ..JobFilter::default()
            };
            with_client(&db, |client| async move {
                print_jobs(&client.jobs(filter).await?, output)
            })
            .await
        }
        JobsCommand::Show { id, db, output } => {
            with_client(&db, |client| async move {
                print_job(&client.job(id).await?, output)
            })
            .await
        }
        JobsCommand::Cancel { id, db, output } => {
            with_client(&db, |client| async move {
                print_job(&client.cancel(id).await?, output)
            })
            .await
        }
        JobsCommand::Retry { id, db, output } => {
            with_client(&db, |client| async move {
                print_job(&client.retry(id).await?, output)
            })
            .await
        }
    }
}

/// Runs a `dlq` command.
pub async fn run_dlq(command: DlqCommand) -> Result<(), CliError> {
    match command {
        DlqCommand::List {
            kind,
            limit,
            db,
            output,
        } => {
            let filter = JobFilter {
                state: Some(JobState::Dead),
                kind,
                newest_first: true,
                limit: Some(limit),
                ..JobFilter::default()
            };
            with_client(&db, |client| async move {
                print_jobs(&client.jobs(filter).await?, output)
            })
            .await
        }
        DlqCommand::Retry(args) => {
            let DlqRetryArgs {
                ids,
                all,
                kind,
                db,
                output,
            } = args;
            with_client(&db, |client| async move {
                let ids = if all {
                    all_dead(&client, kind).await?
                } else {
                    ids
                };
                let mut retried = Vec::with_capacity(ids.len());
                for id in ids {
                    retried.push(client.retry(id).await?);
                }
                if output.json {
                    out_json_lines(&retried)
                } else {
                    for job in &retried {
                        out(format!("{} {} is pending again", job.id, job.kind));
                    }
                    out(format!("retried {} dead job(s)", retried.len()));
                    Ok(())
                }
            })
            .await
        }
        DlqCommand::Purge {
            older_than,
            kind,
            db,
            output,
        } => {
            with_client(&db, |client| async move {
                let deleted = client.purge_dead(older_than, kind.as_deref()).await?;
                if output.json {
                    out_json(&serde_json::json!({ "deleted": deleted }))
                } else {
                    out(format!("deleted {deleted} dead job(s)"));
                    Ok(())
                }
            })
            .await
        }
    }
}

/// Every dead job (of `kind`), oldest first.
async fn all_dead(client: &Client, kind: Option<String>) -> Result<Vec<JobId>, CliError> {
    let mut ids = Vec::new();
    loop {
        let page = client
            .jobs(JobFilter {
                state: Some(JobState::Dead),
                kind: kind.clone(),
                limit: Some(1000),
                offset: ids.len(),
                ..JobFilter::default()
            })
            .await?;
        let done = page.len() < 1000;
        ids.extend(page.into_iter().map(|j| j.id));
        if done {
            return Ok(ids);
        }
    }
}

fn print_jobs(jobs: &[Job], output: OutputArgs) -> Result<(), CliError> {
    if output.json {
        return out_json_lines(jobs);
    }
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                j.id.to_string(),
                j.kind.clone(),
                j.queue.clone(),
                j.state.to_string(),
                format!("{}/{}", j.attempts, j.max_attempts),
                short_time(&j.created_at),
                j.errors
                    .last()
                    .map(|e| one_line(&e.message, 60))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    out_table(
        &[
            "ID",
            "KIND",
            "QUEUE",
            "STATE",
            "ATTEMPTS",
            "CREATED",
            "LAST ERROR",
        ],
        &rows,
    );
    Ok(())
}

fn print_job(job: &Job, output: OutputArgs) -> Result<(), CliError> {
    if output.json {
        return out_json(job);
    }
    out(format!("job {} ({})", job.id, job.kind));
    out(format!("  state      {}", job.state));
    out(format!(
        "  queue      {} (priority {})",
        job.queue, job.priority.0
    ));
    out(format!(
        "  attempts   {} of {}",
        job.attempts, job.max_attempts
    ));
    out(format!("  created    {}", short_time(&job.created_at)));
    out(format!("  run at     {}", short_time(&job.run_at)));
    if let Some(t) = &job.finished_at {
        out(format!("  finished   {}", short_time(t)));
    }
    if let Some(w) = job.workflow_id {
        out(format!(
            "  workflow   {w}{}",
            job.step
                .as_deref()
                .map(|s| format!(" (step {s})"))
                .unwrap_or_default()
        ));
    }
    if let Some(p) = job.parent_id {
        out(format!("  parent     {p}"));
    }
    if let Some(k) = &job.unique_key {
        out(format!("  unique key {k}"));
    }
    if let Some(r) = &job.cancel_reason {
        out(format!("  cancelled  {r}"));
    }
    out(format!("  payload    {}", job.payload));
    if let Some(o) = &job.output {
        out(format!("  output     {o}"));
    }
    for e in &job.errors {
        out(format!(
            "  error      attempt {} at {}: {}",
            e.attempt,
            short_time(&e.at),
            one_line(&e.message, 200)
        ));
    }
    Ok(())
}
