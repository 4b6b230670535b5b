//! The task graph: edges from tables and `after:`, cycle detection, topological order.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::fmt;
use std::sync::Arc;

use krxflow_core::{ConfiguredOp, Operator};
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::diag::DiagCode;
use crate::draft::TaskDraft;
use crate::sink::Sink;
use crate::spans::{Seg, YPath, child, path};
use crate::spec::{DagSpec, TaskSpec};

/// Why task `to` runs after task `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Why {
    /// `to` reads `table` (through input `port`), which `from` writes.
    Table { table: String, port: String },
    /// `to` lists `from` in `after:` (item `index`).
    After { index: usize },
}

/// An edge between tasks (indices into the drafts, i.e. file order).
#[derive(Debug, Clone)]
pub(crate) struct Edge {
    pub from: usize,
    pub to: usize,
    pub why: Why,
}

/// All edges: writer -> reader of each table written in this DAG (a task reading its own
/// output is not an edge), and `after:` entries naming existing tasks.
pub(crate) fn edges(drafts: &[TaskDraft]) -> Vec<Edge> {
    let mut writer: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, d) in drafts.iter().enumerate() {
        for table in d.spec.outputs.values() {
            writer.entry(table.as_str()).or_insert(i);
        }
    }
    let index: BTreeMap<&str, usize> = drafts
        .iter()
        .enumerate()
        .map(|(i, d)| (d.spec.name.as_str(), i))
        .collect();
    let mut out = Vec::new();
    for (to, d) in drafts.iter().enumerate() {
        for (port, table) in &d.spec.inputs {
            if let Some(&from) = writer.get(table.as_str())
                && from != to
            {
                out.push(Edge {
                    from,
                    to,
                    why: Why::Table {
                        table: table.clone(),
                        port: port.clone(),
                    },
                });
            }
        }
        for (i, a) in d.spec.after.iter().enumerate() {
            if let Some(&from) = index.get(a.as_str()) {
                out.push(Edge {
                    from,
                    to,
                    why: Why::After { index: i },
                });
            }
        }
    }
    out
}

fn graph(n: usize, edges: &[Edge]) -> DiGraph<usize, usize> {
    let mut g = DiGraph::with_capacity(n, edges.len());
    for i in 0..n {
        g.add_node(i);
    }
    for (e_idx, e) in edges.iter().enumerate() {
        g.add_edge(NodeIndex::new(e.from), NodeIndex::new(e.to), e_idx);
    }
    g
}

/// Reports each cycle once, naming its tasks in order: `cycle: a -> b -> a`.
pub(crate) fn check_cycles(drafts: &[TaskDraft], edges: &[Edge], sink: &mut Sink<'_>) {
    let g = graph(drafts.len(), edges);
    let mut sccs = tarjan_scc(&g);
    for scc in &mut sccs {
        scc.sort();
    }
    sccs.sort();
    for scc in sccs {
        let members: BTreeSet<usize> = scc.iter().map(|n| n.index()).collect();
        let Some(&start) = members.iter().next() else {
            continue;
        };
        let self_loop = edges.iter().position(|e| e.from == start && e.to == start);
        let cycle: Vec<usize> = if members.len() == 1 {
            match self_loop {
                Some(e) => vec![e],
                None => continue,
            }
        } else {
            match shortest_cycle(&g, start, &members) {
                Some(c) => c,
                None => continue,
            }
        };
        let mut names = vec![drafts[start].spec.name.as_str()];
        names.extend(
            cycle
                .iter()
                .map(|&e| drafts[edges[e].to].spec.name.as_str()),
        );
        let reasons: Vec<String> = cycle.iter().map(|&e| describe(&edges[e], drafts)).collect();
        let Some(&closing) = cycle.last() else {
            continue;
        };
        let at = cause_path(&edges[closing], drafts);
        sink.at_value(
            &at,
            DiagCode::Cycle,
            format!("cycle: {} ({})", names.join(" -> "), reasons.join("; ")),
        );
    }
}

/// Edge indices of a shortest cycle through `start` inside `members` (BFS).
fn shortest_cycle(
    g: &DiGraph<usize, usize>,
    start: usize,
    members: &BTreeSet<usize>,
) -> Option<Vec<usize>> {
    let mut parent: BTreeMap<usize, usize> = BTreeMap::new(); // node -> edge index into it
    let mut queue = VecDeque::from([start]);
    let mut seen = BTreeSet::from([start]);
    while let Some(n) = queue.pop_front() {
        let mut out: Vec<_> = g.edges(NodeIndex::new(n)).collect();
        out.sort_by_key(|e| *e.weight());
        for e in out {
            let to = e.target().index();
            if !members.contains(&to) {
                continue;
            }
            if to == start {
                let mut path = vec![*e.weight()];
                let mut cur = n;
                while cur != start {
                    let edge = *parent.get(&cur)?;
                    path.push(edge);
                    cur = g
                        .edge_endpoints(petgraph::graph::EdgeIndex::new(edge))?
                        .0
                        .index();
                }
                path.reverse();
                return Some(path);
            }
            if seen.insert(to) {
                parent.insert(to, *e.weight());
                queue.push_back(to);
            }
        }
    }
    None
}

fn describe(e: &Edge, drafts: &[TaskDraft]) -> String {
    let from = &drafts[e.from].spec.name;
    let to = &drafts[e.to].spec.name;
    match &e.why {
        Why::Table { table, .. } => format!("`{to}` reads `{table}` written by `{from}`"),
        Why::After { .. } => format!("`{to}` runs after `{from}`"),
    }
}

/// Where an edge comes from in the reader's YAML: its `inputs.port` or `after[i]`.
fn cause_path(e: &Edge, drafts: &[TaskDraft]) -> YPath {
    let task = path(&["tasks", &drafts[e.to].spec.name]);
    match &e.why {
        Why::Table { port, .. } => child(&child(&task, "inputs"), port),
        Why::After { index } => {
            let mut p = child(&task, "after");
            p.push(Seg::Index(*index));
            p
        }
    }
}

/// Topological order (Kahn), ties broken by file order. `None` when there is a cycle.
pub(crate) fn topo_order(n: usize, edges: &[Edge]) -> Option<Vec<usize>> {
    let mut indegree = vec![0usize; n];
    let mut succ: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    for e in edges {
        if succ[e.from].insert(e.to) {
            indegree[e.to] += 1;
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&i| indegree[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &s in &succ[i] {
            indegree[s] -= 1;
            if indegree[s] == 0 {
                ready.push(Reverse(s));
            }
        }
    }
    (order.len() == n).then_some(order)
}

/// A task ready to run: its spec, operator, configured operator and direct upstream tasks.
#[derive(Clone)]
pub struct PlannedTask {
    /// The task as written (after defaults and substitution).
    pub spec: TaskSpec,
    /// The operator named by `op:`.
    pub op: Arc<dyn Operator>,
    /// The operator configured with `with:`.
    pub configured: Arc<dyn ConfiguredOp>,
    /// `krxflow_core::params_hash(&spec.with)`: part of the rerun fingerprint and lineage.
    pub params_hash: String,
    /// Direct upstream tasks (writers of the tables it reads, and `after:`), in plan order.
    pub upstream: Vec<String>,
}

impl fmt::Debug for PlannedTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlannedTask")
            .field("name", &self.spec.name)
            .field("op", &self.op.kind())
            .field("op_version", &self.op.version())
            .field("params_hash", &self.params_hash)
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

/// A DAG that passed validation, with its tasks in execution order.
#[derive(Debug, Clone)]
pub struct ValidatedDag {
    /// The parsed spec (tasks in file order).
    pub spec: DagSpec,
    /// Tasks in topological order, ties broken by file order.
    pub tasks: Vec<PlannedTask>,
}

impl ValidatedDag {
    /// The planned task named `name`.
    pub fn task(&self, name: &str) -> Option<&PlannedTask> {
        self.tasks.iter().find(|t| t.spec.name == name)
    }

    /// Every task that (transitively) depends on `name`, in plan order; empty for an unknown
    /// name.
    pub fn downstream_of(&self, name: &str) -> Vec<String> {
        let mut reached: BTreeSet<&str> = BTreeSet::from([name]);
        // Plan order is topological: one pass sees every upstream before its dependants.
        let mut out = Vec::new();
        for t in &self.tasks {
            if t.upstream.iter().any(|u| reached.contains(u.as_str())) {
                reached.insert(t.spec.name.as_str());
                out.push(t.spec.name.clone());
            }
        }
        out
    }

    /// `names` and every task downstream of any of them: what a rerun of `names` runs.
    pub fn with_downstream(&self, names: &BTreeSet<String>) -> BTreeSet<String> {
        let mut out = names.clone();
        for n in names {
            out.extend(self.downstream_of(n));
        }
        out
    }

    /// Plan indices in the order the executor starts tasks that are ready at the same time
    /// when it has fewer slots than ready tasks: the task with the most downstream tasks
    /// first, ties in plan order. This is Airflow's `weight_rule: downstream` with every
    /// weight 1: the head of a long chain (the universe listing that the news, sentiment,
    /// features and ensemble wait for) starts before a leaf that nothing waits on.
    pub fn launch_order(&self) -> Vec<usize> {
        let mut order: Vec<(usize, usize)> = self
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (self.downstream_of(&t.spec.name).len(), i))
            .collect();
        order.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        order.into_iter().map(|(_, i)| i).collect()
    }

    /// Every task `name` (transitively) depends on, in plan order.
    pub fn upstream_of(&self, name: &str) -> Vec<String> {
        let mut needed: BTreeSet<&str> = BTreeSet::new();
        let mut stack = vec![name];
        while let Some(n) = stack.pop() {
            if let Some(t) = self.task(n) {
                for u in &t.upstream {
                    if needed.insert(u.as_str()) {
                        stack.push(u.as_str());
                    }
                }
            }
        }
        self.tasks
            .iter()
            .filter(|t| needed.contains(t.spec.name.as_str()))
            .map(|t| t.spec.name.clone())
            .collect()
    }
}

/// Direct upstream names of each task, ordered by position in `order`.
pub(crate) fn upstreams(drafts: &[TaskDraft], edges: &[Edge], order: &[usize]) -> Vec<Vec<String>> {
    let mut rank = vec![0usize; drafts.len()];
    for (pos, &i) in order.iter().enumerate() {
        rank[i] = pos;
    }
    let mut ups: Vec<BTreeSet<(usize, usize)>> = vec![BTreeSet::new(); drafts.len()];
    for e in edges {
        ups[e.to].insert((rank[e.from], e.from));
    }
    ups.into_iter()
        .map(|set| {
            set.into_iter()
                .map(|(_, i)| drafts[i].spec.name.clone())
                .collect()
        })
        .collect()
}
