//! `krxflow runs`: recent DAG runs and their task states.

use std::collections::BTreeMap;
use std::process::ExitCode;

use krxflow_exec::records::{self, attempts_from_batches, runs_from_batches};
use krxflow_lake::ReadOptions;

use crate::output;
use crate::util::Ctx;

/// Recent DAG runs and their task states.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long)]
    dag: Option<String>,
    #[arg(long, default_value_t = 10)]
    limit: usize,
}

pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let (lake, dag, limit, json) = (&ctx.lake, args.dag.as_deref(), args.limit, ctx.json);
    let runs = match lake.read(records::RUNS, ReadOptions::default()).await {
        Ok(r) => runs_from_batches(&r.batches),
        Err(krxflow_lake::LakeError::NoSuchTable(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    // Latest state row per run id.
    let mut latest: BTreeMap<String, records::RunRecord> = BTreeMap::new();
    for r in runs {
        if dag.is_some_and(|d| d != r.dag) {
            continue;
        }
        let replace = latest.get(&r.run_id).is_none_or(|prev| {
            r.ended.is_some() || prev.ended.is_none() && r.started >= prev.started
        });
        if replace {
            latest.insert(r.run_id.clone(), r);
        }
    }
    let mut list: Vec<records::RunRecord> = latest.into_values().collect();
    list.sort_by_key(|r| std::cmp::Reverse(r.started));
    list.truncate(limit);
    let attempts = match lake.read(records::TASK_RUNS, ReadOptions::default()).await {
        Ok(r) => attempts_from_batches(&r.batches),
        Err(krxflow_lake::LakeError::NoSuchTable(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for r in &list {
        let mut tasks: BTreeMap<String, (String, i32)> = BTreeMap::new();
        for a in attempts.iter().filter(|a| a.run_id == r.run_id) {
            let e = tasks
                .entry(a.task.clone())
                .or_insert((a.state.clone(), a.attempt));
            if a.attempt >= e.1 {
                *e = (a.state.clone(), a.attempt);
            }
        }
        out.push((r, tasks));
    }
    if json {
        let v: Vec<_> = out
            .iter()
            .map(|(r, t)| {
                serde_json::json!({
                    "run_id": r.run_id, "dag": r.dag, "ds": r.ds.to_string(), "state": r.state,
                    "trigger": r.trigger, "started": r.started.to_rfc3339(),
                    "ended": r.ended.map(|e| e.to_rfc3339()),
                    "tasks": t.iter().map(|(k, (s, a))| (k.clone(), serde_json::json!({"state": s, "attempts": a}))).collect::<serde_json::Map<_, _>>(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if out.is_empty() {
        println!("no runs yet");
    } else {
        let rows: Vec<Vec<String>> = out
            .iter()
            .map(|(r, t)| {
                let secs = r
                    .ended
                    .map(|e| (e - r.started).num_milliseconds() as f64 / 1000.0);
                vec![
                    r.run_id.clone(),
                    r.dag.clone(),
                    r.ds.to_string(),
                    r.state.clone(),
                    r.trigger.clone(),
                    r.started.format("%Y-%m-%d %H:%M:%S").to_string(),
                    secs.map(|s| format!("{s:.1}s"))
                        .unwrap_or_else(|| "-".into()),
                    t.iter()
                        .map(|(k, (s, _))| format!("{k}={s}"))
                        .collect::<Vec<_>>()
                        .join(" "),
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
    }
    Ok(ExitCode::SUCCESS)
}
