//! `krxflow lineage`: a table's lineage walked back through exact input versions to its sources.

use std::process::ExitCode;

use anyhow::{Context, bail};
use krxflow_exec::lineage::{LineageNode, all_records, annotate_keys, build_tree};

use crate::util::{self, Ctx, parse_date};

/// Walk a table's lineage back through the exact input versions to its sources.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The table to start from (`krxflow tables` lists them).
    table: String,
    /// Partition whose output to start from (default: the latest).
    #[arg(long)]
    ds: Option<String>,
    /// Count the rows of this key (e.g. a ticker) in every version along the way.
    #[arg(long)]
    key: Option<String>,
}

pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let (lake, table, json) = (&ctx.lake, args.table.as_str(), ctx.json);
    let (ds, key) = (args.ds.as_deref(), args.key.as_deref());
    let ds = ds.map(parse_date).transpose()?;
    let records = all_records(lake).await?;
    let Some(mut tree) = build_tree(&records, table, ds) else {
        bail!(util::UsageError(format!(
            "no lineage for table `{table}`{}: it was not written by a krxflow run",
            ds.map(|d| format!(" at ds {d}")).unwrap_or_default()
        )));
    };
    if let Some(k) = key {
        annotate_keys(lake, &mut tree, k, None)
            .await
            .context("counting key rows")?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&tree)?);
    } else {
        let mut out = String::new();
        print_node(&tree, 0, key, &mut out);
        print!("{out}");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_node(n: &LineageNode, depth: usize, key: Option<&str>, out: &mut String) {
    let indent = "    ".repeat(depth);
    let arrow = if depth == 0 { "" } else { "<- " };
    let key_part = match (key, n.key_rows) {
        (Some(k), Some(c)) => format!("  [{c} rows with key {k}]"),
        _ => String::new(),
    };
    match &n.producer {
        Some(p) => {
            out.push_str(&format!(
                "{indent}{arrow}{}@v{}  written by {}.{} (op {} v{}, params {}) ds {} run {}  {} rows {}{key_part}\n",
                n.table, n.version, p.dag, p.task, p.op_kind, p.op_version, p.params_hash, p.ds,
                p.run_id, p.rows_written, p.write_mode,
            ));
            if !p.artifacts.is_empty() {
                out.push_str(&format!(
                    "{indent}    artifacts: {}\n",
                    p.artifacts.join(", ")
                ));
            }
            if n.inputs.is_empty() && p.inputs.is_empty() {
                out.push_str(&format!(
                    "{indent}    (source: {} reads no lake table)\n",
                    p.op_kind
                ));
            }
        }
        None if n.version < 0 => {
            out.push_str(&format!(
                "{indent}{arrow}{} (absent when read){key_part}\n",
                n.table
            ));
        }
        None => out.push_str(&format!(
            "{indent}{arrow}{}@v{}  (not written by a recorded krxflow run){key_part}\n",
            n.table, n.version
        )),
    }
    for c in &n.inputs {
        print_node(c, depth + 1, key, out);
    }
}
