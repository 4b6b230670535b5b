//! Reliability: `krxflow backfill` SIGKILLed at seeded random points, five times over, then
//! run to completion, ends with the lake an uninterrupted backfill makes: every partition
//! once, every table readable after every kill, no duplicate key, the same rows.

use std::process::{Command, Stdio};
use std::time::Instant;

use crate::common::{count, krxflow, repo_root, text};

const FROM: &str = "2024-10-01";
const TO: &str = "2024-11-29";
const BACKFILL: [&str; 8] = [
    "backfill",
    "demo",
    "--from",
    FROM,
    "--to",
    TO,
    "--parallel",
    "2",
];

/// SplitMix64: the kill points are random but the same on every run of the test.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Row counts (and the sum of closes) of the data tables, and the duplicate keys found.
fn snapshot(lake: &std::path::Path) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for t in ["ohlcv_daily", "news", "universe", "features_returns"] {
        out.push((
            t.to_string(),
            count(lake, &format!("SELECT count(*) FROM {t}")),
        ));
    }
    out.push((
        "sum(close) x 1000".into(),
        count(
            lake,
            "SELECT CAST(round(sum(close) * 1000) AS BIGINT) FROM ohlcv_daily",
        ),
    ));
    out
}

fn duplicate_keys(lake: &std::path::Path) -> i64 {
    let mut total = 0;
    for (table, keys) in [
        ("ohlcv_daily", "code, date"),
        ("features_returns", "code, date"),
        ("news", "id"),
    ] {
        let dups = format!(
            "SELECT {keys}, count(*) AS n FROM {table} GROUP BY {keys} HAVING count(*) > 1"
        );
        let n = count(lake, &format!("SELECT count(*) FROM ({dups})"));
        if n > 0 {
            // Which keys, and the commits that wrote the table, for the failure message.
            let shown = krxflow(lake, &["sql", &format!("{dups} ORDER BY {keys} LIMIT 5")]);
            let log = krxflow(lake, &["--json", "tables"]);
            eprintln!(
                "{n} keys of `{table}` held twice, e.g.\n{}\ntables: {}",
                text(&shown),
                text(&log)
            );
        }
        total += n;
    }
    total
}

fn every_table_readable(lake: &std::path::Path) {
    let o = krxflow(lake, &["--json", "tables"]);
    assert!(o.status.success(), "{}", text(&o));
    let tables: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for t in tables.as_array().unwrap() {
        let name = t["table"].as_str().unwrap().replace('/', ".");
        count(lake, &format!("SELECT count(*) FROM {name}"));
    }
}

#[test]
fn backfill_killed_five_times_at_random_points_ends_equal_to_an_uninterrupted_one() {
    let reference = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let o = krxflow(reference.path(), &BACKFILL);
    assert!(o.status.success(), "{}", text(&o));
    let full = t0.elapsed();
    let expected = snapshot(reference.path());
    let days = count(
        reference.path(),
        "SELECT count(DISTINCT ds) FROM _krxflow.runs WHERE state = 'succeeded'",
    );
    assert_eq!(days, 41);

    let lake = tempfile::tempdir().unwrap();
    let mut seed = 20_241_201u64;
    let mut killed = 0;
    for trial in 0..5 {
        // Somewhere in the first 10-40% of the work left (each trial resumes where the ones
        // before it stopped, so they hit later partitions).
        let done = if lake.path().join("_krxflow/runs/_delta_log").exists() {
            count(
                lake.path(),
                "SELECT count(DISTINCT ds) FROM _krxflow.runs WHERE state = 'succeeded'",
            )
        } else {
            0
        };
        let left = (days - done) as f64 / days as f64;
        let frac = 0.1 + 0.3 * (splitmix(&mut seed) % 10_000) as f64 / 10_000.0;
        let at = full.mul_f64(frac * left);
        let mut child = Command::new(env!("CARGO_BIN_EXE_krxflow"))
            .current_dir(repo_root())
            .env("KRXFLOW_LAKE", lake.path())
            .args(BACKFILL)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(at);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        child.wait().unwrap();
        eprintln!("reliability: trial {trial}: {done} of {days} partitions done, killed at {at:?}");
        if lake.path().join("ohlcv_daily/_delta_log").exists()
            && lake.path().join("features_returns/_delta_log").exists()
            && lake.path().join("news/_delta_log").exists()
        {
            every_table_readable(lake.path());
            assert_eq!(duplicate_keys(lake.path()), 0, "trial {trial}");
        }
    }
    assert!(killed >= 5, "only {killed} of 5 trials were killed mid-way");

    let o = krxflow(lake.path(), &BACKFILL);
    assert!(o.status.success(), "{}", text(&o));
    every_table_readable(lake.path());
    assert_eq!(duplicate_keys(lake.path()), 0);
    assert_eq!(snapshot(lake.path()), expected);
    let succeeded = count(
        lake.path(),
        "SELECT count(DISTINCT ds) FROM _krxflow.runs WHERE state = 'succeeded'",
    );
    assert_eq!(succeeded, days, "every partition ran");
    // A kill between the engine tables' commits (task_runs goes last, on purpose) leaves a
    // finished partition looking not done: it runs again, idempotently. The rows above prove
    // the redo changed nothing; how many were redone is reported, not bounded.
    let redone = count(
        lake.path(),
        "SELECT count(*) FROM (SELECT ds FROM _krxflow.runs WHERE state = 'succeeded' \
         GROUP BY ds HAVING count(*) > 1)",
    );
    eprintln!("reliability: {redone} partitions ran again after a kill between engine commits");
}

/// Two backfills over overlapping ranges at once, in two processes on one lake: Delta's
/// optimistic commits make the loser of each race retry, so no commit is lost, no key is
/// duplicated, and both backfills are recorded as succeeded.
#[test]
fn two_overlapping_backfills_at_once_lose_no_commit_and_duplicate_no_key() {
    let reference = tempfile::tempdir().unwrap();
    let o = krxflow(
        reference.path(),
        &[
            "backfill",
            "demo",
            "--from",
            "2024-10-01",
            "--to",
            "2024-11-08",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let expected = snapshot(reference.path());
    let expected_days = count(
        reference.path(),
        "SELECT count(DISTINCT ds) FROM _krxflow.runs WHERE state = 'succeeded'",
    );

    let lake = tempfile::tempdir().unwrap();
    let spawn = |from: &str, to: &str| {
        Command::new(env!("CARGO_BIN_EXE_krxflow"))
            .current_dir(repo_root())
            .env("KRXFLOW_LAKE", lake.path())
            .args([
                "backfill",
                "demo",
                "--from",
                from,
                "--to",
                to,
                "--parallel",
                "2",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn("2024-10-01", "2024-10-25");
    let b = spawn("2024-10-14", "2024-11-08");
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "first: {}", text(&a));
    assert!(b.status.success(), "second: {}", text(&b));
    every_table_readable(lake.path());
    assert_eq!(duplicate_keys(lake.path()), 0);
    assert_eq!(
        snapshot(lake.path()),
        expected,
        "the same rows as one backfill"
    );
    let backfills = count(
        lake.path(),
        "SELECT count(DISTINCT backfill_id) FROM _krxflow.backfills WHERE state = 'succeeded'",
    );
    assert_eq!(backfills, 2, "both recorded");
    let days = count(
        lake.path(),
        "SELECT count(DISTINCT ds) FROM _krxflow.runs WHERE state = 'succeeded'",
    );
    assert_eq!(days, expected_days, "every trading day of the union ran");
}
