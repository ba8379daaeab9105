//! Declared workflows written as data: the document that `jobchain workflow start
//! --file` reads (JSON or TOML) and `POST /api/v1/workflows` takes (JSON).
//!
//! ```toml
//! name = "order"
//! unique_key = "order-42"          # optional
//!
//! [[steps]]
//! name = "charge"
//! kind = "process_order"           # payload: the input unless the step sets one
//!
//! [[steps]]
//! name = "confirm"
//! kind = "send_order_confirmation"
//! after = ["charge"]
//! optional = true                  # its failure does not fail the workflow
//!
//! [[steps]]
//! name = "invoice"
//! kind = "generate_invoice"
//! after = ["charge"]
//! after_optional = ["confirm"]     # runs once confirm is terminal, whatever its outcome
//! payload = { copy = true }
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::args::JobSpec;
use crate::workflow::{Step, Workflow};
use jobchain_core::job::{EnqueueOptions, Priority};

/// A declared workflow as data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowDocument {
    /// The workflow's name.
    pub name: String,
    /// Starting it again with the same key returns the first run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_key: Option<String>,
    /// Its steps.
    pub steps: Vec<StepDocument>,
}

/// One step of a [`WorkflowDocument`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDocument {
    /// Unique within the workflow.
    pub name: String,
    /// The handler's kind.
    pub kind: String,
    /// The payload; the workflow's input when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// Steps that must complete first.
    #[serde(default)]
    pub after: Vec<String>,
    /// Steps that must end first, whatever their outcome.
    #[serde(default)]
    pub after_optional: Vec<String>,
    /// Its failure does not fail the workflow.
    #[serde(default)]
    pub optional: bool,
    /// Queue (default: `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Priority (higher runs first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// Attempt limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
}

impl WorkflowDocument {
    /// Parses a JSON document, naming the field that is wrong.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                format!("not a workflow document: {}", e.inner())
            } else {
                format!("not a workflow document: at `{path}`: {}", e.inner())
            }
        })
    }

    /// The workflow it declares; steps without a payload get `input`. The graph (unknown
    /// steps, cycles) is checked when it starts.
    pub fn into_workflow(self, input: &Value) -> Result<Workflow, String> {
        if self.steps.is_empty() {
            return Err(format!(
                "workflow `{}` has no steps: add steps, each with a name and a kind",
                self.name
            ));
        }
        let mut workflow = Workflow::new(&self.name);
        if let Some(key) = self.unique_key {
            workflow = workflow.unique_key(key);
        }
        for s in self.steps {
            let mut options = EnqueueOptions::new();
            options.queue = s.queue;
            options.priority = s.priority;
            options.max_attempts = s.max_attempts;
            let payload = s.payload.unwrap_or_else(|| input.clone());
            let mut step =
                Step::untyped(&s.name, JobSpec::new(&s.kind, payload)).options(options);
            for dep in &s.after {
                step = step.after(dep);
            }
            for dep in &s.after_optional {
                step = step.after_optional(dep);
            }
            if s.optional {
                step = step.optional();
            }
            workflow = workflow.step(step);
        }
        Ok(workflow)
    }
}
