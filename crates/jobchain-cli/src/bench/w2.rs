//! W2 latency: a producer enqueues single jobs at a fixed rate while a worker runs;
//! the figure is the time from the enqueue's commit (the call's return) to the handler's
//! start, on this process's monotonic clock.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jobchain::{JobContext, Worker};
use serde_json::json;

use super::{figures, percentiles_ms, progress, BenchResult, Target};
use crate::CliError;

/// Enqueues `rate` jobs per second for `duration` seconds.
pub(crate) async fn run(
    target: &Target,
    rate: u64,
    duration: f64,
) -> Result<BenchResult, CliError> {
    if rate == 0 || duration <= 0.0 {
        return Err(CliError::failed(
            "W2 needs --rate above 0 and --duration above 0",
        ));
    }
    let client = target.client().await?;
    let total = (rate as f64 * duration).round() as usize;
    let starts: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; total]));
    let s = starts.clone();
    let worker = Worker::builder(&client)
        .handler("ping", move |_: JobContext, seq: usize| {
            let s = s.clone();
            async move {
                let now = Instant::now();
                if let Ok(mut starts) = s.lock() {
                    if let Some(slot) = starts.get_mut(seq) {
                        *slot = Some(now);
                    }
                }
                Ok(())
            }
        })
        .build()?
        .start();
    // Let the worker reach its idle wait before the first job.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let bar = progress(total as u64, "latency");
    let mut committed = Vec::with_capacity(total);
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let begin = tokio::time::Instant::now();
    for seq in 0..total {
        tokio::time::sleep_until(begin + interval * seq as u32).await;
        client
            .enqueue(jobchain::JobSpec::new("ping", json!(seq)))
            .await?;
        committed.push(Instant::now());
        bar.inc(1);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = starts
            .lock()
            .map(|s| s.iter().all(Option::is_some))
            .unwrap_or(false);
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.shutdown().await;
    client.close().await;
    bar.finish_and_clear();
    let starts = starts
        .lock()
        .map_err(|_| CliError::failed("latency samples poisoned"))?
        .clone();
    let mut samples = Vec::with_capacity(total);
    for (seq, start) in starts.iter().enumerate() {
        let start =
            start.ok_or_else(|| CliError::failed(format!("W2: job {seq} never started")))?;
        samples.push(start.saturating_duration_since(committed[seq]).as_micros() as u64);
    }
    let (p50, p95, p99) = percentiles_ms(&samples)?;
    Ok(BenchResult {
        workload: "W2",
        settings: json!({ "rate_per_s": rate, "duration_s": duration, "jobs": total }),
        figures: figures(&[
            ("p50_ms", p50.into()),
            ("p95_ms", p95.into()),
            ("p99_ms", p99.into()),
        ]),
    })
}
