//! The subcommands.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::NaiveDate;
use krxflow_exec::lineage::{LineageNode, all_records, annotate_keys, build_tree};
use krxflow_exec::records::{self, attempts_from_batches, runs_from_batches};
use krxflow_exec::{Executor, Reprocess, RunOptions, RunState};
use krxflow_lake::{Lake, ReadOptions};

use crate::output;
use crate::wiring;
use crate::{Cli, Command, Format, ReprocessArg};

/// An error caused by the user's input (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let json = cli.json;
    let lake = Lake::open(&cli.lake, wiring::catalog())
        .map_err(|e| usage(format!("cannot open lake `{}`: {e}", cli.lake)))?;
    match cli.command {
        Command::Validate { files } => validate(&lake, &files, json).await,
        Command::Run {
            dag,
            date,
            reprocess,
            max_parallel,
        } => {
            run(
                &lake,
                &dag,
                &date,
                reprocess,
                max_parallel,
                json,
                cli.pushgateway.as_deref(),
            )
            .await
        }
        Command::Backfill {
            dag,
            from,
            to,
            reprocess,
            parallel,
            dry_run,
        } => {
            let args = BackfillArgs {
                dag,
                from,
                to,
                reprocess,
                parallel,
                dry_run,
            };
            crate::backfill::backfill(&lake, args, json, cli.pushgateway.as_deref()).await
        }
        Command::Backfills => crate::backfill::backfills(&lake, json).await,
        Command::Serve {
            dags,
            listen,
            max_parallel,
            grace,
            wait,
            lease_ttl,
        } => {
            let args = crate::serve::ServeArgs {
                dags,
                listen,
                max_parallel: max_parallel.unwrap_or_else(|| {
                    std::thread::available_parallelism()
                        .map(|n| n.get())
                        .unwrap_or(2)
                }),
                grace,
                wait,
                lease_ttl,
            };
            crate::serve::serve(&lake, args).await
        }
        Command::Runs { dag, limit } => runs(&lake, dag.as_deref(), limit, json).await,
        Command::Lineage { table, ds, key } => {
            lineage(&lake, &table, ds.as_deref(), key.as_deref(), json).await
        }
        Command::Sql { query, format } => {
            sql(&lake, &query, if json { Format::Json } else { format }).await
        }
        Command::Ops => ops(json),
        Command::Tables => tables(&lake, json).await,
        Command::Compact { tables, min_files } => compact(&lake, tables, min_files, json).await,
    }
}

pub struct BackfillArgs {
    pub dag: String,
    pub from: String,
    pub to: String,
    pub reprocess: ReprocessArg,
    pub parallel: usize,
    pub dry_run: bool,
}

pub fn reprocess_of(r: ReprocessArg) -> Reprocess {
    match r {
        ReprocessArg::Missing => Reprocess::Missing,
        ReprocessArg::Failed => Reprocess::Failed,
        ReprocessArg::All => Reprocess::All,
    }
}

/// Loads and validates a DAG for a command, printing diagnostics.
pub async fn load_valid(lake: &Lake, dag_arg: &str) -> anyhow::Result<krxflow_dag::ValidatedDag> {
    let registry = wiring::registry();
    let known = wiring::known_tables(lake).await;
    let path = wiring::resolve_dag_path(dag_arg);
    wiring::load(&path, &registry, &known).map_err(|diags| {
        for d in &diags {
            eprintln!("{d}");
        }
        usage(format!(
            "{} is invalid ({} problems)",
            path.display(),
            diags.len()
        ))
    })
}

/// Pushes a one-shot command's metrics (grouped by job `krxflow`, dag, command). A failed push
/// is reported and does not change the command's outcome.
pub async fn push_metrics(
    metrics: Arc<krxflow_metrics::Metrics>,
    url: &str,
    dag: &str,
    command: &str,
) {
    let (url, dag, command) = (url.to_string(), dag.to_string(), command.to_string());
    let res = tokio::task::spawn_blocking(move || {
        krxflow_metrics::push::push(
            &metrics,
            &url,
            "krxflow",
            &[("dag", dag.as_str()), ("command", command.as_str())],
        )
    })
    .await;
    match res {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("warning: metrics not pushed: {e}"),
        Err(e) => eprintln!("warning: metrics not pushed: {e}"),
    }
}

/// KRX's regular session closes at 15:30 KST.
const CLOSE_KST: (u32, u32) = (15, 30);

/// The latest trading day whose close has passed at `now`: before 15:30 KST today's
/// partition is not complete yet, so it is the previous trading day.
pub fn latest_closed_day(
    now: chrono::DateTime<chrono::Utc>,
    calendar: &dyn krxflow_core::Calendar,
) -> NaiveDate {
    let local = now.with_timezone(&chrono_tz::Asia::Seoul);
    let close = chrono::NaiveTime::from_hms_opt(CLOSE_KST.0, CLOSE_KST.1, 0).unwrap_or_default();
    let today = local.date_naive();
    let d = if local.time() >= close {
        today
    } else {
        today - chrono::Duration::days(1)
    };
    calendar.trading_day_on_or_before(d)
}

pub fn parse_date(s: &str) -> anyhow::Result<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| usage(format!("invalid date `{s}`: expected YYYY-MM-DD")))
}

async fn validate(lake: &Lake, files: &[String], json: bool) -> anyhow::Result<ExitCode> {
    let registry = wiring::registry();
    let known = wiring::known_tables(lake).await;
    let mut all_ok = true;
    let mut report = Vec::new();
    for f in files {
        let path = wiring::resolve_dag_path(f);
        match wiring::load(&path, &registry, &known) {
            Ok(dag) => {
                if !json {
                    println!(
                        "ok  {} (dag `{}`, {} tasks)",
                        path.display(),
                        dag.spec.name,
                        dag.tasks.len()
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

async fn run(
    lake: &Lake,
    dag_arg: &str,
    date: &str,
    reprocess: ReprocessArg,
    max_parallel: Option<usize>,
    json: bool,
    pushgateway: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let registry = wiring::registry();
    let known = wiring::known_tables(lake).await;
    let path = wiring::resolve_dag_path(dag_arg);
    let dag = match wiring::load(&path, &registry, &known) {
        Ok(d) => d,
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            return Err(usage(format!(
                "{} is invalid ({} problems)",
                path.display(),
                diags.len()
            )));
        }
    };
    let calendar = wiring::calendar(&dag.spec.calendar).map_err(|e| usage(e.to_string()))?;
    let ds = if date == "latest" {
        latest_closed_day(chrono::Utc::now(), calendar.as_ref())
    } else {
        parse_date(date)?
    };
    if !calendar.is_trading_day(ds) {
        return Err(usage(format!(
            "{ds} is not a trading day in calendar `{}` (previous: {})",
            calendar.name(),
            calendar.prev_trading_day(ds)
        )));
    }
    let cancel = tokio_util::sync::CancellationToken::new();
    let metrics = Arc::new(krxflow_metrics::Metrics::new());
    let mut exec = Executor::new(lake.clone(), calendar)
        .with_cancel(cancel.clone())
        .with_observer(Arc::new(krxflow_exec::MetricsObserver::new(
            metrics.clone(),
        )));
    if let Some(n) = max_parallel {
        exec = exec.with_max_parallel(n);
    }
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupt: cancelling running tasks (Ctrl-C again to force)");
            cancel.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let mut opts = RunOptions::new(ds);
    opts.reprocess = match reprocess {
        ReprocessArg::Missing => Reprocess::Missing,
        ReprocessArg::Failed => Reprocess::Failed,
        ReprocessArg::All => Reprocess::All,
    };
    let report = exec.run(Arc::new(dag), opts).await?;
    watcher.abort();
    if let Some(url) = pushgateway {
        push_metrics(metrics, url, &report.dag, "run").await;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "run {}  dag {}  ds {}  {}",
            report.run_id, report.dag, report.ds, report.state
        );
        let rows: Vec<Vec<String>> = report
            .tasks
            .iter()
            .map(|t| {
                vec![
                    t.task.clone(),
                    t.state.to_string(),
                    t.attempts.to_string(),
                    t.rows_in.to_string(),
                    t.rows_out.to_string(),
                    format!("{:.2}s", t.duration_ms as f64 / 1000.0),
                    if t.outputs.is_empty() {
                        t.error.clone().unwrap_or_default()
                    } else {
                        t.outputs.join(" ")
                    },
                ]
            })
            .collect();
        println!(
            "{}",
            output::table(
                &[
                    "task",
                    "state",
                    "attempts",
                    "rows_in",
                    "rows_out",
                    "time",
                    "outputs / error"
                ],
                &rows
            )
        );
        let counters: Vec<String> = report
            .tasks
            .iter()
            .flat_map(|t| {
                t.counters
                    .iter()
                    .map(move |(k, v)| format!("{}.{k}={v}", t.task))
            })
            .collect();
        if !counters.is_empty() {
            println!("counters: {}", counters.join(" "));
        }
    }
    Ok(match report.state {
        RunState::Succeeded => ExitCode::SUCCESS,
        RunState::Cancelled => ExitCode::from(130),
        _ => ExitCode::from(1),
    })
}

async fn runs(
    lake: &Lake,
    dag: Option<&str>,
    limit: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
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

async fn lineage(
    lake: &Lake,
    table: &str,
    ds: Option<&str>,
    key: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let ds = ds.map(parse_date).transpose()?;
    let records = all_records(lake).await?;
    let Some(mut tree) = build_tree(&records, table, ds) else {
        bail!(UsageError(format!(
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

async fn sql(lake: &Lake, query: &str, format: Format) -> anyhow::Result<ExitCode> {
    let (_schema, batches) = krxflow_lake::sql::query(lake, query)
        .await
        .map_err(|e| match e {
            krxflow_lake::LakeError::Sql(m) => usage(m),
            other => other.into(),
        })?;
    println!("{}", output::batches(&batches, format)?);
    Ok(ExitCode::SUCCESS)
}

fn ops(json: bool) -> anyhow::Result<ExitCode> {
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
                        "name": p.name, "scope": p.scope, "optional": p.optional,
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
                match p.scope {
                    krxflow_core::ReadScope::AsOfPartition => "as of ds",
                    krxflow_core::ReadScope::AllRows => "all rows",
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

async fn tables(lake: &Lake, json: bool) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    for name in lake.list_tables().await? {
        let read = lake.read(&name, ReadOptions::default()).await?;
        let doc = lake
            .catalog()
            .get(&name)
            .map(|d| d.doc.clone())
            .unwrap_or_default();
        rows.push((name, read.version, read.num_rows(), doc));
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

async fn compact(
    lake: &Lake,
    tables: Vec<String>,
    min_files: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn kst(s: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M")
            .unwrap()
            .and_local_timezone(chrono_tz::Asia::Seoul)
            .unwrap()
            .with_timezone(&chrono::Utc)
    }

    #[test]
    fn latest_is_the_last_trading_day_whose_close_has_passed() {
        let cal = krxflow_schedule::KrxCalendar::new();
        let d = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        // Monday 04:00 KST: Monday has not closed, Friday is the latest complete day.
        assert_eq!(
            latest_closed_day(kst("2026-11-23 04:00"), &cal),
            d("2026-11-20")
        );
        assert_eq!(
            latest_closed_day(kst("2026-11-23 15:29"), &cal),
            d("2026-11-20")
        );
        assert_eq!(
            latest_closed_day(kst("2026-11-23 15:30"), &cal),
            d("2026-11-23")
        );
        // Sunday: Friday.
        assert_eq!(
            latest_closed_day(kst("2026-11-22 20:00"), &cal),
            d("2026-11-20")
        );
    }
}
