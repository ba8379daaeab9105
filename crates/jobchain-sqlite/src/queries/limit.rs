//! SQL of the limit tables: the starts of rate-limited scopes, the floors of fairness
//! ranks and the last ranks of concurrency keys (given and read in `job.rs`), and the last
//! tick of periodic jobs.

use jobchain_core::StoreError;
use rusqlite::{params, Connection};

use super::duration_ms;
use crate::map_err;

/// Starts recorded for `scope` after `since` (milliseconds).
pub fn starts_since(conn: &Connection, scope: &str, since: i64) -> Result<u64, StoreError> {
    conn.prepare_cached(
        "SELECT coalesce(sum(count), 0) FROM jobchain_limit_starts WHERE scope = ?1 AND at > ?2",
    )
    .and_then(|mut s| s.query_row(params![scope, since], |r| r.get::<_, i64>(0)))
    .map(|n| n as u64)
    .map_err(map_err)
}

/// Records `count` starts of `scope` at `now`, and forgets those older than `period`.
pub fn record_starts(
    conn: &Connection,
    scope: &str,
    now: i64,
    count: usize,
    period: std::time::Duration,
) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM jobchain_limit_starts WHERE scope = ?1 AND at <= ?2")
        .and_then(|mut s| s.execute(params![scope, now - duration_ms(period)]))
        .map_err(map_err)?;
    if count > 0 {
        conn.prepare_cached(
            "INSERT INTO jobchain_limit_starts (scope, at, count) VALUES (?1, ?2, ?3)",
        )
        .and_then(|mut s| s.execute(params![scope, now, count as i64]))
        .map_err(map_err)?;
    }
    Ok(())
}

/// Raises the floor of `scope` to `rank` (the highest rank a claim took).
pub fn raise_floor(conn: &Connection, scope: &str, rank: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO jobchain_limit_floors (scope, floor) VALUES (?1, ?2) \
         ON CONFLICT (scope) DO UPDATE SET floor = excluded.floor WHERE floor < excluded.floor",
    )
    .and_then(|mut s| s.execute(params![scope, rank]))
    .map_err(map_err)?;
    Ok(())
}

/// Forgets up to `limit` keys whose last rank is not above their kind's floor: their next
/// job would get the floor's next rank without them too.
pub fn prune_keys(conn: &Connection, limit: usize) -> Result<u64, StoreError> {
    conn.prepare_cached(
        "DELETE FROM jobchain_limit_keys WHERE rowid IN (SELECT lk.rowid \
         FROM jobchain_limit_keys lk JOIN jobchain_limit_floors f ON f.scope = lk.scope \
         WHERE lk.last_rank <= f.floor LIMIT ?1)",
    )
    .and_then(|mut s| s.execute([limit as i64]))
    .map(|n| n as u64)
    .map_err(map_err)
}

/// The last tick taken of periodic job `name` (milliseconds).
pub fn periodic_last(conn: &Connection, name: &str) -> Result<Option<i64>, StoreError> {
    use rusqlite::OptionalExtension;
    conn.prepare_cached("SELECT last_tick FROM jobchain_periodic WHERE name = ?1")
        .and_then(|mut s| s.query_row([name], |r| r.get(0)).optional())
        .map_err(map_err)
}

/// Records `tick` as the last of periodic job `name` if it is later than the last one;
/// returns whether it was.
pub fn advance_tick(conn: &Connection, name: &str, tick: i64) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached(
            "INSERT INTO jobchain_periodic (name, last_tick) VALUES (?1, ?2) \
             ON CONFLICT (name) DO UPDATE SET last_tick = excluded.last_tick \
             WHERE jobchain_periodic.last_tick < excluded.last_tick",
        )
        .and_then(|mut s| s.execute(params![name, tick]))
        .map_err(map_err)?;
    Ok(changed > 0)
}
