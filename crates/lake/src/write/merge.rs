//! Merge (upsert on keys): the diff of the rows to merge against what the table holds, and
//! Delta's merge for the rows that update held keys.

use std::collections::HashSet;

use arrow::array::{Array, Date32Array, RecordBatch};
use arrow::row::{RowConverter, SortField};
use datafusion::prelude::{SessionContext, col, lit};
use datafusion::scalar::ScalarValue;
use deltalake::DeltaTable;
use deltalake::kernel::transaction::CommitProperties;
use krxflow_core::TableDef;

use crate::dates::from_date32;
use crate::error::LakeResult;
use crate::files::writer_properties;
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
    /// Splits the rows to merge (physical schema) against what the table holds. Stored rows
    /// are compared whole (every column, nulls and list values included, bit for bit) in
    /// arrow's row format; only rows whose date lies within the batches' date range are read,
    /// so Delta skips files by their statistics. A row is dropped only on an exact match, so
    /// merging what is left writes the same table.
    pub(super) async fn changed_rows(
        &self,
        def: &TableDef,
        table: &DeltaTable,
        batches: Vec<RecordBatch>,
    ) -> LakeResult<Changes> {
        let physical = physical_schema(&def.schema);
        let provider = table.table_provider().await?;
        let ctx = SessionContext::new();
        table.update_datafusion_session(&ctx.state())?;
        let mut df = ctx.read_table(provider)?;
        let range = def
            .date_column
            .as_ref()
            .and_then(|c| Some((c, date_range(&batches, c)?)));
        if let Some((date_col, (lo, hi))) = &range {
            let c = col(format!("\"{date_col}\""));
            df = df.filter(
                c.clone()
                    .gt_eq(lit(ScalarValue::Date32(Some(*lo))))
                    .and(c.lt_eq(lit(ScalarValue::Date32(Some(*hi))))),
            )?;
        }
        let stored = df.collect().await?;
        let converter = RowConverter::new(
            physical
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?;
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
        let key_cols = |b: &RecordBatch| {
            key_idx
                .iter()
                .map(|&i| b.column(i).clone())
                .collect::<Vec<_>>()
        };
        let mut held = HashSet::new();
        let mut held_keys = HashSet::new();
        for b in stored.iter().filter(|b| b.num_rows() > 0) {
            let b = conform(b, &physical)?;
            for r in converter.convert_columns(b.columns())?.iter() {
                held.insert(r.as_ref().to_vec());
            }
            for r in keys.convert_columns(&key_cols(&b))?.iter() {
                held_keys.insert(r.as_ref().to_vec());
            }
        }
        let mut out = Changes::default();
        let mut updates = false;
        for b in batches {
            let rows = converter.convert_columns(b.columns())?;
            let keep: arrow::array::BooleanArray = rows
                .iter()
                .map(|r| Some(!held.contains(r.as_ref())))
                .collect();
            out.unchanged += keep.false_count();
            let kept = arrow::compute::filter_record_batch(&b, &keep)?;
            if kept.num_rows() > 0 {
                updates |= keys
                    .convert_columns(&key_cols(&kept))?
                    .iter()
                    .any(|r| held_keys.contains(r.as_ref()));
                out.rows.push(kept);
            }
        }
        // Every stored row with a key to write was read when the date is part of the key (a
        // row with that key has that date, inside the range read): then no held key means no
        // update, and the rows can be appended under a predicate on that range.
        if let Some((date_col, (lo, hi))) = range
            && def.keys.contains(date_col)
            && !updates
        {
            let day = |d: i32| from_date32(d).map(|d| d.to_string()).unwrap_or_default();
            out.insert_only = Some(format!(
                "\"{date_col}\" >= '{}' AND \"{date_col}\" <= '{}'",
                day(lo),
                day(hi)
            ));
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
        let ctx = SessionContext::new();
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
            .with_commit_properties(commit);
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

/// The smallest and largest non-null value of the Date32 column `name` in `batches`.
fn date_range(batches: &[RecordBatch], name: &str) -> Option<(i32, i32)> {
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
