//! Compaction: Delta's optimize bin-packs a table's small data files into few large ones.

use deltalake::DeltaTable;
use deltalake::kernel::transaction::CommitProperties;

use crate::error::LakeResult;
use crate::files::writer_properties;
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
        self.optimize(name, table, files).await.map(Some)
    }

    pub(crate) async fn optimize(
        &self,
        name: &str,
        table: DeltaTable,
        files: usize,
    ) -> LakeResult<Compaction> {
        let commit = CommitProperties::default().with_metadata([(
            "krxflow.compaction".to_string(),
            serde_json::Value::Bool(true),
        )]);
        let (table, metrics) = table
            .optimize()
            .with_writer_properties(writer_properties())
            .with_commit_properties(commit)
            .await?;
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
