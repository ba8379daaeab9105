//! What gets claimed, and when: order, schedules, unique keys, batches, queues, and
//! jobs no handler can run.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobchain::{EnqueueOptions, JobContext, JobFilter, JobSpec, JobState, KindOptions, Priority};
use serde::Deserialize;
use serde_json::json;

use crate::support::{eventually, job, quick_retry, terminal, Harness, Recorder, StartWorker};

/// Jobs run by priority (highest first), then run_at, then id.
pub async fn claims_by_priority_then_run_at_then_id(h: &Harness) {
    let past = |secs: i64| chrono::Utc::now() - chrono::Duration::seconds(secs);
    let specs = [
        ("low", Priority::LOW, past(10)),
        ("normal-late", Priority::NORMAL, past(1)),
        ("critical", Priority::CRITICAL, past(1)),
        ("normal-early", Priority::NORMAL, past(5)),
        ("raw-5", Priority(5), past(1)),
        ("high", Priority::HIGH, past(1)),
        ("normal-early-2", Priority::NORMAL, past(5)),
    ];
    for (name, priority, at) in specs {
        h.client
            .enqueue_with(
                job("ordered", &json!(name)),
                EnqueueOptions::new().priority(priority).run_at(at),
            )
            .await
            .expect("enqueue");
    }
    let seen = Recorder::<String>::default();
    let s = seen.clone();
    let worker = h
        .worker()
        .concurrency(1)
        .handler("ordered", move |_: JobContext, name: String| {
            let s = s.clone();
            async move {
                s.record(name);
                Ok(())
            }
        })
        .started();
    eventually("all ordered jobs to run", || async {
        (seen.len() == specs.len()).then_some(())
    })
    .await;
    worker.shutdown().await;
    assert_eq!(
        seen.entries(),
        [
            "critical",
            "high",
            "raw-5",
            "normal-early",
            "normal-early-2",
            "normal-late",
            "low"
        ]
    );
}

/// A delayed job never starts before its run_at; an idle worker starts it when due.
pub async fn delayed_job_never_runs_before_run_at(h: &Harness) {
    let started = Arc::new(Mutex::new(None));
    let s = started.clone();
    let worker = h
        .worker()
        .handler("later", move |_: JobContext, _: serde_json::Value| {
            let s = s.clone();
            async move {
                *s.lock().expect("started") = Some(chrono::Utc::now());
                Ok(())
            }
        })
        .started();
    let id = h
        .client
        .enqueue_with(
            job("later", &json!({})),
            EnqueueOptions::new().delay(Duration::from_millis(300)),
        )
        .await
        .expect("enqueue")
        .id;
    let pending = h.client.job(id).await.expect("job");
    assert_eq!(pending.state, JobState::Pending);
    assert!(pending.run_at >= pending.created_at + chrono::Duration::milliseconds(300));
    let job = terminal(&h.client, id).await;
    worker.shutdown().await;
    let ran = started.lock().expect("started").expect("handler ran");
    assert_eq!(job.state, JobState::Completed);
    assert!(
        ran >= job.run_at,
        "started at {ran}, before run_at {}",
        job.run_at
    );
    assert!(job.started_at.expect("started_at") >= job.run_at);
}

/// Enqueueing a unique key that a live job holds returns that job and writes nothing.
pub async fn unique_key_returns_the_live_job(h: &Harness) {
    let opts = || EnqueueOptions::new().unique_key("invoice-42");
    let first = h
        .client
        .enqueue_with(job("invoice", &json!({ "n": 1 })), opts())
        .await
        .expect("first")
        .id;
    let second = h
        .client
        .enqueue_with(job("invoice", &json!({ "n": 2 })), opts())
        .await
        .expect("second")
        .id;
    assert_eq!(first, second);
    let batch = h
        .client
        .enqueue_many(vec![job("invoice", &json!({ "n": 3 })).options(opts())])
        .await
        .expect("batch");
    assert_eq!(batch[0].id, first);
    assert!(batch[0].duplicate);
    let all = h.client.jobs(JobFilter::default()).await.expect("list");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].payload, json!({ "n": 1 }));
    let worker = h
        .worker()
        .handler(
            "invoice",
            |_: JobContext, _: serde_json::Value| async move { Ok(()) },
        )
        .started();
    terminal(&h.client, first).await;
    worker.shutdown().await;
    let third = h
        .client
        .enqueue_with(job("invoice", &json!({ "n": 4 })), opts())
        .await
        .expect("third")
        .id;
    assert_ne!(third, first, "a finished job does not hold its key");
}

/// A batch enqueue writes every job and returns their ids in order.
pub async fn enqueue_many_is_one_batch(h: &Harness) {
    let specs: Vec<JobSpec> = (0..250).map(|i| job("bulk", &json!({ "i": i }))).collect();
    let enqueued = h.client.enqueue_many(specs).await.expect("enqueue_many");
    assert_eq!(enqueued.len(), 250);
    let ids: HashSet<_> = enqueued.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 250);
    let last = h.client.job(enqueued[249].id).await.expect("job");
    assert_eq!(last.payload, json!({ "i": 249 }));
    assert_eq!(last.state, JobState::Pending);
    let bad = h
        .client
        .enqueue(job("", &json!({})))
        .await
        .expect_err("empty kind");
    assert!(bad.to_string().contains("kind"), "{bad}");
}

/// A payload that does not decode is a permanent error naming the kind and the field.
pub async fn malformed_payload_is_a_permanent_error(h: &Harness) {
    #[derive(Deserialize)]
    #[allow(dead_code, reason = "decoded to check the payload's shape")]
    struct Charge {
        amount_cents: u64,
        card: Card,
    }
    #[derive(Deserialize)]
    #[allow(dead_code, reason = "decoded to check the payload's shape")]
    struct Card {
        expiry: Expiry,
    }
    #[derive(Deserialize)]
    #[allow(dead_code, reason = "decoded to check the payload's shape")]
    struct Expiry {
        month: u8,
    }
    let worker = h
        .worker()
        .handler_with(
            "charge_card",
            quick_retry(5),
            |_: JobContext, _: Charge| async move { Ok(()) },
        )
        .started();
    let id = h
        .client
        .enqueue(job("charge_card", &json!({ "amount": "ten" })))
        .await
        .expect("enqueue")
        .id;
    let nested = h
        .client
        .enqueue(job(
            "charge_card",
            &json!({ "amount_cents": 10, "card": { "expiry": { "month": "May" } } }),
        ))
        .await
        .expect("enqueue")
        .id;
    let job = terminal(&h.client, id).await;
    let nested = terminal(&h.client, nested).await;
    worker.shutdown().await;
    assert_eq!(job.state, JobState::Dead);
    assert_eq!(job.attempts, 1);
    let message = &job.errors[0].message;
    assert!(message.contains("charge_card"), "{message}");
    assert!(message.contains("amount_cents"), "{message}");
    assert_eq!(nested.attempts, 1);
    let message = &nested.errors[0].message;
    assert!(message.contains("at `card.expiry.month`"), "{message}");
}

/// A worker never claims a kind it has no handler for.
pub async fn unknown_kind_is_not_claimed(h: &Harness) {
    let stranger = h
        .client
        .enqueue(job("handled_elsewhere", &json!({})))
        .await
        .expect("enqueue")
        .id;
    let mine = h
        .client
        .enqueue(job("mine", &json!({})))
        .await
        .expect("enqueue")
        .id;
    let worker = h
        .worker()
        .handler("mine", |_: JobContext, _: serde_json::Value| async move {
            Ok(())
        })
        .started();
    terminal(&h.client, mine).await;
    worker.shutdown().await;
    let job = h.client.job(stranger).await.expect("job");
    assert_eq!(job.state, JobState::Pending);
    assert_eq!(job.attempts, 0);
}

/// Each queue has its own slots; a worker subscribes to its handlers' queues.
pub async fn queues_and_per_queue_concurrency(h: &Harness) {
    let current = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let (c, p) = (current.clone(), peak.clone());
    let worker = h
        .worker()
        .queue("mail", 1)
        .handler_with(
            "mail",
            KindOptions::new().queue("mail"),
            move |_: JobContext, _: serde_json::Value| {
                let (c, p) = (c.clone(), p.clone());
                async move {
                    let now = c.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    c.fetch_sub(1, Ordering::SeqCst);
                    Ok(())
                }
            },
        )
        .started();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            h.client
                .enqueue(job("mail", &json!({ "i": i })))
                .await
                .expect("enqueue")
                .id,
        );
    }
    for id in &ids {
        let job = terminal(&h.client, *id).await;
        assert_eq!(
            job.queue, "mail",
            "the kind's queue is the default for its jobs"
        );
        assert_eq!(job.state, JobState::Completed);
    }
    worker.shutdown().await;
    assert_eq!(peak.load(Ordering::SeqCst), 1);
}

/// Concurrent enqueues (which a store may write together) each get their own jobs: every
/// id returned names a job with the payload its caller gave, none twice, nothing more
/// written; a batch's jobs keep their order.
pub async fn concurrent_enqueues_each_get_their_own_jobs(h: &Harness) {
    const TASKS: u64 = 40;
    const ROUNDS: u64 = 10;
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let client = h.client.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for r in 0..ROUNDS {
                    if r % 2 == 0 {
                        let payload = json!({ "task": t, "round": r });
                        let id = client
                            .enqueue(job("grouped", &payload))
                            .await
                            .expect("enqueue")
                            .id;
                        mine.push((id, payload));
                    } else {
                        let payloads: Vec<_> = (0..3)
                            .map(|k| json!({ "task": t, "round": r, "k": k }))
                            .collect();
                        let ids = client
                            .enqueue_many(payloads.iter().map(|p| job("grouped", p)))
                            .await
                            .expect("enqueue many");
                        assert_eq!(ids.len(), 3);
                        assert!(ids.windows(2).all(|w| w[0].id < w[1].id), "{ids:?}");
                        mine.extend(ids.into_iter().map(|e| e.id).zip(payloads));
                    }
                }
                mine
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("task"));
    }
    let ids: HashSet<_> = all.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), all.len(), "an id was returned twice");
    for (id, payload) in &all {
        let stored = h.client.job(*id).await.expect("job");
        assert_eq!(&stored.payload, payload, "job {id}");
    }
    let written = h
        .client
        .jobs(JobFilter {
            kind: Some("grouped".into()),
            limit: Some(10_000),
            ..JobFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(written.len(), all.len());
}
