//! W4 fan-in: M declared workflows of 1 → 20 parallel → 1 join; checks that every join
//! ran exactly once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use jobchain::{JobContext, Step, Worker, Workflow, WorkflowId};
use tokio::sync::Notify;

use super::{drained, figures, rate, start_from_four_tasks, BenchResult, Target};
use crate::CliError;

const WIDTH: u64 = 20;

fn fan_in(n: u64) -> Workflow {
    let mut wf = Workflow::new("fan-in").step(Step::untyped(
        "split",
        jobchain::JobSpec::new("split", n.into()),
    ));
    let mut join = Step::untyped("join", jobchain::JobSpec::new("join", n.into()));
    for i in 0..WIDTH {
        let name = format!("part-{i}");
        wf = wf.step(Step::untyped(&name, jobchain::JobSpec::new("part", i.into())).after("split"));
        join = join.after(&name);
    }
    wf.step(join)
}

/// Starts `workflows` fan-in workflows from 4 producer tasks while one worker runs them.
pub(crate) async fn run(target: &Target, workflows: u64) -> Result<BenchResult, CliError> {
    let client = target.client().await?;
    let joins = Arc::new(Mutex::new(HashMap::<WorkflowId, u32>::new()));
    let joined = Arc::new(AtomicU64::new(0));
    let all_done = Arc::new(Notify::new());
    let (j, n, d) = (joins.clone(), joined.clone(), all_done.clone());
    let worker = Worker::builder(&client)
        .handler("split", |_: JobContext, _: u64| async move { Ok(()) })
        .handler("part", |_: JobContext, i: u64| async move { Ok(i) })
        .handler("join", move |ctx: JobContext, _: u64| {
            let (j, n, d) = (j.clone(), n.clone(), d.clone());
            async move {
                if let Some(id) = ctx.workflow_id() {
                    *j.lock()
                        .map_err(|_| jobchain::JobError::retryable("poisoned"))?
                        .entry(id)
                        .or_default() += 1;
                }
                if n.fetch_add(1, Ordering::Relaxed) + 1 == workflows {
                    d.notify_one();
                }
                Ok(())
            }
        })
        .build()?
        .start();
    let started = Instant::now();
    start_from_four_tasks(&client, workflows, |client, n| async move {
        client.start_workflow(fan_in(n)).await?;
        Ok(())
    })
    .await?;
    all_done.notified().await;
    drained(&worker).await;
    let seconds = started.elapsed().as_secs_f64();
    worker.shutdown().await;
    client.close().await;
    let joins = joins
        .lock()
        .map_err(|_| CliError::failed("join counts poisoned"))?;
    let once = joins.values().filter(|c| **c == 1).count() as u64;
    if joins.len() as u64 != workflows || once != workflows {
        return Err(CliError::failed(format!(
            "W4: {} of {workflows} joins ran, {once} exactly once",
            joins.len()
        )));
    }
    let jobs = workflows * (WIDTH + 2);
    Ok(BenchResult {
        workload: "W4",
        settings: serde_json::json!({ "workflows": workflows, "width": WIDTH, "producers": 4 }),
        figures: figures(&[
            ("jobs_per_s", rate(jobs, seconds).into()),
            ("workflows_per_s", rate(workflows, seconds).into()),
            ("joins_exactly_once", once.into()),
        ]),
    })
}
