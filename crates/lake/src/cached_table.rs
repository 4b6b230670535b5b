//! A lake table as a DataFusion table read through the lake's own scan ([`Lake::read`]): its
//! files and row groups pruned by the date column's statistics and its decoded columns
//! cached across reads, instead of Delta's provider opening and decoding the files again for
//! every query. The filters DataFusion pushes down bound the date range read (inexactly: the
//! query still applies them). For many small queries over the same tables (a task's checks,
//! every day of a backfill); `krxflow sql` keeps Delta's streaming provider.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use chrono::NaiveDate;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{
    Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::scalar::ScalarValue;

use crate::dates::from_date32;
use crate::read::ReadOptions;
use crate::table::Lake;

/// A catalog table of the lake, read at scan time (its latest version then).
pub(crate) struct CachedTable {
    pub(crate) lake: Lake,
    pub(crate) name: String,
    /// The catalog's schema, which [`Lake::read`] conforms the rows to.
    pub(crate) schema: SchemaRef,
    pub(crate) date_column: Option<String>,
}

/// The date range `filters` (all of which hold) allow for `column`: `(since, as_of)`, either
/// open. Only comparisons of the column with a date and `BETWEEN` two dates narrow it.
pub(crate) fn date_range(filters: &[Expr], column: &str) -> (Option<NaiveDate>, Option<NaiveDate>) {
    let (mut lo, mut hi): (Option<i32>, Option<i32>) = (None, None);
    let mut at_least = |d: i32| lo = Some(lo.map_or(d, |l| l.max(d)));
    let mut at_most = |d: i32| hi = Some(hi.map_or(d, |h| h.min(d)));
    let is_col = |e: &Expr| matches!(e, Expr::Column(c) if c.name == column);
    let date = |e: &Expr| match e {
        Expr::Literal(ScalarValue::Date32(Some(d)), _) => Some(*d),
        _ => None,
    };
    for f in filters {
        match f {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                // `column op date`, or `date op column` read the other way round.
                let (d, op) = match (is_col(left), date(right), date(left), is_col(right)) {
                    (true, Some(d), _, _) => (d, *op),
                    (_, _, Some(d), true) => match op.swap() {
                        Some(op) => (d, op),
                        None => continue,
                    },
                    _ => continue,
                };
                match op {
                    Operator::Eq => {
                        at_least(d);
                        at_most(d);
                    }
                    Operator::Gt => at_least(d.saturating_add(1)),
                    Operator::GtEq => at_least(d),
                    Operator::Lt => at_most(d.saturating_sub(1)),
                    Operator::LtEq => at_most(d),
                    _ => {}
                }
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) if is_col(expr) => {
                if let (Some(l), Some(h)) = (date(low), date(high)) {
                    at_least(l);
                    at_most(h);
                }
            }
            _ => {}
        }
    }
    (lo.and_then(from_date32), hi.and_then(from_date32))
}

impl std::fmt::Debug for CachedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedTable")
            .field("name", &self.name)
            .field("date_column", &self.date_column)
            .finish()
    }
}

#[async_trait]
impl TableProvider for CachedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let (since, as_of) = match &self.date_column {
            Some(c) => date_range(filters, c),
            None => (None, None),
        };
        if let (Some(s), Some(a)) = (since, as_of)
            && s > a
        {
            // No date satisfies the filters.
            let exec = MemorySourceConfig::try_new_exec(
                &[vec![]],
                self.schema.clone(),
                projection.cloned(),
            )?;
            return Ok(exec);
        }
        let read = self
            .lake
            .read(
                &self.name,
                ReadOptions {
                    as_of,
                    since,
                    version: None,
                    columns: None,
                },
            )
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let exec =
            MemorySourceConfig::try_new_exec(&[read.batches], read.schema, projection.cloned())?;
        Ok(exec)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{col, lit};

    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn d(s: &str) -> Expr {
        lit(ScalarValue::Date32(Some(crate::dates::date32(day(s)))))
    }

    #[test]
    fn the_date_range_read_is_what_every_pushed_filter_allows() {
        let c = || col("date");
        let range = |f: Vec<Expr>| date_range(&f, "date");
        assert_eq!(
            range(vec![c().eq(d("2024-12-16"))]),
            (Some(day("2024-12-16")), Some(day("2024-12-16")))
        );
        assert_eq!(
            range(vec![c().gt(d("2024-01-01")), c().lt_eq(d("2024-12-16"))]),
            (Some(day("2024-01-02")), Some(day("2024-12-16")))
        );
        // The date on the left; BETWEEN; two lower bounds (the larger holds).
        assert_eq!(
            range(vec![
                d("2024-12-16").gt_eq(c()),
                c().between(d("2024-03-01"), d("2024-06-30")),
                c().gt_eq(d("2024-04-01"))
            ]),
            (Some(day("2024-04-01")), Some(day("2024-06-30")))
        );
        // Another column, another operator, a non-date: no bound.
        assert_eq!(
            range(vec![
                col("other").eq(d("2024-12-16")),
                c().not_eq(d("2024-12-16")),
                c().eq(lit(3))
            ]),
            (None, None)
        );
        assert_eq!(
            range(vec![c().not_between(d("2024-03-01"), d("2024-06-30"))]),
            (None, None)
        );
    }
}
