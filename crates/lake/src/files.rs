//! How data files are written: the Parquet writer properties of every write and compaction,
//! and the Delta properties a table is created with.

use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::WriterProperties;

/// Rows per Parquet row group. Rows are written in date order, so a date-range read (as of
/// a day, since a day, the rows a merge compares) skips most of a large file by the row
/// groups' statistics instead of decoding all of it.
const ROW_GROUP_ROWS: usize = 16_384;

/// The Parquet settings of every file the lake writes (its writes and compactions).
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build()
}

/// Commits between Delta checkpoints (Delta's default is 100). Loading a table, and every scan
/// and commit on it, replays the JSON commits since the last checkpoint: up to 99 (about 50
/// on average) at 100, up to 9 at 10. A checkpoint of a compacted table is a few KB (<= 16
/// live files and their tombstones).
pub const CHECKPOINT_INTERVAL: u64 = 10;

/// The Delta table properties a write that creates a table sets (they are ignored when the
/// table exists: a lake created before keeps its own).
pub(crate) fn table_configuration() -> [(&'static str, Option<String>); 1] {
    [(
        "delta.checkpointInterval",
        Some(CHECKPOINT_INTERVAL.to_string()),
    )]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use krxflow_core::WriteMode;

    use super::CHECKPOINT_INTERVAL;
    use crate::testutil::{price_rows, prices, prices_lake};

    #[tokio::test]
    async fn a_table_the_lake_creates_is_checkpointed_every_ten_commits() {
        let (dir, lake) = prices_lake();
        let log = dir.path().join("prices/_delta_log");
        let checkpoint = |v: u64| log.join(format!("{v:020}.checkpoint.parquet")).exists();
        for d in 0..CHECKPOINT_INTERVAL as i32 {
            let rows = price_rows(&[("a", d, f64::from(d))]);
            lake.write(&prices(), rows, WriteMode::Merge, None, BTreeMap::new())
                .await
                .unwrap();
            if d == CHECKPOINT_INTERVAL as i32 - 2 {
                assert!(
                    !checkpoint(CHECKPOINT_INTERVAL - 2),
                    "none before the 10th commit"
                );
            }
        }
        assert!(
            checkpoint(CHECKPOINT_INTERVAL - 1),
            "versions 0..=9: a checkpoint at 9"
        );
        let table = lake.load("prices", None).await.unwrap().unwrap();
        let config = table.snapshot().unwrap().metadata().configuration().clone();
        assert_eq!(
            config.get("delta.checkpointInterval").map(String::as_str),
            Some("10")
        );
    }
}
