//! SQL on `jobchain_jobs`: insert, claim, heartbeat, rescue, cleaning and inspection. A
//! leaf: state changes after a claim are in [`super::transition`], transactions that
//! span tables in [`super::ops`].

use std::time::Duration;

use jobchain_core::job::{Job, JobId, JobState, NewJob, Priority, RunAt};
use jobchain_core::store::{
    in_claim_order, ClaimRequest, ClaimedJob, Enqueued, ExpiredJob, JobFilter, Lease, LimitScope,
    MinuteCount, QueueStats,
};
use jobchain_core::{StoreError, WorkflowId};
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;

use super::{duration_ms, to_time};
use crate::map_err;

/// The columns [`job_from_row`] reads, in order.
pub const JOB_COLUMNS: &str = "id, kind, queue, payload, priority, state, run_at, attempts, \
    max_attempts, errors, output, workflow_id, step, parent_id, unique_key, optional, worker, \
    lease_until, created_at, started_at, finished_at, cancel_reason, concurrency_key";

const INSERT: &str = "INSERT INTO jobchain_jobs (kind, queue, payload, priority, state, run_at, \
    max_attempts, attempt_budget, workflow_id, step, parent_id, unique_key, optional, waiting_for, created_at, \
    debounce_key, concurrency_key, fair_rank, skip_if) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)";

/// Collapses a debounced enqueue into the pending job holding its key (the key is cleared
/// when the job starts, so only a job that has not started holds it).
const DEBOUNCE: &str = "UPDATE jobchain_jobs SET payload = ?2, run_at = ?3, priority = ?4 \
    WHERE debounce_key = ?1 AND state = 'pending' RETURNING id";

const FIND_LIVE_UNIQUE: &str = "SELECT id FROM jobchain_jobs WHERE unique_key = ?1 \
    AND state IN ('blocked', 'pending', 'running')";

// `LIMIT CAST(?6 AS INTEGER)`, not `LIMIT ?6`: a bare parameter in the subquery's LIMIT
// makes SQLite re-prepare the statement on every execution.
/// A claim statement: marks the jobs `$pick` selects running under the claim.
macro_rules! claim_statement {
    ($pick:literal) => {
        concat!(
            "UPDATE jobchain_jobs SET state = 'running', attempts = attempts + 1, \
             worker = ?1, lease_until = ?2, started_at = ?3, debounce_key = NULL \
             WHERE id IN (",
            $pick,
            ") RETURNING id, kind, queue, payload, priority, attempts, max_attempts, \
             workflow_id, parent_id, step, run_at"
        )
    };
}

/// The due jobs of the kinds, by priority, then run_at, then id: those without a
/// concurrency key from the claim index, keyed ones (of kinds this claim puts no per-key
/// limit on) from the fair index, which holds them instead.
const CLAIM: &str = claim_statement!(
    "SELECT id FROM (\
        SELECT id, priority, run_at FROM (SELECT id, priority, run_at FROM jobchain_jobs \
            INDEXED BY jobchain_jobs_claim \
            WHERE state = 'pending' AND concurrency_key IS NULL AND queue = ?4 AND run_at <= ?3 \
              AND kind IN (SELECT value FROM json_each(?5)) \
              AND NOT EXISTS (SELECT 1 FROM jobchain_queues q WHERE q.name = ?4 AND q.paused = 1) \
            ORDER BY priority DESC, run_at, id LIMIT CAST(?6 AS INTEGER)) \
        UNION ALL \
        SELECT id, priority, run_at FROM (SELECT id, priority, run_at FROM jobchain_jobs \
            INDEXED BY jobchain_jobs_fair \
            WHERE state = 'pending' AND concurrency_key IS NOT NULL \
              AND kind IN (SELECT value FROM json_each(?5)) AND queue = ?4 AND run_at <= ?3 \
              AND NOT EXISTS (SELECT 1 FROM jobchain_queues q WHERE q.name = ?4 AND q.paused = 1) \
            ORDER BY priority DESC, run_at, id LIMIT CAST(?6 AS INTEGER))) \
        ORDER BY priority DESC, run_at, id LIMIT CAST(?6 AS INTEGER)"
);

/// [`CLAIM`] of jobchain's own kinds alone, through their own index (migration 0012).
const CLAIM_BUILTIN: &str = claim_statement!(
    "SELECT id FROM jobchain_jobs INDEXED BY jobchain_jobs_builtin_claim \
        WHERE state = 'pending' AND kind GLOB 'jobchain.*' AND queue = ?4 AND run_at <= ?3 \
          AND kind IN (SELECT value FROM json_each(?5)) \
          AND NOT EXISTS (SELECT 1 FROM jobchain_queues q WHERE q.name = ?4 AND q.paused = 1) \
        ORDER BY priority DESC, run_at, id LIMIT CAST(?6 AS INTEGER)"
);

/// [`CLAIM`] of jobs without a concurrency key.
const CLAIM_UNKEYED: &str = claim_statement!(
    "SELECT id FROM jobchain_jobs INDEXED BY jobchain_jobs_claim \
        WHERE state = 'pending' AND queue = ?4 AND run_at <= ?3 \
          AND kind IN (SELECT value FROM json_each(?5)) AND concurrency_key IS NULL \
          AND NOT EXISTS (SELECT 1 FROM jobchain_queues q WHERE q.name = ?4 AND q.paused = 1) \
        ORDER BY priority DESC, run_at, id LIMIT CAST(?6 AS INTEGER)"
);

/// A claim under a per-key limit (?7) of kind ?5: due keyed jobs of keys below the limit,
/// by priority, then rank (fairness across keys: the n-th job of every key before the
/// (n+1)-th of any), then id, through the rank index (which holds every column the scan
/// reads); at most as many per key as its room (a key with a candidate has none running
/// when the limit is 1; else they are counted); ?6 at most. Returns the ranks too.
const CLAIM_KEYED: &str = "UPDATE jobchain_jobs SET state = 'running', attempts = attempts + 1, \
        worker = ?1, lease_until = ?2, started_at = ?3, debounce_key = NULL \
    WHERE id IN (SELECT w.id FROM (SELECT c.id, c.priority, c.fair_rank, c.concurrency_key, \
            row_number() OVER (PARTITION BY c.concurrency_key \
                ORDER BY c.priority DESC, c.fair_rank, c.id) AS nth \
        FROM (SELECT j.id, j.priority, j.fair_rank, j.concurrency_key \
            FROM jobchain_jobs j INDEXED BY jobchain_jobs_fair \
            WHERE j.state = 'pending' AND j.kind = ?5 AND j.concurrency_key IS NOT NULL \
              AND j.queue = ?4 AND j.run_at <= ?3 \
              AND j.concurrency_key NOT IN (SELECT concurrency_key FROM jobchain_jobs \
                  WHERE state = 'running' AND kind = ?5 AND concurrency_key IS NOT NULL \
                  GROUP BY concurrency_key HAVING count(*) >= ?7) \
              AND NOT EXISTS (SELECT 1 FROM jobchain_queues q WHERE q.name = ?4 AND q.paused = 1) \
            ORDER BY j.priority DESC, j.fair_rank, j.id LIMIT CAST(?6 AS INTEGER) * 5 / 4 + 8) AS c) AS w \
        WHERE w.nth = 1 AND ?7 = 1 OR w.nth <= ?7 - (SELECT count(*) FROM jobchain_jobs r \
            WHERE r.state = 'running' AND r.kind = ?5 AND r.concurrency_key = w.concurrency_key) \
        ORDER BY w.priority DESC, w.fair_rank, w.id LIMIT CAST(?6 AS INTEGER)) \
    RETURNING id, kind, queue, payload, priority, attempts, max_attempts, workflow_id, \
        parent_id, step, run_at, fair_rank";

/// Takes the next rank of key ?2 of kind ?1: one past its last, or past its kind's floor
/// if that is higher.
const RANK_KEY: &str = "INSERT INTO jobchain_limit_keys (scope, key, last_rank) \
    VALUES ('kind:' || ?1, ?2, coalesce((SELECT floor FROM jobchain_limit_floors \
        WHERE scope = 'kind:' || ?1), 0) + 1) \
    ON CONFLICT (scope, key) DO UPDATE SET last_rank = max(last_rank + 1, excluded.last_rank) \
    RETURNING last_rank";

/// Which jobs a claim statement takes.
pub enum Pick {
    /// Due jobs of the request's kinds.
    Due,
    /// Due jobs of the request's kinds without a concurrency key.
    Unkeyed,
}

const HEARTBEAT: &str = "UPDATE jobchain_jobs SET lease_until = ?3 \
    WHERE id = ?1 AND attempts = ?2 AND state = 'running'";

const EXPIRED: &str = "SELECT id, attempts, kind, max_attempts, workflow_id FROM jobchain_jobs \
    WHERE state = 'running' AND lease_until <= ?1 ORDER BY lease_until LIMIT ?2";

/// The earliest future run_at of a pending job, through the claim index (unkeyed jobs)
/// and the fair index (keyed ones).
const NEXT_SCHEDULED: &str = "SELECT min(m) FROM (\
    SELECT min(run_at) AS m FROM jobchain_jobs \
        WHERE state = 'pending' AND concurrency_key IS NULL AND run_at > ?1 \
    UNION ALL SELECT min(run_at) FROM jobchain_jobs \
        WHERE state = 'pending' AND concurrency_key IS NOT NULL AND run_at > ?1)";

/// Resolves when a new job may run, in milliseconds.
pub fn run_at_ms(run_at: RunAt, now: i64) -> i64 {
    match run_at {
        RunAt::Now => now,
        RunAt::After(delay) => now.saturating_add(duration_ms(delay)),
        RunAt::At(at) => at.timestamp_millis(),
    }
}

/// Inserts one (validated) job in `state`, or returns the live job holding its unique key.
pub fn insert(
    conn: &Connection,
    now: i64,
    job: &NewJob,
    state: JobState,
    waiting_for: usize,
) -> Result<Enqueued, StoreError> {
    if let Some(key) = &job.unique_key {
        let existing: Option<i64> = conn
            .prepare_cached(FIND_LIVE_UNIQUE)
            .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
            .map_err(map_err)?;
        if let Some(id) = existing {
            return Ok(Enqueued {
                id: JobId(id),
                duplicate: true,
            });
        }
    }
    if let Some(key) = &job.debounce_key {
        let payload = serde_json::to_string(&job.payload)
            .map_err(|e| StoreError::Invalid(format!("payload: {e}")))?;
        let existing: Option<i64> = conn
            .prepare_cached(DEBOUNCE)
            .and_then(|mut s| {
                s.query_row(
                    params![key, payload, run_at_ms(job.run_at, now), job.priority.0],
                    |r| r.get(0),
                )
                .optional()
            })
            .map_err(map_err)?;
        if let Some(id) = existing {
            return Ok(Enqueued {
                id: JobId(id),
                duplicate: true,
            });
        }
    }
    let payload = serde_json::to_string(&job.payload)
        .map_err(|e| StoreError::Invalid(format!("payload of kind `{}`: {e}", job.kind)))?;
    let rank: Option<i64> = match &job.concurrency_key {
        Some(key) => Some(
            conn.prepare_cached(RANK_KEY)
                .and_then(|mut s| s.query_row(params![job.kind, key], |r| r.get(0)))
                .map_err(map_err)?,
        ),
        None => None,
    };
    let skip_if = job
        .skip_if
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Invalid(format!("condition of kind `{}`: {e}", job.kind)))?;
    let mut stmt = conn.prepare_cached(INSERT).map_err(map_err)?;
    stmt.execute(params![
        job.kind,
        job.queue,
        payload,
        job.priority.0,
        state.as_str(),
        run_at_ms(job.run_at, now),
        job.max_attempts,
        job.workflow_id.map(|w| w.to_string()),
        job.step,
        job.parent_id.map(|p| p.0),
        job.unique_key,
        job.optional,
        waiting_for as i64,
        now,
        job.debounce_key,
        job.concurrency_key,
        rank,
        skip_if,
    ])
    .map_err(map_err)?;
    Ok(Enqueued {
        id: JobId(conn.last_insert_rowid()),
        duplicate: false,
    })
}

/// Claims due pending jobs (see [`jobchain_core::Store::claim`]).
pub fn claim(
    conn: &Connection,
    now: i64,
    request: &ClaimRequest,
    pick: Pick,
) -> Result<Vec<ClaimedJob>, StoreError> {
    let (statement, kinds) = match pick {
        Pick::Due if request.is_builtin_only() => {
            (CLAIM_BUILTIN, serde_json::to_string(&request.kinds))
        }
        Pick::Due => (CLAIM, serde_json::to_string(&request.kinds)),
        Pick::Unkeyed => (CLAIM_UNKEYED, serde_json::to_string(&request.kinds)),
    };
    let kinds = kinds.map_err(|e| StoreError::Invalid(format!("kinds: {e}")))?;
    let mut stmt = conn.prepare_cached(statement).map_err(map_err)?;
    let rows = stmt
        .query_map(
            params![
                request.worker,
                now.saturating_add(duration_ms(request.lease)),
                now,
                request.queue,
                kinds,
                request.limit as i64,
            ],
            claimed_from_row,
        )
        .map_err(map_err)?;
    let jobs = rows.collect::<Result<Vec<_>, _>>().map_err(map_err)?;
    Ok(in_claim_order(jobs))
}

/// A claimed job from a row of a claim statement.
fn claimed_from_row(r: &Row<'_>) -> rusqlite::Result<ClaimedJob> {
    Ok(ClaimedJob {
        id: JobId(r.get(0)?),
        kind: r.get(1)?,
        queue: r.get(2)?,
        payload: parse_json(r, 3)?,
        priority: Priority(r.get(4)?),
        attempt: r.get(5)?,
        max_attempts: r.get(6)?,
        workflow_id: parse_workflow_id(r, 7)?,
        parent_id: r.get::<_, Option<i64>>(8)?.map(JobId),
        step: r.get(9)?,
        run_at: to_time(r.get(10)?),
    })
}

/// Claims up to `limit` due keyed jobs of the request's kind under a per-key limit (see
/// [`CLAIM_KEYED`]); returns them with the highest rank claimed.
pub fn claim_keyed(
    conn: &Connection,
    now: i64,
    request: &ClaimRequest,
    per_key: u32,
    limit: usize,
) -> Result<(Vec<ClaimedJob>, Option<i64>), StoreError> {
    let kind = request
        .kinds
        .first()
        .map(String::as_str)
        .unwrap_or_default();
    let mut top = None;
    let mut stmt = conn.prepare_cached(CLAIM_KEYED).map_err(map_err)?;
    let rows = stmt
        .query_map(
            params![
                request.worker,
                now.saturating_add(duration_ms(request.lease)),
                now,
                request.queue,
                kind,
                limit as i64,
                per_key,
            ],
            |r| Ok((claimed_from_row(r)?, r.get::<_, i64>(11)?)),
        )
        .map_err(map_err)?;
    let mut jobs = Vec::new();
    for row in rows {
        let (job, rank) = row.map_err(map_err)?;
        top = top.max(Some(rank));
        jobs.push(job);
    }
    Ok((in_claim_order(jobs), top))
}

/// Running jobs of a kind or a queue.
pub fn running_in(conn: &Connection, scope: &LimitScope) -> Result<u64, StoreError> {
    let (sql, name) = match scope {
        LimitScope::Kind(k) => (
            "SELECT count(*) FROM jobchain_jobs WHERE state = 'running' AND kind = ?1",
            k,
        ),
        LimitScope::Queue(q) => (
            "SELECT count(*) FROM jobchain_jobs WHERE state = 'running' AND queue = ?1",
            q,
        ),
    };
    conn.prepare_cached(sql)
        .and_then(|mut s| s.query_row([name], |r| r.get::<_, i64>(0)))
        .map(|n| n as u64)
        .map_err(map_err)
}

/// Extends held leases; returns the jobs no longer held.
pub fn heartbeat(
    conn: &Connection,
    now: i64,
    leases: &[Lease],
    lease: Duration,
) -> Result<Vec<JobId>, StoreError> {
    let until = now.saturating_add(duration_ms(lease));
    let mut stmt = conn.prepare_cached(HEARTBEAT).map_err(map_err)?;
    let mut lost = Vec::new();
    for l in leases {
        if stmt
            .execute(params![l.id.0, l.attempt, until])
            .map_err(map_err)?
            == 0
        {
            lost.push(l.id);
        }
    }
    Ok(lost)
}

/// Running jobs whose lease expired.
pub fn expired(conn: &Connection, now: i64, limit: usize) -> Result<Vec<ExpiredJob>, StoreError> {
    let mut stmt = conn.prepare_cached(EXPIRED).map_err(map_err)?;
    let rows = stmt
        .query_map(params![now, limit as i64], |r| {
            Ok(ExpiredJob {
                lease: Lease {
                    id: JobId(r.get(0)?),
                    attempt: r.get(1)?,
                },
                kind: r.get(2)?,
                max_attempts: r.get(3)?,
                workflow_id: parse_workflow_id(r, 4)?,
            })
        })
        .map_err(map_err)?;
    rows.collect::<Result<_, _>>().map_err(map_err)
}

/// Milliseconds until the earliest future pending job is due.
pub fn next_scheduled(conn: &Connection, now: i64) -> Result<Option<Duration>, StoreError> {
    let next: Option<i64> = conn
        .prepare_cached(NEXT_SCHEDULED)
        .and_then(|mut s| s.query_row([now], |r| r.get(0)))
        .map_err(map_err)?;
    Ok(next.map(|at| Duration::from_millis(at.saturating_sub(now).max(0) as u64)))
}

/// One job.
pub fn get(conn: &Connection, id: JobId) -> Result<Option<Job>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {JOB_COLUMNS} FROM jobchain_jobs WHERE id = ?1"
    ))
    .and_then(|mut s| s.query_row([id.0], job_from_row).optional())
    .map_err(map_err)
}

/// Jobs matching a filter, ordered by id.
pub fn list(conn: &Connection, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
    let (order, after) = if filter.newest_first {
        ("DESC", "<")
    } else {
        ("ASC", ">")
    };
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobchain_jobs WHERE (?1 IS NULL OR state = ?1) \
         AND (?2 IS NULL OR kind = ?2) AND (?3 IS NULL OR queue = ?3) \
         AND (?4 IS NULL OR workflow_id = ?4) AND (?7 IS NULL OR id {after} ?7) \
         ORDER BY id {order} LIMIT ?5 OFFSET ?6"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(map_err)?;
    let rows = stmt
        .query_map(
            params![
                filter.state.map(JobState::as_str),
                filter.kind,
                filter.queue,
                filter.workflow_id.map(|w| w.to_string()),
                filter.limit.unwrap_or(100) as i64,
                filter.offset as i64,
                filter.after.map(|id| id.0),
            ],
            job_from_row,
        )
        .map_err(map_err)?;
    rows.collect::<Result<_, _>>().map_err(map_err)
}

/// Completions and deaths per minute since `since` (milliseconds).
pub fn throughput(conn: &Connection, since: i64) -> Result<Vec<MinuteCount>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT finished_at / 60000, sum(state = 'completed'), sum(state = 'dead') \
             FROM jobchain_jobs WHERE finished_at >= ?1 AND state IN ('completed', 'dead') \
             GROUP BY 1 ORDER BY 1",
        )
        .map_err(map_err)?;
    let rows = stmt
        .query_map([since], |r| {
            Ok(MinuteCount {
                minute: to_time(r.get::<_, i64>(0)?.saturating_mul(60_000)),
                completed: r.get::<_, i64>(1)? as u64,
                dead: r.get::<_, i64>(2)? as u64,
            })
        })
        .map_err(map_err)?;
    rows.collect::<Result<_, _>>().map_err(map_err)
}

/// Counts by queue and state.
pub fn queue_stats(conn: &Connection) -> Result<Vec<QueueStats>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT queue, state, count(*) FROM jobchain_jobs GROUP BY queue, state ORDER BY queue",
        )
        .map_err(map_err)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(map_err)?;
    let mut counted = Vec::new();
    for row in rows {
        let (queue, state, count) = row.map_err(map_err)?;
        let state: JobState = state.parse().map_err(StoreError::corrupt)?;
        counted.push((queue, state, count.max(0) as u64));
    }
    Ok(QueueStats::from_rows(counted))
}

/// A job's step name, or its kind.
pub fn name(conn: &Connection, id: JobId) -> Result<String, StoreError> {
    conn.prepare_cached("SELECT coalesce(step, kind) FROM jobchain_jobs WHERE id = ?1")
        .and_then(|mut s| s.query_row([id.0], |r| r.get(0)))
        .map_err(map_err)
}

/// Deletes up to `limit` terminal jobs outside workflows that finished before `cutoff`.
pub fn delete_finished(conn: &Connection, cutoff: i64, limit: usize) -> Result<u64, StoreError> {
    let deleted = conn
        .prepare_cached(
            "DELETE FROM jobchain_jobs WHERE id IN (SELECT id FROM jobchain_jobs \
             WHERE workflow_id IS NULL AND state IN ('completed', 'dead', 'cancelled') \
             AND finished_at <= ?1 LIMIT ?2)",
        )
        .and_then(|mut s| s.execute(params![cutoff, limit as i64]))
        .map_err(map_err)?;
    Ok(deleted as u64)
}

/// Deletes up to `limit` dead jobs outside workflows that died before `cutoff`, of
/// `kind` when given.
pub fn purge_dead(
    conn: &Connection,
    cutoff: i64,
    kind: Option<&str>,
    limit: usize,
) -> Result<u64, StoreError> {
    let deleted = conn
        .prepare_cached(
            "DELETE FROM jobchain_jobs WHERE id IN (SELECT id FROM jobchain_jobs \
             WHERE state = 'dead' AND workflow_id IS NULL AND finished_at <= ?1 \
             AND (?2 IS NULL OR kind = ?2) LIMIT ?3)",
        )
        .and_then(|mut s| s.execute(params![cutoff, kind, limit as i64]))
        .map_err(map_err)?;
    Ok(deleted as u64)
}

/// Deletes a workflow's jobs; returns how many.
pub fn delete_of_workflow(conn: &Connection, id: &str) -> Result<u64, StoreError> {
    let deleted = conn
        .prepare_cached("DELETE FROM jobchain_jobs WHERE workflow_id = ?1")
        .and_then(|mut s| s.execute([id]))
        .map_err(map_err)?;
    Ok(deleted as u64)
}

fn parse_json(r: &Row<'_>, i: usize) -> rusqlite::Result<Value> {
    let text: String = r.get(i)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    })
}

pub(crate) fn parse_workflow_id(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<WorkflowId>> {
    let text: Option<String> = r.get(i)?;
    text.map(|t| {
        t.parse().map_err(|e: uuid::Error| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
        })
    })
    .transpose()
}

/// Reads a job from a row of [`JOB_COLUMNS`].
pub fn job_from_row(r: &Row<'_>) -> rusqlite::Result<Job> {
    let state: String = r.get(5)?;
    let errors: String = r.get(9)?;
    let output: Option<String> = r.get(10)?;
    let conversion = |i: usize, e: Box<dyn std::error::Error + Send + Sync>| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e)
    };
    Ok(Job {
        id: JobId(r.get(0)?),
        kind: r.get(1)?,
        queue: r.get(2)?,
        payload: parse_json(r, 3)?,
        priority: Priority(r.get(4)?),
        state: state.parse().map_err(|e: String| conversion(5, e.into()))?,
        run_at: to_time(r.get(6)?),
        attempts: r.get(7)?,
        max_attempts: r.get(8)?,
        errors: serde_json::from_str(&errors).map_err(|e| conversion(9, e.into()))?,
        output: output
            .map(|o| serde_json::from_str(&o))
            .transpose()
            .map_err(|e| conversion(10, e.into()))?,
        workflow_id: parse_workflow_id(r, 11)?,
        step: r.get(12)?,
        parent_id: r.get::<_, Option<i64>>(13)?.map(JobId),
        unique_key: r.get(14)?,
        optional: r.get(15)?,
        worker: r.get(16)?,
        lease_until: r.get::<_, Option<i64>>(17)?.map(to_time),
        created_at: to_time(r.get(18)?),
        started_at: r.get::<_, Option<i64>>(19)?.map(to_time),
        finished_at: r.get::<_, Option<i64>>(20)?.map(to_time),
        cancel_reason: r.get(21)?,
        concurrency_key: r.get(22)?,
    })
}
