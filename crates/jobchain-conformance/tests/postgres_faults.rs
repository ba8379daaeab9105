//! PostgreSQL under the faults an operator meets: a worker stalled inside its settle
//! transaction, an outage during shutdown, and an outage longer than the lease. The
//! outages are made with a cuttable proxy in front of the server, so they reach only the
//! process under test. Skipped, with the reason, when PostgreSQL is unreachable — unless
//! `JOBCHAIN_REQUIRE_POSTGRES=1`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jobchain::core::store::{Lease, Outcome, SettleResult, Settlement};
use jobchain::core::workflow::{NewStep, NewWorkflow};
use jobchain::core::NewJob;
use jobchain::postgres::sqlx::{self, AssertSqlSafe};
use jobchain::postgres::{PgClient, PgOptions};
use jobchain::{EnqueueOptions, JobContext, JobId, JobState, WorkflowId};
use jobchain_conformance::proxy::Proxy;
use jobchain_conformance::support::{
    claim_request, eventually, fast_config, postgres_harness, Recorder, StartWorker, PATIENCE,
};
use jobchain_conformance::Harness;
use serde_json::json;

/// The server behind a `postgres://` URL.
fn server_addr(url: &str) -> SocketAddr {
    let rest = url.split_once("://").expect("scheme").1;
    let authority = rest.split('/').next().expect("authority");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:5432")
    };
    host.to_socket_addrs()
        .expect("resolve the server")
        .next()
        .expect("an address")
}

/// A second client on the harness's schema, connected through `proxy` when one is given.
async fn second_client(
    h: &Harness,
    proxy: Option<&Proxy>,
    adjust: impl FnOnce(&mut PgOptions),
) -> PgClient {
    let (url, mut options) = PgOptions::from_url(&h.location).expect("harness location");
    adjust(&mut options);
    let url = proxy.map_or(url.clone(), |p| p.postgres_url(&url));
    jobchain::postgres::connect(&url, options)
        .await
        .expect("connect a second client")
}

/// A proxy in front of the server, a client through it, and `n` jobs of `kind`.
async fn behind_a_proxy(h: &Harness, kind: &str, n: usize) -> (Proxy, PgClient, Vec<JobId>) {
    let proxy = Proxy::start(server_addr(&jobchain_conformance::support::postgres_url()))
        .await
        .expect("proxy");
    let cut_off = second_client(h, Some(&proxy), |_| {}).await;
    let ids = h
        .client
        .enqueue_many((0..n).map(|i| jobchain::JobSpec::new(kind, json!({ "i": i }))))
        .await
        .expect("enqueue")
        .iter()
        .map(|e| e.id)
        .collect();
    (proxy, cut_off, ids)
}

fn rescue(lease: Lease) -> Settlement {
    Settlement {
        lease,
        outcome: Outcome::Retry {
            error: "lease expired".into(),
            delay: Duration::ZERO,
        },
        only_if_expired: true,
        workflow_id: None,
    }
}

/// Finding 1: a worker stopped inside its settle transaction holds the locks of its
/// batch's workflow and jobs. The rescue of other jobs must not wait for it at all, and
/// a completion in the locked workflow waits only until the server ends the stalled
/// session (its `idle_in_transaction_timeout`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_session_never_holds_up_the_queue() {
    let Some(h) = postgres_harness().await else {
        return;
    };
    let staller = second_client(&h, None, |o| {
        o.idle_in_transaction_timeout = Duration::from_secs(1);
    })
    .await;
    let store = h.client.store();
    let step = |kind: &str| NewStep {
        job: NewJob::new(kind, json!({}), EnqueueOptions::new()),
        depends_on: Vec::new(),
    };
    let wf = store
        .start_workflow(NewWorkflow {
            id: WorkflowId::new(),
            name: "shared".into(),
            unique_key: None,
            steps: vec![step("k"), step("k")],
            result_step: None,
        })
        .await
        .expect("start");
    let plain = h
        .client
        .enqueue(jobchain::JobSpec::new("k", json!({})))
        .await
        .expect("enqueue")
        .id;
    let claimed = store
        .claim(claim_request("w", "k", Duration::ZERO))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 3);
    let lease = |id: JobId| Lease { id, attempt: 1 };
    let (a, b) = (wf.jobs[0], wf.jobs[1]);

    // The stalled worker: mid-settle, holding the workflow's row and its first job's.
    let schema = staller.schema().to_string();
    let mut tx = staller.pool().begin().await.expect("begin");
    sqlx::query(AssertSqlSafe(format!(
        "SELECT 1 FROM \"{schema}\".workflows WHERE id = $1 FOR UPDATE"
    )))
    .bind(wf.id.0)
    .execute(&mut *tx)
    .await
    .expect("lock the workflow");
    sqlx::query(AssertSqlSafe(format!(
        "SELECT 1 FROM \"{schema}\".jobs WHERE id = $1 FOR UPDATE"
    )))
    .bind(a.0)
    .execute(&mut *tx)
    .await
    .expect("lock a job");

    let rescued = tokio::time::timeout(
        PATIENCE,
        store.settle(vec![rescue(lease(a)), rescue(lease(plain))]),
    )
    .await
    .expect("the rescue waited on the stalled session")
    .expect("rescue");
    assert_eq!(
        rescued[0],
        SettleResult::Stale,
        "the locked job is left for later"
    );
    assert!(matches!(rescued[1], SettleResult::Applied { .. }));

    let started = Instant::now();
    let completed = tokio::time::timeout(
        PATIENCE,
        store.settle(vec![Settlement {
            lease: lease(b),
            outcome: Outcome::Completed {
                output: None,
                follow_ups: Vec::new(),
            },
            only_if_expired: false,
            workflow_id: Some(wf.id),
        }]),
    )
    .await
    .expect("the completion waited on the stalled session for ever")
    .expect("complete");
    assert!(matches!(completed[0], SettleResult::Applied { .. }));
    eprintln!(
        "a completion in the stalled workflow waited {:?}",
        started.elapsed()
    );
    assert!(
        tx.commit().await.is_err(),
        "the server ended the stalled session"
    );
    let later = store.settle(vec![rescue(lease(a))]).await.expect("rescue");
    assert!(matches!(later[0], SettleResult::Applied { .. }));
    staller.client().close().await;
    h.close().await;
}

/// Finding 2: shutdown keeps its deadline while the database is unreachable, and what
/// it could not write is rescued once the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_keeps_its_deadline_while_the_database_is_down() {
    let Some(h) = postgres_harness().await else {
        return;
    };
    let (proxy, cut_off, ids) = behind_a_proxy(&h, "slow", 4).await;
    let worker = jobchain::Worker::builder(cut_off.client())
        .config(fast_config())
        .configure(|c| c.lease = Duration::from_secs(2))
        .handler("slow", |_: JobContext, _: serde_json::Value| async move {
            tokio::time::sleep(Duration::from_secs(600)).await;
            Ok(())
        })
        .started();
    eventually("the jobs to run", || async {
        (worker.running() == 4).then_some(())
    })
    .await;
    proxy.cut();
    let started = Instant::now();
    let report = worker.shutdown_within(Duration::from_secs(1)).await;
    let took = started.elapsed();
    eprintln!("shutdown with a 1 s deadline during an outage took {took:?}: {report:?}");
    assert!(
        took < Duration::from_secs(15),
        "shutdown took {took:?} with a 1 s deadline"
    );
    assert_eq!(report.released, 4);
    assert_eq!(report.unwritten, 4, "no release could be written");
    proxy.restore();
    cut_off.client().close().await;

    // The jobs are still running in the store; once their leases expire another worker
    // rescues and runs them: nothing is lost.
    let rescuer = h
        .worker()
        .handler("slow", |_: JobContext, _: serde_json::Value| async move {
            Ok(())
        })
        .started();
    for id in ids {
        jobchain_conformance::support::in_state(&h.client, id, JobState::Completed).await;
    }
    rescuer.shutdown().await;
    h.close().await;
}

/// Finding 3: a worker cut off from the database for longer than its lease keeps the
/// results it holds: once the database is back it writes them, and no handler runs
/// twice (its own rescuer leaves its jobs alone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_held_through_an_outage_are_written_not_run_again() {
    let Some(h) = postgres_harness().await else {
        return;
    };
    const JOBS: usize = 8;
    let (proxy, cut_off, ids) = behind_a_proxy(&h, "held", JOBS).await;
    let runs = Recorder::<i64>::default();
    let go = Arc::new(AtomicBool::new(false));
    let (r, g) = (runs.clone(), go.clone());
    let worker = jobchain::Worker::builder(cut_off.client())
        .config(fast_config())
        .configure(|c| {
            c.lease = Duration::from_secs(1);
            c.rescue_interval = Duration::from_millis(50);
        })
        .handler("held", move |ctx: JobContext, _: serde_json::Value| {
            let (r, g) = (r.clone(), g.clone());
            async move {
                r.record(ctx.job_id().0);
                while !g.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(())
            }
        })
        .started();
    eventually("every job to start", || async {
        (runs.len() == JOBS).then_some(())
    })
    .await;
    proxy.cut();
    go.store(true, Ordering::SeqCst);
    // Three leases long: every lease expires in the store while the results wait here.
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.restore();
    for &id in &ids {
        let job = jobchain_conformance::support::terminal(&h.client, id).await;
        assert_eq!(job.state, JobState::Completed, "{job:?}");
        assert_eq!(job.attempts, 1, "job {id} ran again: {:?}", job.errors);
    }
    let mut ran = runs.entries();
    ran.sort_unstable();
    ran.dedup();
    assert_eq!(
        runs.len(),
        JOBS,
        "a handler ran twice: {:?}",
        runs.entries()
    );
    assert_eq!(ran.len(), JOBS);
    worker.shutdown().await;
    cut_off.client().close().await;
    h.close().await;
}
