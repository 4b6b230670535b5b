//! What the CLI benchmarks share: running the release `krxflow` on a lake, finding the real
//! data, the trading days a dry-run backfill lists, and one-number SQL answers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The binary under test, run from the repository root on `lake` with `env`: its wall time and
/// stdout. Panics with both outputs when it fails (a benchmark of a failing run means nothing).
pub struct Krxflow {
    pub root: PathBuf,
    pub lake: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Krxflow {
    pub fn run(&self, args: &[&str]) -> (Duration, String) {
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_krxflow"))
            .current_dir(&self.root)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--lake")
            .arg(&self.lake)
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

    /// The `n` column of the first row of `sql`.
    pub fn count(&self, sql: &str) -> i64 {
        let (_, out) = self.run(&["--json", "sql", sql]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("sql json");
        v.as_array()
            .and_then(|rows| rows.first())
            .and_then(|r| r.get("n"))
            .and_then(serde_json::Value::as_i64)
            .expect("count")
    }

    /// The trading days `backfill DAG --from FROM --to TO --dry-run` lists.
    pub fn trading_days(&self, dag: &str, from: &str, to: &str) -> Vec<String> {
        let (_, plan) = self.run(&["backfill", dag, "--from", from, "--to", to, "--dry-run"]);
        plan.lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| w.len() == 10 && w.as_bytes()[4] == b'-')
            .map(str::to_string)
            .collect()
    }
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shared data folder (`KRXFLOW_DATA`, default `../shared/data`) when it holds the 30 real
/// tickers; `None` (after saying so) otherwise.
pub fn real_data(root: &Path) -> Option<PathBuf> {
    let data = std::env::var_os("KRXFLOW_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/data"));
    if !data.join("ohlcv/krx_daily_30").is_dir() {
        eprintln!(
            "skipped: {} has no ohlcv/krx_daily_30 (set KRXFLOW_DATA)",
            data.display()
        );
        return None;
    }
    data.canonicalize().ok()
}
