//! `krxflow vacuum`: deletes the data files that no version inside the retention window needs.

use std::process::ExitCode;

use chrono::Utc;
use krxflow_daemon::LEASE;

use crate::output;
use crate::util::{Ctx, usage};

/// Below this window a running writer's snapshot could lose its files: refused while a
/// scheduler holds the lake.
const SHORT: std::time::Duration = std::time::Duration::from_secs(3600);

/// Vacuum tables (all, engine tables included, when none is named): delete the files that
/// rewrites and compactions replaced longer ago than `--retain`, and crashed writes'
/// leftovers older than that. The current version is never touched; versions older than
/// the window may no longer be readable (time travel is kept for the window). `serve`
/// vacuums every table once a day with the default window.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Tables to vacuum (default: every table).
    tables: Vec<String>,
    /// Time travel kept: files needed by any version younger than this stay.
    #[arg(long, default_value = "7d", value_parser = krxflow_dag::parse_duration)]
    retain: std::time::Duration,
    /// List what would be deleted; delete nothing.
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let lake = &ctx.lake;
    let all = lake.list_tables().await?;
    if let Some(unknown) = args.tables.iter().find(|t| !all.contains(t)) {
        return Err(usage(format!(
            "no table `{unknown}` in the lake (`krxflow tables` lists them)"
        )));
    }
    if args.retain < SHORT
        && !args.dry_run
        && let Some(h) = lake.lease_holder(LEASE).await?
        && h.expires > Utc::now()
    {
        return Err(usage(format!(
            "--retain under 1h while a scheduler runs on this lake ({} pid {} on {}) could \
             delete files its runs are reading or writing; stop it first or keep a longer window",
            h.owner, h.pid, h.host
        )));
    }
    let retain = chrono::Duration::from_std(args.retain)
        .map_err(|_| usage(format!("--retain {:?} is too long", args.retain)))?;
    let names = if args.tables.is_empty() {
        all
    } else {
        args.tables
    };
    let mut done = Vec::new();
    for name in &names {
        if let Some(v) = lake.vacuum(name, retain, args.dry_run).await? {
            done.push(v);
        }
    }
    let files: usize = done.iter().map(|v| v.files.len()).sum();
    if ctx.json {
        let v: Vec<_> = done
            .iter()
            .map(|v| {
                serde_json::json!({"table": v.table, "files": v.files, "dry_run": v.dry_run,
                    "version": v.version})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let rows: Vec<Vec<String>> = done
            .iter()
            .filter(|v| !v.files.is_empty())
            .map(|v| {
                vec![
                    v.table.clone(),
                    v.files.len().to_string(),
                    v.version.to_string(),
                ]
            })
            .collect();
        let verb = if args.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        println!("{}", output::table(&["table", verb, "version"], &rows));
        println!(
            "{verb} {files} files in {} of {} tables (kept: every file a version of the last {} needs)",
            rows.len(),
            names.len(),
            krxflow_dag::format_duration(args.retain)
        );
    }
    Ok(ExitCode::SUCCESS)
}
