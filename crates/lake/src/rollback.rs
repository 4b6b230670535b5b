//! Rollback: a committed write undone, for tasks whose outputs must land all or nothing.
//!
//! Delta commits one table at a time, so a task writing two tables commits the first before
//! it tries the second. When the second fails, the executor rolls the first back in one more
//! commit: a table the write created is emptied again (Delta's `DELETE` of every row), any
//! other is restored (Delta's `RESTORE`) to the version it had before. Time travel still shows
//! the write and its undoing; a reader between the two saw the write, like any reader of a
//! table whose next commit reverts it. A table someone else committed to in between is not
//! touched (that would lose their commit): the rollback reports it instead. Both commits are
//! conditional on the version rolled back (no retry on a conflict), so this holds for a writer
//! in another process too. (A created table used to be deleted, its log first: a writer in
//! another process that had just found the table could commit into a log being deleted.)

use deltalake::kernel::transaction::CommitProperties;

use crate::error::{LakeError, LakeResult};
use crate::table::{Lake, version_of};
use crate::write::WriteOutcome;

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolledBack {
    /// The write committed nothing.
    Nothing,
    /// The write created the table: its rows are deleted in a new commit, `version` (the
    /// table stays, empty).
    Emptied { version: i64 },
    /// Restored to `to` in a new commit, `version`.
    Restored { to: i64, version: i64 },
}

impl Lake {
    /// Undoes the committed write `outcome` of table `outcome.table`, if nobody committed to
    /// the table since. `why` is stored in the restoring commit (`krxflow.rollback`).
    pub async fn roll_back(&self, outcome: &WriteOutcome, why: &str) -> LakeResult<RolledBack> {
        if !outcome.committed {
            return Ok(RolledBack::Nothing);
        }
        let name = outcome.table.as_str();
        let lock = self.write_lock(name);
        let _writing = lock.lock().await;
        let latest = self.latest(name).await?;
        let now = version_of(&latest);
        if now != outcome.latest {
            return Err(LakeError::InvalidData {
                table: name.to_string(),
                message: format!(
                    "cannot roll back the write of version {}: version {now} was committed since",
                    outcome.version
                ),
            });
        }
        self.undo(name, latest, outcome.previous, why)
            .await
            .map_err(|e| match e.is_commit_conflict() {
                true => LakeError::InvalidData {
                    table: name.to_string(),
                    message: format!(
                        "cannot roll back the write of version {}: another writer committed since",
                        outcome.version
                    ),
                },
                false => e,
            })
    }

    /// The commit undoing a write on `latest` (the table as the write left it), to `previous`
    /// (`None`: the write created the table). It commits as `latest`'s next version or not at
    /// all, so a commit by anyone since, in any process, makes it fail.
    async fn undo(
        &self,
        name: &str,
        latest: deltalake::DeltaTable,
        previous: Option<i64>,
        why: &str,
    ) -> LakeResult<RolledBack> {
        let commit = CommitProperties::default()
            .with_metadata([(
                "krxflow.rollback".to_string(),
                serde_json::Value::String(why.to_string()),
            )])
            // Conditional on `now`: a commit by anyone since fails this one.
            .with_max_retries(0);
        let Some(previous) = previous else {
            let (table, _) = latest.delete().with_commit_properties(commit).await?;
            self.remember(name, &table);
            return Ok(RolledBack::Emptied {
                version: version_of(&table),
            });
        };
        let to = u64::try_from(previous).map_err(|_| {
            LakeError::BadLocation(name.into(), format!("invalid version {previous}"))
        })?;
        let (table, _) = latest
            .restore()
            .with_version_to_restore(to)
            .with_commit_properties(commit)
            .await?;
        self.remember(name, &table);
        Ok(RolledBack::Restored {
            to: previous,
            version: version_of(&table),
        })
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

    fn lake(dir: &tempfile::TempDir) -> Lake {
        Lake::open(dir.path().to_str().unwrap(), Catalog::with_tables([def()])).unwrap()
    }

    async fn merge(lake: &Lake, close: f64) -> WriteOutcome {
        lake.write(
            &def(),
            price_rows(&[("a", 10, close)]),
            WriteMode::Merge,
            None,
            BTreeMap::new(),
        )
        .await
        .unwrap()
    }

    async fn close(lake: &Lake) -> f64 {
        let read = lake.read("prices", ReadOptions::default()).await.unwrap();
        let b = &read.batches[0];
        b.column(2)
            .as_any()
            .downcast_ref::<arrow::array::Float64Array>()
            .unwrap()
            .value(0)
    }

    #[tokio::test]
    async fn rolling_back_restores_the_rows_of_the_version_before() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(&dir);
        merge(&lake, 1.0).await;
        let second = merge(&lake, 2.0).await;
        assert_eq!(close(&lake).await, 2.0);
        let done = lake.roll_back(&second, "test").await.unwrap();
        assert_eq!(done, RolledBack::Restored { to: 0, version: 2 });
        assert_eq!(close(&lake).await, 1.0);
    }

    #[tokio::test]
    async fn rolling_back_the_write_that_created_a_table_empties_it_in_one_more_commit() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(&dir);
        let first = merge(&lake, 1.0).await;
        assert_eq!(first.previous, None);
        assert_eq!(
            lake.roll_back(&first, "test").await.unwrap(),
            RolledBack::Emptied { version: 1 }
        );
        let read = lake.read("prices", ReadOptions::default()).await.unwrap();
        assert_eq!(read.num_rows(), 0);
        merge(&lake, 3.0).await; // written again as if new
        assert_eq!(close(&lake).await, 3.0);
    }

    #[tokio::test]
    async fn a_rollback_racing_a_writer_in_another_process_loses_and_keeps_its_commit() {
        // Two lakes on one folder: two processes. Each one's check that nobody committed
        // since passes before the other's commit lands; the rollback's commit must not.
        for created in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let (ours, theirs) = (lake(&dir), lake(&dir));
            if !created {
                merge(&ours, 1.0).await;
            }
            let write = merge(&ours, 2.0).await;
            assert_eq!(write.previous.is_none(), created);
            // Their commit lands after our rollback loaded the table: replayed here by
            // committing it between our load (the cached state) and the rollback's commit.
            let stale = ours.latest("prices").await.unwrap();
            theirs
                .write(
                    &def(),
                    price_rows(&[("b", 10, 5.0)]),
                    WriteMode::Merge,
                    None,
                    BTreeMap::new(),
                )
                .await
                .unwrap();
            let previous = write.previous;
            let lost = ours.undo("prices", stale, previous, "test").await;
            match lost {
                Err(e) => assert!(e.is_commit_conflict(), "{e}"),
                Ok(done) => panic!("the rollback's commit went over theirs: {done:?}"),
            }
            let read = theirs.read("prices", ReadOptions::default()).await.unwrap();
            assert!(read.num_rows() >= 1, "their row is kept");
        }
    }

    #[tokio::test]
    async fn a_commit_by_someone_else_since_is_never_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(&dir);
        merge(&lake, 1.0).await;
        let ours = merge(&lake, 2.0).await;
        merge(&lake, 5.0).await; // another writer
        let e = lake.roll_back(&ours, "test").await.unwrap_err();
        assert!(e.to_string().contains("committed since"), "{e}");
        assert_eq!(close(&lake).await, 5.0);
    }
}
