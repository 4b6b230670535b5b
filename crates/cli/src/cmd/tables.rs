//! `krxflow tables`: lake tables with their versions and row counts.

use std::process::ExitCode;

use crate::output;
use crate::util::Ctx;

/// List lake tables with their versions and row counts.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub async fn run(_args: Args, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let (lake, json) = (&ctx.lake, ctx.json);
    let mut rows = Vec::new();
    for name in lake.list_tables().await? {
        let count = lake.row_count(&name).await?;
        let doc = lake
            .catalog()
            .get(&name)
            .map(|d| d.doc.clone())
            .unwrap_or_default();
        rows.push((name, count.version, count.rows, doc));
    }
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|(n, v, r, d)| serde_json::json!({"table": n, "version": v, "rows": r, "doc": d}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let rows: Vec<Vec<String>> = rows
            .into_iter()
            .map(|(n, v, r, d)| vec![n, v.to_string(), r.to_string(), d])
            .collect();
        println!(
            "{}",
            output::table(&["table", "version", "rows", "description"], &rows)
        );
    }
    Ok(ExitCode::SUCCESS)
}
