//! SQL of the queue records table (pause and resume).

use jobchain_core::store::QueueInfo;
use jobchain_core::StoreError;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::{map_err, Sql};

fn info_from_row(r: &PgRow) -> Result<QueueInfo, sqlx::Error> {
    Ok(QueueInfo {
        name: r.try_get(0)?,
        paused: r.try_get(1)?,
        updated_at: r.try_get(2)?,
    })
}

/// Pauses or resumes a queue; returns its record.
pub async fn set_paused(
    conn: &mut PgConnection,
    sql: &Sql,
    queue: &str,
    paused: bool,
) -> Result<QueueInfo, StoreError> {
    let statement = sql.get(
        "INSERT INTO __schema__.queues (name, paused, updated_at) VALUES ($1, $2, now()) \
         ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at \
         RETURNING name, paused, updated_at",
    );
    let row = sqlx::query(statement)
        .bind(queue)
        .bind(paused)
        .fetch_one(conn)
        .await
        .map_err(map_err)?;
    info_from_row(&row).map_err(map_err)
}

/// Every queue record, by name.
pub async fn all(conn: &mut PgConnection, sql: &Sql) -> Result<Vec<QueueInfo>, StoreError> {
    let statement = sql.get("SELECT name, paused, updated_at FROM __schema__.queues ORDER BY name");
    let rows = sqlx::query(statement)
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    rows.iter()
        .map(info_from_row)
        .collect::<Result<_, _>>()
        .map_err(map_err)
}
