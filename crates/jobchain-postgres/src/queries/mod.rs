//! All SQL of the PostgreSQL backend: one leaf file per table ([`job`], [`workflow`],
//! [`dependency`], [`worker`]), none of which uses another, and [`ops`], the
//! transactions that span tables (insert with workflows, workflow start, settle, retry,
//! cancel, cleaning).
//!
//! Statements are written against the placeholder schema `__schema__` and made
//! concrete once per store by [`Sql`]; every table name is schema-qualified, so the same
//! statements run on jobchain's pool and on a caller's own transaction.

pub mod dependency;
pub mod job;
pub mod limit;
pub mod migration;
pub mod ops;
pub mod queue;
pub mod transition;
pub mod wait;
pub mod worker;
pub mod workflow;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use jobchain_core::job::RunAt;
use jobchain_core::StoreError;
use serde_json::Value;
use sqlx::{AssertSqlSafe, PgConnection};

/// The schema's statements, made concrete on first use and cached.
pub struct Sql {
    schema: String,
    cache: RwLock<HashMap<&'static str, Arc<str>>>,
}

impl Sql {
    /// Statements for `schema` (already validated as a plain identifier).
    pub fn new(schema: &str) -> Self {
        Sql {
            schema: schema.to_string(),
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// The statement `template` with the schema filled in. Safe to run: the template is
    /// a constant and the schema name was validated as a plain identifier.
    pub fn get(&self, template: &'static str) -> AssertSqlSafe<Arc<str>> {
        if let Some(sql) = self
            .cache
            .read()
            .ok()
            .and_then(|c| c.get(template).cloned())
        {
            return AssertSqlSafe(sql);
        }
        let sql: Arc<str> = concrete(template, &self.schema).0.into();
        if let Ok(mut cache) = self.cache.write() {
            cache.insert(template, sql.clone());
        }
        AssertSqlSafe(sql)
    }
}

/// Fills the schema into a statement (the schema name is validated by the store).
pub fn concrete(template: &str, schema: &str) -> AssertSqlSafe<String> {
    AssertSqlSafe(template.replace("__schema__", &format!("\"{schema}\"")))
}

/// Maps a driver error to the store's error, by what the caller can do about it.
pub fn map_err(err: sqlx::Error) -> StoreError {
    let mapped = match &err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => StoreError::connection(err.to_string()),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // deadlock, serialization failure, lock_timeout
            Some("40P01") | Some("40001") | Some("55P03") => StoreError::transient(err.to_string()),
            // admin shutdown, crash shutdown, cannot connect now, connection failures
            Some(code) if code.starts_with("57P") || code.starts_with("08") => {
                StoreError::connection(err.to_string())
            }
            // disk_full
            Some("53100") => StoreError::disk_full(err.to_string()),
            _ => StoreError::database(err.to_string()),
        },
        _ => StoreError::database(err.to_string()),
    };
    mapped.caused_by(err)
}

/// A column that must be a non-negative count.
pub(crate) fn count(v: i64) -> u64 {
    v.max(0) as u64
}

/// Sends the wake-up notification inside the caller's transaction (delivered on commit).
pub async fn notify_in(conn: &mut PgConnection, schema: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(crate::CHANNEL)
        .bind(schema)
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A count or attempt number as an `int4`, saturating.
pub(crate) fn to_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// When a new job is due: an instant, or a delay from the database's `now()`.
pub(crate) fn split_run_at(run_at: RunAt) -> (Option<DateTime<Utc>>, Option<i64>) {
    match run_at {
        RunAt::Now => (None, None),
        RunAt::After(delay) => (None, Some(ms(delay))),
        RunAt::At(at) => (Some(at), None),
    }
}

/// JSON text of a job's payload.
pub(crate) fn encode_payload(kind: &str, value: &Value) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Invalid(format!("payload of kind `{kind}`: {e}")))
}

/// JSON text of a job's output.
pub(crate) fn encode_output(value: &Value) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Invalid(format!("output: {e}")))
}
