//! Steps made of steps: a map step runs a kind once per element of a dependency's array
//! output; a sub-workflow step runs a declared workflow inside its parent.
//!
//! Both are jobs of kinds the worker runs itself ([`MAP_KIND`], [`WORKFLOW_KIND`]), in two
//! runs. The first writes the new steps and waits for them
//! ([`Outcome::Await`](jobchain_core::store::Outcome::Await)): in one transaction the
//! step is blocked again and its new steps (children of it in the tree) are written.
//! When they have ended, the step runs again and completes with what they produced: a
//! map step with the array of its elements' outputs, in order; a sub-workflow step with
//! its child's result. Failures follow the edges: an element or child step whose failure
//! is not tolerated cancels the step (a retry of it from the dead-letter queue revives
//! the step and what follows it).

use jobchain_core::workflow::{EdgePolicy, NewStep, StepResult};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::args::JobSpec;
use crate::context::JobContext;
use crate::handler::JobError;

/// The kind of a map step (payload [`MapSpec`]).
pub const MAP_KIND: &str = "jobchain.map";

/// The kind of a sub-workflow step (payload [`SubWorkflow`]).
pub const WORKFLOW_KIND: &str = "jobchain.workflow";

/// At most this many elements per map step.
pub const MAX_ELEMENTS: usize = 100_000;

/// The payload of a map step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapSpec {
    /// The kind run once per element, with the element as its payload.
    pub kind: String,
    /// The dependency whose output (an array) is mapped over.
    pub over: String,
    /// A JSON pointer to the array within that output (`""`: the whole output).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub at: String,
    /// At most this many elements pending or running at once (0: no limit).
    #[serde(default)]
    pub max_parallel: u32,
    /// A failed element becomes `null` in the output instead of failing the step.
    #[serde(default)]
    pub tolerate_failures: bool,
}

/// The payload of a sub-workflow step: the child's steps, resolved, and its result step
/// by index (`None`: no single result).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubWorkflow {
    /// The child's name.
    pub name: String,
    /// Its steps, dependencies by index, dependencies first.
    pub steps: Vec<NewStep>,
    /// The step whose output is the child's result.
    pub result: Option<usize>,
}

/// The name of element `i` of map step `step`.
fn element_name(step: &str, i: usize) -> String {
    format!("{step}[{i}]")
}

/// Refuses a step of these kinds outside a workflow (enqueued as a plain job): the steps
/// it would write need one.
fn in_workflow(ctx: &JobContext) -> Result<(), JobError> {
    match ctx.workflow_id() {
        Some(_) => Ok(()),
        None => Err(JobError::permanent(format!(
            "job {} of kind `{}` belongs to no workflow: map steps and sub-workflows are declared workflow steps",
            ctx.job_id(),
            ctx.kind()
        ))),
    }
}

/// The handler of [`MAP_KIND`].
pub(crate) async fn map(ctx: JobContext, spec: MapSpec) -> Result<Value, JobError> {
    in_workflow(&ctx)?;
    let me = ctx.step().unwrap_or(MAP_KIND).to_string();
    let deps = ctx.dependencies().await?;
    let prefix = format!("{me}[");
    let mut elements: Vec<(usize, &StepResult)> = deps
        .iter()
        .filter_map(|d| {
            let index = d.name.strip_prefix(&prefix)?.strip_suffix(']')?;
            Some((index.parse().ok()?, d))
        })
        .collect();
    if !elements.is_empty() {
        // Second run: the elements have ended.
        elements.sort_by_key(|(i, _)| *i);
        let outputs = elements
            .into_iter()
            .map(|(_, d)| match d.state {
                jobchain_core::job::JobState::Completed => d.output.clone().unwrap_or(Value::Null),
                _ => Value::Null,
            })
            .collect();
        return Ok(Value::Array(outputs));
    }
    let source = deps.iter().find(|d| d.name == spec.over).ok_or_else(|| {
        JobError::permanent(format!(
            "map step `{me}` maps over `{}`, which is not one of its dependencies: declare it with .over(\"{}\")",
            spec.over, spec.over
        ))
    })?;
    let input = source.output.as_ref().and_then(|o| o.pointer(&spec.at));
    let items = match input {
        Some(Value::Array(items)) => items.clone(),
        other => {
            let what = if spec.at.is_empty() {
                format!("the output of `{}`", spec.over)
            } else {
                format!("`{}` of the output of `{}`", spec.at, spec.over)
            };
            return Err(JobError::permanent(format!(
                "map step `{me}` maps over {what}, which is not an array but {}",
                describe(other)
            )));
        }
    };
    if items.is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    if items.len() > MAX_ELEMENTS {
        return Err(JobError::permanent(format!(
            "map step `{me}` got {} elements; at most {MAX_ELEMENTS} are mapped: split the input",
            items.len()
        )));
    }
    let lanes = match spec.max_parallel {
        0 => items.len(),
        n => n as usize,
    };
    let policy = if spec.tolerate_failures {
        EdgePolicy::Optional
    } else {
        EdgePolicy::Required
    };
    let mut steps = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let mut job = ctx
            .client()
            .resolve_job(JobSpec::new(spec.kind.clone(), item))
            .map_err(|e| JobError::permanent(e.to_string()))?;
        job.step = Some(element_name(&me, i));
        job.optional = spec.tolerate_failures;
        // Element i starts when element i - lanes has ended: at most `lanes` at once.
        let depends_on = if i >= lanes {
            vec![(i - lanes, EdgePolicy::Optional)]
        } else {
            Vec::new()
        };
        steps.push(NewStep { job, depends_on });
    }
    let join = (0..steps.len()).map(|i| (i, policy)).collect();
    ctx.await_steps(steps, join);
    Ok(Value::Null)
}

/// The handler of [`WORKFLOW_KIND`].
pub(crate) async fn workflow(ctx: JobContext, child: SubWorkflow) -> Result<Value, JobError> {
    in_workflow(&ctx)?;
    let me = ctx.job_id();
    let deps = ctx.dependencies().await?;
    let mut children = Vec::new();
    for dep in &deps {
        let job = ctx.client().job(dep.job).await?;
        if job.parent_id == Some(me) {
            children.push(dep);
        }
    }
    if !children.is_empty() {
        // Second run: the child has ended without a failure it does not tolerate.
        let Some(result) = child.result.and_then(|i| child.steps.get(i)) else {
            return Ok(Value::Null);
        };
        let name = result.job.step.as_deref().unwrap_or(&result.job.kind);
        return Ok(children
            .iter()
            .find(|d| d.name == name)
            .and_then(|d| d.output.clone())
            .unwrap_or(Value::Null));
    }
    if child.steps.is_empty() {
        return Err(JobError::permanent(format!(
            "sub-workflow `{}` has no steps",
            child.name
        )));
    }
    let join = child
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let policy = if s.job.optional {
                EdgePolicy::Optional
            } else {
                EdgePolicy::Required
            };
            (i, policy)
        })
        .collect();
    ctx.await_steps(child.steps, join);
    Ok(Value::Null)
}

fn describe(value: Option<&Value>) -> &'static str {
    match value {
        None | Some(Value::Null) => "nothing",
        Some(Value::Bool(_)) => "a boolean",
        Some(Value::Number(_)) => "a number",
        Some(Value::String(_)) => "a string",
        Some(Value::Object(_)) => "an object",
        Some(Value::Array(_)) => "an array",
    }
}
