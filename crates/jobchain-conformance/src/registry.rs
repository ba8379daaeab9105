//! Cases of the typed API and the worker registry: typed jobs land where their handler
//! claims from a process without a worker, the registry lists live workers and drops
//! killed ones, unhandled kinds are reported, handler state, waits that time out.
//! The multi-process cases run the `jobchain-test-worker` binary, whose path the suite
//! passes in.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jobchain::core::registry::WorkerRegistration;
use jobchain::{Error, JobContext, JobError, JobSpec, JobState};
use serde_json::json;

use crate::processes::SendEmail;
use crate::support::{eventually, job, terminal, Harness};

/// Starts a child worker process on the harness's store; it prints `ready` once running.
fn spawn_worker(h: &Harness, worker_bin: &str) -> Child {
    use std::io::BufRead;
    let mut child = Command::new(worker_bin)
        .arg(&h.location)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn a worker process");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the child's first line");
    assert_eq!(line.trim(), "ready", "the worker process did not start");
    child
}

/// A client that runs no worker enqueues a typed job whose kind lives on queue `emails`;
/// a worker in another process claims it there and completes it.
pub async fn typed_job_from_a_process_without_a_worker_runs_on_its_queue(
    h: &Harness,
    worker_bin: &str,
) {
    let enqueued = h
        .client
        .enqueue(&SendEmail {
            to: "ada@example.com".into(),
        })
        .await
        .expect("enqueue");
    assert!(!enqueued.duplicate);
    let stored = h.client.job(enqueued.id).await.expect("job");
    assert_eq!(stored.kind, "send_email");
    assert_eq!(
        stored.queue, "emails",
        "the type's queue, with no worker here"
    );
    assert_eq!(stored.max_attempts, 2, "the type's attempts");
    let mut child = spawn_worker(h, worker_bin);
    let done = h
        .client
        .wait_for_job(enqueued.id, crate::support::PATIENCE)
        .await
        .expect("the other process completes it");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(done.state, JobState::Completed, "{:?}", done.errors);
    assert_eq!(done.output, Some(json!("ada@example.com")));
    assert!(
        done.worker.as_deref().is_some_and(|w| !w.is_empty()),
        "claimed by the child"
    );
}

/// Two worker processes are listed with their kinds; one killed with SIGKILL drops out
/// after its time to live, one stopped with SIGTERM shuts down gracefully and removes
/// itself at once. Pending jobs of a kind no live worker handles are reported with their
/// count and age, and name the queue where a live worker does handle the kind.
pub async fn registry_lists_live_workers_and_reports_unhandled_kinds(
    h: &Harness,
    worker_bin: &str,
) {
    // A typo in a string kind, and a typed kind sent to the wrong queue.
    h.client
        .enqueue_many([
            job("send_emial", &json!({})),
            job("send_emial", &json!({})),
            JobSpec::new("send_email", json!({ "to": "x" }))
                .options(jobchain::EnqueueOptions::new().queue("default-mail")),
        ])
        .await
        .expect("enqueue");
    let mut killed = spawn_worker(h, worker_bin);
    let mut stopped = spawn_worker(h, worker_bin);
    let workers = eventually("two live workers", || async {
        let workers = h.client.workers().await.expect("workers");
        (workers.len() == 2).then_some(workers)
    })
    .await;
    let pids: Vec<u32> = workers.iter().map(|w| w.pid).collect();
    assert!(
        pids.contains(&killed.id()) && pids.contains(&stopped.id()),
        "{workers:?}"
    );
    for w in &workers {
        assert!(w.kinds.contains(&"send_email".to_string()), "{w:?}");
        assert!(w.kinds.contains(&"crashy".to_string()), "{w:?}");
        assert!(w.queues.contains(&"emails".to_string()), "{w:?}");
        assert!(!w.host.is_empty());
        assert!(
            w.last_seen >= w.started_at && w.expires_at > w.last_seen,
            "{w:?}"
        );
    }

    let stats = h.client.queue_stats().await.expect("stats");
    let default = stats
        .iter()
        .find(|s| s.queue == "default")
        .expect("default queue");
    let typo = default
        .unhandled
        .iter()
        .find(|u| u.kind == "send_emial")
        .expect("the misspelled kind is reported");
    assert_eq!(typo.count, 2);
    assert!(typo.handled_on.is_empty());
    let misrouted = stats
        .iter()
        .find(|s| s.queue == "default-mail")
        .and_then(|s| s.unhandled.iter().find(|u| u.kind == "send_email"))
        .expect("the job on a queue no worker reads is reported");
    // The workers claim every kind they handle on every queue they read.
    assert_eq!(misrouted.handled_on, ["default", "emails"]);
    let aged = eventually("the oldest unhandled job to age", || async {
        let unhandled = h.client.unhandled().await.expect("unhandled");
        unhandled
            .into_iter()
            .find(|u| u.kind == "send_emial" && u.oldest_age >= Duration::from_millis(100))
    })
    .await;
    assert_eq!(aged.count, 2);

    killed.kill().expect("SIGKILL a worker");
    let _ = killed.wait();
    let left = eventually("the killed worker to drop out", || async {
        let workers = h.client.workers().await.expect("workers");
        (workers.len() == 1).then_some(workers)
    })
    .await;
    assert_eq!(left[0].pid, stopped.id(), "the live one stays listed");

    let status = Command::new("kill")
        .args(["-TERM", &stopped.id().to_string()])
        .status()
        .expect("send SIGTERM");
    assert!(status.success());
    let exit = stopped.wait().expect("the worker exits");
    assert!(
        exit.success(),
        "graceful shutdown on SIGTERM exits 0: {exit:?}"
    );
    // Deregistered at shutdown: gone without waiting for its time to live.
    let workers = h.client.workers().await.expect("workers");
    assert!(workers.is_empty(), "{workers:?}");
}

/// The registry through the `Store` methods alone: register, refresh, list, expire,
/// deregister; and the pending-kinds report.
pub async fn store_keeps_the_worker_registry(h: &Harness) {
    let store = h.client.store();
    let registration = |id: &str, ttl_ms: u64| WorkerRegistration {
        id: id.to_string(),
        host: "host-a".into(),
        pid: 4242,
        queues: vec!["default".into(), "emails".into()],
        kinds: vec!["a".into(), "b".into()],
        ttl: Duration::from_millis(ttl_ms),
    };
    store
        .register_worker(registration("w-long", 60_000))
        .await
        .expect("register");
    store
        .register_worker(registration("w-short", 150))
        .await
        .expect("register");
    let live = store.workers().await.expect("workers");
    assert_eq!(
        live.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
        ["w-long", "w-short"]
    );
    assert_eq!(live[0].queues, ["default", "emails"]);
    assert_eq!(live[0].kinds, ["a", "b"]);
    assert_eq!(live[0].pid, 4242);
    let first_seen = live[0].last_seen;
    // A refresh keeps the start time and moves last_seen.
    tokio::time::sleep(Duration::from_millis(20)).await;
    store
        .register_worker(registration("w-long", 60_000))
        .await
        .expect("refresh");
    let refreshed = store.workers().await.expect("workers");
    assert!(refreshed[0].last_seen > first_seen);
    assert_eq!(refreshed[0].started_at, live[0].started_at);
    let left = eventually("the short-lived record to expire", || async {
        let live = store.workers().await.expect("workers");
        (live.len() == 1).then_some(live)
    })
    .await;
    assert_eq!(left[0].id, "w-long");
    assert_eq!(store.expire_workers().await.expect("expire"), 1);
    assert_eq!(store.expire_workers().await.expect("expire"), 0);
    store.deregister_worker("w-long").await.expect("deregister");
    store
        .deregister_worker("w-long")
        .await
        .expect("deregister twice");
    assert!(store.workers().await.expect("workers").is_empty());

    h.client
        .enqueue_many([job("a", &1), job("a", &2), job("b", &3)])
        .await
        .expect("enqueue");
    let pending = store.pending_kinds().await.expect("pending kinds");
    let counts: Vec<(&str, &str, u64)> = pending
        .iter()
        .map(|p| (p.queue.as_str(), p.kind.as_str(), p.count))
        .collect();
    assert_eq!(counts, [("default", "a", 2), ("default", "b", 1)]);
}

/// Handlers read application state given to the worker; a handler asking for state it
/// was not given fails permanently, naming the type.
pub async fn handlers_share_application_state(h: &Harness) {
    struct Pool {
        queries: AtomicUsize,
    }
    let pool = Arc::new(Pool {
        queries: AtomicUsize::new(0),
    });
    let worker = h
        .worker()
        .data(pool.clone())
        .handler(
            "query",
            |ctx: JobContext, _: serde_json::Value| async move {
                let pool = ctx.data::<Arc<Pool>>()?;
                Ok(pool.queries.fetch_add(1, Ordering::SeqCst) + 1)
            },
        )
        .handler(
            "needs_more",
            |ctx: JobContext, _: serde_json::Value| async move {
                ctx.data::<String>()?;
                Ok::<_, JobError>(())
            },
        )
        .build()
        .expect("worker")
        .start();
    let a = h
        .client
        .enqueue(job("query", &1))
        .await
        .expect("enqueue")
        .id;
    let b = h
        .client
        .enqueue(job("query", &2))
        .await
        .expect("enqueue")
        .id;
    let missing = h
        .client
        .enqueue(job("needs_more", &3))
        .await
        .expect("enqueue")
        .id;
    terminal(&h.client, a).await;
    terminal(&h.client, b).await;
    let missing = terminal(&h.client, missing).await;
    worker.shutdown().await;
    assert_eq!(pool.queries.load(Ordering::SeqCst), 2);
    assert_eq!(missing.state, JobState::Dead);
    assert_eq!(missing.attempts, 1, "a missing state is permanent");
    let message = &missing.errors[0].message;
    assert!(message.contains("alloc::string::String"), "{message}");
    assert!(message.contains(".data("), "{message}");
}

/// Waiting for a job or a workflow that does not finish is an error, not a silent `Ok`.
pub async fn waits_that_time_out_are_errors(h: &Harness) {
    let id = h
        .client
        .enqueue(job("nobody_handles", &1))
        .await
        .expect("enqueue")
        .id;
    let err = h
        .client
        .wait_for_job(id, Duration::from_millis(50))
        .await
        .expect_err("no worker runs it");
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("job {id}")), "{err}");
    let started = h
        .client
        .start_workflow(job("nobody_handles", &2))
        .await
        .expect("start");
    let err = h
        .client
        .wait_for_workflow(started.id, Duration::from_millis(50))
        .await
        .expect_err("no worker runs it");
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    // Nothing was changed by the waits.
    assert_eq!(
        h.client.job(id).await.expect("job").state,
        JobState::Pending
    );
}
