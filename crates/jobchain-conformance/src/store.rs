//! Store-level cases: they call [`Store`](jobchain::Store) methods directly, as a
//! worker does, to pin down fencing, hints and heartbeats, preconditions and workflow
//! layout without the runtime in between.

use std::time::Duration;

use jobchain::core::store::{ClaimRequest, Lease, Outcome, SettleResult, Settlement};
use jobchain::core::workflow::{NewStep, NewWorkflow};
use jobchain::core::NewJob;
use jobchain::{
    EdgePolicy, EnqueueOptions, JobFilter, JobState, StoreError, WorkflowFilter, WorkflowId,
    WorkflowState,
};
use serde_json::json;

use crate::support::{claim_request, eventually, job, Harness};

/// After a lease expires and another worker claims the job, the first worker's late
/// completion is rejected and writes nothing, not even its follow-ups.
pub async fn late_completion_after_lease_takeover_is_rejected(h: &Harness) {
    let store = h.client.store();
    let id = h
        .client
        .enqueue(job("fenced", &json!({})))
        .await
        .expect("enqueue")
        .id;
    let a = store
        .claim(claim_request("worker-a", "fenced", Duration::ZERO))
        .await
        .expect("claim a");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].attempt, 1);
    // The rescuer finds the expired lease and makes the job available again.
    let expired = eventually("the lease to expire", || async {
        let e = store.expired(10).await.expect("expired");
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(expired[0].lease, Lease { id, attempt: 1 });
    let rescued = store
        .settle(vec![Settlement {
            lease: expired[0].lease,
            outcome: Outcome::Retry {
                error: "lease expired".into(),
                delay: Duration::ZERO,
            },
            only_if_expired: true,
            workflow_id: None,
        }])
        .await
        .expect("rescue");
    assert!(matches!(rescued[0], SettleResult::Applied { .. }));
    let b = store
        .claim(claim_request("worker-b", "fenced", Duration::from_secs(60)))
        .await
        .expect("claim b");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].attempt, 2);
    // Worker A wakes up and tries to complete with follow-ups, fail, and release.
    let follow_up = NewJob::new("leaked", json!({}), EnqueueOptions::new());
    for outcome in [
        Outcome::Completed {
            output: Some(json!("stale")),
            follow_ups: vec![follow_up],
        },
        Outcome::Dead {
            error: "stale".into(),
        },
        Outcome::Released,
    ] {
        let late = store
            .settle(vec![Settlement {
                lease: Lease { id, attempt: 1 },
                outcome,
                only_if_expired: false,
                workflow_id: None,
            }])
            .await
            .expect("late settle");
        assert_eq!(late, [SettleResult::Stale]);
    }
    let lost = store
        .heartbeat(vec![Lease { id, attempt: 1 }], Duration::from_secs(60))
        .await
        .expect("heartbeat");
    assert_eq!(lost, [id]);
    let job = h.client.job(id).await.expect("job");
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.attempts, 2);
    assert_eq!(job.worker.as_deref(), Some("worker-b"));
    assert_eq!(job.output, None);
    let all = h.client.jobs(JobFilter::default()).await.expect("list");
    assert_eq!(all.len(), 1, "no follow-up leaked: {all:?}");
    // Worker B's completion is the one that counts.
    let done = store
        .settle(vec![Settlement {
            lease: Lease { id, attempt: 2 },
            outcome: Outcome::Completed {
                output: Some(json!("fresh")),
                follow_ups: Vec::new(),
            },
            only_if_expired: false,
            workflow_id: None,
        }])
        .await
        .expect("settle b");
    assert!(matches!(done[0], SettleResult::Applied { .. }));
    let job = h.client.job(id).await.expect("job");
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(job.output, Some(json!("fresh")));
}

/// A settlement's workflow id is only a hint: a completion that wrongly says its job is
/// outside any workflow still finishes the workflow, and a stale one in the same batch
/// is still rejected.
pub async fn wrong_workflow_hint_still_finishes_the_workflow(h: &Harness) {
    let store = h.client.store();
    let wf = h
        .client
        .start_workflow(job("hinted", &json!({})))
        .await
        .expect("start")
        .id;
    let plain = h
        .client
        .enqueue(job("hinted", &json!({})))
        .await
        .expect("enqueue")
        .id;
    let claimed = store
        .claim(claim_request("w", "hinted", Duration::from_secs(60)))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2);
    let job = claimed
        .iter()
        .find(|c| c.workflow_id == Some(wf))
        .expect("the workflow's job");
    let completed = |lease: Lease| Settlement {
        lease,
        outcome: Outcome::Completed {
            output: Some(json!("done")),
            follow_ups: Vec::new(),
        },
        only_if_expired: false,
        workflow_id: None,
    };
    let results = store
        .settle(vec![
            completed(job.lease()),
            completed(Lease {
                id: plain,
                attempt: 7,
            }),
            completed(Lease {
                id: plain,
                attempt: 1,
            }),
        ])
        .await
        .expect("settle");
    assert!(matches!(results[0], SettleResult::Applied { .. }));
    assert_eq!(results[1], SettleResult::Stale);
    assert!(matches!(results[2], SettleResult::Applied { .. }));
    let info = h.client.workflow(wf).await.expect("workflow");
    assert_eq!(info.state, WorkflowState::Completed);
    assert_eq!(info.counts.completed, 1);
    assert_eq!(
        h.client.job(plain).await.expect("job").state,
        JobState::Completed
    );
}

/// A heartbeat extends a held lease (so the rescuer leaves it alone) and reports leases
/// that are no longer held.
pub async fn heartbeat_keeps_a_lease_and_reports_lost_ones(h: &Harness) {
    let store = h.client.store();
    let id = h
        .client
        .enqueue(job("beating", &json!({})))
        .await
        .expect("enqueue")
        .id;
    let claimed = store
        .claim(claim_request("w", "beating", Duration::ZERO))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    let lost = store
        .heartbeat(vec![Lease { id, attempt: 1 }], Duration::from_secs(600))
        .await
        .expect("heartbeat");
    assert!(lost.is_empty());
    assert!(store.expired(10).await.expect("expired").is_empty());
    let rescue = store
        .settle(vec![Settlement {
            lease: Lease { id, attempt: 1 },
            outcome: Outcome::Dead {
                error: "rescued".into(),
            },
            only_if_expired: true,
            workflow_id: None,
        }])
        .await
        .expect("settle");
    assert_eq!(
        rescue,
        [SettleResult::Stale],
        "a live lease is never rescued"
    );
    let lost = store
        .heartbeat(vec![Lease { id, attempt: 7 }], Duration::from_secs(600))
        .await
        .expect("heartbeat");
    assert_eq!(lost, [id]);
}

fn new_job(kind: &str) -> NewJob {
    NewJob::new(kind, json!({}), EnqueueOptions::new())
}

/// A claim takes due pending jobs of its queue and kinds only, up to its limit, oldest
/// first; each becomes running under attempt 1 and the claiming worker's name.
pub async fn claim_takes_only_its_queue_and_kinds_up_to_the_limit(h: &Harness) {
    let store = h.client.store();
    let mut jobs = vec![new_job("a"), new_job("a"), new_job("a"), new_job("b")];
    let mut elsewhere = new_job("a");
    elsewhere.queue = "other".into();
    jobs.push(elsewhere);
    let ids: Vec<_> = store
        .enqueue(jobs)
        .await
        .expect("enqueue")
        .into_iter()
        .map(|e| e.id)
        .collect();
    let first = store
        .claim(ClaimRequest {
            limit: 2,
            ..claim_request("w1", "a", Duration::from_secs(60))
        })
        .await
        .expect("claim");
    assert_eq!(
        first.iter().map(|c| c.id).collect::<Vec<_>>(),
        ids[..2],
        "oldest first, at most the limit"
    );
    assert!(first.iter().all(|c| c.attempt == 1 && c.queue == "default"));
    let rest = store
        .claim(claim_request("w1", "a", Duration::from_secs(60)))
        .await
        .expect("claim");
    assert_eq!(rest.iter().map(|c| c.id).collect::<Vec<_>>(), [ids[2]]);
    let none = store
        .claim(ClaimRequest {
            kinds: Vec::new(),
            ..claim_request("w1", "b", Duration::from_secs(60))
        })
        .await
        .expect("claim without kinds");
    assert!(none.is_empty(), "a claim without kinds takes nothing");
    let other = store
        .claim(ClaimRequest {
            queue: "other".into(),
            ..claim_request("w2", "a", Duration::from_secs(60))
        })
        .await
        .expect("claim other queue");
    assert_eq!(other.iter().map(|c| c.id).collect::<Vec<_>>(), [ids[4]]);
    let claimed = store.job(ids[0]).await.expect("job").expect("exists");
    assert_eq!(claimed.state, JobState::Running);
    assert_eq!(claimed.worker.as_deref(), Some("w1"));
    let b = store.job(ids[3]).await.expect("job").expect("exists");
    assert_eq!(b.state, JobState::Pending, "kind b was never asked for");
}

/// A claim of jobchain's own kinds alone (the stores answer it from an index of those
/// jobs apart) takes their due jobs of its queue by priority, then age, and nothing of
/// the backlog of other kinds beside them; a claim naming both takes from both.
pub async fn builtin_kinds_are_claimed_apart_from_the_backlog(h: &Harness) {
    let store = h.client.store();
    let sleep = jobchain::core::store::SLEEP_KIND;
    let signal = jobchain::core::store::SIGNAL_KIND;
    let mut jobs: Vec<NewJob> = (0..50).map(|_| new_job("backlog")).collect();
    jobs.push(new_job(sleep));
    let mut urgent = new_job(signal);
    urgent.priority = jobchain::core::Priority(5);
    jobs.push(urgent);
    let mut later = new_job(sleep);
    later.run_at = jobchain::core::RunAt::After(Duration::from_secs(3600));
    jobs.push(later);
    let mut elsewhere = new_job(sleep);
    elsewhere.queue = "other".into();
    jobs.push(elsewhere);
    jobs.push(new_job("backlog"));
    let ids: Vec<_> = store
        .enqueue(jobs)
        .await
        .expect("enqueue")
        .into_iter()
        .map(|e| e.id)
        .collect();
    let builtin = ClaimRequest {
        kinds: vec![sleep.to_string(), signal.to_string()],
        ..claim_request("w1", sleep, Duration::from_secs(60))
    };
    assert!(builtin.is_builtin_only());
    let claimed = store.claim(builtin.clone()).await.expect("claim");
    assert_eq!(
        claimed.iter().map(|c| c.id).collect::<Vec<_>>(),
        [ids[51], ids[50]],
        "the due built-in jobs of the queue, by priority: none of the backlog, the later \
         timer or the other queue's"
    );
    assert!(store.claim(builtin).await.expect("claim").is_empty());
    let mixed = ClaimRequest {
        kinds: vec!["backlog".to_string(), sleep.to_string()],
        limit: 100,
        ..claim_request("w1", sleep, Duration::from_secs(60))
    };
    assert!(!mixed.is_builtin_only());
    let claimed = store.claim(mixed).await.expect("claim");
    assert_eq!(claimed.len(), 51, "the backlog, through the claim index");
    let later = store.job(ids[52]).await.expect("job").expect("exists");
    assert_eq!(later.state, JobState::Pending, "the timer is not due");
}

/// Claims go on in claim order through a long backlog, and a job written meanwhile that
/// comes before where they reached (a higher priority, an earlier run_at) is taken by the
/// next claim: the stores may remember where a claim ended (PostgreSQL does, to skip the
/// claimed jobs' dead index entries), but never past a job that came before it.
pub async fn claims_continue_in_order_and_see_jobs_written_before_them(h: &Harness) {
    let store = h.client.store();
    let ids: Vec<_> = store
        .enqueue((0..250).map(|_| new_job("drained")).collect())
        .await
        .expect("enqueue")
        .into_iter()
        .map(|e| e.id)
        .collect();
    let claim = |limit: usize| ClaimRequest {
        limit,
        ..claim_request("w1", "drained", Duration::from_secs(60))
    };
    let first = store.claim(claim(100)).await.expect("claim");
    assert_eq!(first.iter().map(|c| c.id).collect::<Vec<_>>(), ids[..100]);
    let second = store.claim(claim(50)).await.expect("claim");
    assert_eq!(
        second.iter().map(|c| c.id).collect::<Vec<_>>(),
        ids[100..150]
    );
    let mut urgent = new_job("drained");
    urgent.priority = jobchain::core::Priority(3);
    let mut overdue = new_job("drained");
    overdue.run_at = jobchain::core::RunAt::At(chrono::Utc::now() - chrono::Duration::hours(1));
    let late: Vec<_> = store
        .enqueue(vec![urgent, overdue])
        .await
        .expect("enqueue")
        .into_iter()
        .map(|e| e.id)
        .collect();
    let third = store.claim(claim(10)).await.expect("claim");
    let mut expected = late.clone();
    expected.extend_from_slice(&ids[150..158]);
    assert_eq!(
        third.iter().map(|c| c.id).collect::<Vec<_>>(),
        expected,
        "the higher priority first, then the overdue job, then the backlog where it was left"
    );
    let rest = store.claim(claim(200)).await.expect("claim");
    assert_eq!(rest.iter().map(|c| c.id).collect::<Vec<_>>(), ids[158..]);
}

/// Retry takes only dead jobs and cancel only live ones; a refusal names the job and its
/// state, and changes nothing.
pub async fn retry_and_cancel_check_their_preconditions(h: &Harness) {
    let store = h.client.store();
    let id = store.enqueue(vec![new_job("p")]).await.expect("enqueue")[0].id;
    let missing = jobchain::JobId(id.0 + 1000);
    let err = store.retry(missing).await.expect_err("retry of no job");
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert_eq!(err.to_string(), format!("job {missing} was not found"));
    let err = store.retry(id).await.expect_err("retry of a pending job");
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(
        err.to_string(),
        format!("job {id} is pending, not dead: only dead jobs can be retried")
    );
    assert_eq!(
        store.job(id).await.expect("job").expect("exists").state,
        JobState::Pending
    );
    let cancelled = store.cancel(id, "not needed").await.expect("cancel");
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert_eq!(cancelled.cancel_reason.as_deref(), Some("not needed"));
    let err = store.cancel(id, "again").await.expect_err("second cancel");
    assert_eq!(
        err.to_string(),
        format!(
            "job {id} is already cancelled: only blocked, pending, running or dead jobs can be cancelled"
        )
    );
    let err = store
        .cancel(missing, "x")
        .await
        .expect_err("cancel of no job");
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");

    let ghost = WorkflowId::new();
    let err = store.cancel_workflow(ghost).await.expect_err("no workflow");
    assert_eq!(err.to_string(), format!("workflow {ghost} was not found"));
    let wf = h
        .client
        .start_workflow(job("only", &json!({})))
        .await
        .expect("start")
        .id;
    assert_eq!(
        store.cancel_workflow(wf).await.expect("cancel").state,
        WorkflowState::Cancelled
    );
    let err = store.cancel_workflow(wf).await.expect_err("second cancel");
    assert_eq!(
        err.to_string(),
        format!("workflow {wf} is already cancelled: only running workflows can be cancelled")
    );
}

/// A declared workflow is written whole: steps without dependencies pending, the rest
/// blocked, every edge with its policy; a held unique key writes nothing; an invalid
/// workflow is refused before anything is written.
pub async fn start_workflow_writes_initial_states_and_edges(h: &Harness) {
    let store = h.client.store();
    let step = |kind: &str, depends_on: Vec<(usize, EdgePolicy)>| NewStep {
        job: new_job(kind),
        depends_on,
    };
    let workflow = NewWorkflow {
        id: WorkflowId::new(),
        name: "layout".into(),
        unique_key: Some("layout-1".into()),
        steps: vec![
            step("charge", vec![]),
            step("email", vec![(0, EdgePolicy::Required)]),
            step(
                "ship",
                vec![(0, EdgePolicy::Required), (1, EdgePolicy::Optional)],
            ),
        ],
        result_step: None,
    };
    let started = store.start_workflow(workflow.clone()).await.expect("start");
    assert!(!started.duplicate);
    assert_eq!(started.id, workflow.id);
    let states: Vec<JobState> = {
        let mut states = Vec::new();
        for id in &started.jobs {
            states.push(store.job(*id).await.expect("job").expect("exists").state);
        }
        states
    };
    assert_eq!(
        states,
        [JobState::Pending, JobState::Blocked, JobState::Blocked]
    );
    let edges: Vec<_> = store
        .dependencies(workflow.id)
        .await
        .expect("edges")
        .into_iter()
        .map(|d| (d.job, d.depends_on, d.policy))
        .collect();
    let j = &started.jobs;
    assert_eq!(
        edges,
        [
            (j[1], j[0], EdgePolicy::Required),
            (j[2], j[0], EdgePolicy::Required),
            (j[2], j[1], EdgePolicy::Optional),
        ]
    );

    let again = store
        .start_workflow(NewWorkflow {
            id: WorkflowId::new(),
            ..workflow.clone()
        })
        .await
        .expect("start again");
    assert!(again.duplicate);
    assert_eq!(again.id, workflow.id);
    assert!(again.jobs.is_empty());

    let mut backwards = workflow.clone();
    backwards.id = WorkflowId::new();
    backwards.unique_key = None;
    backwards.steps[0].depends_on = vec![(2, EdgePolicy::Required)];
    let err = store
        .start_workflow(backwards)
        .await
        .expect_err("a forward edge");
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("does not come before it"), "{err}");
    let workflows = store
        .list_workflows(WorkflowFilter::default())
        .await
        .expect("list");
    assert_eq!(workflows.len(), 1, "the refused workflow wrote nothing");
    let jobs = store.list_jobs(JobFilter::default()).await.expect("jobs");
    assert_eq!(jobs.len(), 3);
}

/// Follow-ups written with a completion record their parent and join its workflow unless
/// they name another, whose record is then created, named after the follow-up's kind.
pub async fn follow_ups_inherit_their_parent_and_workflow(h: &Harness) {
    let store = h.client.store();
    let wf = h
        .client
        .start_workflow(job("parent", &json!({})))
        .await
        .expect("start")
        .id;
    let claimed = store
        .claim(claim_request("w", "parent", Duration::from_secs(60)))
        .await
        .expect("claim");
    let parent = &claimed[0];
    let other = WorkflowId::new();
    let mut elsewhere = new_job("audit");
    elsewhere.workflow_id = Some(other);
    let settled = store
        .settle(vec![Settlement {
            lease: parent.lease(),
            outcome: Outcome::Completed {
                output: None,
                follow_ups: vec![new_job("child"), elsewhere],
            },
            only_if_expired: false,
            workflow_id: parent.workflow_id,
        }])
        .await
        .expect("settle");
    let SettleResult::Applied { follow_ups } = &settled[0] else {
        panic!("the completion was rejected: {settled:?}");
    };
    assert_eq!(follow_ups.len(), 2);
    let child = store
        .job(follow_ups[0])
        .await
        .expect("job")
        .expect("exists");
    assert_eq!(child.parent_id, Some(parent.id));
    assert_eq!(child.workflow_id, Some(wf));
    let audit = store
        .job(follow_ups[1])
        .await
        .expect("job")
        .expect("exists");
    assert_eq!(audit.parent_id, Some(parent.id));
    assert_eq!(audit.workflow_id, Some(other));
    let own = store.workflow(wf).await.expect("workflow").expect("exists");
    assert_eq!(
        own.state,
        WorkflowState::Running,
        "the child keeps it running"
    );
    let created = store
        .workflow(other)
        .await
        .expect("workflow")
        .expect("created");
    assert_eq!(created.name, "audit");
    assert_eq!(created.state, WorkflowState::Running);
}

/// Purging the dead-letter queue deletes dead jobs outside workflows, older than asked
/// and of the kind asked; dead jobs of workflows and live jobs stay.
pub async fn purge_dead_deletes_only_old_dead_jobs_outside_workflows(h: &Harness) {
    let store = h.client.store();
    let ids: Vec<_> = store
        .enqueue(vec![new_job("a"), new_job("a"), new_job("b"), new_job("a")])
        .await
        .expect("enqueue")
        .into_iter()
        .map(|e| e.id)
        .collect();
    let wf = h
        .client
        .start_workflow(job("a", &json!({})))
        .await
        .expect("start");
    let claimed = store
        .claim(ClaimRequest {
            kinds: vec!["a".into(), "b".into()],
            ..claim_request("w", "a", Duration::from_secs(60))
        })
        .await
        .expect("claim");
    // Everything dies but ids[3], which completes.
    let settlements = claimed
        .iter()
        .map(|c| Settlement {
            lease: c.lease(),
            outcome: if c.id == ids[3] {
                Outcome::Completed {
                    output: None,
                    follow_ups: Vec::new(),
                }
            } else {
                Outcome::Dead {
                    error: "boom".into(),
                }
            },
            only_if_expired: false,
            workflow_id: c.workflow_id,
        })
        .collect();
    store.settle(settlements).await.expect("settle");
    let young = store
        .purge_dead(Duration::from_secs(3600), None, 100)
        .await
        .expect("purge");
    assert_eq!(young, 0, "nothing died an hour ago");
    let a = h
        .client
        .purge_dead(Duration::ZERO, Some("a"))
        .await
        .expect("purge a");
    assert_eq!(a, 2, "the two dead `a` jobs outside the workflow");
    let left: Vec<_> = store
        .list_jobs(JobFilter::default())
        .await
        .expect("list")
        .into_iter()
        .map(|j| (j.id, j.state))
        .collect();
    assert_eq!(
        left,
        [
            (ids[2], JobState::Dead),
            (ids[3], JobState::Completed),
            (wf.jobs[0], JobState::Dead),
        ]
    );
    assert_eq!(
        h.client
            .purge_dead(Duration::ZERO, None)
            .await
            .expect("all"),
        1
    );
}

/// A settle that offers free slots claims what it made pending, as a claim would take
/// it: the follow-up or released step of an offered kind, unless the queue is paused or
/// an earlier due job of the queue and kinds waits; nothing for a rejected settlement.
/// A store that cannot claim on settle settles the same and claims nothing.
pub async fn settle_and_claim_claims_what_a_claim_would_take(h: &Harness) {
    let store = h.client.store();
    let claims_on_settle = store.capabilities().claim_on_settle;
    let lease = Duration::from_secs(60);
    let offer = |kinds: &[&str]| {
        ClaimRequest::new(
            "default",
            kinds.iter().map(|k| k.to_string()).collect(),
            5,
            "worker-h",
            lease,
        )
    };
    // A fresh `first` job, claimed.
    let claim_first = || async {
        h.client
            .enqueue(job("first", &json!({})))
            .await
            .expect("enqueue first");
        let claimed = store
            .claim(claim_request("worker-h", "first", lease))
            .await
            .expect("claim first");
        assert_eq!(claimed.len(), 1);
        claimed[0].lease()
    };
    // Completes it with a `next` follow-up, offering `kinds`.
    let settle_first = |lease_of: Lease, kinds: &'static [&'static str]| async move {
        store
            .settle_and_claim(
                vec![Settlement {
                    lease: lease_of,
                    outcome: Outcome::Completed {
                        output: None,
                        follow_ups: vec![NewJob::new("next", json!({}), EnqueueOptions::new())],
                    },
                    only_if_expired: false,
                    workflow_id: None,
                }],
                offer(kinds),
            )
            .await
            .expect("settle and claim")
    };
    let complete_first = |kinds: &'static [&'static str]| async move {
        settle_first(claim_first().await, kinds).await
    };
    let finish = |jobs: Vec<jobchain::core::store::ClaimedJob>| async move {
        let settled = store
            .settle(
                jobs.iter()
                    .map(|j| Settlement {
                        lease: j.lease(),
                        outcome: Outcome::Completed {
                            output: None,
                            follow_ups: Vec::new(),
                        },
                        only_if_expired: false,
                        workflow_id: j.workflow_id,
                    })
                    .collect(),
            )
            .await
            .expect("settle");
        assert!(settled
            .iter()
            .all(|r| matches!(r, SettleResult::Applied { .. })));
    };
    // Claims the pending `next` jobs (expecting `n`) and completes them.
    let claim_next = |n: usize| {
        let finish = &finish;
        async move {
            let claimed = store
                .claim(claim_request("worker-h", "next", lease))
                .await
                .expect("claim next");
            assert_eq!(claimed.len(), n);
            finish(claimed).await;
        }
    };
    let pending_next = || async {
        h.client
            .jobs(JobFilter {
                kind: Some("next".into()),
                state: Some(JobState::Pending),
                ..JobFilter::default()
            })
            .await
            .expect("list")
    };

    // The follow-up, offered, is claimed on settle: running for the offering worker.
    let (results, settled) = complete_first(&["next"]).await;
    let SettleResult::Applied { follow_ups } = &results[0] else {
        panic!("the completion was rejected: {results:?}");
    };
    if claims_on_settle {
        assert_eq!(
            settled.claimed.len(),
            1,
            "the follow-up is claimed on settle"
        );
        let next = &settled.claimed[0];
        assert_eq!(next.id, follow_ups[0]);
        assert_eq!((next.kind.as_str(), next.attempt), ("next", 1));
        assert!(settled.all_claimed, "it was the only job made pending");
        let stored = h.client.job(next.id).await.expect("job");
        assert_eq!(stored.state, JobState::Running);
        assert_eq!(stored.worker.as_deref(), Some("worker-h"));
        assert_eq!(stored.attempts, 1);
        finish(settled.claimed).await;
    } else {
        assert!(settled.claimed.is_empty() && !settled.all_claimed);
        claim_next(1).await;
    }

    // A kind the worker did not offer stays pending for a claim.
    let (_, settled) = complete_first(&["other"]).await;
    assert!(settled.claimed.is_empty() && !settled.all_claimed);
    assert_eq!(pending_next().await.len(), 1);
    claim_next(1).await;

    // An earlier due job of the offered kinds comes first: nothing is claimed on settle,
    // and a claim takes the earlier job first.
    let earlier = h
        .client
        .enqueue(job("next", &json!("earlier")))
        .await
        .expect("enqueue earlier")
        .id;
    let (_, settled) = complete_first(&["next"]).await;
    assert!(settled.claimed.is_empty(), "a job was waiting before it");
    assert_eq!(pending_next().await.len(), 2);
    let mut one = claim_request("worker-h", "next", lease);
    one.limit = 1;
    let claimed = store.claim(one).await.expect("claim one");
    assert_eq!(claimed[0].id, earlier);
    finish(claimed).await;
    claim_next(1).await;

    // A higher priority waiting in the queue comes first too.
    h.client
        .enqueue_with(
            job("next", &json!("urgent")),
            EnqueueOptions::new().priority(jobchain::Priority::HIGH),
        )
        .await
        .expect("enqueue urgent");
    let (_, settled) = complete_first(&["next"]).await;
    assert!(settled.claimed.is_empty(), "a higher priority was waiting");
    claim_next(2).await;

    // A paused queue: nothing is claimed on settle.
    let first = claim_first().await;
    h.client.pause_queue("default").await.expect("pause");
    let (_, settled) = settle_first(first, &["next"]).await;
    assert!(settled.claimed.is_empty(), "the queue is paused");
    h.client.resume_queue("default").await.expect("resume");
    claim_next(1).await;

    // A completion its fence rejects writes nothing and claims nothing.
    let mut first = claim_first().await;
    first.attempt += 1;
    let (results, settled) = settle_first(first, &["next"]).await;
    assert_eq!(results, [SettleResult::Stale]);
    assert!(settled.claimed.is_empty());
    assert!(pending_next().await.is_empty());

    // A declared step released by the completion is claimed like a follow-up.
    let wf = h
        .client
        .start_workflow(
            jobchain::Workflow::new("claim-on-settle")
                .step(jobchain::Step::untyped("a", job("step-a", &json!({}))))
                .step(jobchain::Step::untyped("b", job("step-b", &json!({}))).after("a")),
        )
        .await
        .expect("start")
        .id;
    let a = store
        .claim(claim_request("worker-h", "step-a", lease))
        .await
        .expect("claim a");
    let (results, settled) = store
        .settle_and_claim(
            vec![Settlement {
                lease: a[0].lease(),
                outcome: Outcome::Completed {
                    output: Some(json!(1)),
                    follow_ups: Vec::new(),
                },
                only_if_expired: false,
                workflow_id: Some(wf),
            }],
            offer(&["step-b"]),
        )
        .await
        .expect("settle a");
    assert!(matches!(results[0], SettleResult::Applied { .. }));
    let b = if claims_on_settle {
        assert_eq!(settled.claimed.len(), 1, "step b is claimed on settle");
        assert_eq!(settled.claimed[0].step.as_deref(), Some("b"));
        assert_eq!(settled.claimed[0].workflow_id, Some(wf));
        settled.claimed
    } else {
        store
            .claim(claim_request("worker-h", "step-b", lease))
            .await
            .expect("claim b")
    };
    finish(b).await;
    let info = h.client.workflow(wf).await.expect("workflow");
    assert_eq!(info.state, WorkflowState::Completed);
}
