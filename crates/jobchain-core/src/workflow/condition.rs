//! Conditions on steps: a predicate over the outputs of a step's dependencies, written
//! as data (a JSON pointer and a comparison; no embedded language), evaluated when the
//! step is ready to run. When it holds, the step is skipped: `skipped` in every view,
//! never a failure. With [`SkipIf::cascade`], its required dependents are skipped too.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::StepResult;

/// When a step is skipped, and what that does to its dependents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkipIf {
    /// The predicate.
    pub when: Predicate,
    /// Skip the step's required dependents too (transitively); else they run, seeing it
    /// skipped.
    #[serde(default)]
    pub cascade: bool,
}

/// A predicate over the outputs of a step's dependencies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Predicate {
    /// Every one holds.
    All {
        /// The predicates.
        all: Vec<Predicate>,
    },
    /// At least one holds.
    Any {
        /// The predicates.
        any: Vec<Predicate>,
    },
    /// A comparison of one value of one dependency's output.
    Compare(Comparison),
}

/// `output of step` at `pointer` `op` `value`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comparison {
    /// The dependency whose output is read.
    pub step: String,
    /// A JSON pointer into its output (RFC 6901; `""` or absent: the whole output).
    #[serde(default)]
    pub pointer: String,
    /// The comparison.
    pub op: Op,
    /// What it is compared with (unused by `exists` and `missing`).
    #[serde(default)]
    pub value: Value,
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Equal (as JSON).
    Eq,
    /// Not equal (as JSON; a missing value is not equal to anything).
    Ne,
    /// Less than (numbers with numbers, strings with strings).
    Lt,
    /// Less than or equal.
    Le,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Ge,
    /// One of the elements of `value` (an array).
    In,
    /// The value is there (not null).
    Exists,
    /// The value is not there, or null (also when the dependency failed).
    Missing,
}

impl Predicate {
    /// `output of step` at `pointer` `op` `value` (pointer `""`: the whole output).
    pub fn compare(step: &str, pointer: &str, op: Op, value: impl Into<Value>) -> Self {
        Predicate::Compare(Comparison {
            step: step.to_string(),
            pointer: pointer.to_string(),
            op,
            value: value.into(),
        })
    }

    /// Holds when every one of `predicates` does.
    pub fn all(predicates: Vec<Predicate>) -> Self {
        Predicate::All { all: predicates }
    }

    /// Holds when one of `predicates` does.
    pub fn any(predicates: Vec<Predicate>) -> Self {
        Predicate::Any { any: predicates }
    }

    /// The dependency steps it reads.
    pub fn steps(&self) -> Vec<&str> {
        match self {
            Predicate::All { all: ps } | Predicate::Any { any: ps } => {
                ps.iter().flat_map(Predicate::steps).collect()
            }
            Predicate::Compare(c) => vec![c.step.as_str()],
        }
    }

    /// Checks the predicate's shape: pointers are JSON pointers, `in` takes an array,
    /// order comparisons a number or a string.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Predicate::All { all: ps } | Predicate::Any { any: ps } => {
                if ps.is_empty() {
                    return Err("an `all` or `any` needs at least one predicate".into());
                }
                ps.iter().try_for_each(Predicate::check)
            }
            Predicate::Compare(c) => {
                if !c.pointer.is_empty() && !c.pointer.starts_with('/') {
                    return Err(format!(
                        "pointer `{}` of step `{}` is not a JSON pointer: start it with `/` (e.g. `/amount`)",
                        c.pointer, c.step
                    ));
                }
                match c.op {
                    Op::In if !c.value.is_array() => Err(format!(
                        "`in` on step `{}` needs an array of values",
                        c.step
                    )),
                    Op::Lt | Op::Le | Op::Gt | Op::Ge
                        if !(c.value.is_number() || c.value.is_string()) =>
                    {
                        Err(format!(
                            "`{:?}` on step `{}` compares with a number or a string, not {}",
                            c.op, c.step, c.value
                        ))
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    /// Whether it holds over these dependencies' results.
    pub fn holds(&self, deps: &[StepResult]) -> bool {
        match self {
            Predicate::All { all } => all.iter().all(|p| p.holds(deps)),
            Predicate::Any { any } => any.iter().any(|p| p.holds(deps)),
            Predicate::Compare(c) => {
                let found = deps
                    .iter()
                    .rev()
                    .find(|d| d.name == c.step)
                    .and_then(|d| d.output.as_ref())
                    .and_then(|o| o.pointer(&c.pointer))
                    .filter(|v| !v.is_null());
                c.op.applies(found, &c.value)
            }
        }
    }

    /// How it reads, for the reason a skipped step records.
    pub fn describe(&self) -> String {
        match self {
            Predicate::All { all } => {
                let parts: Vec<String> = all.iter().map(Predicate::describe).collect();
                parts.join(" and ")
            }
            Predicate::Any { any } => {
                let parts: Vec<String> = any.iter().map(Predicate::describe).collect();
                format!("({})", parts.join(" or "))
            }
            Predicate::Compare(c) => {
                let at = if c.pointer.is_empty() {
                    format!("the output of `{}`", c.step)
                } else {
                    format!("`{}` of `{}`", c.pointer, c.step)
                };
                match c.op {
                    Op::Exists => format!("{at} exists"),
                    Op::Missing => format!("{at} is missing"),
                    op => format!("{at} {} {}", op.symbol(), c.value),
                }
            }
        }
    }
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "≠",
            Op::Lt => "<",
            Op::Le => "≤",
            Op::Gt => ">",
            Op::Ge => "≥",
            Op::In => "in",
            Op::Exists => "exists",
            Op::Missing => "missing",
        }
    }

    fn applies(self, found: Option<&Value>, value: &Value) -> bool {
        use std::cmp::Ordering;
        let order = || -> Option<Ordering> {
            match (found?, value) {
                (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
                (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
                _ => None,
            }
        };
        match self {
            Op::Exists => found.is_some(),
            Op::Missing => found.is_none(),
            Op::Eq => found.is_some_and(|f| same(f, value)),
            Op::Ne => found.is_some_and(|f| !same(f, value)),
            Op::In => found.is_some_and(|f| {
                value
                    .as_array()
                    .is_some_and(|vs| vs.iter().any(|v| same(f, v)))
            }),
            Op::Lt => order() == Some(Ordering::Less),
            Op::Le => matches!(order(), Some(Ordering::Less | Ordering::Equal)),
            Op::Gt => order() == Some(Ordering::Greater),
            Op::Ge => matches!(order(), Some(Ordering::Greater | Ordering::Equal)),
        }
    }
}

/// JSON equality, with numbers compared by value (`1` equals `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobId, JobState};
    use crate::workflow::EdgePolicy;
    use serde_json::json;

    fn dep(name: &str, output: Option<Value>) -> StepResult {
        StepResult {
            job: JobId(1),
            name: name.into(),
            state: if output.is_some() {
                JobState::Completed
            } else {
                JobState::Dead
            },
            output,
            last_error: None,
            policy: EdgePolicy::Optional,
        }
    }

    fn pred(text: Value) -> Predicate {
        serde_json::from_value(text).expect("a predicate")
    }

    #[test]
    fn comparisons_read_the_dependency_output_at_the_pointer() {
        let deps = [dep(
            "charge",
            Some(json!({"amount": 40, "currency": "EUR"})),
        )];
        let holds = |p: Value| pred(p).holds(&deps);
        assert!(holds(
            json!({"step": "charge", "pointer": "/amount", "op": "lt", "value": 100})
        ));
        assert!(!holds(
            json!({"step": "charge", "pointer": "/amount", "op": "gt", "value": 100})
        ));
        assert!(holds(
            json!({"step": "charge", "pointer": "/amount", "op": "eq", "value": 40.0})
        ));
        assert!(holds(
            json!({"step": "charge", "pointer": "/currency", "op": "in", "value": ["EUR", "USD"]})
        ));
        assert!(holds(
            json!({"step": "charge", "pointer": "/refund", "op": "missing"})
        ));
        assert!(!holds(
            json!({"step": "charge", "pointer": "/refund", "op": "ne", "value": 1})
        ));
        assert!(holds(json!({"all": [
            {"step": "charge", "pointer": "/amount", "op": "ge", "value": 40},
            {"any": [{"step": "charge", "pointer": "/currency", "op": "eq", "value": "EUR"},
                     {"step": "nope", "op": "exists"}]}
        ]})));
        // Strings compare with strings only.
        assert!(!holds(
            json!({"step": "charge", "pointer": "/amount", "op": "lt", "value": "z"})
        ));
    }

    #[test]
    fn a_failed_dependency_has_no_output_to_compare() {
        let deps = [dep("charge", None)];
        assert!(pred(json!({"step": "charge", "op": "missing"})).holds(&deps));
        assert!(!pred(json!({"step": "charge", "op": "eq", "value": null})).holds(&deps));
    }

    #[test]
    fn bad_shapes_are_refused_with_the_fix() {
        let bad = pred(json!({"step": "a", "pointer": "amount", "op": "eq", "value": 1}));
        assert!(bad.check().unwrap_err().contains("start it with `/`"));
        let bad = pred(json!({"step": "a", "op": "in", "value": 1}));
        assert!(bad.check().unwrap_err().contains("array"));
        let bad = pred(json!({"all": []}));
        assert!(bad.check().unwrap_err().contains("at least one"));
        assert!(serde_json::from_value::<Predicate>(json!({"step": "a", "op": "like"})).is_err());
    }
}
