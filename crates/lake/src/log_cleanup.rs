//! Expired-log cleanup once per checkpoint instead of once per commit.
//!
//! Delta deletes the log entries that are both older than the newest checkpoint and past the
//! table's log retention (`delta.logRetentionDuration`, 30 days by default). delta-rs does it
//! in every commit's post-commit step, listing the whole `_delta_log/` with each entry's
//! modification time: after 250 days of the daily loop that is hundreds of `stat`s per commit,
//! ~3% of the loop's CPU, to delete nothing. The lake's commits turn that step off
//! ([`commit_properties`]) and clean once after each commit that wrote a checkpoint
//! ([`Lake::clean_log_at_checkpoint`]), as Delta's reference implementation does: an entry
//! becomes deletable only behind a checkpoint, so the log stays bounded the same way, an
//! expired entry going at most one checkpoint interval (10 commits) later.

use chrono::Utc;
use deltalake::DeltaTable;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::checkpoints::cleanup_expired_logs_for;
use deltalake::table::config::TablePropertiesExt;

use crate::table::Lake;

/// Commit properties of the lake's own commits: no expired-log cleanup in the post-commit
/// step (see the module doc).
pub(crate) fn commit_properties() -> CommitProperties {
    CommitProperties::default().with_cleanup_expired_logs(Some(false))
}

/// Whether Delta's post-commit step wrote a checkpoint for `version` (its rule: every
/// `interval` commits, counting version 0).
fn checkpoint_at(version: u64, interval: u64) -> bool {
    (version + 1).is_multiple_of(interval)
}

impl Lake {
    /// After a commit of `table` (its state the committed version): when that commit wrote a
    /// checkpoint and the table allows cleanup (`delta.enableExpiredLogCleanup`), deletes the
    /// expired log entries behind it. Returns how many, `None` when no cleanup was due; a
    /// failure is logged and counts as none deleted, the commit itself having succeeded (the
    /// next checkpoint tries again).
    pub(crate) async fn clean_log_at_checkpoint(
        &self,
        name: &str,
        table: &DeltaTable,
    ) -> Option<usize> {
        let (Some(version), Ok(snapshot)) = (table.version(), table.snapshot()) else {
            return None;
        };
        let config = snapshot.table_config();
        if !config.enable_expired_log_cleanup()
            || !checkpoint_at(version, config.checkpoint_interval().get())
        {
            return None;
        }
        let retention = i64::try_from(config.log_retention_duration().as_millis()).unwrap_or(0);
        let cutoff = Utc::now().timestamp_millis().saturating_sub(retention);
        match cleanup_expired_logs_for(version, table.log_store().as_ref(), cutoff, None).await {
            Ok(deleted) => {
                if deleted > 0 {
                    tracing::debug!(
                        table = name,
                        version,
                        deleted,
                        "expired log entries deleted"
                    );
                }
                Some(deleted)
            }
            Err(e) => {
                tracing::warn!(table = name, version, "expired-log cleanup failed: {e}");
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use krxflow_core::WriteMode;

    use super::*;
    use crate::catalog::Catalog;
    use crate::testutil::{price_rows as rows, prices as def};

    fn commits_in_log(dir: &std::path::Path) -> Vec<u64> {
        let mut v: Vec<u64> = std::fs::read_dir(dir.join("prices/_delta_log"))
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_suffix(".json")?.parse().ok()
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_checkpoint_is_written_every_interval_counting_version_zero() {
        let at: Vec<u64> = (0..25).filter(|&v| checkpoint_at(v, 10)).collect();
        assert_eq!(at, vec![9, 19]);
    }

    #[tokio::test]
    async fn expired_log_entries_are_deleted_once_a_checkpoint_is_behind_them() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), Catalog::with_tables([def()])).unwrap();
        let prices = def();
        let write = |day: i32| {
            lake.write(
                &prices,
                rows(&[("a", day, 1.0)]),
                WriteMode::Merge,
                None,
                BTreeMap::new(),
            )
        };
        write(100).await.unwrap();
        // Every entry expires at once (version 1 is this property change).
        let table = lake.load("prices", None).await.unwrap().unwrap();
        let props = HashMap::from([(
            "delta.logRetentionDuration".to_string(),
            "interval 0 seconds".to_string(),
        )]);
        let table = table
            .set_tbl_properties()
            .with_properties(props)
            .await
            .unwrap();
        lake.remember("prices", &table);
        for day in 101..=107 {
            write(day).await.unwrap();
        }
        // Version 8: no checkpoint yet, nothing cleaned although every entry has expired.
        assert_eq!(commits_in_log(dir.path()), (0..=8).collect::<Vec<_>>());
        // Version 9 writes the checkpoint; the entries behind it go.
        write(108).await.unwrap();
        assert_eq!(commits_in_log(dir.path()), vec![9]);
        // The table reads whole from the checkpoint.
        let read = lake
            .read("prices", crate::read::ReadOptions::default())
            .await
            .unwrap();
        assert_eq!(read.num_rows(), 9);
    }
}
