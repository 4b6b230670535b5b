//! `krxflow validate`: DAG files checked, every problem reported with file:line:col.

use std::process::ExitCode;

use crate::util::Ctx;
use crate::wiring;

/// Validate DAG files; reports every problem with file:line:col. Exit 2 when invalid.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// DAG files, or DAG names looked up as dags/NAME.yaml.
    #[arg(required = true)]
    files: Vec<String>,
}

pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let (lake, files, json) = (&ctx.lake, &args.files, ctx.json);
    let registry = wiring::registry();
    let known = wiring::known_tables(lake).await;
    let mut all_ok = true;
    let mut report = Vec::new();
    for f in files {
        if let Some(why) = wiring::unknown_dag(f) {
            all_ok = false;
            if !json {
                println!("error: {why}");
            }
            // The shape of a loader's `io` diagnostic, for scripts reading the report.
            report.push(serde_json::json!({"file": f, "valid": false, "errors": [{
                "file": f, "line": 1, "col": 1, "code": "io", "message": why,
            }]}));
            continue;
        }
        let path = wiring::resolve_dag_path(f);
        match wiring::load(&path, &registry, &known) {
            Ok(dag) => {
                if !json {
                    let n = dag.tasks.len();
                    println!(
                        "ok  {} (dag `{}`, {n} task{})",
                        path.display(),
                        dag.spec.name,
                        if n == 1 { "" } else { "s" }
                    );
                }
                report.push(serde_json::json!({"file": path.display().to_string(), "valid": true, "errors": []}));
            }
            Err(diags) => {
                all_ok = false;
                if !json {
                    for d in &diags {
                        println!("{d}");
                    }
                }
                report.push(serde_json::json!({
                    "file": path.display().to_string(),
                    "valid": false,
                    "errors": diags.iter().map(|d| serde_json::json!({
                        "file": d.file.display().to_string(), "line": d.line, "col": d.col,
                        "code": d.code.to_string(), "message": d.message,
                    })).collect::<Vec<_>>(),
                }));
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
