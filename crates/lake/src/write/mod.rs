//! Writes: validation and the three write modes (append, replace_partition, merge), each in
//! one Delta commit under the table's in-process lock; a write that leaves many small files
//! compacts the table. The merge diff and the checked append are in the submodules.

mod append;
mod diff;
mod evolve;
mod merge;
mod rowset;

use std::collections::BTreeMap;

use arrow::array::{Array, Date32Array, RecordBatch};
use arrow::row::{RowConverter, SortField};
use chrono::NaiveDate;
use datafusion::prelude::{col, lit};
use datafusion::scalar::ScalarValue;
use deltalake::DeltaTable;
use deltalake::protocol::SaveMode;
use krxflow_core::{TableDef, WriteMode};

use crate::compact::{COMPACT_AT_FILES, tiered_target};
use crate::dates::{date32, from_date32};
use crate::error::{LakeError, LakeResult};
use crate::files::{table_configuration, writer_properties};
use crate::log_cleanup::commit_properties;
use crate::schema::{conform, physical_schema};
use crate::table::{Lake, version_of};

/// What a write committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    pub table: String,
    /// Delta version after the write (the version a reader of this output sees).
    pub version: i64,
    /// Rows committed: for a merge, only the new and changed ones.
    pub rows: usize,
    /// Rows given to a merge that the table already held exactly (same key, same values):
    /// skipped, so a daily run that re-sends an overlap window rewrites no file for them.
    pub unchanged: usize,
    /// False when nothing needed committing (e.g. a merge of zero rows).
    pub committed: bool,
    /// The version before the write (`None`: the write created the table).
    pub previous: Option<i64>,
    /// The latest version once the write is done: `version`, or the compaction it triggered.
    pub latest: i64,
    /// The first and last date (by the table's date column) of the rows this write committed,
    /// the replaced partition's date included: what a reader of those dates may now see
    /// differently. `None` when nothing was committed, or when the table has no date column
    /// (or replaces partitions of another column): then every date may have changed.
    pub changed: Option<(NaiveDate, NaiveDate)>,
}

impl Lake {
    /// Checks, without writing, everything [`Lake::write`] would reject in `batches`: schema,
    /// null or duplicate merge keys, rows outside the replaced partition. The executor
    /// validates every output of a task before committing any, so a task with several outputs
    /// does not leave one committed and the other refused.
    pub fn validate_write(
        &self,
        def: &TableDef,
        batches: &[RecordBatch],
        mode: WriteMode,
        ds: Option<NaiveDate>,
    ) -> LakeResult<()> {
        let invalid = |message: String| LakeError::InvalidData {
            table: def.name.clone(),
            message,
        };
        let physical = physical_schema(&def.schema);
        let mut phys = Vec::with_capacity(batches.len());
        for b in batches {
            let declared = conform(b, &def.schema).map_err(|e| invalid(e.to_string()))?;
            phys.push(conform(&declared, &physical).map_err(|e| invalid(e.to_string()))?);
        }
        match mode {
            WriteMode::Merge => {
                if def.keys.is_empty() {
                    return Err(invalid("merge needs keys".into()));
                }
                check_unique_keys(&phys, &def.keys).map_err(invalid)
            }
            WriteMode::ReplacePartition => {
                let part = def
                    .partition_column
                    .as_deref()
                    .ok_or_else(|| invalid("replace_partition needs a partition column".into()))?;
                let ds = ds.ok_or_else(|| invalid("replace_partition needs a ds".into()))?;
                check_partition(&phys, part, ds).map_err(invalid)
            }
            _ => Ok(()),
        }
    }

    /// Writes `batches` to the table `def` in one Delta commit. `ds` is required for
    /// `replace_partition`. `meta` is stored in the commit info (run id, task, ...). A table
    /// that holds [`COMPACT_AT_FILES`] files after the commit is compacted, its small files
    /// merged and much larger ones left alone (see [`tiered_target`]); the outcome's version
    /// is still the one this write committed.
    pub async fn write(
        &self,
        def: &TableDef,
        batches: Vec<RecordBatch>,
        mode: WriteMode,
        ds: Option<NaiveDate>,
        meta: BTreeMap<String, String>,
    ) -> LakeResult<WriteOutcome> {
        let lock = self.write_lock(&def.name);
        let _writing = lock.lock().await;
        // A commit that lost a race with another process is planned again on the new version
        // (the merge diff, the checked append's range), a few times, with jittered backoff.
        let mut attempt = 0;
        let (mut outcome, table) = loop {
            match self
                .write_locked(def, batches.clone(), mode, ds, meta.clone())
                .await
            {
                Err(e) if e.is_commit_conflict() && attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                    tracing::debug!(table = %def.name, attempt, "commit conflict: planning again");
                    tokio::time::sleep(conflict_backoff(attempt)).await;
                }
                Err(e) if e.is_commit_conflict() => {
                    // Still a transient error: the task's retry policy takes it from here.
                    tracing::warn!(table = %def.name, "commit lost to concurrent writers {} times", attempt + 1);
                    return Err(e);
                }
                other => break other?,
            }
        };
        if let Some(table) = table {
            let sizes: Vec<u64> = table
                .snapshot()
                .map(|s| {
                    s.log_data()
                        .iter()
                        .map(|f| u64::try_from(f.size()).unwrap_or(0))
                        .collect()
                })
                .unwrap_or_default();
            let files = sizes.len();
            if files >= COMPACT_AT_FILES
                && let Some(target) = tiered_target(sizes)
            {
                match self.optimize(&def.name, table, files, Some(target)).await {
                    Ok(c) => outcome.latest = c.version,
                    // The write is committed; a failed compaction only leaves the small files
                    // (the next write compacts them). Another writer's commit since this one's
                    // fails it by design (`Lake::optimize`).
                    Err(e) if e.is_commit_conflict() => {
                        tracing::debug!(table = %def.name, "compaction overtaken by another commit")
                    }
                    Err(e) => tracing::warn!(table = %def.name, error = %e, "compaction failed"),
                }
            }
        }
        Ok(outcome)
    }

    /// [`Lake::write`] under the table's lock: the outcome, and the table as committed (`None`
    /// when nothing was).
    async fn write_locked(
        &self,
        def: &TableDef,
        batches: Vec<RecordBatch>,
        mode: WriteMode,
        ds: Option<NaiveDate>,
        meta: BTreeMap<String, String>,
    ) -> LakeResult<(WriteOutcome, Option<DeltaTable>)> {
        let invalid = |message: String| LakeError::InvalidData {
            table: def.name.clone(),
            message,
        };
        let physical = physical_schema(&def.schema);
        let mut phys_batches = Vec::with_capacity(batches.len());
        for b in &batches {
            let declared = conform(b, &def.schema).map_err(|e| invalid(e.to_string()))?;
            phys_batches.push(conform(&declared, &physical).map_err(|e| invalid(e.to_string()))?);
        }
        let mut rows: usize = phys_batches.iter().map(|b| b.num_rows()).sum();
        let mut unchanged = 0;
        phys_batches.retain(|b| b.num_rows() > 0);
        if let Some(date_col) = &def.date_column {
            phys_batches = in_date_order(phys_batches, date_col)?;
        }

        let url = self.table_url(&def.name)?;
        if url.scheme() == "file"
            && let Ok(p) = url.to_file_path()
        {
            std::fs::create_dir_all(p)?;
        }
        let mut timing = WriteTiming::start(&def.name);
        let table = self.latest(&def.name).await?;
        timing.lap("load");
        let exists = table.version().is_some();
        let previous = exists.then(|| version_of(&table));
        let table = if exists {
            evolve::add_declared_columns(def, table, &physical).await?
        } else {
            table
        };
        let commit = commit_properties().with_metadata(
            meta.into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v))),
        );
        // A write that creates the table must create it, never land as a later version: Delta
        // rebases a losing create onto the winner's as a blind append, which duplicated every
        // key two processes' first writes shared. Without retries the loser fails (a
        // transient error) and its retry writes to the existing table with the key checks.
        let commit = if exists {
            commit
        } else {
            commit.with_max_retries(0)
        };

        if !exists && phys_batches.is_empty() {
            phys_batches.push(RecordBatch::new_empty(physical.clone()));
        }

        let mut path = if exists { "append" } else { "create" };
        let dated = |batches: &[RecordBatch]| {
            def.date_column
                .as_deref()
                .and_then(|c| merge::date_range(batches, c))
        };
        let mut changed = dated(&phys_batches);
        let table = match mode {
            WriteMode::Append => {
                if exists && rows == 0 {
                    return Ok((self.unchanged(def, &table, 0), None));
                }
                table
                    .write(phys_batches)
                    .with_save_mode(SaveMode::Append)
                    .with_configuration(table_configuration())
                    .with_writer_properties(writer_properties())
                    .with_commit_properties(commit)
                    .await?
            }
            WriteMode::ReplacePartition => {
                let part = def
                    .partition_column
                    .as_deref()
                    .ok_or_else(|| invalid("replace_partition needs a partition column".into()))?;
                let ds = ds.ok_or_else(|| invalid("replace_partition needs a ds".into()))?;
                check_partition(&phys_batches, part, ds).map_err(invalid)?;
                // The partition's old rows go too, written or not.
                let day = date32(ds);
                changed = (def.date_column.as_deref() == Some(part))
                    .then(|| changed.map_or((day, day), |(lo, hi)| (lo.min(day), hi.max(day))));
                if exists {
                    path = "replace";
                    table
                        .write(phys_batches)
                        .with_save_mode(SaveMode::Overwrite)
                        .with_writer_properties(writer_properties())
                        .with_replace_where(
                            col(format!("\"{part}\""))
                                .eq(lit(ScalarValue::Date32(Some(date32(ds))))),
                        )
                        .with_commit_properties(commit)
                        .await?
                } else {
                    table
                        .write(phys_batches)
                        .with_save_mode(SaveMode::Append)
                        .with_configuration(table_configuration())
                        .with_writer_properties(writer_properties())
                        .with_commit_properties(commit)
                        .await?
                }
            }
            WriteMode::Merge => {
                if def.keys.is_empty() {
                    return Err(invalid("merge needs keys".into()));
                }
                check_unique_keys(&phys_batches, &def.keys).map_err(invalid)?;
                if !exists {
                    table
                        .write(phys_batches)
                        .with_save_mode(SaveMode::Append)
                        .with_configuration(table_configuration())
                        .with_writer_properties(writer_properties())
                        .with_commit_properties(commit)
                        .await?
                } else if rows == 0 {
                    return Ok((self.unchanged(def, &table, 0), None));
                } else {
                    let changes = self.changed_rows(def, &table, phys_batches).await?;
                    timing.lap("diff");
                    unchanged = changes.unchanged;
                    rows = changes.rows.iter().map(|b| b.num_rows()).sum();
                    changed = dated(&changes.rows);
                    if rows == 0 {
                        timing.done("unchanged", 0, unchanged);
                        return Ok((self.unchanged(def, &table, unchanged), None));
                    }
                    match changes.insert_only {
                        Some(predicate) => {
                            path = "append_checked";
                            self.append_checked(table, changes.rows, predicate, commit)
                                .await?
                        }
                        None => {
                            path = "merge";
                            self.merge(def, table, changes.rows, commit).await?
                        }
                    }
                }
            }
        };
        timing.lap("commit");
        if self
            .clean_log_at_checkpoint(&def.name, &table)
            .await
            .is_some()
        {
            timing.lap("log_cleanup");
        }
        timing.done(path, rows, unchanged);
        self.remember(&def.name, &table);
        let outcome = WriteOutcome {
            table: def.name.clone(),
            version: version_of(&table),
            rows,
            unchanged,
            committed: true,
            previous,
            latest: version_of(&table),
            changed: changed.and_then(|(lo, hi)| Some((from_date32(lo)?, from_date32(hi)?))),
        };
        Ok((outcome, Some(table)))
    }

    fn unchanged(&self, def: &TableDef, table: &DeltaTable, unchanged: usize) -> WriteOutcome {
        WriteOutcome {
            table: def.name.clone(),
            version: version_of(table),
            rows: 0,
            unchanged,
            committed: false,
            previous: Some(version_of(table)),
            latest: version_of(table),
            changed: None,
        }
    }
}

/// Re-plans of a write whose commit lost to a concurrent writer, before the error goes up.
const CONFLICT_RETRIES: u32 = 4;

/// 25 ms doubling per attempt, with jitter from the clock (writers racing in step drift apart).
fn conflict_backoff(attempt: u32) -> std::time::Duration {
    let base = 25u64 << attempt.min(6);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0);
    std::time::Duration::from_millis(base + nanos % base.max(1))
}

/// `batches` as one batch sorted by `date_col`, rows of one date in the order written: the
/// order an operator gives its rows (by code, a prediction's members together) is the order
/// readers meet them in, which keeps their grouping cheap. (Arrow's `sort_to_indices` is not
/// stable: a day's rows, all of one date, came out scattered.) A null date sorts first.
pub(crate) fn in_date_order(
    batches: Vec<RecordBatch>,
    date_col: &str,
) -> LakeResult<Vec<RecordBatch>> {
    let Some(first) = batches.first() else {
        return Ok(batches);
    };
    let all = arrow::compute::concat_batches(&first.schema(), &batches)?;
    let Some(dates) = all
        .column_by_name(date_col)
        .and_then(|c| c.as_any().downcast_ref::<Date32Array>())
    else {
        return Ok(vec![all]);
    };
    let key = |i: u32| dates.is_valid(i as usize).then(|| dates.value(i as usize));
    let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
    if order.windows(2).all(|w| key(w[0]) <= key(w[1])) {
        return Ok(vec![all]);
    }
    order.sort_by_key(|&i| key(i));
    let order = arrow::array::UInt32Array::from(order);
    Ok(vec![arrow::compute::take_record_batch(&all, &order)?])
}

fn check_partition(batches: &[RecordBatch], part: &str, ds: NaiveDate) -> Result<(), String> {
    let want = date32(ds);
    for b in batches {
        let idx = b
            .schema()
            .index_of(part)
            .map_err(|_| format!("partition column `{part}` missing"))?;
        let arr = b
            .column(idx)
            .as_any()
            .downcast_ref::<Date32Array>()
            .ok_or_else(|| format!("partition column `{part}` must be Date32"))?;
        if let Some(bad) = (0..arr.len()).find(|&i| arr.is_null(i) || arr.value(i) != want) {
            let got = if arr.is_null(bad) {
                "null".to_string()
            } else {
                arrow::temporal_conversions::date32_to_datetime(arr.value(bad))
                    .map(|d| d.date().to_string())
                    .unwrap_or_default()
            };
            return Err(format!(
                "replace_partition for {ds}: row {bad} has `{part}` = {got}"
            ));
        }
    }
    Ok(())
}

fn check_unique_keys(batches: &[RecordBatch], keys: &[String]) -> Result<(), String> {
    let Some(first) = batches.first() else {
        return Ok(());
    };
    let schema = first.schema();
    let mut fields = Vec::new();
    for k in keys {
        let f = schema
            .field_with_name(k)
            .map_err(|_| format!("key column `{k}` missing"))?;
        fields.push(SortField::new(f.data_type().clone()));
    }
    let converter = RowConverter::new(fields).map_err(|e| e.to_string())?;
    let mut key_cols = Vec::with_capacity(batches.len());
    let mut key_rows = Vec::with_capacity(batches.len());
    for b in batches {
        let cols = keys
            .iter()
            .map(|k| {
                b.column_by_name(k)
                    .cloned()
                    .ok_or_else(|| format!("key column `{k}` missing"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if cols.iter().any(|c| c.null_count() > 0) {
            return Err("key columns must not be null".to_string());
        }
        key_rows.push(
            converter
                .convert_columns(&cols)
                .map_err(|e| e.to_string())?,
        );
        key_cols.push(cols);
    }
    let mut seen = rowset::RowSet::with_capacity_and_hasher(
        key_rows.iter().map(arrow::row::Rows::num_rows).sum(),
        Default::default(),
    );
    for (rows, cols) in key_rows.iter().zip(&key_cols) {
        for (i, r) in rows.iter().enumerate() {
            if !seen.insert(r.data()) {
                let desc = cols
                    .iter()
                    .map(|c| arrow::util::display::array_value_to_string(c, i).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(format!(
                    "duplicate key ({}) = ({desc}) in the rows to merge",
                    keys.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// Phase times of one write, logged at debug level (`--log krxflow_lake=debug`).
struct WriteTiming<'a> {
    table: &'a str,
    at: std::time::Instant,
    laps: Vec<(&'static str, f64)>,
}

impl<'a> WriteTiming<'a> {
    fn start(table: &'a str) -> Self {
        Self {
            table,
            at: std::time::Instant::now(),
            laps: Vec::new(),
        }
    }

    fn lap(&mut self, phase: &'static str) {
        let now = std::time::Instant::now();
        self.laps.push((phase, (now - self.at).as_secs_f64() * 1e3));
        self.at = now;
    }

    fn done(&self, path: &str, rows: usize, unchanged: usize) {
        tracing::debug!(table = self.table, path, rows, unchanged, laps = ?self.laps, "write phases");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::StringArray;
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(rows: &[(&str, Option<i32>)]) -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("code", DataType::Utf8, false),
                Field::new("date", DataType::Date32, true),
            ])),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Date32Array::from_iter(rows.iter().map(|r| r.1))),
            ],
        )
        .unwrap()
    }

    fn codes(b: &[RecordBatch]) -> Vec<String> {
        b.iter()
            .flat_map(|b| {
                let c = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
                c.iter().flatten().map(String::from).collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn rows_are_put_in_date_order_keeping_the_written_order_within_a_date() {
        // One date, many rows: exactly the order written (an unstable sort scattered them).
        let one_day: Vec<(String, Option<i32>)> =
            (0..500).map(|i| (format!("{i:06}"), Some(7))).collect();
        let rows: Vec<(&str, Option<i32>)> =
            one_day.iter().map(|(c, d)| (c.as_str(), *d)).collect();
        let sorted = in_date_order(vec![batch(&rows[..200]), batch(&rows[200..])], "date").unwrap();
        assert_eq!(
            codes(&sorted),
            one_day.iter().map(|r| r.0.clone()).collect::<Vec<_>>()
        );
        // Several dates: by date, a null first, ties in written order.
        let mixed = batch(&[
            ("a", Some(3)),
            ("b", Some(1)),
            ("c", None),
            ("d", Some(3)),
            ("e", Some(1)),
        ]);
        let sorted = in_date_order(vec![mixed], "date").unwrap();
        assert_eq!(codes(&sorted), ["c", "b", "e", "a", "d"]);
    }
}
