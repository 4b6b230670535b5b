//! `features.returns`: 1/5/20-day simple returns and 20-day realised volatility per code,
//! computed with DataFusion window functions over the whole input (no per-row loops).

use std::sync::Arc;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use chrono::NaiveDate;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use krxflow_core::{
    ConfigError, ConfiguredOp, InputBatches, InputPort, OpResult, Operator, OutputBatches,
    OutputPort, ParamSpec, TaskContext, WriteMode, parse_params,
};
use serde::Deserialize;

use crate::tables::{features_returns_schema, ohlcv_daily_schema};

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReturnsParams {
    /// Only emit rows dated on or after this date.
    #[serde(default)]
    pub min_date: Option<NaiveDate>,
}

const SQL: &str = "
WITH r AS (
  SELECT code, date, close,
         close / lag(close, 1) OVER (PARTITION BY code ORDER BY date) - 1 AS ret_1d,
         close / lag(close, 5) OVER (PARTITION BY code ORDER BY date) - 1 AS ret_5d,
         close / lag(close, 20) OVER (PARTITION BY code ORDER BY date) - 1 AS ret_20d
  FROM bars)
SELECT code, date, ret_1d, ret_5d, ret_20d,
       CASE WHEN count(ret_1d) OVER w20 = 20 THEN stddev(ret_1d) OVER w20 END AS vol_20d
FROM r
WINDOW w20 AS (PARTITION BY code ORDER BY date ROWS BETWEEN 19 PRECEDING AND CURRENT ROW)
ORDER BY code, date";

/// Computes the feature rows for `bars` (any schema with code, date, close).
pub async fn compute(bars: &RecordBatch, min_date: Option<NaiveDate>) -> OpResult<RecordBatch> {
    let schema = features_returns_schema();
    if bars.num_rows() == 0 {
        return Ok(RecordBatch::new_empty(schema));
    }
    let ctx = SessionContext::new();
    ctx.register_table(
        "bars",
        Arc::new(MemTable::try_new(bars.schema(), vec![vec![bars.clone()]])?),
    )?;
    let out = ctx.sql(SQL).await?.collect().await?;
    let mut rows = Vec::with_capacity(out.len());
    for b in out {
        let warm = ["ret_1d", "ret_5d", "ret_20d", "vol_20d"]
            .iter()
            .filter_map(|c| b.column_by_name(c))
            .try_fold(
                arrow::array::BooleanArray::from(vec![false; b.num_rows()]),
                |acc, c| arrow::compute::or(&acc, &arrow::compute::is_null(c)?),
            )?;
        let mut cols = b.columns().to_vec();
        cols.push(Arc::new(warm));
        rows.push(RecordBatch::try_new(schema.clone(), cols)?);
    }
    let mut all = arrow::compute::concat_batches(&schema, &rows)?;
    if let Some(min) = min_date {
        let from = (min - NaiveDate::default()).num_days() as i32;
        let dates = all
            .column(1)
            .as_any()
            .downcast_ref::<arrow::array::Date32Array>()
            .ok_or_else(|| krxflow_core::OpError::permanent("date must be Date32"))?;
        let keep: arrow::array::BooleanArray = dates
            .iter()
            .map(|d| Some(d.is_some_and(|d| d >= from)))
            .collect();
        all = arrow::compute::filter_record_batch(&all, &keep)?;
    }
    Ok(all)
}

pub struct FeaturesReturns;

struct Configured {
    p: ReturnsParams,
}

#[async_trait]
impl Operator for FeaturesReturns {
    fn kind(&self) -> &'static str {
        "features.returns"
    }
    fn version(&self) -> u32 {
        1
    }
    fn description(&self) -> &'static str {
        "1/5/20-day returns and 20-day realised volatility per code (warm-up rows marked)"
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec::optional(
            "min_date",
            "date",
            "all",
            "only emit rows from this date on",
        )]
    }
    fn inputs(&self) -> Vec<InputPort> {
        vec![InputPort::new(
            "bars",
            ohlcv_daily_schema(),
            "daily bars as of ds",
        )]
    }
    fn outputs(&self) -> Vec<OutputPort> {
        vec![
            OutputPort::new(
                "features",
                features_returns_schema(),
                WriteMode::Merge,
                "returns per code and date",
            )
            .keys(&["code", "date"])
            .date_column("date"),
        ]
    }
    fn configure(&self, params: &serde_json::Value) -> Result<Box<dyn ConfiguredOp>, ConfigError> {
        Ok(Box::new(Configured {
            p: parse_params(params)?,
        }))
    }
}

#[async_trait]
impl ConfiguredOp for Configured {
    async fn run(&self, ctx: &TaskContext, inputs: InputBatches) -> OpResult<OutputBatches> {
        let bars = inputs.concat("bars")?;
        let out = compute(&bars, self.p.min_date).await?;
        ctx.counters.add("rows", out.num_rows() as i64);
        Ok(OutputBatches::new().with("features", vec![out]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::d;
    use arrow::array::{Array, BooleanArray, Date32Array, Float64Array, Int64Array, StringArray};

    fn bars(code: &str, closes: &[f64], first: NaiveDate) -> RecordBatch {
        let n = closes.len();
        let start = (first - NaiveDate::default()).num_days() as i32;
        RecordBatch::try_new(
            ohlcv_daily_schema(),
            vec![
                Arc::new(StringArray::from(vec![code; n])),
                Arc::new(Date32Array::from_iter_values(
                    (0..n as i32).map(|i| start + i),
                )),
                Arc::new(Float64Array::from(closes.to_vec())),
                Arc::new(Float64Array::from(closes.to_vec())),
                Arc::new(Float64Array::from(closes.to_vec())),
                Arc::new(Float64Array::from(closes.to_vec())),
                Arc::new(Int64Array::from(vec![1; n])),
                Arc::new(StringArray::from(vec!["t"; n])),
            ],
        )
        .unwrap()
    }

    fn col(b: &RecordBatch, name: &str) -> Float64Array {
        b.column_by_name(name)
            .unwrap()
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap()
            .clone()
    }

    fn closes() -> Vec<f64> {
        (0..25)
            .map(|i| 100.0 * (1.0 + 0.01 * ((i * 7 % 5) as f64 - 2.0)).powi(i))
            .collect()
    }

    #[tokio::test]
    async fn values_match_hand_computation() {
        let c = closes();
        let out = compute(&bars("A", &c, d("2024-01-01")), None)
            .await
            .unwrap();
        assert_eq!(out.num_rows(), 25);
        let r1 = col(&out, "ret_1d");
        let r5 = col(&out, "ret_5d");
        let v = col(&out, "vol_20d");
        assert!(r1.is_null(0));
        assert!((r1.value(3) - (c[3] / c[2] - 1.0)).abs() < 1e-12);
        assert!((r5.value(7) - (c[7] / c[2] - 1.0)).abs() < 1e-12);
        // vol_20d at row 24: sample std of the 20 returns of rows 5..=24.
        let rets: Vec<f64> = (5..=24).map(|i| c[i] / c[i - 1] - 1.0).collect();
        let mean = rets.iter().sum::<f64>() / 20.0;
        let sd = (rets.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / 19.0).sqrt();
        assert!((v.value(24) - sd).abs() < 1e-12);
        assert!(v.is_null(19), "only 19 returns exist at row 19");
        let warm = out
            .column_by_name("warmup")
            .unwrap()
            .as_any()
            .downcast_ref::<BooleanArray>()
            .unwrap();
        assert!(warm.value(19) && !warm.value(20));
    }

    #[tokio::test]
    async fn later_rows_do_not_change_earlier_features() {
        let c = closes();
        let short = compute(&bars("A", &c[..22], d("2024-01-01")), None)
            .await
            .unwrap();
        let long = compute(&bars("A", &c, d("2024-01-01")), None)
            .await
            .unwrap();
        assert_eq!(short, long.slice(0, 22));
    }

    #[tokio::test]
    async fn codes_do_not_leak_into_each_other() {
        let c = closes();
        let a = bars("A", &c, d("2024-01-01"));
        let b = bars(
            "B",
            &c.iter().map(|x| x * 2.0).collect::<Vec<_>>(),
            d("2024-01-01"),
        );
        let both = arrow::compute::concat_batches(&a.schema(), &[b, a.clone()]).unwrap();
        let out = compute(&both, None).await.unwrap();
        let only_a = compute(&a, None).await.unwrap();
        assert_eq!(out.slice(0, 25), only_a);
        assert!(
            col(&out, "ret_1d").is_null(25),
            "first row of B has no previous close"
        );
    }
}
