//! Compaction: a table's small data files merged into few large ones, in a commit that
//! changes no row and lands only on the version it was planned on.

use std::num::NonZeroU64;

use deltalake::DeltaTable;
use deltalake::kernel::{Action, Remove};
use deltalake::protocol::DeltaOperation;
use deltalake::table::config::TablePropertiesExt;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use object_store::path::Path;

use crate::commit::commit;
use crate::error::{LakeError, LakeResult};
use crate::files::writer_properties;
use crate::log_cleanup::commit_properties;
use crate::scan;
use crate::schema::conform;
use crate::table::{Lake, version_of};
use crate::write::in_date_order;

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

/// Compactions planned again after a commit by another writer made one fail.
const REPLANS: u32 = 3;

impl Lake {
    /// Compacts `name` when it holds at least `min_files` data files: its files of up to the
    /// table's target size are merged into few large ones in one commit that changes no row
    /// (earlier versions stay readable; see [`Lake::optimize`]). `None` when the table is absent or has fewer files. A compaction that
    /// another writer's commit overtook is planned again on the new version, a few times.
    pub async fn compact(&self, name: &str, min_files: usize) -> LakeResult<Option<Compaction>> {
        let lock = self.write_lock(name);
        let _writing = lock.lock().await;
        let mut replans = 0;
        loop {
            let Some(table) = self.load(name, None).await? else {
                return Ok(None);
            };
            let files = table.snapshot()?.log_data().num_files();
            if files < min_files.max(2) {
                return Ok(None);
            }
            match self.optimize(name, table, files, None).await {
                Err(e) if e.is_commit_conflict() && replans < REPLANS => {
                    replans += 1;
                    tracing::debug!(
                        table = name,
                        replans,
                        "compaction overtaken: planning again"
                    );
                }
                other => return other.map(Some),
            }
        }
    }

    /// Merges the table's files of at most `target` bytes (the table's target file size, 100
    /// MiB by default, when `None`) into files of up to that size, in one commit that changes
    /// no row and lands as `table`'s next version or fails (a commit conflict) when any writer
    /// committed since.
    ///
    /// Delta's own OPTIMIZE could not be used for this: its commit is rebased over the commits
    /// made since its plan (its retries are not ours to set), and Delta's conflict check
    /// ignores removes that change no data, so two compactions of the same files (two
    /// processes whose writes both reached [`COMPACT_AT_FILES`]) both committed and each left
    /// its copy of every row. A compaction that loses here only leaves the small files.
    pub(crate) async fn optimize(
        &self,
        name: &str,
        table: DeltaTable,
        files: usize,
        target: Option<NonZeroU64>,
    ) -> LakeResult<Compaction> {
        let snapshot = table.snapshot()?;
        let not_plain = || LakeError::InvalidData {
            table: name.to_string(),
            message: "not compacted: it has partitions, deletion vectors or files outside the \
                      table (a table another engine wrote)"
                .into(),
        };
        if !scan::plain(snapshot) {
            return Err(not_plain());
        }
        let target = target
            .unwrap_or_else(|| snapshot.table_config().target_file_size())
            .get();
        let order = self
            .catalog()
            .get(name)
            .and_then(|def| def.date_column.clone());
        let mut candidates = Vec::new();
        for file in snapshot.log_data().iter() {
            let size = u64::try_from(file.size()).unwrap_or(u64::MAX);
            if file.path().contains("://") {
                return Err(not_plain());
            }
            if size <= target {
                let first_date = order.as_deref().and_then(|c| {
                    let stats = serde_json::from_str(&file.stats()?).ok()?;
                    scan::date_bounds(&stats, c).map(|(lo, _)| lo)
                });
                candidates.push(Merged {
                    path: file.object_store_path(),
                    size,
                    first_date,
                    remove: file.remove_action(false),
                });
            }
        }
        let mut actions = Vec::new();
        let (mut removed, mut added) = (0u64, 0u64);
        for mut bin in bins(candidates, target) {
            // Oldest first, a few files at a time: the merged file is in date order where the
            // files' dates do not overlap (daily files), and at most a few files are decoded
            // at once however large the bin.
            bin.sort_by_key(|m| m.first_date);
            let mut writer =
                RecordBatchWriter::for_table(&table)?.with_writer_properties(writer_properties());
            let schema = writer.arrow_schema();
            for few in bin.chunks(scan::FILES_IN_FLIGHT) {
                let paths = few.iter().map(|m| (m.path.clone(), m.size)).collect();
                let rows = scan::read_whole_files(&self.files, &table, paths)
                    .await?
                    .ok_or_else(not_plain)?;
                let mut rows = rows
                    .iter()
                    .filter(|b| b.num_rows() > 0)
                    .map(|b| conform(b, &schema))
                    .collect::<Result<Vec<_>, _>>()?;
                if let Some(date_col) = &order {
                    rows = in_date_order(rows, date_col)?;
                }
                for b in rows {
                    writer.write(b).await?;
                }
            }
            for mut add in writer.flush().await? {
                add.data_change = false;
                actions.push(Action::Add(add));
                added += 1;
            }
            removed += bin.len() as u64;
            actions.extend(bin.into_iter().map(|m| Action::Remove(m.remove)));
        }
        let table = if actions.is_empty() {
            table
        } else {
            let props = commit_properties()
                .with_metadata([(
                    "krxflow.compaction".to_string(),
                    serde_json::Value::Bool(true),
                )])
                .with_max_retries(0);
            let operation = DeltaOperation::Optimize {
                predicate: None,
                target_size: i64::try_from(target).unwrap_or(i64::MAX),
            };
            let table = commit(table, actions, operation, props).await?;
            self.clean_log_at_checkpoint(name, &table).await;
            self.remember(name, &table);
            table
        };
        Ok(Compaction {
            table: name.to_string(),
            files_before: files,
            files_removed: removed,
            files_added: added,
            version: version_of(&table),
        })
    }
}

/// A file a compaction may merge: where it is, its size, its first date, and the action that
/// removes it.
struct Merged {
    path: Path,
    size: u64,
    /// The file's first date, by its statistics (the table's date column).
    first_date: Option<i32>,
    remove: Remove,
}

/// The groups of `files` merged into one file each: in the table's order, a group takes
/// files while their sizes add up to at most `target`; a group of one is left as it is.
fn bins(files: Vec<Merged>, target: u64) -> Vec<Vec<Merged>> {
    let mut bins: Vec<Vec<Merged>> = Vec::new();
    let mut open: Vec<Merged> = Vec::new();
    let mut size = 0u64;
    for f in files {
        if !open.is_empty() && size.saturating_add(f.size) > target {
            bins.push(std::mem::take(&mut open));
            size = 0;
        }
        size = size.saturating_add(f.size);
        open.push(f);
    }
    bins.push(open);
    bins.retain(|b| b.len() > 1);
    bins
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

    /// A lake whose `prices` got one write (one file) per day of `days`, in that order.
    async fn written(days: impl IntoIterator<Item = i32>) -> (tempfile::TempDir, Lake) {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), Catalog::with_tables([def()])).unwrap();
        for d in days {
            lake.write(&def(), day(d), WriteMode::Merge, None, BTreeMap::new())
                .await
                .unwrap();
        }
        (dir, lake)
    }

    #[test]
    fn files_are_merged_in_groups_of_at_most_the_target_size_and_a_lone_file_stays() {
        let file = |size: u64| Merged {
            path: Path::from(format!("f{size}")),
            size,
            first_date: None,
            remove: Remove::default(),
        };
        let sizes = |bins: Vec<Vec<Merged>>| -> Vec<Vec<u64>> {
            bins.iter()
                .map(|b| b.iter().map(|m| m.size).collect())
                .collect()
        };
        let files = [10, 11, 12, 20, 3].map(file).into_iter().collect();
        assert_eq!(sizes(bins(files, 25)), vec![vec![10, 11], vec![20, 3]]);
        assert!(bins(vec![file(5)], 25).is_empty());
    }

    #[tokio::test]
    async fn the_merged_file_holds_the_days_in_date_order_whatever_order_they_were_written() {
        let (_dir, lake) = written([5, 1, 6, 3, 2, 4]).await;
        lake.compact("prices", 2).await.unwrap().unwrap();
        let rows = lake.read("prices", ReadOptions::default()).await.unwrap();
        let dates: Vec<i32> = rows
            .batches
            .iter()
            .flat_map(|b| {
                let d = b.column_by_name("date").unwrap();
                let d = d
                    .as_any()
                    .downcast_ref::<arrow::array::Date32Array>()
                    .unwrap();
                d.values().to_vec()
            })
            .collect();
        assert_eq!(
            dates,
            vec![1, 2, 3, 4, 5, 6],
            "two reads of four files at most"
        );
    }

    #[tokio::test]
    async fn two_compactions_planned_on_one_version_never_leave_a_row_twice() {
        let (_dir, lake) = written(0..4).await;
        // Two processes see the same four small files and both compact them.
        let first = lake.load("prices", None).await.unwrap().unwrap();
        let second = lake.load("prices", None).await.unwrap().unwrap();
        lake.optimize("prices", first, 4, None).await.unwrap();
        match lake.optimize("prices", second, 4, None).await {
            Err(e) => assert!(e.is_commit_conflict(), "{e}"),
            Ok(c) => panic!("the overtaken compaction committed version {}", c.version),
        }
        let rows = lake.read("prices", ReadOptions::default()).await.unwrap();
        assert_eq!(rows.num_rows(), 4, "each day's row once");
    }

    #[tokio::test]
    async fn a_compaction_overtaken_by_a_write_is_planned_again_on_the_new_version() {
        let (dir, lake) = written(0..3).await;
        let stale = lake.load("prices", None).await.unwrap().unwrap();
        // Another process writes day 3 between the plan and the commit.
        let other =
            Lake::open(dir.path().to_str().unwrap(), Catalog::with_tables([def()])).unwrap();
        other
            .write(&def(), day(3), WriteMode::Merge, None, BTreeMap::new())
            .await
            .unwrap();
        let overtaken = lake.optimize("prices", stale, 3, None).await;
        assert!(overtaken.is_err_and(|e| e.is_commit_conflict()));
        // `compact` loads the latest version and plans on it: all four files in one.
        let c = lake.compact("prices", 2).await.unwrap().unwrap();
        assert_eq!((c.files_before, c.files_removed, c.files_added), (4, 4, 1));
        let rows = lake.read("prices", ReadOptions::default()).await.unwrap();
        assert_eq!(rows.num_rows(), 4, "each day's row once");
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
