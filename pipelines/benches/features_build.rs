//! Benchmark of `features.build` on the full-market panel (2,284 codes x 200 days, 452,947 rows)
//! from `../shared/data` (skipped with a message when absent).
//!
//! Reports wall time and rows/s of the full feature build, and ratios against two baselines
//! measured in the same process on the same bars: parsing the panel CSV.gz, and
//! `features.returns` (four window features). Run: `cargo bench -p krxflow-pipelines`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use krxflow_pipelines::features::{build::build_features, returns};
use krxflow_pipelines::ingest::ohlcv::{Collector, Columns, Window, bars_batch, read_csv};

mod common;
use common::{RUNS, median};

fn main() {
    let data = std::env::var_os("KRXFLOW_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    let panel =
        data.join("ohlcv/krx_fullmarket_2018_2019/kr_fullmarket_daily_20181126_20190918.csv.gz");
    if !panel.exists() {
        eprintln!("skipped: {} not found (set KRXFLOW_DATA)", panel.display());
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let provisional: HashSet<NaiveDate> = HashSet::new();
    let parse = || {
        let w = Window {
            ds: NaiveDate::from_ymd_opt(2019, 9, 18).expect("date"),
            from: None,
            codes: None,
            provisional: &provisional,
            tol_abs: 2.0,
            tol_rel: 0.001,
        };
        let mut out = Collector::default();
        let file = std::fs::File::open(&panel).expect("open panel");
        read_csv(
            flate2::read::GzDecoder::new(file),
            &Columns::default(),
            None,
            &w,
            &mut out,
        )
        .expect("read panel");
        out
    };
    let mut parse_times = Vec::new();
    let mut collected = None;
    for _ in 0..RUNS {
        let t = Instant::now();
        collected = Some(parse());
        parse_times.push(t.elapsed());
    }
    let collected = collected.expect("parsed");
    let rows_read = collected.counters.get("rows_read").copied().unwrap_or(0);
    let bars = bars_batch(&collected.bars, "panel").expect("bars batch");
    let n = bars.num_rows();

    let mut returns_times = Vec::new();
    let mut build_times = Vec::new();
    let mut out_rows = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        let r = returns::compute(&bars, None).expect("returns");
        returns_times.push(t.elapsed());
        assert_eq!(r.num_rows(), n);
        let t = Instant::now();
        let f = rt
            .block_on(build_features(&bars, None, None, "KS11", false))
            .expect("features");
        build_times.push(t.elapsed());
        out_rows = f.num_rows();
    }
    let (parse_t, returns_t, build_t) = (
        median(parse_times),
        median(returns_times),
        median(build_times),
    );
    println!(
        "panel: {rows_read} rows read, {n} bars accepted ({} rejected)",
        collected.rejects.len()
    );
    println!(
        "features.build   {:>8.3} s  {:>10.0} rows/s  ({out_rows} rows, median of {RUNS})",
        build_t.as_secs_f64(),
        n as f64 / build_t.as_secs_f64()
    );
    println!(
        "baseline parse   {:>8.3} s  -> features.build / parse   = {:.2}x",
        parse_t.as_secs_f64(),
        build_t.as_secs_f64() / parse_t.as_secs_f64()
    );
    println!(
        "baseline returns {:>8.3} s  -> features.build / returns = {:.2}x",
        returns_t.as_secs_f64(),
        build_t.as_secs_f64() / returns_t.as_secs_f64()
    );
    println!(
        "target: the whole panel under 2 s: {}",
        if build_t < Duration::from_secs(2) {
            "met"
        } else {
            "NOT met"
        }
    );
}
