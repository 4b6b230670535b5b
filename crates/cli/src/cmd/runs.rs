//! `krxflow runs`: recent DAG runs, their task states, why a task was skipped or failed, and
//! the warn checks that did not pass.

use std::collections::BTreeMap;
use std::process::ExitCode;

use krxflow_exec::RunState;
use krxflow_exec::checks::CheckRecord;
use krxflow_exec::history;
use krxflow_exec::records;

use crate::output;
use crate::util::{Ctx, parse_date};

/// Recent DAG runs, their task states, and why a task was skipped or failed.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this DAG's runs (its `dag:` name).
    #[arg(long)]
    dag: Option<String>,
    /// Only runs whose latest state is this one (e.g. the failed days of a backfill).
    #[arg(long, value_enum)]
    state: Option<StateArg>,
    /// Only runs of this partition (trading day, YYYY-MM-DD).
    #[arg(long)]
    date: Option<String>,
    /// How many runs, the latest started first.
    #[arg(long, default_value_t = 10)]
    limit: usize,
}

/// A run's state, as `_krxflow.runs` records it.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum StateArg {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl StateArg {
    /// The engine's state, whose name the records store.
    fn state(self) -> RunState {
        match self {
            Self::Running => RunState::Running,
            Self::Succeeded => RunState::Succeeded,
            Self::Failed => RunState::Failed,
            Self::Cancelled => RunState::Cancelled,
        }
    }
}

pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let (lake, dag, limit, json) = (&ctx.lake, args.dag.as_deref(), args.limit, ctx.json);
    let date = args.date.as_deref().map(parse_date).transpose()?;
    let runs = history::all_runs(lake).await?;
    // Latest state row per run id.
    let latest = records::latest_runs(
        runs.into_iter()
            .filter(|r| dag.is_none_or(|d| d == r.dag) && date.is_none_or(|d| d == r.ds))
            .collect(),
    );
    // The state filter applies to each run's latest state row (its final row once it ended).
    let wanted = args.state.map(|s| s.state().to_string());
    let mut list: Vec<records::RunRecord> = latest
        .into_values()
        .filter(|r| wanted.as_deref().is_none_or(|w| r.state == w))
        .collect();
    list.sort_by_key(|r| std::cmp::Reverse(r.started));
    list.truncate(limit);
    let attempts = history::all_attempts(lake).await?;
    let checks = history::all_checks(lake).await?;
    // Each task's check results in a run, by (run id, task).
    let mut checked: BTreeMap<(&str, &str), Vec<&CheckRecord>> = BTreeMap::new();
    for c in &checks {
        checked
            .entry((c.run_id.as_str(), c.task.as_str()))
            .or_default()
            .push(c);
    }
    // Each task's latest attempt. A task found up to date records no attempt: the run's
    // task count tells how many were.
    let mut out: Vec<(&records::RunRecord, BTreeMap<&str, &records::AttemptRecord>)> = Vec::new();
    for r in &list {
        out.push((r, records::latest_attempts(&attempts, &r.run_id)));
    }
    let up_to_date = |r: &records::RunRecord, recorded: usize| {
        usize::try_from(r.tasks_total).map_or(0, |n| n.saturating_sub(recorded))
    };
    if json {
        let v: Vec<_> = out
            .iter()
            .map(|(r, t)| {
                let tasks: serde_json::Map<_, _> = t
                    .iter()
                    .map(|(k, a)| {
                        let mut v = task_json(a);
                        if let Some(c) = checked.get(&(r.run_id.as_str(), *k)) {
                            v["checks"] = serde_json::json!(c);
                        }
                        (k.to_string(), v)
                    })
                    .collect();
                serde_json::json!({
                    "run_id": r.run_id, "dag": r.dag, "ds": r.ds.to_string(), "state": r.state,
                    "trigger": r.trigger, "started": r.started.to_rfc3339(),
                    "ended": r.ended.map(|e| e.to_rfc3339()),
                    "tasks": tasks, "tasks_up_to_date": up_to_date(r, t.len()),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if out.is_empty() {
        let filtered = args.dag.is_some() || args.state.is_some() || date.is_some();
        println!(
            "{}",
            if filtered {
                "no run matches"
            } else {
                "no runs yet"
            }
        );
    } else {
        let rows: Vec<Vec<String>> = out
            .iter()
            .map(|(r, t)| {
                let secs = r
                    .ended
                    .map(|e| (e - r.started).num_milliseconds() as f64 / 1000.0);
                let mut tasks: Vec<String> =
                    t.iter().map(|(k, a)| format!("{k}={}", a.state)).collect();
                match up_to_date(r, t.len()) {
                    0 => {}
                    n if t.is_empty() => tasks.push(format!("all {n} up_to_date")),
                    n => tasks.push(format!("+{n} up_to_date")),
                }
                vec![
                    r.run_id.clone(),
                    r.dag.clone(),
                    r.ds.to_string(),
                    r.state.clone(),
                    r.trigger.clone(),
                    r.started.format("%Y-%m-%d %H:%M:%S").to_string(),
                    secs.map(|s| format!("{s:.1}s"))
                        .unwrap_or_else(|| "-".into()),
                    tasks.join(" "),
                ]
            })
            .collect();
        println!(
            "{}",
            output::table(
                &[
                    "run_id",
                    "dag",
                    "ds",
                    "state",
                    "trigger",
                    "started (UTC)",
                    "took",
                    "tasks"
                ],
                &rows
            )
        );
        // Why a task was skipped, failed or did not run, under the table.
        let reasons: Vec<String> = out
            .iter()
            .flat_map(|(r, t)| {
                t.iter().filter_map(|(k, a)| {
                    let why = a.error.as_deref().filter(|e| !e.is_empty())?;
                    // A skip's reason already reads "skipped: ...", a cancellation "cancelled".
                    let why = if why.starts_with(a.state.as_str()) {
                        why.to_string()
                    } else {
                        format!("{}: {why}", a.state)
                    };
                    Some(format!("{}  {k}  {why}", r.run_id))
                })
            })
            .collect();
        // Warn checks that did not pass (an error check's failure is its task's error above).
        let warned: Vec<String> = out
            .iter()
            .flat_map(|(r, t)| {
                t.keys()
                    .flat_map(|k| checked.get(&(r.run_id.as_str(), *k)).into_iter().flatten())
                    .filter(|c| c.failed() && c.is(krxflow_dag::Severity::Warn))
                    .map(|c| format!("{}  {}  {}", r.run_id, c.task, c.why()))
            })
            .collect();
        let reasons: Vec<String> = reasons.into_iter().chain(warned).collect();
        if !reasons.is_empty() {
            println!("\n{}", reasons.join("\n"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A task's latest attempt for `--json`: state, attempts, rows, error and counters.
fn task_json(a: &records::AttemptRecord) -> serde_json::Value {
    let counters = a
        .counters
        .as_deref()
        .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok());
    serde_json::json!({
        "state": a.state, "attempts": a.attempt, "rows_in": a.rows_in,
        "rows_out": a.rows_out, "error": a.error, "counters": counters,
    })
}
