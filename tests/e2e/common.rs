//! Helpers shared by the end-to-end tests that drive the `krxflow` binary.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shared data folder: `KRXFLOW_DATA`, else `../shared/data` beside the repository.
pub fn shared_data() -> PathBuf {
    std::env::var_os("KRXFLOW_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/data"))
}

/// Runs the binary from the repository root against `lake`.
pub fn krxflow(lake: &Path, args: &[&str]) -> Output {
    krxflow_with(lake, &[], args)
}

/// Runs the binary from the repository root against `lake` (a folder or a URL such as
/// `s3://bucket/prefix`) with `env` added (an object store's endpoint and keys).
pub fn krxflow_with(lake: impl AsRef<OsStr>, env: &[(String, String)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_krxflow"))
        .current_dir(repo_root())
        .env("KRXFLOW_LAKE", lake)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(args)
        .output()
        .expect("krxflow binary runs")
}

/// stdout then stderr.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The single number a `krxflow sql` query returns (the query must succeed).
pub fn count(lake: &Path, sql: &str) -> i64 {
    let o = krxflow(lake, &["sql", sql, "--format", "csv"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    out.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count for `{sql}` in {out}"))
}

/// Polls `f` every 250 ms until it holds; fails the test after `secs` seconds naming `what`.
pub fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// The Parquet files under a table's folder (data files of every version still stored).
pub fn parquet_files(table: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![table.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                n += 1;
            }
        }
    }
    n
}

/// A two-task DAG (synthetic ingest, returns) with no schedule, written to `dir/NAME.yaml`.
pub fn small_dag(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "dag: {name}\ntasks:\n  ingest:\n    op: ingest.synthetic\n    with: {{ tickers: 3, seed: 7, lookback_days: 10 }}\n    outputs: {{ bars: ohlcv_daily, news: news, universe: universe }}\n  returns:\n    op: features.returns\n    inputs: {{ bars: ohlcv_daily }}\n    outputs: {{ features: features_returns }}\n"
        ),
    )
    .expect("DAG file written");
    path
}
