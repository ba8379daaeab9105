//! W8, the three-step flow: a workflow of three sequential no-op steps, chained
//! dynamically (each handler enqueues the next) and declared (`one → two → three`).
//!
//! Latency: 100 flows started one at a time on an idle worker, from the start call's
//! return to the third step's completion being durable (p50, p95, p99). The third
//! handler tells the bench its job id; the bench then reads that job until the store has
//! it completed, so the figure includes the settle's commit (and one read of a job). The legs (medians, ms), from the instants
//! the handlers start: `first_start_ms` from the start call's return to the first step's
//! handler (wake-up and claim), `step_to_step_ms` from a step's handler to the next one's
//! (completer, settle with the hand-on, wake-up and claim), `last_settle_ms` from the
//! third handler to its completion read back as durable.
//! Throughput: 2,000 flows started at once from 4 tasks; flows per second until all ended.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jobchain::{
    Client, JobContext, JobId, JobSpec, JobState, Step, Worker, WorkerHandle, Workflow, WorkflowId,
    WorkflowState,
};
use serde_json::json;
use tokio::sync::{mpsc, Notify};

use super::{
    all_workflows, drained, figures, percentiles_ms, rate, start_from_four_tasks, BenchResult,
    Target,
};
use crate::CliError;

/// Flows of the latency phase, one at a time.
const LATENCY_FLOWS: usize = 100;

#[derive(Clone, Copy, PartialEq)]
enum Style {
    Dynamic,
    Declared,
}

impl Style {
    fn name(self) -> &'static str {
        match self {
            Style::Dynamic => "dynamic",
            Style::Declared => "declared",
        }
    }

    fn flow(self, n: u64) -> FlowStart {
        match self {
            Style::Dynamic => FlowStart::Job(Box::new(JobSpec::new("w8.one", json!(n)))),
            Style::Declared => FlowStart::Declared(
                Workflow::new("three-steps")
                    .step(Step::untyped("one", JobSpec::new("w8.one", json!(n))))
                    .step(Step::untyped("two", JobSpec::new("w8.two", json!(n))).after("one"))
                    .step(Step::untyped("three", JobSpec::new("w8.three", json!(n))).after("two")),
            ),
        }
    }
}

enum FlowStart {
    Job(Box<JobSpec>),
    Declared(Workflow),
}

async fn start(client: &Client, flow: FlowStart) -> Result<WorkflowId, jobchain::Error> {
    Ok(match flow {
        FlowStart::Job(spec) => client.start_workflow(*spec).await?.id,
        FlowStart::Declared(wf) => client.start_workflow(wf).await?.id,
    })
}

/// W8 for both styles, each on a fresh store: two rows.
pub(crate) async fn run(database: Option<&str>, flows: u64) -> Result<Vec<BenchResult>, CliError> {
    let mut rows = Vec::new();
    for style in [Style::Dynamic, Style::Declared] {
        let target = Target::create(database, "w8").await?;
        let measured = measure(&target, style, flows).await;
        target.destroy().await;
        rows.push(measured?);
    }
    Ok(rows)
}

/// When each step's handler of each latency flow started.
type Starts = Arc<Mutex<Vec<[Option<Instant>; 3]>>>;

/// The worker: each step a no-op that notes when it started (latency flows); in the
/// dynamic style one and two hand on the next; the third counts and tells the bench.
fn worker(
    client: &Client,
    style: Style,
    starts: Starts,
    ended: Arc<AtomicU64>,
    third: mpsc::UnboundedSender<JobId>,
) -> Result<WorkerHandle, CliError> {
    let step = move |index: usize, next: Option<&'static str>| {
        let (starts, ended, third) = (starts.clone(), ended.clone(), third.clone());
        move |ctx: JobContext, n: u64| {
            let at = Instant::now();
            if let Some(flow) = starts
                .lock()
                .ok()
                .as_mut()
                .and_then(|s| s.get_mut(n as usize))
            {
                flow[index] = Some(at);
            }
            let (ended, third) = (ended.clone(), third.clone());
            async move {
                match next {
                    Some(next) if style == Style::Dynamic => {
                        ctx.enqueue(JobSpec::new(next, json!(n)))?;
                    }
                    Some(_) => {}
                    None => {
                        ended.fetch_add(1, Ordering::Relaxed);
                        if n < LATENCY_FLOWS as u64 {
                            let _ = third.send(ctx.job_id());
                        }
                    }
                }
                Ok(())
            }
        }
    };
    Ok(Worker::builder(client)
        .handler("w8.one", step(0, Some("w8.two")))
        .handler("w8.two", step(1, Some("w8.three")))
        .handler("w8.three", step(2, None))
        .build()?
        .start())
}

async fn measure(target: &Target, style: Style, flows: u64) -> Result<BenchResult, CliError> {
    let client = target.client().await?;
    let ended = Arc::new(AtomicU64::new(0));
    let (third_tx, mut third) = mpsc::unbounded_channel();
    let starts: Starts = Arc::new(Mutex::new(vec![[None; 3]; LATENCY_FLOWS]));
    let worker = worker(&client, style, starts.clone(), ended.clone(), third_tx)?;

    // Latency: one flow at a time on an idle worker.
    let bar = super::progress(LATENCY_FLOWS as u64 + flows, "W8");
    let mut samples = Vec::with_capacity(LATENCY_FLOWS);
    let mut legs = Legs::default();
    for n in 0..LATENCY_FLOWS as u64 {
        // Let the worker go idle (its producers parked) before each flow.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let id = start(&client, style.flow(n)).await?;
        let started = Instant::now();
        legs.started.push(started);
        let last = tokio::time::timeout(Duration::from_secs(30), third.recv())
            .await
            .ok()
            .flatten()
            .ok_or_else(|| {
                CliError::failed(format!(
                    "W8: flow {id} did not reach its third step in 30 s"
                ))
            })?;
        // The third handler ran; its completion is durable when the store says so.
        loop {
            match client.job(last).await?.state {
                JobState::Completed => break,
                JobState::Running => tokio::task::yield_now().await,
                other => {
                    return Err(CliError::failed(format!(
                        "W8: the third step of flow {id} ended {other}"
                    )));
                }
            }
        }
        samples.push(started.elapsed().as_micros() as u64);
        legs.durable.push(Instant::now());
        bar.inc(1);
    }
    let (p50, p95, p99) = percentiles_ms(&samples)?;
    let (first_start_ms, step_to_step_ms, last_settle_ms) = legs.medians(&starts)?;

    // Throughput: all flows started at once.
    ended.store(0, Ordering::Relaxed);
    let all_ended = Arc::new(Notify::new());
    let watcher = {
        let (ended, all_ended, bar) = (ended.clone(), all_ended.clone(), bar.clone());
        tokio::spawn(async move {
            loop {
                let n = ended.load(Ordering::Relaxed);
                bar.set_position(LATENCY_FLOWS as u64 + n);
                if n >= flows {
                    all_ended.notify_one();
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let started = Instant::now();
    start_from_four_tasks(&client, flows, move |client, n| async move {
        start(&client, style.flow(LATENCY_FLOWS as u64 + n)).await?;
        Ok(())
    })
    .await?;
    all_ended.notified().await;
    drained(&worker).await;
    let seconds = started.elapsed().as_secs_f64();
    watcher.abort();
    worker.shutdown().await;
    bar.finish_and_clear();
    let complete = all_workflows(&client)
        .await?
        .iter()
        .filter(|w| w.state == WorkflowState::Completed && w.counts.completed == 3)
        .count() as u64;
    client.close().await;
    let expected = flows + LATENCY_FLOWS as u64;
    if complete != expected {
        return Err(CliError::failed(format!(
            "W8 ended with {complete} of {expected} flows completed with 3 steps"
        )));
    }
    Ok(BenchResult {
        workload: "W8",
        settings: json!({
            "style": style.name(),
            "latency_flows": LATENCY_FLOWS,
            "throughput_flows": flows,
            "producers": 4,
        }),
        figures: figures(&[
            ("p50_ms", p50.into()),
            ("p95_ms", p95.into()),
            ("p99_ms", p99.into()),
            ("first_start_ms", first_start_ms.into()),
            ("step_to_step_ms", step_to_step_ms.into()),
            ("last_settle_ms", last_settle_ms.into()),
            ("flows_per_s", rate(flows, seconds).into()),
        ]),
    })
}

/// The bench's own instants of the latency flows.
#[derive(Default)]
struct Legs {
    /// When each start call returned.
    started: Vec<Instant>,
    /// When each flow was read back completed.
    durable: Vec<Instant>,
}

impl Legs {
    /// Medians in ms: start → first handler, handler → next handler, third handler →
    /// durable.
    fn medians(&self, starts: &Starts) -> Result<(f64, f64, f64), CliError> {
        let starts = starts
            .lock()
            .map_err(|_| CliError::failed("W8: the handlers' instants are poisoned"))?;
        let (mut first, mut between, mut last) = (Vec::new(), Vec::new(), Vec::new());
        let us = |from: Instant, to: Instant| to.saturating_duration_since(from).as_micros() as u64;
        for ((flow, started), durable) in starts.iter().zip(&self.started).zip(&self.durable) {
            let [Some(one), Some(two), Some(three)] = *flow else {
                return Err(CliError::failed("W8: a latency flow skipped a step"));
            };
            first.push(us(*started, one));
            between.push(us(one, two));
            between.push(us(two, three));
            last.push(us(three, *durable));
        }
        let median_ms = |mut v: Vec<u64>| {
            v.sort_unstable();
            let sorted: Vec<f64> = v.iter().map(|us| *us as f64 / 1000.0).collect();
            (super::median(&sorted) * 100.0).round() / 100.0
        };
        Ok((median_ms(first), median_ms(between), median_ms(last)))
    }
}
