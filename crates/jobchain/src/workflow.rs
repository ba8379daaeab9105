//! Declared workflows: the whole graph up front.
//!
//! ```
//! use jobchain::{JobArgs, JobSpec, Step, Workflow};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct ChargePayment { order_id: u64 }
//! impl JobArgs for ChargePayment { const KIND: &'static str = "charge_payment"; }
//!
//! #[derive(Serialize, Deserialize)]
//! struct SendConfirmation { order_id: u64 }
//! impl JobArgs for SendConfirmation { const KIND: &'static str = "send_confirmation"; }
//!
//! let workflow = Workflow::new("order")
//!     .step(Step::new("charge", &ChargePayment { order_id: 7 }))
//!     .step(Step::new("confirm", &SendConfirmation { order_id: 7 }).after("charge"))
//!     // the string path: a kind name and JSON, for kinds defined in another language
//!     .step(
//!         Step::untyped("invoice", JobSpec::new("generate_invoice", serde_json::json!({ "order_id": 7 })))
//!             .after_optional("confirm"),
//!     );
//! assert_eq!(workflow.len(), 3);
//! ```
//!
//! Starting it ([`Client::start_workflow`](crate::Client::start_workflow)) validates the
//! graph (unknown, duplicate and cyclic steps are rejected, naming them) and writes every
//! step in one transaction. See `docs/workflows.md` for when to declare and when to chain.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jobchain_core::job::EnqueueOptions;
use jobchain_core::store::{SignalWait, SleepFor, SIGNAL_KIND, SLEEP_KIND};
use jobchain_core::workflow::condition::{Predicate, SkipIf};
use jobchain_core::workflow::graph::{self, GraphError, StepSpec};
use jobchain_core::workflow::{EdgePolicy, NewStep, NewWorkflow};
use jobchain_core::WorkflowId;
use serde_json::Value;

use crate::args::{IntoJob, JobArgs, JobSpec};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::steps::{MapSpec, SubWorkflow, MAP_KIND, WORKFLOW_KIND};

/// One declared step.
#[derive(Debug)]
pub struct Step {
    name: String,
    job: Result<JobSpec>,
    options: EnqueueOptions,
    depends_on: Vec<(String, EdgePolicy)>,
    /// A map step's settings (its job is written from them).
    map: Option<MapSpec>,
    /// A sub-workflow step's child (resolved when the parent is).
    child: Option<Box<Workflow>>,
    /// Its condition.
    skip_if: Option<SkipIf>,
}

impl Step {
    /// A step named `name` that runs the typed job `args` (kind and defaults from its type).
    pub fn new<T: JobArgs>(name: &str, args: &T) -> Self {
        Self::with_job(name, JobSpec::typed(args))
    }

    /// A step named `name` that runs `job`: the string path, for kinds named at run time
    /// or handled in another language.
    pub fn untyped(name: &str, job: JobSpec) -> Self {
        Self::with_job(name, Ok(job))
    }

    /// A step named `name` that waits for the workflow's signal `name`
    /// ([`Client::signal`](crate::Client::signal)) and completes with its payload as its
    /// output. A signal sent before the step is reached is kept and consumed when it is.
    /// If none comes within `timeout` of the step being reached, the step ends dead (so
    /// its edges' policies apply). Waiting holds no worker slot.
    pub fn wait_for_signal(name: &str, timeout: Duration) -> Self {
        let wait = SignalWait {
            signal: name.to_string(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        };
        Self::with_job(name, wait_job(SIGNAL_KIND, &wait))
    }

    /// A step named `name` that completes `delay` after it is reached (a durable timer:
    /// the instant is kept in the store, so restarts do not move it). Waiting holds no
    /// worker slot.
    pub fn sleep(name: &str, delay: Duration) -> Self {
        let wait = SleepFor::Delay {
            sleep_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        };
        Self::with_job(name, wait_job(SLEEP_KIND, &wait))
    }

    /// A step named `name` that completes at `until` (at once if that has passed).
    pub fn sleep_until(name: &str, until: DateTime<Utc>) -> Self {
        Self::with_job(name, wait_job(SLEEP_KIND, &SleepFor::Until { until }))
    }

    /// A map step named `name`: runs `kind` once per element of the array output of the
    /// dependency named with [`over`](Self::over), each element its own job (its own
    /// retries, payload the element); completes with the array of the elements' outputs,
    /// in order. By default a failed element fails the step (its required dependents are
    /// cancelled; retrying the element from the dead-letter queue revives them); see
    /// [`tolerate_failures`](Self::tolerate_failures) and
    /// [`max_parallel`](Self::max_parallel).
    pub fn map(name: &str, kind: &str) -> Self {
        let mut step = Self::with_job(name, Ok(JobSpec::new(MAP_KIND, Value::Null)));
        step.map = Some(MapSpec {
            kind: kind.to_string(),
            over: String::new(),
            at: String::new(),
            max_parallel: 0,
            tolerate_failures: false,
        });
        step
    }

    /// A map step's input: the dependency `step`, whose output is an array (the step
    /// runs after it completed).
    pub fn over(mut self, step: &str) -> Self {
        if let Some(map) = &mut self.map {
            map.over = step.to_string();
        }
        self.after(step)
    }

    /// Where in its input's output the array is: a JSON pointer (`"/lines"`); by default
    /// the whole output.
    pub fn at(mut self, pointer: &str) -> Self {
        if let Some(map) = &mut self.map {
            map.at = pointer.to_string();
        }
        self
    }

    /// At most `n` elements of a map step pending or running at once (0: no limit).
    pub fn max_parallel(mut self, n: u32) -> Self {
        if let Some(map) = &mut self.map {
            map.max_parallel = n;
        }
        self
    }

    /// A failed element of a map step becomes `null` in its output instead of failing
    /// the step.
    pub fn tolerate_failures(mut self) -> Self {
        if let Some(map) = &mut self.map {
            map.tolerate_failures = true;
        }
        self
    }

    /// A step named `name` that runs the declared workflow `child` inside this one: its
    /// steps are written when this step is reached, nested under it, and this step
    /// completes when they have (with the child's result as its output: its result step's
    /// output, or its single sink's). A failure the child does not tolerate cancels this
    /// step; cancelling the workflow cancels the child's steps too.
    pub fn workflow(name: &str, child: Workflow) -> Self {
        let mut step = Self::with_job(name, Ok(JobSpec::new(WORKFLOW_KIND, Value::Null)));
        step.child = Some(Box::new(child));
        step
    }

    /// Skips the step when `predicate` holds over its dependencies' outputs, evaluated
    /// when it is ready to run: it ends `skipped` (never a failure) without running, and
    /// its dependents run, seeing it skipped (no output). Each step the predicate reads
    /// must be a dependency of this one.
    pub fn skip_if(mut self, predicate: Predicate) -> Self {
        self.skip_if = Some(SkipIf {
            when: predicate,
            cascade: false,
        });
        self
    }

    /// Like [`skip_if`](Self::skip_if), and its required dependents are skipped too,
    /// transitively (optional dependents run).
    pub fn skip_cascade_if(mut self, predicate: Predicate) -> Self {
        self.skip_if = Some(SkipIf {
            when: predicate,
            cascade: true,
        });
        self
    }

    fn with_job(name: &str, job: Result<JobSpec>) -> Self {
        Step {
            name: name.to_string(),
            job,
            options: EnqueueOptions::default(),
            depends_on: Vec::new(),
            map: None,
            child: None,
            skip_if: None,
        }
    }

    /// Runs after `step` completed; if `step` ends dead or cancelled, this step is
    /// cancelled.
    pub fn after(mut self, step: &str) -> Self {
        self.depends_on
            .push((step.to_string(), EdgePolicy::Required));
        self
    }

    /// Runs after `step` is terminal, whatever its outcome.
    pub fn after_optional(mut self, step: &str) -> Self {
        self.depends_on
            .push((step.to_string(), EdgePolicy::Optional));
        self
    }

    /// The step's own failure is tolerated by the workflow (nice-to-have).
    pub fn optional(mut self) -> Self {
        self.options.optional = true;
        self
    }

    /// Job options (queue, priority, attempts, delay). The workflow id and unique key
    /// are the workflow's.
    pub fn options(mut self, options: EnqueueOptions) -> Self {
        let optional = self.options.optional || options.optional;
        self.options = options;
        self.options.optional = optional;
        self
    }
}

/// What [`Client::start_workflow`](crate::Client::start_workflow) starts: a declared
/// [`Workflow`], or a single first job (`&args` of a typed payload, or a [`JobSpec`])
/// under a new workflow named after its kind, whose handlers chain the rest.
pub trait IntoWorkflow {
    /// Validates the workflow and resolves its steps into jobs with the client's defaults.
    fn into_workflow(self, client: &Client) -> Result<NewWorkflow>;
}

impl IntoWorkflow for Workflow {
    fn into_workflow(self, client: &Client) -> Result<NewWorkflow> {
        self.build(client)
    }
}

impl<T: JobArgs> IntoWorkflow for &T {
    fn into_workflow(self, client: &Client) -> Result<NewWorkflow> {
        JobSpec::typed(self)?.into_workflow(client)
    }
}

impl IntoWorkflow for JobSpec {
    fn into_workflow(self, client: &Client) -> Result<NewWorkflow> {
        let id = WorkflowId::new();
        let name = self.kind.clone();
        let mut job = client.resolve_job(self.into_job()?)?;
        job.workflow_id = Some(id);
        Ok(NewWorkflow {
            id,
            name,
            unique_key: None,
            steps: vec![NewStep {
                job,
                depends_on: Vec::new(),
            }],
            result_step: None,
        })
    }
}

/// A workflow declared up front. See the [module docs](self).
#[derive(Debug)]
pub struct Workflow {
    name: String,
    unique_key: Option<String>,
    steps: Vec<Step>,
    result_step: Option<String>,
}

impl Workflow {
    /// An empty workflow named `name`.
    pub fn new(name: &str) -> Self {
        Workflow {
            name: name.to_string(),
            unique_key: None,
            steps: Vec::new(),
            result_step: None,
        }
    }

    /// Makes starting idempotent: while a workflow with this key runs, starting another
    /// returns its id and writes nothing.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Names the step whose output is the workflow's result
    /// ([`Client::workflow_result`](crate::Client::workflow_result)); without it, the
    /// result is the output of the workflow's single sink step, if it has one.
    pub fn result(mut self, step: &str) -> Self {
        self.result_step = Some(step.to_string());
        self
    }

    /// Adds a step.
    pub fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether it has no steps.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Validates the graph and resolves every step into a job, dependencies first.
    fn build(self, client: &Client) -> Result<NewWorkflow> {
        let id = WorkflowId::new();
        let name = self.name.clone();
        let unique_key = self.unique_key.clone();
        let named = self.result_step.clone();
        let (steps, result) = self.resolve(client, Some(id))?;
        // The result step is kept with the workflow: the named one, else the single
        // sink of the declared graph (steps written later, by maps and sub-workflows,
        // nest under it and do not change it).
        let result_step = named.or_else(|| result.and_then(|i| steps[i].job.step.clone()));
        Ok(NewWorkflow {
            id,
            name,
            unique_key,
            steps,
            result_step,
        })
    }

    /// The steps resolved into jobs, dependencies first, and the position of the result
    /// step (the named one, else the single sink, if any).
    fn resolve(
        self,
        client: &Client,
        id: Option<WorkflowId>,
    ) -> Result<(Vec<NewStep>, Option<usize>)> {
        let specs: Vec<StepSpec> = self
            .steps
            .iter()
            .map(|s| StepSpec {
                name: s.name.clone(),
                optional: s.options.optional,
                depends_on: s.depends_on.clone(),
            })
            .collect();
        let plan = graph::validate(&self.name, &specs)?;
        let result = match &self.result_step {
            Some(result) => Some(
                self.steps
                    .iter()
                    .position(|s| &s.name == result)
                    .ok_or_else(|| GraphError::UnknownResult(result.clone()))?,
            ),
            None => {
                let mut sinks = (0..self.steps.len()).filter(|&i| {
                    !self
                        .steps
                        .iter()
                        .any(|s| s.depends_on.iter().any(|(d, _)| *d == self.steps[i].name))
                });
                match (sinks.next(), sinks.next()) {
                    (Some(sink), None) => Some(sink),
                    _ => None,
                }
            }
        };
        let mut position = vec![0usize; self.steps.len()];
        for (pos, &i) in plan.order.iter().enumerate() {
            position[i] = pos;
        }
        let mut steps: Vec<Option<Step>> = self.steps.into_iter().map(Some).collect();
        let mut out = Vec::with_capacity(steps.len());
        for &i in &plan.order {
            let Some(step) = steps[i].take() else {
                return Err(Error::Config(format!(
                    "workflow `{}`: step {i} appears twice in the order",
                    self.name
                )));
            };
            let spec = match (step.map, step.child) {
                (Some(map), _) => {
                    if map.over.is_empty() {
                        return Err(Error::Config(format!(
                            "map step `{}` maps over nothing: name its input with .over(step)",
                            step.name
                        )));
                    }
                    if !map.at.is_empty() && !map.at.starts_with('/') {
                        return Err(Error::Config(format!(
                            "map step `{}`: `{}` is not a JSON pointer: start it with `/` (e.g. `/lines`)",
                            step.name, map.at
                        )));
                    }
                    wait_job(MAP_KIND, &map)?
                }
                (None, Some(child)) => {
                    let child_name = child.name.clone();
                    let (child_steps, child_result) = child.resolve(client, None)?;
                    wait_job(
                        WORKFLOW_KIND,
                        &SubWorkflow {
                            name: child_name,
                            steps: child_steps,
                            result: child_result,
                        },
                    )?
                }
                (None, None) => step.job?,
            };
            let mut options = merge(step.options, spec.options.clone());
            options.workflow_id = id;
            options.unique_key = None;
            options.optional = plan.tolerated[i];
            let mut job = client.resolve_job(spec.options(options))?;
            if let Some(skip) = &step.skip_if {
                check_condition(&step.name, skip, &step.depends_on)?;
            }
            job.skip_if = step.skip_if;
            job.step = Some(step.name);
            out.push(NewStep {
                job,
                depends_on: plan.deps[i]
                    .iter()
                    .map(|(d, policy)| (position[*d], *policy))
                    .collect(),
            });
        }
        Ok((out, result.map(|r| position[r])))
    }
}

/// A step's options over its job's own: what the step sets wins.
fn merge(step: EnqueueOptions, job: EnqueueOptions) -> EnqueueOptions {
    EnqueueOptions {
        queue: step.queue.or(job.queue),
        priority: step.priority.or(job.priority),
        run_at: match step.run_at {
            jobchain_core::job::RunAt::Now => job.run_at,
            other => other,
        },
        max_attempts: step.max_attempts.or(job.max_attempts),
        unique_key: None,
        workflow_id: None,
        optional: step.optional || job.optional,
        debounce: step.debounce.or(job.debounce),
        concurrency_key: step.concurrency_key.or(job.concurrency_key),
    }
}

/// The job of a waiting step: a kind the worker runs itself, and its payload.
pub(crate) fn wait_job<T: serde::Serialize>(kind: &str, payload: &T) -> Result<JobSpec> {
    serde_json::to_value(payload)
        .map(|p| JobSpec::new(kind, p))
        .map_err(|e| Error::Config(format!("the payload of a `{kind}` step: {e}")))
}

/// A condition reads only the step's dependencies, and has a valid shape.
fn check_condition(step: &str, skip: &SkipIf, deps: &[(String, EdgePolicy)]) -> Result<()> {
    skip.when
        .check()
        .map_err(|e| Error::Config(format!("the condition of step `{step}`: {e}")))?;
    if let Some(other) = skip
        .when
        .steps()
        .into_iter()
        .find(|s| !deps.iter().any(|(d, _)| d == s))
    {
        return Err(Error::Config(format!(
            "the condition of step `{step}` reads `{other}`, which is not one of its dependencies: add .after(\"{other}\") or .after_optional(\"{other}\")"
        )));
    }
    Ok(())
}
