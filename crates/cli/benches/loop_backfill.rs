//! The prediction loop over 250 KRX trading days on the 30 real tickers (issue 18):
//! `daily_batch` (ingest, sentiment, features, LightGBM + ETS members, ensemble) and
//! `match_outcomes` (outcomes, weights) backfilled together through the release `krxflow`
//! binary, from a warm start.
//!
//! Steps, all in this one command and one fresh lake (`KRXFLOW_UNIVERSE=krx30`):
//! 1. warm-up: `daily_batch` for the trading day before the range (empty lake: all history
//!    read and written), then `retrain_weekly` for that day (pooled LightGBM per horizon);
//! 2. measured: `krxflow backfill daily_batch match_outcomes` over the next 250 trading days,
//!    `--parallel 2`, in the scheduler's order (each day's batch, then its match).
//!
//! Reported: the backfill's wall time against the 20 s target, seconds per trading day, the
//! ratio to one cold daily run, and each task's mean time per partition.
//!
//!     cargo bench -p krxflow-cli --bench loop_backfill
//!
//! Needs the shared data (`KRXFLOW_DATA`, default `../shared/data`); skipped without it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const DAYS: usize = 250;
/// The last day with bars in `ohlcv/krx_daily_30`.
const LAST_DAY: &str = "2024-12-16";
const TARGET: Duration = Duration::from_secs(20);

fn krxflow(root: &Path, lake: &Path, data: &Path, args: &[&str]) -> (Duration, String) {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_krxflow"))
        .current_dir(root)
        .env("KRXFLOW_UNIVERSE", "krx30")
        .env("KRXFLOW_DATA", data)
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
    let data = data.canonicalize().expect("data dir");
    let tmp = tempfile::tempdir().expect("temp dir");
    let lake = tmp.path().join("lake");
    let run = |args: &[&str]| krxflow(&root, &lake, &data, args);

    let (_, plan) = run(&[
        "backfill",
        "daily_batch",
        "--from",
        "2023-06-01",
        "--to",
        LAST_DAY,
        "--dry-run",
    ]);
    let days: Vec<&str> = plan
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.len() == 10 && w.as_bytes()[4] == b'-')
        .collect();
    assert!(days.len() > DAYS, "dry run listed {} days", days.len());
    let range = &days[days.len() - DAYS..];
    let seed = days[days.len() - DAYS - 1];
    let (from, to) = (range[0], range[DAYS - 1]);

    let (cold, _) = run(&["run", "daily_batch", "--date", seed]);
    let (train, _) = run(&["run", "retrain_weekly", "--date", seed]);
    let (backfill, _) = run(&[
        "backfill",
        "daily_batch",
        "match_outcomes",
        "--from",
        from,
        "--to",
        to,
        "--parallel",
        "2",
    ]);

    let count = |sql: &str| -> i64 {
        let (_, out) = run(&["--json", "sql", sql]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("sql json");
        v.as_array()
            .and_then(|rows| rows.first())
            .and_then(|r| r.get("n"))
            .and_then(serde_json::Value::as_i64)
            .expect("count")
    };
    let in_range = format!("base_date >= DATE '{from}' AND base_date <= DATE '{to}'");
    let predicted_days = count(&format!(
        "SELECT COUNT(DISTINCT base_date) AS n FROM predictions WHERE {in_range}"
    ));
    let predictions = count(&format!(
        "SELECT COUNT(*) AS n FROM predictions WHERE {in_range}"
    ));
    let outcomes = count(&format!(
        "SELECT COUNT(*) AS n FROM prediction_outcomes WHERE {in_range}"
    ));
    let (_, per_task) = run(&[
        "sql",
        &format!(
            "SELECT dag, task, COUNT(*) AS runs, \
             ROUND(AVG(CAST(ended AS BIGINT) - CAST(started AS BIGINT)) / 1e3, 1) AS mean_ms, \
             ROUND(SUM(CAST(ended AS BIGINT) - CAST(started AS BIGINT)) / 1e6, 2) AS total_s \
             FROM _krxflow.task_runs WHERE state = 'succeeded' AND ds >= DATE '{from}' \
             GROUP BY dag, task ORDER BY total_s DESC"
        ),
    ]);

    let secs = backfill.as_secs_f64();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "prediction loop (daily_batch + match_outcomes), krx30, {DAYS} trading days \
         {from}..{to}, release, --parallel 2, {cores} cores"
    );
    println!(
        "  warm-up: daily_batch cold ({seed}, empty lake)   {:>8.2} s",
        cold.as_secs_f64()
    );
    println!(
        "  warm-up: retrain_weekly ({seed})               {:>8.2} s",
        train.as_secs_f64()
    );
    println!(
        "  backfill: {DAYS} days x 2 DAGs                  {secs:>8.2} s  ({:.3} s/day, target <= {} s: {})",
        secs / DAYS as f64,
        TARGET.as_secs(),
        if backfill <= TARGET { "met" } else { "NOT met" }
    );
    println!(
        "  ratio: 250-day backfill / one cold daily run    {:>8.2}x",
        secs / cold.as_secs_f64()
    );
    println!(
        "  predictions: {predictions} rows on {predicted_days} of {DAYS} days; \
         outcomes matched in the range: {outcomes}"
    );
    println!("per task (succeeded attempts in the range):\n{per_task}");
    assert_eq!(predicted_days, DAYS as i64, "every day predicts");
    assert!(outcomes > 0, "outcomes were matched");
}
