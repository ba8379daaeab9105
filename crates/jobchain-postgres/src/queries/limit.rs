//! SQL of the limit tables: a lock row per limited scope, the starts of rate-limited
//! scopes, and the last tick of periodic jobs (the round-robin order of concurrency keys
//! is kept by the keyed claim itself, in `job.rs`).

use chrono::{DateTime, Utc};
use jobchain_core::StoreError;
use sqlx::PgConnection;

use super::{map_err, ms, Sql};

/// Locks the scopes' rows (created on first use), in name order so that two claims never
/// wait on each other crosswise; returns the instant after the locks, which the claim
/// counts and records at.
pub async fn lock_scopes(
    conn: &mut PgConnection,
    sql: &Sql,
    scopes: &[String],
) -> Result<DateTime<Utc>, StoreError> {
    let mut sorted = scopes.to_vec();
    sorted.sort();
    sorted.dedup();
    // One round trip in the common case: lock the rows, then read the clock (evaluated
    // once the locks are held). The first claim of a scope creates its row and locks again.
    let lock =
        "SELECT count(*), clock_timestamp() FROM (SELECT scope FROM __schema__.limit_scopes \
        WHERE scope = ANY($1) ORDER BY scope FOR UPDATE) AS locked";
    let (locked, at): (i64, DateTime<Utc>) = sqlx::query_as(sql.get(lock))
        .bind(&sorted)
        .fetch_one(&mut *conn)
        .await
        .map_err(map_err)?;
    if locked as usize == sorted.len() {
        return Ok(at);
    }
    sqlx::query(sql.get(
        "INSERT INTO __schema__.limit_scopes (scope) SELECT unnest($1::text[]) \
         ON CONFLICT DO NOTHING",
    ))
    .bind(&sorted)
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    let (_, at): (i64, DateTime<Utc>) = sqlx::query_as(sql.get(lock))
        .bind(&sorted)
        .fetch_one(conn)
        .await
        .map_err(map_err)?;
    Ok(at)
}

/// Starts recorded for `scope` within `period` before `at`.
pub async fn starts_within(
    conn: &mut PgConnection,
    sql: &Sql,
    scope: &str,
    at: DateTime<Utc>,
    period: std::time::Duration,
) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query_scalar(sql.get(
        "SELECT coalesce(sum(count), 0)::int8 FROM __schema__.limit_starts \
         WHERE scope = $1 AND at > $2 - $3 * interval '1 millisecond'",
    ))
    .bind(scope)
    .bind(at)
    .bind(ms(period))
    .fetch_one(conn)
    .await
    .map_err(map_err)?;
    Ok(n as u64)
}

/// Records `count` starts of `scope` at `at`, and forgets those older than `period`.
pub async fn record_starts(
    conn: &mut PgConnection,
    sql: &Sql,
    scope: &str,
    at: DateTime<Utc>,
    count: usize,
    period: std::time::Duration,
) -> Result<(), StoreError> {
    sqlx::query(sql.get(
        "WITH gone AS (DELETE FROM __schema__.limit_starts \
             WHERE scope = $1 AND at <= $2 - $3 * interval '1 millisecond') \
         INSERT INTO __schema__.limit_starts (scope, at, count) SELECT $1, $2, $4 WHERE $4 > 0",
    ))
    .bind(scope)
    .bind(at)
    .bind(ms(period))
    .bind(i32::try_from(count).unwrap_or(i32::MAX))
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(())
}

/// The last tick taken of periodic job `name`.
pub async fn periodic_last(
    conn: &mut PgConnection,
    sql: &Sql,
    name: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    sqlx::query_scalar(sql.get("SELECT last_tick FROM __schema__.periodic WHERE name = $1"))
        .bind(name)
        .fetch_optional(conn)
        .await
        .map_err(map_err)
}

/// Records `tick` as the last of periodic job `name` if it is later than the last one;
/// returns whether it was. The row lock makes racing workers take turns.
pub async fn advance_tick(
    conn: &mut PgConnection,
    sql: &Sql,
    name: &str,
    tick: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(sql.get(
        "INSERT INTO __schema__.periodic (name, last_tick) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET last_tick = excluded.last_tick \
         WHERE periodic.last_tick < excluded.last_tick",
    ))
    .bind(name)
    .bind(tick)
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(done.rows_affected() > 0)
}
