//! Conformance cases for flow control: pause and resume.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jobchain::{EnqueueOptions, JobContext, JobSpec, JobState, KindOptions};
use serde_json::{json, Value};

use crate::support::{in_state, Harness, StartWorker};

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
