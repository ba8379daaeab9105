//! Typed jobs: a payload type that carries its kind and its defaults.
//!
//! ```
//! use jobchain::{JobArgs, KindOptions};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct SendConfirmation { order_id: u64 }
//!
//! impl JobArgs for SendConfirmation {
//!     const KIND: &'static str = "send_confirmation";
//!     fn options() -> KindOptions {
//!         KindOptions::new().queue("emails").max_attempts(3)
//!     }
//! }
//! ```
//!
//! `client.enqueue(&SendConfirmation { order_id: 7 })` lands on queue `emails` with three
//! attempts in any process, worker or not, and
//! `Worker::builder(&client).register(handler)` claims from the same queue: enqueue and
//! handler cannot disagree, because both read the type.
//!
//! Other languages, the command line and dynamic cases use the string path,
//! [`JobSpec::new`]: a kind name and a JSON payload. A process that enqueues by string
//! gets a kind's defaults only from the handlers registered in the same process, so give
//! such jobs their queue explicitly.

use jobchain_core::job::EnqueueOptions;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::handler::KindOptions;

/// A job's payload type, tied to its kind and its default options (River's `JobArgs`).
pub trait JobArgs: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The kind: the name the job is stored and claimed under.
    const KIND: &'static str;

    /// The kind's defaults: queue, priority, attempts and back-off, timeout. Used by every
    /// enqueue of this type and by the worker that registers its handler.
    fn options() -> KindOptions {
        KindOptions::default()
    }
}

/// One job to enqueue: a kind, a JSON payload and options. Built from a typed payload
/// ([`JobSpec::typed`], or `&args` wherever an [`IntoJob`] is taken) or, for the string
/// path, from a kind name and JSON ([`JobSpec::new`]).
#[derive(Clone, Debug)]
pub struct JobSpec {
    pub(crate) kind: String,
    pub(crate) payload: Value,
    pub(crate) options: EnqueueOptions,
    /// The type's defaults, for typed jobs.
    pub(crate) defaults: Option<KindOptions>,
}

impl JobSpec {
    /// A job of `kind` with a JSON payload (the string path). Its defaults come from a
    /// handler registered for `kind` in this process, if any; set the queue explicitly
    /// otherwise.
    pub fn new(kind: impl Into<String>, payload: Value) -> Self {
        JobSpec {
            kind: kind.into(),
            payload,
            options: EnqueueOptions::default(),
            defaults: None,
        }
    }

    /// A typed job: kind and defaults from `T`.
    pub fn typed<T: JobArgs>(args: &T) -> Result<Self> {
        Ok(JobSpec {
            kind: T::KIND.to_string(),
            payload: to_json(T::KIND, args)?,
            options: EnqueueOptions::default(),
            defaults: Some(T::options()),
        })
    }

    /// Overrides the defaults for this job (queue, priority, delay, attempts, unique key).
    pub fn options(mut self, options: EnqueueOptions) -> Self {
        self.options = options;
        self
    }

    /// The kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The JSON payload.
    pub fn payload(&self) -> &Value {
        &self.payload
    }
}

/// Anything that can be enqueued: `&T` for a typed payload `T: JobArgs`, or a [`JobSpec`].
pub trait IntoJob {
    /// The job, or why its payload cannot be encoded.
    fn into_job(self) -> Result<JobSpec>;
}

impl<T: JobArgs> IntoJob for &T {
    fn into_job(self) -> Result<JobSpec> {
        JobSpec::typed(self)
    }
}

impl IntoJob for JobSpec {
    fn into_job(self) -> Result<JobSpec> {
        Ok(self)
    }
}

pub(crate) fn to_json<P: Serialize + ?Sized>(kind: &str, payload: &P) -> Result<Value> {
    serde_json::to_value(payload).map_err(|e| Error::Payload {
        kind: kind.to_string(),
        reason: e.to_string(),
    })
}
