//! W3 orders: M order workflows of the seed's shape, chained dynamically:
//! process_order → send_order_confirmation → {generate_invoice, sync_inventory}.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use jobchain::{EnqueueOptions, JobArgs, JobContext, JobSpec, Worker, WorkflowId, WorkflowState};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::{
    all_workflows, drained, figures, percentiles_ms, rate, start_from_four_tasks, BenchResult,
    Target,
};
use crate::CliError;

/// Orders started per transaction.
const START_BATCH: u64 = 1_000;

#[derive(Serialize, Deserialize)]
struct Order {
    id: u64,
}

/// The four steps, typed: each a transparent wrapper of the order with its own kind.
macro_rules! step {
    ($name:ident, $kind:literal) => {
        #[derive(Serialize, Deserialize)]
        #[serde(transparent)]
        struct $name(Order);
        impl JobArgs for $name {
            const KIND: &'static str = $kind;
        }
    };
}

step!(ProcessOrder, "process_order");
step!(SendConfirmation, "send_order_confirmation");
step!(GenerateInvoice, "generate_invoice");
step!(SyncInventory, "sync_inventory");

/// Starts `workflows` orders from 4 producer tasks while one worker runs them.
pub(crate) async fn run(target: &Target, workflows: u64) -> Result<BenchResult, CliError> {
    let client = target.client().await?;
    let leaves = Arc::new(AtomicU64::new(0));
    let all_done = Arc::new(Notify::new());
    let leaf = {
        let (leaves, all_done) = (leaves.clone(), all_done.clone());
        move |_: JobContext, _: serde::de::IgnoredAny| {
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
        .register(|ctx: JobContext, ProcessOrder(order)| async move {
            ctx.enqueue(&SendConfirmation(order))?;
            Ok(())
        })
        .register(|ctx: JobContext, SendConfirmation(order)| async move {
            ctx.enqueue(&GenerateInvoice(Order { id: order.id }))?;
            ctx.enqueue(&SyncInventory(order))?;
            Ok(())
        })
        .handler(GenerateInvoice::KIND, leaf.clone())
        .handler(SyncInventory::KIND, leaf)
        .build()?
        .start();
    let started = Instant::now();
    // Orders arrive in batches, each started in one transaction (`enqueue_many` with a new
    // workflow id per order), as the limit program inserts its chains' first steps.
    let batches = workflows.div_ceil(START_BATCH);
    start_from_four_tasks(&client, batches, move |client, batch| async move {
        let first = batch * START_BATCH;
        let orders = (first..workflows.min(first + START_BATCH))
            .map(|id| {
                Ok(JobSpec::typed(&ProcessOrder(Order { id }))?
                    .options(EnqueueOptions::new().workflow(WorkflowId::new())))
            })
            .collect::<Result<Vec<_>, jobchain::Error>>()?;
        client.enqueue_many(orders).await?;
        Ok(())
    })
    .await?;
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
        return Err(CliError::failed(format!(
            "W3 ended with {complete} of {workflows} workflows completed with 4 jobs"
        )));
    }
    let samples: Vec<u64> = infos
        .iter()
        .filter_map(|w| {
            w.finished_at
                .and_then(|f| (f - w.created_at).num_microseconds())
                .map(|us| us.max(0) as u64)
        })
        .collect();
    let (p50, _, p99) = percentiles_ms(&samples)?;
    Ok(BenchResult {
        workload: "W3",
        settings: serde_json::json!({
            "workflows": workflows,
            "producers": 4,
            "start_batch": START_BATCH
        }),
        figures: figures(&[
            ("workflows_per_s", rate(workflows, seconds).into()),
            ("jobs_per_s", rate(4 * workflows, seconds).into()),
            ("p50_ms", p50.into()),
            ("p99_ms", p99.into()),
        ]),
    })
}
