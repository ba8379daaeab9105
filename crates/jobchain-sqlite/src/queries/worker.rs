//! SQL of the worker registry table, and the pending-kinds report it is read with.

use jobchain_core::registry::{PendingKind, WorkerRecord, WorkerRegistration};
use jobchain_core::StoreError;
use rusqlite::{params, Connection};

use super::{duration_ms, to_time};
use crate::map_err;

/// Inserts or refreshes a worker's record.
pub fn register(conn: &Connection, now: i64, w: &WorkerRegistration) -> Result<(), StoreError> {
    let queues = encode(&w.queues)?;
    let kinds = encode(&w.kinds)?;
    conn.prepare_cached(
        "INSERT INTO jobchain_workers (id, host, pid, queues, kinds, started_at, last_seen, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7) \
         ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, \
           queues = excluded.queues, kinds = excluded.kinds, last_seen = excluded.last_seen, \
           expires_at = excluded.expires_at",
    )
    .map_err(map_err)?
    .execute(params![
        w.id,
        w.host,
        w.pid,
        queues,
        kinds,
        now,
        now + duration_ms(w.ttl)
    ])
    .map_err(map_err)?;
    Ok(())
}

/// Removes a worker's record.
pub fn deregister(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM jobchain_workers WHERE id = ?1")
        .map_err(map_err)?
        .execute([id])
        .map_err(map_err)?;
    Ok(())
}

/// Deletes expired records.
pub fn expire(conn: &Connection, now: i64) -> Result<u64, StoreError> {
    let deleted = conn
        .prepare_cached("DELETE FROM jobchain_workers WHERE expires_at <= ?1")
        .map_err(map_err)?
        .execute([now])
        .map_err(map_err)?;
    Ok(deleted as u64)
}

/// The live workers, by id.
pub fn live(conn: &Connection, now: i64) -> Result<Vec<WorkerRecord>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, host, pid, queues, kinds, started_at, last_seen, expires_at \
             FROM jobchain_workers WHERE expires_at > ?1 ORDER BY id",
        )
        .map_err(map_err)?;
    let rows = stmt
        .query_map([now], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, u32>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
            ))
        })
        .map_err(map_err)?;
    let mut workers = Vec::new();
    for row in rows {
        let (id, host, pid, queues, kinds, started, seen, expires) = row.map_err(map_err)?;
        workers.push(WorkerRecord {
            queues: decode(&id, &queues)?,
            kinds: decode(&id, &kinds)?,
            id,
            host,
            pid,
            started_at: to_time(started),
            last_seen: to_time(seen),
            expires_at: to_time(expires),
        });
    }
    Ok(workers)
}

/// Pending jobs by queue and kind, with the oldest's creation time.
pub fn pending_kinds(conn: &Connection) -> Result<Vec<PendingKind>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT queue, kind, count(*), min(created_at) FROM (\
                 SELECT queue, kind, created_at FROM jobchain_jobs \
                     WHERE state = 'pending' AND concurrency_key IS NULL \
                 UNION ALL SELECT queue, kind, created_at FROM jobchain_jobs \
                     WHERE state = 'pending' AND concurrency_key IS NOT NULL) \
             GROUP BY queue, kind ORDER BY queue, kind",
        )
        .map_err(map_err)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(PendingKind {
                queue: r.get(0)?,
                kind: r.get(1)?,
                count: r.get::<_, i64>(2)?.max(0) as u64,
                oldest: to_time(r.get(3)?),
            })
        })
        .map_err(map_err)?;
    rows.collect::<Result<_, _>>().map_err(map_err)
}

fn encode(names: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(names).map_err(|e| StoreError::Invalid(format!("worker names: {e}")))
}

fn decode(id: &str, json: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::corrupt(format!("the record of worker `{id}`: {e}")).caused_by(e))
}
