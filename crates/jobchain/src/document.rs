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
//!
//! [[steps]]
//! name = "shipped"                 # waits for the signal `shipped`, at most a day
//! wait_for_signal = { timeout = "24h" }
//! after = ["charge"]
//!
//! [[steps]]
//! name = "lines"
//! map = { kind = "invoice_line", over = "invoice", max_parallel = 10 }
//! ```
//!
//! Other step forms: `sleep = "30s"`, `sleep_until = "2026-12-24T18:00:00Z"`, and
//! `workflow = { name = "...", steps = [...] }` (a sub-workflow); `result = "step"` names
//! the workflow's result step; `skip_if = { step = "charge", pointer = "/amount", op =
//! "lt", value = 100 }` (with `skip_cascade = true` to skip the required dependents too)
//! makes a step conditional.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::args::JobSpec;
use crate::workflow::{Step, Workflow};
use jobchain_core::job::{EnqueueOptions, Priority};
use jobchain_core::workflow::condition::Predicate;

/// A declared workflow as data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowDocument {
    /// The workflow's name.
    pub name: String,
    /// Starting it again with the same key returns the first run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_key: Option<String>,
    /// The payload of steps that set none (default `{}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// Its steps.
    pub steps: Vec<StepDocument>,
    /// The step whose output is the workflow's result (default: the single sink step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

/// One step of a [`WorkflowDocument`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDocument {
    /// Unique within the workflow.
    pub name: String,
    /// The handler's kind. A step has a kind, or is one of the steps the worker runs
    /// itself: `wait_for_signal`, `sleep`, `sleep_until`, `map`, `workflow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Waits for the workflow's signal named like the step: `{"timeout": "24h"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for_signal: Option<SignalDocument>,
    /// Completes this long after it is reached (`30s`, `2h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep: Option<String>,
    /// Completes at this RFC 3339 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep_until: Option<String>,
    /// Runs a kind once per element of a dependency's array output:
    /// `{"kind": "...", "over": "step", "max_parallel": 10, "tolerate_failures": false}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<MapDocument>,
    /// Runs a declared workflow (a document of its own) inside this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<Box<WorkflowDocument>>,
    /// Skips the step when this holds over its dependencies' outputs:
    /// `{"step": "charge", "pointer": "/amount", "op": "lt", "value": 100}`, or
    /// `{"all": [...]}` / `{"any": [...]}`; ops `eq ne lt le gt ge in exists missing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_if: Option<Predicate>,
    /// With `skip_if`: its required dependents are skipped too.
    #[serde(default)]
    pub skip_cascade: bool,
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

/// A step that waits for a signal, as data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalDocument {
    /// How long it waits once reached (`30s`, `24h`); then it ends dead.
    pub timeout: String,
}

/// A map step as data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapDocument {
    /// The kind run per element (the element is its payload).
    pub kind: String,
    /// The dependency whose output (an array) is mapped over.
    pub over: String,
    /// A JSON pointer to the array within that output (default: the whole output).
    #[serde(default)]
    pub at: String,
    /// At most this many elements at once (default: no limit).
    #[serde(default)]
    pub max_parallel: u32,
    /// A failed element becomes `null` instead of failing the step.
    #[serde(default)]
    pub tolerate_failures: bool,
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

    /// The workflow it declares; steps without a payload get `input`, else the
    /// document's `input`, else `{}`. The graph (unknown steps, cycles) is checked when it
    /// starts.
    pub fn into_workflow(self, input: Option<Value>) -> Result<Workflow, String> {
        let input = input
            .or(self.input)
            .unwrap_or_else(|| Value::Object(Default::default()));
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
        if let Some(result) = self.result {
            workflow = workflow.result(&result);
        }
        for s in self.steps {
            let mut options = EnqueueOptions::new();
            options.queue = s.queue;
            options.priority = s.priority;
            options.max_attempts = s.max_attempts;
            let forms = [
                s.kind.is_some(),
                s.wait_for_signal.is_some(),
                s.sleep.is_some(),
                s.sleep_until.is_some(),
                s.map.is_some(),
                s.workflow.is_some(),
            ];
            if forms.iter().filter(|f| **f).count() != 1 {
                return Err(format!(
                    "step `{}` must have exactly one of kind, wait_for_signal, sleep, sleep_until, map, workflow",
                    s.name
                ));
            }
            let at = |what: &str, e: String| format!("step `{}`: {what}: {e}", s.name);
            let mut step = if let Some(kind) = &s.kind {
                let payload = s.payload.clone().unwrap_or_else(|| input.clone());
                Step::untyped(&s.name, JobSpec::new(kind, payload))
            } else if let Some(wait) = &s.wait_for_signal {
                let timeout = parse_duration(&wait.timeout).map_err(|e| at("timeout", e))?;
                Step::wait_for_signal(&s.name, timeout)
            } else if let Some(delay) = &s.sleep {
                Step::sleep(&s.name, parse_duration(delay).map_err(|e| at("sleep", e))?)
            } else if let Some(until) = &s.sleep_until {
                Step::sleep_until(
                    &s.name,
                    parse_time(until).map_err(|e| at("sleep_until", e))?,
                )
            } else if let Some(map) = &s.map {
                let mut step = Step::map(&s.name, &map.kind)
                    .over(&map.over)
                    .at(&map.at)
                    .max_parallel(map.max_parallel);
                if map.tolerate_failures {
                    step = step.tolerate_failures();
                }
                step
            } else if let Some(child) = s.workflow.clone() {
                Step::workflow(&s.name, child.into_workflow(Some(input.clone()))?)
            } else {
                return Err(format!("step `{}` has no kind", s.name));
            };
            if s.payload.is_some() && s.kind.is_none() {
                return Err(format!(
                    "step `{}`: a payload is for steps with a kind",
                    s.name
                ));
            }
            step = step.options(options);
            match (s.skip_if, s.skip_cascade) {
                (Some(p), false) => step = step.skip_if(p),
                (Some(p), true) => step = step.skip_cascade_if(p),
                (None, true) => {
                    return Err(format!(
                        "step `{}`: skip_cascade needs a skip_if condition",
                        s.name
                    ))
                }
                (None, false) => {}
            }
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

/// A debounce as data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebounceOptions {
    /// What identifies the enqueues to collapse.
    pub key: String,
    /// The quiet time (`500ms`, `10s`, `5m`).
    pub window: String,
}

/// A job's options as data: what an exec handler's follow-ups carry under `"options"`
/// and `POST /api/v1/jobs` takes. Every field may be left out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobOptions {
    /// Queue name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// A number, or `low`, `normal`, `high`, `critical`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Value>,
    /// Run after this long (`500ms`, `10s`, `5m`, `2h`, `7d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    /// Run not before this RFC 3339 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<String>,
    /// Attempt limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_key: Option<String>,
    /// Concurrency key (see [`EnqueueOptions::concurrency_key`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
    /// Debounce: `{"key": "...", "window": "10s"}` (see [`EnqueueOptions::debounce`]);
    /// for enqueues from a client, not follow-ups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debounce: Option<DebounceOptions>,
}

impl JobOptions {
    /// The options they say, or what is wrong with them.
    pub fn into_options(self) -> Result<EnqueueOptions, String> {
        let mut options = EnqueueOptions::new();
        options.queue = self.queue;
        options.priority = match self.priority {
            None => None,
            Some(Value::Number(n)) => Some(Priority(
                n.as_i64()
                    .and_then(|n| i16::try_from(n).ok())
                    .ok_or_else(|| format!("priority {n} is out of range"))?,
            )),
            Some(Value::String(s)) => Some(s.parse::<Priority>()?),
            Some(other) => return Err(format!("priority {other} is neither a name nor a number")),
        };
        if let Some(delay) = self.delay {
            options = options.delay(parse_duration(&delay)?);
        }
        if let Some(at) = self.run_at {
            options = options.run_at(parse_time(&at)?);
        }
        options.max_attempts = self.max_attempts;
        options.unique_key = self.unique_key;
        options.concurrency_key = self.concurrency_key;
        if let Some(d) = self.debounce {
            options = options.debounce(d.key, parse_duration(&d.window)?);
        }
        Ok(options)
    }
}

/// Parses a duration such as `500ms`, `10s`, `5m`, `2h` or `7d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("`{text}` has no unit: write e.g. 500ms, 10s, 5m, 2h or 7d"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: write e.g. 500ms, 10s, 5m, 2h or 7d"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{text}`: use ms, s, m, h or d"
            ))
        }
    };
    if !seconds.is_finite() || seconds > 100.0 * 365.0 * 86_400.0 {
        return Err(format!("`{text}` is too long: at most 100 years"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses an RFC 3339 time (`2026-11-27T10:00:00Z`).
pub fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("`{text}` is not a time ({e}): write e.g. 2026-11-27T10:00:00Z"))
}
