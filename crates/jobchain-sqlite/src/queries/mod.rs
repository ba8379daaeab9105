//! All SQL of the SQLite backend, one file per table.

pub mod job;
pub mod migration;
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
