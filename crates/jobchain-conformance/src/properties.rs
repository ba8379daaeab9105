//! The property test of declared workflows on a real store: random DAGs (up to 30
//! steps, random edge policies, random optional steps) of every kind of step (handlers
//! with random outcomes, signals sent or never sent, timers, map steps with random
//! elements, sub-workflows, and conditions that skip a step or its branch), run to
//! quiescence by a real worker, then checked against the pure reference model of
//! `jobchain_core::workflow::graph`.
//!
//! Cases: `JOBCHAIN_PROPTEST_CASES` (default 96; a cascade bug needed ~100 to show) — raise it for a long local run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobchain::core::workflow::graph::{self, Graph, StepSpec};
use jobchain::{
    EdgePolicy, JobContext, JobError, JobState, KindOptions, Op, Predicate, RetryPolicy, Step,
    Workflow, WorkflowState,
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

impl Fate {
    /// The state the reference model gives a step with this fate.
    fn outcome(self) -> JobState {
        match self {
            Fate::Succeed => JobState::Completed,
            Fate::FailAfterRetries | Fate::FailPermanently => JobState::Dead,
            Fate::Cancel => JobState::Cancelled,
        }
    }
}

/// The payload of a handler step: its fate, and what it outputs when it succeeds (the
/// `skip` flag that conditions read, and the `items` that map steps map over).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    fate: Fate,
    skip: bool,
    items: Vec<bool>,
}

/// What a step is.
#[derive(Clone, Debug)]
pub enum Form {
    /// A handler.
    Handler(Payload),
    /// Waits for a signal, sent right after the start (before or after the step is
    /// reached) or never (then it times out, dead).
    Signal {
        /// Whether the signal is sent.
        sent: bool,
    },
    /// A short durable timer.
    Timer,
    /// Maps over its first required dependency's `items` (a handler step): each element
    /// succeeds or fails permanently.
    Map {
        /// Failed elements are tolerated.
        tolerate: bool,
    },
    /// A sub-workflow: a chain of handler steps with these fates.
    Child(Vec<Fate>),
}

/// One random step: optional flag, dependencies on earlier steps, form, and maybe a
/// condition on its first dependency's `skip` flag (with a cascade or not).
#[derive(Clone, Debug)]
pub struct RandomStep {
    optional: bool,
    deps: Vec<(usize, EdgePolicy)>,
    form: Form,
    condition: Option<bool>,
}

fn arb_fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        4 => Just(Fate::Succeed),
        1 => Just(Fate::FailAfterRetries),
        1 => Just(Fate::FailPermanently),
        1 => Just(Fate::Cancel),
    ]
}

fn arb_form() -> impl Strategy<Value = Form> {
    let payload = (
        arb_fate(),
        proptest::bool::weighted(0.3),
        proptest::collection::vec(proptest::bool::weighted(0.85), 0..4),
    )
        .prop_map(|(fate, skip, items)| Payload { fate, skip, items });
    prop_oneof![
        8 => payload.prop_map(Form::Handler),
        1 => any::<bool>().prop_map(|sent| Form::Signal { sent }),
        1 => Just(Form::Timer),
        2 => any::<bool>().prop_map(|tolerate| Form::Map { tolerate }),
        1 => proptest::collection::vec(arb_fate(), 1..4).prop_map(Form::Child),
    ]
}

fn arb_workflow() -> impl Strategy<Value = Vec<RandomStep>> {
    (1usize..=30).prop_flat_map(move |n| {
        proptest::collection::vec(
            (
                proptest::bool::weighted(0.2),
                proptest::collection::vec((any::<u16>(), proptest::bool::weighted(0.3)), 0..4),
                arb_form(),
                proptest::option::weighted(0.25, any::<bool>()),
            ),
            n,
        )
        .prop_map(|raw| {
            let mut steps: Vec<RandomStep> = Vec::new();
            for (i, (optional, deps, form, condition)) in raw.into_iter().enumerate() {
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
                // A map needs a handler step to map over, as a required dependency.
                let form = match form {
                    Form::Map { tolerate } => match over(&steps, &resolved) {
                        Some(_) => Form::Map { tolerate },
                        None => Form::Timer,
                    },
                    other => other,
                };
                // A condition reads the first dependency.
                let condition = condition.filter(|_| !resolved.is_empty());
                steps.push(RandomStep {
                    optional,
                    deps: resolved,
                    form,
                    condition,
                });
            }
            steps
        })
    })
}

/// The dependency a map step maps over: its first required dependency that is a
/// handler step.
fn over(steps: &[RandomStep], deps: &[(usize, EdgePolicy)]) -> Option<usize> {
    deps.iter()
        .find(|(d, p)| *p == EdgePolicy::Required && matches!(steps[*d].form, Form::Handler(_)))
        .map(|(d, _)| *d)
}

#[derive(Default)]
struct Observations {
    first_starts: HashMap<String, u32>,
    violations: Vec<String>,
}

/// Every random workflow reaches a terminal state; no job runs before its required
/// dependencies completed (or were skipped); every step starts at most once; the
/// workflow's counts match its jobs (the steps maps and sub-workflows wrote included);
/// final states equal the reference model's.
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
        .concurrency(16)
        .handler_with(
            "prop_step",
            KindOptions::new().retry(RetryPolicy {
                max_attempts: 2,
                base: Duration::from_millis(1),
                cap: Duration::from_millis(5),
                jitter: 0.0,
            }),
            move |ctx: JobContext, payload: Payload| {
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
                                EdgePolicy::Required => {
                                    matches!(dep.state, JobState::Completed | JobState::Skipped)
                                }
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
                    match payload.fate {
                        Fate::Succeed => Ok(serde_json::json!({
                            "skip": payload.skip,
                            "items": payload.items,
                        })),
                        Fate::FailAfterRetries => Err(JobError::retryable("random failure")),
                        Fate::FailPermanently => {
                            Err(JobError::permanent("random permanent failure"))
                        }
                        Fate::Cancel => {
                            client
                                .cancel(ctx.job_id())
                                .await
                                .map_err(|e| JobError::retryable(e.to_string()))?;
                            Ok(serde_json::Value::Null)
                        }
                    }
                }
            },
        )
        .handler("prop_elem", |_: JobContext, ok: bool| async move {
            if ok {
                Ok(())
            } else {
                Err(JobError::permanent("random element failure"))
            }
        })
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

fn name(i: usize) -> String {
    format!("s{i}")
}

/// The step as declared.
fn declare(steps: &[RandomStep], i: usize) -> Step {
    let step = &steps[i];
    let mut mapped_over = None;
    let mut s = match &step.form {
        Form::Handler(payload) => Step::untyped(&name(i), job("prop_step", payload)),
        Form::Signal { sent: true } => Step::wait_for_signal(&name(i), Duration::from_secs(10)),
        Form::Signal { sent: false } => Step::wait_for_signal(&name(i), Duration::from_millis(60)),
        Form::Timer => Step::sleep(&name(i), Duration::from_millis(5)),
        Form::Map { tolerate } => {
            let d = over(steps, &step.deps).expect("a map has a handler step to map over");
            mapped_over = Some(d);
            let map = Step::map(&name(i), "prop_elem").over(&name(d)).at("/items");
            if *tolerate {
                map.tolerate_failures()
            } else {
                map
            }
        }
        Form::Child(fates) => {
            let mut child = Workflow::new(&format!("{}-child", name(i)));
            for (j, fate) in fates.iter().enumerate() {
                let payload = Payload {
                    fate: *fate,
                    skip: false,
                    items: Vec::new(),
                };
                let mut c = Step::untyped(&format!("{}.c{j}", name(i)), job("prop_step", &payload));
                if j > 0 {
                    c = c.after(&format!("{}.c{}", name(i), j - 1));
                }
                child = child.step(c);
            }
            Step::workflow(&name(i), child)
        }
    };
    for (d, policy) in &step.deps {
        if Some(*d) == mapped_over {
            continue;
        }
        s = match policy {
            EdgePolicy::Required => s.after(&name(*d)),
            EdgePolicy::Optional => s.after_optional(&name(*d)),
        };
    }
    if step.optional {
        s = s.optional();
    }
    if let Some(cascade) = step.condition {
        let first = step.deps[0].0;
        let predicate = Predicate::compare(&name(first), "/skip", Op::Eq, true);
        s = if cascade {
            s.skip_cascade_if(predicate)
        } else {
            s.skip_if(predicate)
        };
    }
    s
}

/// The jobs a map or sub-workflow step writes when it runs, as the model sees them.
#[derive(Default)]
struct Extra {
    counts: jobchain::JobCounts,
    jobs: usize,
    untolerated: u64,
}

impl Extra {
    fn add(&mut self, state: JobState, tolerated: bool) {
        self.counts.add(state);
        self.jobs += 1;
        if state.is_failure() && !tolerated {
            self.untolerated += 1;
        }
    }
}

/// The state the model gives step `i` when it runs (its dependencies have ended), and
/// the jobs it writes.
fn model_outcome(steps: &[RandomStep], model: &Graph, i: usize, extra: &mut Extra) -> JobState {
    match &steps[i].form {
        Form::Handler(payload) => payload.fate.outcome(),
        Form::Signal { sent } => {
            if *sent {
                JobState::Completed
            } else {
                JobState::Dead
            }
        }
        Form::Timer => JobState::Completed,
        Form::Map { tolerate } => {
            let d = over(steps, &steps[i].deps).expect("map input");
            let Form::Handler(payload) = &steps[d].form else {
                unreachable!("a map maps over a handler step");
            };
            // A skipped input has no output to map over: the map step ends dead.
            if model.states()[d] != JobState::Completed {
                return JobState::Dead;
            }
            for ok in &payload.items {
                let state = if *ok {
                    JobState::Completed
                } else {
                    JobState::Dead
                };
                extra.add(state, *tolerate);
            }
            if *tolerate || payload.items.iter().all(|ok| *ok) {
                JobState::Completed
            } else {
                JobState::Cancelled
            }
        }
        Form::Child(fates) => {
            let mut failed = false;
            for fate in fates {
                let state = if failed {
                    JobState::Cancelled
                } else {
                    fate.outcome()
                };
                failed |= state != JobState::Completed;
                extra.add(state, false);
            }
            if failed {
                JobState::Cancelled
            } else {
                JobState::Completed
            }
        }
    }
}

async fn check_one(
    h: &Harness,
    steps: &[RandomStep],
    observations: &Arc<Mutex<Observations>>,
) -> Result<(), TestCaseError> {
    let mut workflow = Workflow::new("random");
    let mut specs = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        workflow = workflow.step(declare(steps, i));
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
    for (i, step) in steps.iter().enumerate() {
        if let Form::Signal { sent: true } = step.form {
            h.client
                .signal(id, &name(i), serde_json::json!({ "step": i }))
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
    }
    let info = settled(h, id).await;
    let jobs = h.client.workflow_jobs(id).await.expect("jobs");
    let by_step: HashMap<String, &jobchain::Job> = jobs
        .iter()
        .map(|j| (j.step.clone().unwrap_or_default(), j))
        .collect();

    // The reference model, run with the same fates, signals, elements and conditions.
    let plan = graph::validate("random", &specs).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut model = Graph::new(&plan);
    let mut extra = Extra::default();
    while let Some(next) = model.states().iter().position(|s| *s == JobState::Pending) {
        if model.cascaded_from(next).is_some() {
            model.skip(next, true);
            continue;
        }
        if let Some(cascade) = steps[next].condition {
            let first = steps[next].deps[0].0;
            let skip = matches!(&steps[first].form, Form::Handler(p) if p.skip)
                && model.states()[first] == JobState::Completed;
            if skip {
                model.skip(next, cascade);
                continue;
            }
        }
        let outcome = model_outcome(steps, &model, next, &mut extra);
        model.set_state(next, outcome);
    }
    prop_assert_eq!(jobs.len(), steps.len() + extra.jobs);
    let mut counts = extra.counts.clone();
    let mut untolerated = extra.untolerated;
    for (i, expected) in model.states().iter().enumerate() {
        let job = by_step[&name(i)];
        prop_assert!(job.state.is_terminal(), "{} is {}", name(i), job.state);
        prop_assert_eq!(
            job.state,
            *expected,
            "step {} differs from the model (errors {:?}, reason {:?})",
            name(i),
            job.errors,
            job.cancel_reason
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
