//! The checked append: rows whose keys the table does not hold, committed with the date
//! range checked as the commit's predicate so that Delta's conflict check guards it.

use arrow::array::RecordBatch;
use deltalake::DeltaTable;
use deltalake::kernel::Action;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};

use crate::error::LakeResult;
use crate::files::writer_properties;
use crate::schema::conform;
use crate::table::Lake;

impl Lake {
    /// Appends rows whose keys the table does not hold, in a commit that declares what it
    /// checked (`predicate`, a date range): Delta's conflict check then fails this commit if a
    /// concurrent writer added rows in that range (the task retries and finds them), instead of
    /// two writers both appending the same keys. A plain merge costs far more for this case.
    pub(super) async fn append_checked(
        &self,
        table: DeltaTable,
        batches: Vec<RecordBatch>,
        predicate: String,
        commit: CommitProperties,
    ) -> LakeResult<DeltaTable> {
        let mut writer =
            RecordBatchWriter::for_table(&table)?.with_writer_properties(writer_properties());
        let schema = writer.arrow_schema();
        for b in &batches {
            writer.write(conform(b, &schema)?).await?;
        }
        let adds = writer.flush().await?;
        let operation = DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: None,
            predicate: Some(predicate),
        };
        let actions = adds.into_iter().map(Action::Add).collect();
        crate::commit::commit(table, actions, operation, commit).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use krxflow_core::WriteMode;

    use super::*;
    use crate::catalog::Catalog;
    use crate::dates::from_date32;
    use crate::read::ReadOptions;
    use crate::testutil::{price_rows as rows, prices as def};

    fn on(day: i32) -> String {
        let d = from_date32(day).unwrap();
        format!("\"date\" >= '{d}' AND \"date\" <= '{d}'")
    }

    #[tokio::test]
    async fn a_checked_append_conflicts_only_with_a_concurrent_write_in_its_range() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), Catalog::with_tables([def()])).unwrap();
        let prices = def();
        let write =
            |r: Vec<RecordBatch>| lake.write(&prices, r, WriteMode::Merge, None, BTreeMap::new());
        write(rows(&[("a", 100, 1.0)])).await.unwrap();
        let stale = lake.load("prices", None).await.unwrap().unwrap();
        // Another writer adds day 101 after `stale` was read; it goes in as an append too.
        let w = write(rows(&[("a", 101, 2.0)])).await.unwrap();
        assert_eq!((w.rows, w.committed), (1, true));
        let props = CommitProperties::default;
        let again = lake
            .append_checked(stale.clone(), rows(&[("a", 101, 2.0)]), on(101), props())
            .await;
        match again {
            Err(e) => assert!(e.is_transient(), "a conflict is retried: {e}"),
            Ok(_) => panic!("appending day 101 again must conflict"),
        }
        // A day the other writer did not touch commits over its commit.
        lake.append_checked(stale, rows(&[("a", 102, 3.0)]), on(102), props())
            .await
            .unwrap();
        let read = lake.read("prices", ReadOptions::default()).await.unwrap();
        assert_eq!(read.num_rows(), 3, "no key twice");
    }
}
