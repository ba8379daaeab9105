//! W3 orders: M order workflows of the seed's shape, chained dynamically:
//! process_order → send_order_confirmation → {generate_invoice, sync_inventory}.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use jobchain::{Client, EnqueueOptions, JobContext, Worker, WorkflowState};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::{all_workflows, completion_ms, drained, percentile, rate, BenchResult};
use crate::CliError;

#[derive(Serialize, Deserialize)]
struct Order {
    id: u64,
}

/// Starts `workflows` orders from 4 producer tasks while one worker runs them.
pub(crate) async fn run(location: &str, workflows: u64) -> Result<BenchResult, CliError> {
    let client = Client::open(location).await?;
    let leaves = Arc::new(AtomicU64::new(0));
    let all_done = Arc::new(Notify::new());
    let leaf = {
        let (leaves, all_done) = (leaves.clone(), all_done.clone());
        move |_: JobContext, _: Order| {
            let (leaves, all_done) = (leaves.clone(), all_done.clone());
            async move {
                if leaves.fetch_add(1, Ordering::Relaxed) + 1 == 2 * workflows {
                    all_done.notify_one();
                }
                Ok(())
            }
        }
    };
    let worker = Worker::builder(&client)
        .handler(
            "process_order",
            |ctx: JobContext, order: Order| async move {
                ctx.enqueue("send_order_confirmation", &order, EnqueueOptions::new())?;
                Ok(())
            },
        )
        .handler(
            "send_order_confirmation",
            |ctx: JobContext, order: Order| async move {
                ctx.enqueue("generate_invoice", &order, EnqueueOptions::new())?;
                ctx.enqueue("sync_inventory", &order, EnqueueOptions::new())?;
                Ok(())
            },
        )
        .handler("generate_invoice", leaf.clone())
        .handler("sync_inventory", leaf)
        .build()?
        .start();
    let started = Instant::now();
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let client = client.clone();
            tokio::spawn(async move {
                for id in (p..workflows).step_by(4) {
                    client
                        .start_workflow("process_order", &Order { id })
                        .await?;
                }
                Ok::<_, jobchain::Error>(())
            })
        })
        .collect();
    for producer in producers {
        producer
            .await
            .map_err(|e| CliError(format!("producer task failed: {e}")))??;
    }
    all_done.notified().await;
    drained(&worker).await;
    let seconds = started.elapsed().as_secs_f64();
    worker.shutdown().await;
    let infos = all_workflows(&client).await?;
    client.close().await;
    let complete = infos
        .iter()
        .filter(|w| w.state == WorkflowState::Completed && w.counts.completed == 4)
        .count() as u64;
    if complete != workflows {
        return Err(CliError(format!(
            "W3 ended with {complete} of {workflows} workflows completed with 4 jobs"
        )));
    }
    let latencies = completion_ms(&infos);
    let mut figures = serde_json::Map::new();
    figures.insert("workflows_per_s".into(), rate(workflows, seconds).into());
    figures.insert("jobs_per_s".into(), rate(4 * workflows, seconds).into());
    figures.insert("p50_ms".into(), percentile(&latencies, 50.0).into());
    figures.insert("p99_ms".into(), percentile(&latencies, 99.0).into());
    Ok(BenchResult {
        workload: "W3".into(),
        store: "sqlite".into(),
        settings: serde_json::json!({ "workflows": workflows, "producers": 4 }),
        versions: serde_json::json!({ "jobchain": env!("CARGO_PKG_VERSION") }),
        figures,
    })
}
