//! apalis on jobchain's W1: enqueue N of jobchain's reference no-op jobs (a ~100-byte
//! payload and priorities spread over 0–9, as `reference_payload` and `reference_priority`
//! in crates/jobchain-cli/src/bench/mod.rs make them) with `push_all`, then drain them with one
//! worker of `--concurrency` slots — on SQLite (a temp file, WAL, `synchronous=NORMAL`, as
//! jobchain runs it) and on PostgreSQL (apalis's own schema `apalis` in the database of
//! `--database`, emptied before each run). Prints one JSON object per store: the median
//! drain rate over `--runs` with its min and max. Run it through ../run.

use std::str::FromStr;
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_postgres::{PgPool, PostgresStorage};
use apalis_sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteStorage};
use futures::stream;

struct Args {
    jobs: u64,
    runs: usize,
    concurrency: usize,
    database: String,
    only: Option<String>,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        jobs: 2_000,
        runs: 3,
        concurrency: 10,
        database: "postgres://postgres@127.0.0.1:5432/test".into(),
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            println!("apalis-bench [--jobs 2000] [--runs 3] [--concurrency 10] [--database URL] [--only sqlite|postgres]");
            std::process::exit(0);
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || {
            value.parse::<u64>().ok().filter(|n| *n > 0).ok_or(format!(
                "{flag} takes a whole number above 0, not `{value}`"
            ))
        };
        match flag.as_str() {
            "--jobs" => args.jobs = number()?,
            "--runs" => args.runs = number()? as usize,
            "--concurrency" => args.concurrency = number()? as usize,
            "--database" => args.database = value,
            "--only" if value == "sqlite" || value == "postgres" => args.only = Some(value),
            _ => return Err(format!("unknown option `{flag} {value}`: see --help")),
        }
    }
    Ok(args)
}

/// SplitMix64, as jobchain's bench spreads its reference jobs.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

async fn noop(_job: serde_json::Value) -> Result<(), BoxDynError> {
    Ok(())
}

/// Resolves once `count_done` reports every job done (acknowledged in the store).
async fn all_done<F, Fut>(jobs: u64, count_done: F) -> Result<(), std::io::Error>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<i64, sqlx::Error>>,
{
    loop {
        match count_done().await {
            Ok(n) if n as u64 >= jobs => return Ok(()),
            Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(e) => return Err(std::io::Error::other(e)),
        }
    }
}

fn tasks(jobs: u64) -> impl futures::Stream<Item = Task<serde_json::Value>> + Unpin + Send {
    stream::iter((0..jobs).map(|i| {
        let payload = serde_json::json!({
            "user_id": mix(i) % 1_000_000,
            "action": "noop",
            "seq": i,
            "tags": ["bench", "noop"],
            "meta": { "source": "jobchain-bench", "attempt": 0 },
        });
        TaskBuilder::new(payload)
            .priority(((mix(i) >> 32) % 10) as usize)
            .build()
    }))
}

/// Runs a worker of `args.concurrency` slots on `backend` until the store counts every
/// job of `args.jobs` done in `table`; evaluates to the seconds it took. (A macro: the
/// two backends share no trait a function could name.)
macro_rules! drain {
    ($backend:expr, $pool:expr, $args:expr, $name:literal, $table:literal) => {{
        let worker = WorkerBuilder::new($name)
            .backend($backend)
            .concurrency($args.concurrency)
            .build(noop);
        let started = Instant::now();
        let pool = $pool.clone();
        let count_done = move || {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar(concat!(
                    "SELECT count(*) FROM ",
                    $table,
                    " WHERE status = 'Done'"
                ))
                .fetch_one(&pool)
                .await
            }
        };
        worker
            .run_until(all_done($args.jobs, count_done))
            .await
            .map_err(|e| e.to_string())?;
        started.elapsed().as_secs_f64()
    }};
}

/// Sets up `$storage` on `$pool`, enqueues `args.jobs` jobs and drains them; evaluates to
/// (enqueue seconds, drain seconds).
macro_rules! measure {
    ($storage:ident, $pool:expr, $args:expr, $name:literal, $table:literal) => {{
        $storage::setup(&$pool).await.map_err(|e| e.to_string())?;
        let mut backend = $storage::new(&$pool);
        let started = Instant::now();
        backend
            .push_all(&mut tasks($args.jobs))
            .await
            .map_err(|e| e.to_string())?;
        let enqueue = started.elapsed().as_secs_f64();
        (enqueue, drain!(backend, $pool, $args, $name, $table))
    }};
}

/// One SQLite run: (enqueue seconds, drain seconds).
async fn sqlite_run(args: &Args) -> Result<(f64, f64), String> {
    let dir = std::env::temp_dir().join(format!("jobchain-peer-apalis-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}/apalis.db", dir.display()))
        .map_err(|e| e.to_string())?
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
    let pool = SqlitePoolOptions::new()
        .connect_with(options)
        .await
        .map_err(|e| e.to_string())?;
    let (enqueue, drain) = measure!(SqliteStorage, pool, args, "jobchain-peer-sqlite", "Jobs");
    pool.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok((enqueue, drain))
}

/// One PostgreSQL run: (enqueue seconds, drain seconds).
async fn postgres_run(args: &Args) -> Result<(f64, f64), String> {
    let pool = PgPool::connect(&args.database)
        .await
        .map_err(|e| e.to_string())?;
    sqlx::query("DROP SCHEMA IF EXISTS apalis CASCADE")
        .execute(&pool)
        .await
        .map_err(|e| e.to_string())?;
    let (enqueue, drain) = measure!(
        PostgresStorage,
        pool,
        args,
        "jobchain-peer-postgres",
        "apalis.jobs"
    );
    sqlx::query("DROP SCHEMA IF EXISTS apalis CASCADE")
        .execute(&pool)
        .await
        .map_err(|e| e.to_string())?;
    pool.close().await;
    Ok((enqueue, drain))
}

fn summary(mut rates: Vec<f64>) -> (f64, f64, f64) {
    rates.sort_by(f64::total_cmp);
    let n = rates.len();
    let median = if n % 2 == 1 {
        rates[n / 2]
    } else {
        (rates[n / 2 - 1] + rates[n / 2]) / 2.0
    };
    (median.round(), rates[0].round(), rates[n - 1].round())
}

#[tokio::main]
async fn main() {
    let args = match args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("apalis-bench: {e}");
            std::process::exit(2);
        }
    };
    let mut stores: Vec<(&str, Vec<f64>, Vec<f64>)> = Vec::new();
    for store in ["sqlite", "postgres"] {
        if args.only.as_deref().is_none_or(|o| o == store) {
            stores.push((store, Vec::new(), Vec::new()));
        }
    }
    for round in 1..=args.runs {
        for (store, enqueues, drains) in &mut stores {
            let measured = tokio::time::timeout(Duration::from_secs(600), async {
                if *store == "sqlite" {
                    sqlite_run(&args).await
                } else {
                    postgres_run(&args).await
                }
            })
            .await
            .unwrap_or_else(|_| Err("the run took more than 600 s".into()));
            match measured {
                Ok((enqueue, drain)) => {
                    eprintln!(
                        "apalis {store}: round {round}: drain {:.0} jobs/s",
                        args.jobs as f64 / drain
                    );
                    enqueues.push(args.jobs as f64 / enqueue);
                    drains.push(args.jobs as f64 / drain);
                }
                Err(e) => {
                    eprintln!("apalis {store} failed: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
    for (store, enqueues, drains) in stores {
        let (drain, min, max) = summary(drains);
        let row = serde_json::json!({
            "peer": "apalis",
            "version": "1.0.0",
            "workload": "W1",
            "store": store,
            "settings": { "jobs": args.jobs, "runs": args.runs, "concurrency": args.concurrency },
            "drain_jobs_per_s": drain,
            "drain_min_max": [min, max],
            "enqueue_jobs_per_s": summary(enqueues).0,
        });
        println!("{row}");
    }
}
