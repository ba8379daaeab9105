//! Versioned schema migrations, applied in order when the store opens.

use jobchain_core::StoreError;
use rusqlite::{Connection, OptionalExtension};

use crate::map_err;

/// Every migration, in order; the version is the position plus one.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_init.sql"),
    include_str!("../../migrations/0002_counts_on_read.sql"),
    include_str!("../../migrations/0003_workers.sql"),
    include_str!("../../migrations/0004_queues.sql"),
    include_str!("../../migrations/0005_keys.sql"),
    include_str!("../../migrations/0006_limits.sql"),
    include_str!("../../migrations/0007_periodic.sql"),
    include_str!("../../migrations/0008_fair_ranks.sql"),
    include_str!("../../migrations/0009_waits.sql"),
    include_str!("../../migrations/0010_conditions.sql"),
    include_str!("../../migrations/0011_claim_index_unkeyed.sql"),
    include_str!("../../migrations/0012_builtin_claim_index.sql"),
];

/// The schema version this build writes.
pub const LATEST: i64 = MIGRATIONS.len() as i64;

/// Applies the migrations this database lacks, each in its own transaction. A database
/// from a newer jobchain is refused, and one that is not jobchain's is left alone.
pub fn run(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS jobchain_migrations (
            version INTEGER PRIMARY KEY,
            applied_at INTEGER NOT NULL
        )",
    )
    .map_err(map_err)?;
    let current = current_version(conn)?;
    if current > LATEST {
        return Err(StoreError::corrupt(format!(
            "the database has schema version {current}, newer than this jobchain's {LATEST}: upgrade jobchain"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i64 + 1;
        conn.execute_batch("BEGIN IMMEDIATE").map_err(map_err)?;
        // Re-check under the write lock: another process may have migrated meanwhile.
        if current_version(conn)? >= version {
            conn.execute_batch("COMMIT").map_err(map_err)?;
            continue;
        }
        let applied = conn.execute_batch(sql).and_then(|()| {
            conn.execute(
                "INSERT INTO jobchain_migrations (version, applied_at) VALUES (?1, ?2)",
                (version, super::now_ms()),
            )
        });
        match applied {
            Ok(_) => conn.execute_batch("COMMIT").map_err(map_err)?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(StoreError::database(format!(
                    "migration {version} failed: {e}"
                )));
            }
        }
    }
    Ok(())
}

/// The applied schema version (0 for a new database).
pub fn current_version(conn: &Connection) -> Result<i64, StoreError> {
    conn.query_row("SELECT max(version) FROM jobchain_migrations", [], |r| {
        r.get::<_, Option<i64>>(0)
    })
    .optional()
    .map_err(map_err)
    .map(|v| v.flatten().unwrap_or(0))
}
