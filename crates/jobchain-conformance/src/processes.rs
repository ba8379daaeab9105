//! Handlers and settings shared by the multi-process tests and their worker binary
//! (`jobchain-test-worker`), so the parent and the child run the same code.

use std::time::Duration;

use jobchain::{EnqueueOptions, HandlerOptions, JobContext, JobError, RetryPolicy, WorkerBuilder};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Payload of the `crashy` job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Crashy {
    /// File the first attempt creates once it is inside the handler.
    pub marker: String,
}

/// The lease used by child workers: short, so a killed child's jobs are rescued soon.
pub const CHILD_LEASE: Duration = Duration::from_secs(4);

/// Registers the multi-process handlers:
/// - `crashy`: its first attempt writes the marker file and hangs (the test kills the
///   process there); later attempts stage two `after_crash` follow-ups and complete;
/// - `after_crash`, `plain`: a few milliseconds of simulated work;
/// - `chain`: stages the next link until `left` reaches 0.
pub fn register(builder: WorkerBuilder) -> WorkerBuilder {
    let retry = HandlerOptions::new().retry(RetryPolicy {
        max_attempts: 5,
        base: Duration::from_millis(50),
        cap: Duration::from_millis(200),
        jitter: 0.0,
    });
    builder
        .handler_with(
            "crashy",
            retry.clone(),
            |ctx: JobContext, p: Crashy| async move {
                if ctx.attempt() == 1 {
                    std::fs::write(&p.marker, b"inside the handler")
                        .map_err(|e| JobError::permanent(format!("marker: {e}")))?;
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                ctx.enqueue("after_crash", &json!({ "n": 1 }), EnqueueOptions::new())?;
                ctx.enqueue("after_crash", &json!({ "n": 2 }), EnqueueOptions::new())?;
                Ok(())
            },
        )
        .handler(
            "after_crash",
            |_: JobContext, _: serde_json::Value| async move { Ok(()) },
        )
        .handler("plain", |_: JobContext, _: serde_json::Value| async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            Ok(())
        })
        .handler_with(
            "chain",
            retry,
            |ctx: JobContext, p: serde_json::Value| async move {
                let left = p["left"].as_u64().unwrap_or(0);
                if left > 0 {
                    ctx.enqueue("chain", &json!({ "left": left - 1 }), EnqueueOptions::new())?;
                }
                Ok(())
            },
        )
}
