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
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres, Row};
use uuid::Uuid;

use super::{encode_payload, map_err, ms, split_run_at, to_i32, Sql};

/// The bulk insert of jobs, without its end (`ORDER BY ord RETURNING id`): rows of 16
/// column arrays, `$1` to `$16` (see [`Columns::bind`]), in order.
macro_rules! insert_many_rows {
    () => {
        "INSERT INTO __schema__.jobs (kind, queue, payload, priority, state, \
    run_at, max_attempts, attempt_budget, workflow_id, step, parent_id, optional, waiting_for, \
    concurrency_key, fair_rank, skip_if) \
    SELECT kind, queue, payload::jsonb, priority, state, \
        coalesce(run_at, now() + coalesce(delay_ms, 0) * interval '1 millisecond'), \
        max_attempts, max_attempts, workflow_id, step, parent_id, optional, waiting_for, \
        concurrency_key, fair_rank, skip_if::jsonb \
    FROM unnest($1::text[], $2::text[], $3::text[], $4::int2[], $5::text[], $6::timestamptz[], \
        $7::int8[], $8::int4[], $9::uuid[], $10::text[], $11::int8[], $12::bool[], $13::int4[], \
        $14::text[], $15::int8[], $16::text[]) \
        WITH ORDINALITY AS t(kind, queue, payload, priority, state, run_at, delay_ms, \
        max_attempts, workflow_id, step, parent_id, optional, waiting_for, concurrency_key, \
        fair_rank, skip_if, ord) "
    };
}

const INSERT_MANY: &str = concat!(insert_many_rows!(), "ORDER BY ord RETURNING id");

// A declared workflow in one autocommit statement: its record, then, only if the record
// was written (no running workflow holds its unique key), its steps (`$1`-`$16`, the bulk
// insert's rows) and its edges (`$21`-`$23`, by position among the steps, from 1). A
// step's id is its position among the new ids: the rows are inserted in order, each
// taking the next value of the id sequence.
const START_WORKFLOW: &str = concat!(
    "WITH wf AS (INSERT INTO __schema__.workflows (id, name, unique_key, result_step) \
        VALUES ($17, $18, $19, $20) ON CONFLICT (unique_key) \
        WHERE unique_key IS NOT NULL AND state = 'running' DO NOTHING RETURNING id), \
    ins AS (",
    insert_many_rows!(),
    "WHERE EXISTS (SELECT 1 FROM wf) ORDER BY ord RETURNING id), \
    ids AS (SELECT array_agg(id ORDER BY id) AS a FROM ins), \
    edges AS (INSERT INTO __schema__.dependencies (job_id, depends_on, policy) \
        SELECT ids.a[e.dependent], ids.a[e.dependency], e.policy \
        FROM ids, unnest($21::int4[], $22::int4[], $23::text[]) AS e(dependent, dependency, policy) \
        WHERE ids.a IS NOT NULL) \
    SELECT id FROM ins ORDER BY id"
);

const INSERT_UNIQUE: &str = "INSERT INTO __schema__.jobs (kind, queue, payload, priority, state, \
    run_at, max_attempts, attempt_budget, workflow_id, step, parent_id, unique_key, optional, \
    concurrency_key, fair_rank) \
    VALUES ($1, $2, $3::jsonb, $4, 'pending', \
        coalesce($5, now() + coalesce($6, 0) * interval '1 millisecond'), $7, $7, $8, $9, $10, $11, $12, \
        $13, $14) \
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state IN ('blocked', 'pending', 'running') \
    DO NOTHING RETURNING id";

/// A debounced job: inserted, or collapsed into the pending job holding its key (the key
/// is cleared when that job starts or is cancelled). `xmax <> 0` tells an update.
const INSERT_DEBOUNCED: &str = "INSERT INTO __schema__.jobs (kind, queue, payload, priority, \
    state, run_at, max_attempts, attempt_budget, optional, debounce_key, concurrency_key, \
    fair_rank) \
    VALUES ($1, $2, $3::jsonb, $4, 'pending', now() + $5 * interval '1 millisecond', $6, $6, \
        $7, $8, $9, $10) \
    ON CONFLICT (debounce_key) WHERE debounce_key IS NOT NULL \
    DO UPDATE SET payload = excluded.payload, run_at = excluded.run_at, priority = excluded.priority \
    RETURNING id, xmax <> 0";

const FIND_LIVE_UNIQUE: &str = "SELECT id FROM __schema__.jobs WHERE unique_key = $1 \
    AND state IN ('blocked', 'pending', 'running')";

/// A claim statement: marks the due pending jobs of queue $1 and kinds $2 that also meet
/// `$filter` running, by priority, then run_at, then id, $3 at most.
macro_rules! claim_statement {
    ($filter:literal) => {
        concat!(
            "WITH picked AS (SELECT id FROM __schema__.jobs \
             WHERE state = 'pending' ",
            $filter,
            " AND queue = $1 AND run_at <= now() AND kind = ANY($2) \
               AND NOT EXISTS (SELECT 1 FROM __schema__.queues q WHERE q.name = $1 AND q.paused) \
             ORDER BY priority DESC, run_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
             UPDATE __schema__.jobs j SET state = 'running', attempts = j.attempts + 1, worker = $4, \
             lease_until = now() + $5 * interval '1 millisecond', started_at = now(), \
             debounce_key = NULL \
             FROM picked WHERE j.id = picked.id \
             RETURNING j.id, j.kind, j.queue, j.payload, j.priority, j.attempts, j.max_attempts, \
             j.workflow_id, j.parent_id, j.step, j.run_at"
        )
    };
}

/// Marks the due jobs of the kinds running, by priority, then run_at, then id.
const CLAIM: &str = claim_statement!("");

/// [`CLAIM`] after a position in claim order, within its priority: $6 the priority, ($7,
/// $8) the run_at and id of the last job taken there (see `ClaimCursor`).
const CLAIM_AFTER: &str = claim_statement!("AND priority = $6 AND (run_at, id) > ($7, $8)");

/// [`CLAIM`] of jobchain's own kinds alone, through their own index (migration 0013).
const CLAIM_BUILTIN: &str = claim_statement!("AND kind LIKE 'jobchain.%'");

/// A claim under limits in one call (see the functions `claim_limited` and `claim_keyed`
/// of migration 0010).
const LIMITED_CLAIM: &str = "SELECT * FROM __schema__.claim_limited($1, $2, $3, $4, $5, $6, $7, \
    $8, $9, $10, $11, $12, $13)";

/// A claim under a per-key limit alone: the function `claim_keyed` called directly, which
/// spares `claim_limited`'s second copy of the rows.
const KEYED_CLAIM: &str = "SELECT * FROM __schema__.claim_keyed($1, $2, $3, $4, $5, $6, $7, NULL)";

/// Takes the next ranks of concurrency keys ($2) of kinds ($1), $3 jobs each: each key's
/// last rank moves up by its count from where it was, or from its kind's floor if that
/// is higher; returns the new last ranks. Keys in order, so that two batches lock them
/// in the same order.
const RANK_KEYS: &str = "INSERT INTO __schema__.limit_keys AS lk (scope, key, last_rank) \
    SELECT t.scope, t.key, coalesce(s.floor, 0) + t.n \
    FROM unnest($1::text[], $2::text[], $3::int8[]) AS t(scope, key, n) \
    LEFT JOIN __schema__.limit_scopes s ON s.scope = t.scope \
    ORDER BY t.scope, t.key \
    ON CONFLICT (scope, key) DO UPDATE SET last_rank = greatest(excluded.last_rank, \
        lk.last_rank + excluded.last_rank - coalesce((SELECT s.floor \
            FROM __schema__.limit_scopes s WHERE s.scope = excluded.scope), 0)) \
    RETURNING scope, key, last_rank";

/// The fairness ranks of jobs of `kinds` with concurrency `keys` (None for unkeyed jobs),
/// in order: consecutive per key, from its next rank.
pub async fn rank_keys(
    conn: &mut PgConnection,
    sql: &Sql,
    kinds: &[String],
    keys: &[Option<String>],
) -> Result<Vec<Option<i64>>, StoreError> {
    use std::collections::BTreeMap;
    let mut counts: BTreeMap<(String, &str), i64> = BTreeMap::new();
    for (kind, key) in kinds.iter().zip(keys) {
        if let Some(key) = key {
            *counts
                .entry((LimitScope::Kind(kind.clone()).key(), key.as_str()))
                .or_default() += 1;
        }
    }
    if counts.is_empty() {
        return Ok(vec![None; keys.len()]);
    }
    let (mut scopes, mut names, mut ns) = (Vec::new(), Vec::new(), Vec::new());
    for ((scope, key), n) in &counts {
        scopes.push(scope.clone());
        names.push(key.to_string());
        ns.push(*n);
    }
    let rows: Vec<(String, String, i64)> = sqlx::query_as(sql.get(RANK_KEYS))
        .bind(&scopes)
        .bind(&names)
        .bind(&ns)
        .fetch_all(&mut *conn)
        .await
        .map_err(map_err)?;
    // The first rank of each key's jobs in this batch.
    let mut next: BTreeMap<(String, String), i64> = rows
        .into_iter()
        .map(|(scope, key, last)| {
            let n = counts
                .get(&(scope.clone(), key.as_str()))
                .copied()
                .unwrap_or(0);
            ((scope, key), last - n + 1)
        })
        .collect();
    Ok(kinds
        .iter()
        .zip(keys)
        .map(|(kind, key)| {
            let key = key.as_ref()?;
            let rank = next.get_mut(&(LimitScope::Kind(kind.clone()).key(), key.clone()))?;
            *rank += 1;
            Some(*rank - 1)
        })
        .collect())
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
    skip_if: Vec<Option<String>>,
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
        self.skip_if.push(
            job.skip_if
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| {
                    StoreError::Invalid(format!("condition of kind `{}`: {e}", job.kind))
                })?,
        );
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
        let ranks = if self.has_keys() {
            rank_keys(conn, sql, &self.kind, &self.concurrency_key).await?
        } else {
            vec![None; self.kind.len()]
        };
        let rows = self
            .bind(sqlx::query(sql.get(INSERT_MANY)), ranks)
            .fetch_all(&mut *conn)
            .await
            .map_err(map_err)?;
        ids_of(&rows)
    }

    /// Starts a declared workflow in one autocommit statement (see `START_WORKFLOW`):
    /// `self` holds its steps and `edges` its edges by index. Returns the steps' ids, or
    /// `None` when a running workflow holds its unique key (nothing was written). Steps
    /// with concurrency keys need their ranks first: the caller's transaction then.
    pub(crate) async fn start_workflow(
        self,
        conn: &mut PgConnection,
        sql: &Sql,
        workflow: &jobchain_core::workflow::NewWorkflow,
        edges: &[(usize, usize, jobchain_core::workflow::EdgePolicy)],
    ) -> Result<Option<Vec<JobId>>, StoreError> {
        let steps = self.len();
        let ranks = vec![None; steps];
        let rows = self
            .bind(sqlx::query(sql.get(START_WORKFLOW)), ranks)
            .bind(workflow.id.0)
            .bind(&workflow.name)
            .bind(&workflow.unique_key)
            .bind(&workflow.result_step)
            .bind(edges.iter().map(|e| position(e.0)).collect::<Vec<_>>())
            .bind(edges.iter().map(|e| position(e.1)).collect::<Vec<_>>())
            .bind(edges.iter().map(|e| e.2.as_str()).collect::<Vec<_>>())
            .fetch_all(&mut *conn)
            .await
            .map_err(map_err)?;
        let ids = ids_of(&rows)?;
        Ok((ids.len() == steps).then_some(ids))
    }

    /// Whether some row has a concurrency key (its rank is read before the insert).
    pub(crate) fn has_keys(&self) -> bool {
        self.concurrency_key.iter().any(Option::is_some)
    }

    /// Binds the columns, in the order `INSERT_MANY` takes them (the ranks of concurrency
    /// keys among them), as the next 16 parameters of `query`.
    pub(crate) fn bind(
        self,
        query: Query<'_, Postgres, PgArguments>,
        ranks: Vec<Option<i64>>,
    ) -> Query<'_, Postgres, PgArguments> {
        query
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
            .bind(ranks)
            .bind(self.skip_if)
    }

    /// How many rows there are.
    pub(crate) fn len(&self) -> usize {
        self.kind.len()
    }
}

/// The job ids of rows whose first column is one.
fn ids_of(rows: &[PgRow]) -> Result<Vec<JobId>, StoreError> {
    rows.iter()
        .map(|row| row.try_get(0).map(JobId).map_err(map_err))
        .collect()
}

/// A position among the rows of a statement, counted from 1 as SQL arrays are.
pub(crate) fn position(i: usize) -> i32 {
    i32::try_from(i + 1).unwrap_or(i32::MAX)
}

/// The fairness rank of one job (see [`rank_keys`]).
async fn rank_of(
    conn: &mut PgConnection,
    sql: &Sql,
    job: &NewJob,
) -> Result<Option<i64>, StoreError> {
    let ranks = rank_keys(
        conn,
        sql,
        std::slice::from_ref(&job.kind),
        std::slice::from_ref(&job.concurrency_key),
    )
    .await?;
    Ok(ranks.into_iter().next().flatten())
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
    let rank = rank_of(conn, sql, job).await?;
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
        .bind(rank)
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
    let rank = rank_of(conn, sql, job).await?;
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
            .bind(rank)
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
) -> Result<Vec<ClaimedJob>, StoreError> {
    let statement = if request.is_builtin_only() {
        CLAIM_BUILTIN
    } else {
        CLAIM
    };
    let rows = claim_query(sql, statement, request)
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    claimed_rows(&rows)
}

/// A claim statement with the parameters every claim of queue and kinds shares bound:
/// $1 the queue, $2 the kinds, $3 the limit, $4 the worker, $5 the lease in ms.
fn claim_query<'q>(
    sql: &Sql,
    statement: &'static str,
    request: &'q ClaimRequest,
) -> Query<'q, Postgres, PgArguments> {
    sqlx::query(sql.get(statement))
        .bind(&request.queue)
        .bind(&request.kinds)
        .bind(i64::try_from(request.limit).unwrap_or(i64::MAX))
        .bind(&request.worker)
        .bind(ms(request.lease))
}

/// Claims due pending jobs after `cursor` in claim order, within its priority.
pub async fn claim_after(
    conn: &mut PgConnection,
    sql: &Sql,
    request: &ClaimRequest,
    cursor: &crate::ClaimCursor,
) -> Result<Vec<ClaimedJob>, StoreError> {
    let rows = claim_query(sql, CLAIM_AFTER, request)
        .bind(cursor.priority)
        .bind(cursor.run_at)
        .bind(cursor.id)
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    claimed_rows(&rows)
}

/// Claimed jobs from the rows of a claim statement, in claim order.
pub(crate) fn claimed_rows(rows: &[PgRow]) -> Result<Vec<ClaimedJob>, StoreError> {
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

/// Claims under the request's limits (see [`LIMITED_CLAIM`]): one round trip; the scopes'
/// locks are held until the commit (at once, outside a transaction).
pub async fn claim_limited(
    conn: &mut PgConnection,
    sql: &Sql,
    request: &ClaimRequest,
) -> Result<Vec<ClaimedJob>, StoreError> {
    let key_scope = match (request.per_key, request.kinds.first()) {
        (Some(_), Some(kind)) => Some(LimitScope::Kind(kind.clone()).key()),
        _ => None,
    };
    if let (Some(per_key), Some(scope), true) =
        (request.per_key, &key_scope, request.limits.is_empty())
    {
        let rows = sqlx::query(sql.get(KEYED_CLAIM))
            .bind(&request.queue)
            .bind(&request.kinds[0])
            .bind(i64::try_from(request.limit).unwrap_or(i64::MAX))
            .bind(&request.worker)
            .bind(ms(request.lease))
            .bind(i64::from(per_key))
            .bind(scope)
            .fetch_all(conn)
            .await
            .map_err(map_err)?;
        return claimed_rows(&rows);
    }
    let mut scopes = Vec::new();
    let (mut fields, mut names) = (Vec::new(), Vec::new());
    let (mut max_running, mut rate_count, mut rate_ms) = (Vec::new(), Vec::new(), Vec::new());
    for l in &request.limits {
        scopes.push(l.scope.key());
        let (field, name) = match &l.scope {
            LimitScope::Kind(k) => ("kind", k),
            LimitScope::Queue(q) => ("queue", q),
        };
        fields.push(field);
        names.push(name.clone());
        max_running.push(l.max_running.map(i64::from));
        rate_count.push(l.rate.map(|r| i64::from(r.count)));
        rate_ms.push(l.rate.map(|r| ms(r.period)));
    }
    let rows = claim_query(sql, LIMITED_CLAIM, request)
        .bind(&scopes)
        .bind(&fields)
        .bind(&names)
        .bind(&max_running)
        .bind(&rate_count)
        .bind(&rate_ms)
        .bind(key_scope.as_ref().and(request.per_key.map(i64::from)))
        .bind(&key_scope)
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    claimed_rows(&rows)
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
