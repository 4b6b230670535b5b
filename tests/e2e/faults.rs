//! Transient store faults (`KRXFLOW_TEST_FAULTS`, see `crates/lake/src/store`): every call of
//! the lake's object store (Delta's log reads and commits, DataFusion's scans, listings, the
//! engine tables) fails with a set probability before it reaches the disk.
//!
//! - At 30% per call a backfill completes within its retry policy (each call retried by the
//!   lake, each task by its DAG) and ends with exactly the rows of a fault-free backfill.
//! - With 30% of operator runs failing as well (`op=0.3`: before the operator runs, or after it
//!   ran with its outputs thrown away), a DAG whose tasks retry enough ends the same.
//! - At 100% a run fails with an error that says what happened, and every table stays at the
//!   version it had.

use std::path::Path;
use std::process::Output;

use crate::common::{count, krxflow, repo_root, text};

const FROM: &str = "2024-10-01";
const TO: &str = "2024-10-18";

fn with_faults(lake: &Path, faults: &str, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_krxflow"))
        .current_dir(repo_root())
        .env("KRXFLOW_LAKE", lake)
        .env("KRXFLOW_TEST_FAULTS", faults)
        .args([
            "--log",
            "warn,krxflow_lake::faults=debug,krxflow_exec::faults=debug",
        ])
        .args(args)
        .output()
        .expect("krxflow runs")
}

/// Every data table's rows, a checksum of the bars and the duplicate keys.
fn snapshot(lake: &Path) -> Vec<(String, i64)> {
    let q = |sql: &str| count(lake, sql);
    vec![
        ("ohlcv_daily".into(), q("SELECT count(*) FROM ohlcv_daily")),
        ("news".into(), q("SELECT count(*) FROM news")),
        ("universe".into(), q("SELECT count(*) FROM universe")),
        (
            "features_returns".into(),
            q("SELECT count(*) FROM features_returns"),
        ),
        (
            "sum(close) x 1000".into(),
            q("SELECT CAST(round(sum(close) * 1000) AS BIGINT) FROM ohlcv_daily"),
        ),
        (
            "sum(ret_5d) x 1e6".into(),
            q("SELECT CAST(round(sum(ret_5d) * 1000000) AS BIGINT) FROM features_returns"),
        ),
        (
            "duplicate keys".into(),
            q(
                "SELECT count(*) FROM (SELECT code, date FROM ohlcv_daily GROUP BY code, date \
               HAVING count(*) > 1)",
            ) + q("SELECT count(*) FROM (SELECT id FROM news GROUP BY id HAVING count(*) > 1)"),
        ),
    ]
}

/// (table, version) of every table, engine tables included.
fn versions(lake: &Path) -> Vec<(String, i64)> {
    let o = krxflow(lake, &["--json", "tables"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("tables json");
    v.as_array()
        .expect("array")
        .iter()
        .map(|t| {
            (
                t["table"].as_str().unwrap_or_default().to_string(),
                t["version"].as_i64().unwrap_or(-2),
            )
        })
        .collect()
}

fn injected(o: &Output, what: &str) -> usize {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.contains(&format!("injected {what} fault")))
        .count()
}

/// The demo DAG with a retry policy for a 30% failure rate per attempt: 10 retries 10 ms
/// apart (a task then fails with probability 0.3^11, about 2e-6).
fn demo_with_retries(dir: &Path) -> String {
    let yaml = std::fs::read_to_string(repo_root().join("dags/demo.yaml")).expect("demo.yaml");
    let policy =
        "retries: { max: 2, backoff: exponential, base: 1s, max_delay: 30s, jitter: full }";
    assert!(yaml.contains(policy), "demo.yaml's retry policy changed");
    let yaml = yaml.replace(
        policy,
        "retries: { max: 10, backoff: fixed, base: 10ms, jitter: none }",
    );
    let path = dir.join("demo.yaml");
    std::fs::write(&path, yaml).expect("write dag");
    path.to_string_lossy().into_owned()
}

/// The attempts that failed, for a failure message.
fn failed_attempts(lake: &Path) -> String {
    let why = krxflow(
        lake,
        &[
            "sql",
            "SELECT ds, task, attempt, state, error FROM _krxflow.task_runs \
             WHERE state <> 'succeeded' ORDER BY ds, task, attempt",
        ],
    );
    text(&why)
}

#[test]
fn a_backfill_under_30_percent_store_faults_ends_equal_to_a_fault_free_one() {
    let args = ["backfill", "demo", "--from", FROM, "--to", TO];
    let reference = tempfile::tempdir().unwrap();
    let o = krxflow(reference.path(), &args);
    assert!(o.status.success(), "{}", text(&o));
    let expected = snapshot(reference.path());

    let lake = tempfile::tempdir().unwrap();
    let o = with_faults(lake.path(), "store=0.3,seed=7", &args);
    assert!(
        o.status.success(),
        "under 30% faults the backfill failed; attempts that failed:\n{}",
        failed_attempts(lake.path())
    );
    let faults = injected(&o, "store");
    assert!(faults > 100, "only {faults} faults were injected");
    assert_eq!(snapshot(lake.path()), expected, "not the fault-free rows");
    let days = "SELECT count(DISTINCT ds) FROM _krxflow.runs WHERE state = 'succeeded'";
    assert_eq!(count(lake.path(), days), count(reference.path(), days));
    let retried = count(
        lake.path(),
        "SELECT count(*) FROM _krxflow.task_runs WHERE state <> 'succeeded'",
    );
    eprintln!(
        "faults: {faults} store calls failed on purpose; {retried} task attempts failed and were \
         retried; the rows equal the fault-free backfill's"
    );
}

#[test]
fn a_backfill_under_30_percent_store_and_operator_faults_ends_equal_to_a_fault_free_one() {
    let dags = tempfile::tempdir().unwrap();
    let dag = demo_with_retries(dags.path());
    let args = ["backfill", dag.as_str(), "--from", FROM, "--to", TO];
    let reference = tempfile::tempdir().unwrap();
    let o = krxflow(reference.path(), &args);
    assert!(o.status.success(), "{}", text(&o));
    let expected = snapshot(reference.path());

    let lake = tempfile::tempdir().unwrap();
    let o = with_faults(lake.path(), "store=0.3,op=0.3,seed=11", &args);
    assert!(
        o.status.success(),
        "under 30% store and operator faults the backfill failed; attempts that failed:\n{}",
        failed_attempts(lake.path())
    );
    let (store, ops) = (injected(&o, "store"), injected(&o, "operator"));
    assert_eq!(snapshot(lake.path()), expected, "not the fault-free rows");
    let attempts = |state: &str| {
        count(
            lake.path(),
            &format!("SELECT count(*) FROM _krxflow.task_runs WHERE state LIKE '{state}'"),
        )
    };
    // About 30% of operator runs failed (a binomial share of a few dozen runs).
    let share = ops as f64 / attempts("%") as f64;
    assert!(
        store > 100 && (0.1..0.5).contains(&share),
        "{store} store faults; {ops} operator faults in {} attempts",
        attempts("%")
    );
    assert!(
        attempts("failed_transient") >= ops as i64,
        "every operator fault is a failed attempt"
    );
    assert_eq!(attempts("failed"), 0);
    eprintln!(
        "faults: {store} store calls and {ops} of {} operator runs failed on purpose; {} task \
         attempts failed and were retried; the rows equal the fault-free backfill's",
        attempts("%"),
        attempts("failed_transient")
    );
}

#[test]
fn at_100_percent_operator_faults_a_run_fails_clearly_after_its_retries_and_no_table_moves() {
    let lake = tempfile::tempdir().unwrap();
    let o = krxflow(lake.path(), &["run", "demo", "--date", "2024-10-02"]);
    assert!(o.status.success(), "{}", text(&o));
    let (before, rows_before) = (versions(lake.path()), snapshot(lake.path()));
    let dags = tempfile::tempdir().unwrap();
    let dag = demo_with_retries(dags.path());
    let o = with_faults(lake.path(), "op=1", &["run", &dag, "--date", "2024-10-04"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("failed on purpose") && out.contains("(KRXFLOW_TEST_FAULTS: op=1)"),
        "the error does not say what failed: {out}"
    );
    // The data tables are where they were (the engine's own tables record the failure).
    let data = |v: Vec<(String, i64)>| -> Vec<(String, i64)> {
        v.into_iter().filter(|(t, _)| !t.starts_with('_')).collect()
    };
    assert_eq!(data(versions(lake.path())), data(before), "a table moved");
    assert_eq!(snapshot(lake.path()), rows_before);
    let attempts = count(
        lake.path(),
        "SELECT max(attempt) FROM _krxflow.task_runs WHERE ds = DATE '2024-10-04'",
    );
    assert_eq!(attempts, 11, "the task's whole retry policy was used");
}

#[test]
fn a_backfill_whose_partitions_fail_says_which_task_failed_and_why_for_each() {
    let lake = tempfile::tempdir().unwrap();
    let dags = tempfile::tempdir().unwrap();
    let dag = demo_with_retries(dags.path());
    let args = [
        "backfill",
        &dag,
        "--from",
        "2024-10-07",
        "--to",
        "2024-10-08",
    ];
    let o = with_faults(lake.path(), "op=1", &args);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    for ds in ["2024-10-07", "2024-10-08"] {
        let said = format!("demo {ds}: task ingest failed after 11 attempts: ");
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&said) && l.contains("failed on purpose")),
            "{ds}'s failure is not explained: {stderr}"
        );
    }
}

#[test]
fn at_100_percent_store_faults_a_run_fails_clearly_and_no_table_moves() {
    let lake = tempfile::tempdir().unwrap();
    let o = krxflow(lake.path(), &["run", "demo", "--date", "2024-10-02"]);
    assert!(o.status.success(), "{}", text(&o));
    let (before, rows_before) = (versions(lake.path()), snapshot(lake.path()));

    let o = with_faults(
        lake.path(),
        "store=1",
        &["run", "demo", "--date", "2024-10-04"],
    );
    assert!(
        !o.status.success(),
        "a run with every store call failing succeeded"
    );
    let out = text(&o);
    assert!(
        out.contains("failed on purpose (KRXFLOW_TEST_FAULTS: store=1)"),
        "the error does not say what failed: {out}"
    );
    assert_eq!(versions(lake.path()), before, "a table moved");
    assert_eq!(snapshot(lake.path()), rows_before);
    // The same day without faults then runs as if nothing had happened.
    let o = krxflow(lake.path(), &["run", "demo", "--date", "2024-10-04"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn a_bad_fault_setting_is_refused_naming_the_variable() {
    let lake = tempfile::tempdir().unwrap();
    let o = with_faults(lake.path(), "store=2", &["tables"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("KRXFLOW_TEST_FAULTS: store=2: not in [0, 1]"),
        "{}",
        text(&o)
    );
}
