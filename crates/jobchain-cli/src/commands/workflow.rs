//! `jobchain workflow ...`: starting, showing, listing, cancelling and waiting for
//! workflows.

use std::time::Duration;

use clap::Subcommand;
use jobchain::{JobSpec, TreeNode, WorkflowFilter, WorkflowId, WorkflowInfo, WorkflowState};
use serde::Serialize;

use crate::common::{
    one_line, out, out_json, out_json_lines, out_table, parse_duration, parse_json_arg,
    short_duration, short_time, with_client, DbArgs, OutputArgs,
};
use crate::CliError;

/// `jobchain workflow`.
#[derive(Clone, Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Starts a workflow; prints its id. Dynamic: `start KIND PAYLOAD_JSON` runs the
    /// first step, whose handler hands on the next. Declared: `start --file FLOW.toml`
    /// (or .json) writes every step at once (see docs/cli.md).
    Start {
        /// The first step's kind (dynamic).
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        kind: Option<String>,
        /// Its payload as JSON; `-` reads it from standard input (dynamic).
        #[arg(required_unless_present = "file")]
        payload: Option<String>,
        /// A declared workflow document (.json or .toml).
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// With --file: the payload of steps that set none (over the document's `input`).
        #[arg(long, requires = "file")]
        input: Option<String>,
        /// Where the jobs are.
        #[command(flatten)]
        db: DbArgs,
        /// How results are printed.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Shows a workflow's tree: each job with its state, attempts, duration and last
    /// error.
    Show {
        /// The workflow's id.
        #[arg(value_parser = crate::common::parse_workflow_id)]
        id: WorkflowId,
        /// Where the jobs are.
        #[command(flatten)]
        db: DbArgs,
        /// How results are printed.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Lists workflows, newest first.
    List {
        /// Only this state: running, completed, failed or cancelled.
        #[arg(long)]
        state: Option<WorkflowState>,
        /// Only this name.
        #[arg(long)]
        name: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Where the jobs are.
        #[command(flatten)]
        db: DbArgs,
        /// How results are printed.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Cancels every live job of a workflow.
    Cancel {
        /// The workflow's id.
        #[arg(value_parser = crate::common::parse_workflow_id)]
        id: WorkflowId,
        /// Where the jobs are.
        #[command(flatten)]
        db: DbArgs,
        /// How results are printed.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Sends a signal to a workflow: the steps waiting for it complete with PAYLOAD_JSON
    /// as their output (a step reached later consumes it). The first signal of a name
    /// wins; a later one changes nothing and says so.
    Signal {
        /// The workflow's id.
        #[arg(value_parser = crate::common::parse_workflow_id)]
        id: WorkflowId,
        /// The signal's name (the name of the step that waits for it).
        name: String,
        /// Its payload as JSON (default `null`); `-` reads it from standard input.
        payload: Option<String>,
        /// Where the jobs are.
        #[command(flatten)]
        db: DbArgs,
        /// How results are printed.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Prints a finished workflow's result (its result step's output) as JSON; exit 1
    /// when it has none (still running, failed, cancelled, or no single result step).
    Result {
        /// The workflow's id.
        #[arg(value_parser = crate::common::parse_workflow_id)]
        id: WorkflowId,
        /// Where the jobs are.
        #[command(flatten)]
        db: DbArgs,
    },
    /// Waits until a workflow finishes: exit 0 when it completed, 1 otherwise (failed,
    /// cancelled, or still running at the timeout).
    Wait {
        /// The workflow's id.
        #[arg(value_parser = crate::common::parse_workflow_id)]
        id: WorkflowId,
        /// How long to wait.
        #[arg(long, value_parser = parse_duration, default_value = "60s")]
        timeout: Duration,
        /// Print its result (as `workflow result` does) instead of its record.
        #[arg(long)]
        result: bool,
        /// Where the jobs are.
        #[command(flatten)]
        db: DbArgs,
        /// How results are printed.
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// What `workflow start` starts.
enum Start {
    Declared(jobchain::Workflow),
    Dynamic(Box<JobSpec>),
}

/// A workflow with its jobs, as `workflow show --json` prints it.
#[derive(Serialize)]
struct Shown<'a> {
    id: WorkflowId,
    name: &'a str,
    state: WorkflowState,
    counts: &'a jobchain::JobCounts,
    created_at: chrono::DateTime<chrono::Utc>,
    finished_at: Option<chrono::DateTime<chrono::Utc>>,
    jobs: &'a [TreeNode],
}

/// Runs a `workflow` command.
pub async fn run(command: WorkflowCommand) -> Result<(), CliError> {
    match command {
        WorkflowCommand::Start {
            kind,
            payload,
            file,
            input,
            db,
            output,
        } => {
            let workflow = match (file, kind, payload) {
                (Some(file), _, _) => {
                    let input = match input {
                        Some(text) => Some(parse_json_arg(&text, "--input")?),
                        None => None,
                    };
                    Start::Declared(super::flow::load(&file, input)?)
                }
                (None, Some(kind), Some(payload)) => Start::Dynamic(Box::new(JobSpec::new(
                    &kind,
                    parse_json_arg(&payload, "the payload")?,
                ))),
                _ => {
                    return Err(CliError::usage(
                        "give KIND and PAYLOAD_JSON, or --file FLOW.toml",
                    ))
                }
            };
            with_client(&db, |client| async move {
                let started = match workflow {
                    Start::Declared(w) => client.start_workflow(w).await?,
                    Start::Dynamic(job) => client.start_workflow(*job).await?,
                };
                if output.json {
                    out_json(&serde_json::json!({
                        "id": started.id,
                        "duplicate": started.duplicate,
                        "jobs": started.jobs,
                    }))
                } else {
                    out(started.id.to_string());
                    Ok(())
                }
            })
            .await
        }
        WorkflowCommand::Show { id, db, output } => {
            with_client(&db, |client| async move {
                let info = client.workflow(id).await?;
                let tree = client.workflow_tree(id).await?;
                if output.json {
                    return out_json(&Shown {
                        id: info.id,
                        name: &info.name,
                        state: info.state,
                        counts: &info.counts,
                        created_at: info.created_at,
                        finished_at: info.finished_at,
                        jobs: &tree,
                    });
                }
                out(format!(
                    "workflow {} ({}): {}, {} of {} jobs completed",
                    info.id,
                    info.name,
                    info.state,
                    info.counts.completed,
                    info.counts.total()
                ));
                for line in render(&tree) {
                    out(line);
                }
                Ok(())
            })
            .await
        }
        WorkflowCommand::List {
            state,
            name,
            limit,
            db,
            output,
        } => {
            let filter = WorkflowFilter {
                state,
                name,
                limit: Some(limit),
                ..WorkflowFilter::default()
            };
            with_client(&db, |client| async move {
                let list = client.workflows(filter).await?;
                if output.json {
                    return out_json_lines(&list);
                }
                out_table(
                    &["ID", "NAME", "STATE", "JOBS", "DONE", "DEAD", "STARTED"],
                    &list.iter().map(row).collect::<Vec<_>>(),
                );
                Ok(())
            })
            .await
        }
        WorkflowCommand::Cancel { id, db, output } => {
            with_client(&db, |client| async move {
                let info = client.cancel_workflow(id).await?;
                print_info(&info, output)
            })
            .await
        }
        WorkflowCommand::Signal {
            id,
            name,
            payload,
            db,
            output,
        } => {
            let payload = match payload {
                Some(text) => parse_json_arg(&text, "the payload")?,
                None => serde_json::Value::Null,
            };
            with_client(&db, |client| async move {
                let receipt = client.signal(id, &name, payload).await?;
                if output.json {
                    return out_json(&receipt);
                }
                if receipt.accepted {
                    out(format!(
                        "signal `{name}` received; it completed {} waiting step(s){}",
                        receipt.completed.len(),
                        if receipt.completed.is_empty() {
                            " (a step that waits for it later consumes it)"
                        } else {
                            ""
                        }
                    ));
                } else {
                    out(format!(
                        "signal `{name}` was already received at {}; this one changed nothing ({} after the first)",
                        receipt.received_at.to_rfc3339(),
                        receipt.repeats
                    ));
                }
                Ok(())
            })
            .await
        }
        WorkflowCommand::Result { id, db } => {
            with_client(&db, |client| async move {
                let result = client.workflow_result_value(id).await?;
                out_json(&result.unwrap_or(serde_json::Value::Null))
            })
            .await
        }
        WorkflowCommand::Wait {
            id,
            timeout,
            result,
            db,
            output,
        } => {
            with_client(&db, |client| async move {
                let info = client.wait_for_workflow(id, timeout).await?;
                if result {
                    let value = client.workflow_result_value(id).await?;
                    return out_json(&value.unwrap_or(serde_json::Value::Null));
                }
                print_info(&info, output)?;
                if info.state == WorkflowState::Completed {
                    Ok(())
                } else {
                    Err(CliError::failed(format!(
                        "workflow {id} ended {}",
                        info.state
                    )))
                }
            })
            .await
        }
    }
}

fn row(w: &WorkflowInfo) -> Vec<String> {
    vec![
        w.id.to_string(),
        w.name.clone(),
        w.state.to_string(),
        w.counts.total().to_string(),
        w.counts.completed.to_string(),
        w.counts.dead.to_string(),
        short_time(&w.created_at),
    ]
}

fn print_info(info: &WorkflowInfo, output: OutputArgs) -> Result<(), CliError> {
    if output.json {
        out_json(info)
    } else {
        out(format!(
            "workflow {} ({}): {}",
            info.id, info.name, info.state
        ));
        Ok(())
    }
}

/// The tree as lines: each job with its state, attempts, duration and last error.
fn render(nodes: &[TreeNode]) -> Vec<String> {
    let mut lines = Vec::new();
    walk(nodes, "", &mut lines);
    lines
}

fn walk(nodes: &[TreeNode], prefix: &str, lines: &mut Vec<String>) {
    for (i, node) in nodes.iter().enumerate() {
        let last = i + 1 == nodes.len();
        let job = &node.job;
        let took = match (job.started_at, job.finished_at) {
            (Some(s), Some(f)) => (f - s)
                .to_std()
                .map(|d| format!(" in {}", short_duration(d)))
                .unwrap_or_default(),
            _ => String::new(),
        };
        let after = if node.after.is_empty() {
            String::new()
        } else {
            format!(" after {}", node.after.join(", "))
        };
        let error = match (&job.state, job.errors.last()) {
            (jobchain::JobState::Completed, _) | (_, None) => String::new(),
            (_, Some(e)) => format!(" — {}", one_line(&e.message, 80)),
        };
        lines.push(format!(
            "{prefix}{} {} [{}] {} attempt {}/{}{took}{after}{error}",
            if last { "└─" } else { "├─" },
            job.step.as_deref().unwrap_or(&job.kind),
            job.id,
            job.state,
            job.attempts,
            job.max_attempts,
        ));
        let deeper = format!("{prefix}{}", if last { "   " } else { "│  " });
        walk(&node.children, &deeper, lines);
    }
}
