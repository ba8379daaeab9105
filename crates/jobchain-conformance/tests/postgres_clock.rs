//! Clock skew on PostgreSQL: a worker process whose clock is an hour ahead (libfaketime)
//! neither steals the jobs of a worker with the right time — its rescuer would, if leases
//! were judged by its own clock — nor strands the jobs it claims. Every lease, schedule
//! and back-off is the server's `now()`. Skipped, with the reason, without PostgreSQL or
//! without `faketime` (`apt-get install faketime`) — unless `JOBCHAIN_REQUIRE_POSTGRES=1`
//! and `JOBCHAIN_REQUIRE_FAKETIME=1`, set in CI.

use std::process::{Command, Stdio};
use std::time::Duration;

use jobchain::{JobContext, JobSpec, JobState};
use jobchain_conformance::support::{eventually, postgres_harness, StartWorker};
use serde_json::json;

/// Whether `faketime` runs and moves a program's clock by an hour; says why not.
fn faketime_works() -> Result<(), String> {
    let output = Command::new("faketime")
        .args(["-f", "+1h", "date", "+%s"])
        .output()
        .map_err(|e| format!("cannot run faketime ({e}): apt-get install faketime"))?;
    let skewed: i64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|_| "faketime printed no time".to_string())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs() as i64;
    if (skewed - now - 3600).abs() < 60 {
        Ok(())
    } else {
        Err(format!(
            "faketime moved the clock by {} s, not 3600",
            skewed - now
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_an_hour_ahead_neither_steals_nor_strands() {
    if let Err(why) = faketime_works() {
        if std::env::var("JOBCHAIN_REQUIRE_FAKETIME").is_ok_and(|v| v == "1") {
            panic!("JOBCHAIN_REQUIRE_FAKETIME=1 but {why}");
        }
        eprintln!("skipped: {why}");
        return;
    }
    let Some(h) = postgres_harness().await else {
        return;
    };
    // The worker with the right time runs long jobs under a 10 s lease.
    let steady = h
        .worker()
        .configure(|c| c.lease = Duration::from_secs(10))
        .handler("long", |_: JobContext, _: serde_json::Value| async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok(())
        })
        .started();
    let long: Vec<_> = h
        .client
        .enqueue_many((0..4).map(|i| JobSpec::new("long", json!({ "i": i }))))
        .await
        .expect("enqueue long")
        .iter()
        .map(|e| e.id)
        .collect();
    eventually("the long jobs to run", || async {
        (steady.running() == 4).then_some(())
    })
    .await;
    // The skewed worker: its rescuer runs every 200 ms, and it runs `plain` and chains.
    let mut skewed = Command::new("faketime")
        .args(["-f", "+1h"])
        .arg(env!("CARGO_BIN_EXE_jobchain-test-worker"))
        .arg(&h.location)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the skewed worker");
    let plain: Vec<_> = h
        .client
        .enqueue_many((0..50).map(|i| JobSpec::new("plain", json!({ "i": i }))))
        .await
        .expect("enqueue plain")
        .iter()
        .map(|e| e.id)
        .collect();
    let chain = h
        .client
        .start_workflow(JobSpec::new("chain", json!({ "left": 3 })))
        .await
        .expect("start a chain")
        .id;
    for id in long.iter().chain(&plain) {
        let job = jobchain_conformance::support::terminal(&h.client, *id).await;
        assert_eq!(job.state, JobState::Completed, "{job:?}");
        assert_eq!(job.attempts, 1, "job {id} ran again: {:?}", job.errors);
    }
    let info = h
        .client
        .wait_for_workflow(chain, Duration::from_secs(30))
        .await
        .expect("the skewed worker's chain finishes");
    assert_eq!(info.state, jobchain::WorkflowState::Completed);
    assert_eq!(info.counts.completed, 4);
    drop(skewed.stdin.take());
    let _ = skewed.wait();
    steady.shutdown().await;
    h.close().await;
}
