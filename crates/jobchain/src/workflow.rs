//! Declared workflows: the whole graph up front.
//!
//! ```
//! use jobchain::{Step, Workflow};
//! let order = serde_json::json!({ "order_id": 7 });
//! let workflow = Workflow::new("order")
//!     .step(Step::new("charge", "process_order", &order))
//!     .step(Step::new("confirm", "send_order_confirmation", &order).after("charge"))
//!     .step(Step::new("invoice", "generate_invoice", &order).after_optional("confirm"))
//!     .step(Step::new("inventory", "sync_inventory", &order).after_optional("confirm"));
//! assert_eq!(workflow.len(), 4);
//! ```
//!
//! Starting it ([`Client::start`](crate::Client::start)) validates the graph (unknown,
//! duplicate and cyclic steps are rejected, naming them) and writes every step in one
//! transaction. See `docs/workflows.md` for when to declare and when to chain.

use jobchain_core::job::EnqueueOptions;
use jobchain_core::workflow::graph::{self, StepSpec};
use jobchain_core::workflow::{EdgePolicy, NewStep, NewWorkflow};
use jobchain_core::WorkflowId;
use serde::Serialize;
use serde_json::Value;

use crate::client::{to_json, Client};
use crate::error::{Error, Result};

/// One declared step.
#[derive(Debug)]
pub struct Step {
    name: String,
    kind: String,
    payload: Result<Value>,
    options: EnqueueOptions,
    depends_on: Vec<(String, EdgePolicy)>,
}

impl Step {
    /// A step named `name` that runs a job of `kind` with `payload`.
    pub fn new<P: Serialize>(name: &str, kind: &str, payload: &P) -> Self {
        Step {
            name: name.to_string(),
            kind: kind.to_string(),
            payload: to_json(kind, payload),
            options: EnqueueOptions::default(),
            depends_on: Vec::new(),
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

/// A workflow declared up front. See the [module docs](self).
#[derive(Debug)]
pub struct Workflow {
    name: String,
    unique_key: Option<String>,
    steps: Vec<Step>,
}

impl Workflow {
    /// An empty workflow named `name`.
    pub fn new(name: &str) -> Self {
        Workflow {
            name: name.to_string(),
            unique_key: None,
            steps: Vec::new(),
        }
    }

    /// Makes starting idempotent: while a workflow with this key runs, starting another
    /// returns its id and writes nothing.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
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
    pub(crate) fn build(self, client: &Client) -> Result<NewWorkflow> {
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
        let id = WorkflowId::new();
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
            let payload = step.payload?;
            let mut options = step.options;
            options.workflow_id = Some(id);
            options.unique_key = None;
            options.optional = plan.tolerated[i];
            let mut job = client.resolve_job(&step.kind, payload, options);
            job.step = Some(step.name);
            out.push(NewStep {
                job,
                depends_on: plan.deps[i]
                    .iter()
                    .map(|(d, policy)| (position[*d], *policy))
                    .collect(),
            });
        }
        Ok(NewWorkflow {
            id,
            name: self.name,
            unique_key: self.unique_key,
            steps: out,
        })
    }
}
