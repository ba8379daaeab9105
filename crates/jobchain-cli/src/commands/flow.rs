//! Declared workflow documents for `jobchain workflow start --file`: JSON or TOML, in the
//! format of [`jobchain::document`] (an example is there and in docs/cli.md).

use std::path::Path;

use jobchain::{Workflow, WorkflowDocument};
use serde_json::Value;

use crate::CliError;

/// Reads a workflow document (`.json` or `.toml`); steps without a payload get `input`,
/// else the document's own `input`.
pub fn load(path: &Path, input: Option<Value>) -> Result<Workflow, CliError> {
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
pub fn parse(text: &str, toml: bool, input: Option<Value>) -> Result<Workflow, String> {
    let doc = if toml {
        toml::from_str::<WorkflowDocument>(text).map_err(|e| e.to_string())?
    } else {
        WorkflowDocument::from_json(text)?
    };
    doc.into_workflow(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any text, as TOML or JSON, parses into a workflow or is refused with a message.
        #[test]
        fn any_document_parses_or_says_why(text in "\\PC{0,300}", toml in any::<bool>()) {
            if let Err(e) = parse(&text, toml, None) {
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
            if let Err(e) = parse(&doc, false, None) {
                prop_assert!(!e.is_empty());
            }
        }
    }

    #[test]
    fn documents_parse_in_both_formats_and_bad_ones_say_why() {
        let input = serde_json::json!({"order_id": 1});
        let toml_doc = "name = \"order\"\n[[steps]]\nname = \"charge\"\nkind = \"pay\"\n[[steps]]\nname = \"mail\"\nkind = \"mail\"\nafter = [\"charge\"]\noptional = true\n";
        assert_eq!(parse(toml_doc, true, Some(input.clone())).unwrap().len(), 2);
        let json_doc = r#"{"name": "order", "steps": [{"name": "a", "kind": "k"}, {"name": "b", "kind": "k", "after_optional": ["a"], "payload": 3}]}"#;
        assert_eq!(
            parse(json_doc, false, Some(input.clone())).unwrap().len(),
            2
        );
        for (bad, toml, says) in [
            ("{\"name\": \"x\", \"steps\": []}", false, "no steps"),
            ("{\"name\": \"x\", \"stepz\": []}", false, "unknown field"),
            ("name = ", true, "expected"),
        ] {
            let err = parse(bad, toml, Some(input.clone())).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
