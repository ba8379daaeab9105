//! A worker process for the multi-process tests: runs the handlers of
//! `jobchain_conformance::processes` on the store named by its one argument until it is
//! killed, its standard input closes, or it receives SIGTERM or SIGINT (then it shuts
//! down gracefully and exits 0).
//!
//! Run with: `jobchain-test-worker DATABASE` (`JOBCHAIN_TEST_FLOW=1` adds the
//! flow-control handlers, `JOBCHAIN_TEST_PERIODIC=1` with it the periodic job).

use std::io::Read;
use std::time::Duration;

#[tokio::main]
async fn main() {
    let Some(location) = std::env::args().nth(1) else {
        eprintln!("usage: jobchain-test-worker DATABASE");
        std::process::exit(2);
    };
    let client = match jobchain::open(&location).await {
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
        c.registry_ttl = jobchain_conformance::processes::CHILD_REGISTRY_TTL;
    });
    let mut builder = jobchain_conformance::processes::register(builder);
    // The flow-control case's handlers only when it asks: their limited claims change the
    // claiming rhythm that the crash and registry cases were written against.
    if std::env::var("JOBCHAIN_TEST_FLOW").is_ok_and(|v| v == "1") {
        builder = jobchain_conformance::processes::register_flow(builder);
    }
    let worker = match builder.build() {
        Ok(w) => w.start(),
        Err(e) => {
            eprintln!("jobchain-test-worker: {e}");
            std::process::exit(1);
        }
    };
    println!("ready");
    // Runs until killed, signalled, or until the parent closes our standard input.
    let stdin_closed = tokio::task::spawn_blocking(|| std::io::stdin().read(&mut [0u8; 1]));
    tokio::select! {
        _ = stdin_closed => {
            worker.shutdown().await;
        }
        report = worker.shutdown_on_signal() => {
            if let Err(e) = report {
                eprintln!("jobchain-test-worker: {e}");
                std::process::exit(1);
            }
        }
    }
    client.close().await;
    // The blocking read of standard input may still wait; the runtime would wait for it.
    std::process::exit(0);
}
