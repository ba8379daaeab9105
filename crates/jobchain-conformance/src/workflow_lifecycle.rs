//! Conformance cases for a workflow's life after its start: cancel, DLQ revival,
//! retention, dynamic chaining from declared steps, unique keys, listing and counts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jobchain::{JobContext, JobError, JobState, Step, Workflow, WorkflowFilter, WorkflowState};
use serde_json::json;

use crate::support::{eventually, in_state, job, quick_retry, Harness, StartWorker};
use crate::workflows::{jobs_by_step, settled};

/// Cancelling a workflow mid-run cancels its live jobs (the running one is told) and
/// marks it cancelled.
pub async fn cancelling_a_workflow_mid_run(h: &Harness) {
    let told = Arc::new(AtomicBool::new(false));
    let t = told.clone();
    let worker = h
        .worker()
        .configure(|c| c.heartbeat = Some(Duration::from_millis(30)))
        .handler("wait", move |ctx: JobContext, _: serde_json::Value| {
            let t = t.clone();
            async move {
                ctx.cancelled().await;
                t.store(true, Ordering::SeqCst);
                Ok(())
            }
        })
        .handler(
            "ok",
            |_: JobContext, p: serde_json::Value| async move { Ok(p) },
        )
        .started();
    let wf = Workflow::new("cancel-me")
        .step(Step::untyped("first", job("ok", &json!(1))))
        .step(Step::untyped("long", job("wait", &json!({}))).after("first"))
        .step(Step::untyped("after", job("ok", &json!(2))).after("long"));
    let id = h.client.start_workflow(wf).await.expect("start").id;
    let long = eventually("the long step to run", || async {
        let jobs = jobs_by_step(h, id).await;
        (jobs["long"].state == JobState::Running).then(|| jobs["long"].id)
    })
    .await;
    let info = h.client.cancel_workflow(id).await.expect("cancel");
    assert_eq!(info.state, WorkflowState::Cancelled);
    eventually("the running handler to be told", || async {
        told.load(Ordering::SeqCst).then_some(())
    })
    .await;
    worker.shutdown().await;
    let jobs = jobs_by_step(h, id).await;
    assert_eq!(jobs["first"].state, JobState::Completed);
    assert_eq!(jobs["long"].state, JobState::Cancelled);
    assert_eq!(jobs["after"].state, JobState::Cancelled);
    assert_eq!(
        h.client.job(long).await.expect("job").state,
        JobState::Cancelled
    );
    let info = h.client.workflow(id).await.expect("workflow");
    assert_eq!(info.state, WorkflowState::Cancelled);
    assert!(h.client.cancel_workflow(id).await.is_err());
}

/// Retrying a dead step revives the branch it cancelled, through to completion.
pub async fn dlq_retry_revives_the_cancelled_branch(h: &Harness) {
    let healed = Arc::new(AtomicBool::new(false));
    let flag = healed.clone();
    let worker = h
        .worker()
        .handler(
            "ok",
            |_: JobContext, p: serde_json::Value| async move { Ok(p) },
        )
        .handler_with(
            "flaky",
            quick_retry(1),
            move |_: JobContext, _: serde_json::Value| {
                let flag = flag.clone();
                async move {
                    if flag.load(Ordering::SeqCst) {
                        Ok(json!("paid"))
                    } else {
                        Err(JobError::retryable("gateway down"))
                    }
                }
            },
        )
        .started();
    let wf = Workflow::new("revive")
        .step(Step::untyped("start", job("ok", &json!(0))))
        .step(Step::untyped("pay", job("flaky", &json!({}))).after("start"))
        .step(Step::untyped("ship", job("ok", &json!(1))).after("pay"))
        .step(Step::untyped("notify", job("ok", &json!(2))).after("ship"))
        .step(Step::untyped("audit", job("ok", &json!(3))).after_optional("pay"));
    let id = h.client.start_workflow(wf).await.expect("start").id;
    let failed = settled(h, id).await;
    assert_eq!(failed.state, WorkflowState::Failed);
    let jobs = jobs_by_step(h, id).await;
    assert_eq!(jobs["ship"].state, JobState::Cancelled);
    assert_eq!(jobs["notify"].state, JobState::Cancelled);
    assert_eq!(jobs["audit"].state, JobState::Completed);
    healed.store(true, Ordering::SeqCst);
    h.client.retry(jobs["pay"].id).await.expect("retry");
    let running = h.client.workflow(id).await.expect("workflow");
    assert_eq!(running.state, WorkflowState::Running);
    let revived = jobs_by_step(h, id).await;
    assert!(matches!(
        revived["ship"].state,
        JobState::Blocked | JobState::Pending | JobState::Running | JobState::Completed
    ));
    let info = settled(h, id).await;
    worker.shutdown().await;
    assert_eq!(info.state, WorkflowState::Completed);
    assert_eq!(info.counts.completed, 5);
    let jobs = jobs_by_step(h, id).await;
    assert_eq!(jobs["notify"].state, JobState::Completed);
    assert_eq!(jobs["notify"].cancel_reason, None);
    assert_eq!(
        jobs["audit"].attempts, 1,
        "a completed step does not run again"
    );
}

/// Cancelling a dead step discards it from the dead-letter queue: it becomes cancelled
/// with a reason that says so, its dependents stay as its death left them (an optional
/// dependent still waiting for another step is not released early), it can no longer be
/// retried, and the workflow ends as it would have.
pub async fn cancelling_a_dead_job_discards_it(h: &Harness) {
    let open = Arc::new(AtomicBool::new(false));
    let gate = open.clone();
    let worker = h
        .worker()
        .handler(
            "ok",
            |_: JobContext, p: serde_json::Value| async move { Ok(p) },
        )
        .handler_with(
            "broken",
            quick_retry(1),
            |_: JobContext, _: serde_json::Value| async move {
                Err::<(), _>(JobError::permanent("card declined"))
            },
        )
        .handler("gate", move |_: JobContext, _: serde_json::Value| {
            let gate = gate.clone();
            async move {
                while !gate.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(())
            }
        })
        .started();
    let wf = Workflow::new("discard")
        .step(Step::untyped("pay", job("broken", &json!({}))))
        .step(Step::untyped("ship", job("ok", &json!(1))).after("pay"))
        .step(Step::untyped("slow", job("gate", &json!({}))))
        .step(
            Step::untyped("audit", job("ok", &json!(2)))
                .after_optional("pay")
                .after("slow"),
        );
    let id = h.client.start_workflow(wf).await.expect("start").id;
    let pay = eventually("the payment to die", || async {
        let jobs = jobs_by_step(h, id).await;
        (jobs["pay"].state == JobState::Dead).then(|| jobs["pay"].id)
    })
    .await;
    let discarded = h.client.cancel(pay).await.expect("discard");
    assert_eq!(discarded.state, JobState::Cancelled);
    let reason = discarded.cancel_reason.expect("a reason");
    assert!(reason.contains("dead-letter queue"), "{reason}");
    assert_eq!(discarded.errors.len(), 1, "its history stays");
    assert!(h.client.dead_jobs(100).await.expect("dlq").is_empty());
    let jobs = jobs_by_step(h, id).await;
    assert_eq!(jobs["ship"].state, JobState::Cancelled);
    assert_eq!(
        jobs["audit"].state,
        JobState::Blocked,
        "still waiting for `slow`: the discard must not release it again"
    );
    assert!(h.client.retry(pay).await.is_err(), "no longer dead");
    assert!(h.client.cancel(pay).await.is_err(), "already cancelled");
    open.store(true, Ordering::SeqCst);
    let info = settled(h, id).await;
    worker.shutdown().await;
    assert_eq!(info.state, WorkflowState::Failed);
    let jobs = jobs_by_step(h, id).await;
    assert_eq!(jobs["audit"].state, JobState::Completed);
    assert_eq!(jobs["audit"].attempts, 1);
}

/// The cleaner removes finished jobs and finished workflows whole, and never touches a
/// running workflow.
pub async fn cleaner_keeps_running_workflows_whole(h: &Harness) {
    let worker = h
        .worker()
        .handler(
            "ok",
            |_: JobContext, p: serde_json::Value| async move { Ok(p) },
        )
        .started();
    let done = h
        .client
        .start_workflow(
            Workflow::new("done")
                .step(Step::untyped("a", job("ok", &json!(1))))
                .step(Step::untyped("b", job("ok", &json!(2))).after("a")),
        )
        .await
        .expect("start")
        .id;
    // A running workflow: one completed step, one waiting for a kind nobody handles.
    let open = h
        .client
        .start_workflow(
            Workflow::new("open")
                .step(Step::untyped("a", job("ok", &json!(1))))
                .step(Step::untyped("b", job("handled_elsewhere", &json!(2))).after("a")),
        )
        .await
        .expect("start")
        .id;
    let lone = h
        .client
        .enqueue(job("ok", &json!("lone")))
        .await
        .expect("enqueue")
        .id;
    settled(h, done).await;
    let open_a = eventually("the open workflow's first step", || async {
        let jobs = jobs_by_step(h, open).await;
        (jobs["a"].state == JobState::Completed).then(|| jobs["a"].id)
    })
    .await;
    in_state(&h.client, lone, JobState::Completed).await;
    worker.shutdown().await;
    let report = h
        .client
        .store()
        .clean(Duration::ZERO, 1000)
        .await
        .expect("clean");
    assert_eq!(report.workflows, 1);
    assert_eq!(report.jobs, 3);
    assert!(
        h.client.workflow(done).await.is_err(),
        "the finished workflow is gone"
    );
    assert!(
        h.client.job(lone).await.is_err(),
        "the finished lone job is gone"
    );
    let open_jobs = h.client.workflow_jobs(open).await.expect("jobs");
    assert_eq!(open_jobs.len(), 2, "the running workflow is whole");
    assert_eq!(
        h.client.job(open_a).await.expect("job").state,
        JobState::Completed
    );
    assert_eq!(
        h.client
            .workflow(open)
            .await
            .expect("workflow")
            .counts
            .completed,
        1
    );
}

/// A declared step's handler may stage dynamic follow-ups: they join the workflow and
/// appear in its tree under their parent.
pub async fn declared_steps_can_chain_dynamically(h: &Harness) {
    let worker = h
        .worker()
        .handler("plan", |ctx: JobContext, _: serde_json::Value| async move {
            ctx.enqueue(job("extra", &json!("dynamic")))?;
            Ok("planned")
        })
        .handler(
            "ok",
            |_: JobContext, p: serde_json::Value| async move { Ok(p) },
        )
        .handler("extra", |_: JobContext, p: serde_json::Value| async move {
            Ok(p)
        })
        .started();
    let id = h
        .client
        .start_workflow(
            Workflow::new("mixed")
                .step(Step::untyped("plan", job("plan", &json!({}))))
                .step(Step::untyped("finish", job("ok", &json!(1))).after("plan")),
        )
        .await
        .expect("start")
        .id;
    let info = settled(h, id).await;
    worker.shutdown().await;
    assert_eq!(info.state, WorkflowState::Completed);
    assert_eq!(info.counts.completed, 3);
    let jobs = jobs_by_step(h, id).await;
    assert_eq!(jobs["extra"].parent_id, Some(jobs["plan"].id));
    assert_eq!(jobs["extra"].workflow_id, Some(id));
    let tree = h.client.workflow_tree(id).await.expect("tree");
    assert_eq!(tree.len(), 1);
    let names: Vec<_> = tree[0]
        .children
        .iter()
        .map(|c| c.job.name().to_string())
        .collect();
    assert_eq!(names, ["finish", "extra"]);
}

/// A workflow unique key makes starting idempotent while it runs; listing filters by
/// state and name, newest first; counts on the record match the jobs.
pub async fn workflow_unique_key_listing_and_counts(h: &Harness) {
    let wf = || {
        Workflow::new("nightly")
            .unique_key("nightly-2026-11-26")
            .step(Step::untyped("a", job("ok", &json!(1))))
            .step(Step::untyped("b", job("ok", &json!(2))).after("a"))
    };
    let first = h.client.start_workflow(wf()).await.expect("first").id;
    let second = h.client.start_workflow(wf()).await.expect("second").id;
    assert_eq!(first, second);
    assert_eq!(h.client.workflow_jobs(first).await.expect("jobs").len(), 2);
    let info = h.client.workflow(first).await.expect("workflow");
    assert_eq!(info.state, WorkflowState::Running);
    assert_eq!(info.counts.pending, 1);
    assert_eq!(info.counts.blocked, 1);
    let other = h
        .client
        .start_workflow(Workflow::new("other").step(Step::untyped("x", job("ok", &json!(0)))))
        .await
        .expect("other")
        .id;
    let all = h
        .client
        .workflows(WorkflowFilter::default())
        .await
        .expect("list");
    assert_eq!(all.iter().map(|w| w.id).collect::<Vec<_>>(), [other, first]);
    let named = h
        .client
        .workflows(WorkflowFilter {
            name: Some("nightly".into()),
            ..WorkflowFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(named.len(), 1);
    let worker = h
        .worker()
        .handler(
            "ok",
            |_: JobContext, p: serde_json::Value| async move { Ok(p) },
        )
        .started();
    settled(h, first).await;
    settled(h, other).await;
    worker.shutdown().await;
    let done = h
        .client
        .workflows(WorkflowFilter {
            state: Some(WorkflowState::Completed),
            ..WorkflowFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(done.len(), 2);
    let third = h.client.start_workflow(wf()).await.expect("third").id;
    assert_ne!(third, first, "a finished workflow does not hold its key");
    let info = h.client.workflow(first).await.expect("workflow");
    let jobs = h.client.workflow_jobs(first).await.expect("jobs");
    let mut counts = jobchain::JobCounts::default();
    for job in &jobs {
        counts.add(job.state);
    }
    assert_eq!(info.counts, counts);
    assert!(info.finished_at.is_some());
}
