//! Typed handlers and their per-kind options.
//!
//! A handler is an async function of a [`JobContext`] and a payload type that
//! deserializes from JSON; it returns any serializable output (`()` for none) or a
//! [`JobError`]. The worker erases the types: it decodes the payload (a payload that does
//! not decode is a permanent error naming the kind and the field) and encodes the output.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use jobchain_core::job::Priority;
use jobchain_core::retry::RetryPolicy;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::context::JobContext;

/// Why an attempt failed. Any `std::error::Error` converts into a retryable `JobError`
/// with `?`; use [`JobError::permanent`] for failures that retrying cannot fix.
pub struct JobError {
    message: String,
    permanent: bool,
}

impl JobError {
    /// A failure worth retrying (a timeout, a 503).
    pub fn retryable(message: impl fmt::Display) -> Self {
        JobError {
            message: message.to_string(),
            permanent: false,
        }
    }

    /// A failure that retrying cannot fix (a declined card, a bad payload): the job
    /// goes straight to `dead`.
    pub fn permanent(message: impl fmt::Display) -> Self {
        JobError {
            message: message.to_string(),
            permanent: true,
        }
    }

    /// Whether the job should skip its remaining attempts.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    /// The message recorded on the job.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobError")
            .field("message", &self.message)
            .field("permanent", &self.permanent)
            .finish()
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for JobError {
    fn from(err: E) -> Self {
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        JobError::retryable(message)
    }
}

/// Per-kind settings of a handler.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HandlerOptions {
    /// Attempts and back-off.
    pub retry: RetryPolicy,
    /// An attempt that runs longer fails with a timeout error (`None`: no limit).
    pub timeout: Option<Duration>,
    /// Queue of jobs of this kind (default `default`); a worker claims from the queues
    /// of its handlers.
    pub queue: Option<String>,
    /// Default priority of jobs of this kind.
    pub priority: Option<Priority>,
}

impl HandlerOptions {
    /// Default options: 5 attempts, 1 s doubling back-off capped at 1 h, no timeout.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
    /// Sets the attempt limit.
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.retry.max_attempts = max_attempts;
        self
    }
    /// Sets the per-attempt timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    /// Sets the queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }
    /// Sets the default priority.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }
}

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A handler with its types erased: JSON in, JSON out.
pub(crate) type ErasedHandler =
    Arc<dyn Fn(JobContext, Value) -> BoxFuture<Result<Option<Value>, JobError>> + Send + Sync>;

/// Wraps a typed handler into an [`ErasedHandler`].
pub(crate) fn erase<P, O, F, Fut>(kind: &str, handler: F) -> ErasedHandler
where
    P: DeserializeOwned + Send + 'static,
    O: Serialize + Send + 'static,
    F: Fn(JobContext, P) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, JobError>> + Send + 'static,
{
    let kind = kind.to_string();
    let handler = Arc::new(handler);
    Arc::new(move |ctx: JobContext, payload: Value| {
        let handler = handler.clone();
        let kind = kind.clone();
        Box::pin(async move {
            let payload: P = serde_json::from_value(payload).map_err(|e| {
                JobError::permanent(format!(
                    "the payload of job kind `{kind}` does not decode: {e}"
                ))
            })?;
            let output = handler(ctx, payload).await?;
            let value = serde_json::to_value(output).map_err(|e| {
                JobError::permanent(format!(
                    "the output of job kind `{kind}` cannot be serialized: {e}"
                ))
            })?;
            Ok((!value.is_null()).then_some(value))
        })
    })
}
