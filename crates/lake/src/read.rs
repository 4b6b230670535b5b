//! Reads: a table's rows as of a date, since a date or at a version, in its declared schema;
//! and the latest date a table holds (watermarks).

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use chrono::NaiveDate;
use datafusion::prelude::{col, lit};
use datafusion::scalar::ScalarValue;
use deltalake::DeltaTable;

use crate::dates::{date32, from_date32};
use crate::error::{LakeError, LakeResult};
use crate::scan::{DateRange, date_bounds, scan};
use crate::schema::{conform, physical_schema};
use crate::table::{Lake, version_of};

/// How to read a table.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Only rows whose date column is `<= as_of` (no effect on tables without a date column).
    pub as_of: Option<NaiveDate>,
    /// Only rows whose date column is `>= since` (no effect on tables without a date column).
    pub since: Option<NaiveDate>,
    /// A specific Delta version (time travel); latest when `None`.
    pub version: Option<i64>,
    /// Only these columns, in this order (pushed down to the Parquet scan); all when `None`.
    /// A name the table does not have is an error naming it.
    pub columns: Option<Vec<String>>,
}

/// Rows of a table as read, with the version they came from.
#[derive(Debug, Clone)]
pub struct TableRead {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub version: i64,
}

impl TableRead {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

impl Lake {
    /// Reads a table, restricted as `opts` says, in its declared schema: a declared table this
    /// lake wrote by a direct scan of its live files (`scan.rs`), any other through DataFusion.
    pub async fn read(&self, name: &str, opts: ReadOptions) -> LakeResult<TableRead> {
        let table = self
            .load(name, opts.version)
            .await?
            .ok_or_else(|| LakeError::NoSuchTable(name.to_string()))?;
        let version = version_of(&table);
        let def = self.catalog().get(name);
        let date_col = def.and_then(|d| d.date_column.clone());
        if let Some(def) = def {
            let declared = project(name, def.schema.clone(), opts.columns.as_deref())?;
            let range = date_col.as_deref().map(|column| DateRange {
                column,
                from: opts.since.map(date32),
                to: opts.as_of.map(date32),
            });
            if let Some(batches) = scan(&self.files, &table, range, opts.columns.as_deref()).await?
            {
                let batches = batches
                    .iter()
                    .map(|b| conform(b, &declared))
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(TableRead {
                    schema: declared,
                    batches,
                    version,
                });
            }
        }
        self.read_planned(&table, name, &opts).await
    }

    /// [`Lake::read`] through a DataFusion plan over Delta's table provider: any table,
    /// whatever its protocol (the direct scan serves the plain ones).
    pub(crate) async fn read_planned(
        &self,
        table: &DeltaTable,
        name: &str,
        opts: &ReadOptions,
    ) -> LakeResult<TableRead> {
        let version = version_of(table);
        let def = self.catalog().get(name);
        let date_col = def.and_then(|d| d.date_column.clone());
        let provider = table.table_provider().await?;
        let ctx = self.datafusion_session();
        table.update_datafusion_session(&ctx.state())?;
        let declared = match def {
            Some(def) => def.schema.clone(),
            None => physical_schema(provider.schema().as_ref()),
        };
        let mut df = ctx.read_table(provider)?;
        if let (Some(ds), Some(date_col)) = (opts.as_of, &date_col) {
            df = df.filter(
                col(format!("\"{date_col}\"")).lt_eq(lit(ScalarValue::Date32(Some(date32(ds))))),
            )?;
        }
        if let (Some(from), Some(date_col)) = (opts.since, &date_col) {
            df = df.filter(
                col(format!("\"{date_col}\"")).gt_eq(lit(ScalarValue::Date32(Some(date32(from))))),
            )?;
        }
        let declared = project(name, declared, opts.columns.as_deref())?;
        if let Some(cols) = &opts.columns {
            df = df.select_columns(&cols.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        let batches = df.collect().await?;
        let batches = batches
            .iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| conform(b, &declared))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TableRead {
            schema: declared,
            batches,
            version,
        })
    }

    /// The latest value of `date_col` on or before `on_or_before` (a watermark for incremental
    /// operators); `None` when the table or such rows do not exist. Reads only that column.
    pub async fn max_date(
        &self,
        name: &str,
        date_col: &str,
        on_or_before: NaiveDate,
    ) -> LakeResult<Option<NaiveDate>> {
        let Some(table) = self.load(name, None).await? else {
            return Ok(None);
        };
        if let Some(max) = max_date_from_stats(&table, date_col, date32(on_or_before)) {
            return Ok(max.and_then(from_date32));
        }
        let provider = table.table_provider().await?;
        let ctx = self.datafusion_session();
        table.update_datafusion_session(&ctx.state())?;
        let c = col(format!("\"{date_col}\""));
        let df = ctx
            .read_table(provider)?
            .filter(
                c.clone()
                    .lt_eq(lit(ScalarValue::Date32(Some(date32(on_or_before))))),
            )?
            .aggregate(
                vec![],
                vec![datafusion::functions_aggregate::expr_fn::max(c)],
            )?;
        let batches = df.collect().await?;
        let value = batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .map(|b| ScalarValue::try_from_array(b.column(0), 0))
            .transpose()?;
        Ok(match value {
            Some(ScalarValue::Date32(Some(d))) => from_date32(d),
            _ => None,
        })
    }
}

/// `declared` restricted to `columns` in that order (all when `None`); a name the table does
/// not have is an error naming it.
fn project(name: &str, declared: SchemaRef, columns: Option<&[String]>) -> LakeResult<SchemaRef> {
    let Some(cols) = columns else {
        return Ok(declared);
    };
    let indices = cols
        .iter()
        .map(|c| {
            declared.index_of(c).map_err(|_| LakeError::InvalidData {
                table: name.to_string(),
                message: format!("no column `{c}` to read"),
            })
        })
        .collect::<LakeResult<Vec<_>>>()?;
    Ok(std::sync::Arc::new(declared.project(&indices)?))
}

/// The latest `col` on or before `limit` (days since 1970-01-01) from the files' statistics
/// alone: `Some(answer)` when every file either lies wholly on or before `limit` (its max
/// counts) or wholly after it (ignored); `None` when a file straddles `limit` or has no
/// statistics for `col`, and the rows must be scanned.
fn max_date_from_stats(table: &DeltaTable, col: &str, limit: i32) -> Option<Option<i32>> {
    let snapshot = table.snapshot().ok()?;
    let mut best: Option<i32> = None;
    for file in snapshot.log_data().iter() {
        let stats: serde_json::Value = serde_json::from_str(&file.stats()?).ok()?;
        if stats.get("numRecords").and_then(serde_json::Value::as_i64) == Some(0) {
            continue;
        }
        let (min, max) = date_bounds(&stats, col)?;
        if max <= limit {
            best = best.max(Some(max));
        } else if min <= limit {
            return None;
        }
    }
    Some(best)
}
