//! The prediction loop over 250 KRX trading days on the 30 real tickers (issue 18):
//! `daily_batch` (ingest, sentiment, features, the members, ensemble) and `match_outcomes`
//! (outcomes, weights) backfilled together through the release `krxflow` binary, from a warm
//! start. Twice, each in a fresh lake: the loop as first measured, LightGBM + ETS
//! (`KRXFLOW_LINEAR=off`), then the default DAGs', with the linear ranker too.
//!
//! Steps, all in this one command (`KRXFLOW_UNIVERSE=krx30`), for each loop:
//! 1. warm-up: `daily_batch` for the trading day before the range (empty lake: all history
//!    read and written), then the retrains for that day (`retrain_weekly`: pooled LightGBM per
//!    horizon; `retrain_linear` where the ranker is on);
//! 2. measured: `krxflow backfill daily_batch match_outcomes` over the next 250 trading days,
//!    `--parallel 2`, in the scheduler's order (each day's batch, then its match).
//!
//! Reported per loop: the backfill's wall time against the 20 s target, seconds per trading
//! day, the ratio to one cold daily run, and each task's mean time per partition; then the
//! linear ranker's cost (the ratio of the two backfills). Last, the default loop once more
//! with `daily_batch`'s `checks:` left out (a copy of the DAG): the checks' cost.
//!
//!     cargo bench -p krxflow-cli --bench loop_backfill
//!
//! Needs the shared data (`KRXFLOW_DATA`, default `../shared/data`); skipped without it.

use std::time::Duration;

mod common;
use common::{Krxflow, daily_batch_without_checks, loop_env, real_data, retrains, root};

const DAYS: usize = 250;
/// The last day with bars in `ohlcv/krx_daily_30`.
const LAST_DAY: &str = "2024-12-16";
const TARGET: Duration = Duration::from_secs(20);

fn main() {
    let root = root();
    let Some(data) = real_data(&root) else { return };
    // The loop as first measured (LightGBM + ETS), then the default DAGs' (the linear ranker
    // a member too), each in a fresh lake.
    let two = measure(&root, &data, false, None);
    let default = measure(&root, &data, true, None);
    println!(
        "  the linear ranker's cost: {default:.2} s against {two:.2} s ({:+.0}%)",
        100.0 * (default / two - 1.0)
    );
    let dags = tempfile::tempdir().expect("temp dir");
    let unchecked = daily_batch_without_checks(&root, dags.path());
    let plain = measure(&root, &data, true, Some(&unchecked));
    println!(
        "  the checks' cost: {default:.2} s against {plain:.2} s without them ({:+.0}%)",
        100.0 * (default / plain - 1.0)
    );
}

/// Warms a fresh lake and times the backfill of the loop with (`linear`) or without the linear
/// ranker, with the shipped `daily_batch` or the one at `daily_batch`; prints the report and
/// gives the backfill's seconds.
fn measure(
    root: &std::path::Path,
    data: &std::path::Path,
    linear: bool,
    daily_batch: Option<&std::path::Path>,
) -> f64 {
    let batch = daily_batch.map_or_else(|| "daily_batch".to_string(), |p| p.display().to_string());
    let tmp = tempfile::tempdir().expect("temp dir");
    let k = Krxflow {
        root: root.to_path_buf(),
        lake: tmp.path().join("lake"),
        env: loop_env("krx30", data, linear),
    };
    let run = |args: &[&str]| k.run(args);
    let retrains = retrains(linear);

    let days = k.trading_days("daily_batch", "2023-06-01", LAST_DAY);
    assert!(days.len() > DAYS, "dry run listed {} days", days.len());
    let range = &days[days.len() - DAYS..];
    let seed = days[days.len() - DAYS - 1].as_str();
    let (from, to) = (range[0].as_str(), range[DAYS - 1].as_str());

    let (cold, _) = run(&["run", &batch, "--date", seed]);
    let mut train = Duration::ZERO;
    for dag in retrains {
        train += run(&["run", dag, "--date", seed]).0;
    }
    let (backfill, _) = run(&[
        "backfill",
        &batch,
        "match_outcomes",
        "--from",
        from,
        "--to",
        to,
        "--parallel",
        "2",
    ]);

    let count = |sql: &str| k.count(sql);
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
    let linear_rows = count(&format!(
        "SELECT COUNT(*) AS n FROM prediction_members WHERE model = 'linear' AND {in_range}"
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
    let members = match (linear, daily_batch) {
        (true, None) => "LightGBM + ETS + linear ranker, the default DAGs",
        (true, Some(_)) => "the default DAGs without daily_batch's checks",
        (false, _) => "LightGBM + ETS",
    };
    println!(
        "prediction loop (daily_batch + match_outcomes; {members}), krx30, {DAYS} trading days \
         {from}..{to}, release, --parallel 2, {cores} cores"
    );
    println!(
        "  warm-up: daily_batch cold ({seed}, empty lake)   {:>8.2} s",
        cold.as_secs_f64()
    );
    println!(
        "  warm-up: {} ({seed}) {:>8.2} s",
        retrains.join(" + "),
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
         linear ranker member rows: {linear_rows}; outcomes matched in the range: {outcomes}"
    );
    println!("per task (succeeded attempts in the range):\n{per_task}");
    assert_eq!(predicted_days, DAYS as i64, "every day predicts");
    assert!(outcomes > 0, "outcomes were matched");
    assert_eq!(
        linear_rows > 0,
        linear,
        "the linear ranker runs only when on"
    );
    secs
}
