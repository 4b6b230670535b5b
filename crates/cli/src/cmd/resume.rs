//! `krxflow resume`: resume paused DAG schedules.

use std::process::ExitCode;

use krxflow_daemon::pause;

use crate::util::{Ctx, load_valid};

/// Resume paused DAG schedules; each DAG's `catchup` decides which of the ticks it missed
/// while paused run (`latest`, the default: the newest one).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Paused DAG names (as `krxflow pause` lists them), DAG files, or names looked up as
    /// dags/NAME.yaml.
    #[arg(required = true)]
    dags: Vec<String>,
}

pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let lake = &ctx.lake;
    let paused = pause::paused(lake).await?;
    let mut names = Vec::new();
    for arg in &args.dags {
        // A paused name resumes even when its file is gone.
        if paused.contains_key(arg) {
            names.push(arg.clone());
        } else {
            names.push(load_valid(lake, arg).await?.spec.name);
        }
    }
    let mut done = serde_json::Map::new();
    for name in names {
        let was = pause::resume(lake, &name).await?;
        if !ctx.json {
            match &was {
                Some(p) => println!(
                    "resumed {name}'s schedule (paused since {} by {}); its catchup policy \
                     decides which missed tick runs",
                    p.since.format("%Y-%m-%d %H:%M:%S UTC"),
                    p.by
                ),
                None => println!("{name}'s schedule was not paused"),
            }
        }
        done.insert(name, serde_json::json!({ "was_paused": was.is_some() }));
    }
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&done)?);
    }
    Ok(ExitCode::SUCCESS)
}
