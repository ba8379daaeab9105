//! SQL on `jobs`: insert, claim, the statements of a settle, heartbeat, rescue, the
//! changes of retry, cancel and cleaning, and inspection. A leaf: transactions that
//! span tables are in [`super::ops`].
//!
//! Batches are set-based: each kind of change in a batch is one statement over
//! `unnest`ed arrays, so a batch costs a fixed number of round trips.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jobchain_core::job::{AttemptError, Job, JobId, JobState, NewJob, Priority};
use jobchain_core::store::{
    in_claim_order, ClaimRequest, ClaimedJob, Enqueued, ExpiredJob, JobFilter, Lease, LimitScope,
    MinuteCount, QueueStats,
};
use jobchain_core::{StoreError, WorkflowId};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{encode_payload, map_err, ms, split_run_at, to_i32, Sql};

const INSERT_MANY: &str = "INSERT INTO __schema__.jobs (kind, queue, payload, priority, state, \
    run_at, max_attempts, attempt_budget, workflow_id, step, parent_id, optional, waiting_for, \
    concurrency_key) \
    SELECT kind, queue, payload::jsonb, priority, state, \
        coalesce(run_at, now() + coalesce(delay_ms, 0) * interval '1 millisecond'), \
        max_attempts, max_attempts, workflow_id, step, parent_id, optional, waiting_for, \
        concurrency_key \
    FROM unnest($1::text[], $2::text[], $3::text[], $4::int2[], $5::text[], $6::timestamptz[], \
        $7::int8[], $8::int4[], $9::uuid[], $10::text[], $11::int8[], $12::bool[], $13::int4[], \
        $14::text[]) \
        WITH ORDINALITY AS t(kind, queue, payload, priority, state, run_at, delay_ms, \
        max_attempts, workflow_id, step, parent_id, optional, waiting_for, concurrency_key, ord) \
    ORDER BY ord RETURNING id";

const INSERT_UNIQUE: &str = "INSERT INTO __schema__.jobs (kind, queue, payload, priority, state, \
    run_at, max_attempts, attempt_budget, workflow_id, step, parent_id, unique_key, optional, \
    concurrency_key) \
    VALUES ($1, $2, $3::jsonb, $4, 'pending', \
        coalesce($5, now() + coalesce($6, 0) * interval '1 millisecond'), $7, $7, $8, $9, $10, $11, $12, \
        $13) \
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state IN ('blocked', 'pending', 'running') \
    DO NOTHING RETURNING id";

/// A debounced job: inserted, or collapsed into the pending job holding its key (the key
/// is cleared when that job starts or is cancelled). `xmax <> 0` tells an update.
const INSERT_DEBOUNCED: &str = "INSERT INTO __schema__.jobs (kind, queue, payload, priority, \
    state, run_at, max_attempts, attempt_budget, optional, debounce_key, concurrency_key) \
    VALUES ($1, $2, $3::jsonb, $4, 'pending', now() + $5 * interval '1 millisecond', $6, $6, \
        $7, $8, $9) \
    ON CONFLICT (debounce_key) WHERE debounce_key IS NOT NULL \
    DO UPDATE SET payload = excluded.payload, run_at = excluded.run_at, priority = excluded.priority \
    RETURNING id, xmax <> 0";

const FIND_LIVE_UNIQUE: &str = "SELECT id FROM __schema__.jobs WHERE unique_key = $1 \
    AND state IN ('blocked', 'pending', 'running')";

/// A claim statement: marks the jobs `$pick` selects running under the claim, started at
/// `$at` (an SQL expression).
macro_rules! claim_statement {
    ($pick:literal, $at:literal) => {
        concat!(
            "WITH picked AS (",
            $pick,
            ") UPDATE __schema__.jobs j SET state = 'running', attempts = j.attempts + 1, \
             worker = $4, lease_until = ",
            $at,
            " + $5 * interval '1 millisecond', started_at = ",
            $at,
            ", debounce_key = NULL \
             FROM picked WHERE j.id = picked.id \
             RETURNING j.id, j.kind, j.queue, j.payload, j.priority, j.attempts, j.max_attempts, \
             j.workflow_id, j.parent_id, j.step, j.run_at"
        )
    };
}

const CLAIM: &str = claim_statement!(
    "SELECT id FROM __schema__.jobs \
        WHERE state = 'pending' AND queue = $1 AND run_at <= now() AND kind = ANY($2) \
          AND NOT EXISTS (SELECT 1 FROM __schema__.queues q WHERE q.name = $1 AND q.paused) \
        ORDER BY priority DESC, run_at, id LIMIT $3 FOR UPDATE SKIP LOCKED",
    "now()"
);

/// [`CLAIM`] under limits: at `$6`, the instant the limits were counted at.
const CLAIM_AT: &str = claim_statement!(
    "SELECT id FROM __schema__.jobs \
        WHERE state = 'pending' AND queue = $1 AND run_at <= $6 AND kind = ANY($2) \
          AND NOT EXISTS (SELECT 1 FROM __schema__.queues q WHERE q.name = $1 AND q.paused) \
        ORDER BY priority DESC, run_at, id LIMIT $3 FOR UPDATE SKIP LOCKED",
    "$6::timestamptz"
);

/// [`CLAIM_AT`] of jobs without a concurrency key.
const CLAIM_UNKEYED_AT: &str = claim_statement!(
    "SELECT id FROM __schema__.jobs \
        WHERE state = 'pending' AND queue = $1 AND run_at <= $6 AND kind = ANY($2) \
          AND concurrency_key IS NULL \
          AND NOT EXISTS (SELECT 1 FROM __schema__.queues q WHERE q.name = $1 AND q.paused) \
        ORDER BY priority DESC, run_at, id LIMIT $3 FOR UPDATE SKIP LOCKED",
    "$6::timestamptz"
);

/// A claim under a per-key limit, in one statement: the kind's registered keys in
/// round-robin order (least recently visited first) that are not at their limit of
/// running jobs, each with its first due job (through the keyed index, whose order the
/// inner ORDER BY is; the queue is compared with IS NOT DISTINCT FROM, which no index can
/// take, so that the claim index, led by the queue, never looks cheaper to a planner
/// without statistics); the first `$3` keys that have one are claimed. A key's running
/// jobs are counted through the running-keyed index, at most `$7` of them. Claimed keys
/// move to the back of the order; keys looked at with nothing due now move too when the
/// claim came up short (so keys whose jobs wait for later never hold the front, without
/// rewriting them on every claim); keys with no job left that may run leave it.
/// $1 queue, $2 kind, $3 limit, $4 worker, $5 lease ms, $6 the claim's instant,
/// $7 per-key limit, $8 scope.
const KEYED_CLAIM: &str = "WITH page AS ( \
        SELECT lk.key, lk.last_claim FROM __schema__.limit_keys lk \
        WHERE lk.scope = $8 AND (SELECT count(*) FROM (SELECT 1 FROM __schema__.jobs r \
            WHERE r.state = 'running' AND r.kind = $2 AND r.concurrency_key = lk.key \
            LIMIT $7) AS running) < $7 \
        ORDER BY lk.last_claim, lk.key LIMIT $3 * 2 + 50), \
    picks AS ( \
        SELECT p.key, p.last_claim, \
            (SELECT id FROM __schema__.jobs j WHERE j.state = 'pending' AND j.kind = $2 \
                AND j.concurrency_key = p.key AND j.queue IS NOT DISTINCT FROM $1 \
                AND j.run_at <= $6 \
                ORDER BY j.kind, j.concurrency_key, j.queue, j.priority DESC, j.run_at, j.id \
                LIMIT 1) AS job \
        FROM page p \
        WHERE NOT EXISTS (SELECT 1 FROM __schema__.queues q WHERE q.name = $1 AND q.paused)), \
    chosen AS (SELECT key, last_claim, job FROM picks WHERE job IS NOT NULL \
        ORDER BY last_claim, key LIMIT $3), \
    dead AS (SELECT p.key FROM picks p WHERE p.job IS NULL \
        AND NOT EXISTS (SELECT 1 FROM __schema__.jobs j WHERE j.kind = $2 \
            AND j.concurrency_key = p.key AND j.state = 'pending') \
        AND NOT EXISTS (SELECT 1 FROM __schema__.jobs j WHERE j.kind = $2 \
            AND j.concurrency_key = p.key AND j.state = 'blocked')), \
    visited AS ( \
        SELECT key, last_claim FROM chosen \
        UNION ALL \
        SELECT p.key, p.last_claim FROM picks p \
        WHERE p.job IS NULL AND NOT EXISTS (SELECT 1 FROM dead d WHERE d.key = p.key) \
            AND (SELECT count(*) FROM chosen) < $3), \
    turn AS ( \
        UPDATE __schema__.limit_keys lk \
        SET last_claim = (SELECT coalesce(max(last_claim), 0) FROM __schema__.limit_keys \
            WHERE scope = $8) + v.n \
        FROM (SELECT key, row_number() OVER (ORDER BY last_claim, key) AS n FROM visited) v \
        WHERE lk.scope = $8 AND lk.key = v.key), \
    pruned AS (DELETE FROM __schema__.limit_keys lk USING dead d \
        WHERE lk.scope = $8 AND lk.key = d.key), \
    picked AS (SELECT j.id FROM __schema__.jobs j JOIN chosen c ON j.id = c.job \
        WHERE j.state = 'pending' FOR UPDATE OF j SKIP LOCKED) \
    UPDATE __schema__.jobs j SET state = 'running', attempts = j.attempts + 1, worker = $4, \
        lease_until = $6 + $5 * interval '1 millisecond', started_at = $6, debounce_key = NULL \
    FROM picked WHERE j.id = picked.id \
    RETURNING j.id, j.kind, j.queue, j.payload, j.priority, j.attempts, j.max_attempts, \
        j.workflow_id, j.parent_id, j.step, j.run_at";

/// Registers concurrency keys ($2) of kinds ($1) in their kind's round-robin order.
const REGISTER_KEYS: &str = "INSERT INTO __schema__.limit_keys (scope, key, last_claim) \
    SELECT DISTINCT 'kind:' || k, c, 0 FROM unnest($1::text[], $2::text[]) AS t(k, c) \
    WHERE c IS NOT NULL ON CONFLICT DO NOTHING";

/// Registers the concurrency keys of jobs just written (new keys first in the order).
pub async fn register_keys(
    conn: &mut PgConnection,
    sql: &Sql,
    kinds: &[String],
    keys: &[Option<String>],
) -> Result<(), StoreError> {
    if keys.iter().all(Option::is_none) {
        return Ok(());
    }
    sqlx::query(sql.get(REGISTER_KEYS))
        .bind(kinds)
        .bind(keys)
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// Which jobs a claim takes.
pub enum Pick {
    /// Due jobs of the request's kinds.
    Due,
    /// Due jobs of the request's kinds at this instant (under limits).
    DueAt(DateTime<Utc>),
    /// Due jobs of the request's kinds without a concurrency key, at this instant.
    UnkeyedAt(DateTime<Utc>),
}

const HEARTBEAT: &str = "WITH held AS (SELECT j.id FROM __schema__.jobs j \
        JOIN unnest($1::int8[], $2::int4[]) AS t(id, attempt) \
            ON j.id = t.id AND j.attempts = t.attempt \
        WHERE j.state = 'running' ORDER BY j.id FOR UPDATE OF j) \
    UPDATE __schema__.jobs j SET lease_until = now() + $3 * interval '1 millisecond' \
    FROM held WHERE j.id = held.id RETURNING j.id";

const EXPIRED: &str = "SELECT id, attempts, kind, max_attempts, workflow_id FROM __schema__.jobs \
    WHERE state = 'running' AND lease_until <= now() ORDER BY lease_until LIMIT $1";

const NEXT_SCHEDULED: &str = "SELECT (extract(epoch FROM (min(run_at) - now())) * 1000)::int8 \
    FROM __schema__.jobs WHERE state = 'pending' AND run_at > now()";

/// Jobs to insert in bulk, column by column.
#[derive(Default)]
pub(crate) struct Columns {
    kind: Vec<String>,
    queue: Vec<String>,
    payload: Vec<String>,
    priority: Vec<i16>,
    state: Vec<String>,
    run_at: Vec<Option<DateTime<Utc>>>,
    delay_ms: Vec<Option<i64>>,
    max_attempts: Vec<i32>,
    workflow_id: Vec<Option<Uuid>>,
    step: Vec<Option<String>>,
    parent_id: Vec<Option<i64>>,
    optional: Vec<bool>,
    waiting_for: Vec<i32>,
    concurrency_key: Vec<Option<String>>,
}

impl Columns {
    pub(crate) fn push(
        &mut self,
        job: &NewJob,
        state: JobState,
        waiting_for: usize,
    ) -> Result<(), StoreError> {
        let (run_at, delay) = split_run_at(job.run_at);
        self.kind.push(job.kind.clone());
        self.queue.push(job.queue.clone());
        self.payload.push(encode_payload(&job.kind, &job.payload)?);
        self.priority.push(job.priority.0);
        self.state.push(state.as_str().to_string());
        self.run_at.push(run_at);
        self.delay_ms.push(delay);
        self.max_attempts.push(to_i32(job.max_attempts));
        self.workflow_id.push(job.workflow_id.map(|w| w.0));
        self.step.push(job.step.clone());
        self.parent_id.push(job.parent_id.map(|p| p.0));
        self.optional.push(job.optional);
        self.waiting_for
            .push(i32::try_from(waiting_for).unwrap_or(i32::MAX));
        self.concurrency_key.push(job.concurrency_key.clone());
        Ok(())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.kind.is_empty()
    }

    /// Inserts every row; returns the ids in order.
    pub(crate) async fn insert(
        self,
        conn: &mut PgConnection,
        sql: &Sql,
    ) -> Result<Vec<JobId>, StoreError> {
        if self.is_empty() {
            return Ok(Vec::new());
        }
        let keyed = self.concurrency_key.iter().any(Option::is_some);
        let (kinds, keys) = if keyed {
            (self.kind.clone(), self.concurrency_key.clone())
        } else {
            (Vec::new(), Vec::new())
        };
        let statement = sql.get(INSERT_MANY);
        let ids: Vec<i64> = sqlx::query_scalar(statement)
            .bind(self.kind)
            .bind(self.queue)
            .bind(self.payload)
            .bind(self.priority)
            .bind(self.state)
            .bind(self.run_at)
            .bind(self.delay_ms)
            .bind(self.max_attempts)
            .bind(self.workflow_id)
            .bind(self.step)
            .bind(self.parent_id)
            .bind(self.optional)
            .bind(self.waiting_for)
            .bind(self.concurrency_key)
            .fetch_all(&mut *conn)
            .await
            .map_err(map_err)?;
        if keyed {
            register_keys(conn, sql, &kinds, &keys).await?;
        }
        Ok(ids.into_iter().map(JobId).collect())
    }
}

/// Inserts a debounced job, or collapses it into the pending job holding its key (then
/// `duplicate` is true and that job now has this payload and start).
pub async fn insert_debounced(
    conn: &mut PgConnection,
    sql: &Sql,
    job: &NewJob,
    key: &str,
) -> Result<Enqueued, StoreError> {
    let delay = match job.run_at {
        jobchain_core::job::RunAt::After(d) => ms(d),
        _ => 0,
    };
    register_keys(
        conn,
        sql,
        std::slice::from_ref(&job.kind),
        std::slice::from_ref(&job.concurrency_key),
    )
    .await?;
    let row = sqlx::query(sql.get(INSERT_DEBOUNCED))
        .bind(&job.kind)
        .bind(&job.queue)
        .bind(encode_payload(&job.kind, &job.payload)?)
        .bind(job.priority.0)
        .bind(delay)
        .bind(to_i32(job.max_attempts))
        .bind(job.optional)
        .bind(key)
        .bind(&job.concurrency_key)
        .fetch_one(conn)
        .await
        .map_err(map_err)?;
    Ok(Enqueued {
        id: JobId(row.try_get(0).map_err(map_err)?),
        duplicate: row.try_get(1).map_err(map_err)?,
    })
}

/// Inserts a pending job with a unique key, unless a live job holds the key: then
/// names that job.
pub async fn insert_unique(
    conn: &mut PgConnection,
    sql: &Sql,
    job: &NewJob,
    key: &str,
) -> Result<Enqueued, StoreError> {
    let (run_at, delay) = split_run_at(job.run_at);
    let payload = encode_payload(&job.kind, &job.payload)?;
    register_keys(
        conn,
        sql,
        std::slice::from_ref(&job.kind),
        std::slice::from_ref(&job.concurrency_key),
    )
    .await?;
    // The live job holding the key may finish between the insert and the lookup: try again.
    for _ in 0..3 {
        let statement = sql.get(INSERT_UNIQUE);
        let inserted: Option<i64> = sqlx::query_scalar(statement)
            .bind(&job.kind)
            .bind(&job.queue)
            .bind(&payload)
            .bind(job.priority.0)
            .bind(run_at)
            .bind(delay)
            .bind(to_i32(job.max_attempts))
            .bind(job.workflow_id.map(|w| w.0))
            .bind(&job.step)
            .bind(job.parent_id.map(|p| p.0))
            .bind(key)
            .bind(job.optional)
            .bind(&job.concurrency_key)
            .fetch_optional(&mut *conn)
            .await
            .map_err(map_err)?;
        if let Some(id) = inserted {
            return Ok(Enqueued {
                id: JobId(id),
                duplicate: false,
            });
        }
        let statement = sql.get(FIND_LIVE_UNIQUE);
        let existing: Option<i64> = sqlx::query_scalar(statement)
            .bind(key)
            .fetch_optional(&mut *conn)
            .await
            .map_err(map_err)?;
        if let Some(id) = existing {
            return Ok(Enqueued {
                id: JobId(id),
                duplicate: true,
            });
        }
    }
    Err(StoreError::transient(format!(
        "unique key `{key}` kept changing hands"
    )))
}

/// Claims due pending jobs.
pub async fn claim(
    conn: &mut PgConnection,
    sql: &Sql,
    request: &ClaimRequest,
    pick: Pick,
) -> Result<Vec<ClaimedJob>, StoreError> {
    let (statement, at) = match pick {
        Pick::Due => (CLAIM, None),
        Pick::DueAt(at) => (CLAIM_AT, Some(at)),
        Pick::UnkeyedAt(at) => (CLAIM_UNKEYED_AT, Some(at)),
    };
    let mut query = sqlx::query(sql.get(statement))
        .bind(&request.queue)
        .bind(&request.kinds)
        .bind(i64::try_from(request.limit).unwrap_or(i64::MAX))
        .bind(&request.worker)
        .bind(ms(request.lease));
    if let Some(at) = at {
        query = query.bind(at);
    }
    let rows = query.fetch_all(conn).await.map_err(map_err)?;
    claimed_rows(&rows)
}

/// Claimed jobs from the rows of a claim statement, in claim order.
fn claimed_rows(rows: &[PgRow]) -> Result<Vec<ClaimedJob>, StoreError> {
    let jobs = rows
        .iter()
        .map(|r| {
            Ok(ClaimedJob {
                id: JobId(r.try_get(0)?),
                kind: r.try_get(1)?,
                queue: r.try_get(2)?,
                payload: r.try_get(3)?,
                priority: Priority(r.try_get(4)?),
                attempt: r.try_get::<i32, _>(5)? as u32,
                max_attempts: r.try_get::<i32, _>(6)? as u32,
                workflow_id: r.try_get::<Option<Uuid>, _>(7)?.map(WorkflowId),
                parent_id: r.try_get::<Option<i64>, _>(8)?.map(JobId),
                step: r.try_get(9)?,
                run_at: r.try_get(10)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(map_err)?;
    Ok(in_claim_order(jobs))
}

/// Claims under a per-key limit (see [`KEYED_CLAIM`]).
pub async fn claim_keyed(
    conn: &mut PgConnection,
    sql: &Sql,
    request: &ClaimRequest,
    at: DateTime<Utc>,
    scope: &str,
    per_key: u32,
    limit: usize,
) -> Result<Vec<ClaimedJob>, StoreError> {
    let kind = request
        .kinds
        .first()
        .map(String::as_str)
        .unwrap_or_default();
    let rows = sqlx::query(sql.get(KEYED_CLAIM))
        .bind(&request.queue)
        .bind(kind)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(&request.worker)
        .bind(ms(request.lease))
        .bind(at)
        .bind(i64::from(per_key))
        .bind(scope)
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    claimed_rows(&rows)
}

/// Running jobs of a kind or a queue.
pub async fn running_in(
    conn: &mut PgConnection,
    sql: &Sql,
    scope: &LimitScope,
) -> Result<u64, StoreError> {
    let (statement, name) = match scope {
        LimitScope::Kind(k) => (
            "SELECT count(*) FROM __schema__.jobs WHERE state = 'running' AND kind = $1",
            k,
        ),
        LimitScope::Queue(q) => (
            "SELECT count(*) FROM __schema__.jobs WHERE state = 'running' AND queue = $1",
            q,
        ),
    };
    let n: i64 = sqlx::query_scalar(sql.get(statement))
        .bind(name)
        .fetch_one(conn)
        .await
        .map_err(map_err)?;
    Ok(n as u64)
}

/// Deletes up to `limit` dead jobs outside workflows that died `older_than` ago, of
/// `kind` when given.
pub async fn purge_dead(
    conn: &mut PgConnection,
    sql: &Sql,
    older_than: Duration,
    kind: Option<&str>,
    limit: usize,
) -> Result<u64, StoreError> {
    let statement = sql.get(
        "DELETE FROM __schema__.jobs WHERE id IN (SELECT id FROM __schema__.jobs \
         WHERE state = 'dead' AND workflow_id IS NULL \
         AND finished_at <= now() - $1 * interval '1 millisecond' \
         AND ($2::text IS NULL OR kind = $2) LIMIT $3)",
    );
    let deleted = sqlx::query(statement)
        .bind(ms(older_than))
        .bind(kind)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .execute(conn)
        .await
        .map_err(map_err)?
        .rows_affected();
    Ok(deleted)
}

/// Deletes up to `limit` terminal jobs outside workflows that finished `older_than` ago.
pub async fn delete_finished(
    conn: &mut PgConnection,
    sql: &Sql,
    older_than: Duration,
    limit: usize,
) -> Result<u64, StoreError> {
    let statement = sql.get(
        "DELETE FROM __schema__.jobs WHERE id IN (SELECT id FROM __schema__.jobs \
         WHERE workflow_id IS NULL AND state IN ('completed', 'dead', 'cancelled') \
         AND finished_at <= now() - $1 * interval '1 millisecond' LIMIT $2)",
    );
    let deleted = sqlx::query(statement)
        .bind(ms(older_than))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .execute(conn)
        .await
        .map_err(map_err)?
        .rows_affected();
    Ok(deleted)
}

/// Extends held leases; returns the jobs no longer held.
pub async fn heartbeat(
    conn: &mut PgConnection,
    sql: &Sql,
    leases: &[Lease],
    lease: Duration,
) -> Result<Vec<JobId>, StoreError> {
    let ids: Vec<i64> = leases.iter().map(|l| l.id.0).collect();
    let attempts: Vec<i32> = leases.iter().map(|l| to_i32(l.attempt)).collect();
    let statement = sql.get(HEARTBEAT);
    let held: Vec<i64> = sqlx::query_scalar(statement)
        .bind(ids)
        .bind(attempts)
        .bind(ms(lease))
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    Ok(leases
        .iter()
        .filter(|l| !held.contains(&l.id.0))
        .map(|l| l.id)
        .collect())
}

/// Running jobs whose lease expired.
pub async fn expired(
    conn: &mut PgConnection,
    sql: &Sql,
    limit: usize,
) -> Result<Vec<ExpiredJob>, StoreError> {
    let statement = sql.get(EXPIRED);
    let rows = sqlx::query(statement)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    rows.iter()
        .map(|r| {
            Ok(ExpiredJob {
                lease: Lease {
                    id: JobId(r.try_get(0)?),
                    attempt: r.try_get::<i32, _>(1)? as u32,
                },
                kind: r.try_get(2)?,
                max_attempts: r.try_get::<i32, _>(3)? as u32,
                workflow_id: r.try_get::<Option<Uuid>, _>(4)?.map(WorkflowId),
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(map_err)
}

/// Time until the earliest future pending job is due.
pub async fn next_scheduled(
    conn: &mut PgConnection,
    sql: &Sql,
) -> Result<Option<Duration>, StoreError> {
    let statement = sql.get(NEXT_SCHEDULED);
    let next: Option<i64> = sqlx::query_scalar(statement)
        .fetch_one(conn)
        .await
        .map_err(map_err)?;
    Ok(next.map(|ms| Duration::from_millis(ms.max(0) as u64)))
}

/// One job.
pub async fn get(conn: &mut PgConnection, sql: &Sql, id: JobId) -> Result<Option<Job>, StoreError> {
    let statement = sql.get(GET);
    let row = sqlx::query(statement)
        .bind(id.0)
        .fetch_optional(conn)
        .await
        .map_err(map_err)?;
    row.map(|r| job_from_row(&r)).transpose()
}

const GET: &str = "SELECT id, kind, queue, payload, priority, state, run_at, attempts, \
    max_attempts, errors, output, workflow_id, step, parent_id, unique_key, optional, worker, \
    lease_until, created_at, started_at, finished_at, cancel_reason, concurrency_key \
    FROM __schema__.jobs WHERE id = $1";

const LIST_ASC: &str = "SELECT id, kind, queue, payload, priority, state, run_at, attempts, \
    max_attempts, errors, output, workflow_id, step, parent_id, unique_key, optional, worker, \
    lease_until, created_at, started_at, finished_at, cancel_reason, concurrency_key \
    FROM __schema__.jobs WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR kind = $2) \
    AND ($3::text IS NULL OR queue = $3) AND ($4::uuid IS NULL OR workflow_id = $4) \
    AND ($7::bigint IS NULL OR id > $7) ORDER BY id ASC LIMIT $5 OFFSET $6";

const LIST_DESC: &str = "SELECT id, kind, queue, payload, priority, state, run_at, attempts, \
    max_attempts, errors, output, workflow_id, step, parent_id, unique_key, optional, worker, \
    lease_until, created_at, started_at, finished_at, cancel_reason, concurrency_key \
    FROM __schema__.jobs WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR kind = $2) \
    AND ($3::text IS NULL OR queue = $3) AND ($4::uuid IS NULL OR workflow_id = $4) \
    AND ($7::bigint IS NULL OR id < $7) ORDER BY id DESC LIMIT $5 OFFSET $6";

/// Jobs matching a filter, ordered by id.
pub async fn list(
    conn: &mut PgConnection,
    sql: &Sql,
    filter: &JobFilter,
) -> Result<Vec<Job>, StoreError> {
    let statement = sql.get(if filter.newest_first {
        LIST_DESC
    } else {
        LIST_ASC
    });
    let rows = sqlx::query(statement)
        .bind(filter.state.map(JobState::as_str))
        .bind(&filter.kind)
        .bind(&filter.queue)
        .bind(filter.workflow_id.map(|w| w.0))
        .bind(filter.limit.unwrap_or(100) as i64)
        .bind(filter.offset as i64)
        .bind(filter.after.map(|id| id.0))
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    rows.iter().map(job_from_row).collect()
}

/// Completions and deaths per minute since `since`.
pub async fn throughput(
    conn: &mut PgConnection,
    sql: &Sql,
    since: DateTime<Utc>,
) -> Result<Vec<MinuteCount>, StoreError> {
    let statement = sql.get(
        "SELECT date_trunc('minute', finished_at), count(*) FILTER (WHERE state = 'completed'), \
         count(*) FILTER (WHERE state = 'dead') FROM __schema__.jobs \
         WHERE finished_at >= $1 AND state IN ('completed', 'dead') GROUP BY 1 ORDER BY 1",
    );
    let rows = sqlx::query(statement)
        .bind(since)
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    rows.iter()
        .map(|r| {
            Ok(MinuteCount {
                minute: r.try_get(0)?,
                completed: r.try_get::<i64, _>(1)? as u64,
                dead: r.try_get::<i64, _>(2)? as u64,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(map_err)
}

/// Counts by queue and state.
pub async fn queue_stats(
    conn: &mut PgConnection,
    sql: &Sql,
) -> Result<Vec<QueueStats>, StoreError> {
    let statement = sql.get(
        "SELECT queue, state, count(*) FROM __schema__.jobs GROUP BY queue, state ORDER BY queue",
    );
    let rows = sqlx::query(statement)
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    let mut counted = Vec::with_capacity(rows.len());
    for row in &rows {
        let queue: String = row.try_get(0).map_err(map_err)?;
        let state: String = row.try_get(1).map_err(map_err)?;
        let count: i64 = row.try_get(2).map_err(map_err)?;
        let state: JobState = state.parse().map_err(StoreError::corrupt)?;
        counted.push((queue, state, count.max(0) as u64));
    }
    Ok(QueueStats::from_rows(counted))
}

/// Reads a job from a row of the columns that [`get`] selects, in that order.
pub fn job_from_row(r: &PgRow) -> Result<Job, StoreError> {
    let read = || -> Result<Job, sqlx::Error> {
        let state: String = r.try_get(5)?;
        let errors: Value = r.try_get(9)?;
        Ok(Job {
            id: JobId(r.try_get(0)?),
            kind: r.try_get(1)?,
            queue: r.try_get(2)?,
            payload: r.try_get(3)?,
            priority: Priority(r.try_get(4)?),
            state: state
                .parse()
                .map_err(|e: String| sqlx::Error::Decode(e.into()))?,
            run_at: r.try_get(6)?,
            attempts: r.try_get::<i32, _>(7)? as u32,
            max_attempts: r.try_get::<i32, _>(8)? as u32,
            errors: serde_json::from_value::<Vec<AttemptError>>(errors)
                .map_err(|e| sqlx::Error::Decode(e.into()))?,
            output: r.try_get(10)?,
            workflow_id: r.try_get::<Option<Uuid>, _>(11)?.map(WorkflowId),
            step: r.try_get(12)?,
            parent_id: r.try_get::<Option<i64>, _>(13)?.map(JobId),
            unique_key: r.try_get(14)?,
            optional: r.try_get(15)?,
            worker: r.try_get(16)?,
            lease_until: r.try_get(17)?,
            created_at: r.try_get(18)?,
            started_at: r.try_get(19)?,
            finished_at: r.try_get(20)?,
            cancel_reason: r.try_get(21)?,
            concurrency_key: r.try_get(22)?,
        })
    };
    read().map_err(|e| StoreError::corrupt(format!("a job row does not decode: {e}")).caused_by(e))
}
