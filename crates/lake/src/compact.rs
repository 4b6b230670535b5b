//! Compaction: Delta's optimize bin-packs a table's small data files into few large ones.

use std::num::NonZeroU64;

use deltalake::DeltaTable;

use crate::error::LakeResult;
use crate::files::writer_properties;
use crate::log_cleanup::commit_properties;
use crate::table::{Lake, version_of};

/// What a compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compaction {
    pub table: String,
    pub files_before: usize,
    pub files_removed: u64,
    pub files_added: u64,
    /// The version the compaction committed.
    pub version: i64,
}

/// Data files a table may reach before a write compacts it: a daily partition adds a small
/// file per table, and a read opens every file its date filter cannot skip.
pub const COMPACT_AT_FILES: usize = 16;

/// The target size of the compaction a write triggers, from the sizes of the table's files:
/// the small files are merged, a file more than twice the size of all smaller ones together
/// is left as it is (and so are the larger ones). Rewriting a table's whole history to add two
/// weeks of small daily files cost more than the days' writes; with this rule a row is
/// rewritten only into a file at least 1.5 times the size of the one it was in (so at most
/// log1.5 of the table's growth times), and the files left alone grow threefold from one to
/// the next (so there are few). `None` when fewer than two files would be merged.
pub(crate) fn tiered_target(sizes: impl IntoIterator<Item = u64>) -> Option<NonZeroU64> {
    let mut sizes: Vec<u64> = sizes.into_iter().collect();
    sizes.sort_unstable();
    let (mut sum, mut merged) = (0u64, 0usize);
    for size in sizes {
        if merged > 0 && size > sum.saturating_mul(2) {
            break;
        }
        sum = sum.saturating_add(size);
        merged += 1;
    }
    // Headroom over the inputs' sum so that the merged file is written as one file; the next
    // file up is more than twice the sum, so it stays out.
    (merged >= 2)
        .then(|| NonZeroU64::new(sum.saturating_add(sum / 4)))
        .flatten()
}

impl Lake {
    /// Compacts `name` when it holds at least `min_files` data files: Delta's optimize
    /// bin-packs them into few large ones in one commit that changes no row (earlier versions
    /// stay readable). `None` when the table is absent or has fewer files.
    pub async fn compact(&self, name: &str, min_files: usize) -> LakeResult<Option<Compaction>> {
        let lock = self.write_lock(name);
        let _writing = lock.lock().await;
        let Some(table) = self.load(name, None).await? else {
            return Ok(None);
        };
        let files = table.snapshot()?.log_data().num_files();
        if files < min_files.max(2) {
            return Ok(None);
        }
        self.optimize(name, table, files, None).await.map(Some)
    }

    /// Bin-packs the table's files smaller than `target` bytes (Delta's target file size when
    /// `None`) into files of up to that size.
    pub(crate) async fn optimize(
        &self,
        name: &str,
        table: DeltaTable,
        files: usize,
        target: Option<NonZeroU64>,
    ) -> LakeResult<Compaction> {
        let commit = commit_properties().with_metadata([(
            "krxflow.compaction".to_string(),
            serde_json::Value::Bool(true),
        )]);
        let mut plan = table.optimize();
        if let Some(target) = target {
            plan = plan.with_target_size(target);
        }
        let (table, metrics) = plan
            .with_writer_properties(writer_properties())
            .with_commit_properties(commit)
            .with_session_state(std::sync::Arc::new(self.datafusion_session().state()))
            .await?;
        self.clean_log_at_checkpoint(name, &table).await;
        self.remember(name, &table);
        Ok(Compaction {
            table: name.to_string(),
            files_before: files,
            files_removed: metrics.num_files_removed,
            files_added: metrics.num_files_added,
            version: version_of(&table),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use arrow::array::RecordBatch;
    use krxflow_core::WriteMode;

    use super::*;
    use crate::catalog::Catalog;
    use crate::read::ReadOptions;
    use crate::testutil::{price_rows, prices as def};

    #[test]
    fn a_tiered_compaction_merges_the_small_files_and_leaves_a_much_larger_one() {
        let target = |s: &[u64]| tiered_target(s.iter().copied()).map(NonZeroU64::get);
        // Two weeks of daily files next to the compacted history: only the days merge.
        let mut sizes = vec![130_000; 15];
        sizes.push(32_000_000);
        let t = target(&sizes).unwrap();
        assert!((1_950_000..32_000_000).contains(&t), "{t}");
        // Files of about the same size all merge, whatever their order.
        assert!(target(&[1_010, 1_000, 990, 1_005]).unwrap() >= 1_010);
        // The merged days join them once they are at least half as large as the days.
        let t = target(&[130_000, 130_000, 130_000, 1_950_000 / 5, 32_000_000]).unwrap();
        assert!((790_000..32_000_000).contains(&t), "{t}");
        // One file, or one small file beside only huge ones: nothing to merge.
        assert_eq!(target(&[5]), None);
        assert_eq!(target(&[10, 1_000, 100_000]), None);
    }

    fn day(d: i32) -> Vec<RecordBatch> {
        price_rows(&[("a", d, f64::from(d))])
    }

    #[tokio::test]
    async fn the_write_that_reaches_16_files_compacts_the_table_and_keeps_every_row_and_version() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), Catalog::with_tables([def()])).unwrap();
        let files = |t: &DeltaTable| t.snapshot().unwrap().log_data().num_files();
        for d in 0..(COMPACT_AT_FILES as i32 - 1) {
            lake.write(&def(), day(d), WriteMode::Merge, None, BTreeMap::new())
                .await
                .unwrap();
        }
        let before = lake.load("prices", None).await.unwrap().unwrap();
        assert_eq!(
            files(&before),
            COMPACT_AT_FILES - 1,
            "no compaction below the bar"
        );
        let last = lake
            .write(&def(), day(100), WriteMode::Merge, None, BTreeMap::new())
            .await
            .unwrap();
        let after = lake.load("prices", None).await.unwrap().unwrap();
        assert_eq!(
            files(&after),
            1,
            "the 16th file's write packed them into one"
        );
        assert_eq!(
            version_of(&after),
            last.version + 1,
            "one compaction commit after the write"
        );
        let rows = lake.read("prices", ReadOptions::default()).await.unwrap();
        assert_eq!(rows.num_rows(), COMPACT_AT_FILES, "no row changed");
        let old = ReadOptions {
            version: Some(3),
            ..Default::default()
        };
        assert_eq!(
            lake.read("prices", old).await.unwrap().num_rows(),
            4,
            "earlier versions stay readable"
        );
    }
}
