//! `jobchain stats` and `jobchain workers`: queue depth and the live workers.

use crate::common::{
    out, out_json, out_json_lines, out_table, short_duration, short_time, with_client, DbArgs,
    OutputArgs,
};
use crate::CliError;

/// Per queue: counts by state, the age of the oldest due pending job, and the kinds no
/// live worker handles.
pub async fn stats(db: DbArgs, output: OutputArgs) -> Result<(), CliError> {
    with_client(&db, |client| async move {
        let stats = client.queue_stats().await?;
        if output.json {
            return out_json(&stats);
        }
        if stats.is_empty() {
            out("no jobs");
            return Ok(());
        }
        let rows: Vec<Vec<String>> = stats
            .iter()
            .map(|q| {
                let c = &q.counts;
                vec![
                    q.queue.clone(),
                    c.blocked.to_string(),
                    c.pending.to_string(),
                    c.running.to_string(),
                    c.completed.to_string(),
                    c.dead.to_string(),
                    c.cancelled.to_string(),
                    c.skipped.to_string(),
                    q.oldest_pending_age
                        .map(short_duration)
                        .unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        out_table(
            &[
                "QUEUE",
                "BLOCKED",
                "PENDING",
                "RUNNING",
                "COMPLETED",
                "DEAD",
                "CANCELLED",
                "SKIPPED",
                "OLDEST PENDING",
            ],
            &rows,
        );
        for q in &stats {
            for u in &q.unhandled {
                let hint = if u.handled_on.is_empty() {
                    "no live worker handles this kind".to_string()
                } else {
                    format!("handled only on queue(s) {}", u.handled_on.join(", "))
                };
                out(format!(
                    "warning: {} pending `{}` job(s) on queue `{}`, oldest {}: {hint}",
                    u.count,
                    u.kind,
                    u.queue,
                    short_duration(u.oldest_age)
                ));
            }
        }
        Ok(())
    })
    .await
}

/// The live workers.
pub async fn workers(db: DbArgs, output: OutputArgs) -> Result<(), CliError> {
    with_client(&db, |client| async move {
        let workers = client.workers().await?;
        if output.json {
            return out_json_lines(&workers);
        }
        if workers.is_empty() {
            out("no live workers");
            return Ok(());
        }
        let rows: Vec<Vec<String>> = workers
            .iter()
            .map(|w| {
                vec![
                    w.id.clone(),
                    w.host.clone(),
                    w.pid.to_string(),
                    w.queues.join(","),
                    w.kinds.join(","),
                    short_time(&w.started_at),
                    short_time(&w.last_seen),
                ]
            })
            .collect();
        out_table(
            &[
                "ID",
                "HOST",
                "PID",
                "QUEUES",
                "KINDS",
                "STARTED",
                "LAST SEEN",
            ],
            &rows,
        );
        Ok(())
    })
    .await
}
