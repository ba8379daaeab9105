//! PostgreSQL with many processes: transactional enqueue, concurrent migrations, three
//! worker processes draining one queue (with and without one of them killed), and
//! LISTEN/NOTIFY wake-ups across stores. Skipped, with the reason, when PostgreSQL is
//! unreachable — unless `JOBCHAIN_REQUIRE_POSTGRES=1`.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jobchain::postgres::PgClient;
use jobchain::{Client, JobContext, JobFilter, JobId, JobSpec, JobState, Step, Workflow};
use jobchain_conformance::support::{eventually, fast_config, job, postgres_harness};
use jobchain_conformance::Harness;
use serde_json::json;

fn spawn_worker(location: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_jobchain-test-worker"))
        .arg(location)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn a worker process")
}

/// The client's PostgreSQL pool and the schema its store works in.
fn pool_and_schema(client: &PgClient) -> (jobchain::postgres::sqlx::PgPool, String) {
    (client.pool().clone(), client.schema().to_string())
}

/// Enqueues `plain` plain jobs and `chains` chains of three links.
async fn enqueue_load(client: &Client, plain: usize, chains: usize) {
    let mut specs: Vec<JobSpec> = (0..plain)
        .map(|i| JobSpec::new("plain", json!({ "i": i })))
        .collect();
    specs.extend((0..chains).map(|_| JobSpec::new("chain", json!({ "left": 2 }))));
    for batch in specs.chunks(2000) {
        client.enqueue_many(batch.to_vec()).await.expect("enqueue");
    }
}

async fn count(client: &Client, state: JobState) -> usize {
    client
        .queue_stats()
        .await
        .expect("stats")
        .iter()
        .map(|q| q.counts.get(state) as usize)
        .sum()
}

async fn all_jobs(client: &Client) -> Vec<jobchain::Job> {
    let mut all = Vec::new();
    loop {
        let page = client
            .jobs(JobFilter {
                limit: Some(5000),
                offset: all.len(),
                ..JobFilter::default()
            })
            .await
            .expect("list");
        let done = page.len() < 5000;
        all.extend(page);
        if done {
            return all;
        }
    }
}

/// Every chain link has exactly one follow-up, except the last; returns the number of links.
fn check_chains(jobs: &[jobchain::Job]) -> usize {
    let mut children: HashMap<jobchain::JobId, usize> = HashMap::new();
    for job in jobs.iter().filter(|j| j.kind == "chain") {
        if let Some(parent) = job.parent_id {
            *children.entry(parent).or_default() += 1;
        }
    }
    let mut links = 0;
    for job in jobs.iter().filter(|j| j.kind == "chain") {
        links += 1;
        let left = job.payload["left"].as_u64().expect("left");
        let expected = usize::from(left > 0);
        assert_eq!(
            children.get(&job.id).copied().unwrap_or(0),
            expected,
            "chain link {} (left {left}) must have {expected} follow-up(s)",
            job.id
        );
    }
    links
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_enqueue_commits_or_rolls_back_with_the_business_row() {
    let Some(h) = postgres_harness().await else {
        return;
    };
    let (pool, schema) = pool_and_schema(h.pg());
    let orders = format!("\"{schema}\".orders");
    jobchain::postgres::sqlx::raw_sql(jobchain::postgres::sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {orders} (id bigint PRIMARY KEY)"
    )))
    .execute(&pool)
    .await
    .expect("create orders");
    let insert_order = format!("INSERT INTO {orders} (id) VALUES ($1)");
    let count_orders = format!("SELECT count(*) FROM {orders}");

    // Rolled back: neither the order nor its job nor its workflow.
    let mut tx = pool.begin().await.expect("begin");
    jobchain::postgres::sqlx::query(jobchain::postgres::sqlx::AssertSqlSafe(
        insert_order.clone(),
    ))
    .bind(1i64)
    .execute(&mut *tx)
    .await
    .expect("insert order");
    let id = h
        .pg()
        .enqueue_in(&mut tx, job("process_order", &json!({ "order": 1 })))
        .await
        .expect("enqueue in tx")
        .id;
    h.pg()
        .start_workflow_in(
            &mut tx,
            Workflow::new("order").step(Step::untyped("charge", job("process_order", &json!(1)))),
        )
        .await
        .expect("start in tx");
    assert!(h.client.job(id).await.is_err(), "invisible before commit");
    tx.rollback().await.expect("rollback");
    let orders_left: i64 = jobchain::postgres::sqlx::query_scalar(
        jobchain::postgres::sqlx::AssertSqlSafe(count_orders.clone()),
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(orders_left, 0);
    assert!(
        all_jobs(&h.client).await.is_empty(),
        "a rolled-back enqueue leaves no job"
    );
    assert!(h
        .client
        .workflows(Default::default())
        .await
        .expect("list")
        .is_empty());

    // Committed: both rows.
    let mut tx = pool.begin().await.expect("begin");
    jobchain::postgres::sqlx::query(jobchain::postgres::sqlx::AssertSqlSafe(insert_order))
        .bind(2i64)
        .execute(&mut *tx)
        .await
        .expect("insert order");
    let ids = h
        .pg()
        .enqueue_many_in(
            &mut tx,
            vec![JobSpec::new("process_order", json!({ "order": 2 }))],
        )
        .await
        .expect("enqueue in tx");
    tx.commit().await.expect("commit");
    let orders_left: i64 = jobchain::postgres::sqlx::query_scalar(
        jobchain::postgres::sqlx::AssertSqlSafe(count_orders),
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(orders_left, 1);
    let job = h.client.job(ids[0].id).await.expect("committed job");
    assert_eq!(job.payload, json!({ "order": 2 }));
    h.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_processes_migrate_once() {
    let Some(h) = postgres_harness().await else {
        return;
    };
    // The harness migrated its schema; a fresh one is migrated by four clients at once.
    let url = format!("{}_fresh", h.location);
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { jobchain::postgres::connect_url(&url).await })
        })
        .collect();
    let mut clients = Vec::new();
    for open in opens {
        clients.push(
            open.await
                .expect("task")
                .expect("every concurrent migration succeeds"),
        );
    }
    let (pool, schema) = pool_and_schema(&clients[0]);
    // Every version was applied exactly once, and none is missing.
    let (rows, versions, latest): (i64, i64, i32) =
        jobchain::postgres::sqlx::query_as(jobchain::postgres::sqlx::AssertSqlSafe(format!(
            "SELECT count(*), count(DISTINCT version), max(version) FROM \"{schema}\".migrations"
        )))
        .fetch_one(&pool)
        .await
        .expect("versions");
    assert_eq!(rows, versions, "a migration was applied twice");
    assert_eq!(i64::from(latest), versions, "a migration is missing");
    assert!(latest >= 2);
    jobchain::postgres::drop_schema(&pool, &schema)
        .await
        .expect("drop");
    for client in clients {
        client.close().await;
    }
    h.close().await;
}

async fn drain_with_processes(h: &Harness, kill_one: bool) {
    const PLAIN: usize = 27_000;
    const CHAINS: usize = 1_000;
    enqueue_load(&h.client, PLAIN, CHAINS).await;
    let mut workers: Vec<Child> = (0..3).map(|_| spawn_worker(&h.location)).collect();
    if kill_one {
        eventually("a third of the jobs to complete", || async {
            (count(&h.client, JobState::Completed).await >= (PLAIN + CHAINS) / 3).then_some(())
        })
        .await;
        workers[0].kill().expect("SIGKILL one worker");
        workers[0].wait().expect("reap");
    }
    let total = PLAIN + 3 * CHAINS;
    let started = Instant::now();
    let deadline = Duration::from_secs(240);
    loop {
        if count(&h.client, JobState::Completed).await == total {
            break;
        }
        assert!(
            started.elapsed() < deadline,
            "the jobs did not complete within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for mut worker in workers.drain(usize::from(kill_one)..) {
        drop(worker.stdin.take());
        let _ = worker.wait();
    }
    let jobs = all_jobs(&h.client).await;
    assert_eq!(jobs.len(), total, "no job lost, none duplicated");
    assert!(jobs.iter().all(|j| j.state == JobState::Completed));
    assert_eq!(check_chains(&jobs), 3 * CHAINS);
    let rescued: Vec<_> = jobs.iter().filter(|j| j.attempts > 1).collect();
    if kill_one {
        assert!(
            !rescued.is_empty(),
            "the killed worker held running jobs, which were rescued"
        );
        for job in &rescued {
            assert!(
                job.errors
                    .iter()
                    .all(|e| e.message.contains("lease expired")),
                "{:?}",
                job.errors
            );
        }
    } else {
        assert!(
            rescued.is_empty(),
            "no job ran twice: {:?}",
            rescued.first()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_worker_processes_drain_30000_jobs() {
    let Some(h) = postgres_harness().await else {
        return;
    };
    drain_with_processes(&h, false).await;
    h.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_process_loses_nothing() {
    let Some(h) = postgres_harness().await else {
        return;
    };
    drain_with_processes(&h, true).await;
    h.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_wakes_an_idle_worker_long_before_its_poll_interval() {
    let Some(h) = postgres_harness().await else {
        return;
    };
    let poll = Duration::from_secs(60);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let worker = jobchain::Worker::builder(&h.client)
        .config(fast_config())
        .configure(|c| c.poll_interval = poll)
        .handler("ping", move |_: JobContext, _: serde_json::Value| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(Instant::now());
                Ok(())
            }
        })
        .build()
        .expect("worker")
        .start();
    // Another store on the same schema: only PostgreSQL can tell the worker.
    let other = jobchain::open(&h.location).await.expect("second client");
    other
        .enqueue(job("ping", &json!(1)))
        .await
        .expect("enqueue");
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("first ping")
        .expect("ping");
    // Let the producer go idle (a shorter pause only makes the check weaker, never
    // wrong); the next job can then only come through LISTEN/NOTIFY.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let enqueued = Instant::now();
    other
        .enqueue(job("ping", &json!(2)))
        .await
        .expect("enqueue");
    let started = tokio::time::timeout(poll / 2, rx.recv())
        .await
        .expect("the job must start well before the poll interval")
        .expect("ping");
    let latency = started - enqueued;
    assert!(latency < poll / 4, "started after {latency:?}");
    worker.shutdown().await;
    other.close().await;
    h.close().await;
}

/// Without foreign keys, the cleaner itself removes a finished workflow's dependency
/// edges with its jobs: nothing of it is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleaning_a_finished_workflow_leaves_no_edges() {
    let Some(h) = postgres_harness().await else {
        return;
    };
    let (pool, schema) = pool_and_schema(h.pg());
    let count = |table: &str| {
        let (pool, sql) = (
            pool.clone(),
            format!("SELECT count(*) FROM \"{schema}\".{table}"),
        );
        async move {
            jobchain::postgres::sqlx::query_scalar::<_, i64>(
                jobchain::postgres::sqlx::AssertSqlSafe(sql),
            )
            .fetch_one(&pool)
            .await
            .expect("count")
        }
    };
    let wf = h
        .client
        .start_workflow(
            Workflow::new("cleaned")
                .step(Step::untyped("a", job("noop", &json!({}))))
                .step(Step::untyped("b", job("noop", &json!({}))).after("a"))
                .step(
                    Step::untyped("c", job("noop", &json!({})))
                        .after("a")
                        .after_optional("b"),
                ),
        )
        .await
        .expect("start")
        .id;
    let worker = jobchain::Worker::builder(&h.client)
        .config(fast_config())
        .handler("noop", |_: JobContext, _: serde_json::Value| async {
            Ok(())
        })
        .build()
        .expect("worker")
        .start();
    eventually("the workflow to complete", || async {
        let info = h.client.workflow(wf).await.expect("workflow");
        (info.state == jobchain::WorkflowState::Completed).then_some(())
    })
    .await;
    worker.shutdown().await;
    assert_eq!(count("dependencies").await, 3);
    let report = h
        .client
        .store()
        .clean(Duration::ZERO, 100)
        .await
        .expect("clean");
    assert_eq!((report.jobs, report.workflows), (3, 1));
    assert_eq!(count("dependencies").await, 0);
    assert_eq!(count("jobs").await, 0);
    assert_eq!(count("workflows").await, 0);
    h.close().await;
}

/// The SQL functions `add_job` and `start_workflow`: any language enqueues in its own
/// transaction (rolled back: nothing), with unique keys, and a worker runs what they
/// wrote; bad arguments are refused with a message that says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_functions_enqueue_in_the_callers_transaction() {
    use jobchain::postgres::sqlx::{self, AssertSqlSafe};
    let Some(h) = postgres_harness().await else {
        return;
    };
    let (pool, schema) = pool_and_schema(h.pg());
    let add_job =
        format!("SELECT \"{schema}\".add_job($1, $2::jsonb, queue => 'sql', unique_key => $3)");
    let start = format!("SELECT \"{schema}\".start_workflow('sql_step', '{{\"n\": 1}}')");

    let mut tx = pool.begin().await.expect("begin");
    let rolled_back: i64 = sqlx::query_scalar(AssertSqlSafe(add_job.clone()))
        .bind("sql_job")
        .bind(r#"{"n": 0}"#)
        .bind(None::<String>)
        .fetch_one(&mut *tx)
        .await
        .expect("add_job");
    tx.rollback().await.expect("rollback");
    assert!(
        h.client.job(JobId(rolled_back)).await.is_err(),
        "rolled back with the caller"
    );

    let mut tx = pool.begin().await.expect("begin");
    let id: i64 = sqlx::query_scalar(AssertSqlSafe(add_job.clone()))
        .bind("sql_job")
        .bind(r#"{"n": 1}"#)
        .bind(Some("once"))
        .fetch_one(&mut *tx)
        .await
        .expect("add_job");
    let same: i64 = sqlx::query_scalar(AssertSqlSafe(add_job.clone()))
        .bind("sql_job")
        .bind(r#"{"n": 2}"#)
        .bind(Some("once"))
        .fetch_one(&mut *tx)
        .await
        .expect("add_job again");
    assert_eq!(same, id, "a live job holds the unique key");
    let workflow: sqlx::types::Uuid = sqlx::query_scalar(AssertSqlSafe(start))
        .fetch_one(&mut *tx)
        .await
        .expect("start_workflow");
    tx.commit().await.expect("commit");

    let job = h.client.job(JobId(id)).await.expect("committed");
    assert_eq!((job.kind.as_str(), job.queue.as_str()), ("sql_job", "sql"));
    assert_eq!(job.payload, json!({"n": 1}));
    let worker = jobchain::Worker::builder(&h.client)
        .config(fast_config())
        .handler_with(
            "sql_job",
            jobchain::KindOptions::new().queue("sql"),
            |_: JobContext, _: serde_json::Value| async move { Ok(()) },
        )
        .handler(
            "sql_step",
            |_: JobContext, p: serde_json::Value| async move { Ok(p) },
        )
        .build()
        .expect("worker")
        .start();
    let info = h
        .client
        .wait_for_workflow(jobchain::WorkflowId(workflow), Duration::from_secs(30))
        .await
        .expect("the workflow finishes");
    assert_eq!(info.state, jobchain::WorkflowState::Completed);
    h.client
        .wait_for_job(JobId(id), Duration::from_secs(30))
        .await
        .expect("the job finishes");
    worker.shutdown().await;

    let err = sqlx::query_scalar::<_, i64>(AssertSqlSafe(add_job))
        .bind("")
        .bind("{}")
        .bind(None::<String>)
        .fetch_one(&pool)
        .await
        .expect_err("an empty kind");
    assert!(err.to_string().contains("kind must not be empty"), "{err}");
    h.close().await;
}
