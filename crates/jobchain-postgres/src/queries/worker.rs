//! SQL of the worker registry table, and the pending-kinds report it is read with.

use chrono::{DateTime, Utc};
use jobchain_core::registry::{PendingKind, WorkerRecord, WorkerRegistration};
use jobchain_core::StoreError;
use sqlx::{PgConnection, Row};

use super::{count, map_err, Sql};

/// Inserts or refreshes a worker's record; times are the database's.
pub async fn register(
    conn: &mut PgConnection,
    sql: &Sql,
    w: &WorkerRegistration,
) -> Result<(), StoreError> {
    let statement = sql.get(
        "INSERT INTO __schema__.workers (id, host, pid, queues, kinds, started_at, last_seen, expires_at) \
         VALUES ($1, $2, $3, $4, $5, now(), now(), now() + $6 * interval '1 millisecond') \
         ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, \
           queues = excluded.queues, kinds = excluded.kinds, last_seen = excluded.last_seen, \
           expires_at = excluded.expires_at",
    );
    sqlx::query(statement)
        .bind(&w.id)
        .bind(&w.host)
        .bind(i32::try_from(w.pid).unwrap_or(i32::MAX))
        .bind(&w.queues)
        .bind(&w.kinds)
        .bind(i64::try_from(w.ttl.as_millis()).unwrap_or(i64::MAX))
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// Removes a worker's record.
pub async fn deregister(conn: &mut PgConnection, sql: &Sql, id: &str) -> Result<(), StoreError> {
    sqlx::query(sql.get("DELETE FROM __schema__.workers WHERE id = $1"))
        .bind(id)
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// Deletes expired records.
pub async fn expire(conn: &mut PgConnection, sql: &Sql) -> Result<u64, StoreError> {
    let done = sqlx::query(sql.get("DELETE FROM __schema__.workers WHERE expires_at <= now()"))
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(done.rows_affected())
}

/// The live workers, by id.
pub async fn live(conn: &mut PgConnection, sql: &Sql) -> Result<Vec<WorkerRecord>, StoreError> {
    let rows = sqlx::query(sql.get(
        "SELECT id, host, pid, queues, kinds, started_at, last_seen, expires_at \
         FROM __schema__.workers WHERE expires_at > now() ORDER BY id",
    ))
    .fetch_all(conn)
    .await
    .map_err(map_err)?;
    rows.iter()
        .map(|r| {
            Ok(WorkerRecord {
                id: r.try_get(0).map_err(map_err)?,
                host: r.try_get(1).map_err(map_err)?,
                pid: r.try_get::<i32, _>(2).map_err(map_err)?.max(0) as u32,
                queues: r.try_get(3).map_err(map_err)?,
                kinds: r.try_get(4).map_err(map_err)?,
                started_at: r.try_get::<DateTime<Utc>, _>(5).map_err(map_err)?,
                last_seen: r.try_get::<DateTime<Utc>, _>(6).map_err(map_err)?,
                expires_at: r.try_get::<DateTime<Utc>, _>(7).map_err(map_err)?,
            })
        })
        .collect()
}

/// Pending jobs by queue and kind, with the oldest's creation time.
pub async fn pending_kinds(
    conn: &mut PgConnection,
    sql: &Sql,
) -> Result<Vec<PendingKind>, StoreError> {
    let rows = sqlx::query(sql.get(
        "SELECT queue, kind, count(*), min(created_at) FROM __schema__.jobs \
         WHERE state = 'pending' GROUP BY queue, kind ORDER BY queue, kind",
    ))
    .fetch_all(conn)
    .await
    .map_err(map_err)?;
    rows.iter()
        .map(|r| {
            Ok(PendingKind {
                queue: r.try_get(0).map_err(map_err)?,
                kind: r.try_get(1).map_err(map_err)?,
                count: count(r.try_get(2).map_err(map_err)?),
                oldest: r.try_get(3).map_err(map_err)?,
            })
        })
        .collect()
}
