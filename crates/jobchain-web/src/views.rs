//! The JSON shapes of the API's answers (the OpenAPI document describes each).

use jobchain::core::store::MinuteCount;
use jobchain::core::workflow::Dependency;
use jobchain::{Job, JobCounts, JobId, QueueStats, WorkflowId, WorkflowInfo};
use serde::Serialize;

/// `GET /api/v1/stats`.
#[derive(Serialize)]
pub struct Stats {
    pub totals: JobCounts,
    pub queues: Vec<Queue>,
    pub unhandled: Vec<Unhandled>,
    pub throughput: Vec<MinuteCount>,
    pub workers: usize,
}

#[derive(Serialize)]
pub struct Queue {
    pub queue: String,
    pub paused: bool,
    pub counts: JobCounts,
    pub oldest_pending_seconds: Option<f64>,
}

#[derive(Serialize)]
pub struct Unhandled {
    pub queue: String,
    pub kind: String,
    pub count: u64,
    pub oldest_seconds: f64,
    pub handled_on: Vec<String>,
}

impl From<QueueStats> for Queue {
    fn from(q: QueueStats) -> Self {
        Queue {
            queue: q.queue,
            paused: q.paused,
            counts: q.counts,
            oldest_pending_seconds: q.oldest_pending_age.map(|a| a.as_secs_f64()),
        }
    }
}

impl Stats {
    pub fn new(stats: Vec<QueueStats>, throughput: Vec<MinuteCount>, workers: usize) -> Self {
        let mut totals = JobCounts::default();
        let mut queues = Vec::with_capacity(stats.len());
        let mut unhandled = Vec::new();
        for mut q in stats {
            for state in jobchain::JobState::ALL {
                totals.add_n(state, q.counts.get(state));
            }
            unhandled.extend(
                std::mem::take(&mut q.unhandled)
                    .into_iter()
                    .map(|u| Unhandled {
                        queue: u.queue,
                        kind: u.kind,
                        count: u.count,
                        oldest_seconds: u.oldest_age.as_secs_f64(),
                        handled_on: u.handled_on,
                    }),
            );
            queues.push(Queue::from(q));
        }
        Stats {
            totals,
            queues,
            unhandled,
            throughput,
            workers,
        }
    }
}

/// A page of jobs.
#[derive(Serialize)]
pub struct JobPage {
    pub jobs: Vec<Job>,
    pub next_cursor: Option<String>,
}

/// A page of workflows.
#[derive(Serialize)]
pub struct WorkflowPage {
    pub workflows: Vec<WorkflowInfo>,
    pub next_cursor: Option<String>,
}

/// A workflow with its jobs and declared edges.
#[derive(Serialize)]
pub struct WorkflowDetail {
    pub workflow: WorkflowInfo,
    pub jobs: Vec<Job>,
    pub edges: Vec<Dependency>,
}

/// `POST /api/v1/jobs`.
#[derive(Serialize)]
pub struct Enqueued {
    pub id: JobId,
    pub duplicate: bool,
}

/// `POST /api/v1/workflows`.
#[derive(Serialize)]
pub struct Started {
    pub id: WorkflowId,
    pub duplicate: bool,
    pub jobs: Vec<JobId>,
}

/// A bulk action on dead jobs.
#[derive(Serialize)]
pub struct Bulk {
    pub done: Vec<JobId>,
    pub failed: Vec<BulkFailure>,
}

#[derive(Serialize)]
pub struct BulkFailure {
    pub id: JobId,
    pub status: u16,
    pub detail: String,
}
