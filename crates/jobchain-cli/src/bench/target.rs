//! Where a workload runs: a fresh temp SQLite file, or a fresh PostgreSQL schema.

use jobchain::Client;

use crate::CliError;

/// A fresh store for one workload.
pub struct Target {
    /// What `Client::open` and worker processes are given.
    pub location: String,
    /// "sqlite" or "postgres".
    pub store: &'static str,
    /// The database's version.
    pub version: String,
    cleanup: Cleanup,
}

enum Cleanup {
    None,
    Dir(std::path::PathBuf),
    Schema { url: String, schema: String },
}

impl Target {
    /// A new SQLite file in a temp folder, or a new schema in the PostgreSQL at `database`.
    pub async fn create(database: Option<&str>, workload: &str) -> Result<Self, CliError> {
        match database {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                let schema = format!(
                    "jobchain_bench_{}_{}",
                    std::process::id(),
                    workload.to_ascii_lowercase()
                );
                let separator = if url.contains('?') { '&' } else { '?' };
                let location = format!("{url}{separator}jobchain_schema={schema}");
                let pg = jobchain::postgres::connect_url(&location).await?;
                let pool = pg.pool();
                let version: String = jobchain::postgres::sqlx::query_scalar("SHOW server_version")
                    .fetch_one(pool)
                    .await
                    .map_err(|e| CliError::failed(format!("cannot read the server version: {e}")))?;
                pg.close().await;
                Ok(Target {
                    location,
                    store: "postgres",
                    version,
                    cleanup: Cleanup::Schema {
                        url: url.to_string(),
                        schema,
                    },
                })
            }
            Some(other) => Err(CliError::failed(format!(
                "--database takes a postgres:// URL (SQLite runs on a temp file by default), not `{other}`"
            ))),
            None => {
                let dir = std::env::temp_dir().join(format!(
                    "jobchain-bench-{}-{}",
                    std::process::id(),
                    workload.to_ascii_lowercase()
                ));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| CliError::failed(format!("cannot create {}: {e}", dir.display())))?;
                Ok(Target {
                    location: dir.join("bench.db").to_string_lossy().into_owned(),
                    store: "sqlite",
                    version: jobchain::sqlite::sqlite_version().to_string(),
                    cleanup: Cleanup::Dir(dir),
                })
            }
        }
    }

    /// A SQLite file at `path`, whose folder the caller owns and removes.
    pub fn sqlite_at(path: &std::path::Path) -> Self {
        Target {
            location: path.to_string_lossy().into_owned(),
            store: "sqlite",
            version: jobchain::sqlite::sqlite_version().to_string(),
            cleanup: Cleanup::None,
        }
    }

    /// The PostgreSQL URL and the target's schema; `None` on SQLite.
    pub fn postgres(&self) -> Option<(&str, &str)> {
        match &self.cleanup {
            Cleanup::Schema { url, schema } => Some((url, schema)),
            _ => None,
        }
    }

    /// Opens a client on the target.
    pub async fn client(&self) -> Result<Client, CliError> {
        Ok(jobchain::open(&self.location).await?)
    }

    /// Removes the file or drops the schema.
    pub async fn destroy(&self) {
        match &self.cleanup {
            Cleanup::None => {}
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Schema { url, schema } => {
                match jobchain::postgres::sqlx::PgPool::connect(url).await {
                    Ok(pool) => {
                        if let Err(e) = jobchain::postgres::drop_schema(&pool, schema).await {
                            eprintln!("could not drop schema {schema}: {e}");
                        }
                        pool.close().await;
                    }
                    Err(e) => eprintln!("could not drop schema {schema}: {e}"),
                }
            }
        }
    }
}
