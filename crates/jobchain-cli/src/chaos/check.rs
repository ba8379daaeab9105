//! The invariants a chaos run must keep, checked against what the store holds at the end
//! and the history the worker processes wrote. Pure, so that it is tested on histories
//! that break each invariant.

use std::collections::{BTreeMap, HashMap, HashSet};

use jobchain::{Job, JobId, JobState, WorkflowId, WorkflowInfo, WorkflowState};
use serde::{Deserialize, Serialize};

/// A line of a worker's history: a handler started, or (with `completed`) returned
/// success having staged that many follow-ups.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Start {
    /// The job.
    pub job: i64,
    /// The attempt it ran as.
    pub attempt: u32,
    /// The worker process.
    pub pid: u32,
    /// Set when the handler returned success: the follow-ups it staged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<usize>,
}

/// An acknowledged enqueue: the driver got this id back, so the job must exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acknowledged {
    /// The job.
    pub id: JobId,
    /// The state it must end in.
    pub expect: JobState,
}

/// Everything the checker reads.
#[derive(Debug, Default)]
pub struct Evidence {
    /// Jobs the driver was told were written.
    pub acknowledged: Vec<Acknowledged>,
    /// Every job in the store at the end.
    pub jobs: Vec<Job>,
    /// Every workflow in the store at the end.
    pub workflows: Vec<WorkflowInfo>,
    /// Handler starts from every worker's history.
    pub starts: Vec<Start>,
    /// Kinds whose completion stages exactly one follow-up of the same kind while its
    /// payload's `left` is above zero (the dynamic chains).
    pub chain_kind: String,
}

/// What the checker found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Acknowledged jobs missing or not in their expected final state.
    pub lost: Vec<String>,
    /// Follow-ups written more than once (or a chain link written none).
    pub duplicated: Vec<String>,
    /// Jobs whose stored completion is not their last attempt's, or one attempt started by
    /// two processes (two live leases).
    pub double_completed: Vec<String>,
    /// Workflows not terminal after the faults stopped.
    pub stuck: Vec<String>,
    /// Workflows whose counts differ from their jobs.
    pub miscounted: Vec<String>,
}

impl Verdict {
    /// Whether every invariant held.
    pub fn ok(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.double_completed.is_empty()
            && self.stuck.is_empty()
            && self.miscounted.is_empty()
    }
}

/// The job ids a violation names (`job 12`, `chain link 12`).
pub fn jobs_named(violation: &str) -> Vec<i64> {
    let words: Vec<&str> = violation.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "job" || w[0] == "link")
        .filter_map(|w| w[1].trim_end_matches([',', ':', ')']).parse().ok())
        .collect()
}

/// Checks every invariant.
pub fn check(evidence: &Evidence) -> Verdict {
    let mut verdict = Verdict::default();
    let by_id: HashMap<JobId, &Job> = evidence.jobs.iter().map(|j| (j.id, j)).collect();

    for ack in &evidence.acknowledged {
        match by_id.get(&ack.id) {
            None => verdict.lost.push(format!(
                "job {} was acknowledged but is not in the store",
                ack.id
            )),
            Some(job) if job.state != ack.expect => verdict.lost.push(format!(
                "job {} ({}) ended {} instead of {} after {} attempt(s): {:?}",
                job.id,
                job.kind,
                job.state,
                ack.expect,
                job.attempts,
                job.errors.last().map(|e| &e.message)
            )),
            Some(_) => {}
        }
    }

    // Follow-ups: at most one child per (parent, kind); a completed chain link with
    // links left has exactly one.
    let mut children: HashMap<(JobId, &str), usize> = HashMap::new();
    for job in &evidence.jobs {
        if let Some(parent) = job.parent_id {
            *children.entry((parent, job.kind.as_str())).or_default() += 1;
        }
    }
    for ((parent, kind), n) in &children {
        if *n > 1 {
            verdict
                .duplicated
                .push(format!("job {parent} has {n} `{kind}` follow-ups, not 1"));
        }
    }
    for job in &evidence.jobs {
        let left = job
            .payload
            .get("left")
            .and_then(|l| l.as_u64())
            .unwrap_or(0);
        if job.kind == evidence.chain_kind && job.state == JobState::Completed && left > 0 {
            let n = children
                .get(&(job.id, evidence.chain_kind.as_str()))
                .copied()
                .unwrap_or(0);
            if n != 1 {
                verdict.duplicated.push(format!(
                    "chain link {} completed with {n} follow-ups, not 1",
                    job.id
                ));
            }
        }
    }

    // Completions: a handler run of the job's last attempt returned success, and the
    // store holds exactly the follow-ups that run staged.
    let mut succeeded: HashMap<(i64, u32), usize> = HashMap::new();
    for event in &evidence.starts {
        if let Some(n) = event.completed {
            succeeded.insert((event.job, event.attempt), n);
        }
    }
    let mut all_children: HashMap<JobId, usize> = HashMap::new();
    for job in &evidence.jobs {
        if let Some(parent) = job.parent_id {
            *all_children.entry(parent).or_default() += 1;
        }
    }
    if !evidence.starts.is_empty() {
        for job in &evidence.jobs {
            if job.state != JobState::Completed {
                continue;
            }
            match succeeded.get(&(job.id.0, job.attempts)) {
                None => verdict.double_completed.push(format!(
                    "job {} is completed, but no run of its attempt {} returned success",
                    job.id, job.attempts
                )),
                Some(&staged) => {
                    let written = all_children.get(&job.id).copied().unwrap_or(0);
                    if written != staged {
                        verdict.duplicated.push(format!(
                            "job {} staged {staged} follow-up(s) in its completing run but {written} were written",
                            job.id
                        ));
                    }
                }
            }
        }
    }
    // Completions: the stored output is the last attempt's.
    for job in &evidence.jobs {
        if job.state != JobState::Completed {
            continue;
        }
        let recorded = job
            .output
            .as_ref()
            .and_then(|o| o.get("attempt"))
            .and_then(|a| a.as_u64());
        if let Some(attempt) = recorded {
            if attempt != u64::from(job.attempts) {
                verdict.double_completed.push(format!(
                    "job {} completed by attempt {attempt} while its last attempt was {}",
                    job.id, job.attempts
                ));
            }
        }
    }
    // Leases: one attempt runs in one process.
    let mut ran: BTreeMap<(i64, u32), HashSet<u32>> = BTreeMap::new();
    for start in evidence.starts.iter().filter(|s| s.completed.is_none()) {
        ran.entry((start.job, start.attempt))
            .or_default()
            .insert(start.pid);
    }
    for ((job, attempt), pids) in ran {
        if pids.len() > 1 {
            verdict.double_completed.push(format!(
                "attempt {attempt} of job {job} ran in {} processes at once ({pids:?}): two live leases",
                pids.len()
            ));
        }
    }

    // Workflows: terminal, and counted right.
    let mut per_workflow: HashMap<WorkflowId, jobchain::JobCounts> = HashMap::new();
    for job in &evidence.jobs {
        if let Some(w) = job.workflow_id {
            per_workflow.entry(w).or_default().add(job.state);
        }
    }
    for w in &evidence.workflows {
        if w.state == WorkflowState::Running {
            verdict.stuck.push(format!(
                "workflow {} ({}) still running: {:?}",
                w.id, w.name, w.counts
            ));
        }
        let counted = per_workflow.remove(&w.id).unwrap_or_default();
        if counted != w.counts {
            verdict.miscounted.push(format!(
                "workflow {} counts {:?} but its jobs are {:?}",
                w.id, w.counts, counted
            ));
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use serde_json::json;

    fn job(id: i64, kind: &str, state: JobState) -> Job {
        Job {
            id: JobId(id),
            kind: kind.into(),
            queue: "default".into(),
            payload: json!({}),
            priority: jobchain::Priority::NORMAL,
            state,
            run_at: Utc::now(),
            attempts: 1,
            max_attempts: 5,
            errors: Vec::new(),
            output: Some(json!({ "attempt": 1 })),
            workflow_id: None,
            step: None,
            parent_id: None,
            unique_key: None,
            optional: false,
            worker: None,
            lease_until: None,
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            cancel_reason: None,
            concurrency_key: None,
        }
    }

    fn evidence(jobs: Vec<Job>) -> Evidence {
        Evidence {
            acknowledged: jobs
                .iter()
                .map(|j| Acknowledged {
                    id: j.id,
                    expect: JobState::Completed,
                })
                .collect(),
            jobs,
            chain_kind: "chain".into(),
            ..Evidence::default()
        }
    }

    #[test]
    fn violations_name_their_jobs() {
        assert_eq!(
            jobs_named("job 7 was acknowledged but is not in the store"),
            [7]
        );
        assert_eq!(
            jobs_named("chain link 12 completed with 0 follow-ups, not 1"),
            [12]
        );
        assert_eq!(jobs_named("attempt 2 of job 5 ran in 2 processes"), [5]);
    }

    #[test]
    fn a_clean_history_passes() {
        let verdict = check(&evidence(vec![job(1, "plain", JobState::Completed)]));
        assert!(verdict.ok(), "{verdict:?}");
    }

    #[test]
    fn a_lost_job_is_caught_and_named() {
        let mut e = evidence(vec![job(1, "plain", JobState::Completed)]);
        e.acknowledged.push(Acknowledged {
            id: JobId(7),
            expect: JobState::Completed,
        });
        let verdict = check(&e);
        assert_eq!(verdict.lost.len(), 1);
        assert!(verdict.lost[0].contains("job 7"), "{verdict:?}");
        let mut e = evidence(vec![job(2, "plain", JobState::Pending)]);
        e.jobs[0].output = None;
        assert!(check(&e).lost[0].contains("ended pending"));
    }

    #[test]
    fn a_follow_up_written_twice_is_caught() {
        let mut parent = job(1, "chain", JobState::Completed);
        parent.payload = json!({ "left": 1 });
        let mut a = job(2, "chain", JobState::Completed);
        a.parent_id = Some(JobId(1));
        let mut b = a.clone();
        b.id = JobId(3);
        let verdict = check(&evidence(vec![parent.clone(), a.clone(), b]));
        assert!(
            verdict.duplicated.iter().any(|d| d.contains("job 1 has 2")),
            "{verdict:?}"
        );
        let verdict = check(&evidence(vec![parent]));
        assert!(
            verdict.duplicated[0].contains("0 follow-ups"),
            "{verdict:?}"
        );
    }

    #[test]
    fn a_job_completed_by_two_attempts_is_caught() {
        let mut late = job(1, "plain", JobState::Completed);
        late.attempts = 2; // claimed again, yet the first attempt's completion is stored
        let verdict = check(&evidence(vec![late]));
        assert!(
            verdict.double_completed[0].contains("completed by attempt 1"),
            "{verdict:?}"
        );
        let mut e = evidence(vec![job(1, "plain", JobState::Completed)]);
        e.starts = vec![
            start(1, 1, 10, None),
            start(1, 1, 11, None),
            start(1, 1, 11, Some(0)),
        ];
        assert!(check(&e).double_completed[0].contains("two live leases"));
    }

    fn start(job: i64, attempt: u32, pid: u32, completed: Option<usize>) -> Start {
        Start {
            job,
            attempt,
            pid,
            completed,
        }
    }

    #[test]
    fn a_completion_no_run_returned_or_with_other_follow_ups_is_caught() {
        let mut e = evidence(vec![job(1, "plain", JobState::Completed)]);
        e.starts = vec![start(1, 1, 10, None)];
        let verdict = check(&e);
        assert!(
            verdict.double_completed[0].contains("no run of its attempt 1 returned success"),
            "{verdict:?}"
        );
        e.starts.push(start(1, 1, 10, Some(2)));
        let verdict = check(&e);
        assert!(
            verdict.duplicated[0].contains("staged 2 follow-up(s)"),
            "{verdict:?}"
        );
    }

    #[test]
    fn a_stuck_or_miscounted_workflow_is_caught() {
        let id = WorkflowId::new();
        let mut j = job(1, "plain", JobState::Completed);
        j.workflow_id = Some(id);
        let mut e = evidence(vec![j]);
        e.workflows.push(WorkflowInfo {
            id,
            name: "order".into(),
            state: WorkflowState::Running,
            unique_key: None,
            created_at: Utc::now(),
            finished_at: None,
            counts: jobchain::JobCounts::default(),
            tolerated_failures: 0,
            result_step: None,
        });
        let verdict = check(&e);
        assert!(verdict.stuck[0].contains("still running"), "{verdict:?}");
        assert!(verdict.miscounted[0].contains("counts"), "{verdict:?}");
    }
}
