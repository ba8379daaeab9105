//! Conformance cases for flow control: pause and resume, snooze, debounce.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jobchain::{EnqueueOptions, JobContext, JobError, JobSpec, JobState, KindOptions};
use serde_json::{json, Value};

use crate::support::{eventually, in_state, Harness, StartWorker};

/// A paused queue's jobs are not started by any worker, its running job finishes, other
/// queues run on; the pause is in the store (a second client sees it); resuming starts
/// them. Names that cannot be stored are refused.
pub async fn pausing_a_queue_stops_starts_until_resumed(h: &Harness) {
    let open = Arc::new(AtomicBool::new(false));
    let gate = open.clone();
    let worker = h
        .worker()
        .queue("slow", 4)
        .handler_with(
            "gated",
            KindOptions::new().queue("slow"),
            move |_: JobContext, _: Value| {
                let gate = gate.clone();
                async move {
                    while !gate.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Ok(())
                }
            },
        )
        .handler_with(
            "later",
            KindOptions::new().queue("slow"),
            |_: JobContext, _: Value| async move { Ok(()) },
        )
        .handler("now", |_: JobContext, _: Value| async move { Ok(()) })
        .started();
    let running = h
        .client
        .enqueue(JobSpec::new("gated", json!({})).options(EnqueueOptions::new().queue("slow")))
        .await
        .expect("enqueue")
        .id;
    in_state(&h.client, running, JobState::Running).await;
    let info = h.client.pause_queue("slow").await.expect("pause");
    assert!(info.paused);
    assert_eq!(info.name, "slow");
    let mut waiting = Vec::new();
    for i in 0..3 {
        let job = JobSpec::new("later", json!(i)).options(EnqueueOptions::new().queue("slow"));
        waiting.push(h.client.enqueue(job).await.expect("enqueue").id);
    }
    let elsewhere = h
        .client
        .enqueue(JobSpec::new("now", json!({})))
        .await
        .expect("enqueue")
        .id;
    in_state(&h.client, elsewhere, JobState::Completed).await;
    open.store(true, Ordering::SeqCst);
    in_state(&h.client, running, JobState::Completed).await;
    // Several poll intervals and wake-ups later, nothing of the paused queue started.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in &waiting {
        let job = h.client.job(*id).await.expect("job");
        assert_eq!(job.state, JobState::Pending, "started while paused");
        assert_eq!(job.attempts, 0);
    }
    let stats = h.client.queue_stats().await.expect("stats");
    let slow = stats.iter().find(|q| q.queue == "slow").expect("slow");
    assert!(slow.paused);
    assert!(
        !stats
            .iter()
            .find(|q| q.queue == "default")
            .expect("default")
            .paused
    );
    let records = h.client.store().queue_records().await.expect("records");
    assert_eq!(records.len(), 1);
    assert!(records[0].paused);

    let info = h.client.resume_queue("slow").await.expect("resume");
    assert!(!info.paused);
    for id in &waiting {
        in_state(&h.client, *id, JobState::Completed).await;
    }
    worker.shutdown().await;
    let stats = h.client.queue_stats().await.expect("stats");
    assert!(stats.iter().all(|q| !q.paused));
    // Pausing a queue without jobs lists it.
    h.client.pause_queue("empty").await.expect("pause");
    let stats = h.client.queue_stats().await.expect("stats");
    let empty = stats.iter().find(|q| q.queue == "empty").expect("listed");
    assert!(empty.paused && empty.counts.total() == 0);
    for bad in ["", "a\0b"] {
        let err = h.client.pause_queue(bad).await.expect_err("refused");
        assert!(err.to_string().contains("queue"), "{err}");
    }
}

/// A snoozing handler puts its job back for later without spending an attempt: a job
/// allowed one attempt snoozes three times and still completes, with `attempts` back where
/// it was after each snooze and no error recorded.
pub async fn snooze_leaves_attempts_unchanged(h: &Harness) {
    let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (r, s) = (runs.clone(), seen.clone());
    let worker = h
        .worker()
        .handler_with(
            "busy",
            KindOptions::new().max_attempts(1),
            move |ctx: JobContext, _: Value| {
                let (r, s) = (r.clone(), s.clone());
                async move {
                    s.lock().expect("lock").push(ctx.attempt());
                    if r.fetch_add(1, Ordering::SeqCst) < 3 {
                        return Err(JobError::snooze(Duration::from_millis(30)));
                    }
                    Ok(json!("done"))
                }
            },
        )
        .started();
    let id = h
        .client
        .enqueue(JobSpec::new("busy", json!({})))
        .await
        .expect("enqueue")
        .id;
    let job = in_state(&h.client, id, JobState::Completed).await;
    worker.shutdown().await;
    assert_eq!(runs.load(Ordering::SeqCst), 4);
    assert_eq!(
        *seen.lock().expect("lock"),
        vec![1, 1, 1, 1],
        "every run is attempt 1"
    );
    assert_eq!(job.attempts, 1);
    assert!(job.errors.is_empty(), "{:?}", job.errors);
    assert_eq!(job.output, Some(json!("done")));

    // Between runs the job waits pending with its attempt given back.
    let worker = h
        .worker()
        .handler("later", |_: JobContext, _: Value| async move {
            Err::<(), _>(JobError::snooze(Duration::from_secs(3600)))
        })
        .started();
    let id = h
        .client
        .enqueue(JobSpec::new("later", json!({})))
        .await
        .expect("enqueue")
        .id;
    let job = eventually("the snooze", || async {
        let job = h.client.job(id).await.expect("job");
        (job.state == JobState::Pending && job.started_at.is_some()).then_some(job)
    })
    .await;
    worker.shutdown().await;
    assert_eq!(job.attempts, 0);
    assert!(job.run_at > chrono::Utc::now() + chrono::Duration::minutes(59));
    assert!(job.errors.is_empty());
}

/// Debounce: 100 enqueues of one key collapse into one job that runs once, with the last
/// payload, after the quiet time; once it started (or was cancelled) the key is free for
/// the next job. Debounce is refused on workflow steps and together with a unique key.
pub async fn debounce_collapses_enqueues_into_one_run(h: &Harness) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let worker = h
        .worker()
        .handler("summarize", move |_: JobContext, p: Value| {
            let s = s.clone();
            async move {
                s.lock().expect("lock").push(p);
                Ok(())
            }
        })
        .started();
    let debounced = |i: u32| {
        JobSpec::new("summarize", json!({"n": i}))
            .options(EnqueueOptions::new().debounce("report-7", Duration::from_secs(2)))
    };
    let mut ids = Vec::new();
    for i in 0..100 {
        let e = h.client.enqueue(debounced(i)).await.expect("enqueue");
        assert_eq!(e.duplicate, i > 0, "enqueue {i}");
        ids.push(e.id);
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "one job");
    let pending = h.client.job(ids[0]).await.expect("job");
    assert_eq!(pending.payload, json!({"n": 99}));
    assert!(pending.run_at > chrono::Utc::now() + chrono::Duration::milliseconds(500));
    in_state(&h.client, ids[0], JobState::Completed).await;
    assert_eq!(*seen.lock().expect("lock"), vec![json!({"n": 99})]);
    // The key is free again: a new enqueue is a new job.
    let next = h.client.enqueue(debounced(100)).await.expect("enqueue");
    assert!(!next.duplicate);
    assert_ne!(next.id, ids[0]);
    h.client.cancel(next.id).await.expect("cancel");
    let after_cancel = h.client.enqueue(debounced(101)).await.expect("enqueue");
    assert!(
        !after_cancel.duplicate,
        "a cancelled job does not hold the key"
    );
    h.client.cancel(after_cancel.id).await.expect("cancel");
    worker.shutdown().await;
    assert_eq!(seen.lock().expect("lock").len(), 1);

    let both = JobSpec::new("summarize", json!({})).options(
        EnqueueOptions::new()
            .debounce("k", Duration::from_secs(1))
            .unique_key("u"),
    );
    let err = h.client.enqueue(both).await.expect_err("refused");
    assert!(err.to_string().contains("debounced or unique"), "{err}");
    let step = jobchain::Workflow::new("w").step(jobchain::Step::untyped(
        "s",
        JobSpec::new("summarize", json!({}))
            .options(EnqueueOptions::new().debounce("k", Duration::from_secs(1))),
    ));
    let err = h.client.start_workflow(step).await.expect_err("refused");
    assert!(err.to_string().contains("debounce"), "{err}");
}
