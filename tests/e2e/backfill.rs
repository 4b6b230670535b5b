//! End-to-end backfill: dry run, a real SIGKILL mid-way, and the same command finishing the
//! rest with no partition missing or duplicated.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::{count, krxflow, repo_root, text};
use std::time::{Duration, Instant};

/// A count while a backfill is starting: 0 only while the queried table does not exist yet
/// (any other failure fails the test). Assertions after the run use `count`, which never
/// turns a failed query into a number.
fn polled_count(lake: &Path, sql: &str) -> i64 {
    let o = krxflow(lake, &["sql", sql, "--format", "csv"]);
    if !o.status.success() {
        let err = text(&o);
        assert!(
            err.contains("not found") || err.contains("no table") || err.contains("No table"),
            "`{sql}` failed for another reason than a missing table: {err}"
        );
        return 0;
    }
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

const FROM: &str = "2024-10-01";
const TO: &str = "2024-11-29";

#[test]
fn dry_run_lists_every_trading_day_and_changes_nothing() {
    let lake = tempfile::tempdir().unwrap();
    let o = krxflow(
        lake.path(),
        &[
            "backfill",
            "demo",
            "--from",
            "2024-09-13",
            "--to",
            "2024-09-20",
            "--dry-run",
        ],
    );
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    let dates: Vec<&str> = out.lines().map(|l| &l[..10]).collect();
    // 2024-09-16..18 are Chuseok: KRX closed.
    assert_eq!(dates, ["2024-09-13", "2024-09-19", "2024-09-20"], "{out}");
    assert!(out.lines().all(|l| l.contains("run: ingest, returns")));
    assert!(
        !lake.path().join("_krxflow").exists(),
        "a dry run writes nothing"
    );
}

#[test]
fn a_backfill_asked_to_rerun_a_task_reruns_it_with_its_downstream_on_every_day() {
    let lake = tempfile::tempdir().unwrap();
    let range = ["--from", "2024-09-19", "--to", "2024-09-24"];
    let backfill = |extra: &[&str]| {
        let args: Vec<&str> = ["backfill", "demo"]
            .iter()
            .chain(&range)
            .chain(extra)
            .copied()
            .collect();
        krxflow(lake.path(), &args)
    };
    let plain = backfill(&[]);
    assert!(plain.status.success(), "{}", text(&plain));
    let succeeded = |task: &str| {
        count(
            lake.path(),
            &format!(
                "SELECT count(*) FROM _krxflow.task_runs WHERE task = '{task}' AND state = 'succeeded'"
            ),
        )
    };
    // 2024-09-19, 20, 23 and 24.
    assert_eq!((succeeded("ingest"), succeeded("returns")), (4, 4));

    let plan = backfill(&["--rerun", "returns", "--dry-run"]);
    assert!(plan.status.success(), "{}", text(&plan));
    let out = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(
        out.lines().all(|l| l.ends_with("run: returns  (Missing)")),
        "{out}"
    );

    let rerun = backfill(&["--rerun", "returns"]);
    assert!(rerun.status.success(), "{}", text(&rerun));
    assert!(
        text(&rerun).contains("backfill demo:2024-09-19:2024-09-24:rerun=returns"),
        "{}",
        text(&rerun)
    );
    assert_eq!((succeeded("ingest"), succeeded("returns")), (4, 8));
    assert_eq!(
        count(
            lake.path(),
            "SELECT count(*) FROM (SELECT DISTINCT date, code FROM features_returns)"
        ),
        count(lake.path(), "SELECT count(*) FROM features_returns"),
        "the rerun rewrote its partitions, never duplicated them"
    );

    let unknown = backfill(&["--rerun", "retruns"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown)
            .contains("--rerun retruns: no such task in DAG `demo` (did you mean `returns`?)"),
        "{}",
        text(&unknown)
    );
    let all = backfill(&["--rerun", "returns", "--reprocess", "all"]);
    assert_eq!(all.status.code(), Some(2));
    assert!(
        text(&all).contains("--reprocess all already runs every task"),
        "{}",
        text(&all)
    );
    assert_eq!(succeeded("returns"), 8, "a refused command ran nothing");
}

#[test]
fn a_backfill_killed_mid_way_finishes_on_rerun_with_nothing_missing_or_duplicated() {
    let lake = tempfile::tempdir().unwrap();
    let args = [
        "backfill",
        "demo",
        "--from",
        FROM,
        "--to",
        TO,
        "--parallel",
        "1",
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_krxflow"))
        .current_dir(repo_root())
        .env("KRXFLOW_LAKE", lake.path())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until a few partitions are done, then SIGKILL (no chance to clean up).
    let done_sql = "SELECT count(DISTINCT ds) FROM _krxflow.runs WHERE state = 'succeeded'";
    let t0 = Instant::now();
    while polled_count(lake.path(), done_sql) < 3 {
        assert!(t0.elapsed() < Duration::from_secs(300), "no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let before = count(lake.path(), done_sql);
    // KRX trading days in the range, as the planner sees them (10-01, 10-03, 10-09 closed).
    let plan = krxflow(
        lake.path(),
        &["backfill", "demo", "--from", FROM, "--to", TO, "--dry-run"],
    );
    let total = String::from_utf8_lossy(&plan.stdout).lines().count() as i64;
    assert_eq!(total, 41, "trading days 2024-10-01..2024-11-29");
    assert!(before < total, "killed mid-way: {before} of {total} done");

    let o = krxflow(lake.path(), &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("{total} partitions")), "{out}");
    assert!(
        out.contains("skipped"),
        "done partitions are skipped: {out}"
    );
    assert_eq!(count(lake.path(), done_sql), total, "0 missing partitions");
    let rows = count(lake.path(), "SELECT count(*) FROM features_returns");
    let distinct = count(
        lake.path(),
        "SELECT count(*) FROM (SELECT DISTINCT code, date FROM features_returns)",
    );
    assert_eq!(rows, distinct, "0 duplicated rows");
    let recorded = krxflow(lake.path(), &["backfills", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&recorded.stdout).unwrap();
    assert_eq!(v[0]["state"], "succeeded", "{v}");
    assert_eq!(v[0]["total"], total);
}
