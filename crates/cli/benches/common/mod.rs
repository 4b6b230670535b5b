//! What the CLI benchmarks share: running the release `krxflow` on a lake, finding the real
//! data, the trading days a dry-run backfill lists, and one-number SQL answers.
#![allow(dead_code)]

pub mod peer;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test, run from the repository root on `lake` with `env`: its wall time and
/// stdout. Panics with both outputs when it fails (a benchmark of a failing run means nothing).
pub struct Krxflow {
    pub root: PathBuf,
    pub lake: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Krxflow {
    /// `krxflow --lake LAKE ARGS...` from the repository root with the environment.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_krxflow"));
        cmd.current_dir(&self.root)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--lake")
            .arg(&self.lake)
            .args(args);
        cmd
    }

    pub fn run(&self, args: &[&str]) -> (Duration, String) {
        let t = Instant::now();
        let out = self.command(args).output().expect("start krxflow");
        let elapsed = t.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "krxflow {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (elapsed, stdout)
    }

    /// Like [`Krxflow::run`], also giving the process's peak resident memory in bytes (its
    /// `VmHWM`, read from `/proc` every 2 ms while it runs: a high-water mark, so only growth
    /// in its last 2 ms could be missed).
    pub fn run_measured(&self, args: &[&str]) -> (Duration, u64, String) {
        let out = tempfile::NamedTempFile::new().expect("stdout file");
        let err = tempfile::NamedTempFile::new().expect("stderr file");
        let t = Instant::now();
        let mut child = self
            .command(args)
            .stdout(Stdio::from(out.reopen().expect("stdout")))
            .stderr(Stdio::from(err.reopen().expect("stderr")))
            .spawn()
            .expect("start krxflow");
        let status_file = format!("/proc/{}/status", child.id());
        let mut peak_kb = 0u64;
        let status = loop {
            if let Ok(s) = std::fs::read_to_string(&status_file)
                && let Some(kb) = s
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak_kb = peak_kb.max(kb);
            }
            if let Some(status) = child.try_wait().expect("wait for krxflow") {
                break status;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let elapsed = t.elapsed();
        let stdout = std::fs::read_to_string(out.path()).unwrap_or_default();
        assert!(
            status.success(),
            "krxflow {args:?} failed:\n{stdout}\n{}",
            std::fs::read_to_string(err.path()).unwrap_or_default()
        );
        (elapsed, peak_kb * 1024, stdout)
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
    shared_data(root, "ohlcv/krx_daily_30")
}

/// The shared data folder (`KRXFLOW_DATA`, default `../shared/data`) when it holds the folder
/// `needs`; `None` (after saying so) otherwise.
pub fn shared_data(root: &Path, needs: &str) -> Option<PathBuf> {
    let data = std::env::var_os("KRXFLOW_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/data"));
    if !data.join(needs).is_dir() {
        eprintln!(
            "skipped: {} has no {needs} (set KRXFLOW_DATA)",
            data.display()
        );
        return None;
    }
    data.canonicalize().ok()
}

/// Copies the folder `from` to `to` (files and folders; a lake holds nothing else).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read folder") {
        let entry = entry.expect("folder entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// Min, median and max of `xs` (sorted in place).
pub fn min_median_max(xs: &mut [f64]) -> (f64, f64, f64) {
    xs.sort_by(f64::total_cmp);
    (xs[0], xs[xs.len() / 2], xs[xs.len() - 1])
}

/// The environment of a loop on `universe` over the shared `data`, with the linear ranker a
/// member (`linear`: the default DAGs) or not (LightGBM + ETS, the loop the Python peers
/// implement).
pub fn loop_env(universe: &str, data: &Path, linear: bool) -> Vec<(String, String)> {
    vec![
        ("KRXFLOW_UNIVERSE".into(), universe.into()),
        ("KRXFLOW_DATA".into(), data.to_string_lossy().into_owned()),
        (
            "KRXFLOW_LINEAR".into(),
            if linear { "on" } else { "off" }.into(),
        ),
    ]
}

/// The Sunday retrains of that loop.
pub fn retrains(linear: bool) -> &'static [&'static str] {
    if linear {
        &["retrain_weekly", "retrain_linear"]
    } else {
        &["retrain_weekly"]
    }
}

/// `yaml` with every task's `checks:` block left out.
pub fn without_checks(yaml: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in yaml.lines() {
        let indent = line.len() - line.trim_start().len();
        if skipping && (line.trim().is_empty() || indent > 4) {
            continue;
        }
        skipping = line.trim_end() == "    checks:";
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(!out.contains("checks:"), "a checks block was left in");
    out
}

/// A copy of the shipped `dags/daily_batch.yaml` without its `checks:`, written into `dir`:
/// the baseline of what the checks cost.
pub fn daily_batch_without_checks(root: &Path, dir: &Path) -> PathBuf {
    let shipped =
        std::fs::read_to_string(root.join("dags/daily_batch.yaml")).expect("daily_batch.yaml");
    let copy = dir.join("daily_batch.yaml");
    std::fs::write(&copy, without_checks(&shipped)).expect("write the copy");
    copy
}
