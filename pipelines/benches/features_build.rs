//! `features.build` on the full-market panel (2,284 codes x 200 days from `../shared/data`;
//! skipped with a message when absent) against the Python stack a quant would use instead,
//! measured in this one command on the same bars:
//!
//! * krxflow's `compute_features` on every core and on one thread;
//! * **Polars** (`benches/peer/features_polars.py`: one lazy query of grouped window
//!   expressions, Polars' own thread pool);
//! * **pandas** (`benches/peer/features_pandas.py`: grouped shift / rolling / ewm).
//!
//! The peers run in the project's `.venv` (installed by `benches/peer/setup.sh`, which this
//! bench runs; a peer that cannot be set up is reported as skipped). Each engine computes the
//! features of the same bars (krxflow writes them to Parquet for the peers) `RUNS` times after
//! one warm-up; the bench prints min / median / max and the ratio of medians, after checking
//! that every peer produced the same rows and the same values (see [`agree`]).
//!
//! Run: `cargo bench -p krxflow-pipelines --bench features_build`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow::array::{Array, Float64Array, RecordBatch};
use arrow::datatypes::DataType;
use chrono::NaiveDate;
use krxflow_pipelines::features::build::compute_features_on;
use krxflow_pipelines::ingest::ohlcv::bars_batch;
use krxflow_pipelines::tables::FEATURES;

mod common;
use common::{
    Stats, full_market_panel, krx30_bars, machine, peer_setup, peer_timings, read_panel,
    read_parquet, root, run_python, shared_data, write_parquet,
};

/// Timed runs per engine (after one warm-up).
const RUNS: usize = 7;

/// Agreement: |a - b| <= TOL * max(|a|, |b|, the column's RMS). Values that are differences of
/// nearly equal terms (MACD = EMA12 - EMA26 near a crossing, %B when the 20-day sd is tiny)
/// carry the terms' rounding, so their error is bounded relative to the column's scale rather
/// than to a value near zero; how many values exceed plain relative 1e-9 is printed too.
const TOL: f64 = 1e-9;

/// The bench fails when a value is further off than this (a different formula, not rounding);
/// values between [`TOL`] and this are printed by feature.
const LOOSE: f64 = 1e-6;

fn main() {
    let root = root();
    let data = shared_data();
    let Some(panel) = full_market_panel(&data) else {
        return;
    };
    println!("{}", machine());
    let python = peer_setup(&root);
    if let Err(why) = &python {
        println!("skipped: all peers: {why}");
    }

    let mut parse_times = Vec::new();
    let mut collected = None;
    for _ in 0..3 {
        let t = Instant::now();
        collected = Some(read_panel(&panel).expect("the panel parses"));
        parse_times.push(t.elapsed());
    }
    let collected = collected.expect("parsed");
    let rows_read = collected.counters.get("rows_read").copied().unwrap_or(0);
    let bars = bars_batch(&collected.bars, "panel").expect("bars batch");
    println!(
        "\n## The full-market panel: {} ({rows_read} rows read, {} bars accepted, {} rejected; \
         krxflow's validating parse of the CSV.gz: {})",
        panel.display(),
        bars.num_rows(),
        collected.rejects.len(),
        Stats::of(&parse_times)
    );
    let krxflow = bench_case(&root, python.as_deref().ok(), &bars);
    let target = Duration::from_millis(350);
    println!(
        "target: <= {:.2} s on the whole panel: {} ({:.3} s)",
        target.as_secs_f64(),
        if krxflow.median <= target {
            "met"
        } else {
            "NOT met"
        },
        krxflow.median.as_secs_f64()
    );

    // Long histories: every window full, the 52-week distances included.
    let dir = data.join("ohlcv/krx_daily_30");
    match NaiveDate::from_ymd_opt(2024, 12, 16).and_then(|ds| krx30_bars(&data, ds)) {
        None => println!("skipped: the 30 tickers: {} not readable", dir.display()),
        Some(bars) => {
            println!(
                "\n## The 30 KOSPI tickers, 2000-2024: {} ({} bars accepted)",
                dir.display(),
                bars.num_rows()
            );
            bench_case(&root, python.as_deref().ok(), &bars);
        }
    }
}

/// krxflow and every peer on `bars`: the table of timings after the agreement checks; returns
/// krxflow's timings on every core.
fn bench_case(root: &Path, python: Option<&Path>, bars: &RecordBatch) -> Stats {
    let n = bars.num_rows();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let build = |threads: usize| {
        compute_features_on(
            std::slice::from_ref(bars),
            None,
            None,
            "KS11",
            false,
            None,
            threads,
        )
        .expect("features")
    };
    let ours = build(cores);
    let all_cores = time(|| drop(build(cores)));
    let one_thread = time(|| drop(build(1)));

    let dir = tempfile::tempdir().expect("temp dir");
    let bars_path = dir.path().join("bars.parquet");
    write_parquet(bars, &bars_path);

    let mut table = vec![
        (format!("krxflow ({cores} threads)"), all_cores),
        ("krxflow (1 thread)".to_string(), one_thread),
    ];
    let mut skipped = Vec::new();
    if let Some(python) = python {
        for engine in ["polars", "pandas"] {
            match run_peer(root, python, engine, &bars_path, dir.path()) {
                Err(why) => skipped.push(format!("{engine}: {why}")),
                Ok((peer, threads, path)) => {
                    let theirs = read_parquet(&path);
                    agree(engine, &ours, &theirs);
                    let threads = if threads == 1 {
                        "1 thread".to_string()
                    } else {
                        format!("{threads} threads")
                    };
                    table.push((format!("{engine} ({threads})"), peer));
                }
            }
        }
    }
    println!(
        "\nfeatures.build, {} rows x {} features, {} of them with values (market and sentiment \
         features need an index and news, absent here; windows longer than a code's history \
         stay null); {RUNS} runs after a warm-up (seconds):",
        ours.num_rows(),
        FEATURES.len(),
        FEATURES
            .iter()
            .filter(|(name, _)| ours
                .column_by_name(name)
                .is_some_and(|c| c.null_count() < c.len()))
            .count()
    );
    println!("| engine | min | median | max | rows/s | krxflow ({cores} threads) is faster by |");
    println!("|---|---|---|---|---|---|");
    for (name, s) in &table {
        println!(
            "| {name} | {:.3} | {:.3} | {:.3} | {:.0} | {:.2}x |",
            s.min.as_secs_f64(),
            s.median.as_secs_f64(),
            s.max.as_secs_f64(),
            n as f64 / s.median.as_secs_f64(),
            s.median.as_secs_f64() / all_cores.median.as_secs_f64()
        );
    }
    for s in &skipped {
        println!("skipped: {s}");
    }
    all_cores
}

/// Min / median / max of `RUNS` runs of `f` after one warm-up.
fn time(f: impl FnMut()) -> Stats {
    common::time_runs(RUNS, f)
}

/// One peer's timings (seconds), thread count and result file.
fn run_peer(
    root: &Path,
    python: &Path,
    engine: &str,
    bars: &Path,
    dir: &Path,
) -> Result<(Stats, u64, PathBuf), String> {
    let out_path = dir.join(format!("{engine}.parquet"));
    let bars = bars.to_string_lossy();
    let out = out_path.to_string_lossy();
    let runs = RUNS.to_string();
    let engine = format!("features_{engine}");
    let report = run_python(root, python, &["harness.py", &engine, &bars, &out, &runs])?;
    let (stats, threads) = peer_timings(&report)?;
    Ok((stats, threads, out_path))
}

fn column(b: &RecordBatch, name: &str, to: &DataType) -> arrow::array::ArrayRef {
    let c = b
        .column_by_name(name)
        .unwrap_or_else(|| panic!("peer output has no column {name}"));
    arrow::compute::cast(c, to).expect("cast")
}

/// Panics unless `theirs` has our rows (code, date, in order), every feature missing (null or
/// NaN) on the same rows, and every value within [`LOOSE`]; prints how many are beyond [`TOL`].
fn agree(engine: &str, ours: &RecordBatch, theirs: &RecordBatch) {
    assert_eq!(ours.num_rows(), theirs.num_rows(), "{engine}: row count");
    for (key, ty) in [("code", DataType::Utf8), ("date", DataType::Date32)] {
        assert_eq!(
            &column(ours, key, &ty),
            &column(theirs, key, &ty),
            "{engine}: {key} column (rows in another order?)"
        );
    }
    let (mut worst, mut beyond_rel, mut checked) = (0.0f64, 0usize, 0usize);
    let mut outside: Vec<String> = Vec::new();
    for (name, _) in FEATURES {
        if theirs.column_by_name(name).is_none() {
            continue; // market and sentiment features need inputs the panel does not have
        }
        let a = column(ours, name, &DataType::Float64);
        let b = column(theirs, name, &DataType::Float64);
        let (a, b) = (
            a.as_any().downcast_ref::<Float64Array>().expect("f64"),
            b.as_any().downcast_ref::<Float64Array>().expect("f64"),
        );
        let get = |x: &Float64Array, i: usize| {
            (x.is_valid(i) && !x.value(i).is_nan()).then(|| x.value(i))
        };
        let finite: Vec<f64> = (0..a.len())
            .filter_map(|i| get(a, i))
            .filter(|v| v.is_finite())
            .collect();
        let rms = (finite.iter().map(|v| v * v).sum::<f64>() / finite.len().max(1) as f64).sqrt();
        let (mut n_outside, mut feature_worst) = (0usize, 0.0f64);
        for i in 0..a.len() {
            match (get(a, i), get(b, i)) {
                (None, None) => {}
                (Some(x), Some(y)) if x == y => {}
                (Some(x), Some(y)) if x.is_finite() && y.is_finite() => {
                    let d = (x - y).abs();
                    let scaled = d / x.abs().max(y.abs()).max(rms);
                    worst = worst.max(scaled);
                    feature_worst = feature_worst.max(scaled);
                    beyond_rel += usize::from(d / x.abs().max(y.abs()) > TOL);
                    n_outside += usize::from(scaled > TOL);
                    assert!(
                        scaled <= LOOSE,
                        "{engine}: {name} row {i}: krxflow {x} vs {y}"
                    );
                }
                (x, y) => panic!("{engine}: {name} row {i}: krxflow {x:?} vs {y:?}"),
            }
        }
        if n_outside > 0 {
            outside.push(format!(
                "{name}: {n_outside} values, up to {feature_worst:.1e}"
            ));
        }
        checked += 1;
    }
    println!(
        "agreement with {engine}: {} rows, {checked} features, same codes and dates, missing on \
         the same rows; largest difference {worst:.1e} (relative to the value or the column's \
         RMS); {beyond_rel} values beyond 1e-9 relative to the value alone; {}",
        ours.num_rows(),
        if outside.is_empty() {
            "every value within 1e-9".to_string()
        } else {
            format!(
                "NOT within 1e-9 (all within {LOOSE:.0e}): {}",
                outside.join("; ")
            )
        }
    );
}
