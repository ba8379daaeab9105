//! W3 orders: M order workflows of the seed's shape, chained dynamically:
//! process_order → send_order_confirmation → {generate_invoice, sync_inventory}.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use jobchain::{
    EnqueueOptions, JobArgs, JobContext, JobSpec, Worker, WorkerBuilder, WorkflowId, WorkflowState,
};
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

/// Registers the four order handlers: the first two hand on the next steps, each leaf
/// calls `leaf`. Used by W3's worker here and by `jobchain bench-worker`, with `on_run`
/// called for every job run.
pub(crate) fn register_orders(
    builder: WorkerBuilder,
    on_run: impl Fn(bool) + Clone + Send + Sync + 'static,
) -> WorkerBuilder {
    let (first, second) = (on_run.clone(), on_run.clone());
    let leaf = move |_: JobContext, _: serde::de::IgnoredAny| {
        let on_run = on_run.clone();
        async move {
            on_run(true);
            Ok(())
        }
    };
    builder
        .register(move |ctx: JobContext, ProcessOrder(order)| {
            let on_run = first.clone();
            async move {
                ctx.enqueue(&SendConfirmation(order))?;
                on_run(false);
                Ok(())
            }
        })
        .register(move |ctx: JobContext, SendConfirmation(order)| {
            let on_run = second.clone();
            async move {
                ctx.enqueue(&GenerateInvoice(Order { id: order.id }))?;
                ctx.enqueue(&SyncInventory(order))?;
                on_run(false);
                Ok(())
            }
        })
        .handler(GenerateInvoice::KIND, leaf.clone())
        .handler(SyncInventory::KIND, leaf)
}

/// Starts `workflows` orders from 4 producer tasks while one worker (`workers == 0`) or
/// `workers` worker processes run them.
pub(crate) async fn run(
    target: &Target,
    workflows: u64,
    workers: usize,
) -> Result<BenchResult, CliError> {
    let client = target.client().await?;
    let leaves = Arc::new(AtomicU64::new(0));
    let all_done = Arc::new(Notify::new());
    let worker = if workers == 0 {
        let (leaves, all_done) = (leaves.clone(), all_done.clone());
        let on_run = move |leaf: bool| {
            if leaf && leaves.fetch_add(1, Ordering::Relaxed) + 1 == 2 * workflows {
                all_done.notify_one();
            }
        };
        Some(
            register_orders(Worker::builder(&client), on_run)
                .build()?
                .start(),
        )
    } else {
        None
    };
    let processes = (workers > 0).then(|| {
        let location = target.location.clone();
        tokio::spawn(
            async move { super::w1::run_in_processes(&location, 4 * workflows, workers).await },
        )
    });
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
    match (worker, processes) {
        (Some(worker), _) => {
            all_done.notified().await;
            drained(&worker).await;
            worker.shutdown().await;
        }
        (None, Some(processes)) => {
            processes
                .await
                .map_err(|e| CliError::failed(format!("W3 worker processes: {e}")))??;
        }
        (None, None) => {}
    }
    let seconds = started.elapsed().as_secs_f64();
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
            "worker_processes": workers,
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
