//! Crash safety on SQLite: a real child process running a worker is killed with SIGKILL
//! inside a handler; a new worker on the same file rescues the job after its lease, runs
//! it, and its follow-ups exist exactly once. No enqueued job is lost.

use std::process::{Command, Stdio};

use jobchain::{EnqueueOptions, JobFilter, JobId, JobSpec, JobState};
use jobchain_conformance::processes::{self, Crashy};
use jobchain_conformance::support::{eventually, fast_config, job};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_loses_nothing_and_follow_ups_exist_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("jobs.db");
    let location = db.to_str().expect("utf-8").to_string();
    let marker = dir.path().join("inside-handler");
    let client = jobchain::open(&location).await.expect("open");

    let crashy = client
        .enqueue_with(
            job(
                "crashy",
                &Crashy {
                    marker: marker.to_str().expect("utf-8").to_string(),
                },
            ),
            EnqueueOptions::new().priority(jobchain::Priority::CRITICAL),
        )
        .await
        .expect("enqueue crashy")
        .id;
    let plain: Vec<JobSpec> = (0..400)
        .map(|i| JobSpec::new("plain", json!({ "i": i })))
        .collect();
    client.enqueue_many(plain).await.expect("enqueue plain");

    let mut child = Command::new(env!("CARGO_BIN_EXE_jobchain-test-worker"))
        .arg(&location)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn worker process");
    eventually("the child to enter the crashy handler", || async {
        marker.exists().then_some(())
    })
    .await;
    let running = client.job(crashy).await.expect("job");
    assert_eq!(running.state, JobState::Running);
    assert_eq!(running.attempts, 1);
    child.kill().expect("SIGKILL the worker");
    child.wait().expect("reap the worker");

    let worker = processes::register(jobchain::Worker::builder(&client).config(fast_config()))
        .build()
        .expect("worker")
        .start();
    // One statement, one snapshot: listing each live state in turn could miss a job
    // that moves from running to pending between two queries (a rescue).
    eventually("every job to complete", || async {
        let stats = client.queue_stats().await.expect("stats");
        stats.iter().all(|q| q.counts.live() == 0).then_some(())
    })
    .await;
    worker.shutdown().await;

    let job = client.job(crashy).await.expect("job");
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(job.attempts, 2);
    assert!(
        job.errors[0].message.contains("lease expired"),
        "{:?}",
        job.errors
    );
    let follow_ups = client
        .jobs(JobFilter {
            kind: Some("after_crash".into()),
            ..JobFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(follow_ups.len(), 2, "{follow_ups:?}");
    assert!(follow_ups.iter().all(|f| f.parent_id == Some(crashy)));
    assert!(follow_ups.iter().all(|f| f.state == JobState::Completed));
    let all = client
        .jobs(JobFilter {
            limit: Some(10_000),
            ..JobFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(all.len(), 403, "no job lost, none duplicated");
    assert!(all.iter().all(|j| j.state == JobState::Completed));
    let ids: std::collections::HashSet<JobId> = all.iter().map(|j| j.id).collect();
    assert_eq!(ids.len(), 403);
    client.close().await;
}
