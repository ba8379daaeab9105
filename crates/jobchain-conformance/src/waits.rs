//! Conformance cases for workflows that wait (signals, durable timers) and for
//! workflow results.

use std::sync::Arc;
use std::time::Duration;

use jobchain::{JobContext, JobState, Step, Workflow, WorkflowState};
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::support::{eventually, in_state, job, Harness, StartWorker};
use crate::workflows::{jobs_by_step, ok_fail_worker, settled};

/// The order waits for the warehouse: `charge` → `shipped` (a signal, at most 60 s) →
/// `invoice`, which reads the tracking number the signal brought.
fn order_waiting_for_shipment(timeout: Duration) -> Workflow {
    Workflow::new("order")
        .step(Step::untyped("charge", job("ok", &json!("charged"))))
        .step(Step::wait_for_signal("shipped", timeout).after("charge"))
        .step(Step::untyped("invoice", job("invoice", &json!({}))).after("shipped"))
}

/// A worker with `ok`, `fail` and `invoice` (which returns the `shipped` step's output).
fn shipping_worker(h: &Harness) -> jobchain::WorkerHandle {
    h.worker()
        .handler("ok", |_: JobContext, p: Value| async move { Ok(p) })
        .handler("invoice", |ctx: JobContext, _: Value| async move {
            let shipped: Option<Value> = ctx.output_of("shipped").await?;
            Ok(json!({ "invoiced": shipped }))
        })
        .started()
}

/// Waits until a waiting step was reached: it ran once and waits, pending again.
async fn reached(h: &Harness, step: jobchain::JobId) -> jobchain::Job {
    eventually(&format!("step {step} to wait"), || async {
        let job = h.client.job(step).await.expect("job");
        (job.state == JobState::Pending && job.started_at.is_some()).then_some(job)
    })
    .await
}

/// The order waiting for its shipment, under a worker, once the signal step was reached
/// (it ran once, found no signal and waits: pending, not running).
async fn order_waiting(
    h: &Harness,
) -> (
    jobchain::WorkerHandle,
    jobchain::WorkflowStarted,
    jobchain::JobId,
) {
    let worker = shipping_worker(h);
    let started = h
        .client
        .start_workflow(order_waiting_for_shipment(Duration::from_secs(60)))
        .await
        .expect("start");
    let wait = started.jobs[1];
    reached(h, wait).await;
    (worker, started, wait)
}

/// A signal completes the step waiting for it, with its payload as output, and the
/// step's dependents run.
pub async fn a_signal_completes_its_waiting_step(h: &Harness) {
    let (worker, started, wait) = order_waiting(h).await;
    let receipt = h
        .client
        .signal(started.id, "shipped", json!({"tracking": "ZX-1"}))
        .await
        .expect("signal");
    assert!(receipt.accepted);
    assert_eq!(receipt.completed, vec![wait]);
    let info = settled(h, started.id).await;
    assert_eq!(info.state, WorkflowState::Completed);
    let jobs = jobs_by_step(h, started.id).await;
    assert_eq!(jobs["shipped"].output, Some(json!({"tracking": "ZX-1"})));
    assert_eq!(
        jobs["invoice"].output,
        Some(json!({"invoiced": {"tracking": "ZX-1"}}))
    );
    worker.shutdown().await;
}

/// A signal sent before its step is reached is kept and consumed when the step is; a
/// second signal of the name changes nothing and is reported as not accepted.
pub async fn an_early_signal_is_kept_and_a_later_one_refused(h: &Harness) {
    let gate = Arc::new(Notify::new());
    let opened = gate.clone();
    let worker = h
        .worker()
        .handler("gated", move |_: JobContext, _: Value| {
            let gate = opened.clone();
            async move {
                gate.notified().await;
                Ok(())
            }
        })
        .handler("ok", |_: JobContext, p: Value| async move { Ok(p) })
        .started();
    let wf = Workflow::new("early")
        .step(Step::untyped("slow", job("gated", &json!({}))))
        .step(Step::wait_for_signal("approved", Duration::from_secs(60)).after("slow"))
        .step(Step::untyped("after", job("ok", &json!("done"))).after("approved"));
    let started = h.client.start_workflow(wf).await.expect("start");
    in_state(&h.client, started.jobs[0], JobState::Running).await;
    let first = h
        .client
        .signal(started.id, "approved", json!({"by": "ann"}))
        .await
        .expect("signal");
    assert!(first.accepted);
    assert!(first.completed.is_empty(), "{first:?}");
    let second = h
        .client
        .signal(started.id, "approved", json!({"by": "bob"}))
        .await
        .expect("signal again");
    assert!(!second.accepted);
    assert_eq!(second.repeats, 1);
    assert_eq!(second.received_at, first.received_at);
    gate.notify_one();
    let info = settled(h, started.id).await;
    assert_eq!(info.state, WorkflowState::Completed);
    let jobs = jobs_by_step(h, started.id).await;
    assert_eq!(jobs["approved"].output, Some(json!({"by": "ann"})));
    // Signals go to workflows that exist.
    let err = h
        .client
        .signal(jobchain::WorkflowId::new(), "approved", json!({}))
        .await
        .expect_err("unknown workflow");
    assert!(err.to_string().contains("not found"), "{err}");
    worker.shutdown().await;
}

/// Ten signals of one name race to a waiting step: exactly one is accepted, and the
/// step's output is its payload.
pub async fn racing_signals_have_one_winner(h: &Harness) {
    let (worker, started, wait) = order_waiting(h).await;
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..10 {
        let client = h.client.clone();
        let id = started.id;
        sends.spawn(async move { (i, client.signal(id, "shipped", json!({"n": i})).await) });
    }
    let mut winners: Vec<(i32, jobchain::SignalReceipt)> = Vec::new();
    while let Some(sent) = sends.join_next().await {
        let (i, receipt) = sent.expect("task");
        let receipt = receipt.expect("signal");
        if receipt.accepted {
            winners.push((i, receipt));
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(winners[0].1.completed, vec![wait]);
    settled(h, started.id).await;
    let jobs = jobs_by_step(h, started.id).await;
    assert_eq!(jobs["shipped"].output, Some(json!({"n": winners[0].0})));
    assert_eq!(jobs["shipped"].attempts, 1, "completed once");
    worker.shutdown().await;
}

/// Signals sent while their steps' first runs may hold them (the run finds no signal
/// yet and snoozes, while the signal commits): none is lost, every workflow completes.
pub async fn signals_racing_the_steps_first_run_are_not_lost(h: &Harness) {
    let worker = shipping_worker(h);
    let mut ids = Vec::new();
    for _ in 0..30 {
        let started = h
            .client
            .start_workflow(order_waiting_for_shipment(Duration::from_secs(3600)))
            .await
            .expect("start");
        ids.push(started.id);
    }
    for (i, id) in ids.iter().enumerate() {
        let receipt = h
            .client
            .signal(*id, "shipped", json!({"n": i}))
            .await
            .expect("signal");
        assert!(receipt.accepted);
    }
    for (i, id) in ids.iter().enumerate() {
        let info = settled(h, *id).await;
        assert_eq!(info.state, WorkflowState::Completed);
        let jobs = jobs_by_step(h, *id).await;
        assert_eq!(jobs["shipped"].output, Some(json!({"n": i})));
    }
    worker.shutdown().await;
}

/// A signal that does not come within the timeout ends its step dead: required
/// dependents are cancelled, optional ones run, the workflow fails.
pub async fn an_unanswered_signal_times_out_dead(h: &Harness) {
    let worker = ok_fail_worker(h);
    let wf = Workflow::new("timeout")
        .step(Step::wait_for_signal(
            "confirmed",
            Duration::from_millis(300),
        ))
        .step(Step::untyped("needs", job("ok", &json!(1))).after("confirmed"))
        .step(Step::untyped("anyway", job("ok", &json!(2))).after_optional("confirmed"));
    let started = h.client.start_workflow(wf).await.expect("start");
    let info = settled(h, started.id).await;
    assert_eq!(info.state, WorkflowState::Failed);
    let jobs = jobs_by_step(h, started.id).await;
    assert_eq!(jobs["confirmed"].state, JobState::Dead);
    assert!(
        jobs["confirmed"].errors[0]
            .message
            .contains("no signal `confirmed`"),
        "{:?}",
        jobs["confirmed"].errors
    );
    assert_eq!(jobs["needs"].state, JobState::Cancelled);
    assert_eq!(jobs["anyway"].state, JobState::Completed);
    let waited = jobs["confirmed"].finished_at.expect("finished") - jobs["confirmed"].created_at;
    assert!(waited >= chrono::Duration::milliseconds(300), "{waited}");
    // Retried from the dead-letter queue, the step waits anew (its timeout starts over),
    // and a signal now completes it and revives its required dependent.
    let confirmed = jobs["confirmed"].id;
    h.client.retry(confirmed).await.expect("retry");
    // It ran again and waits: pending, due later (without a timeout that starts over it
    // would end dead at once).
    eventually("the retried step to wait again", || async {
        let job = h.client.job(confirmed).await.expect("job");
        assert_ne!(
            job.state,
            JobState::Dead,
            "the retried step did not wait anew"
        );
        (job.state == JobState::Pending && job.run_at > chrono::Utc::now()).then_some(())
    })
    .await;
    let now = h
        .client
        .signal(started.id, "confirmed", json!({"late": true}))
        .await
        .expect("signal after the retry");
    assert!(now.accepted, "{now:?}");
    assert_eq!(now.completed, vec![jobs["confirmed"].id]);
    let info = settled(h, started.id).await;
    assert_eq!(info.state, WorkflowState::Completed);
    let jobs = jobs_by_step(h, started.id).await;
    assert_eq!(jobs["needs"].state, JobState::Completed);
    worker.shutdown().await;
}

/// A durable timer: a sleep step reached under one worker completes on time under the
/// next one (its due instant was kept in the store), and the step after it runs.
pub async fn a_timer_survives_a_worker_restart(h: &Harness) {
    let first = ok_fail_worker(h);
    let wf = Workflow::new("timer")
        .step(Step::untyped("before", job("ok", &json!(1))))
        .step(Step::sleep("cool_off", Duration::from_millis(1500)).after("before"))
        .step(Step::untyped("after", job("ok", &json!(2))).after("cool_off"));
    let started = h.client.start_workflow(wf).await.expect("start");
    let sleep = started.jobs[1];
    let reached = reached(h, sleep).await;
    first.shutdown().await;
    let reached_at = reached.started_at.expect("reached");
    // The due instant is in the store, fixed when the step was reached: asking again
    // (with another proposal) returns it.
    let due = h
        .client
        .store()
        .timer(sleep, chrono::Utc::now() + chrono::Duration::hours(1))
        .await
        .expect("timer");
    assert!(
        due - reached_at >= chrono::Duration::milliseconds(1500)
            && due - reached_at < chrono::Duration::milliseconds(1500 + 2000),
        "the kept due instant is {} after the step was reached",
        due - reached_at
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = ok_fail_worker(h);
    let info = settled(h, started.id).await;
    assert_eq!(info.state, WorkflowState::Completed);
    let jobs = jobs_by_step(h, started.id).await;
    let done = jobs["cool_off"].finished_at.expect("finished");
    assert!(
        done - reached_at >= chrono::Duration::milliseconds(1450),
        "the timer fired early: {}",
        done - reached_at
    );
    assert!(
        done - reached_at < chrono::Duration::milliseconds(1500 + 10_000),
        "the timer fired late: {}",
        done - reached_at
    );
    assert_eq!(jobs["cool_off"].attempts, 1, "snoozes spend no attempt");
    assert!(jobs["after"].started_at.expect("after ran") >= done);
    second.shutdown().await;
}

/// A workflow's result is its single sink step's output, or the named result step's;
/// `wait_for_result` waits and returns it; a failed workflow or one with several sinks
/// and no result step has none, and says why.
pub async fn the_result_is_read_through_wait(h: &Harness) {
    let worker = ok_fail_worker(h);
    let chain = Workflow::new("sum")
        .step(Step::untyped("a", job("ok", &json!({"partial": 1}))))
        .step(Step::untyped("b", job("ok", &json!({"total": 42}))).after("a"));
    let started = h.client.start_workflow(chain).await.expect("start");
    let result: Value = h
        .client
        .wait_for_result(started.id, Duration::from_secs(30))
        .await
        .expect("result");
    assert_eq!(result, json!({"total": 42}));

    let named = Workflow::new("named")
        .step(Step::untyped("a", job("ok", &json!({"partial": 1}))))
        .step(Step::untyped("b", job("ok", &json!(2))).after("a"))
        .step(Step::untyped("c", job("ok", &json!(3))).after("a"))
        .result("a");
    let started = h.client.start_workflow(named).await.expect("start");
    let result: Value = h
        .client
        .wait_for_result(started.id, Duration::from_secs(30))
        .await
        .expect("result");
    assert_eq!(result, json!({"partial": 1}));
    assert_eq!(
        h.client
            .workflow(started.id)
            .await
            .expect("info")
            .result_step
            .as_deref(),
        Some("a")
    );

    let forked = Workflow::new("forked")
        .step(Step::untyped("a", job("ok", &json!(1))))
        .step(Step::untyped("b", job("ok", &json!(2))).after("a"))
        .step(Step::untyped("c", job("ok", &json!(3))).after("a"));
    let started = h.client.start_workflow(forked).await.expect("start");
    let err = h
        .client
        .wait_for_result::<Value>(started.id, Duration::from_secs(30))
        .await
        .expect_err("two sinks");
    assert!(err.to_string().contains("no single last step"), "{err}");

    let failing = Workflow::new("failing")
        .step(Step::untyped("a", job("ok", &json!(1))))
        .step(Step::untyped("b", job("fail", &json!({}))).after("a"));
    let started = h.client.start_workflow(failing).await.expect("start");
    let err = h
        .client
        .wait_for_result::<Value>(started.id, Duration::from_secs(30))
        .await
        .expect_err("failed");
    assert!(err.to_string().contains("failed"), "{err}");

    let unknown = Workflow::new("unknown")
        .step(Step::untyped("a", job("ok", &json!(1))))
        .result("z");
    let err = h
        .client
        .start_workflow(unknown)
        .await
        .expect_err("unknown result");
    assert!(err.to_string().contains("result step `z`"), "{err}");
    worker.shutdown().await;
}

/// The calls of a client that make jobs due wake that process's idle workers at once, not
/// at their next poll or notification: a signal releases the step after the waiting one,
/// a resumed queue its jobs. Every poll here is a minute away; each check waits at most
/// half of that.
pub async fn calls_that_make_jobs_due_wake_this_process_at_once(h: &Harness) {
    let minute = Duration::from_secs(60);
    let worker = h
        .worker()
        .configure(|c| {
            c.poll_interval = minute;
            c.change_poll = minute;
        })
        .handler("ok", |_: JobContext, p: Value| async move { Ok(p) })
        .handler(
            "invoice",
            |_: JobContext, _: Value| async move { Ok(json!({})) },
        )
        .started();
    let started = h
        .client
        .start_workflow(order_waiting_for_shipment(minute * 10))
        .await
        .expect("start");
    reached(h, started.jobs[1]).await;
    // Let the producers go idle (a shorter pause only makes the check weaker).
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.client
        .signal(started.id, "shipped", json!({"tracking": "ZX-2"}))
        .await
        .expect("signal");
    let info = h
        .client
        .wait_for_workflow(started.id, minute / 2)
        .await
        .expect("the step after the signal runs without waiting for a poll");
    assert_eq!(info.state, WorkflowState::Completed);

    h.client.pause_queue("default").await.expect("pause");
    let id = h
        .client
        .enqueue(job("ok", &json!("after resume")))
        .await
        .expect("enqueue")
        .id;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        h.client.job(id).await.expect("job").state,
        JobState::Pending,
        "a paused queue starts nothing"
    );
    h.client.resume_queue("default").await.expect("resume");
    let done = h
        .client
        .wait_for_job(id, minute / 2)
        .await
        .expect("a resumed queue's job runs without waiting for a poll");
    assert_eq!(done.state, JobState::Completed);
    worker.shutdown().await;
}
