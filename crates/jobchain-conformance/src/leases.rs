//! Leases through the runtime: rescue, graceful shutdown and cancelling a running job.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jobchain::{JobContext, JobState};
use serde_json::json;

use crate::support::{
    claim_request, eventually, in_state, job, quick_retry, terminal, Harness, StartWorker,
};

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
        .started();
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
        .started();
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
        .started();
    for id in &ids {
        assert_eq!(terminal(&h.client, *id).await.state, JobState::Completed);
    }
    second.shutdown().await;
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
        .started();
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
