//! W10, workflows that map and wait. (a) Maps: W workflows, each `list` (an array of 20)
//! → a map step over it (20 no-op elements) → `total`; started at once from 4 tasks, run
//! by one worker; jobs per second counts every job (23 per workflow), beside plain W1 draining
//! as many jobs in the same run. (b) Signals: 1,000 workflows (half of W, at most
//! 1,000) wait for a signal
//! (`wait_for_signal` → `after`); once every one is waiting, all are signalled at once
//! from 4 tasks; every workflow must finish, and the latency from a signal call's return
//! to the start of the step after it is reported (p50, p99).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jobchain::{JobContext, JobSpec, JobState, Step, Worker, Workflow, WorkflowId, WorkflowState};
use serde_json::json;

use super::w1::{drain_here_with, enqueue_backlog_of};
use super::{
    all_workflows, figures, percentiles_ms, rate, start_from_four_tasks, BenchResult, Target,
};
use crate::CliError;

/// Elements per map.
const ELEMENTS: u64 = 20;
/// Jobs per mapping workflow: list, map step, elements, total.
const JOBS_PER_WORKFLOW: u64 = ELEMENTS + 3;
/// Workflows waiting for a signal: half the mapping workflows, at most 1,000 (the
/// default 2,000 gives 1,000).
fn waiting(workflows: u64) -> usize {
    (workflows / 2).clamp(1, 1000) as usize
}

/// Runs W10 on fresh stores.
pub(crate) async fn run(database: Option<&str>, workflows: u64) -> Result<BenchResult, CliError> {
    let maps = {
        let target = Target::create(database, "w10").await?;
        let measured = maps(&target, workflows).await;
        target.destroy().await;
        measured?
    };
    let plain = {
        let target = Target::create(database, "w10").await?;
        let measured = async {
            let client = target.client().await?;
            let jobs = workflows * JOBS_PER_WORKFLOW;
            enqueue_backlog_of(&client, jobs, |i| JobSpec::new("noop", json!({ "i": i }))).await?;
            let seconds = drain_here_with(&client, jobs, jobchain::KindOptions::new()).await?;
            client.close().await;
            Ok::<_, CliError>(rate(jobs, seconds))
        }
        .await;
        target.destroy().await;
        measured?
    };
    let (signal_p50, signal_p99, signal_seconds) = {
        let target = Target::create(database, "w10").await?;
        let measured = signals(&target, waiting(workflows)).await;
        target.destroy().await;
        measured?
    };
    Ok(BenchResult {
        workload: "W10",
        settings: json!({
            "workflows": workflows,
            "elements": ELEMENTS,
            "waiting_workflows": waiting(workflows),
        }),
        figures: figures(&[
            ("map_jobs_per_s", maps.into()),
            ("plain_drain_jobs_per_s", plain.into()),
            (
                "map_ratio",
                ((maps / plain * 1000.0).round() / 1000.0).into(),
            ),
            ("signal_p50_ms", signal_p50.into()),
            ("signal_p99_ms", signal_p99.into()),
            (
                "signals_all_done_s",
                ((signal_seconds * 1000.0).round() / 1000.0).into(),
            ),
        ]),
    })
}

/// Part (a): jobs per second of mapping workflows.
async fn maps(target: &Target, workflows: u64) -> Result<f64, CliError> {
    let client = target.client().await?;
    let worker = Worker::builder(&client)
        .concurrency(100)
        .handler("list", |_: JobContext, n: u64| async move {
            Ok((0..n).collect::<Vec<u64>>())
        })
        .handler("element", |_: JobContext, x: u64| async move { Ok(x) })
        .handler(
            "total",
            |ctx: JobContext, _: serde_json::Value| async move {
                let items: Vec<u64> = ctx.output_of("each").await?.unwrap_or_default();
                Ok(items.iter().sum::<u64>())
            },
        )
        .build()?
        .start();
    let started = Instant::now();
    let ids: Arc<Mutex<Vec<WorkflowId>>> = Arc::default();
    let record = ids.clone();
    // Started from 4 tasks, as W3's orders are.
    start_from_four_tasks(&client, workflows, move |client, _| {
        let record = record.clone();
        async move {
            let wf = Workflow::new("w10")
                .step(Step::untyped("list", JobSpec::new("list", json!(ELEMENTS))))
                .step(Step::map("each", "element").over("list"))
                .step(Step::untyped("total", JobSpec::new("total", json!({}))).after("each"));
            let id = client.start_workflow(wf).await?.id;
            if let Ok(mut ids) = record.lock() {
                ids.push(id);
            }
            Ok(())
        }
    })
    .await?;
    let ids = ids.lock().map(|ids| ids.clone()).unwrap_or_default();
    wait_all(&client, &ids).await?;
    let seconds = started.elapsed().as_secs_f64();
    worker.shutdown().await;
    let infos = all_workflows(&client).await?;
    client.close().await;
    let complete = infos
        .iter()
        .filter(|w| w.state == WorkflowState::Completed && w.counts.completed == JOBS_PER_WORKFLOW)
        .count() as u64;
    if complete != workflows {
        return Err(CliError::failed(format!(
            "W10 ended with {complete} of {workflows} mapping workflows completed with {JOBS_PER_WORKFLOW} jobs"
        )));
    }
    Ok(rate(workflows * JOBS_PER_WORKFLOW, seconds))
}

/// Part (b): signal-to-next-step latency of waiting workflows signalled at once.
async fn signals(target: &Target, waiting: usize) -> Result<(f64, f64, f64), CliError> {
    let client = target.client().await?;
    let started_after: Arc<Mutex<HashMap<WorkflowId, Instant>>> = Arc::default();
    let record = started_after.clone();
    let worker = Worker::builder(&client)
        .concurrency(100)
        .handler("after", move |ctx: JobContext, _: serde_json::Value| {
            let record = record.clone();
            async move {
                if let (Some(id), Ok(mut m)) = (ctx.workflow_id(), record.lock()) {
                    m.insert(id, Instant::now());
                }
                Ok(())
            }
        })
        .build()?
        .start();
    let mut ids = Vec::with_capacity(waiting);
    let mut waits = Vec::with_capacity(waiting);
    for _ in 0..waiting {
        let wf = Workflow::new("w10-signal")
            .step(Step::wait_for_signal("go", Duration::from_secs(3600)))
            .step(Step::untyped("after", JobSpec::new("after", json!({}))).after("go"));
        let started = client.start_workflow(wf).await?;
        ids.push(started.id);
        waits.push(started.jobs[0]);
    }
    // Every signal step reached: it ran once and waits, snoozed.
    let deadline = Instant::now() + Duration::from_secs(300);
    for id in &waits {
        loop {
            let job = client.job(*id).await?;
            if job.state == JobState::Pending && job.started_at.is_some() {
                break;
            }
            if Instant::now() > deadline {
                return Err(CliError::failed(
                    "W10: the signal steps did not all start waiting",
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let sent: Arc<Mutex<HashMap<WorkflowId, Instant>>> = Arc::default();
    let began = Instant::now();
    let mut tasks = Vec::new();
    for chunk in ids.chunks(waiting.div_ceil(4)) {
        let (client, chunk, sent) = (client.clone(), chunk.to_vec(), sent.clone());
        tasks.push(tokio::spawn(async move {
            for id in chunk {
                client.signal(id, "go", json!({ "ok": true })).await?;
                if let Ok(mut m) = sent.lock() {
                    m.insert(id, Instant::now());
                }
            }
            Ok::<_, jobchain::Error>(())
        }));
    }
    for task in tasks {
        task.await
            .map_err(|e| CliError::failed(format!("W10 signal task: {e}")))??;
    }
    wait_all(&client, &ids).await?;
    let all_done = began.elapsed().as_secs_f64();
    worker.shutdown().await;
    client.close().await;
    let (sent, ran) = (
        sent.lock().map(|m| m.clone()).unwrap_or_default(),
        started_after.lock().map(|m| m.clone()).unwrap_or_default(),
    );
    if ran.len() != waiting {
        return Err(CliError::failed(format!(
            "W10: {} of {waiting} signalled workflows ran the step after the signal",
            ran.len()
        )));
    }
    let samples: Vec<u64> = ids
        .iter()
        .filter_map(|id| {
            let (s, r) = (sent.get(id)?, ran.get(id)?);
            // The next step can start before the signal call returns: zero then.
            Some(r.saturating_duration_since(*s).as_micros() as u64)
        })
        .collect();
    let (p50, _, p99) = percentiles_ms(&samples)?;
    Ok((p50, p99, all_done))
}

/// Waits until every workflow has finished.
async fn wait_all(client: &jobchain::Client, ids: &[WorkflowId]) -> Result<(), CliError> {
    for id in ids {
        client
            .wait_for_workflow(*id, Duration::from_secs(600))
            .await?;
    }
    Ok(())
}
