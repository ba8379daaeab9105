//! Handlers and settings shared by the multi-process tests and their worker binary
//! (`jobchain-test-worker`), so the parent and the child run the same code.

use std::time::Duration;

use jobchain::{JobContext, JobError, KindOptions, RetryPolicy, WorkerBuilder};
use serde::{Deserialize, Serialize};

use crate::support::job;
use serde_json::json;

/// Payload of the `crashy` job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Crashy {
    /// File the first attempt creates once it is inside the handler.
    pub marker: String,
}

/// A typed job whose kind lives on queue `emails`: a process that only enqueues it
/// (no worker, no registration) must still send it where the worker claims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendEmail {
    /// Recipient.
    pub to: String,
}

impl jobchain::JobArgs for SendEmail {
    const KIND: &'static str = "send_email";
    fn options() -> KindOptions {
        KindOptions::new().queue("emails").max_attempts(2)
    }
}

/// How long a child worker's registry entry lives without a refresh: short, so a killed
/// child drops out of the registry soon.
pub const CHILD_REGISTRY_TTL: Duration = Duration::from_secs(1);

/// The lease used by child workers: short, so a killed child's jobs are rescued soon.
pub const CHILD_LEASE: Duration = Duration::from_secs(4);

/// The rate limit of `fc_paced` in the multi-process flow-control case.
pub const FC_RATE: jobchain::RateLimit = jobchain::RateLimit {
    count: 5,
    period: Duration::from_millis(400),
};

/// A handler's run as it saw it: milliseconds since the epoch on the worker's clock.
fn run_record(start: chrono::DateTime<chrono::Utc>, key: &serde_json::Value) -> serde_json::Value {
    json!({
        "start": start.timestamp_micros(),
        "end": chrono::Utc::now().timestamp_micros(),
        "key": key,
    })
}

/// Registers the flow-control handlers of the multi-process cases; each returns its run
/// (`start`, `end` in microseconds of the worker's clock, the payload's `key`) as output:
/// - `fc_bounded` (`max_running` 2, 20 ms), `fc_paced` (5 per 400 ms), `fc_keyed`
///   (`max_running_per_key` 1);
/// - `fc_pausable` on queue `fc_paused`;
/// - `fc_debounced` returns its payload;
/// - `fc_snoozy` snoozes 50 ms the first time it meets its payload's `marker` file
///   missing (it creates it), then completes;
/// - and, with `JOBCHAIN_TEST_PERIODIC=1`, the periodic job `fc_every_second` of kind
///   `fc_tick`.
///
/// The worker binary registers these only with `JOBCHAIN_TEST_FLOW=1`.
pub fn register_flow(builder: WorkerBuilder) -> WorkerBuilder {
    let recorded = |hold: Duration| {
        move |_: JobContext, p: serde_json::Value| async move {
            let start = chrono::Utc::now();
            tokio::time::sleep(hold).await;
            Ok(run_record(start, &p["key"]))
        }
    };
    let mut builder = builder
        .handler_with(
            "fc_bounded",
            KindOptions::new().max_running(2),
            recorded(Duration::from_millis(20)),
        )
        .handler_with(
            "fc_paced",
            KindOptions::new().rate_limit(FC_RATE),
            recorded(Duration::ZERO),
        )
        .handler_with(
            "fc_keyed",
            KindOptions::new().max_running_per_key(1),
            recorded(Duration::ZERO),
        )
        .handler_with(
            "fc_pausable",
            KindOptions::new().queue("fc_paused"),
            recorded(Duration::ZERO),
        )
        .handler(
            "fc_debounced",
            |_: JobContext, p: serde_json::Value| async move { Ok(p) },
        )
        .handler(
            "fc_snoozy",
            |_: JobContext, p: serde_json::Value| async move {
                let marker = p["marker"].as_str().unwrap_or_default().to_string();
                if !std::path::Path::new(&marker).exists() {
                    std::fs::write(&marker, b"snoozed once")
                        .map_err(|e| JobError::permanent(format!("marker: {e}")))?;
                    return Err(JobError::snooze(Duration::from_millis(50)));
                }
                Ok(json!("done"))
            },
        )
        .handler(
            "fc_tick",
            |_: JobContext, _: serde_json::Value| async move { Ok(()) },
        );
    if std::env::var("JOBCHAIN_TEST_PERIODIC").is_ok_and(|v| v == "1") {
        builder = builder.periodic(jobchain::periodic::Periodic::new(
            "fc_every_second",
            jobchain::periodic::Schedule::new("* * * * * *", "UTC").expect("a valid schedule"),
            job("fc_tick", &json!({})),
        ));
    }
    builder
}

/// Registers the multi-process handlers:
/// - `crashy`: its first attempt writes the marker file and hangs (the test kills the
///   process there); later attempts stage two `after_crash` follow-ups and complete;
/// - `after_crash`, `plain`: a few milliseconds of simulated work;
/// - `chain`: stages the next link until `left` reaches 0;
/// - [`SendEmail`] (typed, queue `emails`): returns the recipient as its output.
pub fn register(builder: WorkerBuilder) -> WorkerBuilder {
    let retry = KindOptions::new().retry(RetryPolicy {
        max_attempts: 5,
        base: Duration::from_millis(50),
        cap: Duration::from_millis(200),
        jitter: 0.0,
    });
    builder
        .register(|_: JobContext, mail: SendEmail| async move { Ok(mail.to) })
        .handler_with(
            "crashy",
            retry.clone(),
            |ctx: JobContext, p: Crashy| async move {
                if ctx.attempt() == 1 {
                    std::fs::write(&p.marker, b"inside the handler")
                        .map_err(|e| JobError::permanent(format!("marker: {e}")))?;
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                ctx.enqueue(job("after_crash", &json!({ "n": 1 })))?;
                ctx.enqueue(job("after_crash", &json!({ "n": 2 })))?;
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
                    ctx.enqueue(job("chain", &json!({ "left": left - 1 })))?;
                }
                Ok(())
            },
        )
}
