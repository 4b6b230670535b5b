//! End-to-end on real data (`../shared/data`, skipped when absent): the krx30 DAG from an empty
//! lake, idempotent reruns, and the point-in-time property — append rows after D to the inputs,
//! re-run D, identical output.

use crate::common::repo_root;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub(crate) fn data_dir() -> Option<PathBuf> {
    let dir = crate::common::shared_data();
    if dir.join("ohlcv/krx_daily_30").is_dir() {
        Some(dir)
    } else {
        krxflow_core::skip::real_data_absent(&dir);
        None
    }
}

fn krxflow(lake: &Path, data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_krxflow"))
        .current_dir(repo_root())
        .env("KRXFLOW_LAKE", lake)
        .env("KRXFLOW_DATA", data)
        .args(args)
        .output()
        .expect("krxflow binary runs")
}

fn ok(o: Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "krxflow failed:\n{text}");
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// `krxflow run dags/krx30.yaml --date DATE EXTRA...`, which must succeed; its stdout.
fn run_krx30(lake: &Path, data: &Path, date: &str, extra: &[&str]) -> String {
    let mut args = vec!["run", "dags/krx30.yaml", "--date", date];
    args.extend_from_slice(extra);
    ok(krxflow(lake, data, &args))
}

/// A query's result as CSV.
fn sql_csv(lake: &Path, data: &Path, q: &str) -> String {
    ok(krxflow(lake, data, &["sql", q, "--format", "csv"]))
}

/// The three tickers most real-data tests run on.
pub(crate) const THREE: &[&str] = &["005930", "005380", "000660"];

/// A data folder with the price files of `codes` cut after `last` (or whole); the index, the
/// universe listing and the news linked whole.
pub(crate) fn subset(dst: &Path, src: &Path, codes: &[&str], last: Option<&str>) {
    let prices = dst.join("ohlcv/krx_daily_30");
    std::fs::create_dir_all(&prices).unwrap();
    for code in codes {
        let text =
            std::fs::read_to_string(src.join(format!("ohlcv/krx_daily_30/{code}.csv"))).unwrap();
        let kept: Vec<&str> = text
            .lines()
            .enumerate()
            .filter(|(i, l)| *i == 0 || last.is_none_or(|d| &l[..10] <= d))
            .map(|(_, l)| l)
            .collect();
        std::fs::write(prices.join(format!("{code}.csv")), kept.join("\n") + "\n").unwrap();
    }
    // Inputs that are filtered by date inside the operators are linked whole.
    for dir in [
        "ohlcv/kospi_index",
        "ohlcv/krx_fullmarket_2018_2019",
        "sentiment/naver_news_dated",
        "sentiment/news_headlines_labeled",
    ] {
        let link = dst.join(dir);
        if !link.exists() {
            std::fs::create_dir_all(link.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(src.join(dir).canonicalize().unwrap(), &link).unwrap();
        }
    }
}

const D: &str = "2022-03-15";
const FEATURES_UPTO_D: &str =
    "SELECT * FROM features_daily WHERE date <= DATE '2022-03-15' ORDER BY code, date";

#[test]
fn krx30_features_for_d_are_identical_after_future_rows_are_appended_and_d_is_rerun() {
    let Some(src) = data_dir() else { return };
    let lake = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    subset(data.path(), &src, THREE, Some(D));
    let run = |date: &str, extra: &[&str]| run_krx30(lake.path(), data.path(), date, extra);
    let sql = |q: &str| sql_csv(lake.path(), data.path(), q);

    let first = run(D, &[]);
    assert!(first.contains("succeeded"), "{first}");
    let at_d = sql(FEATURES_UPTO_D);
    let rows = at_d.lines().count() - 1;
    assert!(rows > 3 * 5000, "three tickers' history: {rows} rows");
    let sentiment_rows: i64 =
        sql("SELECT count(*) FROM sentiment_daily WHERE date > DATE '2022-03-15'")
            .lines()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
    assert_eq!(
        sentiment_rows, 0,
        "no sentiment row after D is written by D's run"
    );

    // Re-running D rewrites, never duplicates.
    run(D, &["--reprocess", "all"]);
    assert_eq!(sql(FEATURES_UPTO_D), at_d);

    // Append the rows after D (the whole files), run a later day, then re-run D.
    subset(data.path(), &src, THREE, None);
    run("2022-06-10", &[]);
    let later: i64 = sql("SELECT count(*) FROM features_daily WHERE date > DATE '2022-03-15'")
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(later > 100, "the later run saw the appended rows");
    run(D, &["--reprocess", "all"]);
    assert_eq!(
        sql(FEATURES_UPTO_D),
        at_d,
        "features up to D changed once rows after D existed"
    );
}

#[test]
fn krx30_from_an_empty_lake_fills_every_table_with_reasons_for_rejects() {
    let Some(src) = data_dir() else { return };
    let lake = tempfile::tempdir().unwrap();
    let out = ok(krxflow(
        lake.path(),
        &src,
        &["run", "dags/krx30.yaml", "--date", "2024-12-16"],
    ));
    assert!(out.contains("succeeded"), "{out}");
    let sql = |q: &str| sql_csv(lake.path(), &src, q);
    let counts = sql(
        "SELECT (SELECT count(DISTINCT code) FROM ohlcv_daily) AS codes, \
                (SELECT count(*) FROM ohlcv_daily) AS bars, \
                (SELECT count(*) FROM ohlcv_rejects) AS rejects, \
                (SELECT count(*) FROM index_rejects WHERE reason = 'null_value') AS index_nulls, \
                (SELECT count(*) FROM news) AS news, \
                (SELECT count(*) FROM features_daily) AS features",
    );
    assert_eq!(
        counts.lines().nth(1),
        Some("30,140857,3308,149,16231,140857"),
        "{counts}"
    );
    let reasons =
        sql("SELECT reason, count(*) AS n FROM ohlcv_rejects GROUP BY reason ORDER BY reason");
    assert_eq!(
        reasons
            .lines()
            .skip(1)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>(),
        [
            "inconsistent_high_low,47",
            "trading_halt,148",
            "zero_volume,3113"
        ]
    );
}

/// A daily run after the first reads only recent inputs (ingest from the watermarks, features
/// from a trailing window of 1000 trading days); what it writes equals what a full refresh of
/// the same day computes from all history: text, dates and counts exactly, floats to 1e-9
/// relative (the window moves only the last digits of rolling statistics).
#[test]
fn an_incremental_daily_run_writes_what_a_full_refresh_writes() {
    let Some(src) = data_dir() else { return };
    let lake = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    subset(data.path(), &src, THREE, None);
    let run = |date: &str, extra: &[&str]| run_krx30(lake.path(), data.path(), date, extra);
    let sql = |q: &str| sql_csv(lake.path(), data.path(), q);
    const DAY: &str = "2022-06-10";
    let tables = [
        "SELECT * FROM features_daily WHERE date >= DATE '2022-05-20' ORDER BY code, date",
        "SELECT * FROM ohlcv_daily WHERE date >= DATE '2022-05-20' ORDER BY code, date",
        "SELECT * FROM index_daily WHERE date >= DATE '2022-05-20' ORDER BY code, date",
        "SELECT id, code, date, title FROM news WHERE date >= DATE '2022-05-20' ORDER BY id",
        "SELECT * FROM sentiment_daily WHERE date >= DATE '2022-05-20' ORDER BY code, date",
    ];

    run("2022-06-09", &[]);
    let out = run(DAY, &[]);
    assert!(
        out.contains("incremental_runs=1"),
        "the second day runs incrementally:\n{out}"
    );
    let incremental: Vec<String> = tables.iter().map(|q| sql(q)).collect();
    assert!(
        incremental[0].lines().count() > 3 * 10,
        "{}",
        incremental[0]
    );

    run(DAY, &["--reprocess", "all"]);
    // Every window is computed from exactly its rows, so the shorter read of an incremental
    // run changes no bit (and the full refresh finds every row already stored).
    for (q, before) in tables.iter().zip(&incremental) {
        let after = sql(q);
        let (a, b): (Vec<&str>, Vec<&str>) = (before.lines().collect(), after.lines().collect());
        assert_eq!(a.len(), b.len(), "row counts differ: {q}");
        for (ra, rb) in a.iter().zip(&b) {
            assert_eq!(ra, rb, "{q}");
        }
    }
}
