//! The conformance cases. Each takes a fresh [`Harness`] and panics on a violation.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jobchain::core::store::{ClaimRequest, Lease, Outcome, SettleResult, Settlement};
use jobchain::core::NewJob;
use jobchain::{
    EnqueueOptions, JobContext, JobError, JobFilter, JobSpec, JobState, KindOptions, Priority,
    RetryPolicy, WorkflowState,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::support::{eventually, in_state, job, terminal, Harness};

/// The seed's order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Order {
    /// Order number.
    pub id: u64,
}

type Log = Arc<Mutex<Vec<String>>>;

fn log(log: &Log, entry: impl Into<String>) {
    log.lock().expect("log").push(entry.into());
}

fn quick_retry(max_attempts: u32) -> KindOptions {
    KindOptions::new().retry(RetryPolicy {
        max_attempts,
        base: Duration::from_millis(10),
        cap: Duration::from_millis(50),
        jitter: 0.0,
    })
}

/// How the confirmation step of the seed behaves.
#[derive(Clone, Copy, PartialEq)]
enum Email {
    Works,
    Fails,
    FailsButOptional,
}

/// The seed's order workflow, chained dynamically.
fn order_worker(h: &Harness, log_: &Log, email: Email) -> jobchain::WorkerHandle {
    let (l1, l2, l3, l4) = (log_.clone(), log_.clone(), log_.clone(), log_.clone());
    h.worker()
        .handler_with(
            "process_order",
            quick_retry(2),
            move |ctx: JobContext, order: Order| {
                let l = l1.clone();
                async move {
                    log(&l, "process_order");
                    ctx.enqueue(job("send_order_confirmation", &order))?;
                    Ok(())
                }
            },
        )
        .handler_with(
            "send_order_confirmation",
            quick_retry(2),
            move |ctx: JobContext, order: Order| {
                let l = l2.clone();
                async move {
                    log(&l, "send_order_confirmation");
                    let sent: Result<(), JobError> = match email {
                        Email::Works => Ok(()),
                        Email::Fails | Email::FailsButOptional => {
                            Err(JobError::retryable("smtp server unavailable"))
                        }
                    };
                    match sent {
                        Ok(()) => {}
                        // Conditional chaining: e-mail is nice-to-have.
                        Err(e) if email == Email::FailsButOptional => {
                            log(&l, format!("email skipped: {e}"));
                        }
                        Err(e) => return Err(e),
                    }
                    ctx.enqueue(job("generate_invoice", &order))?;
                    ctx.enqueue(job("sync_inventory", &order))?;
                    Ok(())
                }
            },
        )
        .handler("generate_invoice", move |_ctx: JobContext, _o: Order| {
            let l = l3.clone();
            async move {
                log(&l, "generate_invoice");
                Ok(json!({ "invoice": "INV-1" }))
            }
        })
        .handler("sync_inventory", move |_ctx: JobContext, _o: Order| {
            let l = l4.clone();
            async move {
                log(&l, "sync_inventory");
                Ok(())
            }
        })
        .build()
        .expect("worker")
        .start()
}

async fn finished_workflow(h: &Harness, id: jobchain::WorkflowId) -> jobchain::WorkflowInfo {
    eventually("the workflow to finish", || async {
        let info = h.client.workflow(id).await.expect("workflow");
        (info.state != WorkflowState::Running).then_some(info)
    })
    .await
}

/// Seed exercise 1: the whole chain runs, each step after the one that staged it.
pub async fn seed_full_chain_runs_in_order(h: &Harness) {
    let l = Log::default();
    let worker = order_worker(h, &l, Email::Works);
    let wf = h
        .client
        .start_workflow(job("process_order", &Order { id: 1 }))
        .await
        .expect("start")
        .id;
    let info = finished_workflow(h, wf).await;
    worker.shutdown().await;
    assert_eq!(info.state, WorkflowState::Completed);
    assert_eq!(info.counts.completed, 4);
    let entries = l.lock().expect("log").clone();
    assert_eq!(&entries[..2], ["process_order", "send_order_confirmation"]);
    let rest: HashSet<_> = entries[2..].iter().cloned().collect();
    assert_eq!(
        rest,
        HashSet::from(["generate_invoice".to_string(), "sync_inventory".to_string()])
    );
    let jobs = h.client.workflow_jobs(wf).await.expect("jobs");
    assert_eq!(jobs.len(), 4);
    assert_eq!(jobs[0].parent_id, None);
    assert_eq!(jobs[1].parent_id, Some(jobs[0].id));
    assert_eq!(jobs[2].parent_id, Some(jobs[1].id));
    assert_eq!(jobs[3].parent_id, Some(jobs[1].id));
    assert!(jobs.iter().all(|j| j.workflow_id == Some(wf)));
    let invoice = jobs
        .iter()
        .find(|j| j.kind == "generate_invoice")
        .expect("invoice");
    assert_eq!(invoice.output, Some(json!({ "invoice": "INV-1" })));
    let tree = h.client.render_workflow(wf).await.expect("tree");
    assert!(tree.contains("└─ send_order_confirmation"), "{tree}");
    assert!(tree.contains("├─ generate_invoice"), "{tree}");
}

/// Seed exercise 2: a failing confirmation leaves invoice and inventory never enqueued.
pub async fn seed_failing_confirmation_stops_the_chain(h: &Harness) {
    let l = Log::default();
    let worker = order_worker(h, &l, Email::Fails);
    let wf = h
        .client
        .start_workflow(job("process_order", &Order { id: 2 }))
        .await
        .expect("start")
        .id;
    let info = finished_workflow(h, wf).await;
    worker.shutdown().await;
    assert_eq!(info.state, WorkflowState::Failed);
    let jobs = h.client.workflow_jobs(wf).await.expect("jobs");
    let kinds: Vec<_> = jobs.iter().map(|j| j.kind.as_str()).collect();
    assert_eq!(kinds, ["process_order", "send_order_confirmation"]);
    assert_eq!(jobs[1].state, JobState::Dead);
    assert_eq!(jobs[1].attempts, 2);
    assert_eq!(jobs[1].errors.len(), 2);
    for kind in ["generate_invoice", "sync_inventory"] {
        let found = h
            .client
            .jobs(JobFilter {
                kind: Some(kind.into()),
                ..JobFilter::default()
            })
            .await
            .expect("list");
        assert!(found.is_empty(), "{kind} must never be enqueued");
    }
}

/// Seed exercise 3: with conditional chaining, invoice and inventory run anyway.
pub async fn seed_conditional_chaining_runs_the_rest(h: &Harness) {
    let l = Log::default();
    let worker = order_worker(h, &l, Email::FailsButOptional);
    let wf = h
        .client
        .start_workflow(job("process_order", &Order { id: 3 }))
        .await
        .expect("start")
        .id;
    let info = finished_workflow(h, wf).await;
    worker.shutdown().await;
    assert_eq!(info.state, WorkflowState::Completed);
    assert_eq!(info.counts.completed, 4);
    let entries = l.lock().expect("log").clone();
    assert!(entries.iter().any(|e| e.starts_with("email skipped")));
    assert!(entries.contains(&"generate_invoice".to_string()));
    assert!(entries.contains(&"sync_inventory".to_string()));
}

/// A step that fails three times retries after growing delays and then succeeds.
pub async fn failing_step_retries_with_growing_delays_then_succeeds(h: &Harness) {
    let starts = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let s = starts.clone();
    let base = Duration::from_millis(40);
    let worker = h
        .worker()
        .handler_with(
            "flaky",
            KindOptions::new().retry(RetryPolicy {
                max_attempts: 5,
                base,
                cap: Duration::from_secs(5),
                jitter: 0.0,
            }),
            move |ctx: JobContext, _: serde_json::Value| {
                let s = s.clone();
                async move {
                    s.lock().expect("starts").push(Instant::now());
                    if ctx.attempt() <= 3 {
                        Err(JobError::retryable(format!(
                            "attempt {} failed",
                            ctx.attempt()
                        )))
                    } else {
                        Ok(())
                    }
                }
            },
        )
        .build()
        .expect("worker")
        .start();
    let id = h
        .client
        .enqueue(job("flaky", &json!({})))
        .await
        .expect("enqueue")
        .id;
    let job = terminal(&h.client, id).await;
    worker.shutdown().await;
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(job.attempts, 4);
    assert_eq!(job.errors.len(), 3);
    for (i, e) in job.errors.iter().enumerate() {
        assert_eq!(e.attempt, i as u32 + 1);
        assert_eq!(e.message, format!("attempt {} failed", i + 1));
    }
    let starts = starts.lock().expect("starts").clone();
    assert_eq!(starts.len(), 4);
    // Each retry waits at least its back-off: base, 2 x base, 4 x base.
    for (i, pair) in starts.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= base * (1 << i),
            "retry {} came after {gap:?}, before its back-off of {:?}",
            i + 1,
            base * (1 << i)
        );
    }
}

/// A step that keeps failing ends dead with every attempt's error.
pub async fn failing_step_ends_dead_with_every_error(h: &Harness) {
    let worker = h
        .worker()
        .handler_with(
            "doomed",
            quick_retry(3),
            |ctx: JobContext, _: serde_json::Value| async move {
                Err::<(), _>(JobError::retryable(format!("failure {}", ctx.attempt())))
            },
        )
        .build()
        .expect("worker")
        .start();
    let id = h
        .client
        .enqueue(job("doomed", &json!({})))
        .await
        .expect("enqueue")
        .id;
    let job = terminal(&h.client, id).await;
    worker.shutdown().await;
    assert_eq!(job.state, JobState::Dead);
    assert_eq!(job.attempts, 3);
    let messages: Vec<_> = job.errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages, ["failure 1", "failure 2", "failure 3"]);
    assert!(job.finished_at.is_some());
    let dead = h.client.dead_jobs(10).await.expect("dlq");
    assert_eq!(dead.iter().map(|j| j.id).collect::<Vec<_>>(), [id]);
}

/// A permanent error goes dead after one attempt.
pub async fn permanent_error_is_dead_after_one_attempt(h: &Harness) {
    let worker = h
        .worker()
        .handler_with(
            "charge",
            quick_retry(5),
            |_: JobContext, _: serde_json::Value| async move {
                Err::<(), _>(JobError::permanent("card declined"))
            },
        )
        .build()
        .expect("worker")
        .start();
    let id = h
        .client
        .enqueue(job("charge", &json!({ "cents": 100 })))
        .await
        .expect("enqueue")
        .id;
    let job = terminal(&h.client, id).await;
    worker.shutdown().await;
    assert_eq!(job.state, JobState::Dead);
    assert_eq!(job.attempts, 1);
    assert_eq!(job.errors.len(), 1);
    assert_eq!(job.errors[0].message, "card declined");
}

/// A panic is recorded as a failed attempt with its message; the worker keeps running.
pub async fn panic_is_a_failed_attempt_and_the_worker_survives(h: &Harness) {
    let worker = h
        .worker()
        .concurrency(1)
        .handler_with(
            "fragile",
            quick_retry(1),
            |_: JobContext, p: serde_json::Value| async move {
                if p["explode"] == json!(true) {
                    panic!("kaboom at step {}", 3);
                }
                Ok(p)
            },
        )
        .build()
        .expect("worker")
        .start();
    let bad = h
        .client
        .enqueue(job("fragile", &json!({ "explode": true })))
        .await
        .expect("enqueue")
        .id;
    let bad = terminal(&h.client, bad).await;
    let good = h
        .client
        .enqueue(job("fragile", &json!({ "explode": false })))
        .await
        .expect("enqueue")
        .id;
    let good = terminal(&h.client, good).await;
    worker.shutdown().await;
    assert_eq!(bad.state, JobState::Dead);
    assert_eq!(bad.errors.len(), 1);
    assert!(
        bad.errors[0].message.contains("panicked")
            && bad.errors[0].message.contains("kaboom at step 3"),
        "{:?}",
        bad.errors
    );
    assert_eq!(good.state, JobState::Completed);
    assert_eq!(good.output, Some(json!({ "explode": false })));
}

/// An attempt that outlives its kind's timeout fails with a timeout error.
pub async fn timeout_is_a_failed_attempt(h: &Harness) {
    let worker = h
        .worker()
        .handler_with(
            "slow",
            quick_retry(1).timeout(Duration::from_millis(100)),
            |_: JobContext, _: serde_json::Value| async move {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            },
        )
        .build()
        .expect("worker")
        .start();
    let id = h
        .client
        .enqueue(job("slow", &json!({})))
        .await
        .expect("enqueue")
        .id;
    let job = terminal(&h.client, id).await;
    worker.shutdown().await;
    assert_eq!(job.state, JobState::Dead);
    assert!(
        job.errors[0].message.contains("timed out"),
        "{:?}",
        job.errors
    );
}

/// A dead job retried from the DLQ runs again, with a fresh budget of attempts.
pub async fn dead_job_retried_from_the_dlq_runs_again(h: &Harness) {
    let healed = Arc::new(AtomicBool::new(false));
    let flag = healed.clone();
    let worker = h
        .worker()
        .handler_with(
            "sync",
            quick_retry(2),
            move |_: JobContext, _: serde_json::Value| {
                let flag = flag.clone();
                async move {
                    if flag.load(Ordering::SeqCst) {
                        Ok(json!("synced"))
                    } else {
                        Err(JobError::retryable("upstream down"))
                    }
                }
            },
        )
        .build()
        .expect("worker")
        .start();
    let id = h
        .client
        .enqueue(job("sync", &json!({})))
        .await
        .expect("enqueue")
        .id;
    let dead = terminal(&h.client, id).await;
    assert_eq!(dead.state, JobState::Dead);
    assert_eq!(dead.attempts, 2);
    healed.store(true, Ordering::SeqCst);
    let revived = h.client.retry(id).await.expect("retry");
    assert_eq!(revived.state, JobState::Pending);
    assert_eq!(revived.max_attempts, 4);
    let done = terminal(&h.client, id).await;
    worker.shutdown().await;
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(done.attempts, 3);
    assert_eq!(done.errors.len(), 2);
    assert_eq!(done.output, Some(json!("synced")));
    assert!(h.client.dead_jobs(10).await.expect("dlq").is_empty());
    let again = h.client.retry(id).await;
    assert!(again.is_err(), "a completed job cannot be retried");
}

/// The follow-ups staged by a failed attempt are never written.
pub async fn failed_attempt_writes_no_follow_ups(h: &Harness) {
    let worker = h
        .worker()
        .handler_with(
            "payment",
            quick_retry(2),
            |ctx: JobContext, _: serde_json::Value| async move {
                ctx.enqueue(job("send_order_confirmation", &json!({})))?;
                Err::<(), _>(JobError::retryable("payment gateway timeout"))
            },
        )
        .build()
        .expect("worker")
        .start();
    let id = h
        .client
        .enqueue(job("payment", &json!({})))
        .await
        .expect("enqueue")
        .id;
    let job = terminal(&h.client, id).await;
    worker.shutdown().await;
    assert_eq!(job.state, JobState::Dead);
    let all = h.client.jobs(JobFilter::default()).await.expect("list");
    assert_eq!(all.len(), 1, "only the payment job exists: {all:?}");
}

/// A job that fails once and then succeeds has its follow-ups exactly once.
pub async fn follow_ups_exactly_once_after_a_retry(h: &Harness) {
    let worker = h
        .worker()
        .handler_with(
            "fan_out",
            quick_retry(3),
            |ctx: JobContext, _: serde_json::Value| async move {
                ctx.enqueue(job("child", &json!({ "n": 1 })))?;
                ctx.enqueue(job("child", &json!({ "n": 2 })))?;
                if ctx.attempt() == 1 {
                    return Err(JobError::retryable("first attempt fails after staging"));
                }
                Ok(())
            },
        )
        .build()
        .expect("worker")
        .start();
    let id = h
        .client
        .enqueue(job("fan_out", &json!({})))
        .await
        .expect("enqueue")
        .id;
    let job = terminal(&h.client, id).await;
    worker.shutdown().await;
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(job.attempts, 2);
    let children = h
        .client
        .jobs(JobFilter {
            kind: Some("child".into()),
            ..JobFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(children.len(), 2, "{children:?}");
    assert!(children.iter().all(|c| c.parent_id == Some(id)));
    let payloads: HashSet<_> = children.iter().map(|c| c.payload.to_string()).collect();
    assert_eq!(payloads.len(), 2);
}

/// Jobs run by priority (highest first), then run_at, then id.
pub async fn claims_by_priority_then_run_at_then_id(h: &Harness) {
    let past = |secs: i64| chrono::Utc::now() - chrono::Duration::seconds(secs);
    let specs = [
        ("low", Priority::LOW, past(10)),
        ("normal-late", Priority::NORMAL, past(1)),
        ("critical", Priority::CRITICAL, past(1)),
        ("normal-early", Priority::NORMAL, past(5)),
        ("raw-5", Priority(5), past(1)),
        ("high", Priority::HIGH, past(1)),
        ("normal-early-2", Priority::NORMAL, past(5)),
    ];
    for (name, priority, at) in specs {
        h.client
            .enqueue_with(
                job("ordered", &json!(name)),
                EnqueueOptions::new().priority(priority).run_at(at),
            )
            .await
            .expect("enqueue");
    }
    let seen = Log::default();
    let s = seen.clone();
    let worker = h
        .worker()
        .concurrency(1)
        .handler("ordered", move |_: JobContext, name: String| {
            let s = s.clone();
            async move {
                log(&s, name);
                Ok(())
            }
        })
        .build()
        .expect("worker")
        .start();
    eventually("all ordered jobs to run", || async {
        (seen.lock().expect("log").len() == specs.len()).then_some(())
    })
    .await;
    worker.shutdown().await;
    assert_eq!(
        *seen.lock().expect("log"),
        [
            "critical",
            "high",
            "raw-5",
            "normal-early",
            "normal-early-2",
            "normal-late",
            "low"
        ]
    );
}

/// A delayed job never starts before its run_at; an idle worker starts it when due.
pub async fn delayed_job_never_runs_before_run_at(h: &Harness) {
    let started = Arc::new(Mutex::new(None));
    let s = started.clone();
    let worker = h
        .worker()
        .handler("later", move |_: JobContext, _: serde_json::Value| {
            let s = s.clone();
            async move {
                *s.lock().expect("started") = Some(chrono::Utc::now());
                Ok(())
            }
        })
        .build()
        .expect("worker")
        .start();
    let id = h
        .client
        .enqueue_with(
            job("later", &json!({})),
            EnqueueOptions::new().delay(Duration::from_millis(300)),
        )
        .await
        .expect("enqueue")
        .id;
    let pending = h.client.job(id).await.expect("job");
    assert_eq!(pending.state, JobState::Pending);
    assert!(pending.run_at >= pending.created_at + chrono::Duration::milliseconds(300));
    let job = terminal(&h.client, id).await;
    worker.shutdown().await;
    let ran = started.lock().expect("started").expect("handler ran");
    assert_eq!(job.state, JobState::Completed);
    assert!(
        ran >= job.run_at,
        "started at {ran}, before run_at {}",
        job.run_at
    );
    assert!(job.started_at.expect("started_at") >= job.run_at);
}

/// Enqueueing a unique key that a live job holds returns that job and writes nothing.
pub async fn unique_key_returns_the_live_job(h: &Harness) {
    let opts = || EnqueueOptions::new().unique_key("invoice-42");
    let first = h
        .client
        .enqueue_with(job("invoice", &json!({ "n": 1 })), opts())
        .await
        .expect("first")
        .id;
    let second = h
        .client
        .enqueue_with(job("invoice", &json!({ "n": 2 })), opts())
        .await
        .expect("second")
        .id;
    assert_eq!(first, second);
    let batch = h
        .client
        .enqueue_many(vec![job("invoice", &json!({ "n": 3 })).options(opts())])
        .await
        .expect("batch");
    assert_eq!(batch[0].id, first);
    assert!(batch[0].duplicate);
    let all = h.client.jobs(JobFilter::default()).await.expect("list");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].payload, json!({ "n": 1 }));
    let worker = h
        .worker()
        .handler(
            "invoice",
            |_: JobContext, _: serde_json::Value| async move { Ok(()) },
        )
        .build()
        .expect("worker")
        .start();
    terminal(&h.client, first).await;
    worker.shutdown().await;
    let third = h
        .client
        .enqueue_with(job("invoice", &json!({ "n": 4 })), opts())
        .await
        .expect("third")
        .id;
    assert_ne!(third, first, "a finished job does not hold its key");
}

/// A batch enqueue writes every job and returns their ids in order.
pub async fn enqueue_many_is_one_batch(h: &Harness) {
    let specs: Vec<JobSpec> = (0..250).map(|i| job("bulk", &json!({ "i": i }))).collect();
    let enqueued = h.client.enqueue_many(specs).await.expect("enqueue_many");
    assert_eq!(enqueued.len(), 250);
    let ids: HashSet<_> = enqueued.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 250);
    let last = h.client.job(enqueued[249].id).await.expect("job");
    assert_eq!(last.payload, json!({ "i": 249 }));
    assert_eq!(last.state, JobState::Pending);
    let bad = h
        .client
        .enqueue(job("", &json!({})))
        .await
        .expect_err("empty kind");
    assert!(bad.to_string().contains("kind"), "{bad}");
}

fn claim_request(worker: &str, kind: &str, lease: Duration) -> ClaimRequest {
    ClaimRequest {
        queue: "default".into(),
        kinds: vec![kind.into()],
        limit: 10,
        worker: worker.into(),
        lease,
    }
}

/// After a lease expires and another worker claims the job, the first worker's late
/// completion is rejected and writes nothing, not even its follow-ups.
pub async fn late_completion_after_lease_takeover_is_rejected(h: &Harness) {
    let store = h.client.store();
    let id = h
        .client
        .enqueue(job("fenced", &json!({})))
        .await
        .expect("enqueue")
        .id;
    let a = store
        .claim(claim_request("worker-a", "fenced", Duration::ZERO))
        .await
        .expect("claim a");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].attempt, 1);
    // The rescuer finds the expired lease and makes the job available again.
    let expired = eventually("the lease to expire", || async {
        let e = store.expired(10).await.expect("expired");
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(expired[0].lease, Lease { id, attempt: 1 });
    let rescued = store
        .settle(vec![Settlement {
            lease: expired[0].lease,
            outcome: Outcome::Retry {
                error: "lease expired".into(),
                delay: Duration::ZERO,
            },
            only_if_expired: true,
            workflow_id: None,
        }])
        .await
        .expect("rescue");
    assert!(matches!(rescued[0], SettleResult::Applied { .. }));
    let b = store
        .claim(claim_request("worker-b", "fenced", Duration::from_secs(60)))
        .await
        .expect("claim b");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].attempt, 2);
    // Worker A wakes up and tries to complete with follow-ups, fail, and release.
    let follow_up = NewJob::new("leaked", json!({}), EnqueueOptions::new());
    for outcome in [
        Outcome::Completed {
            output: Some(json!("stale")),
            follow_ups: vec![follow_up],
        },
        Outcome::Dead {
            error: "stale".into(),
        },
        Outcome::Released,
    ] {
        let late = store
            .settle(vec![Settlement {
                lease: Lease { id, attempt: 1 },
                outcome,
                only_if_expired: false,
                workflow_id: None,
            }])
            .await
            .expect("late settle");
        assert_eq!(late, [SettleResult::Stale]);
    }
    let lost = store
        .heartbeat(vec![Lease { id, attempt: 1 }], Duration::from_secs(60))
        .await
        .expect("heartbeat");
    assert_eq!(lost, [id]);
    let job = h.client.job(id).await.expect("job");
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.attempts, 2);
    assert_eq!(job.worker.as_deref(), Some("worker-b"));
    assert_eq!(job.output, None);
    let all = h.client.jobs(JobFilter::default()).await.expect("list");
    assert_eq!(all.len(), 1, "no follow-up leaked: {all:?}");
    // Worker B's completion is the one that counts.
    let done = store
        .settle(vec![Settlement {
            lease: Lease { id, attempt: 2 },
            outcome: Outcome::Completed {
                output: Some(json!("fresh")),
                follow_ups: Vec::new(),
            },
            only_if_expired: false,
            workflow_id: None,
        }])
        .await
        .expect("settle b");
    assert!(matches!(done[0], SettleResult::Applied { .. }));
    let job = h.client.job(id).await.expect("job");
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(job.output, Some(json!("fresh")));
}

/// A settlement's workflow id is only a hint: a completion that wrongly says its job is
/// outside any workflow still finishes the workflow, and a stale one in the same batch
/// is still rejected.
pub async fn wrong_workflow_hint_still_finishes_the_workflow(h: &Harness) {
    let store = h.client.store();
    let wf = h
        .client
        .start_workflow(job("hinted", &json!({})))
        .await
        .expect("start")
        .id;
    let plain = h
        .client
        .enqueue(job("hinted", &json!({})))
        .await
        .expect("enqueue")
        .id;
    let claimed = store
        .claim(claim_request("w", "hinted", Duration::from_secs(60)))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2);
    let job = claimed
        .iter()
        .find(|c| c.workflow_id == Some(wf))
        .expect("the workflow's job");
    let completed = |lease: Lease| Settlement {
        lease,
        outcome: Outcome::Completed {
            output: Some(json!("done")),
            follow_ups: Vec::new(),
        },
        only_if_expired: false,
        workflow_id: None,
    };
    let results = store
        .settle(vec![
            completed(job.lease()),
            completed(Lease {
                id: plain,
                attempt: 7,
            }),
            completed(Lease {
                id: plain,
                attempt: 1,
            }),
        ])
        .await
        .expect("settle");
    assert!(matches!(results[0], SettleResult::Applied { .. }));
    assert_eq!(results[1], SettleResult::Stale);
    assert!(matches!(results[2], SettleResult::Applied { .. }));
    let info = h.client.workflow(wf).await.expect("workflow");
    assert_eq!(info.state, WorkflowState::Completed);
    assert_eq!(info.counts.completed, 1);
    assert_eq!(
        h.client.job(plain).await.expect("job").state,
        JobState::Completed
    );
}

/// A heartbeat extends a held lease (so the rescuer leaves it alone) and reports leases
/// that are no longer held.
pub async fn heartbeat_keeps_a_lease_and_reports_lost_ones(h: &Harness) {
    let store = h.client.store();
    let id = h
        .client
        .enqueue(job("beating", &json!({})))
        .await
        .expect("enqueue")
        .id;
    let claimed = store
        .claim(claim_request("w", "beating", Duration::ZERO))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    let lost = store
        .heartbeat(vec![Lease { id, attempt: 1 }], Duration::from_secs(600))
        .await
        .expect("heartbeat");
    assert!(lost.is_empty());
    assert!(store.expired(10).await.expect("expired").is_empty());
    let rescue = store
        .settle(vec![Settlement {
            lease: Lease { id, attempt: 1 },
            outcome: Outcome::Dead {
                error: "rescued".into(),
            },
            only_if_expired: true,
            workflow_id: None,
        }])
        .await
        .expect("settle");
    assert_eq!(
        rescue,
        [SettleResult::Stale],
        "a live lease is never rescued"
    );
    let lost = store
        .heartbeat(vec![Lease { id, attempt: 7 }], Duration::from_secs(600))
        .await
        .expect("heartbeat");
    assert_eq!(lost, [id]);
}

/// The rescuer counts an expired lease as a failed attempt and the job runs again.
pub async fn rescuer_retries_expired_leases(h: &Harness) {
    let id = h
        .client
        .enqueue(job("orphan", &json!({})))
        .await
        .expect("enqueue")
        .id;
    // A worker that claimed the job and vanished.
    let ghost = h
        .client
        .store()
        .claim(claim_request("ghost", "orphan", Duration::ZERO))
        .await
        .expect("claim");
    assert_eq!(ghost.len(), 1);
    let worker = h
        .worker()
        .handler_with(
            "orphan",
            quick_retry(3),
            |_: JobContext, _: serde_json::Value| async move { Ok(()) },
        )
        .build()
        .expect("worker")
        .start();
    let job = terminal(&h.client, id).await;
    worker.shutdown().await;
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(job.attempts, 2);
    assert_eq!(job.errors.len(), 1);
    assert!(
        job.errors[0].message.contains("lease expired"),
        "{:?}",
        job.errors
    );
}

/// Shutdown past its deadline interrupts running jobs and releases them at once, without
/// spending an attempt; the next worker takes them immediately.
pub async fn graceful_shutdown_releases_running_jobs(h: &Harness) {
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let first = h
        .worker()
        .concurrency(2)
        .handler("long", move |_: JobContext, _: serde_json::Value| {
            let s = s.clone();
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            }
        })
        .build()
        .expect("worker")
        .start();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            h.client
                .enqueue(job("long", &json!({ "i": i })))
                .await
                .expect("enqueue")
                .id,
        );
    }
    eventually("two jobs to start", || async {
        (started.load(Ordering::SeqCst) == 2).then_some(())
    })
    .await;
    let report = first.shutdown_within(Duration::from_millis(100)).await;
    assert_eq!(report.released, 2);
    for id in &ids {
        let job = h.client.job(*id).await.expect("job");
        assert_eq!(
            job.state,
            JobState::Pending,
            "job {id} is available at once"
        );
        assert!(job.run_at <= chrono::Utc::now());
        assert_eq!(job.lease_until, None);
        assert_eq!(job.max_attempts - job.attempts, 5, "no attempt was spent");
    }
    assert_eq!(
        first.shutdown().await.released,
        2,
        "a second shutdown is harmless and returns the same report"
    );
    let second = h
        .worker()
        .handler("long", |_: JobContext, _: serde_json::Value| async move {
            Ok(())
        })
        .build()
        .expect("worker")
        .start();
    for id in &ids {
        assert_eq!(terminal(&h.client, *id).await.state, JobState::Completed);
    }
    second.shutdown().await;
}

/// A payload that does not decode is a permanent error naming the kind and the field.
pub async fn malformed_payload_is_a_permanent_error(h: &Harness) {
    #[derive(Deserialize)]
    #[allow(dead_code, reason = "decoded to check the payload's shape")]
    struct Charge {
        amount_cents: u64,
        card: Card,
    }
    #[derive(Deserialize)]
    #[allow(dead_code, reason = "decoded to check the payload's shape")]
    struct Card {
        expiry: Expiry,
    }
    #[derive(Deserialize)]
    #[allow(dead_code, reason = "decoded to check the payload's shape")]
    struct Expiry {
        month: u8,
    }
    let worker = h
        .worker()
        .handler_with(
            "charge_card",
            quick_retry(5),
            |_: JobContext, _: Charge| async move { Ok(()) },
        )
        .build()
        .expect("worker")
        .start();
    let id = h
        .client
        .enqueue(job("charge_card", &json!({ "amount": "ten" })))
        .await
        .expect("enqueue")
        .id;
    let nested = h
        .client
        .enqueue(job(
            "charge_card",
            &json!({ "amount_cents": 10, "card": { "expiry": { "month": "May" } } }),
        ))
        .await
        .expect("enqueue")
        .id;
    let job = terminal(&h.client, id).await;
    let nested = terminal(&h.client, nested).await;
    worker.shutdown().await;
    assert_eq!(job.state, JobState::Dead);
    assert_eq!(job.attempts, 1);
    let message = &job.errors[0].message;
    assert!(message.contains("charge_card"), "{message}");
    assert!(message.contains("amount_cents"), "{message}");
    assert_eq!(nested.attempts, 1);
    let message = &nested.errors[0].message;
    assert!(message.contains("at `card.expiry.month`"), "{message}");
}

/// A worker never claims a kind it has no handler for.
pub async fn unknown_kind_is_not_claimed(h: &Harness) {
    let stranger = h
        .client
        .enqueue(job("handled_elsewhere", &json!({})))
        .await
        .expect("enqueue")
        .id;
    let mine = h
        .client
        .enqueue(job("mine", &json!({})))
        .await
        .expect("enqueue")
        .id;
    let worker = h
        .worker()
        .handler("mine", |_: JobContext, _: serde_json::Value| async move {
            Ok(())
        })
        .build()
        .expect("worker")
        .start();
    terminal(&h.client, mine).await;
    worker.shutdown().await;
    let job = h.client.job(stranger).await.expect("job");
    assert_eq!(job.state, JobState::Pending);
    assert_eq!(job.attempts, 0);
}

/// Cancelling a running job tells its handler and its completion is discarded.
pub async fn cancel_running_job_signals_the_handler(h: &Harness) {
    let observed = Arc::new(AtomicBool::new(false));
    let o = observed.clone();
    let worker = h
        .worker()
        .configure(|c| c.heartbeat = Some(Duration::from_millis(30)))
        .handler(
            "cancellable",
            move |ctx: JobContext, _: serde_json::Value| {
                let o = o.clone();
                async move {
                    tokio::select! {
                        _ = ctx.cancelled() => o.store(true, Ordering::SeqCst),
                        _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                    }
                    Ok(())
                }
            },
        )
        .build()
        .expect("worker")
        .start();
    let id = h
        .client
        .enqueue(job("cancellable", &json!({})))
        .await
        .expect("enqueue")
        .id;
    in_state(&h.client, id, JobState::Running).await;
    let cancelled = h.client.cancel(id).await.expect("cancel");
    assert_eq!(cancelled.state, JobState::Cancelled);
    eventually("the handler to see the cancellation", || async {
        observed.load(Ordering::SeqCst).then_some(())
    })
    .await;
    worker.shutdown().await;
    let job = h.client.job(id).await.expect("job");
    assert_eq!(job.state, JobState::Cancelled);
    assert!(
        h.client.cancel(id).await.is_err(),
        "a cancelled job cannot be cancelled again"
    );
}

/// Each queue has its own slots; a worker subscribes to its handlers' queues.
pub async fn queues_and_per_queue_concurrency(h: &Harness) {
    let current = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let (c, p) = (current.clone(), peak.clone());
    let worker = h
        .worker()
        .queue("mail", 1)
        .handler_with(
            "mail",
            KindOptions::new().queue("mail"),
            move |_: JobContext, _: serde_json::Value| {
                let (c, p) = (c.clone(), p.clone());
                async move {
                    let now = c.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    c.fetch_sub(1, Ordering::SeqCst);
                    Ok(())
                }
            },
        )
        .build()
        .expect("worker")
        .start();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            h.client
                .enqueue(job("mail", &json!({ "i": i })))
                .await
                .expect("enqueue")
                .id,
        );
    }
    for id in &ids {
        let job = terminal(&h.client, *id).await;
        assert_eq!(
            job.queue, "mail",
            "the kind's queue is the default for its jobs"
        );
        assert_eq!(job.state, JobState::Completed);
    }
    worker.shutdown().await;
    assert_eq!(peak.load(Ordering::SeqCst), 1);
}
