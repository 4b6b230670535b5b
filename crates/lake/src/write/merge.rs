//! Merge (upsert on keys): the diff of the rows to merge against what the table holds, and
//! Delta's merge for the rows that update held keys.

use arrow::array::{Array, Date32Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::row::{RowConverter, SortField};
use datafusion::prelude::{col, lit};
use datafusion::scalar::ScalarValue;
use deltalake::DeltaTable;
use deltalake::kernel::transaction::CommitProperties;
use krxflow_core::TableDef;

use super::diff::diff;
use super::rowset::row_set;
use crate::dates::from_date32;
use crate::error::LakeResult;
use crate::files::writer_properties;
use crate::scan::{DateRange, scan};
use crate::schema::{conform, physical_schema};
use crate::table::Lake;

/// Rows to merge, split against what the table holds.
#[derive(Default)]
pub(super) struct Changes {
    /// New and changed rows.
    pub(super) rows: Vec<RecordBatch>,
    /// Rows the table already held exactly.
    pub(super) unchanged: usize,
    /// When no row to write has a key the table holds: the date range checked, as a predicate.
    pub(super) insert_only: Option<String>,
}

impl Lake {
    /// Splits the rows to merge (physical schema) against what the table holds: a row is
    /// dropped only when the stored row of its key holds exactly its values (every column,
    /// nulls and list values included, bit for bit: `super::diff`), so merging what is left
    /// writes the same table. Only rows whose date lies within the batches' date range are
    /// read, so Delta skips files by their statistics.
    pub(super) async fn changed_rows(
        &self,
        def: &TableDef,
        table: &DeltaTable,
        batches: Vec<RecordBatch>,
    ) -> LakeResult<Changes> {
        let physical = physical_schema(&def.schema);
        // The stored rows are read by a date column of the key where there is one (the
        // table's date column first): every stored row with a key being written then lies in
        // the written rows' range of that column, so the diff sees every held key, and files
        // outside the range are skipped by their statistics. (`prediction_outcomes` is dated
        // by its target date but keyed by its base date: read by the target date, every
        // stored key of the table had to be read besides.) Otherwise by the table's date
        // column, and a held key outside its range is looked for among all the keys (below).
        let key_date = def.date_column.iter().chain(&def.keys).find(|c| {
            def.keys.contains(c)
                && physical
                    .field_with_name(c)
                    .is_ok_and(|f| f.data_type() == &DataType::Date32)
        });
        let range = key_date
            .or(def.date_column.as_ref())
            .and_then(|c| Some((c, date_range(&batches, c)?)));
        let direct = range.map(|(column, (lo, hi))| DateRange {
            column,
            from: Some(lo),
            to: Some(hi),
        });
        let stored = match scan(&self.files, table, direct, None).await? {
            Some(stored) => stored,
            None => {
                let provider = table.table_provider().await?;
                let ctx = self.datafusion_session();
                table.update_datafusion_session(&ctx.state())?;
                let mut df = ctx.read_table(provider)?;
                if let Some((date_col, (lo, hi))) = &range {
                    let c = col(format!("\"{date_col}\""));
                    df = df.filter(
                        c.clone()
                            .gt_eq(lit(ScalarValue::Date32(Some(*lo))))
                            .and(c.lt_eq(lit(ScalarValue::Date32(Some(*hi))))),
                    )?;
                }
                df.collect().await?
            }
        };
        let key_idx: Vec<usize> = def
            .keys
            .iter()
            .map(|k| physical.index_of(k))
            .collect::<Result<_, _>>()?;
        let keys = RowConverter::new(
            key_idx
                .iter()
                .map(|&i| SortField::new(physical.field(i).data_type().clone()))
                .collect(),
        )?;
        let stored: Vec<RecordBatch> = stored
            .iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| conform(b, &physical))
            .collect::<Result<_, _>>()?;
        let diff = diff(&stored, batches, &key_idx, &keys)?;
        let updates = diff.updates;
        let mut out = Changes {
            rows: diff.rows,
            unchanged: diff.unchanged,
            insert_only: None,
        };
        if updates || out.rows.is_empty() {
            return Ok(out);
        }
        // Every stored row with a key to write was read when the date is part of the key (a
        // row with that key has that date, inside the range read): then no held key means no
        // update, and the rows can be appended under a predicate on that range.
        match range {
            Some((date_col, (lo, hi))) if def.keys.contains(date_col) => {
                let day = |d: i32| from_date32(d).map(|d| d.to_string()).unwrap_or_default();
                out.insert_only = Some(format!(
                    "\"{date_col}\" >= '{}' AND \"{date_col}\" <= '{}'",
                    day(lo),
                    day(hi)
                ));
            }
            // Otherwise a held key may sit outside the range: read every stored key (the key
            // columns only). None held: append, declaring the whole table read, so any
            // concurrent write to it conflicts (and retries) rather than duplicating a key.
            _ => {
                let provider = table.table_provider().await?;
                let ctx = self.datafusion_session();
                table.update_datafusion_session(&ctx.state())?;
                let all = ctx.read_table(provider)?;
                if !holds_any_key(all, def, &physical, &keys, &key_idx, &out.rows).await? {
                    out.insert_only = Some("true".into());
                }
            }
        }
        Ok(out)
    }

    pub(super) async fn merge(
        &self,
        def: &TableDef,
        table: DeltaTable,
        batches: Vec<RecordBatch>,
        commit: CommitProperties,
    ) -> LakeResult<DeltaTable> {
        let ctx = self.datafusion_session();
        let source = ctx.read_batches(batches)?;
        let predicate = def
            .keys
            .iter()
            .map(|k| format!("t.\"{k}\" = s.\"{k}\""))
            .collect::<Vec<_>>()
            .join(" AND ");
        let columns: Vec<String> = def
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let non_keys: Vec<&String> = columns.iter().filter(|c| !def.keys.contains(c)).collect();
        let mut builder = table
            .merge(source, predicate)
            .with_source_alias("s")
            .with_target_alias("t")
            .with_writer_properties(writer_properties())
            .with_commit_properties(commit)
            .with_session_state(std::sync::Arc::new(ctx.state()));
        if !non_keys.is_empty() {
            builder = builder.when_matched_update(|mut u| {
                for c in &non_keys {
                    u = u.update(c.as_str(), format!("s.\"{c}\""));
                }
                u
            })?;
        }
        builder = builder.when_not_matched_insert(|mut i| {
            for c in &columns {
                i = i.set(c.as_str(), format!("s.\"{c}\""));
            }
            i
        })?;
        let (table, _metrics) = builder.await?;
        Ok(table)
    }
}

/// Whether `table` (every stored row) holds any key of `rows`, reading its key columns only;
/// `keys` converts the key columns (`key_idx` of `physical`) to comparable rows.
async fn holds_any_key(
    table: datafusion::prelude::DataFrame,
    def: &TableDef,
    physical: &arrow::datatypes::Schema,
    keys: &RowConverter,
    key_idx: &[usize],
    rows: &[RecordBatch],
) -> LakeResult<bool> {
    let columns: Vec<_> = def.keys.iter().map(|k| col(format!("\"{k}\""))).collect();
    let stored = table.select(columns)?.collect().await?;
    let wanted = rows
        .iter()
        .map(|b| {
            let cols: Vec<_> = key_idx.iter().map(|&i| b.column(i).clone()).collect();
            keys.convert_columns(&cols)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let wanted = row_set(&wanted);
    for b in stored.iter().filter(|b| b.num_rows() > 0) {
        let cols: Vec<_> = key_idx
            .iter()
            .enumerate()
            .map(|(j, &i)| arrow::compute::cast(b.column(j), physical.field(i).data_type()))
            .collect::<Result<_, _>>()?;
        if keys
            .convert_columns(&cols)?
            .iter()
            .any(|r| wanted.contains(r.data()))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The smallest and largest non-null value of the Date32 column `name` in `batches`.
pub(super) fn date_range(batches: &[RecordBatch], name: &str) -> Option<(i32, i32)> {
    let mut range: Option<(i32, i32)> = None;
    for b in batches {
        let dates = b
            .column_by_name(name)?
            .as_any()
            .downcast_ref::<Date32Array>()?;
        for d in dates.iter().flatten() {
            range = Some(match range {
                Some((lo, hi)) => (lo.min(d), hi.max(d)),
                None => (d, d),
            });
        }
    }
    range
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use arrow::array::{Float64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use deltalake::kernel::transaction::CommitProperties;
    use krxflow_core::{TableDef, WriteMode};

    use super::*;
    use crate::catalog::Catalog;
    use crate::read::ReadOptions;

    /// Keyed by `id` alone, dated by `date`: a key's date can lie outside a batch's range.
    fn def() -> TableDef {
        TableDef::new(
            "articles",
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Utf8, false),
                Field::new("date", DataType::Date32, false),
                Field::new("score", DataType::Float64, true),
            ])),
        )
        .keys(&["id"])
        .date_column("date")
    }

    fn rows(rows: &[(&str, i32, f64)]) -> Vec<RecordBatch> {
        vec![
            RecordBatch::try_new(
                def().schema.clone(),
                vec![
                    Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                    Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.1))),
                    Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
                ],
            )
            .unwrap(),
        ]
    }

    /// The operation of the newest commit in the table's log.
    fn last_operation(dir: &std::path::Path) -> String {
        last_commit(dir)["operation"]
            .as_str()
            .map(String::from)
            .unwrap_or_default()
    }

    /// The `commitInfo` of the newest commit in the table's log.
    fn last_commit(dir: &std::path::Path) -> serde_json::Value {
        let log = dir.join("articles/_delta_log");
        let mut commits: Vec<_> = std::fs::read_dir(&log)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        commits.sort();
        let text = std::fs::read_to_string(commits.last().unwrap()).unwrap();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|v| v.get("commitInfo").cloned())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn new_keys_outside_the_date_key_are_appended_and_a_held_key_elsewhere_is_updated() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), Catalog::with_tables([def()])).unwrap();
        let d = def();
        let merge =
            |r: Vec<RecordBatch>| lake.write(&d, r, WriteMode::Merge, None, BTreeMap::new());
        merge(rows(&[("a", 100, 1.0), ("b", 100, 2.0)]))
            .await
            .unwrap();
        // New ids only: every stored key was read, none is held, so this is an append.
        let w = merge(rows(&[("c", 105, 3.0)])).await.unwrap();
        assert_eq!(w.rows, 1);
        assert_eq!(last_operation(dir.path()), "WRITE");
        // `a` again with another date, outside this batch's range of stored rows: a merge
        // updates it in place (no second `a`).
        merge(rows(&[("a", 110, 9.0), ("d", 110, 4.0)]))
            .await
            .unwrap();
        assert_eq!(last_operation(dir.path()), "MERGE");
        let read = lake.read("articles", ReadOptions::default()).await.unwrap();
        assert_eq!(read.num_rows(), 4, "a, b, c, d once each");
    }

    /// Keyed by `id` and `base`, dated by `target` (as `prediction_outcomes`).
    fn outcomes() -> TableDef {
        TableDef::new(
            "articles",
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Utf8, false),
                Field::new("target", DataType::Date32, false),
                Field::new("score", DataType::Float64, true),
                Field::new("base", DataType::Date32, false),
            ])),
        )
        .keys(&["id", "base"])
        .date_column("target")
    }

    fn outcome_rows(rows: &[(&str, i32, f64, i32)]) -> Vec<RecordBatch> {
        vec![
            RecordBatch::try_new(
                outcomes().schema.clone(),
                vec![
                    Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                    Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.1))),
                    Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
                    Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.3))),
                ],
            )
            .unwrap(),
        ]
    }

    #[tokio::test]
    async fn a_table_dated_outside_its_key_is_diffed_by_the_key_date_and_never_holds_a_key_twice() {
        let dir = tempfile::tempdir().unwrap();
        let d = outcomes();
        let lake = Lake::open(
            dir.path().to_str().unwrap(),
            Catalog::with_tables([d.clone()]),
        )
        .unwrap();
        let merge =
            |r: Vec<RecordBatch>| lake.write(&d, r, WriteMode::Merge, None, BTreeMap::new());
        merge(outcome_rows(&[("a", 105, 1.0, 100), ("b", 110, 2.0, 100)]))
            .await
            .unwrap();
        // The same rows again: all unchanged, nothing written.
        let w = merge(outcome_rows(&[("a", 105, 1.0, 100), ("b", 110, 2.0, 100)]))
            .await
            .unwrap();
        assert_eq!((w.rows, w.unchanged), (0, 2));
        // A new base date: appended under a predicate on the key's date, not the target's.
        let w = merge(outcome_rows(&[("a", 106, 3.0, 101)])).await.unwrap();
        assert_eq!((w.rows, w.unchanged), (1, 0));
        let commit = last_commit(dir.path());
        assert_eq!(commit["operation"], "WRITE");
        let predicate = commit["operationParameters"]["predicate"]
            .as_str()
            .unwrap_or("");
        assert!(
            predicate.contains("\"base\""),
            "checked on the key's date, not on every key: {predicate}"
        );
        // `b` of base 100 with another target date, outside the written target range of any
        // earlier write: its stored row is found by its base date and updated in place.
        let w = merge(outcome_rows(&[("b", 120, 9.0, 100), ("a", 106, 3.0, 101)]))
            .await
            .unwrap();
        assert_eq!((w.rows, w.unchanged), (1, 1));
        assert_eq!(last_operation(dir.path()), "MERGE");
        let read = lake.read("articles", ReadOptions::default()).await.unwrap();
        assert_eq!(read.num_rows(), 3, "(a, 100), (a, 101), (b, 100) once each");
        let scores: f64 = read
            .batches
            .iter()
            .map(|b| {
                let s = b.column_by_name("score").unwrap().as_any();
                arrow::compute::sum(s.downcast_ref::<Float64Array>().unwrap()).unwrap_or(0.0)
            })
            .sum();
        assert_eq!(scores, 1.0 + 3.0 + 9.0);
    }

    #[tokio::test]
    async fn an_append_that_read_the_whole_table_conflicts_with_any_concurrent_write() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), Catalog::with_tables([def()])).unwrap();
        let d = def();
        let merge =
            |r: Vec<RecordBatch>| lake.write(&d, r, WriteMode::Merge, None, BTreeMap::new());
        merge(rows(&[("a", 100, 1.0)])).await.unwrap();
        let stale = lake.load("articles", None).await.unwrap().unwrap();
        merge(rows(&[("b", 300, 2.0)])).await.unwrap();
        let again = lake
            .append_checked(
                stale,
                rows(&[("b", 100, 2.0)]),
                "true".into(),
                CommitProperties::default(),
            )
            .await;
        match again {
            Err(e) => assert!(e.is_transient(), "a conflict is retried: {e}"),
            Ok(_) => panic!("a concurrent write anywhere in the table must conflict"),
        }
    }

    /// Two writers of one table: one plans a merge (an update of a held row) on the version it
    /// read, the other compacts the table before the merge commits. The compaction rewrote the
    /// file the merge rewrites; committed after it, the merge would leave the row's old version
    /// in the compacted file beside its new one.
    #[tokio::test]
    async fn a_merge_planned_before_a_concurrent_compaction_never_leaves_a_key_twice() {
        let dir = tempfile::tempdir().unwrap();
        let d = def();
        let root = dir.path().to_str().unwrap();
        let lake = Lake::open(root, Catalog::with_tables([d.clone()])).unwrap();
        let ids = ["a0", "b0", "a1", "b1", "a2", "b2"];
        for day in 0..3 {
            let (a, b) = (ids[2 * day], ids[2 * day + 1]);
            let day = 100 + day as i32;
            lake.write(
                &d,
                rows(&[(a, day, 1.0), (b, day, 2.0)]),
                WriteMode::Merge,
                None,
                BTreeMap::new(),
            )
            .await
            .unwrap();
        }
        // One file a day; the merge below updates `a1`, in the file of day 101.
        let planned_on = lake.load("articles", None).await.unwrap().unwrap();
        let other = Lake::open(root, Catalog::with_tables([d.clone()])).unwrap();
        let compacted = other.compact("articles", 2).await.unwrap().unwrap();
        assert!(compacted.files_removed >= 2, "{compacted:?}");
        let merged = lake
            .merge(
                &d,
                planned_on,
                rows(&[("a1", 101, 9.0)]),
                crate::log_cleanup::commit_properties(),
            )
            .await;
        let read = other
            .read("articles", ReadOptions::default())
            .await
            .unwrap();
        assert_eq!(
            read.num_rows(),
            6,
            "each id once (the merge {}), whatever committed",
            if merged.is_ok() {
                "committed"
            } else {
                "conflicted"
            }
        );
        if let Err(e) = merged {
            assert!(
                e.is_commit_conflict(),
                "a lost race is a conflict to plan again: {e}"
            );
        }
    }
}
