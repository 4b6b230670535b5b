//! The Python peers of the full-market daily batch (`benches/peer/daily_polars.py`,
//! `daily_pandas.py`): their set-up, their runs and the agreement of their results with krxflow's
//! tables.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Installs the peer's pinned packages into `.venv-peer-daily` (`benches/peer/setup.sh daily`,
/// idempotent); the venv's python, or why it could not.
pub fn setup_daily(root: &Path) -> Result<PathBuf, String> {
    let out = Command::new("bash")
        .arg(root.join("benches/peer/setup.sh"))
        .arg("daily")
        .output()
        .map_err(|e| format!("cannot run benches/peer/setup.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "benches/peer/setup.sh daily failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(root.join(".venv-peer-daily/bin/python"))
}

/// Runs `script` in `benches/peer` with `args`; its one-line JSON report.
pub fn run(root: &Path, python: &Path, script: &str, args: &[&str]) -> Result<Value, String> {
    let out = Command::new(python)
        .current_dir(root.join("benches/peer"))
        .arg(script)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).map_err(|e| format!("unreadable report ({e}): {stdout}"))
}

/// Where the peer's day differs from krxflow's, as the peer's check found (its
/// `agreement.disagreements`: rows, values beyond each step's bound, directions, hits); a report
/// without the check is a disagreement too.
pub fn disagreements(report: &Value) -> Vec<String> {
    match report["agreement"]["disagreements"].as_array() {
        Some(v) => v
            .iter()
            .map(|d| d.as_str().unwrap_or("?").to_string())
            .collect(),
        None => vec!["the report has no agreement check".to_string()],
    }
}

/// `xs` of the report's array `key` as numbers.
pub fn numbers(report: &Value, key: &str) -> Vec<f64> {
    report[key]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}
