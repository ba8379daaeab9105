//! SQL of the queue records table (pause and resume).

use jobchain_core::store::QueueInfo;
use jobchain_core::StoreError;
use rusqlite::{params, Connection, Row};

use super::to_time;
use crate::map_err;

fn info_from_row(r: &Row<'_>) -> rusqlite::Result<QueueInfo> {
    Ok(QueueInfo {
        name: r.get(0)?,
        paused: r.get(1)?,
        updated_at: to_time(r.get(2)?),
    })
}

/// Pauses or resumes a queue; returns its record.
pub fn set_paused(
    conn: &Connection,
    now: i64,
    queue: &str,
    paused: bool,
) -> Result<QueueInfo, StoreError> {
    conn.prepare_cached(
        "INSERT INTO jobchain_queues (name, paused, updated_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at \
         RETURNING name, paused, updated_at",
    )
    .and_then(|mut s| s.query_row(params![queue, paused, now], info_from_row))
    .map_err(map_err)
}

/// Every queue record, by name.
pub fn all(conn: &Connection) -> Result<Vec<QueueInfo>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT name, paused, updated_at FROM jobchain_queues ORDER BY name")
        .map_err(map_err)?;
    let rows = stmt.query_map([], info_from_row).map_err(map_err)?;
    rows.collect::<Result<_, _>>().map_err(map_err)
}
