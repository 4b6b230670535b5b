//! What several commands share: global options, usage errors, dates, DAG loading, metrics push.

use std::sync::Arc;

use chrono::NaiveDate;
use clap::ValueEnum;
use krxflow_exec::Reprocess;
use krxflow_lake::Lake;

use crate::wiring;

/// The global options every command runs with.
pub struct Ctx {
    /// The opened `--lake`.
    pub lake: Lake,
    /// `--json`: machine-readable output.
    pub json: bool,
    /// `--pushgateway`: where one-shot commands push their metrics.
    pub pushgateway: Option<String>,
}

/// An error caused by the user's input (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReprocessArg {
    Missing,
    Failed,
    All,
}

pub fn reprocess_of(r: ReprocessArg) -> Reprocess {
    match r {
        ReprocessArg::Missing => Reprocess::Missing,
        ReprocessArg::Failed => Reprocess::Failed,
        ReprocessArg::All => Reprocess::All,
    }
}

/// Loads and validates a DAG for a command, printing diagnostics.
pub async fn load_valid(lake: &Lake, dag_arg: &str) -> anyhow::Result<krxflow_dag::ValidatedDag> {
    if let Some(why) = wiring::unknown_dag(dag_arg) {
        return Err(usage(why));
    }
    let registry = wiring::registry();
    let known = wiring::known_tables(lake).await;
    let path = wiring::resolve_dag_path(dag_arg);
    wiring::load(&path, &registry, &known).map_err(|diags| {
        for d in &diags {
            eprintln!("{d}");
        }
        let n = diags.len();
        usage(format!(
            "{} is invalid ({n} problem{})",
            path.display(),
            if n == 1 { "" } else { "s" }
        ))
    })
}

/// The tasks named by `--rerun`, checked against `dag`'s: an unknown name is a usage error
/// with a did-you-mean and the DAG's tasks.
pub fn rerun_tasks(
    dag: &krxflow_dag::ValidatedDag,
    rerun: Vec<String>,
) -> anyhow::Result<std::collections::BTreeSet<String>> {
    let names: Vec<&str> = dag.tasks.iter().map(|t| t.spec.name.as_str()).collect();
    if let Some(unknown) = rerun.iter().find(|t| !names.contains(&t.as_str())) {
        return Err(usage(format!(
            "--rerun {unknown}: no such task in DAG `{}`{}; its tasks: {}",
            dag.spec.name,
            krxflow_dag::did_you_mean(unknown, names.iter().copied()),
            names.join(", ")
        )));
    }
    Ok(rerun.into_iter().collect())
}

/// Pushes a one-shot command's metrics (grouped by job `krxflow`, dag, command; an empty `dag`
/// groups by command only, for commands that run several DAGs, whose series carry their own
/// `dag` label). A failed push is reported and does not change the command's outcome.
pub async fn push_metrics(
    metrics: Arc<krxflow_metrics::Metrics>,
    url: &str,
    dag: &str,
    command: &str,
) {
    let (url, dag, command) = (url.to_string(), dag.to_string(), command.to_string());
    let res = tokio::task::spawn_blocking(move || {
        // Several DAGs (a replay) carry their own `dag` label: group by the command only.
        let mut grouping = vec![("command", command.as_str())];
        if !dag.is_empty() {
            grouping.insert(0, ("dag", dag.as_str()));
        }
        krxflow_metrics::push::push(&metrics, &url, "krxflow", &grouping)
    })
    .await;
    match res {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("warning: metrics not pushed: {e}"),
        Err(e) => eprintln!("warning: metrics not pushed: {e}"),
    }
}

pub fn parse_date(s: &str) -> anyhow::Result<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| usage(format!("invalid date `{s}`: expected YYYY-MM-DD")))
}
