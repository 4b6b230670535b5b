//! Rollback: a committed write undone, for tasks whose outputs must land all or nothing.
//!
//! Delta commits one table at a time, so a task writing two tables commits the first before
//! it tries the second. When the second fails, the executor rolls the first back: a table
//! the write created is removed, any other is restored (Delta's `RESTORE`, one more commit) to
//! the version it had before. Time travel still shows the write and its undoing; a reader
//! between the two saw the write, like any reader of a table whose next commit reverts it.
//! A table someone else committed to in between is not touched (that would lose their
//! commit): the rollback reports it instead.

use deltalake::kernel::transaction::CommitProperties;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;

use crate::error::{LakeError, LakeResult};
use crate::table::{Lake, version_of};
use crate::write::WriteOutcome;

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolledBack {
    /// The write committed nothing.
    Nothing,
    /// The write created the table: it is gone again.
    Removed,
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
        let Some(previous) = outcome.previous else {
            self.remove_table(name).await?;
            return Ok(RolledBack::Removed);
        };
        let to = u64::try_from(previous).map_err(|_| {
            LakeError::BadLocation(name.into(), format!("invalid version {previous}"))
        })?;
        let commit = CommitProperties::default().with_metadata([(
            "krxflow.rollback".to_string(),
            serde_json::Value::String(why.to_string()),
        )]);
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

    /// Deletes every object of table `name` (its log first: a reader then sees no table).
    async fn remove_table(&self, name: &str) -> LakeResult<()> {
        let (store, _) = self.store();
        let prefix = self.table_path(name);
        let mut objects: Vec<_> = store
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await?;
        objects.sort_by_key(|p| !p.as_ref().contains("/_delta_log/"));
        for path in objects {
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.forget(name);
        if let Ok(url) = self.table_url(name)
            && url.scheme() == "file"
            && let Ok(dir) = url.to_file_path()
        {
            let _ = std::fs::remove_dir_all(dir); // empty folders left by the deletes
        }
        Ok(())
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
    async fn rolling_back_the_write_that_created_a_table_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(&dir);
        let first = merge(&lake, 1.0).await;
        assert_eq!(first.previous, None);
        assert_eq!(
            lake.roll_back(&first, "test").await.unwrap(),
            RolledBack::Removed
        );
        assert_eq!(lake.version("prices").await.unwrap(), None);
        assert!(matches!(
            lake.read("prices", ReadOptions::default()).await,
            Err(LakeError::NoSuchTable(_))
        ));
        merge(&lake, 3.0).await; // the name is free again
        assert_eq!(close(&lake).await, 3.0);
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
