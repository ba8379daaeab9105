//! Conformance cases for steps made of steps: map steps and sub-workflows.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jobchain::{JobContext, JobError, JobState, Step, Workflow, WorkflowState};
use serde_json::{json, Value};

use crate::support::{in_state, job, quick_retry, Harness, StartWorker};
use crate::workflows::{jobs_by_step, settled};

/// A map over 1,000 elements with `max_parallel = 10`: never more than 10 elements run at
/// once, each element is its own job nested under the map step, and the output is the
/// elements' outputs in order, which the step after it reads.
pub async fn a_map_runs_each_element_in_order_within_its_parallelism(h: &Harness) {
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (r, m) = (running.clone(), most.clone());
    let worker = h
        .worker()
        .concurrency(32)
        .handler("numbers", |_: JobContext, n: u64| async move {
            Ok((0..n).collect::<Vec<u64>>())
        })
        .handler("square", move |_: JobContext, x: u64| {
            let (running, most) = (r.clone(), m.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(x * x)
            }
        })
        .handler("sum", |ctx: JobContext, _: Value| async move {
            let squares: Vec<u64> = ctx.output_of("squares").await?.unwrap_or_default();
            Ok(squares.iter().sum::<u64>())
        })
        .started();
    let wf = Workflow::new("squares")
        .step(Step::untyped("numbers", job("numbers", &1000)))
        .step(
            Step::map("squares", "square")
                .over("numbers")
                .max_parallel(10),
        )
        .step(Step::untyped("sum", job("sum", &json!({}))).after("squares"));
    let started = h.client.start_workflow(wf).await.expect("start");
    let info = settled(h, started.id).await;
    assert_eq!(info.state, WorkflowState::Completed);
    let jobs = jobs_by_step(h, started.id).await;
    let expected: Vec<u64> = (0..1000).map(|x| x * x).collect();
    assert_eq!(jobs["squares"].output, Some(json!(expected)));
    assert_eq!(
        jobs["sum"].output,
        Some(json!(expected.iter().sum::<u64>()))
    );
    let map_id = jobs["squares"].id;
    let elements: Vec<_> = h
        .client
        .workflow_jobs(started.id)
        .await
        .expect("jobs")
        .into_iter()
        .filter(|j| j.parent_id == Some(map_id))
        .collect();
    assert_eq!(elements.len(), 1000);
    assert!(elements
        .iter()
        .all(|j| j.kind == "square" && j.attempts == 1));
    assert_eq!(info.counts.total(), 1003);
    let most = most.load(Ordering::SeqCst);
    assert!(most <= 10, "{most} elements ran at once (max_parallel 10)");
    worker.shutdown().await;
}

/// A failed element fails the map step (its dependent is cancelled, the workflow fails);
/// retried from the dead-letter queue, it revives the map step and its dependent, and
/// the workflow completes. A tolerated failure is `null` in the output instead.
pub async fn a_failed_element_retried_from_the_dlq_revives_the_map(h: &Harness) {
    let healed = Arc::new(AtomicBool::new(false));
    let heal = healed.clone();
    let worker = h
        .worker()
        .handler("list", |_: JobContext, v: Value| async move { Ok(v) })
        .handler_with("fragile", quick_retry(1), move |_: JobContext, x: i64| {
            let healed = heal.clone();
            async move {
                if x == 2 && !healed.load(Ordering::SeqCst) {
                    return Err(JobError::retryable("element 2 broke"));
                }
                Ok(x * 10)
            }
        })
        .handler("after", |ctx: JobContext, _: Value| async move {
            let out: Option<Value> = ctx.output_of("tens").await?;
            Ok(out)
        })
        .started();
    let wf = Workflow::new("tens")
        .step(Step::untyped("list", job("list", &json!([1, 2, 3]))))
        .step(Step::map("tens", "fragile").over("list"))
        .step(Step::untyped("after", job("after", &json!({}))).after("tens"));
    let started = h.client.start_workflow(wf).await.expect("start");
    let info = settled(h, started.id).await;
    assert_eq!(info.state, WorkflowState::Failed);
    let jobs = jobs_by_step(h, started.id).await;
    assert_eq!(jobs["tens[1]"].state, JobState::Dead);
    assert_eq!(jobs["tens"].state, JobState::Cancelled);
    assert_eq!(jobs["after"].state, JobState::Cancelled);
    healed.store(true, Ordering::SeqCst);
    h.client.retry(jobs["tens[1]"].id).await.expect("retry");
    let info = settled(h, started.id).await;
    assert_eq!(info.state, WorkflowState::Completed);
    let jobs = jobs_by_step(h, started.id).await;
    assert_eq!(jobs["tens"].output, Some(json!([10, 20, 30])));
    assert_eq!(jobs["after"].output, Some(json!([10, 20, 30])));

    healed.store(false, Ordering::SeqCst);
    let tolerant = Workflow::new("tolerant")
        .step(Step::untyped("list", job("list", &json!([1, 2, 3]))))
        .step(
            Step::map("tens", "fragile")
                .over("list")
                .tolerate_failures(),
        );
    let started = h.client.start_workflow(tolerant).await.expect("start");
    let info = settled(h, started.id).await;
    assert_eq!(info.state, WorkflowState::Completed);
    assert_eq!(info.tolerated_failures, 1);
    let result: Value = h.client.workflow_result(started.id).await.expect("result");
    assert_eq!(result, json!([10, null, 30]));

    // A map over something that is not an array ends dead, saying so.
    let wrong = Workflow::new("wrong")
        .step(Step::untyped(
            "list",
            job("list", &json!({"not": "an array"})),
        ))
        .step(Step::map("tens", "fragile").over("list"));
    let started = h.client.start_workflow(wrong).await.expect("start");
    settled(h, started.id).await;
    let jobs = jobs_by_step(h, started.id).await;
    assert_eq!(jobs["tens"].state, JobState::Dead);
    assert!(
        jobs["tens"].errors[0]
            .message
            .contains("not an array but an object"),
        "{:?}",
        jobs["tens"].errors
    );
    // Enqueued as a plain job, outside any workflow, a sub-workflow step ends dead,
    // saying why (it never asks the store to write steps without a workflow).
    let child = json!({"name": "c", "steps": [], "result": null});
    let plain = h
        .client
        .enqueue(jobchain::JobSpec::new(
            jobchain::steps::WORKFLOW_KIND,
            child,
        ))
        .await
        .expect("enqueue");
    let dead = crate::support::terminal(&h.client, plain.id).await;
    assert_eq!(dead.state, JobState::Dead);
    assert!(
        dead.errors[0].message.contains("belongs to no workflow"),
        "{:?}",
        dead.errors
    );
    worker.shutdown().await;
}

/// A sub-workflow runs inside its parent, nested under its step, and the step completes
/// with the child's result, which the step after it reads.
pub async fn a_sub_workflow_runs_nested_and_returns_its_result(h: &Harness) {
    let worker = h
        .worker()
        .handler("ok", |_: JobContext, v: Value| async move { Ok(v) })
        .handler("label", |ctx: JobContext, _: Value| async move {
            let packed: Option<Value> = ctx.output_of("pack").await?;
            Ok(json!({ "label": "ZX-9", "packed": packed }))
        })
        .handler("notify", |ctx: JobContext, _: Value| async move {
            let shipped: Option<Value> = ctx.output_of("ship").await?;
            Ok(shipped)
        })
        .started();
    let shipping = Workflow::new("shipping")
        .step(Step::untyped("pack", job("ok", &json!("boxed"))))
        .step(Step::untyped("label", job("label", &json!({}))).after("pack"));
    let wf = Workflow::new("order")
        .step(Step::untyped("charge", job("ok", &json!("charged"))))
        .step(Step::workflow("ship", shipping).after("charge"))
        .step(Step::untyped("notify", job("notify", &json!({}))).after("ship"));
    let started = h.client.start_workflow(wf).await.expect("start");
    let result: Value = h
        .client
        .wait_for_result(started.id, Duration::from_secs(30))
        .await
        .expect("result");
    let label = json!({"label": "ZX-9", "packed": "boxed"});
    assert_eq!(result, label);
    let jobs = jobs_by_step(h, started.id).await;
    assert_eq!(jobs["ship"].output, Some(label));
    assert_eq!(jobs["pack"].parent_id, Some(jobs["ship"].id));
    assert_eq!(jobs["label"].parent_id, Some(jobs["ship"].id));
    assert!(jobs["notify"].started_at >= jobs["label"].finished_at);
    let tree = h.client.render_workflow(started.id).await.expect("tree");
    assert!(tree.contains("pack") && tree.contains("label"), "{tree}");
    worker.shutdown().await;
}

/// Cancelling the parent workflow cancels the child's steps, running or waiting.
pub async fn a_sub_workflow_is_cancelled_through_its_parent(h: &Harness) {
    let worker = h
        .worker()
        .handler("ok", |_: JobContext, v: Value| async move { Ok(v) })
        .handler("slow", |ctx: JobContext, _: Value| async move {
            ctx.cancelled().await;
            Err::<(), _>(JobError::retryable("cancelled"))
        })
        .started();
    let child = Workflow::new("child")
        .step(Step::untyped("long", job("slow", &json!({}))))
        .step(Step::untyped("then", job("ok", &json!(1))).after("long"));
    let wf = Workflow::new("parent")
        .step(Step::workflow("inner", child))
        .step(Step::untyped("after", job("ok", &json!(2))).after("inner"));
    let started = h.client.start_workflow(wf).await.expect("start");
    let long = crate::support::eventually("the child's first step", || async {
        jobs_by_step(h, started.id).await.get("long").map(|j| j.id)
    })
    .await;
    in_state(&h.client, long, JobState::Running).await;
    let info = h.client.cancel_workflow(started.id).await.expect("cancel");
    assert_eq!(info.state, WorkflowState::Cancelled);
    let info = settled(h, started.id).await;
    assert_eq!(info.state, WorkflowState::Cancelled);
    let jobs = jobs_by_step(h, started.id).await;
    for step in ["inner", "long", "then", "after"] {
        assert_eq!(jobs[step].state, JobState::Cancelled, "{step}");
    }
    worker.shutdown().await;
}

/// Conditions: a step whose condition holds is skipped and its dependents run, seeing it
/// skipped; with a cascade its required dependents are skipped too while optional ones
/// run; a condition that does not hold lets the step run. Skipped steps are counted as
/// skipped and are never failures. A condition must read the step's dependencies.
pub async fn conditions_skip_a_step_or_its_branch(h: &Harness) {
    use jobchain::{Op, Predicate};
    let worker = h
        .worker()
        .handler("ok", |_: JobContext, v: Value| async move { Ok(v) })
        .handler("deps", |ctx: JobContext, _: Value| async move {
            let deps = ctx.dependencies().await?;
            Ok(deps
                .into_iter()
                .map(|d| json!({"name": d.name, "state": d.state}))
                .collect::<Vec<_>>())
        })
        .started();
    let small = || Predicate::compare("charge", "/amount", Op::Lt, 100);
    let wf = Workflow::new("conditions")
        .step(Step::untyped("charge", job("ok", &json!({"amount": 40}))))
        .step(
            Step::untyped("fraud_check", job("ok", &json!(1)))
                .after("charge")
                .skip_if(small()),
        )
        .step(Step::untyped("notify", job("deps", &json!({}))).after("fraud_check"))
        .step(
            Step::untyped("premium", job("ok", &json!(2)))
                .after("charge")
                .skip_cascade_if(small()),
        )
        .step(Step::untyped("gift", job("ok", &json!(3))).after("premium"))
        .step(Step::untyped("wrap", job("ok", &json!(4))).after("gift"))
        .step(Step::untyped("log", job("deps", &json!({}))).after_optional("premium"))
        .step(
            Step::untyped("big", job("ok", &json!(5)))
                .after("charge")
                .skip_if(Predicate::compare("charge", "/amount", Op::Gt, 100)),
        );
    let started = h.client.start_workflow(wf).await.expect("start");
    let info = settled(h, started.id).await;
    assert_eq!(info.state, WorkflowState::Completed);
    assert_eq!(info.counts.skipped, 4, "{:?}", info.counts);
    assert_eq!(info.tolerated_failures, 0);
    let jobs = jobs_by_step(h, started.id).await;
    for step in ["fraud_check", "premium", "gift", "wrap"] {
        assert_eq!(jobs[step].state, JobState::Skipped, "{step}");
        assert_eq!(jobs[step].attempts, 0, "{step} never ran");
    }
    for step in ["charge", "notify", "log", "big"] {
        assert_eq!(jobs[step].state, JobState::Completed, "{step}");
    }
    let reason = jobs["fraud_check"]
        .cancel_reason
        .clone()
        .unwrap_or_default();
    assert!(reason.contains("`/amount` of `charge` < 100"), "{reason}");
    let reason = jobs["gift"].cancel_reason.clone().unwrap_or_default();
    assert!(
        reason.contains("`premium`") && reason.contains("skipped"),
        "{reason}"
    );
    assert_eq!(
        jobs["notify"].output,
        Some(json!([{"name": "fraud_check", "state": "skipped"}]))
    );
    assert_eq!(
        jobs["log"].output,
        Some(json!([{"name": "premium", "state": "skipped"}]))
    );

    let wrong = Workflow::new("wrong")
        .step(Step::untyped("a", job("ok", &json!(1))))
        .step(Step::untyped("b", job("ok", &json!(1))))
        .step(
            Step::untyped("c", job("ok", &json!(1)))
                .after("a")
                .skip_if(Predicate::compare("b", "/x", Op::Eq, 1)),
        );
    let err = h
        .client
        .start_workflow(wrong)
        .await
        .expect_err("not a dependency");
    assert!(
        err.to_string().contains("not one of its dependencies"),
        "{err}"
    );
    worker.shutdown().await;
}
