//! Tests that need the real data (`../shared/data`, or `KRXFLOW_DATA`) skip without it; a skip
//! must not pass for a run. [`real_data_absent`] says why on stderr and, when the test command
//! set `KRXFLOW_SKIP_LOG` (`scripts/test.sh` does), appends a line to that file, so the
//! command prints how many real-data tests skipped and fails when the data was there.

use std::io::Write;
use std::path::Path;

/// Records that the running test (named by its libtest thread) skipped because `dir` holds
/// no real data.
pub fn real_data_absent(dir: &Path) {
    let current = std::thread::current();
    let test = current.name().unwrap_or("a test");
    let line = format!(
        "skipped: {test}: real data not found at {} (set KRXFLOW_DATA)",
        dir.display()
    );
    eprintln!("{line}");
    let Some(log) = std::env::var_os("KRXFLOW_SKIP_LOG") else {
        return;
    };
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut f| writeln!(f, "{line}"));
    if let Err(e) = written {
        eprintln!(
            "cannot record the skip in {}: {e}",
            Path::new(&log).display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_is_appended_to_the_log_the_test_command_reads() {
        let log = std::env::temp_dir().join(format!("krxflow-skips-{}", std::process::id()));
        let _ = std::fs::remove_file(&log);
        // SAFETY: no other test of this crate reads or writes KRXFLOW_SKIP_LOG.
        unsafe { std::env::set_var("KRXFLOW_SKIP_LOG", &log) };
        real_data_absent(Path::new("/nowhere"));
        real_data_absent(Path::new("/nowhere"));
        unsafe { std::env::remove_var("KRXFLOW_SKIP_LOG") };
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.contains("a_skip_is_appended_to_the_log") && text.contains("/nowhere"),
            "the test's name and the folder: {text}"
        );
        let _ = std::fs::remove_file(&log);
    }
}
