//! Declared workflow documents for `jobchain workflow start --file`: JSON or TOML.
//!
//! ```toml
//! name = "order"
//! unique_key = "order-42"          # optional
//!
//! [[steps]]
//! name = "charge"
//! kind = "process_order"           # payload: the --input JSON unless the step sets one
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

use std::path::Path;

use jobchain::{EnqueueOptions, JobSpec, Priority, Step, Workflow};
use serde::Deserialize;
use serde_json::Value;

use crate::CliError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    name: String,
    unique_key: Option<String>,
    steps: Vec<StepDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepDoc {
    name: String,
    kind: String,
    payload: Option<Value>,
    #[serde(default)]
    after: Vec<String>,
    #[serde(default)]
    after_optional: Vec<String>,
    #[serde(default)]
    optional: bool,
    queue: Option<String>,
    priority: Option<Priority>,
    max_attempts: Option<u32>,
}

/// Reads a workflow document (`.json` or `.toml`); steps without a payload get `input`.
pub fn load(path: &Path, input: &Value) -> Result<Workflow, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::usage(format!(
            "cannot read the workflow file {}: {e}",
            path.display()
        ))
    })?;
    let toml = path.extension().is_some_and(|e| e == "toml");
    parse(&text, toml, input).map_err(|e| CliError::usage(format!("{}: {e}", path.display())))
}

/// Parses a workflow document's text.
pub fn parse(text: &str, toml: bool, input: &Value) -> Result<Workflow, String> {
    let doc: Document = if toml {
        toml::from_str(text).map_err(|e| e.to_string())?
    } else {
        serde_json::from_str(text).map_err(|e| format!("not a workflow document: {e}"))?
    };
    if doc.steps.is_empty() {
        return Err(format!(
            "workflow `{}` has no steps: add [[steps]] with a name and a kind",
            doc.name
        ));
    }
    let mut workflow = Workflow::new(&doc.name);
    if let Some(key) = doc.unique_key {
        workflow = workflow.unique_key(key);
    }
    for s in doc.steps {
        let mut options = EnqueueOptions::new();
        options.queue = s.queue;
        options.priority = s.priority;
        options.max_attempts = s.max_attempts;
        let payload = s.payload.unwrap_or_else(|| input.clone());
        let mut step = Step::untyped(&s.name, JobSpec::new(&s.kind, payload)).options(options);
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any text, as TOML or JSON, parses into a workflow or is refused with a message.
        #[test]
        fn any_document_parses_or_says_why(text in "\\PC{0,300}", toml in any::<bool>()) {
            if let Err(e) = parse(&text, toml, &serde_json::json!({})) {
                prop_assert!(!e.is_empty());
            }
        }

        /// Documents of random steps and edges (unknown names, cycles, self-edges) build a
        /// workflow or are refused; the graph check runs at start, never panics here.
        #[test]
        fn random_step_graphs_parse(edges in proptest::collection::vec((0usize..6, 0usize..8, any::<bool>()), 0..20)) {
            let mut steps: Vec<serde_json::Value> = (0..6)
                .map(|i| serde_json::json!({"name": format!("s{i}"), "kind": "k", "after": [], "after_optional": []}))
                .collect();
            for (from, to, optional) in edges {
                let field = if optional { "after_optional" } else { "after" };
                steps[from][field].as_array_mut().expect("array").push(format!("s{to}").into());
            }
            let doc = serde_json::json!({"name": "random", "steps": steps}).to_string();
            if let Err(e) = parse(&doc, false, &serde_json::json!({})) {
                prop_assert!(!e.is_empty());
            }
        }
    }

    #[test]
    fn documents_parse_in_both_formats_and_bad_ones_say_why() {
        let input = serde_json::json!({"order_id": 1});
        let toml_doc = "name = \"order\"\n[[steps]]\nname = \"charge\"\nkind = \"pay\"\n[[steps]]\nname = \"mail\"\nkind = \"mail\"\nafter = [\"charge\"]\noptional = true\n";
        assert_eq!(parse(toml_doc, true, &input).unwrap().len(), 2);
        let json_doc = r#"{"name": "order", "steps": [{"name": "a", "kind": "k"}, {"name": "b", "kind": "k", "after_optional": ["a"], "payload": 3}]}"#;
        assert_eq!(parse(json_doc, false, &input).unwrap().len(), 2);
        for (bad, toml, says) in [
            ("{\"name\": \"x\", \"steps\": []}", false, "no steps"),
            ("{\"name\": \"x\", \"stepz\": []}", false, "unknown field"),
            ("name = ", true, "expected"),
        ] {
            let err = parse(bad, toml, &input).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
