//! The executor: runs one claimed job.
//!
//! The handler runs in its own task, so a panic is caught as a failed attempt and never
//! takes the worker down, inside a tracing span that carries kind, job id, attempt and
//! workflow id. The attempt ends in exactly one settlement for the completer:
//! completed (with the staged follow-ups), retry after back-off, dead (permanent error
//! or no attempts left), or released (interrupted by shutdown).

use std::any::Any;
use std::sync::Arc;

use jobchain_core::store::{ClaimedJob, Outcome, Settlement};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::shared::Shared;
use crate::context::JobContext;
use crate::handler::JobError;

enum Ended {
    Finished(Result<Option<serde_json::Value>, JobError>),
    Panicked(String),
    TimedOut,
    Interrupted,
}

pub(crate) async fn run(shared: Arc<Shared>, job: ClaimedJob, permit: OwnedSemaphorePermit) {
    let cancel = shared.hard_stop.child_token();
    shared.running.insert(job.id, job.attempt, cancel.clone());
    let span = tracing::info_span!(
        "job",
        job.kind = %job.kind,
        job.id = %job.id,
        job.attempt = job.attempt,
        workflow.id = job.workflow_id.map(|w| w.to_string()).as_deref().unwrap_or(""),
    );
    let lease = job.lease();
    let workflow_id = job.workflow_id;
    let metrics = shared.config.metrics.as_ref().map(|m| {
        let waited = (chrono::Utc::now() - job.run_at)
            .to_std()
            .unwrap_or_default();
        m.started(&job.kind, waited);
        (m, job.kind.clone(), std::time::Instant::now())
    });
    let outcome = execute(&shared, job, cancel).instrument(span).await;
    if let Some((m, kind, started)) = metrics {
        m.ended(&kind, &outcome, started.elapsed());
    }
    shared.running.ended(lease);
    shared
        .settle(
            Settlement {
                lease,
                outcome,
                only_if_expired: false,
                workflow_id,
            },
            permit,
        )
        .await;
}

async fn execute(shared: &Arc<Shared>, job: ClaimedJob, cancel: CancellationToken) -> Outcome {
    let Some(registered) = shared.handlers.get(&job.kind) else {
        return Outcome::Dead {
            error: format!("no handler for kind `{}` on this worker", job.kind),
        };
    };
    let ctx = JobContext::new(
        job.clone(),
        shared.client.clone(),
        cancel,
        shared.data.clone(),
    );
    let future = (registered.handler)(ctx.clone(), job.payload.clone());
    let task = tokio::spawn(future.in_current_span());
    let abort = task.abort_handle();
    let timeout = registered.options.timeout;
    let guarded = async {
        match timeout {
            Some(limit) => tokio::time::timeout(limit, task).await.ok(),
            None => Some(task.await),
        }
    };
    let ended = tokio::select! {
        joined = guarded => match joined {
            Some(Ok(result)) => Ended::Finished(result),
            Some(Err(e)) if e.is_panic() => Ended::Panicked(panic_message(e.into_panic())),
            Some(Err(_)) => Ended::Interrupted,
            None => Ended::TimedOut,
        },
        _ = shared.hard_stop.cancelled() => Ended::Interrupted,
    };
    match ended {
        Ended::Finished(Ok(output)) => match ctx.take_awaited() {
            Some((steps, join)) => {
                tracing::debug!(steps = steps.len(), "job awaits new steps");
                Outcome::Await { steps, join }
            }
            None => {
                tracing::debug!("job completed");
                Outcome::Completed {
                    output,
                    follow_ups: ctx.take_staged(),
                }
            }
        },
        Ended::Finished(Err(e)) => match e.snoozed_for() {
            Some(delay) => {
                tracing::debug!(snooze = ?delay, "job snoozed");
                Outcome::Snooze { delay }
            }
            None => failure(shared, &job, e.message().to_string(), e.is_permanent()),
        },
        Ended::Panicked(message) => {
            failure(shared, &job, format!("handler panicked: {message}"), false)
        }
        Ended::TimedOut => {
            abort.abort();
            let limit = timeout.unwrap_or_default();
            failure(shared, &job, format!("timed out after {limit:?}"), false)
        }
        Ended::Interrupted => {
            abort.abort();
            tracing::info!("job interrupted by shutdown; releasing it");
            Outcome::Released
        }
    }
}

/// A failed attempt: dead when permanent or out of attempts, else retried after the
/// kind's back-off.
fn failure(shared: &Shared, job: &ClaimedJob, error: String, permanent: bool) -> Outcome {
    let policy = shared.retry.of(&job.kind);
    if permanent || !policy.should_retry(job.attempt, job.max_attempts) {
        // The job's facts are in the event itself, not only in its span: at the default
        // level (warnings) the info-level span is not recorded.
        tracing::warn!(
            job.id = %job.id,
            job.kind = %job.kind,
            job.attempt = job.attempt,
            workflow.id = job.workflow_id.map(|w| w.to_string()).as_deref().unwrap_or(""),
            error = %error,
            permanent,
            "job failed; moving it to the dead-letter queue"
        );
        Outcome::Dead { error }
    } else {
        let delay = policy.backoff(job.attempt, job.id.0 as u64);
        tracing::info!(error = %error, retry_in = ?delay, "job failed; will retry");
        Outcome::Retry { error, delay }
    }
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic payload that is not a string)".to_string()
    }
}
