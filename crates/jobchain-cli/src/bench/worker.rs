//! `jobchain bench-worker`: a worker process for the benchmarks (W1 and W3 with several
//! processes, W6). It runs no-op `noop` jobs and W3's order steps, prints `processed N`
//! (jobs run) every 50 ms, and when its standard input closes it shuts down and prints
//! `done N PEAK_RSS_BYTES`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jobchain::{JobContext, Worker};
use tokio::io::AsyncReadExt;

use crate::CliError;

/// Runs the worker until standard input closes.
pub async fn run(database: &str) -> Result<(), CliError> {
    let client = jobchain::open(database).await?;
    let processed = Arc::new(AtomicU64::new(0));
    let counter = processed.clone();
    let orders = processed.clone();
    let builder =
        Worker::builder(&client).handler("noop", move |_: JobContext, _: serde_json::Value| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        });
    let worker = super::w3::register_orders(builder, move |_| {
        orders.fetch_add(1, Ordering::Relaxed);
    })
    .build()?
    .start();
    let reporter = {
        let processed = processed.clone();
        tokio::spawn(async move {
            loop {
                crate::common::out(format!("processed {}", processed.load(Ordering::Relaxed)));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    worker.shutdown().await;
    reporter.abort();
    client.close().await;
    crate::common::out(format!(
        "done {} {}",
        processed.load(Ordering::Relaxed),
        peak_rss_bytes().unwrap_or(0)
    ));
    Ok(())
}

/// This process's peak resident memory (`VmHWM` of /proc/self/status), on Linux.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
