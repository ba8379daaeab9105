//! SQL on `jobs`: enqueue, claim, settle, heartbeat, rescue and inspection.
//!
//! Batches are set-based: each kind of change in a batch is one statement over
//! `unnest`ed arrays, so a batch costs a fixed number of round trips.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use jobchain_core::job::{AttemptError, Job, JobId, JobState, NewJob, Priority, RunAt};
use jobchain_core::store::{
    in_claim_order, ClaimRequest, ClaimedJob, Enqueued, ExpiredJob, JobFilter, Lease, Outcome,
    QueueStats, SettleResult, Settlement,
};
use jobchain_core::{StoreError, WorkflowId};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{map_err, workflow, Sql};

const INSERT_MANY: &str = "INSERT INTO __schema__.jobs (kind, queue, payload, priority, state, \
    run_at, max_attempts, attempt_budget, workflow_id, step, parent_id, optional, waiting_for) \
    SELECT kind, queue, payload::jsonb, priority, state, \
        coalesce(run_at, now() + coalesce(delay_ms, 0) * interval '1 millisecond'), \
        max_attempts, max_attempts, workflow_id, step, parent_id, optional, waiting_for \
    FROM unnest($1::text[], $2::text[], $3::text[], $4::int2[], $5::text[], $6::timestamptz[], \
        $7::int8[], $8::int4[], $9::uuid[], $10::text[], $11::int8[], $12::bool[], $13::int4[]) \
        WITH ORDINALITY AS t(kind, queue, payload, priority, state, run_at, delay_ms, \
        max_attempts, workflow_id, step, parent_id, optional, waiting_for, ord) \
    ORDER BY ord RETURNING id";

const INSERT_UNIQUE: &str = "INSERT INTO __schema__.jobs (kind, queue, payload, priority, state, \
    run_at, max_attempts, attempt_budget, workflow_id, step, parent_id, unique_key, optional) \
    VALUES ($1, $2, $3::jsonb, $4, 'pending', \
        coalesce($5, now() + coalesce($6, 0) * interval '1 millisecond'), $7, $7, $8, $9, $10, $11, $12) \
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state IN ('blocked', 'pending', 'running') \
    DO NOTHING RETURNING id";

const FIND_LIVE_UNIQUE: &str = "SELECT id FROM __schema__.jobs WHERE unique_key = $1 \
    AND state IN ('blocked', 'pending', 'running')";

const CLAIM: &str = "WITH picked AS ( \
        SELECT id FROM __schema__.jobs \
        WHERE state = 'pending' AND queue = $1 AND run_at <= now() AND kind = ANY($2) \
        ORDER BY priority DESC, run_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
    UPDATE __schema__.jobs j SET state = 'running', attempts = j.attempts + 1, worker = $4, \
        lease_until = now() + $5 * interval '1 millisecond', started_at = now() \
    FROM picked WHERE j.id = picked.id \
    RETURNING j.id, j.kind, j.queue, j.payload, j.priority, j.attempts, j.max_attempts, \
        j.workflow_id, j.parent_id, j.step, j.run_at";

// Locks, in one round trip, the batch's workflows and then its jobs, each in id order.
// Every statement that changes several jobs or workflows takes its locks in this order
// (workflows by the triggers, jobs here and in the heartbeat), so concurrent settles,
// rescues and heartbeats cannot deadlock.
const LOCK_BATCH: &str = "WITH w AS (SELECT w.id FROM __schema__.workflows w \
        WHERE w.id IN (SELECT workflow_id FROM __schema__.jobs WHERE id = ANY($1)) \
        ORDER BY w.id FOR UPDATE) \
    SELECT j.id FROM __schema__.jobs j WHERE j.id = ANY($1) AND (SELECT count(*) FROM w) >= 0 \
    ORDER BY j.id FOR UPDATE";

const COMPLETE: &str = "UPDATE __schema__.jobs j SET state = 'completed', \
        output = t.output::jsonb, finished_at = now(), lease_until = NULL \
    FROM unnest($1::int8[], $2::int4[], $3::text[], $4::bool[]) AS t(id, attempt, output, expired_only) \
    WHERE j.id = t.id AND j.attempts = t.attempt AND j.state = 'running' \
        AND (NOT t.expired_only OR j.lease_until <= now()) \
    RETURNING j.id, j.workflow_id, \
        EXISTS (SELECT 1 FROM __schema__.dependencies d WHERE d.depends_on = j.id)";

// The common case in one autocommit statement: completions without follow-ups of jobs
// outside workflows. The jobs are locked in id order first (as everywhere); a job that
// turns out to be in a workflow is left alone and reported, for the full settle.
const COMPLETE_PLAIN: &str = "WITH locked AS (SELECT j.id, j.workflow_id FROM __schema__.jobs j \
        WHERE j.id = ANY($1) ORDER BY j.id FOR UPDATE), \
    done AS (UPDATE __schema__.jobs j SET state = 'completed', output = t.output::jsonb, \
            finished_at = now(), lease_until = NULL \
        FROM unnest($1::int8[], $2::int4[], $3::text[]) AS t(id, attempt, output) \
        JOIN locked l ON l.id = t.id AND l.workflow_id IS NULL \
        WHERE j.id = t.id AND j.attempts = t.attempt AND j.state = 'running' \
        RETURNING j.id, j.attempts) \
    SELECT id, attempts, true FROM done \
    UNION ALL SELECT id, 0, false FROM locked WHERE workflow_id IS NOT NULL";

const RETRY: &str = "UPDATE __schema__.jobs j SET state = 'pending', \
        run_at = now() + t.delay_ms * interval '1 millisecond', \
        errors = j.errors || jsonb_build_array(jsonb_build_object('attempt', t.attempt, \
            'at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), 'message', t.error)), \
        lease_until = NULL \
    FROM unnest($1::int8[], $2::int4[], $3::text[], $4::int8[], $5::bool[]) \
        AS t(id, attempt, error, delay_ms, expired_only) \
    WHERE j.id = t.id AND j.attempts = t.attempt AND j.state = 'running' \
        AND (NOT t.expired_only OR j.lease_until <= now()) \
    RETURNING j.id";

const DEAD: &str = "UPDATE __schema__.jobs j SET state = 'dead', finished_at = now(), \
        errors = j.errors || jsonb_build_array(jsonb_build_object('attempt', t.attempt, \
            'at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), 'message', t.error)), \
        lease_until = NULL \
    FROM unnest($1::int8[], $2::int4[], $3::text[], $4::bool[]) AS t(id, attempt, error, expired_only) \
    WHERE j.id = t.id AND j.attempts = t.attempt AND j.state = 'running' \
        AND (NOT t.expired_only OR j.lease_until <= now()) \
    RETURNING j.id, j.workflow_id, \
        EXISTS (SELECT 1 FROM __schema__.dependencies d WHERE d.depends_on = j.id)";

const RELEASE: &str = "UPDATE __schema__.jobs j SET state = 'pending', run_at = now(), \
        max_attempts = j.max_attempts + 1, lease_until = NULL, worker = NULL \
    FROM unnest($1::int8[], $2::int4[], $3::bool[]) AS t(id, attempt, expired_only) \
    WHERE j.id = t.id AND j.attempts = t.attempt AND j.state = 'running' \
        AND (NOT t.expired_only OR j.lease_until <= now()) \
    RETURNING j.id";

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

/// Sends the wake-up notification inside the caller's transaction (delivered on commit).
pub async fn notify_in(conn: &mut PgConnection, schema: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(crate::CHANNEL)
        .bind(schema)
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn to_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

fn split_run_at(run_at: RunAt) -> (Option<DateTime<Utc>>, Option<i64>) {
    match run_at {
        RunAt::Now => (None, None),
        RunAt::After(delay) => (None, Some(ms(delay))),
        RunAt::At(at) => (Some(at), None),
    }
}

fn encode_json(kind: &str, value: &Value) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Invalid(format!("payload of kind `{kind}`: {e}")))
}

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
        self.payload.push(encode_json(&job.kind, &job.payload)?);
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
            .fetch_all(conn)
            .await
            .map_err(map_err)?;
        Ok(ids.into_iter().map(JobId).collect())
    }
}

/// Inserts pending jobs: in bulk, except jobs with a unique key, which are checked one
/// by one. Workflow records are created for workflow ids that have none.
pub async fn insert_many(
    conn: &mut PgConnection,
    sql: &Sql,
    jobs: &[NewJob],
) -> Result<Vec<Enqueued>, StoreError> {
    insert_into(conn, sql, jobs, &[]).await
}

/// [`insert_many`], for a caller that holds the locks of the running workflows `locked`.
async fn insert_into(
    conn: &mut PgConnection,
    sql: &Sql,
    jobs: &[NewJob],
    locked: &[Uuid],
) -> Result<Vec<Enqueued>, StoreError> {
    for job in jobs {
        job.validate().map_err(StoreError::Invalid)?;
    }
    workflow::ensure_exist(conn, sql, jobs, locked).await?;
    let mut results: Vec<Option<Enqueued>> = vec![None; jobs.len()];
    let mut bulk = Columns::default();
    let mut bulk_index = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        match &job.unique_key {
            Some(key) => results[i] = Some(insert_unique(conn, sql, job, key).await?),
            None => {
                bulk.push(job, JobState::Pending, 0)?;
                bulk_index.push(i);
            }
        }
    }
    let ids = bulk.insert(conn, sql).await?;
    for (i, id) in bulk_index.into_iter().zip(ids) {
        results[i] = Some(Enqueued {
            id,
            duplicate: false,
        });
    }
    results
        .into_iter()
        .map(|r| r.ok_or_else(|| StoreError::database("an insert returned no id")))
        .collect()
}

async fn insert_unique(
    conn: &mut PgConnection,
    sql: &Sql,
    job: &NewJob,
    key: &str,
) -> Result<Enqueued, StoreError> {
    let (run_at, delay) = split_run_at(job.run_at);
    let payload = encode_json(&job.kind, &job.payload)?;
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
    let statement = sql.get(CLAIM);
    let rows = sqlx::query(statement)
        .bind(&request.queue)
        .bind(&request.kinds)
        .bind(i64::try_from(request.limit).unwrap_or(i64::MAX))
        .bind(&request.worker)
        .bind(ms(request.lease))
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    let jobs = rows
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<DateTime<Utc>, _>(10)?,
                ClaimedJob {
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
                },
            ))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(map_err)?;
    Ok(in_claim_order(jobs))
}

/// What [`complete_plain`] did with one settlement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlainResult {
    /// Completed.
    Applied,
    /// Rejected by the fence.
    Stale,
    /// The job is in a workflow after all: nothing was written; settle it in full.
    InWorkflow,
}

/// Completes plain jobs ([`Settlement::is_plain_completion`]) in one statement, outside
/// any transaction.
pub async fn complete_plain(
    conn: &mut PgConnection,
    sql: &Sql,
    settlements: &[&Settlement],
) -> Result<Vec<PlainResult>, StoreError> {
    let mut ids = Vec::with_capacity(settlements.len());
    let mut attempts = Vec::with_capacity(settlements.len());
    let mut outputs: Vec<Option<String>> = Vec::with_capacity(settlements.len());
    for s in settlements {
        ids.push(s.lease.id.0);
        attempts.push(to_i32(s.lease.attempt));
        let output = match &s.outcome {
            Outcome::Completed { output, .. } => output.as_ref(),
            _ => None,
        };
        outputs.push(output.map(|o| encode_json("output", o)).transpose()?);
    }
    let statement = sql.get(COMPLETE_PLAIN);
    let rows: Vec<(i64, i32, bool)> = sqlx::query_as(statement)
        .bind(ids)
        .bind(attempts)
        .bind(outputs)
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    let applied: HashSet<(i64, i32)> = rows
        .iter()
        .filter(|r| r.2)
        .map(|&(id, attempt, _)| (id, attempt))
        .collect();
    let in_workflow: HashSet<i64> = rows.iter().filter(|r| !r.2).map(|r| r.0).collect();
    Ok(settlements
        .iter()
        .map(|s| {
            if in_workflow.contains(&s.lease.id.0) {
                PlainResult::InWorkflow
            } else if applied.contains(&(s.lease.id.0, to_i32(s.lease.attempt))) {
                PlainResult::Applied
            } else {
                PlainResult::Stale
            }
        })
        .collect())
}

/// Applies a batch of settlements with one statement per kind of change.
pub async fn settle(
    conn: &mut PgConnection,
    sql: &Sql,
    settlements: &[Settlement],
) -> Result<Vec<SettleResult>, StoreError> {
    let ids: Vec<i64> = settlements.iter().map(|s| s.lease.id.0).collect();
    let statement = sql.get(LOCK_BATCH);
    sqlx::query(statement)
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await
        .map_err(map_err)?;

    let mut results = vec![SettleResult::Stale; settlements.len()];
    let mut settled: Vec<(JobId, JobState)> = Vec::new();
    // Workflows one of whose jobs ended here: each may have finished, unless it got a
    // follow-up here too (then it has a live job).
    let mut ended: Vec<Uuid> = Vec::new();
    let mut continuing: HashSet<Uuid> = HashSet::new();

    // Completions, then their follow-ups.
    let completions: Vec<usize> = (0..settlements.len())
        .filter(|&i| matches!(settlements[i].outcome, Outcome::Completed { .. }))
        .collect();
    if !completions.is_empty() {
        let mut c_ids = Vec::new();
        let mut c_attempts = Vec::new();
        let mut c_outputs: Vec<Option<String>> = Vec::new();
        let mut c_expired = Vec::new();
        for &i in &completions {
            let s = &settlements[i];
            let Outcome::Completed { output, .. } = &s.outcome else {
                continue;
            };
            c_ids.push(s.lease.id.0);
            c_attempts.push(to_i32(s.lease.attempt));
            c_outputs.push(
                output
                    .as_ref()
                    .map(|o| encode_json("output", o))
                    .transpose()?,
            );
            c_expired.push(s.only_if_expired);
        }
        let statement = sql.get(COMPLETE);
        let rows = sqlx::query(statement)
            .bind(c_ids)
            .bind(c_attempts)
            .bind(c_outputs)
            .bind(c_expired)
            .fetch_all(&mut *conn)
            .await
            .map_err(map_err)?;
        let mut applied: HashMap<i64, (Option<Uuid>, bool)> = HashMap::with_capacity(rows.len());
        for row in &rows {
            applied.insert(
                row.try_get(0).map_err(map_err)?,
                (
                    row.try_get(1).map_err(map_err)?,
                    row.try_get(2).map_err(map_err)?,
                ),
            );
        }
        let mut follow_ups = Vec::new();
        let mut owners = Vec::new();
        for &i in &completions {
            let s = &settlements[i];
            let Some((workflow, has_dependents)) = applied.get(&s.lease.id.0) else {
                continue;
            };
            results[i] = SettleResult::Applied {
                follow_ups: Vec::new(),
            };
            if let Some(w) = workflow {
                if *has_dependents {
                    settled.push((s.lease.id, JobState::Completed));
                }
                if !ended.contains(w) {
                    ended.push(*w);
                }
            }
            if let Outcome::Completed { follow_ups: f, .. } = &s.outcome {
                for job in f {
                    let mut job = job.clone();
                    job.parent_id = Some(s.lease.id);
                    if job.workflow_id.is_none() {
                        job.workflow_id = workflow.map(WorkflowId);
                    }
                    if let Some(w) = job.workflow_id {
                        continuing.insert(w.0);
                    }
                    follow_ups.push(job);
                    owners.push(i);
                }
            }
        }
        if !follow_ups.is_empty() {
            let created = insert_into(&mut *conn, sql, &follow_ups, &ended).await?;
            for (owner, enqueued) in owners.into_iter().zip(created) {
                if let SettleResult::Applied { follow_ups } = &mut results[owner] {
                    follow_ups.push(enqueued.id);
                }
            }
        }
    }

    // Retries.
    let retries: Vec<usize> = (0..settlements.len())
        .filter(|&i| matches!(settlements[i].outcome, Outcome::Retry { .. }))
        .collect();
    if !retries.is_empty() {
        let (mut r_ids, mut r_attempts, mut r_errors, mut r_delays, mut r_expired) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for &i in &retries {
            let s = &settlements[i];
            if let Outcome::Retry { error, delay } = &s.outcome {
                r_ids.push(s.lease.id.0);
                r_attempts.push(to_i32(s.lease.attempt));
                r_errors.push(error.clone());
                r_delays.push(ms(*delay));
                r_expired.push(s.only_if_expired);
            }
        }
        let statement = sql.get(RETRY);
        let applied: Vec<i64> = sqlx::query_scalar(statement)
            .bind(r_ids)
            .bind(r_attempts)
            .bind(r_errors)
            .bind(r_delays)
            .bind(r_expired)
            .fetch_all(&mut *conn)
            .await
            .map_err(map_err)?;
        mark_applied(settlements, &retries, &applied, &mut results);
    }

    // Deaths.
    let deaths: Vec<usize> = (0..settlements.len())
        .filter(|&i| matches!(settlements[i].outcome, Outcome::Dead { .. }))
        .collect();
    if !deaths.is_empty() {
        let (mut d_ids, mut d_attempts, mut d_errors, mut d_expired) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for &i in &deaths {
            let s = &settlements[i];
            if let Outcome::Dead { error } = &s.outcome {
                d_ids.push(s.lease.id.0);
                d_attempts.push(to_i32(s.lease.attempt));
                d_errors.push(error.clone());
                d_expired.push(s.only_if_expired);
            }
        }
        let statement = sql.get(DEAD);
        let rows = sqlx::query(statement)
            .bind(d_ids)
            .bind(d_attempts)
            .bind(d_errors)
            .bind(d_expired)
            .fetch_all(&mut *conn)
            .await
            .map_err(map_err)?;
        let mut applied = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.try_get(0).map_err(map_err)?;
            let workflow: Option<Uuid> = row.try_get(1).map_err(map_err)?;
            let has_dependents: bool = row.try_get(2).map_err(map_err)?;
            if let Some(w) = workflow {
                if has_dependents {
                    settled.push((JobId(id), JobState::Dead));
                }
                if !ended.contains(&w) {
                    ended.push(w);
                }
            }
            applied.push(id);
        }
        mark_applied(settlements, &deaths, &applied, &mut results);
    }

    // Releases.
    let releases: Vec<usize> = (0..settlements.len())
        .filter(|&i| matches!(settlements[i].outcome, Outcome::Released))
        .collect();
    if !releases.is_empty() {
        let ids: Vec<i64> = releases
            .iter()
            .map(|&i| settlements[i].lease.id.0)
            .collect();
        let attempts: Vec<i32> = releases
            .iter()
            .map(|&i| to_i32(settlements[i].lease.attempt))
            .collect();
        let expired: Vec<bool> = releases
            .iter()
            .map(|&i| settlements[i].only_if_expired)
            .collect();
        let statement = sql.get(RELEASE);
        let applied: Vec<i64> = sqlx::query_scalar(statement)
            .bind(ids)
            .bind(attempts)
            .bind(expired)
            .fetch_all(&mut *conn)
            .await
            .map_err(map_err)?;
        mark_applied(settlements, &releases, &applied, &mut results);
    }

    workflow::settle_dependents(&mut *conn, sql, settled).await?;
    ended.retain(|w| !continuing.contains(w));
    workflow::finish(conn, sql, &ended).await?;
    Ok(results)
}

fn mark_applied(
    settlements: &[Settlement],
    indexes: &[usize],
    applied: &[i64],
    results: &mut [SettleResult],
) {
    for &i in indexes {
        if applied.contains(&settlements[i].lease.id.0) {
            results[i] = SettleResult::Applied {
                follow_ups: Vec::new(),
            };
        }
    }
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
    lease_until, created_at, started_at, finished_at, cancel_reason \
    FROM __schema__.jobs WHERE id = $1";

const LIST_ASC: &str = "SELECT id, kind, queue, payload, priority, state, run_at, attempts, \
    max_attempts, errors, output, workflow_id, step, parent_id, unique_key, optional, worker, \
    lease_until, created_at, started_at, finished_at, cancel_reason \
    FROM __schema__.jobs WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR kind = $2) \
    AND ($3::text IS NULL OR queue = $3) AND ($4::uuid IS NULL OR workflow_id = $4) \
    ORDER BY id ASC LIMIT $5 OFFSET $6";

const LIST_DESC: &str = "SELECT id, kind, queue, payload, priority, state, run_at, attempts, \
    max_attempts, errors, output, workflow_id, step, parent_id, unique_key, optional, worker, \
    lease_until, created_at, started_at, finished_at, cancel_reason \
    FROM __schema__.jobs WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR kind = $2) \
    AND ($3::text IS NULL OR queue = $3) AND ($4::uuid IS NULL OR workflow_id = $4) \
    ORDER BY id DESC LIMIT $5 OFFSET $6";

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
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    rows.iter().map(job_from_row).collect()
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

/// Retries a dead job with a fresh budget of attempts and revives its branch.
pub async fn retry(conn: &mut PgConnection, sql: &Sql, id: JobId) -> Result<Job, StoreError> {
    let job = get(&mut *conn, sql, id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("job {id}")))?;
    if job.state != JobState::Dead {
        return Err(StoreError::Conflict(format!(
            "job {id} is {}, not dead: only dead jobs can be retried",
            job.state
        )));
    }
    let statement = sql.get(
        "UPDATE __schema__.jobs SET state = 'pending', run_at = now(), finished_at = NULL, \
         max_attempts = attempts + attempt_budget, worker = NULL WHERE id = $1",
    );
    sqlx::query(statement)
        .bind(id.0)
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    if let Some(wf) = job.workflow_id {
        workflow::revive(&mut *conn, sql, wf).await?;
    }
    workflow::revive_dependents(&mut *conn, sql, id).await?;
    get(conn, sql, id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("job {id}")))
}

/// Cancels a live job and cascades to its dependents.
pub async fn cancel(
    conn: &mut PgConnection,
    sql: &Sql,
    id: JobId,
    reason: &str,
) -> Result<Job, StoreError> {
    let job = get(&mut *conn, sql, id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("job {id}")))?;
    if job.state.is_terminal() {
        return Err(StoreError::Conflict(format!(
            "job {id} is already {}: only blocked, pending or running jobs can be cancelled",
            job.state
        )));
    }
    if let Some(wf) = job.workflow_id {
        workflow::lock(&mut *conn, sql, &[wf.0]).await?;
    }
    let statement = sql.get(
        "UPDATE __schema__.jobs SET state = 'cancelled', cancel_reason = $2, finished_at = now(), \
         lease_until = NULL WHERE id = $1 AND state IN ('blocked', 'pending', 'running')",
    );
    sqlx::query(statement)
        .bind(id.0)
        .bind(reason)
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    if let Some(wf) = job.workflow_id {
        workflow::settle_dependents(&mut *conn, sql, vec![(id, JobState::Cancelled)]).await?;
        workflow::finish(&mut *conn, sql, &[wf.0]).await?;
    }
    get(conn, sql, id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("job {id}")))
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
        })
    };
    read().map_err(|e| StoreError::corrupt(format!("a job row does not decode: {e}")).caused_by(e))
}
