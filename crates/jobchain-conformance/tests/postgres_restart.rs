//! PostgreSQL restarts while a worker drains: the worker logs it, backs off, reconnects
//! and goes on; every job completes and none stays running. This test restarts the
//! server, so it lives in a test binary of its own (cargo runs binaries one at a time).

use std::process::Command;
use std::time::{Duration, Instant};

use jobchain::{JobContext, JobSpec, JobState};
use jobchain_conformance::support::{eventually, fast_config, postgres_harness, postgres_required};
use serde_json::json;

/// Restarts the local cluster with `pg_ctlcluster`; says why when it cannot.
fn restart_postgres() -> Result<(), String> {
    let versions = std::fs::read_dir("/etc/postgresql").map_err(|e| {
        format!("no /etc/postgresql ({e}): this machine's PostgreSQL is not a local Debian cluster")
    })?;
    let version = versions
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .ok_or("no cluster under /etc/postgresql")?;
    let status = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "restart"])
        .status()
        .map_err(|e| format!("cannot run pg_ctlcluster: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("pg_ctlcluster restart failed: {status}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_survive_a_postgres_restart() {
    let Some(h) = postgres_harness().await else {
        return;
    };
    const JOBS: usize = 6000;
    let specs: Vec<JobSpec> = (0..JOBS)
        .map(|i| JobSpec::new("slowish", json!({ "i": i })))
        .collect();
    for batch in specs.chunks(2000) {
        h.client
            .enqueue_many(batch.to_vec())
            .await
            .expect("enqueue");
    }
    let worker = jobchain::Worker::builder(&h.client)
        .config(fast_config())
        .configure(|c| {
            c.concurrency = 20;
            c.lease = Duration::from_secs(5);
        })
        .handler(
            "slowish",
            |_: JobContext, _: serde_json::Value| async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok(())
            },
        )
        .build()
        .expect("worker")
        .start();
    let completed = || async {
        h.client
            .queue_stats()
            .await
            .map(|s| s.iter().map(|q| q.counts.completed).sum::<u64>())
            .unwrap_or(0)
    };
    eventually("some jobs to complete", || async {
        (completed().await >= 500).then_some(())
    })
    .await;
    match restart_postgres() {
        Ok(()) => {}
        Err(why) if !postgres_required() => {
            jobchain_conformance::support::skipped(&format!("cannot restart PostgreSQL: {why}"));
            worker.shutdown().await;
            h.close().await;
            return;
        }
        Err(why) => panic!("PostgreSQL is required but this test cannot restart it: {why}"),
    }
    let started = Instant::now();
    loop {
        if completed().await == JOBS as u64 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "jobs did not all complete after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    worker.shutdown().await;
    let stats = h.client.queue_stats().await.expect("stats");
    let running: u64 = stats.iter().map(|q| q.counts.get(JobState::Running)).sum();
    let pending: u64 = stats.iter().map(|q| q.counts.get(JobState::Pending)).sum();
    assert_eq!((running, pending), (0, 0));
    h.close().await;
}
