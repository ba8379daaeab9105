//! Handlers, their errors and the options of a job kind.
//!
//! A handler is an async function of a [`JobContext`] and a payload type that
//! deserializes from JSON; it returns any serializable output (`()` for none) or an
//! error that converts into [`JobError`] (a `JobError`, an `anyhow::Error`, or any
//! `std::error::Error + Send + Sync`). The worker erases the types: it decodes the
//! payload (a payload that does not decode is a permanent error naming the kind and the
//! path of the field, such as `items[2].sku`) and encodes the output.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use jobchain_core::job::Priority;
use jobchain_core::retry::RetryPolicy;
use jobchain_core::store::RateLimit;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::context::JobContext;

/// Why an attempt failed: retryable (the default) or permanent.
///
/// `?` converts into it from `anyhow::Error` and from any
/// `std::error::Error + Send + Sync + 'static`, keeping the chain of causes; the message
/// recorded on the job is the whole chain (`outer: inner: root`). Use
/// [`JobError::permanent`] or [`ResultExt::permanent`] for failures that retrying cannot
/// fix (a declined card, a bad payload): the job goes straight to `dead`.
///
/// Like `anyhow::Error`, `JobError` does not itself implement `std::error::Error`: a type
/// cannot both convert from every error and be one. [`JobError::as_error`] and
/// `Box<dyn Error>::from` give the error with its causes.
pub struct JobError {
    error: anyhow::Error,
    permanent: bool,
    snooze: Option<std::time::Duration>,
}

impl JobError {
    /// A failure worth retrying (a timeout, a 503).
    pub fn retryable(message: impl fmt::Display) -> Self {
        JobError {
            error: anyhow::Error::msg(message.to_string()),
            permanent: false,
            snooze: None,
        }
    }

    /// Not a failure: "not now, again in `delay`". The job goes back to pending and runs
    /// after `delay` without spending an attempt (its attempt count is what it was before
    /// this run); nothing is recorded as an error. For a resource that is busy, a rate
    /// limit of someone else's API, a dependency not ready yet.
    pub fn snooze(delay: std::time::Duration) -> Self {
        JobError {
            error: anyhow::Error::msg(format!("snoozed for {delay:?}")),
            permanent: false,
            snooze: Some(delay),
        }
    }

    /// The delay of a snooze ([`JobError::snooze`]).
    pub fn snoozed_for(&self) -> Option<std::time::Duration> {
        self.snooze
    }

    /// A failure that retrying cannot fix: the job goes straight to `dead`.
    pub fn permanent(message: impl fmt::Display) -> Self {
        JobError {
            error: anyhow::Error::msg(message.to_string()),
            permanent: true,
            snooze: None,
        }
    }

    /// This error, marked permanent.
    pub fn into_permanent(mut self) -> Self {
        self.permanent = true;
        self.snooze = None;
        self
    }

    /// Whether the job should skip its remaining attempts.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    /// The message recorded on the job: the error and its causes, outermost first.
    pub fn message(&self) -> String {
        format!("{:#}", self.error)
    }

    /// The error with its chain of causes.
    pub fn as_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        self.error.as_ref()
    }

    /// The underlying `anyhow::Error`.
    pub fn into_anyhow(self) -> anyhow::Error {
        self.error
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl fmt::Debug for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobError")
            .field("message", &self.message())
            .field("permanent", &self.permanent)
            .finish()
    }
}

/// Any error that `anyhow` takes (every `std::error::Error + Send + Sync + 'static`, and
/// `anyhow::Error` itself) is a retryable `JobError`.
impl<E: Into<anyhow::Error>> From<E> for JobError {
    fn from(err: E) -> Self {
        JobError {
            error: err.into(),
            permanent: false,
            snooze: None,
        }
    }
}

impl From<JobError> for Box<dyn StdError + Send + Sync + 'static> {
    fn from(err: JobError) -> Self {
        err.error.into()
    }
}

/// `.permanent()?` on any result whose error converts into a [`JobError`].
pub trait ResultExt<T> {
    /// The error, if any, as a permanent [`JobError`].
    fn permanent(self) -> Result<T, JobError>;
}

impl<T, E: Into<JobError>> ResultExt<T> for Result<T, E> {
    fn permanent(self) -> Result<T, JobError> {
        self.map_err(|e| e.into().into_permanent())
    }
}

/// The options of a job kind: its queue, default priority, attempts and back-off, and
/// timeout. A typed job's options come from [`JobArgs::options`](crate::JobArgs::options);
/// a string kind's from the handler registered for it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KindOptions {
    /// Attempts and back-off.
    pub retry: RetryPolicy,
    /// An attempt that runs longer fails with a timeout error (`None`: no limit).
    pub timeout: Option<Duration>,
    /// Queue of jobs of this kind (default `default`); a worker claims from the queues
    /// of its handlers.
    pub queue: Option<String>,
    /// Default priority of jobs of this kind.
    pub priority: Option<Priority>,
    /// At most this many starts of this kind in any window, across every worker of the
    /// store (counted in the store). Jobs over it wait pending; no attempt is spent.
    pub rate_limit: Option<RateLimit>,
    /// At most this many jobs of this kind running at once, across every worker.
    pub max_running: Option<u32>,
    /// At most this many jobs of one concurrency key running at once, across every
    /// worker; claims are fair across the keys with waiting jobs (by rank: the n-th
    /// waiting job of every key before the (n+1)-th of any).
    pub max_running_per_key: Option<u32>,
}

impl KindOptions {
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
    /// Limits starts per window (`"100/s".parse()?`, or a [`RateLimit`]).
    pub fn rate_limit(mut self, rate: RateLimit) -> Self {
        self.rate_limit = Some(rate);
        self
    }
    /// Limits how many run at once, across every worker.
    pub fn max_running(mut self, max: u32) -> Self {
        self.max_running = Some(max);
        self
    }
    /// Limits how many of one concurrency key run at once, across every worker.
    pub fn max_running_per_key(mut self, max: u32) -> Self {
        self.max_running_per_key = Some(max);
        self
    }
    /// Whether any limit is set.
    pub(crate) fn is_limited(&self) -> bool {
        self.rate_limit.is_some()
            || self.max_running.is_some()
            || self.max_running_per_key.is_some()
    }
}

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A handler for payloads of type `A`: an async function of the context and the
/// payload, returning an output or a [`JobError`] (into which `?` converts any error).
/// Implemented by every `Fn(JobContext, A) -> impl Future<Output = Result<O, JobError>>`
/// with `O: Serialize`.
pub trait Handler<A>: Send + Sync + 'static {
    /// What a successful attempt returns; stored as the job's output.
    type Output: Serialize + Send + 'static;
    /// The future of one attempt.
    type Future: Future<Output = Result<Self::Output, JobError>> + Send + 'static;
    /// Runs one attempt.
    fn call(&self, ctx: JobContext, args: A) -> Self::Future;
}

impl<A, F, Fut, O> Handler<A> for F
where
    F: Fn(JobContext, A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, JobError>> + Send + 'static,
    O: Serialize + Send + 'static,
{
    type Output = O;
    type Future = Fut;
    fn call(&self, ctx: JobContext, args: A) -> Fut {
        self(ctx, args)
    }
}

/// A handler with its types erased: JSON in, JSON out.
pub(crate) type ErasedHandler =
    Arc<dyn Fn(JobContext, Value) -> BoxFuture<Result<Option<Value>, JobError>> + Send + Sync>;

/// Wraps a typed handler into an [`ErasedHandler`].
pub(crate) fn erase<A, H>(kind: &str, handler: H) -> ErasedHandler
where
    A: DeserializeOwned + Send + 'static,
    H: Handler<A>,
{
    let kind: Arc<str> = Arc::from(kind);
    let handler = Arc::new(handler);
    Arc::new(move |ctx: JobContext, payload: Value| {
        let handler = handler.clone();
        let kind = kind.clone();
        Box::pin(async move {
            let args: A = decode(&format!("the payload of job kind `{kind}`"), payload)?;
            let output = handler.call(ctx, args).await?;
            let value = serde_json::to_value(output).map_err(|e| {
                JobError::permanent(format!(
                    "the output of job kind `{kind}` cannot be serialized: {e}"
                ))
            })?;
            Ok((!value.is_null()).then_some(value))
        })
    })
}

/// Decodes JSON into `A`; the permanent error names `what` was decoded (`the payload
/// of job kind `x``) and the path of the field that failed.
pub(crate) fn decode<A: DeserializeOwned>(what: &str, value: Value) -> Result<A, JobError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            JobError::permanent(format!("{what} does not decode: {inner}"))
        } else {
            JobError::permanent(format!("{what} does not decode at `{path}`: {inner}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code, reason = "fields are only decoded")]
    struct Order {
        id: u64,
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code, reason = "fields are only decoded")]
    struct Item {
        sku: String,
        quantity: u32,
    }

    #[test]
    fn decode_errors_name_the_field_path() {
        let payload = serde_json::json!({
            "id": 7,
            "items": [{ "sku": "a", "quantity": 1 }, { "sku": 5, "quantity": 2 }],
        });
        let err = decode::<Order>("the payload of job kind `process_order`", payload).unwrap_err();
        assert!(err.is_permanent());
        let message = err.message();
        assert!(message.contains("`process_order`"), "{message}");
        assert!(message.contains("`items[1].sku`"), "{message}");
        assert!(message.contains("expected a string"), "{message}");

        let err = decode::<Order>("x", serde_json::json!({ "items": [] })).unwrap_err();
        assert!(
            err.message().contains("missing field `id`"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn errors_convert_with_their_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("charge failed")]
        struct Charge(#[source] std::io::Error);

        fn std_error() -> Result<(), JobError> {
            Err(Charge(std::io::Error::other("card declined")))?;
            Ok(())
        }
        fn anyhow_error() -> Result<(), JobError> {
            Err(anyhow::anyhow!("gateway down"))?;
            Ok(())
        }
        fn permanent() -> Result<(), JobError> {
            Err(std::io::Error::other("bad card")).permanent()?;
            Ok(())
        }
        let err = std_error().unwrap_err();
        assert!(!err.is_permanent());
        assert_eq!(err.message(), "charge failed: card declined");
        assert!(err.as_error().source().is_some());
        assert_eq!(anyhow_error().unwrap_err().message(), "gateway down");
        assert!(permanent().unwrap_err().is_permanent());
        let boxed: Box<dyn StdError + Send + Sync> = permanent().unwrap_err().into();
        assert_eq!(boxed.to_string(), "bad card");
    }
}
