//! The jobchain [`Store`](jobchain_core::Store) on PostgreSQL.
//!
//! - **Claims** take `FOR UPDATE SKIP LOCKED` rows in one statement per batch, so any
//!   number of workers on any number of machines share one queue without blocking each
//!   other.
//! - **Settlements** of a batch (completions with their follow-ups, retries, deaths,
//!   releases and the dependency updates they cause) are applied with a fixed number of
//!   set-based statements in one transaction, whatever the batch size.
//! - **Wake-ups**: after a write that made jobs available, the store sends
//!   `NOTIFY jobchain_jobs` with the schema name, on its own and at most every few
//!   milliseconds; idle workers `LISTEN`, with polling as the fall-back. (A `NOTIFY`
//!   inside every write transaction would serialize all commits on PostgreSQL's
//!   notification lock.) Enqueues on the caller's transaction notify within it, so the
//!   notification is sent when, and only if, it commits.
//! - **Time** that decides leases, schedules and back-offs is the database's `now()`, so
//!   workers with skewed clocks cannot steal or strand jobs.
//! - **Transactional enqueue**: [`PgStore::enqueue_in`] and [`PgStore::start_workflow_in`]
//!   write jobs on the caller's own connection or transaction, so a business row and its
//!   jobs commit or roll back together.
//! - Everything lives in one schema (default `jobchain`), created and migrated on
//!   connect under an advisory lock, so concurrent processes migrate safely.

mod grouped;
mod queries;
mod store_impl;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jobchain_core::job::NewJob;
use jobchain_core::store::Enqueued;
use jobchain_core::workflow::{NewWorkflow, WorkflowStarted};
use jobchain_core::StoreError;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};
use tokio::sync::{Mutex, Notify};

pub use jobchain_core::store::Store;
pub use sqlx;

/// The notification channel; the payload is the schema name.
pub const CHANNEL: &str = "jobchain_jobs";

/// How to connect.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// Schema holding jobchain's tables (created when missing).
    pub schema: String,
    /// Most pooled connections.
    pub max_connections: u32,
    /// How long to wait for a pooled connection.
    pub acquire_timeout: Duration,
    /// The server ends a session of this pool that stays idle inside a transaction for
    /// longer, which frees the row locks it holds: a worker stopped (SIGSTOP, a frozen
    /// VM) or cut off in the middle of a settle costs the queue at most this long. It
    /// applies to your own transactions on [`PgStore::pool`] too. Zero turns it off.
    pub idle_in_transaction_timeout: Duration,
    /// A statement of this pool that waits longer for a row lock fails with a
    /// retryable error (jobchain's own calls are retried), so no call waits on a stalled
    /// session for longer. Zero turns it off.
    pub lock_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            schema: "jobchain".into(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
            idle_in_transaction_timeout: Duration::from_secs(10),
            lock_timeout: Duration::from_secs(5),
        }
    }
}

impl PgOptions {
    /// The session settings every connection of the pool starts with: the two timeouts,
    /// and TCP keepalives on the server's side, so that the server notices a worker
    /// whose machine vanished within about half a minute and ends its session (and its
    /// locks) instead of waiting for the operating system's two hours.
    fn session_settings(&self) -> Vec<(&'static str, String)> {
        let ms = |d: Duration| d.as_millis().min(i32::MAX as u128).to_string();
        vec![
            (
                "idle_in_transaction_session_timeout",
                ms(self.idle_in_transaction_timeout),
            ),
            ("lock_timeout", ms(self.lock_timeout)),
            ("tcp_keepalives_idle", "10".into()),
            ("tcp_keepalives_interval", "5".into()),
            ("tcp_keepalives_count", "3".into()),
        ]
    }

    /// Splits jobchain's own query parameters off a `postgres://` URL: returns the URL
    /// for the driver and the options. `jobchain_schema=NAME` picks the schema and
    /// `jobchain_max_connections=N` the pool size; every other parameter is the driver's.
    pub fn from_url(url: &str) -> Result<(String, PgOptions), StoreError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::Invalid(format!(
                "`{}` is not a PostgreSQL URL: use postgres://USER@HOST:PORT/DATABASE",
                redact(url)
            )));
        }
        let mut options = PgOptions::default();
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_string(), options));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            if let Some(schema) = pair.strip_prefix("jobchain_schema=") {
                validate_schema(schema)?;
                options.schema = schema.to_string();
            } else if let Some(n) = pair.strip_prefix("jobchain_max_connections=") {
                options.max_connections = n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    StoreError::Invalid(format!(
                        "jobchain_max_connections=`{n}`: give a whole number of at least 1"
                    ))
                })?;
            } else if pair.starts_with("jobchain_") {
                return Err(StoreError::Invalid(format!(
                    "unknown option `{pair}`: jobchain takes jobchain_schema=NAME and jobchain_max_connections=N"
                )));
            } else {
                kept.push(pair);
            }
        }
        let url = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        Ok((url, options))
    }
}

/// What to tell a user whose connection failed: a missing database names the command
/// that creates it; anything else asks whether the server runs and the URL is right.
fn connect_advice(err: &sqlx::Error, options: &PgConnectOptions) -> String {
    match err.as_database_error() {
        Some(db) if db.code().as_deref() == Some("3D000") => {
            let name = options.get_database().unwrap_or("jobchain");
            format!("database `{name}` does not exist: create it with `createdb {name}`, or fix the URL")
        }
        Some(db)
            if db.code().as_deref() == Some("28P01") || db.code().as_deref() == Some("28000") =>
        {
            format!("{}: check the user and password in the URL", db.message())
        }
        Some(db) => format!("{}: is the URL right?", db.message()),
        None => format!("{err}: is PostgreSQL running and the URL right?"),
    }
}

/// How long a pooled connection may sit idle before it is pinged on its next use.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// A jobchain store on PostgreSQL. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    wake: Arc<Notify>,
    notifier: tokio::task::JoinHandle<()>,
    /// Plain enqueues of concurrent callers go to this writer, which groups them.
    enqueues: tokio::sync::mpsc::UnboundedSender<grouped::Request>,
    enqueuer: tokio::task::JoinHandle<()>,
    sql: Arc<queries::Sql>,
    schema: String,
    /// The payload of this store's own notifications: the schema and a token of this
    /// store. Its listener ignores them: this process's workers are woken in-process.
    sender: String,
    listener: Mutex<Option<PgListener>>,
    /// Where each claim plan's last claim ended (see [`ClaimCursor`]).
    cursors: std::sync::Mutex<HashMap<CursorKey, ClaimCursor>>,
    /// Moves on whenever jobs may have become available before a cursor's position: an
    /// enqueue or release in this process, or a notification from another.
    availability: AtomicU64,
}

/// Where a plain claim ended: the last job it took, in claim order. The next claim of the
/// same queue and kinds looks after it first, within its priority, instead of stepping
/// over the claimed jobs' entries at the front of the claim index, which stay there until
/// vacuum removes them (a long drain made every claim slower as it went). It holds only
/// while nothing new may have come before it (see `availability`), and at most
/// [`CURSOR_AGE`]; a claim that comes back short from it is completed from the front.
#[derive(Clone, Copy)]
pub(crate) struct ClaimCursor {
    pub(crate) priority: i16,
    pub(crate) run_at: chrono::DateTime<chrono::Utc>,
    pub(crate) id: i64,
    availability: u64,
    /// When the chain of claims it continues began from the front.
    pub(crate) started: std::time::Instant,
}

/// A claim plan, whose cursor is kept: its queue and kinds.
pub(crate) type CursorKey = (String, Vec<String>);

/// The longest a claim cursor is followed before a claim starts from the front again:
/// what bounds the wait of a job a cursor passed over (one skipped as locked by another
/// session, or written before the cursor without a wake-up reaching this process).
const CURSOR_AGE: Duration = Duration::from_secs(1);

impl PgStore {
    /// Connects to `url`, creates the schema if needed and migrates it.
    pub async fn connect(url: &str, options: PgOptions) -> Result<Self, StoreError> {
        validate_schema(&options.schema)?;
        let connect = url
            .parse::<PgConnectOptions>()
            .map_err(|e| {
                StoreError::open(
                    redact(url),
                    format!("{e}: use postgres://USER@HOST:PORT/DATABASE"),
                )
                .caused_by(e)
            })?
            .options(options.session_settings())
            // Operators (and the chaos run) find jobchain's sessions by this name.
            .application_name(&format!("jobchain_{}", options.schema));
        // One direct attempt first: an unreachable server fails at once with the driver's
        // reason, instead of after the pool's acquire timeout.
        let probe = PgConnection::connect_with(&connect).await.map_err(|e| {
            StoreError::open(redact(url), connect_advice(&e, &connect)).caused_by(e)
        })?;
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            // The driver pings a connection as it returns to the pool, and by default again
            // before handing it out: a round trip ahead of every call (and a workflow step
            // hands on to the next in one call). Only a connection that sat idle a while is
            // pinged again; one that broke since fails its call with a retryable error and
            // is dropped.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for < PING_AFTER_IDLE {
                        return Ok(true);
                    }
                    Ok(conn.ping().await.is_ok())
                })
            })
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(|e| {
                StoreError::open(
                    redact(url),
                    format!("{e}: is PostgreSQL running and the URL right?"),
                )
                .caused_by(e)
            })?;
        let sql = Arc::new(queries::Sql::new(&options.schema));
        queries::migration::run(&pool, &options.schema).await?;
        let (enqueues, requests) = tokio::sync::mpsc::unbounded_channel();
        let enqueuer = tokio::spawn(grouped::run(pool.clone(), sql.clone(), requests));
        let wake = Arc::new(Notify::new());
        let sender = format!("{}:{}", options.schema, uuid::Uuid::now_v7().simple());
        let notifier = tokio::spawn(send_notifications(
            pool.clone(),
            sender.clone(),
            wake.clone(),
        ));
        Ok(PgStore {
            inner: Arc::new(Inner {
                pool,
                wake,
                notifier,
                enqueues,
                enqueuer,
                sql,
                schema: options.schema,
                sender,
                listener: Mutex::new(None),
                cursors: std::sync::Mutex::new(HashMap::new()),
                availability: AtomicU64::new(0),
            }),
        })
    }

    /// The connection pool (for running your own queries next to jobchain's). Its
    /// sessions carry [`PgOptions::idle_in_transaction_timeout`] and
    /// [`PgOptions::lock_timeout`]: a transaction of yours that sits idle longer than the
    /// first is ended by the server.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The schema holding jobchain's tables.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    pub(crate) fn sql(&self) -> &queries::Sql {
        &self.inner.sql
    }

    /// Enqueues jobs on the caller's connection or open transaction: they become
    /// visible, and durable, when the caller commits, and vanish if it rolls back.
    ///
    /// ```no_run
    /// # async fn example(store: jobchain_postgres::PgStore, job: jobchain_core::NewJob) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = store.pool().begin().await?;
    /// sqlx::query("INSERT INTO orders (id) VALUES (42)").execute(&mut *tx).await?;
    /// store.enqueue_in(&mut tx, vec![job]).await?;
    /// tx.commit().await?;        // the order and its job commit together
    /// # Ok(()) }
    /// ```
    pub async fn enqueue_in(
        &self,
        conn: &mut PgConnection,
        jobs: Vec<NewJob>,
    ) -> Result<Vec<Enqueued>, StoreError> {
        let enqueued = queries::ops::insert_many(&mut *conn, &self.inner.sql, &jobs).await?;
        queries::notify_in(conn, &self.inner.schema).await?;
        Ok(enqueued)
    }

    /// Starts a declared workflow on the caller's connection or open transaction.
    pub async fn start_workflow_in(
        &self,
        conn: &mut PgConnection,
        workflow: NewWorkflow,
    ) -> Result<WorkflowStarted, StoreError> {
        let started = queries::ops::start_workflow(&mut *conn, &self.inner.sql, &workflow).await?;
        queries::notify_in(conn, &self.inner.schema).await?;
        Ok(started)
    }

    /// Asks the notification task to tell other processes that jobs became available.
    pub(crate) fn wake_others(&self) {
        self.jobs_may_have_come();
        self.inner.wake.notify_one();
    }

    /// Writes plain jobs (see `inserts_in_one_statement`) with the other callers
    /// that wait at the same time: one statement and one commit for all of them.
    pub(crate) async fn insert_grouped(
        &self,
        jobs: Vec<NewJob>,
    ) -> Result<Vec<jobchain_core::store::Enqueued>, StoreError> {
        // A job that cannot be written fails its own call, not the group's.
        jobchain_core::rules::validate_jobs(&jobs)?;
        let (reply, written) = tokio::sync::oneshot::channel();
        self.inner
            .enqueues
            .send(grouped::Request { jobs, reply })
            .map_err(|_| StoreError::Closed)?;
        written.await.map_err(|_| StoreError::Closed)?
    }

    pub(crate) fn stop_grouping(&self) {
        self.inner.enqueuer.abort();
    }

    pub(crate) async fn stop_listening(&self) {
        self.inner.notifier.abort();
        self.inner.listener.lock().await.take();
    }

    /// Jobs may have become available anywhere in the claim order: cursors start over.
    pub(crate) fn jobs_may_have_come(&self) {
        self.inner.availability.fetch_add(1, Ordering::Relaxed);
    }

    /// The cursor of a plan's last claim (`key`: its queue and kinds), if it still holds.
    pub(crate) fn cursor(&self, key: &CursorKey) -> Option<ClaimCursor> {
        let cursor = *self.inner.cursors.lock().ok()?.get(key)?;
        (cursor.availability == self.inner.availability.load(Ordering::Relaxed)
            && cursor.started.elapsed() < CURSOR_AGE)
            .then_some(cursor)
    }

    /// Records where a plan's claim ended (its last job in claim order) for a chain of
    /// claims that began from the front at `started`, or forgets the plan's cursor when
    /// the claim took nothing.
    pub(crate) fn set_cursor(
        &self,
        key: CursorKey,
        last: Option<&jobchain_core::store::ClaimedJob>,
        availability: u64,
        started: std::time::Instant,
    ) {
        let Ok(mut cursors) = self.inner.cursors.lock() else {
            return;
        };
        match last {
            Some(job) => {
                let cursor = ClaimCursor {
                    priority: job.priority.0,
                    run_at: job.run_at,
                    id: job.id.0,
                    availability,
                    started,
                };
                cursors.insert(key, cursor);
            }
            None => {
                cursors.remove(&key);
            }
        }
    }

    /// The current availability count, read before a claim.
    pub(crate) fn availability(&self) -> u64 {
        self.inner.availability.load(Ordering::Relaxed)
    }

    /// Whether a notification's payload is about this schema and from another sender: a
    /// store of another process (`schema:token`) or the SQL functions (`schema`).
    fn sent_by_others(&self, payload: &str) -> bool {
        payload != self.inner.sender
            && payload
                .strip_prefix(self.inner.schema.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(':'))
    }

    pub(crate) async fn listen(&self, timeout: Duration) -> Result<bool, StoreError> {
        let mut guard = self.inner.listener.lock().await;
        if guard.is_none() {
            let mut listener = PgListener::connect_with(&self.inner.pool)
                .await
                .map_err(queries::map_err)?;
            listener.listen(CHANNEL).await.map_err(queries::map_err)?;
            *guard = Some(listener);
        }
        let Some(listener) = guard.as_mut() else {
            return Ok(false);
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, listener.try_recv()).await {
                Err(_) => return Ok(false),
                Ok(Ok(Some(n))) => {
                    if self.sent_by_others(n.payload()) {
                        self.jobs_may_have_come();
                        return Ok(true);
                    }
                }
                // The connection was lost and re-established: notifications may have
                // been missed, so report a change.
                Ok(Ok(None)) => {
                    self.jobs_may_have_come();
                    return Ok(true);
                }
                Ok(Err(e)) => {
                    *guard = None;
                    return Err(queries::map_err(e));
                }
            }
        }
    }
}

/// Sends `NOTIFY` for every wake-up request, coalescing the requests of a few
/// milliseconds into one notification, with `payload` (the schema and the sender).
async fn send_notifications(pool: PgPool, payload: String, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(&payload)
            .execute(&pool)
            .await
        {
            tracing::debug!(error = %e, "NOTIFY failed; idle workers will find the jobs by polling");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Schema names are interpolated into SQL, so only plain identifiers are accepted.
fn validate_schema(schema: &str) -> Result<(), StoreError> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "schema name `{schema}`: use lower-case letters, digits and underscores (at most 63), starting with a letter"
        )))
    }
}

/// A URL without its password, for logs and error messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Drops a schema and everything in it (test and benchmark clean-up).
pub async fn drop_schema(pool: &PgPool, schema: &str) -> Result<(), StoreError> {
    validate_schema(schema)?;
    queries::migration::drop_schema(pool, schema).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any URL is split into the driver's URL and jobchain's options, or refused with
        /// a message; a password never appears in the message.
        #[test]
        fn any_url_parses_or_says_why(rest in "\\PC{0,60}", query in "\\PC{0,40}") {
            let url = format!("postgres://user:s3cr3t@{rest}?{query}");
            if let Err(e) = PgOptions::from_url(&url) {
                let message = e.to_string();
                prop_assert!(!message.is_empty());
                prop_assert!(!message.contains("s3cr3t"), "{message}");
            }
            let _ = redact(&url);
        }
    }

    #[test]
    fn jobchain_parameters_are_split_off_the_url() {
        let (url, options) = PgOptions::from_url(
            "postgres://u:secret@h:5432/db?sslmode=disable&jobchain_schema=app_jobs&jobchain_max_connections=3",
        )
        .unwrap();
        assert_eq!(url, "postgres://u:secret@h:5432/db?sslmode=disable");
        assert_eq!(options.schema, "app_jobs");
        assert_eq!(options.max_connections, 3);
        let (url, options) = PgOptions::from_url("postgresql://h/db").unwrap();
        assert_eq!(
            (url.as_str(), options.schema.as_str()),
            ("postgresql://h/db", "jobchain")
        );
    }

    #[test]
    fn bad_parameters_are_named_and_passwords_hidden() {
        for (url, expected) in [
            (
                "postgres://h/db?jobchain_schema=Bad-Name",
                "schema name `Bad-Name`",
            ),
            (
                "postgres://h/db?jobchain_max_connections=0",
                "jobchain_max_connections=`0`",
            ),
            (
                "postgres://h/db?jobchain_shema=x",
                "unknown option `jobchain_shema=x`",
            ),
            ("mysql://u:hunter2@h/db", "u:***@h/db"),
        ] {
            let err = PgOptions::from_url(url).unwrap_err().to_string();
            assert!(err.contains(expected), "{url}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }
}
