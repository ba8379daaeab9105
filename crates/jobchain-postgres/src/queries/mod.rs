//! All SQL of the PostgreSQL backend, one file per table.
//!
//! Statements are written against the placeholder schema `__schema__` and made
//! concrete once per store by [`Sql`]; every table name is schema-qualified, so the same
//! statements run on jobchain's pool and on a caller's own transaction.

pub mod job;
pub mod migration;
pub mod worker;
pub mod workflow;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use jobchain_core::StoreError;
use sqlx::AssertSqlSafe;

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
            // deadlock, serialization failure
            Some("40P01") | Some("40001") => StoreError::transient(err.to_string()),
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
