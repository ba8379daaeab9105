//! SQL on `jobs` that moves jobs between states once they have been claimed or have
//! ended: the statements of a settle (each set-based over `unnest`ed arrays, so a batch
//! costs a fixed number of round trips), the cascades' updates, retry and cancel. A leaf
//! beside [`super::job`]: transactions that span tables are in [`super::ops`].

use std::collections::{BTreeMap, HashMap, HashSet};

use jobchain_core::job::{JobId, JobState};
use jobchain_core::rules;
use jobchain_core::store::{ClaimRequest, Outcome, SettleClaims, Settlement};
use jobchain_core::{StoreError, WorkflowId};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{encode_output, job, map_err, ms, to_i32, Sql};

// Locks, in one round trip, the batch's workflows and then its jobs, each in id order.
// Every statement that changes several jobs or workflows takes its locks in this order
// (workflows by the triggers, jobs here and in the heartbeat), so concurrent settles,
// rescues and heartbeats cannot deadlock.
const LOCK_BATCH: &str = "WITH w AS (SELECT w.id FROM __schema__.workflows w \
        WHERE w.id IN (SELECT workflow_id FROM __schema__.jobs WHERE id = ANY($1)) \
        ORDER BY w.id FOR UPDATE) \
    SELECT j.id FROM __schema__.jobs j WHERE j.id = ANY($1) AND (SELECT count(*) FROM w) >= 0 \
    ORDER BY j.id FOR UPDATE";

// The rescuer's lock: like [`LOCK_BATCH`], but rows another session holds are skipped,
// so that a stalled session's locks never hold up the rescue of other jobs. Returns the
// jobs locked together with their workflows.
const LOCK_BATCH_SKIP: &str = "WITH w AS (SELECT w.id FROM __schema__.workflows w \
        WHERE w.id IN (SELECT workflow_id FROM __schema__.jobs WHERE id = ANY($1)) \
        ORDER BY w.id FOR UPDATE SKIP LOCKED) \
    SELECT j.id FROM __schema__.jobs j WHERE j.id = ANY($1) \
        AND (j.workflow_id IS NULL OR j.workflow_id IN (SELECT id FROM w)) \
    ORDER BY j.id FOR UPDATE SKIP LOCKED";

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

const SNOOZE: &str = "UPDATE __schema__.jobs j SET state = 'pending', \
        run_at = now() + t.delay_ms * interval '1 millisecond', attempts = j.attempts - 1, \
        lease_until = NULL, worker = NULL \
    FROM unnest($1::int8[], $2::int4[], $3::int8[], $4::bool[]) \
        AS t(id, attempt, delay_ms, expired_only) \
    WHERE j.id = t.id AND j.attempts = t.attempt AND j.state = 'running' \
        AND (NOT t.expired_only OR j.lease_until <= now()) \
    RETURNING j.id";

const RELEASE: &str = "UPDATE __schema__.jobs j SET state = 'pending', run_at = now(), \
        max_attempts = j.max_attempts + 1, lease_until = NULL, worker = NULL \
    FROM unnest($1::int8[], $2::int4[], $3::bool[]) AS t(id, attempt, expired_only) \
    WHERE j.id = t.id AND j.attempts = t.attempt AND j.state = 'running' \
        AND (NOT t.expired_only OR j.lease_until <= now()) \
    RETURNING j.id";

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
    let (ids, attempts, _) = fences(settlements);
    let outputs = outputs(settlements)?;
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

/// Whether a settlement can take [`complete_batch`]: a completion by its worker whose
/// follow-ups are plain jobs (no unique, debounce or concurrency key, no condition, no
/// workflow but their parent's).
pub fn completes_in_one_call(s: &Settlement) -> bool {
    let Outcome::Completed { follow_ups, .. } = &s.outcome else {
        return false;
    };
    !s.only_if_expired
        && follow_ups.iter().all(|f| {
            f.unique_key.is_none()
                && f.debounce_key.is_none()
                && f.concurrency_key.is_none()
                && (f.workflow_id.is_none() || f.workflow_id == s.workflow_id)
                && f.skip_if.is_none()
        })
}

/// Completes jobs ([`completes_in_one_call`]) with their follow-ups, the dependents they
/// release and the workflows they finish, in one call that commits on its own (migration
/// 0014). Returns, per settlement, the ids of its follow-ups when it was applied (`None`:
/// rejected by its fence); or `None` when a released dependent may have to be skipped:
/// then nothing was written, and the batch takes the full settle.
pub async fn complete_batch(
    conn: &mut PgConnection,
    sql: &Sql,
    settlements: &[&Settlement],
    offer: Option<&ClaimRequest>,
) -> Result<Option<Completed>, StoreError> {
    let (ids, attempts, _) = fences(settlements);
    let outputs = outputs(settlements)?;
    let mut owners: Vec<i32> = Vec::new();
    let mut columns = job::Columns::default();
    for (i, s) in settlements.iter().enumerate() {
        let Outcome::Completed { follow_ups, .. } = &s.outcome else {
            return Err(StoreError::Invalid(format!(
                "job {} is not a completion: settle it in full",
                s.lease.id
            )));
        };
        rules::validate_jobs(follow_ups)?;
        for f in follow_ups {
            columns.push(f, JobState::Pending, 0)?;
            owners.push(job::position(i));
        }
    }
    let ranks = vec![None; columns.len()];
    let statement = sql.get(
        "SELECT * FROM __schema__.complete_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
         $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)",
    );
    let query = sqlx::query(statement)
        .bind(ids)
        .bind(attempts)
        .bind(outputs)
        .bind(owners);
    let query = columns
        .bind(query, ranks)
        .bind(offer.map(|o| &o.queue))
        .bind(offer.map(|o| &o.kinds))
        .bind(offer.map_or(0, |o| i32::try_from(o.limit).unwrap_or(i32::MAX)))
        .bind(offer.map(|o| &o.worker))
        .bind(offer.map(|o| ms(o.lease)));
    let rows = match query.fetch_all(conn).await {
        Ok(rows) => rows,
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some(SETTLE_IN_FULL) => {
            return Ok(None)
        }
        Err(e) => return Err(map_err(e)),
    };
    // Rows with a kind are jobs claimed on settle; the others are completions and follow-ups.
    let (claimed, rows): (Vec<PgRow>, Vec<PgRow>) = rows
        .into_iter()
        .partition(|r| matches!(r.try_get::<Option<&str>, _>(1), Ok(Some(_))));
    let mut written: HashMap<i64, Vec<JobId>> = HashMap::new();
    let mut made_pending = 0;
    for row in &rows {
        let job: Option<i64> = row.try_get(0).map_err(map_err)?;
        let follow_up: Option<i64> = row.try_get(11).map_err(map_err)?;
        match job {
            Some(job) => written.entry(job).or_default().extend(follow_up.map(JobId)),
            None => made_pending = follow_up.unwrap_or(0),
        }
    }
    let claimed = job::claimed_rows(&claimed)?;
    Ok(Some(Completed {
        follow_ups: settlements
            .iter()
            .map(|s| {
                written.remove(&s.lease.id.0).map(|mut ids| {
                    // Written in the order staged, so their ids rise in it.
                    ids.sort_unstable();
                    ids
                })
            })
            .collect(),
        claims: SettleClaims {
            all_claimed: usize::try_from(made_pending).is_ok_and(|n| n == claimed.len()),
            claimed,
        },
    }))
}

/// What [`complete_batch`] wrote and claimed on settle.
pub struct Completed {
    /// Per settlement, in order: `None` if its fence rejected it, else its follow-ups.
    pub follow_ups: Vec<Option<Vec<JobId>>>,
    /// The jobs claimed for the offering worker (all of those the call made pending?).
    pub claims: SettleClaims,
}

/// The SQLSTATE by which [`complete_batch`] asks for the full settle.
const SETTLE_IN_FULL: &str = "JC001";

/// A job that a settle statement ended (completed or dead).
#[derive(Clone, Copy, Debug)]
pub struct Ended {
    /// The job.
    pub id: JobId,
    /// Its workflow.
    pub workflow: Option<Uuid>,
    /// Whether some job depends on it.
    pub has_dependents: bool,
}

fn ended_rows(rows: &[PgRow]) -> Result<Vec<Ended>, StoreError> {
    rows.iter()
        .map(|row| {
            Ok(Ended {
                id: JobId(row.try_get(0)?),
                workflow: row.try_get(1)?,
                has_dependents: row.try_get(2)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(map_err)
}

/// The fence columns of a batch of settlements.
fn fences(batch: &[&Settlement]) -> (Vec<i64>, Vec<i32>, Vec<bool>) {
    (
        batch.iter().map(|s| s.lease.id.0).collect(),
        batch.iter().map(|s| to_i32(s.lease.attempt)).collect(),
        batch.iter().map(|s| s.only_if_expired).collect(),
    )
}

/// The encoded outputs of a batch of completions (`None` for other outcomes).
fn outputs(batch: &[&Settlement]) -> Result<Vec<Option<String>>, StoreError> {
    batch
        .iter()
        .map(|s| match &s.outcome {
            Outcome::Completed {
                output: Some(output),
                ..
            } => encode_output(output).map(Some),
            _ => Ok(None),
        })
        .collect()
}

/// Locks, in one round trip, the workflows of the jobs and then the jobs, each in id
/// order (see [`LOCK_BATCH`]).
pub async fn lock_batch(conn: &mut PgConnection, sql: &Sql, ids: &[i64]) -> Result<(), StoreError> {
    sqlx::query(sql.get(LOCK_BATCH))
        .bind(ids)
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// [`lock_batch`] for the rescuer: locks what is free and returns those jobs; the
/// others are held by another session (perhaps a stalled one) and left for a later pass.
pub async fn lock_batch_skipping(
    conn: &mut PgConnection,
    sql: &Sql,
    ids: &[i64],
) -> Result<HashSet<JobId>, StoreError> {
    let locked: Vec<i64> = sqlx::query_scalar(sql.get(LOCK_BATCH_SKIP))
        .bind(ids)
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    Ok(locked.into_iter().map(JobId).collect())
}

/// Completes the jobs of `batch` (completions) that are still held; returns those.
pub async fn complete(
    conn: &mut PgConnection,
    sql: &Sql,
    batch: &[&Settlement],
) -> Result<Vec<Ended>, StoreError> {
    let (ids, attempts, expired_only) = fences(batch);
    let outputs = outputs(batch)?;
    let rows = sqlx::query(sql.get(COMPLETE))
        .bind(ids)
        .bind(attempts)
        .bind(outputs)
        .bind(expired_only)
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    ended_rows(&rows)
}

/// Puts the jobs of `batch` (retries) that are still held back to pending after their
/// delay, recording the error; returns those.
pub async fn retry_later(
    conn: &mut PgConnection,
    sql: &Sql,
    batch: &[&Settlement],
) -> Result<Vec<JobId>, StoreError> {
    let (ids, attempts, expired_only) = fences(batch);
    let (mut errors, mut delays) = (Vec::new(), Vec::new());
    for s in batch {
        let (error, delay) = match &s.outcome {
            Outcome::Retry { error, delay } => (error.as_str(), ms(*delay)),
            _ => ("", 0),
        };
        errors.push(error);
        delays.push(delay);
    }
    let applied: Vec<i64> = sqlx::query_scalar(sql.get(RETRY))
        .bind(ids)
        .bind(attempts)
        .bind(errors)
        .bind(delays)
        .bind(expired_only)
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    Ok(applied.into_iter().map(JobId).collect())
}

/// Puts the jobs of `batch` (snoozes) that are still held back to pending after their
/// delay, giving their attempt back; returns those.
pub async fn snooze(
    conn: &mut PgConnection,
    sql: &Sql,
    batch: &[&Settlement],
) -> Result<Vec<JobId>, StoreError> {
    let (ids, attempts, expired_only) = fences(batch);
    let delays: Vec<i64> = batch
        .iter()
        .map(|s| match &s.outcome {
            Outcome::Snooze { delay } => ms(*delay),
            _ => 0,
        })
        .collect();
    let applied: Vec<i64> = sqlx::query_scalar(sql.get(SNOOZE))
        .bind(ids)
        .bind(attempts)
        .bind(delays)
        .bind(expired_only)
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    Ok(applied.into_iter().map(JobId).collect())
}

/// Moves the jobs of `batch` (deaths) that are still held to the dead-letter queue,
/// recording the error; returns those.
pub async fn kill(
    conn: &mut PgConnection,
    sql: &Sql,
    batch: &[&Settlement],
) -> Result<Vec<Ended>, StoreError> {
    let (ids, attempts, expired_only) = fences(batch);
    let errors: Vec<&str> = batch
        .iter()
        .map(|s| match &s.outcome {
            Outcome::Dead { error } => error.as_str(),
            _ => "",
        })
        .collect();
    let rows = sqlx::query(sql.get(DEAD))
        .bind(ids)
        .bind(attempts)
        .bind(errors)
        .bind(expired_only)
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    ended_rows(&rows)
}

/// Gives the jobs of `batch` (releases) that are still held back, pending at once and
/// without spending an attempt; returns those.
pub async fn release(
    conn: &mut PgConnection,
    sql: &Sql,
    batch: &[&Settlement],
) -> Result<Vec<JobId>, StoreError> {
    let (ids, attempts, expired_only) = fences(batch);
    let applied: Vec<i64> = sqlx::query_scalar(sql.get(RELEASE))
        .bind(ids)
        .bind(attempts)
        .bind(expired_only)
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    Ok(applied.into_iter().map(JobId).collect())
}

/// Makes a held job wait for `steps` new steps (see `Outcome::Await`; the attempt does
/// not count against `max_attempts`); returns its workflow (outer `None` when the lease
/// no longer holds).
pub async fn block_for_steps(
    conn: &mut PgConnection,
    sql: &Sql,
    settlement: &Settlement,
    steps: usize,
) -> Result<Option<Option<Uuid>>, StoreError> {
    let statement = sql.get(
        "UPDATE __schema__.jobs SET state = 'blocked', waiting_for = $3, \
         max_attempts = max_attempts + 1, lease_until = NULL, worker = NULL \
         WHERE id = $1 AND attempts = $2 AND state = 'running' \
             AND (NOT $4 OR lease_until <= now()) \
         RETURNING workflow_id",
    );
    sqlx::query_scalar(statement)
        .bind(settlement.lease.id.0)
        .bind(to_i32(settlement.lease.attempt))
        .bind(i32::try_from(steps).unwrap_or(i32::MAX))
        .bind(settlement.only_if_expired)
        .fetch_optional(conn)
        .await
        .map_err(map_err)
}

/// Jobs to end, each with its reason and the job that caused it (if any).
pub type Reasons = BTreeMap<i64, (String, Option<i64>)>;

/// Cancels blocked dependents, each with its reason and the dependency that caused it;
/// returns those that were live.
pub async fn cancel_dependents(
    conn: &mut PgConnection,
    sql: &Sql,
    cancels: &Reasons,
) -> Result<Vec<JobId>, StoreError> {
    end_with_reasons(
        conn,
        sql.get(
            "UPDATE __schema__.jobs j SET state = 'cancelled', cancel_reason = t.reason, \
             cancelled_by = t.by, finished_at = now(), lease_until = NULL \
             FROM unnest($1::int8[], $2::text[], $3::int8[]) AS t(id, reason, by) \
             WHERE j.id = t.id AND j.state IN ('blocked', 'pending', 'running') \
             RETURNING j.id",
        ),
        cancels,
    )
    .await
}

/// Runs an UPDATE that ends jobs `$1` with reasons `$2` caused by jobs `$3`; returns the
/// jobs it ended.
async fn end_with_reasons(
    conn: &mut PgConnection,
    statement: sqlx::AssertSqlSafe<std::sync::Arc<str>>,
    ends: &Reasons,
) -> Result<Vec<JobId>, StoreError> {
    let ids: Vec<i64> = ends.keys().copied().collect();
    let reasons: Vec<&str> = ends.values().map(|(r, _)| r.as_str()).collect();
    let by: Vec<Option<i64>> = ends.values().map(|(_, b)| *b).collect();
    let ended: Vec<i64> = sqlx::query_scalar(statement)
        .bind(ids)
        .bind(reasons)
        .bind(by)
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    Ok(ended.into_iter().map(JobId).collect())
}

/// Lowers blocked jobs' counts of unsettled dependencies by the given numbers; at zero
/// a job becomes pending. Returns those that became pending and may have to be skipped
/// (a condition, or a required dependency skipped with a cascade).
pub async fn satisfy(
    conn: &mut PgConnection,
    sql: &Sql,
    satisfied: &BTreeMap<i64, i32>,
) -> Result<Vec<Ready>, StoreError> {
    let ids: Vec<i64> = satisfied.keys().copied().collect();
    let counts: Vec<i32> = satisfied.values().copied().collect();
    let statement = sql.get(
        "UPDATE __schema__.jobs j SET waiting_for = j.waiting_for - t.n, \
         state = CASE WHEN j.waiting_for - t.n <= 0 THEN 'pending' ELSE j.state END, \
         run_at = CASE WHEN j.waiting_for - t.n <= 0 THEN greatest(j.run_at, now()) \
             ELSE j.run_at END \
         FROM unnest($1::int8[], $2::int4[]) AS t(id, n) \
         WHERE j.id = t.id AND j.state = 'blocked' \
         RETURNING j.id, j.state = 'pending', j.skip_if, CASE WHEN j.state = 'pending' THEN \
             (SELECT p.id FROM __schema__.dependencies d \
              JOIN __schema__.jobs p ON p.id = d.depends_on \
              WHERE d.job_id = j.id AND d.policy = 'required' AND p.state = 'skipped' \
                  AND (p.cancelled_by IS NOT NULL OR (p.skip_if->>'cascade')::boolean) \
              ORDER BY p.id LIMIT 1) END",
    );
    let rows: Vec<SatisfiedRow> = sqlx::query_as(statement)
        .bind(ids)
        .bind(counts)
        .fetch_all(conn)
        .await
        .map_err(map_err)?;
    Ok(rows
        .into_iter()
        .filter(|(_, pending, condition, cause)| {
            *pending && (condition.is_some() || cause.is_some())
        })
        .map(|(id, _, condition, cause)| Ready {
            id: JobId(id),
            condition: condition.map(|c| c.0),
            cascaded_from: cause.map(JobId),
        })
        .collect())
}

/// A job whose count was lowered: id, whether it became pending, its condition, and a
/// required dependency skipped with a cascade.
type SatisfiedRow = (i64, bool, Option<sqlx::types::Json<Value>>, Option<i64>);

/// A job that just became ready and may have to be skipped: by its own condition, or
/// because a required dependency was skipped with a cascade.
pub struct Ready {
    /// The job.
    pub id: JobId,
    /// Its condition, if it has one.
    pub condition: Option<Value>,
    /// A required dependency skipped with a cascade (the first, by id), if any.
    pub cascaded_from: Option<JobId>,
}

/// Marks jobs skipped, each with its reason and the dependency whose skip cascaded to it
/// (if any); returns those that were blocked or pending.
pub async fn skip(
    conn: &mut PgConnection,
    sql: &Sql,
    skips: &Reasons,
) -> Result<Vec<JobId>, StoreError> {
    end_with_reasons(
        conn,
        sql.get(
            "UPDATE __schema__.jobs j SET state = 'skipped', cancel_reason = t.reason, \
             cancelled_by = t.by, finished_at = now(), lease_until = NULL \
             FROM unnest($1::int8[], $2::text[], $3::int8[]) AS t(id, reason, by) \
             WHERE j.id = t.id AND j.state IN ('blocked', 'pending') \
             RETURNING j.id",
        ),
        skips,
    )
    .await
}

/// The jobs still cancelled because one of `causes` failed.
pub async fn cancelled_because_of(
    conn: &mut PgConnection,
    sql: &Sql,
    causes: &[i64],
) -> Result<Vec<i64>, StoreError> {
    let statement = sql
        .get("SELECT id FROM __schema__.jobs WHERE cancelled_by = ANY($1) AND state = 'cancelled'");
    sqlx::query_scalar(statement)
        .bind(causes)
        .fetch_all(conn)
        .await
        .map_err(map_err)
}

/// Makes a cancelled job blocked again, waiting for `waiting` dependencies.
pub async fn block_again(
    conn: &mut PgConnection,
    sql: &Sql,
    id: i64,
    waiting: usize,
) -> Result<(), StoreError> {
    let statement = sql.get(
        "UPDATE __schema__.jobs SET state = 'blocked', waiting_for = $2, \
         cancel_reason = NULL, cancelled_by = NULL, finished_at = NULL WHERE id = $1",
    );
    sqlx::query(statement)
        .bind(id)
        .bind(i32::try_from(waiting).unwrap_or(i32::MAX))
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// Makes a dead job pending at once with a fresh budget of attempts.
pub async fn pend_again(conn: &mut PgConnection, sql: &Sql, id: JobId) -> Result<(), StoreError> {
    let statement = sql.get(
        "UPDATE __schema__.jobs SET state = 'pending', run_at = now(), finished_at = NULL, \
         max_attempts = attempts + attempt_budget, worker = NULL WHERE id = $1",
    );
    sqlx::query(statement)
        .bind(id.0)
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// Marks a live job cancelled by a user.
pub async fn mark_cancelled(
    conn: &mut PgConnection,
    sql: &Sql,
    id: JobId,
    reason: &str,
) -> Result<(), StoreError> {
    let statement = sql.get(
        "UPDATE __schema__.jobs SET state = 'cancelled', cancel_reason = $2, finished_at = now(), \
         lease_until = NULL, debounce_key = NULL \
         WHERE id = $1 AND state IN ('blocked', 'pending', 'running')",
    );
    sqlx::query(statement)
        .bind(id.0)
        .bind(reason)
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// Marks a dead job cancelled (discarded from the dead-letter queue); returns whether it
/// was dead.
pub async fn discard_dead(
    conn: &mut PgConnection,
    sql: &Sql,
    id: JobId,
    reason: &str,
) -> Result<bool, StoreError> {
    let statement = sql.get(
        "UPDATE __schema__.jobs SET state = 'cancelled', cancel_reason = $2 \
         WHERE id = $1 AND state = 'dead'",
    );
    let done = sqlx::query(statement)
        .bind(id.0)
        .bind(reason)
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(done.rows_affected() > 0)
}

/// Marks every live job of a workflow cancelled with it.
pub async fn cancel_in_workflow(
    conn: &mut PgConnection,
    sql: &Sql,
    id: WorkflowId,
) -> Result<(), StoreError> {
    let statement = sql.get(
        "UPDATE __schema__.jobs SET state = 'cancelled', cancel_reason = 'workflow cancelled', \
         finished_at = now(), lease_until = NULL \
         WHERE workflow_id = $1 AND state IN ('blocked', 'pending', 'running')",
    );
    sqlx::query(statement)
        .bind(id.0)
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}
