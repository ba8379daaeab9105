//! Conformance cases for declared workflows: fan-in, edge policies, outputs and
//! validation. Their life after the start (cancel, revival, retention, tracking) is in
//! [`crate::workflow_lifecycle`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobchain::{
    JobContext, JobError, JobFilter, JobState, Step, Workflow, WorkflowFilter, WorkflowId,
    WorkflowState,
};
use serde_json::json;

use crate::support::{eventually, job, quick_retry, Harness, StartWorker};

/// Waits until the workflow is no longer running.
pub async fn settled(h: &Harness, id: WorkflowId) -> jobchain::WorkflowInfo {
    eventually(&format!("workflow {id} to finish"), || async {
        let info = h.client.workflow(id).await.expect("workflow");
        (info.state != WorkflowState::Running).then_some(info)
    })
    .await
}

pub(crate) async fn jobs_by_step(h: &Harness, id: WorkflowId) -> HashMap<String, jobchain::Job> {
    h.client
        .workflow_jobs(id)
        .await
        .expect("jobs")
        .into_iter()
        .map(|j| (j.step.clone().unwrap_or_else(|| j.kind.clone()), j))
        .collect()
}

/// A worker whose `ok` handler succeeds (returning its payload) and whose `fail`
/// handler fails every attempt.
pub(crate) fn ok_fail_worker(h: &Harness) -> jobchain::WorkerHandle {
    h.worker()
        .handler(
            "ok",
            |_: JobContext, p: serde_json::Value| async move { Ok(p) },
        )
        .handler_with(
            "fail",
            quick_retry(2),
            |_: JobContext, _: serde_json::Value| async move {
                Err::<(), _>(JobError::retryable("the step failed"))
            },
        )
        .started()
}

pub(crate) fn order(optional_edges: bool) -> Workflow {
    let after = |s: Step| {
        if optional_edges {
            s.after_optional("confirm")
        } else {
            s.after("confirm")
        }
    };
    Workflow::new("order")
        .step(Step::untyped("charge", job("ok", &json!("charged"))))
        .step(Step::untyped("confirm", job("fail", &json!({}))).after("charge"))
        .step(after(Step::untyped(
            "invoice",
            job("ok", &json!("invoiced")),
        )))
        .step(after(Step::untyped(
            "inventory",
            job("ok", &json!("synced")),
        )))
}

/// The declared order workflow with a failing e-mail step and optional edges out of it:
/// invoice and inventory run, and the workflow completes with one tolerated failure.
pub async fn declared_order_tolerates_failed_email_on_optional_edges(h: &Harness) {
    let worker = ok_fail_worker(h);
    let id = h
        .client
        .start_workflow(order(true))
        .await
        .expect("start")
        .id;
    let info = settled(h, id).await;
    worker.shutdown().await;
    assert_eq!(info.state, WorkflowState::Completed);
    assert_eq!(info.tolerated_failures, 1);
    assert_eq!(info.counts.completed, 3);
    assert_eq!(info.counts.dead, 1);
    let jobs = jobs_by_step(h, id).await;
    assert_eq!(jobs["confirm"].state, JobState::Dead);
    assert_eq!(jobs["invoice"].state, JobState::Completed);
    assert_eq!(jobs["inventory"].state, JobState::Completed);
}

/// With required edges, invoice and inventory are cancelled naming the e-mail step, and
/// the workflow fails.
pub async fn declared_order_cancels_dependents_of_failed_email_on_required_edges(h: &Harness) {
    let worker = ok_fail_worker(h);
    let id = h
        .client
        .start_workflow(order(false))
        .await
        .expect("start")
        .id;
    let info = settled(h, id).await;
    worker.shutdown().await;
    assert_eq!(info.state, WorkflowState::Failed);
    let jobs = jobs_by_step(h, id).await;
    for step in ["invoice", "inventory"] {
        let job = &jobs[step];
        assert_eq!(job.state, JobState::Cancelled);
        assert_eq!(job.attempts, 0, "{step} never ran");
        let reason = job.cancel_reason.as_deref().expect("reason");
        assert!(
            reason.contains("confirm") && reason.contains("dead"),
            "{reason}"
        );
    }
    let tree = h.client.render_workflow(id).await.expect("tree");
    assert!(tree.contains("cancelled"), "{tree}");
}

/// 1 → 20 → 1: the join runs exactly once, after all 20, and sees all 20 outputs.
pub async fn fan_out_fan_in_join_runs_once_with_every_output(h: &Harness) {
    let join_runs = Arc::new(AtomicU32::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (runs, s) = (join_runs.clone(), seen.clone());
    let worker = h
        .worker()
        .handler("part", |_: JobContext, n: u32| async move {
            tokio::time::sleep(Duration::from_millis(u64::from(n % 5))).await;
            Ok(n * n)
        })
        .handler("split", |_: JobContext, _: serde_json::Value| async move {
            Ok("split")
        })
        .handler("join", move |ctx: JobContext, _: serde_json::Value| {
            let (runs, s) = (runs.clone(), s.clone());
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                let deps = ctx.dependencies().await?;
                let mut outputs = Vec::new();
                for dep in &deps {
                    assert_eq!(dep.state, JobState::Completed);
                    outputs.push(ctx.output_of::<u32>(&dep.name).await?.expect("output"));
                }
                outputs.sort_unstable();
                *s.lock().expect("seen") = outputs.clone();
                Ok(outputs.iter().sum::<u32>())
            }
        })
        .started();
    let mut wf = Workflow::new("fan").step(Step::untyped("split", job("split", &json!({}))));
    let mut join = Step::untyped("join", job("join", &json!({})));
    for n in 0..20u32 {
        let name = format!("part-{n}");
        wf = wf.step(Step::untyped(&name, job("part", &n)).after("split"));
        join = join.after(&name);
    }
    let id = h
        .client
        .start_workflow(wf.step(join))
        .await
        .expect("start")
        .id;
    let info = settled(h, id).await;
    worker.shutdown().await;
    assert_eq!(info.state, WorkflowState::Completed);
    assert_eq!(info.counts.completed, 22);
    assert_eq!(join_runs.load(Ordering::SeqCst), 1);
    let expected: Vec<u32> = (0..20).map(|n| n * n).collect();
    assert_eq!(*seen.lock().expect("seen"), expected);
    let jobs = jobs_by_step(h, id).await;
    let join = &jobs["join"];
    assert_eq!(join.output, Some(json!(expected.iter().sum::<u32>())));
    let last_part = jobs
        .values()
        .filter(|j| j.kind == "part")
        .filter_map(|j| j.finished_at)
        .max()
        .expect("parts finished");
    assert!(join.started_at.expect("started") >= last_part);
}

/// A diamond completes in order; a failure cascades cancellation three levels deep.
pub async fn diamond_and_three_level_cascade(h: &Harness) {
    let worker = ok_fail_worker(h);
    let diamond = Workflow::new("diamond")
        .step(Step::untyped("a", job("ok", &json!("a"))))
        .step(Step::untyped("b", job("ok", &json!("b"))).after("a"))
        .step(Step::untyped("c", job("ok", &json!("c"))).after("a"))
        .step(
            Step::untyped("d", job("ok", &json!("d")))
                .after("b")
                .after("c"),
        );
    let diamond = h.client.start_workflow(diamond).await.expect("start").id;
    let chain = Workflow::new("cascade")
        .step(Step::untyped("root", job("fail", &json!({}))))
        .step(Step::untyped("level1", job("ok", &json!(1))).after("root"))
        .step(Step::untyped("level2", job("ok", &json!(2))).after("level1"))
        .step(Step::untyped("level3", job("ok", &json!(3))).after("level2"));
    let chain = h.client.start_workflow(chain).await.expect("start").id;
    let d_info = settled(h, diamond).await;
    let c_info = settled(h, chain).await;
    worker.shutdown().await;
    assert_eq!(d_info.state, WorkflowState::Completed);
    let d = jobs_by_step(h, diamond).await;
    let d_start = d["d"].started_at.expect("d started");
    assert!(d_start >= d["b"].finished_at.expect("b finished"));
    assert!(d_start >= d["c"].finished_at.expect("c finished"));
    assert_eq!(c_info.state, WorkflowState::Failed);
    assert_eq!(c_info.counts.cancelled, 3);
    let c = jobs_by_step(h, chain).await;
    for (step, cause) in [
        ("level1", "root"),
        ("level2", "level1"),
        ("level3", "level2"),
    ] {
        assert_eq!(c[step].state, JobState::Cancelled);
        let reason = c[step].cancel_reason.as_deref().expect("reason");
        assert!(reason.contains(&format!("`{cause}`")), "{step}: {reason}");
    }
}

/// Optional edges run after a dead and after a cancelled dependency; the dependent sees
/// the failed dependency's absent output and its last error.
pub async fn optional_edges_after_dead_and_cancelled_dependencies(h: &Harness) {
    let observed = Arc::new(Mutex::new(Vec::new()));
    let o = observed.clone();
    let worker = h
        .worker()
        .handler(
            "ok",
            |_: JobContext, p: serde_json::Value| async move { Ok(p) },
        )
        .handler_with(
            "fail",
            quick_retry(1),
            |_: JobContext, _: serde_json::Value| async move {
                Err::<(), _>(JobError::permanent("card declined"))
            },
        )
        .handler("inspect", move |ctx: JobContext, _: serde_json::Value| {
            let o = o.clone();
            async move {
                for dep in ctx.dependencies().await? {
                    let output: Option<serde_json::Value> = ctx.output_of(&dep.name).await?;
                    o.lock().expect("observed").push((
                        ctx.step().unwrap_or_default().to_string(),
                        dep.name.clone(),
                        dep.state,
                        output,
                        dep.last_error.map(|e| e.message),
                    ));
                }
                Ok(())
            }
        })
        .started();
    let wf = Workflow::new("optional")
        .step(Step::untyped("pay", job("fail", &json!({}))))
        .step(Step::untyped("ship", job("ok", &json!("shipped"))).after("pay"))
        .step(Step::untyped("after_dead", job("inspect", &json!({}))).after_optional("pay"))
        .step(Step::untyped("after_cancelled", job("inspect", &json!({}))).after_optional("ship"));
    let id = h.client.start_workflow(wf).await.expect("start").id;
    let info = settled(h, id).await;
    worker.shutdown().await;
    let jobs = jobs_by_step(h, id).await;
    assert_eq!(jobs["pay"].state, JobState::Dead);
    assert_eq!(jobs["ship"].state, JobState::Cancelled);
    assert_eq!(jobs["after_dead"].state, JobState::Completed);
    assert_eq!(jobs["after_cancelled"].state, JobState::Completed);
    // `pay` has a required edge out of it: its failure is not tolerated.
    assert_eq!(info.state, WorkflowState::Failed);
    let mut seen = observed.lock().expect("observed").clone();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].0, "after_cancelled");
    assert_eq!(seen[0].2, JobState::Cancelled);
    assert_eq!(seen[0].3, None);
    assert_eq!(seen[1].0, "after_dead");
    assert_eq!(seen[1].2, JobState::Dead);
    assert_eq!(seen[1].3, None);
    assert_eq!(seen[1].4.as_deref(), Some("card declined"));
}

/// Invalid graphs are rejected naming the offending steps, and nothing is written.
pub async fn invalid_workflows_are_rejected_and_write_nothing(h: &Harness) {
    let cycle = Workflow::new("cycle")
        .step(Step::untyped("a", job("ok", &json!({}))).after("c"))
        .step(Step::untyped("b", job("ok", &json!({}))).after("a"))
        .step(Step::untyped("c", job("ok", &json!({}))).after("b"));
    let err = h
        .client
        .start_workflow(cycle)
        .await
        .expect_err("cycle")
        .to_string();
    assert!(
        err.contains("cycle") && err.contains('a') && err.contains('c'),
        "{err}"
    );
    let unknown = Workflow::new("unknown")
        .step(Step::untyped("a", job("ok", &json!({}))))
        .step(Step::untyped("b", job("ok", &json!({}))).after("ghost"));
    let err = h
        .client
        .start_workflow(unknown)
        .await
        .expect_err("unknown")
        .to_string();
    assert!(err.contains("`b`") && err.contains("`ghost`"), "{err}");
    let duplicate = Workflow::new("duplicate")
        .step(Step::untyped("a", job("ok", &json!({}))))
        .step(Step::untyped("a", job("ok", &json!({}))));
    let err = h
        .client
        .start_workflow(duplicate)
        .await
        .expect_err("dup")
        .to_string();
    assert!(err.contains("`a`") && err.contains("twice"), "{err}");
    let err = h
        .client
        .start_workflow(Workflow::new("empty"))
        .await
        .expect_err("empty")
        .to_string();
    assert!(err.contains("no steps"), "{err}");
    let workflows = h
        .client
        .workflows(WorkflowFilter::default())
        .await
        .expect("list");
    assert!(workflows.is_empty());
    assert!(h
        .client
        .jobs(JobFilter::default())
        .await
        .expect("jobs")
        .is_empty());
}
