//! Helpers shared by the pipeline benchmarks (each bench uses a subset).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use chrono::NaiveDate;
use krxflow_pipelines::ingest::ohlcv::{Collector, Columns, Window, read_csv};

/// Timed repetitions per measurement; the median is reported.
pub const RUNS: usize = 3;

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Medians of [`RUNS`] alternating timings of `bare` (the baseline) and `through` (the same
/// work through krxflow), after one untimed warm-up of each (session creation, first-run
/// allocations). Alternating keeps drift in machine load from favouring either side.
pub fn compare(mut bare: impl FnMut(), mut through: impl FnMut()) -> (Duration, Duration) {
    bare();
    through();
    let (mut b, mut t) = (Vec::with_capacity(RUNS), Vec::with_capacity(RUNS));
    for _ in 0..RUNS {
        let s = Instant::now();
        bare();
        b.push(s.elapsed());
        let s = Instant::now();
        through();
        t.push(s.elapsed());
    }
    (median(b), median(t))
}

/// Min / median / max of a set of timings.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub min: Duration,
    pub median: Duration,
    pub max: Duration,
}

impl Stats {
    pub fn of(runs: &[Duration]) -> Self {
        let mut v = runs.to_vec();
        v.sort();
        Self {
            min: v.first().copied().unwrap_or_default(),
            median: v.get(v.len() / 2).copied().unwrap_or_default(),
            max: v.last().copied().unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "min {:.3} / median {:.3} / max {:.3} s",
            self.min.as_secs_f64(),
            self.median.as_secs_f64(),
            self.max.as_secs_f64()
        )
    }
}

/// Runs `benches/peer/setup.sh` (installs the Python peers into the project's `.venv`,
/// idempotently); the venv's python on success.
pub fn peer_setup(root: &Path) -> Result<PathBuf, String> {
    let out = std::process::Command::new("bash")
        .arg(root.join("benches/peer/setup.sh"))
        .output()
        .map_err(|e| format!("cannot run benches/peer/setup.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "benches/peer/setup.sh failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(root.join(".venv/bin/python"))
}

/// Runs a peer script in `benches/peer` with `args`; its one-line JSON report.
pub fn run_python(root: &Path, python: &Path, args: &[&str]) -> Result<serde_json::Value, String> {
    let out = std::process::Command::new(python)
        .current_dir(root.join("benches/peer"))
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "unreadable report ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A peer report's timed runs (`compute_s`) and thread count.
pub fn peer_timings(report: &serde_json::Value) -> Result<(Stats, u64), String> {
    let runs: Vec<Duration> = report["compute_s"]
        .as_array()
        .ok_or("no compute_s in the report")?
        .iter()
        .filter_map(|s| s.as_f64().map(Duration::from_secs_f64))
        .collect();
    if runs.is_empty() {
        return Err("the report has no timed run".into());
    }
    Ok((Stats::of(&runs), report["threads"].as_u64().unwrap_or(1)))
}

pub fn write_parquet(batch: &RecordBatch, path: &Path) {
    let file = std::fs::File::create(path).expect("create parquet");
    let mut w =
        parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).expect("parquet writer");
    w.write(batch).expect("write parquet");
    w.close().expect("close parquet");
}

pub fn read_parquet(path: &Path) -> RecordBatch {
    let file = std::fs::File::open(path).expect("open peer output");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("parquet reader");
    let batches: Vec<RecordBatch> = reader.map(|b| b.expect("peer batch")).collect();
    let schema = batches.first().expect("peer rows").schema();
    arrow::compute::concat_batches(&schema, &batches).expect("concat")
}

/// Min / median / max of `runs` timed runs of `f` after one warm-up.
pub fn time_runs(runs: usize, mut f: impl FnMut()) -> Stats {
    f();
    let times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    Stats::of(&times)
}

/// The machine a benchmark ran on: CPU model, cores, memory.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU".to_string(), |m| m.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("machine: {model}, {cores} cores, {mem_gib:.0} GiB")
}

/// Rows of one FinanceDataReader-style CSV read as `ingest.ohlcv` does (validation, rejects),
/// for trading days up to `ds`; `code` for files that do not name it.
fn collect(
    reader: impl std::io::Read,
    code: Option<&str>,
    ds: NaiveDate,
    out: &mut Collector,
) -> Option<()> {
    let provisional = Default::default();
    let w = Window {
        ds,
        from: None,
        codes: None,
        provisional: &provisional,
        calendar: &krxflow_schedule::KrxCalendar::new(),
        tol_abs: 2.0,
        tol_rel: 0.001,
    };
    read_csv(reader, &Columns::default(), code, &w, out).ok()
}

/// The repository root (the workspace above `pipelines/`).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The shared data folder: `KRXFLOW_DATA`, else `../shared/data` beside the repository.
pub fn shared_data() -> PathBuf {
    std::env::var_os("KRXFLOW_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/data"))
}

/// The full-market panel's path, or `None` after printing why the bench is skipped.
pub fn full_market_panel(data: &Path) -> Option<PathBuf> {
    let panel =
        data.join("ohlcv/krx_fullmarket_2018_2019/kr_fullmarket_daily_20181126_20190918.csv.gz");
    if panel.exists() {
        Some(panel)
    } else {
        eprintln!("skipped: {} not found (set KRXFLOW_DATA)", panel.display());
        None
    }
}

/// The full-market panel (CSV.gz) through krxflow's validating parser.
pub fn read_panel(panel: &Path) -> Option<Collector> {
    let mut out = Collector::default();
    let file = std::fs::File::open(panel).ok()?;
    let ds = NaiveDate::from_ymd_opt(2019, 9, 18)?;
    collect(flate2::read::GzDecoder::new(file), None, ds, &mut out)?;
    Some(out)
}

/// The 30 tickers' CSVs (`ohlcv/krx_daily_30` under `data`) up to `ds`, as accepted bars.
pub fn krx30_bars(data: &Path, ds: NaiveDate) -> Option<RecordBatch> {
    let mut out = Collector::default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("ohlcv/krx_daily_30"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for f in files {
        let code = f.file_stem()?.to_string_lossy().to_string();
        collect(std::fs::File::open(&f).ok()?, Some(&code), ds, &mut out)?;
    }
    krxflow_pipelines::ingest::ohlcv::bars_batch(&out.bars, "csv_dir").ok()
}
