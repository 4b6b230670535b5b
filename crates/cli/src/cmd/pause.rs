//! `krxflow pause`: pause DAGs' schedules (or list the paused ones).

use std::process::ExitCode;

use krxflow_daemon::pause;

use crate::output;
use crate::util::{Ctx, load_valid};

/// Pause DAGs' schedules: `serve` starts none of their scheduled runs until `krxflow resume`,
/// whose DAG's `catchup` then decides which missed tick runs (runs asked for by hand still
/// run). With no DAG, lists the paused ones.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// DAG files, or DAG names looked up as dags/NAME.yaml; none: list the paused DAGs.
    dags: Vec<String>,
    /// Why, shown in `serve`'s log, its /healthz and this command's list.
    #[arg(long, default_value = "")]
    why: String,
}

pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let lake = &ctx.lake;
    if args.dags.is_empty() {
        let all = pause::paused(lake).await?;
        if ctx.json {
            println!("{}", serde_json::to_string_pretty(&all)?);
        } else if all.is_empty() {
            println!("no DAG's schedule is paused");
        } else {
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|(dag, p)| {
                    vec![
                        dag.clone(),
                        p.since.format("%Y-%m-%d %H:%M:%S").to_string(),
                        p.by.clone(),
                        p.why.clone(),
                    ]
                })
                .collect();
            println!(
                "{}",
                output::table(&["dag", "paused since (UTC)", "by", "why"], &rows)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut names = Vec::new();
    for arg in &args.dags {
        names.push(load_valid(lake, arg).await?.spec.name);
    }
    let mut done = serde_json::Map::new();
    for name in names {
        let p = pause::pause(lake, &name, &args.why).await?;
        if !ctx.json {
            println!(
                "paused {name}'s schedule: `serve` starts none of its scheduled runs until \
                 `krxflow resume {name}`"
            );
        }
        done.insert(name, serde_json::to_value(p)?);
    }
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&done)?);
    }
    Ok(ExitCode::SUCCESS)
}
