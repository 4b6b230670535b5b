//! The DAG folder: which files changed, and (re)loading them into schedulable DAGs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use krxflow_dag::ValidatedDag;
use krxflow_exec::{Executor, PartitionRunner};
use krxflow_lake::Lake;
use krxflow_schedule::{Catchup, Ticker};
use serde_json::json;

use crate::daemon::Config;
use crate::source::DagSource;
use crate::status::{Shared, lock};

/// A loaded, valid DAG.
pub(crate) struct Loaded {
    pub(crate) dag: Arc<ValidatedDag>,
    pub(crate) ticker: Option<(Ticker, Catchup)>,
    pub(crate) exec: Executor,
    /// Where its runs go when not here (jobs on a cluster).
    pub(crate) runner: Option<Arc<dyn PartitionRunner>>,
}

pub(crate) type Stamp = BTreeMap<PathBuf, (Option<SystemTime>, u64)>;

/// The DAG files of a folder with their modification stamps.
pub(crate) fn scan(dir: &Path) -> Stamp {
    let mut out = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            let is_yaml = p.extension().is_some_and(|x| x == "yaml" || x == "yml");
            if !is_yaml {
                continue;
            }
            if let Ok(md) = e.metadata() {
                out.insert(p, (md.modified().ok(), md.len()));
            }
        }
    }
    out
}

fn catchup_of(c: krxflow_dag::Catchup) -> Catchup {
    match c {
        krxflow_dag::Catchup::Latest => Catchup::Latest,
        krxflow_dag::Catchup::All => Catchup::All,
        krxflow_dag::Catchup::None => Catchup::None,
    }
}

/// (Re)loads every DAG file; returns the valid DAGs by name.
pub(crate) async fn load_all(
    config: &Config,
    files: &Stamp,
    lake: &Lake,
    source: &impl DagSource,
    base: &Executor,
    shared: &Shared,
) -> BTreeMap<String, Loaded> {
    let dir = config.dags.as_path();
    let validate = source.validator(lake).await;
    let mut out: BTreeMap<String, Loaded> = BTreeMap::new();
    let mut invalid = Vec::new();
    let mut report = |path: &Path, problems: Vec<String>| {
        for p in &problems {
            eprintln!("serve: {p}");
        }
        invalid.push(json!({"file": path.display().to_string(), "problems": problems}));
    };
    for path in files.keys() {
        let dag = match validate(path) {
            Ok(d) => d,
            Err(diags) => {
                report(path, diags.iter().map(|d| d.to_string()).collect());
                continue;
            }
        };
        let name = dag.spec.name.clone();
        if out.contains_key(&name) {
            report(
                path,
                vec![format!(
                    "{}: DAG name `{name}` is already used by another file in {}; not scheduled",
                    path.display(),
                    dir.display()
                )],
            );
            continue;
        }
        let calendar = match source.calendar(&dag.spec.calendar) {
            Ok(c) => c,
            Err(e) => {
                report(path, vec![format!("{}: {e}", path.display())]);
                continue;
            }
        };
        let ticker = match &dag.spec.schedule {
            None => None,
            Some(s) => match (s.cron_schedule(), s.tz()) {
                (Ok(cron), Ok(tz)) => Some((
                    Ticker::new(cron, tz, calendar.clone()),
                    catchup_of(s.catchup),
                )),
                (Err(e), _) | (_, Err(e)) => {
                    report(path, vec![format!("{}: {e}", path.display())]);
                    continue;
                }
            },
        };
        let exec = base.clone().with_calendar(calendar);
        let runner = config.runner_for.as_ref().map(|runner_for| {
            runner_for(&std::fs::canonicalize(path).unwrap_or_else(|_| path.clone()))
        });
        out.insert(
            name,
            Loaded {
                dag: Arc::new(dag),
                ticker,
                exec,
                runner,
            },
        );
    }
    for (name, problem) in wait_problems(&out) {
        if let Some(l) = out.remove(&name) {
            let file = l.dag.spec.file.display().to_string();
            report(
                &l.dag.spec.file,
                vec![format!("{file}: {problem}; not scheduled")],
            );
        }
    }
    shared.metrics.dags_loaded(out.len(), invalid.len());
    *lock(&shared.loaded) = out.keys().cloned().collect();
    *lock(&shared.invalid) = invalid;
    out
}

/// DAGs whose `schedule.wait_for` cannot be met: it names a DAG that is not scheduled (no
/// file, or an invalid one), or its waits lead back to it (each would start only on its
/// timeout, every day).
fn wait_problems(dags: &BTreeMap<String, Loaded>) -> Vec<(String, String)> {
    let waits: BTreeMap<&str, &[String]> = dags
        .iter()
        .filter_map(|(n, l)| {
            let w = l.dag.spec.schedule.as_ref()?.wait_for.as_ref()?;
            Some((n.as_str(), w.dags.as_slice()))
        })
        .collect();
    let mut out = Vec::new();
    for (name, on) in &waits {
        if let Some(unknown) = on.iter().find(|d| !dags.contains_key(*d)) {
            let hint = krxflow_dag::did_you_mean(unknown, dags.keys().map(String::as_str));
            out.push((
                name.to_string(),
                format!(
                    "`schedule.wait_for` names `{unknown}`{hint}, which no valid DAG file defines"
                ),
            ));
            continue;
        }
        // Depth-first from what it waits for: does any path come back to it?
        let mut stack: Vec<&str> = on.iter().map(String::as_str).collect();
        let mut seen = std::collections::BTreeSet::new();
        while let Some(d) = stack.pop() {
            if d == *name {
                out.push((
                    name.to_string(),
                    format!("`schedule.wait_for` leads back to `{name}` (a cycle of waits)"),
                ));
                break;
            }
            if seen.insert(d) {
                stack.extend(
                    waits
                        .get(d)
                        .into_iter()
                        .flat_map(|w| w.iter().map(String::as_str)),
                );
            }
        }
    }
    out
}
