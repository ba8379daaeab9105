//! Failed attempts: back-off, the dead-letter queue, panics, timeouts, and follow-ups
//! that are written exactly once.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jobchain::{JobContext, JobError, JobFilter, JobState, KindOptions, RetryPolicy};
use serde_json::json;

use crate::support::{job, quick_retry, terminal, Harness, StartWorker};

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
        .started();
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
        .started();
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
        .started();
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
        .started();
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
        .started();
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
        .started();
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
        .started();
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
        .started();
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
