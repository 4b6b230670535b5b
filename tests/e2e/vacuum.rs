//! End-to-end `krxflow vacuum`: replaced files go, the current rows stay, a dry run deletes
//! nothing, the default window keeps recent versions, and a short window is refused while a
//! scheduler runs.

use crate::common::{count, krxflow, parquet_files, small_dag, text};

fn rerun(lake: &std::path::Path, dag: &std::path::Path) {
    let o = krxflow(
        lake,
        &[
            "run",
            dag.to_str().unwrap(),
            "--date",
            "2024-12-16",
            "--reprocess",
            "all",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn vacuum_deletes_what_rewrites_replaced_and_keeps_every_current_row() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let dag = small_dag(dir.path(), "small");
    for _ in 0..3 {
        rerun(&lake, &dag);
    }
    let table = lake.join("ohlcv_daily");
    let stored = parquet_files(&table);
    let rows = count(&lake, "SELECT count(*) FROM ohlcv_daily");
    assert!(stored >= 3, "three writes of one partition: {stored} files");

    let kept = krxflow(&lake, &["vacuum"]);
    assert!(kept.status.success(), "{}", text(&kept));
    assert!(text(&kept).contains("deleted 0 files"), "{}", text(&kept));
    assert_eq!(
        parquet_files(&table),
        stored,
        "the 7-day window keeps every version"
    );

    let dry = krxflow(
        &lake,
        &["vacuum", "ohlcv_daily", "--retain", "0s", "--dry-run"],
    );
    let out = text(&dry);
    assert!(dry.status.success(), "{out}");
    assert!(out.contains("would delete"), "{out}");
    assert_eq!(parquet_files(&table), stored, "a dry run deletes nothing");

    let done = krxflow(&lake, &["vacuum", "--retain", "0s"]);
    assert!(done.status.success(), "{}", text(&done));
    let left = parquet_files(&table);
    assert!(
        left < stored,
        "{left} of {stored} files left:\n{}",
        text(&done)
    );
    assert_eq!(count(&lake, "SELECT count(*) FROM ohlcv_daily"), rows);
    let again = krxflow(&lake, &["vacuum", "--retain", "0s"]);
    assert!(text(&again).contains("deleted 0 files"), "{}", text(&again));

    let unknown = krxflow(&lake, &["vacuum", "nope"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));
}
