//! Which tasks of a replay run once over the range, and in what order.
//!
//! A task can run over the range at once when nothing it reads is written by a task that runs
//! day by day, since its view of each day is then known before the range starts (the lake's
//! rows and the batch's own versions, [`super::timeline`]). The rest run day by day, as the
//! scheduler would: `depends_on_past` tasks, tasks with `checks:`, tasks writing other than by
//! merge, and, in the prediction loop, everything that reads the loop's own outputs (the
//! ensemble reads the weights that `match_outcomes` wrote the day before).

use std::collections::{BTreeMap, BTreeSet};

use krxflow_core::{ReadScope, TableDef, WriteMode};
use krxflow_dag::{PlannedTask, ValidatedDag};
use krxflow_lake::Catalog;

/// A task of a replay: (DAG index, task index in the DAG's plan).
pub(crate) type TaskId = (usize, usize);

/// The tasks of the replay that run once over the range, writers before readers, and why each
/// other task runs day by day.
#[derive(Debug, Default)]
pub(crate) struct BatchPlan {
    pub(crate) order: Vec<TaskId>,
    /// The batched tasks each batched task waits for (writers of what it reads, upstream).
    pub(crate) deps: BTreeMap<TaskId, BTreeSet<TaskId>>,
    pub(crate) per_day: BTreeMap<TaskId, String>,
}

/// The definition of every table the replay reads or writes: the catalog's, or for a table
/// the catalog does not declare, the one its writer's port gives (its keys; no date column,
/// since the lake reads such a table whole).
pub(crate) struct Tables(BTreeMap<String, TableDef>);

impl Tables {
    pub(crate) fn of(dags: &[&ValidatedDag], catalog: &Catalog) -> Self {
        let mut m = BTreeMap::new();
        for task in dags.iter().flat_map(|d| d.tasks.iter()) {
            for port in task.op.outputs() {
                if let Some(table) = task.spec.outputs.get(port.name) {
                    m.entry(table.clone()).or_insert_with(|| {
                        let mut def = catalog.def_for_output(table, &port);
                        if catalog.get(table).is_none() {
                            // The lake reads an undeclared table without an as-of bound.
                            def.date_column = None;
                        }
                        def
                    });
                }
            }
            for table in task.spec.inputs.values() {
                if let Some(d) = catalog.get(table) {
                    m.entry(table.clone()).or_insert_with(|| d.clone());
                }
            }
        }
        Self(m)
    }
    pub(crate) fn get(&self, table: &str) -> Option<&TableDef> {
        self.0.get(table)
    }
}

/// How a task reads one table.
pub(crate) struct Read<'a> {
    pub(crate) table: &'a str,
    /// Through an as-of bound on a date column: a reader outside the batch then sees only
    /// rows dated up to its day.
    pub(crate) dated: bool,
}

/// The tables `task` reads, with how.
pub(crate) fn reads<'a>(task: &'a PlannedTask, tables: &Tables) -> Vec<Read<'a>> {
    let ports = task.op.inputs();
    task.spec
        .inputs
        .iter()
        .filter_map(|(binding, table)| {
            let port = ports.iter().find(|p| p.matches(binding))?;
            let has_date = tables.get(table).is_some_and(|d| d.date_column.is_some());
            Some(Read {
                table: table.as_str(),
                dated: port.scope == ReadScope::AsOfPartition && has_date,
            })
        })
        .collect()
}

/// The tables `task` writes.
pub(crate) fn writes(task: &PlannedTask) -> Vec<&str> {
    task.spec.outputs.values().map(String::as_str).collect()
}

/// Why `task` cannot run over a range whatever the others do, if it cannot.
fn alone(task: &PlannedTask, tables: &Tables) -> Option<String> {
    if task.spec.depends_on_past {
        return Some("depends_on_past".into());
    }
    if !task.spec.checks.is_empty() {
        // A check reads the lake as the day left it, and fails the day it finds wrong.
        return Some("has checks".into());
    }
    for port in task.op.outputs() {
        let Some(table) = task.spec.outputs.get(port.name) else {
            continue;
        };
        if port.mode != WriteMode::Merge {
            return Some(format!("writes `{table}` by {}", port.mode));
        }
        if tables.get(table).is_none_or(|d| d.keys.is_empty()) {
            return Some(format!("`{table}` has no merge keys"));
        }
    }
    None
}

/// Plans the batch of `dags` (in the replay's DAG order). `per_day` holds tasks already known
/// to run day by day (e.g. after a failed batch attempt), with why.
pub(crate) fn plan(
    dags: &[&ValidatedDag],
    tables: &Tables,
    mut per_day: BTreeMap<TaskId, String>,
) -> BatchPlan {
    let all: Vec<TaskId> = dags
        .iter()
        .enumerate()
        .flat_map(|(d, dag)| (0..dag.tasks.len()).map(move |t| (d, t)))
        .collect();
    let task = |id: TaskId| &dags[id.0].tasks[id.1];
    let name = |id: TaskId| format!("{}.{}", dags[id.0].spec.name, task(id).spec.name);
    for &id in &all {
        if let Some(why) = alone(task(id), tables) {
            per_day.entry(id).or_insert(why);
        }
    }
    loop {
        let mut changed = false;
        // Writers of each table that run day by day.
        let mut daily_writers: BTreeMap<&str, TaskId> = BTreeMap::new();
        for id in per_day.keys() {
            for t in writes(task(*id)) {
                daily_writers.entry(t).or_insert(*id);
            }
        }
        for &id in &all {
            if per_day.contains_key(&id) {
                continue;
            }
            let t = task(id);
            let why = reads(t, tables)
                .iter()
                .find_map(|r| {
                    daily_writers.get(r.table).map(|w| {
                        format!("reads `{}`, which {} writes day by day", r.table, name(*w))
                    })
                })
                .or_else(|| {
                    writes(t).into_iter().find_map(|table| {
                        daily_writers.get(table).map(|w| {
                            format!(
                                "writes `{table}`, which {} also writes day by day",
                                name(*w)
                            )
                        })
                    })
                })
                .or_else(|| {
                    t.upstream.iter().find_map(|u| {
                        let up = dags[id.0].tasks.iter().position(|x| &x.spec.name == u)?;
                        per_day
                            .contains_key(&(id.0, up))
                            .then(|| format!("upstream `{u}` runs day by day"))
                    })
                })
                .or_else(|| {
                    // A reader outside the batch must see only rows dated up to its day.
                    let mine = writes(t);
                    per_day.keys().find_map(|r| {
                        reads(task(*r), tables)
                            .iter()
                            .find(|x| !x.dated && mine.contains(&x.table))
                            .map(|x| {
                                format!(
                                    "{} reads `{}` without an as-of date bound",
                                    name(*r),
                                    x.table
                                )
                            })
                    })
                });
            if let Some(why) = why {
                per_day.insert(id, why);
                changed = true;
            }
        }
        if changed {
            continue;
        }
        // Writers before readers (a task's own output does not order it), ties in replay
        // order; a cycle among the remaining tasks runs day by day.
        let batched: Vec<TaskId> = all
            .iter()
            .copied()
            .filter(|id| !per_day.contains_key(id))
            .collect();
        let mut before: BTreeMap<TaskId, BTreeSet<TaskId>> = BTreeMap::new();
        for &r in &batched {
            let tables: Vec<&str> = reads(task(r), tables).iter().map(|x| x.table).collect();
            let deps = before.entry(r).or_default();
            for &w in &batched {
                if w != r && writes(task(w)).iter().any(|t| tables.contains(t)) {
                    deps.insert(w);
                }
            }
            for u in &task(r).upstream {
                if let Some(up) = dags[r.0].tasks.iter().position(|x| &x.spec.name == u) {
                    deps.insert((r.0, up));
                }
            }
        }
        let mut order = Vec::new();
        let mut placed: BTreeSet<TaskId> = BTreeSet::new();
        loop {
            let next = batched.iter().copied().find(|id| {
                !placed.contains(id)
                    && before
                        .get(id)
                        .is_none_or(|d| d.iter().all(|x| placed.contains(x)))
            });
            match next {
                Some(id) => {
                    placed.insert(id);
                    order.push(id);
                }
                None => break,
            }
        }
        let left: BTreeSet<TaskId> = batched
            .into_iter()
            .filter(|id| !placed.contains(id))
            .collect();
        if left.is_empty() {
            return BatchPlan {
                order,
                deps: before,
                per_day,
            };
        }
        // The tasks on a cycle run day by day (their writes interleave in time); the ones only
        // downstream of one follow from the rules above on the next pass.
        for &id in &left {
            if reaches(id, id, &before, &left) {
                per_day.insert(
                    id,
                    "on a cycle of tables with other tasks of the replay".into(),
                );
            }
        }
    }
}

/// Whether `to` is among the tasks `from` waits on, transitively, within `among`.
fn reaches(
    from: TaskId,
    to: TaskId,
    before: &BTreeMap<TaskId, BTreeSet<TaskId>>,
    among: &BTreeSet<TaskId>,
) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<TaskId> = before.get(&from).into_iter().flatten().copied().collect();
    while let Some(x) = stack.pop() {
        if x == to {
            return true;
        }
        if among.contains(&x) && seen.insert(x) {
            stack.extend(before.get(&x).into_iter().flatten().copied());
        }
    }
    false
}
