//! The property test of declared workflows on a real store: random DAGs (up to 30
//! steps, random edge policies, random optional steps) with random per-step outcomes,
//! run to quiescence by a real worker, then checked against the pure reference model of
//! `jobchain_core::workflow::graph`.
//!
//! Cases: `JOBCHAIN_PROPTEST_CASES` (default 96; a cascade bug needed ~100 to show) — raise it for a long local run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobchain::core::workflow::graph::{self, Graph, StepSpec};
use jobchain::{
    EdgePolicy, JobContext, JobError, JobState, KindOptions, RetryPolicy, Step, Workflow,
    WorkflowState,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde::{Deserialize, Serialize};

use crate::support::{job, Harness};
use crate::workflows::settled;

/// What a step's handler does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fate {
    /// Succeeds.
    Succeed,
    /// Fails every attempt until it is dead.
    FailAfterRetries,
    /// Fails permanently at once.
    FailPermanently,
    /// Cancels its own job while running.
    Cancel,
}

/// One random step: optional flag, dependencies on earlier steps, fate.
#[derive(Clone, Debug)]
pub struct RandomStep {
    optional: bool,
    deps: Vec<(usize, EdgePolicy)>,
    fate: Fate,
}

fn arb_workflow() -> impl Strategy<Value = Vec<RandomStep>> {
    let fate = prop_oneof![
        4 => Just(Fate::Succeed),
        1 => Just(Fate::FailAfterRetries),
        1 => Just(Fate::FailPermanently),
        1 => Just(Fate::Cancel),
    ];
    (1usize..=30).prop_flat_map(move |n| {
        proptest::collection::vec(
            (
                proptest::bool::weighted(0.2),
                proptest::collection::vec((any::<u16>(), proptest::bool::weighted(0.3)), 0..4),
                fate.clone(),
            ),
            n,
        )
        .prop_map(|raw| {
            raw.into_iter()
                .enumerate()
                .map(|(i, (optional, deps, fate))| {
                    let mut resolved: Vec<(usize, EdgePolicy)> = Vec::new();
                    if i > 0 {
                        for (d, optional_edge) in deps {
                            let d = usize::from(d) % i;
                            if resolved.iter().all(|(e, _)| *e != d) {
                                let policy = if optional_edge {
                                    EdgePolicy::Optional
                                } else {
                                    EdgePolicy::Required
                                };
                                resolved.push((d, policy));
                            }
                        }
                    }
                    RandomStep {
                        optional,
                        deps: resolved,
                        fate,
                    }
                })
                .collect()
        })
    })
}

#[derive(Default)]
struct Observations {
    first_starts: HashMap<String, u32>,
    violations: Vec<String>,
}

/// Every random workflow reaches a terminal state; no job runs before its required
/// dependencies completed; every step starts at most once; the workflow's counts match
/// its jobs; final states equal the reference model's.
pub async fn random_workflows_reach_terminal_states(h: &Harness) {
    let cases = std::env::var("JOBCHAIN_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(96);
    let observations = Arc::new(Mutex::new(Observations::default()));
    let obs = observations.clone();
    let client = h.client.clone();
    let worker = h
        .worker()
        .handler_with(
            "prop_step",
            KindOptions::new().retry(RetryPolicy {
                max_attempts: 2,
                base: Duration::from_millis(1),
                cap: Duration::from_millis(5),
                jitter: 0.0,
            }),
            move |ctx: JobContext, fate: Fate| {
                let (obs, client) = (obs.clone(), client.clone());
                async move {
                    let deps = ctx.dependencies().await?;
                    let key = format!(
                        "{}:{}",
                        ctx.workflow_id().map(|w| w.to_string()).unwrap_or_default(),
                        ctx.step().unwrap_or_default()
                    );
                    {
                        let mut o = obs.lock().expect("observations");
                        for dep in &deps {
                            let ok = match dep.policy {
                                EdgePolicy::Required => dep.state == JobState::Completed,
                                EdgePolicy::Optional => dep.state.is_terminal(),
                            };
                            if !ok {
                                o.violations.push(format!(
                                    "{key} started while {} was {} ({:?} edge)",
                                    dep.name, dep.state, dep.policy
                                ));
                            }
                        }
                        if ctx.attempt() == 1 {
                            *o.first_starts.entry(key).or_default() += 1;
                        }
                    }
                    match fate {
                        Fate::Succeed => Ok(()),
                        Fate::FailAfterRetries => Err(JobError::retryable("random failure")),
                        Fate::FailPermanently => {
                            Err(JobError::permanent("random permanent failure"))
                        }
                        Fate::Cancel => {
                            client
                                .cancel(ctx.job_id())
                                .await
                                .map_err(|e| JobError::retryable(e.to_string()))?;
                            Ok(())
                        }
                    }
                }
            },
        )
        .build()
        .expect("worker")
        .start();
    let handle = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&arb_workflow(), |steps| {
        tokio::task::block_in_place(|| handle.block_on(check_one(h, &steps, &observations)))
    });
    worker.shutdown().await;
    if let Err(e) = result {
        panic!("{e}");
    }
}

async fn check_one(
    h: &Harness,
    steps: &[RandomStep],
    observations: &Arc<Mutex<Observations>>,
) -> Result<(), TestCaseError> {
    let name = |i: usize| format!("s{i}");
    let mut workflow = Workflow::new("random");
    let mut specs = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let mut s = Step::untyped(&name(i), job("prop_step", &step.fate));
        for (d, policy) in &step.deps {
            s = match policy {
                EdgePolicy::Required => s.after(&name(*d)),
                EdgePolicy::Optional => s.after_optional(&name(*d)),
            };
        }
        if step.optional {
            s = s.optional();
        }
        workflow = workflow.step(s);
        specs.push(StepSpec {
            name: name(i),
            optional: step.optional,
            depends_on: step.deps.iter().map(|(d, p)| (name(*d), *p)).collect(),
        });
    }
    let id = h
        .client
        .start_workflow(workflow)
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .id;
    let info = settled(h, id).await;
    let jobs = h.client.workflow_jobs(id).await.expect("jobs");
    prop_assert_eq!(jobs.len(), steps.len());
    let by_step: HashMap<String, &jobchain::Job> = jobs
        .iter()
        .map(|j| (j.step.clone().unwrap_or_default(), j))
        .collect();

    // The reference model, run with the same fates.
    let plan = graph::validate("random", &specs).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut model = Graph::new(&plan);
    while let Some(next) = model.states().iter().position(|s| *s == JobState::Pending) {
        let outcome = match steps[next].fate {
            Fate::Succeed => JobState::Completed,
            Fate::FailAfterRetries | Fate::FailPermanently => JobState::Dead,
            Fate::Cancel => JobState::Cancelled,
        };
        model.set_state(next, outcome);
    }
    let mut counts = jobchain::JobCounts::default();
    let mut untolerated = 0;
    for (i, expected) in model.states().iter().enumerate() {
        let job = by_step[&name(i)];
        prop_assert!(job.state.is_terminal(), "{} is {}", name(i), job.state);
        prop_assert_eq!(
            job.state,
            *expected,
            "step {} differs from the model",
            name(i)
        );
        counts.add(job.state);
        if job.state.is_failure() && !plan.tolerated[i] {
            untolerated += 1;
        }
    }
    prop_assert_eq!(&info.counts, &counts);
    let expected_state = if untolerated > 0 {
        WorkflowState::Failed
    } else {
        WorkflowState::Completed
    };
    prop_assert_eq!(info.state, expected_state);
    let o = observations.lock().expect("observations");
    prop_assert!(o.violations.is_empty(), "{:?}", o.violations);
    for (key, starts) in &o.first_starts {
        prop_assert!(*starts <= 1, "{key} started {starts} times");
    }
    Ok(())
}
