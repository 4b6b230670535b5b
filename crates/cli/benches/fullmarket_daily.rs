//! The full-market daily batch (issue 18): one new trading day of the prediction loop over the
//! whole KRX market (2,284 KOSPI+KOSDAQ codes from the full-market panel,
//! `KRXFLOW_UNIVERSE=fullmarket`) from a lake warm with the previous days, through the release
//! `krxflow` binary: `daily_batch` (ingest, index, news, features, pooled LightGBM, ETS, the
//! linear ranker where on, ensemble) and then `match_outcomes` (outcomes, weights) for that day.
//!
//! Two loops, each on a lake of its own: LightGBM + ETS (`KRXFLOW_LINEAR=off`, the loop the
//! Python peers implement and are compared with), and the default DAGs' loop, which adds the
//! linear ranker (`linear.predict` daily, `retrain_linear` on Sundays; krxflow only, its cost
//! reported against the first).
//!
//! Steps, all in this one command:
//! 1. warm-up of each loop's lake (not measured): a cold `daily_batch` on an empty lake 11
//!    trading days before the measured day (all history read and written), the loop's retrains
//!    on the Sunday before it (`retrain_weekly`: pooled LightGBM per horizon over the market,
//!    AutoETS per code; `retrain_linear`), then `daily_batch` + `match_outcomes` over the 10
//!    days before the measured day, with the retrains on the Sundays among them, as scheduled
//!    (so matured outcomes, learned weights, the conformal calibration's inputs and this week's
//!    models exist);
//! 2. measured, `RUNS` times per loop, the loops alternating: the warm lake copied afresh (not
//!    timed), then `krxflow backfill daily_batch match_outcomes` for the measured day: wall
//!    time and the process's peak resident memory.
//!
//! 3. the two Python peers, the Polars one (`benches/peer/daily_polars.py`) and the pandas one
//!    (`benches/peer/daily_pandas.py`), installed into `.venv-peer-daily` by
//!    `benches/peer/setup.sh daily`, each `RUNS` times on the LightGBM + ETS loop's warm lake
//!    (read only), each run a
//!    Python process of its own as each of krxflow's is (imports not timed): the same day from
//!    the same state — ingest, features, pooled LightGBM from the same
//!    registered models, statsforecast's AutoETS, the ensemble with its calibration, outcomes,
//!    weights — then its results checked against the lake krxflow wrote (features within 1e-9,
//!    LightGBM and the ensemble recomputed on krxflow's member forecasts within 1e-6, outcomes
//!    and weights within 1e-9, the same row counts, directions and hits).
//!
//! Reported per loop: min / median / max wall and peak RSS against the targets (1.5 s, 1 GiB),
//! the rows written that day, each task's time in the last run (from `_krxflow.task_runs`);
//! the linear ranker's cost (the ratio of the loops' medians); each peer's wall and steps, and
//! the ratios of the medians.
//!
//!     cargo bench -p krxflow-cli --bench fullmarket_daily
//!     KRXFLOW_BENCH_WARM_DAYS=135 cargo bench -p krxflow-cli --bench fullmarket_daily
//!
//! `KRXFLOW_BENCH_WARM_DAYS` (default 10, at most 160) sets how many days warm the lake: the
//! ensemble's calibration and the weights read a year of outcomes, so a lake a user has run for
//! months (135 days: from 2019-03-05; a warm-up of ~25 minutes per loop) costs more per day
//! than a young one.
//!
//! Needs the full-market panel under the shared data (`KRXFLOW_DATA`, default
//! `../shared/data`); skipped without it.

use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;
use common::{
    Krxflow, copy_dir, daily_batch_without_checks, loop_env, min_median_max, peer, retrains, root,
    shared_data,
};

const RUNS: usize = 5;
/// The panel's last full day (2019-09-18 is an intraday snapshot, quarantined `provisional`).
const DAY: &str = "2019-09-17";
/// Days warming the lake by default (`KRXFLOW_BENCH_WARM_DAYS`).
const WARM_DAYS: usize = 10;
/// The most warm days the panel allows (it starts 2018-11-26; features want ~60 days before).
const MAX_WARM_DAYS: usize = 160;
const TARGET_WALL: Duration = Duration::from_millis(1500);
const TARGET_RSS: u64 = 1 << 30;

/// One loop measured: its lake warmed once, then measured on fresh copies of it.
struct Loop {
    /// How the report names it.
    name: &'static str,
    /// Whether the linear ranker is a member (`KRXFLOW_LINEAR`).
    linear: bool,
    /// The daily batch: `daily_batch`, or a copy of it at a path.
    batch: String,
    k: Krxflow,
    warm: PathBuf,
    /// The lake of the latest measured run (checked against the peers, counted).
    last: PathBuf,
    warmup: String,
    walls: Vec<f64>,
    rss: Vec<f64>,
}

impl Loop {
    fn new(
        name: &'static str,
        linear: bool,
        batch: Option<&Path>,
        tmp: &Path,
        root: &Path,
        data: &Path,
    ) -> Self {
        let which = match (linear, batch) {
            (false, _) => "two",
            (true, None) => "default",
            (true, Some(_)) => "unchecked",
        };
        let warm = tmp.join(format!("warm-{which}"));
        let k = Krxflow {
            root: root.to_path_buf(),
            lake: warm.clone(),
            env: loop_env("fullmarket", data, linear),
        };
        Self {
            name,
            linear,
            batch: batch.map_or_else(|| "daily_batch".into(), |p| p.display().to_string()),
            k,
            last: warm.clone(),
            warm,
            warmup: String::new(),
            walls: Vec::new(),
            rss: Vec::new(),
        }
    }

    /// The Sunday retrains of this loop's DAGs.
    fn retrains(&self) -> &'static [&'static str] {
        retrains(self.linear)
    }

    /// Step 1: a cold day on an empty lake, the Sunday's retrains, then the warm days as
    /// scheduled.
    fn warm_up(&mut self, seed: &str, sunday: &str, (from, to): (&str, &str), days: usize) {
        let (cold, _) = self.k.run(&["run", &self.batch, "--date", seed]);
        let mut train = Duration::ZERO;
        for dag in self.retrains() {
            train += self.k.run(&["run", dag, "--date", sunday]).0;
        }
        let mut args = vec!["backfill", self.batch.as_str(), "match_outcomes"];
        args.extend_from_slice(self.retrains());
        args.extend_from_slice(&["--from", from, "--to", to]);
        let (warmed, _) = self.k.run(&args);
        self.warmup = format!(
            "cold daily_batch {seed} {:.1} s, {} {sunday} {:.1} s, {days} days {from}..{to} \
             (with their Sundays' retrains) {:.1} s",
            cold.as_secs_f64(),
            self.retrains().join(" + "),
            train.as_secs_f64(),
            warmed.as_secs_f64()
        );
    }

    /// Step 2, once: the measured day on a fresh copy of the warm lake (`run`: its number).
    fn measure(&mut self, run: usize) {
        let lake = self.warm.with_extension(format!("run{run}"));
        copy_dir(&self.warm, &lake);
        self.k.lake = lake.clone();
        self.last = lake;
        let (wall, peak, _) = self.k.run_measured(&[
            "backfill",
            &self.batch,
            "match_outcomes",
            "--from",
            DAY,
            "--to",
            DAY,
        ]);
        self.walls.push(wall.as_secs_f64());
        self.rss.push(peak as f64);
    }

    /// Prints the loop's times, peaks and rows (from its last measured lake), checks the rows
    /// and gives its median wall.
    fn report(&mut self) -> f64 {
        let k = &self.k;
        let count = |sql: &str| k.count(sql);
        let on_day = |table: &str, column: &str| {
            count(&format!(
                "SELECT COUNT(*) AS n FROM {table} WHERE {column} = DATE '{DAY}'"
            ))
        };
        let predictions = on_day("predictions", "base_date");
        let codes = count(&format!(
            "SELECT COUNT(DISTINCT code) AS n FROM predictions WHERE base_date = DATE '{DAY}'"
        ));
        let lgbm = on_day("lgbm_predictions", "base_date");
        let linear = if self.linear {
            on_day("linear_predictions", "base_date")
        } else {
            0
        };
        let outcomes = on_day("prediction_outcomes", "target_date");
        let bars = on_day("ohlcv_daily", "date");
        let (_, per_task) = k.run(&[
            "sql",
            &format!(
                "SELECT dag, task, state, \
                 ROUND((CAST(ended AS BIGINT) - CAST(started AS BIGINT)) / 1e3) AS ms, rows_out \
                 FROM _krxflow.task_runs WHERE ds = DATE '{DAY}' ORDER BY started"
            ),
        ]);
        let (w0, w1, w2) = min_median_max(&mut self.walls);
        let (r0, r1, r2) = min_median_max(&mut self.rss);
        let mib = |b: f64| b / (1u64 << 20) as f64;
        println!("{}:", self.name);
        println!("  warm-up: {}", self.warmup);
        println!(
            "  wall over {RUNS} runs:     min {w0:.2} s  median {w1:.2} s  max {w2:.2} s  \
             (target <= {:.1} s: {})",
            TARGET_WALL.as_secs_f64(),
            if w1 <= TARGET_WALL.as_secs_f64() {
                "met"
            } else {
                "NOT met"
            }
        );
        println!(
            "  peak RSS over {RUNS} runs: min {:.0} MiB  median {:.0} MiB  max {:.0} MiB  \
             (target <= 1024 MiB: {})",
            mib(r0),
            mib(r1),
            mib(r2),
            if r2 <= TARGET_RSS as f64 {
                "met"
            } else {
                "NOT met"
            }
        );
        println!(
            "  that day: {bars} bars, {lgbm} LightGBM forecasts, {linear} linear ranker \
             forecasts, {predictions} ensemble predictions for {codes} codes, {outcomes} \
             outcomes matched"
        );
        println!("  per task, last run:\n{per_task}");
        assert!(bars > 2000, "the day's bars were ingested");
        assert!(lgbm > 0, "pooled LightGBM predicted the market");
        assert_eq!(
            linear > 0,
            self.linear,
            "the linear ranker runs only when on"
        );
        assert_eq!(predictions, 3 * codes, "three horizons per predicted code");
        assert!(outcomes > 0, "outcomes were matched");
        w1
    }
}

fn main() {
    let root = root();
    let Some(data) = shared_data(&root, "ohlcv/krx_fullmarket_2018_2019") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    // The loop the peers implement (LightGBM + ETS), and the default DAGs' loop, which adds
    // the linear ranker (`linear.predict` daily, `retrain_linear` on Sundays).
    // Then the default loop once more with `daily_batch`'s checks left out: what they cost.
    let unchecked = daily_batch_without_checks(&root, tmp.path());
    let mut loops = [
        Loop::new(
            "LightGBM + ETS (the peers' loop)",
            false,
            None,
            tmp.path(),
            &root,
            &data,
        ),
        Loop::new(
            "LightGBM + ETS + linear ranker (the default DAGs)",
            true,
            None,
            tmp.path(),
            &root,
            &data,
        ),
        Loop::new(
            "the default DAGs without daily_batch's checks",
            true,
            Some(&unchecked),
            tmp.path(),
            &root,
            &data,
        ),
    ];

    let warm_days = match std::env::var("KRXFLOW_BENCH_WARM_DAYS") {
        Ok(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_WARM_DAYS).contains(&n) => n,
            _ => {
                eprintln!(
                    "KRXFLOW_BENCH_WARM_DAYS={v}: expected a number of days in 1..={MAX_WARM_DAYS}"
                );
                std::process::exit(2);
            }
        },
        Err(_) => WARM_DAYS,
    };
    let days = loops[0].k.trading_days("daily_batch", "2018-11-26", DAY);
    assert_eq!(days.last().map(String::as_str), Some(DAY), "{days:?}");
    let seed = days[days.len() - warm_days - 2].as_str();
    let warm_range = (
        days[days.len() - warm_days - 1].as_str(),
        days[days.len() - 2].as_str(),
    );
    let seed_date = chrono::NaiveDate::parse_from_str(seed, "%Y-%m-%d").expect("seed date");
    let sunday = seed_date
        - chrono::Duration::days(i64::from(
            chrono::Datelike::weekday(&seed_date).number_from_monday(),
        ));
    let sunday = sunday.to_string();

    for l in &mut loops {
        l.warm_up(seed, &sunday, warm_range, warm_days);
    }
    // The loops' runs alternate, so a slower minute of the machine falls on both.
    for run in 0..RUNS {
        for l in &mut loops {
            l.measure(run);
        }
    }

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "full-market daily batch (daily_batch + match_outcomes) for {DAY}, release, {cores} cores"
    );
    let [two, default, plain] = &mut loops;
    let two_median = two.report();
    let default_median = default.report();
    let plain_median = plain.report();
    println!(
        "  the linear ranker's cost: median {default_median:.2} s against {two_median:.2} s \
         ({:+.0}%)",
        100.0 * (default_median / two_median - 1.0)
    );
    println!(
        "  the checks' cost: median {default_median:.2} s against {plain_median:.2} s without \
         them ({:+.0}%)",
        100.0 * (default_median / plain_median - 1.0)
    );
    let python = match peer::setup_daily(&two.k.root) {
        Ok(p) => p,
        Err(why) => {
            println!("Python peers: skipped: {why}");
            return;
        }
    };
    for (name, script) in [("Polars", "daily_polars.py"), ("pandas", "daily_pandas.py")] {
        python_peer(
            &two.k.root,
            &python,
            (name, script),
            &data,
            &two.warm,
            &two.last,
            two_median,
        );
    }
}

/// Runs the peer `(name, script)` on the warm lake, checks its day against krxflow's
/// (`checked`: a lake after krxflow's run) and prints its times and the ratio to krxflow's
/// median `krx_median`.
fn python_peer(
    root: &std::path::Path,
    python: &std::path::Path,
    (name, script): (&str, &str),
    data: &std::path::Path,
    warm: &std::path::Path,
    checked: &std::path::Path,
    krx_median: f64,
) {
    let panel =
        data.join("ohlcv/krx_fullmarket_2018_2019/kr_fullmarket_daily_20181126_20190918.csv.gz");
    let index = data.join("ohlcv/kospi_index/KS11_yahoo_espark11.csv");
    let out = tempfile::tempdir().expect("peer output dir");
    let s = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let runs = RUNS.to_string();
    let report = peer::run(
        root,
        python,
        script,
        &[
            &s(warm),
            DAY,
            &s(&panel),
            &s(&index),
            &s(out.path()),
            &runs,
            &s(checked),
        ],
    )
    .unwrap_or_else(|e| panic!("the {name} peer failed: {e}"));
    let mut walls = peer::numbers(&report, "wall_s");
    assert_eq!(walls.len(), RUNS, "{report}");
    let (p0, p1, p2) = min_median_max(&mut walls);
    println!(
        "{name} peer (benches/peer/{script}: {}, threads: {}, AutoETS processes: {}), \
         the same day on the same warm lake, a process {} as krxflow's (imports {:.1} s, not \
         timed):",
        report["engine"].as_str().unwrap_or("?"),
        report["threads"],
        report["ets_jobs"],
        report["process"].as_str().unwrap_or("?"),
        report["import_s"].as_f64().unwrap_or(f64::NAN)
    );
    println!(
        "  wall over {RUNS} runs:     min {p0:.2} s  median {p1:.2} s  max {p2:.2} s;  \
         peak RSS {:.0} MiB (ETS workers {:.0} MiB)",
        report["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
        report["peak_rss_children_mib"].as_f64().unwrap_or(f64::NAN)
    );
    let steps = report["steps_s"].as_array().and_then(|s| s.last());
    println!(
        "  steps, the checked run (s): {}",
        steps.unwrap_or(&serde_json::Value::Null)
    );
    println!("  rows: {}", report["rows"]);
    println!("  agreement with krxflow's tables: {}", report["agreement"]);
    println!(
        "  krxflow median {krx_median:.2} s vs {name} median {p1:.2} s: krxflow {:.1}x faster \
         end to end",
        p1 / krx_median
    );
    let wrong = peer::disagreements(&report);
    assert!(
        wrong.is_empty(),
        "the {name} peer's day differs from krxflow's: {wrong:#?}"
    );
}
