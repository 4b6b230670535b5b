//! Helpers shared by the end-to-end tests that drive the `krxflow` binary.
// Each test file is its own crate and uses a subset of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the binary from the repository root against `lake`.
pub fn krxflow(lake: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_krxflow"))
        .current_dir(repo_root())
        .env("KRXFLOW_LAKE", lake)
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
