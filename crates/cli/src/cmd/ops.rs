//! `krxflow ops`: the registered operators with their params and port schemas.

use std::process::ExitCode;

use crate::util::Ctx;
use crate::wiring;

/// List registered operators with their params and port schemas.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub async fn run(_args: Args, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let json = ctx.json;
    let registry = wiring::registry();
    let describe_schema = |s: &arrow::datatypes::Schema| {
        s.fields()
            .iter()
            .map(|f| {
                format!(
                    "{}: {}{}",
                    f.name(),
                    f.data_type(),
                    if f.is_nullable() { "?" } else { "" }
                )
            })
            .collect::<Vec<_>>()
    };
    if json {
        let v: Vec<_> = registry
            .iter()
            .map(|op| {
                serde_json::json!({
                    "kind": op.kind(), "version": op.version(), "description": op.description(),
                    "params": op.params(),
                    "inputs": op.inputs().iter().map(|p| serde_json::json!({
                        "name": p.name, "scope": p.scope, "before_ds": p.before_ds, "optional": p.optional,
                        "columns": describe_schema(&p.schema)})).collect::<Vec<_>>(),
                    "outputs": op.outputs().iter().map(|p| serde_json::json!({
                        "name": p.name, "mode": p.mode, "keys": p.keys,
                        "columns": describe_schema(&p.schema)})).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    for op in registry.iter() {
        println!("{} (v{})  {}", op.kind(), op.version(), op.description());
        for p in op.params() {
            println!(
                "    with.{}: {}{}  {}",
                p.name,
                p.ty,
                p.default
                    .map(|d| format!(" = {d}"))
                    .unwrap_or_else(|| " (required)".into()),
                p.doc
            );
        }
        for p in op.inputs() {
            println!(
                "    in  {}{} [{}]: {}",
                p.name,
                if p.optional { " (optional)" } else { "" },
                match (p.scope, p.before_ds) {
                    (krxflow_core::ReadScope::AsOfPartition, false) => "as of ds",
                    (krxflow_core::ReadScope::AsOfPartition, true) => "as of ds, used before ds",
                    (krxflow_core::ReadScope::AllRows, _) => "all rows",
                },
                describe_schema(&p.schema).join(", ")
            );
        }
        for p in op.outputs() {
            println!(
                "    out {} [{}{}]: {}",
                p.name,
                p.mode,
                if p.keys.is_empty() {
                    String::new()
                } else {
                    format!(" on {}", p.keys.join(","))
                },
                describe_schema(&p.schema).join(", ")
            );
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}
