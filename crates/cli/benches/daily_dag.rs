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

use std::time::Duration;

mod common;
use common::{Krxflow, real_data, root};

const PARTITIONS: usize = 250;
/// The last day with bars in `ohlcv/krx_daily_30` (every file ends on 2024-12-16).
const LAST_DAY: &str = "2024-12-16";
const TARGET: Duration = Duration::from_secs(60);

fn main() {
    let root = root();
    let Some(data) = real_data(&root) else { return };
    let tmp = tempfile::tempdir().expect("temp dir");
    let k = Krxflow {
        root,
        lake: tmp.path().join("lake"),
        env: vec![("KRXFLOW_DATA".into(), data.to_string_lossy().into_owned())],
    };

    // The range: the last 250 KRX trading days up to LAST_DAY, and the day before it.
    let days = k.trading_days("dags/krx30.yaml", "2023-06-01", LAST_DAY);
    assert!(
        days.len() > PARTITIONS,
        "dry run listed {} days",
        days.len()
    );
    let range = &days[days.len() - PARTITIONS..];
    let seed = days[days.len() - PARTITIONS - 1].as_str();
    let (from, to) = (range[0].as_str(), range[PARTITIONS - 1].as_str());

    let (cold, _) = k.run(&["run", "dags/krx30.yaml", "--date", seed]);
    let (train, _) = k.run(&["run", "dags/lgbm_train.yaml", "--date", seed]);
    let (backfill, _) = k.run(&[
        "backfill",
        "dags/krx30.yaml",
        "--from",
        from,
        "--to",
        to,
        "--parallel",
        "2",
    ]);

    // Every partition succeeded and predicted.
    let count = |sql: &str| k.count(sql);
    let predicted_days = count(&format!(
        "SELECT COUNT(DISTINCT base_date) AS n FROM lgbm_predictions \
         WHERE base_date >= DATE '{from}' AND base_date <= DATE '{to}'"
    ));
    let predictions = count(&format!(
        "SELECT COUNT(*) AS n FROM lgbm_predictions \
         WHERE base_date >= DATE '{from}' AND base_date <= DATE '{to}'"
    ));
    let (_, per_task) = k.run(&[
        "sql",
        &format!(
            "SELECT task, COUNT(*) AS runs, \
                 ROUND(AVG(CAST(ended AS BIGINT) - CAST(started AS BIGINT)) / 1e3, 1) AS mean_ms \
                 FROM _krxflow.task_runs WHERE dag = 'krx30' AND state = 'succeeded' \
                 AND ds >= DATE '{from}' GROUP BY task ORDER BY mean_ms DESC"
        ),
    ]);

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
