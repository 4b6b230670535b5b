//! `krxflow compact`: small table files bin-packed into few large ones.

use std::process::ExitCode;

use crate::output;
use crate::util::{Ctx, usage};

/// Compact tables (all, engine tables included, when none is named): their small files
/// are bin-packed into few large ones; no row changes. Writes also compact a table by
/// themselves once it holds 16 files.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Tables to compact (default: every table).
    tables: Vec<String>,
    /// Only tables holding at least this many files.
    #[arg(long, default_value_t = 2)]
    min_files: usize,
}

pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let (lake, tables, min_files, json) = (&ctx.lake, args.tables, args.min_files, ctx.json);
    let all = lake.list_tables().await?;
    if let Some(unknown) = tables.iter().find(|t| !all.contains(t)) {
        return Err(usage(format!(
            "no table `{unknown}` in the lake (`krxflow tables` lists them)"
        )));
    }
    let names = if tables.is_empty() { all } else { tables };
    let mut done = Vec::new();
    for name in &names {
        if let Some(c) = lake.compact(name, min_files).await? {
            done.push(c);
        }
    }
    if json {
        let v: Vec<_> = done
            .iter()
            .map(|c| {
                serde_json::json!({"table": c.table, "files_before": c.files_before,
                    "files_removed": c.files_removed, "files_added": c.files_added,
                    "version": c.version})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let rows: Vec<Vec<String>> = done
            .iter()
            .map(|c| {
                vec![
                    c.table.clone(),
                    c.files_before.to_string(),
                    format!("{} -> {}", c.files_removed, c.files_added),
                    c.version.to_string(),
                ]
            })
            .collect();
        println!(
            "{}",
            output::table(&["table", "files", "compacted", "version"], &rows)
        );
        println!(
            "{} of {} tables compacted (at least {min_files} files)",
            done.len(),
            names.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
