//! The jobchain [`Store`](jobchain_core::Store) on an embedded SQLite file.
//!
//! - **One writer thread** owns the write connection and group-commits every operation
//!   queued at the moment into one transaction (see [`writer`]); callers are answered
//!   only after the commit, so a returned enqueue is durable.
//! - **Readers** use their own connections from a small pool, in WAL mode, so reads never
//!   wait for the writer.
//! - **Durability**: `synchronous=NORMAL` (the default) survives a crash of the process;
//!   a power loss may lose the last commits. `synchronous=FULL` survives power loss too,
//!   at the cost of an fsync per group commit. See [`Synchronous`].
//! - The schema is versioned and migrated when the store opens ([`queries::migration`]).
//! - Several processes may share one file (a worker and the `jobchain` command); the busy
//!   timeout makes them take turns, and `PRAGMA data_version` tells idle workers that
//!   another process committed.

mod queries;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use jobchain_core::StoreError;
use rusqlite::{Connection, OpenFlags};

pub use jobchain_core::store::Store;

mod store_impl;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any location is a path with options or an error that says what to give.
        #[test]
        fn any_location_parses_or_says_why(location in "\\PC{0,80}") {
            match SqliteOptions::from_location(&location) {
                Ok((path, _)) => prop_assert!(!path.as_os_str().is_empty()),
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }

    #[test]
    fn locations_parse_into_a_path_and_options() {
        let (path, options) =
            SqliteOptions::from_location("sqlite:jobs.db?synchronous=full").unwrap();
        assert_eq!(path, PathBuf::from("jobs.db"));
        assert_eq!(options.synchronous, Synchronous::Full);
        let (path, options) =
            SqliteOptions::from_location("/tmp/a b.db?busy_timeout_ms=250").unwrap();
        assert_eq!(path, PathBuf::from("/tmp/a b.db"));
        assert_eq!(options.busy_timeout, Duration::from_millis(250));
        for (bad, says) in [
            (
                "jobs.db?synchronous=off",
                "unknown option `synchronous=off`",
            ),
            ("jobs.db?busy_timeout_ms=soon", "busy_timeout_ms=`soon`"),
            ("mysql://h/db", "not a SQLite location"),
            ("sqlite:", "names no file"),
            ("", "names no file"),
            (":memory:", "in-memory database"),
            ("sqlite::memory:", "in-memory database"),
            ("postgres:/host/db", "looks like a PostgreSQL URL"),
        ] {
            let err = SqliteOptions::from_location(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}

/// The version of the bundled SQLite library.
pub fn sqlite_version() -> &'static str {
    rusqlite::version()
}

/// The `synchronous` setting of the database: the durability trade-off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// Survives a crash of the process, not necessarily a power loss; fastest.
    #[default]
    Normal,
    /// Survives power loss: an fsync at every (group) commit.
    Full,
}

/// How to open a SQLite store.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// Durability setting; see [`Synchronous`].
    pub synchronous: Synchronous,
    /// How long a statement waits for another process's lock before failing with
    /// [`StoreError::Locked`].
    pub busy_timeout: Duration,
    /// Read connections kept open.
    pub readers: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(5),
            readers: 4,
        }
    }
}

impl SqliteOptions {
    /// Parses a location: a file path, `sqlite:PATH` or `sqlite://PATH`, optionally with
    /// `?synchronous=normal|full` and `busy_timeout_ms=N`. Returns the path and the
    /// options.
    pub fn from_location(location: &str) -> Result<(PathBuf, SqliteOptions), StoreError> {
        let rest = location
            .strip_prefix("sqlite://")
            .or_else(|| location.strip_prefix("sqlite:"))
            .unwrap_or(location);
        if location.starts_with("postgres:") || location.starts_with("postgresql:") {
            return Err(StoreError::Invalid(format!(
                "`{location}` looks like a PostgreSQL URL but is not one: write postgres://USER@HOST:PORT/DATABASE"
            )));
        }
        if rest == ":memory:" || rest.starts_with("file::memory:") {
            return Err(StoreError::Invalid(format!(
                "`{location}` is an in-memory database, which vanishes with the process and is not shared with workers: give the path of a database file"
            )));
        }
        if rest.contains("://") {
            return Err(StoreError::Invalid(format!(
                "`{location}` is not a SQLite location: give a file path, sqlite:PATH, or a postgres:// URL"
            )));
        }
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() {
            return Err(StoreError::Invalid(format!(
                "`{location}` names no file: give the path of a database file (it is created when missing)"
            )));
        }
        let mut options = SqliteOptions::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("synchronous", "full")) => options.synchronous = Synchronous::Full,
                Some(("synchronous", "normal")) => options.synchronous = Synchronous::Normal,
                Some(("busy_timeout_ms", ms)) => {
                    let ms: u64 = ms.parse().map_err(|_| {
                        StoreError::Invalid(format!(
                            "busy_timeout_ms=`{ms}`: give a whole number of milliseconds"
                        ))
                    })?;
                    options.busy_timeout = Duration::from_millis(ms);
                }
                _ => {
                    return Err(StoreError::Invalid(format!(
                        "{location}: unknown option `{pair}` (use synchronous=normal, synchronous=full or busy_timeout_ms=N)"
                    )))
                }
            }
        }
        Ok((PathBuf::from(path), options))
    }
}

/// A jobchain store on one SQLite file. Cheap to clone; clones share the writer.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    options: SqliteOptions,
    sender: RwLock<Option<mpsc::Sender<writer::WriteOp>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    marker: Mutex<Option<Connection>>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `path` and migrates it.
    ///
    /// A file that is not a SQLite database, is corrupt, or carries a newer jobchain
    /// schema is refused with an error and left untouched.
    pub fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let conn = open_connection(&path, &options, true)?;
        queries::migration::run(&conn).map_err(|e| annotate(&path, e))?;
        let (sender, receiver) = mpsc::channel();
        let handle = writer::spawn(conn, receiver).map_err(|e| {
            StoreError::open(
                path.display().to_string(),
                format!("cannot start the writer thread: {e}"),
            )
            .caused_by(e)
        })?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                options,
                sender: RwLock::new(Some(sender)),
                writer: Mutex::new(Some(handle)),
                readers: Mutex::new(Vec::new()),
                marker: Mutex::new(None),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `op` on the write connection in the next group commit, in a savepoint of its
    /// own; answers after commit.
    pub(crate) async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_op(false, op).await
    }

    /// Like [`write`](Self::write) for an operation that runs exactly one SQL statement,
    /// which is atomic by itself and needs no savepoint.
    pub(crate) async fn write_statement<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_op(true, op).await
    }

    async fn write_op<T, F>(&self, single_statement: bool, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let run: writer::WriteFn = Box::new(move |conn| {
            let result = match conn {
                Ok(conn) => op(conn),
                Err(e) => Err(e.clone()),
            };
            let ok = result.is_ok();
            let reply: writer::Reply = Box::new(move |commit| {
                let _ = tx.send(match commit {
                    Ok(()) => result,
                    Err(e) if ok => Err(e.clone()),
                    Err(_) => result,
                });
            });
            (ok, reply)
        });
        let job = writer::WriteOp {
            single_statement,
            run,
        };
        {
            let guard = self.inner.sender.read().map_err(|_| StoreError::Closed)?;
            let sender = guard.as_ref().ok_or(StoreError::Closed)?;
            sender.send(job).map_err(|_| StoreError::Closed)?;
        }
        rx.await
            .map_err(|_| StoreError::Closed)?
            .map_err(|e| annotate(&self.inner.path, e))
    }

    /// Runs `op` on a read connection on the blocking pool.
    pub(crate) async fn read<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            if inner.sender.read().map(|s| s.is_none()).unwrap_or(true) {
                return Err(StoreError::Closed);
            }
            let pooled = inner.readers.lock().ok().and_then(|mut r| r.pop());
            let conn = match pooled {
                Some(conn) => conn,
                None => open_connection(&inner.path, &inner.options, false)?,
            };
            let result = op(&conn).map_err(|e| annotate(&inner.path, e));
            if let Ok(mut readers) = inner.readers.lock() {
                if readers.len() < inner.options.readers {
                    readers.push(conn);
                }
            }
            result
        })
        .await
        .map_err(|e| StoreError::database(format!("read task failed: {e}")).caused_by(e))?
    }

    /// `PRAGMA data_version` on a dedicated connection: changes when another connection
    /// commits.
    pub(crate) async fn data_version(&self) -> Result<u64, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = inner
                .marker
                .lock()
                .map_err(|_| StoreError::database("marker connection poisoned"))?;
            if guard.is_none() {
                *guard = Some(open_connection(&inner.path, &inner.options, false)?);
            }
            let conn = guard.as_ref().ok_or(StoreError::Closed)?;
            conn.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0))
                .map(|v| v as u64)
                .map_err(map_err)
        })
        .await
        .map_err(|e| StoreError::database(format!("read task failed: {e}")).caused_by(e))?
    }

    /// Stops the writer after the operations already queued, and drops connections.
    pub(crate) fn shutdown(&self) {
        if let Ok(mut sender) = self.inner.sender.write() {
            sender.take();
        }
        let handle = self.inner.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
        if let Ok(mut readers) = self.inner.readers.lock() {
            readers.clear();
        }
        if let Ok(mut marker) = self.inner.marker.lock() {
            marker.take();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut sender) = self.sender.write() {
            sender.take();
        }
        if let Some(handle) = self.writer.get_mut().ok().and_then(Option::take) {
            let _ = handle.join();
        }
    }
}

/// Opens one connection with the store's pragmas. The first read checks that the file is
/// a SQLite database before anything is written to it.
/// Creates a missing database file readable and writable by its owner only (payloads
/// may hold private data); SQLite gives its journal files the same mode. An existing
/// file keeps its mode.
fn create_private(path: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    // An existing file (AlreadyExists), a missing folder or no permission: SQLite's own
    // open then keeps the file, or says what is wrong in its words.
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
}

fn open_connection(
    path: &Path,
    options: &SqliteOptions,
    create: bool,
) -> Result<Connection, StoreError> {
    let location = path.display().to_string();
    if path.is_dir() {
        return Err(StoreError::open(
            location,
            "it is a directory: give the path of a database file (it is created when missing)",
        ));
    }
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
        create_private(path);
    }
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        StoreError::open(
            location.clone(),
            format!("{e}: check that the folder exists and is writable"),
        )
        .caused_by(e)
    })?;
    conn.busy_timeout(options.busy_timeout)
        .map_err(|e| annotate(path, map_err(e)))?;
    // Reads the header: fails with "not a database" before anything is written.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(|e| annotate(path, map_err(e)))?;
    let sync = match options.synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON; \
         PRAGMA temp_store = MEMORY; PRAGMA cache_size = -16000;"
    ))
    .map_err(|e| annotate(path, map_err(e)))?;
    Ok(conn)
}

fn annotate(path: &Path, err: StoreError) -> StoreError {
    match err {
        StoreError::Corrupt { message, source } => StoreError::Corrupt {
            message: format!(
                "{}: {message}; point jobchain at a jobchain database or at a new file",
                path.display()
            ),
            source,
        },
        StoreError::Locked { message, source } => StoreError::Locked {
            message: format!("{}: {message}", path.display()),
            source,
        },
        StoreError::DiskFull { message, source } => StoreError::DiskFull {
            message: format!("{}: {message}", path.display()),
            source,
        },
        other => other,
    }
}

/// Maps a SQLite error to the store's error, by what the caller can do about it.
pub(crate) fn map_err(err: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::locked(err.to_string())
        }
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            StoreError::corrupt(format!("not a SQLite database or corrupt ({err})"))
        }
        Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => {
            StoreError::open(String::new(), err.to_string())
        }
        Some(ErrorCode::DiskFull) => StoreError::disk_full(err.to_string()),
        _ => StoreError::database(err.to_string()),
    }
    .caused_by(err)
}
