//! SQL of the limit tables kept outside claims: forgetting concurrency keys that no longer
//! count, and the last tick of periodic jobs. (Claims under limits are the functions of
//! migration 0010, called from `job.rs`, which also gives keys their ranks.)

use chrono::{DateTime, Utc};
use jobchain_core::StoreError;
use sqlx::PgConnection;

use super::{map_err, Sql};

/// Forgets up to `limit` keys whose last rank is not above their kind's floor: their next
/// job would get the floor's next rank without them too.
pub async fn prune_keys(
    conn: &mut PgConnection,
    sql: &Sql,
    limit: usize,
) -> Result<u64, StoreError> {
    let done = sqlx::query(sql.get(
        "DELETE FROM __schema__.limit_keys WHERE (scope, key) IN (SELECT lk.scope, lk.key \
         FROM __schema__.limit_keys lk JOIN __schema__.limit_scopes s ON s.scope = lk.scope \
         WHERE lk.last_rank <= s.floor LIMIT $1) \
         AND last_rank <= (SELECT floor FROM __schema__.limit_scopes s \
             WHERE s.scope = limit_keys.scope)",
    ))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .execute(conn)
    .await
    .map_err(map_err)?;
    Ok(done.rows_affected())
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
