//! A worker process for the multi-process tests: runs the handlers of
//! `jobchain_conformance::processes` on the store named by its one argument until it is
//! killed or its standard input closes.
//!
//! Run with: `jobchain-test-worker DATABASE`

use std::io::Read;
use std::time::Duration;

use jobchain::Client;

#[tokio::main]
async fn main() {
    let Some(location) = std::env::args().nth(1) else {
        eprintln!("usage: jobchain-test-worker DATABASE");
        std::process::exit(2);
    };
    let client = match Client::open(&location).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("jobchain-test-worker: {e}");
            std::process::exit(1);
        }
    };
    let builder = jobchain::Worker::builder(&client).configure(|c| {
        c.lease = jobchain_conformance::processes::CHILD_LEASE;
        c.heartbeat = Some(Duration::from_millis(500));
        c.poll_interval = Duration::from_millis(100);
        c.rescue_interval = Duration::from_millis(200);
    });
    let worker = match jobchain_conformance::processes::register(builder).build() {
        Ok(w) => w.start(),
        Err(e) => {
            eprintln!("jobchain-test-worker: {e}");
            std::process::exit(1);
        }
    };
    println!("ready");
    // Runs until killed, or until the parent closes our standard input.
    let _ = tokio::task::spawn_blocking(|| std::io::stdin().read(&mut [0u8; 1])).await;
    worker.shutdown().await;
    client.close().await;
}
