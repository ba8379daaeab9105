//! A workflow's tree: each job under the job that staged it (dynamic chaining) or, for
//! declared steps, under its first dependency; rendered as text like
//!
//! ```text
//! process_order                  completed  1 attempt   120 ms
//! └─ send_order_confirmation     completed  2 attempts   45 ms
//!    ├─ generate_invoice         running
//!    └─ sync_inventory           pending
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::job::{Job, JobId};

use super::Dependency;

/// One node of a workflow tree.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TreeNode {
    /// The job.
    pub job: Job,
    /// Names of all declared dependencies when there are several (a join).
    pub after: Vec<String>,
    /// Jobs below this one.
    pub children: Vec<TreeNode>,
}

/// Builds the forest of a workflow's jobs. Jobs are placed under their dynamic parent,
/// else under their first declared dependency, else at the top; order is by id.
pub fn build(jobs: &[Job], deps: &[Dependency]) -> Vec<TreeNode> {
    let mut sorted: Vec<&Job> = jobs.iter().collect();
    sorted.sort_by_key(|j| j.id);
    let names: HashMap<JobId, &str> = sorted.iter().map(|j| (j.id, j.name())).collect();
    let mut deps_of: HashMap<JobId, Vec<JobId>> = HashMap::new();
    for d in deps {
        deps_of.entry(d.job).or_default().push(d.depends_on);
    }
    for list in deps_of.values_mut() {
        list.sort();
    }
    let mut children: HashMap<Option<JobId>, Vec<&Job>> = HashMap::new();
    for job in &sorted {
        let anchor = job
            .parent_id
            .filter(|p| names.contains_key(p))
            .or_else(|| deps_of.get(&job.id).and_then(|d| d.first().copied()));
        children.entry(anchor).or_default().push(job);
    }
    fn grow(
        parent: Option<JobId>,
        children: &HashMap<Option<JobId>, Vec<&Job>>,
        deps_of: &HashMap<JobId, Vec<JobId>>,
        names: &HashMap<JobId, &str>,
    ) -> Vec<TreeNode> {
        children
            .get(&parent)
            .map(|list| {
                list.iter()
                    .map(|job| TreeNode {
                        job: (*job).clone(),
                        after: match deps_of.get(&job.id) {
                            Some(d) if d.len() > 1 => d
                                .iter()
                                .filter_map(|id| names.get(id).map(|n| n.to_string()))
                                .collect(),
                            _ => Vec::new(),
                        },
                        children: grow(Some(job.id), children, deps_of, names),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
    grow(None, &children, &deps_of, &names)
}

/// Renders a forest as aligned text, one job per line.
pub fn render(forest: &[TreeNode]) -> String {
    let mut rows = Vec::new();
    for node in forest {
        collect_rows(node, "", "", &mut rows);
    }
    let width = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0)
        + 2;
    let mut out = String::new();
    for (label, detail) in rows {
        let pad = width - label.chars().count();
        let _ = writeln!(out, "{label}{:pad$}{detail}", "", pad = pad);
    }
    out
}

fn collect_rows(
    node: &TreeNode,
    prefix: &str,
    child_prefix: &str,
    rows: &mut Vec<(String, String)>,
) {
    let job = &node.job;
    let mut label = format!("{prefix}{}", job.name());
    if !node.after.is_empty() {
        let _ = write!(label, " (after {})", node.after.join(", "));
    }
    rows.push((label, describe(job)));
    let count = node.children.len();
    for (i, child) in node.children.iter().enumerate() {
        let last = i + 1 == count;
        let (branch, next) = if last {
            ("└─ ", "   ")
        } else {
            ("├─ ", "│  ")
        };
        collect_rows(
            child,
            &format!("{child_prefix}{branch}"),
            &format!("{child_prefix}{next}"),
            rows,
        );
    }
}

/// `state  N attempts  D ms`, plus the cancel reason or last error when there is one.
fn describe(job: &Job) -> String {
    let mut s = format!("{:<10}", job.state.as_str());
    if job.attempts > 0 {
        let noun = if job.attempts == 1 {
            "attempt "
        } else {
            "attempts"
        };
        let _ = write!(s, " {:>2} {noun}", job.attempts);
        if let Some(d) = job.duration() {
            let _ = write!(s, " {:>6} ms", d.num_milliseconds());
        }
    }
    if let Some(reason) = &job.cancel_reason {
        let _ = write!(s, "  ({reason})");
    } else if job.state.is_failure() {
        if let Some(e) = job.errors.last() {
            let _ = write!(s, "  (last error: {})", e.message);
        }
    }
    s.trim_end().to_string()
}
