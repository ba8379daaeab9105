//! All SQL of the SQLite backend: one leaf file per table ([`job`] and [`transition`] on
//! jobs, [`workflow`], [`dependency`], [`worker`]), none of which uses another, and
//! [`ops`], the transactions that span tables (insert with workflows, workflow start,
//! settle, retry, cancel, cleaning).

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

use chrono::{DateTime, Utc};

/// Milliseconds since the Unix epoch, by this process's clock: the store's clock.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Milliseconds to a timestamp (out-of-range values clamp to the epoch).
pub fn to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// A duration in whole milliseconds, saturating.
pub fn duration_ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
