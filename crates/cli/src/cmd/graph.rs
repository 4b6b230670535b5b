//! `krxflow graph`: the tasks of one or more DAGs and the tables between them, as text, Mermaid
//! or Graphviz DOT. Several DAGs draw one graph joined by the tables they share: the daily
//! batch's `predictions` read by `match_outcomes`, whose `ensemble_weights` the next batch reads.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use chrono::NaiveDate;
use clap::ValueEnum;
use krxflow_dag::ValidatedDag;
use krxflow_exec::records::{self, AttemptRecord, RunRecord};
use krxflow_exec::{Executor, history};

use crate::util::{Ctx, load_valid, parse_date};
use crate::wiring;

/// Draw the tasks of DAGs and the tables between them (text, Mermaid or Graphviz DOT).
/// Several DAGs draw one graph, joined by the tables they share.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// DAG files, or DAG names looked up as dags/NAME.yaml.
    #[arg(required = true)]
    dags: Vec<String>,
    /// `text`: tasks in run order with what each reads and writes, then the tables one DAG
    /// hands another; `mermaid`: a flowchart GitHub renders in Markdown; `dot`: Graphviz.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Each task's state in the DAG's latest run for this partition (YYYY-MM-DD), as a graph
    /// view of that run: coloured in Mermaid and DOT.
    #[arg(long)]
    date: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Text,
    Mermaid,
    Dot,
}

/// One task: where it is, what it runs, and the tables on its ports.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct Task {
    dag: String,
    name: String,
    op: String,
    /// Tasks of its DAG it runs after (writers of what it reads, and `after:`), in run order.
    upstream: Vec<String>,
    /// `after:` alone (no table between them).
    after: Vec<String>,
    /// Port -> table.
    inputs: BTreeMap<String, String>,
    outputs: BTreeMap<String, String>,
    /// With `--date`: its state in the run shown (`stale` for a success that no longer
    /// stands).
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<String>,
    /// Why it is `stale`: what changed since its success.
    #[serde(skip_serializing_if = "Option::is_none")]
    stale: Option<String>,
}

/// The run a graph shows (`--date`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct Run {
    run_id: String,
    state: String,
    trigger: String,
    started: String,
}

/// One DAG, its tasks in run order.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct Dag {
    name: String,
    file: String,
    schedule: Option<String>,
    tasks: Vec<Task>,
    /// With `--date`: the partition, and its latest run, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    ds: Option<NaiveDate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<Run>,
}

pub async fn run(args: Args, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let date = args.date.as_deref().map(parse_date).transpose()?;
    let mut valid = Vec::new();
    for arg in &args.dags {
        valid.push(load_valid(&ctx.lake, arg).await?);
    }
    let mut dags: Vec<Dag> = valid.iter().map(of).collect();
    if let Some(ds) = date {
        let runs = history::all_runs(&ctx.lake).await?;
        let attempts = history::all_attempts(&ctx.lake).await?;
        for (dag, v) in dags.iter_mut().zip(&valid) {
            with_run(dag, ds, &runs, &attempts);
            let calendar = wiring::calendar(&v.spec.calendar)?;
            let stale = Executor::new(ctx.lake.clone(), calendar)
                .stale_tasks(v, ds)
                .await?;
            mark_stale(dag, stale);
        }
    }
    if ctx.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "dags": dags }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    print!(
        "{}",
        match args.format {
            Format::Text => text(&dags),
            Format::Mermaid => mermaid(&dags),
            Format::Dot => dot(&dags),
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn of(dag: &ValidatedDag) -> Dag {
    Dag {
        name: dag.spec.name.clone(),
        file: dag.spec.file.display().to_string(),
        schedule: dag.spec.schedule.as_ref().map(|s| {
            let wait = s.wait_for.as_ref().map_or_else(String::new, |w| {
                format!(
                    ", waits for {} (at most {})",
                    w.dags.join(", "),
                    krxflow_dag::format_duration(w.timeout)
                )
            });
            format!(
                "{} {} (calendar {}){wait}",
                s.cron,
                s.timezone,
                s.calendar.as_deref().unwrap_or(&dag.spec.calendar)
            )
        }),
        tasks: dag
            .tasks
            .iter()
            .map(|t| Task {
                dag: dag.spec.name.clone(),
                name: t.spec.name.clone(),
                op: t.op.kind().to_string(),
                upstream: t.upstream.clone(),
                after: t.spec.after.clone(),
                inputs: t.spec.inputs.clone(),
                outputs: t.spec.outputs.clone(),
                state: None,
                stale: None,
            })
            .collect(),
        ds: None,
        run: None,
    }
}

/// Marks `dag` with its latest run for `ds` and each task's state in it: its latest attempt's,
/// `up_to_date` for a task a finished run found done already (it records no attempt), else
/// `not run`.
fn with_run(dag: &mut Dag, ds: NaiveDate, runs: &[RunRecord], attempts: &[AttemptRecord]) {
    dag.ds = Some(ds);
    let latest = records::latest_runs(
        runs.iter()
            .filter(|r| r.dag == dag.name && r.ds == ds)
            .cloned()
            .collect(),
    );
    let Some(run) = latest.into_values().max_by_key(|r| r.started) else {
        return;
    };
    let states = records::latest_attempts(attempts, &run.run_id);
    for t in &mut dag.tasks {
        t.state = Some(match states.get(t.name.as_str()) {
            Some(a) => a.state.clone(),
            None if run.ended.is_some() => "up_to_date".into(),
            None => "not run".into(),
        });
    }
    dag.run = Some(Run {
        run_id: run.run_id,
        state: run.state,
        trigger: run.trigger,
        started: run.started.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    });
}

/// Marks the tasks of `dag` whose success no longer stands `stale`, with why.
fn mark_stale(dag: &mut Dag, mut stale: BTreeMap<String, String>) {
    for t in &mut dag.tasks {
        let done = matches!(t.state.as_deref(), Some("succeeded" | "up_to_date"));
        if let Some(why) = stale.remove(&t.name).filter(|_| done) {
            t.state = Some("stale".into());
            t.stale = Some(why);
        }
    }
}

/// Fill and stroke colours of a task state.
fn colours(state: &str) -> (&'static str, &'static str) {
    match state {
        "succeeded" => ("#d4edda", "#28a745"),
        "failed" => ("#f8d7da", "#dc3545"),
        "upstream_failed" => ("#ffe5d0", "#fd7e14"),
        "skipped" => ("#e9ecef", "#6c757d"),
        "up_to_date" => ("#d1ecf1", "#17a2b8"),
        "cancelled" => ("#eadcf8", "#6f42c1"),
        "running" => ("#fff3cd", "#ffc107"),
        "stale" => ("#f6f0c4", "#9c8a00"),
        _ => ("#ffffff", "#adb5bd"),
    }
}

/// A DAG's title in a drawing: its schedule, and with `--date` the run's state.
fn title(d: &Dag) -> String {
    let schedule = d.schedule.as_deref().unwrap_or("on demand");
    match (&d.ds, &d.run) {
        (Some(ds), Some(r)) => format!("{}: {schedule}; {ds}: {}", d.name, r.state),
        (Some(ds), None) => format!("{}: {schedule}; {ds}: no run", d.name),
        _ => format!("{}: {schedule}", d.name),
    }
}

/// Per table: the tasks writing it and those reading it, as `dag.task`, in the DAGs' order.
fn tables(dags: &[Dag]) -> BTreeMap<&str, (Vec<String>, Vec<String>)> {
    let mut out: BTreeMap<&str, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for t in dags.iter().flat_map(|d| &d.tasks) {
        let id = format!("{}.{}", t.dag, t.name);
        for table in t.outputs.values() {
            let writers = &mut out.entry(table).or_default().0;
            if !writers.contains(&id) {
                writers.push(id.clone());
            }
        }
        for table in t.inputs.values() {
            let readers = &mut out.entry(table).or_default().1;
            if !readers.contains(&id) {
                readers.push(id.clone());
            }
        }
    }
    out
}

fn text(dags: &[Dag]) -> String {
    let tables = tables(dags);
    let mut s = String::new();
    for d in dags {
        let n = d.tasks.len();
        let _ = writeln!(
            s,
            "{} ({}): {n} task{} in run order; {}",
            d.name,
            d.file,
            if n == 1 { "" } else { "s" },
            d.schedule
                .as_deref()
                .map_or_else(|| "on demand".to_string(), |c| format!("schedule {c}"))
        );
        match (&d.ds, &d.run) {
            (Some(ds), Some(r)) => {
                let _ = writeln!(
                    s,
                    "  run {} for {ds}: {} ({}, started {})",
                    r.run_id, r.state, r.trigger, r.started
                );
            }
            (Some(ds), None) => {
                let _ = writeln!(s, "  no run for {ds}");
            }
            _ => {}
        }
        for t in &d.tasks {
            let after = if t.upstream.is_empty() {
                String::new()
            } else {
                format!("  after {}", t.upstream.join(", "))
            };
            let state = match (&t.state, &t.stale) {
                (Some(st), Some(why)) => format!("  = {st}: {why}"),
                (Some(st), None) => format!("  = {st}"),
                _ => String::new(),
            };
            let _ = writeln!(s, "  {}  [{}]{after}{state}", t.name, t.op);
            if !t.inputs.is_empty() {
                let reads: Vec<String> = t
                    .inputs
                    .values()
                    .map(|table| format!("{table} ({})", source(d, t, table)))
                    .collect();
                let _ = writeln!(s, "      reads  {}", reads.join(", "));
            }
            if !t.outputs.is_empty() {
                let writes: Vec<&str> = t.outputs.values().map(String::as_str).collect();
                let _ = writeln!(s, "      writes {}", writes.join(", "));
            }
        }
    }
    if dags.len() > 1 {
        let handed: Vec<String> = tables
            .iter()
            .filter(|(_, (writers, readers))| {
                readers
                    .iter()
                    .any(|r| writers.iter().any(|w| dag_of(w) != dag_of(r)))
            })
            .map(|(table, (writers, readers))| {
                format!(
                    "  {table}: written by {}; read by {}",
                    writers.join(", "),
                    readers.join(", ")
                )
            })
            .collect();
        if handed.is_empty() {
            s.push_str("No table written by one of these DAGs is read by another.\n");
        } else {
            s.push_str("Tables one of these DAGs hands another:\n");
            for line in handed {
                s.push_str(&line);
                s.push('\n');
            }
        }
    }
    s
}

fn dag_of(task_id: &str) -> &str {
    task_id.split_once('.').map_or(task_id, |(dag, _)| dag)
}

/// Where task `t` of `d` reads `table` from: the task of its DAG writing it earlier in the
/// run, itself (the table's previous version), or the lake.
fn source(d: &Dag, t: &Task, table: &str) -> String {
    let writer = d
        .tasks
        .iter()
        .find(|w| w.name != t.name && w.outputs.values().any(|o| o == table));
    match writer {
        Some(w) => format!("from {}", w.name),
        None if t.outputs.values().any(|o| o == table) => "its own, as of the run".into(),
        None => "lake".into(),
    }
}

/// Node ids: `t<n>` per task and `d<n>` per table, so no name needs escaping in an id.
struct Ids<'a> {
    tasks: BTreeMap<(&'a str, &'a str), String>,
    tables: BTreeMap<&'a str, String>,
}

fn ids(dags: &[Dag]) -> Ids<'_> {
    let mut tasks = BTreeMap::new();
    let mut tables = BTreeMap::new();
    for t in dags.iter().flat_map(|d| &d.tasks) {
        let n = tasks.len();
        tasks.insert((t.dag.as_str(), t.name.as_str()), format!("t{n}"));
        for table in t.inputs.values().chain(t.outputs.values()) {
            let n = tables.len();
            tables
                .entry(table.as_str())
                .or_insert_with(|| format!("d{n}"));
        }
    }
    Ids { tasks, tables }
}

/// Each edge once: task -> table written, table -> task reading it, and `after:` alone
/// (dashed). `(from, to, dashed)`.
fn edges<'a>(dags: &'a [Dag], ids: &'a Ids<'a>) -> Vec<(&'a str, &'a str, bool)> {
    let mut out = Vec::new();
    let mut push = |e: (&'a str, &'a str, bool)| {
        if !out.contains(&e) {
            out.push(e);
        }
    };
    for d in dags {
        for t in &d.tasks {
            let id = &ids.tasks[&(t.dag.as_str(), t.name.as_str())];
            for table in t.inputs.values() {
                push((&ids.tables[table.as_str()], id, false));
            }
            for table in t.outputs.values() {
                push((id, &ids.tables[table.as_str()], false));
            }
            for a in &t.after {
                if let Some(from) = ids.tasks.get(&(t.dag.as_str(), a.as_str())) {
                    push((from, id, true));
                }
            }
        }
    }
    out
}

/// A Mermaid label: in double quotes, which it writes `#quot;`.
fn mermaid_label(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "#quot;"))
}

fn mermaid(dags: &[Dag]) -> String {
    let ids = ids(dags);
    let mut s = String::from("flowchart LR\n");
    for (i, d) in dags.iter().enumerate() {
        let title = title(d);
        let _ = writeln!(s, "  subgraph g{i}[{}]", mermaid_label(&title));
        for t in &d.tasks {
            let id = &ids.tasks[&(t.dag.as_str(), t.name.as_str())];
            let label = mermaid_label(&format!("{}<br/><i>{}</i>", t.name, t.op));
            let _ = writeln!(s, "    {id}[{label}]");
        }
        s.push_str("  end\n");
    }
    for (table, id) in &ids.tables {
        let _ = writeln!(s, "  {id}[({})]", mermaid_label(table));
    }
    for (from, to, dashed) in edges(dags, &ids) {
        let _ = writeln!(s, "  {from} {} {to}", if dashed { "-.->" } else { "-->" });
    }
    // Task states as classes: one `classDef` per state shown, then the tasks in it.
    let mut by_state: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for t in dags.iter().flat_map(|d| &d.tasks) {
        if let Some(st) = &t.state {
            by_state
                .entry(st.as_str())
                .or_default()
                .push(&ids.tasks[&(t.dag.as_str(), t.name.as_str())]);
        }
    }
    for (state, tasks) in by_state {
        let class = state.replace(' ', "_");
        let (fill, stroke) = colours(state);
        let _ = writeln!(s, "  classDef {class} fill:{fill},stroke:{stroke}");
        let _ = writeln!(s, "  class {} {class}", tasks.join(","));
    }
    s
}

/// A DOT string literal of these lines (Graphviz breaks a label at `\n`).
fn dot_label(lines: &[&str]) -> String {
    let escaped: Vec<String> = lines
        .iter()
        .map(|l| l.replace('\\', "\\\\").replace('"', "\\\""))
        .collect();
    format!("\"{}\"", escaped.join("\\n"))
}

fn dot(dags: &[Dag]) -> String {
    let ids = ids(dags);
    let mut s =
        String::from("digraph krxflow {\n  rankdir=LR;\n  node [fontname=\"sans-serif\"];\n");
    for (i, d) in dags.iter().enumerate() {
        let title = title(d);
        let _ = writeln!(
            s,
            "  subgraph cluster_{i} {{\n    label={};",
            dot_label(&[&title])
        );
        for t in &d.tasks {
            let id = &ids.tasks[&(t.dag.as_str(), t.name.as_str())];
            let label = dot_label(&[&t.name, &t.op]);
            let fill = t.state.as_deref().map_or_else(String::new, |st| {
                let (fill, stroke) = colours(st);
                format!(", style=filled, fillcolor=\"{fill}\", color=\"{stroke}\"")
            });
            let _ = writeln!(s, "    {id} [shape=box, label={label}{fill}];");
        }
        s.push_str("  }\n");
    }
    for (table, id) in &ids.tables {
        let _ = writeln!(s, "  {id} [shape=cylinder, label={}];", dot_label(&[table]));
    }
    for (from, to, dashed) in edges(dags, &ids) {
        let style = if dashed { " [style=dashed]" } else { "" };
        let _ = writeln!(s, "  {from} -> {to}{style};");
    }
    s.push_str("}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(dag: &str, name: &str, inputs: &[&str], outputs: &[&str], after: &[&str]) -> Task {
        let ports = |tables: &[&str], side: &str| {
            tables
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("{side}{i}"), t.to_string()))
                .collect()
        };
        Task {
            dag: dag.into(),
            name: name.into(),
            op: format!("op.{name}"),
            upstream: after.iter().map(|a| a.to_string()).collect(),
            after: after.iter().map(|a| a.to_string()).collect(),
            inputs: ports(inputs, "in"),
            outputs: ports(outputs, "out"),
            state: None,
            stale: None,
        }
    }

    /// A batch writing predictions from bars, and a match reading them and writing weights the
    /// batch reads back.
    fn the_loop() -> Vec<Dag> {
        vec![
            Dag {
                name: "batch".into(),
                file: "dags/batch.yaml".into(),
                schedule: Some("0 0 16 * * Mon-Fri Asia/Seoul (calendar krx)".into()),
                ds: None,
                run: None,
                tasks: vec![
                    task("batch", "ingest", &[], &["bars"], &[]),
                    Task {
                        upstream: vec!["ingest".into()],
                        ..task(
                            "batch",
                            "ensemble",
                            &["bars", "weights"],
                            &["predictions"],
                            &[],
                        )
                    },
                ],
            },
            Dag {
                name: "match".into(),
                file: "dags/match.yaml".into(),
                schedule: None,
                ds: None,
                run: None,
                tasks: vec![
                    task(
                        "match",
                        "score",
                        &["predictions", "bars"],
                        &["outcomes"],
                        &[],
                    ),
                    Task {
                        upstream: vec!["score".into()],
                        ..task(
                            "match",
                            "weigh",
                            &["outcomes", "weights"],
                            &["weights"],
                            &["score"],
                        )
                    },
                ],
            },
        ]
    }

    #[test]
    fn text_names_each_read_source_and_the_tables_handed_between_dags() {
        let s = text(&the_loop());
        assert!(
            s.contains("batch (dags/batch.yaml): 2 tasks in run order; schedule 0 0 16"),
            "{s}"
        );
        assert!(s.contains("  ensemble  [op.ensemble]  after ingest\n      reads  bars (from ingest), weights (lake)"), "{s}");
        assert!(
            s.contains("match (dags/match.yaml): 2 tasks in run order; on demand"),
            "{s}"
        );
        assert!(
            s.contains("reads  outcomes (from score), weights (its own, as of the run)"),
            "{s}"
        );
        assert!(
            s.contains("Tables one of these DAGs hands another:\n"),
            "{s}"
        );
        assert!(
            s.contains("  predictions: written by batch.ensemble; read by match.score\n"),
            "{s}"
        );
        assert!(
            s.contains("  weights: written by match.weigh; read by batch.ensemble, match.weigh\n"),
            "{s}"
        );
        assert!(
            s.contains("  bars: written by batch.ingest; read by batch.ensemble, match.score\n"),
            "{s}"
        );
        assert!(
            !s.contains("  outcomes:"),
            "outcomes stay inside match: {s}"
        );
    }

    #[test]
    fn mermaid_draws_tasks_in_their_dag_and_each_table_once_between_writer_and_readers() {
        let s = mermaid(&the_loop());
        assert!(s.starts_with("flowchart LR\n"), "{s}");
        assert_eq!(s.matches("subgraph").count(), 2, "{s}");
        assert!(s.contains("  subgraph g1[\"match: on demand\"]\n"), "{s}");
        assert!(
            s.contains("    t1[\"ensemble<br/><i>op.ensemble</i>\"]\n"),
            "{s}"
        );
        let predictions = s
            .lines()
            .find_map(|l| l.strip_suffix("[(\"predictions\")]"))
            .map(str::trim)
            .expect("a node for predictions");
        assert_eq!(s.matches("[(\"predictions\")]").count(), 1, "{s}");
        assert!(s.contains(&format!("  t1 --> {predictions}\n")), "{s}");
        assert!(s.contains(&format!("  {predictions} --> t2\n")), "{s}");
        assert!(s.contains("  t2 -.-> t3\n"), "after: is dashed: {s}");
    }

    #[test]
    fn dot_quotes_every_label_and_clusters_each_dag() {
        let mut dags = the_loop();
        dags[0].tasks[0].name = "in\"gest\\".into();
        let s = dot(&dags);
        assert!(s.starts_with("digraph krxflow {\n"), "{s}");
        assert!(s.ends_with("}\n"), "{s}");
        assert_eq!(s.matches("subgraph cluster_").count(), 2, "{s}");
        assert!(s.contains(r#"label="in\"gest\\\nop.ingest""#), "{s}");
        assert!(s.contains("[shape=cylinder, label=\"predictions\"]"), "{s}");
        assert!(s.contains("  t2 -> t3 [style=dashed];"), "{s}");
    }

    fn record(run_id: &str, state: &str, ended: bool) -> RunRecord {
        let at = chrono::DateTime::from_timestamp(1_733_000_000, 0).unwrap();
        RunRecord {
            run_id: run_id.into(),
            dag: "match".into(),
            ds: NaiveDate::from_ymd_opt(2024, 12, 16).unwrap(),
            state: state.into(),
            trigger: "schedule".into(),
            started: at + chrono::Duration::seconds(i64::from(run_id == "r2")),
            ended: ended.then_some(at),
            tasks_total: 2,
            tasks_failed: 0,
        }
    }

    fn attempt(run_id: &str, task: &str, attempt: i32, state: &str) -> AttemptRecord {
        let at = chrono::DateTime::from_timestamp(1_733_000_000, 0).unwrap();
        AttemptRecord {
            run_id: run_id.into(),
            dag: "match".into(),
            task: task.into(),
            ds: NaiveDate::from_ymd_opt(2024, 12, 16).unwrap(),
            attempt,
            state: state.into(),
            started: at,
            ended: at,
            error: None,
            rows_in: 0,
            rows_out: 0,
            delay_ms: 0,
            op_kind: String::new(),
            op_version: 1,
            params_hash: String::new(),
            fingerprint: String::new(),
            counters: None,
        }
    }

    #[test]
    fn a_run_is_drawn_with_each_tasks_latest_state_coloured() {
        let mut dags = the_loop();
        let ds = NaiveDate::from_ymd_opt(2024, 12, 16).unwrap();
        // r1 failed; r2, started later, retried `score` and found `weigh` up to date.
        let runs = [
            record("r1", "running", false),
            record("r1", "failed", true),
            record("r2", "succeeded", true),
        ];
        let attempts = [
            attempt("r1", "score", 1, "failed"),
            attempt("r2", "score", 1, "failed"),
            attempt("r2", "score", 2, "succeeded"),
        ];
        with_run(&mut dags[1], ds, &runs, &attempts);
        with_run(&mut dags[0], ds, &runs, &attempts);
        let r = dags[1].run.as_ref().unwrap();
        assert_eq!((r.run_id.as_str(), r.state.as_str()), ("r2", "succeeded"));
        let states: Vec<_> = dags[1].tasks.iter().map(|t| t.state.as_deref()).collect();
        assert_eq!(states, [Some("succeeded"), Some("up_to_date")]);
        let t = text(&dags);
        assert!(
            t.contains("  no run for 2024-12-16\n"),
            "the batch has none: {t}"
        );
        assert!(
            t.contains("  run r2 for 2024-12-16: succeeded (schedule, started "),
            "{t}"
        );
        assert!(t.contains("  score  [op.score]  = succeeded\n"), "{t}");
        let m = mermaid(&dags);
        assert!(
            m.contains("subgraph g1[\"match: on demand; 2024-12-16: succeeded\"]"),
            "{m}"
        );
        assert!(
            m.contains("  classDef succeeded fill:#d4edda,stroke:#28a745\n  class t2 succeeded\n"),
            "{m}"
        );
        assert!(m.contains("  class t3 up_to_date\n"), "{m}");
        let d = dot(&dags);
        assert!(d.contains(r##"t2 [shape=box, label="score\nop.score", style=filled, fillcolor="#d4edda", color="#28a745"];"##), "{d}");
    }

    #[test]
    fn a_success_that_no_longer_stands_is_drawn_stale_with_why_and_nothing_else_is() {
        let mut dags = the_loop();
        let ds = NaiveDate::from_ymd_opt(2024, 12, 16).unwrap();
        let runs = [record("r2", "succeeded", true)];
        let attempts = [attempt("r2", "score", 1, "succeeded")];
        with_run(&mut dags[1], ds, &runs, &attempts);
        let why = "`predictions` changed since its success";
        // `weigh` was up to date in the run; `score` succeeded; a name not in the DAG is ignored.
        mark_stale(
            &mut dags[1],
            BTreeMap::from([
                ("weigh".to_string(), why.to_string()),
                ("gone".to_string(), why.to_string()),
            ]),
        );
        let states: Vec<_> = dags[1].tasks.iter().map(|t| t.state.as_deref()).collect();
        assert_eq!(states, [Some("succeeded"), Some("stale")]);
        let t = text(&dags);
        assert!(t.contains(&format!("  = stale: {why}\n")), "{t}");
        assert!(mermaid(&dags).contains("  classDef stale fill:#f6f0c4"));
    }

    #[test]
    fn one_dag_lists_no_handed_tables() {
        let s = text(&the_loop()[..1]);
        assert!(!s.contains("hands another"), "{s}");
    }
}
