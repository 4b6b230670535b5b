//! End-to-end `krxflow vacuum`: compacted files go, the current rows stay, a dry run deletes
//! nothing, and the default window keeps recent versions; the refusal of a short window while a
//! scheduler runs (tests/e2e/serve.rs).

use crate::common::{count, krxflow, parquet_files, small_dag, text};

/// Three days written, then compacted: the three small files are replaced by one.
pub fn written_and_compacted(lake: &std::path::Path, dag: &std::path::Path) {
    for date in ["2024-12-12", "2024-12-13", "2024-12-16"] {
        let o = krxflow(lake, &["run", dag.to_str().unwrap(), "--date", date]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let o = krxflow(lake, &["compact", "ohlcv_daily"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn vacuum_deletes_what_compaction_replaced_and_keeps_every_current_row() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let dag = small_dag(dir.path(), "small");
    written_and_compacted(&lake, &dag);
    let table = lake.join("ohlcv_daily");
    let stored = parquet_files(&table);
    let rows = count(&lake, "SELECT count(*) FROM ohlcv_daily");
    assert!(
        stored >= 4,
        "three writes and their compaction: {stored} files"
    );

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
