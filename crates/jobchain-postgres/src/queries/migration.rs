//! Versioned schema migrations, applied under an advisory lock so that processes starting
//! together migrate once.

use jobchain_core::StoreError;
use sqlx::PgPool;

use super::{concrete, map_err};

/// Every migration, in order; the version is the position plus one.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_init.sql"),
    include_str!("../../migrations/0002_counts_on_read.sql"),
    include_str!("../../migrations/0003_no_foreign_keys.sql"),
    include_str!("../../migrations/0004_workers.sql"),
    include_str!("../../migrations/0005_sql_api.sql"),
    include_str!("../../migrations/0006_queues.sql"),
    include_str!("../../migrations/0007_keys.sql"),
    include_str!("../../migrations/0008_limits.sql"),
    include_str!("../../migrations/0009_periodic.sql"),
    include_str!("../../migrations/0010_fair_ranks.sql"),
    include_str!("../../migrations/0011_waits.sql"),
    include_str!("../../migrations/0012_conditions.sql"),
    include_str!("../../migrations/0013_claim_paths.sql"),
    include_str!("../../migrations/0014_complete_batch.sql"),
    include_str!("../../migrations/0015_claim_on_settle.sql"),
];

/// The schema version this build writes.
pub const LATEST: i32 = MIGRATIONS.len() as i32;

/// Creates the schema if needed and applies the migrations it lacks, in one transaction.
pub async fn run(pool: &PgPool, schema: &str) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(map_err)?;
    // Processes that start together wait for the first one's migration, however long it
    // takes: the pool's `lock_timeout` is for work, not for this.
    sqlx::query("SET LOCAL lock_timeout = 0")
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('jobchain.migrate.' || $1))")
        .bind(schema)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    sqlx::raw_sql(concrete(
        "CREATE SCHEMA IF NOT EXISTS __schema__;
         CREATE TABLE IF NOT EXISTS __schema__.migrations (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
        schema,
    ))
    .execute(&mut *tx)
    .await
    .map_err(map_err)?;
    let current: i32 = sqlx::query_scalar(concrete(
        "SELECT coalesce(max(version), 0) FROM __schema__.migrations",
        schema,
    ))
    .fetch_one(&mut *tx)
    .await
    .map_err(map_err)?;
    if current > LATEST {
        return Err(StoreError::corrupt(format!(
            "schema `{schema}` has version {current}, newer than this jobchain's {LATEST}: upgrade jobchain"
        )));
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i32 + 1;
        sqlx::raw_sql(concrete(migration, schema))
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                StoreError::database(format!("migration {version} failed: {e}")).caused_by(e)
            })?;
        sqlx::query(concrete(
            "INSERT INTO __schema__.migrations (version) VALUES ($1)",
            schema,
        ))
        .bind(version)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    }
    tx.commit().await.map_err(map_err)
}

/// Drops the schema with everything in it (tests and `jobchain bench`).
pub async fn drop_schema(pool: &PgPool, schema: &str) -> Result<(), StoreError> {
    sqlx::raw_sql(concrete("DROP SCHEMA IF EXISTS __schema__ CASCADE", schema))
        .execute(pool)
        .await
        .map_err(map_err)?;
    Ok(())
}
