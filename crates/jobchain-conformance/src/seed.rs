//! The course's order chain, dynamically chained: the three seed exercises.

use std::collections::HashSet;

use jobchain::{JobContext, JobError, JobFilter, JobState, WorkflowState};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::support::{eventually, job, quick_retry, Harness, Recorder, StartWorker};

/// The seed's order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Order {
    /// Order number.
    pub id: u64,
}

/// How the confirmation step of the seed behaves.
#[derive(Clone, Copy, PartialEq)]
enum Email {
    Works,
    Fails,
    FailsButOptional,
}

/// The seed's order workflow, chained dynamically.
fn order_worker(h: &Harness, log_: &Recorder<String>, email: Email) -> jobchain::WorkerHandle {
    let (l1, l2, l3, l4) = (log_.clone(), log_.clone(), log_.clone(), log_.clone());
    h.worker()
        .handler_with(
            "process_order",
            quick_retry(2),
            move |ctx: JobContext, order: Order| {
                let l = l1.clone();
                async move {
                    l.record("process_order");
                    ctx.enqueue(job("send_order_confirmation", &order))?;
                    Ok(())
                }
            },
        )
        .handler_with(
            "send_order_confirmation",
            quick_retry(2),
            move |ctx: JobContext, order: Order| {
                let l = l2.clone();
                async move {
                    l.record("send_order_confirmation");
                    let sent: Result<(), JobError> = match email {
                        Email::Works => Ok(()),
                        Email::Fails | Email::FailsButOptional => {
                            Err(JobError::retryable("smtp server unavailable"))
                        }
                    };
                    match sent {
                        Ok(()) => {}
                        // Conditional chaining: e-mail is nice-to-have.
                        Err(e) if email == Email::FailsButOptional => {
                            l.record(format!("email skipped: {e}"));
                        }
                        Err(e) => return Err(e),
                    }
                    ctx.enqueue(job("generate_invoice", &order))?;
                    ctx.enqueue(job("sync_inventory", &order))?;
                    Ok(())
                }
            },
        )
        .handler("generate_invoice", move |_ctx: JobContext, _o: Order| {
            let l = l3.clone();
            async move {
                l.record("generate_invoice");
                Ok(json!({ "invoice": "INV-1" }))
            }
        })
        .handler("sync_inventory", move |_ctx: JobContext, _o: Order| {
            let l = l4.clone();
            async move {
                l.record("sync_inventory");
                Ok(())
            }
        })
        .started()
}

async fn finished_workflow(h: &Harness, id: jobchain::WorkflowId) -> jobchain::WorkflowInfo {
    eventually("the workflow to finish", || async {
        let info = h.client.workflow(id).await.expect("workflow");
        (info.state != WorkflowState::Running).then_some(info)
    })
    .await
}

/// Seed exercise 1: the whole chain runs, each step after the one that staged it.
pub async fn seed_full_chain_runs_in_order(h: &Harness) {
    let l = Recorder::<String>::default();
    let worker = order_worker(h, &l, Email::Works);
    let wf = h
        .client
        .start_workflow(job("process_order", &Order { id: 1 }))
        .await
        .expect("start")
        .id;
    let info = finished_workflow(h, wf).await;
    worker.shutdown().await;
    assert_eq!(info.state, WorkflowState::Completed);
    assert_eq!(info.counts.completed, 4);
    let entries = l.entries();
    assert_eq!(&entries[..2], ["process_order", "send_order_confirmation"]);
    let rest: HashSet<_> = entries[2..].iter().cloned().collect();
    assert_eq!(
        rest,
        HashSet::from(["generate_invoice".to_string(), "sync_inventory".to_string()])
    );
    let jobs = h.client.workflow_jobs(wf).await.expect("jobs");
    assert_eq!(jobs.len(), 4);
    assert_eq!(jobs[0].parent_id, None);
    assert_eq!(jobs[1].parent_id, Some(jobs[0].id));
    assert_eq!(jobs[2].parent_id, Some(jobs[1].id));
    assert_eq!(jobs[3].parent_id, Some(jobs[1].id));
    assert!(jobs.iter().all(|j| j.workflow_id == Some(wf)));
    let invoice = jobs
        .iter()
        .find(|j| j.kind == "generate_invoice")
        .expect("invoice");
    assert_eq!(invoice.output, Some(json!({ "invoice": "INV-1" })));
    let tree = h.client.render_workflow(wf).await.expect("tree");
    assert!(tree.contains("└─ send_order_confirmation"), "{tree}");
    assert!(tree.contains("├─ generate_invoice"), "{tree}");
}

/// Seed exercise 2: a failing confirmation leaves invoice and inventory never enqueued.
pub async fn seed_failing_confirmation_stops_the_chain(h: &Harness) {
    let l = Recorder::<String>::default();
    let worker = order_worker(h, &l, Email::Fails);
    let wf = h
        .client
        .start_workflow(job("process_order", &Order { id: 2 }))
        .await
        .expect("start")
        .id;
    let info = finished_workflow(h, wf).await;
    worker.shutdown().await;
    assert_eq!(info.state, WorkflowState::Failed);
    let jobs = h.client.workflow_jobs(wf).await.expect("jobs");
    let kinds: Vec<_> = jobs.iter().map(|j| j.kind.as_str()).collect();
    assert_eq!(kinds, ["process_order", "send_order_confirmation"]);
    assert_eq!(jobs[1].state, JobState::Dead);
    assert_eq!(jobs[1].attempts, 2);
    assert_eq!(jobs[1].errors.len(), 2);
    for kind in ["generate_invoice", "sync_inventory"] {
        let found = h
            .client
            .jobs(JobFilter {
                kind: Some(kind.into()),
                ..JobFilter::default()
            })
            .await
            .expect("list");
        assert!(found.is_empty(), "{kind} must never be enqueued");
    }
}

/// Seed exercise 3: with conditional chaining, invoice and inventory run anyway.
pub async fn seed_conditional_chaining_runs_the_rest(h: &Harness) {
    let l = Recorder::<String>::default();
    let worker = order_worker(h, &l, Email::FailsButOptional);
    let wf = h
        .client
        .start_workflow(job("process_order", &Order { id: 3 }))
        .await
        .expect("start")
        .id;
    let info = finished_workflow(h, wf).await;
    worker.shutdown().await;
    assert_eq!(info.state, WorkflowState::Completed);
    assert_eq!(info.counts.completed, 4);
    let entries = l.entries();
    assert!(entries.iter().any(|e| e.starts_with("email skipped")));
    assert!(entries.contains(&"generate_invoice".to_string()));
    assert!(entries.contains(&"sync_inventory".to_string()));
}
