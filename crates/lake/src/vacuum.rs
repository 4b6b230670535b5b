//! Vacuum: removes the data files no version inside the retention window needs.
//!
//! Every rewrite (`replace_partition`, `merge`) and every compaction leaves the files it
//! replaced in storage as Delta tombstones, so that earlier versions stay readable (time
//! travel, `krxflow lineage`'s table versions). Vacuum deletes a tombstoned file once it was
//! removed longer ago than `retain`, and a file no commit ever added (a crashed write's
//! leftover) once it is older than `retain`. Files of the current version are never deleted;
//! files of any version newer than `retain` are kept too, so a reader or a writer working on a
//! snapshot younger than the window is safe. Versions older than the window may no longer be
//! readable afterwards: that is what the window trades for space.

use chrono::Duration;
use deltalake::DeltaTable;
use deltalake::operations::vacuum::VacuumMode;
use object_store::ObjectStoreExt;

use crate::error::LakeResult;
use crate::table::{Lake, version_of};

/// Time travel kept by default: Delta's own default (`deletedFileRetentionDuration`, 7 days).
pub const DEFAULT_RETAIN: Duration = Duration::days(7);

/// What a vacuum did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vacuumed {
    pub table: String,
    /// Paths relative to the table's folder, sorted.
    pub files: Vec<String>,
    pub dry_run: bool,
    /// The table's version after the vacuum (a real vacuum commits its start and end).
    pub version: i64,
}

impl Lake {
    /// Vacuums `name`, keeping every file a version younger than `retain` needs. `None` when
    /// the table is absent. With `dry_run`, lists what it would delete and deletes nothing.
    pub async fn vacuum(
        &self,
        name: &str,
        retain: Duration,
        dry_run: bool,
    ) -> LakeResult<Option<Vacuumed>> {
        let lock = self.write_lock(name);
        let _writing = lock.lock().await;
        let Some(table) = self.load(name, None).await? else {
            return Ok(None);
        };
        let plan = |table: DeltaTable, dry_run: bool| {
            table
                .vacuum()
                .with_retention_period(retain)
                // The window is ours to choose (tests and a lake nobody writes to use 0).
                .with_enforce_retention_duration(false)
                .with_mode(VacuumMode::Full)
                .with_dry_run(dry_run)
        };
        // Delta lists every expired tombstone, also those an earlier vacuum deleted: report
        // only the files that are there.
        let (table, listed) = plan(table, true).await?;
        let (store, _) = self.store();
        let base = self.table_path(name);
        let mut files = Vec::new();
        for f in listed.files_deleted {
            let Ok(path) = object_store::path::Path::parse(format!("{base}/{f}")) else {
                files.push(f); // not a path we can check: report it as Delta does
                continue;
            };
            match store.head(&path).await {
                Ok(_) => files.push(f),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        files.sort();
        let table = if dry_run || files.is_empty() {
            table
        } else {
            let (table, _) = plan(table, false).await?;
            self.files.forget_table(table.table_url().as_str());
            self.remember(name, &table);
            table
        };
        Ok(Some(Vacuumed {
            table: name.to_string(),
            files,
            dry_run,
            version: version_of(&table),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use krxflow_core::WriteMode;

    use super::*;
    use crate::catalog::Catalog;
    use crate::read::ReadOptions;
    use crate::testutil::{price_rows, prices as def};

    fn parquet_files(dir: &std::path::Path) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(dir.join("prices"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".parquet"))
            .collect();
        out.sort();
        out
    }

    /// Three rewrites of one day: two tombstoned files and the live one.
    async fn rewritten(dir: &tempfile::TempDir) -> Lake {
        let lake = Lake::open(dir.path().to_str().unwrap(), Catalog::with_tables([def()])).unwrap();
        for close in [1.0, 2.0, 3.0] {
            lake.write(
                &def(),
                price_rows(&[("a", 10, close), ("b", 10, close)]),
                WriteMode::Merge,
                None,
                BTreeMap::new(),
            )
            .await
            .unwrap();
        }
        lake
    }

    #[tokio::test]
    async fn vacuum_deletes_replaced_files_outside_the_window_and_keeps_the_current_rows() {
        let dir = tempfile::tempdir().unwrap();
        let lake = rewritten(&dir).await;
        assert_eq!(parquet_files(dir.path()).len(), 3);

        let dry = lake
            .vacuum("prices", Duration::zero(), true)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(dry.files.len(), 2, "{dry:?}");
        assert_eq!(
            parquet_files(dir.path()).len(),
            3,
            "a dry run deletes nothing"
        );

        let done = lake
            .vacuum("prices", Duration::zero(), false)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            done.files, dry.files,
            "the dry run listed exactly what was deleted"
        );
        assert_eq!(parquet_files(dir.path()).len(), 1);
        let rows = lake.read("prices", ReadOptions::default()).await.unwrap();
        assert_eq!(rows.num_rows(), 2, "the current version is whole");
        let old = ReadOptions {
            version: Some(0),
            ..Default::default()
        };
        assert!(
            lake.read("prices", old).await.is_err(),
            "a version outside the window is no longer readable"
        );
        assert!(done.version > 2, "the vacuum is recorded in the log");
        let again = lake
            .vacuum("prices", Duration::zero(), false)
            .await
            .unwrap()
            .unwrap();
        assert!(again.files.is_empty(), "nothing left to delete: {again:?}");
        assert_eq!(again.version, done.version, "and nothing committed");
    }

    #[tokio::test]
    async fn vacuum_keeps_every_file_a_version_inside_the_window_needs() {
        let dir = tempfile::tempdir().unwrap();
        let lake = rewritten(&dir).await;
        let done = lake
            .vacuum("prices", DEFAULT_RETAIN, false)
            .await
            .unwrap()
            .unwrap();
        assert!(done.files.is_empty(), "{done:?}");
        for v in 0..=2 {
            let at = ReadOptions {
                version: Some(v),
                ..Default::default()
            };
            assert_eq!(
                lake.read("prices", at).await.unwrap().num_rows(),
                2,
                "version {v}"
            );
        }
    }

    #[tokio::test]
    async fn a_crashed_writes_leftover_file_goes_only_once_it_is_older_than_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let lake = rewritten(&dir).await;
        let orphan = dir.path().join("prices/part-00000-crashed.parquet");
        std::fs::write(&orphan, b"half a parquet file").unwrap();
        let kept = lake
            .vacuum("prices", Duration::hours(1), false)
            .await
            .unwrap()
            .unwrap();
        assert!(orphan.exists(), "it may be a write in flight: {kept:?}");
        lake.vacuum("prices", Duration::zero(), false)
            .await
            .unwrap()
            .unwrap();
        assert!(!orphan.exists());
        let rows = lake.read("prices", ReadOptions::default()).await.unwrap();
        assert_eq!(rows.num_rows(), 2);
    }

    #[tokio::test]
    async fn vacuuming_an_absent_table_is_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), Catalog::with_tables([def()])).unwrap();
        assert!(
            lake.vacuum("prices", Duration::zero(), false)
                .await
                .unwrap()
                .is_none()
        );
    }
}
