//! Helpers shared by the end-to-end tests that drive the `krxflow` binary.

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
