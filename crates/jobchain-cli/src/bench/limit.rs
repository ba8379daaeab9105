//! LIMIT, the storage limit: a no-op job's whole life (insert, claim, complete) and a
//! 5-step chain performed with the fewest statements the database allows, on the same
//! store jobchain measures — the baseline every other workload is a ratio of.
//!
//! Nothing here is jobchain: a table of its own, hand-written statements, no retries, no
//! leases renewed, no workflow bookkeeping. Two modes: "single" (one transaction per step,
//! one job per claim) and "batched" (inserts of 1,000 per transaction, claims of 100,
//! completions of 100 per transaction). On PostgreSQL it runs with 1 and with 8
//! connections, each a producer and then a worker. The job is W1's: the same payload of
//! about 100 bytes and the same priorities spread over 0–9.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use jobchain::postgres::sqlx::{self, Connection, PgConnection, Row};
use serde_json::json;

use super::{figures, rate, BenchResult, Target};
use crate::CliError;

/// Steps of the chain workload.
const CHAIN: u64 = 5;
/// Jobs inserted per transaction when batched.
const INSERT_BATCH: u64 = 1000;
/// Jobs claimed (and completed) per transaction when batched.
const CLAIM_BATCH: u64 = 100;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Single,
    Batched,
}

/// What one configuration measured.
struct Outcome {
    /// Job executions (steps).
    units: u64,
    /// Seconds inserting the first steps.
    insert_s: f64,
    /// Seconds claiming and completing (and inserting next steps).
    drain_s: f64,
}

impl Outcome {
    fn lifecycle(&self) -> f64 {
        rate(self.units, self.insert_s + self.drain_s)
    }
    fn drain(&self) -> f64 {
        rate(self.units, self.drain_s)
    }
}

/// Jobs for the single mode: one transaction per step is slow on PostgreSQL, and a rate
/// needs a second or two, not the full W1 size.
fn single_jobs(jobs: u64) -> u64 {
    jobs.clamp(1, 10_000)
}

/// Runs the limit on the target's store: one row on SQLite, one per connection count on
/// PostgreSQL.
pub(crate) async fn run(target: &Target, jobs: u64) -> Result<Vec<BenchResult>, CliError> {
    let chain_jobs = (jobs / CHAIN).max(1) * CHAIN;
    match target.postgres() {
        None => {
            let path = std::path::PathBuf::from(&target.location);
            let (single, batched, chain) = tokio::task::spawn_blocking(move || {
                let single = sqlite::run(&path, Mode::Single, 1, single_jobs(jobs))?;
                let batched = sqlite::run(&path, Mode::Batched, 1, jobs)?;
                let chain = sqlite::run(&path, Mode::Batched, CHAIN, chain_jobs)?;
                Ok::<_, CliError>((single, batched, chain))
            })
            .await
            .map_err(|e| CliError::failed(format!("the SQLite limit run failed: {e}")))??;
            Ok(vec![result(jobs, 1, &single, &batched, &chain)])
        }
        Some((url, schema)) => {
            let mut rows = Vec::new();
            for connections in [1, 8] {
                let single =
                    postgres::run(url, schema, connections, Mode::Single, 1, single_jobs(jobs))
                        .await?;
                let batched =
                    postgres::run(url, schema, connections, Mode::Batched, 1, jobs).await?;
                let chain =
                    postgres::run(url, schema, connections, Mode::Batched, CHAIN, chain_jobs)
                        .await?;
                rows.push(result(jobs, connections, &single, &batched, &chain));
            }
            Ok(rows)
        }
    }
}

fn result(
    jobs: u64,
    connections: usize,
    single: &Outcome,
    batched: &Outcome,
    chain: &Outcome,
) -> BenchResult {
    BenchResult {
        workload: "LIMIT",
        settings: json!({
            "jobs": jobs,
            "single_jobs": single.units,
            "connections": connections,
            "insert_batch": INSERT_BATCH,
            "claim_batch": CLAIM_BATCH,
            "chain_steps": CHAIN,
        }),
        figures: figures(&[
            ("single_lifecycle_jobs_per_s", single.lifecycle().into()),
            ("single_drain_jobs_per_s", single.drain().into()),
            ("batched_lifecycle_jobs_per_s", batched.lifecycle().into()),
            ("batched_drain_jobs_per_s", batched.drain().into()),
            ("chain5_batched_steps_per_s", chain.lifecycle().into()),
        ]),
    }
}

/// The priority of first step `i` (next steps inherit it): W1's.
fn priority(i: u64) -> i16 {
    super::reference_priority(i)
}

fn failed(what: &str, e: impl std::fmt::Display) -> CliError {
    CliError::failed(format!("the storage-limit run failed to {what}: {e}"))
}

/// The payload of first step `i`: W1's.
fn payload(i: u64) -> String {
    super::reference_payload(i).to_string()
}

mod sqlite {
    use super::*;
    use rusqlite::{params, Connection as SqliteConnection};

    const SCHEMA: &str = "
        DROP TABLE IF EXISTS limit_jobs;
        CREATE TABLE limit_jobs (
            id INTEGER PRIMARY KEY,
            queue TEXT NOT NULL DEFAULT 'default',
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            priority INTEGER NOT NULL DEFAULT 0,
            state TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            run_at INTEGER NOT NULL,
            lease_until INTEGER,
            worker TEXT,
            created_at INTEGER NOT NULL,
            finished_at INTEGER,
            workflow INTEGER,
            step INTEGER NOT NULL DEFAULT 1
        );
        CREATE INDEX limit_jobs_claim ON limit_jobs (queue, priority DESC, run_at, id)
            WHERE state = 'pending';";

    const INSERT: &str =
        "INSERT INTO limit_jobs (kind, payload, priority, run_at, created_at, workflow, step) \
         VALUES ('noop', ?1, ?2, ?3, ?3, ?4, ?5)";

    const CLAIM: &str = "UPDATE limit_jobs SET state = 'running', attempts = attempts + 1, \
         lease_until = ?1, worker = 'limit' \
         WHERE id IN (SELECT id FROM limit_jobs WHERE queue = 'default' AND state = 'pending' \
             AND run_at <= ?2 ORDER BY priority DESC, run_at, id LIMIT ?3) \
         RETURNING id, payload, priority, workflow, step";

    const COMPLETE: &str = "UPDATE limit_jobs SET state = 'completed', finished_at = ?1, \
         lease_until = NULL WHERE id = ?2";

    fn now_ms() -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    /// One configuration on a fresh table in the file at `path`.
    pub(super) fn run(
        path: &std::path::Path,
        mode: Mode,
        steps: u64,
        jobs: u64,
    ) -> Result<Outcome, CliError> {
        let conn = SqliteConnection::open(path).map_err(|e| failed("open SQLite", e))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;",
        )
        .map_err(|e| failed("set the pragmas", e))?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| failed("create its table", e))?;
        let first = jobs / steps;
        let batch = if mode == Mode::Batched {
            INSERT_BATCH
        } else {
            1
        };

        let started = Instant::now();
        let mut insert = conn
            .prepare_cached(INSERT)
            .map_err(|e| failed("prepare", e))?;
        let mut i = 0;
        while i < first {
            let end = (i + batch).min(first);
            let tx = conn
                .unchecked_transaction()
                .map_err(|e| failed("begin", e))?;
            for n in i..end {
                let workflow = (steps > 1).then_some(n as i64);
                insert
                    .execute(params![payload(n), priority(n), now_ms(), workflow, 1])
                    .map_err(|e| failed("insert", e))?;
            }
            tx.commit().map_err(|e| failed("commit", e))?;
            i = end;
        }
        let insert_s = started.elapsed().as_secs_f64();

        let started = Instant::now();
        let claim_n = if mode == Mode::Batched {
            CLAIM_BATCH
        } else {
            1
        };
        let mut claim = conn
            .prepare_cached(CLAIM)
            .map_err(|e| failed("prepare", e))?;
        let mut complete = conn
            .prepare_cached(COMPLETE)
            .map_err(|e| failed("prepare", e))?;
        let mut done = 0;
        while done < jobs {
            let now = now_ms();
            let claimed = claim
                .query_map(params![now + 300_000, now, claim_n as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(|e| failed("claim", e))?;
            if claimed.is_empty() {
                return Err(failed(
                    "drain",
                    format!("the table ran dry at {done} of {jobs}"),
                ));
            }
            let tx = conn
                .unchecked_transaction()
                .map_err(|e| failed("begin", e))?;
            let now = now_ms();
            for (id, payload, priority, workflow, step) in &claimed {
                complete
                    .execute(params![now, id])
                    .map_err(|e| failed("complete", e))?;
                if (*step as u64) < steps {
                    insert
                        .execute(params![payload, priority, now, workflow, step + 1])
                        .map_err(|e| failed("insert the next step", e))?;
                }
            }
            tx.commit().map_err(|e| failed("commit", e))?;
            done += claimed.len() as u64;
        }
        let drain_s = started.elapsed().as_secs_f64();
        let completed: u64 = conn
            .query_row(
                "SELECT count(*) FROM limit_jobs WHERE state = 'completed'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| failed("count", e))?;
        if completed != jobs {
            return Err(failed(
                "complete every job",
                format!("{completed} of {jobs} completed"),
            ));
        }
        conn.execute_batch("DROP TABLE limit_jobs; VACUUM;")
            .map_err(|e| failed("drop its table", e))?;
        Ok(Outcome {
            units: jobs,
            insert_s,
            drain_s,
        })
    }
}

mod postgres {
    use super::*;
    use std::str::FromStr;

    use jobchain::postgres::sqlx::postgres::PgConnectOptions;

    const SCHEMA: &str = "
        DROP TABLE IF EXISTS limit_jobs;
        CREATE TABLE limit_jobs (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            queue text NOT NULL DEFAULT 'default',
            kind text NOT NULL,
            payload jsonb NOT NULL,
            priority smallint NOT NULL DEFAULT 0,
            state text NOT NULL DEFAULT 'pending',
            attempts int NOT NULL DEFAULT 0,
            run_at timestamptz NOT NULL DEFAULT now(),
            lease_until timestamptz,
            worker text,
            created_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz,
            workflow bigint,
            step int NOT NULL DEFAULT 1
        );
        CREATE INDEX limit_jobs_claim ON limit_jobs (queue, priority DESC, run_at, id)
            WHERE state = 'pending';";

    const INSERT_ONE: &str = "INSERT INTO limit_jobs (kind, payload, priority, workflow) \
         VALUES ('noop', $1::jsonb, $2, $3)";

    const INSERT_MANY: &str = "INSERT INTO limit_jobs (kind, payload, priority, workflow) \
         SELECT 'noop', p::jsonb, pr, w \
         FROM unnest($1::text[], $2::int2[], $3::int8[]) AS t(p, pr, w)";

    const CLAIM: &str = "WITH picked AS ( \
             SELECT id FROM limit_jobs WHERE queue = 'default' AND state = 'pending' \
                 AND run_at <= now() ORDER BY priority DESC, run_at, id \
                 LIMIT $1 FOR UPDATE SKIP LOCKED) \
         UPDATE limit_jobs j SET state = 'running', attempts = j.attempts + 1, \
             lease_until = now() + interval '5 minutes', worker = 'limit' \
         FROM picked WHERE j.id = picked.id \
         RETURNING j.id, j.payload::text";

    const COMPLETE: &str = "UPDATE limit_jobs SET state = 'completed', finished_at = now(), \
         lease_until = NULL WHERE id = ANY($1)";

    /// Completes and inserts each next step in one statement.
    const COMPLETE_CHAIN: &str = "WITH done AS ( \
             UPDATE limit_jobs SET state = 'completed', finished_at = now(), lease_until = NULL \
             WHERE id = ANY($1) RETURNING kind, payload, priority, workflow, step) \
         INSERT INTO limit_jobs (kind, payload, priority, workflow, step) \
         SELECT kind, payload, priority, workflow, step + 1 FROM done WHERE step < $2";

    async fn connect(url: &str, schema: &str) -> Result<PgConnection, CliError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| failed("read the PostgreSQL URL", e))?
            .options([("search_path", schema)]);
        PgConnection::connect_with(&options)
            .await
            .map_err(|e| failed("connect to PostgreSQL", e))
    }

    /// One configuration on a fresh table in `schema`, with `connections` connections.
    pub(super) async fn run(
        url: &str,
        schema: &str,
        connections: usize,
        mode: Mode,
        steps: u64,
        jobs: u64,
    ) -> Result<Outcome, CliError> {
        let mut setup = connect(url, schema).await?;
        sqlx::raw_sql(SCHEMA)
            .execute(&mut setup)
            .await
            .map_err(|e| failed("create its table", e))?;
        sqlx::raw_sql("CHECKPOINT")
            .execute(&mut setup)
            .await
            .map_err(|e| failed("checkpoint", e))?;
        let mut conns = Vec::new();
        for _ in 0..connections {
            conns.push(connect(url, schema).await?);
        }
        let first = jobs / steps;
        let n = connections as u64;

        let started = Instant::now();
        let producers: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(c, mut conn)| {
                let (lo, hi) = (first * c as u64 / n, first * (c as u64 + 1) / n);
                tokio::spawn(async move {
                    let workflow = |i: u64| (steps > 1).then_some(i as i64);
                    if mode == Mode::Single {
                        for i in lo..hi {
                            sqlx::query(INSERT_ONE)
                                .bind(payload(i))
                                .bind(priority(i))
                                .bind(workflow(i))
                                .execute(&mut conn)
                                .await
                                .map_err(|e| failed("insert", e))?;
                        }
                    } else {
                        let mut i = lo;
                        while i < hi {
                            let end = (i + INSERT_BATCH).min(hi);
                            let payloads: Vec<String> = (i..end).map(payload).collect();
                            let priorities: Vec<i16> = (i..end).map(priority).collect();
                            let workflows: Vec<Option<i64>> = (i..end).map(workflow).collect();
                            sqlx::query(INSERT_MANY)
                                .bind(payloads)
                                .bind(priorities)
                                .bind(workflows)
                                .execute(&mut conn)
                                .await
                                .map_err(|e| failed("insert", e))?;
                            i = end;
                        }
                    }
                    Ok::<_, CliError>(conn)
                })
            })
            .collect();
        let mut conns = Vec::new();
        for producer in producers {
            conns.push(producer.await.map_err(|e| failed("run a producer", e))??);
        }
        let insert_s = started.elapsed().as_secs_f64();

        let done = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let workers: Vec<_> = conns
            .into_iter()
            .map(|mut conn| {
                let done = done.clone();
                tokio::spawn(async move {
                    let limit = if mode == Mode::Batched {
                        CLAIM_BATCH
                    } else {
                        1
                    } as i64;
                    while done.load(Ordering::Relaxed) < jobs {
                        let rows = sqlx::query(CLAIM)
                            .bind(limit)
                            .fetch_all(&mut conn)
                            .await
                            .map_err(|e| failed("claim", e))?;
                        if rows.is_empty() {
                            // Another connection holds the rest, or is inserting next steps.
                            tokio::time::sleep(std::time::Duration::from_micros(500)).await;
                            continue;
                        }
                        let mut ids = Vec::with_capacity(rows.len());
                        for row in &rows {
                            ids.push(row.try_get::<i64, _>(0).map_err(|e| failed("read", e))?);
                            // The no-op handler reads its payload.
                            let _: &str = row.try_get(1).map_err(|e| failed("read", e))?;
                        }
                        if steps > 1 {
                            sqlx::query(COMPLETE_CHAIN)
                                .bind(&ids)
                                .bind(steps as i32)
                                .execute(&mut conn)
                                .await
                        } else {
                            sqlx::query(COMPLETE).bind(&ids).execute(&mut conn).await
                        }
                        .map_err(|e| failed("complete", e))?;
                        done.fetch_add(ids.len() as u64, Ordering::Relaxed);
                    }
                    conn.close().await.map_err(|e| failed("disconnect", e))
                })
            })
            .collect();
        for worker in workers {
            worker.await.map_err(|e| failed("run a worker", e))??;
        }
        let drain_s = started.elapsed().as_secs_f64();
        let completed: i64 =
            sqlx::query_scalar("SELECT count(*) FROM limit_jobs WHERE state = 'completed'")
                .fetch_one(&mut setup)
                .await
                .map_err(|e| failed("count", e))?;
        if completed as u64 != jobs {
            return Err(failed(
                "complete every job",
                format!("{completed} of {jobs} completed"),
            ));
        }
        sqlx::raw_sql("DROP TABLE limit_jobs")
            .execute(&mut setup)
            .await
            .map_err(|e| failed("drop its table", e))?;
        setup.close().await.map_err(|e| failed("disconnect", e))?;
        Ok(Outcome {
            units: jobs,
            insert_s,
            drain_s,
        })
    }
}
