//! Conformance cases for flow control: pause and resume, snooze, debounce, and limits
//! (max running, rate, concurrency keys with fairness) across several workers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jobchain::{EnqueueOptions, JobContext, JobError, JobSpec, JobState, KindOptions};
use serde_json::{json, Value};

use crate::support::{eventually, in_state, Harness, StartWorker};

/// A paused queue's jobs are not started by any worker, its running job finishes, other
/// queues run on; the pause is in the store (a second client sees it); resuming starts
/// them. Names that cannot be stored are refused.
pub async fn pausing_a_queue_stops_starts_until_resumed(h: &Harness) {
    let open = Arc::new(AtomicBool::new(false));
    let gate = open.clone();
    let worker = h
        .worker()
        .queue("slow", 4)
        .handler_with(
            "gated",
            KindOptions::new().queue("slow"),
            move |_: JobContext, _: Value| {
                let gate = gate.clone();
                async move {
                    while !gate.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Ok(())
                }
            },
        )
        .handler_with(
            "later",
            KindOptions::new().queue("slow"),
            |_: JobContext, _: Value| async move { Ok(()) },
        )
        .handler("now", |_: JobContext, _: Value| async move { Ok(()) })
        .started();
    let running = h
        .client
        .enqueue(JobSpec::new("gated", json!({})).options(EnqueueOptions::new().queue("slow")))
        .await
        .expect("enqueue")
        .id;
    in_state(&h.client, running, JobState::Running).await;
    let info = h.client.pause_queue("slow").await.expect("pause");
    assert!(info.paused);
    assert_eq!(info.name, "slow");
    let mut waiting = Vec::new();
    for i in 0..3 {
        let job = JobSpec::new("later", json!(i)).options(EnqueueOptions::new().queue("slow"));
        waiting.push(h.client.enqueue(job).await.expect("enqueue").id);
    }
    let elsewhere = h
        .client
        .enqueue(JobSpec::new("now", json!({})))
        .await
        .expect("enqueue")
        .id;
    in_state(&h.client, elsewhere, JobState::Completed).await;
    open.store(true, Ordering::SeqCst);
    in_state(&h.client, running, JobState::Completed).await;
    // Several poll intervals and wake-ups later, nothing of the paused queue started.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in &waiting {
        let job = h.client.job(*id).await.expect("job");
        assert_eq!(job.state, JobState::Pending, "started while paused");
        assert_eq!(job.attempts, 0);
    }
    let stats = h.client.queue_stats().await.expect("stats");
    let slow = stats.iter().find(|q| q.queue == "slow").expect("slow");
    assert!(slow.paused);
    assert!(
        !stats
            .iter()
            .find(|q| q.queue == "default")
            .expect("default")
            .paused
    );
    let records = h.client.store().queue_records().await.expect("records");
    assert_eq!(records.len(), 1);
    assert!(records[0].paused);

    let info = h.client.resume_queue("slow").await.expect("resume");
    assert!(!info.paused);
    for id in &waiting {
        in_state(&h.client, *id, JobState::Completed).await;
    }
    worker.shutdown().await;
    let stats = h.client.queue_stats().await.expect("stats");
    assert!(stats.iter().all(|q| !q.paused));
    // Pausing a queue without jobs lists it.
    h.client.pause_queue("empty").await.expect("pause");
    let stats = h.client.queue_stats().await.expect("stats");
    let empty = stats.iter().find(|q| q.queue == "empty").expect("listed");
    assert!(empty.paused && empty.counts.total() == 0);
    for bad in ["", "a\0b"] {
        let err = h.client.pause_queue(bad).await.expect_err("refused");
        assert!(err.to_string().contains("queue"), "{err}");
    }
}

/// A snoozing handler puts its job back for later without spending an attempt: a job
/// allowed one attempt snoozes three times and still completes, with `attempts` back where
/// it was after each snooze and no error recorded.
pub async fn snooze_leaves_attempts_unchanged(h: &Harness) {
    let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (r, s) = (runs.clone(), seen.clone());
    let worker = h
        .worker()
        .handler_with(
            "busy",
            KindOptions::new().max_attempts(1),
            move |ctx: JobContext, _: Value| {
                let (r, s) = (r.clone(), s.clone());
                async move {
                    s.lock().expect("lock").push(ctx.attempt());
                    if r.fetch_add(1, Ordering::SeqCst) < 3 {
                        return Err(JobError::snooze(Duration::from_millis(30)));
                    }
                    Ok(json!("done"))
                }
            },
        )
        .started();
    let id = h
        .client
        .enqueue(JobSpec::new("busy", json!({})))
        .await
        .expect("enqueue")
        .id;
    let job = in_state(&h.client, id, JobState::Completed).await;
    worker.shutdown().await;
    assert_eq!(runs.load(Ordering::SeqCst), 4);
    assert_eq!(
        *seen.lock().expect("lock"),
        vec![1, 1, 1, 1],
        "every run is attempt 1"
    );
    assert_eq!(job.attempts, 1);
    assert!(job.errors.is_empty(), "{:?}", job.errors);
    assert_eq!(job.output, Some(json!("done")));

    // Between runs the job waits pending with its attempt given back.
    let worker = h
        .worker()
        .handler("later", |_: JobContext, _: Value| async move {
            Err::<(), _>(JobError::snooze(Duration::from_secs(3600)))
        })
        .started();
    let id = h
        .client
        .enqueue(JobSpec::new("later", json!({})))
        .await
        .expect("enqueue")
        .id;
    let job = eventually("the snooze", || async {
        let job = h.client.job(id).await.expect("job");
        (job.state == JobState::Pending && job.started_at.is_some()).then_some(job)
    })
    .await;
    worker.shutdown().await;
    assert_eq!(job.attempts, 0);
    assert!(job.run_at > chrono::Utc::now() + chrono::Duration::minutes(59));
    assert!(job.errors.is_empty());
}

/// Debounce: 100 enqueues of one key collapse into one job that runs once, with the last
/// payload, after the quiet time; once it started (or was cancelled) the key is free for
/// the next job. Debounce is refused on workflow steps and together with a unique key.
pub async fn debounce_collapses_enqueues_into_one_run(h: &Harness) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let worker = h
        .worker()
        .handler("summarize", move |_: JobContext, p: Value| {
            let s = s.clone();
            async move {
                s.lock().expect("lock").push(p);
                Ok(())
            }
        })
        .started();
    let debounced = |i: u32| {
        JobSpec::new("summarize", json!({"n": i}))
            .options(EnqueueOptions::new().debounce("report-7", Duration::from_secs(2)))
    };
    let mut ids = Vec::new();
    for i in 0..100 {
        let e = h.client.enqueue(debounced(i)).await.expect("enqueue");
        assert_eq!(e.duplicate, i > 0, "enqueue {i}");
        ids.push(e.id);
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "one job");
    let pending = h.client.job(ids[0]).await.expect("job");
    assert_eq!(pending.payload, json!({"n": 99}));
    assert!(pending.run_at > chrono::Utc::now() + chrono::Duration::milliseconds(500));
    in_state(&h.client, ids[0], JobState::Completed).await;
    assert_eq!(*seen.lock().expect("lock"), vec![json!({"n": 99})]);
    // The key is free again: a new enqueue is a new job.
    let next = h.client.enqueue(debounced(100)).await.expect("enqueue");
    assert!(!next.duplicate);
    assert_ne!(next.id, ids[0]);
    h.client.cancel(next.id).await.expect("cancel");
    let after_cancel = h.client.enqueue(debounced(101)).await.expect("enqueue");
    assert!(
        !after_cancel.duplicate,
        "a cancelled job does not hold the key"
    );
    h.client.cancel(after_cancel.id).await.expect("cancel");
    worker.shutdown().await;
    assert_eq!(seen.lock().expect("lock").len(), 1);

    let both = JobSpec::new("summarize", json!({})).options(
        EnqueueOptions::new()
            .debounce("k", Duration::from_secs(1))
            .unique_key("u"),
    );
    let err = h.client.enqueue(both).await.expect_err("refused");
    assert!(err.to_string().contains("debounced or unique"), "{err}");
    let step = jobchain::Workflow::new("w").step(jobchain::Step::untyped(
        "s",
        JobSpec::new("summarize", json!({}))
            .options(EnqueueOptions::new().debounce("k", Duration::from_secs(1))),
    ));
    let err = h.client.start_workflow(step).await.expect_err("refused");
    assert!(err.to_string().contains("debounce"), "{err}");
}

/// A log of handler runs: kind or key, start and end, from every worker of a case.
type Runs = Arc<std::sync::Mutex<Vec<(String, std::time::Instant, std::time::Instant)>>>;

/// Three workers whose handler records its run and sleeps `hold`.
fn limited_workers(
    h: &Harness,
    kind: &str,
    options: KindOptions,
    hold: Duration,
    runs: &Runs,
) -> Vec<jobchain::WorkerHandle> {
    (0..3)
        .map(|_| {
            let runs = runs.clone();
            h.worker()
                .handler_with(kind, options.clone(), move |_: JobContext, p: Value| {
                    let runs = runs.clone();
                    async move {
                        let start = std::time::Instant::now();
                        tokio::time::sleep(hold).await;
                        let key = p["key"].as_str().unwrap_or("").to_string();
                        runs.lock()
                            .expect("lock")
                            .push((key, start, std::time::Instant::now()));
                        Ok(())
                    }
                })
                .started()
        })
        .collect()
}

async fn enqueue_keyed(h: &Harness, kind: &str, key: &str, n: usize) -> Vec<jobchain::JobId> {
    let jobs: Vec<JobSpec> = (0..n)
        .map(|i| {
            let mut options = EnqueueOptions::new();
            if !key.is_empty() {
                options = options.concurrency_key(key);
            }
            if kind == "fc_pausable" {
                options = options.queue("fc_paused");
            }
            JobSpec::new(kind, json!({"key": key, "i": i})).options(options)
        })
        .collect();
    h.client
        .enqueue_many(jobs)
        .await
        .expect("enqueue")
        .into_iter()
        .map(|e| e.id)
        .collect()
}

async fn all_completed(h: &Harness, ids: &[jobchain::JobId]) {
    for id in ids {
        in_state(&h.client, *id, JobState::Completed).await;
    }
}

/// Asserts that no window of `period` holds more than `count` starts of `ids`: by the
/// store's start times exactly, and by the handlers' own clocks within 120 ms of
/// scheduling. Returns the store's start times, sorted.
async fn assert_rate_held(
    h: &Harness,
    ids: &[jobchain::JobId],
    mut handler_starts: Vec<std::time::Instant>,
    count: usize,
    period: Duration,
) -> Vec<chrono::DateTime<chrono::Utc>> {
    let mut stored = Vec::new();
    for id in ids {
        let job = h.client.job(*id).await.expect("job");
        stored.push(job.started_at.expect("started"));
    }
    stored.sort();
    let window = chrono::Duration::from_std(period).expect("duration");
    for (i, start) in stored.iter().enumerate() {
        let within = stored[i..]
            .iter()
            .take_while(|s| **s - *start < window)
            .count();
        assert!(
            within <= count,
            "{within} starts within {period:?} from {start}: {stored:?}"
        );
    }
    handler_starts.sort();
    let tolerance = Duration::from_millis(120);
    for (i, start) in handler_starts.iter().enumerate() {
        let within = handler_starts[i..]
            .iter()
            .take_while(|s| s.duration_since(*start) + tolerance < period)
            .count();
        assert!(within <= count, "{within} handler starts within {period:?}");
    }
    stored
}

/// The most runs that overlap at one instant.
fn most_at_once(runs: &[(String, std::time::Instant, std::time::Instant)]) -> usize {
    let mut edges: Vec<(std::time::Instant, i32)> = runs
        .iter()
        .flat_map(|(_, s, e)| [(*s, 1), (*e, -1)])
        .collect();
    edges.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

/// `max_running = 2` on a kind holds across three workers: never more than two of its
/// jobs run at once, and all of them run.
pub async fn max_running_bounds_a_kind_across_workers(h: &Harness) {
    let runs: Runs = Default::default();
    let workers = limited_workers(
        h,
        "bounded",
        KindOptions::new().max_running(2),
        Duration::from_millis(20),
        &runs,
    );
    let ids = enqueue_keyed(h, "bounded", "", 24).await;
    all_completed(h, &ids).await;
    for w in workers {
        w.shutdown().await;
    }
    let runs = runs.lock().expect("lock").clone();
    assert_eq!(runs.len(), 24);
    assert!(
        most_at_once(&runs) <= 2,
        "{} ran at once",
        most_at_once(&runs)
    );
    assert_eq!(most_at_once(&runs), 2, "the limit is used, not undershot");
}

/// A rate limit of 5 starts per 400 ms on a kind holds across three workers: no window of
/// 400 ms holds more than 5 starts (by the store's start times, and by the handlers'
/// clocks allowing 120 ms of scheduling delay on a loaded machine), and the jobs still all run.
pub async fn rate_limit_bounds_starts_in_every_window(h: &Harness) {
    let runs: Runs = Default::default();
    let period = Duration::from_millis(400);
    let workers = limited_workers(
        h,
        "paced",
        KindOptions::new().rate_limit(jobchain::RateLimit { count: 5, period }),
        Duration::from_millis(1),
        &runs,
    );
    let ids = enqueue_keyed(h, "paced", "", 16).await;
    all_completed(h, &ids).await;
    for w in workers {
        w.shutdown().await;
    }
    let handler_starts = runs.lock().expect("lock").iter().map(|r| r.1).collect();
    let stored = assert_rate_held(h, &ids, handler_starts, 5, period).await;
    let window = chrono::Duration::from_std(period).expect("duration");
    let span = *stored.last().expect("starts") - stored[0];
    assert!(
        span >= window * 3 - chrono::Duration::milliseconds(5),
        "16 starts at 5 per window need 3 windows: {span}"
    );
}

/// With `max_running_per_key = 1` across three workers, no two jobs of one key overlap,
/// and claims are fair: with one hot key of 1,000 waiting jobs and 20 cold keys of one
/// job each, enqueued after the hot ones, every cold job starts before the hot key's 50th.
pub async fn concurrency_keys_never_overlap_and_claims_are_fair(h: &Harness) {
    let runs: Runs = Default::default();
    let workers = limited_workers(
        h,
        "per_customer",
        KindOptions::new().max_running_per_key(1),
        Duration::ZERO,
        &runs,
    );
    let mut ids = enqueue_keyed(h, "per_customer", "hot", 1000).await;
    for c in 0..20 {
        ids.extend(enqueue_keyed(h, "per_customer", &format!("cold-{c}"), 1).await);
    }
    all_completed(h, &ids).await;
    for w in workers {
        w.shutdown().await;
    }
    let mut runs = runs.lock().expect("lock").clone();
    assert_eq!(runs.len(), 1020);
    runs.sort_by_key(|r| r.1);
    let mut by_key: std::collections::HashMap<&str, Vec<(std::time::Instant, std::time::Instant)>> =
        Default::default();
    for (key, s, e) in &runs {
        by_key.entry(key.as_str()).or_default().push((*s, *e));
    }
    for (key, spans) in &by_key {
        for pair in spans.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "two jobs of key {key} overlapped");
        }
    }
    let hot_50th = runs
        .iter()
        .filter(|r| r.0 == "hot")
        .nth(49)
        .map(|r| r.1)
        .expect("50 hot runs");
    for (key, s, _) in runs.iter().filter(|r| r.0.starts_with("cold")) {
        assert!(
            *s < hot_50th,
            "cold key {key} started after the hot key's 50th job"
        );
    }
}

/// A periodic job every second, declared on three workers: each tick gets exactly one
/// job (its unique key names the tick), ticks are consecutive, and missed ticks follow
/// the catch-up rule (`all`: every one; `latest`: one).
pub async fn periodic_jobs_run_once_per_tick_across_workers(h: &Harness) {
    use jobchain::periodic::{CatchUp, Periodic, Schedule};
    let every_second = || {
        Periodic::new(
            "heartbeat-report",
            Schedule::new("* * * * * *", "UTC").expect("schedule"),
            JobSpec::new("report", json!({"scope": "all"})),
        )
    };
    let workers: Vec<_> = (0..3)
        .map(|_| {
            h.worker()
                .periodic(every_second())
                .handler("report", |_: JobContext, _: Value| async move { Ok(()) })
                .started()
        })
        .collect();
    let reports = |h: &Harness| {
        let client = h.client.clone();
        async move {
            let mut jobs = client
                .jobs(jobchain::JobFilter {
                    kind: Some("report".into()),
                    limit: Some(10_000),
                    ..Default::default()
                })
                .await
                .expect("jobs");
            jobs.sort_by_key(|j| j.unique_key.clone());
            jobs
        }
    };
    eventually("five ticks", || async {
        (reports(h).await.len() >= 5).then_some(())
    })
    .await;
    for w in workers {
        w.shutdown().await;
    }
    let jobs = reports(h).await;
    let ticks: Vec<chrono::DateTime<chrono::Utc>> = jobs
        .iter()
        .map(|j| {
            let key = j.unique_key.as_deref().expect("a tick key");
            key.trim_start_matches("periodic:heartbeat-report:")
                .parse()
                .expect("a tick")
        })
        .collect();
    for pair in ticks.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            chrono::Duration::seconds(1),
            "one job per tick: {ticks:?}"
        );
    }
    assert!(jobs.iter().all(|j| j.payload == json!({"scope": "all"})));
    let last = h
        .client
        .store()
        .periodic_last("heartbeat-report")
        .await
        .expect("last");
    assert_eq!(last, ticks.last().copied());

    // Ten seconds without a worker: `all` runs each missed tick, `latest` one.
    for (name, catch_up, expected) in [
        ("missed-all", CatchUp::All, 10),
        ("missed-latest", CatchUp::Latest, 1),
    ] {
        let now = chrono::Utc::now();
        let whole = now - chrono::Duration::milliseconds(now.timestamp_subsec_millis().into());
        let start = whole - chrono::Duration::seconds(10);
        h.client
            .store()
            .take_tick(name, start, None)
            .await
            .expect("baseline");
        let kind = format!("k-{name}");
        let worker = h
            .worker()
            .periodic(
                Periodic::new(
                    name,
                    Schedule::new("* * * * * *", "UTC").expect("schedule"),
                    JobSpec::new(&kind, json!({})),
                )
                .catch_up(catch_up),
            )
            .handler(&kind, |_: JobContext, _: Value| async move { Ok(()) })
            .started();
        let count = || async {
            h.client
                .jobs(jobchain::JobFilter {
                    kind: Some(kind.clone()),
                    limit: Some(1000),
                    ..Default::default()
                })
                .await
                .expect("jobs")
                .into_iter()
                .filter(|j| {
                    let key = j.unique_key.as_deref().unwrap_or_default();
                    let tick = key.trim_start_matches(&format!("periodic:{name}:"));
                    tick.parse::<chrono::DateTime<chrono::Utc>>()
                        .is_ok_and(|t| t <= whole)
                })
                .count()
        };
        eventually("the catch-up", || async {
            (count().await >= expected).then_some(())
        })
        .await;
        worker.shutdown().await;
        assert_eq!(count().await, expected, "{name}");
    }
    let err = h
        .worker()
        .periodic(every_second())
        .periodic(every_second())
        .handler("report", |_: JobContext, _: Value| async move { Ok(()) })
        .build()
        .expect_err("a duplicate name");
    assert!(err.to_string().contains("two periodic jobs"), "{err}");
}

/// Three worker processes on one store (`jobchain-test-worker`, handlers of
/// [`crate::processes::register_flow`]). Every handler reports its run as its output
/// (start and end on its worker's clock):
/// - `max_running = 2`: never more than two runs overlap;
/// - a rate of 5 per 400 ms: no window holds more than 5 starts (the store's start times
///   exactly; the handlers' allowing 120 ms of scheduling delay);
/// - `max_running_per_key = 1`: no two runs of one key overlap; one hot key of 1,000 jobs
///   and 20 cold keys of one: every cold job starts before the hot key's 50th;
/// - a periodic job every second: one job per tick for 5 ticks;
/// - pause stops starts on its queue, resume restarts them;
/// - 100 debounced enqueues run once, with the last payload;
/// - a snooze leaves `attempts` as it was.
pub async fn flow_control_holds_across_three_processes(h: &Harness, worker_bin: &str) {
    let mut children: Vec<std::process::Child> =
        (0..3).map(|_| spawn_flow_worker(h, worker_bin)).collect();
    h.client.pause_queue("fc_paused").await.expect("pause");
    let paused = enqueue_keyed(h, "fc_pausable", "", 3).await;
    let bounded = enqueue_keyed(h, "fc_bounded", "", 24).await;
    let paced = enqueue_keyed(h, "fc_paced", "", 16).await;
    let mut keyed = enqueue_keyed(h, "fc_keyed", "hot", 1000).await;
    for c in 0..20 {
        keyed.extend(enqueue_keyed(h, "fc_keyed", &format!("cold-{c}"), 1).await);
    }
    let mut debounced = None;
    for i in 0..100 {
        let job = JobSpec::new("fc_debounced", json!({"n": i}))
            .options(EnqueueOptions::new().debounce("fc-report", Duration::from_millis(1500)));
        debounced = Some(h.client.enqueue(job).await.expect("enqueue").id);
    }
    let marker = std::env::temp_dir().join(format!(
        "jobchain-snooze-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    ));
    let snoozy = h
        .client
        .enqueue(
            JobSpec::new("fc_snoozy", json!({"marker": marker}))
                .options(EnqueueOptions::new().max_attempts(1)),
        )
        .await
        .expect("enqueue")
        .id;

    all_completed(h, &bounded).await;
    all_completed(h, &paced).await;
    all_completed(h, &keyed).await;
    let debounced = debounced.expect("enqueued");
    let done = in_state(&h.client, debounced, JobState::Completed).await;
    assert_eq!(done.output, Some(json!({"n": 99})), "the last payload");
    let snoozed = in_state(&h.client, snoozy, JobState::Completed).await;
    assert_eq!(snoozed.attempts, 1, "the snooze spent no attempt");
    assert!(marker.exists());
    let _ = std::fs::remove_file(&marker);
    let debounced_runs = h
        .client
        .jobs(jobchain::JobFilter {
            kind: Some("fc_debounced".into()),
            ..Default::default()
        })
        .await
        .expect("jobs");
    assert_eq!(debounced_runs.len(), 1, "100 enqueues, one job");
    for id in &paused {
        let job = h.client.job(*id).await.expect("job");
        assert_eq!(
            (job.state, job.attempts),
            (JobState::Pending, 0),
            "ran while paused"
        );
    }
    h.client.resume_queue("fc_paused").await.expect("resume");
    all_completed(h, &paused).await;

    // max running
    let runs = outputs(h, &bounded).await;
    assert!(
        most_at_once(&runs) <= 2,
        "{} ran at once",
        most_at_once(&runs)
    );
    // rate: the store's start times exactly, the handlers' within a tolerance
    let period = crate::processes::FC_RATE.period;
    let handler_starts = outputs(h, &paced).await.iter().map(|r| r.1).collect();
    assert_rate_held(h, &paced, handler_starts, 5, period).await;
    // keys: no overlap within a key, and the cold keys are not starved
    let mut runs = outputs(h, &keyed).await;
    runs.sort_by_key(|r| r.1);
    for key in runs
        .iter()
        .map(|r| r.0.clone())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let spans: Vec<_> = runs.iter().filter(|r| r.0 == key).collect();
        for pair in spans.windows(2) {
            assert!(pair[0].2 <= pair[1].1, "two runs of key {key} overlapped");
        }
    }
    let hot_50th = runs
        .iter()
        .filter(|r| r.0 == "hot")
        .nth(49)
        .expect("hot runs")
        .1;
    for (key, s, _) in runs.iter().filter(|r| r.0.starts_with("cold")) {
        assert!(
            *s < hot_50th,
            "cold key {key} started after the hot key's 50th run"
        );
    }

    // periodic, in three fresh processes that declare it
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut children: Vec<std::process::Child> = (0..3)
        .map(|_| {
            spawn_flow_worker_with(
                h,
                worker_bin,
                &[("JOBCHAIN_TEST_FLOW", "1"), ("JOBCHAIN_TEST_PERIODIC", "1")],
            )
        })
        .collect();
    let ticks = eventually("five ticks", || async {
        let jobs = h
            .client
            .jobs(jobchain::JobFilter {
                kind: Some("fc_tick".into()),
                limit: Some(1000),
                ..Default::default()
            })
            .await
            .expect("jobs");
        (jobs.len() >= 5).then_some(jobs)
    })
    .await;
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut keys: Vec<String> = ticks.iter().filter_map(|j| j.unique_key.clone()).collect();
    keys.sort();
    let before = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), before, "two jobs for one tick");
    let parsed: Vec<chrono::DateTime<chrono::Utc>> = keys
        .iter()
        .map(|k| {
            k.trim_start_matches("periodic:fc_every_second:")
                .parse()
                .expect("a tick")
        })
        .collect();
    for pair in parsed.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            chrono::Duration::seconds(1),
            "ticks {parsed:?}"
        );
    }
}

fn spawn_flow_worker(h: &Harness, worker_bin: &str) -> std::process::Child {
    spawn_flow_worker_with(h, worker_bin, &[("JOBCHAIN_TEST_FLOW", "1")])
}

fn spawn_flow_worker_with(
    h: &Harness,
    worker_bin: &str,
    env: &[(&str, &str)],
) -> std::process::Child {
    use std::io::BufRead;
    let mut command = std::process::Command::new(worker_bin);
    command
        .arg(&h.location)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("spawn a worker process");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the child's first line");
    assert_eq!(line.trim(), "ready", "the worker process did not start");
    child
}

/// The runs the handlers reported, as (key, start, end) on a common monotonic scale.
async fn outputs(
    h: &Harness,
    ids: &[jobchain::JobId],
) -> Vec<(String, std::time::Instant, std::time::Instant)> {
    let base = std::time::Instant::now();
    let now_us = chrono::Utc::now().timestamp_micros();
    let at = |us: i64| {
        let back = Duration::from_micros((now_us - us).max(0) as u64);
        base.checked_sub(back).expect("a representable instant")
    };
    let mut runs = Vec::new();
    for id in ids {
        let job = h.client.job(*id).await.expect("job");
        let out = job.output.expect("a run report");
        runs.push((
            out["key"].as_str().unwrap_or("").to_string(),
            at(out["start"].as_i64().expect("start")),
            at(out["end"].as_i64().expect("end")),
        ));
    }
    runs
}

/// Keys whose jobs wait for later never block due keys: with 200 keys whose only job is
/// scheduled an hour ahead (written first, so ranked first), a due job of another key
/// under the same per-key limit still runs.
pub async fn keys_waiting_for_later_do_not_block_due_keys(h: &Harness) {
    let later: Vec<JobSpec> = (0..200)
        .map(|i| {
            JobSpec::new("per_key_later", json!({"i": i})).options(
                EnqueueOptions::new()
                    .concurrency_key(format!("later-{i:03}"))
                    .delay(Duration::from_secs(3600)),
            )
        })
        .collect();
    h.client.enqueue_many(later).await.expect("enqueue");
    let due = enqueue_keyed(h, "per_key_later", "now", 1).await;
    let runs: Runs = Default::default();
    let workers = limited_workers(
        h,
        "per_key_later",
        KindOptions::new().max_running_per_key(1),
        Duration::ZERO,
        &runs,
    );
    all_completed(h, &due).await;
    for w in workers {
        w.shutdown().await;
    }
    assert_eq!(runs.lock().expect("lock").len(), 1, "only the due job ran");
}

/// Keyed jobs of a kind that the worker puts no per-key limit on run like any other job
/// (a key matters only under a limit), beside the kind's unkeyed jobs; while they wait,
/// they count as pending for the unhandled-kinds check, and a delayed one waits its turn.
pub async fn keyed_jobs_run_where_no_key_limit_is_set(h: &Harness) {
    let mut ids = enqueue_keyed(h, "keys_ignored", "k1", 5).await;
    ids.extend(enqueue_keyed(h, "keys_ignored", "k2", 5).await);
    ids.extend(enqueue_keyed(h, "keys_ignored", "", 5).await);
    let later = h
        .client
        .enqueue(
            JobSpec::new("keys_ignored", json!({"key": "k3"})).options(
                EnqueueOptions::new()
                    .concurrency_key("k3")
                    .delay(Duration::from_millis(300)),
            ),
        )
        .await
        .expect("enqueue")
        .id;
    let unhandled = h.client.unhandled().await.expect("unhandled kinds");
    let waiting = unhandled
        .iter()
        .find(|u| u.kind == "keys_ignored")
        .expect("the waiting kind is listed as unhandled");
    assert_eq!(waiting.count, 16, "keyed and unkeyed jobs are counted");
    let runs: Runs = Default::default();
    let workers = limited_workers(h, "keys_ignored", KindOptions::new(), Duration::ZERO, &runs);
    all_completed(h, &ids).await;
    let early = runs.lock().expect("lock").len();
    all_completed(h, &[later]).await;
    for w in workers {
        w.shutdown().await;
    }
    assert_eq!(runs.lock().expect("lock").len(), 16);
    assert!(early <= 15, "the delayed keyed job ran before it was due");
    let job = h.client.job(later).await.expect("job");
    let started = job.started_at.expect("started");
    assert!(
        started >= job.run_at,
        "the delayed keyed job started at {started}, before its run_at {}",
        job.run_at
    );
}

/// Under a per-key limit, a key that shows up while another key's backlog drains starts
/// at once (its rank starts at the kind's floor, not behind the backlog), and jobs of the
/// kind without a key run too, once no keyed job may start.
pub async fn late_keys_start_at_once_and_unkeyed_jobs_run(h: &Harness) {
    let runs: Runs = Default::default();
    let hot = enqueue_keyed(h, "per_key_late", "hot", 200).await;
    let workers = limited_workers(
        h,
        "per_key_late",
        KindOptions::new().max_running_per_key(1),
        Duration::from_millis(5),
        &runs,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while runs.lock().expect("lock").len() < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "the hot key did not drain"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ran_before = runs.lock().expect("lock").len();
    let late = enqueue_keyed(h, "per_key_late", "late", 1).await;
    let unkeyed = enqueue_keyed(h, "per_key_late", "", 3).await;
    all_completed(h, &late).await;
    all_completed(h, &hot).await;
    all_completed(h, &unkeyed).await;
    for w in workers {
        w.shutdown().await;
    }
    let runs = runs.lock().expect("lock").clone();
    assert_eq!(runs.len(), 204);
    let late_start = runs.iter().find(|r| r.0 == "late").expect("late ran").1;
    let hot_before_late = runs
        .iter()
        .filter(|r| r.0 == "hot" && r.1 < late_start)
        .count();
    // The late key waits at most for the hot job running when it came, and one whose
    // claim was on its way.
    assert!(
        hot_before_late <= ran_before + 2,
        "the late key started after {hot_before_late} hot jobs ({ran_before} had run when it came)"
    );
    assert!(
        hot_before_late < 190,
        "the late key waited behind the backlog: {hot_before_late} hot jobs started first"
    );
}
