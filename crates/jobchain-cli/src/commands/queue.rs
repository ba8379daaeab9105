//! `jobchain queue pause|resume|list`: stop and restart a queue for every worker.

use clap::Subcommand;

use crate::common::{
    out, out_json, out_json_lines, out_table, short_duration, with_client, DbArgs, OutputArgs,
};
use crate::CliError;

/// `jobchain queue …`.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Pauses a queue: no worker starts its jobs (within one poll interval) until it is
    /// resumed; running jobs finish. Held in the store, for every process.
    Pause {
        /// The queue.
        queue: String,
        /// Where the jobs are.
        #[command(flatten)]
        db: DbArgs,
        /// How results are printed.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Resumes a paused queue.
    Resume {
        /// The queue.
        queue: String,
        /// Where the jobs are.
        #[command(flatten)]
        db: DbArgs,
        /// How results are printed.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Every queue with jobs or a pause: whether it is paused, its pending and running jobs.
    List {
        /// Where the jobs are.
        #[command(flatten)]
        db: DbArgs,
        /// How results are printed.
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// Runs a `queue` command.
pub async fn run(command: QueueCommand) -> Result<(), CliError> {
    match command {
        QueueCommand::Pause { queue, db, output } => set(queue, true, db, output).await,
        QueueCommand::Resume { queue, db, output } => set(queue, false, db, output).await,
        QueueCommand::List { db, output } => {
            with_client(&db, |client| async move {
                let stats = client.queue_stats().await?;
                if output.json {
                    let rows: Vec<_> = stats
                        .iter()
                        .map(|q| {
                            serde_json::json!({
                                "queue": q.queue,
                                "paused": q.paused,
                                "pending": q.counts.pending,
                                "running": q.counts.running,
                            })
                        })
                        .collect();
                    return out_json_lines(&rows);
                }
                if stats.is_empty() {
                    out("no queues");
                    return Ok(());
                }
                let rows: Vec<Vec<String>> = stats
                    .iter()
                    .map(|q| {
                        vec![
                            q.queue.clone(),
                            if q.paused { "paused" } else { "running" }.to_string(),
                            q.counts.pending.to_string(),
                            q.counts.running.to_string(),
                            q.oldest_pending_age
                                .map(short_duration)
                                .unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                out_table(
                    &["QUEUE", "STATE", "PENDING", "RUNNING", "OLDEST PENDING"],
                    &rows,
                );
                Ok(())
            })
            .await
        }
    }
}

async fn set(queue: String, paused: bool, db: DbArgs, output: OutputArgs) -> Result<(), CliError> {
    with_client(&db, |client| async move {
        let info = if paused {
            client.pause_queue(&queue).await?
        } else {
            client.resume_queue(&queue).await?
        };
        if output.json {
            return out_json(&info);
        }
        out(format!(
            "queue `{}` is {}",
            info.name,
            if info.paused { "paused" } else { "running" }
        ));
        Ok(())
    })
    .await
}
