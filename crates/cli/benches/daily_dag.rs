//! The real daily DAG over 250 KRX trading days: `krx30` (30 real tickers, KOSPI index, news,
//! sentiment, features, LightGBM predictions) backfilled through the release `krxflow` binary.
//!
//! Steps, all in this one command and one fresh lake:
//! 1. baseline: one cold `krxflow run krx30` for the trading day before the range (empty lake:
//!    every source read whole, all history written);
//! 2. `krxflow run lgbm_train` for that day (per-ticker and pooled models, so every partition of
//!    the range predicts with models trained through an earlier date);
//! 3. measured: `krxflow backfill krx30` over the next 250 trading days, `--parallel 2`.
//!
//! Reported: the backfill's wall time against the 60 s target, seconds per partition, the
//! ratio of the whole backfill to the single cold run, and each task's mean time per partition
//! (from `_krxflow.task_runs`).
//!
//!     cargo bench -p krxflow-cli --bench daily_dag
//!
//! Needs the shared data (`KRXFLOW_DATA`, default `../shared/data`); skipped without it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const PARTITIONS: usize = 250;
/// The last day with bars in `ohlcv/krx_daily_30` (every file ends on 2024-12-16).
const LAST_DAY: &str = "2024-12-16";
const TARGET: Duration = Duration::from_secs(60);

fn krxflow(root: &Path, lake: &Path, args: &[&str]) -> (Duration, String) {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_krxflow"))
        .current_dir(root)
        .arg("--lake")
        .arg(lake)
        .args(args)
        .output()
        .expect("start krxflow");
    let elapsed = t.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "krxflow {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (elapsed, stdout)
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let data = std::env::var_os("KRXFLOW_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/data"));
    if !data.join("ohlcv/krx_daily_30").is_dir() {
        eprintln!(
            "skipped: {} has no ohlcv/krx_daily_30 (set KRXFLOW_DATA)",
            data.display()
        );
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let lake = tmp.path().join("lake");

    // The range: the last 250 KRX trading days up to LAST_DAY, and the day before it.
    let (_, plan) = krxflow(
        &root,
        &lake,
        &[
            "backfill",
            "dags/krx30.yaml",
            "--from",
            "2023-06-01",
            "--to",
            LAST_DAY,
            "--dry-run",
        ],
    );
    let days: Vec<&str> = plan
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.len() == 10 && w.as_bytes()[4] == b'-')
        .collect();
    assert!(
        days.len() > PARTITIONS,
        "dry run listed {} days",
        days.len()
    );
    let range = &days[days.len() - PARTITIONS..];
    let seed = days[days.len() - PARTITIONS - 1];
    let (from, to) = (range[0], range[PARTITIONS - 1]);

    let (cold, _) = krxflow(&root, &lake, &["run", "dags/krx30.yaml", "--date", seed]);
    let (train, _) = krxflow(
        &root,
        &lake,
        &["run", "dags/lgbm_train.yaml", "--date", seed],
    );
    let (backfill, _) = krxflow(
        &root,
        &lake,
        &[
            "backfill",
            "dags/krx30.yaml",
            "--from",
            from,
            "--to",
            to,
            "--parallel",
            "2",
        ],
    );

    // Every partition succeeded and predicted.
    let count = |sql: &str| -> i64 {
        let (_, out) = krxflow(&root, &lake, &["--json", "sql", sql]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("sql json");
        v.as_array()
            .and_then(|rows| rows.first())
            .and_then(|r| r.get("n"))
            .and_then(serde_json::Value::as_i64)
            .expect("count")
    };
    let predicted_days = count(&format!(
        "SELECT COUNT(DISTINCT base_date) AS n FROM lgbm_predictions \
         WHERE base_date >= DATE '{from}' AND base_date <= DATE '{to}'"
    ));
    let predictions = count(&format!(
        "SELECT COUNT(*) AS n FROM lgbm_predictions \
         WHERE base_date >= DATE '{from}' AND base_date <= DATE '{to}'"
    ));
    let (_, per_task) = krxflow(
        &root,
        &lake,
        &[
            "sql",
            &format!(
                "SELECT task, COUNT(*) AS runs, \
                 ROUND(AVG(CAST(ended AS BIGINT) - CAST(started AS BIGINT)) / 1e3, 1) AS mean_ms \
                 FROM _krxflow.task_runs WHERE dag = 'krx30' AND state = 'succeeded' \
                 AND ds >= DATE '{from}' GROUP BY task ORDER BY mean_ms DESC"
            ),
        ],
    );

    let secs = backfill.as_secs_f64();
    println!("krx30 daily DAG, {PARTITIONS} trading days {from}..{to}, release, --parallel 2");
    println!(
        "  baseline: one cold run ({seed}, empty lake)   {:>8.2} s",
        cold.as_secs_f64()
    );
    println!(
        "  lgbm_train ({seed}, not part of the target)  {:>8.2} s",
        train.as_secs_f64()
    );
    println!(
        "  backfill: {PARTITIONS} partitions                  {secs:>8.2} s  ({:.3} s/partition, target < {} s: {})",
        secs / PARTITIONS as f64,
        TARGET.as_secs(),
        if backfill < TARGET { "met" } else { "NOT met" }
    );
    println!(
        "  ratio: 250-day backfill / one cold run      {:>8.2}x",
        secs / cold.as_secs_f64()
    );
    println!("  lgbm_predictions: {predictions} rows on {predicted_days} of {PARTITIONS} days");
    println!("per task (succeeded attempts in the range, mean wall time):\n{per_task}");
    assert_eq!(
        predicted_days, PARTITIONS as i64,
        "every partition predicts"
    );
}
