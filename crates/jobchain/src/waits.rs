//! Steps that wait without holding a worker: for a signal, or for time.
//!
//! Both are jobs of kinds the worker runs itself ([`SIGNAL_KIND`], [`SLEEP_KIND`]). When
//! such a step is reached it runs once: a sleep asks the store for its due instant
//! (fixed the first time, so restarts do not move it) and snoozes until then; a signal
//! step completes at once with a signal already received, else snoozes until its
//! timeout. While snoozed it is a pending job like any other: no slot, no connection.
//! A signal that arrives while the step waits completes it in the store, in the
//! signal's own transaction ([`Store::send_signal`](jobchain_core::Store::send_signal)).

use chrono::Utc;
use jobchain_core::store::{SignalWait, SleepFor};
use serde_json::{json, Value};

use crate::context::JobContext;
use crate::handler::JobError;

pub use jobchain_core::store::{SignalReceipt, SIGNAL_KIND, SLEEP_KIND};

/// How long until `due`, or `None` when it has come.
fn remaining(due: chrono::DateTime<Utc>) -> Option<std::time::Duration> {
    (due - Utc::now()).to_std().ok().filter(|d| !d.is_zero())
}

/// The handler of [`SLEEP_KIND`]: completes at its due instant (output `{"slept_until":
/// instant}`), snoozing until then.
pub(crate) async fn sleep(ctx: JobContext, wait: SleepFor) -> Result<Value, JobError> {
    let due = match wait {
        SleepFor::Until { until } => until,
        SleepFor::Delay { sleep_ms } => {
            let proposed = Utc::now() + chrono::Duration::milliseconds(clamp_ms(sleep_ms));
            ctx.client().store().timer(ctx.job_id(), proposed).await?
        }
    };
    match remaining(due) {
        Some(left) => Err(JobError::snooze(left)),
        None => Ok(json!({ "slept_until": due })),
    }
}

/// The handler of [`SIGNAL_KIND`]: completes with the payload of a signal the workflow
/// already received, else waits for it until its timeout, then ends dead.
pub(crate) async fn signal(ctx: JobContext, wait: SignalWait) -> Result<Value, JobError> {
    let Some(workflow) = ctx.workflow_id() else {
        return Err(JobError::permanent(format!(
            "job {} waits for signal `{}` but belongs to no workflow: signals are sent to workflows",
            ctx.job_id(),
            wait.signal
        )));
    };
    let store = ctx.client().store();
    if let Some(payload) = store.received_signal(workflow, &wait.signal).await? {
        return Ok(payload);
    }
    let proposed = Utc::now() + chrono::Duration::milliseconds(clamp_ms(wait.timeout_ms));
    let due = store.timer(ctx.job_id(), proposed).await?;
    match remaining(due) {
        Some(left) => Err(JobError::snooze(left)),
        None => Err(JobError::permanent(format!(
            "no signal `{}` reached workflow {workflow} within {} of this step being reached",
            wait.signal,
            humantime_ms(wait.timeout_ms)
        ))),
    }
}

fn clamp_ms(ms: u64) -> i64 {
    // About 292 million years: far enough.
    i64::try_from(ms).unwrap_or(i64::MAX / 1_000_000)
}

fn humantime_ms(ms: u64) -> String {
    if ms % 3_600_000 == 0 && ms > 0 {
        format!("{} h", ms / 3_600_000)
    } else if ms % 60_000 == 0 && ms > 0 {
        format!("{} min", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}
