//! End-to-end: the README's main command, and the CLI contract (exit codes, messages).

use std::path::Path;
use std::process::Command;

use crate::common::{count, krxflow, repo_root, text};

#[test]
fn readme_main_command_fills_the_lake_and_reruns_idempotently() {
    let lake = tempfile::tempdir().unwrap();
    // The README's main command on a short range (the default is ~120 trading days).
    let run_demo = || {
        Command::new("bash")
            .arg(repo_root().join("scripts/demo.sh"))
            .env("KRXFLOW_BIN", env!("CARGO_BIN_EXE_krxflow"))
            .env("KRXFLOW_SKIP_SETUP", "1")
            .env("KRXFLOW_LAKE", lake.path())
            .env("KRXFLOW_FROM", "2024-11-25")
            .env("KRXFLOW_DATE", "2024-12-06")
            .output()
            .expect("demo script runs")
    };
    let first = run_demo();
    let out = text(&first);
    assert!(first.status.success(), "demo failed:\n{out}");
    assert!(
        out.contains("replayed 22 scheduled runs of 4 DAGs"),
        "{out}"
    );
    // The members that cannot run on a fresh machine say why; the latest predictions, hit
    // rates and weights are printed.
    assert!(
        out.contains("forecast_chronos") && out.contains("skipped: model folder"),
        "{out}"
    );
    assert!(
        out.contains("ets,lgbm,linear"),
        "LightGBM and the linear ranker join after the Sunday retrains:\n{out}"
    );
    assert!(
        out.contains("krxflow lineage predictions --key 900001"),
        "{out}"
    );
    // The sentiment model is trained before the first day, so every headline is scored and
    // the sentiment features are real (the planted signal's carrier).
    let news = count(lake.path(), "SELECT count(*) FROM news");
    assert!(news > 10_000, "{news} headlines");
    assert_eq!(
        count(lake.path(), "SELECT count(*) FROM news_scores"),
        news,
        "every headline scored"
    );
    assert!(
        count(
            lake.path(),
            "SELECT count(*) FROM _krxflow.task_runs WHERE task = 'score_news' AND state <> 'succeeded'"
        ) == 0,
        "{out}"
    );

    let tables = krxflow(lake.path(), &["tables", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&tables.stdout).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["table"].as_str())
        .collect();
    for t in [
        "ohlcv_daily",
        "features_daily",
        "ets_forecasts",
        "lgbm_predictions",
        "linear_predictions",
        "predictions",
        "prediction_members",
        "prediction_outcomes",
        "ensemble_weights",
        "model_performance",
        "_krxflow/runs",
        "_krxflow/task_runs",
        "_krxflow/lineage",
    ] {
        assert!(names.contains(&t), "missing table {t} in {names:?}");
    }
    let bars = count(lake.path(), "SELECT count(*) FROM ohlcv_daily");
    let preds = count(lake.path(), "SELECT count(*) FROM predictions");
    assert_eq!(
        preds,
        10 * 20 * 3,
        "10 trading days x 20 tickers x 3 horizons"
    );
    assert_eq!(
        count(
            lake.path(),
            "SELECT count(*) FROM ohlcv_daily WHERE date > DATE '2024-12-06'"
        ),
        0
    );

    // The same command again: every run is up to date, nothing is rewritten or duplicated.
    let again = run_demo();
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(count(lake.path(), "SELECT count(*) FROM ohlcv_daily"), bars);
    assert_eq!(
        count(lake.path(), "SELECT count(*) FROM predictions"),
        preds
    );
    let cached = krxflow(lake.path(), &["run", "daily_batch", "--date", "2024-12-06"]);
    assert!(text(&cached).contains("up_to_date"), "{}", text(&cached));
    // `krxflow runs` says how many tasks were up to date, and why a task was skipped.
    let runs = text(&krxflow(lake.path(), &["runs", "--limit", "1"]));
    assert!(runs.contains(" up_to_date"), "{runs}");
    let runs = text(&krxflow(
        lake.path(),
        &["runs", "--dag", "daily_batch", "--limit", "30"],
    ));
    assert!(
        runs.lines()
            .any(|l| l.contains("  forecast_chronos  skipped: model folder")),
        "{runs}"
    );
    let listed = krxflow(
        lake.path(),
        &["--json", "runs", "--dag", "daily_batch", "--limit", "50"],
    );
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    // The second command's runs found the tasks before the ensemble up to date (no record);
    // the first command's ran every task.
    let ran = listed
        .as_array()
        .and_then(|runs| runs.iter().find(|r| r["tasks_up_to_date"] == 0))
        .unwrap_or_else(|| panic!("no run that ran its tasks: {listed}"));
    let chronos = &ran["tasks"]["forecast_chronos"];
    assert!(
        chronos["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("skipped: ")),
        "{ran}"
    );
    assert!(
        ran["tasks"]["features"]["rows_out"].as_i64() > Some(0),
        "{ran}"
    );
    // A query without rows still prints its columns.
    let none = krxflow(
        lake.path(),
        &["sql", "SELECT code, close FROM ohlcv_daily WHERE close < 0"],
    );
    assert!(
        none.status.success() && text(&none).contains("| code | close |"),
        "{}",
        text(&none)
    );

    // Compaction packs each table's files (engine tables included) and changes no row.
    let runs = count(lake.path(), "SELECT count(*) FROM _krxflow.task_runs");
    let compact = krxflow(lake.path(), &["compact", "--json"]);
    assert!(compact.status.success(), "{}", text(&compact));
    let done: serde_json::Value = serde_json::from_slice(&compact.stdout).unwrap();
    let done = done.as_array().unwrap();
    assert!(
        done.iter()
            .any(|c| c["table"] == "_krxflow/task_runs" && c["files_added"] == 1),
        "{done:?}"
    );
    assert_eq!(count(lake.path(), "SELECT count(*) FROM ohlcv_daily"), bars);
    assert_eq!(
        count(lake.path(), "SELECT count(*) FROM _krxflow.task_runs"),
        runs
    );
    // A misspelt table is a usage error, not a silent "0 compacted".
    let typo = krxflow(lake.path(), &["compact", "ohlcv_dayly"]);
    assert_eq!(typo.status.code(), Some(2), "{}", text(&typo));
    assert!(
        text(&typo).contains("no table `ohlcv_dayly`"),
        "{}",
        text(&typo)
    );
}

/// `krxflow validate` on `yaml` written to `dir/name`: asserts exit code 2, returns the output.
fn validate_refuses(dir: &Path, name: &str, yaml: &str) -> String {
    let file = dir.join(name);
    std::fs::write(&file, yaml).unwrap();
    let o = krxflow(dir, &["validate", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    text(&o)
}

#[test]
fn validate_reports_file_line_and_exits_2_for_an_invalid_dag() {
    let dir = tempfile::tempdir().unwrap();
    let out = validate_refuses(
        dir.path(),
        "bad.yaml",
        "dag: bad\ntasks:\n  a:\n    op: ingest.synthetik\n    outputs: { bars: ohlcv_daily }\n",
    );
    assert!(out.contains("bad.yaml:4:"), "{out}");
    assert!(out.contains("ingest.synthetik"), "{out}");

    let ok = krxflow(dir.path(), &["validate", "dags/demo.yaml"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
}

#[test]
fn an_ensemble_without_any_member_input_is_refused_at_validation_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = validate_refuses(
        dir.path(),
        "nomember.yaml",
        "dag: nomember\ntasks:\n  ensemble:\n    op: ensemble.combine\n    inputs: { weights: ensemble_weights }\n    outputs: { predictions: predictions, members: prediction_members }\n",
    );
    assert!(out.contains("nomember.yaml:5:"), "{out}");
    assert!(
        out.contains("needs at least one `member.<member>` input"),
        "{out}"
    );
}

#[test]
fn every_shipped_dag_validates_for_both_universes() {
    let dir = tempfile::tempdir().unwrap();
    let mut shipped: Vec<String> = std::fs::read_dir(repo_root().join("dags"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| format!("dags/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    shipped.sort();
    assert!(shipped.len() >= 8, "{shipped:?}");
    for universe in ["synthetic", "krx30"] {
        let o = Command::new(env!("CARGO_BIN_EXE_krxflow"))
            .current_dir(repo_root())
            .env("KRXFLOW_LAKE", dir.path())
            .env("KRXFLOW_UNIVERSE", universe)
            .arg("validate")
            .args(&shipped)
            .output()
            .unwrap();
        let out = text(&o);
        assert_eq!(o.status.code(), Some(0), "{universe}:\n{out}");
        for dag in &shipped {
            assert!(
                out.contains(&format!("ok  {dag}")),
                "{universe}: {dag}\n{out}"
            );
        }
    }
}

/// The task block `name:` of a DAG file, comments and blank lines left out.
fn task_block(path: &str, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join(path)).unwrap();
    let head = format!("  {name}:");
    text.lines()
        .skip_while(|l| *l != head)
        .take_while(|l| *l == head || l.starts_with("    ") || l.trim().is_empty())
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_reensemble_dags_validate_and_run_the_shipped_tasks_unchanged() {
    let o = Command::new(env!("CARGO_BIN_EXE_krxflow"))
        .current_dir(repo_root())
        .args([
            "validate",
            "scripts/reensemble/ensemble_only.yaml",
            "scripts/reensemble/match_only.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for (shipped, copy, task) in [
        (
            "dags/daily_batch.yaml",
            "scripts/reensemble/ensemble_only.yaml",
            "ensemble",
        ),
        (
            "dags/match_outcomes.yaml",
            "scripts/reensemble/match_only.yaml",
            "match",
        ),
    ] {
        let (a, b) = (task_block(shipped, task), task_block(copy, task));
        assert!(a.len() >= 3, "{shipped}: {a:?}");
        assert_eq!(a, b, "{copy}'s `{task}` differs from {shipped}'s");
    }
}

/// `dir/fails.yaml`: DAG `fails`, whose one task reads a CSV folder that does not exist.
fn failing_dag(dir: &Path) -> std::path::PathBuf {
    let dag = dir.join("fails.yaml");
    std::fs::write(
        &dag,
        "dag: fails\ntasks:\n  ingest:\n    op: ingest.ohlcv\n    with: { source: csv_dir, path: /nonexistent/krxflow }\n    outputs: { bars: ohlcv_daily, rejects: ohlcv_rejects }\n",
    )
    .unwrap();
    dag
}

#[test]
fn a_failed_run_exits_1_and_names_the_failure() {
    let dir = tempfile::tempdir().unwrap();
    let dag = failing_dag(dir.path());
    let o = krxflow(
        dir.path(),
        &["run", dag.to_str().unwrap(), "--date", "2024-12-16"],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("failed") && out.contains("/nonexistent/krxflow"),
        "{out}"
    );
    // `krxflow runs` lists the run and, under it, why the task failed.
    let runs = text(&krxflow(dir.path(), &["runs"]));
    assert!(
        runs.lines()
            .any(|l| l.contains("  ingest  failed: ") && l.contains("/nonexistent/krxflow")),
        "{runs}"
    );
}

#[test]
fn runs_lists_only_the_runs_of_the_state_dag_and_date_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let fails = failing_dag(dir.path());
    for day in ["2024-12-13", "2024-12-16"] {
        let ok = krxflow(dir.path(), &["run", "demo", "--date", day]);
        assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    }
    let failed = krxflow(
        dir.path(),
        &["run", fails.to_str().unwrap(), "--date", "2024-12-16"],
    );
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    let runs = |args: &[&str]| -> Vec<(String, String, String)> {
        let o = krxflow(dir.path(), &[&["--json", "runs"], args].concat());
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let mut rows: Vec<(String, String, String)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let f = |k: &str| r[k].as_str().unwrap().to_string();
                (f("dag"), f("ds"), f("state"))
            })
            .collect();
        rows.sort();
        rows
    };
    let row = |dag: &str, ds: &str, state: &str| (dag.into(), ds.into(), state.into());
    assert_eq!(
        runs(&["--state", "failed"]),
        vec![row("fails", "2024-12-16", "failed")]
    );
    assert_eq!(
        runs(&["--state", "succeeded"]),
        vec![
            row("demo", "2024-12-13", "succeeded"),
            row("demo", "2024-12-16", "succeeded")
        ]
    );
    assert_eq!(
        runs(&["--date", "2024-12-16"]),
        vec![
            row("demo", "2024-12-16", "succeeded"),
            row("fails", "2024-12-16", "failed")
        ]
    );
    assert_eq!(
        runs(&["--dag", "demo", "--date", "2024-12-13"]),
        vec![row("demo", "2024-12-13", "succeeded")]
    );
    let none = text(&krxflow(dir.path(), &["runs", "--state", "cancelled"]));
    assert!(none.contains("no run matches"), "{none}");
    let bad = krxflow(dir.path(), &["runs", "--date", "16/12/2024"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
}

#[test]
fn bad_usage_exits_2_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let weekend = krxflow(
        dir.path(),
        &["run", "dags/demo.yaml", "--date", "2024-12-15"],
    );
    assert_eq!(weekend.status.code(), Some(2));
    assert!(
        text(&weekend).contains("not a trading day"),
        "{}",
        text(&weekend)
    );
    let bad_date = krxflow(
        dir.path(),
        &["run", "dags/demo.yaml", "--date", "16/12/2024"],
    );
    assert_eq!(bad_date.status.code(), Some(2));
    let write = krxflow(dir.path(), &["sql", "CREATE TABLE x AS SELECT 1"]);
    assert_eq!(write.status.code(), Some(2), "{}", text(&write));
    let no_lineage = krxflow(dir.path(), &["lineage", "nothing_here"]);
    assert_eq!(no_lineage.status.code(), Some(2));
    // A reversed range is named as such, before anything is read (the lake is empty here).
    let reversed = krxflow(
        dir.path(),
        &["eval", "--from", "2024-12-16", "--to", "2024-12-02"],
    );
    assert_eq!(reversed.status.code(), Some(2));
    assert!(
        text(&reversed).contains("--from 2024-12-16 is after --to 2024-12-02"),
        "{}",
        text(&reversed)
    );
    let cost = krxflow(dir.path(), &["eval", "--cost-bps=-5"]);
    assert_eq!(cost.status.code(), Some(2));
    assert!(
        text(&cost).contains("--cost-bps -5 is not a cost"),
        "{}",
        text(&cost)
    );
    let rerun = krxflow(
        dir.path(),
        &["run", "demo", "--date", "2024-12-16", "--rerun", "retruns"],
    );
    assert_eq!(rerun.status.code(), Some(2));
    assert!(
        text(&rerun)
            .contains("--rerun retruns: no such task in DAG `demo` (did you mean `returns`?)"),
        "{}",
        text(&rerun)
    );
    let drop = krxflow(dir.path(), &["eval", "--n-drop", "0"]);
    assert_eq!(drop.status.code(), Some(2));
    assert!(
        text(&drop).contains("--n-drop 0 would never trade"),
        "{}",
        text(&drop)
    );
}

#[test]
fn a_mistyped_dag_name_is_refused_with_the_closest_shipped_dag() {
    let dir = tempfile::tempdir().unwrap();
    let run = krxflow(dir.path(), &["run", "daily_bach", "--date", "2024-12-16"]);
    let out = text(&run);
    assert_eq!(run.status.code(), Some(2), "{out}");
    assert!(
        out.contains("no DAG `daily_bach`: neither a file nor dags/daily_bach.yaml")
            && out.contains("(did you mean `daily_batch`?)")
            && out.contains("match_outcomes"),
        "{out}"
    );
    let validate = krxflow(dir.path(), &["validate", "dags/demo.yaml", "demoo"]);
    let out = text(&validate);
    assert_eq!(validate.status.code(), Some(2), "{out}");
    assert!(
        out.contains("ok  dags/demo.yaml") && out.contains("(did you mean `demo`?)"),
        "{out}"
    );
    // A path is the loader's to report: it names the file it could not read.
    let path = krxflow(
        dir.path(),
        &["run", "nowhere/x.yaml", "--date", "2024-12-16"],
    );
    assert!(
        text(&path).contains("nowhere/x.yaml:1:1: error[io]: cannot read DAG file")
            && text(&path).contains("(1 problem)"),
        "{}",
        text(&path)
    );
}

#[test]
fn graph_joins_the_shipped_loop_by_the_tables_one_dag_hands_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let g = krxflow(dir.path(), &["graph", "daily_batch", "match_outcomes"]);
    let out = text(&g);
    assert!(g.status.success(), "{out}");
    assert!(
        out.contains("  predictions: written by daily_batch.ensemble; read by daily_batch.ensemble, match_outcomes.match")
            && out.contains("  ensemble_weights: written by match_outcomes.weights; read by daily_batch.ensemble, match_outcomes.weights"),
        "the loop's hand-offs: {out}"
    );
    let j = krxflow(dir.path(), &["--json", "graph", "match_outcomes"]);
    assert!(j.status.success(), "{}", text(&j));
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    let tasks = &v["dags"][0]["tasks"];
    assert_eq!(tasks[0]["name"], "match");
    assert_eq!(tasks[1]["name"], "weights");
    assert_eq!(tasks[1]["upstream"], serde_json::json!(["match"]));
    assert_eq!(tasks[1]["inputs"]["outcomes"], "prediction_outcomes");
    let m = krxflow(
        dir.path(),
        &["graph", "match_outcomes", "--format", "mermaid"],
    );
    assert!(
        text(&m).starts_with("flowchart LR\n") && text(&m).contains("[(\"prediction_outcomes\")]"),
        "{}",
        text(&m)
    );
    // A run's graph: each task's state in the DAG's latest run of the day.
    let run = krxflow(dir.path(), &["run", "demo", "--date", "2024-12-16"]);
    assert!(run.status.success(), "{}", text(&run));
    let g = krxflow(dir.path(), &["graph", "demo", "--date", "2024-12-16"]);
    let out = text(&g);
    assert!(
        out.contains("for 2024-12-16: succeeded (manual, started ")
            && out.contains("  ingest  [ingest.synthetic]  = succeeded\n"),
        "{out}"
    );
    let none = text(&krxflow(
        dir.path(),
        &["graph", "demo", "--date", "2024-12-13"],
    ));
    assert!(none.contains("  no run for 2024-12-13\n"), "{none}");
    let bad = krxflow(dir.path(), &["graph", "match_outcome"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(
        text(&bad).contains("(did you mean `match_outcomes`?)"),
        "{}",
        text(&bad)
    );
}

/// docs/architecture.md draws the scheduled loop with `krxflow graph`: the drawing is the
/// command's output for the DAGs as shipped, with every variable at its default.
/// Regenerate it with `KRXFLOW_BLESS=1 cargo test -p krxflow-cli --test e2e the_loop_drawn`.
#[test]
fn the_loop_drawn_in_the_architecture_doc_is_the_shipped_dags() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_krxflow"));
    cmd.current_dir(repo_root()).env("KRXFLOW_LAKE", dir.path());
    for (var, _) in std::env::vars().filter(|(k, _)| k.starts_with("KRXFLOW_")) {
        cmd.env_remove(var);
    }
    let dags = [
        "daily_batch",
        "match_outcomes",
        "retrain_weekly",
        "retrain_linear",
    ];
    let out = cmd
        .arg("graph")
        .args(dags)
        .args(["--format", "mermaid"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let drawn = String::from_utf8(out.stdout).unwrap();
    let path = repo_root().join("docs/architecture.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (begin, end) = (
        "<!-- graph:begin -->\n```mermaid\n",
        "```\n<!-- graph:end -->",
    );
    let (head, rest) = doc.split_once(begin).expect("the graph:begin marker");
    let (in_doc, tail) = rest.split_once(end).expect("the graph:end marker");
    if std::env::var("KRXFLOW_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, format!("{head}{begin}{drawn}{end}{tail}")).unwrap();
        return;
    }
    assert_eq!(
        in_doc, drawn,
        "docs/architecture.md's drawing of the loop is stale: regenerate it with \
         KRXFLOW_BLESS=1 cargo test -p krxflow-cli --test e2e the_loop_drawn"
    );
}

#[test]
fn ops_lists_every_operator_with_params_and_ports() {
    let dir = tempfile::tempdir().unwrap();
    let o = krxflow(dir.path(), &["ops", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let kinds: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|op| op["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"ingest.synthetic"), "{kinds:?}");
    assert!(kinds.contains(&"features.returns"), "{kinds:?}");
    let synth = v
        .as_array()
        .unwrap()
        .iter()
        .find(|op| op["kind"] == "ingest.synthetic")
        .unwrap();
    assert!(!synth["params"].as_array().unwrap().is_empty());
    assert!(!synth["outputs"].as_array().unwrap().is_empty());
}

/// A DAG whose `returns` task checks that no code moved today: with the synthetic universe
/// some did, so the check fails with `severity`.
fn checked_dag(dir: &Path, severity: &str) -> std::path::PathBuf {
    let dag = dir.join(format!("checked_{severity}.yaml"));
    std::fs::write(
        &dag,
        format!(
            "dag: checked\ntasks:\n  ingest:\n    op: ingest.synthetic\n    with: {{ tickers: 3, seed: 7, lookback_days: 30 }}\n    outputs: {{ bars: ohlcv_daily, news: news, universe: universe }}\n  returns:\n    op: features.returns\n    inputs: {{ bars: ohlcv_daily }}\n    outputs: {{ features: features_returns }}\n    checks:\n      has_rows: SELECT 1 AS missing WHERE (SELECT count(*) FROM features_returns WHERE date = {{ds}}) = 0\n      no_moves:\n        severity: {severity}\n        sql: SELECT code, date, ret_1d FROM features_returns WHERE date = {{ds}} AND ret_1d <> 0 ORDER BY code\n"
        ),
    )
    .unwrap();
    dag
}

#[test]
fn a_failed_check_is_told_by_run_and_runs_and_fails_the_task_only_when_it_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let warn = checked_dag(dir.path(), "warn");
    let run = |dag: &Path| {
        krxflow(
            &lake,
            &[
                "run",
                dag.to_str().unwrap(),
                "--date",
                "2024-12-16",
                "--reprocess",
                "all",
            ],
        )
    };
    let warned = run(&warn);
    assert_eq!(warned.status.code(), Some(0), "{}", text(&warned));
    let out = text(&warned);
    assert!(out.contains("checks: 1 of 2 passed"), "{out}");
    assert!(
        out.contains("returns: check `no_moves` (warn): 3 failing rows, e.g. code="),
        "{out}"
    );
    let runs = text(&krxflow(&lake, &["runs"]));
    assert!(
        runs.contains("returns  check `no_moves` (warn): 3 failing rows"),
        "{runs}"
    );
    let recorded = count(
        &lake,
        "SELECT count(*) FROM _krxflow.checks WHERE \"check\" = 'no_moves' AND state = 'failed' AND failing_rows = 3",
    );
    assert_eq!(recorded, 1);

    let failed = run(&checked_dag(dir.path(), "error"));
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    let out = text(&failed);
    assert!(
        out.lines().any(|l| l.starts_with("returns ")
            && l.contains("failed")
            && l.contains("check `no_moves` (error): 3 failing rows")),
        "the failed task's error is its check: {out}"
    );

    // A check that is not one query is an error at its line when the DAG loads.
    let bad = dir.path().join("bad.yaml");
    let text_of = std::fs::read_to_string(&warn).unwrap().replace(
        "SELECT code, date, ret_1d FROM features_returns WHERE date = {ds} AND ret_1d <> 0 ORDER BY code",
        "DELETE FROM features_returns WHERE ret_1d <> 0",
    );
    std::fs::write(&bad, text_of).unwrap();
    let o = krxflow(&lake, &["validate", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("bad.yaml:15:")
            && text(&o).contains("check `no_moves`: must be a query (SELECT or WITH ... SELECT)"),
        "{}",
        text(&o)
    );
}
