//! Pure dependency logic of declared workflows: validation, the cycle check, which
//! failures a workflow tolerates, and what a settled job does to its dependents.
//!
//! Stores apply [`effect`] edge by edge inside the transaction that settles a job; the
//! [`Graph`] type runs the same rules in memory, for property tests and for previews.

use std::collections::{HashMap, VecDeque};

use crate::job::JobState;

use super::EdgePolicy;

/// Why a declared workflow was rejected. Nothing is written for a rejected workflow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// The workflow has no steps.
    #[error("workflow `{0}` has no steps: add at least one step before starting it")]
    Empty(String),
    /// Two steps share a name.
    #[error("step `{0}` is declared twice: step names must be unique within a workflow")]
    DuplicateStep(String),
    /// A step depends on a name that is not a step.
    #[error("step `{step}` depends on `{missing}`, which is not a step of this workflow")]
    UnknownDependency {
        /// The dependent step.
        step: String,
        /// The missing name.
        missing: String,
    },
    /// The dependencies form a cycle.
    #[error("the dependencies form a cycle through steps {}: a workflow must be acyclic", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// The result step is not a step.
    #[error("the result step `{0}` is not a step of this workflow: name one of its steps")]
    UnknownResult(String),
}

/// One step as declared: its name, whether it is optional, and its dependencies by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepSpec {
    /// Unique step name.
    pub name: String,
    /// The step's own failure is tolerated.
    pub optional: bool,
    /// Dependencies by step name, each with its policy.
    pub depends_on: Vec<(String, EdgePolicy)>,
}

/// A validated graph: steps in topological order with index-based edges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidGraph {
    /// Indexes into the declared steps, dependencies before dependents.
    pub order: Vec<usize>,
    /// For each declared step, its dependencies as declared-step indexes.
    pub deps: Vec<Vec<(usize, EdgePolicy)>>,
    /// For each declared step, whether its failure is tolerated by the workflow.
    pub tolerated: Vec<bool>,
}

/// Validates declared steps: non-empty, unique names, known dependencies, no cycle.
pub fn validate(workflow: &str, steps: &[StepSpec]) -> Result<ValidGraph, GraphError> {
    if steps.is_empty() {
        return Err(GraphError::Empty(workflow.to_string()));
    }
    let mut index = HashMap::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        if index.insert(step.name.as_str(), i).is_some() {
            return Err(GraphError::DuplicateStep(step.name.clone()));
        }
    }
    let mut deps = Vec::with_capacity(steps.len());
    for step in steps {
        let mut resolved = Vec::with_capacity(step.depends_on.len());
        for (name, policy) in &step.depends_on {
            let Some(&i) = index.get(name.as_str()) else {
                return Err(GraphError::UnknownDependency {
                    step: step.name.clone(),
                    missing: name.clone(),
                });
            };
            if !resolved.iter().any(|(j, _)| *j == i) {
                resolved.push((i, *policy));
            }
        }
        deps.push(resolved);
    }
    let order = topological_order(&deps).map_err(|cycle| {
        GraphError::Cycle(cycle.into_iter().map(|i| steps[i].name.clone()).collect())
    })?;
    let mut out_edges: Vec<Vec<EdgePolicy>> = vec![Vec::new(); steps.len()];
    for edges in &deps {
        for (dependency, policy) in edges {
            out_edges[*dependency].push(*policy);
        }
    }
    let tolerated = steps
        .iter()
        .zip(&out_edges)
        .map(|(step, out)| tolerated(step.optional, out))
        .collect();
    Ok(ValidGraph {
        order,
        deps,
        tolerated,
    })
}

/// Kahn's algorithm; on a cycle returns the steps of one cycle, in order.
fn topological_order(deps: &[Vec<(usize, EdgePolicy)>]) -> Result<Vec<usize>, Vec<usize>> {
    let n = deps.len();
    let mut indegree: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents = vec![Vec::new(); n];
    for (i, edges) in deps.iter().enumerate() {
        for (d, _) in edges {
            dependents[*d].push(i);
        }
    }
    let mut ready: VecDeque<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_front() {
        order.push(i);
        for &j in &dependents[i] {
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.push_back(j);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Walk backwards along unfinished dependencies until a step repeats: that is a cycle.
    let start = (0..n).find(|&i| indegree[i] > 0).unwrap_or(0);
    let mut path = vec![start];
    let mut seen = HashMap::from([(start, 0usize)]);
    let mut current = start;
    loop {
        let next = deps[current]
            .iter()
            .map(|(d, _)| *d)
            .find(|&d| indegree[d] > 0)
            .unwrap_or(start);
        if let Some(&pos) = seen.get(&next) {
            let mut cycle: Vec<usize> = path[pos..].to_vec();
            cycle.reverse();
            cycle.push(cycle[0]);
            return Err(cycle);
        }
        seen.insert(next, path.len());
        path.push(next);
        current = next;
    }
}

/// Whether a dead or cancelled job is a tolerated failure of its workflow: its step is
/// optional, or it has dependents and every edge out of it is optional.
pub fn tolerated(step_optional: bool, out_edges: &[EdgePolicy]) -> bool {
    step_optional || (!out_edges.is_empty() && out_edges.iter().all(|p| *p == EdgePolicy::Optional))
}

/// What a dependency's new state means for one dependent edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// The edge is satisfied: one fewer dependency to wait for.
    Satisfied,
    /// A required dependency failed: the dependent is cancelled (and cascades).
    Cancel,
    /// The dependency has not settled.
    Wait,
}

/// The effect of a dependency in `state` on an edge with `policy`.
pub fn effect(policy: EdgePolicy, state: JobState) -> Effect {
    match (state, policy) {
        // A skipped dependency counts as a completed one: with a cascade, its required
        // dependents were skipped when it was, so only optional edges are left here.
        (JobState::Completed | JobState::Skipped, _) => Effect::Satisfied,
        (JobState::Dead | JobState::Cancelled, EdgePolicy::Optional) => Effect::Satisfied,
        (JobState::Dead | JobState::Cancelled, EdgePolicy::Required) => Effect::Cancel,
        _ => Effect::Wait,
    }
}

/// How many of a job's dependency edges, given as `(policy, dependency's state)`, are
/// not yet satisfied: the count a revived job waits for.
pub fn unsatisfied(edges: impl IntoIterator<Item = (EdgePolicy, JobState)>) -> usize {
    edges
        .into_iter()
        .filter(|(policy, state)| effect(*policy, *state) != Effect::Satisfied)
        .count()
}

/// An in-memory workflow that applies the same rules as the stores: a reference model
/// for property tests and a way to preview what a failure would do.
#[derive(Clone, Debug)]
pub struct Graph {
    deps: Vec<Vec<(usize, EdgePolicy)>>,
    dependents: Vec<Vec<(usize, EdgePolicy)>>,
    states: Vec<JobState>,
    waiting: Vec<usize>,
    cancelled_by: Vec<Option<usize>>,
    /// Skipped steps whose skip cascades to their required dependents.
    cascading: Vec<bool>,
}

impl Graph {
    /// A graph from a validated plan: roots pending, the rest blocked.
    pub fn new(plan: &ValidGraph) -> Self {
        let n = plan.deps.len();
        let mut dependents = vec![Vec::new(); n];
        for (i, edges) in plan.deps.iter().enumerate() {
            for (d, policy) in edges {
                dependents[*d].push((i, *policy));
            }
        }
        Graph {
            states: plan
                .deps
                .iter()
                .map(|d| {
                    if d.is_empty() {
                        JobState::Pending
                    } else {
                        JobState::Blocked
                    }
                })
                .collect(),
            waiting: plan.deps.iter().map(Vec::len).collect(),
            deps: plan.deps.clone(),
            dependents,
            cancelled_by: vec![None; n],
            cascading: vec![false; n],
        }
    }

    /// The state of every step.
    pub fn states(&self) -> &[JobState] {
        &self.states
    }

    /// Moves a step to `state` and applies the effects on its dependents transitively.
    /// Returns the steps that became pending.
    pub fn set_state(&mut self, step: usize, state: JobState) -> Vec<usize> {
        self.states[step] = state;
        if !state.is_terminal() {
            return Vec::new();
        }
        self.propagate(step)
    }

    /// Skips a ready step (its condition held, or [`cascaded_from`](Self::cascaded_from)
    /// names a dependency); with `cascade`, its required dependents will be skipped when
    /// they are ready. Its dependents are satisfied as after a completion. Returns the
    /// steps that became pending.
    pub fn skip(&mut self, step: usize, cascade: bool) -> Vec<usize> {
        self.states[step] = JobState::Skipped;
        self.cascading[step] = cascade;
        self.propagate(step)
    }

    /// For a ready step: a required dependency that was skipped with a cascade (the
    /// first), which skips the step too (and it cascades in turn). Decided at readiness,
    /// so the outcome does not depend on the order its dependencies ended in (a failed
    /// required dependency has already cancelled it).
    pub fn cascaded_from(&self, step: usize) -> Option<usize> {
        self.deps[step]
            .iter()
            .filter(|(d, p)| {
                *p == EdgePolicy::Required
                    && self.states[*d] == JobState::Skipped
                    && self.cascading[*d]
            })
            .map(|(d, _)| *d)
            .min()
    }

    /// Applies a terminal step's state to its blocked dependents, transitively.
    fn propagate(&mut self, step: usize) -> Vec<usize> {
        let mut released = Vec::new();
        let mut queue = VecDeque::from([step]);
        while let Some(settled) = queue.pop_front() {
            let settled_state = self.states[settled];
            for &(dependent, policy) in &self.dependents[settled] {
                if self.states[dependent] != JobState::Blocked {
                    continue;
                }
                match effect(policy, settled_state) {
                    Effect::Satisfied => {
                        self.waiting[dependent] -= 1;
                        if self.waiting[dependent] == 0 {
                            self.states[dependent] = JobState::Pending;
                            released.push(dependent);
                        }
                    }
                    Effect::Cancel => {
                        self.states[dependent] = JobState::Cancelled;
                        self.cancelled_by[dependent] = Some(settled);
                        queue.push_back(dependent);
                    }
                    Effect::Wait => {}
                }
            }
        }
        released
    }

    /// Retries a dead step: pending again, and every step cancelled because of it (and
    /// transitively) blocked again with its waiting count recomputed.
    pub fn revive(&mut self, step: usize) {
        self.states[step] = JobState::Pending;
        self.cancelled_by[step] = None;
        let mut queue = VecDeque::from([step]);
        while let Some(revived) = queue.pop_front() {
            for &(dependent, _) in &self.dependents[revived] {
                if self.cancelled_by[dependent] == Some(revived) {
                    self.cancelled_by[dependent] = None;
                    self.states[dependent] = JobState::Blocked;
                    self.waiting[dependent] = unsatisfied(
                        self.deps[dependent]
                            .iter()
                            .map(|(d, p)| (*p, self.states[*d])),
                    );
                    queue.push_back(dependent);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn step(name: &str, deps: &[&str]) -> StepSpec {
        StepSpec {
            name: name.into(),
            optional: false,
            depends_on: deps
                .iter()
                .map(|d| (d.to_string(), EdgePolicy::Required))
                .collect(),
        }
    }

    #[test]
    fn rejects_empty_duplicate_unknown_and_cycles() {
        assert_eq!(validate("w", &[]), Err(GraphError::Empty("w".into())));
        assert_eq!(
            validate("w", &[step("a", &[]), step("a", &[])]),
            Err(GraphError::DuplicateStep("a".into()))
        );
        assert_eq!(
            validate("w", &[step("a", &["b"])]),
            Err(GraphError::UnknownDependency {
                step: "a".into(),
                missing: "b".into()
            })
        );
        let err = validate(
            "w",
            &[step("a", &["c"]), step("b", &["a"]), step("c", &["b"])],
        )
        .unwrap_err();
        let GraphError::Cycle(names) = err else {
            panic!("expected a cycle, got {err:?}")
        };
        assert_eq!(names.first(), names.last());
        assert_eq!(names.len(), 4);
        assert!(validate("w", &[step("a", &["a"])]).is_err());
    }

    #[test]
    fn diamond_releases_the_join_after_both_branches() {
        let plan = validate(
            "w",
            &[
                step("a", &[]),
                step("b", &["a"]),
                step("c", &["a"]),
                step("d", &["b", "c"]),
            ],
        )
        .unwrap();
        let mut g = Graph::new(&plan);
        assert_eq!(g.set_state(0, JobState::Completed), vec![1, 2]);
        assert_eq!(g.set_state(1, JobState::Completed), Vec::<usize>::new());
        assert_eq!(g.set_state(2, JobState::Completed), vec![3]);
    }

    #[test]
    fn required_failure_cascades_and_revive_restores() {
        let plan = validate("w", &[step("a", &[]), step("b", &["a"]), step("c", &["b"])]).unwrap();
        let mut g = Graph::new(&plan);
        g.set_state(0, JobState::Dead);
        assert_eq!(g.states()[1], JobState::Cancelled);
        assert_eq!(g.states()[2], JobState::Cancelled);
        g.revive(0);
        assert_eq!(
            g.states(),
            &[JobState::Pending, JobState::Blocked, JobState::Blocked]
        );
        g.set_state(0, JobState::Completed);
        assert_eq!(g.states()[1], JobState::Pending);
    }

    #[test]
    fn tolerance_rule() {
        assert!(tolerated(true, &[]));
        assert!(!tolerated(false, &[]));
        assert!(tolerated(
            false,
            &[EdgePolicy::Optional, EdgePolicy::Optional]
        ));
        assert!(!tolerated(
            false,
            &[EdgePolicy::Optional, EdgePolicy::Required]
        ));
    }

    /// A random DAG: step i may depend on any earlier step.
    fn arb_dag() -> impl Strategy<Value = Vec<StepSpec>> {
        (1usize..30).prop_flat_map(|n| {
            proptest::collection::vec(
                (
                    any::<bool>(),
                    proptest::collection::vec((any::<u16>(), any::<bool>()), 0..4),
                ),
                n,
            )
            .prop_map(|raw| {
                raw.into_iter()
                    .enumerate()
                    .map(|(i, (optional, deps))| StepSpec {
                        name: format!("s{i}"),
                        optional,
                        depends_on: if i == 0 {
                            Vec::new()
                        } else {
                            deps.into_iter()
                                .map(|(d, opt)| {
                                    (
                                        format!("s{}", usize::from(d) % i),
                                        if opt {
                                            EdgePolicy::Optional
                                        } else {
                                            EdgePolicy::Required
                                        },
                                    )
                                })
                                .collect()
                        },
                    })
                    .collect()
            })
        })
    }

    proptest! {
        /// Run every pending step to a random outcome until nothing is pending: every step
        /// ends terminal, none ran before its required dependencies completed, none ran twice.
        #[test]
        fn every_random_workflow_reaches_a_terminal_state(
            steps in arb_dag(),
            outcomes in proptest::collection::vec(0u8..4, 30),
        ) {
            let plan = validate("w", &steps).unwrap();
            let mut g = Graph::new(&plan);
            let mut ran = vec![0u32; steps.len()];
            while let Some(next) = g.states().iter().position(|s| *s == JobState::Pending) {
                for (d, policy) in &plan.deps[next] {
                    let state = g.states()[*d];
                    prop_assert!(state.is_terminal());
                    if *policy == EdgePolicy::Required {
                        prop_assert_eq!(state, JobState::Completed);
                    }
                }
                ran[next] += 1;
                let outcome = match outcomes[next] {
                    0 | 1 => JobState::Completed,
                    2 => JobState::Dead,
                    _ => JobState::Cancelled,
                };
                g.set_state(next, outcome);
            }
            prop_assert!(g.states().iter().all(|s| s.is_terminal()));
            prop_assert!(ran.iter().all(|r| *r <= 1));
        }
    }
}
